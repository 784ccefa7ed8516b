#!/usr/bin/env python3
"""GPU check: the CuPy agreement tests and the GPU benchmark in one command (``make gpu-check``).

    python benchmarks/gpu_check.py                # on a machine with a CUDA GPU and CuPy
    python benchmarks/gpu_check.py --emulate      # dry run on the CPU emulator (tests/gpu/fake_cupy)

What it does, in order:

1. runs the CuPy-marked tests (``pytest -m cupy tests/gpu``) on real CuPy: NumPy vs
   CuPy agreement to 1e-8 with re-initialisation (order 3 and 4), the conversion
   rule, exact replays;
2. times Algorithm 1 iterations, batched, for ``B`` in {1, 64, 1024} at ``d = m = 50``
   and ``d = 100, m = 64``, on CuPy and on NumPy (this machine's CPU, all cores: the
   better of one process with threaded BLAS and ``workers`` threads), float64 and
   float32: throughput in trial-iterations per second (CuPy from the run's own epoch
   clock, NumPy from wall-clock differences; set-up and warm-up left out);
3. one large run, ``d = 4096, m = 16384`` (``B = 1``), float64 and float32: time per
   iteration, its floating-point rate (``4 d m^2`` flops: the Gram matrix ``U^T U``
   and ``U M``, plus the ``O(d m r)`` target terms) and that rate as a fraction of
   the measured cuBLAS GEMM rate (``cupy.matmul`` of the same shapes);
4. writes ``results/bench_gpu.json`` and ``.md`` with provenance (commit, date,
   command, tdcore version, machine, GPU, CuPy / CUDA versions, BLAS, threads) and
   the goals: B = 1024 batched >= 100x NumPy-CPU, large step >= 50% of the GEMM
   rate, float32 >= 1.8x float64 on the large step.

``--emulate`` runs the same code on the CPU emulator with small sizes, so the script
itself is tested without a GPU; it writes to ``_build/gpu_check_emulated/`` (never
over the stored results), and its timings mean nothing.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

GOALS = {"batched_speedup_B1024": 100.0, "large_fraction_of_gemm": 0.5, "float32_speedup_large": 1.8}


def _git(*args):
    try:
        return subprocess.run(["git", "-C", ROOT, *args], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(argv, emulate):
    import tdcore as tc
    from tdcore._backend import backend_info

    try:
        from threadpoolctl import threadpool_info

        blas = [{k: i.get(k) for k in ("internal_api", "version", "num_threads", "filepath")} for i in
                threadpool_info() if i.get("user_api") == "blas"]
    except Exception as exc:  # informational only
        blas = f"unknown ({exc})"
    info = backend_info()
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    return {
        "commit": _git("rev-parse", "HEAD"),
        "dirty": bool(dirty),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([os.path.basename(sys.executable)] + list(argv)),
        "tdcore": getattr(tc, "__version__", None),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu_cores": os.cpu_count(),
        "blas": blas,
        "threads_env": {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")},
        "gpu": info["cupy"],
        "cupy_reason": info["cupy_reason"],
        "emulated": emulate,
    }


def run_tests(emulate):
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    if emulate:
        env["TDCORE_FAKE_CUPY"] = "1"
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "cupy", "-p", "no:cacheprovider",
                           os.path.join(ROOT, "tests", "gpu")], capture_output=True, text=True, env=env, cwd=ROOT)
    tail = proc.stdout.strip().splitlines()[-1:] if proc.stdout.strip() else []
    print("\n".join(proc.stdout.strip().splitlines()[-15:]))
    return {"returncode": proc.returncode, "summary": tail[0] if tail else proc.stderr[-500:],
            "wall_s": round(time.perf_counter() - t0, 1)}


def _sync(be):
    be.synchronize()


def iteration_time(target, m, B, backend, dtype, iters, epochs=3):
    """Seconds per batched Algorithm 1 iteration, from the run's own epoch clock.

    ``history["elapsed"]`` is stamped after each epoch's one device->host copy, so the
    difference of two consecutive stamps is ``iters`` iterations plus one
    re-initialisation; the first epoch (kernel compilation, memory pool) is left out.
    """
    import tdcore as tc

    res = tc.algorithm1_batch(target, m, seeds=range(B), epochs=epochs, iters=iters, backend=backend, dtype=dtype)
    el = res.results[0].history["elapsed"]
    return min(b - a for a, b in zip(el[1:], el[2:])) / iters


def numpy_iteration_time(target, m, B, dtype, iters):
    """Seconds per batched iteration on the CPU, the better of one process and ``workers`` threads.

    ``workers = min(B, cores)`` splits the batch into threads with single-threaded BLAS
    (see ``algorithm1_batch``); the time is the wall-clock difference of 3-epoch and
    1-epoch runs over the ``2 iters`` iterations between them (set-up cancels).
    """
    import tdcore as tc

    def wall(epochs, workers):
        t0 = time.perf_counter()
        tc.algorithm1_batch(target, m, seeds=range(B), epochs=epochs, iters=iters, backend="numpy", dtype=dtype,
                            workers=workers)
        return time.perf_counter() - t0

    best = {}
    for workers in sorted({1, max(1, min(B, os.cpu_count() or 1))}):
        wall(1, workers)  # warm-up
        best[workers] = max(wall(3, workers) - wall(1, workers), 1e-9) / (2 * iters)
    w = min(best, key=best.get)
    return best[w], w


def step_time(target, m, dtype, steps):
    """Seconds per Algorithm 1 step (evaluation included) of one large trial on CuPy."""
    from tdcore._algorithm1 import _make_params, _prepare_targets, _Run
    from tdcore._backend import get_backend

    be = get_backend("cupy")
    p = _make_params(target, m, 1, steps, None, None, None, True, True, 0, None)
    op, _ = _prepare_targets([target], be, np.dtype(dtype))
    run = _Run(op, p, [np.random.default_rng(0)], be, np.dtype(dtype))
    run.init_state()
    ev = run.evaluate()

    def go(n):
        nonlocal ev
        be.synchronize()
        t0 = time.perf_counter()
        for _ in range(n):
            _, new, ev = run.step(ev)
            run.U, run.c, run.chat, run.switched = new
        be.synchronize()
        return time.perf_counter() - t0

    go(1)  # warm-up
    return min(go(steps) for _ in range(2)) / steps


def gemm_rate(cp, d, m, dtype, repeats=3):
    """Measured ``cupy.matmul`` rate (flop/s) for the step's shapes (m x d) @ (d x m)."""
    rng = np.random.default_rng(0)
    A = cp.asarray(rng.standard_normal((d, m)), dtype=dtype)
    cp.matmul(A.T, A)
    cp.cuda.Stream.null.synchronize()
    best = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        cp.matmul(A.T, A)
        cp.cuda.Stream.null.synchronize()
        dt = time.perf_counter() - t0
        best = dt if best is None else min(best, dt)
    return 2.0 * d * m * m / best


def bench(emulate):
    import tdcore as tc

    cp = __import__("cupy")
    if emulate:
        shapes, batches, large, hg, hn, steps = [(10, 10), (12, 8)], (1, 4, 16), (64, 256), 20, 10, 3
    else:
        shapes, batches, large, hg, hn, steps = [(50, 50), (100, 64)], (1, 64, 1024), (4096, 16384), 200, 10, 5
    r = 5
    rows = []
    for d, m in shapes:
        T = tc.random_target(d, r, 3, seed=0)
        for dtype in ("float64", "float32"):
            for B in batches:
                tg = iteration_time(T, m, B, "cupy", dtype, hg)
                # NumPy at large B is slow: fewer iterations per epoch, same clock
                tn, workers = numpy_iteration_time(T, m, B, dtype, hn if B > 64 else 5 * hn)
                row = {"d": d, "m": m, "B": B, "dtype": dtype, "cupy_s_per_iter": tg, "numpy_s_per_iter": tn,
                       "numpy_workers": workers,
                       "cupy_trial_iters_per_s": B / tg, "numpy_trial_iters_per_s": B / tn, "speedup": tn / tg}
                rows.append(row)
                print(f"  d={d:4d} m={m:4d} B={B:5d} {dtype}: cupy {tg * 1e3:8.3f} ms/iter, numpy "
                      f"{tn * 1e3:8.3f} ms/iter, speedup {tn / tg:7.1f}x", flush=True)
    d, m = large
    T = tc.random_target(d, 10, 3, seed=0)
    big = []
    for dtype in ("float64", "float32"):
        t = step_time(T, m, dtype, steps)
        flops = 4.0 * d * m * m + 8.0 * d * m * 10
        g = gemm_rate(cp, d, m, dtype)
        big.append({"d": d, "m": m, "dtype": dtype, "s_per_iter": t, "flop_rate": flops / t, "gemm_rate": g,
                    "fraction_of_gemm": flops / t / g})
        print(f"  large d={d} m={m} {dtype}: {t * 1e3:.1f} ms/iter, {flops / t / 1e12:.2f} Tflop/s, "
              f"{flops / t / g:.0%} of GEMM ({g / 1e12:.2f} Tflop/s)", flush=True)
    b1024 = [x["speedup"] for x in rows if x["B"] == max(batches) and x["dtype"] == "float64"]
    f64 = next(x for x in big if x["dtype"] == "float64")
    f32 = next(x for x in big if x["dtype"] == "float32")
    summary = {
        "batched_speedup_B1024": min(b1024),
        "large_fraction_of_gemm": f64["fraction_of_gemm"],
        "float32_speedup_large": f64["s_per_iter"] / f32["s_per_iter"],
    }
    goals = {k: {"goal": v, "measured": summary[k], "met": bool(summary[k] >= v)} for k, v in GOALS.items()}
    return {"batched": rows, "large": big, "summary": summary, "goals": goals}


def write(out_dir, doc):
    os.makedirs(out_dir, exist_ok=True)
    jpath, mpath = os.path.join(out_dir, "bench_gpu.json"), os.path.join(out_dir, "bench_gpu.md")
    with open(jpath + ".tmp", "w") as fh:
        json.dump(doc, fh, indent=1, default=float)
    os.replace(jpath + ".tmp", jpath)
    p = doc["provenance"]
    gpu = p["gpu"].get("device") if isinstance(p["gpu"], dict) else None
    lines = ["<!-- generated by benchmarks/gpu_check.py (make gpu-check); do not edit -->",
             f"**GPU check**{' (EMULATED: timings mean nothing)' if p['emulated'] else ''}: {gpu}, "
             f"CuPy {p['gpu'].get('cupy')}, CUDA runtime {p['gpu'].get('cuda_runtime')}, commit {p['commit']}"
             f"{' (dirty)' if p['dirty'] else ''}, tdcore {p['tdcore']}, {p['date']}, `{p['command']}`, "
             f"{p['cpu_cores']} CPU cores, BLAS {p['blas']}", ""]
    t = doc.get("tests")
    if t:
        lines += [f"Agreement tests (`pytest -m cupy tests/gpu`): {t['summary']} (exit {t['returncode']})", ""]
    b = doc.get("bench")
    if b:
        lines += ["| d | m | B | dtype | CuPy ms/iter | NumPy ms/iter (workers) | speedup |",
                  "|---|---|---|---|---|---|---|"]
        for x in b["batched"]:
            lines.append(f"| {x['d']} | {x['m']} | {x['B']} | {x['dtype']} | {x['cupy_s_per_iter'] * 1e3:.3f} | "
                         f"{x['numpy_s_per_iter'] * 1e3:.3f} ({x['numpy_workers']}) | {x['speedup']:.1f}x |")
        lines += ["", "| large d | m | dtype | ms/iter | Tflop/s | GEMM Tflop/s | fraction |",
                  "|---|---|---|---|---|---|---|"]
        for x in b["large"]:
            lines.append(f"| {x['d']} | {x['m']} | {x['dtype']} | {x['s_per_iter'] * 1e3:.1f} | "
                         f"{x['flop_rate'] / 1e12:.2f} | {x['gemm_rate'] / 1e12:.2f} | {x['fraction_of_gemm']:.0%} |")
        lines += ["", "| goal | target | measured | met |", "|---|---|---|---|"]
        for k, g in b["goals"].items():
            lines.append(f"| {k} | >= {g['goal']} | {g['measured']:.3g} | {'yes' if g['met'] else 'no'} |")
    with open(mpath, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return jpath, mpath


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--emulate", action="store_true", help="run on the CPU emulator with small sizes (a dry run)")
    ap.add_argument("--skip-tests", action="store_true", help="only the benchmark")
    ap.add_argument("--out-dir", default=None, help="default results/ (emulated: _build/gpu_check_emulated/)")
    args = ap.parse_args(argv)
    if args.emulate:
        sys.path.insert(0, os.path.join(ROOT, "tests", "gpu"))
        import fake_cupy

        fake_cupy.install()
    from tdcore._backend import backend_info

    info = backend_info()
    if not info["cupy_usable"]:
        print(f"gpu-check needs a usable CUDA GPU: {info['cupy_reason']}. (Dry run without one: "
              "python benchmarks/gpu_check.py --emulate)", file=sys.stderr)
        return 2
    out_dir = args.out_dir or os.path.join(ROOT, "_build/gpu_check_emulated" if args.emulate else "results")
    doc = {"provenance": provenance([os.path.relpath(__file__, ROOT)] + argv, args.emulate)}
    rc = 0
    if not args.skip_tests:
        print("== CuPy tests", flush=True)
        doc["tests"] = run_tests(args.emulate)
        rc = doc["tests"]["returncode"]
    print("== benchmark", flush=True)
    t0 = time.perf_counter()
    doc["bench"] = bench(args.emulate)
    doc["bench"]["wall_s"] = round(time.perf_counter() - t0, 1)
    for p in write(out_dir, doc):
        print("wrote", os.path.relpath(p, ROOT))
    return rc


if __name__ == "__main__":
    sys.exit(main())
