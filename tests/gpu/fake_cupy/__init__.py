"""A strict CPU emulation of the parts of CuPy that tdcore uses (tests only).

It behaves as CuPy does where a GPU path usually breaks, and counts what costs
time on a real GPU:

* ``fake_cupy.ndarray`` wraps a NumPy array but refuses implicit conversion
  (``np.asarray(x)`` raises ``TypeError`` as CuPy does); ``x.get()`` and
  ``cupy.asnumpy(x)`` are the only ways back to the host, and ``float(x)``,
  ``int(x)``, ``bool(x)``, ``x.item()`` and ``x.tolist()`` read a value back.
* Mixing host and device arrays in one operation (``x + np_array``,
  ``cupy.matmul(np_array, x)``) raises ``TypeError`` as CuPy does; Python and
  NumPy *scalars* are allowed.
* ``stats`` counts ``syncs`` (every device->host read and explicit stream
  synchronisation), ``d2h`` / ``h2d`` transfers and their bytes, and ``launches``
  (one per operation that produces or writes an array; views are free, and a
  ``cupy.fuse`` function is one launch however many operations it holds).
* With ``config["reorder"]`` (on by default) reductions and matrix products sum
  in another order (the summed axis reversed) and every float result of a
  reduction gets a relative perturbation of at most ``config["noise"]``
  (2e-16 by default, drawn from a generator seeded by the exact result, so
  that equal inputs round equally, as on a GPU), as a GPU's tree-shaped
  reductions and GEMM kernels do.

Everything else is NumPy.  ``install()`` / ``uninstall()`` put it in
``sys.modules["cupy"]``; ``tests/gpu/conftest.py`` does that for the CuPy-marked
tests when real CuPy is absent.
"""

from __future__ import annotations

import contextlib
import sys
import types
import zlib

import numpy as _np

__version__ = "0.0-emulator"

config = {"reorder": True, "noise": 2e-16, "seed": 12345}
stats = {"syncs": 0, "d2h": 0, "h2d": 0, "d2h_bytes": 0, "h2d_bytes": 0, "launches": 0}
_state = {"fused": 0}

_MIX = ("Unsupported type {}: CuPy does not mix host (NumPy) and device arrays in one operation; "
        "move it with cupy.asarray() or .get() first")


def reset_stats():
    """Zero the counters."""
    for k in stats:
        stats[k] = 0


def snapshot():
    return dict(stats)


def _launch(n=1):
    if not _state["fused"]:
        stats["launches"] += n


def _sync_read(a):
    stats["syncs"] += 1
    stats["d2h"] += 1
    stats["d2h_bytes"] += int(a.nbytes)


def _upload(a):
    stats["h2d"] += 1
    stats["h2d_bytes"] += int(_np.asarray(a).nbytes)


def _noisy(x):
    """Perturb a float reduction result by a relative amount <= config['noise']."""
    eps = config["noise"]
    if not config["reorder"] or not eps:
        return x
    x = _np.asarray(x)
    if not _np.issubdtype(x.dtype, _np.floating):
        return x
    # deterministic, as a GPU's kernels are: the same inputs give the same rounding (replays repeat)
    seed = zlib.crc32(_np.ascontiguousarray(x).tobytes()) ^ config["seed"]
    u = _np.random.default_rng(seed).uniform(-1.0, 1.0, size=x.shape)
    return (x * (1.0 + eps * u)).astype(x.dtype)


def _unwrap(v, *, allow_host=False):
    """The NumPy array behind a device array; refuse host arrays (as CuPy does)."""
    if isinstance(v, ndarray):
        return v._a
    if isinstance(v, _np.ndarray):
        if allow_host:
            return v
        raise TypeError(_MIX.format(type(v)))
    if isinstance(v, (list, tuple)):
        return type(v)(_unwrap(x, allow_host=allow_host) for x in v)
    return v  # Python / NumPy scalars, None, slices, dtypes


def _wrap(r):
    if isinstance(r, _np.ndarray):
        return ndarray(r)
    if isinstance(r, _np.generic) and not isinstance(r, (_np.str_, _np.bytes_)):
        return ndarray(_np.asarray(r))  # CuPy returns 0-d device arrays, never host scalars
    if isinstance(r, tuple):
        return tuple(_wrap(x) for x in r)
    if isinstance(r, list):
        return [_wrap(x) for x in r]
    return r


class ndarray:
    """Device array (a NumPy array that refuses to leave the 'device' implicitly)."""

    __array_priority__ = 10000
    __array_ufunc__ = None  # NumPy defers to our reflected operators, or refuses
    __hash__ = None

    def __init__(self, a):
        self._a = a

    # -- refusing implicit host conversion -------------------------------------------
    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct "
                        "a NumPy array explicitly.")

    def __array_function__(self, func, types_, args, kwargs):
        try:
            impl = __getattr__(func.__name__)
        except AttributeError:
            return NotImplemented
        return impl(*args, **kwargs)

    def get(self, stream=None, order="C", out=None):
        _sync_read(self._a)
        return self._a.copy()

    def item(self):
        _sync_read(self._a)
        return self._a.item()

    def tolist(self):
        _sync_read(self._a)
        return self._a.tolist()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if not _np.issubdtype(self.dtype, _np.integer):
            raise TypeError("only integer arrays can be used as an index")
        return int(self.item())

    def __bool__(self):
        if self._a.size != 1:
            raise ValueError("The truth value of an array with more than one element is ambiguous.")
        return bool(self.item())

    def __complex__(self):
        return complex(self.item())

    def __repr__(self):
        return f"fake_cupy.ndarray(shape={self.shape}, dtype={self.dtype})"

    __str__ = __repr__

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        for i in range(len(self._a)):
            yield ndarray(self._a[i])

    # -- attributes (no kernel) ------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    itemsize = property(lambda self: self._a.itemsize)
    strides = property(lambda self: self._a.strides)
    flags = property(lambda self: self._a.flags)
    device = property(lambda self: _Device(0))
    T = property(lambda self: ndarray(self._a.T))
    base = property(lambda self: None if self._a.base is None else ndarray(self._a.base))

    @property
    def data(self):
        return types.SimpleNamespace(ptr=self._a.__array_interface__["data"][0])

    # -- views -----------------------------------------------------------------------
    def reshape(self, *shape, order="C"):
        r = self._a.reshape(*shape, order=order)
        if not _np.shares_memory(r, self._a):
            _launch()
        return ndarray(r)

    def view(self, dtype=None):
        return ndarray(self._a.view() if dtype is None else self._a.view(dtype))

    def swapaxes(self, a, b):
        return ndarray(self._a.swapaxes(a, b))

    def transpose(self, *axes):
        return ndarray(self._a.transpose(*axes))

    def diagonal(self, offset=0, axis1=0, axis2=1):
        return ndarray(self._a.diagonal(offset, axis1, axis2))

    def squeeze(self, axis=None):
        return ndarray(self._a.squeeze(axis))

    def __getitem__(self, key):
        key = _index(key)
        r = self._a[key]
        if not (isinstance(r, _np.ndarray) and _np.shares_memory(r, self._a)):
            _launch()  # advanced indexing gathers in a kernel
        return _wrap(r)

    def __setitem__(self, key, value):
        key = _index(key)
        self._a[key] = _unwrap(value)
        _launch()

    # -- kernels ---------------------------------------------------------------------
    def copy(self, order="C"):
        _launch()
        return ndarray(self._a.copy(order=order))

    def astype(self, dtype, copy=True, **kw):
        if not copy and _np.dtype(dtype) == self.dtype:
            return self
        _launch()
        return ndarray(self._a.astype(dtype))

    def ravel(self):
        return self.reshape(-1)

    def flatten(self):
        return self.copy().reshape(-1)

    def fill(self, v):
        _launch()
        self._a.fill(_unwrap(v))

    def sum(self, axis=None, dtype=None, out=None, keepdims=False):
        return sum(self, axis=axis, dtype=dtype, keepdims=keepdims)

    def mean(self, axis=None, dtype=None, keepdims=False):
        n = self._a.size if axis is None else _np.prod([self._a.shape[a] for a in _np.atleast_1d(axis)])
        return sum(self, axis=axis, dtype=dtype, keepdims=keepdims) / n

    def max(self, axis=None, keepdims=False):
        return __getattr__("max")(self, axis=axis, keepdims=keepdims)

    def min(self, axis=None, keepdims=False):
        return __getattr__("min")(self, axis=axis, keepdims=keepdims)

    def argmin(self, axis=None):
        return __getattr__("argmin")(self, axis=axis)

    def argmax(self, axis=None):
        return __getattr__("argmax")(self, axis=axis)

    def any(self, axis=None, keepdims=False):
        return __getattr__("any")(self, axis=axis, keepdims=keepdims)

    def all(self, axis=None, keepdims=False):
        return __getattr__("all")(self, axis=axis, keepdims=keepdims)

    def dot(self, other):
        return matmul(self, other)

    def __matmul__(self, other):
        return matmul(self, other)

    def __rmatmul__(self, other):
        return matmul(other, self)

    def __imatmul__(self, other):
        return matmul(self, other)


def _index(key):
    """Unwrap device arrays in an index; host index arrays are uploaded (counted)."""
    if isinstance(key, tuple):
        return tuple(_index(k) for k in key)
    if isinstance(key, ndarray):
        return key._a
    if isinstance(key, _np.ndarray):
        _upload(key)
        return key
    if isinstance(key, list):
        _upload(_np.asarray(key))
    return key


def _binop(name, reflected=False, inplace=False):
    op = getattr(_np.ndarray, name)

    def method(self, other):
        if isinstance(other, _np.ndarray):
            raise TypeError(_MIX.format(type(other)))
        if not isinstance(other, (ndarray, int, float, bool, complex, _np.generic)):
            return NotImplemented
        o = other._a if isinstance(other, ndarray) else other
        _launch()
        r = op(self._a, o)
        if r is NotImplemented:
            return r
        if inplace:
            return self
        return _wrap(r)

    method.__name__ = name
    return method


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "and", "or", "xor", "lshift", "rshift"):
    setattr(ndarray, f"__{_name}__", _binop(f"__{_name}__"))
    setattr(ndarray, f"__r{_name}__", _binop(f"__r{_name}__", reflected=True))
    setattr(ndarray, f"__i{_name}__", _binop(f"__i{_name}__", inplace=True))
for _name in ("lt", "le", "gt", "ge", "eq", "ne"):
    setattr(ndarray, f"__{_name}__", _binop(f"__{_name}__"))


def _unop(name):
    op = getattr(_np.ndarray, name)

    def method(self):
        _launch()
        return ndarray(op(self._a))

    return method


for _name in ("__neg__", "__pos__", "__abs__", "__invert__"):
    setattr(ndarray, _name, _unop(_name))


# -- module functions -------------------------------------------------------------------
def _flip_axes(a, axes):
    for ax in axes:
        a = _np.flip(a, axis=ax)
    return a


def sum(a, axis=None, dtype=None, out=None, keepdims=False):  # noqa: A001
    x = _unwrap(a)
    x = _np.asarray(x)
    _launch()
    if config["reorder"] and x.ndim:
        axes = range(x.ndim) if axis is None else [ax % x.ndim for ax in _np.atleast_1d(axis)]
        x = _flip_axes(x, axes)
    r = _np.sum(x, axis=axis, dtype=dtype, keepdims=keepdims)
    return _wrap(_np.asarray(_noisy(r)))


def matmul(a, b, out=None):
    x, y = _unwrap(a), _unwrap(b)
    _launch()
    if config["reorder"] and _np.ndim(x) >= 1 and _np.ndim(y) >= 1:
        # the contracted index in reverse order (another summation order, as a GEMM kernel's)
        x = _np.flip(x, axis=-1)
        y = _np.flip(y, axis=0 if _np.ndim(y) == 1 else -2)
        x, y = _np.ascontiguousarray(x), _np.ascontiguousarray(y)
    r = _np.asarray(_noisy(_np.matmul(x, y)))
    if out is not None:  # CuPy writes into out and returns it
        o = _unwrap(out)
        if o.shape != r.shape:
            raise ValueError(f"fake_cupy.matmul: out has shape {o.shape}, the product {r.shape}")
        o[...] = r
        return out
    return _wrap(r)


dot = matmul


def einsum(spec, *ops, **kw):
    arrs = [_unwrap(o) for o in ops]
    _launch()
    kw.pop("optimize", None)
    r = _np.einsum(spec, *arrs, optimize=False, **kw)
    if "->" in spec:  # reductions inside einsum: perturbed like any other
        r = _noisy(r)
    return _wrap(_np.asarray(r))


def asarray(a, dtype=None, order=None):
    if isinstance(a, ndarray):
        return a if dtype is None or _np.dtype(dtype) == a.dtype else a.astype(dtype)
    arr = _np.array(a, dtype=dtype, copy=True)
    _upload(arr)
    return ndarray(arr)


def array(a, dtype=None, copy=True, order="K", ndmin=0):
    if isinstance(a, ndarray):
        _launch()
        return ndarray(_np.array(a._a, dtype=dtype, copy=True, ndmin=ndmin))
    arr = _np.array(a, dtype=dtype, copy=True, ndmin=ndmin)
    _upload(arr)
    return ndarray(arr)


def asnumpy(a, stream=None, order="C", out=None):
    if isinstance(a, ndarray):
        return a.get()
    return _np.asarray(a)


def ascontiguousarray(a, dtype=None):
    x = _unwrap(a)
    _launch()
    return ndarray(_np.ascontiguousarray(x, dtype=dtype))


def _generic(npfunc, *, noisy=False, launches=1):
    def f(*args, **kwargs):
        args = _unwrap(list(args))
        kwargs = {k: _unwrap(v) for k, v in kwargs.items()}
        _launch(launches)
        r = npfunc(*args, **kwargs)
        if noisy:
            r = _noisy(r) if not isinstance(r, tuple) else tuple(_noisy(x) for x in r)
        return _wrap(r)

    f.__name__ = getattr(npfunc, "__name__", "f")
    return f


_VIEWS = {"swapaxes", "transpose", "expand_dims", "broadcast_to", "squeeze", "moveaxis", "diagonal", "atleast_1d",
          "atleast_2d"}
_NOISY = {"prod", "mean", "cumsum", "vdot", "inner", "tensordot", "trace", "nansum"}


def _view(npfunc):
    def f(a, *args, **kwargs):
        return _wrap(npfunc(_unwrap(a), *args, **kwargs))

    f.__name__ = npfunc.__name__
    return f


def _creation(npfunc):
    def f(*args, **kwargs):
        args = _unwrap(list(args))
        _launch()
        return ndarray(npfunc(*args, **kwargs))

    f.__name__ = npfunc.__name__
    return f


_MODULE_FUNCS = {"sum": sum, "matmul": matmul, "dot": dot, "einsum": einsum, "asarray": asarray, "array": array,
                 "ascontiguousarray": ascontiguousarray}
for _n in ("zeros", "ones", "empty", "full", "eye", "identity", "arange", "linspace", "zeros_like", "ones_like",
           "empty_like", "full_like"):
    _MODULE_FUNCS[_n] = _creation(getattr(_np, _n))


def __getattr__(name):
    if name in _MODULE_FUNCS:
        return _MODULE_FUNCS[name]
    obj = getattr(_np, name)  # AttributeError for what NumPy does not have either
    if isinstance(obj, type) or not callable(obj):
        return obj  # dtypes (float64, bool_, ...), constants (pi, inf, newaxis)
    if name in _VIEWS:
        f = _view(obj)
    else:
        f = _generic(obj, noisy=name in _NOISY)
    _MODULE_FUNCS[name] = f
    return f


ndarray.__module__ = "cupy"
ndarray.__qualname__ = "ndarray"
ndarray.__name__ = "ndarray"


def fuse(*args, **kwargs):
    """``cupy.fuse``: the decorated function runs as one kernel (one launch)."""

    def deco(fn):
        def fused(*a, **k):
            for v in list(a) + list(k.values()):
                if isinstance(v, _np.ndarray):
                    raise TypeError(_MIX.format(type(v)))
            _launch()
            _state["fused"] += 1
            try:
                return fn(*a, **k)
            finally:
                _state["fused"] -= 1

        fused.__name__ = getattr(fn, "__name__", "fused")
        fused.__wrapped__ = fn
        return fused

    if len(args) == 1 and callable(args[0]) and not kwargs:
        return deco(args[0])
    return deco


@contextlib.contextmanager
def counting():
    """``with fake_cupy.counting() as c: ...``; ``c`` holds the counts made inside."""
    before = snapshot()
    out = {}
    try:
        yield out
    finally:
        out.update({k: stats[k] - before[k] for k in stats})


# -- linalg / random / cuda namespaces ---------------------------------------------------
linalg = types.ModuleType("cupy.linalg")
for _n in ("eigh", "norm", "solve", "qr", "svd", "cholesky", "inv", "lstsq", "eigvalsh", "pinv"):
    setattr(linalg, _n, _generic(getattr(_np.linalg, _n), noisy=True))


class _Device:
    def __init__(self, i=0):
        self.id = i

    def synchronize(self):
        stats["syncs"] += 1

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


class _Stream:
    def synchronize(self):
        stats["syncs"] += 1


cuda = types.ModuleType("cupy.cuda")
cuda.is_available = lambda: True
cuda.Device = _Device
cuda.Stream = types.SimpleNamespace(null=_Stream())
cuda.get_current_stream = lambda: cuda.Stream.null
cuda.runtime = types.SimpleNamespace(
    getDeviceCount=lambda: 1,
    getDeviceProperties=lambda i: {"name": b"fake_cupy CPU emulator", "totalGlobalMem": 0},
    runtimeGetVersion=lambda: 12000,
    driverGetVersion=lambda: 12000,
)
cuda.cublas = types.SimpleNamespace()

_saved = {}


def install():
    """Make ``import cupy`` return this emulator (until :func:`uninstall`)."""
    this = sys.modules[__name__]
    if sys.modules.get("cupy") is this:
        return
    _saved["cupy"] = sys.modules.get("cupy")
    sys.modules["cupy"] = this
    sys.modules["cupy.linalg"] = linalg
    sys.modules["cupy.cuda"] = cuda


def uninstall():
    this = sys.modules[__name__]
    if sys.modules.get("cupy") is not this:
        return
    prev = _saved.pop("cupy", None)
    for k in ("cupy", "cupy.linalg", "cupy.cuda"):
        sys.modules.pop(k, None)
    if prev is not None:
        sys.modules["cupy"] = prev
