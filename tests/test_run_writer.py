"""One writer for run folders: the trainer and the importer write the same layout."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import save_file

from interp import runs
from interp.importing import import_tl_checkpoints
from interp.model import tl_name, to_tl_layout
from interp.runs import load_run
from interp.training import train
from tests.conftest import tiny_config


@pytest.fixture(scope="module")
def ln_run(tmp_path_factory) -> Path:
    """A trained 2-layer LayerNorm run, written by the trainer."""
    config = tiny_config(model__n_layers=2, model__normalization="LN", train__steps=4, train__ckpt_every=2,
                         train__ckpt_log_until=0)
    run_dir = tmp_path_factory.mktemp("writer") / "trained"
    train(config, run_dir, progress=False)
    return run_dir


def _export_as_transformerlens(run_dir: Path, out: Path) -> dict:
    """The run's checkpoints as a TL user would have saved them: TL names, TL layouts."""
    run = load_run(run_dir)
    m, t = run.config.model, run.config.task
    out.mkdir()
    cfg = dict(d_model=m.d_model, n_layers=m.n_layers, n_heads=m.n_heads, d_head=m.d_head, d_mlp=m.d_mlp,
               d_vocab=t.d_vocab, d_vocab_out=t.d_vocab_out, n_ctx=t.n_ctx, act_fn=m.act_fn, normalization_type="LN")
    (out / "config.json").write_text(json.dumps(cfg))
    for step in run.steps:
        tl = {tl_name(k): to_tl_layout(tl_name(k), v, m.n_heads).contiguous() for k, v in run.weights_at(step).items()}
        save_file(tl, out / f"step_{step}.safetensors")
    return {"operation": t.operation, "p": t.p, "split_seed": t.split_seed, "train_frac": t.train_frac}


def _files(run_dir: Path) -> set[str]:
    return {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file()}


def test_trainer_and_importer_write_the_same_folder(ln_run, tmp_path):
    spec = _export_as_transformerlens(ln_run, tmp_path / "tl")
    imported = import_tl_checkpoints(tmp_path / "tl", tmp_path / "imported", spec).run_dir
    trained_files = {f for f in _files(ln_run) if not f.startswith(runs.TRAINER_STATE_DIR) and f != runs.LOCK_FILE}
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
