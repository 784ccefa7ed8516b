"""Reports of the benchmark suite: the Markdown written beside each result, and the headline figures.

:func:`report_markdown` renders the tables of one stored payload (the
``results/bench_*.md`` files); :func:`bench_headline` compares the stored
values with the issue's targets (:data:`~tdcore.bench.BENCH_TARGETS`) for the
summary ``results/bench_summary.md``.  No plotting here: the Performance
chapter draws the payloads with :mod:`tdcore.book.performance`.
"""

from __future__ import annotations

import numpy as np

from .suite import BENCH_TARGETS, GPU_NOT_MEASURED
from .timing import BENCH_NAMES, fmt_time

__all__ = ["report_markdown", "bench_headline", "target_met", "variants_of", "VARIANT_LABELS", "METHOD_LABELS"]


def _md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)



def _step_floor_md(rows, variants=()):
    header = ["d", "m", "r", "order", "B", "floor (3 products)", "step", "per trial", "step / floor",
              "ratio of minima"]
    for v in variants:
        header += [f"{v} step", f"{v} / floor"]
    body = []
    for r in rows:
        line = [r["d"], r["m"], r["r"], r["order"], r["B"], fmt_time(r["floor_s"]), fmt_time(r["step_s"]),
                fmt_time(r["per_trial_step_s"]), f"{r['ratio']:.2f}x",
                f"{r['ratio_of_minima']:.2f}x" if "ratio_of_minima" in r else "n/a"]
        for v in variants:
            line += [fmt_time(r[f"{v}_s"]), f"{r[f'{v}_ratio']:.2f}x"]
        body.append(line)
    return _md_table(header, body)



def _dense_md(tm, mem):
    variants = [k[:-len("_speedup")] for k in tm if k.endswith("_speedup")]
    head = ["d", "order", "m", "implicit step", "dense step", "dense / implicit", "grad. rel. diff"]
    row = [tm["d"], tm["order"], tm["m"], fmt_time(tm["implicit_s"]), fmt_time(tm["dense_s"]), f"{tm['speedup']:.0f}x",
           f"{tm['max_rel_diff_grad']:.1e}"]
    for v in variants:
        head += [f"{v} step", f"dense / {v}"]
        row += [fmt_time(tm[f"{v}_s"]), f"{tm[f'{v}_speedup']:.0f}x"]
    lines = [_md_table(head, [row]), ""]
    rows = []
    for k in ("implicit", "dense"):
        for r in mem[k]["rows"]:
            rows.append([k, r["d"], f"{r['step_peak_bytes'] / 2**20:.2f} MiB", f"{r['input_bytes'] / 2**20:.2f} MiB",
                         f"{r['maxrss_bytes'] / 2**20:.0f} MiB"])
    lines.append(_md_table(["method", "d", "step peak (tracemalloc)", "inputs", "process peak RSS"], rows))
    lines.append("")
    lines.append(f"Log-log slope of the step's peak memory in d (largest sizes): implicit "
                 f"{mem['implicit']['slope']:.2f}, dense {mem['dense']['slope']:.2f} (order {mem['dense']['order']}).")
    return "\n".join(lines)


def _to_dense_md(rows):
    if not rows:
        return ""
    body = [[r["d"], r["order"], r["m"], f"{r['entries']:.1e}", fmt_time(r["to_dense_s"]), fmt_time(r["product_s"]),
             f"{r['ratio']:.2f}x", f"{r['ratio_of_minima']:.2f}x", f"{r['max_abs_diff']:.1e}"] for r in rows]
    return ("\n\n`SymCP.to_dense` against the one matrix product that writes the same tensor (its Khatri-Rao "
            "block built beforehand; both allocate their result), timed in alternation:\n\n"
            + _md_table(["d", "order", "m", "entries", "to_dense", "one product", "to_dense / product",
                         "ratio of minima", "max. difference"], body))


def _batch_md(res):
    rows = [["installed", fmt_time(res["sequential_s"]), fmt_time(res["batched_s"]), f"{res['throughput_ratio']:.2f}x",
             f"{res['max_abs_diff_rel_error']:.1e}"]]
    for k in res:
        if k.endswith("_throughput_ratio") and k != "throughput_ratio":
            v = k[: -len("_throughput_ratio")]
            rows.append([v, fmt_time(res[f"{v}_sequential_s"]), fmt_time(res[f"{v}_batched_s"]),
                         f"{res[k]:.2f}x", f"{res[f'{v}_max_abs_diff_rel_error']:.1e}"])
    for wr in res.get("workers", []):
        rows.append([f"installed, batch split over {wr['workers']} threads (workers={wr['workers']})",
                     fmt_time(res["sequential_s"]), fmt_time(wr["batched_s"]), f"{wr['throughput_ratio']:.2f}x",
                     f"{wr['max_abs_diff_rel_error']:.1e}"])
    mt = res.get("default_allocator")
    if mt:
        rows.append(["installed, default allocator (separate process)", fmt_time(mt["sequential_s"]),
                     fmt_time(mt["batched_s"]), f"{mt['throughput_ratio']:.2f}x", f"{mt['max_abs_diff_rel_error']:.1e}"])
    note = (f"B={res['B']}, d={res['d']}, m={res['m']}, r={res['r']}, order {res['order']}, {res['epochs']} epochs x "
            f"{res['iters']} iterations per trial"
            + (f"; sequential time extrapolated from {res['sequential_trials_timed']} runs" if
               res["sequential_extrapolated"] else ""))
    return _md_table(["code", f"{res['B']} sequential runs", "one batched run", "throughput ratio",
                      "largest rel. error difference"], rows) + "\n\n" + note


def _gpu_md(res):
    if res["status"] != "measured":
        return f"GPU benchmarks {GPU_NOT_MEASURED}: {res['reason']}."
    rows = [["batched throughput GPU / CPU", f"{res['batched_throughput_ratio']:.1f}x"],
            ["large step, fraction of cuBLAS (float64)", f"{res['large_float64_fraction_of_cublas']:.2f}"],
            ["large step, fraction of cuBLAS (float32)", f"{res['large_float32_fraction_of_cublas']:.2f}"],
            ["float32 speedup over float64", f"{res['float32_speedup']:.2f}x"],
            ["tiny step (launch overhead)", fmt_time(res["launch_overhead_step_s"])],
            ["agreement with NumPy (max rel. diff of U)", f"{res['agreement_max_rel_diff']:.1e}"]]
    return _md_table(["measure", "value"], rows)


#: How the methods of the baselines benchmark are named in tables and legends.
METHOD_LABELS = {"algorithm1": "Algorithm 1 alone", "decompose": "decompose (Alg. 1 + LM)", "cp_als": "CP-ALS",
                  "power_method": "power method"}


def _repeats_text(n):
    return "one run each (no repeats)" if n == 1 else f"the fastest of {n} repeats (in separate passes)"


def _fmt_ratio(x):
    return "n/a" if x is None else f"{x:.2f}x"


def _baselines_md(res):
    if res["status"] != "measured":
        return f"Not measured: {res['reason']}."
    rows = []
    for s in res["summary"]:
        split = (f"{fmt_time(s['median_time_algorithm1_s'])} + {fmt_time(s['median_time_refine_s'])}"
                 if s.get("median_time_algorithm1_s") is not None else "")
        if s["method"] == "cp_als":
            split = (f"{s['median_sweeps']:.0f} sweeps" if s["median_sweeps"] is not None else "(cap)") + (
                f" of {fmt_time(s['median_sweep_s'])}")
        rows.append([s["kind"], f"{s['eps']:.0e}", METHOD_LABELS.get(s["method"], s["method"]),
                     f"{s['successes']}/{s['n']}", fmt_time(s["median_time_s"]), split,
                     f"{s['median_rel_error']:.1e}"])
    head = (f"d={res['d']}, r={res['r']}, order {res['order']}, Algorithm 1 and decompose with m={res['m']} "
            f"(iters per epoch: {'default rule' if res['iters'] is None else res['iters']}), "
            f"{len(res['seeds'])} seeds per target type, CP-ALS at most {res['als_iter_max']} sweeps. "
            + ("Times: one run each (no repeats)." if res["repeats"] == 1 else
               f"Times: the fastest of {res['repeats']} repeats of each successful run, in separate passes "
               f"(failures run once); repeats gave identical results: {'yes' if res['all_identical'] else 'NO'}."))
    out = [head, _md_table(["target", "accuracy", "method", "successes", "median time (successes)",
                            "split (Alg. 1 + LM) / ALS sweeps", "median rel. error"], rows)]
    rrows = [[x["kind"], f"{x['eps']:.0e}", METHOD_LABELS.get(x["method"], x["method"]),
              f"{x['n_seeds']} (ALS succeeded on {x['n_als_success']}/{x['n_seeds_total']})",
              _fmt_ratio(x["median_ratio"]), _fmt_ratio(x["ratio_of_medians"]),
              "n/a" if x["min_ratio"] is None else f"{x['min_ratio']:.2f} - {x['max_ratio']:.2f}",
              "yes" if x["assessed"] else f"no (< {res['min_seeds']} seeds)"] for x in res["ratios"]]
    out.append(_md_table(["target", "accuracy", "method / CP-ALS", "seeds where both succeed", "median of ratios",
                          "ratio of medians", "range", "assessed"], rrows))
    sw = res.get("sweep")
    if sw and sw["status"] == "measured":
        out.append(f"Size sweep: r={sw['r']}, m={sw['m']}, {len(sw['seeds'])} seeds per d and target type, CP-ALS "
                   f"at most {sw['als_iter_max']} sweeps, {_repeats_text(sw['repeats'])}"
                   + (f"; repeats identical: {'yes' if sw['all_identical'] else 'NO'}." if sw["repeats"] > 1 else
                      "."))
        out.append(_md_table(["d", "target", "accuracy", "decompose successes", "decompose median (Alg. 1 + LM)",
                              "ALS successes", "ALS median", "ALS sweeps x time per sweep",
                              "decompose / ALS (median, seeds)"],
                             [[w["d"], w["kind"], f"{w['eps']:.0e}", f"{w['decompose_successes']}/{w['n']}",
                               f"{fmt_time(w['decompose_median_s'])} ({fmt_time(w['decompose_median_algorithm1_s'])} + "
                               f"{fmt_time(w['decompose_median_refine_s'])})", f"{w['als_successes']}/{w['n']}",
                               fmt_time(w["als_median_s"]),
                               ("n/a" if w["als_median_sweeps"] is None else f"{w['als_median_sweeps']:.0f}")
                               + f" x {fmt_time(w['als_sweep_s'])}",
                               f"{_fmt_ratio(w['median_ratio'])} ({w['n_paired']})"] for w in sw["rows"]]))
    return "\n\n".join(out)


def _scale_md(runs):
    rows = []
    for r in runs:
        dec = r.get("method") == "decompose"
        how = (f"decompose (handoff {r['handoff']:g})" if dec else
               "Algorithm 1" + (f" + {r['polish']} polish steps" if r["polish"] else ""))
        split = (f"{fmt_time(r['elapsed_algorithm1_s'])} + {fmt_time(r['elapsed_refine_s'])} ({r['lm_iters']} LM "
                 f"iterations)" if dec else "")
        rows.append([f"{r['d']:,}", r["r"], r["order"], r["m"], f"{r['dense_entries']:.0e}", how, f"{r['tol']:g}",
                     r["epochs_run"], fmt_time(r["elapsed_s"]), split, f"{r['rel_error']:.2e}"])
    txt = _md_table(["d", "r", "order", "m", "dense entries", "method", "stop at", "epochs", "time",
                     "Alg. 1 + LM", "rel. error"], rows)
    mem = [r for r in runs if "peak_traced_bytes" in r]
    for r in mem:
        txt += (f"\n\nMemory of the d = {r['d']:,} run: peak traced allocations {r['peak_traced_bytes'] / 2**30:.2f} "
                f"GiB, {r['peak_traced_bytes'] / r['factor_bytes']:.1f} times one d x m factor matrix "
                f"({r['factor_bytes'] / 2**20:.0f} MiB); process peak RSS {r['process_peak_rss_bytes'] / 2**30:.2f} "
                f"GiB. The dense target would hold {r['dense_entries']:.0e} entries.")
    return txt


def _build_md(res):
    if res["status"] != "found":
        return f"No stored build timings ({res['source']} {res['status']}); run `make test`."
    rows = [[k, f"{v['seconds']:.1f} s", "ok" if v.get("ok") else "FAILED"] for k, v in res["stages"].items()]
    if res.get("total_seconds") is not None:
        rows.append(["total", f"{res['total_seconds']:.1f} s", ""])
    return f"`make test` of {res.get('started')} (commit {res.get('commit')})\n\n" + _md_table(
        ["stage", "time", "status"], rows)


def report_markdown(name, payload):
    """The Markdown body (tables and notes) of one stored benchmark payload.

    Parameters
    ----------
    name : str
        One of :data:`tdcore.bench.BENCH_NAMES`.
    payload : dict
        As returned by :func:`tdcore.bench.run_benchmark` (or read back from its JSON).

    Returns
    -------
    str
    """
    if name == "step":
        rows = payload["rows"]
        variants = [k[:-len("_ratio")] for k in rows[0] if k.endswith("_ratio") and k != "ratio"] if rows else []
        return _step_floor_md(rows, variants)
    if name == "dense":
        return _dense_md(payload["time"], payload["memory"]) + _to_dense_md(payload.get("to_dense"))
    if name == "scale":
        return _scale_md(payload["runs"])
    if name == "batch":
        return _batch_md(payload["result"])
    if name == "gpu":
        return _gpu_md(payload["result"])
    if name == "baselines":
        return _baselines_md(payload["result"])
    if name == "accuracy":
        return _accuracy_md(payload["result"], payload.get("vs_d"))
    if name == "build":
        return _build_md(payload["result"])
    raise ValueError(f"name must be one of {BENCH_NAMES}, got {name!r}")


#: How stored variants of the step are named in generated text.
VARIANT_LABELS = {"prepatch": "the code before the hot-path rewrite (commit 35073b1)",
                  "proposed": "the proposed patch",
                  "stacked": "one trial through the batched (stacked) code"}


def _vlabel(v):
    return VARIANT_LABELS.get(v, v)


def variants_of(record, suffix, own):
    """Names ``v`` of the stored variants in ``record``: keys ``v + suffix`` other than ``own``.

    Examples
    --------
    >>> variants_of({"ratio": 1.1, "prepatch_ratio": 2.0, "step_s": 1.0}, "_ratio", "ratio")
    ['prepatch']
    """
    return [k[: -len(suffix)] for k in record if k.endswith(suffix) and k != own
            and not k[: -len(suffix)].endswith("_")]


def _met(value, op, target):
    if value is None or isinstance(value, str) or not np.isfinite(value):
        return None
    return bool(value <= target) if op == "<=" else bool(value >= target)


def target_met(value, key):
    """Whether ``value`` meets the issue's target :data:`~tdcore.bench.BENCH_TARGETS` ``[key]``.

    Returns
    -------
    bool or None
        None when ``value`` is not a finite number (not measured).

    Examples
    --------
    >>> target_met(1.1, "step"), target_met(1.3, "step"), target_met("not measured", "step")
    (True, False, None)
    """
    if key not in BENCH_TARGETS:
        raise ValueError(f"key must be one of {sorted(BENCH_TARGETS)}, got {key!r}")
    _, op, target = BENCH_TARGETS[key]
    return _met(value, op, target)


def _baselines_worst(res, e):
    """(worst assessed median ratio decompose / ALS at accuracy ``e``, or a text; a detail clause)."""
    rats = [x for x in res.get("ratios", []) if x["method"] == "decompose" and x["eps"] == e]
    ok = [x for x in rats if x["assessed"]]
    few = [x for x in rats if not x["assessed"]]
    notes = [f"{x['kind']} not assessed: ALS succeeded on {x['n_als_success']} of {x['n_seeds_total']} seeds, both "
             f"on {x['n_seeds']}" + (f" (median ratio there {x['median_ratio']:.2f})" if x["median_ratio"] else "")
             for x in few]
    if not ok:
        return (f"not assessed (fewer than {res['min_seeds']} seeds where both succeed for every target type)",
                ": " + "; ".join(notes) if notes else "")
    worst = max(ok, key=lambda x: x["median_ratio"])
    detail = (f" (worst target type: {worst['kind']}, median of paired ratios over {worst['n_seeds']} seeds; "
              f"ratio of medians {worst['ratio_of_medians']:.2f}"
              + "".join(f"; {x['kind']}: {x['median_ratio']:.2f} over {x['n_seeds']} seeds" for x in ok
                        if x is not worst)
              + "".join("; " + n for n in notes) + ")")
    return worst["median_ratio"], detail


def bench_headline(results):
    """The issue's figures from stored results, each with its target and a generated sentence.

    Parameters
    ----------
    results : dict
        ``name -> payload`` (as written by :func:`run_benchmark`; missing ones are skipped).

    Returns
    -------
    list of dict
        ``key``, ``what``, ``value``, ``op``, ``target``, ``met`` (True/False, or
        None when not measured) and ``sentence``.
    """
    out = []

    def add(key, value, detail="", at_target_size=True, fmt=".3g"):
        what, op, target = BENCH_TARGETS[key]
        met = _met(value, op, target) if at_target_size else None
        if not at_target_size and not isinstance(value, str):
            sent = f"{what}: {value:{fmt}} at a smaller size, target not assessed{detail}."
        elif met is None:
            sent = f"{what}: {value if isinstance(value, str) else 'not measured'}{detail}."
        else:
            sent = (f"{what}: {value:{fmt}} (target {op} {target:g}: {'met' if met else 'NOT met'}){detail}.")
        out.append({"key": key, "what": what, "value": value, "op": op, "target": target, "met": met,
                    "sentence": sent})

    st = results.get("step")
    if st:
        row = next((r for r in st["rows"] if (r["d"], r["m"], r["r"], r["order"], r["B"]) == (200, 1000, 10, 3, 1)),
                   None)
        if row:
            extra = (f"; ratio of minima {row['ratio_of_minima']:.3g}" if "ratio_of_minima" in row else "")
            extra += "".join(f"; {_vlabel(v)}: {row[v + '_ratio']:.3g}" for v in variants_of(row, "_ratio", "ratio"))
            add("step", row["ratio"], extra)
    de = results.get("dense")
    if de:
        tm = de["time"]
        add("dense", tm["speedup"], "".join(f"; {_vlabel(v)}: {tm[v + '_speedup']:.3g}"
                                            for v in variants_of(tm, "_speedup", "speedup"))
            + f" (measured at d={tm['d']}, order {tm['order']}, m={tm['m']}; "
                                    f"memory slope in d: implicit {de['memory']['implicit']['slope']:.2f}, "
                                    f"dense {de['memory']['dense']['slope']:.2f})",
            at_target_size=(tm["d"], tm["order"], tm["m"]) == (64, 4, 256))
    td = de.get("to_dense") if de else None
    if td:
        row = next((r for r in td if (r["d"], r["order"], r["m"]) == (200, 3, 10)), td[0])
        add("to_dense", row["ratio"], f" (ratio of minima {row['ratio_of_minima']:.3g}"
            + "".join(f"; d={r['d']}, order {r['order']}, m={r['m']}: {r['ratio']:.3g}" for r in td if r is not row)
            + ")", at_target_size=(row["d"], row["order"], row["m"]) == (200, 3, 10))
    sc = results.get("scale")
    if sc:
        run = next((r for r in sc["runs"] if r["d"] == 10_000 and not r["polish"]
                    and r.get("method", "algorithm1") == "algorithm1"), None)
        dec = next((r for r in sc["runs"] if r["d"] == 10_000 and r.get("method") == "decompose"), None)
        extra = (f"; decompose to {dec['tol']:g}: {fmt_time(dec['elapsed_s'])} (Algorithm 1 "
                 f"{fmt_time(dec['elapsed_algorithm1_s'])} + refinement {fmt_time(dec['elapsed_refine_s'])}), final "
                 f"relative error {dec['rel_error']:.1e}" if dec else "")
        if run:
            add("scale", run["elapsed_s"], f" (final relative error {run['rel_error']:.2e} after "
                                           f"{run['epochs_run']} epochs, m={run['m']}{extra})")
    ba = results.get("batch")
    if ba:
        r = ba["result"]
        extra = "".join(f"; {_vlabel(v)}: {r[v + '_throughput_ratio']:.3g}"
                        for v in variants_of(r, "_throughput_ratio", "throughput_ratio"))
        if r.get("default_allocator"):
            extra += f"; default allocator: {r['default_allocator']['throughput_ratio']:.3g}"
        for wr in r.get("workers", []):
            extra += (f"; not on one core but with the batch split over {wr['workers']} threads: "
                      f"{wr['throughput_ratio']:.3g}")
        add("batch", r["throughput_ratio"], extra, at_target_size=(r["B"], r["d"], r["m"]) == (64, 50, 50))
    gp = results.get("gpu")
    if gp:
        r = gp["result"]
        sz = r.get("sizes", {})
        add("gpu_batch", r["batched_throughput_ratio"], at_target_size=list(sz.get("batch", [])) == [1024, 100, 64])
        add("gpu_large", r["large_fraction_of_cublas"], at_target_size=list(sz.get("large", [])) == [4096, 16384])
    bl = results.get("baselines")
    if bl and bl["result"]["status"] == "measured":
        res = bl["result"]
        for key, e in (("baselines", max(res["eps"])), ("baselines_tight", min(res["eps"]))):
            value, detail = _baselines_worst(res, e)
            add(key, value, detail, at_target_size=(res["d"], res["r"]) == (20, 5), fmt=".3f")
    ac = results.get("accuracy")
    if ac and ac["result"]["status"] == "measured":
        rows = [r for r in ac["result"]["rows"] if r["ratio"] is not None]
        fails = [r for r in ac["result"]["rows"] if not r["decompose_all_seeds"]]
        if rows:
            worst = max(rows, key=lambda r: r["ratio"])
            detail = (f" (worst case: {worst['label']} d={worst['d']}, r={worst['r']}, order {worst['order']}: "
                      f"{fmt_time(worst['decompose']['median_s'])} against {fmt_time(worst['best_als_s'])} with "
                      f"init={worst['best_init']!r}; {sum(r['met'] for r in ac['result']['rows'])} of "
                      f"{len(ac['result']['rows'])} cases met")
            detail += (f"; decompose missed 1e-6 on some seed in: {', '.join(r['label'] for r in fails)})"
                       if fails else "; decompose reached 1e-6 on every seed of every case)")
            add("accuracy", worst["ratio"], detail, at_target_size=ac["mode"] == "full", fmt=".3f")
    return out


def _accuracy_table(res, first_col):
    rows = []
    for r in res["rows"]:
        dec = r["decompose"]
        cells = [first_col(r), f"{r['d']}, {r['r']}, {r['order']}", str(r["m"]),
                 f"{dec['successes']}/{dec['n']}", fmt_time(dec["median_s"]) if dec["median_s"] else "n/a",
                 (f"{fmt_time(dec['median_algorithm1_s'])} + {fmt_time(dec['median_refine_s'])} "
                  f"({dec['median_lm_iters']:g})") if dec.get("median_s") else ""]
        for i in res["inits"]:
            a = r[f"cp_als_{i}"]
            cells.append(f"{fmt_time(a['median_s'])} ({a['successes']}/{a['n']})" if a["median_s"] else
                         f"n/a (0/{a['n']})")
        cells.append(f"{r['ratio']:.2f}x ({r['best_init']})" if r["ratio"] is not None else "n/a")
        cells.append("yes" if r["met"] else "NO")
        rows.append(cells)
    head = (["case", "d, r, order", "m", "decompose successes", "decompose median", "Alg. 1 + LM (LM iters)"]
            + [f"ALS init={i} median (successes)" for i in res["inits"]] + ["decompose / best ALS", "goal met"])
    return _md_table(head, rows)


def _accuracy_md(res, vs_d=None):
    if res["status"] != "measured":
        return f"skipped: {res.get('reason')}"
    txt = (f"Time to relative error {res['eps']:g}, {len(res['seeds'])} seeds per case, one process, one BLAS "
           f"thread; decompose with m = {res['m_factor']}r; CP-ALS (TensorLy parafac, rank r, at most "
           f"{res['als_iter_max']} sweeps) with each initialisation. Times: medians over the successful seeds of "
           f"the fastest of {res['repeats']} repeats; the best ALS init is the one with the lower median, whatever "
           f"its success rate. Repeats identical: {'yes' if res['all_identical'] else 'NO'}.\n\n")
    txt += _accuracy_table(res, lambda r: r["label"])
    if vs_d and vs_d.get("status") == "measured":
        txt += (f"\n\nAgainst d: {vs_d['kind']} targets, r = {vs_d['r']}, order {vs_d['order']}, "
                f"{len(vs_d['seeds'])} seeds per d.\n\n")
        txt += _accuracy_table(vs_d, lambda r: f"d = {r['d']}")
    return txt
