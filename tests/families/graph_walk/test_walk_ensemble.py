"""`interp ensemble`: K graph-walk members as one predictor, measured with the paired excess
estimator beside the count learners; an ensemble of one is that member; a member of another
graph or vocabulary is refused naming the difference."""

from __future__ import annotations

import json
import shutil

import pytest

import interp
from circuits.families.graph_walk import ensemble as walk_ensemble
from circuits.families.graph_walk.limits import kt_excess_loss, transition_counts
from circuits.families.graph_walk.task import walk_graph
from interp.cli import main
from interp.presets import resolve_config
from tests.sweep_helpers import WALK_SET

TINY = [*WALK_SET, "train.steps=40", "train.ckpt_every=20"]


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    root = tmp_path_factory.mktemp("members")
    paths = []
    for seed in (0, 1):
        config = resolve_config("graph-walk", [*TINY, f"model.seed={seed}", f"train.seed={seed}"])
        interp.train(config, root / f"m{seed}", progress=False)
        paths.append(root / f"m{seed}")
    return paths


def test_an_ensemble_of_one_is_that_member(members):
    result = walk_ensemble.evaluate_ensemble([members[0]])
    last = interp.load_run(members[0]).metrics[-1]
    for name in walk_ensemble.COMBINATIONS:
        assert result.combined[name].excess_loss == pytest.approx(last["excess_loss"], abs=1e-6)
        assert result.combined[name].excess_loss_se == pytest.approx(last["excess_loss_se"], 1e-4)
    assert result.difference["mean"] == pytest.approx(0.0, abs=1e-9)
    assert result.members[0]["step"] == 40 and result.k == 1


def test_two_members_combine_both_ways_beside_the_count_learners(members, tmp_path, capsys):
    out = tmp_path / "ens"
    assert main(["ensemble", str(members[0]), f"{members[1]}@40", "--out", str(out)]) == 0
    summary = json.loads((out / "ensemble.json").read_text())
    assert summary["k"] == 2 and summary["default"] == "logits"
    own = [m["excess_loss"] for m in summary["members"]]
    logits, probs = (summary["combined"][n]["excess_loss"] for n in ("logits", "probs"))
    # Per token, a mixture and a normalized geometric mean both lose no more than the
    # members' mean log-loss, so the paired excess cannot exceed the members' mean.
    assert logits <= sum(own) / 2 + 1e-12 and probs <= sum(own) / 2 + 1e-12
    assert summary["difference"]["mean"] == pytest.approx(probs - logits, abs=1e-9)
    assert summary["excess_loss"] == logits
    # The members share the corpus: the count learners see it once.
    run = interp.load_run(members[0])
    corpus = run.task.split("train")
    config = run.config
    graph = walk_graph(config.task)
    walks = corpus[0].new_empty(corpus[0].shape[0], corpus[0].shape[1] + 1)
    walks[:, :-1], walks[:, -1] = corpus[0], corpus[1].reshape(corpus[0].shape)[:, -1]
    counts = transition_counts(walks, graph.n)
    assert summary["count_transitions"] == 64 * 8
    assert summary["count_excess_graph"] == pytest.approx(kt_excess_loss(graph, counts, True))
    assert summary["count_excess_all"] == pytest.approx(kt_excess_loss(graph, counts, False))
    assert len(summary["kl_per_node"]["logits"]) == graph.n
    printed = capsys.readouterr().out
    assert "averaging logits (default)" in printed and "probs − logits" in printed
    assert "| ensemble, averaging probs |" in (out / "ensemble.md").read_text()


def edited_copy(source, tmp_path, name, **task):
    copy = tmp_path / name
    shutil.copytree(source, copy)
    config = json.loads((copy / "config.json").read_text())
    config["task"].update(task)
    (copy / "config.json").write_text(json.dumps(config))
    return copy


@pytest.mark.parametrize(
    "change, named",
    [
        ({"graph_seed": 1}, "graphs differ (task.graph_seed: 0"),
        ({"n_nodes": 13}, "vocabularies differ: 12 tokens"),
        ({"split_seed": 5}, "members differ in task.split_seed"),
    ],
)
def test_a_member_of_another_graph_vocabulary_or_walks_is_refused(
    members, tmp_path, capsys, change, named
):
    other = edited_copy(members[1], tmp_path, "other", **change)
    assert main(["ensemble", str(members[0]), str(other)]) == 2
    err = capsys.readouterr().err.strip()
    assert named in err and len(err.splitlines()) == 1
