"""Sweeps and figures for the part *Beyond lazy training* (Algorithm 1, Theorem 3, Lemmas 1-9).

Three chapters use this module:

* *Algorithm 1, piece by piece*: :func:`trajectory_run` records one run (every
  column's norm and alignment with the true subspace at the end of every epoch,
  the fresh column at every iteration) and :func:`plot_trajectories` draws it;
  :func:`rescue_seed` finds a run that re-initialisation repairs,
  :func:`switch_ablation_vs_d` measures what the scalar mode switch buys, and
  :func:`regularizer_comparison` what the regulariser does to the columns.
* *Convergence in practice*: :func:`success_curve` (success probability against
  the width ``m`` over seeds), :func:`m_star_search` / :func:`m_star_sweep` (the
  smallest width ``m*`` that reaches a fixed accuracy in most seeds, against
  ``d`` or ``r``), :func:`headline_data` / :func:`headline_figure` (``m*``
  against ``d`` for Algorithm 1 and for the lazy fit of the landscape chapter),
  :func:`error_curves`, :func:`ablation_study`, :func:`switch_ablation_vs_d`
  and :func:`lambda_sweep`.
* *The proof in pictures*: one measurement per lemma (:func:`lemma3_steps`,
  :func:`reinit_jumps`, :func:`lemma5_ratios`, :func:`lemma6_correlations`,
  :func:`lemma7_growth`, :func:`lemma9_paths`, :func:`lemma1_decrease`), each
  on real runs of :func:`tdcore.algorithm1`.

Every sweep is deterministic given its seeds: the targets of trial ``s`` are
drawn from ``numpy.random.default_rng([target_seed, d, r, order, s])`` (so the
same trial index sees the same target for every width ``m``), and trial ``s``
runs Algorithm 1 with ``seed=seeds[s]``.  Sweeps accept a ``cache`` mapping
(see :func:`batch_key`): already computed batches are read from it and new ones
written to it, which is how ``scripts/full_sweeps.py`` checkpoints and resumes.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from ._algorithm1 import DivergenceError, algorithm1, algorithm1_batch, default_params
from ._book import method_color
from ._tensor import SymCP, random_target, subspace_basis
from ._validate import as_rng, check_float, check_int, check_int_list, check_order, check_seed, check_seeds

__all__ = [
    # targets, batches, caching
    "sweep_targets",
    "epochs_to_accuracy",
    "batch_key",
    "run_batch",
    # success probability and m*
    "SuccessCurve",
    "success_curve",
    "MStarResult",
    "m_star_search",
    "MStarSweep",
    "m_star_sweep",
    "HeadlineData",
    "headline_data",
    "headline_figure",
    "plot_headline",
    "plot_success_curves",
    "plot_m_star_vs_r",
    # convergence, ablations, lambda
    "error_curves",
    "plot_error_curves",
    "AblationResult",
    "ablation_study",
    "plot_ablation",
    "switch_ablation_vs_d",
    "plot_switch_ablation",
    "LambdaSweep",
    "lambda_sweep",
    "plot_lambda_sweep",
    # Algorithm 1 piece by piece
    "trajectory_run",
    "plot_trajectories",
    "rescue_seed",
    "regularizer_comparison",
    # the proof in pictures
    "recorded_run",
    "lemma3_steps",
    "plot_lemma3",
    "reinit_jumps",
    "plot_reinit_jumps",
    "lemma5_ratios",
    "plot_lemma5",
    "lemma6_correlations",
    "plot_lemma6",
    "lemma7_growth",
    "plot_lemma7",
    "lemma9_paths",
    "plot_lemma9",
    "lemma1_decrease",
    "plot_lemma1",
    # stored results, explorers
    "load_results",
    "explore_run",
    "explore_error_curve",
    "explore_fresh_growth",
]


# ---------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------
def _new_ax(ax, figsize=None):
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def _legend(ax, **kwargs):
    """``ax.legend(**kwargs)`` when something is labelled (no warning on an empty panel)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)


def _int_list(name, values, minimum=1):
    return check_int_list(name, values, minimum)


def _float_list(name, values, *, nonnegative=True):
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise TypeError(f"{name} must be a sequence of numbers, got {values!r}")
    out = [check_float(f"{name}[{k}]", v, nonnegative=nonnegative) for k, v in enumerate(values)]
    if not out:
        raise ValueError(f"{name} must not be empty")
    return out


def _seeds(seeds):
    return check_seeds(seeds, distinct=True)


def _check_fraction(name, value, *, open_right=False):
    value = check_float(name, value, positive=True)
    if value > 1 or (open_right and value == 1):
        raise ValueError(f"{name} must be in (0, 1{')' if open_right else ']'}, got {value}")
    return value


def _jsonable(o):
    """Recursively convert NumPy scalars/arrays (and dataclasses) to JSON types."""
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return _jsonable(o.tolist())
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating, float)):
        v = float(o)
        return v if math.isfinite(v) else None
    if isinstance(o, (np.bool_,)):
        return bool(o)
    return o


def _late_error(curve, stable_epochs):
    """Largest relative error over the last ``stable_epochs`` epochs (NaN if any is missing)."""
    tail = [math.nan if v is None else v for v in curve[-stable_epochs:]]
    if len(tail) < stable_epochs or not np.all(np.isfinite(tail)):
        return math.nan
    return float(max(tail))


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
    for k, v in enumerate(errors):
        if v is not None and np.isfinite(v) and v <= eps:
            return k + 1
    return math.inf


_first_below = epochs_to_accuracy


# ---------------------------------------------------------------------------
# targets and batches
# ---------------------------------------------------------------------------
def sweep_targets(d, r, order, n, *, target_seed=0, orthogonal=False):
    """The ``n`` targets of a sweep: trial ``s`` gets ``random_target`` with generator
    ``default_rng([target_seed, d, r, order, s])`` (unit Frobenius norm, unit weights).

    Parameters
    ----------
    d, r, order, n : int
        Dimension, rank, order and number of trials.
    target_seed : int
        Base seed; the same ``(target_seed, d, r, order, s)`` always gives the same target.
    orthogonal : bool
        Orthonormal components (needs ``r <= d``).

    Returns
    -------
    list of SymCP
    """
    d = check_int("d", d, minimum=1)
    r = check_int("r", r, minimum=1)
    order = check_order(order)
    n = check_int("n", n, minimum=1)
    target_seed = check_int("target_seed", target_seed, minimum=0)
    return [random_target(d, r, order, orthogonal=orthogonal,
                          seed=np.random.default_rng([target_seed, d, r, order, s])) for s in range(n)]


def batch_key(d, r, order, m, *, seeds, target_seed=0, orthogonal=False, **kwargs):
    """A string naming one batch of trials (the key of sweep caches and result files)."""
    parts = [f"d={d}", f"r={r}", f"l={order}", f"m={m}", f"ts={target_seed}", f"orth={int(bool(orthogonal))}",
             "seeds=" + ",".join(str(s) for s in seeds)]
    for k in sorted(kwargs):
        v = kwargs[k]
        if v is None:
            continue
        parts.append(f"{k}={v!r}" if not isinstance(v, float) else f"{k}={v:.6g}")
    return ";".join(parts)


_ALG_KEYS = ("epochs", "iters", "delta", "eta", "lam", "reinit", "mode_switch", "polish")


def run_batch(d, r, order, m, *, seeds, target_seed=0, orthogonal=False, cache=None, **alg_kwargs):
    """Final relative errors and epochs-to-accuracy data of one batch of trials.

    Runs ``tdcore.algorithm1_batch`` on the sweep targets (:func:`sweep_targets`)
    with one seed per trial.  Diverged trials (frozen by the batch runner) get a
    NaN final error.

    Parameters
    ----------
    d, r, order, m : int
    seeds : sequence of int
    target_seed : int
    orthogonal : bool
    cache : dict-like, optional
        Read/written with key :func:`batch_key`; holds the returned dict.
    **alg_kwargs
        ``epochs``, ``iters``, ``delta``, ``eta``, ``lam``, ``reinit``,
        ``mode_switch``, ``polish`` for Algorithm 1.

    Returns
    -------
    dict
        ``errors`` (final relative error per trial), ``curves`` (relative error at
        the end of every epoch, per trial), ``diverged`` (trial indices),
        ``elapsed`` (seconds), ``params`` (the Params of the batch as a dict).
    """
    unknown = set(alg_kwargs) - set(_ALG_KEYS)
    if unknown:
        raise TypeError(f"run_batch: unknown Algorithm 1 option(s) {sorted(unknown)}; allowed: {list(_ALG_KEYS)}")
    seeds = _seeds(seeds)
    key = batch_key(d, r, order, m, seeds=seeds, target_seed=target_seed, orthogonal=orthogonal, **alg_kwargs)
    if cache is not None and key in cache:
        return cache[key]
    targets = sweep_targets(d, r, order, len(seeds), target_seed=target_seed, orthogonal=orthogonal)
    t0 = time.perf_counter()
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        br = algorithm1_batch(targets, m, seeds=seeds, **alg_kwargs)
    errors = []
    for b, res in enumerate(br.results):
        e = res.rel_error
        errors.append(float(e) if (b not in br.diverged and np.isfinite(e)) else math.nan)
    out = {
        "errors": errors,
        "curves": [[float(x) for x in res.history["rel_error"]] for res in br.results],
        "diverged": [int(b) for b in br.diverged],
        "elapsed": time.perf_counter() - t0,
        "params": _jsonable(br.params.to_dict()),
    }
    if cache is not None:
        cache[key] = out
    return out


# ---------------------------------------------------------------------------
# success probability against m
# ---------------------------------------------------------------------------
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
        e = np.asarray(self.errors, dtype=float)
        return np.mean(np.where(np.isfinite(e), e <= self.eps, False), axis=1)

    @property
    def final_success(self):
        """Fraction of trials whose final error alone is <= eps, per width (None if not recorded)."""
        if self.final_errors is None:
            return None
        e = np.asarray(self.final_errors, dtype=float)
        return np.mean(np.where(np.isfinite(e), e <= self.eps, False), axis=1)

    def m_star(self, q=0.8):
        """Smallest width whose success fraction is at least ``q`` (NaN if none)."""
        ok = np.flatnonzero(self.success >= q)
        return float(self.ms[ok[0]]) if ok.size else math.nan

    def to_dict(self):
        return _jsonable({**asdict(self), "success": self.success})

    @classmethod
    def from_dict(cls, d):
        keys = ("d", "r", "order", "ms", "eps", "seeds", "errors", "epochs", "stable_epochs", "elapsed",
                "final_errors")
        kw = {k: d[k] for k in keys if k in d}
        for k in ("errors", "final_errors"):
            if kw.get(k) is not None:
                kw[k] = np.array([[np.nan if v is None else v for v in row] for row in kw[k]], dtype=float)
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
    ms = _int_list("ms", ms)
    seeds = _seeds(seeds)
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
    q = _check_fraction("q", q)
    m_min = check_int("m_min", m_min, minimum=1)
    m_max = max(4 * r + 4, 12) if m_max is None else check_int("m_max", m_max, minimum=m_min)
    start = max(m_min, r - 1) if start is None else check_int("start", start, minimum=m_min)
    if start > m_max:
        raise ValueError(f"start={start} exceeds m_max={m_max}")
    seeds = _seeds(seeds)
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
        e = np.array(evaluated[m], dtype=float)
        return float(np.mean(np.where(np.isfinite(e), e <= eps, False)))

    m = start
    found = False
    while m <= m_max:
        if frac(m) >= q:
            found = True
            break
        m += 1
    certified = False
    if found:
        while m - 1 >= m_min:
            if frac(m - 1) >= q:
                m -= 1
            else:
                certified = True
                break
        else:
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
        return _jsonable({
            "vary": self.vary, "values": self.values, "fixed": self.fixed, "m_star": self.m_star,
            "curves": [r.curve.to_dict() for r in self.results], "certified": [r.certified for r in self.results],
            "fit": None if self.fit is None else asdict(self.fit), "elapsed": self.elapsed})

    @classmethod
    def from_dict(cls, d):
        from ._landscape import LineFit

        curves = [SuccessCurve.from_dict(c) for c in d["curves"]]
        q = d["fixed"]["q"]
        results = [MStarResult(float(np.nan if ms is None else ms), c, q, bool(cert))
                   for ms, c, cert in zip(d["m_star"], curves, d["certified"])]
        fit = None if d.get("fit") is None else LineFit(**d["fit"])
        return cls(d["vary"], np.array(d["values"]), d["fixed"],
                   np.array([np.nan if v is None else v for v in d["m_star"]], dtype=float), results, fit,
                   d.get("elapsed", 0.0))


def _loglog_fit(x, y):
    from ._landscape import fit_loglog_slope

    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    ok = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if ok.sum() < 3:
        return None
    return fit_loglog_slope(x[ok], y[ok])


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
    values = _int_list("values", values)
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
    ms = np.array([res.m_star for res in results], dtype=float)
    fixed = {"order": order, "eps": eps, "q": q, "epochs": epochs, "stable_epochs": stable_epochs,
             "n_seeds": len(list(seeds))}
    fixed.update({"r": r} if vary == "d" else {"d": d})
    return MStarSweep(vary, np.array(values), fixed, ms, results, _loglog_fit(values, ms), time.perf_counter() - t0)


# ---------------------------------------------------------------------------
# the headline figure
# ---------------------------------------------------------------------------
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
        if isinstance(lz, dict):
            ms = np.array(lz["m_star"], dtype=float)
            return (np.array(lz["ds"], float), np.median(ms, axis=1), ms.min(axis=1), ms.max(axis=1),
                    np.array(lz["prediction"], float))
        ms = np.asarray(lz.m_star, dtype=float)
        return (np.asarray(lz.ds, float), np.median(ms, axis=1), ms.min(axis=1), ms.max(axis=1),
                np.asarray(lz.prediction, float))

    def lazy_fit(self, order):
        """Log-log fit of the lazy median ``m*`` against ``d`` (LineFit or None)."""
        pts = self.lazy_points(order)
        if pts is None:
            return None
        return _loglog_fit(pts[0], pts[1])

    def count_slope(self, order):
        """Log-log slope of the dimension count ``C(d+l-1, l)/d`` over the lazy sweep's ``d``.

        The count's local slope is ``sum_{k<l} d/(d+k)``: it tends to ``l - 1`` but is
        visibly smaller at the small ``d`` where the lazy fit can be computed.
        """
        pts = self.lazy_points(order)
        if pts is None:
            return math.nan
        fit = _loglog_fit(pts[0], [_sym_count(int(d), order) for d in pts[0]])
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
        return _jsonable({"orders": self.orders, "eps": self.eps, "label": self.label,
                          "algorithm1": {str(o): s.to_dict() for o, s in self.algorithm1.items()},
                          "lazy": lazy})

    @classmethod
    def from_dict(cls, d):
        orders = [int(o) for o in d["orders"]]
        alg = {int(o): MStarSweep.from_dict(v) for o, v in d["algorithm1"].items()}
        lazy = {int(o): v for o, v in d.get("lazy", {}).items()}
        return cls(orders, alg, lazy, d["eps"], d.get("label", ""))


def _lazy_sweep_fn():
    """``tdcore.lazy_threshold_sweep`` from the landscape module (None if it is missing)."""
    try:
        from ._landscape import lazy_threshold_sweep
    except ImportError:  # pragma: no cover - the landscape module is part of the package
        return None
    return lazy_threshold_sweep


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
    eps = _check_fraction("eps", eps, open_right=True)
    alg_ds = alg_ds or {3: [8, 32, 128], 4: [8, 32, 128]}
    lazy_ds = lazy_ds or {3: [4, 6, 8, 12], 4: [4, 5, 6, 8]}
    lazy_fn = _lazy_sweep_fn()
    alg, lazy = {}, {}
    for o in orders:
        alg[o] = m_star_sweep("d", alg_ds[o], order=o, r=1, seeds=seeds, eps=eps, q=q, epochs=epochs,
                              stable_epochs=stable_epochs, target_seed=target_seed, cache=cache, m_min=1)
        if lazy_fn is None:
            lazy[o] = None
            continue
        key = (f"lazy;l={o};ds=" + ",".join(str(v) for v in lazy_ds[o]) + f";thr={eps:.6g};seeds="
               + ",".join(str(v) for v in lazy_seeds))
        if cache is not None and key in cache:
            lazy[o] = cache[key]
        else:
            lazy[o] = lazy_fn(lazy_ds[o], o, threshold=eps, seeds=tuple(lazy_seeds))
            if cache is not None:
                cache[key] = _lazy_to_dict(lazy[o])
    return HeadlineData(orders, alg, lazy, eps, label)


def _lazy_to_dict(lz):
    if lz is None or isinstance(lz, dict):
        return lz
    return _jsonable({"ds": lz.ds, "order": lz.order, "threshold": lz.threshold, "seeds": list(lz.seeds),
                      "m_star": lz.m_star, "prediction": lz.prediction, "elapsed": lz.elapsed})


def _sym_count(d, order):
    """``C(d+l-1, l) / d = (d+1)(d+2)...(d+l-1) / l!``, also for non-integer ``d``."""
    return float(np.prod([d + k for k in range(1, order)])) / math.factorial(order)


def headline_figure(data, *, axes=None, title=None):
    """The headline figure: ``m*`` against ``d`` on log-log axes, one panel per order.

    Algorithm 1 (blue) and the lazy fit (vermillion) with their fitted power laws
    and slopes in the legend, and the dimension count ``C(d+l-1, l)/d`` (grey,
    dashed) that the lazy ``m*`` follows, drawn over the whole range of ``d``.

    Parameters
    ----------
    data : HeadlineData or its ``to_dict()`` form
    axes : sequence of Axes, optional
    title : str, optional
        Figure title (default: none).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib.pyplot as plt

    if isinstance(data, dict):
        data = HeadlineData.from_dict(data)
    n = len(data.orders)
    if axes is None:
        fig, axes = plt.subplots(1, n, figsize=(4.8 * n, 3.9), squeeze=False)
        axes = axes[0]
    else:
        fig = axes[0].figure
    for ax, o in zip(axes, data.orders):
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
        _legend(ax, loc="upper left", fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def plot_headline(data, ax=None, order=None):
    """One panel of :func:`headline_figure` on a given Axes (for explorers and composite figures)."""
    if isinstance(data, dict):
        data = HeadlineData.from_dict(data)
    order = data.orders[0] if order is None else order
    fig, ax = _new_ax(ax)
    sub = HeadlineData([order], {order: data.algorithm1[order]}, {order: data.lazy.get(order)}, data.eps,
                       data.label)
    headline_figure(sub, axes=[ax])
    return fig


def plot_success_curves(curves, ax=None, q=None):
    """Success fraction against ``m / r`` for several :class:`SuccessCurve` (one line per curve)."""
    import matplotlib as mpl

    from matplotlib.ticker import MaxNLocator

    fig, ax = _new_ax(ax)
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
    _legend(ax, loc="lower right")
    return fig


def plot_m_star_vs_r(sweep, ax=None, theory_exponent=None):
    """``m*`` against ``r`` (log-log) with the fitted exponent and, optionally, the theory's ``r^p`` line."""
    fig, ax = _new_ax(ax)
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
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.set_xticks(rs)
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("rank $r$")
    ax.set_ylabel("smallest width $m^*$")
    _legend(ax, loc="upper left", fontsize=8)
    return fig


# ---------------------------------------------------------------------------
# error against epochs
# ---------------------------------------------------------------------------
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
    seeds = _seeds(seeds)
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


def plot_error_curves(results, ax=None, eps=None):
    """Median (line) and range over seeds (band) of the relative error against epochs."""
    import matplotlib as mpl

    fig, ax = _new_ax(ax)
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
    _legend(ax, loc="upper right", fontsize=8)
    return fig


# ---------------------------------------------------------------------------
# ablations
# ---------------------------------------------------------------------------
_VARIANTS = {
    "Algorithm 1": {},
    "no re-initialisation": {"reinit": False},
    "no mode switch": {"mode_switch": False},
    "no regulariser": {"lam": 0.0},
}


@dataclass
class AblationResult:
    """Outcome of :func:`ablation_study`.

    Attributes
    ----------
    config : dict
        ``d, r, order, m, eps, epochs``.
    variants : list of str
    errors : dict
        ``variant -> final relative errors`` (one per seed).
    epochs_to_eps : dict
        ``variant -> first epoch with error <= eps`` per seed (inf: never).
    elapsed : float
    """

    config: dict
    variants: list
    errors: dict
    epochs_to_eps: dict
    elapsed: float

    def success(self, variant):
        e = np.asarray(self.errors[variant], float)
        return float(np.mean(np.where(np.isfinite(e), e <= self.config["eps"], False)))

    def median_error(self, variant):
        return float(np.nanmedian(np.asarray(self.errors[variant], float)))

    def table(self):
        """Rows ``variant, success, median error, median epochs to eps``."""
        rows = []
        for v in self.variants:
            ep = np.asarray(self.epochs_to_eps[v], float)
            rows.append({"variant": v, "success": self.success(v), "median_error": self.median_error(v),
                         "median_epochs_to_eps": float(np.median(ep))})
        return rows

    def to_dict(self):
        return _jsonable(asdict(self))

    @classmethod
    def from_dict(cls, d):
        def num(v, missing):
            return missing if v is None else float(v)

        errors = {k: [num(v, math.nan) for v in vals] for k, vals in d["errors"].items()}
        to_eps = {k: [num(v, math.inf) for v in vals] for k, vals in d["epochs_to_eps"].items()}
        return cls(d["config"], list(d["variants"]), errors, to_eps, d.get("elapsed", 0.0))


def ablation_study(d, r, order, m, *, seeds, eps=0.05, epochs=None, variants=None, target_seed=0, cache=None):
    """Algorithm 1 against itself without one ingredient at a time.

    Parameters
    ----------
    d, r, order, m : int
    seeds : sequence of int
    eps : float
    epochs : int, optional
    variants : sequence of str, optional
        Any of ``"Algorithm 1"``, ``"no re-initialisation"``, ``"no mode switch"``,
        ``"no regulariser"`` (default all four).
    target_seed, cache
        As :func:`run_batch`.

    Returns
    -------
    AblationResult
    """
    variants = list(_VARIANTS) if variants is None else list(variants)
    bad = [v for v in variants if v not in _VARIANTS]
    if bad:
        raise ValueError(f"unknown variant(s) {bad}; allowed: {list(_VARIANTS)}")
    eps = check_float("eps", eps, positive=True)
    t0 = time.perf_counter()
    errors, to_eps = {}, {}
    for v in variants:
        out = run_batch(d, r, order, m, seeds=seeds, target_seed=target_seed, cache=cache, epochs=epochs,
                        **_VARIANTS[v])
        errors[v] = out["errors"]
        to_eps[v] = [_first_below(c, eps) for c in out["curves"]]
    cfg = {"d": d, "r": r, "order": order, "m": m, "eps": eps, "epochs": epochs, "n_seeds": len(list(seeds))}
    return AblationResult(cfg, variants, errors, to_eps, time.perf_counter() - t0)


def plot_ablation(result, ax=None):
    """Final error of every seed for each variant (log scale), with the accuracy line."""
    fig, ax = _new_ax(ax)
    cols = [method_color("algorithm1"), method_color("lazy"), method_color("gd"), method_color("deflation")]
    rng = np.random.default_rng(0)
    for k, v in enumerate(result.variants):
        e = np.asarray(result.errors[v], float)
        e = np.where(np.isfinite(e), e, 10.0)
        x = k + 0.12 * rng.uniform(-1, 1, size=e.size)
        ax.plot(x, e, "o", color=cols[k % 4], alpha=0.75, ms=5)
        ax.plot([k - 0.25, k + 0.25], [np.median(e)] * 2, color="k", lw=1.5)
    ax.axhline(result.config["eps"], color=method_color("reference"), ls=":", lw=1)
    ax.set_xticks(range(len(result.variants)))
    ax.set_xticklabels([f"{v}\n{100 * result.success(v):.0f}% reach {result.config['eps']:g}"
                        for v in result.variants], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("final relative error")
    c = result.config
    ax.set_title(f"$d={c['d']}$, $r={c['r']}$, $l={c['order']}$, $m={c['m']}$, {c['n_seeds']} seeds")
    return fig


def switch_ablation_vs_d(ds, r, order, m, *, seeds, eps=0.05, epochs=None, target_seed=0, cache=None):
    """Epochs needed to reach ``eps`` against ``d``, with and without the scalar mode switch.

    Returns
    -------
    dict
        ``ds``, ``with`` and ``without`` (arrays n_d x n_seeds of epochs-to-eps,
        inf where never reached), ``with_errors`` / ``without_errors`` (final errors),
        and the config.
    """
    ds = _int_list("ds", ds)
    seeds = _seeds(seeds)
    out = {"ds": ds, "r": r, "order": order, "m": m, "eps": eps, "epochs": epochs, "n_seeds": len(seeds)}
    for name, ms in (("with", True), ("without", False)):
        to_eps, errs = [], []
        for d in ds:
            res = run_batch(d, r, order, m, seeds=seeds, target_seed=target_seed, cache=cache, epochs=epochs,
                            mode_switch=ms)
            to_eps.append([_first_below(c, eps) for c in res["curves"]])
            errs.append(res["errors"])
        out[name] = np.array(to_eps, dtype=float)
        out[name + "_errors"] = np.array(errs, dtype=float)
    return out


def plot_switch_ablation(res, ax=None):
    """Median epochs-to-accuracy against ``d`` with and without the mode switch (range as error bars)."""
    fig, ax = _new_ax(ax)
    ds = np.asarray(res["ds"], float)
    K = res["epochs"] or default_params(int(ds[0]), res["order"], res["m"]).epochs
    for name, col, mk in (("with", method_color("algorithm1"), "o"), ("without", method_color("lazy"), "s")):
        arr = np.asarray(res[name], float)
        arr = np.where(np.isfinite(arr), arr, K + 1)
        med = np.median(arr, axis=1)
        ax.errorbar(ds, med, yerr=[med - arr.min(axis=1), arr.max(axis=1) - med], fmt=mk + "-", color=col,
                    capsize=2, label=f"{name} the mode switch")
    ax.axhline(K + 1, color=method_color("reference"), ls=":", lw=1)
    ax.text(ds[0], K + 1, " not reached within the budget", va="bottom", fontsize=8,
            color=method_color("reference"))
    ax.set_xscale("log")
    ax.set_xlabel("dimension $d$")
    ax.set_ylabel(f"epochs until error $\\leq$ {res['eps']:g}")
    ax.set_title(f"$r={res['r']}$, $l={res['order']}$, $m={res['m']}$, {res['n_seeds']} seeds")
    _legend(ax, loc="center left")
    return fig


# ---------------------------------------------------------------------------
# lambda sweep and polish
# ---------------------------------------------------------------------------
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
        return _jsonable({"lams": self.lams, "errors": self.errors, "polished": self.polished,
                          "polish_failures": self.polish_failures,
                          "fit": None if self.fit is None else asdict(self.fit), "config": self.config,
                          "elapsed": self.elapsed})

    @classmethod
    def from_dict(cls, d):
        from ._landscape import LineFit

        def arr(x):
            return np.array([[np.nan if v is None else v for v in row] for row in x], dtype=float)

        return cls(np.array(d["lams"], float), arr(d["errors"]), arr(d["polished"]), d["polish_failures"],
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
    lams = _float_list("lams", lams)
    if any(v <= 0 for v in lams):
        raise ValueError("lams must be > 0 (a log-log fit of the floor needs positive values)")
    seeds = _seeds(seeds)
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
    fit = _loglog_fit(lams, np.nanmedian(errs, axis=1))
    cfg = {"d": d, "r": r, "order": order, "m": m, "polish": polish, "epochs": epochs, "n_seeds": len(seeds)}
    return LambdaSweep(np.array(lams), errs, pol, int(np.sum(~np.isfinite(pol))), fit, cfg,
                       time.perf_counter() - t0)


def plot_lambda_sweep(sweep, ax=None):
    """Median final error against ``lam`` (log-log), before and after the polish."""
    fig, ax = _new_ax(ax)
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
    _legend(ax, loc="center right", fontsize=8)
    return fig


# ---------------------------------------------------------------------------
# Algorithm 1 piece by piece
# ---------------------------------------------------------------------------
def _squeeze_state(st):
    """A copy of a single-trial state from a callback, without the batch axis.

    The copy matters: with the NumPy backend the callback receives the run's
    live arrays, and the next re-initialisation writes into ``a``, ``c``,
    ``chat`` and ``switched`` in place.
    """
    out = {}
    for k, v in st.items():
        v = np.asarray(v)
        full = 3 if k == "U" else 2
        out[k] = np.array(v[0] if v.ndim == full else v, copy=True)
    return out


def trajectory_run(target, m, *, seed=0, record_every=1, **alg_kwargs):
    """One Algorithm 1 run with the per-epoch state of every column.

    A ``callback`` stores, at the end of every epoch, each column's norm
    ``||u_i||``, its alignment ``||P_S u_i|| / ||u_i||`` with the span ``S`` of the
    target's components, its weight ``a_i c_i^{l-2}`` and whether it has switched.

    Parameters
    ----------
    target : SymCP
    m : int
    seed : int
    record_every : int
        Stride of the per-iteration records (the fresh column's norms, the error).
    **alg_kwargs
        Passed to :func:`tdcore.algorithm1`.

    Returns
    -------
    dict
        ``result`` (the Result), ``norms``, ``align``, ``weights``, ``switched``
        (arrays K x m, epoch ends), ``basis`` (orthonormal basis of S).
    """
    if not isinstance(target, SymCP):
        raise TypeError("trajectory_run needs a SymCP target (its subspace S must be known)")
    Q = subspace_basis(target)
    snaps = []

    def cb(info):
        st = _squeeze_state(info["state"])
        snaps.append(st)
        return False

    res = algorithm1(target, m, seed=seed, record_every=record_every, callback=cb, **alg_kwargs)
    order = res.params.order
    norms, align, weights, sw = [], [], [], []
    for st in snaps:
        U = st["U"]
        n = np.linalg.norm(U, axis=0)
        ps = np.linalg.norm(Q.T @ U, axis=0)
        norms.append(n)
        align.append(ps / np.maximum(n, 1e-300))
        weights.append(st["a"] * st["c"] ** (order - 2))
        sw.append(st["switched"])
    return {"result": res, "norms": np.array(norms), "align": np.array(align), "weights": np.array(weights),
            "switched": np.array(sw), "basis": Q}


def _growth_epochs(its, p, K, limit=3):
    """Epochs >= 2 whose fresh column grew 10x (up to ``limit``), with the epoch before the first."""
    grew = []
    for k in range(2, K + 1):
        rec = [it for it in its if it["epoch"] == k]
        if rec and max(it["fresh_norm"] for it in rec) >= 10 * rec[0]["fresh_norm"]:
            grew.append(k)
    grew = grew[:limit]
    if not grew:
        return list(range(2, min(K, 4) + 1))
    if grew[0] > 2:
        grew = [grew[0] - 1] + grew
    return grew


def rescue_seed(d, r, order, m, *, seeds, eps=0.05, epochs=12, target_seed=0, cache=None):
    """A seed where re-initialisation rescues a stuck run: the run most in need of it.

    Among ``seeds``, the trials that succeed with Algorithm 1 but fail without
    re-initialisation; of those, the one whose error stays above ``eps`` for the
    most epochs before it is repaired.

    Returns
    -------
    dict
        ``seed`` (None if no trial qualifies), ``stuck_epochs``, ``n_rescued``
        (how many trials qualify), ``n_seeds``, ``target`` (the trial's SymCP).
    """
    seeds = _seeds(seeds)
    full = run_batch(d, r, order, m, seeds=seeds, target_seed=target_seed, cache=cache, epochs=epochs)
    nore = run_batch(d, r, order, m, seeds=seeds, target_seed=target_seed, cache=cache, epochs=epochs, reinit=False)
    best, best_stuck, n = None, -1, 0
    for b, s in enumerate(seeds):
        ef, en = full["errors"][b], nore["errors"][b]
        if np.isfinite(ef) and ef <= eps and not (np.isfinite(en) and en <= eps):
            n += 1
            stuck = _first_below(full["curves"][b], eps) - 1
            if stuck > best_stuck:
                best, best_stuck = b, stuck
    out = {"seed": None if best is None else seeds[best], "stuck_epochs": best_stuck, "n_rescued": n,
           "n_seeds": len(seeds), "target": None}
    if best is not None:
        out["target"] = sweep_targets(d, r, order, len(seeds), target_seed=target_seed)[best]
    return out


def plot_trajectories(traj, axes=None, fresh_epochs=None):
    """Four panels of one run: error by iteration, column norms and alignments by epoch, fresh columns.

    Parameters
    ----------
    traj : dict from :func:`trajectory_run`
    axes : four Axes, optional
    fresh_epochs : sequence of int, optional
        Epochs whose fresh column is drawn in the last panel (default: the first
        four epochs after the first).

    Returns
    -------
    matplotlib.figure.Figure
    """
    import matplotlib as mpl
    import matplotlib.pyplot as plt

    res = traj["result"]
    p = res.params
    if axes is None:
        fig, axes = plt.subplots(2, 2, figsize=(10, 6.6))
        axes = axes.ravel()
    else:
        fig = axes[0].figure
    its = res.history["iterations"]
    H = p.iters
    x = np.array([(it["epoch"] - 1) * H + it["iteration"] for it in its]) / H
    ax = axes[0]
    ax.plot(x, [it["rel_error"] for it in its], color=method_color("algorithm1"))
    ax.set_yscale("log")
    ax.set_xlabel("epoch (fractional: iterations / H)")
    ax.set_ylabel("relative error")
    ax.set_title("(a) error through the run")
    K = traj["norms"].shape[0]
    ep = np.arange(1, K + 1)
    cmap = mpl.colormaps["tab10"]
    reinit = np.array(res.history["reinit_index"])
    for i in range(p.m):
        col = cmap(i % 10)
        axes[1].plot(ep, traj["norms"][:, i], marker=".", color=col, lw=1.2)
        axes[2].plot(ep, traj["align"][:, i], marker=".", color=col, lw=1.2)
    for k, j in enumerate(reinit):
        if j >= 0:
            axes[1].plot(k + 1, traj["norms"][k, j], "x", color="k", ms=6)
    axes[1].axhline(p.delta, color=method_color("reference"), ls=":", lw=1)
    axes[1].axhline(p.switch_threshold, color=method_color("reference"), ls="--", lw=1)
    axes[1].set_yscale("log")
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel(r"$\|u_i\|$ at the end of the epoch")
    axes[1].set_title(r"(b) column norms ($\times$: re-initialised that epoch)")
    r = traj["basis"].shape[1]
    axes[2].axhline(math.sqrt(r / p.d), color=method_color("reference"), ls=":", lw=1)
    axes[2].set_ylim(0, 1.05)
    axes[2].set_xlabel("epoch")
    axes[2].set_ylabel(r"$\|P_S u_i\| / \|u_i\|$")
    axes[2].set_title(r"(c) alignment with $S$ (dotted: $\sqrt{r/d}$, a random vector)")
    ax = axes[3]
    if fresh_epochs is None:
        fresh_epochs = _growth_epochs(its, p, K)
    cm2 = mpl.colormaps["viridis"]
    for n, k in enumerate(fresh_epochs):
        rec = [it for it in its if it["epoch"] == k]
        if not rec:
            continue
        t = [it["iteration"] for it in rec]
        col = cm2(n / max(1, len(fresh_epochs) - 1))
        ax.plot(t, [it["fresh_norm"] for it in rec], color=col, lw=1.3, label=f"epoch {k}: $\\|u\\|$")
        if rec[0].get("fresh_ps_norm") is not None:
            ax.plot(t, [it["fresh_ps_norm"] for it in rec], color=col, lw=1.3, ls="--")
    ax.axhline(p.switch_threshold, color=method_color("reference"), ls="--", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("iteration within the epoch")
    ax.set_ylabel(r"fresh column: $\|u\|$ (solid), $\|P_S u\|$ (dashed)")
    ax.set_title("(d) the re-initialised column")
    _legend(ax, loc="lower right", fontsize=7)
    return fig


def regularizer_comparison(d, r, order, m, *, seeds, lams=(0.0, 2e-3, 5e-2), epochs=12, target_seed=0):
    """Column norms and re-initialisation jumps with and without the regulariser.

    Returns
    -------
    dict
        Per ``lam``: ``errors``, ``max_jump`` (largest ``f_after - f_before`` over the
        re-initialisations of epochs >= 2, per seed), ``sorted_norms`` (final column
        norms, sorted, per seed), ``sum_sq`` (``sum ||u_i||^2`` per seed) and
        ``weight_l1`` (``sum |a_i c_i^{l-2}| ||u_i||^l``, the components' Frobenius norms).
    """
    seeds = _seeds(seeds)
    targets = sweep_targets(d, r, order, len(seeds), target_seed=target_seed)
    out = {"config": {"d": d, "r": r, "order": order, "m": m, "epochs": epochs, "n_seeds": len(seeds)}, "lams": []}
    for lam in lams:
        with np.errstate(all="ignore"):
            br = algorithm1_batch(targets, m, seeds=seeds, lam=lam, epochs=epochs)
        jumps, norms, ssq, l1 = [], [], [], []
        for res in br.results:
            h = res.history
            j = np.array(h["f_after_reinit"][1:]) - np.array(h["f_before_reinit"][1:])
            jumps.append(float(j.max()) if j.size else math.nan)
            n = np.linalg.norm(res.state["U"], axis=0)
            norms.append(np.sort(n)[::-1])
            ssq.append(float(np.sum(n**2)))
            l1.append(float(np.sum(np.abs(res.model.weights) * n**order)))
        out["lams"].append(float(lam))
        out[float(lam)] = {"errors": [float(e) for e in br.rel_errors], "max_jump": jumps,
                           "sorted_norms": np.array(norms), "sum_sq": ssq, "weight_l1": l1}
    return out


# ---------------------------------------------------------------------------
# the proof in pictures
# ---------------------------------------------------------------------------
def recorded_run(target, m, *, seed=0, epochs=12, **alg_kwargs):
    """An Algorithm 1 run recording every iteration and every epoch-end state.

    Returns
    -------
    dict
        ``result`` (Result with ``record_every=1``), ``states`` (list of epoch-end
        states ``U, a, c, chat, switched``), ``basis`` (of S), ``target``.
    """
    if not isinstance(target, SymCP):
        raise TypeError("recorded_run needs a SymCP target")
    states = []

    def cb(info):
        states.append(_squeeze_state(info["state"]))
        return False

    res = algorithm1(target, m, seed=seed, epochs=epochs, record_every=1, callback=cb, **alg_kwargs)
    return {"result": res, "states": states, "basis": subspace_basis(target), "target": target}


def _epoch_records(res):
    recs = {}
    for it in res.history["iterations"]:
        recs.setdefault(it["epoch"], []).append(it)
    return recs


def lemma3_steps(run):
    """Change of the objective in every iteration of a recorded run (Lemma 3).

    Step ``t`` of epoch ``k`` changes ``f`` from the record of iteration ``t`` to that
    of ``t + 1`` (to the epoch-end objective for ``t = H``).  Steps that may contain
    a scalar mode switch are flagged: where the records carry a per-iteration
    ``n_switches`` it is used; otherwise, in an epoch with switches, the step at
    which the fresh column crosses the threshold is flagged and, if the epoch has
    more switches than such crossings, every step of the epoch.

    Parameters
    ----------
    run : dict from :func:`recorded_run` (or a Result recorded with ``record_every=1``)

    Returns
    -------
    dict
        ``df`` (changes), ``f`` (objective before the step), ``epoch``, ``switch``
        (bool mask of flagged steps), ``n_increase_normal`` (normal steps with
        ``df > tol``), ``max_rel_increase_normal``, ``max_rel_increase_switch``,
        ``tol`` (``1e-12`` relative, rounding).
    """
    res = run["result"] if isinstance(run, dict) else run
    p = res.params
    h = res.history
    if p.iters and h["iterations"] and len(h["iterations"]) != p.iters * len(h["epoch"]):
        raise ValueError("lemma3_steps needs a run recorded with record_every=1")
    recs = _epoch_records(res)
    df, f, ep, flag = [], [], [], []
    for k_idx, k in enumerate(h["epoch"]):
        rec = recs[k]
        fk = [it["objective"] for it in rec] + [h["objective"][k_idx]]
        fresh = [it["fresh_norm"] for it in rec]
        nsw = h["n_switches"][k_idx]
        per_it = rec[0].get("n_switches") is not None
        crossings = [t for t in range(len(rec) - 1) if fresh[t] <= p.switch_threshold < fresh[t + 1]]
        whole = (not per_it) and nsw > len(crossings)
        for t in range(len(rec)):
            df.append(fk[t + 1] - fk[t])
            f.append(fk[t])
            ep.append(k)
            if per_it:
                flag.append(bool(rec[t]["n_switches"]))
            else:
                flag.append(bool(nsw) and (whole or t in crossings or (t == len(rec) - 1 and nsw > len(crossings))))
    df, f, flag = np.array(df), np.array(f), np.array(flag, dtype=bool)
    tol = 1e-12 * np.maximum(np.abs(f), 1e-300)
    inc = df > tol
    rel = df / np.maximum(np.abs(f), 1e-300)
    return {"df": df, "f": f, "epoch": np.array(ep), "switch": flag,
            "n_steps": int(df.size), "n_flagged": int(flag.sum()),
            "n_increase_normal": int(np.sum(inc & ~flag)), "n_increase_switch": int(np.sum(inc & flag)),
            "max_rel_increase_normal": float(np.max(np.where(~flag, rel, -np.inf))) if (~flag).any() else math.nan,
            "max_rel_increase_switch": float(np.max(np.where(flag, rel, -np.inf))) if flag.any() else math.nan,
            "tol": 1e-12}


def plot_lemma3(steps, ax=None):
    """The objective through the run (log scale), with flagged (switch) steps marked."""
    fig, ax = _new_ax(ax)
    f = steps["f"]
    t = np.arange(f.size)
    ax.plot(t, f, color=method_color("algorithm1"), lw=1.2, label="objective $f$ before each step")
    inc = steps["df"] > steps["tol"] * np.abs(f)
    sel = inc & steps["switch"]
    if sel.any():
        ax.plot(t[sel], f[sel], "^", color=method_color("lazy"), ms=6, label="increase in a step with a switch")
    sel = inc & ~steps["switch"]
    if sel.any():
        ax.plot(t[sel], f[sel], "x", color="k", ms=7, label="increase in a normal step")
    ep = steps["epoch"]
    for b in np.flatnonzero(np.diff(ep)) + 1:
        ax.axvline(b, color=method_color("reference"), lw=0.5, alpha=0.5)
    ax.set_yscale("log")
    ax.set_xlabel("iteration (thin lines: re-initialisations)")
    ax.set_ylabel("objective $f$")
    _legend(ax, loc="upper right", fontsize=8)
    return fig


def reinit_jumps(*, ms, lams, d, r, order, seeds, epochs=10, target_seed=0, cache=None):
    """Increase of ``f`` at re-initialisation against ``1 / (lam m)`` (Lemmas 2 and 4).

    For every ``(m, lam)`` a batch of runs; the jump of epoch ``k >= 2`` is
    ``f_after_reinit - f_before_reinit``.  Also records, for Lemma 5, the largest
    ``||P_B U||_F^2 / ((m + K) delta^2)`` of each batch.

    Returns
    -------
    dict
        ``rows``: one dict per ``(m, lam)`` with ``bound = 1/(lam m)``, ``max_jump``,
        ``median_jump``, ``constant = max_jump * lam * m``, ``max_epoch_increase``
        (largest ``f`` at the end of an epoch minus ``f`` before its re-initialisation,
        Lemma 2) and ``max_pb_ratio``;
        ``constant``: the largest measured constant.
    """
    ms = _int_list("ms", ms)
    lams = _float_list("lams", lams)
    if any(v <= 0 for v in lams):
        raise ValueError("lams must be > 0")
    seeds = _seeds(seeds)
    targets = sweep_targets(d, r, order, len(seeds), target_seed=target_seed)
    rows = []
    for m in ms:
        for lam in lams:
            key = batch_key(d, r, order, m, seeds=seeds, target_seed=target_seed, lam=lam, epochs=epochs) + ";jumps"
            if cache is not None and key in cache:
                rows.append(cache[key])
                continue
            with np.errstate(all="ignore"):
                br = algorithm1_batch(targets, m, seeds=seeds, lam=lam, epochs=epochs)
            jumps, pbr, incr = [], [], []
            for res in br.results:
                h = res.history
                jumps.extend(np.array(h["f_after_reinit"][1:]) - np.array(h["f_before_reinit"][1:]))
                incr.extend(np.array(h["objective"][1:]) - np.array(h["f_before_reinit"][1:]))
                p = res.params
                pb = [v for v in h["pb_norm2"] if v is not None]
                if pb:
                    pbr.append(max(pb) / ((p.m + p.epochs) * p.delta**2))
            jumps = np.array(jumps, float)
            row = {"m": m, "lam": lam, "bound": 1.0 / (lam * m), "max_jump": float(jumps.max()),
                   "median_jump": float(np.median(jumps)), "constant": float(jumps.max() * lam * m),
                   "max_epoch_increase": float(np.max(incr)),
                   "max_pb_ratio": float(max(pbr)) if pbr else math.nan}
            if cache is not None:
                cache[key] = row
            rows.append(row)
    return {"rows": rows, "constant": max(r_["constant"] for r_ in rows),
            "config": {"d": d, "r": r, "order": order, "epochs": epochs, "n_seeds": len(seeds)}}


def plot_reinit_jumps(jumps, ax=None):
    """Largest and median re-initialisation jump against ``1/(lam m)``, with the line ``y = x``."""
    fig, ax = _new_ax(ax)
    rows = jumps["rows"]
    b = np.array([r_["bound"] for r_ in rows])
    mx = np.maximum([r_["max_jump"] for r_ in rows], 1e-18)
    md = np.maximum([r_["median_jump"] for r_ in rows], 1e-18)
    ax.plot(b, mx, "o", color=method_color("algorithm1"), label="largest jump")
    ax.plot(b, md, "s", color=method_color("algorithm1"), mfc="none", label="median jump")
    xx = np.geomspace(b.min(), b.max(), 20)
    ax.plot(xx, xx, ls="--", color=method_color("reference"), label=r"$1/(\lambda m)$")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"$1/(\lambda m)$")
    ax.set_ylabel(r"$f$ after $-$ $f$ before re-initialisation")
    _legend(ax, loc="lower right", fontsize=8)
    return fig


def lemma5_ratios(run):
    """``||P_B U||_F^2 / ((m + K) delta^2)`` at the end of every epoch (Lemma 5 says <= 1)."""
    res = run["result"] if isinstance(run, dict) else run
    p = res.params
    pb = np.array([np.nan if v is None else v for v in res.history["pb_norm2"]], float)
    return pb / ((p.m + p.epochs) * p.delta**2)


def plot_lemma5(ratios, ax=None, labels=None):
    """Lemma 5's ratio by epoch for one or more runs, with the bound 1."""
    fig, ax = _new_ax(ax)
    if isinstance(ratios, np.ndarray) and ratios.ndim == 1:
        ratios = [ratios]
    for k, rr in enumerate(ratios):
        ax.plot(np.arange(1, len(rr) + 1), rr, marker=".",
                label=None if labels is None else labels[k])
    ax.axhline(1.0, color=method_color("reference"), ls="--", lw=1, label="Lemma 5's bound")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(r"$\|P_B U\|_F^2 \,/\, ((m+K)\delta^2)$")
    _legend(ax, loc="lower left", fontsize=8)
    return fig


def _projected_residual(U, s, target, Q):
    """``P_{S^{(x)l}} T - T*`` as a SymCP (T's factors projected onto S)."""
    PU = Q @ (Q.T @ np.asarray(U, float))
    return SymCP(np.concatenate([np.asarray(s, float), -np.asarray(target.weights, float)]),
                 np.hstack([PU, np.asarray(target.factors, float)]), target.order)


def lemma6_correlations(target, U, s, *, n_samples=20000, seed=0, space="S"):
    """Monte Carlo of Lemma 6: correlation of a fresh component with the residual, inside S.

    For ``n_samples`` draws of a sign ``a`` and a direction ``v`` uniform on the unit
    sphere of ``S`` (the normalised ``P_S u`` of a fresh ``u ~ Unif(S^{d-1})``),
    computes ``a <P_{S^l} T - T*, v^{(x) l}> / ||P_{S^l} T - T*||_F``.

    Parameters
    ----------
    target : SymCP
    U, s : arrays (d, m), (m,)
        The current model ``sum_i s_i u_i^{(x) l}``.
    n_samples : int
    seed : int
    space : {"S", "full"}
        ``"full"`` draws ``v`` uniform on the whole sphere ``S^{d-1}`` instead
        (the correlation a fresh component has before any projection), for comparison.

    Returns
    -------
    dict
        ``corr`` (samples), ``residual_norm``, ``r`` (dimension of S),
        ``p_negative``, ``c6`` (largest ``c`` with ``P(corr <= -c r^{-l/2}) >= 1/5``:
        minus the 20% quantile times ``r^{l/2}``).
    """
    if not isinstance(target, SymCP):
        raise TypeError("lemma6_correlations needs a SymCP target")
    n_samples = check_int("n_samples", n_samples, minimum=10)
    Q = subspace_basis(target)
    R = _projected_residual(U, s, target, Q)
    rn = R.norm()
    if rn == 0:
        raise ValueError("the residual is zero: the model already equals the target")
    if space not in ("S", "full"):
        raise ValueError(f"space must be 'S' or 'full', got {space!r}")
    rng = as_rng(check_seed(seed))
    k = Q.shape[1]
    if space == "S":
        g = rng.standard_normal((k, n_samples))
        V = Q @ (g / np.linalg.norm(g, axis=0, keepdims=True))
    else:
        g = rng.standard_normal((target.d, n_samples))
        V = g / np.linalg.norm(g, axis=0, keepdims=True)
    a = rng.choice([-1.0, 1.0], size=n_samples)
    vals = (R.weights[:, None] * (R.factors.T @ V) ** R.order).sum(axis=0)
    corr = a * vals / rn
    q20 = float(np.quantile(corr, 0.2))
    return {"corr": corr, "residual_norm": float(rn), "r": k, "order": target.order, "space": space,
            "p_negative": float(np.mean(corr < 0)), "q20": q20, "c6": -q20 * k ** (target.order / 2)}


def plot_lemma6(mc, ax=None):
    """Histogram of the scaled correlation ``corr * r^{l/2}``, with the 20% quantile."""
    fig, ax = _new_ax(ax)
    scale = mc["r"] ** (mc["order"] / 2)
    ax.hist(mc["corr"] * scale, bins=80, color=method_color("algorithm1"), alpha=0.8)
    ax.axvline(-mc["c6"], color=method_color("lazy"), ls="--",
               label=f"20% quantile: $-{mc['c6']:.2f}$")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel(r"$a\,\langle P_{S^{\otimes l}}T - T^*, \bar v^{\otimes l}\rangle\,/\,\|\cdot\|_F"
                  r"\;\times\; r^{l/2}$")
    ax.set_ylabel("count")
    _legend(ax, loc="upper right", fontsize=8)
    return fig


def _fit_rate(t, y):
    """Least-squares slope of log(y) against t (per-step exponential rate)."""
    t = np.asarray(t, float)
    y = np.log(np.asarray(y, float))
    if t.size < 3:
        return math.nan
    return float(np.polyfit(t, y, 1)[0])


def lemma7_growth(run, *, min_growth=100.0, saturation=0.1):
    """Exponential growth of ``||P_S u_t||^2`` of the fresh column (Lemma 7), epoch by epoch.

    An epoch ``k >= 2`` counts as a growth epoch when its fresh column's
    ``||P_S u||`` ends at least ``min_growth`` times larger than it started.  In
    such an epoch the per-step growth rate of ``log ||P_S u_t||^2`` is fitted
    separately before the mode switch (``||u|| <= threshold``) and after it, up to
    the point where ``||P_S u||`` reaches ``saturation`` (then the component is no
    longer small and the lemma's regime ends).

    Returns
    -------
    dict
        ``epochs`` (growth epochs), ``rate_before``, ``rate_after`` (per-step
        rates of ``log ||P_S u||^2``), ``eps_start`` (relative error right after the
        re-initialisation: the fit part of ``f_after_reinit``), ``kappa``
        (``(exp(rate_after) - 1) r^{l/2} / (eta eps_start)``, the constant in Lemma 7's ``1 + Omega(eta eps / r^{l/2})``), ``n_epochs``
        (epochs >= 2), ``curves`` (``t, ||P_S u_t||`` per growth epoch).
    """
    res = run["result"] if isinstance(run, dict) else run
    p = res.params
    h = res.history
    recs = _epoch_records(res)
    r = run["basis"].shape[1] if isinstance(run, dict) else None
    out = {"epochs": [], "rate_before": [], "rate_after": [], "eps_start": [], "kappa": [], "curves": [],
           "n_epochs": 0, "eta": p.eta, "r": r, "order": p.order}
    for k_idx, k in enumerate(h["epoch"]):
        if k < 2:
            continue
        out["n_epochs"] += 1
        rec = recs[k]
        ps = np.array([it["fresh_ps_norm"] for it in rec], float)
        nrm = np.array([it["fresh_norm"] for it in rec], float)
        if not np.all(np.isfinite(ps)) or ps[-1] < min_growth * ps[0]:
            continue
        t = np.arange(1, ps.size + 1)
        before = (nrm <= p.switch_threshold)
        sat = np.flatnonzero(ps >= saturation)
        end = sat[0] if sat.size else ps.size
        after = (~before) & (t - 1 < end)
        # skip the first few steps: the S-component of a fresh column needs a moment to dominate
        b_idx = np.flatnonzero(before)[2:]
        rb = _fit_rate(t[b_idx], ps[b_idx] ** 2) if b_idx.size >= 3 else math.nan
        ra = _fit_rate(t[after], ps[after] ** 2) if after.sum() >= 3 else math.nan
        # the residual the fresh column sees: after the re-initialisation (fit part of f_after)
        fit0 = h["f_after_reinit"][k_idx] - h["regularizer"][k_idx - 1]
        eps0 = math.sqrt(max(2.0 * fit0, 0.0)) / p.target_norm
        out["epochs"].append(k)
        out["rate_before"].append(rb)
        out["rate_after"].append(ra)
        out["eps_start"].append(eps0)
        kap = math.nan
        if r is not None and np.isfinite(ra) and eps0 > 0:
            kap = (math.exp(ra) - 1) * r ** (p.order / 2) / (p.eta * eps0)
        out["kappa"].append(kap)
        out["curves"].append((t, ps))
    return out


def plot_lemma7(growth, ax=None, max_curves=6):
    """``||P_S u_t||`` of the fresh column in growth epochs (log scale)."""
    import matplotlib as mpl

    fig, ax = _new_ax(ax)
    cmap = mpl.colormaps["viridis"]
    curves = growth["curves"][:max_curves]
    for n, ((t, ps), k) in enumerate(zip(curves, growth["epochs"])):
        ax.plot(t, ps, color=cmap(n / max(1, len(curves) - 1)), label=f"epoch {k}")
    ax.set_yscale("log")
    ax.set_xlabel("iteration within the epoch")
    ax.set_ylabel(r"$\|P_S u_t\|$ of the fresh column")
    _legend(ax, loc="lower right", fontsize=8)
    return fig


def lemma9_paths(run, *, min_decrease=1e-9):
    """Path length of the tensor in each epoch against Lemma 9's ``sqrt(eta H / lam (f_0 - f_H))``.

    Returns
    -------
    dict
        ``epochs``, ``path`` (``sum_t ||T_t - T_{t-1}||_F``), ``decrease``
        (``f_0 - f_H`` with ``f_0`` after the re-initialisation), ``scale``
        (``sqrt(eta H / lam * decrease)``), ``ratio`` (path / scale, only for
        epochs whose decrease exceeds ``min_decrease``), ``constant`` (largest ratio).
    """
    res = run["result"] if isinstance(run, dict) else run
    p = res.params
    if p.lam <= 0:
        raise ValueError("Lemma 9's scale needs lam > 0")
    h = res.history
    recs = _epoch_records(res)
    out = {"epochs": [], "path": [], "decrease": [], "scale": [], "ratio": []}
    for k_idx, k in enumerate(h["epoch"]):
        path = float(sum(it["step_change"] for it in recs[k]))
        dec = h["f_after_reinit"][k_idx] - h["objective"][k_idx]
        scale = math.sqrt(p.eta * p.iters / p.lam * max(dec, 0.0))
        out["epochs"].append(k)
        out["path"].append(path)
        out["decrease"].append(dec)
        out["scale"].append(scale)
        out["ratio"].append(path / scale if dec > min_decrease else math.nan)
    rat = np.array(out["ratio"], float)
    out["constant"] = float(np.nanmax(rat)) if np.isfinite(rat).any() else math.nan
    return out


def plot_lemma9(paths, ax=None):
    """Path length against Lemma 9's scale, per epoch (log-log), with ``y = x``."""
    fig, ax = _new_ax(ax)
    sc = np.array(paths["scale"])
    pa = np.array(paths["path"])
    ok = np.isfinite(np.array(paths["ratio"], float))
    ax.plot(sc[ok], pa[ok], "o", color=method_color("algorithm1"), label="epochs of the run")
    if ok.any():
        xx = np.geomspace(sc[ok].min(), sc[ok].max(), 10)
        ax.plot(xx, xx, ls="--", color=method_color("reference"), label="path = scale")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"$\sqrt{\eta H/\lambda\;(f_0 - f_H)}$")
    ax.set_ylabel(r"$\sum_t \|T_t - T_{t-1}\|_F$")
    _legend(ax, loc="lower right", fontsize=8)
    return fig


def lemma1_decrease(results, *, eps, substantial=0.1):
    """Fraction of epochs that decrease ``f`` while the error exceeds ``eps`` (Lemma 1).

    An epoch ``k`` counts when the relative error at its start (end of epoch
    ``k - 1``; epoch 1 starts from the initialisation, error 1) exceeds ``eps``;
    it decreases when ``f`` at its end is below ``f`` before its re-initialisation.

    Parameters
    ----------
    results : sequence of Result
    eps : float
    substantial : float
        Also count the epochs whose decrease is at least this fraction of ``f``
        before the re-initialisation.

    Returns
    -------
    dict
        ``n_epochs`` (counted), ``n_decrease``, ``fraction`` (any decrease),
        ``n_substantial``, ``fraction_substantial``, ``decreases`` (``f_before -
        f_end`` of the counted epochs), ``f_before``.
    """
    eps = check_float("eps", eps, positive=True)
    substantial = check_float("substantial", substantial, nonnegative=True)
    dec, fb = [], []
    for res in results:
        h = res.history
        for k_idx in range(len(h["epoch"])):
            start = 1.0 if k_idx == 0 else h["rel_error"][k_idx - 1]
            if start > eps:
                dec.append(h["f_before_reinit"][k_idx] - h["objective"][k_idx])
                fb.append(h["f_before_reinit"][k_idx])
    dec, fb = np.array(dec, float), np.array(fb, float)
    n = int(dec.size)
    nd = int(np.sum(dec > 0))
    ns = int(np.sum(dec >= substantial * fb))
    return {"n_epochs": n, "n_decrease": nd, "fraction": nd / n if n else math.nan, "n_substantial": ns,
            "fraction_substantial": ns / n if n else math.nan, "substantial": substantial, "decreases": dec,
            "f_before": fb}


def plot_lemma1(stats, ax=None):
    """Histogram of the relative per-epoch change of ``f`` in epochs that start above the accuracy."""
    fig, ax = _new_ax(ax)
    rel = -stats["decreases"] / np.maximum(stats["f_before"], 1e-300)
    ax.hist(rel, bins=40, color=method_color("algorithm1"), alpha=0.8)
    ax.axvline(0, color="k", lw=0.8)
    ax.axvline(-stats["substantial"], color=method_color("lazy"), ls="--", lw=1)
    ax.set_xlabel(r"($f$ at the end of the epoch $-$ $f$ before its re-initialisation) / $f$ before")
    ax.set_ylabel("epochs")
    ax.set_title(f"{stats['n_substantial']} of {stats['n_epochs']} epochs lower $f$ by "
                 f"$\\geq$ {100 * stats['substantial']:.0f}% (Lemma 1: at least 1/6 make progress)")
    return fig


# ---------------------------------------------------------------------------
# stored results and explorers
# ---------------------------------------------------------------------------
def load_results(name="convergence_full.json", *, required=False):
    """Read a results file written by ``scripts/full_sweeps.py`` (a JSON dict).

    ``name`` is a path, or a file name looked up in ``results/`` of the working
    directory, of its parent (a chapter runs in ``chapters/``) and of the
    repository that holds the installed package.

    Parameters
    ----------
    name : str
    required : bool
        Raise ``FileNotFoundError`` when the file is missing (default: return None,
        e.g. in Colab, where only the package is installed).

    Returns
    -------
    dict or None
    """
    import os

    here = os.path.dirname(os.path.abspath(__file__))
    cands = [name] if os.path.dirname(name) else []
    cands += [os.path.join(base, "results", name) for base in (os.getcwd(), os.path.dirname(os.getcwd()),
                                                                os.path.dirname(here))]
    for path in cands:
        if os.path.exists(path):
            with open(path) as fh:
                return json.load(fh)
    if required:
        raise FileNotFoundError(f"{name} not found (looked in {cands}); produce it with "
                                "`python scripts/full_sweeps.py`")
    return None


def explore_run(ax=None, d=20, r=3, order=3, m=5, seed=0, mode_switch=True):
    """Explorer panel: per-epoch column norms of one Algorithm 1 run (8 epochs)."""
    import matplotlib as mpl

    fig, ax = _new_ax(ax)
    target = sweep_targets(d, r, order, 1, target_seed=seed)[0]
    tr = trajectory_run(target, m, seed=seed, epochs=8, record_every=50, mode_switch=bool(mode_switch))
    p = tr["result"].params
    cmap = mpl.colormaps["tab10"]
    ep = np.arange(1, tr["norms"].shape[0] + 1)
    for i in range(m):
        ax.plot(ep, tr["norms"][:, i], marker=".", color=cmap(i % 10))
    ax.axhline(p.switch_threshold, color=method_color("reference"), ls="--", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(r"$\|u_i\|$ at the end of the epoch")
    ax.set_title(f"$d={d}$, $r={r}$, $l={order}$, $m={m}$: final error {tr['result'].rel_error:.2g}")
    return fig


def explore_error_curve(ax=None, d=30, r=3, order=3, m=5, log10_lam=-2.7, epochs=10):
    """Explorer panel: relative error by epoch over 4 seeds for one configuration."""
    res = error_curves([{"d": d, "r": r, "order": order, "m": m, "lam": 10.0**log10_lam, "epochs": epochs}],
                       seeds=[0, 1, 2, 3])
    fig = plot_error_curves(res, ax=ax)
    return fig


def explore_fresh_growth(ax=None, d=30, r=3, order=3, m=3, seed=0, epoch=3):
    """Explorer panel: the fresh column's ``||u||`` and ``||P_S u||`` in one epoch of a run."""
    fig, ax = _new_ax(ax)
    target = sweep_targets(d, r, order, 1, target_seed=seed)[0]
    epoch = int(epoch)
    run = algorithm1(target, m, seed=seed, epochs=epoch, record_every=1)
    rec = [it for it in run.history["iterations"] if it["epoch"] == epoch]
    t = [it["iteration"] for it in rec]
    ax.plot(t, [it["fresh_norm"] for it in rec], color=method_color("algorithm1"), label=r"$\|u\|$")
    ax.plot(t, [it["fresh_ps_norm"] for it in rec], color=method_color("algorithm1"), ls="--",
            label=r"$\|P_S u\|$")
    ax.axhline(run.params.switch_threshold, color=method_color("reference"), ls=":", lw=1,
               label="switch threshold")
    ax.set_yscale("log")
    ax.set_xlabel(f"iteration in epoch {epoch}")
    ax.set_ylabel("fresh column")
    _legend(ax, loc="lower right", fontsize=8)
    return fig
