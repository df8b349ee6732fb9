"""Property-based tests (hypothesis) over config parsing and the modular dataset generator.

Config: valid configs round-trip through to_dict/from_dict and JSON; overrides set exactly
the field they name; and *any* JSON-shaped input either parses or raises ConfigError whose
message starts with the offending field, never another exception.
Dataset: for every operation, p and split, the splits are disjoint, cover exactly the
examples with a defined answer, the labels are the operation computed with Python integers,
and the split depends only on (split_seed, train_frac).
"""

from __future__ import annotations

import json
from dataclasses import fields, replace
from typing import get_args, get_type_hints

import pytest
import torch
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from circuits.families.modular.family import NEEDS_PRIME, ModularTask, is_prime
from interp.config import ConfigError, ModelConfig, RunConfig, TrainConfig, all_keys, task_config
from interp.tasks import build_task

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SECTIONS = {"task": ModularTask, "model": ModelConfig, "train": TrainConfig}
OPERATIONS = get_args(get_type_hints(ModularTask)["operation"])

# -- strategies for valid configs
# ---------------------------------------------------------------------

small_primes = st.sampled_from([3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 97, 113])
fractions = st.floats(min_value=0.05, max_value=0.95, allow_nan=False)
unit = st.floats(min_value=0.0, max_value=0.999, allow_nan=False)


@st.composite
def task_configs(draw) -> ModularTask:
    operation = draw(st.sampled_from(OPERATIONS))
    p = draw(small_primes) if operation in NEEDS_PRIME else draw(st.integers(3, 2048))
    return task_config(
        operation=operation,
        p=p,
        train_frac=draw(fractions),
        split_seed=draw(st.integers(0, 2**31)),
        val_frac=draw(st.sampled_from([0.0, 0.1, 0.5])),
    )


def _literal(cls, name):
    return st.sampled_from(get_args(get_type_hints(cls)[name]))


def _fallbacks(cls, listed: set[str]) -> dict:
    """Strategies for fields added after these tests were written: every Literal value and both
    booleans are exercised; other types keep their default (their ranges are not known here)."""
    out = {}
    for f in fields(cls):
        if f.name in listed:
            continue
        hint = get_type_hints(cls)[f.name]
        if get_args(hint) and all(isinstance(a, str) for a in get_args(hint)):
            out[f.name] = st.sampled_from(get_args(hint))
        elif hint is bool:
            out[f.name] = st.booleans()
    return out


def builds_all(cls, **strategies):
    return st.builds(cls, **strategies, **_fallbacks(cls, set(strategies)))


model_configs = builds_all(
    ModelConfig,
    n_layers=st.integers(1, 8),
    d_model=st.integers(1, 1024),
    n_heads=st.integers(1, 16),
    d_head=st.integers(1, 128),
    d_mlp=st.integers(1, 4096),
    act_fn=_literal(ModelConfig, "act_fn"),
    normalization=_literal(ModelConfig, "normalization"),
    tied_embeddings=st.booleans(),
    init_mode=_literal(ModelConfig, "init_mode"),
    init_std=st.floats(0, 10),
    seed=st.integers(0, 2**31),
)
train_configs = builds_all(
    TrainConfig,
    steps=st.integers(1, 10**6),
    lr=st.floats(1e-8, 10),
    weight_decay=st.floats(0, 10),
    beta1=unit,
    beta2=unit,
    warmup_steps=st.integers(0, 1000),
    batch_size=st.integers(0, 4096),
    seed=st.integers(0, 2**31),
    grad_clip=st.floats(0, 100),
    grad_filter=_literal(TrainConfig, "grad_filter"),
    grokfast_alpha=unit,
    grokfast_lamb=st.floats(-10, 10),
    grokfast_window=st.integers(1, 500),
    ckpt_every=st.integers(1, 10**5),
    ckpt_log_until=st.integers(0, 10**5),
    stop_at_val_acc=st.floats(0, 1),
    stop_patience=st.integers(1, 50),
    weight_norm_floor=st.floats(0, 5),
    device=_literal(TrainConfig, "device"),
)
run_configs = st.builds(
    RunConfig,
    task=task_configs(),
    model=model_configs,
    train=train_configs,
    name=st.text(max_size=20),
)


@SETTINGS
@given(run_configs)
def test_to_dict_from_dict_round_trips_exactly(config):
    assert RunConfig.from_dict(config.to_dict()) == config
    assert RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def _cli_text(value) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return repr(value) if isinstance(value, float) else str(value)


@SETTINGS
@given(run_configs, run_configs, st.data())
def test_overrides_set_exactly_the_named_field(base, other, data):
    # Keys of the base's own task family (`task.kind` switches family: tested in test_config).
    keys = [
        k
        for k in all_keys()
        if k != "task.kind" and (not k.startswith("task.") or hasattr(base.task, k[5:]))
    ]
    key = data.draw(st.sampled_from(keys))
    section, name = key.split(".")
    value = getattr(getattr(other, section), name)
    try:
        updated = base.with_overrides([f"{key}={_cli_text(value)}"])
    except ConfigError as exc:
        # Only legitimate when the new value is inconsistent with the rest of the base section
        # (e.g. operation=div with a composite p); the message must name a field of that section.
        assert str(exc).startswith(f"{section}."), str(exc)
        return
    assert getattr(getattr(updated, section), name) == value
    # Nothing else changed.
    expected = base.to_dict()
    expected[section][name] = value
    assert updated.to_dict() == expected


@SETTINGS
@given(
    run_configs,
    st.sampled_from(
        [
            k
            for k in all_keys()
            if not k.startswith("task.")
            and sum(k.split(".")[1] == j.split(".")[1] for j in all_keys()) == 1
        ]
    ),
)
def test_bare_field_names_resolve_to_their_section(config, key):
    section, name = key.split(".")
    value = getattr(getattr(config, section), name)
    assume(not (section == "task"))  # task fields interact (p vs operation); covered above
    updated = RunConfig().with_overrides([f"{name}={_cli_text(value)}"])
    assert getattr(getattr(updated, section), name) == value


# -- arbitrary input: ConfigError naming the field, or success
# -----------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=8),
    st.sampled_from(["1e3", "nan", "inf", "-0", "1_000", "true", "add", "relu", "LN"]),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
field_names = {s: [f.name for f in fields(c)] for s, c in SECTIONS.items()}


@st.composite
def section_dicts(draw, section):
    # Printable keys: a key with a newline in it would (rightly) print on two lines.
    names = st.sampled_from(field_names[section]) | st.text(
        st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp")),
        min_size=1,
        max_size=8,
    )
    return draw(st.dictionaries(names, json_values, max_size=4))


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "task": section_dicts("task"),
            "model": section_dicts("model"),
            "train": section_dicts("train"),
            "name": json_values,
        },
    )
)
def test_from_dict_accepts_or_raises_config_error_naming_the_field(data):
    try:
        config = RunConfig.from_dict(data)
    except ConfigError as exc:
        message = str(exc)
        assert "\n" not in message
        mentioned = {f"{s}.{k}" for s, d in data.items() if isinstance(d, dict) for k in d} | set(
            data
        )
        assert any(message.startswith(f"{name}:") for name in mentioned), (message, data)
        return
    assert RunConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    "data, message",
    [
        ({"task": {"p": 9, "operation": "div"}}, "task.p: operation 'div' needs a prime modulus"),
        (
            {"task": {"train_frac": 1.0}},
            "task.train_frac: must be in the open interval (0, 1), got 1.0",
        ),
        (
            {"task": {"train_frac": 0}},
            "task.train_frac: must be in the open interval (0, 1), got 0.0",
        ),
        ({"task": {"p": "seven"}}, "task.p: expected an integer, got 'seven'"),
        ({"task": {"operation": "pow"}}, "task.operation: got 'pow'; allowed: add, sub"),
        ({"model": {"d_modle": 3}}, "model.d_modle: unknown field"),
        ({"model": {"tied_embeddings": "maybe"}}, "model.tied_embeddings: expected true or false"),
        ({"train": {"lr": "fast"}}, "train.lr: expected a number, got 'fast'"),
        ({"train": {"lr": "inf"}}, "train.lr: expected a finite number"),
        ({"train": {"steps": 0}}, "train.steps: must be >= 1, got 0"),
        ({"training": {}}, "training: unknown config section"),
    ],
)
def test_known_bad_values_name_the_field(data, message):
    with pytest.raises(ConfigError) as info:
        RunConfig.from_dict(data)
    assert str(info.value).startswith(message)


# -- the modular dataset generator
# ---------------------------------------------------------------------


def reference_label(operation: str, x: int, y: int, p: int) -> int:
    """op(x, y) mod p with Python integers; -1 where undefined."""

    def div(a, b):
        return -1 if b % p == 0 else a * pow(b, -1, p) % p

    return {
        "add": lambda: (x + y) % p,
        "sub": lambda: (x - y) % p,
        "mul": lambda: x * y % p,
        "div": lambda: div(x, y),
        "sum_sq": lambda: (x * x + y * y) % p,
        "quad": lambda: (x * x + x * y + y * y) % p,
        "quad_x": lambda: (x * x + x * y + y * y + x) % p,
        "cube_xy": lambda: (x**3 + x * y) % p,
        "cubic": lambda: (x**3 + x * y * y + y) % p,
        "div_or_sub": lambda: div(x, y) if y % 2 == 1 else (x - y) % p,
    }[operation]()


@st.composite
def small_tasks(draw) -> ModularTask:
    operation = draw(st.sampled_from(OPERATIONS))
    p = (
        draw(st.sampled_from([3, 5, 7, 11, 13, 17]))
        if operation in NEEDS_PRIME
        else draw(st.integers(3, 18))
    )
    return task_config(
        operation=operation,
        p=p,
        train_frac=draw(fractions),
        split_seed=draw(st.integers(0, 2**31)),
        val_frac=draw(st.sampled_from([0.0, 0.1, 0.5])),
    )


@SETTINGS
@given(small_tasks())
def test_modular_splits_are_disjoint_cover_all_valid_examples_and_labels_are_correct(config):
    p = config.p
    expected = torch.tensor(
        [reference_label(config.operation, a, b, p) for a in range(p) for b in range(p)]
    )
    n_valid = int((expected >= 0).sum())
    try:
        task = build_task(config)
    except ConfigError as exc:
        # A valid-looking fraction can still leave a split empty for a tiny p: a field error, not a
        # crash.
        n_train = int(config.train_frac * n_valid)
        if str(exc).startswith("task.val_frac: "):
            assert not 1 <= int(config.val_frac * (n_valid - n_train)) < n_valid - n_train
            return
        assert str(exc).startswith("task.train_frac: ")
        assert n_train in (0, n_valid)
        return
    assert task.tokens.shape == (p * p, 3)
    assert torch.equal(task.tokens[:, 0], torch.arange(p).repeat_interleave(p))
    assert torch.equal(task.tokens[:, 1], torch.arange(p).repeat(p))
    assert (task.tokens[:, 2] == p).all()
    assert torch.equal(task.labels, expected)
    train, test = task.splits["train"], task.splits["test"]
    val = task.splits.get("val", torch.zeros(0, dtype=torch.long))
    assert ("val" in task.splits) == (config.val_frac > 0)
    assert set(train.tolist()).isdisjoint(test.tolist())
    assert set(val.tolist()).isdisjoint(train.tolist()) and set(val.tolist()).isdisjoint(
        test.tolist()
    )
    valid = set(torch.nonzero(expected >= 0).squeeze(1).tolist())
    assert set(train.tolist()) | set(val.tolist()) | set(test.tolist()) == valid
    assert len(train) + len(val) + len(test) == len(valid)  # no duplicates either
    assert len(train) == int(config.train_frac * len(valid))
    # The training pairs do not depend on val_frac: validation is carved from the held-out pairs.
    assert torch.equal(train, build_task(replace(config, val_frac=0.0)).splits["train"])
    assert ((task.labels[train] >= 0) & (task.labels[train] < p)).all()


@SETTINGS
@given(small_tasks(), st.integers(0, 2**31))
def test_split_is_a_function_of_the_seed(config, other_seed):
    assume(int(config.train_frac * config.p * (config.p - 1)) >= 1)
    try:
        first = build_task(config)
    except ConfigError:
        assume(False)  # a split left empty at a tiny p: covered by the test above
    again = build_task(config)
    assert all(torch.equal(first.splits[k], again.splits[k]) for k in first.splits)
    from dataclasses import replace

    other = build_task(replace(config, split_seed=other_seed))
    # Same sizes; for a different seed the partition may differ but stays a partition.
    assert {k: len(v) for k, v in other.splits.items()} == {
        k: len(v) for k, v in first.splits.items()
    }


def test_different_seeds_give_different_splits():
    a = build_task(task_config(p=13, split_seed=1, train_frac=0.5)).splits["train"]
    b = build_task(task_config(p=13, split_seed=2, train_frac=0.5)).splits["train"]
    assert not torch.equal(a, b)


@SETTINGS
@given(st.integers(-5, 2100), st.sampled_from(OPERATIONS))
def test_p_is_validated_with_a_message_naming_task_p(p, operation):
    try:
        task_config(operation=operation, p=p)
    except ConfigError as exc:
        assert str(exc).startswith("task.p: ")
        assert p < 3 or p > 2048 or (operation in NEEDS_PRIME and not is_prime(p))
    else:
        assert 3 <= p <= 2048 and (operation not in NEEDS_PRIME or is_prime(p))
