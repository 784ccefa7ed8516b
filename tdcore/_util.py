"""Small helpers shared by the core modules (not part of the public API)."""

from __future__ import annotations

import contextlib
import functools
import math

import numpy as np

__all__: list[str] = []


def serial_blas(fn):
    """Run ``fn`` with one BLAS thread (when ``threadpoolctl`` is installed).

    The small kernels of the experiments have at most a few thousand rows: there
    one thread is about as fast as several, while multi-threaded OpenBLAS on a
    busy machine with few cores can be slower by an order of magnitude.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # optional dependency: run with the library's default threads
            ctx = contextlib.nullcontext()
        else:
            ctx = threadpool_limits(1, user_api="blas")
        with ctx:
            return fn(*args, **kwargs)

    return wrapper


def jsonable(o):
    """Recursively convert NumPy scalars/arrays (and tuples) to JSON types; non-finite floats to None."""
    if isinstance(o, dict):
        return {str(k): jsonable(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [jsonable(v) for v in o]
    if isinstance(o, np.ndarray):
        return jsonable(o.tolist())
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, (np.floating, float)):
        v = float(o)
        return v if math.isfinite(v) else None
    if isinstance(o, np.bool_):
        return bool(o)
    return o


def unit_columns(rng, d, k):
    """``k`` directions uniform on the unit sphere of ``R^d``, as the columns of a ``(d, k)`` array.

    Drawn as normalised Gaussian columns from the NumPy generator ``rng`` (on the
    host, so that every backend sees the same stream).
    """
    X = rng.standard_normal((d, k))
    return X / np.linalg.norm(X, axis=0, keepdims=True)


def target_info(target):
    """``(d, order, ||T*||^2)`` of a SymCP or dense target (validated by ``check_target``)."""
    from ._tensor import SymCP, check_target

    target = check_target(target)
    if isinstance(target, SymCP):
        return target.d, target.order, float(target.inner(target))
    return target.shape[0], target.ndim, float(np.sum(np.asarray(target, dtype=float) ** 2))
