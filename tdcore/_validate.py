"""Argument checking shared by the public functions.

Every check raises ``ValueError`` or ``TypeError`` with a message that names the
parameter, the value received and what is allowed.  Nothing is coerced silently:
a float where an integer is expected is an error, not a truncation.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__: list[str] = []


def check_int(name, value, *, minimum=None, allow_none=False):
    """Return ``value`` as a Python ``int`` after checking it is an integer >= ``minimum``."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} of type {type(value).__name__}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return value


def check_float(name, value, *, positive=False, nonnegative=False, allow_none=False):
    """Return ``value`` as a finite Python ``float`` with the requested sign constraint."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r} of type {type(value).__name__}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    if nonnegative and value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    return value


def check_order(order):
    """Check the tensor order l (an integer >= 2)."""
    return check_int("order", order, minimum=2)


def check_choice(name, value, choices):
    """Check that ``value`` is one of ``choices`` (strings)."""
    if value not in choices:
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")
    return value


def check_dtype(dtype):
    """Accept float64 (default) or float32; anything else is an error."""
    if dtype is None:
        return np.dtype(np.float64)
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype must be float64 or float32, got {dtype!r}") from exc
    if dt not in (np.dtype(np.float64), np.dtype(np.float32)):
        raise ValueError(f"dtype must be float64 or float32, got {dt}")
    return dt


def check_seed(seed):
    """Seeds are None, a non-negative integer, or a ``numpy.random.Generator``."""
    if seed is None or isinstance(seed, np.random.Generator):
        return seed
    return check_int("seed", seed, minimum=0)


def check_int_list(name, values, minimum=None):
    """A non-empty sequence of integers (each ``>= minimum``), returned as a list of ``int``."""
    if isinstance(values, (str, bytes, numbers.Number)):
        raise TypeError(f"{name} must be a sequence of integers, got {values!r}")
    try:
        values = list(values)
    except TypeError as exc:
        raise TypeError(f"{name} must be a sequence of integers, got {values!r}") from exc
    if not values:
        raise ValueError(f"{name} must contain at least one value")
    return [check_int(f"{name}[{k}]", v, minimum=minimum) for k, v in enumerate(values)]


def check_seeds(seeds, *, name="seeds", distinct=False):
    """A non-empty sequence of seeds (non-negative integers or Generators)."""
    if isinstance(seeds, numbers.Integral) and not isinstance(seeds, bool):
        raise TypeError(f"{name} must be a sequence of seeds (e.g. range(8)), got the single integer {seeds!r}")
    try:
        seeds = list(seeds)
    except TypeError as exc:
        raise TypeError(f"{name} must be a sequence of non-negative integers, got {seeds!r}") from exc
    if not seeds:
        raise ValueError(f"{name} must contain at least one seed")
    seeds = [check_seed(s) for s in seeds]
    ints = [s for s in seeds if isinstance(s, int)]
    if distinct and len(set(ints)) != len(ints):
        raise ValueError(f"{name} must be distinct, got {ints}")
    return seeds


def check_vector(name, value, length):
    """A finite float vector of shape ``(length,)``."""
    v = np.asarray(value, dtype=float)
    if v.shape != (length,):
        raise ValueError(f"{name} must have shape ({length},), got shape {v.shape}")
    if not np.all(np.isfinite(v)):
        raise ValueError(f"{name} contains NaN or infinite entries")
    return v


def as_rng(seed):
    """A ``numpy.random.Generator`` from a seed (None, int or Generator)."""
    seed = check_seed(seed)
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)


def check_bool(name, value):
    """Return ``value`` as a Python ``bool``; only ``True``/``False`` (or NumPy booleans) are accepted.

    Strings such as ``"False"`` or ``"no"`` and integers are refused instead of being
    coerced by truthiness (``bool("False")`` is True).
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r} of type {type(value).__name__}")


def check_factor_matrix(name, value, rows, *, like_dtype=None):
    """A finite real 2-D array with ``rows`` rows (e.g. the vectors of ``contract``).

    A 1-D vector is refused (pass it as a single column, ``u[:, None]``): NumPy would
    otherwise broadcast it into an array of the wrong shape.
    """
    from ._backend import xp_of

    if not hasattr(value, "shape") or not hasattr(value, "dtype"):
        value = np.asarray(value)
    xp = xp_of(value)
    arr = xp.asarray(value)
    if arr.ndim != 2 or arr.shape[0] != rows:
        hint = " (a single vector u goes in as u[:, None])" if arr.ndim == 1 else ""
        raise ValueError(f"{name} must be a 2-D array of shape (d, n) with d = {rows}, got shape {arr.shape}{hint}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)) \
            or np.issubdtype(arr.dtype, np.bool_):
        raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
    if not bool(xp.all(xp.isfinite(arr))):
        raise ValueError(f"{name} contains NaN or infinite entries")
    if arr.dtype.itemsize < 4 or not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(like_dtype if like_dtype is not None else np.float64)
    return arr


def check_nonzero_target(target, *, name="target"):
    """Refuse a target of zero Frobenius norm (the relative error ``||T - T*|| / ||T*||`` is undefined).

    ``target`` is a :class:`tdcore.SymCP` or a dense array that has passed
    :func:`tdcore.check_target`.  Returns ``||target||_F`` (a float > 0).  The norm
    is computed with the scale pulled out, so a target of norm ``1e-300`` is not
    mistaken for zero (its squared norm underflows).  Call it at the entry of any
    routine that divides by the target's norm (``vanilla_gd``, ``power_method``,
    ``cp_als``, ``algorithm1``).
    """
    from ._tensor import norm

    n = float(norm(target))
    if not n > 0:
        raise ValueError(f"{name} has zero norm (||{name}||_F = 0): there is nothing to decompose and the "
                         "relative error ||T - T*|| / ||T*|| is undefined")
    return n


# -- memory --------------------------------------------------------------------------
#: Fraction of physical memory a single call may plan to allocate (see :func:`memory_limit`).
MEMORY_FRACTION = 0.5
#: Environment variable overriding the limit, in bytes (e.g. ``TDCORE_MAX_BYTES=4e9``).
MEMORY_ENV = "TDCORE_MAX_BYTES"


def _fmt_bytes(n):
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if abs(n) < 1024 or unit == "EiB":
            return f"{n:.0f} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} EiB"  # pragma: no cover


def physical_memory():
    """Bytes of physical memory (``os.sysconf``), or None where the platform does not tell."""
    import os

    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def memory_limit(max_bytes=None):
    """The largest allocation a tdcore call plans for, in bytes.

    In order: ``max_bytes`` when given (an integer > 0), else the environment
    variable ``TDCORE_MAX_BYTES``, else ``MEMORY_FRACTION`` (half) of the physical
    memory, else 8 GiB when the platform does not report it.
    """
    import os

    if max_bytes is not None:
        if isinstance(max_bytes, float) and max_bytes.is_integer():
            max_bytes = int(max_bytes)
        return check_int("max_bytes", max_bytes, minimum=1)
    env = os.environ.get(MEMORY_ENV)
    if env not in (None, ""):
        try:
            val = float(env)
        except ValueError:
            val = float("nan")
        if not (np.isfinite(val) and val >= 1):
            raise ValueError(f"environment variable {MEMORY_ENV} must be a number of bytes >= 1, got {env!r}")
        return int(val)
    phys = physical_memory()
    return int(MEMORY_FRACTION * phys) if phys else 8 * 2**30


def check_memory(what, nbytes, *, max_bytes=None, detail=""):
    """Raise ``MemoryError`` before any work when ``what`` would allocate more than the limit.

    ``nbytes`` is the estimate (an int, exact for the big arrays, see the callers);
    the message states it, the limit and how to raise the limit.
    """
    limit = memory_limit(max_bytes)
    if nbytes > limit:
        raise MemoryError(
            f"{what} would allocate about {_fmt_bytes(nbytes)}{' (' + detail + ')' if detail else ''}, above the "
            f"limit of {_fmt_bytes(limit)} (max_bytes / {MEMORY_ENV}, default {MEMORY_FRACTION:g} of physical "
            "memory). Use smaller sizes or raise the limit.")
    return int(nbytes)


# -- paths ---------------------------------------------------------------------------
def check_path(name, path, *, must_exist=False):
    """A file path (``str`` or ``os.PathLike``) whose directory exists and is writable.

    Returns it as ``str``.  An integer is refused (``open(123)`` would use file
    descriptor 123), and so are an empty string and an existing directory.
    """
    import os

    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a file path (str or os.PathLike), got {path!r} of type "
                        f"{type(path).__name__}")
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not path:
        raise ValueError(f"{name} must be a non-empty file path")
    if os.path.isdir(path):
        raise ValueError(f"{name}={path!r} is a directory, not a file")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise ValueError(f"{name}={path!r}: the directory {parent!r} does not exist")
    _probe_writable(name, path, parent)
    if os.path.exists(path) and not os.access(path, os.R_OK):
        raise PermissionError(f"{name}={path!r} exists but is not readable")
    if must_exist and not os.path.exists(path):
        raise ValueError(f"{name}={path!r} does not exist")
    return path


def _probe_writable(name, path, parent):
    """Create and remove a temporary file in ``parent``: the only test that also holds for root
    and for read-only mounts (``os.access`` answers True to root for a mode-0555 directory)."""
    import os
    import tempfile

    try:
        fd, tmp = tempfile.mkstemp(prefix=".tdcore-probe-", dir=parent)
    except OSError as exc:
        raise PermissionError(f"{name}={path!r}: cannot write in the directory {parent!r} "
                              f"({exc.strerror or exc})") from exc
    os.close(fd)
    os.unlink(tmp)


def _umask():
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, write):
    """Write a file atomically: ``write(fh)`` into a temporary file beside ``path``, fsync, rename.

    A kill at any moment leaves either the old file or the new one, never a
    truncated mix; the temporary file is removed when ``write`` fails.
    """
    import os
    import tempfile

    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{base}.{os.getpid()}.", suffix=".tmp", dir=d)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode of a new file
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # pragma: no cover - directories cannot be opened on some platforms
        pass
    _remove_stale_temps(d, base)


def _remove_stale_temps(d, base):
    """Remove temporary files of ``base`` left by writers that were killed (their process is gone)."""
    import os

    prefix = f".{base}."
    try:
        names = [n for n in os.listdir(d) if n.startswith(prefix) and n.endswith(".tmp")]
    except OSError:  # pragma: no cover
        return
    for n in names:
        pid = n[len(prefix):].split(".", 1)[0]
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
            continue  # that writer is alive
        except ProcessLookupError:
            pass
        except OSError:  # alive, owned by someone else
            continue
        try:
            os.unlink(os.path.join(d, n))
        except OSError:  # pragma: no cover
            pass


def check_matrix(name, value):
    """A finite real 2-D array with at least one row and one column, as float64 (a factor matrix ``U``)."""
    U = np.asarray(value)
    if U.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (d, m), got shape {U.shape}")
    if U.shape[0] < 1 or U.shape[1] < 1:
        raise ValueError(f"{name} must have d >= 1 rows and m >= 1 columns, got shape {U.shape}")
    if not np.issubdtype(U.dtype, np.number) or np.iscomplexobj(U) or U.dtype == np.bool_:
        raise TypeError(f"{name} must be a real numeric array, got dtype {U.dtype}")
    U = U.astype(np.float64)
    if not np.all(np.isfinite(U)):
        raise ValueError(f"{name} contains NaN or infinite entries")
    return U


def check_float_list(name, values, *, positive=False, nonnegative=False):
    """A non-empty sequence of finite floats (``> 0`` / ``>= 0`` when asked), as a list of ``float``."""
    if isinstance(values, (str, bytes, numbers.Number)):
        raise TypeError(f"{name} must be a sequence of numbers, got {values!r}")
    try:
        values = list(values)
    except TypeError as exc:
        raise TypeError(f"{name} must be a sequence of numbers, got {values!r}") from exc
    if not values:
        raise ValueError(f"{name} must contain at least one value")
    return [check_float(f"{name}[{k}]", v, positive=positive, nonnegative=nonnegative) for k, v in enumerate(values)]


def check_fraction(name, value, *, open_right=False):
    """A float in ``(0, 1]`` (``(0, 1)`` with ``open_right``)."""
    value = check_float(name, value, positive=True)
    if value > 1 or (open_right and value == 1):
        raise ValueError(f"{name} must be in (0, 1{')' if open_right else ']'}, got {value}")
    return value
