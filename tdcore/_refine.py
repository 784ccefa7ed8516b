r"""Levenberg--Marquardt refinement of a symmetric CP model (beyond the paper).

Algorithm 1 of Wang et al. (2020) minimises a *regularised* objective, so it
stops at an error of order ``lam`` (the regulariser's floor), and its gradient
steps are slow in the last digits.  This module takes any symmetric CP model --
typically Algorithm 1's output, with more components than the target's rank,
some of them tiny and some near-duplicates -- and refines it by damped
Gauss--Newton (Levenberg--Marquardt) on the plain least-squares fit, down to a
relative error of ``1e-6 ... 1e-12`` in a handful of iterations.  The paper has
no such stage: this is an engineering addition for the book's comparisons.

Parametrisation
---------------
The model is ``sum_i sigma_i x_i^{(x) l}`` with free vectors ``x_i`` (columns of
``X``, shape ``(d, m)``) and fixed signs ``sigma_i in {-1, +1}``.  From a SymCP
``sum_i s_i u_i^{(x) l}``:

* even ``l``: ``x_i = |s_i|^{1/l} u_i`` and ``sigma_i = sign(s_i)``;
* odd ``l``: the sign is folded into the vector, ``x_i = sign(s_i) |s_i|^{1/l} u_i``
  and ``sigma_i = +1`` (``(-x)^{(x) l} = -x^{(x) l}``).

Formulas
--------
With ``G = X^T X``, ``S = diag(sigma)``, ``R[:, i] = T*(., x_i, ..., x_i)`` and the
residual ``E = model - T*``:

* ``f = 1/2 ||E||^2 = 1/2 (sigma^T G^{o l} sigma - 2 sum_i sigma_i x_i . R_i + ||T*||^2)``;
* gradient ``grad f = l (X S G^{o(l-1)} - R) S``;
* Gauss--Newton matrix ``J^T J``, block ``(i, j)`` (``d x d``)::

      B_ij = sigma_i sigma_j [ l G_ij^{l-1} I_d + l (l-1) G_ij^{l-2} x_j x_i^T ]

  (``v^T B_ij w`` is the inner product of the model's derivatives along ``v`` in
  ``x_i`` and along ``w`` in ``x_j``);
* its matrix-free product, ``O(d m^2)``: with ``P = X^T W`` and
  ``M = S (G^{o(l-2)} o P^T)``::

      (J^T J W) = l W S G^{o(l-1)} S + l (l-1) (X M) S.

The ``d^l`` tensor is never formed for a SymCP target (a dense target is
contracted, ``O(m d^l)``, as everywhere in tdcore).

Iteration
---------
Each step solves ``(J^T J + mu D) Delta = -grad f`` and is accepted when ``f``
decreases; ``mu`` then shrinks (by up to 10, by the gain ratio as in Nielsen's
rule), otherwise it grows by 2, 4, 8, ... and the step is retried.

* Damping (Marquardt-style, per component): ``D = diag(D_i) (x) I_d`` with
  ``D_i = l^2 ||x_i||^{2(l-1)}``, the largest eigenvalue of the diagonal block
  ``B_ii`` (attained along ``x_i``), floored at ``1e-12 max_i D_i``.  The curvature
  of a component scales like ``||x_i||^{2(l-1)}``: a plain ``mu I`` would freeze
  the small components and hardly damp the large ones, whereas this ``D`` makes
  the step invariant under rescaling a component and, being isotropic in each
  ``x_i``, equivariant under rotations of ``R^d`` (so ``mu`` is dimensionless).
* Exact linear algebra in ``O((m k)^3 + d m^2)`` with ``k = min(d, m)``, not
  ``O((m d)^3)``: write ``X = Q R_x`` (thin QR) and split ``W = Q C + W_perp``.
  Since ``J^T J`` touches ``W`` only through ``W S G^{o(l-1)} S`` and ``X^T W``, it
  maps ``W_perp`` to ``W_perp (l S G^{o(l-1)} S)`` (one ``m x m`` Cholesky for all
  ``d - k`` perpendicular directions) and ``Q C`` to ``Q`` times the same
  Gauss--Newton matrix in ``k`` dimensions with ``X`` replaced by ``R_x``.  That
  ``km x km`` system is assembled (einsum of the block formula) and solved by
  Cholesky when ``m k <= direct_max_size`` (``method="direct"``), or by
  conjugate gradients with the matrix-free product, preconditioned by the
  exact inverse of the Kronecker part ``(l S G^{o(l-1)} S + mu D) (x) I_k``
  (one ``m x m`` Cholesky; it captures the coupling of near-duplicate
  components, which a block-Jacobi preconditioner misses; ``method="cg"``).
* Over-parameterised models: components whose weight ``||x_i||^l`` falls below
  ``drop`` times the current residual norm are removed (they cannot matter for
  the error, and a tiny component makes ``J`` degenerate).  Clusters of
  (anti)parallel components (``|cos| >= merge``) are merged into one component
  (weights summed, direction the weighted mean) once the relative error is
  below ``1e-3``, when that at most doubles ``f``: at a split solution ``J`` is
  singular and Gauss--Newton converges only linearly (error halving per step);
  after the merge it is quadratic again.  Should the run stagnate after a
  merge, the state before the first merge is restored and merging is switched
  off (the best state held is returned in any case).

Precision
---------
The Gram-matrix expansion of ``||E||^2`` (used by :func:`tdcore.rel_error`)
cancels ``O(1)`` terms, so it cannot resolve relative errors below about
``1e-8``.  Once the error is below ``1e-4`` this module evaluates ``f``
accurately instead: for a dense target as the sum of squares of the dense
residual; for a SymCP target by writing ``E`` in an orthonormal basis of the
span of all components (``[X, V] = Q Z``, thin QR) and summing the squares of
the ``k^l`` core entries ``sum_a c_a z_a^{(x) l}`` (``k <= min(d, m + r)``), which is
done when ``k^l (m + r)`` is at most ``precise_budget`` (else the Gram expansion
is kept and tolerances below ``~1e-8`` may end in ``"stagnation"``).
:func:`precise_rel_error` (in ``_tensor``, re-exported here) exposes this
evaluation, and :func:`tdcore.rel_error` uses it by itself for nearly equal tensors.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
from scipy.linalg import LinAlgError
from scipy.linalg.lapack import dpotrf, dpotrs

from ._backend import to_numpy
from ._objective import DenseTarget, FactoredTarget, dense_is_cheaper
from ._tensor import SymCP, check_target, precise_rel_error  # noqa: F401  (re-exported)
from ._tensor import norm as _norm
from ._validate import check_choice, check_float, check_int, check_memory, check_nonzero_target

__all__ = ["refine", "RefineResult", "decompose", "DecomposeResult", "precise_rel_error",
           "DEFAULT_HANDOFF", "DEFAULT_COMPRESS", "DECOMPOSE_ETA", "DECOMPOSE_DELTA", "DECOMPOSE_RETRIES"]

#: Relative error at which :func:`decompose` hands Algorithm 1's model to :func:`refine`.
DEFAULT_HANDOFF = 0.3
#: Cosine above which :func:`decompose` merges Algorithm 1's copies of a direction before refining.
DEFAULT_COMPRESS = 0.99
#: :func:`decompose`'s first-stage step, in units of ``1 / (l^2 ||T*||)`` (the default rule's is 0.25).
DECOMPOSE_ETA = 1.0
#: :func:`decompose`'s first-stage initialisation radius, in units of the default rule's radius for that step.
DECOMPOSE_DELTA = 8.0
#: Reruns of :func:`decompose`'s first stage to half the previous handoff when the refinement falls short.
DECOMPOSE_RETRIES = 2

#: Below this relative error (Gram estimate) ``f`` is evaluated by the precise formula.
_PRECISE_BELOW = 1e-4
#: Clusters of parallel components are merged only below this relative error ...
_MERGE_BELOW = 1e-3
#: ... and only when the merge multiplies the objective f by at most this factor.
_MERGE_MAX_INCREASE = 2.0
#: Floor of the damping scales D_i, relative to the largest one.
_D_FLOOR = 1e-12
#: Largest damping parameter before the run is declared stagnant.
_MU_MAX = 1e12
#: Largest factor by which mu shrinks after a successful step (Nielsen's rule uses 1/3).
_MU_SHRINK = 0.1
#: Smallest damping parameter.
_MU_MIN = 1e-15


# ---------------------------------------------------------------------------
# results
# ---------------------------------------------------------------------------
@dataclass
class RefineResult:
    """Outcome of :func:`refine`.

    Attributes
    ----------
    model : SymCP
        The refined model ``sum_i w_i u_i^{(x) l}`` with unit factors ``u_i =
        x_i / ||x_i||`` and weights ``w_i = sigma_i ||x_i||^l`` (components that
        were pruned, or that became exactly zero, are left out).  NumPy arrays.
    rel_error : float
        ``||model - T*||_F / ||T*||_F`` of ``model``, evaluated precisely (see the
        module docstring); :func:`tdcore.rel_error` gives the same value to
        within its own resolution (about ``1e-8``).
    converged : bool
        True when ``rel_error <= tol``.
    stop_reason : str
        ``"tol"``, ``"max_iter"``, ``"stagnation"`` (no decrease possible, or
        progress too slow), ``"time_limit"`` or ``"non_finite"`` (the last finite
        state is returned).
    n_iter : int
        LM iterations performed (accepted and rejected steps both count).
    n_pruned : int
        Components dropped before refining (weight ``|s_i| ||u_i||^l`` at most
        ``prune * ||T*||``).
    n_dropped : int
        Components removed during the run (weight below ``drop`` times the
        residual norm).
    n_merged : int
        Components removed by merging (anti)parallel clusters.
    history : list of dict
        One record per iteration: ``iteration``, ``rel_error`` (of the current,
        i.e. last accepted, state), ``mu`` (damping used), ``accepted``, ``m``
        (components in use), ``step_norm``, ``cg_iters`` (0 for the direct
        solver), ``elapsed`` (seconds since the start).  Record 0 is the
        starting state, the last one the returned state.  ``rel_error`` never
        increases except by a drop or merge (by at most ``drop`` relative, or a
        factor ``sqrt(2)``) or when a merge after which the run stagnated is
        undone.
    elapsed : float
        Wall-clock seconds.
    method : str
        The linear solver used: ``"direct"`` or ``"cg"``.
    X, signs : ndarray
        Final raw state: ``X`` (d, m') and ``sigma`` (m',) with the model
        ``sum_i sigma_i x_i^{(x) l}`` (pruned, dropped and merged components removed).
    """

    model: SymCP
    rel_error: float
    converged: bool
    stop_reason: str
    n_iter: int
    n_pruned: int
    n_dropped: int
    n_merged: int
    history: list
    elapsed: float
    method: str
    X: np.ndarray = field(repr=False, default=None)
    signs: np.ndarray = field(repr=False, default=None)


@dataclass
class DecomposeResult:
    """Outcome of :func:`decompose`: Algorithm 1 to ``handoff``, then :func:`refine`.

    Attributes
    ----------
    model : SymCP
        The refined model.
    rel_error : float
        Its relative error.
    converged : bool
        ``rel_error <= tol``.
    algorithm1 : tdcore.Result
        The first stage's result.
    refine : RefineResult
        The second stage's result.
    elapsed : float
        Total wall-clock seconds (both stages).
    elapsed_algorithm1, elapsed_refine : float
        Wall-clock seconds of each stage.
    refine_fallback : bool
        True when a refinement of the merged model fell short of ``tol`` and
        was rerun from Algorithm 1's full model (``refine`` is the better of the two).
    retries : int
        How many times Algorithm 1 was rerun to a lower handoff (half the
        previous one) because the refinement fell short of ``tol``; ``algorithm1``
        and ``refine`` are those of the best attempt, the elapsed times cover all.
    """

    model: SymCP
    rel_error: float
    converged: bool
    algorithm1: object
    refine: RefineResult
    elapsed: float
    elapsed_algorithm1: float
    elapsed_refine: float
    refine_fallback: bool = False
    retries: int = 0


# ---------------------------------------------------------------------------
# the least-squares problem in X
# ---------------------------------------------------------------------------
def _khatri_rao_power(Z, p):
    """Rows indexed by ``(i_1, ..., i_p)``: ``prod_q Z[i_q, a]``, shape ``(k^p, n)``."""
    k, n = Z.shape
    out = Z
    for _ in range(p - 1):
        out = (out[:, None, :] * Z[None, :, :]).reshape(-1, n)
    return out if p > 0 else np.ones((1, n))


def _sym_dense(Y, c, l):
    """Dense ``sum_a c_a y_a^{(x) l}`` as a ``(k^{l-1}, k)`` matrix (Y of shape (k, n))."""
    return _khatri_rao_power(Y, l - 1) @ (c[:, None] * Y.T)


class _Problem:
    """Objective, gradient and Gauss--Newton products for ``sum_i sigma_i x_i^l`` vs ``T*``."""

    def __init__(self, target, sigma, precise_budget):
        self.target = target
        if isinstance(target, SymCP):
            self.V = np.asarray(to_numpy(target.factors), dtype=np.float64)
            self.w = np.asarray(to_numpy(target.weights), dtype=np.float64)
            self.l = target.order
            if dense_is_cheaper(target):  # many components in few dimensions: contract the dense array
                self.dense = np.asarray(to_numpy(target.to_numpy().to_dense()), dtype=np.float64)
                self.op = DenseTarget(self.dense)
            else:
                self.op = FactoredTarget(self.V, self.w, self.l)
                self.dense = None
        else:
            self.dense = np.asarray(to_numpy(target), dtype=np.float64)
            self.l = self.dense.ndim
            self.op = DenseTarget(self.dense)
        self.tn2 = float(self.op.norm2)
        self.sigma = sigma
        self.precise_budget = precise_budget

    # -- value and gradient ---------------------------------------------------
    def evaluate(self, X):
        """``(f, grad, G, rel_error)`` at ``X``; ``f`` precise once the error is small."""
        l, s = self.l, self.sigma
        G = X.T @ X
        XSG = (X * s) @ G ** (l - 1)
        R = self.op.contract(X)
        model2 = float(np.sum(s * np.einsum("ai,ai->i", X, XSG)))
        cross = float(np.sum(s * np.einsum("ai,ai->i", X, R)))
        f = 0.5 * (model2 - 2.0 * cross + self.tn2)
        if np.isfinite(f) and 2.0 * max(f, 0.0) < (_PRECISE_BELOW ** 2) * self.tn2:
            fp = self.precise_f(X)
            if fp is not None:
                f = fp
        f = max(f, 0.0) if np.isfinite(f) else float("nan")
        grad = l * (XSG - R) * s
        return f, grad, G, math.sqrt(2.0 * f / self.tn2) if np.isfinite(f) else float("nan")

    def precise_f(self, X):
        """``1/2 ||E||^2`` without the Gram expansion's cancellation (None if too costly)."""
        l, s = self.l, self.sigma
        if self.dense is not None:  # O(m d^l), the cost of one contraction with the dense target
            E = _sym_dense(X, s, l).reshape(self.dense.shape) - self.dense
            return 0.5 * float(np.sum(E * E))
        Y = np.concatenate([X, self.V], axis=1)
        c = np.concatenate([s, -self.w])
        k = min(Y.shape)
        if k ** l * Y.shape[1] > self.precise_budget:
            return None
        Z = np.linalg.qr(Y, mode="r")  # Y = Q Z, Q orthonormal: ||E|| = ||core of Z||
        Ec = _sym_dense(Z, c, l)
        return 0.5 * float(np.sum(Ec * Ec))

    # -- Gauss-Newton matrix ----------------------------------------------------
    def damping(self, X):
        """Marquardt scale per component, ``D_i = l^2 ||x_i||^{2(l-1)}`` (top eigenvalue of ``B_ii``), floored."""
        l = self.l
        D = (l * l) * np.sum(X * X, axis=0) ** (l - 1)
        return np.maximum(D, _D_FLOOR * float(np.max(D)))

    def jtj_matvec(self, X, G, W):
        """``(J^T J) W`` for W of shape (d, m), O(d m^2).  ``X`` may be any factor
        matrix with ``X^T X = G`` (the reduced coordinates ``R_x`` included)."""
        l, s = self.l, self.sigma
        Gl2 = G ** (l - 2)
        first = (W * s) @ (Gl2 * G)  # W S G^{o(l-1)}
        M = s[:, None] * (Gl2 * (X.T @ W).T)  # M = S (G^{o(l-2)} o P^T)
        return (l * first + (l * (l - 1)) * (X @ M)) * s

    def jtj_dense(self, X, G):
        """``J^T J`` assembled as an (m d, m d) matrix, index ``i d + a`` (i.e. ``W.T.ravel()``)."""
        l, s = self.l, self.sigma
        d, m = X.shape
        ss = np.outer(s, s)
        Gl2 = G ** (l - 2)
        A = l * ss * Gl2 * G  # (m, m)
        Bc = (l * (l - 1)) * ss * Gl2
        N = np.einsum("ij,aj,bi->iajb", Bc, X, X, out=np.empty((m, d, m, d)))
        idx = np.arange(d)
        N[:, idx, :, idx] += A[None, :, :]
        return N.reshape(m * d, m * d)

    def prepare(self, X, G):
        """Per-iterate quantities of :meth:`solve`: thin QR of X and the perpendicular block."""
        Q, Rx = np.linalg.qr(X)
        A = self.l * np.outer(self.sigma, self.sigma) * G ** (self.l - 1)  # l S G^{o(l-1)} S
        return {"Q": Q, "Rx": Rx, "A": A, "N": None}

    def solve(self, prep, G, g, mu, D, method, cg_rtol, cg_iters):
        """Solve ``(J^T J + mu D) Delta = -g`` exactly on span(X)^perp, directly or by PCG on span(X).

        Returns ``(Delta, cg_iterations)``; raises ``LinAlgError`` when a factorisation fails.
        """
        Q, Rx, A = prep["Q"], prep["Rx"], prep["A"]
        k, m = Rx.shape
        Cg = Q.T @ g
        step = np.zeros_like(g)
        F = _cho_factor(A + np.diag(mu * D))
        if k < g.shape[0]:  # span(X)^perp: J^T J acts as W -> W (l S G^{l-1} S), a Kronecker block
            step -= _cho_solve(F, (g - Q @ Cg).T).T
        if method == "direct":
            if prep["N"] is None:  # J^T J changes only when X does
                prep["N"] = self.jtj_dense(Rx, G)
            Nk = prep["N"] + np.diag(np.repeat(mu * D, k))
            C = _cho_solve(_cho_factor(Nk), -Cg.T.ravel())
            C, its = C.reshape(m, k).T, 0
        else:
            # preconditioner: exact inverse of the Kronecker part (l S G^{o(l-1)} S + mu D) (x) I_k
            C, its = _pcg(lambda W: self.jtj_matvec(Rx, G, W) + mu * D * W, -Cg,
                          lambda Rm: _cho_solve(F, Rm.T).T, cg_rtol, cg_iters)
        step += Q @ C
        return step, its


def _cho_factor(A):
    """Upper Cholesky factor of the symmetric positive definite ``A`` (LAPACK ``dpotrf``, no wrapper overhead:
    the refinement's systems are small and solved many times)."""
    c, info = dpotrf(A, lower=0, clean=0, overwrite_a=0)
    if info != 0:
        raise LinAlgError(f"the damped Gauss-Newton matrix is not positive definite (dpotrf info={info})")
    return c


def _cho_solve(c, b):
    """``A^{-1} b`` from :func:`_cho_factor`'s factor (LAPACK ``dpotrs``)."""
    x, info = dpotrs(c, b, lower=0, overwrite_b=0)
    if info != 0:  # pragma: no cover - only for malformed arguments
        raise LinAlgError(f"dpotrs failed (info={info})")
    return x


def _pcg(matvec, rhs, precond, rtol, maxiter):
    """Preconditioned conjugate gradients on (d, m) arrays; returns (solution, iterations)."""
    x = np.zeros_like(rhs)
    r = rhs.copy()
    z = precond(r)
    p = z.copy()
    rz = float(np.sum(r * z))
    bnorm = float(np.linalg.norm(rhs))
    if bnorm == 0.0:
        return x, 0
    it = 0
    for it in range(1, maxiter + 1):
        Ap = matvec(p)
        pAp = float(np.sum(p * Ap))
        if not pAp > 0.0:
            if it == 1:
                x = z  # fall back to the preconditioned gradient
            break
        alpha = rz / pAp
        x += alpha * p
        r -= alpha * Ap
        if float(np.linalg.norm(r)) <= rtol * bnorm:
            break
        z = precond(r)
        rz_new = float(np.sum(r * z))
        p = z + (rz_new / rz) * p
        rz = rz_new
    return x, it


# ---------------------------------------------------------------------------
# public API
# ---------------------------------------------------------------------------
def _to_state(model, l, prune, tnorm):
    """X, sigma from a SymCP, dropping components of weight <= prune * ||T*||."""
    s = np.asarray(to_numpy(model.weights), dtype=np.float64)
    U = np.asarray(to_numpy(model.factors), dtype=np.float64)
    size = np.abs(s) * np.linalg.norm(U, axis=0) ** l
    keep = size > prune * tnorm
    s, U = s[keep], U[:, keep]
    if s.size == 0:
        raise ValueError(
            f"all {model.m} components of model have weight |s_i| ||u_i||^l <= prune * ||T*|| = {prune * tnorm:.3g}: "
            "nothing to refine. Pass a model with non-negligible components, or a smaller prune.")
    X, sigma = _from_weights(s, U, l)
    return X, sigma, int(np.sum(~keep))


def _from_weights(W, U, l):
    """State (X, sigma) of ``sum_i W_i u_i^{(x) l}`` (odd l: sign folded into x_i)."""
    scale = np.abs(W) ** (1.0 / l)
    if l % 2:
        return U * (np.sign(W) * scale), np.ones(W.size)
    return U * scale, np.sign(W)


def _merge_parallel(X, sigma, l, cos_min):
    """Merge clusters of (anti)parallel components; ``None`` when no pair has ``|cos| >= cos_min``.

    Near a split solution ``w_1 u_1^l + w_2 u_2^l`` with ``u_1 ~ u_2`` the Jacobian is
    singular and Gauss--Newton converges only linearly.  A cluster is replaced by
    ``W u^{(x) l}`` with ``W = sum_k w_k`` and ``u`` the direction of ``sum_k w_k u_k``
    (after aligning the signs of the ``u_k``): this is the cluster's sum to first order
    in the angles, so the merge costs only a second-order change of the model.
    """
    n = np.linalg.norm(X, axis=0)
    U = X / n
    w = sigma * n ** l
    C = U.T @ U
    m = w.size
    off = np.abs(C)
    off.flat[:: m + 1] = 0.0
    if not off.max(initial=0.0) >= cos_min:  # the common case: nothing to merge
        return None
    parent = np.arange(m)

    def find(a):
        while parent[a] != a:
            a = parent[a]
        return a

    for i, j in np.argwhere(np.triu(off >= cos_min, 1)):  # the candidate pairs, few
        a, b = find(i), find(j)
        if a != b:
            parent[b] = a
    roots = np.array([find(i) for i in range(m)])
    count = np.bincount(roots, minlength=m)
    single = count[roots] == 1
    Ws, Us = [w[single]], [U[:, single]]  # a cluster of one is its component (W = w_i, u = u_i)
    for r in np.flatnonzero(count > 1):
        members = np.flatnonzero(roots == r)
        ref = members[np.argmax(np.abs(w[members]))]
        sgn = np.where(C[members, ref] < 0, -1.0, 1.0)
        wk = w[members] * sgn ** l  # (-u)^{(x) l} = (-1)^l u^{(x) l}
        W = float(np.sum(wk))
        if W == 0.0:
            continue
        acc = (U[:, members] * sgn) @ wk
        Ws.append(np.array([W]))
        Us.append((acc / np.linalg.norm(acc) * np.sign(W))[:, None])  # direction of sum_k w_k u_k / W
    Ws, Us = np.concatenate(Ws), np.concatenate(Us, axis=1)
    if Ws.size == 0:
        return None
    return _from_weights(Ws, Us, l)


def _to_model(X, sigma, l):
    nrm = np.linalg.norm(X, axis=0)
    keep = nrm > 0
    if not np.any(keep):  # pragma: no cover - needs an exactly zero state
        keep[0] = True
        return SymCP(np.zeros(1), np.eye(X.shape[0], 1), l)
    return SymCP(sigma[keep] * nrm[keep] ** l, X[:, keep] / nrm[keep], l)


def _target_shape(target):
    if isinstance(target, SymCP):
        return target.order, target.d
    return target.ndim, target.shape[0]


def _check_model_matches(model, l, d):
    if model.order != l:
        raise ValueError(f"model has order {model.order} but the target has order {l}")
    if model.d != d:
        raise ValueError(f"model has dimension d={model.d} but the target has dimension d={d}")


def refine(model, target, *, tol=1e-8, max_iter=50, prune=1e-6, drop=1e-2, merge=0.999, compress=None, mu0=1e-2,
           method="auto", cg_iters=100, direct_max_size=500, time_limit=None, precise_budget=2 * 10**8):
    """Refine a symmetric CP model by Levenberg--Marquardt on ``1/2 ||model - T*||^2``.

    Beyond the paper: see the module docstring for the formulas.  Works in
    float64 NumPy (CuPy inputs are copied to the host).

    Parameters
    ----------
    model : SymCP
        Starting model ``sum_i s_i u_i^{(x) l}`` (e.g. ``algorithm1(...).model``);
        any number of components, tiny and duplicated ones included.
    target : SymCP or dense symmetric array of shape (d,)*l
        The tensor ``T*``; for a SymCP the ``d^l`` array is never formed.
    tol : float
        Stop once the relative error is at most ``tol`` (> 0).
    max_iter : int
        Largest number of LM iterations (accepted plus rejected steps, >= 0).
    prune : float
        Components with ``|s_i| ||u_i||^l <= prune * ||T*||`` are dropped before
        refining (>= 0; ``0`` keeps all non-zero ones).  A ``ValueError`` is
        raised when nothing is left.
    drop : float
        During the run, components with ``||x_i||^l <= drop * ||model - T*||``
        are removed (>= 0; ``0`` disables; the largest component always stays).
    merge : float or None
        Cosine above which (anti)parallel components are merged, when merging
        at most doubles the objective (``None`` disables).
    compress : float or None
        Before the first iteration, merge clusters of components whose
        ``|cos|`` is at least this (same rule as ``merge``: kept only when it
        at most doubles the objective), whatever the error.  An
        over-parameterised model (Algorithm 1's output) holds many copies of
        each fitted direction; merging them first gives a smaller, better
        conditioned system and a shorter run.  ``None`` (default) disables.
    mu0 : float
        Initial damping (dimensionless, relative to ``D``; > 0).
    method : {"auto", "direct", "cg"}
        Linear solver on span(X): Cholesky on the assembled ``mk x mk`` matrix
        (``k = min(d, m)``), or preconditioned CG with the matrix-free product.
        ``"auto"`` takes ``"direct"`` when ``m k <= direct_max_size``.
    cg_iters : int
        Most CG iterations per LM step (CG stops earlier at relative residual
        ``min(0.1, rel_error)``).
    direct_max_size : int
        Largest ``m k`` for which ``"auto"`` assembles the dense matrix.
    time_limit : float, optional
        Stop after this many seconds (checked once per iteration).
    precise_budget : int
        Cost bound of the precise evaluation of ``f`` (see :func:`precise_rel_error`).

    Returns
    -------
    RefineResult

    Raises
    ------
    TypeError, ValueError
        For a model that is not a SymCP, an order or dimension mismatch, or an
        out-of-range parameter.

    Examples
    --------
    >>> import numpy as np, tdcore
    >>> from tdcore._refine import refine
    >>> T = tdcore.random_target(10, 3, 3, seed=0)
    >>> noisy = tdcore.SymCP(T.weights, T.factors + 0.01 * np.ones((10, 3)), 3)
    >>> res = refine(noisy, T, tol=1e-10)
    >>> res.converged, res.rel_error < 1e-10
    (True, True)
    """
    t0 = time.perf_counter()
    if not isinstance(model, SymCP):
        raise TypeError(f"model must be a tdcore.SymCP, got {type(model).__name__}")
    target = check_target(target)
    l, d = _target_shape(target)
    _check_model_matches(model, l, d)
    tol = check_float("tol", tol, positive=True)
    max_iter = check_int("max_iter", max_iter, minimum=0)
    prune = check_float("prune", prune, nonnegative=True)
    drop = check_float("drop", drop, nonnegative=True)
    merge = check_float("merge", merge, positive=True, allow_none=True)
    if merge is not None and merge > 1:
        raise ValueError(f"merge must be a cosine in (0, 1] or None, got {merge}")
    compress = check_float("compress", compress, positive=True, allow_none=True)
    if compress is not None and compress > 1:
        raise ValueError(f"compress must be a cosine in (0, 1] or None, got {compress}")
    mu = mu0 = check_float("mu0", mu0, positive=True)
    method = check_choice("method", method, ("auto", "direct", "cg"))
    cg_iters = check_int("cg_iters", cg_iters, minimum=1)
    direct_max_size = check_int("direct_max_size", direct_max_size, minimum=1)
    time_limit = check_float("time_limit", time_limit, positive=True, allow_none=True)
    precise_budget = check_int("precise_budget", precise_budget, minimum=1)
    check_nonzero_target(target)
    m0 = model.m
    k0 = min(m0, d)
    direct = method == "direct" or (method == "auto" and m0 * k0 <= direct_max_size)
    # Gram matrices and their powers (m x m), factors, gradients and steps (d x m), and for the
    # direct solver the assembled mk x mk matrix and its Cholesky factor
    need = 8 * (6 * m0 * m0 + 8 * d * m0) + (16 * (m0 * k0) ** 2 if direct else 0)
    check_memory("refine", need, detail=f"d={d}, m={m0}, method={method}")

    prob = _Problem(target, None, precise_budget)
    if prob.tn2 <= 0:
        raise ValueError("target has zero norm; the relative error is undefined")
    X, sigma, n_pruned = _to_state(model, l, prune, math.sqrt(prob.tn2))
    prob.sigma = sigma

    f, g, G, rel = prob.evaluate(X)
    if not np.isfinite(f):
        raise ValueError("the objective is not finite at the starting model")
    n_merged = 0
    if compress is not None and X.shape[1] > 1 and rel > tol:
        merged = _merge_parallel(X, sigma, l, compress)
        if merged is not None:
            prob.sigma = merged[1]
            fm, gm, Gm, relm = prob.evaluate(merged[0])
            if np.isfinite(fm) and fm <= _MERGE_MAX_INCREASE * f:
                n_merged = X.shape[1] - merged[0].shape[1]
                X, sigma = merged
                f, g, G, rel = fm, gm, Gm, relm
            else:
                prob.sigma = sigma
    m = X.shape[1]
    if method == "auto":
        method = "direct" if m * min(m, d) <= direct_max_size else "cg"
    history = [dict(iteration=0, rel_error=rel, mu=mu, accepted=True, m=m, step_norm=0.0, cg_iters=0,
                    elapsed=time.perf_counter() - t0)]
    nu = 2.0
    prep = None
    n_dropped = 0
    merge_block = math.inf
    saved = None  # state before the first merge
    best = (X, sigma, f, g, G, rel, n_merged, n_dropped)
    reason = "max_iter"
    slow = 0
    it = 0
    if rel <= tol:
        reason = "tol"
    else:
        for it in range(1, max_iter + 1):
            mu_used = mu
            if prep is None and drop > 0 and X.shape[1] > 1:
                size = np.sum(X * X, axis=0) ** (0.5 * l)
                keep = size > drop * math.sqrt(2.0 * f)
                keep[np.argmax(size)] = True
                if not np.all(keep):  # components far below the residual: remove, re-evaluate
                    X, sigma = X[:, keep], sigma[keep]
                    prob.sigma = sigma
                    n_dropped += int(np.sum(~keep))
                    f, g, G, rel = prob.evaluate(X)
            if (prep is None and merge is not None and X.shape[1] > 1 and f < merge_block
                    and rel < _MERGE_BELOW):
                merged = _merge_parallel(X, sigma, l, merge)
                if merged is not None:
                    prob.sigma = merged[1]
                    fm, gm, Gm, relm = prob.evaluate(merged[0])
                    if np.isfinite(fm) and fm <= _MERGE_MAX_INCREASE * f:  # a split, not two distinct components
                        if saved is None:
                            saved = (X, sigma, f, g, G, rel, n_merged, n_dropped)
                        n_merged += X.shape[1] - merged[0].shape[1]
                        X, sigma = merged
                        f, g, G, rel = fm, gm, Gm, relm
                    else:
                        prob.sigma = sigma
                        merge_block = 0.01 * f  # retry only after f has dropped 100-fold
            if prep is None:
                prep = prob.prepare(X, G)
                D = prob.damping(X)
            try:
                step, cg_used = prob.solve(prep, G, g, mu, D, method, min(0.1, rel), cg_iters)
                JtJs = prob.jtj_matvec(X, G, step)
            except (LinAlgError, ValueError):
                step, cg_used = None, 0
            accepted = False
            snorm = float(np.linalg.norm(step)) if step is not None else float("nan")
            if step is not None and np.all(np.isfinite(step)):
                Xn = X + step
                fn, gn, Gn, reln = prob.evaluate(Xn)
                pred = -float(np.sum(g * step)) - 0.5 * float(np.sum(step * JtJs))
                if np.isfinite(fn) and fn < f:
                    rho = (f - fn) / pred if pred > 0 else 1.0
                    slow = slow + 1 if (f - fn) < 1e-3 * f else 0
                    X, f, g, G, rel = Xn, fn, gn, Gn, reln
                    prep = None
                    mu = max(mu * max(_MU_SHRINK, 1.0 - (2.0 * rho - 1.0) ** 3), _MU_MIN)
                    nu = 2.0
                    accepted = True
            if not accepted:
                mu *= nu
                nu *= 2.0
            history.append(dict(iteration=it, rel_error=rel, mu=mu_used, accepted=accepted, m=X.shape[1],
                                step_norm=snorm, cg_iters=cg_used, elapsed=time.perf_counter() - t0))
            if rel <= tol:
                reason = "tol"
                break
            if step is not None and not np.all(np.isfinite(step)):
                reason = "non_finite"
                break
            if f < best[2]:
                best = (X, sigma, f, g, G, rel, n_merged, n_dropped)
            if mu > _MU_MAX or slow >= 8 or (accepted and snorm <= 1e-15 * float(np.linalg.norm(X))):
                if saved is not None:  # stuck after a merge: undo it, merge no more
                    X, sigma, f, g, G, rel, n_merged, n_dropped = saved
                    prob.sigma = sigma
                    saved, merge, prep, mu, nu, slow = None, None, None, mu0, 2.0, 0
                    continue
                reason = "stagnation"
                break
            if time_limit is not None and time.perf_counter() - t0 >= time_limit:
                reason = "time_limit"
                break
    if best[2] < f:  # after an undone merge: return the best state held
        X, sigma, f, g, G, rel, n_merged, n_dropped = best
        history[-1].update(rel_error=rel, m=X.shape[1])  # the last record describes the returned state
    out = _to_model(X, sigma, l)
    return RefineResult(model=out, rel_error=float(rel), converged=bool(rel <= tol), stop_reason=reason,
                        n_iter=it, n_pruned=n_pruned, n_dropped=n_dropped, n_merged=n_merged, history=history,
                        elapsed=time.perf_counter() - t0, method=method, X=X, signs=sigma)


def decompose(target, m, *, tol=1e-6, handoff=DEFAULT_HANDOFF, seed=None, refine_kwargs=None, **algorithm1_kwargs):
    """Algorithm 1 down to ``handoff``, then :func:`refine` down to ``tol``.

    The first stage is :func:`tdcore.algorithm1` with a step four times the
    default rule's, ``eta = 1 / (l^2 ||T*||)`` (``DECOMPOSE_ETA``): half the
    stability limit ``2 / (l^2 w)`` of every fitted component (``w <= ||T*||``),
    where the rule's eighth is chosen for long runs down to the regulariser
    floor.  Its initialisation radius is ``DECOMPOSE_DELTA`` = 8 times the
    rule's radius for that step (the rule shrinks the radius as the step
    grows, which would lengthen the escape from zero).  The stage stops at
    ``handoff``, long before the floor, and is two to three times shorter
    this way (measured on d = 10 to 50 random targets); should it diverge all
    the same, it is rerun once with the default rule.  The second stage first merges the copies of each
    fitted direction (``refine(compress=DEFAULT_COMPRESS)``): Algorithm 1's
    model holds several near-parallel copies of most target components, and
    Levenberg--Marquardt on the merged model solves a smaller, better
    conditioned system.  When that refinement does not reach ``tol`` (it
    happens when the copies of *different* target components are still
    aligned at the handoff, as for strongly correlated targets), the
    refinement is rerun from Algorithm 1's full model; when that falls short
    too (a correlated target of order 4 can leave Levenberg--Marquardt in a
    spurious minimum from a handoff at 0.3), Algorithm 1 is rerun to half the
    handoff, at most ``DECOMPOSE_RETRIES`` times, and the best result is
    returned.

    Parameters
    ----------
    target : SymCP or dense symmetric array
    m : int
        Number of components of Algorithm 1.
    tol : float
        Final relative error asked of :func:`refine` (> 0).
    handoff : float
        Relative error at which Algorithm 1 stops (its ``tol``) and the
        refinement takes over (> 0).  ``scripts/refine_benchmark.py`` (results
        in ``results/refine_benchmark.md``) times 0.3, 0.1, 0.05 and 0.02 on
        d = 20, r = 5 comparison targets, where 0.1 and 0.05 took 12 to 44 %
        less time than 0.3, and 0.3, 0.2 and 0.1 on the seven cases of the
        time-to-accuracy benchmark, where 0.3 was the fastest on the two
        slowest cases (correlated d = 100 and over-complete r > d; the others
        took 16 to 69 % longer there) and at most an eighth slower than the
        fastest on the other five: it stays the default for that table.
    seed : int or numpy.random.Generator, optional
        Seed of Algorithm 1.
    refine_kwargs : dict, optional
        Extra keyword arguments of :func:`refine` (not ``tol``); the defaults
        here are ``compress=DEFAULT_COMPRESS`` and ``max_iter=100``.
        ``compress=None`` refines Algorithm 1's model as it is.
    **algorithm1_kwargs
        Extra keyword arguments of :func:`tdcore.algorithm1` (its ``tol`` is
        ``max(handoff, tol)``); an explicit ``eta`` replaces the step and the
        radius above (and is not retried), an explicit ``delta`` the radius.

    Returns
    -------
    DecomposeResult
    """
    from ._algorithm1 import DivergenceError, algorithm1

    tol = check_float("tol", tol, positive=True)
    handoff = check_float("handoff", handoff, positive=True)
    target = check_target(target)
    check_nonzero_target(target)
    if refine_kwargs is None:
        refine_kwargs = {}
    if not isinstance(refine_kwargs, dict):
        raise TypeError(f"refine_kwargs must be a dict, got {type(refine_kwargs).__name__}")
    if "tol" in refine_kwargs:
        raise TypeError("pass the refinement's tolerance as decompose(tol=...), not in refine_kwargs")
    rk = {"compress": DEFAULT_COMPRESS, "max_iter": 100, **refine_kwargs}
    t0 = time.perf_counter()
    a1_kwargs = dict(algorithm1_kwargs)
    own_eta = a1_kwargs.get("eta") is None
    if own_eta:
        from ._algorithm1 import default_params

        l, tn = len(target.shape), _norm(target)
        a1_kwargs["eta"] = DECOMPOSE_ETA / (l * l * tn)
        if a1_kwargs.get("delta") is None:
            # the default rule's radius for this step (it shrinks as the step grows), times DECOMPOSE_DELTA
            dp = default_params(target.shape[0], l, check_int("m", m, minimum=1), tn,
                                epochs=a1_kwargs.get("epochs"), eta=a1_kwargs["eta"])
            a1_kwargs["delta"] = DECOMPOSE_DELTA * dp.delta

    def stage1(h):
        try:
            return algorithm1(target, m, tol=h, seed=seed, **a1_kwargs)
        except DivergenceError:
            if not own_eta:
                raise
            a1_kwargs["eta"], a1_kwargs["delta"] = None, algorithm1_kwargs.get("delta")  # the default rule
            return algorithm1(target, m, tol=h, seed=seed, **a1_kwargs)

    handoffs = [max(handoff, tol)]
    for _ in range(DECOMPOSE_RETRIES):
        if handoffs[-1] * 0.5 > tol:
            handoffs.append(handoffs[-1] * 0.5)
    t_a1 = t_ref = 0.0
    best, fallback = None, False
    for retries, h in enumerate(handoffs):
        t1 = time.perf_counter()
        res1 = stage1(h)
        t2 = time.perf_counter()
        res2 = refine(res1.model, target, tol=tol, **rk)
        if not res2.converged and rk["compress"] is not None:
            res3 = refine(res1.model, target, tol=tol, **{**rk, "compress": None})
            fallback = True
            if res3.rel_error <= res2.rel_error:
                res2 = res3
        t3 = time.perf_counter()
        t_a1, t_ref = t_a1 + (t2 - t1), t_ref + (t3 - t2)
        if best is None or res2.rel_error < best[1].rel_error:
            best = (res1, res2)
        if res2.converged:
            break
    res1, res2 = best
    return DecomposeResult(model=res2.model, rel_error=res2.rel_error, converged=res2.converged, algorithm1=res1,
                           refine=res2, elapsed=time.perf_counter() - t0, elapsed_algorithm1=t_a1,
                           elapsed_refine=t_ref, refine_fallback=fallback, retries=retries)
