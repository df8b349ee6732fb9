"""Linear probes: recover a planted linear feature, chance on shuffled labels, sklearn API."""

from __future__ import annotations

import numpy as np
from sklearn.base import clone

from probes.linear import LinearProbe, probe_accuracy


def planted(n=1200, d=32, n_classes=8, seed=0):
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(n_classes, d))
    y = rng.integers(0, n_classes, size=n)
    X = 3.0 * directions[y] + rng.normal(size=(n, d))
    return X, y


def test_probe_recovers_a_planted_feature():
    X, y = planted()
    score = probe_accuracy(X, y, seed=1)
    assert score.accuracy > 0.95
    assert score.n_test == 300 and score.n_train == 900


def test_probe_is_at_chance_on_shuffled_labels():
    X, y = planted()
    score = probe_accuracy(X, y, seed=1, shuffle_labels=True)
    assert score.accuracy < 0.25  # chance is 1/8


def test_probe_is_at_chance_on_noise():
    rng = np.random.default_rng(3)
    score = probe_accuracy(rng.normal(size=(800, 32)), rng.integers(0, 8, size=800))
    assert score.accuracy < 0.25


def test_probe_is_a_sklearn_estimator():
    X, y = planted(n=200)
    probe = LinearProbe(alpha=0.5)
    assert probe.get_params() == {"alpha": 0.5}
    assert clone(probe).get_params() == {"alpha": 0.5}
    assert probe.fit(X, y) is probe
    assert set(probe.classes_) == set(range(8))
    assert probe.predict(X).shape == (200,)


def test_entity_probe_data_deduplicates_the_site_prefix():
    from circuits.families.entity.measures import probe_data
    from interp.model import build_model
    from interp.registry import get_family
    from interp.tasks import build_task
    from tests.families.entity.test_entity_tasks import tiny_entity_run, tiny_task

    config = tiny_entity_run(tiny_task())
    task = build_task(config.task)
    model = build_model(
        config.model, d_vocab=config.task.d_vocab, d_vocab_out=config.task.d_vocab_out, n_ctx=3
    )
    model.eval()
    X, y = probe_data(get_family(task.kind), model, task, "bridge")
    index = task.splits["train_inferred"]
    n_pairs = len({tuple(t) for t in task.tokens[index, :2].tolist()})
    assert X.shape == (3, n_pairs, 32) and y.shape == (n_pairs,)
