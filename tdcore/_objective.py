"""Objectives and gradients, written as Gram-matrix powers.

Model ``T = sum_i s_i u_i^{(x) l}`` with factors ``U`` (d x m) and weights ``s``.
With ``G = U^T U`` and ``R[:, i] = T*(., u_i, ..., u_i)``::

    1/2 ||T - T*||^2 = 1/2 (s^T G^{o l} s - 2 sum_i s_i u_i.R_i + ||T*||^2)
    grad_U           = l (U (diag(s) G^{o(l-1)}) - R) diag(s)
    grad_s           = G^{o l} s - (u_i . R_i)_i

For a factored target ``T* = sum_k w_k v_k^{(x) l}``, ``R = V diag(w) (V^T U)^{o(l-1)}``
so one evaluation costs O(m (m + r) d): the products ``U^T U``, ``V^T U`` and
``U M - V N``; ``fit_terms`` forms no m x m array besides ``G`` (see its docstring).
For a dense target ``R`` is a contraction on l-1 modes, O(m d^l).

All kernels accept a leading batch axis: ``U`` of shape (B, d, m), ``s`` (B, m),
and a factored target with ``V`` (B, d, r) or (d, r).  They are written against
the array module of their inputs (NumPy or CuPy) and never branch on it.
"""

from __future__ import annotations

import numpy as np

from ._backend import asarray_on, get_backend, on_common, xp_of
from ._tensor import DEFAULT_CHUNK_BYTES, SymCP, _contract_dense, check_target, norm
from ._validate import check_float

__all__ = ["fit_objective", "vanilla_objective", "objective", "make_target_operator"]


def _mT(a):
    return a.swapaxes(-1, -2)


class FactoredTarget:
    """Internal form of a SymCP target on a backend (possibly batched)."""

    def __init__(self, V, w, order, norm2=None):
        self.V, self.w, self.order = V, w, order
        self.norm2 = _factored_norm2(V, w, order) if norm2 is None else norm2
        self.d = V.shape[-2]

    def contract(self, U):
        A = _mT(self.V) @ U  # (.., r, m)
        return self.V @ (self.w[..., :, None] * _ipow(A, self.order - 1))


def _factored_norm2(V, w, order):
    """``||sum_k w_k v_k^{(x) l}||^2`` per batch entry, scale-robust and in blocks.

    Uses :func:`tdcore.norm` (Gram blocks or the dense tensor in blocks), so that a
    target with many components (e.g. a moment tensor) never forms its ``r x r``
    Gram matrix.  Returns an array of the batch shape (0-d when unbatched).
    """
    xp = xp_of(V)
    if V.ndim == 2:
        return xp.asarray(norm(SymCP(w, V, order)) ** 2, dtype=V.dtype)
    flat_V = V.reshape((-1,) + V.shape[-2:])
    flat_w = w.reshape((-1, w.shape[-1]))
    vals = [norm(SymCP(flat_w[b], flat_V[b], order)) ** 2 for b in range(flat_V.shape[0])]
    return xp.asarray(vals, dtype=V.dtype).reshape(V.shape[:-2])


class DenseTarget:
    """Internal form of a dense target (unbatched)."""

    def __init__(self, T):
        xp = xp_of(T)
        self.T, self.order, self.d = T, T.ndim, T.shape[0]
        self.norm2 = xp.sum(T * T)

    def contract(self, U):
        if U.ndim == 2:
            return _contract_dense(self.T, U)
        xp = xp_of(U)
        return xp.stack([_contract_dense(self.T, Ub) for Ub in U])


def dense_is_cheaper(target):
    """True when contracting the dense ``d^l`` array beats the factored form of a SymCP.

    A contraction ``T*(., u, ..., u)`` costs about ``d^l`` flops densely and
    ``2 r d`` in factored form; the dense array is used when it is at least twice
    cheaper and fits in half of :data:`tdcore.DEFAULT_CHUNK_BYTES` (e.g. a moment
    tensor of many samples in few dimensions).
    """
    if not isinstance(target, SymCP):
        return False
    d, r, l = target.d, target.m, target.order
    return 2 * d**l <= r * d and 8 * d**l <= DEFAULT_CHUNK_BYTES // 2


def make_target_operator(target, backend="numpy", dtype=np.float64):
    """Move a target (SymCP or dense array) to a backend in its internal form.

    A SymCP with many more components than ``d^(l-1)`` becomes a dense target
    (built in blocks), see :func:`dense_is_cheaper`.
    """
    be = get_backend(backend)
    target = check_target(target)
    if isinstance(target, SymCP):
        if dense_is_cheaper(target):
            return DenseTarget(be.asarray(target.to_numpy().to_dense(), dtype))
        return FactoredTarget(be.asarray(target.factors, dtype), be.asarray(target.weights, dtype), target.order)
    return DenseTarget(be.asarray(target, dtype))


def _as_operator(target, like):
    """The target in its internal form, on the side of ``like`` (see the conversion rule in ``_backend``)."""
    if isinstance(target, (FactoredTarget, DenseTarget)):
        return target
    xp = xp_of(like)
    target = check_target(target)
    if isinstance(target, SymCP):
        return FactoredTarget(asarray_on(xp, target.factors, like.dtype), asarray_on(xp, target.weights, like.dtype),
                              target.order)
    return DenseTarget(asarray_on(xp, target, like.dtype))


def _ipow(x, k):
    """``x ** k`` for a small integer ``k >= 0`` with the fewest array passes."""
    if k == 0:
        return xp_of(x).ones_like(x)
    if k == 1:
        return x
    out = x * x
    for _ in range(k - 2):
        out *= x
    return out


def _coldot(A, B):
    """Column-wise dot products ``sum_k A[..., k, j] B[..., k, j]`` (one pass, no temporary)."""
    return xp_of(A).einsum("...ij,...ij->...j", A, B)


def fit_terms(U, s, tgt, *, need_grad_s=False):
    """Fit value 1/2||T - T*||^2 and its gradient in U (and in s on request).

    Returns ``(fit, grad_U, grad_s or None, model_norm2)``; ``fit`` has the batch shape.
    Three matrix products dominate: ``G = U^T U``, ``U M`` with ``M = diag(s) G^{o(l-1)}``
    computed as ``(U diag(s)) G^{o(l-1)}``, and the target contraction ``R``.  The
    model term uses ``(G^{o l} s)_i = u_i . (U M)_i``, so no m x m array is formed
    besides ``G`` (powered in place).
    """
    xp = xp_of(U)
    l = tgt.order
    G = _mT(U) @ U
    if l == 3:
        G *= G  # G^{o 2}, in place
        Gp = G
    else:
        Gp = _ipow(G, l - 1)
    UM = (U * s[..., None, :]) @ Gp  # U diag(s) G^{o(l-1)} = U M
    R = tgt.contract(U)
    GlS = _coldot(U, UM)  # (G^{o l} s)_i
    UR = _coldot(U, R)  # u_i . R_i = T*(u_i, ..., u_i)
    model2 = xp.sum(s * GlS, axis=-1)
    cross = xp.sum(s * UR, axis=-1)
    fit = 0.5 * (model2 - 2.0 * cross + tgt.norm2)
    UM -= R
    UM *= (l * s)[..., None, :]  # grad_U = l (U M - R) diag(s)
    grad_s = (GlS - UR) if need_grad_s else None
    return fit, UM, grad_s, model2


def _check_shapes(U, order, d_target, *weights):
    if U.ndim not in (2, 3):
        raise ValueError(f"U must have shape (d, m) or (B, d, m), got shape {U.shape}")
    if U.shape[-2] != d_target:
        raise ValueError(f"U has d={U.shape[-2]} rows but the target has dimension d={d_target}")
    for name, w in weights:
        if w.shape != U.shape[:-2] + U.shape[-1:]:
            raise ValueError(f"{name} must have shape {U.shape[:-2] + U.shape[-1:]} to match U, got {w.shape}")


def fit_objective(U, s, target, *, grad=False):
    """``1/2 ||sum_i s_i u_i^{(x) l} - T*||_F^2`` and optionally its gradients.

    Parameters
    ----------
    U : array, shape (d, m) or (B, d, m)
    s : array, shape (m,) or (B, m)
    target : SymCP or dense symmetric array
    grad : bool
        Also return ``(grad_U, grad_s)``.
    """
    xp, U, s = on_common(U, s)
    s = s.astype(U.dtype, copy=False)
    tgt = _as_operator(target, U)
    _check_shapes(U, tgt.order, tgt.d, ("s", s))
    f, gU, gs, _ = fit_terms(U, s, tgt, need_grad_s=grad)
    return (f, gU, gs) if grad else f


def vanilla_objective(U, c, target, *, grad=False):
    """The vanilla objective (2): ``1/2 ||sum_i c_i u_i^{(x) l} - T*||_F^2``.

    Returns the value, or ``(value, grad_U, grad_c)`` when ``grad`` is true.
    """
    return fit_objective(U, c, target, grad=grad)


def objective(U, C, Chat, A, target, lam, *, grad=False):
    """The paper's objective ``f(U, C, Chat, A)``.

    ``f = 1/2 ||sum_i a_i c_i^{l-2} u_i^{(x) l} - T*||^2 + lam sum_i chat_i^{l-2} ||u_i||^l``.
    The gradient is taken in ``U`` with ``C`` and ``Chat`` held fixed, as in
    Algorithm 1 of Wang et al. (2020).

    Parameters
    ----------
    U : array (d, m) or (B, d, m)
    C, Chat, A : arrays (m,) or (B, m)
        The diagonals of the paper's ``C``, ``Chat`` and ``A`` (signs in {-1, +1}).
    target : SymCP or dense symmetric array
    lam : float
        Regularisation strength (>= 0).
    grad : bool
        Also return the gradient in ``U``.
    """
    lam = check_float("lam", lam, nonnegative=True)
    xp, U, C, Chat, A = on_common(U, C, Chat, A)
    C, Chat, A = (v.astype(U.dtype, copy=False) for v in (C, Chat, A))
    tgt = _as_operator(target, U)
    _check_shapes(U, tgt.order, tgt.d, ("C", C), ("Chat", Chat), ("A", A))
    l = tgt.order
    s = A * C ** (l - 2)
    f, gU, _, _ = fit_terms(U, s, tgt)
    nrm = xp.sqrt(xp.sum(U * U, axis=-2))
    reg = lam * xp.sum(Chat ** (l - 2) * nrm ** l, axis=-1)
    if not grad:
        return f + reg
    gU = gU + (lam * l) * U * (Chat ** (l - 2) * nrm ** (l - 2))[..., None, :]
    return f + reg, gU
