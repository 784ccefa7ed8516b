"""Command line: ``python -m tdcore info`` and ``python -m tdcore run ...``."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def _info(args):
    from . import __version__
    from ._backend import backend_info

    info = backend_info()
    print(f"tdcore {__version__}")
    print(f"numpy {info['numpy']}")
    print(f"TDCORE_BACKEND: {info['env'] or '(not set)'}")
    print(f"cupy usable: {info['cupy_usable']} - {info['cupy_reason']}")
    for k, v in info["cupy"].items():
        print(f"  {k}: {v}")
    print(f"backend='auto' resolves to: {info['auto']}")
    if args.json:
        print(json.dumps(info))
    return 0


def _out_path(out):
    """The file ``--out`` names: ``.npz`` appended when missing (the name that is written and printed)."""
    import os

    if not out or out.endswith(("/", os.sep)) or os.path.isdir(out):
        raise ValueError(f"--out={out!r} is a directory, not a file; name the .npz file to write")
    return out if out.endswith(".npz") else out + ".npz"


def _save_result(path, arrays):
    """Write the result atomically (temporary file, fsync, rename) with SIGINT held off meanwhile.

    A kill during the write leaves any previous file intact; a Ctrl-C arriving
    during it is delivered once the file is complete.
    """
    import signal

    from ._validate import atomic_write

    blocked = hasattr(signal, "pthread_sigmask")
    if blocked:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        atomic_write(path, lambda fh: np.savez(fh, **arrays))
    finally:
        if blocked:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _run(args):
    import os

    from ._algorithm1 import DivergenceError, algorithm1, estimate_memory
    from ._tensor import random_target
    from ._validate import check_float, check_int, check_memory, check_path

    check_float("refine", args.refine, positive=True, allow_none=True)
    # everything that can be refused is refused before any work: sizes, memory, paths
    d = check_int("--d", args.d, minimum=1)
    r = check_int("--r", args.r, minimum=1)
    m = check_int("--m", args.m, minimum=1)
    check_int("--order", args.order, minimum=2)
    check_memory("python -m tdcore run", estimate_memory(d, m, r=r, order=args.order, dtype=args.dtype)
                 + 4 * 8 * d * r, detail=f"d={d}, r={r}, m={m}: U is d x m, the Gram matrix m x m")
    out = None
    if args.out is not None:
        out = check_path("--out", _out_path(args.out))
        if os.path.exists(out) and not args.force:
            raise ValueError(f"--out {out!r} exists; pass --force to overwrite it")
    if args.checkpoint is not None:
        ck = check_path("--checkpoint", args.checkpoint)
        if out is not None and os.path.abspath(ck) == os.path.abspath(out):
            raise ValueError(f"--checkpoint and --out name the same file {out!r}; the result would overwrite the "
                             "checkpoint (or the reverse)")
    target = random_target(d, r, args.order, orthogonal=args.orthogonal, seed=args.target_seed
                           if args.target_seed is not None else args.seed)
    t0 = time.perf_counter()
    try:
        res = algorithm1(target, m, epochs=args.epochs, iters=args.iters, delta=args.delta, eta=args.eta,
                         lam=args.lam, seed=args.seed, backend=args.backend, dtype=args.dtype, polish=args.polish,
                         tol=args.tol, progress=args.progress, checkpoint=args.checkpoint,
                         checkpoint_every=args.checkpoint_every)
    except DivergenceError as exc:
        print(f"diverged: {exc}", file=sys.stderr)
        part = exc.partial
        if out and part is not None:  # keep the last finite state, flagged
            _save(out, part.model, {}, target, part.params, part.history, False, False, diverged=True)
            print(f"the last finite state is saved in {out} (diverged=True)", file=sys.stderr)
        return 3
    el = time.perf_counter() - t0
    p = res.params
    h = res.history
    print(f"Algorithm 1: d={p.d} r={args.r} order={p.order} m={p.m} seed={args.seed} backend={args.backend}")
    print(f"  params: epochs={p.epochs} iters={p.iters} delta={p.delta:.3g} eta={p.eta:.3g} lam={p.lam:.3g}")
    print(f"  epochs run: {len(h['epoch'])}{' (interrupted)' if res.interrupted else ''}, "
          f"mode switches: {sum(h['n_switches'])}, time: {el:.2f} s", flush=True)
    print(f"  final relative error: {res.rel_error:.6g}", flush=True)
    model, extra = res.model, {}
    interrupted = res.interrupted
    refine_interrupted = False
    if args.refine is not None and not interrupted:
        from ._refine import refine

        try:
            ref = refine(res.model, target, tol=args.refine)
        except KeyboardInterrupt:
            refine_interrupted = interrupted = True
            print("  refine interrupted (Ctrl-C): keeping the Algorithm 1 model", file=sys.stderr, flush=True)
        else:
            model = ref.model
            extra = {"refine": json.dumps({"rel_error": ref.rel_error, "converged": bool(ref.converged),
                                           "iterations": len(ref.history), "elapsed": ref.elapsed})}
            print(f"  refine (Levenberg-Marquardt, beyond the paper): relative error {ref.rel_error:.3g} after "
                  f"{len(ref.history)} iterations, {ref.elapsed:.2f} s{'' if ref.converged else ' (tol not reached)'}")
    if out:
        try:
            _save(out, model, extra, target, p, h, interrupted, refine_interrupted)
        except KeyboardInterrupt:  # arrived during the write, held off until it was complete
            interrupted = True
        print(f"  saved {'partial (interrupted) ' if res.interrupted or refine_interrupted else ''}model and "
              f"history to {out}", flush=True)
    if interrupted:
        print("interrupted (Ctrl-C)" + (f"; the result is in {out}" if out else ""), file=sys.stderr)
        return 130
    return 0


def _save(out, model, extra, target, p, h, interrupted, refine_interrupted, diverged=False):
    _save_result(out, dict(weights=model.weights, factors=model.factors, order=p.order, **extra,
                           target_weights=target.weights, target_factors=target.factors,
                           params=json.dumps(p.to_dict()), interrupted=interrupted,
                           refine_interrupted=refine_interrupted, diverged=diverged,
                           history=json.dumps({k: v for k, v in h.items() if k != "iterations"})))


def _sweep(args):
    from .sweep import SWEEPS, SweepError, get_sweep, run_sweep

    if args.list or not args.name:
        for name, sw in sorted(SWEEPS.items()):
            print(f"{name:14s} {sw.description}")
        return 0 if args.list else 2
    get_sweep(args.name)   # a clear error for an unknown name, before anything starts
    workers = args.workers
    if args.gpu:
        from ._backend import get_backend

        get_backend("cupy")   # raises with the reason when no usable GPU is there
        import cupy

        os.environ["TDCORE_BACKEND"] = "cupy"   # inherited by the worker processes
        if workers is None:
            workers = int(cupy.cuda.runtime.getDeviceCount())
    if workers is None:
        workers = os.cpu_count() or 1
    try:
        summary = run_sweep(args.name, size=args.size, workers=workers, scheduler=args.scheduler,
                            store=args.store, out_dir=args.out_dir, retries=args.retries, progress=args.progress)
    except SweepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted (Ctrl-C): every finished cell is stored in {args.store}; run the same command "
              "again to resume", file=sys.stderr)
        return 130
    print(summary)
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tdcore", description=__doc__)
    sub = ap.add_subparsers(dest="cmd", required=True)
    pi = sub.add_parser("info", help="print the detected backends and why")
    pi.add_argument("--json", action="store_true", help="also print the result as JSON")
    pr = sub.add_parser("run", help="run Algorithm 1 on a random target")
    pr.add_argument("--d", type=int, required=True)
    pr.add_argument("--r", type=int, required=True)
    pr.add_argument("--order", type=int, default=3)
    pr.add_argument("--m", type=int, required=True)
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--target-seed", type=int, default=None, help="seed of the target (default: --seed)")
    pr.add_argument("--orthogonal", action="store_true")
    pr.add_argument("--epochs", type=int)
    pr.add_argument("--iters", type=int)
    pr.add_argument("--delta", type=float)
    pr.add_argument("--eta", type=float)
    pr.add_argument("--lam", type=float)
    pr.add_argument("--polish", type=int, default=0)
    pr.add_argument("--tol", type=float)
    pr.add_argument("--refine", type=float, metavar="TOL",
                    help="afterwards, refine the model by Levenberg-Marquardt down to this relative error "
                         "(beyond the paper; the saved model is the refined one)")
    pr.add_argument("--backend", default="auto", choices=["auto", "numpy", "cupy"])
    pr.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    pr.add_argument("--checkpoint", help="checkpoint file (resumed when it exists)")
    pr.add_argument("--checkpoint-every", type=int, default=1)
    pr.add_argument("--progress", action="store_true")
    pr.add_argument("--out", help="save model and history to this .npz file (the suffix is added when missing); "
                                   "its directory is checked before the run, the write is atomic")
    pr.add_argument("--force", action="store_true", help="overwrite an existing --out file")
    ps = sub.add_parser(
        "sweep", help="run one of the book's stored sweeps (e.g. at full size) on Dask, resumable",
        description="Run a sweep as a grid of independent cells on Dask distributed: a LocalCluster of "
                    "--workers processes (default), or a running scheduler (--scheduler). Every finished "
                    "cell is stored at once in --store; a rerun skips stored cells, so a killed sweep "
                    "resumes where it stopped. When all cells are done they are merged into "
                    "--out-dir/<file> with their provenance.")
    ps.add_argument("name", nargs="?", help="the sweep to run (see --list)")
    ps.add_argument("--list", action="store_true", help="list the sweeps and exit")
    ps.add_argument("--size", default="full", choices=["quick", "book", "full"],
                    help="quick: seconds (tests); book: the chapters' size; full: the stored runs (default)")
    ps.add_argument("--workers", type=int, default=None,
                    help="worker processes of the local cluster, one thread and one BLAS thread each "
                         "(default: the number of CPUs, or of GPUs with --gpu); 0 runs serially here")
    ps.add_argument("--scheduler", default=None, metavar="ADDRESS",
                    help="address of a running Dask scheduler, e.g. tcp://host:8786 (dask-jobqueue on "
                         "SLURM/PBS); --workers is then ignored")
    ps.add_argument("--store", default="runs/sweeps", help="folder of the per-cell results (default runs/sweeps)")
    ps.add_argument("--out-dir", default="results", help="folder of the merged results file (default results)")
    ps.add_argument("--retries", type=int, default=2, help="further attempts of a cell that raises (default 2)")
    ps.add_argument("--gpu", action="store_true",
                    help="run the cells on CuPy (TDCORE_BACKEND=cupy on every worker), one worker per GPU")
    ps.add_argument("--progress", action="store_true", default=None,
                    help="progress bar over cells (default: when stderr is a terminal)")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "sweep":
            return _sweep(args)
        return _info(args) if args.cmd == "info" else _run(args)
    except (ValueError, TypeError, MemoryError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C) before a result existed; nothing saved", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
