"""One writer for run folders: the trainer and the importer write the same layout, metric
columns name weights as TransformerLens does, and folders with the old column names still work."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from interp import runs
from interp.cli import main
from interp.importing import import_tl_checkpoints
from interp.model import parameters, tl_name, tl_named_parameters, to_tl_layout
from interp.runs import load_run
from interp.training import train
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def ln_run(tmp_path_factory) -> Path:
    """A trained 2-layer LayerNorm run (LN weights get columns too), written by the trainer."""
    config = tiny_config(
        model__n_layers=2,
        model__normalization="LN",
        train__steps=4,
        train__ckpt_every=2,
        train__ckpt_log_until=0,
    )
    run_dir = tmp_path_factory.mktemp("writer") / "trained"
    train(config, run_dir, progress=False)
    return run_dir


def test_metric_columns_name_weights_as_transformerlens_does(ln_run):
    run = load_run(ln_run)
    row = run.metrics[-1]
    model = run.model_at(run.steps[-1])
    columns = {k.removeprefix("sum_sq/") for k in row if k.startswith("sum_sq/")}
    assert columns == set(tl_named_parameters(model))
    assert {
        "embed.W_E",
        "blocks.0.attn.W_K",
        "blocks.0.attn.b_K",
        "blocks.1.ln1.w",
        "ln_final.b",
    } <= columns
    assert not any("_original_component" in k or "layers." in k for k in row)
    # Each column is that weight's sum of squares, whatever its layout.
    theirs = model.tl_parameters()
    for name in columns:
        assert row[f"sum_sq/{name}"] == pytest.approx(
            float(theirs[name].detach().double().pow(2).sum()), rel=1e-9
        )
    assert row["sum_sq_weights"] == pytest.approx(
        sum(row[f"sum_sq/{name}"] for name in columns), rel=1e-12
    )


def _export_as_transformerlens(run_dir: Path, out: Path) -> dict:
    """The run's checkpoints as a TL user would have saved them: TL names, TL layouts."""
    run = load_run(run_dir)
    m, t = run.config.model, run.config.task
    out.mkdir()
    cfg = dict(
        d_model=m.d_model,
        n_layers=m.n_layers,
        n_heads=m.n_heads,
        d_head=m.d_head,
        d_mlp=m.d_mlp,
        d_vocab=t.d_vocab,
        d_vocab_out=t.d_vocab_out,
        n_ctx=t.n_ctx,
        act_fn=m.act_fn,
        normalization_type="LN",
    )
    (out / "config.json").write_text(json.dumps(cfg))
    for step in run.steps:
        tl = {
            tl_name(k): to_tl_layout(tl_name(k), v, m.n_heads).contiguous()
            for k, v in run.weights_at(step).items()
        }
        save_file(tl, out / f"step_{step}.safetensors")
    return {
        "operation": t.operation,
        "p": t.p,
        "split_seed": t.split_seed,
        "train_frac": t.train_frac,
    }


def _files(run_dir: Path) -> set[str]:
    return {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file()}


def test_trainer_and_importer_write_the_same_folder(ln_run, tmp_path):
    spec = _export_as_transformerlens(ln_run, tmp_path / "tl")
    imported = import_tl_checkpoints(tmp_path / "tl", tmp_path / "imported", spec).run_dir
    trained_files = {
        f
        for f in _files(ln_run)
        if not f.startswith(runs.TRAINER_STATE_DIR) and f != runs.LOCK_FILE
    }
    assert _files(imported) == trained_files | {"import.json"}
    # The same weights, byte for byte (converted there and back), and the same manifest.
    manifests = [json.loads((d / runs.MANIFEST_FILE).read_text()) for d in (ln_run, imported)]
    assert manifests[0] == manifests[1] and "best" in manifests[0]
    assert (ln_run / runs.SPLIT_FILE).read_bytes() == (imported / runs.SPLIT_FILE).read_bytes()
    # Metric rows measured on the same weights by the same code: equal where both have the column.
    for ours, theirs in zip(load_run(ln_run).metrics, load_run(imported).metrics, strict=True):
        shared = set(ours) & set(theirs)
        assert {k for k in ours if k.startswith("sum_sq")} <= shared and "train_loss" in shared
        assert {k: ours[k] for k in shared} == {k: theirs[k] for k in shared}


def test_old_metric_column_names_still_load_and_analyze(tiny_run, tmp_path, capsys):
    """Folders written before the rename name the columns after the bridge's internals
    (`sum_sq/layers.0._original_component.attn…`); they are only columns, so such a folder
    still loads and analyzes."""
    old = tmp_path / "old"
    shutil.copytree(tiny_run, old, ignore=shutil.ignore_patterns(runs.ANALYSIS_DIR))
    old_name = {
        f"sum_sq/{tl_name(n)}": f"sum_sq/{n}" for n in parameters(load_run(old).new_model())
    }
    renamed = [{old_name.get(k, k): v for k, v in r.items()} for r in load_run(old).metrics]
    (old / runs.METRICS_FILE).write_text(
        "".join(json.dumps(r, sort_keys=True) + "\n" for r in renamed)
    )
    run = load_run(old)
    assert (
        "sum_sq/layers.0._original_component.attn._original_component.k._original_component.bias"
        in run.metrics[-1]
    )
    assert not any(k.startswith("sum_sq/blocks.") for k in run.metrics[-1])
    assert main(["analyze", str(old), "--no-figures", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_checkpoints"] == len(run.steps)
    assert torch.equal(
        run.model_at(run.steps[-1]).W_E, load_run(tiny_run).model_at(run.steps[-1]).W_E
    )
