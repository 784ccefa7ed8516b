"""Code of the chapter *Lazy training* (chapters/lazy_training.ipynb): gradient descent in the lazy scaling, figures.

The chapter measures how many components a *linearised* (lazy) model needs to
fit a random rank-one target.  The linear algebra -- the lazy kernel, the exact
lazy fit, the threshold sweep, the linearised dynamics -- is core library code in
``tdcore._lazy``; this module adds what only the chapter needs:

* :func:`lazy_gd_experiment`, :func:`lazy_scale_sweep`: real gradient descent
  (:func:`tdcore.vanilla_gd`) in the paired lazy initialisation, compared with
  the exact error of its linearisation and with the lazy limit, across widths
  or initialisation scales (results in :class:`LazyGDExperiment`);
* :func:`lazy_table`: the widths ``m*`` of a threshold sweep as a Markdown table;
* the figures :func:`plot_lazy_residual`, :func:`plot_lazy_threshold`,
  :func:`plot_lazy_gd`, :func:`plot_lazy_scale` and the explorer panel
  :func:`explore_lazy_fit`.

:func:`span_defects` and ``ALEXANDER_HIRSCHOWITZ_DEFECTIVE``, which the
chapter also calls, are the core ones, re-exported here.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from .._dynamics import vanilla_gd
from .._lazy import (ALEXANDER_HIRSCHOWITZ_DEFECTIVE, lazy_fit, lazy_init, lazy_residual_path, linearized_gd_error,
                     span_defects, sym_dim)
from .._tensor import random_target
from .._util import serial_blas
from .._util import unit_columns as _unit_columns
from .._validate import as_rng, check_float, check_float_list, check_int, check_int_list, check_order
from .style import legend, method_color, new_ax, plain_log_ticks
from .tables import markdown_table

__all__ = [
    "dense_lazy_residual",
    "lazy_gd_experiment",
    "lazy_scale_sweep",
    "LazyGDExperiment",
    "lazy_table",
    "plot_lazy_residual",
    "plot_lazy_threshold",
    "plot_lazy_gd",
    "plot_lazy_scale",
    "explore_lazy_fit",
    # core names the chapter uses, re-exported from tdcore._lazy
    "span_defects",
    "ALEXANDER_HIRSCHOWITZ_DEFECTIVE",
]


# ---------------------------------------------------------------------------
# gradient descent in the lazy scaling (Experiment B)
# ---------------------------------------------------------------------------
def dense_lazy_residual(target, U0):
    """The lazy fit's relative residual by a dense least-squares solve (a cross-check of :func:`tdcore.lazy_fit`).

    Forms the ``d^l x (d m)`` matrix of the features ``sym(u_i^{(x)(l-1)} (x) e_a)``
    explicitly and projects the dense target onto their span with
    :func:`numpy.linalg.lstsq`: no kernel, no eigendecomposition.  Only for small
    ``d^l`` (the matrix is dense).

    Parameters
    ----------
    target : SymCP
    U0 : array of shape (d, m)

    Returns
    -------
    float

    Examples
    --------
    >>> import tdcore
    >>> U0 = np.random.default_rng(0).standard_normal((3, 4))
    >>> dense_lazy_residual(tdcore.random_target(3, 1, 3, seed=0), U0) < 1e-12  # dm = 12 >= C(5, 3)
    True
    """
    U0 = np.asarray(U0, dtype=float)
    d, m = U0.shape
    l = target.order
    eye = np.eye(d)
    cols = []
    for i in range(m):
        u = U0[:, i]
        for a in range(d):
            acc = np.zeros((d,) * l)
            for pos in range(l):  # the lone e_a in each of the l slots
                t = np.ones(())
                for slot in range(l):
                    t = np.multiply.outer(t, eye[a] if slot == pos else u)
                acc += t
            cols.append(acc.ravel() / l)
    Phi = np.stack(cols, axis=1)
    T = np.asarray(target.to_dense(), float).ravel()
    coef, *_ = np.linalg.lstsq(Phi, T, rcond=None)
    return float(np.linalg.norm(T - Phi @ coef) / np.linalg.norm(T))


def _lazy_gd_run(target, Z, scale, steps, eta_factor, rec):
    """One paired lazy run: GD on the nonlinear model and the exact linearised prediction."""
    d, m = Z.shape
    order = target.order
    U0, c, _ = lazy_init(d, m, order, scale=scale, directions=Z)
    kappa = c[0]
    # the pair dynamics equal the unpaired model (scale Z, sqrt(2) kappa): a (d m) kernel
    U_eff, c_eff = scale * Z, np.full(m, math.sqrt(2.0) * kappa)
    _, mu_max = linearized_gd_error(target, U_eff, c_eff, eta=1.0, steps=0, include_offset=False)
    eta = eta_factor / mu_max
    res = vanilla_gd(target, 2 * m, steps=steps, eta=eta, init=U0, weights=c, record_every=rec)
    rec_steps = np.asarray(res.history["step"])
    lin_curve, _ = linearized_gd_error(target, U_eff, c_eff, eta=eta, steps=rec_steps, include_offset=False)
    move = float(np.linalg.norm(res.U - U0) / np.linalg.norm(U0))
    return res, rec_steps, lin_curve, move, eta


@dataclass
class LazyGDExperiment:
    """Result of :func:`lazy_gd_experiment` (one entry per width ``m``) or :func:`lazy_scale_sweep`
    (one entry per scale).

    Attributes
    ----------
    ms : ndarray
        Numbers of distinct directions (the model has ``2 m`` columns).
    scales : ndarray
        Initialisation scales (one per entry).
    steps : int
    gd_error : ndarray
        Relative error reached by gradient descent on the nonlinear model.
    linear_error : ndarray
        Error of gradient descent on the linearised model after the same steps.
    lazy_residual : ndarray
        The lazy limit (infinitely many steps on the linearised model), :func:`tdcore.lazy_fit`.
    movement : ndarray
        ``||U_final - U0||_F / ||U0||_F``.
    curves : list of dict
        Per entry: ``step``, ``gd`` and ``linear`` error curves.
    eta : ndarray
        Step used for each entry (``eta_factor / mu_max``).
    d, order : int
    elapsed : float
    """

    ms: np.ndarray
    scales: np.ndarray
    steps: int
    gd_error: np.ndarray
    linear_error: np.ndarray
    lazy_residual: np.ndarray
    movement: np.ndarray
    curves: list
    eta: np.ndarray
    d: int
    order: int
    elapsed: float


def _check_lazy_args(d, order, steps, eta_factor, seed, record_every):
    d = check_int("d", d, minimum=2)
    order = check_order(order)
    steps = check_int("steps", steps, minimum=1)
    eta_factor = check_float("eta_factor", eta_factor, positive=True)
    if not eta_factor < 2:
        raise ValueError(f"eta_factor must be < 2 (stability of the linearised model), got {eta_factor}")
    seed = check_int("seed", seed, minimum=0)
    rec = check_int("record_every", record_every, minimum=1, allow_none=True) or max(1, steps // 50)
    return d, order, steps, eta_factor, seed, rec


def _lazy_experiment(d, order, ms, scales, steps, eta_factor, seed, rec):
    t0 = time.perf_counter()
    rng = np.random.default_rng([seed, 7])
    target = random_target(d, 1, order, seed=rng)
    Zall = rng.standard_normal((max(ms), d)).T  # nested directions: width m uses the first m,
    Zall /= np.linalg.norm(Zall, axis=0, keepdims=True)  # whatever the largest width is
    out = {k: [] for k in ("gd", "lin", "lazy", "move", "eta")}
    curves = []
    for m, scale in zip(ms, scales):
        Z = Zall[:, :m]
        res, rec_steps, lin_curve, move, eta = _lazy_gd_run(target, Z, scale, steps, eta_factor, rec)
        out["gd"].append(res.rel_error)
        out["lin"].append(float(lin_curve[-1]))
        out["lazy"].append(lazy_fit(target, Z).rel_residual)
        out["move"].append(move)
        out["eta"].append(eta)
        curves.append({"m": m, "scale": scale, "step": rec_steps, "gd": np.asarray(res.history["rel_error"]),
                       "linear": lin_curve})
    return LazyGDExperiment(np.array(ms), np.array(scales, dtype=float), steps, np.array(out["gd"]),
                            np.array(out["lin"]), np.array(out["lazy"]), np.array(out["move"]), curves,
                            np.array(out["eta"]), d, order, time.perf_counter() - t0)


@serial_blas
def lazy_gd_experiment(d, order, ms, *, scale=300.0, steps=2000, eta_factor=1.0, seed=0, record_every=None):
    """Gradient descent in the lazy scaling, compared with its linearisation, across widths.

    One random rank-1 target and one set of random directions (``seed``);
    width ``m`` uses the first ``m`` directions (so the lazy spans are nested), in
    the paired initialisation of ``tdcore._lazy.lazy_init`` at ``scale``.  Each width runs
    ``steps`` steps of plain GD in ``U`` (weights fixed) with step
    ``eta = eta_factor / mu_max`` and is compared with the exact error of GD on
    the linearised model after the same steps (``tdcore._lazy.linearized_gd_error``) and
    with the lazy limit (:func:`tdcore.lazy_fit`).

    Parameters
    ----------
    d, order : int
    ms : sequence of int
        Numbers of distinct directions.
    scale : float
        Initialisation scale (larger is lazier).
    steps : int
    eta_factor : float
        Step as a fraction of ``1 / mu_max`` (``< 2`` for stability of the linear model).
    seed : int
    record_every : int, optional
        Stride of the recorded error curves (default ``steps // 50``).

    Returns
    -------
    LazyGDExperiment
    """
    d, order, steps, eta_factor, seed, rec = _check_lazy_args(d, order, steps, eta_factor, seed, record_every)
    ms = check_int_list("ms", ms, 1)
    scale = check_float("scale", scale, positive=True)
    return _lazy_experiment(d, order, ms, [scale] * len(ms), steps, eta_factor, seed, rec)


@serial_blas
def lazy_scale_sweep(d, order, m, scales, *, steps=2000, eta_factor=1.0, seed=0, record_every=None):
    """The same comparison as :func:`lazy_gd_experiment` at one width, across initialisation scales.

    Small scales let gradient descent leave the linear regime (and possibly do
    better than the lazy limit); large scales pin it to the linearised dynamics.

    Parameters
    ----------
    d, order, m : int
    scales : sequence of float
    steps, eta_factor, seed, record_every
        As :func:`lazy_gd_experiment`.

    Returns
    -------
    LazyGDExperiment
    """
    d, order, steps, eta_factor, seed, rec = _check_lazy_args(d, order, steps, eta_factor, seed, record_every)
    m = check_int("m", m, minimum=1)
    scales = check_float_list("scales", scales, positive=True)
    return _lazy_experiment(d, order, [m] * len(scales), scales, steps, eta_factor, seed, rec)


# ---------------------------------------------------------------------------
# table and figures
# ---------------------------------------------------------------------------
def lazy_table(sweep):
    """Markdown table of a :class:`tdcore._lazy.LazySweep`: ``d``, the symmetric dimension, the count and ``m*``.

    Parameters
    ----------
    sweep : LazySweep
        A result of :func:`tdcore.lazy_threshold_sweep`.

    Returns
    -------
    IPython.display.Markdown
        One row per ``d``: ``d``, ``C(d+l-1, l)``, the count ``C(d+l-1, l)/d``, median, min and max ``m*``.

    Examples
    --------
    >>> import tdcore
    >>> table = lazy_table(tdcore.lazy_threshold_sweep([4, 6, 8], 3, seeds=(0,))).data
    >>> len(table.splitlines()), table.splitlines()[2].split(" | ")[:3]
    (5, ['| 4', '20', '5.0'])
    """
    return markdown_table(sweep.table(), [("d", "$d$", "d"), ("sym_dim", r"$\binom{d+l-1}{l}$", "d"),
                                          ("count", r"count $\binom{d+l-1}{l}/d$", ".1f"),
                                          ("m_star_median", "median $m^*$", ".1f"),
                                          ("m_star_min", "min", "d"), ("m_star_max", "max", "d")])


def plot_lazy_residual(sweep, *, ax=None):
    """Median lazy-fit residual against ``d m / C(d+l-1, l)`` for each ``d`` of a threshold sweep.

    Parameters
    ----------
    sweep : LazySweep
        A result of :func:`tdcore.lazy_threshold_sweep`.
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = new_ax(ax)
    import matplotlib as mpl

    cmap = mpl.colormaps["viridis"]
    for k, d in enumerate(sweep.ds):
        curves = sweep.curves[k]
        L = min(len(c) for c in curves)
        med = np.median(np.array([c[:L] for c in curves]), axis=0)
        x = d * np.arange(1, L + 1) / sym_dim(int(d), sweep.order)
        ax.plot(x, med, marker=".", color=cmap(k / max(1, len(sweep.ds) - 1)), label=f"$d={d}$")
    ax.axhline(sweep.threshold, color=method_color("reference"), ls=":", lw=1)
    ax.axvline(1.0, color=method_color("reference"), ls="--", lw=1)
    ax.set_xlabel(r"features per symmetric dimension, $dm / \binom{d+l-1}{l}$")
    ax.set_ylabel("lazy-fit relative residual")
    ax.set_title(f"order $l={sweep.order}$: median over {len(sweep.seeds)} seeds")
    ax.set_ylim(-0.02, 1.05)
    legend(ax, loc="lower left", ncol=2)
    return ax


def plot_lazy_threshold(sweeps, *, ax=None):
    """``m*`` against ``d`` on log-log axes, with the dimension count, for one or more threshold sweeps.

    Parameters
    ----------
    sweeps : LazySweep or sequence of LazySweep
        Results of :func:`tdcore.lazy_threshold_sweep` (one per order, say).
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = new_ax(ax)
    if hasattr(sweeps, "m_star"):  # one sweep
        sweeps = [sweeps]
    markers = "os^D"
    for k, sw in enumerate(sweeps):
        ds = sw.ds.astype(float)
        med = sw.m_star_median
        lo, hi = sw.m_star.min(axis=1), sw.m_star.max(axis=1)
        ax.errorbar(ds, med, yerr=[med - lo, hi - med], fmt=markers[k % 4], color=method_color("lazy"),
                    capsize=2, label=f"lazy $m^*$, $l={sw.order}$: slope {sw.fit.slope:.2f}")
        xx = np.geomspace(ds.min(), ds.max(), 50)
        ax.plot(xx, sw.fit.predict(xx), color=method_color("lazy"), lw=1)
        ax.plot(ds, sw.prediction, ls="--", marker="", color=method_color("reference"),
                label=r"count $\binom{d+l-1}{l}/d$" + f", $l={sw.order}$")
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain_log_ticks(ax, np.unique(np.concatenate([sw.ds for sw in sweeps])))
    ax.set_xlabel("dimension $d$")
    ax.set_ylabel(r"smallest width $m^*$")
    legend(ax, loc="upper left")
    return ax


def plot_lazy_gd(exp, *, axes=None):
    """Two panels for a :class:`LazyGDExperiment`: errors against width, and relative movement.

    Parameters
    ----------
    exp : LazyGDExperiment
        A result of :func:`lazy_gd_experiment`.
    axes : sequence of two matplotlib Axes, optional
        A new 1 x 2 figure when omitted.

    Returns
    -------
    ndarray of matplotlib.axes.Axes
        The two panels.
    """
    if axes is None:
        import matplotlib.pyplot as plt

        _, axes = plt.subplots(1, 2, figsize=(9.6, 3.6))
    axes = np.asarray(axes, dtype=object).ravel()
    if axes.size != 2:
        raise ValueError(f"axes must hold two Axes, got {axes.size}")
    ax = axes[0]
    ax.plot(exp.ms, exp.lazy_residual, "s--", color=method_color("reference"), label="lazy limit (exact)")
    ax.plot(exp.ms, exp.linear_error, "^-", color=method_color("lazy"), mfc="none",
            label=f"linearised GD, {exp.steps} steps")
    ax.plot(exp.ms, exp.gd_error, "o", color=method_color("gd"), label=f"actual GD, {exp.steps} steps")
    N = sym_dim(exp.d, exp.order)
    ax.axvline(N / exp.d, color=method_color("reference"), ls=":", lw=1)
    ax.set_xscale("log")
    plain_log_ticks(ax, exp.ms)
    ax.set_xlabel("distinct directions $m$ (model has $2m$ components)")
    ax.set_ylabel("relative error")
    ax.set_title(f"$d={exp.d}$, $l={exp.order}$, scale {exp.scales[0]:g}")
    legend(ax)
    ax = axes[1]
    ax.loglog(exp.ms, exp.movement, "o-", color=method_color("gd"), label="measured")
    wide = exp.ms >= 2 * N / exp.d
    if wide.any():
        mw = exp.ms[wide]
        ref = exp.movement[wide][0] * np.sqrt(mw[0] / mw)
        ax.loglog(mw, ref, ls="--", color=method_color("reference"), label=r"$\propto m^{-1/2}$")
    ax.axvline(N / exp.d, color=method_color("reference"), ls=":", lw=1)
    plain_log_ticks(ax, exp.ms)
    ax.set_xlabel("distinct directions $m$")
    ax.set_ylabel(r"$\|U - U_0\|_F / \|U_0\|_F$")
    ax.set_title("how far the parameters moved")
    legend(ax)
    return axes


def plot_lazy_scale(exp, *, ax=None):
    """Errors against the initialisation scale for a :func:`lazy_scale_sweep` result.

    Parameters
    ----------
    exp : LazyGDExperiment
        A result of :func:`lazy_scale_sweep` (one width, several scales).
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = new_ax(ax)
    ax.semilogx(exp.scales, exp.gd_error, "o-", color=method_color("gd"), label=f"actual GD, {exp.steps} steps")
    ax.semilogx(exp.scales, exp.linear_error, "^--", color=method_color("lazy"), mfc="none",
                label="linearised GD, same steps")
    ax.axhline(exp.lazy_residual[0], color=method_color("reference"), ls=":", label="lazy limit (exact)")
    ax.set_xlabel("initialisation scale")
    ax.set_ylabel("relative error")
    ax.set_title(f"$d={exp.d}$, $l={exp.order}$, $m={exp.ms[0]}$ directions")
    legend(ax)
    return ax


# ---------------------------------------------------------------------------
# explorer
# ---------------------------------------------------------------------------
#: Largest number of features ``d m`` the explorer computes live (an eigendecomposition of that size).
EXPLORE_MAX_FEATURES = 3000


@serial_blas
def explore_lazy_fit(*, ax=None, d=8, order=3, m=10, seed=0):
    """Explorer panel: lazy-fit residual against width for one ``(d, l)``, with the chosen ``m`` marked.

    Parameters
    ----------
    ax : matplotlib Axes, optional
    d, order, m : int
        Dimension, tensor order and the width to mark; the curve runs up to
        ``max(m, ceil(C(d+l-1, l) / d) + 1)``.
    seed : int
        Seed of the random rank-one target and of the initial directions.

    Returns
    -------
    matplotlib.axes.Axes
        With a note instead of the curve when ``d`` times the largest width
        exceeds ``EXPLORE_MAX_FEATURES``.
    """
    d = check_int("d", d, minimum=1)
    order = check_order(order)
    m = check_int("m", m, minimum=1)
    ax = new_ax(ax)
    N = sym_dim(d, order)
    M = max(m, -(-N // d) + 1)
    if d * M > EXPLORE_MAX_FEATURES:
        ax.text(0.5, 0.5, f"d m = {d * M} features: too large for a live kernel\n"
                          f"(keep d m below {EXPLORE_MAX_FEATURES})",
                ha="center", va="center", transform=ax.transAxes)
        return ax
    rng = as_rng(seed)
    target = random_target(d, 1, order, seed=rng)
    U0 = _unit_columns(rng, d, M)
    ms, res, ranks = lazy_residual_path(target, U0)
    ax.plot(ms, res, ".-", color=method_color("lazy"), label="lazy-fit residual")
    ax.plot(ms, np.minimum(ms * d, N) / N, ":", color=method_color("reference"),
            label=r"$\min(dm, \binom{d+l-1}{l}) / \binom{d+l-1}{l}$")
    ax.axvline(N / d, color=method_color("reference"), ls="--", lw=1)
    ax.plot([m], [res[m - 1]], "o", ms=9, mfc="none", color="k",
            label=f"m={m}: residual {res[m - 1]:.3f}, rank {ranks[m - 1]}")
    ax.set_xlabel("width $m$")
    ax.set_ylabel("relative residual / coverage")
    ax.set_title(f"$d={d}$, $l={order}$: symmetric dimension {N}")
    legend(ax, loc="center left")
    return ax
