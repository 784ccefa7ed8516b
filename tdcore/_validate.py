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
