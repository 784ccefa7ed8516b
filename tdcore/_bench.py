"""Benchmarks of tdcore: timing helpers, the measurements, and their stored results.

The scripts in ``benchmarks/`` are thin command lines around the functions here;
the Performance chapter calls the same functions at tiny sizes and reads the
stored results (``results/bench_*.json``).  Measurements follow three rules,
because the machines we run on are shared and noisy:

* every ratio is measured inside one process, with the two contenders
  interleaved (A, B, A, B, ...), and the reported ratio is the median of the
  paired ratios;
* every result records the machine (CPU, cores, BLAS, load average);
* memory is measured in a fresh subprocess per configuration (``tracemalloc``
  peak of the step itself, and the process's peak RSS).

The benchmarks (numbered as in the Performance chapter):

1. :func:`bench_step_floor` -- one Algorithm 1 iteration vs its three bare matrix products;
2. :func:`bench_implicit_dense` and :func:`bench_memory` -- implicit step vs a dense einsum step;
3. :func:`bench_scale` -- recovery of a d = 10,000 target on the CPU;
4. :func:`bench_batch` -- ``algorithm1_batch`` vs a loop of ``algorithm1``;
5. :func:`bench_gpu` -- CuPy throughput, fraction of cuBLAS, float32, agreement (needs a GPU);
6. :func:`bench_baselines` -- time to accuracy of ``decompose`` and Algorithm 1 vs CP-ALS and the
   power method, and :func:`bench_baselines_sweep` -- the same against d;
7. :func:`bench_build` -- book build / nbval / unit-test times.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from ._validate import check_int

__all__ = [
    "bench_machine_info",
    "time_interleaved",
    "bench_paired_ratio",
    "bench_run_state",
    "bench_step_callable",
    "bench_step_floor",
    "dense_gradient_step",
    "bench_implicit_dense",
    "bench_memory",
    "bench_scale",
    "bench_batch",
    "bench_gpu",
    "bench_baselines",
    "bench_baselines_sweep",
    "bench_build",
    "write_bench_result",
    "load_bench_result",
    "bench_results_dir",
    "GPU_NOT_MEASURED",
    "BENCH_SUITE",
    "BENCH_NAMES",
    "BENCH_TARGETS",
    "run_benchmark",
    "bench_headline",
    "bench_headline_markdown",
    "load_bench_results",
    "bench_gpu_status",
    "plot_bench_step_floor",
    "plot_bench_memory",
    "plot_bench_scale",
    "plot_bench_baselines",
    "plot_bench_baselines_sweep",
    "plot_bench_memory_model",
    "bench_story",
    "bench_table",
    "bench_machine_table",
    "tune_malloc",
]

#: Text recorded for GPU figures on a machine without a usable CUDA device.
GPU_NOT_MEASURED = "not measured (no GPU lent)"


# ---------------------------------------------------------------------------------------------
# machine, timing, storage
# ---------------------------------------------------------------------------------------------
def _cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _blas_name():
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        return f"{blas.get('name', '?')} {blas.get('version', '')}".strip()
    except Exception:  # older NumPy: no dict mode
        return "unknown"


def bench_machine_info():
    """Describe this machine: CPU, cores, memory, BLAS, versions, load average, time.

    Returns
    -------
    dict
        JSON-serialisable.  ``loadavg`` is the 1/5/15-minute load average when the
        function is called; benchmarks call it before and after measuring.
    """
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        mem = float("nan")
    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    from ._backend import backend_info

    info = backend_info()
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(mem, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "blas": _blas_name(),
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS") or "default",
        "malloc_tuned": _MALLOC_TUNED,
        "gpu": info["cupy"].get("device") if info["cupy_usable"] else None,
        "bench_gpu_status": info["cupy_reason"],
        "loadavg": load,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


_MALLOC_TUNED = False


def tune_malloc(*, mmap_threshold=32 * 2**20, trim_threshold=256 * 2**20, top_pad=16 * 2**20):
    """Keep glibc's allocator from returning array memory to the OS after every step.

    An Algorithm 1 iteration allocates a dozen temporaries of the size of ``U``
    (``B d m`` doubles).  With glibc's defaults, memory freed at the top of the
    heap is trimmed and arrays above the (dynamic) mmap threshold get fresh
    pages, so every iteration pays page faults for all of them: at ``B = 64``,
    ``d = m = 50`` (1.3 MB arrays) that is as much time as the matrix products.
    Raising the mmap and trim thresholds (``mallopt``) keeps those pages in the
    process.  The cost is memory: up to ``trim_threshold`` bytes of freed heap
    may stay mapped.

    Whole Algorithm 1 runs do not need it (their allocation pattern repeats
    every iteration and glibc's dynamic thresholds settle), but micro-benchmarks
    that alternate two contenders do: without it every call of one contender
    re-faults the pages the other one released.  The benchmark scripts call it
    first; :func:`bench_batch` checks whole runs without it in a subprocess.
    Process-wide, hence never done on import.

    Returns
    -------
    bool
        True when the settings were applied (glibc), False elsewhere.
    """
    global _MALLOC_TUNED
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
    ok = all(mallopt(k, int(v)) == 1 for k, v in ((M_MMAP_THRESHOLD, mmap_threshold),
                                                   (M_TRIM_THRESHOLD, trim_threshold), (M_TOP_PAD, top_pad)))
    _MALLOC_TUNED = _MALLOC_TUNED or ok
    return ok


def _calibrate(fn, min_time):
    """Number of calls so that one sample of ``fn`` lasts at least ``min_time`` seconds."""
    n = 1
    while True:
        t = time.perf_counter()
        for _ in range(n):
            fn()
        el = time.perf_counter() - t
        if el >= min_time or n >= 2**20:
            return n
        n = max(n * 2, int(n * 1.2 * min_time / max(el, 1e-9)))


def time_interleaved(funcs, *, repeats=7, min_time=0.05, sync=None, warmup=1):
    """Time several callables in alternation and return the median time per call.

    Parameters
    ----------
    funcs : dict
        ``name -> callable`` (no arguments).
    repeats : int
        Samples per callable; sample k of every callable is taken in one round
        (A, B, C, A, B, C, ...), so slow drifts of the machine hit all of them.
    min_time : float
        Each sample repeats its callable until at least this long (calibrated once).
    sync : callable, optional
        Called after each batch of calls (e.g. a GPU synchronisation).
    warmup : int
        Untimed calls of each callable first.

    Returns
    -------
    dict
        ``name -> median seconds per call``; the per-round samples are under the
        key ``"_samples"`` (``name -> list``) for :func:`bench_paired_ratio`.
    """
    if not funcs:
        raise ValueError("time_interleaved needs at least one callable in funcs")
    if int(repeats) < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    sync = sync or (lambda: None)
    for fn in funcs.values():
        for _ in range(warmup):
            fn()
        sync()
    numbers = {}
    for k, fn in funcs.items():
        numbers[k] = _calibrate(lambda fn=fn: (fn(), sync()), min_time)
    samples = {k: [] for k in funcs}
    for _ in range(int(repeats)):
        for k, fn in funcs.items():
            n = numbers[k]
            t = time.perf_counter()
            for _ in range(n):
                fn()
            sync()
            samples[k].append((time.perf_counter() - t) / n)
    out = {k: float(np.median(v)) for k, v in samples.items()}
    out["_samples"] = samples
    return out


def bench_paired_ratio(timing, a, b):
    """Median over rounds of ``time(a) / time(b)`` from an :func:`time_interleaved` result."""
    sa, sb = np.asarray(timing["_samples"][a]), np.asarray(timing["_samples"][b])
    return float(np.median(sa / sb))


def bench_results_dir():
    """The repository's ``results/`` folder (created if missing)."""
    d = Path(__file__).resolve().parents[1] / "results"
    d.mkdir(exist_ok=True)
    return d


def _jsonable(o):
    if isinstance(o, dict):
        return {str(k): _jsonable(v) for k, v in o.items() if not str(k).startswith("_")}
    if isinstance(o, (list, tuple)):
        return [_jsonable(v) for v in o]
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating, float)):
        v = float(o)
        return v if math.isfinite(v) else None
    if isinstance(o, np.ndarray):
        return _jsonable(o.tolist())
    if isinstance(o, (np.bool_,)):
        return bool(o)
    return o


def write_bench_result(path, payload, markdown=None):
    """Write ``payload`` as JSON to ``path`` and ``markdown`` beside it (same stem, ``.md``).

    Keys starting with ``_`` (raw samples) are dropped; NaN/inf become ``null``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(_jsonable(payload), indent=1) + "\n")
    os.replace(tmp, path)
    if markdown is not None:
        path.with_suffix(".md").write_text(markdown.rstrip() + "\n")
    return path


def load_bench_result(name, directory=None):
    """Load ``results/bench_<name>.json`` (or a path); ``None`` when it does not exist."""
    p = Path(name)
    if p.suffix != ".json":
        p = Path(directory or bench_results_dir()) / f"bench_{name}.json"
    if not p.exists():
        return None
    return json.loads(p.read_text())


def _md_table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def _fmt_t(s):
    if s is None or not np.isfinite(s):
        return "n/a"
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


# ---------------------------------------------------------------------------------------------
# 1. one step vs its floor
# ---------------------------------------------------------------------------------------------
def bench_run_state(d, m, r, order, *, B=1, seed=0, cls=None, backend="numpy", dtype=np.float64, **params):
    """An initialised Algorithm 1 state machine (``_Run``) for timing single steps.

    The target is ``random_target(d, r, order, seed=seed)`` shared by ``B`` trials
    (seeds ``seed .. seed + B - 1``); parameters follow :func:`default_params`
    unless given in ``params`` (``epochs``, ``iters``, ``delta``, ``eta``, ``lam``).
    """
    from . import _algorithm1 as a1
    from ._backend import get_backend
    from ._tensor import random_target
    from ._validate import as_rng, check_dtype

    unknown = set(params) - {"epochs", "iters", "delta", "eta", "lam"}
    if unknown:
        raise TypeError(f"bench_run_state got unknown parameter(s) {sorted(unknown)}; allowed: epochs, iters, "
                        "delta, eta, lam")
    T = random_target(d, r, order, seed=seed)
    p = a1._make_params(T, m, params.get("epochs"), params.get("iters"), params.get("delta"), params.get("eta"),
                        params.get("lam"), True, True, 0, None)
    be = get_backend(backend)
    dt = check_dtype(dtype)
    op, _ = a1._prepare_targets([T] * B, be, dt)
    run = (cls or a1._Run)(op, p, [as_rng(seed + b) for b in range(B)], be, dt)
    run.init_state()
    run.target = T
    return run


def bench_step_callable(run):
    """A no-argument callable doing one iteration of ``run`` from its current state.

    The state is not advanced, so every call does the same work.
    """
    ev = run.evaluate()
    return lambda: run.step(ev)


def _floor_fn(run, rng):
    """The three matrix products of one step, at the run's shapes, on its backend."""
    xp, U = run.xp, run.U
    V = run.tgt.V
    B, d, m = U.shape
    r = V.shape[-1]
    M = xp.asarray(rng.standard_normal((B, m, m)), dtype=U.dtype)
    N = xp.asarray(rng.standard_normal((B, r, m)), dtype=U.dtype)

    def floor():
        U.swapaxes(-1, -2) @ U  # U^T U
        V.swapaxes(-1, -2) @ U  # V^T U
        return U @ M - V @ N  # the update U M - V N

    return floor


def bench_step_floor(sizes, *, repeats=7, min_time=0.05, variants=None, backend="numpy", dtype=np.float64):
    """Time one Algorithm 1 iteration against its three bare matrix products.

    Parameters
    ----------
    sizes : list of tuple
        ``(d, m, r, order)`` or ``(d, m, r, order, B)`` per row.
    repeats, min_time
        See :func:`time_interleaved`.
    variants : dict, optional
        ``name -> _Run subclass``: further step implementations timed in the
        same rounds (e.g. the code before a rewrite, ``benchmarks/perf_patch.py``).

    Returns
    -------
    list of dict
        Per size: ``floor_s``, ``step_s`` (median seconds per call), ``ratio``
        (median of paired step/floor ratios), ``ratio_of_minima`` (the fastest
        step over the fastest floor sample: noise only ever adds time, so this
        is the least disturbed estimate on a busy machine), ``per_trial_step_s``,
        the raw per-round ``samples`` and, per variant, ``<name>_s`` and ``<name>_ratio``.
    """
    from ._backend import get_backend

    be = get_backend(backend)
    rows = []
    for size in sizes:
        d, m, r, order, B = (tuple(size) + (1,))[:5]
        run = bench_run_state(d, m, r, order, B=B, backend=backend, dtype=dtype)
        funcs = {"floor": _floor_fn(run, np.random.default_rng(1)), "step": bench_step_callable(run)}
        for name, cls in (variants or {}).items():
            other = bench_run_state(d, m, r, order, B=B, cls=cls, backend=backend, dtype=dtype)
            funcs[name] = bench_step_callable(other)
        t = time_interleaved(funcs, repeats=repeats, min_time=min_time, sync=be.synchronize)
        sm = t["_samples"]
        row = {"d": d, "m": m, "r": r, "order": order, "B": B, "floor_s": t["floor"], "step_s": t["step"],
               "ratio": bench_paired_ratio(t, "step", "floor"), "per_trial_step_s": t["step"] / B,
               "ratio_of_minima": min(sm["step"]) / min(sm["floor"]),
               "samples": {k: [float(x) for x in v] for k, v in sm.items()}}
        for name in variants or {}:
            row[f"{name}_s"] = t[name]
            row[f"{name}_ratio"] = bench_paired_ratio(t, name, "floor")
        rows.append(row)
    return rows


def _step_floor_md(rows, variants=()):
    header = ["d", "m", "r", "order", "B", "floor (3 products)", "step", "per trial", "step / floor",
              "ratio of minima"]
    for v in variants:
        header += [f"{v} step", f"{v} / floor"]
    body = []
    for r in rows:
        line = [r["d"], r["m"], r["r"], r["order"], r["B"], _fmt_t(r["floor_s"]), _fmt_t(r["step_s"]),
                _fmt_t(r["per_trial_step_s"]), f"{r['ratio']:.2f}x",
                f"{r['ratio_of_minima']:.2f}x" if "ratio_of_minima" in r else "n/a"]
        for v in variants:
            line += [_fmt_t(r[f"{v}_s"]), f"{r[f'{v}_ratio']:.2f}x"]
        body.append(line)
    return _md_table(header, body)


# ---------------------------------------------------------------------------------------------
# 2. implicit vs dense: time and memory
# ---------------------------------------------------------------------------------------------
def _dense_specs(order):
    letters = "abcdefghij"[:order]
    model = ",".join(f"{c}z" for c in letters) + ",z->" + letters
    grad = letters + "," + ",".join(f"{c}z" for c in letters[1:]) + "->" + letters[0] + "z"
    return model, grad


def dense_gradient_step(U, s, T, eta):
    """One gradient step on ``1/2 ||sum_i s_i u_i^{(x) l} - T*||^2`` done densely.

    The straightforward implementation the implicit one is measured against:
    the model is formed as a ``d^l`` array with ``einsum`` (optimised
    contraction order), the residual ``E = T - T*`` is formed, and the gradient
    ``l E(., u_i, ..., u_i) s_i`` is an ``einsum`` of ``E`` with ``l - 1`` copies of ``U``.

    Parameters
    ----------
    U : ndarray (d, m)
    s : ndarray (m,)
    T : ndarray (d,)*l
        The dense target.
    eta : float

    Returns
    -------
    (fit, U_new, grad_U)
    """
    l = T.ndim
    spec_model, spec_grad = _dense_specs(l)
    model = np.einsum(spec_model, *([U] * l), s, optimize="greedy")
    E = model - T
    fit = 0.5 * float(np.vdot(E, E))
    R = np.einsum(spec_grad, E, *([U] * (l - 1)), optimize="greedy")
    g = l * R * s
    return fit, U - eta * g, g


def _dense_inputs(d, order, m, r, seed=0):
    from ._tensor import random_target

    rng = np.random.default_rng(seed + 1)
    T = random_target(d, r, order, seed=seed)
    U = rng.standard_normal((d, m)) / math.sqrt(d)
    s = rng.standard_normal(m) / m
    return T, U, s


def bench_implicit_dense(d=64, order=4, m=256, r=8, *, repeats=3, variants=None):
    """Algorithm 1's implicit step vs :func:`dense_gradient_step` at one size, time_interleaved.

    The implicit side is a full Algorithm 1 iteration (fit *and* regulariser,
    switches, the new state's evaluation); the dense side only the fit's
    gradient step, so the comparison favours the dense code.  Also checks that
    both compute the same fit value and gradient.

    Returns
    -------
    dict
        ``implicit_s``, ``dense_s``, ``speedup`` (median of paired dense/implicit
        ratios), ``max_rel_diff_grad``, ``rel_diff_fit``, ``dense_bytes`` (one
        ``d^l`` array); per entry of ``variants`` (``name -> _Run subclass``, timed
        in the same rounds) ``<name>_s`` and ``<name>_speedup``.
    """
    from ._objective import fit_terms, make_target_operator

    T, U, s = _dense_inputs(d, order, m, r)
    Td = T.to_dense(max_bytes=2**34)
    f_d, _, g_d = dense_gradient_step(U, s, Td, 0.01)
    op = make_target_operator(T)
    f_i, g_i, _, _ = fit_terms(U, s, op)
    run = bench_run_state(d, m, r, order)
    funcs = {"implicit": bench_step_callable(run), "dense": lambda: dense_gradient_step(U, s, Td, 0.01)}
    for name, cls in (variants or {}).items():
        funcs[name] = bench_step_callable(bench_run_state(d, m, r, order, cls=cls))
    t = time_interleaved(funcs, repeats=repeats, min_time=0.05, warmup=1)
    out = {"d": d, "order": order, "m": m, "r": r, "implicit_s": t["implicit"], "dense_s": t["dense"],
           "speedup": bench_paired_ratio(t, "dense", "implicit"),
           "max_rel_diff_grad": float(np.max(np.abs(g_i - g_d)) / np.max(np.abs(g_d))),
           "rel_diff_fit": float(abs(float(f_i) - f_d) / abs(f_d)), "dense_bytes": int(Td.nbytes)}
    for name in variants or {}:
        out[f"{name}_s"] = t[name]
        out[f"{name}_speedup"] = bench_paired_ratio(t, "dense", name)
    return out


def _peak_rss():
    """Peak resident set size of this process in bytes.

    ``VmHWM`` from ``/proc/self/status`` where available: unlike ``ru_maxrss``,
    which Linux carries over an ``execve`` from the forking parent, it starts
    afresh in a new program.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _mem_child(kind, d, order, m, r):
    """Run in a fresh interpreter: one step of ``kind``; print peak memory as JSON."""
    import tracemalloc

    rss0 = _peak_rss()
    if kind == "implicit":
        run = bench_run_state(d, m, r, order)
        inputs = sum(int(a.nbytes) for a in (run.U, run.a, run.c, run.chat, run.tgt.V, run.tgt.w))
        fn = lambda: run.step(run.evaluate())  # noqa: E731
    elif kind == "dense":
        T, U, s = _dense_inputs(d, order, m, r)
        Td = T.to_dense(max_bytes=2**34)
        del T
        inputs = int(U.nbytes + s.nbytes + Td.nbytes)
        fn = lambda: dense_gradient_step(U, s, Td, 0.01)  # noqa: E731
    else:
        raise ValueError(f"kind must be 'implicit' or 'dense', got {kind!r}")
    rss1 = _peak_rss()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    fn()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    rss2 = _peak_rss()
    print(json.dumps({"kind": kind, "d": d, "order": order, "m": m, "r": r, "input_bytes": inputs,
                      "step_peak_bytes": int(peak), "maxrss_bytes": int(rss2), "maxrss_before_step": int(rss1),
                      "maxrss_after_import": int(rss0)}))


def bench_memory(kind, ds, *, order=4, m=256, r=8, timeout=600):
    """Peak memory of one step (``kind`` = ``"implicit"`` or ``"dense"``) for each d, in subprocesses.

    Each size runs in a fresh Python process: ``step_peak_bytes`` is the
    ``tracemalloc`` peak of the step's own allocations (inputs excluded),
    ``maxrss_bytes`` the process's peak resident set size (inputs, interpreter
    and libraries included).  Also fits the log-log slope of the step's peak
    against d over the sizes given (``slope``): about 1 for a cost linear in
    ``d``, about ``order`` for a ``d^l`` one.

    Returns
    -------
    dict
        ``kind``, ``rows`` (one dict per d) and ``slope``.
    """
    if kind not in ("implicit", "dense"):
        raise ValueError(f"kind must be 'implicit' or 'dense', got {kind!r}")
    rows = []
    env = dict(os.environ)
    for d in ds:
        code = (f"from tdcore._bench import _mem_child; _mem_child({kind!r}, {int(d)}, {int(order)}, {int(m)}, "
                f"{int(r)})")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)
        if out.returncode != 0:
            raise RuntimeError(f"memory probe {kind} d={d} failed:\n{out.stderr[-2000:]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    slope = float("nan")
    if len(rows) >= 2:
        x = np.log([rw["d"] for rw in rows])
        y = np.log([max(rw["step_peak_bytes"], 1) for rw in rows])
        slope = float(np.polyfit(x[-3:], y[-3:], 1)[0])  # the largest sizes: asymptotic growth
    return {"kind": kind, "order": order, "m": m, "r": r, "rows": rows, "slope": slope}


# ---------------------------------------------------------------------------------------------
# 3. scale
# ---------------------------------------------------------------------------------------------
def bench_scale(d=10_000, r=10, order=3, m=40, *, epochs=None, iters=None, tol=1e-2, polish=0, seed=0,
                budget_s=600.0, method="algorithm1", handoff=None):
    """Recover a large random target on this machine, with :func:`algorithm1` or :func:`decompose`.

    Parameters
    ----------
    d, r, order, m : int
    epochs, iters : int, optional
        Upper bound on epochs (default rule ``2m + 20``; the run stops at ``tol``)
        and iterations per epoch (default rule 300) of Algorithm 1.
    tol : float
        The relative error to stop at (``decompose``: the refinement's target).
    polish : int
        Polish steps after stopping (``algorithm1`` only; 0: none).
    budget_s : float
        The time budget the result is compared with (``within_budget``).
    method : {"algorithm1", "decompose"}
        ``"decompose"``: Algorithm 1 down to ``handoff``, then Levenberg--Marquardt
        down to ``tol`` (beyond the paper).
    handoff : float, optional
        ``decompose``'s handoff (default :data:`tdcore.DEFAULT_HANDOFF`).

    Returns
    -------
    dict
        ``elapsed_s``, ``rel_error`` (evaluated by :func:`tdcore.precise_rel_error`,
        which resolves errors far below the Gram expansion's ``~1e-8``),
        ``epochs_run``, the ``trace`` (per Algorithm 1 epoch, then per LM
        iteration: seconds since the start and relative error), the parameters
        used and ``dense_entries`` (``d**order``, the size no dense tool can
        hold); for ``decompose`` also ``elapsed_algorithm1_s``,
        ``elapsed_refine_s``, ``rel_error_handoff`` (Algorithm 1's error at the
        handoff), ``lm_iters``, ``stop_reason`` and ``m_final``.
    """
    from ._algorithm1 import algorithm1
    from ._refine import DEFAULT_HANDOFF, decompose, precise_rel_error
    from ._tensor import random_target
    from ._validate import check_choice

    method = check_choice("method", method, ("algorithm1", "decompose"))
    if method == "decompose" and polish:
        raise ValueError(f"polish must be 0 with method='decompose' (the refinement replaces it), got {polish}")
    T = random_target(d, r, order, seed=seed)
    out = {"method": method, "d": d, "r": r, "order": order, "m": m, "tol": tol, "polish": polish,
           "dense_entries": float(d) ** order, "budget_s": budget_s}
    t0 = time.perf_counter()
    if method == "decompose":
        handoff = DEFAULT_HANDOFF if handoff is None else handoff
        dec = decompose(T, m, tol=tol, handoff=handoff, seed=seed + 1, epochs=epochs, iters=iters, backend="numpy")
        el = time.perf_counter() - t0
        res = dec.algorithm1
        out.update(handoff=handoff, elapsed_algorithm1_s=dec.elapsed_algorithm1, elapsed_refine_s=dec.elapsed_refine,
                   rel_error_handoff=float(res.history["rel_error"][-1]), lm_iters=dec.refine.n_iter,
                   stop_reason=dec.refine.stop_reason, converged=bool(dec.converged), m_final=int(dec.model.m))
        model = dec.model
    else:
        res = algorithm1(T, m, epochs=epochs, iters=iters, tol=tol, polish=polish, seed=seed + 1, backend="numpy")
        el = time.perf_counter() - t0
        model = res.model
    h = res.history
    trace = [{"epoch": e, "elapsed_s": t, "rel_error": x} for e, t, x in zip(h["epoch"], h["elapsed"], h["rel_error"])]
    if method == "decompose":
        trace += [{"lm_iter": rec["iteration"], "elapsed_s": dec.elapsed_algorithm1 + rec["elapsed"],
                   "rel_error": rec["rel_error"]} for rec in dec.refine.history]
    out.update(elapsed_s=el, rel_error=float(precise_rel_error(model, T)),
               rel_error_before_polish=float(h["rel_error"][-1]), epochs_run=len(h["epoch"]),
               params=res.params.to_dict(), trace=trace, within_budget=bool(el <= budget_s))
    return out


# ---------------------------------------------------------------------------------------------
# 4. batched trials
# ---------------------------------------------------------------------------------------------
def bench_batch(B=64, d=50, m=50, r=5, order=3, *, epochs=3, iters=100, repeats=2, seq_trials=None, variants=None,
                allocator_check=False, timeout=1800, workers=()):
    """``algorithm1_batch`` over B seeds vs a loop of B ``algorithm1`` runs, time_interleaved.

    Parameters
    ----------
    B, d, m, r, order : int
    epochs, iters : int
        Work per trial (the default rule's other parameters).
    repeats : int
        Rounds of (sequential, batched).
    seq_trials : int, optional
        Run only this many sequential trials per round and scale their time by
        ``B / seq_trials`` (an estimate, recorded as such); default all B.
    variants : dict, optional
        ``name -> context manager factory`` under which the same pair is timed
        again in the same rounds (e.g. the code before a rewrite).
    allocator_check : bool
        Also run the same measurement in a fresh subprocess with glibc's default
        allocator settings (result under ``"default_allocator"``; its ratio is
        measured inside that process, its times are not interleaved with this
        one's).  The benchmark scripts call :func:`tune_malloc` first; this
        checks that whole runs do not depend on it.
    workers : sequence of int
        Also time ``algorithm1_batch(..., workers=w)`` for each ``w`` in the same
        rounds (the batch split over ``w`` threads, one core each): reported
        under ``"workers"``, beside the one-core ratio, never instead of it.

    Returns
    -------
    dict
        ``sequential_s`` (for B trials), ``batched_s``, ``throughput_ratio``
        (median of paired ratios) and ``max_abs_diff_rel_error`` between trial b
        of the batch and the single run with seed b; per variant the same under
        ``<name>_...``.
    """
    from contextlib import nullcontext

    from ._algorithm1 import algorithm1, algorithm1_batch
    from ._tensor import random_target

    T = random_target(d, r, order, seed=0)
    kw = dict(epochs=epochs, iters=iters, backend="numpy")
    nseq = B if seq_trials is None else min(int(seq_trials), B)
    seeds = list(range(B))
    ctxs = {"installed": nullcontext, **(variants or {})}
    samples = {k: {"seq": [], "bat": [], "diff": []} for k in ctxs}
    workers = [check_int("workers", w, minimum=2) for w in workers]
    wsamples = {w: {"ratio": [], "bat": [], "diff": []} for w in workers}
    # warm-up (imports, first-call costs)
    algorithm1(T, m, seed=0, epochs=1, iters=2, backend="numpy")
    for _ in range(int(repeats)):
        for name, ctx in ctxs.items():
            with ctx():
                t = time.perf_counter()
                single = [algorithm1(T, m, seed=s, **kw) for s in seeds[:nseq]]
                ts = (time.perf_counter() - t) * B / nseq
                t = time.perf_counter()
                batch = algorithm1_batch(T, m, seeds=seeds, **kw)
                tb = time.perf_counter() - t
                if name == "installed":
                    for w in workers:
                        t = time.perf_counter()
                        bw = algorithm1_batch(T, m, seeds=seeds, workers=w, **kw)
                        tw = time.perf_counter() - t
                        wsamples[w]["bat"].append(tw)
                        wsamples[w]["ratio"].append(ts / tw)
                        wsamples[w]["diff"].append(max(abs(a.rel_error - b) for a, b in zip(single, bw.rel_errors)))
            samples[name]["seq"].append(ts)
            samples[name]["bat"].append(tb)
            samples[name]["diff"].append(max(abs(a.rel_error - b) for a, b in zip(single, batch.rel_errors)))
    out = {"B": B, "d": d, "m": m, "r": r, "order": order, "epochs": epochs, "iters": iters,
           "sequential_trials_timed": nseq, "sequential_extrapolated": nseq < B, "repeats": int(repeats)}
    for name, sm in samples.items():
        pre = "" if name == "installed" else f"{name}_"
        seq, bat = np.asarray(sm["seq"]), np.asarray(sm["bat"])
        out[pre + "sequential_s"] = float(np.median(seq))
        out[pre + "batched_s"] = float(np.median(bat))
        out[pre + "throughput_ratio"] = float(np.median(seq / bat))
        out[pre + "max_abs_diff_rel_error"] = float(max(sm["diff"]))
    out["workers"] = [{"workers": w, "batched_s": float(np.median(sm["bat"])),
                       "throughput_ratio": float(np.median(sm["ratio"])),
                       "max_abs_diff_rel_error": float(max(sm["diff"]))} for w, sm in wsamples.items()]
    if allocator_check:
        kw = dict(B=B, d=d, m=m, r=r, order=order, epochs=epochs, iters=iters, repeats=repeats, seq_trials=seq_trials)
        code = (f"import json; from tdcore._bench import bench_batch, _jsonable; res = bench_batch(**{kw!r}); "
                f"print(json.dumps(_jsonable(res)))")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0:
            raise RuntimeError(f"batch benchmark with the default allocator failed:\n{proc.stderr[-2000:]}")
        out["default_allocator"] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


# ---------------------------------------------------------------------------------------------
# 5. GPU (CuPy)
# ---------------------------------------------------------------------------------------------
def bench_gpu_status(backend="cupy"):
    """``(usable, reason)`` for the GPU backend (never raises)."""
    from ._backend import _probe_cupy

    if backend != "cupy":
        return False, f"backend {backend!r} is not a GPU backend"
    usable, reason, _ = _probe_cupy()
    return bool(usable), reason


def _gpu_skipped(reason, sizes):
    return {"status": "skipped", "reason": reason, "note": GPU_NOT_MEASURED,
            "batched_throughput_ratio": GPU_NOT_MEASURED, "large_fraction_of_cublas": GPU_NOT_MEASURED,
            "float32_speedup": GPU_NOT_MEASURED, "agreement_max_rel_diff": GPU_NOT_MEASURED,
            "launch_overhead_step_s": GPU_NOT_MEASURED, "sizes": sizes}


def bench_gpu(*, backend="cupy", batch=(1024, 100, 64), large=(4096, 16384), r=10, order=3, repeats=5,
              numpy_batch=None):
    """CuPy measurements; a clean "skipped" record where no usable GPU exists.

    Measures, when CuPy can use a CUDA device:

    * batched throughput: one Algorithm 1 iteration on ``B`` trials
      (``batch = (B, d, m)``) on the GPU vs NumPy on the CPU (trial-steps per
      second; NumPy may run a smaller batch ``numpy_batch`` and is scaled per trial);
    * one large run (``large = (d, m)``): the step vs the bare cuBLAS products at
      the same shapes (fraction of the matrix-product rate), in float64 and float32;
    * the launch-overhead regime: a tiny step (d = m = 10) on the GPU;
    * agreement: a short ``algorithm1`` run on both backends, same seed.

    Returns
    -------
    dict
        ``status`` is ``"measured"`` or ``"skipped"`` (with ``reason``); skipped
        figures read :data:`GPU_NOT_MEASURED`.
    """
    sizes = {"batch": list(batch), "large": list(large), "r": r, "order": order}
    usable, reason = bench_gpu_status(backend)
    if not usable:
        return _gpu_skipped(reason, sizes)
    from ._algorithm1 import algorithm1
    from ._backend import get_backend
    from ._tensor import random_target

    be = get_backend(backend)
    out = {"status": "measured", "reason": reason, "sizes": sizes}
    # batched throughput
    B, d, m = batch
    Bn = int(numpy_batch or B)
    run_g = bench_run_state(d, m, min(r, d), order, B=B, backend=backend)
    run_c = bench_run_state(d, m, min(r, d), order, B=Bn, backend="numpy")
    tg = time_interleaved({"gpu": bench_step_callable(run_g)}, repeats=repeats, min_time=0.2,
                          sync=be.synchronize)["gpu"]
    tc = time_interleaved({"cpu": bench_step_callable(run_c)}, repeats=max(2, repeats // 2), min_time=0.2)["cpu"]
    out["batched_gpu_step_s"], out["batched_cpu_step_s"], out["numpy_batch"] = tg, tc, Bn
    out["batched_throughput_ratio"] = (tc / Bn) / (tg / B)
    # large run vs cuBLAS, float64 and float32
    dl, ml = large
    for dt in (np.float64, np.float32):
        run = bench_run_state(dl, ml, r, order, backend=backend, dtype=dt)
        t = time_interleaved({"floor": _floor_fn(run, np.random.default_rng(1)), "step": bench_step_callable(run)},
                        repeats=repeats, min_time=0.2, sync=be.synchronize)
        key = np.dtype(dt).name
        out[f"large_{key}_step_s"], out[f"large_{key}_floor_s"] = t["step"], t["floor"]
        out[f"large_{key}_fraction_of_cublas"] = bench_paired_ratio(t, "floor", "step")
        del run
    out["large_fraction_of_cublas"] = out["large_float64_fraction_of_cublas"]
    out["float32_speedup"] = out["large_float64_step_s"] / out["large_float32_step_s"]
    # launch overhead: a tiny problem
    tiny = bench_run_state(10, 10, 3, order, backend=backend)
    out["launch_overhead_step_s"] = time_interleaved({"t": bench_step_callable(tiny)}, repeats=repeats, min_time=0.1,
                                                sync=be.synchronize)["t"]
    # agreement with NumPy
    T = random_target(30, 4, order, seed=0)
    a = algorithm1(T, 12, seed=1, epochs=6, iters=100, backend="numpy")
    g = algorithm1(T, 12, seed=1, epochs=6, iters=100, backend=backend)
    out["agreement_max_rel_diff"] = float(np.max(np.abs(g.state["U"] - a.state["U"])) / np.max(np.abs(a.state["U"])))
    out["agreement_rel_error"] = [float(a.rel_error), float(g.rel_error)]
    return out


# ---------------------------------------------------------------------------------------------
# 6. time to accuracy vs CP-ALS and the power method
# ---------------------------------------------------------------------------------------------
#: A time ratio to ALS is judged only on target types where ALS succeeds on at least this many seeds.
BASELINES_MIN_SEEDS = 3

#: Methods of :func:`bench_baselines` (plot colours follow this order).
BASELINE_METHODS = ("algorithm1", "decompose", "cp_als", "power_method")


def _baselines_module():
    try:
        from . import _baselines
    except ImportError:
        return None
    return _baselines


def _run_repeated(jobs, repeats):
    """Run timing jobs ``(meta, fn, eps)`` in passes; keep each job's fastest successful run.

    Pass 1 runs every job once; each further pass (``repeats - 1`` of them)
    runs again the jobs that reached their accuracy ``eps``, so the repeats of
    one run are spread over the whole benchmark rather than taken back to back
    (a burst of load on a shared machine then spoils at most one of them).
    Every run is deterministic given its seed, so only the time may change:
    the record kept is the fastest, with all times under ``times_s`` and
    ``identical`` telling whether every repeat gave the same result
    (``fn()`` returns a record with ``time_s``, ``rel_error`` and a
    ``fingerprint``: final error and iteration counts).  A failed run is not
    repeated (its time is not used).

    Returns
    -------
    list of dict
        One record per job: ``meta`` merged with the fastest run's record.
    """
    runs = [[fn()] for _, fn, _ in jobs]
    for _ in range(int(repeats) - 1):
        for (_, fn, e), rs in zip(jobs, runs):
            if rs[0]["rel_error"] <= e:
                rs.append(fn())
    out = []
    for (meta, _, e), rs in zip(jobs, runs):
        best = dict(min(rs, key=lambda x: x["time_s"]))
        best["times_s"] = [x["time_s"] for x in rs]
        best["identical"] = all(x["fingerprint"] == rs[0]["fingerprint"] for x in rs)
        best["success"] = bool(best["rel_error"] <= e)
        best["eps"] = float(e)
        del best["fingerprint"]
        out.append({**meta, **best})
    return out


def _baseline_jobs(bl, T, r, m, seed, eps, methods, *, iters, handoff, als_iter_max):
    """Timing jobs ``(meta, fn, eps)`` of every method in ``methods`` on one target, to each accuracy."""
    from ._algorithm1 import algorithm1
    from ._refine import DEFAULT_HANDOFF, decompose, precise_rel_error

    lo = max(eps)
    handoff = DEFAULT_HANDOFF if handoff is None else handoff

    def a1():
        t = time.perf_counter()
        res = algorithm1(T, m, tol=lo, iters=iters, seed=seed)
        el = time.perf_counter() - t
        return {"method": "algorithm1", "time_s": el, "rel_error": float(res.rel_error),
                "epochs_run": len(res.history["epoch"]),
                "fingerprint": (float(res.rel_error), len(res.history["epoch"]))}

    def dec(e):
        res = decompose(T, m, tol=e, handoff=handoff, seed=seed, iters=iters)
        return {"method": "decompose", "time_s": res.elapsed, "time_algorithm1_s": res.elapsed_algorithm1,
                "time_refine_s": res.elapsed_refine, "rel_error": float(res.rel_error),
                "epochs_run": len(res.algorithm1.history["epoch"]), "lm_iters": res.refine.n_iter,
                "fingerprint": (float(res.rel_error), res.refine.n_iter)}

    def als(e):
        res = bl.cp_als(T, r, seed=seed, target_error=e, tol=0.0, n_iter_max=als_iter_max)
        ht = res.history["time"]
        sweep = (ht[-1] - ht[0]) / (len(ht) - 1) if len(ht) > 1 else None
        return {"method": "cp_als", "time_s": res.elapsed, "rel_error": float(res.rel_error), "n_iter": res.n_iter,
                "sweep_s": sweep, "fingerprint": (float(res.rel_error), res.n_iter)}

    def pm(e):
        res = bl.power_method(T, r, seed=seed, target_error=e)
        err = precise_rel_error(res.model, T)  # the Gram estimate cannot resolve errors below ~1e-8
        return {"method": "power_method", "time_s": res.elapsed, "rel_error": float(err), "n_iter": res.n_iter,
                "fingerprint": (float(err), res.n_iter)}

    jobs = []
    if "algorithm1" in methods:
        jobs.append(({"method": "algorithm1"}, a1, lo))
    for e in eps:
        for name, fn in (("decompose", dec), ("cp_als", als), ("power_method", pm)):
            if name in methods:
                jobs.append(({"method": name}, lambda fn=fn, e=e: fn(e), e))
    return jobs


def _baselines_warmup(bl, order):
    from ._algorithm1 import algorithm1
    from ._refine import decompose

    T0 = bl.comparison_target("separated", 6, 2, order, seed=0)
    algorithm1(T0, 4, epochs=1, iters=5, seed=0)
    decompose(T0, 4, tol=1e-6, seed=0)
    bl.cp_als(T0, 2, seed=0, n_iter_max=2)
    bl.power_method(T0, 2, seed=0, n_iter=2, n_restarts=2)


def _baselines_skip():
    bl = _baselines_module()
    if bl is None:
        return bl, "tdcore._baselines is not available yet"
    if not bl.tensorly_available():
        return bl, "TensorLy is not installed (pip install tdcore[tensorly])"
    return bl, None


def _summarize_baselines(recs, keys):
    summary = []
    for method, kind, e in keys:
        rs = [x for x in recs if (x["method"], x["kind"], x["eps"]) == (method, kind, e)]
        if not rs:
            continue
        ok = [x for x in rs if x["success"]]
        s = {"method": method, "kind": kind, "eps": e, "n": len(rs), "successes": len(ok),
             "success_rate": len(ok) / len(rs),
             "median_time_s": float(np.median([x["time_s"] for x in ok])) if ok else None,
             "median_rel_error": float(np.median([x["rel_error"] for x in rs]))}
        if method == "decompose" and ok:
            s["median_time_algorithm1_s"] = float(np.median([x["time_algorithm1_s"] for x in ok]))
            s["median_time_refine_s"] = float(np.median([x["time_refine_s"] for x in ok]))
            s["median_lm_iters"] = float(np.median([x["lm_iters"] for x in ok]))
        if method == "cp_als":  # sweeps to accuracy (successes; a failure stops at the cap), time per sweep (all)
            s["median_sweeps"] = float(np.median([x["n_iter"] for x in ok])) if ok else None
            sw = [x["sweep_s"] for x in rs if x.get("sweep_s")]
            s["median_sweep_s"] = float(np.median(sw)) if sw else None
        summary.append(s)
    return summary


def _ratio_to_als(recs, method, kind, e, min_seeds):
    """Paired time ratios ``method / cp_als`` over the seeds where ALS succeeds (dict or None)."""
    sel = [x for x in recs if x["kind"] == kind and x["eps"] == e]
    als = {x["seed"]: x for x in sel if x["method"] == "cp_als"}
    mine = {x["seed"]: x for x in sel if x["method"] == method}
    if not als or not mine:
        return None
    als_ok = [s for s, x in als.items() if x["success"]]
    paired = [s for s in als_ok if s in mine and mine[s]["success"]]
    rat = [mine[s]["time_s"] / als[s]["time_s"] for s in paired]
    out = {"method": method, "kind": kind, "eps": e, "n_seeds": len(paired), "n_als_success": len(als_ok),
           "n_seeds_total": len(als), "n_method_fail_where_als_succeeds": len(als_ok) - len(paired),
           "assessed": len(paired) >= min_seeds, "ratios": rat,
           "median_ratio": float(np.median(rat)) if rat else None,
           "ratio_of_medians": (float(np.median([mine[s]["time_s"] for s in paired])
                                      / np.median([als[s]["time_s"] for s in paired])) if rat else None),
           "min_ratio": float(min(rat)) if rat else None, "max_ratio": float(max(rat)) if rat else None}
    return out


def bench_baselines(kinds=("separated", "correlated", "orthogonal"), *, d=20, r=5, order=3, m=None,
                    seeds=range(5), eps=(1e-2, 1e-6), iters=None, handoff=None, als_iter_max=2000, repeats=3,
                    min_seeds=BASELINES_MIN_SEEDS, sweep=None):
    """Time to relative error ``eps`` and success rate: ``decompose`` and Algorithm 1 vs CP-ALS and the power method.

    For each target type and seed, one target (``comparison_target``) and,
    on it, runs stopped as soon as they reach the accuracy:

    * ``algorithm1`` alone (``m = 3r`` by default, ``tol`` = the loosest
      ``eps``, the default parameter rule otherwise -- ``iters=None`` is the
      rule's 300 iterations per epoch: the run checks ``tol`` after every
      iteration, so the epoch length no longer rounds the stopping time up,
      and the run is then the same computation as ``decompose``'s first
      stage).  Only to the loosest accuracy: alone it stops at an error of the
      order of its regulariser;
    * ``decompose`` (Algorithm 1 to ``handoff``, then Levenberg--Marquardt) to
      each accuracy;
    * CP-ALS (TensorLy, rank ``r``, random init, ``target_error`` = each eps,
      at most ``als_iter_max`` sweeps);
    * the symmetric power method with deflation (rank ``r``) to each accuracy.

    Every run is deterministic given its seed; a run that reaches its accuracy
    is repeated ``repeats`` times, in separate passes over the whole set of
    runs, and its time is the fastest (noise only ever adds time); the
    records say whether the repeats gave identical results.  A run that ends
    above its accuracy is a failure, run once; its time is not used.

    Parameters
    ----------
    kinds, d, r, order, m, seeds, eps
        Targets (``comparison_target(kind, d, r, order, seed=seed)``), Algorithm
        1's width, accuracies.
    iters, handoff : optional
        Algorithm 1's iterations per epoch (default rule) and ``decompose``'s handoff.
    als_iter_max : int
    repeats : int
    min_seeds : int
        Time ratios to ALS are ``assessed`` only on target types where both
        succeed on at least this many seeds (they are reported either way).
    sweep : dict, optional
        Keyword arguments of :func:`bench_baselines_sweep`; its result goes
        under ``"sweep"``.

    Returns
    -------
    dict
        ``status`` (``"measured"``, or ``"skipped"`` when ``tdcore._baselines``
        or TensorLy is missing, with ``reason``), ``records`` (one per method,
        kind, seed, eps), ``summary`` (per method, kind, eps: successes,
        success rate, median time of the successes, for ``decompose`` the
        median split between its two stages), ``ratios`` (per method in
        ``algorithm1``, ``decompose``, kind and eps: paired time ratios to ALS
        over the seeds where both succeed, their median, the ratio of the
        median times, the seed counts, ``assessed``), ``all_identical``.
    """
    bl, reason = _baselines_skip()
    if reason:
        return {"status": "skipped", "reason": reason, "records": [], "summary": [], "ratios": []}
    m = 3 * r if m is None else m
    eps = tuple(sorted((float(e) for e in eps), reverse=True))
    seeds = [int(s) for s in seeds]
    kinds = tuple(kinds)
    _baselines_warmup(bl, order)
    jobs = []
    for kind in kinds:
        for seed in seeds:
            T = bl.comparison_target(kind, d, r, order, seed=seed)
            jobs += [({"kind": kind, "seed": seed, **meta}, fn, e) for meta, fn, e in
                     _baseline_jobs(bl, T, r, m, seed, eps, BASELINE_METHODS, iters=iters, handoff=handoff,
                                    als_iter_max=als_iter_max)]
    recs = _run_repeated(jobs, repeats)
    keys = [(meth, k, e) for k in kinds for e in eps for meth in BASELINE_METHODS]
    summary = _summarize_baselines(recs, keys)
    ratios = [x for x in (_ratio_to_als(recs, meth, k, e, min_seeds) for k in kinds for e in eps
                          for meth in ("decompose", "algorithm1")) if x is not None]
    out = {"status": "measured", "d": d, "r": r, "order": order, "m": m, "eps": list(eps), "iters": iters,
           "handoff": handoff, "als_iter_max": als_iter_max, "repeats": int(repeats), "min_seeds": int(min_seeds),
           "kinds": list(kinds), "seeds": seeds, "records": recs, "summary": summary, "ratios": ratios,
           "all_identical": all(x["identical"] for x in recs)}
    if sweep is not None:
        out["sweep"] = bench_baselines_sweep(**{"r": r, "order": order, "iters": iters, "handoff": handoff,
                                                **sweep})
    return out


def bench_baselines_sweep(ds=(20, 40, 80), kinds=("separated", "correlated"), *, r=5, order=3, m=None,
                          seeds=range(4), eps=(1e-2, 1e-6), iters=None, handoff=None, als_iter_max=500, repeats=3):
    """``decompose`` vs CP-ALS as the dimension grows: time to each accuracy against d.

    The same protocol as :func:`bench_baselines` (fastest of ``repeats`` for
    runs that succeed) for ``decompose`` and CP-ALS only, on
    ``comparison_target(kind, d, r, order, seed)`` for every ``d`` in ``ds``.
    An ALS sweep works on the dense ``d^l`` array, ``decompose`` never forms it.

    Returns
    -------
    dict
        ``records`` and ``rows`` (per d, kind, eps: successes of both methods,
        median times, ALS's median sweeps and time per sweep, the median of
        the paired time ratios decompose / ALS over the seeds where both
        succeed and their number), or ``status="skipped"`` with ``reason``.
    """
    bl, reason = _baselines_skip()
    if reason:
        return {"status": "skipped", "reason": reason, "records": [], "rows": []}
    m = 3 * r if m is None else m
    eps = tuple(sorted((float(e) for e in eps), reverse=True))
    seeds = [int(s) for s in seeds]
    _baselines_warmup(bl, order)
    jobs = []
    for d in ds:
        for kind in kinds:
            for seed in seeds:
                T = bl.comparison_target(kind, int(d), r, order, seed=seed)
                jobs += [({"d": int(d), "kind": kind, "seed": seed, **meta}, fn, e) for meta, fn, e in
                         _baseline_jobs(bl, T, r, m, seed, eps, ("decompose", "cp_als"), iters=iters,
                                        handoff=handoff, als_iter_max=als_iter_max)]
    recs = _run_repeated(jobs, repeats)
    rows = []
    for d in ds:
        for kind in kinds:
            for e in eps:
                sub = [x for x in recs if x["d"] == d]
                summ = {s["method"]: s for s in _summarize_baselines(sub, [("decompose", kind, e),
                                                                            ("cp_als", kind, e)])}
                rat = _ratio_to_als(sub, "decompose", kind, e, 1)
                dec, als = summ["decompose"], summ["cp_als"]
                rows.append({"d": int(d), "kind": kind, "eps": e, "n": dec["n"],
                             "decompose_successes": dec["successes"], "decompose_median_s": dec["median_time_s"],
                             "decompose_median_algorithm1_s": dec.get("median_time_algorithm1_s"),
                             "decompose_median_refine_s": dec.get("median_time_refine_s"),
                             "als_successes": als["successes"], "als_median_s": als["median_time_s"],
                             "als_median_sweeps": als["median_sweeps"], "als_sweep_s": als["median_sweep_s"],
                             "n_paired": rat["n_seeds"], "median_ratio": rat["median_ratio"],
                             "min_ratio": rat["min_ratio"], "max_ratio": rat["max_ratio"]})
    return {"status": "measured", "ds": [int(x) for x in ds], "kinds": list(kinds), "r": r, "order": order, "m": m,
            "seeds": seeds, "eps": list(eps), "als_iter_max": als_iter_max, "repeats": int(repeats),
            "records": recs, "rows": rows, "all_identical": all(x["identical"] for x in recs)}


# ---------------------------------------------------------------------------------------------
# 7. build budget
# ---------------------------------------------------------------------------------------------
def bench_build(*, run_unit_tests=False, root=None):
    """The latest ``make test`` stage timings (``_build/timings.json``), optionally timing the unit tests now.

    Returns
    -------
    dict
        ``status`` (``"found"`` or ``"missing"``), ``stages`` (name -> seconds, ok),
        ``total_seconds``, ``started``, ``commit`` as written by ``tests/timings.py``,
        and ``unit_tests_now_s`` when ``run_unit_tests`` is true.
    """
    root = Path(root) if root else Path(__file__).resolve().parents[1]
    p = root / "_build" / "timings.json"
    out = {"status": "missing", "source": str(p.relative_to(root)), "stages": {}}
    if p.exists():
        try:
            data = json.loads(p.read_text())
            out.update(status="found", stages=data.get("stages", {}), total_seconds=data.get("total_seconds"),
                       started=data.get("started"), commit=data.get("commit"))
        except ValueError:
            out["status"] = "unreadable"
    if run_unit_tests:
        t = time.perf_counter()
        rc = subprocess.call([sys.executable, "-m", "pytest", "tests", "-q", "-x", "-p", "no:cacheprovider"],
                             cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out["unit_tests_now_s"] = time.perf_counter() - t
        out["unit_tests_now_ok"] = rc == 0
    return out


# ---------------------------------------------------------------------------------------------
# the suite: configurations, markdown, headline figures
# ---------------------------------------------------------------------------------------------
#: Quick (``make bench``) and full (``run_all.py --full``) configurations of every benchmark.
BENCH_SUITE = {
    "step": {
        "quick": {"sizes": [(10, 10, 3, 3), (10, 10, 3, 3, 64), (50, 50, 5, 3), (50, 50, 5, 3, 64), (64, 256, 8, 4),
                            (200, 1000, 10, 3)], "repeats": 5},
        "full": {"sizes": [(10, 10, 3, 3), (10, 10, 3, 3, 64), (20, 20, 4, 3), (50, 50, 5, 3), (50, 50, 5, 3, 64),
                           (100, 200, 5, 3), (64, 256, 8, 4), (200, 1000, 10, 3), (400, 1000, 10, 3)],
                 "repeats": 11, "min_time": 0.2},
    },
    "dense": {
        "quick": {"time": {"d": 64, "order": 4, "m": 256, "r": 8, "repeats": 3},
                  "memory": {"implicit": [64, 256, 1024, 4096], "dense": [8, 16, 24, 32], "order": 4, "m": 256,
                             "r": 8}},
        "full": {"time": {"d": 64, "order": 4, "m": 256, "r": 8, "repeats": 5},
                 "memory": {"implicit": [64, 256, 1024, 4096, 16384], "dense": [8, 16, 24, 32, 48, 64], "order": 4,
                            "m": 256, "r": 8}},
    },
    "scale": {
        "quick": {"runs": [{"d": 10_000, "r": 10, "order": 3, "m": 40, "tol": 1e-2},
                           {"d": 10_000, "r": 10, "order": 3, "m": 40, "tol": 1e-8, "method": "decompose"}]},
        "full": {"runs": [{"d": 10_000, "r": 10, "order": 3, "m": 40, "tol": 1e-2},
                          {"d": 10_000, "r": 10, "order": 3, "m": 40, "tol": 1e-2, "polish": 300},
                          {"d": 10_000, "r": 10, "order": 3, "m": 40, "tol": 1e-8, "method": "decompose"},
                          {"d": 100_000, "r": 10, "order": 3, "m": 40, "tol": 1e-2}]},
    },
    "batch": {
        "quick": {"B": 64, "d": 50, "m": 50, "r": 5, "order": 3, "epochs": 2, "iters": 50, "repeats": 1,
                  "seq_trials": 16, "allocator_check": True, "workers": [2]},
        "full": {"B": 64, "d": 50, "m": 50, "r": 5, "order": 3, "epochs": 3, "iters": 100, "repeats": 3,
                 "allocator_check": True, "workers": [2]},
    },
    "gpu": {
        "quick": {"batch": (256, 100, 64), "large": (2048, 8192), "repeats": 3, "numpy_batch": 64},
        "full": {"batch": (1024, 100, 64), "large": (4096, 16384), "repeats": 5, "numpy_batch": 128},
    },
    "baselines": {
        "quick": {"d": 12, "r": 3, "seeds": [0, 1, 2], "repeats": 1,
                  "sweep": {"ds": [12, 24], "seeds": [0, 1], "repeats": 1, "als_iter_max": 300}},
        "full": {"d": 20, "r": 5, "seeds": list(range(10)), "repeats": 3,
                 "sweep": {"ds": [20, 40, 80], "seeds": [0, 1, 2, 3], "repeats": 3, "als_iter_max": 500}},
    },
    "build": {"quick": {}, "full": {}},
}

#: The issue's targets, as (description, comparison, value).
BENCH_TARGETS = {
    "step": ("step / floor at d=200, m=1000, r=10, order 3 (NumPy)", "<=", 1.2),
    "dense": ("dense / implicit step time at d=64, order 4, m=256", ">=", 200.0),
    "scale": ("time to recover d=10,000, r=10, order 3 on the CPU (s)", "<=", 600.0),
    "batch": ("batched / sequential throughput at B=64, d=50, m=50", ">=", 5.0),
    "gpu_batch": ("GPU / CPU throughput at B=1024, d=100, m=64", ">=", 100.0),
    "gpu_large": ("GPU step as a fraction of cuBLAS at d=4096, m=16384", ">=", 0.5),
    "baselines": ("decompose time to 1e-2 / CP-ALS's, where ALS succeeds (d=20, r=5; worst target type)", "<=", 3.0),
    "baselines_tight": ("decompose time to 1e-6 / CP-ALS's, where ALS succeeds (d=20, r=5; worst target type)", "<=",
                        3.0),
}


def run_benchmark(name, *, quick=True, backend="cupy", variants=None, batch_variants=None, **overrides):
    """Run one benchmark of the suite with its quick or full configuration.

    Parameters
    ----------
    name : {"step", "dense", "scale", "batch", "gpu", "baselines", "build"}
    quick : bool
        Use :data:`BENCH_SUITE` ``[name]["quick"]`` (else ``"full"``).
    backend : str
        GPU backend for ``"gpu"``.
    variants, batch_variants : dict, optional
        Extra step implementations for ``"step"`` (``name -> _Run subclass``) and
        context managers for ``"batch"`` (``name -> factory``).
    **overrides
        Replace configuration entries (the tests use tiny sizes this way).

    Returns
    -------
    (payload, markdown)
    """
    if name not in BENCH_SUITE:
        raise ValueError(f"name must be one of {sorted(BENCH_SUITE)}, got {name!r}")
    cfg = {**BENCH_SUITE[name]["quick" if quick else "full"], **overrides}
    t0 = time.perf_counter()
    machine = bench_machine_info()
    payload = {"benchmark": name, "mode": "quick" if quick else "full", "config": cfg, "machine": machine}
    if name == "step":
        payload["rows"] = bench_step_floor(cfg["sizes"], repeats=cfg.get("repeats", 5),
                                           min_time=cfg.get("min_time", 0.05), variants=variants)
    elif name == "dense":
        mc = cfg["memory"]
        payload["time"] = bench_implicit_dense(**cfg["time"], variants=variants)
        payload["memory"] = {k: bench_memory(k, mc[k], order=mc["order"], m=mc["m"], r=mc["r"])
                             for k in ("implicit", "dense")}
    elif name == "scale":
        payload["runs"] = [bench_scale(**rc) for rc in cfg["runs"]]
    elif name == "batch":
        payload["result"] = bench_batch(**cfg, variants=batch_variants)
    elif name == "gpu":
        payload["result"] = bench_gpu(backend=backend, **cfg)
    elif name == "baselines":
        payload["result"] = bench_baselines(**cfg)
    else:  # build
        payload["result"] = bench_build(**cfg)
    md = _report_md(name, payload)
    payload["machine"]["loadavg_after"] = bench_machine_info()["loadavg"]
    payload["wall_s"] = time.perf_counter() - t0
    hdr = (f"<!-- generated by benchmarks/run_all.py ({payload['mode']}); do not edit -->\n"
           f"**{name}** ({payload['mode']}), {machine['cpu']}, {machine['cores']} cores, {machine['blas']}, "
           f"BLAS threads {machine['blas_threads']}, load {machine['loadavg']}, "
           f"{machine['date']}\n\n")
    return payload, hdr + md


def _dense_md(tm, mem):
    variants = [k[:-len("_speedup")] for k in tm if k.endswith("_speedup")]
    head = ["d", "order", "m", "implicit step", "dense step", "dense / implicit", "grad. rel. diff"]
    row = [tm["d"], tm["order"], tm["m"], _fmt_t(tm["implicit_s"]), _fmt_t(tm["dense_s"]), f"{tm['speedup']:.0f}x",
           f"{tm['max_rel_diff_grad']:.1e}"]
    for v in variants:
        head += [f"{v} step", f"dense / {v}"]
        row += [_fmt_t(tm[f"{v}_s"]), f"{tm[f'{v}_speedup']:.0f}x"]
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


def _batch_md(res):
    rows = [["installed", _fmt_t(res["sequential_s"]), _fmt_t(res["batched_s"]), f"{res['throughput_ratio']:.2f}x",
             f"{res['max_abs_diff_rel_error']:.1e}"]]
    for k in res:
        if k.endswith("_throughput_ratio") and k != "throughput_ratio":
            v = k[: -len("_throughput_ratio")]
            rows.append([v, _fmt_t(res[f"{v}_sequential_s"]), _fmt_t(res[f"{v}_batched_s"]),
                         f"{res[k]:.2f}x", f"{res[f'{v}_max_abs_diff_rel_error']:.1e}"])
    for wr in res.get("workers", []):
        rows.append([f"installed, batch split over {wr['workers']} threads (workers={wr['workers']})",
                     _fmt_t(res["sequential_s"]), _fmt_t(wr["batched_s"]), f"{wr['throughput_ratio']:.2f}x",
                     f"{wr['max_abs_diff_rel_error']:.1e}"])
    mt = res.get("default_allocator")
    if mt:
        rows.append(["installed, default allocator (separate process)", _fmt_t(mt["sequential_s"]),
                     _fmt_t(mt["batched_s"]), f"{mt['throughput_ratio']:.2f}x", f"{mt['max_abs_diff_rel_error']:.1e}"])
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
            ["tiny step (launch overhead)", _fmt_t(res["launch_overhead_step_s"])],
            ["agreement with NumPy (max rel. diff of U)", f"{res['agreement_max_rel_diff']:.1e}"]]
    return _md_table(["measure", "value"], rows)


_METHOD_LABELS = {"algorithm1": "Algorithm 1 alone", "decompose": "decompose (Alg. 1 + LM)", "cp_als": "CP-ALS",
                  "power_method": "power method"}


def _fmt_ratio(x):
    return "n/a" if x is None else f"{x:.2f}x"


def _baselines_md(res):
    if res["status"] != "measured":
        return f"Not measured: {res['reason']}."
    rows = []
    for s in res["summary"]:
        split = (f"{_fmt_t(s['median_time_algorithm1_s'])} + {_fmt_t(s['median_time_refine_s'])}"
                 if s.get("median_time_algorithm1_s") is not None else "")
        if s["method"] == "cp_als":
            split = (f"{s['median_sweeps']:.0f} sweeps" if s["median_sweeps"] is not None else "(cap)") + (
                f" of {_fmt_t(s['median_sweep_s'])}")
        rows.append([s["kind"], f"{s['eps']:.0e}", _METHOD_LABELS.get(s["method"], s["method"]),
                     f"{s['successes']}/{s['n']}", _fmt_t(s["median_time_s"]), split,
                     f"{s['median_rel_error']:.1e}"])
    head = (f"d={res['d']}, r={res['r']}, order {res['order']}, Algorithm 1 and decompose with m={res['m']} "
            f"(iters per epoch: {'default rule' if res['iters'] is None else res['iters']}), "
            f"{len(res['seeds'])} seeds per target type, CP-ALS at most {res['als_iter_max']} sweeps. "
            + ("Times: one run each (no repeats)." if res["repeats"] == 1 else
               f"Times: the fastest of {res['repeats']} repeats of each successful run, in separate passes "
               f"(failures run once); repeats gave identical results: {'yes' if res['all_identical'] else 'NO'}."))
    out = [head, _md_table(["target", "accuracy", "method", "successes", "median time (successes)",
                            "split (Alg. 1 + LM) / ALS sweeps", "median rel. error"], rows)]
    rrows = [[x["kind"], f"{x['eps']:.0e}", _METHOD_LABELS.get(x["method"], x["method"]),
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
                               f"{_fmt_t(w['decompose_median_s'])} ({_fmt_t(w['decompose_median_algorithm1_s'])} + "
                               f"{_fmt_t(w['decompose_median_refine_s'])})", f"{w['als_successes']}/{w['n']}",
                               _fmt_t(w["als_median_s"]),
                               ("n/a" if w["als_median_sweeps"] is None else f"{w['als_median_sweeps']:.0f}")
                               + f" x {_fmt_t(w['als_sweep_s'])}",
                               f"{_fmt_ratio(w['median_ratio'])} ({w['n_paired']})"] for w in sw["rows"]]))
    return "\n\n".join(out)


def _scale_md(runs):
    rows = []
    for r in runs:
        dec = r.get("method") == "decompose"
        how = (f"decompose (handoff {r['handoff']:g})" if dec else
               "Algorithm 1" + (f" + {r['polish']} polish steps" if r["polish"] else ""))
        split = (f"{_fmt_t(r['elapsed_algorithm1_s'])} + {_fmt_t(r['elapsed_refine_s'])} ({r['lm_iters']} LM "
                 f"iterations)" if dec else "")
        rows.append([f"{r['d']:,}", r["r"], r["order"], r["m"], f"{r['dense_entries']:.0e}", how, f"{r['tol']:g}",
                     r["epochs_run"], _fmt_t(r["elapsed_s"]), split, f"{r['rel_error']:.2e}"])
    return _md_table(["d", "r", "order", "m", "dense entries", "method", "stop at", "epochs", "time",
                      "Alg. 1 + LM", "rel. error"], rows)


def _build_md(res):
    if res["status"] != "found":
        return f"No stored build timings ({res['source']} {res['status']}); run `make test`."
    rows = [[k, f"{v['seconds']:.1f} s", "ok" if v.get("ok") else "FAILED"] for k, v in res["stages"].items()]
    if res.get("total_seconds") is not None:
        rows.append(["total", f"{res['total_seconds']:.1f} s", ""])
    return f"`make test` of {res.get('started')} (commit {res.get('commit')})\n\n" + _md_table(
        ["stage", "time", "status"], rows)


def _report_md(name, payload):
    """The markdown body (tables and notes) of one stored benchmark payload."""
    if name == "step":
        rows = payload["rows"]
        variants = [k[:-len("_ratio")] for k in rows[0] if k.endswith("_ratio") and k != "ratio"] if rows else []
        return _step_floor_md(rows, variants)
    if name == "dense":
        return _dense_md(payload["time"], payload["memory"])
    if name == "scale":
        return _scale_md(payload["runs"])
    if name == "batch":
        return _batch_md(payload["result"])
    if name == "gpu":
        return _gpu_md(payload["result"])
    if name == "baselines":
        return _baselines_md(payload["result"])
    if name == "build":
        return _build_md(payload["result"])
    raise ValueError(f"name must be one of {BENCH_NAMES}, got {name!r}")


def _inline_html(text):
    import html
    import re

    t = html.escape(text, quote=False)
    t = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", t)
    t = re.sub(r"`(.+?)`", r"<code>\1</code>", t)
    return t


def _md_to_html(md):
    """HTML for the simple markdown this module writes (paragraphs and pipe tables)."""
    out = []
    for block in md.strip().split("\n\n"):
        lines = [ln for ln in block.strip().splitlines() if not ln.startswith("<!--")]
        if not lines:
            continue
        if all(ln.startswith("|") for ln in lines):
            cells = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines]
            head, body = cells[0], [c for c in cells[2:]]
            h = "".join(f"<th>{_inline_html(c)}</th>" for c in head)
            b = "".join("<tr>" + "".join(f"<td>{_inline_html(c)}</td>" for c in row) + "</tr>" for row in body)
            out.append(f'<table class="table tdcore-bench"><thead><tr>{h}</tr></thead><tbody>{b}</tbody></table>')
        else:
            out.append("<p>" + _inline_html(" ".join(lines)) + "</p>")
    return "\n".join(out)


def bench_table(results, name, *, fmt="html"):
    """The stored tables of one benchmark, regenerated from its payload.

    Parameters
    ----------
    results : dict
        ``name -> payload`` (see :func:`load_bench_results`).
    name : str
        One of :data:`BENCH_NAMES`.
    fmt : {"html", "markdown"}
        HTML for notebook output (tables render in every Markdown flavour that
        way), or the markdown written to ``results/``.
    """
    if fmt not in ("html", "markdown"):
        raise ValueError(f"fmt must be 'html' or 'markdown', got {fmt!r}")
    if name not in results:
        return f"No stored result for {name}." if fmt == "markdown" else f"<p>No stored result for {name}.</p>"
    md = _report_md(name, results[name])
    return md if fmt == "markdown" else _md_to_html(md)


#: How stored variants of the step are named in generated text.
VARIANT_LABELS = {"prepatch": "the code before the hot-path rewrite (commit 35073b1)",
                  "proposed": "the proposed patch"}


def _vlabel(v):
    return VARIANT_LABELS.get(v, v)


def _variants_of(d, suffix, own):
    """Names ``v`` with a key ``v + suffix`` in ``d`` (other than ``own``)."""
    return [k[: -len(suffix)] for k in d if k.endswith(suffix) and k != own and not k[: -len(suffix)].endswith("_")]


def _met(value, op, target):
    if value is None or isinstance(value, str) or not np.isfinite(value):
        return None
    return bool(value <= target) if op == "<=" else bool(value >= target)


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
            extra += "".join(f"; {_vlabel(v)}: {row[v + '_ratio']:.3g}" for v in _variants_of(row, "_ratio", "ratio"))
            add("step", row["ratio"], extra)
    de = results.get("dense")
    if de:
        tm = de["time"]
        add("dense", tm["speedup"], "".join(f"; {_vlabel(v)}: {tm[v + '_speedup']:.3g}"
                                            for v in _variants_of(tm, "_speedup", "speedup"))
            + f" (measured at d={tm['d']}, order {tm['order']}, m={tm['m']}; "
                                    f"memory slope in d: implicit {de['memory']['implicit']['slope']:.2f}, "
                                    f"dense {de['memory']['dense']['slope']:.2f})",
            at_target_size=(tm["d"], tm["order"], tm["m"]) == (64, 4, 256))
    sc = results.get("scale")
    if sc:
        run = next((r for r in sc["runs"] if r["d"] == 10_000 and not r["polish"]
                    and r.get("method", "algorithm1") == "algorithm1"), None)
        dec = next((r for r in sc["runs"] if r["d"] == 10_000 and r.get("method") == "decompose"), None)
        extra = (f"; decompose to {dec['tol']:g}: {_fmt_t(dec['elapsed_s'])} (Algorithm 1 "
                 f"{_fmt_t(dec['elapsed_algorithm1_s'])} + refinement {_fmt_t(dec['elapsed_refine_s'])}), final "
                 f"relative error {dec['rel_error']:.1e}" if dec else "")
        if run:
            add("scale", run["elapsed_s"], f" (final relative error {run['rel_error']:.2e} after "
                                           f"{run['epochs_run']} epochs, m={run['m']}{extra})")
    ba = results.get("batch")
    if ba:
        r = ba["result"]
        extra = "".join(f"; {_vlabel(v)}: {r[v + '_throughput_ratio']:.3g}"
                        for v in _variants_of(r, "_throughput_ratio", "throughput_ratio"))
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
    return out


# ---------------------------------------------------------------------------------------------
# reading stored results and drawing them (the Performance chapter)
# ---------------------------------------------------------------------------------------------
BENCH_NAMES = ("step", "dense", "scale", "batch", "gpu", "baselines", "build")


def load_bench_results(directory=None, *, prefer="full"):
    """Load every stored benchmark result, full suite first (``prefer="full"``), else quick.

    Returns
    -------
    dict
        ``name -> payload`` for the benchmarks found; each payload has its
        ``mode`` (``"full"`` or ``"quick"``).
    """
    if prefer not in ("full", "quick"):
        raise ValueError(f"prefer must be 'full' or 'quick', got {prefer!r}")
    d = Path(directory) if directory else bench_results_dir()
    order = ("bench_", "bench_quick_") if prefer == "full" else ("bench_quick_", "bench_")
    out = {}
    for name in BENCH_NAMES:
        for pre in order:
            p = d / f"{pre}{name}.json"
            if p.exists():
                out[name] = json.loads(p.read_text())
                break
    return out


def bench_machine_table(results, *, fmt="html"):
    """Where and when each stored result was measured.

    One line for the machine (or one per distinct machine) and a table with
    one row per benchmark: suite, load average before and after, date.
    """
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
    md = "\n\n".join(lines + [_md_table(head, rows)])
    return _md_to_html(md) if fmt == "html" else md


def bench_headline_markdown(results, *, fmt="markdown"):
    """The headline figures as a table (what, value, target, status), markdown or ``fmt="html"``."""
    rows = []
    for h in bench_headline(results):
        v = h["value"]
        val = v if isinstance(v, str) else f"{v:.3g}"
        status = "not measured" if isinstance(v, str) else ("met" if h["met"] else
                                                          "not assessed" if h["met"] is None else "NOT met")
        rows.append([h["what"], val, f"{h['op']} {h['target']:g}", status])
    md = _md_table(["measure", "value", "target", "status"], rows)
    return _md_to_html(md) if fmt == "html" else md


def plot_bench_step_floor(ax, payload):
    """Bars: step time / floor time per size (installed and any stored variant)."""
    rows = payload["rows"]
    labels = [f"d={r['d']}\nm={r['m']}\nl={r['order']}" + (f"\nB={r['B']}" if r["B"] > 1 else "") for r in rows]
    x = np.arange(len(rows))
    variants = _variants_of(rows[0], "_ratio", "ratio") if rows else []
    has_prop = bool(variants)
    w = 0.4 if has_prop else 0.6
    ax.bar(x - (w / 2 if has_prop else 0), [r["ratio"] for r in rows], w, label="installed step",
           color="#0072B2")
    if has_prop:
        v = variants[0]
        ax.bar(x + w / 2, [r[v + "_ratio"] for r in rows], w, label=_vlabel(v), color="#009E73")
    ax.axhline(1.0, color="#7F7F7F", lw=1)
    ax.axhline(1.2, color="#D55E00", lw=1, ls="--", label="target 1.2x (d=200, m=1000)")
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_yscale("log")
    ax.set_ylabel("step time / three products")
    ax.legend(fontsize=8)
    return ax


def plot_bench_memory(ax, payload):
    """Log-log: peak memory of one step against d, implicit vs dense, with ``d`` and ``d^l`` guides."""
    mem = payload["memory"]
    for kind, color in (("implicit", "#0072B2"), ("dense", "#D55E00")):
        rows = mem[kind]["rows"]
        ds = np.array([r["d"] for r in rows], float)
        pk = np.array([r["step_peak_bytes"] for r in rows], float) / 2**20
        ax.loglog(ds, pk, "o-", color=color, label=f"{kind} (slope {mem[kind]['slope']:.2f})")
    l = mem["dense"]["order"]
    dd = np.array([r["d"] for r in mem["dense"]["rows"]], float)
    ref = np.array([r["step_peak_bytes"] for r in mem["dense"]["rows"]], float)[-1] / 2**20
    ax.loglog(dd, ref * (dd / dd[-1]) ** l, ":", color="#7F7F7F", label=f"$\\propto d^{l}$")
    di = np.array([r["d"] for r in mem["implicit"]["rows"]], float)
    refi = np.array([r["step_peak_bytes"] for r in mem["implicit"]["rows"]], float)[-1] / 2**20
    ax.loglog(di, refi * (di / di[-1]), "--", color="#7F7F7F", label="$\\propto d$")
    ax.set_xlabel("dimension d")
    ax.set_ylabel("peak memory of one step (MiB)")
    ax.legend(fontsize=8)
    return ax


def plot_bench_scale(ax, payload):
    """Relative error against wall time (log-log) of the large-d runs.

    A ``decompose`` run is drawn as its Algorithm 1 epochs, then its
    Levenberg--Marquardt iterations (dashed, same colour).
    """
    for run in payload["runs"]:
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
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("wall time (s, log scale)")
    ax.set_ylabel("relative error")
    ax.legend(fontsize=8)
    return ax


_METHOD_COLORS = {"algorithm1": "#0072B2", "decompose": "#009E73", "cp_als": "#E69F00", "power_method": "#CC79A7"}


def plot_bench_baselines(ax, payload, eps=None, what="success"):
    """Per method and target type at one accuracy (default the loosest): success rate, or times.

    ``what="success"``: bars of the success rate over seeds.  ``what="time"``:
    the time to accuracy of every successful run (one dot per seed, log
    scale) with the median as a bar.
    """
    what = {"success": "success", "time": "time"}.get(what)
    if what is None:
        raise ValueError("what must be 'success' or 'time'")
    res = payload["result"]
    if res["status"] != "measured":
        ax.text(0.5, 0.5, "not measured: " + res["reason"], ha="center", va="center", transform=ax.transAxes)
        return ax
    eps = max(res["eps"]) if eps is None else eps
    summ = [s for s in res["summary"] if s["eps"] == eps]
    kinds = list(dict.fromkeys(s["kind"] for s in summ))
    methods = [mm for mm in BASELINE_METHODS if any(s["method"] == mm for s in summ)]
    w = 0.8 / max(len(methods), 1)
    for i, meth in enumerate(methods):
        x = np.arange(len(kinds)) + (i - (len(methods) - 1) / 2) * w
        lab, col = _METHOD_LABELS.get(meth, meth), _METHOD_COLORS.get(meth, "#7F7F7F")
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
        ax.legend(fontsize=7)
    return ax


def plot_bench_baselines_sweep(ax, payload, what="time", eps=None):
    """The size sweep of the baselines benchmark against d (log-log).

    ``what="time"``: median time to accuracy ``eps`` (default the tightest) of
    ``decompose`` (solid) and CP-ALS (dashed), one colour per target type,
    with ALS's time per sweep (dotted) and a ``d^l`` guide through its last
    point.  ``what="ratio"``: the median of the paired ratios decompose / ALS
    at every accuracy, with lines at 1 and 3.
    """
    if what not in ("time", "ratio"):
        raise ValueError(f"what must be 'time' or 'ratio', got {what!r}")
    res = payload["result"] if "result" in payload else payload
    sw = res.get("sweep") if res.get("status") == "measured" else None
    if not sw or sw["status"] != "measured":
        ax.text(0.5, 0.5, "no size sweep stored", ha="center", va="center", transform=ax.transAxes)
        return ax
    cols = {"separated": "#0072B2", "correlated": "#D55E00", "orthogonal": "#009E73"}
    e = min(sw["eps"]) if eps is None else eps
    for kind in sw["kinds"]:
        rows = [w for w in sw["rows"] if w["kind"] == kind and w["eps"] == e]
        ds = np.array([w["d"] for w in rows], float)
        c = cols.get(kind, "#7F7F7F")

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
            ax.loglog(dd, last["als_sweep_s"] * (dd / last["d"]) ** sw["order"], color="#7F7F7F", lw=0.8,
                      label=f"$\\propto d^{sw['order']}$")
        ax.set_ylabel(f"median time to {e:g} (s)")
    else:
        ax.axhline(1.0, color="#7F7F7F", lw=1)
        ax.axhline(3.0, color="#D55E00", lw=1, ls="--", label="3x (the issue's goal)")
        ax.set_ylabel("time decompose / CP-ALS (median)")
    ax.set_xlabel("dimension d")
    ax.set_xticks(sw["ds"], [str(x) for x in sw["ds"]])
    ax.minorticks_off()
    ax.legend(fontsize=7)
    return ax


def plot_bench_memory_model(ax=None, d=64, order=4, m=256, results=None):
    """Memory of one step as a function of d: the implicit cost model vs the dense ``d^l``.

    The implicit step holds a few ``d x m`` arrays and one ``m x m`` Gram matrix;
    the dense one at least two ``d^l`` arrays (model and residual).  Stored
    measurements (``results["dense"]``) are drawn on top when they match ``order``
    and ``m``.  Instant to draw (for the chapter's explorer).
    """
    import matplotlib.pyplot as plt

    ax = ax or plt.gca()
    ds = np.unique(np.geomspace(4, max(4 * d, 20_000), 60).astype(int))
    implicit = 8.0 * (6 * ds * m + 2 * m * m)
    dense = 8.0 * 2 * ds.astype(float) ** order
    ax.loglog(ds, implicit / 2**20, color="#0072B2", label="implicit model: 8 (6dm + 2m$^2$) bytes")
    ax.loglog(ds, dense / 2**20, color="#D55E00", label=f"dense model: 2 $d^{order}$ doubles")
    ax.axvline(d, color="#7F7F7F", lw=1, ls=":")
    ax.axhline(24 * 1024, color="#7F7F7F", lw=1, ls="--", label="24 GiB (this machine)")
    de = (results or {}).get("dense")
    if de and de["memory"]["dense"]["order"] == order and de["memory"]["dense"]["m"] == m:
        for kind, color in (("implicit", "#0072B2"), ("dense", "#D55E00")):
            rows = de["memory"][kind]["rows"]
            ax.loglog([r["d"] for r in rows], [r["step_peak_bytes"] / 2**20 for r in rows], "o", color=color,
                      ms=4, label=f"measured {kind}")
    i = 8.0 * (6 * d * m + 2 * m * m) / 2**20
    n = 8.0 * 2 * float(d) ** order / 2**20
    ax.set_title(f"d={d}, order {order}, m={m}: implicit ~{i:.3g} MiB, dense ~{n:.3g} MiB", fontsize=9)
    ax.set_xlabel("dimension d")
    ax.set_ylabel("memory of one step (MiB)")
    ax.legend(fontsize=7)
    return ax


def _verdict(value, key):
    _, op, target = BENCH_TARGETS[key]
    met = _met(value, op, target)
    return f"target {op} {target:g}: **{'met' if met else 'not met'}**"


def _row(rows, d, m, order, B=1):
    return next((r for r in rows if (r["d"], r["m"], r["order"], r["B"]) == (d, m, order, B)), None)


def _sup(n):
    return str(n).translate(str.maketrans("0123456789", "\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079"))


def _count(x):
    return f"{x['successes']}/{x['n']}"


def _plural(n, word):
    return f"{n} {word}" + ("" if n == 1 else "s")


def _repeats_text(n):
    return "one run each (no repeats)" if n == 1 else f"the fastest of {n} repeats (in separate passes)"


def _baselines_story(r):
    lo, hi = max(r["eps"]), min(r["eps"])
    out = [f"On d = {r['d']}, r = {r['r']}, order {r['order']} targets, {len(r['seeds'])} seeds per type, "
           f"Algorithm 1 and `decompose` with m = {r['m']}; each time of a successful run is "
           f"{_repeats_text(r['repeats'])} of a deterministic run"
           + ("" if r["repeats"] == 1 else
              f" (the repeats gave {'identical' if r['all_identical'] else 'DIFFERENT'} results)")
           + ". Success counts are runs that reached the accuracy:"]
    at_size = (r["d"], r["r"]) == (20, 5)

    def verdict(v, key):
        return _verdict(v, key) if at_size else "not the target size"

    for kind in r["kinds"]:
        get = {(s["method"], s["eps"]): s for s in r["summary"] if s["kind"] == kind}
        rat = {(x["method"], x["eps"]): x for x in r["ratios"] if x["kind"] == kind}

        def one(meth, e):
            s = get.get((meth, e))
            if s is None:
                return None
            t = f" (median {_fmt_t(s['median_time_s'])})" if s["median_time_s"] else ""
            return f"{_METHOD_LABELS[meth]} {_count(s)}{t}"

        parts = []
        for e in (lo, hi):
            items = [x for x in (one(mm, e) for mm in BASELINE_METHODS) if x]
            parts.append(f"to {e:g}: " + ", ".join(items))
        s = f"- *{kind}*: " + "; ".join(parts) + "."
        dec = get.get(("decompose", lo))
        if dec and dec.get("median_time_algorithm1_s") is not None:
            d6 = get.get(("decompose", hi))
            s += (f" Of decompose's median time to {lo:g}, Algorithm 1 takes {_fmt_t(dec['median_time_algorithm1_s'])} "
                  f"and the refinement {_fmt_t(dec['median_time_refine_s'])}"
                  + (f" (to {hi:g}: {_fmt_t(d6['median_time_algorithm1_s'])} and "
                     f"{_fmt_t(d6['median_time_refine_s'])})" if d6 and d6.get("median_time_refine_s") else "")
                  + ".")
        x1, x6 = rat.get(("decompose", lo)), rat.get(("decompose", hi))
        if x1 and x1["assessed"]:
            s += (f" On the {_plural(x1['n_seeds'], 'seed')} where ALS succeeds, decompose takes a median "
                  f"{x1['median_ratio']:.2f}x ALS's time to {lo:g} (ratio of medians {x1['ratio_of_medians']:.2f}; "
                  f"{verdict(x1['median_ratio'], 'baselines')})")
            if x6 and x6["assessed"]:
                s += (f" and {x6['median_ratio']:.2f}x to {hi:g} (ratio of medians {x6['ratio_of_medians']:.2f}, "
                      f"{_plural(x6['n_seeds'], 'seed')}; {verdict(x6['median_ratio'], 'baselines_tight')})")
            s += "."
        elif x1:
            s += (f" ALS succeeds on only {x1['n_als_success']} of {x1['n_seeds_total']} seeds, too few to judge a "
                  f"time ratio (at least {r['min_seeds']} needed)")
            if x1["median_ratio"] is not None:
                s += (f"; there decompose takes {x1['median_ratio']:.2f}x ALS's time to {lo:g}"
                      + (f" and {x6['median_ratio']:.2f}x to {hi:g}" if x6 and x6["median_ratio"] is not None
                         else ""))
            s += "."
        a1 = rat.get(("algorithm1", lo))
        if a1 and a1["median_ratio"] is not None:
            s += (f" Algorithm 1 alone takes {a1['median_ratio']:.2f}x ALS's time to {lo:g} on "
                  + ("that seed." if a1["n_seeds"] == 1 else f"those {a1['n_seeds']} seeds."))
        out.append(s)
    return "\n".join([out[0], ""] + out[1:]) if len(out) > 1 else out[0]


def _baselines_sweep_story(sw):
    out = []
    for e in sw["eps"]:
        for kind in sw["kinds"]:
            rows = [w for w in sw["rows"] if w["kind"] == kind and w["eps"] == e]
            if not rows:
                continue
            first, last = rows[0], rows[-1]
            s = (f"- *{kind}*, to {e:g}: from d = {first['d']} to d = {last['d']} one ALS sweep goes from "
                 f"{_fmt_t(first['als_sweep_s'])} to {_fmt_t(last['als_sweep_s'])} "
                 f"({last['als_sweep_s'] / first['als_sweep_s']:.0f}x, while d{_sup(sw['order'])} grows "
                 f"{(last['d'] / first['d']) ** sw['order']:.0f}x); ALS's median time to accuracy goes from "
                 f"{_fmt_t(first['als_median_s'])} to {_fmt_t(last['als_median_s'])} "
                 f"(successes {', '.join(str(w['als_successes']) for w in rows)} of {first['n']} per d) and "
                 f"decompose's from {_fmt_t(first['decompose_median_s'])} to {_fmt_t(last['decompose_median_s'])} "
                 f"(successes {', '.join(str(w['decompose_successes']) for w in rows)}). The median time ratio "
                 f"decompose / ALS is "
                 + ", ".join(f"{_fmt_ratio(w['median_ratio'])} at d = {w['d']} ({_plural(w['n_paired'], 'seed')})"
                             for w in rows) + ".")
            out.append(s)
    return (f"Size sweep (r = {sw['r']}, m = {sw['m']}, {len(sw['seeds'])} seeds per d and target type, CP-ALS at "
            f"most {sw['als_iter_max']} sweeps, {_repeats_text(sw['repeats'])}):\n\n" + "\n".join(out))


def bench_story(results, name):
    """A paragraph of markdown describing one stored benchmark, every number taken from ``results``.

    The Performance chapter displays these instead of typing numbers, so the
    text always matches the stored measurements (including whether a target
    was met).  ``name`` is one of :data:`BENCH_NAMES`, or ``"baselines_sweep"``
    for the size sweep stored with the baselines benchmark.
    """
    if name not in BENCH_NAMES + ("baselines_sweep",):
        raise ValueError(f"name must be one of {BENCH_NAMES + ('baselines_sweep',)}, got {name!r}")
    p = results.get("baselines" if name == "baselines_sweep" else name)
    if p is None:
        return f"*No stored result for `{name}`: run `python benchmarks/run_all.py --full`.*"
    if name == "step":
        rows = p["rows"]
        rat = [r["ratio"] for r in rows]
        out = [f"Over the {len(rows)} sizes measured, one iteration of the installed code takes between "
               f"{min(rat):.2f}x and {max(rat):.2f}x the time of its three matrix products."]
        big = _row(rows, 200, 1000, 3)
        if big:
            s = (f"At d = 200, m = 1000, r = 10, order 3, one iteration of the installed code takes "
                 f"{_fmt_t(big['step_s'])} against {_fmt_t(big['floor_s'])} for its three products alone: "
                 f"{big['ratio']:.2f}x the floor ({_verdict(big['ratio'], 'step')})"
                 + (f"; the fastest step over the fastest floor sample gives {big['ratio_of_minima']:.2f}x."
                    if "ratio_of_minima" in big else "."))
            for v in _variants_of(big, "_ratio", "ratio"):
                s += (f" For comparison, {_vlabel(v)} takes {_fmt_t(big[v + '_s'])}, {big[v + '_ratio']:.2f}x the "
                      f"floor.")
            out.append(s)
        small, smallb = _row(rows, 10, 10, 3), _row(rows, 10, 10, 3, 64)
        if small:
            s = (f"At d = m = 10 the three products take {_fmt_t(small['floor_s'])} but an iteration "
                 f"{_fmt_t(small['step_s'])} ({small['ratio']:.1f}x): at this size every NumPy call costs about "
                 f"the same microsecond or two whatever its size, and an iteration makes a few dozen of them.")
            if smallb:
                s += (f" Batching is the remedy: with B = 64 trials in one run the same iteration costs "
                      f"{_fmt_t(smallb['per_trial_step_s'])} per trial, "
                      f"{small['step_s'] / smallb['per_trial_step_s']:.0f}x less than alone.")
            out.append(s)
        return "\n\n".join(out)
    if name == "dense":
        tm, mem = p["time"], p["memory"]
        imp, den = mem["implicit"]["rows"], mem["dense"]["rows"]
        l = mem["dense"]["order"]
        dmax = imp[-1]["d"]
        dense_need = 8.0 * float(dmax) ** l
        verdict = _verdict(tm["speedup"], "dense") if (tm["d"], tm["m"]) == (64, 256) else "not the target size"
        return (f"At d = {tm['d']}, order {tm['order']}, m = {tm['m']} the dense step takes {_fmt_t(tm['dense_s'])} "
                f"and a full implicit iteration {_fmt_t(tm['implicit_s'])}: the implicit code is "
                f"{tm['speedup']:.0f}x faster ({verdict})."
                + "".join(f" With {_vlabel(v)} the implicit iteration takes {_fmt_t(tm[v + '_s'])}, "
                          f"{tm[v + '_speedup']:.0f}x faster than the dense step."
                          for v in _variants_of(tm, "_speedup", "speedup"))
                + f" Both compute the same gradient (largest relative difference {tm['max_rel_diff_grad']:.1e}).\n\n"
                f"Peak memory of one step, measured in a fresh process per size: the dense step's grows with "
                f"log-log slope {mem['dense']['slope']:.2f} in d (d{_sup(l)} has slope {l}), reaching "
                f"{den[-1]['step_peak_bytes'] / 2**20:.0f} MiB at d = {den[-1]['d']}; the implicit step's grows "
                f"with slope {mem['implicit']['slope']:.2f} and needs {imp[-1]['step_peak_bytes'] / 2**20:.1f} MiB at "
                f"d = {dmax:,}, where one dense d{_sup(l)} array alone would need {dense_need / 2**40:.3g} TiB.")
    if name == "scale":
        out = []
        for run in p["runs"]:
            s = (f"d = {run['d']:,}, r = {run['r']}, order {run['order']} (d{_sup(run['order'])} = "
                 f"{run['dense_entries']:.0e} entries, {8 * run['dense_entries'] / 2**40:.3g} TiB as a dense "
                 f"array), m = {run['m']}, ")
            if run.get("method") == "decompose":
                s += (f"`decompose` asked for {run['tol']:g}: Algorithm 1 ran for "
                      f"{_plural(run['epochs_run'], 'epoch')} and {_fmt_t(run['elapsed_algorithm1_s'])}, until its "
                      f"relative error was {run['rel_error_handoff']:.2f} (the handoff is {run['handoff']:g}), then "
                      f"{run['lm_iters']} Levenberg–Marquardt iterations took {_fmt_t(run['elapsed_refine_s'])}: "
                      f"relative error {run['rel_error']:.1e} after {_fmt_t(run['elapsed_s'])} in all, with "
                      f"{run['m_final']} of the {run['m']} components left.")
            elif run["polish"]:
                s += (f"stopping at relative error {run['tol']:g}, with {run['polish']} polish steps afterwards: "
                      f"relative error {run['rel_error']:.2e} after {_fmt_t(run['elapsed_s'])} in all.")
            else:
                s += (f"stopping at relative error {run['tol']:g}: relative error {run['rel_error']:.2e} after "
                      f"{run['epochs_run']} epochs and {_fmt_t(run['elapsed_s'])} "
                      f"({_verdict(run['elapsed_s'], 'scale')}, with the default rule's δ and η).")
            out.append("- " + s)
        return "\n".join(out)
    if name == "batch":
        r = p["result"]
        at = (r["B"], r["d"], r["m"]) == (64, 50, 50)
        s = (f"{r['B']} sequential runs take {_fmt_t(r['sequential_s'])}"
             + (" (extrapolated from fewer runs)" if r["sequential_extrapolated"] else "")
             + f", one batched run of the same {r['B']} seeds {_fmt_t(r['batched_s'])}: a throughput ratio of "
             f"{r['throughput_ratio']:.2f}x "
             f"({_verdict(r['throughput_ratio'], 'batch') if at else 'not the target size'}).")
        for v in _variants_of(r, "_throughput_ratio", "throughput_ratio"):
            s += (f" With {_vlabel(v)}: {_fmt_t(r[v + '_sequential_s'])} against {_fmt_t(r[v + '_batched_s'])}, "
                  f"{r[v + '_throughput_ratio']:.2f}x.")
        for wr in r.get("workers", []):
            s += (f" Split over {wr['workers']} threads (`workers={wr['workers']}`, one core each, BLAS still "
                  f"single-threaded), the batch takes {_fmt_t(wr['batched_s'])}: {wr['throughput_ratio']:.2f}x the "
                  f"sequential runs on one core; the target is judged on the one-core ratio above.")
        mt = r.get("default_allocator")
        if mt:
            s += (f" In a fresh process with the allocator's default settings the same measurement gives "
                  f"{_fmt_t(mt['sequential_s'])} against {_fmt_t(mt['batched_s'])}: {mt['throughput_ratio']:.2f}x.")
        s += (f" Trial b of the batch reproduces the single run with seed b: the largest difference in final "
              f"relative error is {r['max_abs_diff_rel_error']:.1e}.")
        return s
    if name == "gpu":
        r = p["result"]
        if r["status"] != "measured":
            return (f"GPU figures: **{GPU_NOT_MEASURED}**. The stored run says: {r['reason']}. The benchmark "
                    "(`python benchmarks/bench_gpu.py --full --backend cupy`) measures them on a machine with a "
                    "CUDA GPU.")
        return (f"Batched sweep: {r['batched_throughput_ratio']:.0f}x the CPU's throughput "
                f"({_verdict(r['batched_throughput_ratio'], 'gpu_batch')}); large run: "
                f"{r['large_fraction_of_cublas']:.0%} of the cuBLAS product rate "
                f"({_verdict(r['large_fraction_of_cublas'], 'gpu_large')}); float32 is "
                f"{r['float32_speedup']:.1f}x faster than float64; NumPy and CuPy agree to "
                f"{r['agreement_max_rel_diff']:.1e}.")
    if name == "baselines":
        r = p["result"]
        if r["status"] != "measured":
            return f"*Not measured: {r['reason']}.*"
        return _baselines_story(r)
    if name == "baselines_sweep":
        r = p["result"]
        sw = r.get("sweep") if r["status"] == "measured" else None
        if not sw or sw["status"] != "measured":
            return "*No size sweep stored: run `python benchmarks/bench_baselines.py --full`.*"
        return _baselines_sweep_story(sw)
    if name == "build":
        r = p["result"]
        if r["status"] != "found":
            return "*No build timings stored yet (`make test` writes them).*"
        parts = [f"{k} {v['seconds']:.0f} s" + ("" if v.get("ok", True) else " (failed)")
                 for k, v in r["stages"].items()]
        if not parts:
            return f"The latest `make test` (started {r.get('started')}) has recorded no stage yet."
        return (f"The latest stored `make test` (started {r.get('started')}, commit {r.get('commit')}), stages "
                f"recorded so far: " + ", ".join(parts)
                + (f"; {r['total_seconds']:.0f} s in all." if r.get("total_seconds") else "."))
    raise ValueError(f"name must be one of {BENCH_NAMES}, got {name!r}")
