"""Loading and checking a user's own tensor: a dense ``.npy``, a factored ``.npz``, or moment data.

Three inputs become a target of :func:`tdcore.algorithm1` / :func:`tdcore.decompose`
(the entry ``python -m tdcore decompose`` reads them with :func:`load_target`):

* ``kind="dense"``: a ``.npy`` file holding a dense symmetric array of shape
  ``(d,) * l``, ``l >= 2`` (checked: real, finite, symmetric, non-zero);
* ``kind="factored"``: a ``.npz`` file with arrays ``weights`` (shape ``(m,)``)
  and ``factors`` (shape ``(d, m)``), and the order either stored as ``order``
  or passed; any size, the ``d^l`` array is never formed.  The model files that
  ``python -m tdcore run`` and ``decompose`` write are of this kind;
* ``kind="moments"``: a ``.npy`` file holding an ``n x d`` data matrix (one sample
  per row); the target is the empirical moment
  ``(1/n) sum_k x_k^{(x) l}`` of :func:`tdcore.moment_tensor`, held as a SymCP with
  ``n`` components.

Memory of the moment input (``n`` samples in dimension ``d``, order ``l``):

* held with ``n`` components (``dense=False``, or ``"auto"`` when the dense
  array is not the cheaper form): the file is memory-mapped and copied once,
  in blocks of samples, into the SymCP's ``d x n`` factor matrix, ``8 n d``
  bytes in float64 (800 MB at ``n = 10^6``, ``d = 100``), plus blocks of at
  most ``chunk_bytes`` (``DEFAULT_CHUNK_BYTES``, 64 MiB) for the norms and
  inner products (:mod:`tdcore._gram`);
* as the dense array (``dense=True``, or ``"auto"`` when ``d^l`` is small: at
  least twice cheaper to contract than the ``n`` components and at most 32 MiB,
  e.g. ``d <= 161`` at order 3 -- the rule by which the fit itself contracts the
  dense array, ``tdcore._objective.dense_is_cheaper``): accumulated block by
  block from the memory-mapped file, so that the arrays held are the ``d^l``
  result and one block of rows (8 MiB by default) plus at most 64 MiB of
  temporaries, whatever ``n``.  The file's pages are read once; the operating
  system may keep them cached (they count in the resident size, and are
  released under memory pressure).

Every failure raises :class:`InputError` (a ``ValueError``) or ``TypeError`` whose
message begins with the file name and says what is wrong, before any fit.
"""

from __future__ import annotations

import json
import os
import zipfile

import numpy as np

from ._validate import check_bool, check_int, check_memory, check_nonzero_target

__all__ = ["InputError", "load_target", "compact_target", "default_m", "model_summary", "INPUT_KINDS"]

#: The kinds of input :func:`load_target` reads.
INPUT_KINDS = ("dense", "factored", "moments")


class InputError(ValueError):
    """A user's tensor file that cannot be used; the message names the file and the problem."""


def _fail(path, msg, exc=InputError):
    return exc(f"{path}: {msg}")


def _check_file(path, suffix, what):
    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path (str or os.PathLike), got {path!r} of type {type(path).__name__}")
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not path:
        raise InputError("path must be a non-empty file path")
    if not os.path.exists(path):
        raise _fail(path, "no such file")
    if os.path.isdir(path):
        raise _fail(path, "is a directory, not a file")
    if not os.access(path, os.R_OK):
        raise _fail(path, "exists but is not readable", PermissionError)
    if not path.lower().endswith(suffix):
        raise _fail(path, f"{what} must be a {suffix} file (got the suffix {os.path.splitext(path)[1] or '(none)'!r})")
    return path


def _load_npy(path, mmap):
    with open(path, "rb") as fh:
        magic = fh.read(6)
    if magic != b"\x93NUMPY":
        raise _fail(path, "is not a valid .npy file (no NumPy header; write it with numpy.save)")
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise _fail(path, "holds Python objects (a pickled or object array); only numeric arrays are "
                              "read (allow_pickle=False)") from None
        raise _fail(path, f"is not a valid .npy file ({exc})") from None
    except (OSError, EOFError) as exc:
        raise _fail(path, f"is not a valid .npy file ({exc})") from None


def _check_numeric(path, name, arr):
    if arr.dtype == np.bool_ or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise _fail(path, f"{name} must be a real numeric array, got dtype {arr.dtype}", TypeError)


def _check_order_arg(order):
    return None if order is None else check_int("order", order, minimum=2)


def _load_dense(path, order):
    from ._tensor import check_target

    T = _load_npy(path, mmap=False)
    if T.ndim < 2:
        raise _fail(path, f"a dense tensor must have order >= 2 (ndim >= 2), got an array of shape {T.shape}"
                          + (" (an n x d data matrix goes in with --moments / moments=True)" if T.ndim == 2 else ""))
    if len(set(T.shape)) != 1:
        hint = (" (a data matrix of samples goes in with --moments / moments=True)" if T.ndim == 2 else "")
        raise _fail(path, f"a dense tensor must have equal dimensions (d,)*l, got shape {T.shape}{hint}")
    _check_numeric(path, "the array", T)
    if order is not None and order != T.ndim:
        raise _fail(path, f"holds an order-{T.ndim} tensor but order={order} was asked")
    if not np.all(np.isfinite(T)):
        bad = np.unravel_index(int(np.argmax(~np.isfinite(T))), T.shape)
        raise _fail(path, f"contains NaN or infinite entries (first at index {tuple(int(i) for i in bad)})")
    try:
        T = check_target(T, name="the array")
        check_nonzero_target(T, name="the tensor")
    except (ValueError, TypeError) as exc:
        raise _fail(path, str(exc), type(exc) if isinstance(exc, TypeError) else InputError) from None
    return T, {"kind": "dense", "path": path, "d": int(T.shape[0]), "order": int(T.ndim),
               "components": None, "n": None}


def _load_factored(path, order):
    from ._tensor import SymCP

    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic not in (b"PK\x03\x04", b"PK\x05\x06"):  # a zip archive (the second: an empty one)
        raise _fail(path, "is not a valid .npz file (not a zip archive; write it with numpy.savez)")
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            missing = [k for k in ("weights", "factors") if k not in keys]
            if missing:
                raise _fail(path, f"a factored tensor needs arrays 'weights' (m,) and 'factors' (d, m); missing "
                                  f"{', '.join(repr(k) for k in missing)} (found: {sorted(keys) or 'none'})")
            w, F = z["weights"], z["factors"]
            stored = z["order"] if "order" in keys else None
    except InputError:
        raise
    except ValueError as exc:
        if "pickle" in str(exc).lower():
            raise _fail(path, "holds Python objects (pickled or object arrays); only numeric arrays are read "
                              "(allow_pickle=False)") from None
        raise _fail(path, f"is not a valid .npz file ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile, KeyError) as exc:
        raise _fail(path, f"is not a valid .npz file ({exc})") from None
    if stored is not None:
        if stored.shape != () or stored.dtype == np.bool_ or not np.issubdtype(stored.dtype, np.integer):
            raise _fail(path, f"'order' must be a single integer >= 2, got {stored!r}")
        stored = int(stored)
        if stored < 2:
            raise _fail(path, f"'order' must be an integer >= 2, got {stored}")
        if order is not None and order != stored:
            raise _fail(path, f"stores order={stored} but order={order} was asked")
        order = stored
    if order is None:
        raise _fail(path, "stores no 'order': pass the tensor order (--order L / order=L)")
    _check_numeric(path, "'weights'", w)
    _check_numeric(path, "'factors'", F)
    if F.ndim != 2:
        raise _fail(path, f"'factors' must be a 2-D array of shape (d, m), got shape {F.shape}")
    if w.ndim != 1 or w.shape[0] != F.shape[1]:
        raise _fail(path, f"'weights' must have shape (m,) = ({F.shape[1]},) to match 'factors' of shape "
                          f"{F.shape}, got shape {w.shape}")
    for name, a in (("'weights'", w), ("'factors'", F)):
        if not np.all(np.isfinite(a)):
            raise _fail(path, f"{name} contains NaN or infinite entries")
    try:
        T = SymCP(w, F, order)
        check_nonzero_target(T, name="the tensor")
    except (ValueError, TypeError) as exc:
        raise _fail(path, str(exc), type(exc) if isinstance(exc, TypeError) else InputError) from None
    return T, {"kind": "factored", "path": path, "d": T.d, "order": T.order, "components": T.m, "n": None}


def _dense_moment_is_cheaper(n, d, order):
    """The rule of ``tdcore._objective.dense_is_cheaper`` for a moment tensor of ``n`` samples.

    The dense ``d^order`` array is used when it is at least twice cheaper to
    contract than the ``n`` components and fits in half of ``DEFAULT_CHUNK_BYTES``.
    """
    from ._gram import DEFAULT_CHUNK_BYTES

    return 2 * d ** order <= n * d and 8 * d ** order <= DEFAULT_CHUNK_BYTES // 2


def _blocks(path, X, chunk, dtype, mean=None):
    """Blocks of rows of ``X`` as ``dtype``, checked finite (the error names the first bad row)."""
    n = X.shape[0]
    for s in range(0, n, chunk):
        blk = np.asarray(X[s:s + chunk], dtype=dtype)
        fin = np.isfinite(blk)
        if not fin.all():
            bad = s + int(np.argmax(~fin.all(axis=1)))
            raise _fail(path, f"the data contain NaN or infinite entries (first in row {bad})")
        yield s, blk if mean is None else blk - mean


def _dense_moment(path, X, order, center, chunk, dtype):
    """``(1/n) sum_k x_k^{(x) order}`` as a dense array, accumulated over blocks of rows of ``X``.

    Memory: the ``d^order`` result, one block of rows and the temporaries of
    :meth:`SymCP.to_dense` (at most ``DEFAULT_CHUNK_BYTES``); no copy of ``X``.
    """
    from ._tensor import SymCP

    n, d = X.shape
    mean = None
    if center:
        total = np.zeros(d, dtype=np.float64)
        for _, blk in _blocks(path, X, chunk, dtype):
            total += blk.sum(axis=0, dtype=np.float64)
        mean = (total / n).astype(dtype)
    out = np.zeros((d,) * order, dtype=dtype)
    for _, blk in _blocks(path, X, chunk, dtype, mean):
        if np.any(blk):  # a block of zero rows adds nothing (and SymCP refuses nothing to scale)
            out += SymCP(np.full(blk.shape[0], 1.0 / n, dtype=dtype), blk.T, order).to_dense()
    return out


def _load_moments(path, order, center, chunk, dense):
    from ._tensor import moment_tensor

    if order is None:
        raise _fail(path, "the moment tensor needs its order: pass --order L / order=L (e.g. 3)")
    X = _load_npy(path, mmap=True)
    if X.ndim != 2:
        raise _fail(path, f"moment data must be a 2-D array of shape (n, d), one sample per row, got shape {X.shape}")
    n, d = X.shape
    if n < 1 or d < 1:
        raise _fail(path, f"moment data must have n >= 1 rows and d >= 1 columns, got shape {X.shape}")
    _check_numeric(path, "the data matrix", X)
    dtype = X.dtype if np.issubdtype(X.dtype, np.floating) and X.dtype.itemsize >= 4 else np.dtype(np.float64)
    info = {"kind": "moments", "path": path, "d": int(d), "order": int(order), "components": int(n),
            "n": int(n), "center": bool(center)}
    as_dense = dense is True or (dense == "auto" and _dense_moment_is_cheaper(n, d, order))
    if as_dense:
        check_memory("the dense moment tensor", 3 * dtype.itemsize * d ** order,
                     detail=f"the {d}^{order} array of the moments of {path} and its blocks")
        if chunk is None:
            chunk = max(1, 2**23 // (d * dtype.itemsize))
        T = _dense_moment(path, X, order, center, chunk, dtype)
        info["held_as"] = "dense"
    else:
        check_memory("the moment tensor", dtype.itemsize * n * d,
                     detail=f"its d x n = {d} x {n} factor matrix, a copy of {path}")
        try:
            T = moment_tensor(X, order, center=center, chunk=chunk)
        except (ValueError, TypeError) as exc:
            raise _fail(path, str(exc).replace("X contains", "the data contain"),
                        type(exc) if isinstance(exc, TypeError) else InputError) from None
        info["held_as"] = "factored"
    try:
        check_nonzero_target(T, name="the moment tensor")
    except ValueError as exc:
        raise _fail(path, f"{exc} (for example every sample is zero, or a centred moment of identical samples)") \
            from None
    return T, info


def compact_target(target):
    """The dense array of a SymCP target when it is the cheaper form (``tdcore._objective.dense_is_cheaper``).

    A tensor of many components in few dimensions (a moment tensor, say) is
    otherwise re-summed over all its components by every norm the fit takes;
    built once here (in blocks, at most ``DEFAULT_CHUNK_BYTES`` of temporaries)
    it is contracted at ``O(d^l)`` per step, which the fit would do anyway.
    Other targets are returned unchanged.
    """
    from ._objective import dense_is_cheaper
    from ._tensor import SymCP

    if isinstance(target, SymCP) and dense_is_cheaper(target):
        return target.to_dense()
    return target


def load_target(path, *, order=None, moments=False, center=False, chunk=None, dense=False):
    """Read a user's tensor from a file, checked, as a target of :func:`tdcore.decompose`.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.npy`` file (a dense symmetric array, or with ``moments=True`` an
        ``n x d`` data matrix) or a ``.npz`` file with ``weights`` and ``factors``
        (and optionally ``order``).
    order : int, optional
        Tensor order ``l >= 2``.  Required for moments and for a ``.npz``
        without ``order``; otherwise, when given, it must agree with the file.
    moments : bool
        Read ``path`` as data and return its empirical ``order``-th moment
        ``(1/n) sum_k x_k^{(x) order}`` (:func:`tdcore.moment_tensor`), held with
        ``n`` components.  The file is memory-mapped: the only full-size copy is
        the ``d x n`` factor matrix (``8 n d`` bytes in float64).
    center : bool
        With ``moments``: subtract the sample mean first (the central moment).
    chunk : int, optional
        With ``moments``: samples per block of the pass over the data (default:
        blocks of about 8 MiB).  The tensor does not depend on it: bit for bit
        in factored form without ``center``, to rounding otherwise.
    dense : bool or "auto"
        With ``moments``: False (default) holds the moment with ``n``
        components; True accumulates the dense ``d^order`` array instead, block
        by block from the (memory-mapped) file, with no copy of the data;
        ``"auto"`` does so when the dense array is the cheaper form (at least
        twice cheaper to contract than the ``n`` components and at most 32 MiB,
        the rule the fit applies anyway, ``tdcore._objective.dense_is_cheaper``).
        The command line uses ``"auto"``.

    Returns
    -------
    target : SymCP or ndarray
        A :class:`tdcore.SymCP` (factored, moments) or a dense float array.
    info : dict
        ``kind`` (``"dense"``, ``"factored"``, ``"moments"``), ``path``, ``d``,
        ``order``, ``components`` (None for dense) and, for moments, ``n`` (the
        samples), ``center`` and ``held_as`` (``"factored"`` or ``"dense"``).

    Raises
    ------
    ValueError
        (``tdcore._inputs.InputError``, a subclass) for a missing, unreadable or malformed file, a wrong
        shape, NaN or infinite entries, a dense array that is not symmetric, a
        tensor of zero norm, or an order that disagrees with the file; the
        message begins with the file name.
    TypeError
        For a non-numeric array or an argument of the wrong type.
    MemoryError
        When the moment tensor's factor copy is above the memory limit.

    Examples
    --------
    >>> import numpy as np, os, tempfile
    >>> X = np.random.default_rng(0).standard_normal((1000, 4))
    >>> p = os.path.join(tempfile.mkdtemp(), "X.npy"); np.save(p, X)
    >>> T, info = load_target(p, order=3, moments=True)
    >>> info["kind"], T.d, T.m, T.order
    ('moments', 4, 1000, 3)
    """
    order = _check_order_arg(order)
    moments = check_bool("moments", moments)
    center = check_bool("center", center)
    if chunk is not None:
        chunk = check_int("chunk", chunk, minimum=1)
    if not (isinstance(dense, bool) or (isinstance(dense, str) and dense == "auto")):
        raise TypeError(f"dense must be True, False or 'auto', got {dense!r}")
    if center and not moments:
        raise ValueError("center=True applies to moment data only (moments=True)")
    if moments:
        path = _check_file(path, ".npy", "moment data")
        return _load_moments(path, order, center, chunk, dense)
    if isinstance(path, (str, os.PathLike)) and not isinstance(path, bool) \
            and os.fspath(path).lower().endswith(".npz"):
        path = _check_file(path, ".npz", "a factored tensor")
        return _load_factored(path, order)
    path = _check_file(path, ".npy", "a dense tensor (.npy) or a factored one (.npz)")
    return _load_dense(path, order)


def default_m(info):
    """The default number of components of the fit: ``2 min(components, d)``, ``2 d`` for a dense input.

    Over-parameterised by a factor of two over the rank when it is known and at
    most ``d``; a moment tensor of ``n`` samples counts as rank ``d`` (a target
    of rank above ``d`` needs a larger ``m`` passed explicitly).
    """
    d = int(info["d"])
    r = info.get("components")
    if info.get("kind") != "factored" or r is None:
        r = d
    return 2 * max(1, min(int(r), d))


def model_summary(model, target, *, elapsed=None, info=None, method=None, extra=None):
    """The summary of a fit: relative error, components kept, parameters, time (JSON-serialisable).

    Parameters
    ----------
    model : SymCP
        The fitted model.
    target : SymCP or ndarray
        The tensor it fits.
    elapsed : float, optional
        Seconds of the fit.
    info : dict, optional
        The ``info`` of :func:`load_target` (copied into ``input``).
    method : str, optional
        How the model was computed.
    extra : dict, optional
        Further JSON-serialisable entries.

    Returns
    -------
    dict
        ``rel_error``, ``components`` (non-zero weights kept), ``parameters``
        (``components * (d + 1)``: a weight and a ``d``-vector each), ``d``,
        ``order``, ``elapsed_s``, ``method``, ``input``, and ``extra``'s entries.
    """
    from ._tensor import rel_error

    w = np.asarray(model.weights)
    kept = int(np.count_nonzero(w))
    out = {"rel_error": float(rel_error(model, target)), "components": kept,
           "parameters": kept * (model.d + 1), "d": model.d, "order": model.order,
           "elapsed_s": None if elapsed is None else float(elapsed), "method": method,
           "input": None if info is None else dict(info)}
    if extra:
        out.update(extra)
    json.dumps(out)  # refuse a summary that the CLI could not print as JSON
    return out
