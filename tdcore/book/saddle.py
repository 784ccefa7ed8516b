"""Code of the chapter *Zero is a high-order saddle* (chapters/saddle.ipynb): escape times from a small start.

One component, target ``v^{(x) l}``: :func:`saddle_escape_times` measures how long
vanilla GD (objective (2), ``tdcore.vanilla_gd``) and the 2-homogeneous GD of
Section 4 (``tdcore.homogeneous_gd``) take to leave an initialisation of size
``delta``, and fits the power law (vanilla, ``~ delta^{-(l-2)}``) and the
logarithm (2-homogeneous, ``~ log(1/delta) / l``).  The algorithm1 chapter uses
the same measurement and figure.
"""

from __future__ import annotations

import math
import numbers
import time
from dataclasses import dataclass

import numpy as np

from .._dynamics import homogeneous_gd, vanilla_gd
from .._stats import LineFit, fit_line, fit_loglog_slope
from .._tensor import random_target
from .._validate import check_choice, check_float, check_int, check_seeds
from .style import legend, method_color, new_ax

__all__ = ["saddle_escape_times", "EscapeTimes", "plot_escape_times", "plot_saddle_trajectories",
           "explore_saddle"]


@dataclass
class EscapeTimes:
    """Result of :func:`saddle_escape_times`.

    Attributes
    ----------
    deltas : ndarray
        Initialisation sizes.
    times : ndarray (n_seeds, n_deltas)
        Escape time (steps x eta) per seed and size; NaN where the run did not escape.
    model : str
        ``"vanilla"`` or ``"homogeneous"``.
    order, d : int
    eta : float
    threshold : float
        Relative error that counts as escaped.
    overlap : float or None
        Initial cosine with the target direction (None: uniform directions).
    fit : LineFit
        Log-log fit of the median time against ``delta`` (the power-law exponent).
    fit_log : LineFit
        Linear fit of the median time against ``log(1/delta)``.
    trajectories : dict
        ``step`` and ``rel_error`` (n_seeds, n_deltas, n_rec) of the runs.
    elapsed : float
    """

    deltas: np.ndarray
    times: np.ndarray
    model: str
    order: int
    d: int
    eta: float
    threshold: float
    overlap: object
    fit: LineFit
    fit_log: LineFit
    trajectories: dict
    elapsed: float

    @property
    def median_times(self):
        """Median escape time over seeds, per ``delta``."""
        return np.nanmedian(self.times, axis=0)

    @property
    def all_escaped(self):
        """Whether every run escaped."""
        return bool(np.all(np.isfinite(self.times)))


def _check_deltas(deltas):
    try:
        values = [float(v) if isinstance(v, numbers.Real) and not isinstance(v, bool) else v
                  for v in deltas]
    except TypeError as exc:
        raise TypeError(f"deltas must be a sequence of numbers, got {deltas!r}") from exc
    if not values:
        raise ValueError("deltas must contain at least one value")
    return np.array([check_float(f"deltas[{k}]", v, positive=True) for k, v in enumerate(values)])


def _saddle_init(d, order, seeds, overlap, target_seed):
    """The target ``v^{(x) l}`` and one unit initial direction per seed."""
    target = random_target(d, 1, order, seed=np.random.default_rng([target_seed, 0]))
    v = np.asarray(target.factors[:, 0], float)
    Z = []
    for s in seeds:
        rng = s if isinstance(s, np.random.Generator) else np.random.default_rng([s, 1])
        if overlap is None:
            z = rng.standard_normal(d)
            z /= np.linalg.norm(z)
            z = z if z @ v >= 0 else -z
        else:
            w = rng.standard_normal(d)
            w -= (w @ v) * v
            w /= np.linalg.norm(w)
            z = overlap * v + math.sqrt(1 - overlap**2) * w
        Z.append(z)
    return target, np.array(Z)


def saddle_escape_times(order, deltas, *, model="vanilla", d=10, seeds=(0, 1, 2), overlap=0.5, eta=None,
                        threshold=0.5, max_time=None, target_seed=0, level=0.95, record_points=200):
    """Time for gradient descent to leave a small initialisation, against its size ``delta``.

    Target ``T* = v^{(x) l}`` (unit ``v``); one component (``m = 1``) started at
    ``delta z`` with a unit direction ``z`` whose cosine with ``v`` is
    ``overlap`` (the sign is chosen positive: with ``c = +1`` and odd ``l`` a
    negative overlap never escapes).  The escape time is ``eta`` times the first
    step at which the relative error is below ``threshold``.

    * ``model="vanilla"``: objective (2) with the weight fixed at ``c = 1``; near
      zero ``d(v.u)/dt ~ l (v.u)^{l-1}``, so escape takes time ``~ delta^{-(l-2)}``.
    * ``model="homogeneous"``: the 2-homogeneous model ``a ||u||^{2-l} u^{(x) l}``
      (``a = +1``) trained as in Algorithm 1 without boost; the norm grows
      exponentially, so escape takes time ``~ log(1/delta) / l``.

    Parameters
    ----------
    order : int
        ``l >= 3``.
    deltas : sequence of float
        Initialisation sizes (at least 3).
    model : {"vanilla", "homogeneous"}
    d : int
    seeds : sequence of int
        One initial direction per seed (same directions for every ``delta``).
    overlap : float in (0, 1] or None
        Initial cosine with ``v``; None draws ``z`` uniformly (sign flipped to be positive).
    eta : float, optional
        Step size; default ``0.5 / l^2``: a quarter of the stability limit ``2 / l^2`` at
        the solution, where the Hessian's top eigenvalue is ``l^2``.
    threshold : float
        Relative error that counts as escaped.
    max_time : float, optional
        Give up after this much time (default: three times the predicted escape
        time of the smallest ``delta`` plus 20).
    target_seed : int
    level : float
    record_points : int
        About how many points of each trajectory to keep.

    Returns
    -------
    EscapeTimes

    Examples
    --------
    >>> res = saddle_escape_times(3, [0.05, 0.1, 0.2], d=4, seeds=[0])
    >>> res.all_escaped, bool(res.median_times[0] > res.median_times[-1])
    (True, True)
    """
    t0 = time.perf_counter()
    order = check_int("order", order, minimum=3)
    deltas = _check_deltas(deltas)
    if deltas.size < 3:
        raise ValueError(f"deltas must contain at least 3 values to fit an exponent, got {deltas.size}")
    check_choice("model", model, ("vanilla", "homogeneous"))
    d = check_int("d", d, minimum=2)
    seeds = check_seeds(seeds)
    if overlap is not None:
        overlap = check_float("overlap", overlap, positive=True)
        if overlap > 1:
            raise ValueError(f"overlap must be in (0, 1] or None, got {overlap}")
    eta = 0.5 / order**2 if eta is None else check_float("eta", eta, positive=True)
    threshold = check_float("threshold", threshold, positive=True)
    if not threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    record_points = check_int("record_points", record_points, minimum=1)
    target, Z = _saddle_init(d, order, seeds, overlap, target_seed)
    cos0 = np.abs(Z @ np.asarray(target.factors[:, 0], float))
    dmin = float(deltas.min()) * max(float(cos0.min()), 1e-3)
    if max_time is None:
        if model == "vanilla":
            predicted = dmin ** (2 - order) / (order * (order - 2))
        else:
            predicted = math.log(1.0 / dmin) / order + 5.0
        max_time = 3.0 * predicted + 20.0
    max_time = check_float("max_time", max_time, positive=True)
    steps = int(math.ceil(max_time / eta))
    nS, nD = len(seeds), deltas.size
    U0 = (deltas[None, :, None] * Z[:, None, :]).reshape(nS * nD, d, 1)
    rec = max(1, steps // record_points)
    if model == "vanilla":
        res = vanilla_gd(target, 1, steps=steps, eta=eta, init=U0, weights=np.ones(1), record_every=rec,
                         hit_threshold=threshold, stop_when_hit=True, divergence="mark")
    else:
        res = homogeneous_gd(target, U0, np.ones(1), steps=steps, eta=eta, record_every=rec,
                             hit_threshold=threshold, stop_when_hit=True)
    times = np.asarray(res.hit_time, dtype=float).reshape(nS, nD)
    med = np.nanmedian(times, axis=0) if np.any(np.isfinite(times)) else np.full(nD, np.nan)
    ok = np.isfinite(med)
    if ok.sum() >= 3:
        fit = fit_loglog_slope(deltas[ok], med[ok], level=level)
        fit_log = fit_line(np.log(1.0 / deltas[ok]), med[ok], level=level)
    else:
        nanfit = LineFit(*(float("nan"),) * 5, n=int(ok.sum()), level=level)
        fit, fit_log = nanfit, nanfit
    traj = {"step": np.asarray(res.history["step"]),
            "rel_error": np.asarray(res.history["rel_error"]).reshape(nS, nD, -1)}
    return EscapeTimes(deltas, times, model, order, d, eta, threshold, overlap, fit, fit_log, traj,
                       time.perf_counter() - t0)


def _model_color(res):
    return method_color("gd") if res.model == "vanilla" else method_color("algorithm1")


def plot_escape_times(results, *, ax=None):
    """Escape time against ``delta`` (log-log) for several :class:`EscapeTimes`, with fitted lines.

    Parameters
    ----------
    results : sequence of EscapeTimes
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = new_ax(ax)
    markers = {3: "o", 4: "s", 5: "^"}
    for res in results:
        col = _model_color(res)
        med = res.median_times
        lab = (f"vanilla, $l={res.order}$: exponent {res.fit.slope:.2f}" if res.model == "vanilla" else
               f"2-homogeneous, $l={res.order}$: {res.fit_log.slope:.2f}" + r"$\,\log(1/\delta)$")
        ls = "-" if res.order == 3 else "--"
        ax.plot(res.deltas, med, marker=markers.get(res.order, "o"), ls="", color=col)
        xx = np.geomspace(res.deltas.min(), res.deltas.max(), 60)
        yy = res.fit.predict(xx) if res.model == "vanilla" else res.fit_log.predict(np.log(1 / xx))
        ax.plot(xx, yy, ls=ls, color=col, lw=1.2, label=lab)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"initialisation size $\delta$")
    ax.set_ylabel(r"escape time (steps $\times\,\eta$)")
    legend(ax, loc="center left")
    return ax


def plot_saddle_trajectories(results, *, delta_index=0, ax=None):
    """Relative error against time for one ``delta`` of several :class:`EscapeTimes` (first seed).

    Parameters
    ----------
    results : sequence of EscapeTimes
    delta_index : int
        Which ``delta`` of each result to draw.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = new_ax(ax)
    for res in results:
        t = res.trajectories["step"] * res.eta
        y = res.trajectories["rel_error"][0, delta_index]
        ls = "-" if res.order == 3 else "--"
        ax.plot(t[: y.size], y, ls=ls, color=_model_color(res),
                label=f"{res.model}, $l={res.order}$, $\\delta={res.deltas[delta_index]:g}$")
    ax.axhline(results[0].threshold, color=method_color("reference"), ls=":", lw=1)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(left=0)
    ax.set_xlabel("time (steps $\\times\\,\\eta$)")
    ax.set_ylabel("relative error")
    legend(ax, loc="lower left")
    return ax


def explore_saddle(*, ax=None, order=3, log10_delta=-2.0, overlap=0.5):
    """Explorer panel: vanilla and 2-homogeneous GD from size ``10**log10_delta`` (at most 15000 steps).

    One component in ``d = 6``, target ``v^{(x) l}``, initial cosine ``overlap`` with ``v``.

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = new_ax(ax)
    order = check_int("order", order, minimum=3)
    log10_delta = check_float("log10_delta", log10_delta)
    overlap = check_float("overlap", overlap, positive=True)
    if overlap > 1:
        raise ValueError(f"overlap must be in (0, 1], got {overlap}")
    delta = 10.0**log10_delta
    eta = 0.5 / order**2
    target, Z = _saddle_init(6, order, [0], overlap, 0)
    pred = (delta * overlap) ** (2 - order) / (order * (order - 2))
    steps = int(min(1.5e4, math.ceil((2 * pred + 20) / eta)))
    U0 = delta * Z.T
    rec = max(1, steps // 400)
    v = vanilla_gd(target, 1, steps=steps, eta=eta, init=U0, weights=np.ones(1), hit_threshold=0.5,
                   stop_when_hit=False, divergence="mark", record_every=rec)
    steps_h = min(steps, int(math.ceil((3 * math.log(1 / delta) / order + 10) / eta)))
    h = homogeneous_gd(target, U0, np.ones(1), steps=steps_h, eta=eta, hit_threshold=0.5, record_every=1)
    for res, name, key in ((v, "vanilla", "gd"), (h, "2-homogeneous", "algorithm1")):
        t = res.history["step"] * eta
        esc = f"escape at t={res.hit_time:.1f}" if res.hit_step >= 0 else "no escape"
        ax.plot(t, res.history["rel_error"], color=method_color(key), label=f"{name}: {esc}")
    ax.axhline(0.5, color=method_color("reference"), ls=":", lw=1)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(left=0)
    ax.set_xlabel("time (steps $\\times\\,\\eta$)")
    ax.set_ylabel("relative error")
    ax.set_title(f"$l={order}$, $\\delta=10^{{{log10_delta:g}}}$, overlap {overlap:g}")
    legend(ax, loc="lower left")
    return ax
