"""Statistics shared by the experiments: one line fit, first-hit times, success rates.

Every power-law exponent in the book (``m*`` against ``d``, escape time against
``delta``, work against ``d``) is a least-squares line through ``(log x, log y)``
made by :func:`fit_loglog_slope`, itself :func:`fit_line` on logarithms: there is
one implementation of the fit and of its confidence interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._validate import check_float

__all__ = ["LineFit", "fit_line", "fit_loglog_slope", "time_to_accuracy", "epochs_to_accuracy",
           "success_rate"]


@dataclass(frozen=True)
class LineFit:
    """Least-squares line ``y = slope x + intercept`` with a confidence interval on the slope.

    Attributes
    ----------
    slope, intercept : float
    low, high : float
        Two-sided confidence interval for the slope at level ``level`` (Student t
        with ``n - 2`` degrees of freedom); NaN when ``n == 2`` (no degree of freedom left).
    stderr : float
        Standard error of the slope (NaN when ``n == 2``).
    n : int
        Number of points.
    level : float
    loglog : bool
        Whether the fit was made on ``(log x, log y)`` (then ``predict`` maps back).
    """

    slope: float
    intercept: float
    low: float
    high: float
    stderr: float
    n: int
    level: float = 0.95
    loglog: bool = False

    def predict(self, x):
        """The fitted curve at ``x`` (a power law when ``loglog``)."""
        x = np.asarray(x, dtype=float)
        if self.loglog:
            return np.exp(self.intercept) * x ** self.slope
        return self.intercept + self.slope * x

    def contains(self, value):
        """Whether ``value`` lies inside the confidence interval of the slope."""
        return bool(self.low <= value <= self.high)

    def __str__(self):
        pct = round(100 * self.level)
        return f"{self.slope:.3f} ({pct}% CI [{self.low:.3f}, {self.high:.3f}], n={self.n})"


def fit_line(x, y, *, level=0.95, min_points=3):
    """Ordinary least-squares line through ``(x, y)`` with a t-interval on the slope.

    Parameters
    ----------
    x, y : array_like of equal length n >= ``min_points``
        Finite values; the points must not all share the same ``x``.
    level : float
        Confidence level in (0, 1).
    min_points : int
        Smallest accepted n: 3 (default) for a fit with a confidence interval,
        2 for a bare slope (the interval is then NaN).

    Returns
    -------
    LineFit

    Examples
    --------
    >>> f = fit_line([0, 1, 2, 3], [1, 3, 5, 7])
    >>> round(f.slope, 12), round(f.intercept, 12)
    (2.0, 1.0)
    """
    from scipy import stats

    level = check_float("level", level, positive=True)
    if not level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if min_points not in (2, 3):
        raise ValueError(f"min_points must be 2 or 3, got {min_points!r}")
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    if x.size < min_points:
        what = "a fit with a confidence interval" if min_points == 3 else "a line"
        raise ValueError(f"{what} needs at least {min_points} points, got {x.size}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("x and y must be finite (drop missing points before fitting)")
    xm = x.mean()
    sxx = float(np.sum((x - xm) ** 2))
    if sxx == 0:
        raise ValueError("x must take at least two distinct values")
    slope = float(np.sum((x - xm) * (y - y.mean())) / sxx)
    intercept = float(y.mean() - slope * xm)
    dof = x.size - 2
    if dof == 0:
        return LineFit(slope, intercept, math.nan, math.nan, math.nan, int(x.size), level)
    resid = y - (intercept + slope * x)
    se = math.sqrt(float(np.sum(resid**2) / dof) / sxx)
    q = float(stats.t.ppf(0.5 + level / 2, dof))
    return LineFit(slope, intercept, slope - q * se, slope + q * se, se, int(x.size), level)


def fit_loglog_slope(x, y, *, level=0.95, drop_invalid=False, min_points=3):
    """Slope of ``log y`` against ``log x`` (a power-law exponent) with a confidence interval.

    Parameters
    ----------
    x, y : array_like of positive numbers
    level : float
        Confidence level of the interval (default 95%).
    drop_invalid : bool
        Drop points where ``x`` or ``y`` is not positive and finite (a sweep
        that did not reach its threshold at some ``x``) instead of refusing them;
        returns None when fewer than ``min_points`` points are left.
    min_points : int
        2 or 3, as in :func:`fit_line`.

    Returns
    -------
    LineFit or None
        With ``loglog=True``; ``slope`` is the exponent ``p`` in ``y ~ C x^p``.

    Examples
    --------
    >>> fit = fit_loglog_slope([1, 2, 4, 8], [3, 12, 48, 192])
    >>> round(fit.slope, 6)
    2.0
    >>> fit_loglog_slope([1, 2, 4], [3, float("nan"), 48], drop_invalid=True) is None
    True
    """
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if drop_invalid:
        if ok.sum() < min_points:
            return None
        x, y = x[ok], y[ok]
    elif not ok.all():
        raise ValueError("fit_loglog_slope needs positive, finite x and y (or drop_invalid=True)")
    f = fit_line(np.log(x), np.log(y), level=level, min_points=min_points)
    return LineFit(f.slope, f.intercept, f.low, f.high, f.stderr, f.n, f.level, loglog=True)


def _first_below(errors, eps):
    """Index of the first entry ``<= eps`` (None and NaN never count), or None."""
    for k, v in enumerate(errors):
        if v is not None and np.isfinite(v) and v <= eps:
            return k
    return None


def time_to_accuracy(times, errors, eps):
    """First time at which ``errors`` drops to ``eps`` or below.

    Parameters
    ----------
    times, errors : sequences of equal length
        A run's recorded ``(time, rel_error)`` pairs, in order.
    eps : float
        The accuracy (relative error) to reach.

    Returns
    -------
    float
        The time, or ``nan`` when the accuracy is never reached.

    Examples
    --------
    >>> time_to_accuracy([0.1, 0.2, 0.3], [0.5, 0.04, 0.01], 0.05)
    0.2
    """
    eps = check_float("eps", eps, positive=True)
    times, errors = list(times), list(errors)
    if len(times) != len(errors):
        raise ValueError(f"times and errors must have equal lengths, got {len(times)} and {len(errors)}")
    k = _first_below(errors, eps)
    return math.nan if k is None else float(times[k])


def epochs_to_accuracy(errors, eps):
    """The first epoch (1-based) whose relative error is at most ``eps``; ``inf`` if none.

    Parameters
    ----------
    errors : sequence of float
        Relative error at the end of every epoch (``history["rel_error"]``);
        None and NaN entries never count.
    eps : float

    Examples
    --------
    >>> epochs_to_accuracy([0.9, 0.3, 0.01, 0.004], 0.05)
    3
    >>> epochs_to_accuracy([0.9, 0.3], 0.05)
    inf
    """
    eps = check_float("eps", eps, positive=True)
    k = _first_below(list(errors), eps)
    return math.inf if k is None else k + 1


def success_rate(errors, eps, *, level=0.95):
    """Fraction of runs whose error is at most ``eps``, with a Wilson score interval.

    Parameters
    ----------
    errors : sequence of float
        One final relative error per run; NaN (a diverged run) counts as a failure.
    eps : float
        Success threshold.
    level : float
        Confidence level of the interval.

    Returns
    -------
    (rate, low, high) : tuple of float

    Examples
    --------
    >>> rate, lo, hi = success_rate([0.01, 0.02, 0.5, float("nan")], 0.05)
    >>> rate, round(lo, 3), round(hi, 3)
    (0.5, 0.15, 0.85)
    """
    from scipy import stats

    eps = check_float("eps", eps, positive=True)
    level = check_float("level", level, positive=True)
    if not level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    e = np.asarray(errors, dtype=float).ravel()
    n = e.size
    if n == 0:
        raise ValueError("success_rate needs at least one run")
    k = int(np.sum(np.isfinite(e) & (e <= eps)))
    p = k / n
    z = float(stats.norm.ppf(0.5 + level / 2))
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return p, max(0.0, centre - half), min(1.0, centre + half)
