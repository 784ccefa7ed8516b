"""Symmetric tensors held implicitly, as weights and factor columns.

A symmetric CP tensor ``T = sum_i w_i u_i^{(x) l}`` is stored as its weights
``w`` (shape ``(m,)``) and factors ``U`` (shape ``(d, m)``).  Every quantity the
library needs is a polynomial in Gram matrices:

    <T, T'>  = sum_{i,j} w_i w'_j (u_i . u'_j)^l
    ||T||^2 = w^T (U^T U)^{o l} w

so the cost is O(m m' d) and the ``d^l`` array is never formed.  Dense symmetric
ndarrays of shape ``(d,)*l`` are accepted wherever a target is expected.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

from ._backend import on_common, to_numpy, xp_of
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

    def inner(self, other):
        """Frobenius inner product with another SymCP or a dense symmetric array."""
        return inner(self, other)

    def norm(self):
        """Frobenius norm, from the Gram matrix (O(m^2 d))."""
        return norm(self)

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
        """This tensor scaled to unit Frobenius norm."""
        n = self.norm()
        if n == 0:
            raise ValueError("cannot normalise a tensor of zero norm")
        return self * (1.0 / n)

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
        T = xp.zeros(self.shape, dtype=self.factors.dtype)
        letters = "abcdefghijklmnopqrstuvwxyz"[: self.order]
        spec = ",".join(f"{ch}z" for ch in letters) + ",z->" + letters
        # contract in blocks of columns to keep temporaries at the size of T
        for start in range(0, self.m, 256):
            Ub = self.factors[:, start:start + 256]
            T += xp.einsum(spec, *([Ub] * self.order), self.weights[start:start + 256], optimize="greedy")
        return T


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


def _contract_dense(T, U, *, block_bytes=64 * 2**20):
    """``T(., u_j, ..., u_j)`` for each column of ``U`` (shape (d, n)), O(n d^l) work.

    Columns are processed in blocks so that the largest temporary,
    ``d^(l-1) x block``, stays under ``block_bytes``.
    """
    xp, T, U = on_common(T, U)
    d, l = T.shape[0], T.ndim
    n = U.shape[1]
    out = xp.empty((d, n), dtype=np.result_type(T.dtype, U.dtype))
    block = max(1, int(block_bytes // (8 * d ** (l - 1))))
    flat = T.reshape(d ** (l - 1), d)
    for s in range(0, n, block):
        Ub = U[:, s:s + block]
        Y = flat @ Ub  # (d^(l-1), b): last mode contracted
        for k in range(l - 2):
            Y = Y.reshape(d ** (l - 2 - k), d, Ub.shape[1])
            Y = xp.einsum("adb,db->ab", Y, Ub)
        out[:, s:s + block] = Y
    return out


def inner(a, b):
    """Frobenius inner product ``<a, b>`` of two symmetric tensors.

    Either argument may be a :class:`SymCP` or a dense symmetric array; the
    ``d^l`` array is never formed when both are SymCP.
    """
    a_cp, b_cp = isinstance(a, SymCP), isinstance(b, SymCP)
    if a_cp and b_cp:
        _check_compatible(a, b, "a", "b")
        _check_gram_memory("inner", a.m, b.m)
        _, fa, wa, fb, wb = on_common(a.factors, a.weights, b.factors, b.weights)
        G = fa.T @ fb
        return float(wa @ (G ** a.order) @ wb)
    if not a_cp and not b_cp:
        a, b = check_target(a, name="a"), check_target(b, name="b")
        if a.shape != b.shape:
            raise ValueError(f"dense tensors have different shapes: {a.shape} and {b.shape}")
        xp, a, b = on_common(a, b)
        return float(xp.sum(a * b))
    cp, dense = (a, b) if a_cp else (b, a)
    dname = "b" if a_cp else "a"
    dense = check_target(dense, name=dname)
    if dense.shape != cp.shape:
        raise ValueError(f"shapes differ: {'a' if a_cp else 'b'} is a SymCP of shape {cp.shape}, {dname} a dense "
                         f"array of shape {dense.shape}")
    R = _contract_dense(dense, cp.factors)
    xp, w, F, R = on_common(cp.weights, cp.factors, R)
    return float(xp.sum(w * xp.sum(F * R, axis=0)))


def norm(T):
    """Frobenius norm of a SymCP (from its Gram matrix) or of a dense array."""
    if isinstance(T, SymCP):
        return math.sqrt(max(inner(T, T), 0.0))
    T = check_target(T, name="T")
    xp = xp_of(T)
    return float(xp.sqrt(xp.sum(T * T)))


def rel_error(model, target):
    """Relative error ``||T - T*||_F / ||T*||_F`` for any mix of SymCP and dense.

    For two SymCP tensors the squared distance is expanded through Gram matrices,
    ``||T||^2 - 2<T, T*> + ||T*||^2``, so precision is limited to about
    ``sqrt(machine epsilon)`` relative: values below ~1e-7 (float64) are not resolved.
    """
    model = check_target(model, name="model")
    target = check_target(target, name="target")
    if _shape_of(model) != _shape_of(target):
        raise ValueError(f"model and target must have the same shape (d,)*order: model has shape "
                         f"{_shape_of(model)}, target has shape {_shape_of(target)}")
    tn2 = inner(target, target)
    if tn2 <= 0:
        raise ValueError("target has zero norm; the relative error is undefined")
    if not isinstance(model, SymCP) and not isinstance(target, SymCP):
        xp, m, t = on_common(model, target)
        return float(xp.sqrt(xp.sum((m - t) ** 2)) / math.sqrt(tn2))
    d2 = inner(model, model) - 2 * inner(model, target) + tn2
    return math.sqrt(max(d2, 0.0) / tn2)


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


def subspace_basis(target, *, tol=1e-10):
    """Orthonormal basis (d x k) of the span S of a SymCP target's components."""
    if not isinstance(target, SymCP):
        raise TypeError("subspace_basis needs a SymCP target (the components of a dense target are unknown)")
    F = to_numpy(target.factors)
    Uq, s, _ = np.linalg.svd(F, full_matrices=False)
    k = int(np.sum(s > tol * max(s[0], 1e-300)))
    return Uq[:, :k]
