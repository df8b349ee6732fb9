"""Fitting curves to families of runs, with intervals: one module for the sweeps' fits (grokking
time against weight decay, data-fraction curves) and the scaling-law study.

- `fit_curve(model, x, y)`: least squares (`scipy.optimize.curve_fit`) or, with `loss="huber"`,
  a robust fit (`scipy.optimize.least_squares`); parameters with standard errors and 95 %
  t-intervals from the covariance at the optimum.
- `fit_power_law(x, y)`: y = a·x^b as a straight line in log-log space (exact least squares),
  which is what "t ∝ 1/γ" claims (b = −1); `power_law_offset` adds an irreducible term c.
- `seed_interval(values)`: the mean over seeds with a 95 % interval — a bootstrap
  (`scipy.stats.bootstrap`, BCa) with at least 5 values, a t-interval with fewer.

Intervals are only as good as their assumptions: independent residuals of constant scale
(or, for the log-log fit, constant *relative* scale); with 2-3 points per fit they are wide
and say so. Censored points (runs that never reached the event in their budget) must not be
passed as if they were observations; drop them and report how many, or bound them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats


def power_law(x, a, b):
    return a * np.power(x, b)


def power_law_offset(x, a, b, c):
    return a * np.power(x, b) + c


def exponential(x, a, b):
    return a * np.exp(b * x)


@dataclass(frozen=True)
class Fit:
    """A fitted model: `params` by name, their standard errors and 95 % intervals."""

    model: str
    params: dict[str, float]
    stderr: dict[str, float]
    interval: dict[str, tuple[float, float]]
    n: int
    #: root mean square of the residuals (in the space the fit was made in)
    rms: float
    function: Callable = power_law

    def predict(self, x):
        return self.function(np.asarray(x, dtype=float), *self.params.values())


def _names(function: Callable) -> list[str]:
    return list(function.__code__.co_varnames[1 : function.__code__.co_argcount])


def _fit_result(name, function, popt, pcov, n, residuals) -> Fit:
    names = _names(function)
    dof = max(n - len(popt), 1)
    stderr = (
        np.sqrt(np.clip(np.diag(pcov), 0, None))
        if np.all(np.isfinite(pcov))
        else np.full(len(popt), np.inf)
    )
    t = stats.t.ppf(0.975, dof)
    return Fit(
        model=name,
        params=dict(zip(names, map(float, popt))),
        stderr=dict(zip(names, map(float, stderr))),
        interval={k: (float(v - t * s), float(v + t * s)) for k, v, s in zip(names, popt, stderr)},
        n=n,
        rms=float(np.sqrt(np.mean(np.square(residuals)))),
        function=function,
    )


def fit_curve(
    function: Callable,
    x: Sequence[float],
    y: Sequence[float],
    p0: Sequence[float] | None = None,
    *,
    loss: str = "linear",
    f_scale: float = 1.0,
    bounds: tuple = (-np.inf, np.inf),
) -> Fit:
    """Fit y ≈ function(x, *params). `loss="huber"` down-weights residuals beyond `f_scale`
    (outlying seeds); its covariance is the Gauss-Newton one at the robust optimum. `bounds`
    ((lower, upper), scipy's form) constrain the parameters, e.g. an asymptote ≥ 0."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if len(x) != len(y) or len(x) <= len(_names(function)):
        raise ValueError(
            f"fit_curve: need more points ({len(x)}) than parameters ({len(_names(function))})"
        )
    if loss == "linear":
        popt, pcov = optimize.curve_fit(function, x, y, p0=p0, bounds=bounds, maxfev=20_000)
        return _fit_result(function.__name__, function, popt, pcov, len(x), y - function(x, *popt))
    result = optimize.least_squares(
        lambda p: function(x, *p) - y,
        p0 if p0 is not None else np.ones(len(_names(function))),
        loss=loss,
        f_scale=f_scale,
        bounds=bounds,
    )
    J = result.jac
    dof = max(len(x) - len(result.x), 1)
    s2 = float(np.sum(result.fun**2)) / dof
    pcov = np.linalg.pinv(J.T @ J) * s2
    return _fit_result(
        f"{function.__name__} ({loss})", function, result.x, pcov, len(x), result.fun
    )


def fit_power_law(x: Sequence[float], y: Sequence[float]) -> Fit:
    """y = a·x^b by least squares on log y = log a + b·log x (x, y > 0); `interval["b"]` is the
    95 % t-interval of the exponent."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if np.any(x <= 0) or np.any(y <= 0):
        raise ValueError("fit_power_law: x and y must be positive (a log-log fit)")
    line = stats.linregress(np.log(x), np.log(y))
    n, t = len(x), stats.t.ppf(0.975, max(len(x) - 2, 1))
    residuals = np.log(y) - (line.intercept + line.slope * np.log(x))
    a = float(np.exp(line.intercept))
    return Fit(
        model="power_law (log-log)",
        params={"a": a, "b": float(line.slope)},
        stderr={"a": float(a * line.intercept_stderr), "b": float(line.stderr)},
        interval={
            "a": (
                float(np.exp(line.intercept - t * line.intercept_stderr)),
                float(np.exp(line.intercept + t * line.intercept_stderr)),
            ),
            "b": (float(line.slope - t * line.stderr), float(line.slope + t * line.stderr)),
        },
        n=n,
        rms=float(np.sqrt(np.mean(residuals**2))),
        function=power_law,
    )


@dataclass(frozen=True)
class SeedInterval:
    mean: float
    low: float
    high: float
    n: int
    #: "bootstrap" (n >= 5), "t" (2 <= n < 5) or "none" (one value)
    method: str


def seed_interval(
    values: Sequence[float], *, confidence: float = 0.95, seed: int = 0
) -> SeedInterval:
    """The mean over seeds with its interval (bootstrap with >= 5 values, else a t-interval)."""
    v = np.asarray([x for x in values if np.isfinite(x)], dtype=float)
    if len(v) == 0:
        raise ValueError("seed_interval: no finite values")
    mean = float(v.mean())
    if len(v) == 1:
        return SeedInterval(mean, mean, mean, 1, "none")
    if len(v) >= 5 and np.ptp(v) > 0:
        result = stats.bootstrap(
            (v,),
            np.mean,
            confidence_level=confidence,
            method="BCa",
            random_state=np.random.default_rng(seed),
        )
        return SeedInterval(
            mean,
            float(result.confidence_interval.low),
            float(result.confidence_interval.high),
            len(v),
            "bootstrap",
        )
    half = float(stats.t.ppf(0.5 + confidence / 2, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return SeedInterval(mean, mean - half, mean + half, len(v), "t")
