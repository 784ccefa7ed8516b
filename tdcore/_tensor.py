"""Symmetric tensors held implicitly, as weights and factor columns.

A symmetric CP tensor ``T = sum_i w_i u_i^{(x) l}`` is stored as its weights
``w`` (shape ``(m,)``) and factors ``U`` (shape ``(d, m)``).  Every quantity the
library needs is a polynomial in Gram matrices:

    <T, T'>  = sum_{i,j} w_i w'_j (u_i . u'_j)^l
    ||T||^2 = w^T (U^T U)^{o l} w

so the cost is O(m m' d) and the ``d^l`` array is not needed.  Dense symmetric
ndarrays of shape ``(d,)*l`` are accepted wherever a target is expected.

Numerics (in :mod:`tdcore._gram`):

* scale: weights and factors anywhere in the floating range (the scale is
  pulled out as exact powers of two; results overflow only when the value
  itself is not a float);
* memory: many components are processed in blocks, no temporary above
  ``chunk_bytes`` (64 MiB by default), nothing of size ``m x m'`` for large
  ``m``; where ``d^l`` is small the dense tensor is accumulated in blocks
  instead (the cheaper of ``O(m m' d)`` and ``O((m + m') d^l)``);
* precision: :func:`rel_error` and :func:`norm` switch to an entrywise
  evaluation when the Gram expansion would be dominated by cancellation.

:func:`moment_tensor` holds an empirical moment of many samples this way.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from ._backend import asarray_on, on_common, to_numpy, xp_of
from ._gram import (DEFAULT_CHUNK_BYTES, DEFAULT_PRECISE_BUDGET, _chunk, _contract_dense, _cp_dense_inner,  # noqa: F401
                    _cp_dense_rel_error, _cp_form, _cp_inner, _cp_rel_error, _cp_sumsq, _dense_exp, _dense_flat,
                    _dense_inner, _dense_product, _dense_sumsq, _flat_blocks, _sqrt_scaled, _to_float)
from ._validate import as_rng, check_bool, check_factor_matrix, check_int, check_memory, check_order, check_vector

__all__ = [
    "SymCP",
    "random_target",
    "rel_error",
    "inner",
    "norm",
    "symmetrize",
    "is_symmetric",
    "check_target",
    "subspace_basis",
    "DEFAULT_MAX_DENSE_BYTES",
    "DEFAULT_CHUNK_BYTES",
    "precise_rel_error",
    "moment_tensor",
]

#: Largest dense array :meth:`SymCP.to_dense` builds unless told otherwise (1 GiB).
DEFAULT_MAX_DENSE_BYTES = 2**30


class SymCP:
    """A symmetric CP tensor ``sum_i w_i u_i^{(x) order}`` stored implicitly.

    Parameters
    ----------
    weights : array_like, shape (m,)
        Component weights ``w_i`` (real, finite).
    factors : array_like, shape (d, m)
        Component vectors ``u_i`` as columns (real, finite).
    order : int
        Tensor order ``l >= 2``.

    Examples
    --------
    >>> import numpy as np, tdcore
    >>> T = tdcore.SymCP(np.ones(2), np.eye(3)[:, :2], order=3)
    >>> round(T.norm() ** 2, 12)
    2.0
    """

    __array_priority__ = 1000  # keep NumPy from broadcasting over SymCP objects

    def __init__(self, weights, factors, order):
        self.order = check_order(order)
        xp, factors, weights = on_common(factors, weights)
        if factors.ndim != 2:
            raise ValueError(f"factors must be a 2-D array of shape (d, m), got shape {factors.shape}")
        if weights.ndim != 1 or weights.shape[0] != factors.shape[1]:
            raise ValueError(
                f"weights must have shape (m,) = ({factors.shape[1]},) to match factors of shape "
                f"{factors.shape}, got shape {weights.shape}")
        if factors.shape[0] < 1 or factors.shape[1] < 1:
            raise ValueError(f"factors must have d >= 1 rows and m >= 1 columns, got shape {factors.shape}")
        for name, arr in (("weights", weights), ("factors", factors)):
            if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
                raise TypeError(f"{name} must be a real numeric array, got dtype {arr.dtype}")
            if not bool(xp.all(xp.isfinite(arr))):
                raise ValueError(f"{name} contains NaN or infinite entries")
        dtype = np.result_type(factors.dtype, weights.dtype)
        if not np.issubdtype(dtype, np.floating) or dtype.itemsize < 4:
            # integers and float16 are computed in float64 (float16 sums lose everything past 3 digits)
            dtype = np.dtype(np.float64)
        self.factors = factors.astype(dtype, copy=False)
        self.weights = weights.astype(dtype, copy=False)

    # -- shape -------------------------------------------------------------------
    @property
    def d(self):
        """Dimension of each mode."""
        return int(self.factors.shape[0])

    @property
    def m(self):
        """Number of stored components (an upper bound on the rank)."""
        return int(self.factors.shape[1])

    @property
    def shape(self):
        """The shape ``(d,) * order`` of the tensor this object stands for."""
        return (self.d,) * self.order

    def __repr__(self):
        return f"SymCP(d={self.d}, m={self.m}, order={self.order}, dtype={self.factors.dtype})"

    # -- algebra -----------------------------------------------------------------
    def gram(self, other=None):
        """Matrix of inner products ``(u_i . x_j)`` with another SymCP's factors."""
        other = self if other is None else other
        _, F, X = on_common(self.factors, other.factors)
        return F.T @ X

    def inner(self, other, *, chunk_bytes=None):
        """Frobenius inner product with another SymCP or a dense symmetric array (see :func:`inner`)."""
        return inner(self, other, chunk_bytes=chunk_bytes)

    def norm(self, *, chunk_bytes=None):
        """Frobenius norm, from Gram blocks or the dense tensor in blocks (see :func:`norm`)."""
        return norm(self, chunk_bytes=chunk_bytes)

    def __neg__(self):
        return SymCP(-self.weights, self.factors, self.order)

    def __mul__(self, scalar):
        if not np.isscalar(scalar):
            return NotImplemented
        return SymCP(self.weights * scalar, self.factors, self.order)

    __rmul__ = __mul__

    def __add__(self, other):
        if not isinstance(other, SymCP):
            return NotImplemented
        _check_compatible(self, other)
        xp, w1, w2, f1, f2 = on_common(self.weights, other.weights, self.factors, other.factors)
        return SymCP(xp.concatenate([w1, w2]), xp.concatenate([f1, f2], axis=1), self.order)

    def __sub__(self, other):
        if not isinstance(other, SymCP):
            return NotImplemented
        return self + (-other)

    def normalized(self):
        """This tensor scaled to unit Frobenius norm.

        The factors are kept and the weights divided by the norm; where that
        would leave the floating range (weights and factors at opposite
        extremes), the tensor is returned with unit factors instead.
        """
        p = _cp_form(self)
        if p.E is None:
            raise ValueError("cannot normalise a tensor of zero norm")
        s2 = _cp_sumsq(p, DEFAULT_CHUNK_BYTES)  # ||T||^2 / 4**E
        n = _sqrt_scaled(s2, 2 * p.E)
        if 0 < n < math.inf:
            xp = xp_of(self.weights)
            w = self.weights * (1.0 / n)
            tiny = np.finfo(w.dtype).tiny
            if bool(xp.all(xp.isfinite(w))) and bool(xp.all((w == 0) | (xp.abs(w) >= tiny))):
                return SymCP(w, self.factors, self.order)
        return SymCP(p.c / math.sqrt(s2), p.F, self.order)

    def contract(self, U):
        """``T(., u_j, ..., u_j)`` for every column ``u_j`` of ``U``: shape (d, n)."""
        U = check_factor_matrix("U", U, self.d, like_dtype=self.factors.dtype)
        check_memory("SymCP.contract", 8 * (2 * self.m * U.shape[1] + self.d * U.shape[1]),
                     detail=f"m x n = {self.m} x {U.shape[1]} products")
        _, F, w, U = on_common(self.factors, self.weights, U)
        A = F.T @ U
        return F @ (w[:, None] * A ** (self.order - 1))

    def to_numpy(self):
        """A copy whose arrays are NumPy arrays (from CuPy if needed)."""
        return SymCP(to_numpy(self.weights), to_numpy(self.factors), self.order)

    def to_dense(self, *, max_bytes=DEFAULT_MAX_DENSE_BYTES):
        """The full ``(d,)*order`` array; refused above ``max_bytes``.

        Raises
        ------
        MemoryError
            When ``d**order`` entries would need more than ``max_bytes`` bytes.
        """
        max_bytes = check_int("max_bytes", max_bytes, minimum=1)
        itemsize = np.dtype(self.factors.dtype).itemsize
        need = itemsize * self.d ** self.order
        if need > max_bytes:
            raise MemoryError(
                f"to_dense() would allocate {_fmt_bytes(need)} for a tensor of shape {self.shape} "
                f"(d**order = {self.d}**{self.order} entries), above max_bytes={_fmt_bytes(max_bytes)}. "
                "Use the implicit operations (inner, norm, rel_error), or pass a larger max_bytes.")
        xp = xp_of(self.factors)
        p = _cp_form(self)
        if p.E is None:
            return xp.zeros(self.shape, dtype=self.factors.dtype)
        n = p.F.shape[1]
        if (not p.unit and -900 < p.E and p.mass() * 2.0 ** min(p.E, 1000) * n < 2.0**1000
                and self.factors.dtype.itemsize * self.d ** (self.order - 1) * n <= DEFAULT_CHUNK_BYTES):
            # factors and weights in a safe range, Khatri--Rao block within the chunk:
            # one matrix product straight into the output
            return _dense_product(self.factors, self.weights, self.order).reshape(self.shape)
        # unit factors, accumulated in blocks of columns (temporaries of at most
        # DEFAULT_CHUNK_BYTES besides T), and the scale applied once at the end
        T = _dense_flat(p.F, p.c, self.order, DEFAULT_CHUNK_BYTES).reshape(self.shape)
        return xp.ldexp(T, p.E)


def _fmt_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if n < 1024 or unit == "EiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024


def _check_compatible(a, b, name_a="a", name_b="b"):
    if a.order != b.order:
        raise ValueError(f"tensors have different orders: {name_a} has order {a.order}, {name_b} has order "
                         f"{b.order}")
    if a.d != b.d:
        raise ValueError(f"tensors have different dimensions: {name_a} has d={a.d}, {name_b} has d={b.d}")


def _check_gram_memory(what, m1, m2):
    """The Gram matrix of two SymCP (m1 x m2) and its power: two float64 arrays of that size."""
    check_memory(what, 2 * 8 * m1 * m2, detail=f"two {m1} x {m2} Gram matrices")


def _shape_of(T):
    return T.shape if isinstance(T, SymCP) else tuple(T.shape)


def is_symmetric(T, *, rtol=1e-10, atol=1e-12):
    """True when the dense array ``T`` is unchanged by every permutation of its axes."""
    xp = xp_of(T)
    scale = float(xp.max(xp.abs(T))) if T.size else 0.0
    for k in range(T.ndim - 1):  # adjacent transpositions generate the symmetric group
        axes = list(range(T.ndim))
        axes[k], axes[k + 1] = axes[k + 1], axes[k]
        if not bool(xp.all(xp.abs(T - xp.transpose(T, axes)) <= atol + rtol * scale)):
            return False
    return True


def symmetrize(T):
    """Average of ``T`` over all permutations of its axes (the projection P_sym).

    Parameters
    ----------
    T : ndarray of shape (d,)*l
    """
    xp = xp_of(T)
    T = xp.asarray(T)
    _check_square(T, "T")
    perms = list(itertools.permutations(range(T.ndim)))
    out = xp.zeros_like(T, dtype=np.result_type(T.dtype, xp.float32))
    for p in perms:
        out += xp.transpose(T, p)
    return out / len(perms)


def _check_square(T, name):
    if T.ndim < 2:
        raise ValueError(f"{name} must have order >= 2 (ndim >= 2), got an array of shape {T.shape}")
    if len(set(T.shape)) != 1:
        raise ValueError(f"{name} must have equal dimensions (d,)*l, got shape {T.shape}")


def check_target(target, *, name="target"):
    """Validate a target: a :class:`SymCP` or a dense, finite, symmetric ndarray.

    Returns the target unchanged (dense arrays converted to float arrays).
    """
    if isinstance(target, SymCP):
        return target
    if not hasattr(target, "shape") or not hasattr(target, "dtype"):
        raise TypeError(f"{name} must be a tdcore.SymCP or a dense symmetric ndarray of shape (d,)*l, "
                        f"got {type(target).__name__}")
    xp = xp_of(target)
    T = xp.asarray(target)
    _check_square(T, name)
    if not (np.issubdtype(T.dtype, np.floating) or np.issubdtype(T.dtype, np.integer)):
        raise TypeError(f"{name} must be a real numeric array, got dtype {T.dtype}")
    if not bool(xp.all(xp.isfinite(T))):
        raise ValueError(f"{name} contains NaN or infinite entries")
    if not is_symmetric(T):
        raise ValueError(f"{name} is not symmetric: a dense target must be unchanged by every permutation of "
                         "its axes. Use tdcore.symmetrize(T) if you want its symmetric part.")
    if not np.issubdtype(T.dtype, np.floating) or T.dtype.itemsize < 4:
        T = T.astype(xp.float64)  # integers and float16 are computed in float64
    return T


def _common_side(*tensors):
    """The tensors on one side by the conversion rule: all on the device if any operand is there."""
    arrays = [x for t in tensors for x in ((t.weights, t.factors) if isinstance(t, SymCP) else (t,))]
    xp = xp_of(*arrays)
    if xp is np:
        return tensors
    return tuple(SymCP(asarray_on(xp, t.weights), asarray_on(xp, t.factors), t.order) if isinstance(t, SymCP)
                 else asarray_on(xp, t) for t in tensors)


def _inner_scaled(a, b, chunk_bytes):
    """``(mantissa, exponent)`` of ``<a, b>``, checked."""
    same = a is b
    a, b = _common_side(a, b)
    if same:
        b = a
    a_cp, b_cp = isinstance(a, SymCP), isinstance(b, SymCP)
    if a_cp and b_cp:
        _check_compatible(a, b, "a", "b")
        if a is b:
            p = _cp_form(a)
            return _cp_sumsq(p, chunk_bytes), 0 if p.E is None else 2 * p.E
        return _cp_inner(_cp_form(a), _cp_form(b), chunk_bytes)
    if not a_cp and not b_cp:
        a, b = check_target(a, name="a"), check_target(b, name="b")
        if a.shape != b.shape:
            raise ValueError(f"dense tensors have different shapes: {a.shape} and {b.shape}")
        return _dense_inner(a, b, chunk_bytes)
    cp, dense = (a, b) if a_cp else (b, a)
    dname = "b" if a_cp else "a"
    dense = check_target(dense, name=dname)
    if dense.shape != cp.shape:
        raise ValueError(f"shapes differ: {'a' if a_cp else 'b'} is a SymCP of shape {cp.shape}, {dname} a dense "
                         f"array of shape {dense.shape}")
    return _cp_dense_inner(_cp_form(cp), dense, chunk_bytes)


def inner(a, b, *, chunk_bytes=None):
    """Frobenius inner product ``<a, b>`` of two symmetric tensors.

    Either argument may be a :class:`SymCP` or a dense symmetric array; the
    ``d^l`` array is never formed for two SymCP unless it is the cheaper route and
    fits in half of ``chunk_bytes``.  The scale is pulled out (unit factors, the
    weights carrying the norms), so the result is right for weights and factors
    anywhere in the floating range; it is ``inf`` only when ``|<a, b>|`` itself
    exceeds the largest float.

    Parameters
    ----------
    a, b : SymCP or dense symmetric array
    chunk_bytes : int, optional
        Bound on the temporaries (default ``DEFAULT_CHUNK_BYTES``); the work
        is done in blocks of components so that no ``n x n'`` array exists.
    """
    m, e = _inner_scaled(a, b, _chunk(chunk_bytes))
    return _to_float(m, e)


def norm(T, *, chunk_bytes=None):
    """Frobenius norm of a SymCP (Gram blocks or dense accumulation) or of a dense array.

    Scale-robust and chunked as :func:`inner`; for a SymCP with ``n``
    components it costs ``O(min(n^2 d / 2, n d^l))`` and no ``n x n`` array.
    """
    chunk = _chunk(chunk_bytes)
    if isinstance(T, SymCP):
        p = _cp_form(T)
        if p.E is None:
            return 0.0
        return _sqrt_scaled(_cp_sumsq(p, chunk), 2 * p.E)
    T = check_target(T, name="T")
    E = _dense_exp(T)
    if E is None:
        return 0.0
    return _sqrt_scaled(_dense_sumsq(T, E, chunk), 2 * E)


def rel_error(model, target, *, chunk_bytes=None, precise=None, precise_budget=DEFAULT_PRECISE_BUDGET):
    """Relative error ``||T - T*||_F / ||T*||_F`` for any mix of SymCP and dense.

    The scale of both tensors is pulled out (see :func:`inner`), so the value is
    right for weights and factors anywhere in the floating range.

    Precision.  With a dense operand, and for two SymCP where accumulating the
    dense residual in blocks is the cheaper route (small ``d^l``), the residual
    is summed entrywise: relative precision about machine epsilon.  Otherwise the
    squared distance is expanded through Gram blocks,
    ``||T||^2 - 2<T, T*> + ||T*||^2``, whose rounding error is up to about
    ``eps (sum_i |c_i|)^2`` (unit factors, weights ``c``): for nearly equal tensors
    that is ``sqrt(eps)``-level noise.  When the expanded value is within
    ``1e8`` times that bound (``precise=None``, the default), the precise
    evaluation is used instead: bitwise-equal components cancel exactly (a
    permuted copy has error 0.0), and the rest is summed entrywise in an
    orthonormal basis of the span of the components, a ``k^l`` core with
    ``k <= min(d, n + n')`` -- done when ``k^l (n + n') <= precise_budget`` and the
    core fits in half of ``chunk_bytes`` (else the expansion is returned).

    Parameters
    ----------
    model, target : SymCP or dense symmetric array
    chunk_bytes : int, optional
        Bound on the temporaries (default ``DEFAULT_CHUNK_BYTES``).
    precise : bool or None
        None: automatic (above); True: always the precise evaluation when
        affordable; False: the Gram expansion only.
    precise_budget : int
        Cost bound of the precise evaluation (about its flops).

    Raises
    ------
    ValueError
        When the target has zero norm.
    """
    model = check_target(model, name="model")
    target = check_target(target, name="target")
    if _shape_of(model) != _shape_of(target):
        raise ValueError(f"model and target must have the same shape (d,)*order: model has shape "
                         f"{_shape_of(model)}, target has shape {_shape_of(target)}")
    model, target = _common_side(model, target)
    chunk = _chunk(chunk_bytes)
    if precise not in (None, True, False):
        raise TypeError(f"precise must be None, True or False, got {precise!r}")
    budget = check_int("precise_budget", precise_budget, minimum=1)
    m_cp, t_cp = isinstance(model, SymCP), isinstance(target, SymCP)
    if m_cp and t_cp:
        _check_compatible(model, target, "model", "target")
        pt = _cp_form(target)
        if pt.E is None:
            raise ValueError("target has zero norm; the relative error is undefined")
        return _cp_rel_error(_cp_form(model), pt, chunk, precise, budget)
    if not m_cp and not t_cp:
        m, t = model, target
        Et, Em = _dense_exp(t), _dense_exp(m)
        if Et is None:
            raise ValueError("target has zero norm; the relative error is undefined")
        E = Et if Em is None else max(Et, Em)
        xp = xp_of(m)
        d2 = 0.0
        for x, y in zip(_flat_blocks(m, chunk), _flat_blocks(t, chunk)):
            r = xp.ldexp(x, -E) - xp.ldexp(y, -E)
            d2 += float(xp.vdot(r, r))
        return _to_float(math.sqrt(d2 / _dense_sumsq(t, Et, chunk)), E - Et)
    if m_cp:
        return _cp_dense_rel_error(_cp_form(model), target, True, chunk)
    return _cp_dense_rel_error(_cp_form(target), model, False, chunk)


def precise_rel_error(model, target, *, budget=DEFAULT_PRECISE_BUDGET):
    """Relative error ``||model - T*|| / ||T*||`` without the Gram expansion's cancellation.

    The residual is summed entrywise: densely for a dense target (or where the
    dense tensor is cheap), and for a SymCP target in an orthonormal basis of
    the span of both tensors' components (a ``k^l`` core, ``k <= min(d, m + r)``),
    which resolves relative errors down to ``~1e-15``; exactly equal components
    cancel exactly.  :func:`rel_error` switches to this evaluation by itself when
    the expansion would be dominated by rounding.

    Parameters
    ----------
    model : SymCP
    target : SymCP or dense symmetric array
    budget : int
        Largest ``k^l (m + r)`` accepted for a SymCP target (about the number of
        flops); above it the Gram expansion of :func:`rel_error` is returned
        instead.

    Returns
    -------
    float
    """
    if not isinstance(model, SymCP):
        raise TypeError(f"model must be a tdcore.SymCP, got {type(model).__name__}")
    target = check_target(target)
    budget = check_int("budget", budget, minimum=1)
    l, d = (target.order, target.d) if isinstance(target, SymCP) else (target.ndim, target.shape[0])
    if model.order != l:
        raise ValueError(f"model has order {model.order} but the target has order {l}")
    if model.d != d:
        raise ValueError(f"model has dimension d={model.d} but the target has dimension d={d}")
    return rel_error(model, target, precise=True if isinstance(target, SymCP) else None, precise_budget=budget)



def random_target(d, r, order, *, orthogonal=False, weights=None, seed=None, normalize=True):
    """A random rank-r symmetric tensor with unit-norm components.

    Parameters
    ----------
    d, r, order : int
        Dimension, number of components and order (``order >= 2``).
    orthogonal : bool
        Orthonormal components (requires ``r <= d``) instead of independent
        uniform directions on the sphere.
    weights : array_like of shape (r,), optional
        Component weights (default all ones).
    seed : int or numpy.random.Generator, optional
    normalize : bool
        Scale the weights so that ``||T*||_F = 1`` (the paper's convention).

    Returns
    -------
    SymCP
    """
    d = check_int("d", d, minimum=1)
    r = check_int("r", r, minimum=1)
    order = check_order(order)
    orthogonal = check_bool("orthogonal", orthogonal)
    normalize = check_bool("normalize", normalize)
    rng = as_rng(seed)
    if orthogonal and r > d:
        raise ValueError(f"orthogonal=True needs r <= d, got r={r}, d={d}")
    # the d x r draw, its normalised copy (or QR's Q and workspace) and the SymCP's own copy
    check_memory("random_target", 4 * 8 * d * r, detail=f"d x r = {d} x {r} float64 arrays")
    if weights is not None:
        weights = check_vector("weights", weights, r)
        if normalize and not np.any(weights):
            raise ValueError("weights are all zero: the tensor has zero norm and cannot be normalised")
    if orthogonal:
        Q, R = np.linalg.qr(rng.standard_normal((d, r)))
        V = Q * np.sign(np.diag(R))
    else:
        V = rng.standard_normal((d, r))
        V /= np.linalg.norm(V, axis=0, keepdims=True)
    if weights is None:
        w = np.ones(r)
    else:
        w = weights
    T = SymCP(w, V, order)
    if normalize:
        T = T.normalized()
    return T


def moment_tensor(X, order, *, center=False, chunk=None):
    """The empirical moment ``(1/n) sum_k x_k^{(x) order}`` of the rows of ``X``, as a SymCP.

    The tensor is held with ``n`` components (weights ``1/n``, factors the
    samples), never as the ``d^order`` array; :func:`norm`, :func:`inner`,
    :func:`rel_error` and :func:`tdcore.decompose` work on it in blocks, so that
    nothing of size ``n x n`` is formed (see ``DEFAULT_CHUNK_BYTES``).

    Parameters
    ----------
    X : array_like, shape (n, d)
        One sample per row (real, finite), ``n >= 1``, ``d >= 1``.
    order : int
        Moment order ``l >= 2``.
    center : bool
        Subtract the sample mean first (the central moment ``(1/n) sum (x_k - xbar)^{(x) l}``).
    chunk : int, optional
        Samples per block for the passes over ``X`` (finiteness check, mean,
        centred copy); the default keeps each block near 8 MiB.  The result does
        not depend on it beyond rounding of the mean.

    Returns
    -------
    SymCP
        ``n`` components of dimension ``d``, in the dtype of ``X`` (float64 for integers).
    """
    order = check_order(order)
    if not hasattr(X, "shape"):
        X = np.asarray(X)
    xp = xp_of(X)
    X = xp.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be a 2-D array of shape (n, d) (one sample per row), got shape {X.shape}")
    n, d = X.shape
    if n < 1 or d < 1:
        raise ValueError(f"X must have n >= 1 rows and d >= 1 columns, got shape {X.shape}")
    if not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)) or X.dtype == bool:
        raise TypeError(f"X must be a real numeric array, got dtype {X.dtype}")
    dtype = X.dtype if np.issubdtype(X.dtype, np.floating) else np.dtype(np.float64)
    if chunk is None:
        chunk = max(1, 2**23 // (d * np.dtype(dtype).itemsize))
    chunk = check_int("chunk", chunk, minimum=1)
    center = bool(center) if isinstance(center, (bool, np.bool_)) else _bad_center(center)
    F = xp.empty((d, n), dtype=dtype)
    total = xp.zeros(d, dtype=np.float64)
    for s in range(0, n, chunk):
        blk = X[s:s + chunk].astype(dtype, copy=False)
        if not bool(xp.all(xp.isfinite(blk))):
            bad = s + int(xp.argmax(~xp.all(xp.isfinite(blk), axis=1)))
            raise ValueError(f"X contains NaN or infinite entries (first in row {bad})")
        F[:, s:s + chunk] = blk.T
        if center:
            total += xp.sum(blk, axis=0, dtype=np.float64)
    if center:
        mean = (total / n).astype(dtype)
        for s in range(0, n, chunk):
            F[:, s:s + chunk] -= mean[:, None]
    return SymCP(xp.full(n, 1.0 / n, dtype=dtype), F, order)


def _bad_center(center):
    raise TypeError(f"center must be True or False, got {center!r}")


def subspace_basis(target, *, tol=1e-10):
    """Orthonormal basis (d x k) of the span S of a SymCP target's components."""
    if not isinstance(target, SymCP):
        raise TypeError("subspace_basis needs a SymCP target (the components of a dense target are unknown)")
    F = np.asarray(to_numpy(target.factors), dtype=np.float64)
    colmax = np.max(np.abs(F), axis=0)
    F = F[:, colmax > 0]
    if F.shape[1] == 0:
        return np.zeros((target.d, 0))
    F = np.ldexp(F, -np.frexp(colmax[colmax > 0])[1])  # exact column scaling: any input scale
    if F.shape[1] > F.shape[0]:  # many components: F = R^T Q^T, so F and R^T share left singular vectors
        F = np.linalg.qr(F.T, mode="r").T
    Uq, s, _ = np.linalg.svd(F, full_matrices=False)
    k = int(np.sum(s > tol * s[0])) if s[0] > 0 else 0
    return Uq[:, :k]


def _scaled_symcp(weights, factors, order, alpha):
    """A SymCP equal to ``alpha * SymCP(weights, factors, order)`` (``alpha > 0`` finite).

    The natural (2-homogeneous) form -- factors times ``sqrt(alpha)``, weights times
    ``alpha^(1 - order/2)`` -- is used when it stays in the normal floating range;
    otherwise each column is shifted by a power of two chosen to balance it
    against its weight, so the result is representable whenever its components are.
    """
    alpha = float(alpha)
    if alpha == 1.0:
        return SymCP(weights, factors, order)
    xp = xp_of(factors)
    w, F = xp.asarray(weights), xp.asarray(factors)
    tiny = float(np.finfo(F.dtype).tiny)
    lg = math.log2(alpha)
    with np.errstate(all="ignore"):
        if abs((1 - order / 2) * lg) < 1000:
            W = w * 2.0 ** ((1 - order / 2) * lg)
            G = F * math.sqrt(alpha)
            colmax = xp.max(xp.abs(G), axis=0)
            ok = (bool(xp.all(xp.isfinite(W))) and bool(xp.all(xp.isfinite(G)))
                  and bool(xp.all((w == 0) | (xp.abs(W) >= tiny)))
                  and bool(xp.all((xp.max(xp.abs(F), axis=0) == 0) | (colmax >= tiny))))
            if ok:
                return SymCP(W, G, order)
    wn, Fn = to_numpy(w).astype(np.float64), to_numpy(F).astype(np.float64)
    am, ea = math.frexp(alpha)
    colmax = np.max(np.abs(Fn), axis=0)
    live = (wn != 0) & (colmax > 0)
    with np.errstate(divide="ignore"):
        lw = np.where(live, np.log2(np.abs(np.where(live, wn, 1.0))) + lg, 0.0)
        lu = np.where(live, np.log2(np.where(live, colmax, 1.0)), 0.0)
    k = np.where(live, np.rint((lw - lu) / (order + 1)), 0).astype(np.int64)
    W = np.ldexp(wn * am, ea - order * k)
    G = np.ldexp(Fn, k[None, :])
    return SymCP(xp.asarray(W, dtype=w.dtype), xp.asarray(G, dtype=F.dtype), order)
