"""The fitting module (`interp.sweep.fits`) against planted answers: a known exponent is recovered
with an interval that covers it at the stated rate, the robust fit resists an outlying seed,
and the over-seed intervals follow their documented method."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from interp.sweep.fits import (
    fit_curve,
    fit_power_law,
    power_law,
    power_law_offset,
    seed_interval,
)


def _planted(rng, b=-1.0, a=50.0, noise=0.1, seeds=3):
    gamma = np.repeat(np.logspace(-2, -0.5, 6), seeds)  # 1.5 decades of weight decay
    return gamma, a * gamma**b * np.exp(rng.normal(0, noise, gamma.shape))


def test_a_planted_power_law_is_recovered_with_its_interval():
    fit = fit_power_law(*_planted(np.random.default_rng(0)))
    low, high = fit.interval["b"]
    # One dataset: the estimate is close and the interval narrow (whether it covers -1 is a
    # 95 % event; the coverage test below checks that rate over many datasets).
    assert abs(fit.params["b"] + 1.0) < 0.1 and high - low < 0.2
    assert fit.params["a"] == pytest.approx(50.0, rel=0.25)
    assert fit.predict([0.1]) == pytest.approx(500.0, rel=0.25)


def test_the_exponent_interval_covers_the_truth_at_about_95_percent():
    rng = np.random.default_rng(1)
    hits = [fit_power_law(*_planted(rng, b=-0.7)).interval["b"] for _ in range(400)]
    coverage = np.mean([low < -0.7 < high for low, high in hits])
    assert 0.91 <= coverage <= 0.985, coverage


def test_the_huber_fit_resists_an_outlying_seed():
    rng = np.random.default_rng(2)
    x = np.linspace(1, 10, 20)
    y = power_law_offset(x, 2.0, -1.0, 0.5) + rng.normal(0, 0.01, x.shape)
    y[7] += 3.0  # one diverged seed
    plain = fit_curve(power_law_offset, x, y, p0=[1, -1, 0])
    robust = fit_curve(power_law_offset, x, y, p0=[1, -1, 0], loss="huber", f_scale=0.05)
    assert abs(robust.params["b"] + 1.0) < 0.05 < abs(plain.params["b"] + 1.0)
    assert robust.interval["c"][0] < 0.5 < robust.interval["c"][1]


def test_curve_fit_intervals_and_names():
    rng = np.random.default_rng(3)
    x = np.linspace(1, 5, 12)
    fit = fit_curve(power_law, x, 3.0 * x**0.5 + rng.normal(0, 0.01, x.shape), p0=[1, 1])
    assert list(fit.params) == ["a", "b"] and fit.n == 12
    assert fit.interval["b"][0] < 0.5 < fit.interval["b"][1]
    with pytest.raises(ValueError, match="need more points"):
        fit_curve(power_law, [1.0, 2.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="positive"):
        fit_power_law([1.0, 0.0, 2.0], [1.0, 1.0, 1.0])


def test_seed_intervals_use_a_t_interval_below_5_seeds_and_a_bootstrap_from_5():
    few = seed_interval([1.0, 2.0, 4.0])
    half = stats.t.ppf(0.975, 2) * np.std([1.0, 2.0, 4.0], ddof=1) / np.sqrt(3)
    assert few.method == "t" and few.high - few.mean == pytest.approx(half)
    many = seed_interval([1.0, 1.2, 0.9, 1.1, 1.3, 0.8, 1.05])
    assert many.method == "bootstrap" and many.low < many.mean < many.high and many.n == 7
    assert seed_interval([2.0, float("nan")]).method == "none"
    with pytest.raises(ValueError, match="no finite values"):
        seed_interval([float("nan")])
