"""Config: round-trips, overrides, and errors that name the field."""

from __future__ import annotations

import json

import pytest

from interp.config import (
    ConfigError,
    RunConfig,
    TrainConfig,
    load_config_file,
    resolve_key,
    task_config,
)
from interp.presets import PRESETS


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_round_trip_through_json(name):
    config = PRESETS[name]
    assert RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_mod_add_is_the_nanda_recipe():
    c = PRESETS["mod-add"]
    assert (c.task.operation, c.task.p, c.task.train_frac) == ("add", 113, 0.3)
    assert (c.model.n_layers, c.model.n_heads, c.model.d_head, c.model.d_model, c.model.d_mlp) == (
        1,
        4,
        32,
        128,
        512,
    )
    assert (c.model.act_fn, c.model.normalization) == ("relu", "none")
    assert (
        c.train.lr,
        c.train.weight_decay,
        c.train.beta1,
        c.train.beta2,
        c.train.warmup_steps,
    ) == (1e-3, 1.0, 0.9, 0.98, 10)
    assert c.train.batch_size == 0 and c.train.ckpt_every == 100
    assert (c.task.d_vocab, c.task.d_vocab_out, c.task.n_ctx) == (114, 113, 3)


def test_overrides_accept_dotted_and_unique_bare_keys():
    config = PRESETS["demo"].with_overrides(
        ["train.lr=0.01", "p=31", "tied_embeddings=false", "steps=1e3"]
    )
    assert config.train.lr == 0.01 and config.task.p == 31 and config.train.steps == 1000
    assert config.model.tied_embeddings is False


@pytest.mark.parametrize(
    ("override", "names"),
    [
        ("train.lrr=1", "train.lrr"),
        ("train.lr=fast", "train.lr"),
        ("task.p=12.5", "task.p"),
        ("task.operation=pow", "task.operation"),
        ("task.train_frac=1.0", "task.train_frac"),
        ("task.train_frac=0", "task.train_frac"),
        ("model.normalization=RMS", "model.normalization"),
        ("train.steps=0", "train.steps"),
        ("seed=1", "seed"),  # ambiguous: model.seed, train.seed
        ("nonsense", "nonsense"),
    ],
)
def test_bad_overrides_name_the_field(override, names):
    with pytest.raises(ConfigError, match=names.replace(".", r"\.")):
        PRESETS["demo"].with_overrides([override])


def test_division_needs_a_prime():
    with pytest.raises(ConfigError, match="task.p.*prime"):
        task_config(operation="div", p=12)
    task_config(operation="add", p=12)  # addition is fine mod a composite


def test_unknown_field_in_file_names_file_and_field(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("[task]\np = 31\n[train]\nlearning_rate = 0.1\n")
    with pytest.raises(ConfigError, match=r"run\.toml.*train\.learning_rate"):
        load_config_file(path)


def test_toml_and_json_files_load(tmp_path):
    toml = tmp_path / "a.toml"
    toml.write_text('[task]\noperation = "sub"\np = 23\n[train]\nlr = 0.002\n')
    config = load_config_file(toml)
    assert (config.task.operation, config.task.p, config.train.lr, config.name) == (
        "sub",
        23,
        0.002,
        "a",
    )
    js = tmp_path / "b.json"
    js.write_text(json.dumps(config.to_dict()))
    assert load_config_file(js).task == config.task


def test_resolve_key_reports_sections():
    assert resolve_key("lr") == ("train", "lr")
    with pytest.raises(ConfigError, match="ambiguous"):
        resolve_key("seed")
    assert TrainConfig().grad_filter == "none"
