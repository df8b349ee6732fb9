"""Linear probes on cached residual-stream states, as scikit-learn estimators.

`LinearProbe` standardizes the features and fits a ridge classifier (closed form, so
a probe per layer and checkpoint stays cheap with ~100 classes). `probe_accuracy` fits it
on a random part of the examples and scores it on the rest; with `shuffle_labels=True` the
training labels are permuted first (the label-shuffling baseline: held-out accuracy at
chance means the probe cannot memorize its way to a high score).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import RidgeClassifier
from sklearn.preprocessing import StandardScaler


class LinearProbe(ClassifierMixin, BaseEstimator):
    """Standardize, then a ridge classifier. `fit(X, y)` returns self; `score` is accuracy."""

    def __init__(self, alpha: float = 1.0):
        self.alpha = alpha

    def fit(self, X, y):
        X = np.asarray(X, dtype=np.float64)
        self.scaler_ = StandardScaler().fit(X)
        self.classifier_ = RidgeClassifier(alpha=self.alpha).fit(self.scaler_.transform(X), y)
        self.classes_ = self.classifier_.classes_
        return self

    def decision_function(self, X):
        return self.classifier_.decision_function(
            self.scaler_.transform(np.asarray(X, dtype=np.float64))
        )

    def predict(self, X):
        return self.classifier_.predict(self.scaler_.transform(np.asarray(X, dtype=np.float64)))


@dataclass(frozen=True)
class ProbeScore:
    accuracy: float
    #: accuracy of always answering the most frequent training label
    majority: float
    n_train: int
    n_test: int


def probe_accuracy(
    X,
    y,
    *,
    test_frac: float = 0.25,
    seed: int = 0,
    shuffle_labels: bool = False,
    alpha: float = 1.0,
) -> ProbeScore:
    """Held-out accuracy of a `LinearProbe` on a seeded random split of (X, y)."""
    X, y = np.asarray(X, dtype=np.float64), np.asarray(y)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(y))
    n_test = max(1, int(round(test_frac * len(y))))
    test, train = order[:n_test], order[n_test:]
    y_train = rng.permutation(y[train]) if shuffle_labels else y[train]
    probe = LinearProbe(alpha=alpha).fit(X[train], y_train)
    values, counts = np.unique(y_train, return_counts=True)
    majority = float(np.mean(y[test] == values[np.argmax(counts)]))
    return ProbeScore(float(probe.score(X[test], y[test])), majority, len(train), len(test))
