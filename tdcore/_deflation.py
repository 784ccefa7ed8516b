"""The deflation experiment: gradient flow from a small initialisation.

Ge, Ren, Wang & Zhou (2021) observe that gradient flow on an over-parameterised
tensor decomposition, started near zero, fits the largest component of an
orthogonal tensor first, then the next largest, and so on, like the classical
deflation procedure.  This module measures that on the setting of their Figure 1:

* target ``T* = sum_{k=1}^r a_k e_k^{(x) l}`` (orthonormal components, distinct
  weights; :func:`orthogonal_target`);
* model ``T = sum_{i=1}^m ||u_i||^{2-l} u_i^{(x) l}``, the 2-homogeneous
  parameterisation of Wang et al. (2020) with ``c_i = 1/||u_i||`` *not* held
  fixed (so this is plain gradient flow on a function of ``U`` alone), all
  signs positive unless asked otherwise;
* gradient flow approximated by gradient descent with a small step ``eta``; time
  is ``t = eta x steps``; ``u_i(0)`` uniform on the sphere of radius ``delta``.

The quantity recorded is the fitted fraction of each true component,
``phi_k(t) = <T(t), v_k^{(x) l}> / a_k = sum_i s_i (u_i . v_k)^l / a_k``, which
goes from about 0 to 1 as component ``k`` is learned.  :func:`fit_times` reads
off the time at which ``phi_k`` first reaches a level (50% by default),
:func:`fit_order` the order in which the components get there.

For ``l = 2`` the same code is gradient descent on ``1/2 ||U U^T - M||_F^2``:
incremental learning of the eigenvalues of a matrix, the "greedy low-rank
learning" the paper compares the tensor case with.

A back-of-the-envelope prediction (used in the chapter, not by the code): while
``u_i`` is small its norm grows like ``exp(2 T*(ubar_i, ..., ubar_i) t)``, so a
component of weight ``a`` aligned with ``u_i`` is fitted around
``t ~ log(a / delta^2) / (2 a)`` (plus the time the direction needs to align,
which for ``l >= 3`` is also proportional to ``1/a``).  Larger weights are
therefore fitted earlier, and the gaps between the fit times grow like
``log(1/delta)`` as the initialisation shrinks.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from ._book import method_color
from ._objective import FactoredTarget, fit_terms
from ._tensor import SymCP
from ._validate import as_rng, check_choice, check_float, check_int, check_order, check_seed

__all__ = [
    "orthogonal_target",
    "deflation_flow",
    "homogeneous_gradient",
    "DeflationResult",
    "fit_times",
    "fit_order",
    "staircase_overlap",
    "deflation_sweep",
    "predicted_fit_time",
    "plot_staircase",
    "plot_fit_times",
    "plot_deflation_demo",
    "FIGURE1_WEIGHTS",
]

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


@dataclass
class DeflationResult:
    """Trajectories of :func:`deflation_flow`.

    Attributes
    ----------
    t : ndarray, shape (n,)
        Recorded flow times (``eta x step``).
    fitted : ndarray, shape (n, B, r)
        Fitted fraction ``phi_k`` of each true component, per trial.
    rel_error : ndarray, shape (n, B)
        ``||T(t) - T*||_F / ||T*||_F``.
    weights : ndarray, shape (r,)
        The target's weights ``a_k`` (fit times refer to this order).
    params : dict
        ``d, order, m, delta, eta, seeds, signs, steps, t_max, ...``.
    U : ndarray, shape (B, d, m)
        Final factors.
    elapsed : float
        Wall-clock seconds.
    """

    t: np.ndarray
    fitted: np.ndarray
    rel_error: np.ndarray
    weights: np.ndarray
    params: dict
    U: np.ndarray
    elapsed: float = 0.0
    extra: dict = field(default_factory=dict)

    def fit_times(self, level=0.5):
        """Per-trial, per-component first times at which ``phi_k >= level``: shape (B, r)."""
        return fit_times(self, level)

    def fit_order(self, level=0.5):
        """Per-trial order in which the components reached ``level``: shape (B, r)."""
        return fit_order(self, level)


def _model_weights(U, signs, l):
    nrm = np.sqrt(np.sum(U * U, axis=-2))
    return signs * nrm ** (2 - l), nrm


def _ipow(X, k):
    """``X**k`` for a small integer ``k >= 1`` by repeated multiplication (faster than ``pow``)."""
    out = X
    for _ in range(k - 1):
        out = out * X
    return out


def homogeneous_gradient(U, signs, V, a, order):
    """Gradient in ``U`` of ``1/2 ||sum_i a_i ||u_i||^{2-l} u_i^{(x) l} - sum_k w_k v_k^{(x) l}||^2``.

    The weights ``s_i = a_i ||u_i||^{2-l}`` depend on ``U`` (unlike in Algorithm 1,
    where ``c_i`` is held fixed during a step), so the gradient has the usual
    term with ``s`` fixed plus ``(2 - l) a_i ||u_i||^{-l} u_i`` times the gradient in ``s_i``.

    Parameters
    ----------
    U : ndarray, shape (B, d, m)
    signs : ndarray, shape (B, m)
        The signs ``a_i``.
    V : ndarray, shape (d, r)
        Target factors (shared by the batch).
    a : ndarray, shape (r,)
        Target weights ``w_k``.
    order : int

    Returns
    -------
    ndarray, shape (B, d, m)
    """
    l = order
    nrm2 = np.einsum("bdm,bdm->bm", U, U)
    s = signs * nrm2 ** ((2 - l) / 2)
    G = np.matmul(U.transpose(0, 2, 1), U)
    A = np.einsum("dr,bdm->brm", V, U)
    Gp = _ipow(G, l - 1) if l > 1 else np.ones_like(G)
    Ap = _ipow(A, l - 1) if l > 1 else np.ones_like(A)
    gU = l * (np.matmul(U, s[:, :, None] * Gp) - np.einsum("dr,brm->bdm", V * a, Ap)) * s[:, None, :]
    gs = np.einsum("bij,bj->bi", Gp * G, s) - np.einsum("r,brm->bm", a, Ap * A)
    return gU + (gs * signs * (2 - l) * nrm2 ** (-l / 2))[:, None, :] * U


def deflation_flow(target, m, *, delta=1e-3, eta=0.01, t_max=None, seeds=(0,), signs="positive",
                   record_every=None, stop_level=0.98):
    """Gradient flow (small-step GD) on the 2-homogeneous model from a small start.

    Minimises ``1/2 ||sum_i a_i ||u_i||^{2-l} u_i^{(x) l} - T*||_F^2`` over ``U``
    with a fixed small step, ``B = len(seeds)`` trials at once.

    Parameters
    ----------
    target : SymCP
        Target with orthonormal components (see :func:`orthogonal_target`); the
        fitted fractions are measured along its factors.
    m : int
        Number of model components.
    delta : float
        Initial norm of every ``u_i`` (uniform direction on the sphere).
    eta : float
        Step size; the flow time of one step.  Must be small compared with
        ``1 / (l^2 max_k a_k)`` for the steps to follow the flow.
    t_max : float, optional
        Flow time to run; by default twice :func:`predicted_fit_time` of the
        smallest weight, at least 1.
    seeds : sequence of int
        One trial per seed.
    signs : {"positive", "random"}
        ``a_i = +1`` for all components (enough for positive weights) or random.
    record_every : int, optional
        Steps between records (default: about 400 records over ``t_max``).
    stop_level : float or None
        Stop early once every component of every trial has ``phi_k >= stop_level``
        (``None``: always run to ``t_max``).

    Returns
    -------
    DeflationResult
    """
    if not isinstance(target, SymCP):
        raise TypeError("target must be a tdcore.SymCP with orthonormal components (see orthogonal_target)")
    V = np.asarray(target.factors, dtype=np.float64)
    a = np.asarray(target.weights, dtype=np.float64)
    if not np.allclose(V.T @ V, np.eye(V.shape[1]), atol=1e-8):
        raise ValueError("target must have orthonormal components (factors with V^T V = I); "
                         "use tdcore.orthogonal_target")
    l, d, r = target.order, target.d, target.m
    m = check_int("m", m, minimum=1)
    delta = check_float("delta", delta, positive=True)
    eta = check_float("eta", eta, positive=True)
    signs = check_choice("signs", signs, ("positive", "random"))
    seeds = [check_seed(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must name at least one trial")
    stop_level = check_float("stop_level", stop_level, positive=True, allow_none=True)
    if t_max is None:
        amin = float(np.min(np.abs(a)))
        t_max = max(1.0, 2.0 * predicted_fit_time(amin, delta, order=l, d=d, m=m))
    t_max = check_float("t_max", t_max, positive=True)
    steps = max(1, int(math.ceil(t_max / eta)))
    if record_every is None:
        record_every = max(1, steps // 400)
    record_every = check_int("record_every", record_every, minimum=1)

    B = len(seeds)
    U = np.empty((B, d, m))
    sg = np.ones((B, m))
    for b, s in enumerate(seeds):
        rng = as_rng(s)
        X = rng.standard_normal((d, m))
        U[b] = delta * X / np.linalg.norm(X, axis=0, keepdims=True)
        if signs == "random":
            sg[b] = rng.choice([-1.0, 1.0], size=m)
    tgt = FactoredTarget(V[None], a[None], l)
    tn2 = float(a @ ((V.T @ V) ** l) @ a)

    ts, fits, errs = [], [], []
    t0 = time.perf_counter()

    def record(step, U, s):
        A = np.einsum("dr,bdm->brm", V, U)  # (B, r, m)
        phi = np.sum(s[:, None, :] * A**l, axis=-1) / a  # (B, r)
        ts.append(step * eta)
        fits.append(phi)
        return phi

    step = 0
    for step in range(steps + 1):
        if step % record_every == 0 or step == steps:
            s, _ = _model_weights(U, sg, l)
            fit = fit_terms(U, s, tgt)[0]
            phi = record(step, U, s)
            errs.append(np.sqrt(np.maximum(2 * fit, 0) / tn2))
            if not np.all(np.isfinite(fit)) or np.any(fit > 1e6 * tn2):
                raise FloatingPointError(f"deflation_flow diverged at t={step * eta:g}; use a smaller eta "
                                         f"(got eta={eta:g})")
            if stop_level is not None and np.all(phi >= stop_level):
                break
        if step == steps:
            break
        U = U - eta * homogeneous_gradient(U, sg, V, a, l)
    return DeflationResult(
        t=np.asarray(ts), fitted=np.asarray(fits), rel_error=np.asarray(errs), weights=a.copy(),
        params={"d": d, "order": l, "r": r, "m": m, "delta": delta, "eta": eta, "t_max": t_max,
                "steps": step, "seeds": list(seeds), "signs": signs, "record_every": record_every},
        U=U, elapsed=time.perf_counter() - t0)


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
    prediction with the measurements.

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
    """
    a = check_float("a", a, positive=True)
    delta = check_float("delta", delta, positive=True)
    order = check_order(order)
    d = check_int("d", d, minimum=1)
    m = check_int("m", m, minimum=1)
    if order == 2:
        return max(math.log(a * d / (m * delta**2)), 0.0) / (4.0 * a)
    growth = max(math.log(a / delta**2), 0.0) / (4.0 * a)
    cos2 = min(1.0, 2.0 * math.log(max(m, 2)) / d)
    align = 1.0 / (2.0 * order * a * cos2 ** ((order - 2) / 2))
    return growth + align


def fit_times(result, level=0.5):
    """First recorded times at which each component's fitted fraction reaches ``level``.

    Parameters
    ----------
    result : DeflationResult
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
    target in the target's basis) must be given.

    Returns
    -------
    dict
        ``"values"`` (the swept deltas or weight tuples), ``"times"`` (list of
        (B, r) arrays of fit times at ``level``), ``"overlap"`` (list of (B, r-1)
        arrays from :func:`staircase_overlap`), ``"order_ok"`` (list of bools:
        every trial fitted every component, in decreasing weight order),
        ``"results"`` (the :class:`DeflationResult` objects).
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
# plots
# ---------------------------------------------------------------------------
def plot_staircase(result, *, ax=None, trial=0, level=0.5, show_times=True, title=None):
    """Fitted fraction of each true component against flow time (one trial).

    Parameters
    ----------
    result : DeflationResult
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

    if ax is None:
        _, ax = plt.subplots()
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
    ax.legend(loc="center right", ncol=1)
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

    if ax is None:
        _, ax = plt.subplots()
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
    ax.legend(ncol=2)
    if title:
        ax.set_title(title)
    return ax


def plot_deflation_demo(ax=None, log10_delta=-3.0, gap=0.2, order=4, m=50, d=10, seed=0, eta=0.02):
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
    weights = tuple(1.0 - gap * k for k in range(5))
    T = orthogonal_target(weights, d=d, order=int(order))
    res = deflation_flow(T, int(m), delta=10.0 ** float(log10_delta), eta=eta, seeds=[int(seed)])
    return plot_staircase(res, ax=ax)
