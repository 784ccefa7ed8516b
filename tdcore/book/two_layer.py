"""Code of the chapter *From tensors to two-layer networks* (chapters/two_layer.ipynb): the
Hermite bridge from a two-layer network on Gaussian inputs to the tensor objective, and the
student trained from samples in three regimes (lazy, plain GD, Algorithm 1's recipe): training
curves, test error against width, samples needed against dimension, and an explorer.

The core maths (Hermite evaluation, empirical loss and gradient, training, the NTK student)
is in ``tdcore._twolayer``; this module runs the chapter's sweeps and draws its figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .. import _twolayer as tl
from .._stats import fit_loglog_slope
from .._tensor import random_target
from .._validate import check_int, check_int_list, check_seeds
from .style import PALETTE, legend, method_color, new_ax, plain_log_ticks

__all__ = ["BridgeResult", "bridge_convergence", "plot_bridge", "plot_hermite_orders", "training_curves",
           "plot_training", "WidthSweep", "width_sweep", "plot_width", "SampleSweep", "sample_sweep",
           "plot_samples", "explore_student", "REGIME_LABELS", "regime_color", "sym_count"]

#: Legend labels of the three regimes.
REGIME_LABELS = {"lazy": "lazy (NTK)", "gd": "plain GD, small init", "algorithm1": "Algorithm 1 recipe"}
_ACT_LABELS = {"hermite": r"$h_3$ (Hermite)", "power": r"$z^3$", "relu": "ReLU"}
_ACT_COLORS = {"hermite": PALETTE["algorithm1"], "power": PALETTE["deflation"], "relu": PALETTE["gd"]}


def regime_color(regime):
    """The book colour of a regime (lazy: vermillion, GD: green, Algorithm 1: blue)."""
    return method_color(regime)


def sym_count(d, order):
    """Number of monomials of degree ``order`` in ``d`` variables, ``C(d + order - 1, order)``."""
    return math.comb(d + order - 1, order)


def _unit_student(d, m, seed, norm=0.6):
    rng = np.random.default_rng(seed)
    U = rng.standard_normal((d, m))
    U *= norm / np.linalg.norm(U, axis=0)
    return U, rng.choice([-1.0, 1.0], size=m) * rng.uniform(0.5, 1.0, size=m)


# --------------------------------------------------------------------------- the bridge


@dataclass
class BridgeResult:
    """Empirical loss against the population (tensor) loss, for several activations.

    Attributes
    ----------
    ns : list of int
    activations : list of str
    population : dict
        Activation -> population loss (the Hermite sum of tensor terms).
    per_order : dict
        Activation -> array of the order-k tensor terms of the population loss.
    rms_gap : dict
        Activation -> RMS over repeats of ``L_n - L`` at every n.
    mean_gap : dict
        Activation -> mean over repeats of ``L_n - L`` (the bias: zero up to noise).
    sd : dict
        Activation -> standard deviation of the per-sample loss (from ``n_sd`` samples):
        the central limit theorem predicts ``rms_gap = sd / sqrt(n)``.
    slope : dict
        Activation -> LineFit of ``log rms_gap`` against ``log n``.
    repeats : int
    tensor_check : float
        ``|population loss from Hermite sum - tdcore.fit_objective value|`` for the Hermite student.
    """

    ns: list
    activations: list
    population: dict
    per_order: dict
    rms_gap: dict
    mean_gap: dict
    sd: dict
    slope: dict
    repeats: int
    tensor_check: float


def bridge_convergence(d, m, ns, *, order=3, r=2, repeats=20, seed=0, n_sd=100_000,
                       activations=("hermite", "power", "relu")):
    """Empirical loss on n samples against the population loss as n grows.

    The teacher is ``sum_j b_j sigma(v_j.x)`` for a random rank-``r`` target and the
    student ``sum_i s_i sigma(u_i.x)`` random (components of norm 0.6), with the same
    activation.  For every n, ``repeats`` independent sample sets.
    """
    d, m, r, order = (check_int(k, v, minimum=1) for k, v in (("d", d), ("m", m), ("r", r), ("order", order)))
    ns = check_int_list("ns", ns, minimum=1)
    repeats = check_int("repeats", repeats, minimum=2)
    T = random_target(d, r, order, seed=seed)
    U, s = _unit_student(d, m, seed + 1)
    pop, per, rms, mean, sd, slope = {}, {}, {}, {}, {}, {}
    for act in activations:
        pop[act], per[act] = tl.activation_population_loss(U, s, T, act)
        gaps = np.empty((len(ns), repeats))
        for i, n in enumerate(ns):
            X = tl.sample_inputs(n, d, trials=[seed + 1000 * (i + 1) + k for k in range(repeats)])
            Ub, sb = np.broadcast_to(U, (repeats,) + U.shape), np.broadcast_to(s, (repeats, m))
            Vb, bb = (np.broadcast_to(T.factors, (repeats,) + T.factors.shape),
                      np.broadcast_to(T.weights, (repeats, r)))
            res = tl.activation_output(X, Ub, sb, act, order) - tl.activation_output(X, Vb, bb, act, order)
            gaps[i] = 0.5 * np.mean(res**2, axis=-1) - pop[act]
        Xs = tl.sample_inputs(n_sd, d, seed=seed + 7)
        res = tl.activation_output(Xs, U, s, act, order) - tl.activation_output(Xs, T.factors, T.weights, act, order)
        sd[act] = float(np.std(0.5 * res**2))
        rms[act] = np.sqrt(np.mean(gaps**2, axis=1))
        mean[act] = gaps.mean(axis=1)
        slope[act] = fit_loglog_slope(ns, rms[act])
    check = abs(pop["hermite"] - float(tl.population_loss(U, s, T))) if "hermite" in activations else math.nan
    return BridgeResult(ns=ns, activations=list(activations), population=pop, per_order=per, rms_gap=rms,
                        mean_gap=mean, sd=sd, slope=slope, repeats=repeats, tensor_check=check)


def plot_bridge(res, *, ax=None):
    """``|L_n - L|`` (RMS over repeats) against n, with the CLT prediction ``sd / sqrt(n)`` dashed."""
    ax = new_ax(ax)
    ns = np.asarray(res.ns, float)
    for act in res.activations:
        c = _ACT_COLORS.get(act, PALETTE["reference"])
        ax.loglog(ns, res.rms_gap[act], "o-", color=c,
                  label=f"{_ACT_LABELS.get(act, act)}: slope {res.slope[act].slope:.2f}")
        ax.loglog(ns, res.sd[act] / np.sqrt(ns), "--", color=c, lw=1)
    ax.set_xlabel("samples $n$")
    ax.set_ylabel(r"RMS of $L_n - L_\infty$")
    ax.set_title(r"empirical loss $\to$ tensor loss (dashed: sd$/\sqrt{n}$)")
    legend(ax)
    return ax


def plot_hermite_orders(res, *, ax=None):
    """Share of the population loss carried by the order-k tensor term, per activation."""
    ax = new_ax(ax)
    acts = res.activations
    kmax = 6
    width = 0.8 / len(acts)
    for j, act in enumerate(acts):
        per = np.zeros(kmax + 1)
        p = res.per_order[act]
        per[:min(kmax + 1, p.size)] = p[:kmax + 1]
        ax.bar(np.arange(kmax + 1) + (j - (len(acts) - 1) / 2) * width, per / res.population[act], width,
               color=_ACT_COLORS.get(act, PALETTE["reference"]), label=_ACT_LABELS.get(act, act))
    ax.set_xlabel("tensor order $k$ (Hermite degree)")
    ax.set_ylabel("share of the population loss")
    ax.set_xticks(range(kmax + 1))
    ax.set_title("which tensors the loss contains")
    legend(ax)
    return ax


# --------------------------------------------------------------------------- training curves


def training_curves(d, r, m, n, *, epochs, seeds=(0, 1, 2), order=3, batch_size=None, n_test=4000, target_seed=0,
                    record_every=1):
    """The three regimes (plus Algorithm 1's recipe with mini-batch SGD) on one teacher.

    Returns a dict: regime name -> :class:`tdcore._twolayer.TrainResult` for ``"lazy"``,
    ``"gd"``, ``"algorithm1"`` and ``"algorithm1_sgd"`` (when ``batch_size`` is given), and
    ``"ntk"`` -> list of :class:`tdcore._twolayer.NTKFit`, one per seed: the lazy
    student's linearisation at the same initialisation and samples, solved exactly.
    """
    T = random_target(d, r, order, seed=target_seed)
    out = {}
    for reg in tl.REGIMES:
        out[reg] = tl.train_student(T, m, n, regime=reg, epochs=epochs, seeds=seeds, n_test=n_test,
                                    record_every=record_every)
    if batch_size is not None:
        ep = max(1, epochs // max(1, n // batch_size))
        out["algorithm1_sgd"] = tl.train_student(T, m, n, regime="algorithm1", epochs=ep, seeds=seeds,
                                                 n_test=n_test, batch_size=batch_size,
                                                 reinit_every=max(1, ep // 10))
    out["ntk"] = [_ntk_same_init(T, m, n, seed, n_test, ridge=1e-8) for seed in seeds]
    return out


def _ntk_same_init(T, m, n, seed, n_test, ridge=1e-6, scale=100.0):
    """NTK fit at the lazy regime's initialisation and samples for ``seed`` (same draws as train_student)."""
    rng = np.random.default_rng(seed)
    U0, s = tl._init("lazy", rng, T.d, m, scale)
    X = rng.standard_normal((n, T.d))
    Xt = rng.standard_normal((n_test, T.d))
    half = m // 2  # the pairs share features up to sign: the kernel is twice that of one half
    return tl.ntk_fit(X, tl.teacher_output(X, T), U0[:, :half], s[:half], T.order, X_test=Xt,
                      y_test=tl.teacher_output(Xt, T), ridge=ridge, offset=False)


def plot_training(curves, *, ax=None):
    """Median test error (band: min to max over seeds) against epochs, per regime."""
    ax = new_ax(ax)
    for key, res in curves.items():
        if key == "ntk":
            continue
        reg = "algorithm1" if key.startswith("algorithm1") else key
        label = REGIME_LABELS[reg] + (" (SGD)" if key.endswith("sgd") else "")
        ep = np.maximum(res.epochs, 0.5)
        med = np.median(res.test_error, axis=0)
        ax.plot(ep, med, ":" if key.endswith("sgd") else "-", color=regime_color(reg), label=label)
        ax.fill_between(ep, res.test_error.min(axis=0), res.test_error.max(axis=0), color=regime_color(reg),
                        alpha=0.15, lw=0)
    ntk = curves.get("ntk")
    if ntk:
        ax.axhline(np.median([f.test_error for f in ntk]), color=PALETTE["reference"], ls="--", lw=1,
                   label="NTK student (exact linear fit)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("relative test error")
    ax.set_title("students trained on samples")
    legend(ax, loc="lower left")
    return ax


# --------------------------------------------------------------------------- width


@dataclass
class WidthSweep:
    """Test error against width m for the three regimes, at several d.

    Attributes
    ----------
    ds : list of int
    ms : dict
        Regime -> list of widths tried.
    errors : dict
        ``(regime, d)`` -> array (widths tried, seeds) of test errors: the widths are
        ``ms[regime]`` up to the first that reaches ``eps`` (NaN: a diverged trial).
    m_star : dict
        Regime -> list over ds of the smallest m whose median test error is ``<= eps``
        (NaN when none is).
    fits : dict
        Regime -> LineFit of ``log m*`` against ``log d`` (None when fewer than 3 points).
    eps, n, r, order : the configuration
    """

    ds: list
    ms: dict
    errors: dict
    m_star: dict
    fits: dict
    eps: float
    n: dict
    r: int
    order: int
    epochs: int = 0
    extra: dict = field(default_factory=dict)


def _median(errors):
    """Median test error over trials, a diverged trial (NaN) counting as a failure (+inf)."""
    return float(np.median(np.nan_to_num(np.asarray(errors, float), nan=np.inf)))


def _lazy_error(T, m, n, seed, n_test):
    return _ntk_same_init(T, m, n, seed, n_test).test_error


def width_sweep(ds, *, ms_lazy, ms_train, n=None, r=2, order=3, eps=0.1, epochs=300, seeds=(0, 1),
                n_test=3000, target_seed=0):
    """Smallest width reaching test error ``eps`` against d, per regime, at a fixed number of samples.

    ``n`` defaults to ``4 (C(D + l - 1, l) + D)`` for the largest ``D`` of ``ds``: four
    times the number of odd Hermite polynomials of degree <= 3 in D variables
    (for ``l = 3``), so that samples never limit the linear NTK student.  The lazy
    student is the exact linearised fit (the limit of lazy training, checked against
    trained lazy students in the training-curve experiment); ``"gd"`` and
    ``"algorithm1"`` are trained for ``epochs`` full-batch epochs.
    """
    ds = check_int_list("ds", ds, minimum=2)
    seeds = check_seeds(seeds, distinct=True)
    ms = {"lazy": check_int_list("ms_lazy", ms_lazy, minimum=2), "gd": check_int_list("ms_train", ms_train, minimum=1),
          "algorithm1": list(ms_train)}
    if any(m % 2 for m in ms["lazy"]):
        raise ValueError(f"ms_lazy must be even (the lazy student pairs its components), got {ms['lazy']}")
    n = 4 * (sym_count(max(ds), order) + max(ds)) if n is None else check_int("n", n, minimum=1)
    errors, m_star, nd = {}, {reg: [] for reg in tl.REGIMES}, {}
    for d in ds:
        T = random_target(d, r, order, seed=target_seed + d)
        nd[d] = n
        for reg in tl.REGIMES:
            rows = []
            for m in ms[reg]:
                if reg == "lazy":
                    rows.append([_lazy_error(T, m, n, sd, n_test) for sd in seeds])
                else:
                    rows.append(tl.train_student(T, m, n, regime=reg, epochs=epochs, seeds=seeds, n_test=n_test,
                                                 record_every=epochs).final_test_error)
                if _median(rows[-1]) <= eps:
                    break  # wider students are not needed for m*
            E = np.asarray(rows, dtype=float)
            errors[(reg, d)] = E
            med = np.array([_median(row) for row in E])
            hit = np.flatnonzero(med <= eps)
            m_star[reg].append(float(ms[reg][hit[0]]) if hit.size else math.nan)
    fits = {reg: fit_loglog_slope(ds, m_star[reg], drop_invalid=True) for reg in tl.REGIMES}
    return WidthSweep(ds=ds, ms=ms, errors=errors, m_star=m_star, fits=fits, eps=eps, n=nd, r=r, order=order,
                      epochs=epochs)


def plot_width(sweep, *, axes=None):
    """Left: test error against m at the largest d; right: m* against d with fitted exponents."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    ax0, ax1 = axes
    d = sweep.ds[-1]
    for reg in tl.REGIMES:
        E = sweep.errors[(reg, d)]
        ms = np.asarray(sweep.ms[reg][:E.shape[0]], float)
        med = np.array([_median(row) for row in E])
        ok = np.isfinite(med)
        ax0.plot(ms[ok], med[ok], "o-", color=regime_color(reg), label=REGIME_LABELS[reg])
    ax0.axhline(sweep.eps, color=PALETTE["reference"], ls="--", lw=1)
    ax0.set_xscale("log")
    ax0.set_yscale("log")
    ax0.set_xlabel("width $m$")
    ax0.set_ylabel("relative test error")
    ax0.set_title(f"$d = {d}$, $n = {sweep.n[d]}$")
    legend(ax0)
    for reg in tl.REGIMES:
        f = sweep.fits[reg]
        lab = REGIME_LABELS[reg] + (f": $m^* \\sim d^{{{f.slope:.2f}}}$" if f is not None else "")
        ax1.plot(sweep.ds, sweep.m_star[reg], "o-", color=regime_color(reg), label=lab)
    ax1.set_xscale("log")
    ax1.set_yscale("log")
    plain_log_ticks(ax1, sweep.ds)
    ax1.set_xlabel("dimension $d$")
    ax1.set_ylabel(f"width $m^*$ for test error $\\leq {sweep.eps}$")
    ax1.set_title("width needed")
    legend(ax1)
    return np.asarray(axes)


# --------------------------------------------------------------------------- samples


@dataclass
class SampleSweep:
    """Smallest number of samples reaching a test error, against d, lazy and beyond-lazy.

    Attributes
    ----------
    ds : list of int
    ns : dict
        ``(regime, d)`` -> sorted list of the n tried (doubling, then bisection).
    errors : dict
        ``(regime, d)`` -> list of arrays (one per n tried) of test errors over seeds.
    n_star : dict
        Regime -> list over ds of the smallest n whose median test error is ``<= eps``.
    fits : dict
        Regime -> LineFit of ``log n*`` against ``log d``.
    eps, r, order, m : configuration (``m`` : regime -> width function of d used)
    """

    ds: list
    ns: dict
    errors: dict
    n_star: dict
    fits: dict
    eps: float
    r: int
    order: int
    widths: dict


def _first_success(evaluate, eps, n_start, n_max, refine):
    """Smallest n with ``_median(evaluate(n)) <= eps``: doubling from ``n_start``, then ``refine`` bisection
    steps (in log n) between the last failure and the first success.  Returns ``(n*, tried, errors)``."""
    tried, errs = [], []

    def run(n):
        e = evaluate(n)
        tried.append(n)
        errs.append(np.asarray(e, float))
        return _median(e) <= eps

    lo, n = None, n_start
    while not run(n):
        lo, n = n, 2 * n
        if n > n_max:
            return math.nan, tried, errs
    hi = n
    for _ in range(refine):
        if lo is None or hi - lo <= 1:
            break
        mid = int(round(math.sqrt(lo * hi)))
        if mid in (lo, hi):
            break
        if run(mid):
            hi = mid
        else:
            lo = mid
    order = np.argsort(tried)
    return float(hi), [tried[k] for k in order], [errs[k] for k in order]


def sample_sweep(ds, *, eps=0.25, r=1, order=3, m_train=4, lazy_width_factor=3, epochs=400, seeds=(0, 1, 2, 3, 4),
                 lazy_seeds=(0, 1), n_start=8, n_max=20000, refine=2, n_test=3000, target_seed=0):
    """Smallest n with median test error ``<= eps`` against d, for the NTK student and Algorithm 1's recipe.

    n is doubled from ``n_start`` until the median test error over the seeds is at most
    ``eps`` (or ``n`` passes ``n_max``: NaN), then ``refine`` bisection steps in ``log n``
    locate n* within a factor ``2^(1/2^refine)``.  The NTK student is wide:
    ``m = 2 ceil(lazy_width_factor C(d+2, 3) / d)`` components in pairs, i.e.
    ``lazy_width_factor`` times as many features as degree-3 monomials, so that the samples,
    not the width, limit it (its errors vary little between seeds: ``lazy_seeds``).  The
    beyond-lazy student has the fixed width ``m_train``.
    """
    ds = check_int_list("ds", ds, minimum=2)
    seeds = check_seeds(seeds, distinct=True)
    lazy_seeds = check_seeds(lazy_seeds, distinct=True)
    ns, errors, n_star, widths = {}, {}, {"lazy": [], "algorithm1": []}, {"lazy": {}, "algorithm1": {}}
    for d in ds:
        T = random_target(d, r, order, seed=target_seed + d)
        mw = 2 * math.ceil(lazy_width_factor * sym_count(d, order) / d)
        widths["lazy"][d], widths["algorithm1"][d] = mw, m_train
        evals = {
            "lazy": lambda n, T=T, mw=mw: [_lazy_error(T, mw, n, sd, n_test) for sd in lazy_seeds],
            "algorithm1": lambda n, T=T: tl.train_student(T, m_train, n, regime="algorithm1", epochs=epochs,
                                                          seeds=seeds, n_test=n_test,
                                                          record_every=epochs).final_test_error,
        }
        for reg, ev in evals.items():
            nst, grid, E = _first_success(ev, eps, n_start, n_max, refine)
            ns[(reg, d)], errors[(reg, d)] = grid, E
            n_star[reg].append(nst)
    fits = {reg: fit_loglog_slope(ds, n_star[reg], drop_invalid=True) for reg in n_star}
    return SampleSweep(ds=ds, ns=ns, errors=errors, n_star=n_star, fits=fits, eps=eps, r=r, order=order,
                       widths=widths)


def plot_samples(sweep, *, ax=None):
    """n* against d for the lazy and the beyond-lazy student, fitted exponents, and d^l, d^{l-1} guides."""
    ax = new_ax(ax)
    ds = np.asarray(sweep.ds, float)
    for reg in ("lazy", "algorithm1"):
        f = sweep.fits[reg]
        lab = REGIME_LABELS[reg] + (f": $n^* \\sim d^{{{f.slope:.2f}}}$" if f is not None else "")
        ax.plot(ds, sweep.n_star[reg], "o-", color=regime_color(reg), label=lab)
    l = sweep.order
    for p, ls, anchor in ((l, "--", "lazy"), (l - 1, ":", "algorithm1")):
        y0 = sweep.n_star[anchor][-1]
        if np.isfinite(y0):
            ax.plot(ds, y0 * (ds / ds[-1]) ** p, ls, color=PALETTE["reference"], lw=1, label=f"$d^{{{p}}}$")
    ax.set_xscale("log")
    ax.set_yscale("log")
    plain_log_ticks(ax, sweep.ds)
    ax.set_xlabel("dimension $d$")
    ax.set_ylabel(f"samples $n^*$ for test error $\\leq {sweep.eps}$")
    ax.set_title("samples needed")
    legend(ax)
    return ax


# --------------------------------------------------------------------------- explorer


def explore_student(*, ax=None, d=8, m=8, log2_n=10, regime="algorithm1", epochs=400, seed=0):
    """Explorer callback: test error against epochs of one student (r = 2 teacher, l = 3).

    The lazy regime also draws its exact linearised (NTK) fit as a dashed line.
    """
    ax = new_ax(ax)
    d, m, log2_n = check_int("d", d, minimum=2), check_int("m", m, minimum=2), check_int("log2_n", log2_n, minimum=3)
    n = 2**log2_n
    if regime == "lazy" and m % 2:
        m += 1
    T = random_target(d, 2, 3, seed=seed)
    res = tl.train_student(T, m, n, regime=regime, epochs=epochs, seeds=(seed,), n_test=2000,
                           record_every=max(1, epochs // 100))
    ax.plot(np.maximum(res.epochs, 0.5), res.test_error[0], color=regime_color(regime), label="test error")
    ax.plot(np.maximum(res.epochs, 0.5), res.tensor_error[0], ":", color=regime_color(regime),
            label=r"$\|T - T^*\| / \|T^*\|$ ($n = \infty$)")
    if regime == "lazy":
        ax.axhline(_ntk_same_init(T, m, n, seed, 2000).test_error, color=PALETTE["reference"], ls="--", lw=1,
                   label="NTK fit")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("relative error")
    ax.set_title(f"{REGIME_LABELS[regime]}: $d={d}$, $m={m}$, $n={n}$")
    legend(ax)
    return ax
