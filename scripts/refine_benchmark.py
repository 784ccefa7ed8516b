"""Algorithm 1 + Levenberg--Marquardt refinement (``tdcore._refine.decompose``) against CP-ALS.

On ``comparison_target(kind, d=20, r=5, order=3, seed=s)`` for the three component
types and seeds 0..9 it times

* ``decompose(T, m=15, tol=eps, handoff=h, seed=s)`` for eps in {1e-2, 1e-6} and
  handoff h in {0.3, 0.1, 0.05, 0.02} (Algorithm 1 stops at h, the refinement
  takes over);
* ``cp_als(T, 5, seed=s, target_error=eps, tol=0.0, n_iter_max=2000)`` (TensorLy).

It records success (relative error <= eps) and wall time of every run, and
writes a JSON file with all runs and a Markdown summary: success counts,
median times, and the median over seeds of the time ratio decompose / ALS on
the seeds where ALS succeeds.  A second part times ``decompose(tol=1e-6)`` with
the handoffs in ``TTA_HANDOFFS`` on the seven cases of the time-to-accuracy
benchmark (``tdcore.bench.TTA_CASES``, 5 seeds, the fastest of 3 repeats taken
in alternation).  Run it with one BLAS thread for stable timings::

    OPENBLAS_NUM_THREADS=1 python scripts/refine_benchmark.py [--seeds 10] [--out results/refine_benchmark.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

from tdcore._baselines import COMPONENT_TYPES, comparison_target, cp_als
from tdcore._provenance import provenance
from tdcore._refine import decompose

HANDOFFS = (0.3, 0.1, 0.05, 0.02)
EPS = (1e-2, 1e-6)
TTA_HANDOFFS = (0.3, 0.2, 0.1)


def tta_handoffs(seeds=5, repeats=3):
    """Median time to 1e-6 of decompose per time-to-accuracy case and handoff (fastest of ``repeats``)."""
    from tdcore.bench.accuracy import TTA_CASES, tta_target

    rows = []
    for label, kind, d, r, order in TTA_CASES:
        targets = [tta_target(kind, d, r, order, s) for s in range(seeds)]
        best = {h: [float("inf")] * seeds for h in TTA_HANDOFFS}
        ok = {h: [False] * seeds for h in TTA_HANDOFFS}
        for _ in range(repeats):
            for s, T in enumerate(targets):
                for h in TTA_HANDOFFS:
                    res = decompose(T, 3 * r, tol=1e-6, seed=s, handoff=h)
                    best[h][s] = min(best[h][s], res.elapsed)
                    ok[h][s] = bool(res.converged)
        rows.append(dict(label=label, kind=kind, d=d, r=r, order=order,
                         median_s={str(h): float(np.median(best[h])) for h in TTA_HANDOFFS},
                         successes={str(h): int(sum(ok[h])) for h in TTA_HANDOFFS}))
        print(label, d, r, order, flush=True)
    return rows


def tta_summary(rows):
    head = "| case | d, r, order | " + " | ".join(f"handoff {h:g}" for h in TTA_HANDOFFS) + " |"
    lines = ["", "## Handoffs on the time-to-accuracy cases (decompose to 1e-6, m = 3r, 5 seeds, fastest of 3)",
             "", "Median times in ms (successes).", "", head, "|---|---|" + "---|" * len(TTA_HANDOFFS)]
    for x in rows:
        cells = [f"{1e3 * x['median_s'][str(h)]:.1f} ({x['successes'][str(h)]}/5)" for h in TTA_HANDOFFS]
        lines.append(f"| {x['label']} | {x['d']}, {x['r']}, {x['order']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--d", type=int, default=20)
    ap.add_argument("--r", type=int, default=5)
    ap.add_argument("--m", type=int, default=15)
    ap.add_argument("--out", default="results/refine_benchmark.json")
    args = ap.parse_args(argv)
    runs = []
    t_start = time.perf_counter()
    decompose(comparison_target("separated", args.d, args.r, 3, seed=0), args.m, tol=1e-6, seed=0)  # warm-up
    for kind in COMPONENT_TYPES:
        for s in range(args.seeds):
            T = comparison_target(kind, args.d, args.r, 3, seed=s)
            for eps in EPS:
                a = cp_als(T, args.r, seed=s, target_error=eps, tol=0.0, n_iter_max=2000)
                runs.append(dict(kind=kind, seed=s, eps=eps, method="cp_als", handoff=None, time=a.elapsed,
                                 rel_error=a.rel_error, success=bool(a.rel_error <= eps)))
                for h in HANDOFFS:
                    res = decompose(T, args.m, tol=eps, handoff=h, seed=s)
                    runs.append(dict(kind=kind, seed=s, eps=eps, method="decompose", handoff=h, time=res.elapsed,
                                     time_algorithm1=res.elapsed_algorithm1, time_refine=res.elapsed_refine,
                                     lm_iters=res.refine.n_iter, rel_error=res.rel_error,
                                     success=bool(res.converged)))
            print(kind, s, f"{time.perf_counter() - t_start:.1f}s", flush=True)
    tta = tta_handoffs()
    meta = dict(d=args.d, r=args.r, m=args.m, order=3, seeds=args.seeds, handoffs=HANDOFFS, eps=EPS,
                blas_threads=os.environ.get("OPENBLAS_NUM_THREADS"), python=platform.python_version(),
                machine=platform.machine(), total_seconds=time.perf_counter() - t_start)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as fh:
        prov = provenance(modules=("tdcore._tensor", "tdcore._gram", "tdcore._objective", "tdcore._algorithm1",
                                   "tdcore._algorithm1.api", "tdcore._algorithm1.params", "tdcore._algorithm1.run",
                                   "tdcore._refine", "tdcore._baselines", "tdcore.bench.accuracy"),
                          script="OPENBLAS_NUM_THREADS=1 python scripts/refine_benchmark.py")
        json.dump(dict(meta=meta, runs=runs, tta_handoffs=tta, provenance=prov), fh, separators=(",", ":"))
    md = summary(runs, meta) + tta_summary(tta)
    with open(os.path.splitext(args.out)[0] + ".md", "w") as fh:
        fh.write(md)
    print(md)


def summary(runs, meta):
    """Markdown table: success counts, median times and median time ratios to ALS."""
    lines = [f"# Algorithm 1 + LM refinement vs CP-ALS (d={meta['d']}, r={meta['r']}, m={meta['m']}, order 3, "
             f"{meta['seeds']} seeds, OPENBLAS_NUM_THREADS={meta['blas_threads']})", "",
             "Times in ms (median over seeds, all seeds). ratio = median over the seeds where ALS succeeds of "
             "time(decompose) / time(ALS).", "",
             "| kind | eps | method | handoff | success | median time | median Alg.1 / LM | LM iters (median) "
             "| ratio to ALS |", "|---|---|---|---|---|---|---|---|---|"]
    for kind in COMPONENT_TYPES:
        for eps in EPS:
            als = {r["seed"]: r for r in runs if r["kind"] == kind and r["eps"] == eps and r["method"] == "cp_als"}
            ok = [s for s, r in als.items() if r["success"]]
            lines.append(f"| {kind} | {eps:g} | CP-ALS | - | {len(ok)}/{len(als)} | "
                         f"{1e3 * np.median([r['time'] for r in als.values()]):.1f} | - | - | 1 |")
            for h in HANDOFFS:
                rs = [r for r in runs if r["kind"] == kind and r["eps"] == eps and r["handoff"] == h]
                ratio = [r["time"] / als[r["seed"]]["time"] for r in rs if r["seed"] in ok]
                lines.append(
                    f"| {kind} | {eps:g} | decompose | {h:g} | {sum(r['success'] for r in rs)}/{len(rs)} | "
                    f"{1e3 * np.median([r['time'] for r in rs]):.1f} | "
                    f"{1e3 * np.median([r['time_algorithm1'] for r in rs]):.1f} / "
                    f"{1e3 * np.median([r['time_refine'] for r in rs]):.1f} | "
                    f"{np.median([r['lm_iters'] for r in rs]):.0f} | "
                    + (f"{np.median(ratio):.2f} |" if ratio else "- |"))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
