"""Array backends: NumPy everywhere, CuPy where a CUDA GPU is usable.

Algorithm code never branches on the library: it asks a :class:`Backend` for its
array module ``xp`` and writes ``xp.matmul``, ``xp.sqrt`` and so on.  Random
numbers are always drawn on the host with NumPy and moved to the device, so a
seed gives the same stream on every backend (this is what makes NumPy and CuPy
runs comparable to 1e-8).

Conversion rule (the same at every public entry):

* a function with a ``backend`` argument (``algorithm1``, ``algorithm1_batch``,
  ``make_target_operator``) computes on that backend and moves every input
  there, from whichever side it comes: targets, models and initial states may
  be NumPy or CuPy arrays;
* a function without one (``rel_error``, ``inner``, ``norm``, ``fit_objective``,
  ``objective``, ``SymCP(...)``) computes on the device as soon as one of its
  array inputs is a CuPy array, uploading the host ones; with only NumPy inputs
  it stays on the host.  Measurements come back as Python floats, arrays on the
  side they were computed on.

Nothing is moved back to the host implicitly; :func:`to_numpy` is the one way.

Detection is careful: ``import cupy`` succeeds on machines without CUDA and only
fails at first use, so ``auto`` asks ``cupy.cuda.is_available()`` and then runs
one tiny kernel before trusting the GPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ._validate import check_choice

__all__ = ["Backend", "get_backend", "backend_info", "to_numpy", "BACKENDS"]

BACKENDS = ("auto", "numpy", "cupy")


@dataclass(frozen=True)
class Backend:
    """An array library and the name it goes by.

    Attributes
    ----------
    name : str
        ``"numpy"`` or ``"cupy"``.
    xp : module
        The array module (``numpy`` or ``cupy``).
    """

    name: str
    xp: object

    def asarray(self, a, dtype=None):
        """Move ``a`` to this backend from either side (a no-op for arrays already there)."""
        return asarray_on(self.xp, a, dtype)

    def to_numpy(self, a):
        """Return ``a`` as a NumPy array (copying from the GPU when needed)."""
        return to_numpy(a)

    def synchronize(self):
        """Wait for queued GPU work (no-op on NumPy); used by benchmarks."""
        if self.name == "cupy":
            self.xp.cuda.Stream.null.synchronize()


def to_numpy(a):
    """Return ``a`` as a NumPy array; CuPy arrays are copied to the host."""
    if isinstance(a, np.ndarray):
        return a
    get = getattr(a, "get", None)
    if callable(get) and type(a).__module__.startswith("cupy"):
        return get()
    return np.asarray(a)


@lru_cache(maxsize=1)
def _probe_cupy():
    """Return ``(usable, reason, details)`` for CuPy on this machine."""
    try:
        import cupy  # noqa: F401
    except ModuleNotFoundError:
        return False, "CuPy is not installed (pip install tdcore[gpu] on a machine with CUDA 12)", {}
    except Exception as exc:  # a broken install can raise anything
        return False, f"cupy is installed but cannot be imported ({type(exc).__name__}: {exc})", {}
    try:
        if not cupy.cuda.is_available():
            return False, "cupy is installed but cupy.cuda.is_available() is False (no usable CUDA device)", {
                "cupy": cupy.__version__
            }
        n = cupy.cuda.runtime.getDeviceCount()
        x = cupy.arange(4, dtype=cupy.float64)
        # 14 is exact in any summation order; allow a few ulps for reductions that round differently
        ok = abs(float((x @ x).get()) - 14.0) <= 1e-12
        if not ok:
            return False, "cupy returned a wrong result for a test product", {"cupy": cupy.__version__}
        props = cupy.cuda.runtime.getDeviceProperties(0)
        name = props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])
        return True, f"CUDA device found: {name} ({n} device(s))", {
            "cupy": cupy.__version__,
            "device": name,
            "devices": n,
            "cuda_runtime": cupy.cuda.runtime.runtimeGetVersion(),
        }
    except Exception as exc:
        return False, f"cupy is installed but CUDA failed at first use ({type(exc).__name__}: {exc})", {}


def backend_info():
    """Describe the backends detected on this machine and which ``auto`` picks.

    Returns
    -------
    dict
        Keys ``auto`` (the backend ``"auto"`` resolves to), ``env`` (the value of
        ``TDCORE_BACKEND`` if set), ``numpy`` (version), ``cupy_usable`` (bool),
        ``cupy_reason`` (why) and ``cupy`` (version and device details if any).
    """
    usable, reason, details = _probe_cupy()
    env = os.environ.get("TDCORE_BACKEND") or None
    return {
        "numpy": np.__version__,
        "cupy_usable": usable,
        "cupy_reason": reason,
        "cupy": details,
        "env": env,
        "auto": "cupy" if usable else "numpy",
    }


def get_backend(backend="auto"):
    """Resolve a backend name to a :class:`Backend`.

    Parameters
    ----------
    backend : {"auto", "numpy", "cupy"} or Backend
        ``"auto"`` uses ``TDCORE_BACKEND`` when that environment variable is set,
        otherwise CuPy when a GPU is usable and NumPy when not.

    Raises
    ------
    ValueError
        For an unknown name, or ``"cupy"`` requested on a machine where CuPy
        cannot use a GPU (the message says why).
    """
    if isinstance(backend, Backend):
        return backend
    if not isinstance(backend, str):
        raise TypeError(f"backend must be one of {BACKENDS} or a Backend, got {backend!r}")
    check_choice("backend", backend, BACKENDS)
    if backend == "auto":
        env = os.environ.get("TDCORE_BACKEND")
        if env:
            check_choice("TDCORE_BACKEND", env, BACKENDS)
            backend = env
    if backend == "auto":
        backend = "cupy" if _probe_cupy()[0] else "numpy"
    if backend == "numpy":
        return Backend("numpy", np)
    usable, reason, _ = _probe_cupy()
    if not usable:
        raise ValueError(f"backend='cupy' was requested but CuPy cannot use a GPU here: {reason}. "
                         "Use backend='numpy' or 'auto'.")
    import cupy

    return Backend("cupy", cupy)


def is_device(a):
    """True for a CuPy array."""
    return type(a).__module__.startswith("cupy")


def xp_of(*arrays):
    """The array module to compute on: cupy when any of ``arrays`` is a CuPy array, numpy otherwise."""
    if any(is_device(a) for a in arrays):
        import cupy

        return cupy
    return np


def asarray_on(xp, a, dtype=None):
    """``a`` as an array of module ``xp``, moved across (host <-> device) when needed."""
    if xp is np:
        return np.asarray(to_numpy(a), dtype=dtype)
    return xp.asarray(a, dtype=dtype)


def on_common(*arrays):
    """``(xp, arrays...)``: the arrays on one side by the conversion rule (device if any is there)."""
    xp = xp_of(*arrays)
    return (xp,) + tuple(asarray_on(xp, a) for a in arrays)
