"""Command line of tdcore.

``python -m tdcore info`` (backends), ``run`` (Algorithm 1 on a random target),
``decompose`` (your own tensor: a dense ``.npy``, a factored ``.npz``, or the
moment tensor of a data matrix) and ``sweep`` (the book's sweeps on Dask).
``python -m tdcore SUBCOMMAND --help`` describes every flag.
"""

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
    progress = _want_progress(args)
    say = _printer(args)
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
                         tol=args.tol, progress=progress, checkpoint=args.checkpoint,
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
    say(f"Algorithm 1: d={p.d} r={args.r} order={p.order} m={p.m} seed={args.seed} backend={args.backend}")
    say(f"  params: epochs={p.epochs} iters={p.iters} delta={p.delta:.3g} eta={p.eta:.3g} lam={p.lam:.3g}")
    say(f"  epochs run: {len(h['epoch'])}{' (interrupted)' if res.interrupted else ''}, "
        f"mode switches: {sum(h['n_switches'])}, time: {el:.2f} s", flush=True)
    say(f"  final relative error: {res.rel_error:.6g}", flush=True)
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
            say(f"  refine (Levenberg-Marquardt, beyond the paper): relative error {ref.rel_error:.3g} after "
                f"{len(ref.history)} iterations, {ref.elapsed:.2f} s{'' if ref.converged else ' (tol not reached)'}")
    if out:
        try:
            _save(out, model, extra, target, p, h, interrupted, refine_interrupted)
        except KeyboardInterrupt:  # arrived during the write, held off until it was complete
            interrupted = True
        say(f"  saved {'partial (interrupted) ' if res.interrupted or refine_interrupted else ''}model and "
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


def _want_progress(args):
    """``--progress`` forces the bar on, ``--quiet`` off; by default it is shown when stdout is a terminal."""
    if getattr(args, "quiet", False):
        return False
    if getattr(args, "progress", None) is not None:
        return bool(args.progress)
    return sys.stdout.isatty()


def _printer(args):
    """``print`` unless ``--quiet`` (or ``--json``, whose stdout is the JSON document alone)."""
    if getattr(args, "quiet", False) or getattr(args, "json", False) and args.cmd == "decompose":
        return lambda *a, **k: None
    return print


def _default_out(path):
    """``<input without suffix>.model.npz`` beside the input file."""
    base = os.path.splitext(path)[0]
    return base + ".model.npz"


def _decompose(args):
    from ._inputs import compact_target, default_m, load_target, model_summary
    from ._provenance import CORE_ENGINE, provenance
    from ._validate import check_float, check_int, check_path

    say = _printer(args)
    progress = _want_progress(args)
    if (args.input is None) == (args.moments is None):
        raise ValueError("give exactly one input: a tensor file INPUT (.npy dense, .npz factored) or "
                         "--moments X.npy (a data matrix)")
    src = args.moments if args.moments is not None else args.input
    if args.center and args.moments is None:
        raise ValueError("--center applies to --moments only")
    tol = check_float("--tol", args.tol, positive=True, allow_none=True)
    check_int("--m", args.m, minimum=1, allow_none=True)
    check_int("--chunk", args.chunk, minimum=1, allow_none=True)
    # the output path is checked before the input is read and before any work
    out = check_path("--out", _out_path(args.out if args.out is not None else _default_out(src)))
    if os.path.exists(out) and not args.force:
        raise ValueError(f"--out {out!r} exists; pass --force to overwrite it")
    if os.path.abspath(out) == os.path.abspath(src):
        raise ValueError(f"--out names the input file {src!r}; choose another name")
    t_load = time.perf_counter()
    target, info = load_target(src, order=args.order, moments=args.moments is not None, center=args.center,
                               chunk=args.chunk, dense="auto")
    target = compact_target(target)  # one pass over many components instead of one per norm the fit takes
    t_load = time.perf_counter() - t_load
    m = args.m if args.m is not None else default_m(info)
    what = {"dense": "dense tensor", "factored": f"factored tensor, {info['components']} components",
            "moments": f"moment tensor of {info['n']} samples"}[info["kind"]]
    say(f"input: {src} ({what}; d={info['d']}, order={info['order']}), read in {t_load:.2f} s")
    say(f"fitting m={m} components by {args.method} (seed {args.seed}, tol "
        f"{tol if tol is not None else ('1e-06' if args.method == 'decompose' else 'none: all epochs')})",
        flush=True)
    t0 = time.perf_counter()
    if args.method == "decompose":
        from ._refine import decompose

        res = decompose(target, m, tol=1e-6 if tol is None else tol, seed=args.seed, progress=progress,
                        backend=args.backend)
        model, extra = res.model, {"converged": bool(res.converged), "refine_stop": res.refine.stop_reason,
                                   "elapsed_algorithm1_s": res.elapsed_algorithm1,
                                   "elapsed_refine_s": res.elapsed_refine}
        interrupted = bool(getattr(res.algorithm1, "interrupted", False))
    else:
        from ._algorithm1 import algorithm1

        res = algorithm1(target, m, tol=tol, seed=args.seed, progress=progress, backend=args.backend)
        model, interrupted = res.model, bool(res.interrupted)
        extra = {"converged": None if tol is None else bool(res.rel_error <= tol), "epochs": len(res.history["epoch"])}
    el = time.perf_counter() - t0
    tol_used = tol if tol is not None else (1e-6 if args.method == "decompose" else None)
    extra.update({"m": m, "seed": args.seed, "tol": tol_used, "interrupted": interrupted, "out": out,
                  "load_s": t_load})
    summary = model_summary(model, target, elapsed=el, info=info, method=args.method, extra=extra)
    summary["provenance"] = provenance(modules=CORE_ENGINE + ("tdcore._refine", "tdcore._inputs"))
    try:
        _save_result(out, dict(weights=model.weights, factors=model.factors, order=model.order,
                               summary=json.dumps(summary)))
    except KeyboardInterrupt:  # arrived during the write, held off until it was complete
        interrupted = True
    say(f"relative error {summary['rel_error']:.4g}, {summary['components']} components kept "
        f"({summary['parameters']} parameters), {el:.2f} s"
        + ("" if extra.get("converged") in (None, True) else f" (tol {tol_used:g} not reached)"))
    say(f"saved weights, factors and order to {out} (provenance: commit {summary['provenance']['commit']})")
    if args.json:
        print(json.dumps(summary))
    if interrupted:
        print(f"interrupted (Ctrl-C); the model reached so far is in {out}", file=sys.stderr)
        return 130
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m tdcore", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="{info,run,decompose,sweep}")
    pi = sub.add_parser("info", help="print the detected backends and why",
                        description="Print the tdcore and NumPy versions, whether CuPy is usable (and why not), "
                                    "and what backend='auto' resolves to.")
    pi.add_argument("--json", action="store_true", help="also print the result as one JSON line (default: off)")
    pr = sub.add_parser("run", help="run Algorithm 1 on a random target",
                        description="Draw a random rank-r target of order --order in dimension --d (unit "
                                    "components, ||T*|| = 1) and fit it by Algorithm 1 with --m components. "
                                    "Unset parameters take tdcore.default_params' rule.")
    pr.add_argument("--d", type=int, required=True, help="dimension of the target (integer >= 1; required)")
    pr.add_argument("--r", type=int, required=True, help="rank: number of target components (>= 1; required)")
    pr.add_argument("--order", type=int, default=3, help="tensor order l (>= 2; default 3)")
    pr.add_argument("--m", type=int, required=True, help="components of the model (>= 1; required)")
    pr.add_argument("--seed", type=int, default=0, help="seed of the initialisation (>= 0; default 0)")
    pr.add_argument("--target-seed", type=int, default=None, help="seed of the target (default: --seed)")
    pr.add_argument("--orthogonal", action="store_true",
                    help="orthonormal target components (needs r <= d; default: independent uniform directions)")
    pr.add_argument("--epochs", type=int, help="epochs K (>= 1; default: tdcore.default_params' rule)")
    pr.add_argument("--iters", type=int, help="gradient iterations H per epoch (>= 1; default: the rule)")
    pr.add_argument("--delta", type=float, help="initialisation radius (> 0; default: the rule)")
    pr.add_argument("--eta", type=float, help="step size (> 0; default: the rule)")
    pr.add_argument("--lam", type=float, help="regularisation strength (>= 0; default: the rule)")
    pr.add_argument("--polish", type=int, default=0,
                    help="plain gradient steps with lam = 0 after the epochs (beyond the paper; default 0)")
    pr.add_argument("--tol", type=float,
                    help="stop once the relative error ||T - T*|| / ||T*|| is at most this (default: run all epochs)")
    pr.add_argument("--refine", type=float, metavar="TOL",
                    help="afterwards, refine the model by Levenberg-Marquardt down to this relative error "
                         "(beyond the paper; the saved model is the refined one; default: no refinement)")
    pr.add_argument("--backend", default="auto", choices=["auto", "numpy", "cupy"],
                    help="array backend (default auto: CuPy when a usable GPU is there, else NumPy)")
    pr.add_argument("--dtype", default="float64", choices=["float64", "float32"],
                    help="floating type of the run (default float64)")
    pr.add_argument("--checkpoint", help="checkpoint file, resumed when it exists (default: none)")
    pr.add_argument("--checkpoint-every", type=int, default=1,
                    help="save the checkpoint every this many epochs (>= 1; default 1)")
    pr.add_argument("--progress", action="store_true", default=None,
                    help="show a progress bar over epochs on stderr (default: when stdout is a terminal)")
    pr.add_argument("--quiet", action="store_true",
                    help="print nothing but errors; no progress bar (default: off)")
    pr.add_argument("--out", help="save model and history to this .npz file (the suffix is added when missing); "
                                   "its directory is checked before the run, the write is atomic (default: "
                                   "nothing saved)")
    pr.add_argument("--force", action="store_true", help="overwrite an existing --out file (default: refuse)")
    pd = sub.add_parser(
        "decompose", help="decompose your own tensor: dense .npy, factored .npz, or the moments of a data matrix",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Fit a symmetric CP model to your own tensor and save it (weights, factors, order) in .npz.\n\n"
                    "INPUT is one of\n"
                    "  T.npy                  a dense symmetric array of shape (d,)*l, l >= 2\n"
                    "  T.npz                  arrays 'weights' (m,) and 'factors' (d, m), and 'order' (or --order)\n"
                    "  --moments X.npy --order L\n"
                    "                         an n x d data matrix: its empirical L-th moment (1/n) sum_k x_k^(x)L.\n"
                    "                         The file is memory-mapped. When d^L is small (at most 32 MiB and\n"
                    "                         cheaper to contract than n components, e.g. d <= 161 at L = 3) the\n"
                    "                         d^L array is summed block by block: memory d^L + 8 MiB + 64 MiB,\n"
                    "                         whatever n. Otherwise the moment is held with n components, one\n"
                    "                         copy of the data (8 n d bytes in float64), never the d^L array;\n"
                    "                         norms run in blocks of at most 64 MiB.\n\n"
                    "The input is checked (shape, finite, symmetric, non-zero) and the output path before any "
                    "work; on\nan error nothing is written. The summary (relative error, components kept, "
                    "parameters, time,\nprovenance) is printed, and stored in the output file as JSON "
                    "('summary').")
    pd.add_argument("input", nargs="?", metavar="INPUT",
                    help="the tensor file: .npy (dense symmetric) or .npz (weights, factors[, order])")
    pd.add_argument("--moments", metavar="X.npy",
                    help="instead of INPUT: an n x d data matrix (.npy, one sample per row) whose --order-th "
                         "empirical moment tensor is decomposed")
    pd.add_argument("--order", type=int, default=None,
                    help="tensor order L (>= 2): required with --moments and for a .npz without 'order'; "
                         "otherwise checked against the file (default: from the file)")
    pd.add_argument("--center", action="store_true",
                    help="with --moments: subtract the sample mean first, the central moment (default: raw moment)")
    pd.add_argument("--chunk", type=int, default=None,
                    help="with --moments: samples per block of the pass over the data (>= 1; default: blocks "
                         "of about 8 MiB); the result does not depend on it")
    pd.add_argument("--m", type=int, default=None,
                    help="components of the model (>= 1; default 2 min(r, d) for a factored input of r "
                         "components, 2 d otherwise)")
    pd.add_argument("--tol", type=float, default=None,
                    help="target relative error ||T - T*|| / ||T*|| (> 0; default 1e-6 for decompose, none for "
                         "algorithm1: all epochs)")
    pd.add_argument("--method", default="decompose", choices=["decompose", "algorithm1"],
                    help="decompose: Algorithm 1 to relative error 0.3, then Levenberg-Marquardt to --tol "
                         "(beyond the paper; default); algorithm1: the paper's Algorithm 1 alone")
    pd.add_argument("--seed", type=int, default=0, help="seed of the initialisation (>= 0; default 0)")
    pd.add_argument("--backend", default="auto", choices=["auto", "numpy", "cupy"],
                    help="array backend of Algorithm 1 (default auto: CuPy when a usable GPU is there)")
    pd.add_argument("--out", default=None,
                    help="the .npz file to write (suffix added when missing; written atomically; default "
                         "INPUT without its suffix + '.model.npz', beside the input)")
    pd.add_argument("--force", action="store_true", help="overwrite an existing --out file (default: refuse)")
    pd.add_argument("--json", action="store_true",
                    help="print the summary as one JSON document on stdout, and nothing else (default: text)")
    pd.add_argument("--progress", action="store_true", default=None,
                    help="show a progress bar over epochs on stderr (default: when stdout is a terminal)")
    pd.add_argument("--quiet", action="store_true",
                    help="print nothing but errors (and the JSON with --json); no progress bar (default: off)")
    ps = sub.add_parser(
        "sweep", help="run one of the book's stored sweeps (e.g. at full size) on Dask, resumable",
        description="Run a sweep as a grid of independent cells on Dask distributed: a LocalCluster of "
                    "--workers processes (default), or a running scheduler (--scheduler). Every finished "
                    "cell is stored at once in --store; a rerun skips stored cells, so a killed sweep "
                    "resumes where it stopped. When all cells are done they are merged into "
                    "--out-dir/<file> with their provenance.")
    ps.add_argument("name", nargs="?", help="the sweep to run (see --list; default: list them and exit with 2)")
    ps.add_argument("--list", action="store_true", help="list the sweeps and exit")
    ps.add_argument("--size", default="full", choices=["quick", "book", "full"],
                    help="quick: seconds (tests); book: the chapters' size; full: the stored runs (default)")
    ps.add_argument("--workers", type=int, default=None,
                    help="worker processes of the local cluster, one thread and one BLAS thread each "
                         "(default: the number of CPUs, or of GPUs with --gpu); 0 runs serially here")
    ps.add_argument("--scheduler", default=None, metavar="ADDRESS",
                    help="address of a running Dask scheduler, e.g. tcp://host:8786 (dask-jobqueue on "
                         "SLURM/PBS); --workers is then ignored (default: a local cluster)")
    ps.add_argument("--store", default="runs/sweeps", help="folder of the per-cell results (default runs/sweeps)")
    ps.add_argument("--out-dir", default="results", help="folder of the merged results file (default results)")
    ps.add_argument("--retries", type=int, default=2, help="further attempts of a cell that raises (default 2)")
    ps.add_argument("--gpu", action="store_true",
                    help="run the cells on CuPy (TDCORE_BACKEND=cupy on every worker), one worker per GPU "
                         "(default: off)")
    ps.add_argument("--progress", action="store_true", default=None,
                    help="progress bar over cells (default: when stderr is a terminal)")
    args = ap.parse_args(argv)
    try:
        if args.cmd == "sweep":
            return _sweep(args)
        if args.cmd == "decompose":
            return _decompose(args)
        return _info(args) if args.cmd == "info" else _run(args)
    except (ValueError, TypeError, MemoryError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted (Ctrl-C) before a result existed; nothing saved", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
