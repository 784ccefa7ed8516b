"""Code of the chapter *Performance* (chapters/performance.ipynb): the stored benchmark suite, drawn and tabulated.

The measurements live in :mod:`tdcore.bench` (no plotting there); this module
reads their stored results through :mod:`tdcore.book.results` (so a checkout
and an installed tdcore read the same files), draws them in the book's figure
convention ``plot_x(data, *, ax=None) -> Axes``, renders their tables as HTML
for the notebook, and looks up the numbers the chapter's sentences quote.
The sentences themselves are in the notebook, which calls :mod:`tdcore.bench`
itself for its live rerun and for formatting (``bench.fmt_time``).
"""

from __future__ import annotations

import html as _html
import re

import numpy as np

from ..bench import (
    BASELINE_METHODS,
    BENCH_NAMES,
    BENCH_TARGETS,
    METHOD_LABELS,
    VARIANT_LABELS,
    bench_headline,
    load_bench_results,
    report_markdown,
    target_met,
    variants_of,
)
from .results import results_dir
from .style import legend, method_color, new_ax
from .tables import markdown_text

__all__ = [
    # stored results
    "SUITE_REQUIRED",
    "load_suite",
    "bench_table",
    "machine_table",
    "headline_table",
    # numbers quoted by the chapter's sentences
    "verdict",
    "step_row",
    "baseline_summary",
    "baseline_ratio",
    "superscript",
    # figures
    "plot_bench_step_floor",
    "plot_bench_memory",
    "plot_bench_scale",
    "plot_bench_baselines",
    "plot_bench_baselines_sweep",
    "plot_time_to_accuracy_vs_d",
    "accuracy_rows",
    "plot_bench_memory_model",
    "explore_memory_model",
]

#: Benchmarks the chapter cannot do without (``build`` is optional: the chapter reads a live build record first).
SUITE_REQUIRED = ("step", "dense", "scale", "batch", "gpu", "baselines", "accuracy")

#: Colours of the baselines benchmark's methods (Algorithm 1 and ``decompose`` as elsewhere in the book).
_METHOD_COLORS = {"algorithm1": method_color("algorithm1"), "decompose": "#009E73", "cp_als": "#E69F00",
                  "power_method": "#CC79A7"}
_KIND_COLORS = {"separated": "#0072B2", "correlated": "#D55E00", "orthogonal": "#009E73"}


# ---------------------------------------------------------------------------------------------
# stored results and their tables
# ---------------------------------------------------------------------------------------------
def load_suite(directory=None, *, prefer="full", require=SUITE_REQUIRED):
    """The stored benchmark suite, as the chapter reads it.

    Parameters
    ----------
    directory : str or Path, optional
        Folder of the stored results; default :func:`tdcore.book.results.results_dir`
        (``$TDCORE_RESULTS``, else the results shipped with tdcore: the
        repository's ``results/`` in a checkout, its copy in an installed wheel).
    prefer : {"full", "quick"}
        Which suite to read when both are stored (the other one fills gaps).
    require : sequence of str
        Benchmarks that must be present.

    Returns
    -------
    dict
        ``name -> payload`` (see ``tdcore.bench.load_bench_results``).

    Raises
    ------
    FileNotFoundError
        Naming the folder and the missing benchmarks.
    """
    unknown = [n for n in require if n not in BENCH_NAMES]
    if unknown:
        raise ValueError(f"require must list names from {BENCH_NAMES}, got unknown {unknown}")
    folder = results_dir(directory)
    out = load_bench_results(folder, prefer=prefer)
    missing = [n for n in require if n not in out]
    if missing:
        raise FileNotFoundError(f"no stored benchmark result for {missing} in {str(folder)!r} (looked for "
                                "bench_<name>.json and bench_quick_<name>.json); run "
                                "`python benchmarks/run_all.py --full` or set TDCORE_RESULTS")
    return out


def _inline_html(text):
    t = _html.escape(text, quote=False)
    t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
    t = re.sub(r"`(.+?)`", r"<code>\1</code>", t)
    return t


def _md_to_html(md):
    """HTML for the simple Markdown :mod:`tdcore.bench.report` writes (paragraphs and pipe tables).

    Examples
    --------
    >>> _md_to_html("A **b**\\n\\n| x |\\n|---|\\n| 1 |")
    '<p>A <b>b</b></p>\\n<table class="table tdcore-bench"><thead><tr><th>x</th></tr></thead><tbody><tr><td>1</td></tr></tbody></table>'
    """
    out = []
    for block in md.strip().split("\n\n"):
        lines = [ln for ln in block.strip().splitlines() if not ln.startswith("<!--")]
        if not lines:
            continue
        if all(ln.startswith("|") for ln in lines):
            cells = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines]
            head, body = cells[0], cells[2:]
            h = "".join(f"<th>{_inline_html(c)}</th>" for c in head)
            b = "".join("<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in row) + "</tr>" for row in body)
            out.append(f'<table class="table tdcore-bench"><thead><tr>{h}</tr></thead><tbody>{b}</tbody></table>')
        else:
            out.append("<p>" + _inline_html(" ".join(lines)) + "</p>")
    return "\n".join(out)


def _check_fmt(fmt):
    if fmt not in ("html", "markdown"):
        raise ValueError(f"fmt must be 'html' or 'markdown', got {fmt!r}")


def _table(header, rows):
    """A Markdown table of already formatted cells (:func:`tdcore.book.tables.markdown_text`)."""
    return markdown_text([dict(enumerate(r)) for r in rows], [(i, h, str) for i, h in enumerate(header)])


def bench_table(results, name, *, fmt="html"):
    """The stored tables of one benchmark, regenerated from its payload.

    Parameters
    ----------
    results : dict
        ``name -> payload`` (see :func:`load_suite`).
    name : str
        One of ``tdcore.bench.BENCH_NAMES``.
    fmt : {"html", "markdown"}
        HTML for notebook output (tables render in every Markdown flavour that
        way), or the Markdown written to ``results/``.

    Returns
    -------
    str
    """
    _check_fmt(fmt)
    if name not in results:
        return f"No stored result for {name}." if fmt == "markdown" else f"<p>No stored result for {name}.</p>"
    md = report_markdown(name, results[name])
    return md if fmt == "markdown" else _md_to_html(md)


def machine_table(results, *, fmt="html"):
    """Where and when each stored result was measured.

    One line for the machine (or one per distinct machine) and a table with
    one row per benchmark: suite, load average before and after, date.
    """
    _check_fmt(fmt)

    def machine(m):
        return (f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['blas']} with "
                f"{m.get('blas_threads')} BLAS thread(s), NumPy {m['numpy']}, Python {m['python']}")

    machines = list(dict.fromkeys(machine(p["machine"]) for p in results.values()))
    rows = []
    for name, p in results.items():
        m = p["machine"]
        la, lb = m.get("loadavg") or [None], m.get("loadavg_after") or [None]
        row = [name, p["mode"], f"{la[0]:.1f} / {lb[0]:.1f}" if None not in (la[0], lb[0]) else "n/a",
               m["date"].replace("T", " ")[:16]]
        if len(machines) > 1:
            row.append(machines.index(machine(m)) + 1)
        rows.append(row)
    head = ["benchmark", "suite", "load average before / after", "date (UTC)"] + (["machine"] if len(machines) > 1
                                                                                  else [])
    lines = [f"Machine{'s' if len(machines) > 1 else ''}: "
             + "; ".join(f"({i + 1}) {mm}" if len(machines) > 1 else mm for i, mm in enumerate(machines)) + "."]
    md = "\n\n".join(lines + [_table(head, rows)])
    return _md_to_html(md) if fmt == "html" else md


def headline_table(results, *, fmt="html"):
    """The headline figures (``tdcore.bench.bench_headline``) as a table: what, value, target, status."""
    _check_fmt(fmt)
    rows = []
    for h in bench_headline(results):
        v = h["value"]
        val = v if isinstance(v, str) else f"{v:.3g}"
        status = "not measured" if isinstance(v, str) else ("met" if h["met"] else
                                                          "not assessed" if h["met"] is None else "NOT met")
        rows.append([h["what"], val, f"{h['op']} {h['target']:g}", status])
    md = _table(["measure", "value", "target", "status"], rows)
    return _md_to_html(md) if fmt == "html" else md


# ---------------------------------------------------------------------------------------------
# numbers the chapter quotes
# ---------------------------------------------------------------------------------------------
def verdict(value, key):
    """A stored value against the issue's target ``key`` (``tdcore.bench.BENCH_TARGETS``).

    Returns
    -------
    dict
        ``op`` (``"<="`` or ``">="``), ``target`` and ``met`` (bool, None when not measured).

    Examples
    --------
    >>> verdict(1.1, "step")
    {'op': '<=', 'target': 1.2, 'met': True}
    """
    _, op, target = BENCH_TARGETS[key]
    return {"op": op, "target": target, "met": target_met(value, key)}


def step_row(rows, d, m, order, B=1):
    """The row of the step benchmark at ``(d, m, order, B)``, or None when that size was not measured.

    Examples
    --------
    >>> step_row([{"d": 10, "m": 10, "order": 3, "B": 1, "ratio": 4.0}], 10, 10, 3)["ratio"]
    4.0
    >>> step_row([], 10, 10, 3) is None
    True
    """
    return next((r for r in rows if (r["d"], r["m"], r["order"], r["B"]) == (d, m, order, B)), None)


def baseline_summary(result, method, kind, eps):
    """The summary (successes, median times) of one method on one target type at one accuracy, or None."""
    return next((s for s in result["summary"] if (s["method"], s["kind"], s["eps"]) == (method, kind, eps)), None)


def baseline_ratio(result, method, kind, eps):
    """The paired time ratios ``method / CP-ALS`` on one target type at one accuracy, or None."""
    return next((x for x in result["ratios"] if (x["method"], x["kind"], x["eps"]) == (method, kind, eps)), None)


def superscript(n):
    """``n`` in Unicode superscript digits (plain text: the chapter's generated Markdown has no maths).

    Examples
    --------
    >>> "d" + superscript(3)
    'd³'
    """
    return str(n).translate(str.maketrans("0123456789", "\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078"
                                                        "\u2079"))


# ---------------------------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------------------------
def plot_bench_step_floor(data, *, ax=None):
    """Bars: step time / floor time per size (installed and the first stored variant), log scale.

    Parameters
    ----------
    data : dict
        The step benchmark's payload (``rows``).
    ax : matplotlib Axes, optional
    """
    ax = new_ax(ax, figsize=(7.5, 3.4))
    rows = data["rows"]
    labels = [f"d={r['d']}\nm={r['m']}\nl={r['order']}" + (f"\nB={r['B']}" if r["B"] > 1 else "") for r in rows]
    x = np.arange(len(rows))
    variants = variants_of(rows[0], "_ratio", "ratio") if rows else []
    has_prop = bool(variants)
    w = 0.4 if has_prop else 0.6
    ax.bar(x - (w / 2 if has_prop else 0), [r["ratio"] for r in rows], w, label="installed step",
           color=method_color("algorithm1"))
    if has_prop:
        v = variants[0]
        ax.bar(x + w / 2, [r[v + "_ratio"] for r in rows], w, label=VARIANT_LABELS.get(v, v), color="#009E73")
    ax.axhline(1.0, color=method_color("reference"), lw=1)
    ax.axhline(1.2, color="#D55E00", lw=1, ls="--", label="target 1.2x (d=200, m=1000)")
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("step time / three products")
    ax.legend(fontsize=8)
    return ax


def plot_bench_memory(data, *, ax=None):
    """Log-log: peak memory of one step against d, implicit vs dense, with ``d`` and ``d^l`` guides.

    Parameters
    ----------
    data : dict
        The dense benchmark's payload (``memory``).
    ax : matplotlib Axes, optional
    """
    ax = new_ax(ax)
    mem = data["memory"]
    for kind in ("implicit", "dense"):
        rows = mem[kind]["rows"]
        ds = np.array([r["d"] for r in rows], float)
        pk = np.array([r["step_peak_bytes"] for r in rows], float) / 2**20
        ax.loglog(ds, pk, "o-", color=method_color(kind), label=f"{kind} (slope {mem[kind]['slope']:.2f})")
    l = mem["dense"]["order"]
    grey = method_color("reference")
    dd = np.array([r["d"] for r in mem["dense"]["rows"]], float)
    ref = np.array([r["step_peak_bytes"] for r in mem["dense"]["rows"]], float)[-1] / 2**20
    ax.loglog(dd, ref * (dd / dd[-1]) ** l, ":", color=grey, label=f"$\\propto d^{l}$")
    di = np.array([r["d"] for r in mem["implicit"]["rows"]], float)
    refi = np.array([r["step_peak_bytes"] for r in mem["implicit"]["rows"]], float)[-1] / 2**20
    ax.loglog(di, refi * (di / di[-1]), "--", color=grey, label="$\\propto d$")
    ax.set_xlabel("dimension d")
    ax.set_ylabel("peak memory of one step (MiB)")
    ax.legend(fontsize=8)
    return ax


def plot_bench_scale(data, *, ax=None):
    """Relative error against wall time (log-log) of the large-d runs.

    A ``decompose`` run is drawn as its Algorithm 1 epochs, then its
    Levenberg--Marquardt iterations (dashed, same colour).

    Parameters
    ----------
    data : dict
        The scale benchmark's payload (``runs``).
    ax : matplotlib Axes, optional
    """
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax = new_ax(ax)
    for run in data["runs"]:
        tr = run["trace"]
        dec = run.get("method") == "decompose"
        lab = (f"d={run['d']:,}, m={run['m']}" + (f", polish {run['polish']}" if run["polish"] else "")
               + (", decompose" if dec else ""))
        ep = [p for p in tr if "epoch" in p]
        (line,) = ax.semilogy([p["elapsed_s"] for p in ep], [p["rel_error"] for p in ep], "o-", label=lab)
        if dec:
            lm = [p for p in tr if "lm_iter" in p]
            ax.semilogy([p["elapsed_s"] for p in lm], [max(p["rel_error"], 1e-16) for p in lm], "s--",
                        color=line.get_color(), ms=4, label="  its LM iterations")
        if run["polish"]:
            ax.semilogy([run["elapsed_s"]], [run["rel_error"]], "*", ms=10, color="#009E73", label="after polish")
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("wall time (s, log scale)")
    ax.set_ylabel("relative error")
    ax.legend(fontsize=8)
    return ax


def plot_bench_baselines(data, *, ax=None, eps=None, what="success"):
    """Per method and target type at one accuracy (default the loosest): success rate, or times.

    Parameters
    ----------
    data : dict
        The baselines benchmark's payload (``result``).
    ax : matplotlib Axes, optional
    eps : float, optional
        One of the stored accuracies.
    what : {"success", "time"}
        ``"success"``: bars of the success rate over seeds.  ``"time"``: the
        time to accuracy of every successful run (one dot per seed, log scale)
        with the median as a bar.
    """
    if what not in ("success", "time"):
        raise ValueError(f"what must be 'success' or 'time', got {what!r}")
    ax = new_ax(ax)
    res = data["result"]
    if res["status"] != "measured":
        ax.text(0.5, 0.5, "not measured: " + res["reason"], ha="center", va="center", transform=ax.transAxes)
        return ax
    eps = max(res["eps"]) if eps is None else eps
    if eps not in res["eps"]:
        raise ValueError(f"eps must be one of the stored accuracies {res['eps']}, got {eps!r}")
    summ = [s for s in res["summary"] if s["eps"] == eps]
    kinds = list(dict.fromkeys(s["kind"] for s in summ))
    methods = [mm for mm in BASELINE_METHODS if any(s["method"] == mm for s in summ)]
    w = 0.8 / max(len(methods), 1)
    for i, meth in enumerate(methods):
        x = np.arange(len(kinds)) + (i - (len(methods) - 1) / 2) * w
        lab, col = METHOD_LABELS.get(meth, meth), _METHOD_COLORS.get(meth, method_color("reference"))
        if what == "success":
            vals = [next((s["success_rate"] for s in summ if s["method"] == meth and s["kind"] == k), 0)
                    for k in kinds]
            ax.bar(x, vals, w, label=lab, color=col)
            continue
        for j, k in enumerate(kinds):
            ts = [rc["time_s"] for rc in res["records"] if (rc["method"], rc["kind"], rc["eps"], rc["success"])
                  == (meth, k, eps, True)]
            if ts:
                ax.plot([x[j]] * len(ts), ts, ".", color=col, ms=4, alpha=0.7)
                ax.plot([x[j] - w / 2.5, x[j] + w / 2.5], [np.median(ts)] * 2, "-", color=col, lw=2.5,
                        label=None if lab in ax.get_legend_handles_labels()[1] else lab)
            else:
                ax.text(x[j], 0.02, "none", rotation=90, ha="center", va="bottom", fontsize=7, color=col,
                        transform=ax.get_xaxis_transform())
    ax.set_xticks(np.arange(len(kinds)), kinds)
    ax.set_title(f"relative error <= {eps:g}", fontsize=10)
    if what == "success":
        ax.set_ylabel("success rate")
        ax.set_ylim(0, 1.35)
        ax.set_yticks([0, 0.25, 0.5, 0.75, 1.0])
        ax.legend(fontsize=7, ncol=2, loc="upper center")
    else:
        ax.set_yscale("log")
        ax.set_ylabel("time to accuracy (s), successes")
        legend(ax, fontsize=7)
    return ax


def plot_bench_baselines_sweep(data, *, ax=None, what="time", eps=None):
    """The size sweep of the baselines benchmark against d (log-log).

    Parameters
    ----------
    data : dict
        The baselines benchmark's payload (``result["sweep"]``), or its ``result``.
    ax : matplotlib Axes, optional
    what : {"time", "ratio"}
        ``"time"``: median time to accuracy ``eps`` (default the tightest) of
        ``decompose`` (solid) and CP-ALS (dashed), one colour per target type,
        with ALS's time per sweep (dotted) and a ``d^l`` guide through its last
        point.  ``"ratio"``: the median of the paired ratios decompose / ALS at
        every accuracy, with lines at 1 and 3.
    eps : float, optional
    """
    if what not in ("time", "ratio"):
        raise ValueError(f"what must be 'time' or 'ratio', got {what!r}")
    ax = new_ax(ax, figsize=(5, 3.8))
    res = data["result"] if "result" in data else data
    sw = res.get("sweep") if res.get("status") == "measured" else None
    if not sw or sw["status"] != "measured":
        ax.text(0.5, 0.5, "no size sweep stored", ha="center", va="center", transform=ax.transAxes)
        return ax
    e = min(sw["eps"]) if eps is None else eps
    for kind in sw["kinds"]:
        rows = [w for w in sw["rows"] if w["kind"] == kind and w["eps"] == e]
        ds = np.array([w["d"] for w in rows], float)
        c = _KIND_COLORS.get(kind, method_color("reference"))

        def arr(key):
            return np.array([np.nan if w[key] is None else w[key] for w in rows], float)

        if what == "time":
            ax.loglog(ds, arr("decompose_median_s"), "o-", color=c, label=f"decompose, {kind}")
            ax.loglog(ds, arr("als_median_s"), "s--", color=c, label=f"CP-ALS, {kind}")
            ax.loglog(ds, arr("als_sweep_s"), ":", color=c, lw=1, label=f"one ALS sweep, {kind}")
            continue
        for ee, style in zip(sorted(sw["eps"]), ("o-", "s--", "^:")):
            rr = [w for w in sw["rows"] if w["kind"] == kind and w["eps"] == ee]
            ax.loglog([w["d"] for w in rr], [np.nan if w["median_ratio"] is None else w["median_ratio"] for w in rr],
                      style, color=c, label=f"{kind}, to {ee:g}")
    if what == "time":
        rows = [w for w in sw["rows"] if w["eps"] == e and w["als_sweep_s"]]
        if rows:
            last = max(rows, key=lambda w: w["d"])
            dd = np.array(sorted({w["d"] for w in rows}), float)
            ax.loglog(dd, last["als_sweep_s"] * (dd / last["d"]) ** sw["order"], color=method_color("reference"),
                      lw=0.8, label=f"$\\propto d^{sw['order']}$")
        ax.set_ylabel(f"median time to {e:g} (s)")
    else:
        ax.axhline(1.0, color=method_color("reference"), lw=1)
        ax.axhline(3.0, color="#D55E00", lw=1, ls="--", label="3x (the issue's goal)")
        ax.set_ylabel("time decompose / CP-ALS (median)")
    ax.set_xlabel("dimension d")
    ax.set_xticks(sw["ds"], [str(x) for x in sw["ds"]])
    ax.minorticks_off()
    ax.legend(fontsize=7)
    return ax


def plot_bench_memory_model(data=None, *, ax=None, d=64, order=4, m=256):
    """Memory of one step as a function of d: the implicit cost model vs the dense ``d^l``.

    The implicit step holds a few ``d x m`` arrays and one ``m x m`` Gram matrix;
    the dense one at least two ``d^l`` arrays (model and residual).  Instant to
    draw (for the chapter's explorer).

    Parameters
    ----------
    data : dict, optional
        The stored suite (:func:`load_suite`): its ``"dense"`` measurements are
        drawn on top when they match ``order`` and ``m``.
    ax : matplotlib Axes, optional
    d, order, m : int
        The size marked and quoted in the title.
    """
    ax = new_ax(ax)
    ds = np.unique(np.geomspace(4, max(4 * d, 20_000), 60).astype(int))
    implicit = 8.0 * (6 * ds * m + 2 * m * m)
    dense = 8.0 * 2 * ds.astype(float) ** order
    grey = method_color("reference")
    ax.loglog(ds, implicit / 2**20, color=method_color("implicit"), label="implicit model: 8 (6dm + 2m$^2$) bytes")
    ax.loglog(ds, dense / 2**20, color=method_color("dense"), label=f"dense model: 2 $d^{order}$ doubles")
    ax.axvline(d, color=grey, lw=1, ls=":")
    ax.axhline(24 * 1024, color=grey, lw=1, ls="--", label="24 GiB (this machine)")
    de = (data or {}).get("dense")
    if de and de["memory"]["dense"]["order"] == order and de["memory"]["dense"]["m"] == m:
        for kind in ("implicit", "dense"):
            rows = de["memory"][kind]["rows"]
            ax.loglog([r["d"] for r in rows], [r["step_peak_bytes"] / 2**20 for r in rows], "o",
                      color=method_color(kind), ms=4, label=f"measured {kind}")
    i = 8.0 * (6 * d * m + 2 * m * m) / 2**20
    n = 8.0 * 2 * float(d) ** order / 2**20
    ax.set_title(f"d={d}, order {order}, m={m}: implicit ~{i:.3g} MiB, dense ~{n:.3g} MiB", fontsize=9)
    ax.set_xlabel("dimension d")
    ax.set_ylabel("memory of one step (MiB)")
    ax.legend(fontsize=7)
    return ax


def explore_memory_model(*, ax=None, d=64, order=4, m=256, results=None):
    """Explorer callback of :func:`plot_bench_memory_model` (``results``: the stored suite, a fixed value)."""
    return plot_bench_memory_model(results, ax=ax, d=d, order=order, m=m)


def accuracy_rows(data):
    """The rows of a time-to-accuracy result: a ``bench_accuracy`` payload, its ``result``/``vs_d``, or a
    ``tdcore.bench.bench_time_to_accuracy`` return value (``[]`` when skipped)."""
    res = data.get("result", data) if isinstance(data, dict) else data
    return res["rows"] if res.get("status") == "measured" else []


def plot_time_to_accuracy_vs_d(data, *, ax=None):
    """Median time to the accuracy against ``d`` (log-log): ``decompose`` and CP-ALS with each init.

    Parameters
    ----------
    data : dict
        ``tdcore.bench.bench_time_to_accuracy_vs_d``'s result (stored
        under ``"vs_d"`` in the ``accuracy`` benchmark's payload, or live).
    ax : matplotlib Axes, optional

    Points are medians over the seeds that reached the accuracy; a hollow marker
    means that some seed did not.
    """
    ax = new_ax(ax, figsize=(5, 3.8))
    res = data.get("vs_d", data) if isinstance(data, dict) else data
    rows = accuracy_rows(res)
    if not rows:
        ax.text(0.5, 0.5, "no time-to-accuracy sweep", ha="center", va="center", transform=ax.transAxes)
        return ax
    ds = np.array([r["d"] for r in rows], float)
    series = [("decompose", "decompose", _METHOD_COLORS["decompose"], "o-")]
    series += [(f"cp_als_{i}", f"CP-ALS, init={i}", _METHOD_COLORS["cp_als"] if i == "random" else "#8C564B",
                "s--" if i == "random" else "^:") for i in res["inits"]]
    for key, label, color, style in series:
        t = np.array([np.nan if r[key]["median_s"] is None else r[key]["median_s"] for r in rows], float)
        full = np.array([r[key]["successes"] == r[key]["n"] for r in rows])
        ax.loglog(ds, t, style, color=color, label=label)
        if (~full).any():
            ax.loglog(ds[~full], t[~full], "o", mfc="white", mec=color, ms=9, ls="none")
    ax.set_xlabel("d")
    ax.set_ylabel(f"median time to {res['eps']:g} (s)")
    ax.legend(fontsize=8)
    return ax

