"""Lazy (NTK) training: the linearised model's kernel, its exact best fit, dimension counts.

Linearised around an initialisation ``U0`` the model ``sum_i c_i u_i^{(x) l}`` can
only reach ``T(U0) + span{ sym(u_i^{(x)(l-1)} (x) x) : i <= m, x in R^d }``
(Theorem 1 of Wang, Wu, Lee, Ma & Ge, 2020).  :func:`lazy_fit` projects a target
onto that span *exactly*, through the ``(d m) x (d m)`` Gram matrix (kernel) of
the features ``phi_{i,a} = sym(u_i^{(x)(l-1)} (x) e_a)``, whose entries are
polynomials in ``G = U^T U``::

    <phi_{i,a}, phi_{j,b}> = ( G_ij^{l-1} [a = b] + (l-1) G_ij^{l-2} U_aj U_bi ) / l

and the right-hand side ``<T*, phi_{i,a}> = T*(u_i, ..., u_i, e_a)``; no ``d^l``
array is formed.

* :func:`sym_dim`: the dimension ``C(d + l - 1, l)`` of the symmetric tensors;
* :func:`tdcore.lazy_kernel`, :func:`lazy_fit`: the kernel and the exact best lazy fit;
* ``lazy_residual_path``: the fit for every prefix of the initial components at once;
* :func:`span_defects`: the dimension of the lazy span against the count (the
  Alexander-Hirschowitz exceptions, :data:`ALEXANDER_HIRSCHOWITZ_DEFECTIVE`);
* :func:`lazy_threshold_sweep`: the smallest width ``m*`` whose lazy fit is good
  enough, for several ``d``, with a log-log fit against ``d``;
* :func:`lazy_init`, :func:`linearized_gd_error`: the paired initialisation in
  the lazy scaling and the exact error of gradient descent on the linearised model.

No plotting here; the chapter *Lazy training* draws these results with
:mod:`tdcore.book.lazy_training`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from ._objective import make_target_operator
from ._stats import LineFit, fit_loglog_slope
from ._tensor import SymCP, check_target, inner, random_target
from ._util import serial_blas
from ._validate import as_rng, check_float, check_int, check_int_list, check_order, check_seeds, check_vector
from ._util import target_info as _target_info, unit_columns as _unit_columns
from ._validate import check_matrix

__all__ = [
    "sym_dim",
    "lazy_kernel",
    "lazy_fit",
    "LazyFit",
    "lazy_residual_path",
    "span_defects",
    "ALEXANDER_HIRSCHOWITZ_DEFECTIVE",
    "lazy_threshold_sweep",
    "LazySweep",
    "lazy_init",
    "linearized_gd_error",
]


def sym_dim(d, order):
    """Dimension ``C(d + l - 1, l)`` of the space of symmetric order-``l`` tensors on ``R^d``.

    Examples
    --------
    >>> sym_dim(3, 2), sym_dim(10, 3)
    (6, 220)
    """
    d = check_int("d", d, minimum=1)
    order = check_order(order)
    return math.comb(d + order - 1, order)


# ---------------------------------------------------------------------------
# the kernel and the exact lazy fit (Theorem 1)
# ---------------------------------------------------------------------------
def lazy_kernel(U, order):
    """Gram matrix of the lazy features ``phi_{i,a} = sym(u_i^{(x)(l-1)} (x) e_a)``.

    Parameters
    ----------
    U : array of shape (d, m)
        The initial components ``u_i`` as columns.
    order : int
        Tensor order ``l >= 2``.

    Returns
    -------
    ndarray of shape (d m, d m)
        Entry ``[i d + a, j d + b]`` is ``<phi_{i,a}, phi_{j,b}>``, computed as
        ``(G_ij^{l-1} [a = b] + (l-1) G_ij^{l-2} U_aj U_bi) / l`` with ``G = U^T U``.
        The row index runs over components first, then coordinates.

    Notes
    -----
    For unit ``x, y`` the general identity is
    ``<sym(u^{l-1} (x) x), sym(v^{l-1} (x) y)> = ((u.v)^{l-1} (x.y) + (l-1)(u.v)^{l-2}(u.y)(v.x)) / l``:
    symmetrising one side suffices, and of the ``l`` positions the lone ``y``
    can take, one meets ``x`` and ``l - 1`` meet a copy of ``u``.

    Examples
    --------
    >>> K = lazy_kernel(np.eye(3), 3)  # three orthonormal components in R^3
    >>> K.shape, float(K[0, 0])  # <sym(e_1^2 e_1), sym(e_1^2 e_1)> = ||e_1^3||^2
    ((9, 9), 1.0)
    """
    order = check_order(order)
    U = check_matrix("U", U)
    d, m = U.shape
    G = U.T @ U
    A = G ** (order - 1)
    H = G ** (order - 2)
    K = A[:, None, :, None] * np.eye(d)[None, :, None, :]
    K += (order - 1) * (H[:, None, :, None] * U[None, :, :, None] * U.T[:, None, None, :])
    K /= order
    return K.reshape(d * m, d * m)


def _feature_rhs(target, U):
    """``<R, phi_{i,a}> = R(u_i, ..., u_i, e_a)`` as a vector indexed ``i d + a``."""
    op = make_target_operator(target, "numpy", np.float64)
    return np.asarray(op.contract(U)).T.reshape(-1)


@dataclass(frozen=True)
class LazyFit:
    """Best fit of a target by the model linearised at ``U0`` (see :func:`lazy_fit`).

    Attributes
    ----------
    rel_residual : float
        ``||T* - T_lazy|| / ||T*||`` for the best ``T_lazy`` in ``T(U0) + S_U``.
    rank : int
        Dimension of the span ``S_U`` of the features (numerical rank of the kernel).
    n_features : int
        ``d m``, the number of features (an upper bound on ``rank``).
    sym_dim : int
        ``C(d + l - 1, l)``, the dimension of all symmetric tensors.
    d, m, order : int
    directions : ndarray of shape (d, m)
        The minimum-norm ``x_i`` with ``T_lazy - T(U0) = sum_i sym(u_i^{(x)(l-1)} (x) x_i)``.
    eigenvalues : ndarray
        Kernel eigenvalues (ascending).
    """

    rel_residual: float
    rank: int
    n_features: int
    sym_dim: int
    d: int
    m: int
    order: int
    directions: np.ndarray = field(repr=False)
    eigenvalues: np.ndarray = field(repr=False)

    def __float__(self):
        return float(self.rel_residual)


@serial_blas
def lazy_fit(target, U0, *, weights=None, rtol=1e-10):
    """Exact relative residual of the best *lazy* (linearised) fit of ``target`` around ``U0``.

    The model ``sum_i c_i u_i^{(x) l}`` linearised at ``U = U0`` reaches
    ``T(U0) + S_U`` with ``S_U = span{ sym(u_i^{(x)(l-1)} (x) x) : i <= m, x in R^d }``
    (training the weights ``c_i`` adds ``u_i^{(x) l}``, already in ``S_U``).  The
    residual of the orthogonal projection onto it is computed from the
    ``(d m) x (d m)`` kernel of :func:`tdcore.lazy_kernel` by an eigendecomposition
    (the kernel is rank-deficient as soon as ``d m`` exceeds ``C(d + l - 1, l)``).

    Parameters
    ----------
    target : SymCP or dense symmetric array
    U0 : array of shape (d, m)
        Initial components; only their directions matter for ``S_U``.
    weights : array of shape (m,), optional
        Initial weights ``c_i``.  When given, the affine space ``T(U0) + S_U`` is
        used (the lazy model starts from ``T(U0) = sum_i c_i u_i^{(x) l}``); when
        omitted ``T(U0) = 0``, the usual antisymmetric (paired) initialisation.
    rtol : float
        Eigenvalues below ``rtol * max eigenvalue`` count as zero.

    Returns
    -------
    LazyFit
        ``float(result)`` is the relative residual.  It is obtained as
        ``sqrt(||T*||^2 - ||projection||^2)``, so values below about ``1e-6``
        (the square root of the round-off) are not resolved.

    Examples
    --------
    >>> import tdcore
    >>> U0 = np.random.default_rng(0).standard_normal((3, 4))  # d m = 12 >= C(5, 3) = 10
    >>> fit = lazy_fit(tdcore.random_target(3, 1, 3, seed=0), U0)
    >>> fit.rank, fit.sym_dim, fit.rel_residual < 1e-6  # the span is all symmetric tensors
    (10, 10, True)
    """
    target = check_target(target)
    d, order, n2 = _target_info(target)
    if n2 <= 0:
        raise ValueError("target has zero norm; the relative residual is undefined")
    U0 = check_matrix("U0", U0)
    if U0.shape[0] != d:
        raise ValueError(f"U0 has d={U0.shape[0]} rows but the target has dimension d={d}")
    rtol = check_float("rtol", rtol, positive=True)
    m = U0.shape[1]
    b = _feature_rhs(target, U0)
    r2 = n2
    if weights is not None:
        w = check_vector("weights", weights, m)
        T0 = SymCP(w, U0, order)
        b = b - T0.contract(U0).T.reshape(-1)
        r2 = n2 - 2 * _inner_any(T0, target) + float(T0.inner(T0))
    K = lazy_kernel(U0, order)
    lam, V = np.linalg.eigh(K)
    keep = lam > rtol * max(lam[-1], 1e-300)
    z = V[:, keep].T @ b
    proj2 = float(np.sum(z**2 / lam[keep]))
    res2 = max(r2 - proj2, 0.0)
    coef = V[:, keep] @ (z / lam[keep])
    return LazyFit(rel_residual=math.sqrt(res2 / n2), rank=int(keep.sum()), n_features=d * m,
                   sym_dim=sym_dim(d, order), d=d, m=m, order=order,
                   directions=coef.reshape(m, d).T.copy(), eigenvalues=lam)


def _inner_any(a, b):
    return float(inner(a, b))


@serial_blas
def lazy_residual_path(target, U0, *, rtol=1e-10, stop_below=None):
    """Lazy-fit residuals for every prefix ``U0[:, :m]``, ``m = 1, ..., M``.

    The spans are nested, so one Cholesky factorisation of the kernel of all
    ``M`` columns gives every prefix at once: the squared projection onto the
    first ``m`` components' features is the sum of the first ``d m`` squared
    entries of ``L^{-1} b``.  Where the kernel stops being (numerically)
    positive definite -- beyond ``d m = C(d + l - 1, l)``, or in the rare
    defective configurations -- the remaining prefixes are computed with
    :func:`lazy_fit`; once a prefix spans all symmetric tensors the residual of
    every longer prefix is zero.

    Parameters
    ----------
    target : SymCP or dense symmetric array
    U0 : array of shape (d, M)
    rtol : float
        Relative tolerance for zero eigenvalues / pivots.
    stop_below : float, optional
        Skip the (expensive) eigendecompositions beyond the Cholesky range once a
        residual below this value has been found; skipped entries are NaN.

    Returns
    -------
    ms, residuals, ranks : ndarrays of length M
    """
    from scipy import linalg

    target = check_target(target)
    d, order, n2 = _target_info(target)
    U0 = check_matrix("U0", U0)
    if U0.shape[0] != d:
        raise ValueError(f"U0 has d={U0.shape[0]} rows but the target has dimension d={d}")
    rtol = check_float("rtol", rtol, positive=True)
    stop_below = check_float("stop_below", stop_below, positive=True, allow_none=True)
    M = U0.shape[1]
    N = sym_dim(d, order)
    res = np.full(M, np.nan)
    ranks = np.zeros(M, dtype=int)
    m_pd = min(M, N // d)  # prefixes whose features can be independent
    done = 0
    if m_pd >= 1:
        K = lazy_kernel(U0[:, :m_pd], order)
        b = _feature_rhs(target, U0[:, :m_pd])
        try:
            L = linalg.cholesky(K, lower=True, check_finite=False)
            piv = np.diag(L) ** 2
            ok = piv > rtol * np.max(np.diag(K))
            good_blocks = np.all(ok.reshape(m_pd, d), axis=1)
            n_good = int(np.argmin(good_blocks)) if not good_blocks.all() else m_pd
            if n_good:
                z = linalg.solve_triangular(L[: n_good * d, : n_good * d], b[: n_good * d], lower=True,
                                            check_finite=False)
                cum = np.cumsum(z**2)[d - 1::d]
                res[:n_good] = np.sqrt(np.maximum(n2 - cum, 0.0) / n2)
                ranks[:n_good] = d * np.arange(1, n_good + 1)
                done = n_good
        except linalg.LinAlgError:
            done = 0
    for m in range(done + 1, M + 1):
        if stop_below is not None and np.any(res[: m - 1] < stop_below):
            break
        if m > 1 and ranks[m - 2] >= N:
            res[m - 1], ranks[m - 1] = 0.0, N
            continue
        fit = lazy_fit(target, U0[:, :m], rtol=rtol)
        res[m - 1], ranks[m - 1] = fit.rel_residual, fit.rank
    return np.arange(1, M + 1), res, ranks


#: The defective cases ``(d, order, m)`` of the Alexander-Hirschowitz theorem with ``order >= 3``:
#: there ``m`` generic points span a tangent space of dimension ``min(d m, C(d+l-1, l)) - 1``.
ALEXANDER_HIRSCHOWITZ_DEFECTIVE = ((5, 3, 7), (3, 4, 5), (4, 4, 9), (5, 4, 14))


@serial_blas
def span_defects(cases, *, seed=0, draws=3, rtol=1e-12):
    """Dimension of the lazy span ``S_U`` for random ``U``, compared with ``min(d m, C(d+l-1, l))``.

    For each ``(d, order)`` and every ``m = 1 .. ceil(N / d) + 1`` the numerical rank
    of the kernel (:func:`tdcore.lazy_kernel`, eigenvalues above ``rtol`` times the largest)
    is computed for ``draws`` independent sets of random unit columns; the
    *generic* dimension is the largest of them (an unlucky, nearly degenerate draw
    can only lower the rank).  Every ``m`` whose generic rank falls short of the
    count is reported.  Meant for small cases (the kernels have ``d m <= N + d`` rows).

    Parameters
    ----------
    cases : sequence of (d, order)
    seed : int
    draws : int
    rtol : float

    Returns
    -------
    list of dict
        One per case: ``d``, ``order``, ``sym_dim``, ``m_max``, ``defects`` (a list of
        ``(m, rank, min(d m, N))``).
    """
    rng = as_rng(seed)
    draws = check_int("draws", draws, minimum=1)
    rtol = check_float("rtol", rtol, positive=True)
    checked = []
    for case in cases:  # every case is checked before any kernel is computed
        if not isinstance(case, (tuple, list)) or len(case) != 2:
            raise ValueError(f"each case must be (d, order), got {case!r}")
        checked.append((check_int("d", case[0], minimum=1), check_order(case[1])))
    out = []
    for d, order in checked:
        N = sym_dim(d, order)
        M = -(-N // d) + 1
        Us = [_unit_columns(rng, d, M) for _ in range(draws)]
        bad = []
        for m in range(1, M + 1):
            rank = 0
            for U in Us:
                ev = np.linalg.eigvalsh(lazy_kernel(U[:, :m], order))
                rank = max(rank, int(np.sum(ev > rtol * ev[-1])))
            if rank < min(d * m, N):
                bad.append((m, rank, min(d * m, N)))
        out.append({"d": d, "order": order, "sym_dim": N, "m_max": M, "defects": bad})
    return out


@dataclass
class LazySweep:
    """Result of :func:`lazy_threshold_sweep`.

    Attributes
    ----------
    ds : ndarray
        Dimensions.
    order : int
    threshold : float
    seeds : list
    m_star : ndarray of shape (len(ds), len(seeds))
        Smallest ``m`` whose lazy-fit residual is below ``threshold``.
    prediction : ndarray
        The dimension count ``C(d + l - 1, l) / d`` for each ``d``.
    curves : list of ndarray
        ``curves[k][s]`` is the residual against ``m = 1, 2, ...`` for ``ds[k]``, seed ``s``.
    fit : LineFit
        Log-log fit of the median ``m*`` against ``d``.
    fit_prediction : LineFit
        The same fit applied to the dimension count (its slope tends to ``l - 1``).
    elapsed : float
        Seconds.
    """

    ds: np.ndarray
    order: int
    threshold: float
    seeds: list
    m_star: np.ndarray
    prediction: np.ndarray
    curves: list
    fit: LineFit
    fit_prediction: LineFit
    elapsed: float

    @property
    def m_star_median(self):
        return np.median(self.m_star, axis=1)

    def table(self):
        """Rows ``(d, C(d+l-1,l), count C/d, median m*, min m*, max m*)`` as a list of dicts."""
        rows = []
        for k, d in enumerate(self.ds):
            rows.append({"d": int(d), "sym_dim": sym_dim(int(d), self.order),
                         "count": float(self.prediction[k]), "m_star_median": float(self.m_star_median[k]),
                         "m_star_min": int(self.m_star[k].min()), "m_star_max": int(self.m_star[k].max())})
        return rows


@serial_blas
def lazy_threshold_sweep(ds, order, *, threshold=0.1, seeds=(0, 1, 2), level=0.95, max_full=1500):
    """Smallest width ``m*`` at which lazy training can fit a random rank-1 target.

    For each dimension ``d`` and seed: a target ``u*^{(x) l}`` with ``u*`` uniform
    on the sphere, and ``M = ceil(C(d+l-1, l) / d) + 1`` initial components drawn
    uniformly on the sphere; the exact lazy-fit residual of every prefix
    (``lazy_residual_path``) gives ``m*``, the first ``m`` with residual
    ``< threshold``.  The median over seeds is fitted against ``d`` on log-log axes.

    Parameters
    ----------
    ds : sequence of int
        Dimensions (at least 3 distinct values, each ``>= 2``).
    order : int
        Tensor order ``l >= 2``.
    threshold : float
        Residual level in (0, 1) that counts as "fitted".
    seeds : sequence of int
    level : float
        Confidence level of the slope interval.
    max_full : int
        Residual curves are completed beyond the Cholesky range (``d m > C(d+l-1, l)``,
        one eigendecomposition per width) only while ``d M <= max_full``; larger
        ones stop once the threshold is reached (the rest is NaN).

    Returns
    -------
    LazySweep
    """
    t0 = time.perf_counter()
    ds = check_int_list("ds", ds, 2)
    order = check_order(order)
    threshold = check_float("threshold", threshold, positive=True)
    if not threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    seeds = check_seeds(seeds)
    max_full = check_int("max_full", max_full, minimum=0)
    m_star = np.zeros((len(ds), len(seeds)), dtype=int)
    curves = []
    for k, d in enumerate(ds):
        M = -(-sym_dim(d, order) // d) + 1
        row = []
        for s, seed in enumerate(seeds):
            rng = as_rng(seed)
            target = random_target(d, 1, order, seed=rng)
            U0 = _unit_columns(rng, d, M)
            _, res, _ = lazy_residual_path(target, U0, stop_below=threshold if d * M > max_full else None)
            row.append(res)
            below = np.flatnonzero(res < threshold)
            m_star[k, s] = below[0] + 1 if below.size else M + 1
        curves.append(row)
    ds_arr = np.array(ds, dtype=float)
    pred = np.array([sym_dim(d, order) / d for d in ds])
    fit = fit_loglog_slope(ds_arr, np.median(m_star, axis=1), level=level)
    fit_pred = fit_loglog_slope(ds_arr, pred, level=level)
    return LazySweep(np.array(ds), order, threshold, seeds, m_star, pred, curves, fit, fit_pred,
                     time.perf_counter() - t0)


def lazy_init(d, m, order, *, scale, seed=None, directions=None):
    """Paired ("antisymmetric") initialisation in the lazy scaling.

    ``m`` directions ``z_i`` uniform on the sphere, each used twice: columns
    ``scale z_i`` with weights ``+kappa`` and ``-kappa``,
    ``kappa = 1 / (scale^{l-1} sqrt(m))``, so that the initial model is exactly
    zero and its linearisation does not depend on ``scale``; the quadratic
    terms are ``O(1/scale)``.  A large ``scale`` is the lazy regime.

    Parameters
    ----------
    d, m, order : int
    scale : float
    seed : int, optional
    directions : array (d, m), optional
        Use these unit directions instead of random ones.

    Returns
    -------
    U0 : ndarray (d, 2 m)
    c : ndarray (2 m,)
    Z : ndarray (d, m)
        The directions (``lazy_fit(target, Z)`` is the lazy limit).
    """
    d = check_int("d", d, minimum=1)
    m = check_int("m", m, minimum=1)
    order = check_order(order)
    scale = check_float("scale", scale, positive=True)
    if directions is None:
        Z = _unit_columns(as_rng(seed), d, m)
    else:
        Z = check_matrix("directions", directions)
        if Z.shape != (d, m):
            raise ValueError(f"directions must have shape ({d}, {m}), got {Z.shape}")
        Z = Z / np.linalg.norm(Z, axis=0, keepdims=True)
    kappa = 1.0 / (scale ** (order - 1) * math.sqrt(m))
    U0 = scale * np.concatenate([Z, Z], axis=1)
    c = np.concatenate([np.full(m, kappa), np.full(m, -kappa)])
    return U0, c, Z


@serial_blas
def linearized_gd_error(target, U0, c, *, eta, steps, include_offset=True, rtol=1e-10):
    """Relative error of gradient descent on the model *linearised* at ``(U0, c)``.

    Gradient descent in ``U`` (weights fixed) on ``1/2 ||T(U0) + J (U - U0) - T*||^2``
    with step ``eta`` contracts the residual's component along each eigenvector of
    ``J J^T`` by ``(1 - eta mu_k)`` per step.  With the parameter-space Gram
    ``J^T J = l^2 D_c K(U0) D_c`` (``K`` of :func:`tdcore.lazy_kernel`), the error after
    ``t`` steps is exact:
    ``||R_t||^2 = ||R_perp||^2 + sum_k (1 - eta mu_k)^{2t} (w_k . g)^2 / mu_k``.

    For the paired initialisation of :func:`lazy_init` the two copies of a pair
    move in opposite directions, and the dynamics equal those of the unpaired
    model ``(scale Z, sqrt(2) kappa)`` started from the zero tensor: pass that
    with ``include_offset=False`` to halve the kernel size.

    Parameters
    ----------
    target : SymCP or dense array
    U0 : array (d, m), c : array (m,)
    eta : float
    steps : int or array of int
    include_offset : bool
        Start the linear model from ``T(U0) = sum_i c_i u_i^{(x) l}`` (default) or
        from zero (what the paired initialisation gives).
    rtol : float
        Eigenvalues below ``rtol`` times the largest count as zero.

    Returns
    -------
    errors : ndarray (same shape as ``steps``)
    mu_max : float
        Largest eigenvalue of ``J^T J`` (GD on the linear model is stable for ``eta < 2 / mu_max``).
    """
    target = check_target(target)
    d, order, n2 = _target_info(target)
    U0 = check_matrix("U0", U0)
    if U0.shape[0] != d:
        raise ValueError(f"U0 has d={U0.shape[0]} rows but the target has dimension d={d}")
    m = U0.shape[1]
    c = check_vector("c", c, m)
    eta = check_float("eta", eta, positive=True)
    rtol = check_float("rtol", rtol, positive=True)
    steps_arr = np.asarray(steps)
    if not np.issubdtype(steps_arr.dtype, np.integer) or np.any(steps_arr < 0):
        raise ValueError(f"steps must be non-negative integers, got {steps!r}")
    r0 = _feature_rhs(target, U0)  # <T* - T0, phi>
    R0_2 = n2
    if include_offset:
        T0 = SymCP(c, U0, order)
        r0 = r0 - T0.contract(U0).T.reshape(-1)
        R0_2 = n2 - 2 * _inner_any(T0, target) + float(T0.inner(T0))
    Dc = np.repeat(c, d)
    g = order * Dc * r0  # J^T (T* - T0)
    JtJ = order**2 * Dc[:, None] * lazy_kernel(U0, order) * Dc[None, :]
    mu, W = np.linalg.eigh(JtJ)
    keep = mu > rtol * max(mu[-1], 1e-300)
    proj = (W[:, keep].T @ g) ** 2 / mu[keep]
    perp = max(R0_2 - float(proj.sum()), 0.0)
    fac = (1.0 - eta * mu[keep])[None, :] ** (2 * steps_arr.reshape(-1, 1).astype(float))
    err = np.sqrt(np.maximum(perp + fac @ proj, 0.0) / n2)
    return err.reshape(steps_arr.shape), float(mu[-1])
