"""Code of the chapter *Convergence in practice* (chapters/convergence.ipynb): success against ``m``, ``d`` and ``r``.

When does Algorithm 1 (:func:`tdcore.algorithm1`) reach a fixed accuracy?
:func:`success_curve` (success fraction against the width ``m``),
:func:`m_star_search` / :func:`m_star_sweep` (the smallest width ``m*`` that
succeeds in most seeds, against ``d`` or ``r``), :func:`headline_data` /
:func:`headline_figure` (``m*`` against ``d`` for Algorithm 1 and for the lazy
fit :func:`tdcore.lazy_threshold_sweep`), :func:`error_curves`,
:func:`ablation_study`, :func:`lambda_sweep`, and :func:`load_full_run` (the
stored full-size run of ``python -m tdcore sweep convergence``).

Trials come from :func:`tdcore.book.algorithm1.run_batch`: deterministic given
their seeds, and cached in any ``cache`` mapping passed along (which is how
the full-size sweeps of :mod:`tdcore.sweep` are split into cells).
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from .._algorithm1 import DivergenceError, algorithm1, algorithm1_batch
from .._stats import LineFit, fit_loglog_slope, success_rate
from .._util import jsonable
from .._validate import check_float, check_int, check_int_list, check_order, check_seeds
from .algorithm1 import (AblationResult, ablation_study, batch_key, plot_ablation, plot_switch_ablation, run_batch,
                         sweep_targets)
from .results import load_result
from .style import legend, method_color, new_ax, plain_log_ticks
from .._validate import check_float_list, check_fraction

__all__ = [
    # targets, batches, caching (shared with the chapters Algorithm 1 and The proof in pictures)
    "sweep_targets",
    "batch_key",
    "run_batch",
    # success probability and m*
    "SuccessCurve",
    "success_curve",
    "MStarResult",
    "m_star_search",
    "MStarSweep",
    "m_star_sweep",
    "assemble_m_star_sweep",
    "HeadlineData",
    "headline_data",
    "headline_figure",
    "plot_headline",
    "plot_success_curves",
    "plot_m_star_vs_r",
    # error curves, ablations (computed by tdcore.book.algorithm1), lambda
    "error_curves",
    "plot_error_curves",
    "AblationResult",   # re-exported from tdcore.book.algorithm1
    "ablation_study",
    "plot_ablation",
    "plot_switch_ablation",
    "LambdaSweep",
    "lambda_sweep",
    "plot_lambda_sweep",
    # stored results, explorer
    "FULL_RUN",
    "load_full_run",
    "explore_error_curve",
]

#: File name of the stored full-size run written by ``python -m tdcore sweep convergence``.
FULL_RUN = "convergence_full.json"


# --- small helpers --------------------------------------------------------
def _nan_array(values):
    """A float array from (nested) lists in which None (a JSON null) stands for NaN."""
    return np.array(values, dtype=float)   # NumPy maps None to NaN in a float array


def _late_error(curve, stable_epochs):
    """Largest relative error over the last ``stable_epochs`` epochs (NaN if any is missing)."""
    tail = [math.nan if v is None else v for v in curve[-stable_epochs:]]
    if len(tail) < stable_epochs or not np.all(np.isfinite(tail)):
        return math.nan
    return float(max(tail))


# --- success probability against m ----------------------------------------
@dataclass
class SuccessCurve:
    """Success probability of Algorithm 1 against the width ``m`` (one ``d, r, l``).

    Attributes
    ----------
    d, r, order : int
    ms : list of int
    eps : float
        A trial succeeds when its final relative error is at most ``eps``.
    seeds : list of int
    errors : ndarray (len(ms), len(seeds))
        Per trial, the largest relative error over the last ``stable_epochs``
        epochs (the final error when ``stable_epochs = 1``); NaN: diverged, counted
        as failure.
    epochs : int or None
        Epoch budget (None: ``default_params``' rule).
    stable_epochs : int
        A trial succeeds when the error is at most ``eps`` at the end of each of its
        last ``stable_epochs`` epochs.
    elapsed : float
        Seconds spent computing (0 for batches read from a cache).
    final_errors : ndarray (len(ms), len(seeds)) or None
        Final relative errors (last epoch only).

    Examples
    --------
    >>> c = SuccessCurve(8, 2, 3, ms=[1, 2, 3], eps=0.05, seeds=[0, 1],
    ...                  errors=np.array([[0.5, 0.5], [0.01, np.nan], [0.01, 0.02]]))
    >>> c.success.tolist(), c.m_star(0.8)
    ([0.0, 0.5, 1.0], 3.0)
    """

    d: int
    r: int
    order: int
    ms: list
    eps: float
    seeds: list
    errors: np.ndarray
    epochs: int | None = None
    stable_epochs: int = 1
    elapsed: float = 0.0
    final_errors: np.ndarray | None = None

    @property
    def success(self):
        """Fraction of trials that succeed (error <= eps over the last ``stable_epochs`` epochs), per width."""
        return np.array([success_rate(row, self.eps)[0] for row in np.asarray(self.errors, float)])

    @property
    def final_success(self):
        """Fraction of trials whose final error alone is <= eps, per width (None if not recorded)."""
        if self.final_errors is None:
            return None
        return np.array([success_rate(row, self.eps)[0] for row in np.asarray(self.final_errors, float)])

    def m_star(self, q=0.8):
        """Smallest width whose success fraction is at least ``q`` (NaN if none)."""
        ok = np.flatnonzero(self.success >= q)
        return float(self.ms[ok[0]]) if ok.size else math.nan

    def to_dict(self):
        return jsonable({**asdict(self), "success": self.success})

    @classmethod
    def from_dict(cls, d):
        keys = ("d", "r", "order", "ms", "eps", "seeds", "errors", "epochs", "stable_epochs", "elapsed",
                "final_errors")
        kw = {k: d[k] for k in keys if k in d}
        for k in ("errors", "final_errors"):
            if kw.get(k) is not None:
                kw[k] = _nan_array(kw[k])
        return cls(**kw)


def success_curve(d, r, order, ms, *, seeds, eps=0.05, epochs=None, stable_epochs=1, target_seed=0,
                  orthogonal=False, cache=None, **alg_kwargs):
    """Final relative error of Algorithm 1 over seeds, for each width in ``ms``.

    Parameters
    ----------
    d, r, order : int
        Dimension, rank and order of the random targets (:func:`sweep_targets`).
    ms : sequence of int
        Widths to try.
    seeds : sequence of int
        One trial per seed; trial ``s`` uses the same target for every width.
    eps : float
        Accuracy that counts as success (final relative error ``<= eps``).
    epochs : int, optional
        Epoch budget K (default: ``default_params``' rule).
    stable_epochs : int
        Success needs error ``<= eps`` at the end of each of the last this many
        epochs.  With ``m = r`` Algorithm 1 re-initialises a *fitted* component in
        every epoch, so its final error is a coin flip decided by the last epoch;
        asking for a few stable epochs separates that from a width that fits for good.
    target_seed, orthogonal, cache, **alg_kwargs
        As :func:`run_batch`.

    Returns
    -------
    SuccessCurve
    """
    d = check_int("d", d, minimum=1)
    r = check_int("r", r, minimum=1)
    order = check_order(order)
    ms = check_int_list("ms", ms, 1)
    seeds = check_seeds(seeds, distinct=True)
    eps = check_float("eps", eps, positive=True)
    stable_epochs = check_int("stable_epochs", stable_epochs, minimum=1)
    t0 = time.perf_counter()
    errors, final = [], []
    for m in ms:
        out = run_batch(d, r, order, m, seeds=seeds, target_seed=target_seed, orthogonal=orthogonal, cache=cache,
                        epochs=epochs, **alg_kwargs)
        errors.append(_scores(out, stable_epochs))
        final.append(_scores(out, 1))
    return SuccessCurve(d, r, order, ms, eps, seeds, np.array(errors, dtype=float), epochs, stable_epochs,
                        time.perf_counter() - t0, np.array(final, dtype=float))


def _scores(out, stable_epochs):
    """Per-trial score of a batch: largest error over the last ``stable_epochs`` epochs."""
    sc = []
    for b, c in enumerate(out["curves"]):
        sc.append(math.nan if b in out["diverged"] else _late_error(c, stable_epochs))
    return sc


@dataclass
class MStarResult:
    """Outcome of :func:`m_star_search` for one configuration.

    Attributes
    ----------
    m_star : float
        Smallest width with success fraction ``>= q`` (NaN if ``m_max`` was reached).
    curve : SuccessCurve
        Every width that was evaluated (sorted).
    q : float
    certified : bool
        True when ``m_star - 1`` was evaluated and failed (or ``m_star`` is ``m_min``).
    """

    m_star: float
    curve: SuccessCurve
    q: float
    certified: bool


def m_star_search(d, r, order, *, seeds, eps=0.05, q=0.8, m_min=1, m_max=None, start=None, epochs=None,
                  stable_epochs=1, target_seed=0, orthogonal=False, cache=None, **alg_kwargs):
    """Smallest width ``m*`` at which Algorithm 1 reaches ``eps`` in at least a fraction ``q`` of the seeds.

    The search starts at ``start`` (default ``max(m_min, r - 1)``), walks up one
    width at a time until the success fraction reaches ``q``, then walks down
    until a width fails, so that the reported ``m*`` is certified by a failure
    just below it (or equals ``m_min``).

    Parameters
    ----------
    d, r, order : int
    seeds : sequence of int
    eps : float
        Accuracy (final relative error).
    q : float in (0, 1]
        Required success fraction ("most seeds").
    m_min, m_max : int
        Search range (``m_max`` default ``max(4 r + 4, 12)``).
    start : int, optional
    epochs, stable_epochs, target_seed, orthogonal, cache, **alg_kwargs
        As :func:`success_curve`.

    Returns
    -------
    MStarResult
    """
    d = check_int("d", d, minimum=1)
    r = check_int("r", r, minimum=1)
    order = check_order(order)
    q = check_fraction("q", q)
    m_min = check_int("m_min", m_min, minimum=1)
    m_max = max(4 * r + 4, 12) if m_max is None else check_int("m_max", m_max, minimum=m_min)
    start = max(m_min, r - 1) if start is None else check_int("start", start, minimum=m_min)
    if start > m_max:
        raise ValueError(f"start={start} exceeds m_max={m_max}")
    seeds = check_seeds(seeds, distinct=True)
    eps = check_float("eps", eps, positive=True)
    stable_epochs = check_int("stable_epochs", stable_epochs, minimum=1)
    t0 = time.perf_counter()
    evaluated, final = {}, {}

    def frac(m):
        if m not in evaluated:
            out = run_batch(d, r, order, m, seeds=seeds, target_seed=target_seed, orthogonal=orthogonal,
                            cache=cache, epochs=epochs, **alg_kwargs)
            evaluated[m] = _scores(out, stable_epochs)
            final[m] = _scores(out, 1)
        return success_rate(evaluated[m], eps)[0]

    m = start
    while m <= m_max and frac(m) < q:      # walk up to the first success ...
        m += 1
    found, certified = m <= m_max, False
    if found:                               # ... then down to the first failure below it
        while m > m_min and frac(m - 1) >= q:
            m -= 1
        certified = True
    ms = sorted(evaluated)
    curve = SuccessCurve(d, r, order, ms, eps, seeds, np.array([evaluated[k] for k in ms], dtype=float), epochs,
                         stable_epochs, time.perf_counter() - t0, np.array([final[k] for k in ms], dtype=float))
    return MStarResult(float(m) if found else math.nan, curve, q, certified)


@dataclass
class MStarSweep:
    """``m*`` of Algorithm 1 against one parameter (``"d"`` or ``"r"``).

    Attributes
    ----------
    vary : str
        ``"d"`` or ``"r"``.
    values : ndarray
        The values of the varied parameter.
    fixed : dict
        The other parameters (``d`` or ``r``, ``order``, ``eps``, ``q``, ``epochs``).
    m_star : ndarray
    results : list of MStarResult
    fit : LineFit or None
        Log-log fit of ``m*`` against the varied parameter (None with < 3 finite points).
    elapsed : float
    """

    vary: str
    values: np.ndarray
    fixed: dict
    m_star: np.ndarray
    results: list
    fit: object
    elapsed: float

    def to_dict(self):
        return jsonable({
            "vary": self.vary, "values": self.values, "fixed": self.fixed, "m_star": self.m_star,
            "curves": [r.curve.to_dict() for r in self.results], "certified": [r.certified for r in self.results],
            "fit": None if self.fit is None else asdict(self.fit), "elapsed": self.elapsed})

    @classmethod
    def from_dict(cls, d):
        curves = [SuccessCurve.from_dict(c) for c in d["curves"]]
        q = d["fixed"]["q"]
        results = [MStarResult(float(np.nan if ms is None else ms), c, q, bool(cert))
                   for ms, c, cert in zip(d["m_star"], curves, d["certified"])]
        fit = None if d.get("fit") is None else LineFit(**d["fit"])
        return cls(d["vary"], np.array(d["values"]), d["fixed"],
                   _nan_array(d["m_star"]), results, fit,
                   d.get("elapsed", 0.0))


def m_star_sweep(vary, values, *, order, d=None, r=None, seeds, eps=0.05, q=0.8, epochs=None, stable_epochs=1,
                 target_seed=0, orthogonal=False, cache=None, **search_kwargs):
    """:func:`m_star_search` for each value of ``d`` (``vary="d"``, fixed ``r``) or ``r`` (fixed ``d``).

    Parameters
    ----------
    vary : {"d", "r"}
    values : sequence of int
    order : int
    d, r : int
        The parameter that is held fixed.
    seeds, eps, q, epochs, stable_epochs, target_seed, orthogonal, cache
        As :func:`m_star_search`.
    **search_kwargs
        Passed on (``m_min``, ``m_max``, Algorithm 1 options).

    Returns
    -------
    MStarSweep
        With a log-log fit of ``m*`` against the varied parameter.
    """
    if vary not in ("d", "r"):
        raise ValueError(f"vary must be 'd' or 'r', got {vary!r}")
    values = check_int_list("values", values, 1)
    order = check_order(order)
    if vary == "d":
        r = check_int("r", r, minimum=1)
    else:
        d = check_int("d", d, minimum=1)
    t0 = time.perf_counter()
    results = []
    for v in values:
        dd, rr = (v, r) if vary == "d" else (d, v)
        results.append(m_star_search(dd, rr, order, seeds=seeds, eps=eps, q=q, epochs=epochs,
                                     stable_epochs=stable_epochs, target_seed=target_seed, orthogonal=orthogonal,
                                     cache=cache, **search_kwargs))
    fixed = {"order": order, "eps": eps, "q": q, "epochs": epochs, "stable_epochs": stable_epochs,
             "n_seeds": len(list(seeds))}
    fixed.update({"r": r} if vary == "d" else {"d": d})
    return assemble_m_star_sweep(vary, values, fixed, results, time.perf_counter() - t0)


def assemble_m_star_sweep(vary, values, fixed, results, elapsed):
    """An :class:`MStarSweep` from one :func:`m_star_search` result per value (the fit included).

    :func:`m_star_sweep` computes the searches one after the other; the distributed
    sweep (``python -m tdcore sweep convergence``) computes them as separate cells
    and assembles them here.
    """
    ms = np.array([res.m_star for res in results], dtype=float)
    fit = fit_loglog_slope(values, ms, drop_invalid=True)
    return MStarSweep(vary, np.array(values), fixed, ms, results, fit, elapsed)


# --- the headline figure --------------------------------------------------
@dataclass
class HeadlineData:
    """``m*`` against ``d`` for Algorithm 1 and for the lazy fit, for one or more orders.

    Attributes
    ----------
    orders : list of int
    algorithm1 : dict
        ``order -> MStarSweep`` (rank-one targets, ``vary="d"``).
    lazy : dict
        ``order -> LazySweep`` from :func:`tdcore.lazy_threshold_sweep` (or its
        ``to_dict`` form), or ``None`` where it was not computed.
    eps : float
        The common accuracy (Algorithm 1's final relative error, the lazy fit's residual).
    label : str
        Free text shown in titles (e.g. "quick run" / "stored full run").
    """

    orders: list
    algorithm1: dict
    lazy: dict
    eps: float
    label: str = ""

    def lazy_points(self, order):
        """``(ds, median m*, min m*, max m*, count)`` of the lazy sweep of ``order`` (or None)."""
        lz = self.lazy.get(order)
        if lz is None:
            return None
        lz = _lazy_to_dict(lz)
        ms = np.array(lz["m_star"], dtype=float)
        return (np.array(lz["ds"], float), np.median(ms, axis=1), ms.min(axis=1), ms.max(axis=1),
                np.array(lz["prediction"], float))

    def lazy_fit(self, order):
        """Log-log fit of the lazy median ``m*`` against ``d`` (LineFit or None)."""
        pts = self.lazy_points(order)
        if pts is None:
            return None
        return fit_loglog_slope(pts[0], pts[1], drop_invalid=True)

    def count_slope(self, order):
        """Log-log slope of the dimension count ``C(d+l-1, l)/d`` over the lazy sweep's ``d``.

        The count's local slope is ``sum_{k<l} d/(d+k)``: it tends to ``l - 1`` but is
        visibly smaller at the small ``d`` where the lazy fit can be computed.
        """
        pts = self.lazy_points(order)
        if pts is None:
            return math.nan
        fit = fit_loglog_slope(pts[0], [_sym_count(int(d), order) for d in pts[0]], drop_invalid=True)
        return math.nan if fit is None else fit.slope

    def slopes(self):
        """``{order: (algorithm1 slope, lazy slope)}`` (NaN where missing)."""
        out = {}
        for o in self.orders:
            a = self.algorithm1[o].fit
            lz = self.lazy_fit(o)
            out[o] = (math.nan if a is None else a.slope, math.nan if lz is None else lz.slope)
        return out

    def to_dict(self):
        lazy = {str(o): _lazy_to_dict(lz) for o, lz in self.lazy.items()}
        return jsonable({"orders": self.orders, "eps": self.eps, "label": self.label,
                          "algorithm1": {str(o): s.to_dict() for o, s in self.algorithm1.items()},
                          "lazy": lazy})

    @classmethod
    def from_dict(cls, d):
        orders = [int(o) for o in d["orders"]]
        alg = {int(o): MStarSweep.from_dict(v) for o, v in d["algorithm1"].items()}
        lazy = {int(o): v for o, v in d.get("lazy", {}).items()}
        return cls(orders, alg, lazy, d["eps"], d.get("label", ""))


def headline_data(*, orders=(3, 4), alg_ds=None, lazy_ds=None, seeds=(0, 1, 2, 3, 4), lazy_seeds=(0, 1, 2),
                  eps=0.1, q=0.8, epochs=12, stable_epochs=3, target_seed=0, cache=None, label=""):
    """Measure the book's headline: ``m*`` against ``d`` for Algorithm 1 and for lazy training.

    Both curves use rank-one targets ``u*^{(x) l}`` (Theorem 1's setting) and the
    same accuracy ``eps``: Algorithm 1's final relative error, and the lazy fit's
    relative residual (:func:`tdcore.lazy_threshold_sweep`, median over
    ``lazy_seeds``; the lazy fit is exact linear algebra, so its ``m*`` needs no
    optimisation run).

    Parameters
    ----------
    orders : sequence of int
    alg_ds, lazy_ds : dict ``order -> list of d``, optional
        Dimensions for each curve (defaults: a small set for each order).
    seeds : sequence of int
        Algorithm 1 trials per width.
    lazy_seeds : sequence of int
    eps, q, epochs, stable_epochs, target_seed, cache
        As :func:`m_star_search`.
    label : str

    Returns
    -------
    HeadlineData
    """
    orders = [check_order(o) for o in orders]
    eps = check_fraction("eps", eps, open_right=True)
    alg_ds = alg_ds or {3: [8, 32, 128], 4: [8, 32, 128]}
    lazy_ds = lazy_ds or {3: [4, 6, 8, 12], 4: [4, 5, 6, 8]}
    from .. import lazy_threshold_sweep   # core API (tdcore._lazy)

    alg, lazy = {}, {}
    for o in orders:
        alg[o] = m_star_sweep("d", alg_ds[o], order=o, r=1, seeds=seeds, eps=eps, q=q, epochs=epochs,
                              stable_epochs=stable_epochs, target_seed=target_seed, cache=cache, m_min=1)
        key = (f"lazy;l={o};ds=" + ",".join(str(v) for v in lazy_ds[o]) + f";thr={eps:.6g};seeds="
               + ",".join(str(v) for v in lazy_seeds))
        if cache is not None and key in cache:
            lazy[o] = cache[key]
        else:
            lazy[o] = lazy_threshold_sweep(lazy_ds[o], o, threshold=eps, seeds=tuple(lazy_seeds))
            if cache is not None:
                cache[key] = _lazy_to_dict(lazy[o])
    return HeadlineData(orders, alg, lazy, eps, label)


def _lazy_to_dict(lz):
    if lz is None or isinstance(lz, dict):
        return lz
    return jsonable({"ds": lz.ds, "order": lz.order, "threshold": lz.threshold, "seeds": list(lz.seeds),
                      "m_star": lz.m_star, "prediction": lz.prediction, "elapsed": lz.elapsed})


def _sym_count(d, order):
    """``C(d+l-1, l) / d = (d+1)(d+2)...(d+l-1) / l!``, also for non-integer ``d``."""
    return float(np.prod([d + k for k in range(1, order)])) / math.factorial(order)


def headline_figure(data, *, axes=None, title=None):
    """The headline figure: ``m*`` against ``d`` on log-log axes, one panel per order (:func:`plot_headline`).

    Parameters
    ----------
    data : HeadlineData or its ``to_dict()`` form
    axes : sequence of Axes, optional
        One per order of ``data`` (default: a new figure with one row of panels).
    title : str, optional
        Figure title (default: none).

    Returns
    -------
    numpy.ndarray of Axes
    """
    import matplotlib.pyplot as plt

    if isinstance(data, dict):
        data = HeadlineData.from_dict(data)
    n = len(data.orders)
    if axes is None:
        _, axes = plt.subplots(1, n, figsize=(4.8 * n, 3.9), squeeze=False)
        axes = axes[0]
    axes = np.asarray(axes, dtype=object).ravel()
    if axes.size < n:
        raise ValueError(f"headline_figure needs {n} Axes (one per order), got {axes.size}")
    for ax, o in zip(axes, data.orders):
        plot_headline(data, ax=ax, order=o)
    if title:
        axes[0].figure.suptitle(title)
    return axes


def plot_headline(data, *, ax=None, order=None):
    """One panel of the headline figure: ``m*`` against ``d`` for one order (log-log).

    Algorithm 1 (blue) and the lazy fit (vermillion) with their fitted power laws
    and slopes in the legend, and the dimension count ``C(d+l-1, l)/d`` (grey,
    dashed) that the lazy ``m*`` follows, drawn over the whole range of ``d``.

    Parameters
    ----------
    data : HeadlineData or its ``to_dict()`` form
    ax : Axes, optional
    order : int, optional
        One of ``data.orders`` (default: the first).

    Returns
    -------
    Axes
    """
    ax = new_ax(ax)
    if isinstance(data, dict):
        data = HeadlineData.from_dict(data)
    o = data.orders[0] if order is None else order
    if o not in data.algorithm1:
        raise ValueError(f"order must be one of {list(data.algorithm1)}, got {order!r}")
    sw = data.algorithm1[o]
    ds = sw.values.astype(float)
    lz = data.lazy_points(o)
    lo = min(ds.min(), lz[0].min()) if lz is not None else ds.min()
    hi = max(ds.max(), lz[0].max()) if lz is not None else ds.max()
    xx = np.geomspace(lo, hi, 80)
    ax.plot(xx, [_sym_count(x, o) for x in xx], ls="--", lw=1, color=method_color("reference"),
            label=r"dimension count $\binom{d+l-1}{l}/d$")
    if lz is not None:
        lfit = data.lazy_fit(o)
        ax.errorbar(lz[0], lz[1], yerr=[lz[1] - lz[2], lz[3] - lz[1]], fmt="s", capsize=2,
                    color=method_color("lazy"),
                    label="lazy fit" + ("" if lfit is None else f": slope {lfit.slope:.2f}"))
        if lfit is not None:
            xl = np.geomspace(lz[0].min(), lz[0].max(), 20)
            ax.plot(xl, lfit.predict(xl), color=method_color("lazy"), lw=1.2)
    ok = np.isfinite(sw.m_star)
    ax.plot(ds[ok], sw.m_star[ok], "o", color=method_color("algorithm1"),
            label="Algorithm 1" + ("" if sw.fit is None else f": slope {sw.fit.slope:.2f}"))
    if sw.fit is not None:
        xa = np.geomspace(ds.min(), ds.max(), 20)
        ax.plot(xa, sw.fit.predict(xa), color=method_color("algorithm1"), lw=1.2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("dimension $d$")
    ax.set_ylabel(r"smallest width $m^*$")
    ax.set_title(f"order $l={o}$, rank-one targets, accuracy {data.eps:g}")
    legend(ax, loc="upper left", fontsize=8)
    return ax


def plot_success_curves(curves, *, ax=None, q=None):
    """Success fraction against ``m / r`` for several :class:`SuccessCurve` (one line per curve)."""
    import matplotlib as mpl

    from matplotlib.ticker import MaxNLocator

    ax = new_ax(ax)
    cmap = mpl.colormaps["viridis"]
    n = len(curves)
    markers = "osD^v<>"
    for k, c in enumerate(curves):
        x = np.asarray(c.ms, float) + 0.06 * (k - (n - 1) / 2)   # small offsets keep equal curves visible
        ax.plot(x, c.success, marker=markers[k % len(markers)], color=cmap(k / max(1, n - 1)),
                label=f"$d={c.d}$, $r={c.r}$, $l={c.order}$")
    if q is not None:
        ax.axhline(q, color=method_color("reference"), ls=":", lw=1)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("width $m$")
    stable = curves[0].stable_epochs
    ax.set_ylabel(f"fraction of trials with error $\\leq$ {curves[0].eps:g}"
                  + (f"\n(each of the last {stable} epochs)" if stable > 1 else ""))
    ax.set_ylim(-0.05, 1.05)
    legend(ax, loc="lower right")
    return ax


def plot_m_star_vs_r(sweep, *, ax=None, theory_exponent=None):
    """``m*`` against ``r`` (log-log) with the fitted exponent and, optionally, the theory's ``r^p`` line."""
    ax = new_ax(ax)
    rs = sweep.values.astype(float)
    ok = np.isfinite(sweep.m_star)
    ax.plot(rs[ok], sweep.m_star[ok], "o", color=method_color("algorithm1"), label="Algorithm 1, measured $m^*$")
    if sweep.fit is not None:
        xx = np.geomspace(rs.min(), rs.max(), 40)
        ax.plot(xx, sweep.fit.predict(xx), color=method_color("algorithm1"), lw=1.2,
                label=f"fit: $m^* \\propto r^{{{sweep.fit.slope:.2f}}}$")
    ax.plot(rs, rs, ls=":", color=method_color("reference"), lw=1, label="$m = r$")
    if theory_exponent is not None:
        xx = np.geomspace(rs.min(), rs.max(), 40)
        y0 = sweep.m_star[ok][0] if ok.any() else 1.0
        ax.plot(xx, y0 * (xx / rs[ok][0]) ** theory_exponent if ok.any() else xx ** theory_exponent,
                ls="--", color=method_color("reference"),
                label=f"theory's rate $r^{{{theory_exponent:g}}}$ (through the first point)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain_log_ticks(ax, rs)
    ax.set_xlabel("rank $r$")
    ax.set_ylabel("smallest width $m^*$")
    legend(ax, loc="upper left", fontsize=8)
    return ax


# --- error against epochs -------------------------------------------------
def error_curves(configs, *, seeds, target_seed=0, cache=None):
    """Relative error at the end of every epoch, over seeds, for several configurations.

    Parameters
    ----------
    configs : sequence of dict
        Each with ``d``, ``r``, ``order``, ``m`` and optionally Algorithm 1 options
        (``epochs``, ``lam``, ...).
    seeds : sequence of int
    target_seed, cache
        As :func:`run_batch`.

    Returns
    -------
    list of dict
        One per configuration: the config, ``curves`` (n_seeds x K array) and ``elapsed``.
    """
    seeds = check_seeds(seeds, distinct=True)
    out = []
    for cfg in configs:
        cfg = dict(cfg)
        try:
            d, r, order, m = (cfg.pop(k) for k in ("d", "r", "order", "m"))
        except KeyError as exc:
            raise ValueError(f"each config needs d, r, order and m; missing {exc}") from None
        res = run_batch(d, r, order, m, seeds=seeds, target_seed=target_seed, cache=cache, **cfg)
        K = max(len(c) for c in res["curves"])
        arr = np.full((len(seeds), K), np.nan)
        for b, c in enumerate(res["curves"]):
            arr[b, : len(c)] = c
        out.append({"d": d, "r": r, "order": order, "m": m, **cfg, "curves": arr, "elapsed": res["elapsed"]})
    return out


def plot_error_curves(results, *, ax=None, eps=None):
    """Median (line) and range over seeds (band) of the relative error against epochs."""
    import matplotlib as mpl

    ax = new_ax(ax)
    cmap = mpl.colormaps["plasma"]
    for k, res in enumerate(results):
        arr = np.asarray(res["curves"], float)
        ep = np.arange(1, arr.shape[1] + 1)
        col = cmap(0.85 * k / max(1, len(results) - 1))
        ax.plot(ep, np.nanmedian(arr, axis=0), color=col, marker=".",
                label=f"$d={res['d']}$, $r={res['r']}$, $l={res['order']}$, $m={res['m']}$")
        ax.fill_between(ep, np.nanmin(arr, axis=0), np.nanmax(arr, axis=0), color=col, alpha=0.15, lw=0)
    if eps is not None:
        ax.axhline(eps, color=method_color("reference"), ls=":", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("relative error at the end of the epoch")
    legend(ax, loc="upper right", fontsize=8)
    return ax


# --- lambda sweep and polish ----------------------------------------------
@dataclass
class LambdaSweep:
    """Outcome of :func:`lambda_sweep`.

    Attributes
    ----------
    lams : ndarray
    errors : ndarray (n_lam, n_seeds)
        Final relative errors of Algorithm 1.
    polished : ndarray (n_lam, n_seeds)
        The same runs followed by ``polish`` steps (NaN where the polish failed).
    polish_failures : int
        Trials whose polish failed (non-finite values), see the notes of the chapter.
    fit : LineFit or None
        Log-log fit of the median error against ``lam`` (slope near 1: floor proportional to lam).
    config : dict
    elapsed : float
    """

    lams: np.ndarray
    errors: np.ndarray
    polished: np.ndarray
    polish_failures: int
    fit: object
    config: dict
    elapsed: float

    def to_dict(self):
        return jsonable({"lams": self.lams, "errors": self.errors, "polished": self.polished,
                          "polish_failures": self.polish_failures,
                          "fit": None if self.fit is None else asdict(self.fit), "config": self.config,
                          "elapsed": self.elapsed})

    @classmethod
    def from_dict(cls, d):
        return cls(np.array(d["lams"], float), _nan_array(d["errors"]), _nan_array(d["polished"]), d["polish_failures"],
                   None if d.get("fit") is None else LineFit(**d["fit"]), d["config"], d.get("elapsed", 0.0))


def _polished_errors(targets, m, seeds, lam, polish, epochs):
    """Final errors after the polish; batch first, one trial at a time if the batch fails."""
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            br = algorithm1_batch(targets, m, seeds=seeds, lam=lam, polish=polish, epochs=epochs)
            e = [float(x) for x in br.rel_errors]
            return [v if np.isfinite(v) else math.nan for v in e]
        except (ValueError, FloatingPointError, np.linalg.LinAlgError):
            pass
        out = []
        for t, s in zip(targets, seeds):
            try:
                v = float(algorithm1(t, m, seed=s, lam=lam, polish=polish, epochs=epochs).rel_error)
            except (ValueError, FloatingPointError, np.linalg.LinAlgError, DivergenceError):
                v = math.nan
            out.append(v if np.isfinite(v) else math.nan)
        return out


def lambda_sweep(lams, *, d, r, order, m, seeds, polish=200, epochs=None, target_seed=0, cache=None):
    """Final error against the regularisation strength, with and without the final polish.

    Parameters
    ----------
    lams : sequence of float > 0
    d, r, order, m : int
    seeds : sequence of int
    polish : int
        Steps of ``algorithm1(..., polish=N)`` (least-squares weight refit plus
        ``N`` steps with ``lam = 0``).
    epochs : int, optional
    target_seed : int
    cache : dict-like, optional
        As :func:`run_batch` (the polished errors are cached too).

    Returns
    -------
    LambdaSweep
    """
    lams = check_float_list("lams", lams, nonnegative=True)
    if any(v <= 0 for v in lams):
        raise ValueError("lams must be > 0 (a log-log fit of the floor needs positive values)")
    seeds = check_seeds(seeds, distinct=True)
    polish = check_int("polish", polish, minimum=1)
    t0 = time.perf_counter()
    targets = sweep_targets(d, r, order, len(seeds), target_seed=target_seed)
    errs, pol = [], []
    for lam in lams:
        errs.append(run_batch(d, r, order, m, seeds=seeds, target_seed=target_seed, lam=lam, epochs=epochs,
                              cache=cache)["errors"])
        key = batch_key(d, r, order, m, seeds=seeds, target_seed=target_seed, lam=lam, epochs=epochs,
                        polish=polish) + ";polished"
        if cache is not None and key in cache:
            pol.append(cache[key])
            continue
        pe = _polished_errors(targets, m, seeds, lam, polish, epochs)
        if cache is not None:
            cache[key] = pe
        pol.append(pe)
    errs = np.array(errs, float)
    pol = np.array(pol, float)
    fit = fit_loglog_slope(lams, np.nanmedian(errs, axis=1), drop_invalid=True)
    cfg = {"d": d, "r": r, "order": order, "m": m, "polish": polish, "epochs": epochs, "n_seeds": len(seeds)}
    return LambdaSweep(np.array(lams), errs, pol, int(np.sum(~np.isfinite(pol))), fit, cfg,
                       time.perf_counter() - t0)


def plot_lambda_sweep(sweep, *, ax=None):
    """Median final error against ``lam`` (log-log), before and after the polish."""
    ax = new_ax(ax)
    lams = sweep.lams
    for arr, col, mk, lab in ((sweep.errors, method_color("algorithm1"), "o", "Algorithm 1"),
                              (sweep.polished, method_color("gd"), "s",
                               f"+ polish ({sweep.config['polish']} steps, $\\lambda=0$)")):
        med = np.nanmedian(arr, axis=1)
        ax.errorbar(lams, med, yerr=[med - np.nanmin(arr, axis=1), np.nanmax(arr, axis=1) - med], fmt=mk + "-",
                    color=col, capsize=2, label=lab)
    if sweep.fit is not None:
        ax.plot(lams, sweep.fit.predict(lams), ls="--", color=method_color("reference"), lw=1,
                label=f"fit: error $\\propto \\lambda^{{{sweep.fit.slope:.2f}}}$")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"regularisation strength $\lambda$")
    ax.set_ylabel("final relative error")
    legend(ax, loc="center right", fontsize=8)
    return ax


def explore_error_curve(*, ax=None, d=30, r=3, order=3, m=5, log10_lam=-2.7, epochs=10):
    """Explorer panel: relative error by epoch over 4 seeds for one configuration."""
    res = error_curves([{"d": d, "r": r, "order": order, "m": m, "lam": 10.0**log10_lam, "epochs": epochs}],
                       seeds=[0, 1, 2, 3])
    return plot_error_curves(res, ax=ax)


# --- the stored full run --------------------------------------------------
def load_full_run(name=FULL_RUN, *, directory=None, required=True):
    """The stored full-size run of ``python -m tdcore sweep convergence`` (a JSON dict).

    Read with :func:`tdcore.book.results.load_result`: from ``directory``, else
    ``$TDCORE_RESULTS``, else the results shipped with tdcore (the repository's
    ``results/`` in a checkout, its copy in an installed wheel).  The file ships
    with tdcore, so by default its absence is an error, not a reason to show less.

    Parameters
    ----------
    name : str
        File name of the stored result (default ``FULL_RUN``, ``"convergence_full.json"``).
    directory : str or Path, optional
        Folder to read from instead.
    required : bool
        Raise when the file is absent (default); ``False`` returns None instead.

    Returns
    -------
    dict or None

    Raises
    ------
    FileNotFoundError
        When the file is absent (and ``required``), naming the folder searched.
    ValueError
        When the file is not valid JSON.
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty file name (str), got {name!r}")
    try:
        return load_result(name, directory)
    except FileNotFoundError as exc:
        if required:
            raise FileNotFoundError(f"{exc}; produce it with `python -m tdcore sweep convergence`") from None
        return None
