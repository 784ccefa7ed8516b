#!/usr/bin/env python3
"""Run tdcore's benchmark suite and store its results.

    python benchmarks/run_all.py               # quick suite (make bench), about a minute on 2 cores
    python benchmarks/run_all.py --full        # full suite (the stored results the book shows), ~6 min
    python benchmarks/run_all.py --only step dense --full
    python benchmarks/run_all.py --only gpu --backend cupy   # on a GPU machine

Quick results go to ``<out>/bench_quick_<name>.json`` (+ ``.md``), full results to
``<out>/bench_<name>.json`` (+ ``.md``); a summary of the issue's headline figures
goes to ``<out>/bench[_quick]_summary.md``.  ``<out>`` is ``--out-dir``, else
``$TDCORE_BENCH_OUT``, else ``results/`` under the current directory (``make bench``
runs from the repository root).  BLAS runs single-threaded unless
``TDCORE_BENCH_THREADS`` is set (see ``benchmarks/_env.py``).  The measurements
live in :mod:`tdcore.bench`.
"""

from __future__ import annotations

import _env  # noqa: F401  (must come before NumPy)

import argparse
import sys
import time
from pathlib import Path

from tdcore.bench import BENCH_NAMES as NAMES  # after _env: BLAS threads are pinned first

HERE = Path(__file__).resolve().parent  # this folder: perf_patch.py sits beside this script


def _variants(use_patch):
    """Extra contenders of the step: the batched (stacked) code on one trial (tdcore.bench.StackedStepRun)
    and the code before the hot-path rewrite (benchmarks/perf_patch.py)."""
    from tdcore.bench import StackedStepRun

    if not use_patch:
        return {"stacked": StackedStepRun}, None
    try:
        sys.path.insert(0, str(HERE))
        import perf_patch
    except ImportError:
        return {"stacked": StackedStepRun}, None
    return {"stacked": StackedStepRun, "prepatch": perf_patch.PrepatchRun}, {"prepatch": perf_patch.prepatch}


def main(argv=None, *, default_only=None):
    ap = argparse.ArgumentParser(description="tdcore benchmark suite")
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="quick suite (default)")
    mode.add_argument("--full", action="store_true", help="full suite")
    ap.add_argument("--only", nargs="+", choices=NAMES, default=default_only, help="run only these benchmarks")
    ap.add_argument("--backend", default="cupy", help="GPU backend for the gpu benchmark (default cupy)")
    ap.add_argument("--no-prepatch", action="store_true",
                    help="do not time the code from before the hot-path rewrite (perf_patch.py) alongside")
    ap.add_argument("--default-malloc", action="store_true",
                    help="keep glibc's default allocator settings (no tdcore.bench.tune_malloc())")
    ap.add_argument("--out-dir", default=None,
                    help="where results go (default $TDCORE_BENCH_OUT, else results/ under the current directory)")
    args = ap.parse_args(argv)
    quick = not args.full
    from tdcore.bench import (bench_headline, bench_output_dir, load_bench_result, run_benchmark, tune_malloc,
                              write_bench_result)

    out = bench_output_dir(args.out_dir)  # checked (and created) before any measurement

    if not args.default_malloc:
        tune_malloc()  # see its docstring: alternating contenders otherwise re-fault each other's pages

    names = list(args.only or NAMES)
    prefix = "bench_quick_" if quick else "bench_"
    variants, batch_variants = _variants(not args.no_prepatch)
    t_all = time.perf_counter()
    for name in names:
        t = time.perf_counter()
        print(f"[bench] {name} ({'quick' if quick else 'full'}) ...", flush=True)
        payload, md = run_benchmark(name, quick=quick, backend=args.backend, variants=variants,
                                    batch_variants=batch_variants)
        write_bench_result(out / f"{prefix}{name}.json", payload, md)
        print(md.split("\n", 2)[-1] if md.count("\n") > 2 else md, flush=True)
        print(f"[bench] {name}: {time.perf_counter() - t:.1f} s -> {out / (prefix + name)}.json\n", flush=True)
    stored = {n: load_bench_result(out / f"{prefix}{n}.json") for n in NAMES}
    lines = [f"# tdcore benchmarks: headline figures ({'quick' if quick else 'full'} suite)", ""]
    lines += [f"- {h['sentence']}" for h in bench_headline({k: v for k, v in stored.items() if v})]
    summary = out / f"{prefix}summary.md"
    summary.with_name(summary.name + ".tmp").write_text("\n".join(lines) + "\n")
    summary.with_name(summary.name + ".tmp").replace(summary)
    print("\n".join(lines))
    print(f"[bench] total {time.perf_counter() - t_all:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
