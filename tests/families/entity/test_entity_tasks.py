"""Entity tasks: generator invariants (known answers), config, knowledge-base files, end to end."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest
import torch

from circuits.families.entity.kb_file import KBFileError
from circuits.families.entity.vocab import EntityVocab
from interp.config import ConfigError, ModelConfig, RunConfig, TaskConfig, TrainConfig, task_config
from interp.model import answer_logits, build_model
from interp.registry import get_family
from interp.tasks import build_task

DATA = Path(__file__).resolve().parents[3] / "experiments" / "data"


def tiny_task(kind: str = "two_hop", **overrides) -> TaskConfig:
    base = dict(
        n_entities=20,
        n_relations=5,
        out_degree=3,
        n_attributes=3,
        n_values=6,
        ood_frac=0.2,
        phi=2.0,
        test_id_frac=0.1,
        split_seed=1,
    )
    own = {f.name for f in fields(get_family(kind).config_class)}
    return task_config(kind, **{k: v for k, v in {**base, **overrides}.items() if k in own})


def tiny_entity_run(task: TaskConfig, **train) -> RunConfig:
    return RunConfig(
        task=task,
        model=ModelConfig(
            n_layers=2,
            d_model=32,
            n_heads=2,
            d_head=16,
            d_mlp=64,
            act_fn="gelu",
            normalization="LN",
            tied_embeddings=True,
            seed=0,
        ),
        train=TrainConfig(
            **{
                "steps": 30,
                "batch_size": 64,
                "grad_clip": 1.0,
                "ckpt_every": 15,
                "ckpt_log_until": 0,
                "warmup_steps": 5,
                **train,
            }
        ),
    )


# -- two-hop ---------------------------------------------------------------------------------


def test_two_hop_inferred_answers_compose_atomic_facts():
    task = build_task(tiny_task())
    kb = task.extras["kb_tail"]
    vocab = EntityVocab(*kb.shape)
    assert tuple(task.splits) == ("train_atomic", "train_inferred", "test_id", "test_ood")
    assert task.train_splits == ("train_atomic", "train_inferred")
    for name in ("train_inferred", "test_id", "test_ood"):
        index = task.splits[name]
        h, r1, r2, b = (task.extras[k][index] for k in ("head", "r1", "r2", "bridge"))
        assert torch.equal(b, kb[h, r1])
        assert torch.equal(task.labels[index], kb[b, r2])
        assert torch.equal(
            task.tokens[index], torch.stack([h, vocab.relation(r1), vocab.relation(r2)], 1)
        )
    # every atomic fact exactly once, as `h r <end>` -> t
    index = task.splits["train_atomic"]
    assert len(index) == int((kb >= 0).sum()) == 20 * 3
    h, r = task.tokens[index, 0], task.tokens[index, 1] - vocab.relation_offset
    assert torch.equal(task.labels[index], kb[h, r])
    assert (task.tokens[index, 2] == vocab.end_token).all()
    assert len({(int(a), int(b)) for a, b in zip(h, r)}) == len(index)


def test_two_hop_split_follows_ood_and_phi():
    config = tiny_task()
    task = build_task(config)
    kb_ood = task.extras["kb_is_ood"]
    n_atomic = int((task.extras["kb_tail"] >= 0).sum())
    n_ood = int(kb_ood.sum())
    assert n_ood == round(config.ood_frac * n_atomic)
    assert len(task.splits["train_inferred"]) == round(config.phi * (n_atomic - n_ood))

    def hop_ood(name):
        index = task.splits[name]
        h, r1, r2, b = (task.extras[k][index] for k in ("head", "r1", "r2", "bridge"))
        return kb_ood[h, r1], kb_ood[b, r2]

    for name in ("train_inferred", "test_id"):
        first, second = hop_ood(name)
        assert not first.any() and not second.any()
    first, second = hop_ood("test_ood")
    assert len(first) > 0 and first.all() and second.all()
    train = {tuple(t) for t in task.tokens[task.splits["train_inferred"]].tolist()}
    test = {tuple(t) for t in task.tokens[task.splits["test_id"]].tolist()}
    assert not train & test


def test_entity_tasks_are_deterministic():
    for kind in ("two_hop", "comparison"):
        a, b = build_task(tiny_task(kind)), build_task(tiny_task(kind))
        assert torch.equal(a.tokens, b.tokens) and torch.equal(a.labels, b.labels)
        assert all(torch.equal(a.splits[k], b.splits[k]) for k in a.splits)
        assert all(torch.equal(a.extras[k], b.extras[k]) for k in a.extras)
        c = build_task(tiny_task(kind, split_seed=2))
        assert not torch.equal(a.tokens, c.tokens)


def test_phi_too_large_is_a_config_error():
    with pytest.raises(ConfigError, match="task.phi"):
        build_task(tiny_task(phi=50.0))


# -- comparison ------------------------------------------------------------------------------


def test_comparison_labels_and_split():
    config = tiny_task("comparison")
    task = build_task(config)
    kb, kb_ood = task.extras["kb_value"], task.extras["kb_is_ood"]
    vocab = EntityVocab(kb.shape[0], kb.shape[1], config.n_values)
    for name in ("train_inferred", "test_id", "test_ood"):
        index = task.splits[name]
        a, e1, e2 = (task.extras[k][index] for k in ("attribute", "e1", "e2"))
        assert (e1 != e2).all()
        assert torch.equal(task.tokens[index], torch.stack([vocab.relation(a), e1, e2], 1))
        v1, v2 = kb[e1, a], kb[e2, a]
        expected = ["<=>"[int(torch.sign(x - y)) + 1] for x, y in zip(v1, v2)]
        assert [task.token_names[int(t)] for t in task.labels[index]] == expected
        is_ood = name == "test_ood"
        assert (kb_ood[e1, a] == is_ood).all() and (kb_ood[e2, a] == is_ood).all()
    # atomic: `attr e <end>` -> value token, every (entity, attribute) once
    index = task.splits["train_atomic"]
    assert len(index) == kb.numel()
    a, e = task.tokens[index, 0] - vocab.relation_offset, task.tokens[index, 1]
    assert torch.equal(task.labels[index], vocab.value(kb[e, a]))
    n_id_atomic = int((~kb_ood).sum())
    assert len(task.splits["train_inferred"]) == round(config.phi * n_id_atomic)
    # ood_frac of the entities per attribute
    assert (kb_ood.sum(0) == round(config.ood_frac * kb.shape[0])).all()


# -- config ----------------------------------------------------------------------------------


def test_entity_config_vocab_and_round_trip():
    config = tiny_entity_run(tiny_task())
    assert config.task.d_vocab == 20 + 5 + 1 == config.task.d_vocab_out
    assert tiny_task("comparison").d_vocab == 20 + 3 + 6 + 4
    assert config.task.n_ctx == 3
    assert RunConfig.from_dict(config.to_dict()) == config
    assert RunConfig().with_overrides(["task.kind=two_hop", "task.phi=3.6"]).task.phi == 3.6
    # modular behaviour unchanged
    assert (task_config().d_vocab, task_config().d_vocab_out, task_config().n_ctx) == (114, 113, 3)


@pytest.mark.parametrize(
    "overrides, field",
    [
        (dict(out_degree=9), "task.out_degree"),
        (dict(ood_frac=1.0), "task.ood_frac"),
        (dict(phi=0.0), "task.phi"),
        (dict(kind="comparison", n_values=1), "task.n_values"),
    ],
)
def test_entity_config_validation_names_the_field(overrides, field):
    with pytest.raises(ConfigError, match=field):
        tiny_task(**overrides)


@pytest.mark.parametrize("kind", ["two_hop", "comparison"])
def test_answer_logits_fast_path_matches_bridge(kind):
    task = tiny_task(kind)
    for tied, layers in ((True, 2), (False, 3)):
        model_config = ModelConfig(
            n_layers=layers,
            d_model=32,
            n_heads=2,
            d_head=16,
            d_mlp=64,
            normalization="LN",
            tied_embeddings=tied,
            seed=3,
        )
        model = build_model(
            model_config, d_vocab=task.d_vocab, d_vocab_out=task.d_vocab_out, n_ctx=task.n_ctx
        )
        tokens = build_task(task).tokens[:64]
        with torch.inference_mode():
            torch.testing.assert_close(
                answer_logits(model, tokens), model(tokens)[:, -1], atol=1e-5, rtol=1e-5
            )


# -- knowledge-base files --------------------------------------------------------------------


def _write(tmp_path: Path, name: str, lines: list) -> str:
    path = tmp_path / name
    path.write_text(
        "".join((json.dumps(item) if not isinstance(item, str) else item) + "\n" for item in lines)
    )
    return str(path)


def test_example_kb_files_load():
    task = build_task(task_config(kind="two_hop", kb_file=str(DATA / "family.jsonl"), phi=3.0))
    assert task.token_names[0] == "Ada" and "mother" in task.token_names
    assert len(task.splits["query"]) == 2
    # the query's answer is the composition of the named facts
    kb = task.extras["kb_tail"]
    (h, r1, r2) = task.tokens[task.splits["query"][0]].tolist()
    names = task.token_names
    assert names[h] == "Ada" and names[r1] == "mother" and names[r2] == "boss"
    assert int(task.labels[task.splits["query"][0]]) == int(
        kb[kb[h, r1 - kb.shape[0]], r2 - kb.shape[0]]
    )
    task = build_task(
        task_config(kind="comparison", kb_file=str(DATA / "people.csv"), phi=3.0, ood_frac=0.2)
    )
    assert "age" in task.token_names and len(task.splits["test_ood"]) > 0


@pytest.mark.parametrize(
    "kind, lines, message",
    [
        (
            "two_hop",
            [
                {"head": "a", "relation": "r", "tail": "b"},
                {"head": "a", "relation": "r", "taill": "c"},
            ],
            r":2: unknown field 'taill'",
        ),
        (
            "two_hop",
            [
                {"head": "a", "relation": "r", "tail": "b"},
                {"head": "c", "relation": "r", "tail": "a"},
                {"head": "a", "relation": "r", "tail": "c"},
            ],
            r":3: contradicts line 1",
        ),
        ("two_hop", ["", ""], r"empty file"),
        (
            "two_hop",
            [{"head": "a", "relation": "r", "tail": "b"}, {"query": ["zed", "r", "r"]}],
            r":2: unknown entity 'zed' in a query",
        ),
        (
            "two_hop",
            [{"head": "a", "relation": "r", "tail": "b"}, "{not json"],
            r":2: not valid JSON",
        ),
        (
            "comparison",
            [
                {"entity": "a", "attribute": "age", "value": 3},
                {"entity": "b", "attribute": "age", "value": "old"},
            ],
            r":2: bad value for 'value'",
        ),
        (
            "comparison",
            [
                {"entity": "a", "attribute": "age", "value": 3},
                {"entity": "a", "attribute": "age", "value": 4},
            ],
            r":2: contradicts line 1",
        ),
        (
            "comparison",
            [{"entity": "a", "attribute": "age", "value": 3}, {"query": ["age", "a", "nobody"]}],
            r":2: unknown entity 'nobody' in a query",
        ),
    ],
)
def test_kb_file_errors_name_the_line(tmp_path, kind, lines, message):
    path = _write(tmp_path, "kb.jsonl", lines)
    with pytest.raises(KBFileError, match=message):
        build_task(task_config(kind=kind, kb_file=path))


def test_kb_csv_errors_name_the_line(tmp_path):
    path = tmp_path / "kb.csv"
    path.write_text("entity,attribute,colour\na,age,3\n")
    with pytest.raises(KBFileError, match=r"kb.csv:1: unknown field 'colour'"):
        build_task(task_config(kind="comparison", kb_file=str(path)))
    path.write_text("entity,attribute,value\na,age,3\nb,age,x\n")
    with pytest.raises(KBFileError, match=r"kb.csv:3: bad value"):
        build_task(task_config(kind="comparison", kb_file=str(path)))
    path.write_text("entity,attribute,value\n")
    with pytest.raises(KBFileError, match="empty file"):
        build_task(task_config(kind="comparison", kb_file=str(path)))


def test_kb_file_trains_and_analyzes_end_to_end(tmp_path, capsys, monkeypatch):
    """A knowledge base from a file, through the CLI: train (circuit_score logged) -> analyze.

    The file is given by a path relative to the working directory; the run keeps its own copy,
    so analysis works from elsewhere after the original is gone."""
    from interp.cli import main
    from interp.runs import load_run

    source_dir = tmp_path / "facts"
    source_dir.mkdir()
    (source_dir / "family.jsonl").write_bytes((DATA / "family.jsonl").read_bytes())
    monkeypatch.chdir(source_dir)
    config = tiny_entity_run(task_config(kind="two_hop", kb_file="family.jsonl", phi=2.0))
    config_file = tmp_path / "family.json"
    config_file.write_text(json.dumps(config.to_dict()))
    out = tmp_path / "run"
    assert main(["train", str(config_file), "--out", str(out), "-q"]) == 0
    assert json.loads((out / "config.json").read_text())["task"]["kb_file"] == "kb.jsonl"
    assert (out / "kb.jsonl").read_bytes() == (DATA / "family.jsonl").read_bytes()
    (source_dir / "family.jsonl").unlink()
    monkeypatch.chdir(tmp_path)
    run = load_run(out)
    assert run.steps == [0, 15, 30]
    assert set(run.task.splits) == {
        "train_atomic",
        "train_inferred",
        "test_id",
        "test_ood",
        "query",
    }
    assert all(0.0 <= r["circuit_score"] <= 1.0 for r in run.metrics)
    capsys.readouterr()
    assert main(["analyze", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["kind"] == "two_hop" and info["n_checkpoints"] == 3
    assert set(info["parts"]) == {"logit_lens", "patching", "probes"}
    assert (
        "query_acc" in info["final_splits"] and info["figures"] and Path(info["figures"]).exists()
    )
    # Small held-out splits carry a 95 % Wilson interval, with the n behind it.
    n_ood = len(run.task.splits["test_ood"])
    ood = info["final_intervals"]["test_ood_acc"]
    assert (
        ood["n"] == n_ood < 1000
        and ood["low"] <= info["final_splits"]["test_ood_acc"] <= ood["high"]
    )
    assert info["split_sizes"]["test_ood_acc"] == n_ood
    capsys.readouterr()
    assert main(["analyze", str(out), "--no-figures"]) == 0
    assert f"test_ood_acc {info['final_splits']['test_ood_acc']:.3f} [" in capsys.readouterr().out
    header = (out / "analysis" / "table.csv").read_text().splitlines()[0].split(",")
    for key in (
        "step",
        "train_acc",
        "test_acc",
        "circuit_score",
        "train_atomic_acc",
        "test_ood_acc",
        "lens_bridge_mrr_L1",
        "patch_mid_L1",
        "patch_r2_last_L0",
        "probe_bridge_acc_L1",
        "probe_bridge_shuffled_L1",
        "probe_bridge_random_L1",
    ):
        assert key in header, key
    capsys.readouterr()
    assert main(["analyze", str(out), "--fourier"]) == 2  # a modular analysis on an entity run


@pytest.mark.parametrize("kind", ["two_hop", "comparison"])
def test_loaded_splits_keep_the_task_order(tmp_path, kind):
    """safetensors hands back a file's tensors in an order that changes from load to load; the
    loaded task must keep the generator's order, since its first held-out split (test-ID) is
    the one the analysis table's `test_acc` column measures."""
    from interp.run_writer import save_split
    from interp.runs import load_task

    config = tiny_entity_run(tiny_task(kind))
    task = build_task(config.task)
    save_split(tmp_path, task)
    assert list(task.splits)[2] == "test_id"
    for _ in range(20):  # 4 splits: a random order is the right one 1 time in 24
        loaded = load_task(tmp_path, config)
        assert list(loaded.splits) == list(task.splits)
        assert all(torch.equal(loaded.splits[name], task.splits[name]) for name in task.splits)


def test_entity_analysis_with_parallel_workers_equals_serial(tmp_path):
    """Checkpoints analyzed by 2 worker threads (own models, own random-init baselines)."""
    from circuits.pipeline.analyze import analyze_run
    from interp.runs import load_run
    from interp.training import train

    config = tiny_entity_run(tiny_task("comparison"), steps=45)
    train(config, tmp_path / "run", progress=False)
    run = load_run(tmp_path / "run")
    serial = analyze_run(run, workers=1)
    parallel = analyze_run(run, workers=2)
    assert parallel.steps == serial.steps == [0, 15, 30, 45]
    for row_par, row_ser in zip(parallel.rows, serial.rows, strict=True):
        assert row_par.keys() == row_ser.keys()
        for key, value in row_ser.items():
            assert row_par[key] == pytest.approx(value, rel=1e-6, abs=1e-9, nan_ok=True), key


@pytest.mark.parametrize("kind", ["two_hop", "comparison"])
def test_shuffle_labels_randomizes_only_training_inferred_answers(kind):
    true = build_task(tiny_task(kind))
    shuffled = build_task(tiny_task(kind, shuffle_labels=True))
    assert torch.equal(true.tokens, shuffled.tokens)
    for name, index in true.splits.items():
        same = torch.equal(true.labels[index], shuffled.labels[index])
        assert same == (name != "train_inferred"), name
    inferred = true.splits["train_inferred"]
    assert set(shuffled.labels[inferred].tolist()) <= set(true.labels[inferred].tolist())
    assert (true.labels[inferred] == shuffled.labels[inferred]).double().mean() < 0.6
