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


def as_rng(seed):
    """A ``numpy.random.Generator`` from a seed (None, int or Generator)."""
    seed = check_seed(seed)
    if isinstance(seed, np.random.Generator):
        return seed
    return np.random.default_rng(seed)
