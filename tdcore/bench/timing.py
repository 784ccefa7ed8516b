"""The timing harness: machine description, allocator tuning, interleaved timing, stored results.

Measurements follow three rules, because the machines we run on are shared and noisy:

* every ratio is measured inside one process, with the contenders interleaved
  (A, B, A, B, ...), and the reported ratio is the median of the paired ratios
  (:func:`time_interleaved`, :func:`bench_paired_ratio`);
* every result records the machine (CPU, cores, BLAS, load average: :func:`bench_machine_info`);
* results are written atomically, as JSON with a Markdown report beside it, to
  a folder given by argument, else by ``$TDCORE_BENCH_OUT``, else ``results/``
  under the current directory (:func:`bench_output_dir`).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from pathlib import Path

import numpy as np

from .._util import jsonable
from .._validate import check_float, check_int

__all__ = [
    "OUT_ENV_VAR",
    "bench_machine_info",
    "tune_malloc",
    "time_interleaved",
    "bench_paired_ratio",
    "bench_output_dir",
    "write_bench_result",
    "load_bench_result",
    "load_bench_results",
    "BENCH_NAMES",
    "fmt_time",
    "BENCH_ENGINE",
]

#: Environment variable naming the folder benchmark results are written to (and read from).
OUT_ENV_VAR = "TDCORE_BENCH_OUT"

#: The benchmarks of the suite, in the order of the Performance chapter.
BENCH_NAMES = ("step", "dense", "scale", "batch", "gpu", "baselines", "accuracy", "build")


# ---------------------------------------------------------------------------------------------
# machine
# ---------------------------------------------------------------------------------------------
_MALLOC_TUNED = False


def bench_machine_info():
    """Describe this machine: CPU, cores, memory, BLAS (kernel, threads), versions, load average, time.

    The description of :func:`tdcore._provenance.machine_info`, plus what a
    benchmark needs besides: the load average, whether :func:`tune_malloc`
    succeeded, the GPU status and the date.

    Returns
    -------
    dict
        JSON-serialisable.  ``loadavg`` is the 1/5/15-minute load average when the
        function is called (benchmarks call it before and after measuring);
        ``malloc_tuned`` whether :func:`tune_malloc` succeeded in this process.

    Examples
    --------
    >>> info = bench_machine_info()
    >>> info["cores"] >= 1 and "blas" in info
    True
    """
    from .._backend import backend_info
    from .._provenance import machine_info

    try:
        load = list(os.getloadavg())
    except OSError:
        load = None
    info = backend_info()
    out = machine_info()
    out.update({
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS") or os.environ.get("OMP_NUM_THREADS") or "default",
        "malloc_tuned": _MALLOC_TUNED,
        "gpu": info["cupy"].get("device") if info["cupy_usable"] else None,
        "bench_gpu_status": info["cupy_reason"],
        "loadavg": load,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    })
    return out


#: Modules whose source the engine fingerprint of a benchmark result covers.
BENCH_ENGINE = ("tdcore._backend", "tdcore._tensor", "tdcore._gram", "tdcore._objective", "tdcore._algorithm1",
                "tdcore._algorithm1.api", "tdcore._algorithm1.params", "tdcore._algorithm1.run",
                "tdcore._algorithm1.checkpoint", "tdcore._refine", "tdcore._baselines", "tdcore._validate",
                "tdcore._util", "tdcore.bench.timing", "tdcore.bench.suite", "tdcore.bench.baselines",
                "tdcore.bench.accuracy")


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
    first; :func:`tdcore.bench.bench_batch` checks whole runs without it in a
    subprocess.  Process-wide, hence never done on import.

    Parameters
    ----------
    mmap_threshold, trim_threshold, top_pad : int
        Bytes, passed to ``mallopt`` (``M_MMAP_THRESHOLD``, ``M_TRIM_THRESHOLD``, ``M_TOP_PAD``).

    Returns
    -------
    bool
        True when the settings were applied (glibc), False elsewhere.
    """
    global _MALLOC_TUNED
    import ctypes
    import ctypes.util

    settings = {-3: check_int("mmap_threshold", mmap_threshold, minimum=0),
                -1: check_int("trim_threshold", trim_threshold, minimum=0),
                -2: check_int("top_pad", top_pad, minimum=0)}
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = all(mallopt(k, v) == 1 for k, v in settings.items())
    _MALLOC_TUNED = _MALLOC_TUNED or ok
    return ok


# ---------------------------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------------------------
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

    Examples
    --------
    >>> t = time_interleaved({"a": lambda: None, "b": lambda: sum(range(50))}, repeats=3, min_time=1e-3)
    >>> sorted(t), len(t["_samples"]["a"])
    (['_samples', 'a', 'b'], 3)
    """
    if not funcs:
        raise ValueError("time_interleaved needs at least one callable in funcs")
    bad = [k for k, fn in funcs.items() if not callable(fn)]
    if bad:
        raise TypeError(f"funcs must map names to callables; not callable: {bad}")
    repeats = check_int("repeats", repeats, minimum=1)
    warmup = check_int("warmup", warmup, minimum=0)
    min_time = check_float("min_time", min_time, nonnegative=True)
    sync = sync or (lambda: None)
    for fn in funcs.values():
        for _ in range(warmup):
            fn()
        sync()
    numbers = {k: _calibrate(lambda fn=fn: (fn(), sync()), min_time) for k, fn in funcs.items()}
    samples = {k: [] for k in funcs}
    for _ in range(repeats):
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
    """Median over rounds of ``time(a) / time(b)`` from a :func:`time_interleaved` result.

    Examples
    --------
    >>> bench_paired_ratio({"_samples": {"a": [2.0, 4.0, 9.0], "b": [1.0, 1.0, 3.0]}}, "a", "b")
    3.0
    """
    for k in (a, b):
        if k not in timing["_samples"]:
            raise KeyError(f"no samples for {k!r} in this timing; timed: {sorted(timing['_samples'])}")
    sa, sb = np.asarray(timing["_samples"][a]), np.asarray(timing["_samples"][b])
    return float(np.median(sa / sb))


def fmt_time(s):
    """A duration in seconds as short text (``"12.3 us"``, ``"4.56 ms"``, ``"7.89 s"``; ``"n/a"`` for None/NaN).

    Examples
    --------
    >>> fmt_time(1.5e-5), fmt_time(0.25), fmt_time(3), fmt_time(None)
    ('15.0 us', '250.00 ms', '3.00 s', 'n/a')
    """
    if s is None or not np.isfinite(s):
        return "n/a"
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


# ---------------------------------------------------------------------------------------------
# storage
# ---------------------------------------------------------------------------------------------
def bench_output_dir(out=None, *, create=True):
    """The folder benchmark results go to: ``out``, else ``$TDCORE_BENCH_OUT``, else ``./results``.

    Parameters
    ----------
    out : str or Path, optional
    create : bool
        Create the folder (and its parents) when missing.

    Returns
    -------
    pathlib.Path
    """
    source = "out"
    if out is None:
        out, source = os.environ.get(OUT_ENV_VAR) or None, OUT_ENV_VAR
    if out is None:
        out, source = Path.cwd() / "results", "the default ./results"
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise NotADirectoryError(f"benchmark output folder {str(p)!r} (from {source}) exists and is not a folder")
    if create:
        p.mkdir(parents=True, exist_ok=True)
    return p


def _drop_private(o):
    """Drop dict keys starting with ``_`` (raw samples), recursively."""
    if isinstance(o, dict):
        return {k: _drop_private(v) for k, v in o.items() if not str(k).startswith("_")}
    if isinstance(o, (list, tuple)):
        return [_drop_private(v) for v in o]
    return o


def _atomic_write(path, text):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_bench_result(path, payload, markdown=None):
    """Write ``payload`` as JSON to ``path`` and ``markdown`` beside it (same stem, ``.md``).

    Keys starting with ``_`` (raw samples) are dropped; NaN/inf become ``null``.
    Both files are written to a temporary name first and then renamed, so a
    kill never leaves a truncated result.

    Parameters
    ----------
    path : str or Path
        Ends in ``.json``; its folder is created when missing.
    payload : dict
        Stamped with a ``"provenance"`` record (commit, command, machine, engine
        fingerprint over :data:`BENCH_ENGINE`) unless it has one.
    markdown : str, optional

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    path = Path(path)
    if path.suffix != ".json":
        raise ValueError(f"path must end in .json, got {str(path)!r}")
    if not isinstance(payload, dict):
        raise TypeError(f"payload must be a dict, got {type(payload).__name__}")
    if "provenance" not in payload:
        from .._provenance import provenance

        mode = payload.get("mode")
        script = "python benchmarks/run_all.py" + (" --quick" if mode == "quick" else " --full" if mode else "")
        payload = {**payload, "provenance": provenance(modules=BENCH_ENGINE, script=script)}
    text = json.dumps(jsonable(_drop_private(payload)), indent=1, allow_nan=False) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(path, text)
    if markdown is not None:
        _atomic_write(path.with_suffix(".md"), markdown.rstrip() + "\n")
    return path


def load_bench_result(name, directory=None):
    """Load ``<directory>/bench_<name>.json`` (or the path ``name`` itself); ``None`` when it does not exist.

    Parameters
    ----------
    name : str or Path
        A benchmark name (``"step"``) or a path ending in ``.json``.
    directory : str or Path, optional
        Default :func:`bench_output_dir` (not created).
    """
    p = Path(name)
    if p.suffix != ".json":
        p = bench_output_dir(directory, create=False) / f"bench_{name}.json"
    if not p.exists():
        return None
    return json.loads(p.read_text())


def load_bench_results(directory=None, *, prefer="full"):
    """Load every stored benchmark result, full suite first (``prefer="full"``), else quick.

    Parameters
    ----------
    directory : str or Path, optional
        Default :func:`bench_output_dir` (not created).  The book reads the
        stored suite through :func:`tdcore.book.performance.load_suite`.
    prefer : {"full", "quick"}

    Returns
    -------
    dict
        ``name -> payload`` for the benchmarks found; each payload has its
        ``mode`` (``"full"`` or ``"quick"``).
    """
    if prefer not in ("full", "quick"):
        raise ValueError(f"prefer must be 'full' or 'quick', got {prefer!r}")
    d = bench_output_dir(directory, create=False)
    order = ("bench_", "bench_quick_") if prefer == "full" else ("bench_quick_", "bench_")
    out = {}
    for name in BENCH_NAMES:
        for pre in order:
            p = d / f"{pre}{name}.json"
            if p.exists():
                out[name] = json.loads(p.read_text())
                break
    return out
