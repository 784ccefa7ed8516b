"""Code of the chapter *Algorithm 1, piece by piece* (chapters/algorithm1.ipynb): one run, ingredient by ingredient.

The chapter takes the paper's Algorithm 1 (:func:`tdcore.algorithm1`) apart:

* :func:`trajectory_run` records one run (every column's norm and alignment
  with the true subspace at the end of every epoch, the fresh column at every
  iteration) and :func:`plot_trajectories` draws it;
* :func:`rescue_seed` finds a run that re-initialisation repairs;
* :func:`switch_ablation_vs_d` measures what the scalar mode switch buys
  against ``d``, :func:`regularizer_comparison` what the regulariser does to
  the columns, and :func:`ablation_study` removes one ingredient at a time
  (the chapter *Convergence in practice* shows the ablations at larger sizes,
  through its module :mod:`tdcore.book.convergence`, which re-exports them);
* :func:`explore_run`: the chapter's explorer.

The escape from the saddle at zero (plain against 2-homogeneous model) is drawn
by :mod:`tdcore.book.saddle`.

Trials of every sweep of the part *Beyond lazy training* (this chapter,
*Convergence in practice*, *The proof in pictures*) are run by
:func:`run_batch` on the targets of :func:`sweep_targets`, and are deterministic
given their seeds: the target of trial ``s`` is drawn from
``numpy.random.default_rng([target_seed, d, r, order, s])`` (so the same trial
index sees the same target for every width ``m``), and trial ``s`` runs
Algorithm 1 with ``seed=seeds[s]``.  Sweeps accept a ``cache`` mapping (see
:func:`batch_key`): already computed batches are read from it and new ones
written to it, which is how a sweep cell of :mod:`tdcore.sweep` reuses batches it has computed.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from .._algorithm1 import algorithm1, algorithm1_batch, default_params
from .._stats import epochs_to_accuracy, success_rate
from .._tensor import SymCP, random_target, subspace_basis
from .._util import jsonable
from .._validate import check_float, check_int, check_int_list, check_order, check_seeds
from .style import legend, method_color, new_ax

__all__ = [
    # targets and batches of trials (shared with the chapters Convergence and The proof in pictures)
    "sweep_targets",
    "batch_key",
    "run_batch",
    # one run, ingredient by ingredient
    "trajectory_run",
    "plot_trajectories",
    "rescue_seed",
    "regularizer_comparison",
    "AblationResult",
    "ablation_study",
    "plot_ablation",
    "switch_ablation_vs_d",
    "plot_switch_ablation",
    "explore_run",
]


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
    """A string naming one batch of trials (the key of sweep caches and result files).

    Options set to None are left out, so that they name the same batch as the default.

    Examples
    --------
    >>> batch_key(8, 2, 3, 4, seeds=[0, 1], epochs=5, lam=None)
    'd=8;r=2;l=3;m=4;ts=0;orth=0;seeds=0,1;epochs=5'
    """
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
    seeds = check_seeds(seeds, distinct=True)
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
        "params": jsonable(br.params.to_dict()),
    }
    if cache is not None:
        cache[key] = out
    return out




# --- ablations ------------------------------------------------------------
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
        """Fraction of the seeds whose final error is at most ``eps``."""
        return success_rate(self.errors[variant], self.config["eps"])[0]

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
        return jsonable(asdict(self))

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
        to_eps[v] = [epochs_to_accuracy(c, eps) for c in out["curves"]]
    cfg = {"d": d, "r": r, "order": order, "m": m, "eps": eps, "epochs": epochs, "n_seeds": len(list(seeds))}
    return AblationResult(cfg, variants, errors, to_eps, time.perf_counter() - t0)


def plot_ablation(result, *, ax=None):
    """Final error of every seed for each variant (log scale), with the accuracy line."""
    ax = new_ax(ax)
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
    return ax


# ---------------------------------------------------------------------------
# the scalar mode switch against d
# ---------------------------------------------------------------------------
def switch_ablation_vs_d(ds, r, order, m, *, seeds, eps=0.05, epochs=None, target_seed=0, cache=None):
    """Epochs needed to reach ``eps`` against ``d``, with and without the scalar mode switch.

    Returns
    -------
    dict
        ``ds``, ``with`` and ``without`` (arrays n_d x n_seeds of epochs-to-eps,
        inf where never reached), ``with_errors`` / ``without_errors`` (final errors),
        and the config.
    """
    ds = check_int_list("ds", ds, 1)
    seeds = check_seeds(seeds, distinct=True)
    out = {"ds": ds, "r": r, "order": order, "m": m, "eps": eps, "epochs": epochs, "n_seeds": len(seeds)}
    for name, ms in (("with", True), ("without", False)):
        to_eps, errs = [], []
        for d in ds:
            res = run_batch(d, r, order, m, seeds=seeds, target_seed=target_seed, cache=cache, epochs=epochs,
                            mode_switch=ms)
            to_eps.append([epochs_to_accuracy(c, eps) for c in res["curves"]])
            errs.append(res["errors"])
        out[name] = np.array(to_eps, dtype=float)
        out[name + "_errors"] = np.array(errs, dtype=float)
    return out


def plot_switch_ablation(res, *, ax=None):
    """Median epochs-to-accuracy against ``d`` with and without the mode switch (range as error bars)."""
    ax = new_ax(ax)
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
    legend(ax, loc="center left")
    return ax


# ---------------------------------------------------------------------------
# one run, column by column
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
    seeds = check_seeds(seeds, distinct=True)
    full = run_batch(d, r, order, m, seeds=seeds, target_seed=target_seed, cache=cache, epochs=epochs)
    nore = run_batch(d, r, order, m, seeds=seeds, target_seed=target_seed, cache=cache, epochs=epochs, reinit=False)
    best, best_stuck, n = None, -1, 0
    for b, s in enumerate(seeds):
        ef, en = full["errors"][b], nore["errors"][b]
        if np.isfinite(ef) and ef <= eps and not (np.isfinite(en) and en <= eps):
            n += 1
            stuck = epochs_to_accuracy(full["curves"][b], eps) - 1
            if stuck > best_stuck:
                best, best_stuck = b, stuck
    out = {"seed": None if best is None else seeds[best], "stuck_epochs": best_stuck, "n_rescued": n,
           "n_seeds": len(seeds), "target": None}
    if best is not None:
        out["target"] = sweep_targets(d, r, order, len(seeds), target_seed=target_seed)[best]
    return out


def plot_trajectories(traj, *, axes=None, fresh_epochs=None):
    """Four panels of one run: error by iteration, column norms and alignments by epoch, fresh columns.

    Parameters
    ----------
    traj : dict from :func:`trajectory_run`
    axes : four Axes, optional
        Default: a new 2 x 2 figure.
    fresh_epochs : sequence of int, optional
        Epochs whose fresh column is drawn in the last panel (default: up to
        three epochs whose fresh column grew tenfold, with the epoch before the first).

    Returns
    -------
    numpy.ndarray of four Axes
    """
    import matplotlib as mpl
    import matplotlib.pyplot as plt

    res = traj["result"]
    p = res.params
    if axes is None:
        _, axes = plt.subplots(2, 2, figsize=(10, 6.6))
    axes = np.asarray(axes, dtype=object).ravel()
    if axes.size != 4:
        raise ValueError(f"plot_trajectories needs four Axes, got {axes.size}")
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
    legend(ax, loc="lower right", fontsize=7)
    return axes


def regularizer_comparison(d, r, order, m, *, seeds, lams=(0.0, 2e-3, 5e-2), epochs=12, target_seed=0):
    """Column norms and re-initialisation jumps with and without the regulariser.

    Returns
    -------
    dict
        Per ``lam``: ``errors``, ``max_jump`` (largest ``f_after - f_before`` over the
        re-initialisations of epochs >= 2, per seed), ``sorted_norms`` (final column
        norms, sorted, per seed), ``sum_sq`` (``sum ||u_i||^2`` per seed) and
        ``weight_l1`` (``sum |a_i c_i^{l-2}| ||u_i||^l``, the components' Frobenius norms);
        ``target_l1``: per seed, the target's ``sum_k |w_k|`` (its components' Frobenius norms).
    """
    seeds = check_seeds(seeds, distinct=True)
    targets = sweep_targets(d, r, order, len(seeds), target_seed=target_seed)
    out = {"config": {"d": d, "r": r, "order": order, "m": m, "epochs": epochs, "n_seeds": len(seeds)}, "lams": [],
           "target_l1": [float(np.sum(np.abs(t.weights))) for t in targets]}
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
# explorer
# ---------------------------------------------------------------------------
def explore_run(*, ax=None, d=20, r=3, order=3, m=5, seed=0, mode_switch=True):
    """Explorer panel: per-epoch column norms of one Algorithm 1 run (8 epochs)."""
    import matplotlib as mpl

    ax = new_ax(ax)
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
    return ax
