"""Running a sweep: the cell store, Dask execution, retries, the merge."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from .._provenance import engine_fingerprint, provenance
from .._util import jsonable
from .registry import SIZES, get_sweep, resolve

__all__ = ["run_sweep", "Store", "SweepSummary", "SweepError", "CellError", "cell_key"]


class SweepError(RuntimeError):
    """A sweep cannot run or cannot be merged (bad scheduler, failed cells, mixed engines)."""


class CellError(RuntimeError):
    """A cell failed after all its attempts; carries the cell's parameters and the last traceback."""


def cell_key(sweep, size, params):
    """Key of a cell: a hash of the sweep's name, the size and every parameter."""
    blob = json.dumps({"sweep": sweep, "size": size, "params": jsonable(params)}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def _atomic_write(path, payload):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(jsonable(payload), fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class Store:
    """One JSON file per finished cell under ``root/<sweep>/<size>/<key>.json``.

    Files are written atomically (temporary file, fsync, rename), so a kill at
    any moment leaves either the whole cell or nothing.  A failed cell leaves
    ``<key>.error.json`` with its traceback, replaced when it later succeeds.
    """

    def __init__(self, root):
        self.root = Path(root)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SweepError(f"cannot create the results store {str(self.root)!r}: {e}") from None
        if not os.access(self.root, os.W_OK):
            raise SweepError(f"the results store {str(self.root)!r} is not writable")

    def path(self, sweep, size, key, *, error=False):
        return self.root / sweep / size / (f"{key}.error.json" if error else f"{key}.json")

    def read(self, sweep, size, key):
        """The stored cell, or None when it is absent or unreadable (then it is recomputed)."""
        p = self.path(sweep, size, key)
        try:
            return json.loads(p.read_text())
        except (OSError, ValueError):
            return None

    def write(self, sweep, size, key, record):
        _atomic_write(self.path(sweep, size, key), record)
        try:
            self.path(sweep, size, key, error=True).unlink()
        except FileNotFoundError:
            pass

    def write_error(self, sweep, size, key, record):
        _atomic_write(self.path(sweep, size, key, error=True), record)


@dataclass
class SweepSummary:
    """What a call of :func:`run_sweep` did."""

    sweep: str
    size: str
    cells: int
    computed: int
    cached: int
    stale: int
    failed: int
    wall_seconds: float
    workers: dict = field(default_factory=dict)
    output: str | None = None
    errors: list = field(default_factory=list)

    def __str__(self):
        per = ", ".join(f"{w}: {n} cells ({s:.1f} s)" for w, (n, s) in sorted(self.workers.items())) or "none"
        lines = [f"sweep {self.sweep} ({self.size}): {self.cells} cells: {self.computed} computed, "
                 f"{self.cached} cached, {self.failed} failed" + (f" ({self.stale} stale recomputed)"
                                                                  if self.stale else ""),
                 f"wall time {self.wall_seconds:.1f} s; per worker: {per}"]
        if self.output:
            lines.append(f"merged into {self.output}")
        lines += [f"FAILED {e}" for e in self.errors]
        return "\n".join(lines)


def _compute_cell(run_path, params):
    """Run on a worker: one cell with one BLAS thread; returns the result, its time and the worker."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a core dependency
        threadpool_limits = None
    fn = resolve(run_path)
    t0 = time.perf_counter()
    if threadpool_limits is not None:
        with threadpool_limits(1, user_api="blas"):
            result = fn(**params)
    else:  # pragma: no cover
        result = fn(**params)
    try:
        from distributed import get_worker

        worker = get_worker().address
    except (ImportError, ValueError):
        worker = f"pid {os.getpid()}"
    return {"result": jsonable(result), "elapsed": time.perf_counter() - t0, "worker": worker}


_ADDRESS = re.compile(r"^(tcp|tls|inproc|ucx|ws|wss)://[^\s/:]+(:\d{1,5})?$")


def _client(workers, scheduler, connect_timeout):
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise SweepError("sweeps with workers need Dask distributed: pip install 'tdcore[sweep]' "
                         "(or run serially with workers=0)") from None
    if scheduler is not None:
        if not isinstance(scheduler, str) or not _ADDRESS.match(scheduler):
            raise SweepError(f"scheduler must be an address such as tcp://host:8786, got {scheduler!r}")
        try:
            return Client(scheduler, timeout=f"{connect_timeout}s"), None
        except (OSError, TimeoutError) as e:
            raise SweepError(f"could not reach the Dask scheduler at {scheduler} within {connect_timeout:g} s "
                             f"({type(e).__name__}); is `dask scheduler` running there?") from None
    cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                           silence_logs=40)
    return Client(cluster), cluster


def _check_args(name, size, workers, retries):
    sweep = get_sweep(name)
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise ValueError(f"workers must be an integer >= 0 (0: run serially in this process), got {workers!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an integer >= 0, got {retries!r}")
    return sweep


def run_sweep(name, *, size="quick", workers=2, scheduler=None, store="runs/sweeps", out_dir="results",
              retries=2, progress=None, connect_timeout=10.0, merge=True):
    """Compute every missing cell of a sweep, store each, and merge them into the results file.

    Parameters
    ----------
    name : str
        A sweep of ``tdcore.sweep.SWEEPS``.
    size : {"quick", "book", "full"}
    workers : int
        Worker processes of the embedded ``LocalCluster`` (one thread each, one
        BLAS thread per cell); ``0`` runs the cells serially in this process.
        Ignored with ``scheduler``.
    scheduler : str, optional
        Address of a running Dask scheduler (``tcp://host:8786``), e.g. one
        started by ``dask-jobqueue`` on a SLURM/PBS cluster.
    store : str or Path
        Folder of the cell store; a rerun skips the cells found there.
    out_dir : str or Path or None
        Where the merged results file goes (None: do not write it).
    retries : int
        Further attempts of a cell that raises (a worker that dies is handled
        by Dask itself, which reruns its tasks on the other workers).
    progress : bool, optional
        A progress bar over cells (default: when stderr is a terminal).
    connect_timeout : float
        Seconds to wait for ``scheduler``.
    merge : bool
        Merge the cells into the results file when all are done.

    Returns
    -------
    SweepSummary

    Raises
    ------
    SweepError
        Unreachable scheduler, unwritable store, failed cells (after the others
        are stored), or cells computed by different engines.
    """
    sweep = _check_args(name, size, workers, retries)
    t0 = time.time()
    st = Store(store)
    if out_dir is not None:
        try:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SweepError(f"cannot create the output folder {str(out_dir)!r}: {e}") from None
        if not os.access(out_dir, os.W_OK):
            raise SweepError(f"the output folder {str(out_dir)!r} is not writable")
    client = cluster = None
    if scheduler is not None:   # connect first: a bad address fails before anything else happens
        client, cluster = _client(workers, scheduler, connect_timeout)
    fingerprint = engine_fingerprint(sweep.engine)
    cells = sweep.cell_params(size)
    keys = [cell_key(name, size, p) for p in cells]
    if len(set(keys)) != len(keys):
        raise SweepError(f"sweep {name!r} has duplicate cells at size {size!r}")
    todo, cached, stale = [], 0, 0
    for key, params in zip(keys, cells):
        rec = st.read(name, size, key)
        if rec is None:
            todo.append((key, params))
        elif rec.get("provenance", {}).get("engine", {}).get("fingerprint") != fingerprint:
            stale += 1
            todo.append((key, params))
        else:
            cached += 1
    summary = SweepSummary(name, size, len(cells), 0, cached, stale, 0, 0.0)
    prov = provenance(modules=sweep.engine, script=f"python -m tdcore sweep {name} --size {size}")

    def record(key, params, out, attempts):
        st.write(name, size, key, {"sweep": name, "size": size, "key": key, "params": params,
                                   "result": out["result"], "elapsed": out["elapsed"], "worker": out["worker"],
                                   "attempts": attempts, "provenance": prov})
        n, s = summary.workers.get(out["worker"], (0, 0.0))
        summary.workers[out["worker"]] = (n + 1, s + out["elapsed"])
        summary.computed += 1

    def failed(key, params, exc, attempts):
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))[-8000:]
        st.write_error(name, size, key, {"sweep": name, "size": size, "key": key, "params": params,
                                         "error": f"{type(exc).__name__}: {exc}", "traceback": tb,
                                         "attempts": attempts, "provenance": prov})
        summary.failed += 1
        summary.errors.append(f"cell {key} {params}: {type(exc).__name__}: {exc}")

    bar = _bar(progress, len(todo), name)
    try:
        if todo and workers == 0 and scheduler is None:
            for key, params in todo:
                for attempt in range(1, retries + 2):
                    try:
                        out = _compute_cell(sweep.run, params)
                    except Exception as e:  # noqa: BLE001 - recorded, retried, reported
                        if attempt == retries + 1:
                            failed(key, params, e, attempt)
                    else:
                        record(key, params, out, attempt)
                        break
                bar.update(1)
        elif todo:
            from distributed import as_completed

            if client is None:
                client, cluster = _client(workers, scheduler, connect_timeout)
            try:
                futs = {client.submit(_compute_cell, sweep.run, params, key=f"{name}-{size}-{key}", pure=False,
                                      retries=retries): (key, params) for key, params in todo}
                for fut in as_completed(futs):
                    key, params = futs[fut]
                    try:
                        out = fut.result()
                    except Exception as e:  # noqa: BLE001
                        failed(key, params, e, retries + 1)
                    else:
                        record(key, params, out, None)
                    bar.update(1)
            finally:
                client.close()
                if cluster is not None:
                    cluster.close()
                client = None
    finally:
        bar.close()
        if client is not None:
            client.close()
        summary.wall_seconds = time.time() - t0
    if summary.failed:
        raise SweepError(f"{summary.failed} of {len(cells)} cells failed (stored cells are kept; rerun to retry):\n"
                         + "\n".join(summary.errors))
    if merge:
        summary.output = merge_sweep(name, size, store=store, out_dir=out_dir)
    summary.wall_seconds = time.time() - t0
    return summary


def merge_sweep(name, size, *, store="runs/sweeps", out_dir="results"):
    """Merge the stored cells of a finished sweep into its results file; returns the path (or the dict).

    Refuses missing cells and cells whose engine fingerprints differ.
    """
    sweep = get_sweep(name)
    st = Store(store)
    cells = sweep.cell_params(size)
    recs, missing = [], []
    for params in cells:
        rec = st.read(name, size, cell_key(name, size, params))
        (missing.append(params) if rec is None else recs.append(rec))
    if missing:
        raise SweepError(f"sweep {name!r} ({size}) has {len(missing)} cells not computed yet, e.g. {missing[0]}")
    prints = {r["provenance"]["engine"]["fingerprint"] for r in recs}
    if len(prints) != 1:
        raise SweepError(f"sweep {name!r} ({size}): cells were computed by different engines {sorted(prints)}; "
                         "rerun the sweep to recompute the stale cells")
    merged = resolve(sweep.merge)(size, [(r["params"], r["result"]) for r in recs])
    merged["provenance"] = {**recs[0]["provenance"],
                            "cells": len(recs),
                            "cell_commits": sorted({str(r["provenance"].get("commit")) for r in recs}),
                            "compute_seconds": float(sum(r["elapsed"] for r in recs))}
    if out_dir is None:
        return merged
    path = Path(out_dir) / sweep.output.format(size=size)
    _atomic_write(path, merged)
    if isinstance(merged.get("markdown"), str):   # a human-readable table beside it
        md = path.with_suffix(".md")
        tmp = md.with_name(md.name + ".tmp")
        tmp.write_text(merged["markdown"])
        os.replace(tmp, md)
    return str(path)


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


def _bar(progress, total, name):
    import sys

    if progress is None:
        progress = sys.stderr.isatty()
    if not progress or total == 0:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"sweep {name}", unit="cell")
