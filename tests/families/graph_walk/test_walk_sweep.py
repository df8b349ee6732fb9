"""The scaling study end to end on a tiny graph: a real sweep over the token budget and the
learning rate, the count-based learner on exactly the tokens each run trained on, the
learning rate selected on validation (never test), the fits and the report section."""

from __future__ import annotations

import json

import numpy as np
import pytest

import interp
from circuits.families.graph_walk import limits as walk_limits
from interp.cache import CACHE_ENV
from interp.cli import main
from interp.sweep.scaling import optimization_limited, plateau_limited

TINY = [
    "task.n_nodes=12",
    "task.n_edges=24",
    "task.context=8",
    "task.eval_walks=64",
    "model.d_model=16",
    "model.n_heads=2",
    "model.d_head=8",
    "model.d_mlp=32",
    "train.batch_size=16",
    "train.weight_decay=0.01",
    "train.lr_schedule=cosine",
    "train.ckpt_log_until=0",
    "train.keep_checkpoints=final",
]


def test_replayed_counts_are_exactly_the_batches_the_trainer_drew(tmp_path, monkeypatch):
    from circuits.families.graph_walk import walks as graph_walk
    from interp.presets import resolve_config

    drawn = []
    original = graph_walk.FreshWalks.next_batch

    def recording(self):
        tokens, labels = original(self)
        drawn.append((tokens.clone(), labels.clone()))
        return tokens, labels

    monkeypatch.setattr(graph_walk.FreshWalks, "next_batch", recording)
    config = resolve_config("graph-walk", [*TINY, "train.steps=30", "train.ckpt_every=10"])
    interp.train(config, tmp_path / "run", progress=False)
    monkeypatch.setattr(graph_walk.FreshWalks, "next_batch", original)
    assert len(drawn) == 30
    n = 12
    expected = np.zeros((n, n))
    for tokens, labels in drawn:
        np.add.at(expected, (tokens.reshape(-1).numpy(), labels.reshape(-1).numpy()), 1)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    assert np.array_equal(walk_limits.trained_counts(config, 30), expected)
    assert expected.sum() == 30 * 16 * 8  # tokens_seen
    # Cached on disk: read back without replaying; a damaged cache file is recomputed.
    cached = walk_limits._cache_file(config, 30)
    assert np.array_equal(np.load(cached), expected)
    monkeypatch.setattr(graph_walk.FreshWalks, "next_batch", None)  # a replay would fail
    assert np.array_equal(walk_limits.trained_counts(config, 30), expected)
    monkeypatch.setattr(graph_walk.FreshWalks, "next_batch", original)
    cached.write_bytes(b"not an array")
    assert np.array_equal(walk_limits.trained_counts(config, 30), expected)
    assert walk_limits._cache_file(config, 31) != cached


def test_plateau_rule_excludes_runs_that_kept_most_of_their_initial_excess():
    rows = [{"step": 0, "excess_loss": 2.0}, {"step": 10, "excess_loss": 0.3}]
    assert plateau_limited(rows)  # 15 % of the initial excess left
    assert not plateau_limited([*rows, {"step": 20, "excess_loss": 0.15}])


def test_walk_sweep_fits_scaling_with_the_rate_selected_on_validation(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(
        'base = "graph-walk"\n'
        f"set = {json.dumps(TINY)}\n"
        "seeds = [0, 1]\n"
        '[grid]\n"train.lr" = [0.03, 0.1]\n'
        '[zip]\n"train.steps" = [40, 160, 320, 640]\n"train.ckpt_every" = [20, 80, 160, 320]\n',
        encoding="utf-8",
    )
    out = tmp_path / "sweep"
    assert main(["sweep", "run", str(spec), "--out", str(out), "-q"]) == 0
    assert main(["sweep", "analyze", str(out)]) == 0
    sweep = interp.load_sweep(out)
    t = sweep.table
    assert (t["final_tokens_seen"] == t["train.steps"] * 16 * 8).all()
    assert (t["n_params"] == t["n_params"].iloc[0]).all() and t["n_params"].iloc[0] > 1000
    # The count learner knowing the graph beats the one over all nodes, and both improve with D.
    assert (t["count_excess_graph"] < t["count_excess_all"]).all()
    by_d = t.groupby("final_tokens_seen")["count_excess_graph"].mean()
    assert by_d.is_monotonic_decreasing
    H = float(t["scaling_irreducible"].iloc[0])
    assert np.allclose(t["scaling_loss"], H + t["final_excess_loss"])

    chosen = sweep.selected("final_tokens_seen", "train.lr")
    assert len(chosen) == 8  # one rate per D, both seeds
    for d, group in t.groupby("final_tokens_seen"):
        means = group.groupby("train.lr")["final_train_loss"].mean()
        assert chosen[chosen["final_tokens_seen"] == d]["train.lr"].iloc[0] == means.idxmin()
    with pytest.raises(ValueError, match="test split"):
        sweep.selected("final_tokens_seen", "train.lr", on="final_test_loss")

    # Each study its own exclusion rule: the plateau for L(D), the step budget for L(N).
    from interp import runs

    assert sweep.limited_column("final_tokens_seen") == "optimization_limited"
    assert sweep.limited_column("n_params") == "still_improving"
    for _, row in t.iterrows():
        metrics = runs.read_metrics(out / "runs" / row["run"])
        assert row["still_improving"] == optimization_limited(metrics, "excess_loss", tol=0.1)
        assert row["optimization_limited"] == plateau_limited(metrics)

    fit = sweep.scaling("final_tokens_seen", select="train.lr")
    assert fit.irreducible == pytest.approx(H) and np.isfinite(fit.alpha)
    assert fit.n_points == 3 and 0.2 < fit.alpha < 5  # D = 40 steps: still on its plateau
    assert {e["x"] for e in fit.excluded} == {40 * 16 * 8}
    html = (out / "sweep_report.html").read_text()
    assert "Scaling against final_tokens_seen" in html and "best train.lr per x" in html
