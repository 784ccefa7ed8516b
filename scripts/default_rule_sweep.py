"""The sweep behind ``tdcore.default_params``: success counts and run times.

For l in {3, 4}, d in {10, 50, 200}, r in {2, 5, 8} and m = 3r, ten seeds each
(batched), it runs Algorithm 1 with every parameter left to the default rule and
records how many seeds reach relative error <= 0.05, the median error, the epoch
where 0.05 was first reached, and the time of one single default run at the
largest size.  It also runs the two alternatives the rule was chosen against:

* ``fixed-delta``: eta = 0.05 and a fixed radius delta = 1e-3 (fine at l = 3, diverges at l = 4), m = 60;
* ``4x-eta``: four times the default step.

Usage::

    python scripts/default_rule_sweep.py [--quick] [--out results/default_rule_sweep.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

import tdcore as tc


def run_config(order, d, r, m, seeds, **kw):
    targets = [tc.random_target(d, r, order, seed=1000 + s) for s in seeds]
    t0 = time.perf_counter()
    b = tc.algorithm1_batch(targets, m, seeds=seeds, backend="numpy", **kw)
    el = time.perf_counter() - t0
    errs = b.rel_errors
    first = []
    for res in b.results:
        e = np.asarray(res.history["rel_error"])
        hit = np.flatnonzero(e <= 0.05)
        first.append(int(hit[0]) + 1 if hit.size else None)
    return {
        "order": order, "d": d, "r": r, "m": m, "n_seeds": len(seeds),
        "successes": int(np.sum(errs <= 0.05)), "median_error": float(np.median(errs)),
        "max_error": float(np.max(errs)), "diverged": len(b.diverged), "first_epoch_below_0.05": first,
        "batch_seconds": el, "params": {k: v for k, v in b.params.to_dict().items()
                                        if k in ("epochs", "iters", "eta", "delta", "lam")},
    }


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer configurations and seeds")
    ap.add_argument("--out", default="results/default_rule_sweep.json")
    args = ap.parse_args(argv)
    seeds = list(range(4 if args.quick else 10))
    ds = (10, 50) if args.quick else (10, 50, 200)
    rs = (2, 5) if args.quick else (2, 5, 8)
    rows = []
    for order in (3, 4):
        for d in ds:
            for r in rs:
                row = run_config(order, d, r, 3 * r, seeds)
                row["rule"] = "default"
                rows.append(row)
                print(json.dumps({k: row[k] for k in ("rule", "order", "d", "r", "m", "successes", "median_error",
                                                      "diverged", "batch_seconds")}), flush=True)
    alt = []
    for order in (3, 4):
        for name, kw in (("fixed-delta", {"delta": 1e-3, "eta": 0.05}), ("4x-eta", {"eta": 4 * 0.25 / order**2})):
            row = run_config(order, 50, 5, 60, seeds, **kw)
            row["rule"] = name
            alt.append(row)
            print(json.dumps({k: row[k] for k in ("rule", "order", "d", "r", "m", "successes", "median_error",
                                                  "diverged")}), flush=True)
    # one single default run at the largest size, for the time budget
    timing = []
    for order in (3, 4):
        T = tc.random_target(200, 8, order, seed=7)
        t0 = time.perf_counter()
        res = tc.algorithm1(T, 100, seed=7, backend="numpy")
        timing.append({"order": order, "d": 200, "r": 8, "m": 100, "seconds": time.perf_counter() - t0,
                       "rel_error": res.rel_error})
        print(json.dumps(timing[-1]), flush=True)
    out = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                    "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS", "default")},
        "quick": args.quick, "success_threshold": 0.05, "default": rows, "alternatives": alt,
        "single_run_timing": timing,
    }
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=1)
    md = ["| rule | l | d | r | m | successes | median error | diverged |", "|---|---|---|---|---|---|---|---|"]
    for row in rows + alt:
        md.append(f"| {row['rule']} | {row['order']} | {row['d']} | {row['r']} | {row['m']} | "
                  f"{row['successes']}/{row['n_seeds']} | {row['median_error']:.2g} | {row['diverged']} |")
    md.append("")
    for t in timing:
        md.append(f"Single default run, l={t['order']}, d=200, r=8, m=100: {t['seconds']:.1f} s, "
                  f"relative error {t['rel_error']:.3g}.")
    with open(os.path.splitext(args.out)[0] + ".md", "w") as fh:
        fh.write("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
