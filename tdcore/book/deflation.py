"""Code of the chapter *Deflation: the largest component first* (chapters/deflation.ipynb).

Ge, Ren, Wang & Zhou (2021) observe that gradient flow on an over-parameterised
tensor decomposition, started near zero, fits the largest component of an
orthogonal tensor first, then the next largest, like the classical deflation
procedure.  The flow itself is ``tdcore.deflation_flow`` (it records the fitted
fraction ``phi_k(t) = <T(t), v_k^{(x) l}> / a_k`` of every true component); this
module builds the targets of the paper's Figure 1 (:func:`orthogonal_target`,
:data:`FIGURE1_WEIGHTS`), reads fit times and orders off the trajectories
(:func:`fit_times`, :func:`fit_order`, :func:`staircase_overlap`), sweeps the
initial scale or the weights (:func:`deflation_sweep`), gives the chapter's
back-of-the-envelope clock (:func:`predicted_fit_time`) and draws the figures.
"""

from __future__ import annotations

import numpy as np

from .._dynamics import _predicted_fit_time, deflation_flow
from .._tensor import SymCP
from .._validate import as_rng, check_choice, check_float, check_int, check_order
from .style import legend, method_color, new_ax

__all__ = ["FIGURE1_WEIGHTS", "orthogonal_target", "predicted_fit_time", "fit_times", "fit_order",
           "staircase_overlap", "deflation_sweep", "plot_staircase", "plot_fit_times", "explore_deflation"]

#: Five distinct weights for the order-4 example (our choice; the paper's Figure 1
#: uses five distinct weights as well).
FIGURE1_WEIGHTS = (1.0, 0.8, 0.6, 0.4, 0.2)


def orthogonal_target(weights=FIGURE1_WEIGHTS, d=10, order=4, *, basis="standard", seed=None):
    """``sum_k a_k v_k^{(x) l}`` with orthonormal ``v_k``.

    Parameters
    ----------
    weights : sequence of float
        The weights ``a_k`` (r of them, ``r <= d``); not normalised.
    d : int
        Dimension.
    order : int
        Tensor order ``l >= 2`` (``l = 2`` gives the matrix ``sum_k a_k v_k v_k^T``).
    basis : {"standard", "random"}
        ``v_k = e_k`` (the paper's setting) or a random orthonormal set.
    seed : int, optional
        Seed for ``basis="random"``.

    Returns
    -------
    SymCP

    Examples
    --------
    >>> T = orthogonal_target()
    >>> (T.d, T.m, T.order)
    (10, 5, 4)
    """
    w = np.asarray(weights, dtype=float)
    if w.ndim != 1 or w.size < 1:
        raise ValueError(f"weights must be a non-empty 1-D sequence, got shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("weights contains NaN or infinite entries")
    d = check_int("d", d, minimum=1)
    order = check_order(order)
    basis = check_choice("basis", basis, ("standard", "random"))
    r = w.size
    if r > d:
        raise ValueError(f"an orthogonal target needs r <= d, got r={r} weights and d={d}")
    if basis == "standard":
        V = np.eye(d)[:, :r]
    else:
        Q, R = np.linalg.qr(as_rng(seed).standard_normal((d, r)))
        V = Q * np.sign(np.diag(R))
    return SymCP(w, V, order)


def predicted_fit_time(a, delta, *, order=4, d=10, m=1):
    """Rough flow time at which a component of weight ``a`` is fitted (half-way).

    While the model is small the fit is governed by the linear part of the
    gradient.  A model component ``||u||^2 ubar^{(x) l}`` aligned with ``v_k``
    grows like ``exp(4 a t)`` (``||u||`` grows at rate ``2 T*(ubar, ..., ubar) = 2a``),
    so it goes from ``delta^2`` to the size ``a`` of the target component in
    ``log(a / delta^2) / (4a)``.

    * ``l >= 3``: a single well-aligned column does the work, and it first has
      to turn towards ``v_k``.  Starting from the best of ``m`` random
      directions, ``cos^2 ~ 2 log(m) / d``, the turning takes about
      ``1 / (2 l a cos^{l-2})``; this term is added.
    * ``l = 2`` (matrices): the flow is linear at small scale and all ``m``
      columns contribute, ``v^T U U^T v ~ m delta^2 / d`` at the start, so the
      time is ``log(a d / (m delta^2)) / (4a)`` with no turning phase.

    Only the ``1/a`` scaling and the ``log(1/delta)`` growth (slope ``1/(2a)``
    per unit of ``log(1/delta)``) are meant seriously; the chapter compares the
    prediction with the measurements.  ``tdcore.deflation_flow`` runs, by
    default, twice this time for the smallest weight.

    Parameters
    ----------
    a : float
        Component weight (> 0).
    delta : float
        Initial norm of the columns.
    order, d, m : int
        Tensor order, dimension, number of model components.

    Returns
    -------
    float

    Examples
    --------
    >>> round(predicted_fit_time(0.5, 1e-3, order=2, d=10, m=50), 6)
    5.756463
    """
    a = check_float("a", a, positive=True)
    delta = check_float("delta", delta, positive=True)
    order = check_order(order)
    d = check_int("d", d, minimum=1)
    m = check_int("m", m, minimum=1)
    return _predicted_fit_time(a, delta, order, d, m)


def fit_times(result, level=0.5):
    """First recorded times at which each component's fitted fraction reaches ``level``.

    Parameters
    ----------
    result : tdcore.DeflationResult
    level : float
        Level in (0, 1].

    Returns
    -------
    ndarray, shape (B, r)
        ``nan`` where the level is never reached.  Times are linearly
        interpolated between records.
    """
    level = check_float("level", level, positive=True)
    t, F = result.t, result.fitted  # (n,), (n, B, r)
    n, B, r = F.shape
    out = np.full((B, r), np.nan)
    for b in range(B):
        for k in range(r):
            above = np.flatnonzero(F[:, b, k] >= level)
            if above.size == 0:
                continue
            j = int(above[0])
            if j == 0:
                out[b, k] = t[0]
            else:
                f0, f1 = F[j - 1, b, k], F[j, b, k]
                w = (level - f0) / (f1 - f0) if f1 != f0 else 1.0
                out[b, k] = t[j - 1] + w * (t[j] - t[j - 1])
    return out


def fit_order(result, level=0.5):
    """Order in which the components reach ``level``, per trial.

    Returns
    -------
    ndarray of int, shape (B, r)
        Row ``b`` lists component indices (0-based, in the target's order) sorted
        by their fit time; components never fitted come last.
    """
    T = fit_times(result, level)
    return np.argsort(np.where(np.isnan(T), np.inf, T), axis=1, kind="stable")


def staircase_overlap(result, low=0.1, high=0.9):
    """How much the learning phases of consecutive components overlap.

    The learning phase of component ``k`` is the time interval during which
    ``low <= phi_k < high``.  For each pair of consecutive components (in weight
    order) this returns the length of the intersection of their phases divided
    by the length of the shorter phase: 0 for a clean staircase (one component
    at a time), 1 when one phase lies inside the other.

    Returns
    -------
    ndarray, shape (B, r - 1)
    """
    lo = fit_times(result, low)
    hi = fit_times(result, high)
    order = np.argsort(-np.abs(result.weights))
    lo, hi = lo[:, order], hi[:, order]
    start1, end1, start2, end2 = lo[:, :-1], hi[:, :-1], lo[:, 1:], hi[:, 1:]
    inter = np.maximum(0.0, np.minimum(end1, end2) - np.maximum(start1, start2))
    shorter = np.maximum(np.minimum(end1 - start1, end2 - start2), 1e-300)
    return inter / shorter


def deflation_sweep(target, m, *, deltas=None, weight_sets=None, seeds=(0,), level=0.5, **kwargs):
    """Fit times over several initial scales or weight vectors.

    Exactly one of ``deltas`` (a sequence of initial norms, same target) and
    ``weight_sets`` (a sequence of weight vectors, each giving an orthogonal
    target in the target's basis) must be given; ``kwargs`` go to
    ``tdcore.deflation_flow``.

    Returns
    -------
    dict
        ``"values"`` (the swept deltas or weight tuples), ``"times"`` (list of
        (B, r) arrays of fit times at ``level``), ``"overlap"`` (list of (B, r-1)
        arrays from :func:`staircase_overlap`), ``"order_ok"`` (list of bools:
        every trial fitted every component, in decreasing weight order),
        ``"results"`` (the ``tdcore.DeflationResult`` objects).
    """
    if (deltas is None) == (weight_sets is None):
        raise ValueError("give exactly one of deltas= or weight_sets=")
    out = {"values": [], "times": [], "overlap": [], "order_ok": [], "results": []}
    if deltas is not None:
        runs = [(float(dl), target) for dl in deltas]
    else:
        runs = [(tuple(float(x) for x in w), SymCP(np.asarray(w, float), target.factors, target.order))
                for w in weight_sets]
    for value, tgt in runs:
        kw = dict(kwargs)
        if deltas is not None:
            kw["delta"] = value
        res = deflation_flow(tgt, m, seeds=seeds, **kw)
        times = fit_times(res, level)
        want = np.argsort(-np.abs(res.weights), kind="stable")
        ok = bool(np.all(np.isfinite(times)) and np.all(fit_order(res, level) == want[None, :]))
        out["values"].append(value)
        out["times"].append(times)
        out["overlap"].append(staircase_overlap(res))
        out["order_ok"].append(ok)
        out["results"].append(res)
    return out


# ---------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------
def plot_staircase(result, *, ax=None, trial=0, level=0.5, show_times=True, title=None):
    """Fitted fraction of each true component against flow time (one trial).

    Parameters
    ----------
    result : tdcore.DeflationResult
    ax : matplotlib Axes, optional
    trial : int
        Which trial of the batch to draw.
    level : float
        Level whose crossing times are marked (dotted vertical lines).
    show_times : bool
        Mark the crossing times.
    title : str, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt

    ax = new_ax(ax)
    cmap = plt.get_cmap("viridis")
    r = result.fitted.shape[2]
    times = fit_times(result, level)[trial]
    for k in range(r):
        color = cmap(k / max(r - 1, 1) * 0.9)
        ax.plot(result.t, result.fitted[:, trial, k], color=color, label=f"$a_{k + 1}={result.weights[k]:.2g}$")
        if show_times and np.isfinite(times[k]):
            ax.axvline(times[k], color=color, ls=":", lw=1)
    ax.axhline(level, color=method_color("reference"), lw=0.8, ls="--")
    ax.set_xlabel("flow time $t$")
    ax.set_ylabel(r"fitted fraction $\langle T(t), v_k^{\otimes l}\rangle / a_k$")
    ax.set_ylim(-0.05, 1.15)
    legend(ax, loc="center right", ncol=1)
    p = result.params
    ax.set_title(title or f"order {p['order']}, d={p['d']}, m={p['m']}, $\\delta$={p['delta']:.0e}")
    return ax


def plot_fit_times(values, times, *, ax=None, xlabel="", weights=None, logx=False, title=None):
    """Median fit time of each component against a swept parameter.

    Parameters
    ----------
    values : sequence
        The swept values (x axis).
    times : sequence of (B, r) arrays
        Fit times for each value (from :func:`deflation_sweep`).
    ax : matplotlib Axes, optional
    xlabel : str
    weights : sequence of float, optional
        Component labels (default ``k = 1..r``).
    logx : bool
        Logarithmic x axis.
    title : str, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt

    ax = new_ax(ax)
    med = np.array([np.nanmedian(T, axis=0) for T in times])  # (n_values, r)
    r = med.shape[1]
    cmap = plt.get_cmap("viridis")
    for k in range(r):
        label = f"component {k + 1}" if weights is None else f"$a_{k + 1}={weights[k]:.2g}$"
        ax.plot(values, med[:, k], "o-", color=cmap(k / max(r - 1, 1) * 0.9), label=label)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("time to 50% fit (median over seeds)")
    legend(ax, ncol=2)
    if title:
        ax.set_title(title)
    return ax


def explore_deflation(*, ax=None, log10_delta=-3.0, gap=0.2, order=4, m=50, d=10, seed=0, eta=0.02):
    """One run of the deflation experiment, drawn as a staircase (the chapter's explorer).

    The target has five orthonormal components with weights
    ``a_k = 1 - gap (k - 1)``, ``k = 1..5``; the flow starts at
    ``delta = 10**log10_delta``.

    Parameters
    ----------
    ax : matplotlib Axes, optional
    log10_delta : float
        Base-10 logarithm of the initial norm.
    gap : float
        Difference between consecutive weights, in (0, 0.25) so that all five stay positive.
    order : int
        Tensor order (2 gives the matrix case).
    m, d, seed, eta
        Number of model components, dimension, seed and step.

    Returns
    -------
    matplotlib.axes.Axes
    """
    gap = check_float("gap", gap, positive=True)
    if not gap < 0.25:
        raise ValueError(f"gap must lie in (0, 0.25) so that the five weights stay positive, got {gap}")
    log10_delta = check_float("log10_delta", log10_delta)
    weights = tuple(1.0 - gap * k for k in range(5))
    T = orthogonal_target(weights, d=d, order=check_order(order))
    res = deflation_flow(T, check_int("m", m, minimum=1), delta=10.0**log10_delta, eta=eta,
                         seeds=[check_int("seed", seed, minimum=0)])
    return plot_staircase(res, ax=ax)
