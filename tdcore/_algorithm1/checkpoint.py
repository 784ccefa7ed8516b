"""Checkpoints of Algorithm 1: atomic state files, an append-only history log, checks on resume."""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import zipfile
import zlib

import numpy as np

from .._backend import to_numpy
from .._tensor import SymCP
from .._validate import atomic_write
from .params import Params, _empty_history


# -- checkpoints ---------------------------------------------------------------------
#: Version of the checkpoint layout (bumped when its content changes).
CHECKPOINT_FORMAT = 2
_STATE_KEYS = ("U", "a", "c", "chat", "switched")
_EPOCH_KEYS = ("epoch", "rel_error", "objective", "regularizer", "n_switches", "reinit_index", "f_before_reinit",
               "f_after_reinit", "pb_norm2", "elapsed")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: unreadable, corrupted, edited, or from another run.

    The message names the file and, for another run, what differs (parameters,
    seed, target, dtype or tdcore version).
    """


def _tdcore_version():
    from .. import __version__

    return __version__


def target_fingerprint(target):
    """SHA-256 of a target's arrays (hex string), stored in checkpoints.

    For a :class:`SymCP`: its order, weights and factors (float64, C order); for a
    dense target: its shape and entries.  ``-T`` or a reflection of the factors
    has the same norm but a different fingerprint.
    """
    h = hashlib.sha256()
    if isinstance(target, SymCP):
        h.update(f"symcp:{target.order}:{target.d}:{target.m}".encode())
        arrays = (target.weights, target.factors)
    else:
        h.update(f"dense:{tuple(target.shape)}".encode())
        arrays = (target,)
    for a in arrays:
        h.update(np.ascontiguousarray(to_numpy(a), dtype=np.float64).tobytes())
    return h.hexdigest()


def _seed_record(seed):
    if seed is None or isinstance(seed, int):
        return seed
    return "generator"


def _checksum(meta_json, st):
    h = hashlib.sha256(meta_json.encode())
    for k in _STATE_KEYS:
        a = np.ascontiguousarray(st[k])
        h.update(f"{k}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


_CHAIN0 = "0" * 64


def history_path(checkpoint):
    """The history log that goes with a checkpoint file: ``checkpoint + ".history"``."""
    return os.fspath(checkpoint) + ".history"


def _chain(prev, line):
    return hashlib.sha256(prev.encode() + line).hexdigest()


def _append_history(path, run):
    """Append the epochs not yet logged to the checkpoint's history log; return the log's new position.

    The log holds one JSON line per epoch (its per-epoch values, its iteration
    records and the keys that are not per-epoch, such as ``stopped_at``), so each
    save writes only what is new: the cost is linear in the run, not quadratic.
    Bytes past the last committed position (from a kill between this append and
    the checkpoint's rename) are overwritten.  A hash chain over the lines, kept in
    the checkpoint, detects any edit or truncation of the log.
    """
    log = getattr(run, "ck_log", None)
    fresh = log is None
    if fresh:
        log = {"epochs": 0, "iters": 0, "bytes": 0, "chain": _CHAIN0}
    h = run.hist[0]
    its = h["iterations"]
    extra = {k: v for k, v in h.items() if k not in _EPOCH_KEYS and k not in ("iterations", "polish")}
    chain, data, i = log["chain"], [], log["iters"]
    for e in range(log["epochs"], run.epoch):
        j = i
        while j < len(its) and its[j]["epoch"] <= e + 1:
            j += 1
        rec = {"values": {k: h[k][e] for k in _EPOCH_KEYS}, "iterations": its[i:j],
               "extra": extra if e == run.epoch - 1 else {}}
        line = (json.dumps(rec, default=_json_default, sort_keys=True) + "\n").encode()
        chain = _chain(chain, line)
        data.append(line)
        i = j
    blob = b"".join(data)
    fd = os.open(history_path(path), os.O_RDWR | os.O_CREAT | (os.O_TRUNC if fresh else 0), 0o666)
    with os.fdopen(fd, "r+b") as fh:
        fh.seek(log["bytes"])
        fh.write(blob)
        fh.truncate()
        fh.flush()
        os.fsync(fh.fileno())
    return {"epochs": run.epoch, "iters": i, "bytes": log["bytes"] + len(blob), "chain": chain}


def _read_history(path, log):
    """The history recorded in a checkpoint's log, verified against the chain hash ``log`` holds."""
    bad = f"history log {history_path(path)!r} of checkpoint {os.fspath(path)!r}"
    hint = "Delete both files, or pass resume=False to start afresh and overwrite them."
    if not (isinstance(log, dict) and all(isinstance(log.get(k), int) and not isinstance(log.get(k), bool)
                                          and log.get(k) >= 0 for k in ("epochs", "iters", "bytes"))
            and isinstance(log.get("chain"), str)):
        raise CheckpointError(f"checkpoint {os.fspath(path)!r} has no valid history-log record. {hint}")
    try:
        with open(history_path(path), "rb") as fh:
            blob = fh.read(log["bytes"])
    except OSError as exc:
        raise CheckpointError(f"{bad} cannot be read ({exc.strerror or exc}). {hint}") from exc
    if len(blob) != log["bytes"]:
        raise CheckpointError(f"{bad} is truncated: {len(blob)} bytes, the checkpoint recorded {log['bytes']}. "
                              f"{hint}")
    lines = blob.splitlines(keepends=True)
    chain = _CHAIN0
    for line in lines:
        chain = _chain(chain, line)
    if chain != log["chain"] or len(lines) != log["epochs"]:
        raise CheckpointError(f"{bad} was modified or corrupted: its hash chain does not match the checkpoint. "
                              f"{hint}")
    hist = _empty_history()
    for line in lines:
        rec = json.loads(line)
        for k, v in rec["values"].items():
            hist[k].append(v)
        hist["iterations"] += rec["iterations"]
        hist.update(rec["extra"])
    if len(hist["iterations"]) != log["iters"]:
        raise CheckpointError(f"{bad} holds {len(hist['iterations'])} iteration records, the checkpoint "
                              f"recorded {log['iters']}. {hint}")
    return hist


def _save_checkpoint(path, run, t0, finished=False):
    """Write the run's state atomically (temporary file, fsync, rename): a kill leaves the old file.

    The history goes to the append-only log :func:`history_path` first; the
    checkpoint then commits how much of it is valid.
    """
    st = run.state_numpy()
    info = getattr(run, "ck_info", {})
    log = _append_history(path, run)
    meta = {
        "format": CHECKPOINT_FORMAT,
        "tdcore_version": _tdcore_version(),
        "seed": info.get("seed"),
        "target_fingerprint": info.get("target_fingerprint"),
        "init_state_fingerprint": info.get("init_state_fingerprint"),
        "params": run.p.to_dict(),
        "epoch": run.epoch,
        "finished": bool(finished),
        "rng": [r.bit_generator.state for r in run.rngs],
        "history_log": log,
        "active": run.active.tolist(),
        "fresh": run.fresh.tolist(),
        "elapsed": time.perf_counter() - t0,
        "dtype": str(np.dtype(run.dtype)),
    }
    meta_json = json.dumps(meta, default=_json_default, sort_keys=True)
    checksum = _checksum(meta_json, st)
    atomic_write(path, lambda fh: np.savez(fh, meta=np.array(meta_json), checksum=np.array(checksum), **st))
    run.ck_log = log


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))


def _load_checkpoint(path):
    """Read and verify a checkpoint: every way it can be unusable is a :class:`CheckpointError` naming it."""
    bad = f"checkpoint {os.fspath(path)!r}"
    hint = "Delete it, or pass resume=False to start afresh and overwrite it."
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        reason = "empty" if os.path.getsize(path) == 0 else "not a readable .npz archive (truncated or not a checkpoint)"
        raise CheckpointError(f"{bad} cannot be read: it is {reason}. {hint}") from exc
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise CheckpointError(f"{bad} is a single .npy array, not a tdcore checkpoint (.npz archive). {hint}")
    try:
        with z:
            missing = [k for k in ("meta", "checksum") + _STATE_KEYS if k not in z.files]
            if missing:
                raise CheckpointError(f"{bad} is not a tdcore checkpoint: it lacks {', '.join(missing)}. {hint}")
            meta_json = str(z["meta"])
            checksum = str(z["checksum"])
            st = {k: z[k] for k in _STATE_KEYS}
    except CheckpointError:
        raise
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise CheckpointError(f"{bad} is truncated or corrupted ({type(exc).__name__} while reading it). "
                              f"{hint}") from exc
    if _checksum(meta_json, st) != checksum:
        raise CheckpointError(f"{bad} was modified or corrupted: its checksum does not match its content. {hint}")
    try:
        meta = json.loads(meta_json)
    except ValueError as exc:  # pragma: no cover - the checksum matched, so only a foreign writer gets here
        raise CheckpointError(f"{bad} has unreadable metadata. {hint}") from exc
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{bad} has checkpoint format {meta.get('format') if isinstance(meta, dict) else None!r}, "
                              f"this tdcore reads format {CHECKPOINT_FORMAT}. {hint}")
    return meta, st


def _init_fingerprint(init_state):
    """SHA-256 of a checked ``init_state`` (None for the random initialisation)."""
    if init_state is None:
        return None
    h = hashlib.sha256()
    for k in _STATE_KEYS:
        h.update(np.ascontiguousarray(init_state[k]).tobytes())
    return h.hexdigest()


def _check_checkpoint_matches(path, meta, st, p, dtype, seed, fingerprint, init_fp=None):
    """Refuse to resume a checkpoint of another run; say what differs."""
    bad = f"checkpoint {os.fspath(path)!r}"
    hint = "Delete it, or pass resume=False to start afresh and overwrite it."
    if meta.get("tdcore_version") != _tdcore_version():
        raise CheckpointError(f"{bad} was written by tdcore {meta.get('tdcore_version')}, this is tdcore "
                              f"{_tdcore_version()}: a resumed run would mix two versions. {hint}")
    if meta.get("seed") != _seed_record(seed):
        raise CheckpointError(f"{bad} was written with seed={meta.get('seed')!r}, this run has "
                              f"seed={_seed_record(seed)!r}: resuming would mix two runs. {hint}")
    if meta.get("target_fingerprint") != fingerprint:
        raise CheckpointError(f"{bad} was written for a different target (fingerprint "
                              f"{str(meta.get('target_fingerprint'))[:12]}..., this target {fingerprint[:12]}...): "
                              f"resuming would mix two runs. {hint}")
    if meta.get("init_state_fingerprint") != init_fp:
        what = {None: "the random initialisation"}
        raise CheckpointError(f"{bad} was started from {what.get(meta.get('init_state_fingerprint'), 'another init_state')}"
                              f", this run from {what.get(init_fp, 'an init_state')} that differs: resuming would mix "
                              f"two runs. {hint}")
    try:
        saved = Params(**meta["params"])
    except (TypeError, KeyError) as exc:
        raise CheckpointError(f"{bad} holds parameters this tdcore does not know ({exc}). {hint}") from exc
    if saved != p:
        diff = ", ".join(f"{k}: saved {v!r}, now {getattr(p, k)!r}" for k, v in saved.to_dict().items()
                         if v != getattr(p, k))
        raise CheckpointError(f"{bad} was written with different parameters ({diff}):\n  saved: {saved}\n"
                              f"  now:   {p}\n{hint}")
    if meta.get("dtype") != str(np.dtype(dtype)):
        raise CheckpointError(f"{bad} used dtype {meta.get('dtype')}, this run {np.dtype(dtype)}. {hint}")
    # structure (a checkpoint written by this code always passes; this guards hand-made files)
    epoch = meta.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch <= p.epochs:
        raise CheckpointError(f"{bad} has epoch={epoch!r}; it must be an integer in [0, epochs={p.epochs}]. {hint}")
    shapes = {"U": (1, p.d, p.m), "a": (1, p.m), "c": (1, p.m), "chat": (1, p.m), "switched": (1, p.m)}
    for k, shp in shapes.items():
        if st[k].shape != shp:
            raise CheckpointError(f"{bad}: state {k} has shape {st[k].shape}, expected {shp}. {hint}")
        if k != "switched" and not np.all(np.isfinite(st[k])):
            raise CheckpointError(f"{bad}: state {k} contains NaN or infinite entries. {hint}")
    log = meta.get("history_log")
    if not isinstance(log, dict) or log.get("epochs") != epoch:
        raise CheckpointError(f"{bad}: its history log record does not hold {epoch} epochs. {hint}")
    hist = _read_history(path, log)
    if not all(len(hist[k]) == epoch for k in _EPOCH_KEYS):  # pragma: no cover - the chain hash matched
        raise CheckpointError(f"{bad}: its history does not hold {epoch} epochs. {hint}")
    meta["history"] = [hist]
    fresh = meta.get("fresh")
    if not (isinstance(fresh, list) and len(fresh) == 1 and isinstance(fresh[0], int) and 0 <= fresh[0] < p.m):
        raise CheckpointError(f"{bad}: fresh={fresh!r} is not a column index in [0, {p.m}). {hint}")
    rng = meta.get("rng")
    if not (isinstance(rng, list) and len(rng) == 1 and isinstance(rng[0], dict)):
        raise CheckpointError(f"{bad}: its random generator state is missing. {hint}")
    el = meta.get("elapsed")
    if isinstance(el, bool) or not isinstance(el, (int, float)) or not math.isfinite(el) or el < 0:
        raise CheckpointError(f"{bad}: elapsed={el!r} is not a time in seconds. {hint}")


