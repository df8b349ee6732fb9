"""Scaling-law fits against a planted law: L(D) = H + A·D^(−α) with per-seed noise, the
exponential alternative, the bootstrap over seeds, and the exclusion of points that were
still improving."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from interp.sweep.scaling import fit_scaling, optimization_limited

H, A, ALPHA = 2.3557, 2000.0, 0.95


def planted(seeds=3, noise=0.03, rng=0) -> pd.DataFrame:
    r = np.random.default_rng(rng)
    rows = []
    for seed in range(seeds):
        for k in range(8):
            d = 25_000 * 2**k
            excess = A * d**-ALPHA * np.exp(r.normal(0, noise))
            rows.append({"x": d, "seed": seed, "loss": H + excess})
    return pd.DataFrame(rows)


def test_the_power_law_is_recovered_and_beats_the_exponential():
    fixed = fit_scaling(planted(), irreducible=H, n_boot=100)
    lo, hi = fixed.alpha_interval
    assert lo < ALPHA < hi and hi - lo < 0.1
    assert fixed.alpha == pytest.approx(ALPHA, abs=0.05)
    assert fixed.mse_ratio > 10  # the exponential cannot follow eight doublings
    free = fit_scaling(planted(), n_boot=50)
    assert not free.irreducible_fixed
    assert free.irreducible == pytest.approx(H, abs=0.01)
    predicted = free.predict([25_000 * 2**3])[0]
    assert predicted == pytest.approx(H + A * (25_000 * 8) ** -ALPHA, rel=0.01)


def test_still_improving_points_are_excluded_and_listed():
    points = planted()
    points["limited"] = False
    points.loc[points["x"] == points["x"].max(), "limited"] = True
    fit = fit_scaling(points, irreducible=H, n_boot=20)
    assert fit.n_points == 7 and len(fit.excluded) == 3
    assert all("optimization-limited" in e["reason"] for e in fit.excluded)
    rows = [{"step": s, "test_loss": 3.0 - s / 1000} for s in range(0, 1001, 100)]
    assert optimization_limited(rows)  # still falling over the last 20 %
    flat = [{"step": s, "test_loss": 2.0 + (1.0 if s < 500 else 0.0)} for s in range(0, 1001, 100)]
    assert not optimization_limited(flat)


def test_fixed_fits_are_made_on_the_excess_and_refuse_points_below_the_irreducible_term():
    points = planted(noise=0.0)
    fixed = fit_scaling(points, irreducible=H, n_boot=20)
    # Noise-free: the excess is an exact line in log-log, whatever its size against H.
    assert fixed.alpha == pytest.approx(ALPHA, abs=1e-6)
    assert fixed.predict([50_000])[0] == pytest.approx(H + A * 50_000**-ALPHA, rel=1e-9)
    noisy = pd.concat([points, pd.DataFrame([{"x": 10**7, "seed": 0, "loss": H - 1e-4}])])
    fit = fit_scaling(noisy, irreducible=H, n_boot=20)
    assert [e["reason"] for e in fit.excluded] == ["at or below the irreducible term"]
    assert fit.alpha == pytest.approx(ALPHA, abs=1e-6)
