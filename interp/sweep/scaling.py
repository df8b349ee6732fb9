"""Scaling-law fits of a loss against tokens D or parameters N, with intervals over seeds.

`fit_scaling(points)` fits, to the mean loss over seeds at each x:

- a power law with an irreducible term, L = A·x^(−α) + c, with c free or fixed (e.g. at the
  walk's entropy rate H);
- an exponential with the same irreducible term, L = A·exp(−β·x/x_max) + c;

with a Huber loss (`interp.sweep.fits.fit_curve`, `scipy.optimize.least_squares(loss="huber")`),
so one outlying point does not set the exponent, in the space where the law is simplest:

- **c fixed**: on log(L − c), the excess, which spans decades and where the power law is a
  straight line (log A − α log x) and the exponential is log A − β x/x_max. Every point
  weighs by its relative error in the excess. (Fitting log L instead would weigh a point by
  its excess over L, so the few largest-excess points would set α.)
- **c free**: on log L (c cannot enter a logarithm of L − c while it is being fitted); α is
  then mostly set by the points with the largest excess, and c by the smallest: read it
  beside the fixed fit.

`mse_ratio` is the exponential's mean squared residual over the power law's, in the fit's
space (> 1: the power law describes the points better; ANCHORS §3 reports 50–100× for L(D)).

The interval on α is a bootstrap **over seeds** (whole seeds resampled with replacement, the
mean curve refitted), not over the points of one curve, which are not independent draws.

Points limited by optimization rather than by data or size are excluded by a documented,
automatic rule, one of two, chosen by the study:

- `plateau_limited` (L(D) with one epoch, where steps and D are tied and a cosine schedule
  makes every loss fall until the end): the run has **not left its initial plateau**: its
  final excess loss is still above `frac` (10 %) of its excess at step 0, i.e. it has not yet
  removed 90 % of what there is to learn. On the issue's pilot (ER n = 128, m = 640) this
  excludes exactly the points below 2·10⁵ tokens that the pilot excluded by eye.
- `optimization_limited` (L(N) at a fixed D; `Sweep.LIMITED_BY` uses it for x = n_params
  through the walk family's `still_improving` column): the monitored loss still fell by
  more than `tol` (relative) over the last `tail` (20 %) of the steps, so the run's loss says
  more about its step and token budget than about its size. The walks use `tol` = 10 % on
  the excess loss: with one epoch the last 20 % of the steps also bring the last 20 % of
  the tokens, over which an excess limited by data (∝ 1/D, as the L(D) study measures)
  falls by 20 %; a run that fell by more than half that is at least half data- or
  step-limited. A run limited by its size barely moves there: at n = 512 (docs/experiments.md
  §6) the widths that sit far above H fell by 0.5–5.9 % over their last 20 %, the widths
  that approach H by 52–87 %. The plateau rule would be wrong here: a model too small for the
  graph stays far above H however long it trains, which is the limit L(N) measures.

`ScalingFit.excluded` lists the excluded points with the reason.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from interp.sweep.fits import Fit, fit_curve

HUBER_SCALE = 0.1  # in log-loss units: residuals beyond ~10 % count linearly


@dataclass(frozen=True)
class ScalingFit:
    power: Fit
    exponential: Fit
    #: the exponential's mean squared log-residual over the power law's
    mse_ratio: float
    alpha: float
    #: 95 % bootstrap interval over seeds (the fit's t-interval with one seed)
    alpha_interval: tuple[float, float]
    #: the irreducible loss: fitted (free) or as given (fixed)
    irreducible: float
    irreducible_fixed: bool
    n_points: int
    excluded: list[dict[str, Any]] = field(default_factory=list)

    def predict(self, x) -> np.ndarray:
        """The power law's loss L at `x`."""
        return self._loss(self.power, x)

    def predict_exponential(self, x) -> np.ndarray:
        """The exponential's loss L at `x`."""
        return self._loss(self.exponential, x)

    def _loss(self, fit: Fit, x) -> np.ndarray:
        y = np.exp(fit.predict(np.asarray(x, dtype=float)))
        return self.irreducible + y if self.irreducible_fixed else y


def optimization_limited(
    rows: Sequence[dict[str, Any]], column: str = "test_loss", tail: float = 0.2, tol: float = 0.02
) -> bool:
    """Whether `column` still fell by more than `tol` (relative) over the last `tail` of the
    run's steps (the module docstring's exclusion rule)."""
    values = [(r["step"], r[column]) for r in rows if isinstance(r.get(column), (int, float))]
    if len(values) < 2:
        return True
    last_step = values[-1][0]
    start = [v for s, v in values if s <= last_step * (1 - tail)]
    if not start:
        return True
    before, after = start[-1], values[-1][1]
    return before - after > tol * abs(before)


def plateau_limited(
    rows: Sequence[dict[str, Any]], column: str = "excess_loss", frac: float = 0.1
) -> bool:
    """Whether the run's final `column` (an excess loss, ≥ 0) is still above `frac` of its
    value at the first evaluation (the module docstring's plateau rule)."""
    values = [r[column] for r in rows if isinstance(r.get(column), (int, float))]
    if len(values) < 2:
        return True
    return values[-1] > frac * values[0]


def _models(x_max: float, fixed: float | None):
    """The two models in the fit's space: log(L − c) with c fixed, log L with c free."""
    if fixed is None:

        def power(x, log_a, alpha, c):
            return np.log(np.exp(log_a) * np.power(x, -alpha) + np.abs(c))

        def exponential(x, log_a, beta, c):
            return np.log(np.exp(log_a) * np.exp(-beta * x / x_max) + np.abs(c))

    else:

        def power(x, log_a, alpha):
            return log_a - alpha * np.log(x)

        def exponential(x, log_a, beta):
            return log_a - beta * x / x_max

    return power, exponential


def _target(loss: np.ndarray, fixed: float | None) -> np.ndarray:
    """What the fit is made on (module docstring)."""
    return np.log(loss - fixed) if fixed is not None else np.log(loss)


def _fit_pair(x: np.ndarray, loss: np.ndarray, fixed: float | None) -> tuple[Fit, Fit]:
    power, exponential = _models(float(x.max()), fixed)
    floor = fixed if fixed is not None else 0.5 * float(loss.min())
    excess = np.clip(loss - floor, 1e-12, None)
    slope = -np.polyfit(np.log(x), np.log(excess), 1)[0]
    log_a = float(np.log(excess[0]) + slope * np.log(x[0]))
    p0_power = [log_a, max(slope, 0.05)] + ([] if fixed is not None else [floor])
    p0_exp = [float(np.log(excess[0] + 1e-12)), 1.0] + ([] if fixed is not None else [floor])
    y = _target(loss, fixed)
    fits = []
    for function, p0 in ((power, p0_power), (exponential, p0_exp)):
        fits.append(fit_curve(function, x, y, p0, loss="huber", f_scale=HUBER_SCALE))
    return fits[0], fits[1]


def fit_scaling(
    points: pd.DataFrame,
    *,
    x: str = "x",
    loss: str = "loss",
    seed: str = "seed",
    irreducible: float | None = None,
    n_boot: int = 200,
    rng_seed: int = 0,
) -> ScalingFit:
    """Fit L(x) (module docstring). `points` has one row per run: `x`, `loss`, `seed`, and
    optionally `limited` (True: excluded, see `optimization_limited`)."""
    data = points.copy()
    limited = data["limited"].astype(bool) if "limited" in data else pd.Series(False, data.index)
    excluded = [
        {"x": float(r[x]), "seed": r[seed], "reason": "optimization-limited (still improving)"}
        for _, r in data[limited].iterrows()
    ]
    data = data[~limited]
    if irreducible is not None:  # log(L - c) needs L > c: a point at or below it is noise
        below = data[loss] <= irreducible
        excluded += [
            {"x": float(r[x]), "seed": r[seed], "reason": "at or below the irreducible term"}
            for _, r in data[below].iterrows()
        ]
        data = data[~below]
    curve = data.groupby(x)[loss].mean()
    xs, ys = curve.index.to_numpy(float), curve.to_numpy(float)
    needed = 3 if irreducible is not None else 4  # more points than parameters
    if len(xs) < needed:
        raise ValueError(
            f"{len(xs)} values of {x} left after excluding {len(excluded)} optimization-limited "
            f"runs; a fit with c {'fixed' if irreducible is not None else 'free'} needs at "
            f"least {needed}"
        )
    power, exponential = _fit_pair(xs, ys, irreducible)
    target = _target(ys, irreducible)
    ratio = float(
        np.mean(np.square(residuals(exponential, xs, target)))
        / max(float(np.mean(np.square(residuals(power, xs, target)))), 1e-300)
    )
    alpha = power.params["alpha"]
    seeds = data[seed].unique()
    if len(seeds) > 1:
        rng, draws = np.random.default_rng(rng_seed), []
        by_seed = {s: g for s, g in data.groupby(seed)}
        for _ in range(n_boot):
            chosen = rng.choice(seeds, size=len(seeds), replace=True)
            sample = pd.concat([by_seed[s] for s in chosen]).groupby(x)[loss].mean()
            try:
                fit, _ = _fit_pair(
                    sample.index.to_numpy(float), sample.to_numpy(float), irreducible
                )
                draws.append(fit.params["alpha"])
            except (ValueError, RuntimeError):
                continue
        interval = (float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5)))
    else:
        interval = power.interval["alpha"]
    c = irreducible if irreducible is not None else abs(power.params["c"])
    return ScalingFit(
        power,
        exponential,
        ratio,
        alpha,
        interval,
        float(c),
        irreducible is not None,
        len(xs),
        excluded,
    )


def residuals(fit: Fit, xs: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Residuals of either model at the points, in the fit's space (`_target`)."""
    return fit.predict(xs) - target
