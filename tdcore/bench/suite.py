"""The benchmark suite: every measurement of the Performance chapter, and its configurations.

The benchmarks (numbered as in the chapter):

1. :func:`bench_step_floor` -- one Algorithm 1 iteration vs its three bare matrix products;
2. :func:`bench_implicit_dense` and :func:`bench_memory` -- implicit step vs a dense einsum step;
3. :func:`bench_scale` -- recovery of a d = 10,000 target on the CPU;
4. :func:`bench_batch` -- ``algorithm1_batch`` vs a loop of ``algorithm1``;
5. :func:`bench_gpu` -- CuPy throughput, fraction of cuBLAS, float32, agreement (needs a GPU);
6. :func:`tdcore.bench.bench_baselines` -- time to accuracy against CP-ALS and the power method
   (module :mod:`tdcore.bench.baselines`);
7. :func:`bench_build` -- book build / nbval / unit-test times.

:data:`BENCH_SUITE` holds the quick (``make bench``) and full configurations,
:func:`run_benchmark` runs one of them and returns ``(payload, markdown)``.
Memory is measured in a fresh subprocess per configuration (``tracemalloc``
peak of the step itself, and the process's peak RSS).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from .._algorithm1.run import _Run

from .._stats import fit_loglog_slope
from .._validate import check_int
from .baselines import bench_baselines
from .timing import bench_machine_info, bench_paired_ratio, time_interleaved

__all__ = [
    "GPU_NOT_MEASURED",
    "bench_run_state",
    "bench_step_callable",
    "bench_step_floor",
    "StackedStepRun",
    "bench_to_dense",
    "dense_gradient_step",
    "bench_implicit_dense",
    "bench_memory",
    "bench_scale",
    "bench_batch",
    "bench_gpu_status",
    "bench_gpu",
    "bench_build",
    "BENCH_SUITE",
    "BENCH_TARGETS",
    "run_benchmark",
]

#: Text recorded for GPU figures on a machine without a usable CUDA device.
GPU_NOT_MEASURED = "not measured (no GPU lent)"

# ---------------------------------------------------------------------------------------------
# 1. one step vs its floor
# ---------------------------------------------------------------------------------------------
class StackedStepRun(_Run):
    """``_Run`` without the one-trial NumPy path: one trial through the batched (stacked) code.

    A step variant of :func:`bench_step_floor` (the stored step benchmark times it beside the installed step).
    """

    @property
    def _factored(self):
        return False


def bench_run_state(d, m, r, order, *, B=1, seed=0, cls=None, backend="numpy", dtype=np.float64, **params):
    """An initialised Algorithm 1 state machine (``_Run``) for timing single steps.

    The target is ``random_target(d, r, order, seed=seed)`` shared by ``B`` trials
    (seeds ``seed .. seed + B - 1``); parameters follow :func:`default_params`
    unless given in ``params`` (``epochs``, ``iters``, ``delta``, ``eta``, ``lam``).
    """
    from .. import _algorithm1 as a1
    from .._backend import get_backend
    from .._tensor import random_target
    from .._validate import as_rng, check_dtype

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
    from .._backend import get_backend

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
    from .._tensor import random_target

    rng = np.random.default_rng(seed + 1)
    T = random_target(d, r, order, seed=seed)
    U = rng.standard_normal((d, m)) / math.sqrt(d)
    s = rng.standard_normal(m) / m
    return T, U, s


def bench_to_dense(sizes=((200, 3, 10), (60, 4, 10)), *, repeats=7, min_time=0.05):
    """``SymCP.to_dense`` against the one matrix product that writes the same tensor.

    For each ``(d, order, m)``: a random SymCP with ``m`` components; the
    contender is that product alone, ``K @ (diag(w) F^T)`` with the Khatri--Rao
    block ``K`` (``d^(l-1) x m``) built beforehand; like ``to_dense`` it
    allocates its result (writing into a reused array instead would also save
    the first touch of fresh pages, which a function returning a new array
    cannot).  Both are timed in alternation in one process (:func:`time_interleaved`).

    Returns
    -------
    list of dict
        Per size: ``to_dense_s``, ``product_s`` (medians), ``ratio`` (median of
        the paired ratios), ``ratio_of_minima`` and ``max_abs_diff`` (the two
        results against each other, relative to the largest entry).
    """
    from .._tensor import random_target

    rows = []
    for d, order, m in sizes:
        T = random_target(int(d), int(m), int(order), seed=0)
        T = type(T)(T.weights * np.linspace(0.5, 1.5, T.m), T.factors, T.order)
        F, w = T.factors, T.weights
        K = F
        for _ in range(order - 2):
            K = (K[:, None, :] * F[None, :, :]).reshape(-1, F.shape[1])
        W = w[:, None] * F.T
        t = time_interleaved({"to_dense": T.to_dense, "product": lambda: K @ W}, repeats=repeats, min_time=min_time)
        ref = T.to_dense().reshape(K.shape[0], d)
        out = K @ W
        sm = t["_samples"]
        rows.append({"d": int(d), "order": int(order), "m": int(m), "entries": float(d) ** order,
                     "to_dense_s": t["to_dense"], "product_s": t["product"],
                     "ratio": bench_paired_ratio(t, "to_dense", "product"),
                     "ratio_of_minima": min(sm["to_dense"]) / min(sm["product"]),
                     "max_abs_diff": float(np.max(np.abs(ref - out)) / np.max(np.abs(out)))})
    return rows


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
    from .._objective import fit_terms, make_target_operator

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
        code = (f"from tdcore.bench.suite import _mem_child; _mem_child({kind!r}, {int(d)}, {int(order)}, {int(m)}, "
                f"{int(r)})")
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout, env=env)
        if out.returncode != 0:
            raise RuntimeError(f"memory probe {kind} d={d} failed:\n{out.stderr[-2000:]}")
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    slope = float("nan")
    if len(rows) >= 2:  # the largest sizes: asymptotic growth
        fit = fit_loglog_slope([rw["d"] for rw in rows][-3:], [max(rw["step_peak_bytes"], 1) for rw in rows][-3:],
                               min_points=2)
        slope = float(fit.slope)
    return {"kind": kind, "order": order, "m": m, "r": r, "rows": rows, "slope": slope}



# ---------------------------------------------------------------------------------------------
# 3. scale
# ---------------------------------------------------------------------------------------------
def bench_scale(d=10_000, r=10, order=3, m=40, *, epochs=None, iters=None, tol=1e-2, polish=0, seed=0,
                budget_s=600.0, method="algorithm1", handoff=None, measure_memory=False):
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
    measure_memory : bool
        Trace the run's allocations (``tracemalloc``, which sees NumPy's
        buffers): ``peak_traced_bytes`` is the largest amount held at once
        during the run, beside ``factor_bytes`` (one ``d x m`` float64 array,
        the size of ``U``) and the process's peak resident size.

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
    from .._algorithm1 import algorithm1
    from .._refine import DEFAULT_HANDOFF, decompose, precise_rel_error
    from .._tensor import random_target
    from .._validate import check_choice

    method = check_choice("method", method, ("algorithm1", "decompose"))
    if method == "decompose" and polish:
        raise ValueError(f"polish must be 0 with method='decompose' (the refinement replaces it), got {polish}")
    T = random_target(d, r, order, seed=seed)
    out = {"method": method, "d": d, "r": r, "order": order, "m": m, "tol": tol, "polish": polish,
           "dense_entries": float(d) ** order, "budget_s": budget_s}
    if measure_memory:
        import tracemalloc

        tracemalloc.start()
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
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
    if measure_memory:
        import resource

        peak = tracemalloc.get_traced_memory()[1] - base
        tracemalloc.stop()
        out.update(peak_traced_bytes=int(peak), factor_bytes=8 * d * m,
                   process_peak_rss_bytes=int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024)
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

    from .._algorithm1 import algorithm1, algorithm1_batch
    from .._tensor import random_target

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
        code = (f"import json; from tdcore.bench.suite import bench_batch; from tdcore._util import jsonable; "
                f"res = bench_batch(**{kw!r}); print(json.dumps(jsonable(res)))")
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
    from .._backend import _probe_cupy

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
    from .._algorithm1 import algorithm1
    from .._backend import get_backend
    from .._tensor import random_target

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
# 7. build budget
# ---------------------------------------------------------------------------------------------
def bench_build(*, run_unit_tests=False, root=None):
    """The latest ``make test`` stage timings (``_build/timings.json``), optionally timing the unit tests now.

    Parameters
    ----------
    run_unit_tests : bool
        Also run ``pytest tests`` in ``root`` now and time it.
    root : str or Path, optional
        The repository checkout (default: the current directory).

    Returns
    -------
    dict
        ``status`` (``"found"`` or ``"missing"``), ``stages`` (name -> seconds, ok),
        ``total_seconds``, ``started``, ``commit`` as written by ``tests/timings.py``,
        and ``unit_tests_now_s`` when ``run_unit_tests`` is true.
    """
    root = Path.cwd() if root is None else Path(root)
    if not root.is_dir():
        raise NotADirectoryError(f"root must be an existing folder (a checkout of tdcore), got {str(root)!r}")
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
# the suite: configurations and targets
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
                             "r": 8},
                  "to_dense": {"sizes": [(100, 3, 10)], "repeats": 5}},
        "full": {"time": {"d": 64, "order": 4, "m": 256, "r": 8, "repeats": 5},
                 "memory": {"implicit": [64, 256, 1024, 4096, 16384], "dense": [8, 16, 24, 32, 48, 64], "order": 4,
                            "m": 256, "r": 8},
                 "to_dense": {"sizes": [(200, 3, 10), (100, 3, 50), (60, 4, 10)], "repeats": 11}},
    },
    "scale": {
        "quick": {"runs": [{"d": 10_000, "r": 10, "order": 3, "m": 40, "tol": 1e-2},
                           {"d": 10_000, "r": 10, "order": 3, "m": 40, "tol": 1e-8, "method": "decompose"}]},
        "full": {"runs": [{"d": 10_000, "r": 10, "order": 3, "m": 40, "tol": 1e-2},
                          {"d": 10_000, "r": 10, "order": 3, "m": 40, "tol": 1e-2, "polish": 300},
                          {"d": 10_000, "r": 10, "order": 3, "m": 40, "tol": 1e-8, "method": "decompose"},
                          {"d": 100_000, "r": 10, "order": 3, "m": 40, "tol": 1e-2},
                          {"d": 1_000_000, "r": 10, "order": 3, "m": 40, "tol": 1e-2, "method": "decompose",
                           "measure_memory": True}]},
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
    "accuracy": {
        "quick": {"cases": [("random", "random", 10, 4, 3), ("orthogonal", "orthogonal", 30, 5, 3)],
                  "seeds": [0, 1, 2], "repeats": 1, "vs_d": {"ds": [8, 16, 32], "seeds": [0, 1], "repeats": 1}},
        "full": {"seeds": list(range(5)), "repeats": 3,
                 "vs_d": {"ds": [8, 16, 32, 64, 100], "seeds": list(range(5)), "repeats": 3}},
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
    "to_dense": ("SymCP.to_dense / the one matrix product writing the same tensor (d=200, order 3, m=10)", "<=",
                 1.2),
    "accuracy": ("decompose time to 1e-6 / TensorLy CP-ALS at its best init, worst case of the time-to-accuracy "
                 "table", "<=", 1.0),
}


def run_benchmark(name, *, quick=True, backend="cupy", variants=None, batch_variants=None, **overrides):
    """Run one benchmark of the suite with its quick or full configuration.

    Parameters
    ----------
    name : {"step", "dense", "scale", "batch", "gpu", "baselines", "accuracy", "build"}
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
    unknown = set(overrides) - set(_CONFIG_KEYS[name])
    if unknown:
        raise TypeError(f"run_benchmark({name!r}) got unknown configuration entries {sorted(unknown)}; allowed: "
                        f"{sorted(_CONFIG_KEYS[name])}")
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
        if "to_dense" in cfg:
            payload["to_dense"] = bench_to_dense(**cfg["to_dense"])
    elif name == "scale":
        payload["runs"] = [bench_scale(**rc) for rc in cfg["runs"]]
    elif name == "batch":
        payload["result"] = bench_batch(**cfg, variants=batch_variants)
    elif name == "gpu":
        payload["result"] = bench_gpu(backend=backend, **cfg)
    elif name == "baselines":
        payload["result"] = bench_baselines(**cfg)
    elif name == "accuracy":
        from .accuracy import bench_time_to_accuracy, bench_time_to_accuracy_vs_d

        kw = {k: v for k, v in cfg.items() if k != "vs_d"}
        if "cases" in kw:
            kw["cases"] = [tuple(c) for c in kw["cases"]]
        payload["result"] = bench_time_to_accuracy(**kw)
        if cfg.get("vs_d"):
            payload["vs_d"] = bench_time_to_accuracy_vs_d(**cfg["vs_d"])
    else:  # build
        payload["result"] = bench_build(**cfg)
    from .report import report_markdown

    md = report_markdown(name, payload)
    payload["machine"]["loadavg_after"] = bench_machine_info()["loadavg"]
    payload["wall_s"] = time.perf_counter() - t0
    hdr = (f"<!-- generated by benchmarks/run_all.py ({payload['mode']}); do not edit -->\n"
           f"**{name}** ({payload['mode']}), {machine['cpu']}, {machine['cores']} cores, {machine['blas']}, "
           f"BLAS threads {machine['blas_threads']}, load {machine['loadavg']}, "
           f"{machine['date']}\n\n")
    return payload, hdr + md


#: Configuration entries each benchmark accepts (``run_benchmark(name, **overrides)``).
_CONFIG_KEYS = {
    "step": ("sizes", "repeats", "min_time"),
    "dense": ("time", "memory", "to_dense"),
    "scale": ("runs",),
    "batch": ("B", "d", "m", "r", "order", "epochs", "iters", "repeats", "seq_trials", "allocator_check", "timeout",
              "workers"),
    "gpu": ("batch", "large", "r", "order", "repeats", "numpy_batch"),
    "baselines": ("kinds", "d", "r", "order", "m", "seeds", "eps", "iters", "handoff", "als_iter_max", "repeats",
                  "min_seeds", "sweep"),
    "accuracy": ("cases", "seeds", "eps", "m_factor", "inits", "repeats", "als_iter_max", "vs_d"),
    "build": ("run_unit_tests", "root"),
}
