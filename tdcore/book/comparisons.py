"""Code of the chapter *Comparisons* (chapters/comparisons.ipynb): Algorithm 1 against the classics.

:func:`compare_methods` runs Algorithm 1, plain gradient descent, CP-ALS and the
power method side by side on the targets of ``tdcore._baselines.comparison_target``
(well-separated, correlated, orthogonal components); :func:`summarize_comparison`
and :func:`comparison_table` summarise the runs, :func:`plot_time_to_accuracy` and
:func:`plot_race` draw them.  The methods themselves are the library's:
:func:`tdcore.algorithm1`, :func:`tdcore.vanilla_gd`, :func:`tdcore.cp_als`,
:func:`tdcore.power_method`.
"""

from __future__ import annotations

import time
import warnings

import numpy as np

from .._algorithm1 import algorithm1
from .._baselines import COMPONENT_TYPES, comparison_target, cp_als, power_method, tensorly_available
from .._dynamics import vanilla_gd
from .._stats import time_to_accuracy
from .._validate import check_choice, check_float
from ..bench.accuracy import TTA_CASES
from .style import method_color, new_ax

__all__ = [
    "COMPONENT_TYPES",
    "comparison_target",
    "compare_methods",
    "summarize_comparison",
    "comparison_table",
    "plot_time_to_accuracy",
    "race",
    "plot_race",
    "TTA_BOOK_CASES",
    "decompose_vs_als",
    "decompose_vs_als_d",
    "accuracy_table",
    "plot_time_to_accuracy_vs_d",
]

#: The time-to-accuracy cases this chapter runs live: the benchmark's table without its smallest case
#: (book size; the stored full table in the Performance chapter has all seven).
TTA_BOOK_CASES = tuple(c for c in TTA_CASES if c[2:] != (8, 3, 3))


def _default_methods(r, eps, *, gd_iters=5000, gd_eta=0.05, als_iter=1000, a1_epochs=None):
    """The method set of the comparison chapter: name -> callable(target, seed) -> record."""
    def a1(m):
        def run(T, seed):
            t0 = time.perf_counter()
            res = algorithm1(T, m, seed=seed, backend="numpy", tol=eps, epochs=a1_epochs)
            el = time.perf_counter() - t0
            h = res.history
            return {"rel_error": res.rel_error, "elapsed": el,
                    "time_to_eps": time_to_accuracy(h["elapsed"], h["rel_error"], eps)}
        return run

    def gd(m):
        def run(T, seed):
            # the GD of the landscape chapter: u_i on the unit sphere, weights +-1, both trained
            t0 = time.perf_counter()
            res = vanilla_gd(T, m, steps=gd_iters, eta=gd_eta, seed=seed, weights="train", hit_threshold=eps,
                             stop_when_hit=True, divergence="mark")
            el = time.perf_counter() - t0
            err = float(res.rel_error)
            return {"rel_error": err, "elapsed": el, "time_to_eps": el if err <= eps else float("nan")}
        return run

    def als(R, init):
        def run(T, seed):
            res = cp_als(T, R, seed=seed, init=init, n_iter_max=als_iter, target_error=eps)
            return {"rel_error": res.rel_error, "elapsed": res.elapsed, "time_to_eps": res.time_to(eps)}
        return run

    def pm(T, seed):
        res = power_method(T, r, seed=seed, target_error=eps)
        return {"rel_error": res.rel_error, "elapsed": res.elapsed, "time_to_eps": res.time_to(eps)}

    methods = {
        "Algorithm 1 (m=3r)": a1(3 * r),
        "GD (m=r)": gd(r),
        "GD (m=3r)": gd(3 * r),
    }
    if tensorly_available():
        methods.update({
            "CP-ALS (rank r, random init)": als(r, "random"),
            "CP-ALS (rank r, SVD init)": als(r, "svd"),
            "CP-ALS (rank 2r, random init)": als(2 * r, "random"),
        })
    methods["power method + deflation"] = pm
    return methods


def compare_methods(kinds=COMPONENT_TYPES, *, d=10, r=4, order=3, seeds=range(4), eps=0.02, rho=0.7,
                    methods=None, gd_iters=5000, gd_eta=0.05, warmup=True):
    """Run every method on the same targets and seeds.

    For each component type and seed one target is drawn
    (:func:`comparison_target` with that seed) and every method runs on it once,
    unbatched, with the seed as its own random seed.  Each run stops as soon as
    its relative error is at most ``eps`` (so its elapsed time is the time to
    that accuracy) or when its iteration budget is spent.

    Parameters
    ----------
    kinds : sequence of {"separated", "correlated", "orthogonal"}
    d, r, order : int
    seeds : iterable of int
    eps : float
        Accuracy defining success (final relative error ``<= eps``).
    rho : float
        Correlation of the correlated type.
    methods : dict, optional
        ``name -> callable(target, seed)`` returning a dict with ``rel_error``,
        ``elapsed`` and ``time_to_eps``; by default Algorithm 1 (``m = 3r``,
        :func:`tdcore.algorithm1` with its default parameters and ``tol=eps``),
        plain GD on objective (2) with ``m = r`` and ``3r`` (``tdcore.vanilla_gd``
        with trained weights, the GD of the landscape chapter), CP-ALS
        (:func:`tdcore.cp_als`; rank ``r`` with random and SVD initialisation, rank
        ``2r``; left out when TensorLy is missing) and :func:`tdcore.power_method`.
    gd_iters, gd_eta : int, float
        Step budget and step size of plain GD.
    warmup : bool
        Run every method once on a tiny problem first (imports, caches), so
        that the first timed run is not penalised.

    Returns
    -------
    list of dict
        One record per (kind, method, seed): ``kind, method, seed, rel_error,
        success, time_to_eps, elapsed``.
    """
    eps = check_float("eps", eps, positive=True)
    for k in kinds:
        check_choice("kinds", k, COMPONENT_TYPES)
    default = methods is None
    if default:
        methods = _default_methods(r, eps, gd_iters=gd_iters, gd_eta=gd_eta)
    seeds = list(seeds)
    if warmup:
        small = comparison_target("orthogonal", max(r + 1, 3), r, order, seed=0)
        if default:
            # a few iterations of each default method: imports and caches, not a full run
            for fn in _default_methods(r, eps, gd_iters=5, gd_eta=gd_eta, als_iter=2, a1_epochs=1).values():
                fn(small, 0)
        else:
            for fn in methods.values():
                fn(small, 0)
    records = []
    for kind in kinds:
        for s in seeds:
            T = comparison_target(kind, d, r, order, rho=rho, seed=s)
            for name, fn in methods.items():
                out = fn(T, s)
                records.append({"kind": kind, "method": name, "seed": s, "rel_error": float(out["rel_error"]),
                                "success": bool(out["rel_error"] <= eps * (1 + 1e-9)),
                                "time_to_eps": float(out["time_to_eps"]), "elapsed": float(out["elapsed"])})
    return records


def summarize_comparison(records):
    """Success rate and median time to accuracy per (method, kind).

    Returns
    -------
    dict
        ``(method, kind) -> {"success_rate", "n", "median_time", "median_error"}``;
        ``median_time`` is over successful runs only (``nan`` if none).
    """
    out = {}
    keys = []
    for rec in records:
        key = (rec["method"], rec["kind"])
        if key not in out:
            out[key] = []
            keys.append(key)
        out[key].append(rec)
    summary = {}
    for key in keys:
        recs = out[key]
        ok = [r for r in recs if r["success"]]
        summary[key] = {
            "success_rate": len(ok) / len(recs),
            "n": len(recs),
            "median_time": float(np.median([r["time_to_eps"] for r in ok])) if ok else float("nan"),
            "median_error": float(np.median([r["rel_error"] for r in recs])),
        }
    return summary


def comparison_table(records, *, fmt="markdown", time_unit="ms"):
    """Render the summary as a table: one row per method, per kind "success, time".

    Parameters
    ----------
    records : list of dict
        From :func:`compare_methods`.
    fmt : {"markdown", "html"}
    time_unit : {"ms", "s"}

    Returns
    -------
    str
        Cells read ``k/n, t`` with ``k`` successes out of ``n`` runs and ``t`` the
        median time to accuracy of the successful runs (``--`` if none).
    """
    check_choice("fmt", fmt, ("markdown", "html"))
    check_choice("time_unit", time_unit, ("ms", "s"))
    scale = 1000.0 if time_unit == "ms" else 1.0
    summary = summarize_comparison(records)
    methods, kinds = [], []
    for m, k in summary:
        if m not in methods:
            methods.append(m)
        if k not in kinds:
            kinds.append(k)
    header = ["method"] + [f"{k}: success, median time ({time_unit})" for k in kinds]
    rows = []
    for m in methods:
        row = [m]
        for k in kinds:
            s = summary.get((m, k))
            if s is None:
                row.append("")
                continue
            ok = int(round(s["success_rate"] * s["n"]))
            t = s["median_time"]
            tt = "--" if not np.isfinite(t) else (f"{t * scale:.0f}" if time_unit == "ms" else f"{t:.2f}")
            row.append(f"{ok}/{s['n']}, {tt}")
        rows.append(row)
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(["---"] * len(header)) + " |"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    cell = "<td>{}</td>".format
    html = ['<table class="table tdcore-comparison">',
            "<thead><tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr></thead>", "<tbody>"]
    html += ["<tr>" + "".join(cell(c) for c in r) + "</tr>" for r in rows]
    html += ["</tbody>", "</table>"]
    return "\n".join(html)


def plot_time_to_accuracy(records, *, ax=None, kind=None, eps=None, title=None):
    """Time to accuracy of every successful run, one row of dots per method.

    Failed runs are drawn as crosses at the right edge.

    Parameters
    ----------
    records : list of dict
        From :func:`compare_methods`.
    ax : matplotlib Axes, optional
    kind : str, optional
        Restrict to one component type (default: all, in different markers).
    eps : float, optional
        Only used in the axis label.
    title : str, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = new_ax(ax)
    recs = [r for r in records if kind is None or r["kind"] == kind]
    methods = []
    for r in recs:
        if r["method"] not in methods:
            methods.append(r["method"])
    kinds = []
    for r in recs:
        if r["kind"] not in kinds:
            kinds.append(r["kind"])
    markers = dict(zip(COMPONENT_TYPES, ("o", "s", "^")))
    ok_times = [r["time_to_eps"] for r in recs if r["success"]]
    right = 2.0 * max(ok_times) if ok_times else 1.0
    colors = {"Algorithm 1": method_color("algorithm1"), "GD": method_color("gd"),
              "CP-ALS": "#E69F00", "power": method_color("deflation")}
    for i, m in enumerate(methods):
        color = next((c for k, c in colors.items() if m.startswith(k)), method_color("reference"))
        for j, k in enumerate(kinds):
            rs = [r for r in recs if r["method"] == m and r["kind"] == k]
            y = i + (j - (len(kinds) - 1) / 2) * 0.22
            ok = [r["time_to_eps"] for r in rs if r["success"]]
            bad = [r for r in rs if not r["success"]]
            lab = k if i == 0 else None
            ax.scatter(ok, [y] * len(ok), marker=markers.get(k, "o"), color=color, s=18, label=lab,
                       edgecolors="none")
            if bad:
                ax.scatter([right] * len(bad), [y] * len(bad), marker="x", color=color, s=22)
    ax.set_xscale("log")
    ax.set_yticks(range(len(methods)))
    ax.set_yticklabels(methods)
    ax.invert_yaxis()
    what = f"relative error {eps:g}" if eps is not None else "accuracy"
    ax.set_xlabel(f"time to {what} (s, log scale); x = not reached")
    if len(kinds) > 1:
        leg = ax.legend(loc="upper left", title="components")
        for h in leg.legend_handles:
            h.set_color(method_color("reference"))
    if title:
        ax.set_title(title)
    return ax


def race(kind="correlated", *, d=10, r=4, order=3, seed=0, rho=0.7, eps=0.02, gd_iters=3000, gd_eta=0.05):
    """Error-versus-time curves of four methods on one target (for the chapter's explorer).

    Runs Algorithm 1 (``m = 3r``), plain GD (``m = 3r``), CP-ALS (rank ``r``, SVD
    initialisation; skipped without TensorLy) and the power method on
    ``comparison_target(kind, d, r, order, rho=rho, seed=seed)``, each until its
    relative error is at most ``eps`` or its budget is spent.

    Returns
    -------
    dict
        ``name -> (times, rel_errors)`` (lists).  Algorithm 1's and GD's
        per-iteration records carry no clock: their times are the run's wall
        time spread evenly over its iterations.
    """
    T = comparison_target(kind, d, r, order, rho=rho, seed=seed)
    curves = {}
    t0 = time.perf_counter()
    res = algorithm1(T, 3 * r, seed=seed, backend="numpy", tol=eps, record_every=10)
    el = time.perf_counter() - t0
    its = res.history["iterations"]
    H = res.params.iters
    idx = np.array([(it["epoch"] - 1) * H + it["iteration"] for it in its], dtype=float)
    total = len(res.history["epoch"]) * H
    # per-iteration records carry no clock: spread the run's wall time evenly over its iterations
    curves["Algorithm 1 (m=3r)"] = (list(el * idx / total) + [el],
                                    [it["rel_error"] for it in its] + [res.rel_error])
    t0 = time.perf_counter()
    g = vanilla_gd(T, 3 * r, steps=gd_iters, eta=gd_eta, seed=seed, weights="train", hit_threshold=eps,
                   stop_when_hit=True, divergence="mark", record_every=max(1, gd_iters // 100))
    el = time.perf_counter() - t0
    steps = np.asarray(g.history["step"], dtype=float)
    per_step = el / max(steps[-1], 1.0)
    curves["GD (m=3r)"] = (list(steps * per_step), [float(e) for e in g.history["rel_error"]])
    if tensorly_available():
        c = cp_als(T, r, seed=seed, init="svd", target_error=eps, n_iter_max=1000)
        curves["CP-ALS (rank r, SVD init)"] = (c.history["time"], c.history["rel_error"])
    p = power_method(T, r, seed=seed, target_error=eps)
    curves["power method + deflation"] = (p.history["time"], p.history["rel_error"])
    return curves


def plot_race(*, ax=None, kind="correlated", seed=0, rho=0.7, eps=0.02, d=10, r=4, order=3):
    """Plot :func:`race`: relative error against wall time, log-log.

    Parameters are those of :func:`race`; returns the Axes.
    """
    ax = new_ax(ax)
    curves = race(kind, d=d, r=r, order=order, seed=seed, rho=rho, eps=eps)
    colors = {"Algorithm 1": method_color("algorithm1"), "GD": method_color("gd"), "CP-ALS": "#E69F00",
              "power": method_color("deflation")}
    for name, (t, e) in curves.items():
        color = next((c for k, c in colors.items() if name.startswith(k)), method_color("reference"))
        t, e = np.asarray(t, dtype=float), np.asarray(e, dtype=float)
        keep = t > 0  # log axis: the t = 0 record (the initialisation) is left out
        ax.plot(t[keep], np.maximum(e[keep], 1e-6), "o-" if keep.sum() < 30 else "-", color=color,
                label=name, ms=3)
    ax.axhline(eps, color=method_color("reference"), ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("wall time (s)")
    ax.set_ylabel("relative error")
    extra = f", $\\rho$={rho:g}" if kind == "correlated" else ""
    ax.set_title(f"{kind} components{extra}: d={d}, r={r}, order {order}, seed {seed}")
    ax.legend(loc="lower left")
    return ax


def decompose_vs_als(cases=TTA_BOOK_CASES, *, seeds=range(3), eps=1e-6, repeats=1):
    """Time to ``eps`` of ``decompose`` and of CP-ALS (both TensorLy inits) on each case, live.

    A thin wrapper of ``tdcore.bench.bench_time_to_accuracy`` (same
    targets, seeds and protocol as the stored benchmark, one BLAS thread).
    """
    from threadpoolctl import threadpool_limits

    from ..bench.accuracy import bench_time_to_accuracy

    with threadpool_limits(1), warnings.catch_warnings():
        # TensorLy's SVD start pads a rank above d with random columns (the over-complete case), and says so
        warnings.filterwarnings("ignore", message="Trying to compute SVD with n_eigenvecs", category=UserWarning)
        return bench_time_to_accuracy(tuple(cases), seeds=seeds, eps=eps, repeats=repeats)


def decompose_vs_als_d(ds=(8, 16, 32, 64), *, kind="random", r=5, order=3, seeds=range(3), eps=1e-6, repeats=1):
    """:func:`decompose_vs_als` on one family as ``d`` grows (the data of :func:`plot_time_to_accuracy_vs_d`)."""
    from threadpoolctl import threadpool_limits

    from ..bench.accuracy import bench_time_to_accuracy_vs_d

    with threadpool_limits(1):
        return bench_time_to_accuracy_vs_d(ds, kind=kind, r=r, order=order, seeds=seeds, eps=eps, repeats=repeats)


def accuracy_table(result):
    """The Markdown table of a time-to-accuracy result (as the benchmark's report writes it)."""
    from ..bench.report import _accuracy_table

    if result.get("status") != "measured":
        return f"*Not measured: {result.get('reason')}.*"
    return _accuracy_table(result, lambda r: r["label"])


def plot_time_to_accuracy_vs_d(data, *, ax=None):
    """Median time to the accuracy against ``d``: see :func:`tdcore.book.performance.plot_time_to_accuracy_vs_d`."""
    from .performance import plot_time_to_accuracy_vs_d as plot

    return plot(data, ax=ax)

