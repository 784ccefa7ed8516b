"""Code of the chapter *Setup and notation* (chapters/setup.ipynb): implicit versus dense inner products.

The chapter shows that the Frobenius inner product of two symmetric CP tensors
can be computed from the Gram matrix of their factors,

    <sum_i w_i u_i^{(x) l}, sum_j v_j x_j^{(x) l}> = sum_{i,j} w_i v_j (u_i . x_j)^l,

without ever forming a ``d**l`` array, and measures what that saves.  The
implicit side is :meth:`tdcore.SymCP.inner`; the dense side materialises both
tensors with :meth:`tdcore.SymCP.to_dense` and takes ``np.vdot``.
"""

from __future__ import annotations

import functools
import math
import time
import tracemalloc

import numpy as np

from .._stats import fit_loglog_slope
from .._tensor import SymCP
from .style import method_color, new_ax

__all__ = [
    "random_symcp",
    "dense_inner",
    "dense_peak_estimate",
    "inner_product_scaling",
    "summarize_scaling",
    "plot_inner_product_scaling",
    "plot_power_overlap",
]


def random_symcp(d, m, order, *, seed=None):
    """A random symmetric CP tensor with ``m`` components in dimension ``d``.

    Factors have i.i.d. ``N(0, 1/d)`` entries (so ``||u_i|| ~ 1``) and weights
    are uniform on ``[0.5, 1.5]``.

    Parameters
    ----------
    d, m, order : int
        Dimension, number of components, tensor order.
    seed : int or numpy.random.Generator, optional

    Returns
    -------
    SymCP
    """
    rng = np.random.default_rng(seed)
    factors = rng.standard_normal((d, m)) / math.sqrt(d)
    weights = rng.uniform(0.5, 1.5, size=m)
    return SymCP(weights, factors, order)


def dense_peak_estimate(d, order, itemsize=8):
    """Bytes the dense inner product needs at its peak: two ``d**order`` arrays.

    One tensor is held while :meth:`tdcore.SymCP.to_dense` writes the other by
    one matrix product straight into its output, see :func:`dense_inner`.
    """
    return 2 * itemsize * d ** order


def dense_inner(a, b, *, max_bytes=None):
    """``<a, b>`` through the dense arrays: ``np.vdot(a.to_dense(), b.to_dense())``.

    Parameters
    ----------
    a, b : SymCP
        Tensors of equal order and dimension.
    max_bytes : int, optional
        Passed to ``SymCP.to_dense`` (it refuses larger arrays).

    Returns
    -------
    float
    """
    kw = {} if max_bytes is None else {"max_bytes": max_bytes}
    return float(np.vdot(a.to_dense(**kw), b.to_dense(**kw)))


def _best_time(fn, repeats):
    best = math.inf
    value = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return best, value


def _peak_bytes(fn):
    """Peak bytes allocated (Python objects and NumPy buffers) while ``fn()`` runs."""
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return max(peak - base, 0)


def inner_product_scaling(ds, order, m, *, max_dense_bytes=256 * 2**20, repeats=3, seed=0):
    """Time and peak memory of the implicit and the dense inner product as ``d`` grows.

    For every ``d`` two independent :func:`random_symcp` tensors with ``m``
    components are drawn; the implicit inner product (:meth:`tdcore.inner`, an
    ``m x m`` Gram matrix) is always measured, the dense one
    (:func:`dense_inner`) only while :func:`dense_peak_estimate` stays within
    ``max_dense_bytes``.

    Parameters
    ----------
    ds : sequence of int
        Dimensions, increasing.
    order : int
        Tensor order ``l``.
    m : int
        Components per tensor.
    max_dense_bytes : int
        Memory bound for the dense computation; larger ``d`` are skipped.
    repeats : int
        Timings are the best of ``repeats`` runs (peak memory is measured once,
        in a separate run under :mod:`tracemalloc`).
    seed : int
        Seed of the random tensors.

    Returns
    -------
    dict
        ``d`` (int array), ``order``, ``m``, ``max_dense_bytes``;
        ``implicit_seconds``, ``implicit_peak_bytes``, ``dense_seconds``,
        ``dense_peak_bytes`` (float arrays, NaN where the dense run was skipped);
        ``dense_measured`` (bool array); ``max_rel_diff`` (largest relative
        difference between the two values over the common ``d``);
        ``dense_memory_slope`` (log-log slope, by :func:`tdcore.fit_loglog_slope`, of the
        dense peak memory over the upper half of the measured ``d``, where the
        ``d**l`` arrays dominate a fixed overhead of a few KiB) and
        ``implicit_memory_slope`` (over all ``d``); NaN with fewer than two points.
    """
    ds = np.asarray(list(ds), dtype=int)
    if ds.ndim != 1 or ds.size == 0 or np.any(ds < 1):
        raise ValueError("ds must be a non-empty sequence of positive integers")
    if np.any(np.diff(ds) <= 0):
        raise ValueError("ds must be strictly increasing")
    if repeats < 1:
        raise ValueError("repeats must be >= 1")
    n = ds.size
    out = {
        "d": ds, "order": int(order), "m": int(m), "max_dense_bytes": int(max_dense_bytes),
        "implicit_seconds": np.full(n, np.nan), "implicit_peak_bytes": np.full(n, np.nan),
        "dense_seconds": np.full(n, np.nan), "dense_peak_bytes": np.full(n, np.nan),
        "dense_measured": np.zeros(n, dtype=bool),
    }
    rel = []
    rng = np.random.default_rng(seed)
    for k, d in enumerate(ds):
        a = random_symcp(int(d), m, order, seed=rng)
        b = random_symcp(int(d), m, order, seed=rng)
        implicit_fn = functools.partial(a.inner, b)
        out["implicit_seconds"][k], implicit = _best_time(implicit_fn, repeats)
        out["implicit_peak_bytes"][k] = _peak_bytes(implicit_fn)
        if dense_peak_estimate(int(d), order) > max_dense_bytes:
            continue
        dense_fn = functools.partial(dense_inner, a, b)
        out["dense_seconds"][k], dense = _best_time(dense_fn, repeats)
        out["dense_peak_bytes"][k] = _peak_bytes(dense_fn)
        out["dense_measured"][k] = True
        rel.append(abs(implicit - dense) / max(abs(dense), np.finfo(float).tiny))
    out["max_rel_diff"] = float(max(rel)) if rel else math.nan
    # fit the upper half of the dense points, where d**l dominates the fixed
    # overhead of a few KiB of Python objects
    measured = np.flatnonzero(out["dense_measured"])
    upper = measured[len(measured) // 2:] if len(measured) >= 4 else measured
    out["dense_memory_slope"] = _slope(ds[upper], out["dense_peak_bytes"][upper])
    out["implicit_memory_slope"] = _slope(ds, out["implicit_peak_bytes"])
    return out


def _slope(x, y):
    """Log-log slope of the valid points (:func:`tdcore.fit_loglog_slope`); NaN with < 2 of them."""
    fit = fit_loglog_slope(x, y, drop_invalid=True, min_points=2)
    return math.nan if fit is None else float(fit.slope)


def summarize_scaling(result):
    """The claims of the setup chapter, read off :func:`inner_product_scaling`.

    Parameters
    ----------
    result : dict
        Output of :func:`inner_product_scaling` with at least one dense run.

    Returns
    -------
    dict
        ``largest_common_d`` (largest ``d`` where both routes ran),
        ``speedup`` (dense time / implicit time at that ``d``),
        ``dense_memory_slope``, ``implicit_memory_slope`` (log-log slopes of peak
        memory against ``d``), ``implicit_peak_kib`` (largest implicit peak, KiB)
        and ``max_rel_diff`` (largest relative difference of the two values).
    """
    measured = np.flatnonzero(result["dense_measured"])
    if measured.size == 0:
        raise ValueError("no dense run in result: raise max_dense_bytes or start ds lower")
    k = measured[-1]
    return {
        "largest_common_d": int(result["d"][k]),
        "speedup": float(result["dense_seconds"][k] / result["implicit_seconds"][k]),
        "dense_memory_slope": float(result["dense_memory_slope"]),
        "implicit_memory_slope": float(result["implicit_memory_slope"]),
        "implicit_peak_kib": float(np.nanmax(result["implicit_peak_bytes"]) / 1024),
        "max_rel_diff": float(result["max_rel_diff"]),
    }


def plot_inner_product_scaling(result, *, axes=None):
    """Two log-log panels from :func:`inner_product_scaling`: time and peak memory.

    Parameters
    ----------
    result : dict
        Output of :func:`inner_product_scaling`.
    axes : pair of matplotlib Axes, optional
        Where to draw; a new ``1 x 2`` figure when omitted.

    Returns
    -------
    numpy.ndarray of matplotlib Axes
        The two panels.
    """
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(9.0, 3.6))
    axes = np.asarray(axes)
    d = result["d"]
    mask = result["dense_measured"]
    l = result["order"]
    panels = [
        (axes[0], "seconds", "time (s, best of repeats)", "time"),
        (axes[1], "peak_bytes", "peak memory (bytes)", "peak memory"),
    ]
    for ax, key, ylabel, title in panels:
        ax.loglog(d, result[f"implicit_{key}"], "o-", color=method_color("implicit"),
                  label=r"implicit: $\sum_{ij} w_i v_j (u_i\cdot x_j)^l$")
        if mask.any():
            ax.loglog(d[mask], result[f"dense_{key}"][mask], "s-", color=method_color("dense"),
                      label=r"dense: $\langle \mathrm{vec}\,T, \mathrm{vec}\,T' \rangle$")
        if key == "peak_bytes" and mask.any():
            ref = result["dense_peak_bytes"][mask][-1] * (d / d[mask][-1]) ** float(l)
            ax.loglog(d, ref, ":", color=method_color("reference"), label=rf"$\propto d^{{{l}}}$")
            ax.axhline(result["max_dense_bytes"], color=method_color("reference"), lw=1, ls="--")
            ax.annotate("dense memory bound", (d[0], result["max_dense_bytes"]),
                        xytext=(0, 3), textcoords="offset points", fontsize=8,
                        color=method_color("reference"))
        if key == "peak_bytes":
            lo = np.nanmin(result["implicit_peak_bytes"])
            ax.set_ylim(bottom=max(lo / 4, 1.0))
        ax.set_xlabel("dimension $d$")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title}, order $l={l}$, $m={result['m']}$")
    axes[0].legend(loc="upper left")
    return axes


def plot_power_overlap(*, d=20, order=3, n_pairs=4000, seed=0, ax=None):
    """Histogram of ``|<u^{(x) l}, x^{(x) l}>| = |u . x|^l`` for random unit vectors.

    Independent uniformly random unit vectors in dimension ``d`` have
    ``|u . x| ~ d^{-1/2}``, so their ``l``-th tensor powers overlap by about
    ``d^{-l/2}``: higher order makes random rank-one tensors nearly orthogonal.

    Parameters
    ----------
    d, order : int
        Dimension and tensor order.
    n_pairs : int
        Number of random pairs.
    seed : int
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = new_ax(ax)
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((n_pairs, d))
    x = rng.standard_normal((n_pairs, d))
    cos = np.sum(u * x, axis=1) / (np.linalg.norm(u, axis=1) * np.linalg.norm(x, axis=1))
    overlap = np.abs(cos) ** order
    logs = np.log10(np.maximum(overlap, 1e-300))
    lo = max(np.quantile(logs, 0.005), -12)
    ax.hist(logs, bins=np.linspace(lo, 0, 50), color=method_color("implicit"), alpha=0.8)
    scale = -0.5 * order * math.log10(d)
    ax.axvline(scale, color=method_color("dense"), ls="--",
               label=rf"$d^{{-l/2}} = {d}^{{-{order}/2}}$")
    ax.set_xlabel(r"$\log_{10} |\langle u^{\otimes l}, x^{\otimes l}\rangle|$")
    ax.set_ylabel("pairs")
    ax.set_title(f"random unit vectors, $d={d}$, $l={order}$: median overlap "
                 f"{np.median(overlap):.1e}")
    ax.legend(loc="upper left")
    return ax
