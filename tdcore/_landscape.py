"""The landscape of the vanilla objective: lazy training, the saddle at zero, bad minima.

Computations behind the book's part *The landscape* (Section 3 of Wang, Wu, Lee,
Ma & Ge, 2020):

* **Lazy training** (Theorem 1).  Linearised around an initialisation ``U0`` the
  model can only reach ``T(U0) + span{ sym(u_i^{(x)(l-1)} (x) x) : i <= m, x in R^d }``.
  :func:`lazy_fit` projects a target onto that span *exactly*, through the
  ``(d m) x (d m)`` Gram matrix (kernel) of the features
  ``phi_{i,a} = sym(u_i^{(x)(l-1)} (x) e_a)``, whose entries are polynomials in
  ``G = U^T U``::

      <phi_{i,a}, phi_{j,b}> = ( G_ij^{l-1} [a = b] + (l-1) G_ij^{l-2} U_aj U_bi ) / l

  and the right-hand side ``<T*, phi_{i,a}> = T*(u_i, ..., u_i, e_a)``; no
  ``d^l`` array is formed.  :func:`lazy_threshold_sweep` finds the smallest
  ``m`` whose lazy fit is good enough, for several ``d``.
* **The saddle at zero** (Challenge 1).  :func:`vanilla_gd` runs plain gradient
  descent on objective (2) (batched over trials), :func:`homogeneous_gd` the
  2-homogeneous parametrisation of Section 4 with ``c_i = 1/||u_i||`` and no
  boost; :func:`saddle_escape_times` measures how long each takes to leave a
  small initialisation.
* **Bad local minima** (Theorem 2).  :func:`bad_local_minimum` builds the
  paper's construction as an exact symmetric CP tensor, :func:`check_local_minimum`
  verifies it numerically, :func:`algorithm1_from_state` runs Algorithm 1 from it,
  and :func:`spurious_frequency` counts how often plain GD ends at a spurious point.

Plotting helpers (``plot_*``) draw the chapters' figures on a given Axes.
"""

from __future__ import annotations

import contextlib
import functools
import math
import numbers
import time
from dataclasses import dataclass, field

import numpy as np

from ._algorithm1 import DivergenceError
from ._book import method_color
from ._objective import FactoredTarget, fit_objective, make_target_operator, objective
from ._tensor import SymCP, check_target, random_target
from ._validate import (as_rng, check_choice, check_float, check_int, check_int_list, check_order, check_seed,
                        check_seeds, check_vector)

__all__ = [
    # lazy training
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
    "lazy_gd_experiment",
    "lazy_scale_sweep",
    "LazyGDExperiment",
    # fitting
    "fit_line",
    "fit_loglog_slope",
    "LineFit",
    # dynamics
    "vanilla_gd",
    "homogeneous_gd",
    "GDResult",
    "saddle_escape_times",
    "EscapeTimes",
    # bad local minima
    "bad_local_minimum",
    "to_homogeneous",
    "numerical_hessian",
    "check_local_minimum",
    "LocalMinCheck",
    "algorithm1_from_state",
    "bad_minimum_report",
    "gd_from_bad_minimum",
    "reinit_escape",
    "ReinitEscape",
    "spurious_frequency",
    "SpuriousFrequency",
    # tables
    "markdown_table",
    "lazy_table",
    "bad_minimum_table",
    "spurious_table",
    # figures
    "plot_lazy_residual",
    "plot_lazy_threshold",
    "plot_lazy_gd",
    "plot_lazy_scale",
    "plot_escape_times",
    "plot_saddle_trajectories",
    "plot_hessian_spectrum",
    "plot_perturbation_test",
    "plot_spurious_frequency",
    "plot_reinit_escape",
    "explore_lazy_fit",
    "explore_saddle",
    "explore_bad_minimum",
]


# ---------------------------------------------------------------------------
# small utilities
# ---------------------------------------------------------------------------
def _serial_blas(fn):
    """Run ``fn`` with one BLAS thread (when ``threadpoolctl`` is installed).

    The kernels of this module have at most a few thousand rows: there one
    thread is about as fast as several, while multi-threaded OpenBLAS on a busy
    machine with few cores can be slower by an order of magnitude.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:  # optional dependency: run with the library's default threads
            ctx = contextlib.nullcontext()
        else:
            ctx = threadpool_limits(1, user_api="blas")
        with ctx:
            return fn(*args, **kwargs)

    return wrapper


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


def _as_factor_matrix(U, name="U0"):
    if not hasattr(U, "shape"):
        U = np.asarray(U)
    U = np.asarray(U)
    if U.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array of shape (d, m), got shape {U.shape}")
    if U.shape[0] < 1 or U.shape[1] < 1:
        raise ValueError(f"{name} must have d >= 1 rows and m >= 1 columns, got shape {U.shape}")
    if not np.issubdtype(U.dtype, np.number) or np.iscomplexobj(U):
        raise TypeError(f"{name} must be a real numeric array, got dtype {U.dtype}")
    U = U.astype(np.float64)
    if not np.all(np.isfinite(U)):
        raise ValueError(f"{name} contains NaN or infinite entries")
    return U


def _target_info(target):
    """(d, order, ||T*||^2) of a SymCP or dense target."""
    target = check_target(target)
    if isinstance(target, SymCP):
        return target.d, target.order, float(target.inner(target))
    return target.shape[0], target.ndim, float(np.sum(np.asarray(target, dtype=float) ** 2))


def _unit_columns(rng, d, k):
    X = rng.standard_normal((d, k))
    return X / np.linalg.norm(X, axis=0, keepdims=True)


_check_seeds = check_seeds
_check_int_list = check_int_list


def _check_float_list(name, values, *, positive=True):
    try:
        values = [float(v) if isinstance(v, numbers.Real) and not isinstance(v, bool) else v for v in values]
    except TypeError as exc:
        raise TypeError(f"{name} must be a sequence of numbers, got {values!r}") from exc
    if not values:
        raise ValueError(f"{name} must contain at least one value")
    return [check_float(f"{name}[{k}]", v, positive=positive) for k, v in enumerate(values)]


# ---------------------------------------------------------------------------
# line fits with confidence intervals
# ---------------------------------------------------------------------------
@dataclass(frozen=True)
class LineFit:
    """Least-squares line ``y = slope x + intercept`` with a confidence interval on the slope.

    Attributes
    ----------
    slope, intercept : float
    low, high : float
        Two-sided confidence interval for the slope at level ``level`` (Student t
        with ``n - 2`` degrees of freedom).
    stderr : float
        Standard error of the slope.
    n : int
        Number of points.
    level : float
    loglog : bool
        Whether the fit was made on ``(log x, log y)`` (then ``predict`` maps back).
    """

    slope: float
    intercept: float
    low: float
    high: float
    stderr: float
    n: int
    level: float = 0.95
    loglog: bool = False

    def predict(self, x):
        """The fitted curve at ``x`` (a power law when ``loglog``)."""
        x = np.asarray(x, dtype=float)
        if self.loglog:
            return np.exp(self.intercept) * x ** self.slope
        return self.intercept + self.slope * x

    def contains(self, value):
        """Whether ``value`` lies inside the confidence interval of the slope."""
        return self.low <= value <= self.high

    def __str__(self):
        pct = round(100 * self.level)
        return f"{self.slope:.3f} ({pct}% CI [{self.low:.3f}, {self.high:.3f}], n={self.n})"


def fit_line(x, y, *, level=0.95):
    """Ordinary least-squares line through ``(x, y)`` with a t-interval on the slope.

    Parameters
    ----------
    x, y : array_like of equal length n >= 3
        Finite values; the points must not all share the same ``x``.
    level : float
        Confidence level in (0, 1).

    Returns
    -------
    LineFit
    """
    from scipy import stats

    level = check_float("level", level, positive=True)
    if not level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if x.shape != y.shape:
        raise ValueError(f"x and y must have the same length, got {x.size} and {y.size}")
    if x.size < 3:
        raise ValueError(f"a fit with a confidence interval needs at least 3 points, got {x.size}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("x and y must be finite (drop missing points before fitting)")
    xm = x.mean()
    sxx = float(np.sum((x - xm) ** 2))
    if sxx == 0:
        raise ValueError("x must take at least two distinct values")
    slope = float(np.sum((x - xm) * (y - y.mean())) / sxx)
    intercept = float(y.mean() - slope * xm)
    resid = y - (intercept + slope * x)
    dof = x.size - 2
    s2 = float(np.sum(resid**2) / dof)
    se = math.sqrt(s2 / sxx)
    q = float(stats.t.ppf(0.5 + level / 2, dof))
    return LineFit(slope, intercept, slope - q * se, slope + q * se, se, int(x.size), level)


def fit_loglog_slope(x, y, *, level=0.95):
    """Slope of ``log y`` against ``log x`` (a power-law exponent) with a confidence interval.

    Parameters
    ----------
    x, y : array_like of positive numbers, at least 3 points
    level : float
        Confidence level of the interval (default 95%).

    Returns
    -------
    LineFit
        With ``loglog=True``; ``slope`` is the exponent ``p`` in ``y ~ C x^p``.

    Examples
    --------
    >>> fit = fit_loglog_slope([1, 2, 4, 8], [3, 12, 48, 192])
    >>> round(fit.slope, 6)
    2.0
    """
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    if np.any(~(x > 0)) or np.any(~(y > 0)):
        raise ValueError("fit_loglog_slope needs positive, finite x and y")
    f = fit_line(np.log(x), np.log(y), level=level)
    return LineFit(f.slope, f.intercept, f.low, f.high, f.stderr, f.n, f.level, loglog=True)


# ---------------------------------------------------------------------------
# lazy training (Theorem 1)
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
    """
    order = check_order(order)
    U = _as_factor_matrix(U, "U")
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


@_serial_blas
def lazy_fit(target, U0, *, weights=None, rtol=1e-10):
    """Exact relative residual of the best *lazy* (linearised) fit of ``target`` around ``U0``.

    The model ``sum_i c_i u_i^{(x) l}`` linearised at ``U = U0`` reaches
    ``T(U0) + S_U`` with ``S_U = span{ sym(u_i^{(x)(l-1)} (x) x) : i <= m, x in R^d }``
    (training the weights ``c_i`` adds ``u_i^{(x) l}``, already in ``S_U``).  The
    residual of the orthogonal projection onto it is computed from the
    ``(d m) x (d m)`` kernel of :func:`lazy_kernel` by an eigendecomposition
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
    """
    target = check_target(target)
    d, order, n2 = _target_info(target)
    if n2 <= 0:
        raise ValueError("target has zero norm; the relative residual is undefined")
    U0 = _as_factor_matrix(U0)
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
    from ._tensor import inner

    return float(inner(a, b))


@_serial_blas
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
    U0 = _as_factor_matrix(U0)
    if U0.shape[0] != d:
        raise ValueError(f"U0 has d={U0.shape[0]} rows but the target has dimension d={d}")
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
    stop_below = check_float("stop_below", stop_below, positive=True, allow_none=True)
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


@_serial_blas
def span_defects(cases, *, seed=0, draws=3, rtol=1e-12):
    """Dimension of the lazy span ``S_U`` for random ``U``, compared with ``min(d m, C(d+l-1, l))``.

    For each ``(d, order)`` and every ``m = 1 .. ceil(N / d) + 1`` the numerical rank
    of the kernel (:func:`lazy_kernel`, eigenvalues above ``rtol`` times the largest)
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
    out = []
    for case in cases:
        if len(case) != 2:
            raise ValueError(f"each case must be (d, order), got {case!r}")
        d, order = check_int("d", case[0], minimum=1), check_order(case[1])
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


@_serial_blas
def lazy_threshold_sweep(ds, order, *, threshold=0.1, seeds=(0, 1, 2), level=0.95, max_full=1500):
    """Smallest width ``m*`` at which lazy training can fit a random rank-1 target.

    For each dimension ``d`` and seed: a target ``u*^{(x) l}`` with ``u*`` uniform
    on the sphere, and ``M = ceil(C(d+l-1, l) / d) + 1`` initial components drawn
    uniformly on the sphere; the exact lazy-fit residual of every prefix
    (:func:`lazy_residual_path`) gives ``m*``, the first ``m`` with residual
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
    ds = _check_int_list("ds", ds, 2)
    order = check_order(order)
    threshold = check_float("threshold", threshold, positive=True)
    if not threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    seeds = _check_seeds(seeds)
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
        Z = _as_factor_matrix(directions, "directions")
        if Z.shape != (d, m):
            raise ValueError(f"directions must have shape ({d}, {m}), got {Z.shape}")
        Z = Z / np.linalg.norm(Z, axis=0, keepdims=True)
    kappa = 1.0 / (scale ** (order - 1) * math.sqrt(m))
    U0 = scale * np.concatenate([Z, Z], axis=1)
    c = np.concatenate([np.full(m, kappa), np.full(m, -kappa)])
    return U0, c, Z


@_serial_blas
def linearized_gd_error(target, U0, c, *, eta, steps, include_offset=True, rtol=1e-10):
    """Relative error of gradient descent on the model *linearised* at ``(U0, c)``.

    Gradient descent in ``U`` (weights fixed) on ``1/2 ||T(U0) + J (U - U0) - T*||^2``
    with step ``eta`` contracts the residual's component along each eigenvector of
    ``J J^T`` by ``(1 - eta mu_k)`` per step.  With the parameter-space Gram
    ``J^T J = l^2 D_c K(U0) D_c`` (``K`` of :func:`lazy_kernel`), the error after
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
    U0 = _as_factor_matrix(U0)
    if U0.shape[0] != d:
        raise ValueError(f"U0 has d={U0.shape[0]} rows but the target has dimension d={d}")
    c = np.asarray(c, dtype=float)
    m = U0.shape[1]
    if c.shape != (m,):
        raise ValueError(f"c must have shape ({m},), got {c.shape}")
    eta = check_float("eta", eta, positive=True)
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


def _lazy_gd_run(target, Z, scale, steps, eta_factor, rec):
    """One paired lazy run: GD on the nonlinear model and the exact linearised prediction."""
    d, m = Z.shape
    order = target.order
    U0, c, _ = lazy_init(d, m, order, scale=scale, directions=Z)
    kappa = c[0]
    # the pair dynamics equal the unpaired model (scale Z, sqrt(2) kappa): a (d m) kernel
    U_eff, c_eff = scale * Z, np.full(m, math.sqrt(2.0) * kappa)
    _, mu_max = linearized_gd_error(target, U_eff, c_eff, eta=1.0, steps=0, include_offset=False)
    eta = eta_factor / mu_max
    res = vanilla_gd(target, 2 * m, steps=steps, eta=eta, init=U0, weights=c, record_every=rec)
    rec_steps = np.asarray(res.history["step"])
    lin_curve, _ = linearized_gd_error(target, U_eff, c_eff, eta=eta, steps=rec_steps, include_offset=False)
    move = float(np.linalg.norm(res.U - U0) / np.linalg.norm(U0))
    return res, rec_steps, lin_curve, move, eta


@dataclass
class LazyGDExperiment:
    """Result of :func:`lazy_gd_experiment` (one entry per width ``m``) or :func:`lazy_scale_sweep`
    (one entry per scale).

    Attributes
    ----------
    ms : ndarray
        Numbers of distinct directions (the model has ``2 m`` columns).
    scales : ndarray
        Initialisation scales (one per entry).
    steps : int
    gd_error : ndarray
        Relative error reached by gradient descent on the nonlinear model.
    linear_error : ndarray
        Error of gradient descent on the linearised model after the same steps.
    lazy_residual : ndarray
        The lazy limit (infinitely many steps on the linearised model), :func:`lazy_fit`.
    movement : ndarray
        ``||U_final - U0||_F / ||U0||_F``.
    curves : list of dict
        Per entry: ``step``, ``gd`` and ``linear`` error curves.
    eta : ndarray
        Step used for each entry (``eta_factor / mu_max``).
    d, order : int
    elapsed : float
    """

    ms: np.ndarray
    scales: np.ndarray
    steps: int
    gd_error: np.ndarray
    linear_error: np.ndarray
    lazy_residual: np.ndarray
    movement: np.ndarray
    curves: list
    eta: np.ndarray
    d: int
    order: int
    elapsed: float


def _check_lazy_args(d, order, steps, eta_factor, seed, record_every):
    d = check_int("d", d, minimum=2)
    order = check_order(order)
    steps = check_int("steps", steps, minimum=1)
    eta_factor = check_float("eta_factor", eta_factor, positive=True)
    if not eta_factor < 2:
        raise ValueError(f"eta_factor must be < 2 (stability of the linearised model), got {eta_factor}")
    seed = check_int("seed", seed, minimum=0)
    rec = check_int("record_every", record_every, minimum=1, allow_none=True) or max(1, steps // 50)
    return d, order, steps, eta_factor, seed, rec


def _lazy_experiment(d, order, ms, scales, steps, eta_factor, seed, rec):
    t0 = time.perf_counter()
    rng = np.random.default_rng([seed, 7])
    target = random_target(d, 1, order, seed=rng)
    Zall = rng.standard_normal((max(ms), d)).T  # nested directions: width m uses the first m,
    Zall /= np.linalg.norm(Zall, axis=0, keepdims=True)  # whatever the largest width is
    out = {k: [] for k in ("gd", "lin", "lazy", "move", "eta")}
    curves = []
    for m, scale in zip(ms, scales):
        Z = Zall[:, :m]
        res, rec_steps, lin_curve, move, eta = _lazy_gd_run(target, Z, scale, steps, eta_factor, rec)
        out["gd"].append(res.rel_error)
        out["lin"].append(float(lin_curve[-1]))
        out["lazy"].append(lazy_fit(target, Z).rel_residual)
        out["move"].append(move)
        out["eta"].append(eta)
        curves.append({"m": m, "scale": scale, "step": rec_steps, "gd": np.asarray(res.history["rel_error"]),
                       "linear": lin_curve})
    return LazyGDExperiment(np.array(ms), np.array(scales, dtype=float), steps, np.array(out["gd"]),
                            np.array(out["lin"]), np.array(out["lazy"]), np.array(out["move"]), curves,
                            np.array(out["eta"]), d, order, time.perf_counter() - t0)


@_serial_blas
def lazy_gd_experiment(d, order, ms, *, scale=300.0, steps=2000, eta_factor=1.0, seed=0, record_every=None):
    """Gradient descent in the lazy scaling, compared with its linearisation, across widths.

    One random rank-1 target and one set of random directions (``seed``);
    width ``m`` uses the first ``m`` directions (so the lazy spans are nested), in
    the paired initialisation of :func:`lazy_init` at ``scale``.  Each width runs
    ``steps`` steps of plain GD in ``U`` (weights fixed) with step
    ``eta = eta_factor / mu_max`` and is compared with the exact error of GD on
    the linearised model after the same steps (:func:`linearized_gd_error`) and
    with the lazy limit (:func:`lazy_fit`).

    Parameters
    ----------
    d, order : int
    ms : sequence of int
        Numbers of distinct directions.
    scale : float
        Initialisation scale (larger is lazier).
    steps : int
    eta_factor : float
        Step as a fraction of ``1 / mu_max`` (``< 2`` for stability of the linear model).
    seed : int
    record_every : int, optional
        Stride of the recorded error curves (default ``steps // 50``).

    Returns
    -------
    LazyGDExperiment
    """
    d, order, steps, eta_factor, seed, rec = _check_lazy_args(d, order, steps, eta_factor, seed, record_every)
    ms = _check_int_list("ms", ms, 1)
    scale = check_float("scale", scale, positive=True)
    return _lazy_experiment(d, order, ms, [scale] * len(ms), steps, eta_factor, seed, rec)


@_serial_blas
def lazy_scale_sweep(d, order, m, scales, *, steps=2000, eta_factor=1.0, seed=0, record_every=None):
    """The same comparison as :func:`lazy_gd_experiment` at one width, across initialisation scales.

    Small scales let gradient descent leave the linear regime (and possibly do
    better than the lazy limit); large scales pin it to the linearised dynamics.

    Parameters
    ----------
    d, order, m : int
    scales : sequence of float
    steps, eta_factor, seed, record_every
        As :func:`lazy_gd_experiment`.

    Returns
    -------
    LazyGDExperiment
    """
    d, order, steps, eta_factor, seed, rec = _check_lazy_args(d, order, steps, eta_factor, seed, record_every)
    m = check_int("m", m, minimum=1)
    scales = _check_float_list("scales", scales)
    return _lazy_experiment(d, order, [m] * len(scales), scales, steps, eta_factor, seed, rec)


# ---------------------------------------------------------------------------
# gradient descent: vanilla and 2-homogeneous
# ---------------------------------------------------------------------------
@dataclass
class GDResult:
    """Outcome of :func:`vanilla_gd` or :func:`homogeneous_gd`.

    For a single run (``seed=`` or a 2-D ``init``) arrays carry no batch axis;
    for a batch (``seeds=`` or a 3-D ``init``) the first axis indexes trials.

    Attributes
    ----------
    model : SymCP or list of SymCP
        Final model(s) ``sum_i c_i u_i^{(x) l}``.
    U, c : ndarray
        Final factors ``(d, m)`` / ``(B, d, m)`` and weights ``(m,)`` / ``(B, m)``
        (for :func:`homogeneous_gd`, ``c`` holds the effective weights ``a_i ||u_i||^{2-l}``).
    U0, c0 : ndarray
        The initial factors and weights.
    history : dict
        ``step`` (recorded step counts, 0 = initial point), ``rel_error`` and
        ``objective`` (one value per recorded step; per trial for a batch).
    hit_step : int or ndarray
        First step count at which the relative error was below ``hit_threshold``
        (-1 if never, or if no threshold was given).
    diverged_at : int or ndarray
        Step at which divergence was detected (-1 if none); the trial kept its last finite state.
    grad_norm : float or ndarray
        Norm of the final gradient (in ``U`` and, if trained, ``c``).
    params : dict
        ``eta``, ``steps`` (requested), ``steps_run``, ``train_weights``, ``init_scale``, ``order``, ``d``, ``m``.
    """

    model: object
    U: np.ndarray
    c: np.ndarray
    U0: np.ndarray
    c0: np.ndarray
    history: dict
    hit_step: object
    diverged_at: object
    grad_norm: object
    params: dict

    @property
    def rel_error(self):
        """Final relative error (float, or array over trials)."""
        r = np.asarray(self.history["rel_error"])
        return float(r[-1]) if r.ndim == 1 else r[:, -1].copy()

    @property
    def objective(self):
        o = np.asarray(self.history["objective"])
        return float(o[-1]) if o.ndim == 1 else o[:, -1].copy()

    @property
    def hit_time(self):
        """``hit_step * eta`` (NaN where the threshold was never reached)."""
        h = np.asarray(self.hit_step, dtype=float)
        t = np.where(h >= 0, h * self.params["eta"], np.nan)
        return float(t) if t.ndim == 0 else t


def _stack_targets(target, B):
    """A batch-aware operator and per-trial ||T*||^2 for one shared target or B SymCP targets."""
    if isinstance(target, (list, tuple)):
        if len(target) != B:
            raise ValueError(f"got {len(target)} targets for {B} trials; give one target or one per trial")
        targets = [check_target(t) for t in target]
        if not all(isinstance(t, SymCP) for t in targets):
            raise TypeError("a batch of different targets must all be tdcore.SymCP")
        shapes = {(t.d, t.m, t.order) for t in targets}
        if len(shapes) != 1:
            raise ValueError(f"all targets of a batch must have the same (d, r, order), got {sorted(shapes)}")
        V = np.stack([np.asarray(t.to_numpy().factors, float) for t in targets])
        w = np.stack([np.asarray(t.to_numpy().weights, float) for t in targets])
        op = FactoredTarget(V, w, targets[0].order)
        return op, np.asarray(op.norm2, float), targets[0].d, targets[0].order
    target = check_target(target)
    op = make_target_operator(target, "numpy", np.float64)
    d, order, n2 = _target_info(target)
    return op, np.full(B, n2), d, order


def _weights_mode(weights, train_weights):
    if isinstance(weights, str):
        check_choice("weights", weights, ("sign", "train", "ones"))
        train = (weights == "train") if train_weights is None else bool(train_weights)
        return weights, train
    return "array", bool(train_weights) if train_weights is not None else False


def vanilla_gd(target, m, *, steps, eta, init_scale=None, seed=None, seeds=None, weights="sign",
               train_weights=None, init=None, record_every=None, hit_threshold=None, stop_when_hit=False,
               divergence="raise", blowup=1e6):
    """Plain gradient descent on objective (2), ``1/2 ||sum_i c_i u_i^{(x) l} - T*||^2``.

    Parameters
    ----------
    target : SymCP, dense array, or list of B SymCP (one per trial)
    m : int
        Number of components.
    steps : int
        Number of gradient steps.
    eta : float
        Step size.
    init_scale : float, optional
        Norm of each initial ``u_i`` (random directions); default 1.  Not allowed with ``init``.
    seed : int, optional
        A single run.
    seeds : sequence of int, optional
        A batch: trial ``b`` uses ``seeds[b]`` (same result as ``seed=seeds[b]``).
    weights : {"sign", "train", "ones"} or array
        ``"sign"``: fixed random weights ``+-1``; ``"ones"``: fixed weights 1;
        ``"train"``: random ``+-1`` initial weights, trained with ``U``; an array
        of shape ``(m,)`` or ``(B, m)``: those initial weights (fixed unless
        ``train_weights``).
    train_weights : bool, optional
        Override whether the weights are trained.
    init : array (d, m) or (B, d, m), optional
        Initial factors (then ``seed`` only drives random weights, if any).
    record_every : int, optional
        Record the error every this many steps (default ``max(1, steps // 200)``);
        the initial and the final point are always recorded.
    hit_threshold : float, optional
        Record the first step at which the relative error drops below it.
    stop_when_hit : bool
        Stop once every (non-diverged) trial has hit ``hit_threshold``.
    divergence : {"raise", "mark"}
        On a non-finite objective or one above ``blowup`` times its reference
        (``max(f(0), ||T*||^2 / 2)``): raise :class:`tdcore.DivergenceError`
        (carrying the last finite state) in the step it happens, or mark the
        trial (``diverged_at``), keep its last finite state and stop updating it.
    blowup : float
        Growth factor of the objective that counts as divergence.

    Returns
    -------
    GDResult
    """
    steps = check_int("steps", steps, minimum=0)
    eta = check_float("eta", eta, positive=True)
    m = check_int("m", m, minimum=1)
    check_choice("divergence", divergence, ("raise", "mark"))
    blowup = check_float("blowup", blowup, positive=True)
    hit_threshold = check_float("hit_threshold", hit_threshold, positive=True, allow_none=True)
    rec = check_int("record_every", record_every, minimum=1, allow_none=True) or max(1, steps // 200)
    mode, train = _weights_mode(weights, train_weights)
    if seed is not None and seeds is not None:
        raise ValueError("give either seed (one run) or seeds (a batch), not both")
    # batch layout
    batched = seeds is not None or (init is not None and np.ndim(init) == 3) or isinstance(target, (list, tuple))
    if seeds is not None:
        seed_list = _check_seeds(seeds)
    elif init is not None and np.ndim(init) == 3:
        seed_list = [seed] * int(np.shape(init)[0])
    elif isinstance(target, (list, tuple)):
        seed_list = [seed] * len(target)
    else:
        seed_list = [check_seed(seed)]
    B = len(seed_list)
    op, n2, d, order = _stack_targets(target, B)
    rngs = [as_rng(s) if not isinstance(s, np.random.Generator) else s for s in seed_list]
    # initial factors
    if init is not None:
        if init_scale is not None:
            raise ValueError("give either init (explicit factors) or init_scale, not both")
        U0 = np.asarray(init, dtype=float)
        if U0.ndim == 2:
            U0 = np.broadcast_to(U0, (B,) + U0.shape).copy()
        if U0.shape != (B, d, m):
            raise ValueError(f"init must have shape (d, m) = ({d}, {m}) or (B, d, m) = ({B}, {d}, {m}), "
                             f"got {np.shape(init)}")
        if not np.all(np.isfinite(U0)):
            raise ValueError("init contains NaN or infinite entries")
    else:
        scale = 1.0 if init_scale is None else check_float("init_scale", init_scale, positive=True)
        U0 = np.stack([scale * _unit_columns(r, d, m) for r in rngs])
    # initial weights
    if mode in ("sign", "train"):
        c0 = np.stack([r.choice([-1.0, 1.0], size=m) for r in rngs])
    elif mode == "ones":
        c0 = np.ones((B, m))
    else:
        c0 = np.asarray(weights, dtype=float)
        if c0.shape == (m,):
            c0 = np.broadcast_to(c0, (B, m)).copy()
        if c0.shape != (B, m):
            raise ValueError(f"weights must be 'sign', 'train', 'ones' or an array of shape ({m},) or ({B}, {m}), "
                             f"got shape {np.shape(weights)}")
        if not np.all(np.isfinite(c0)):
            raise ValueError("weights contains NaN or infinite entries")

    def evaluate(U, c):
        f, gU, gc = fit_objective(U, c, op, grad=True)
        return np.asarray(f, float).reshape(B), gU, gc

    U, c = U0.copy(), c0.copy()
    f, gU, gc = evaluate(U, c)
    f_ref = np.maximum(f, 0.5 * n2)
    active = np.ones(B, dtype=bool)
    hit = np.full(B, -1, dtype=int)
    div = np.full(B, -1, dtype=int)
    hist = {"step": [], "rel_error": [], "objective": []}

    def record(t):
        hist["step"].append(t)
        hist["rel_error"].append(np.sqrt(np.maximum(2 * f, 0) / n2))
        hist["objective"].append(f.copy())

    def update_hits(t):
        if hit_threshold is not None:
            rel = np.sqrt(np.maximum(2 * f, 0) / n2)
            new = (hit < 0) & active & (rel < hit_threshold)
            hit[new] = t

    record(0)
    update_hits(0)
    t = 0
    for t in range(1, steps + 1):
        act = active[:, None, None]
        U2 = U - eta * gU * act
        c2 = c - eta * gc * active[:, None] if train else c
        f2, gU2, gc2 = evaluate(U2, c2)
        bad = active & ~(np.isfinite(f2) & (f2 <= blowup * f_ref))
        if bad.any():
            if divergence == "raise":
                b = int(np.flatnonzero(bad)[0])
                raise DivergenceError(
                    f"vanilla GD diverged at step {t} (trial {b}): the objective became {f2[b]:.3g} "
                    f"(reference {f_ref[b]:.3g}) with eta={eta:g}. Try eta={eta / 4:g} or a smaller init.",
                    epoch=1, iteration=t, state={"U": U[b].copy(), "c": c[b].copy()}, suggested_eta=eta / 4)
            U2[bad], f2[bad], gU2[bad] = U[bad], f[bad], 0.0
            if train:
                c2 = c2.copy()
                c2[bad], gc2[bad] = c[bad], 0.0
            div[bad] = t
            active &= ~bad
        U, c, f, gU, gc = U2, c2, f2, gU2, gc2
        update_hits(t)
        if t % rec == 0 or t == steps:
            record(t)
        if stop_when_hit and hit_threshold is not None and np.all((hit >= 0) | ~active):
            if hist["step"][-1] != t:
                record(t)
            break
    gnorm2 = np.sum(gU * gU, axis=(-1, -2)) * active
    if train:
        gnorm2 = gnorm2 + np.sum(gc * gc, axis=-1) * active
    history = {"step": np.array(hist["step"]), "rel_error": np.stack(hist["rel_error"], axis=-1),
               "objective": np.stack(hist["objective"], axis=-1)}
    params = {"eta": eta, "steps": steps, "steps_run": t, "train_weights": train, "init_scale": init_scale,
              "order": order, "d": d, "m": m, "weights": mode}
    models = [SymCP(c[b], U[b], order) for b in range(B)]
    if batched:
        return GDResult(models, U, c, U0, c0, history, hit, div, np.sqrt(gnorm2), params)
    history = {"step": history["step"], "rel_error": history["rel_error"][0], "objective": history["objective"][0]}
    return GDResult(models[0], U[0], c[0], U0[0], c0[0], history, int(hit[0]), int(div[0]),
                    float(np.sqrt(gnorm2[0])), params)


def homogeneous_gd(target, U0, a, *, steps, eta, lam=0.0, record_every=None, hit_threshold=None,
                   stop_when_hit=False):
    """Gradient descent on the 2-homogeneous model of Section 4, without boost or re-initialisation.

    Model ``sum_i a_i c_i^{l-2} u_i^{(x) l}`` with ``c_i = chat_i = 1/||u_i||``; each
    step is Algorithm 1's update: ``U <- U - eta grad_U f(U, C, Chat, A)`` with ``C``
    and ``Chat`` held fixed (``tdcore.objective``), then ``c_i, chat_i`` rescaled by
    ``||u_i|| / ||u_i'||`` (so they stay ``1/||u_i||``).  This is
    ``tdcore.algorithm1(..., reinit=False, mode_switch=False)`` for one epoch, from
    a given initial state.

    Parameters
    ----------
    target : SymCP or dense array
    U0 : array (d, m) or (B, d, m)
        Initial components (non-zero columns).
    a : array (m,) or (B, m)
        Signs ``a_i`` in {-1, +1}.
    steps : int
    eta : float
    lam : float
        Regularisation strength (0: pure fit).
    record_every, hit_threshold, stop_when_hit
        As :func:`vanilla_gd`.

    Returns
    -------
    GDResult
        ``c`` holds the effective weights ``a_i ||u_i||^{2-l}``.
    """
    target = check_target(target)
    steps = check_int("steps", steps, minimum=0)
    eta = check_float("eta", eta, positive=True)
    lam = check_float("lam", lam, nonnegative=True)
    hit_threshold = check_float("hit_threshold", hit_threshold, positive=True, allow_none=True)
    rec = check_int("record_every", record_every, minimum=1, allow_none=True) or max(1, steps // 200)
    d, order, n2 = _target_info(target)
    U0 = np.asarray(U0, dtype=float)
    batched = U0.ndim == 3
    if U0.ndim == 2:
        U0 = U0[None]
    if U0.ndim != 3 or U0.shape[1] != d:
        raise ValueError(f"U0 must have shape (d, m) or (B, d, m) with d={d}, got {np.shape(U0)}")
    B, _, m = U0.shape
    if not np.all(np.isfinite(U0)):
        raise ValueError("U0 contains NaN or infinite entries")
    if np.any(np.linalg.norm(U0, axis=1) == 0):
        raise ValueError("U0 has a zero column; the 2-homogeneous model needs u_i != 0")
    a = np.asarray(a, dtype=float)
    if a.shape == (m,):
        a = np.broadcast_to(a, (B, m)).copy()
    if a.shape != (B, m) or not np.all(np.isin(a, (-1.0, 1.0))):
        raise ValueError(f"a must hold signs in {{-1, +1}} with shape ({m},) or ({B}, {m}), got {np.shape(a)}")
    op = make_target_operator(target, "numpy", np.float64)
    U = U0.copy()
    C = 1.0 / np.linalg.norm(U, axis=1)
    hist = {"step": [], "rel_error": [], "objective": []}
    hit = np.full(B, -1, dtype=int)

    def fit_rel(U, C):
        f = np.asarray(fit_objective(U, a * C ** (order - 2), op), float).reshape(B)
        return f, np.sqrt(np.maximum(2 * f, 0) / n2)

    def record(t, f, rel):
        hist["step"].append(t)
        hist["rel_error"].append(rel)
        hist["objective"].append(f)

    f, rel = fit_rel(U, C)
    record(0, f, rel)
    if hit_threshold is not None:
        hit[rel < hit_threshold] = 0
    t = 0
    gU = np.zeros_like(U)
    for t in range(1, steps + 1):
        _, gU = objective(U, C, C, a, op, lam, grad=True)
        U2 = U - eta * gU
        n_old, n_new = np.linalg.norm(U, axis=1), np.linalg.norm(U2, axis=1)
        C = C * n_old / n_new
        U = U2
        f, rel = fit_rel(U, C)
        if not np.all(np.isfinite(f)):
            raise DivergenceError(f"homogeneous GD diverged at step {t} with eta={eta:g}", epoch=1, iteration=t,
                                  state={}, suggested_eta=eta / 4)
        if hit_threshold is not None:
            hit[(hit < 0) & (rel < hit_threshold)] = t
        if t % rec == 0 or t == steps:
            record(t, f, rel)
        if stop_when_hit and hit_threshold is not None and np.all(hit >= 0):
            if hist["step"][-1] != t:
                record(t, f, rel)
            break
    w = a * C ** (order - 2)
    history = {"step": np.array(hist["step"]), "rel_error": np.stack(hist["rel_error"], axis=-1),
               "objective": np.stack(hist["objective"], axis=-1)}
    params = {"eta": eta, "steps": steps, "steps_run": t, "lam": lam, "order": order, "d": d, "m": m}
    gnorm = np.sqrt(np.sum(gU * gU, axis=(-1, -2)))
    models = [SymCP(w[b], U[b], order) for b in range(B)]
    c0 = a * (1.0 / np.linalg.norm(U0, axis=1)) ** (order - 2)
    div = np.full(B, -1, dtype=int)
    if batched:
        return GDResult(models, U, w, U0, c0, history, hit, div, gnorm, params)
    history = {"step": history["step"], "rel_error": history["rel_error"][0], "objective": history["objective"][0]}
    return GDResult(models[0], U[0], w[0], U0[0], c0[0], history, int(hit[0]), -1, float(gnorm[0]), params)


# ---------------------------------------------------------------------------
# the saddle at zero (Challenge 1)
# ---------------------------------------------------------------------------
@dataclass
class EscapeTimes:
    """Result of :func:`saddle_escape_times`.

    Attributes
    ----------
    deltas : ndarray
        Initialisation sizes.
    times : ndarray (n_seeds, n_deltas)
        Escape time (steps x eta) per seed and size; NaN where the run did not escape.
    model : str
        ``"vanilla"`` or ``"homogeneous"``.
    order, d : int
    eta : float
    threshold : float
        Relative error that counts as escaped.
    overlap : float or None
        Initial cosine with the target direction (None: uniform directions).
    fit : LineFit
        Log-log fit of the median time against ``delta`` (the power-law exponent).
    fit_log : LineFit
        Linear fit of the median time against ``log(1/delta)``.
    trajectories : dict
        ``step`` and ``rel_error`` (n_seeds, n_deltas, n_rec) of the runs.
    elapsed : float
    """

    deltas: np.ndarray
    times: np.ndarray
    model: str
    order: int
    d: int
    eta: float
    threshold: float
    overlap: object
    fit: LineFit
    fit_log: LineFit
    trajectories: dict
    elapsed: float

    @property
    def median_times(self):
        return np.nanmedian(self.times, axis=0)

    @property
    def all_escaped(self):
        return bool(np.all(np.isfinite(self.times)))


def _saddle_init(d, order, seeds, overlap, target_seed):
    target = random_target(d, 1, order, seed=np.random.default_rng([target_seed, 0]))
    v = np.asarray(target.factors[:, 0], float)
    Z = []
    for s in seeds:
        rng = s if isinstance(s, np.random.Generator) else np.random.default_rng([s, 1])
        if overlap is None:
            z = _unit_columns(rng, d, 1)[:, 0]
            z = z if z @ v >= 0 else -z
        else:
            w = rng.standard_normal(d)
            w -= (w @ v) * v
            w /= np.linalg.norm(w)
            z = overlap * v + math.sqrt(1 - overlap**2) * w
        Z.append(z)
    return target, np.array(Z)


def saddle_escape_times(order, deltas, *, model="vanilla", d=10, seeds=(0, 1, 2), overlap=0.5, eta=None,
                        threshold=0.5, max_time=None, target_seed=0, level=0.95, record_points=200):
    """Time for gradient descent to leave a small initialisation, against its size ``delta``.

    Target ``T* = v^{(x) l}`` (unit ``v``); one component (``m = 1``) started at
    ``delta z`` with a unit direction ``z`` whose cosine with ``v`` is
    ``overlap`` (the sign is chosen positive: with ``c = +1`` and odd ``l`` a
    negative overlap never escapes).  The escape time is ``eta`` times the first
    step at which the relative error is below ``threshold``.

    * ``model="vanilla"``: objective (2) with the weight fixed at ``c = 1``; near
      zero ``d(v.u)/dt ~ l (v.u)^{l-1}``, so escape takes time ``~ delta^{-(l-2)}``.
    * ``model="homogeneous"``: the 2-homogeneous model ``a ||u||^{2-l} u^{(x) l}``
      (``a = +1``) trained as in Algorithm 1 without boost; the norm grows
      exponentially, so escape takes time ``~ log(1/delta) / l``.

    Parameters
    ----------
    order : int
        ``l >= 3``.
    deltas : sequence of float
        Initialisation sizes (at least 3).
    model : {"vanilla", "homogeneous"}
    d : int
    seeds : sequence of int
        One initial direction per seed (same directions for every ``delta``).
    overlap : float in (0, 1] or None
        Initial cosine with ``v``; None draws ``z`` uniformly (sign flipped to be positive).
    eta : float, optional
        Step size; default ``0.5 / l^2`` (half the stability limit at the solution).
    threshold : float
        Relative error that counts as escaped.
    max_time : float, optional
        Give up after this much time (default: three times the predicted escape
        time of the smallest ``delta`` plus 20).
    target_seed : int
    level : float
    record_points : int
        About how many points of each trajectory to keep.

    Returns
    -------
    EscapeTimes
    """
    t0 = time.perf_counter()
    order = check_int("order", order, minimum=3)
    deltas = np.array(_check_float_list("deltas", deltas))
    if deltas.size < 3:
        raise ValueError(f"deltas must contain at least 3 values to fit an exponent, got {deltas.size}")
    check_choice("model", model, ("vanilla", "homogeneous"))
    d = check_int("d", d, minimum=2)
    seeds = _check_seeds(seeds)
    if overlap is not None:
        overlap = check_float("overlap", overlap, positive=True)
        if overlap > 1:
            raise ValueError(f"overlap must be in (0, 1] or None, got {overlap}")
    eta = 0.5 / order**2 if eta is None else check_float("eta", eta, positive=True)
    threshold = check_float("threshold", threshold, positive=True)
    if not threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}")
    target, Z = _saddle_init(d, order, seeds, overlap, target_seed)
    cos0 = np.abs(Z @ np.asarray(target.factors[:, 0], float))
    dmin = float(deltas.min()) * max(float(cos0.min()), 1e-3)
    if max_time is None:
        if model == "vanilla":
            predicted = dmin ** (2 - order) / (order * (order - 2))
        else:
            predicted = math.log(1.0 / dmin) / order + 5.0
        max_time = 3.0 * predicted + 20.0
    max_time = check_float("max_time", max_time, positive=True)
    steps = int(math.ceil(max_time / eta))
    nS, nD = len(seeds), deltas.size
    U0 = (deltas[None, :, None] * Z[:, None, :]).reshape(nS * nD, d, 1)
    rec = max(1, steps // record_points)
    if model == "vanilla":
        res = vanilla_gd(target, 1, steps=steps, eta=eta, init=U0, weights=np.ones(1), record_every=rec,
                         hit_threshold=threshold, stop_when_hit=True, divergence="mark")
    else:
        res = homogeneous_gd(target, U0, np.ones(1), steps=steps, eta=eta, record_every=rec,
                             hit_threshold=threshold, stop_when_hit=True)
    times = np.asarray(res.hit_time, dtype=float).reshape(nS, nD)
    med = np.nanmedian(times, axis=0) if np.any(np.isfinite(times)) else np.full(nD, np.nan)
    ok = np.isfinite(med)
    if ok.sum() >= 3:
        fit = fit_loglog_slope(deltas[ok], med[ok], level=level)
        fit_log = fit_line(np.log(1.0 / deltas[ok]), med[ok], level=level)
    else:
        nanfit = LineFit(*(float("nan"),) * 5, n=int(ok.sum()), level=level)
        fit, fit_log = nanfit, nanfit
    traj = {"step": np.asarray(res.history["step"]),
            "rel_error": np.asarray(res.history["rel_error"]).reshape(nS, nD, -1)}
    return EscapeTimes(deltas, times, model, order, d, eta, threshold, overlap, fit, fit_log, traj,
                       time.perf_counter() - t0)


# ---------------------------------------------------------------------------
# bad local minima (Theorem 2)
# ---------------------------------------------------------------------------
def _placement_weights(order, nodes):
    """Weights w_k with sum_k w_k t_k^p = [p == 2] for p = 0..l (Vandermonde solve)."""
    t = np.asarray(nodes, dtype=float)
    Vm = t[None, :] ** np.arange(order + 1)[:, None]  # (l+1, n)
    rhs = np.zeros(order + 1)
    rhs[2] = 1.0
    return np.linalg.solve(Vm, rhs)


def bad_local_minimum(d, r, order, m=None, *, sign=1):
    """Theorem 2's bad local minimum of objective (2), with an exact symmetric CP target.

    All components equal ``u_i = e_1 / m^{1/l}`` with weights ``c_i = 1``, so the
    model is ``T = e_1^{(x) l}``.  The target is chosen so that the residual is

        ``T - T* = sum_{j=2}^{r+1} E_j``,

    where ``E_j`` is the sum of the ``C(l, 2)`` distinct tensors with ``e_j`` in two
    of the ``l`` slots and ``e_1`` in the others (an orthonormal family).  Hence
    ``f = ||sum_j E_j||^2 / 2 = l (l-1) r / 4`` while the global minimum is 0.

    Each ``E_j`` is written exactly with ``l + 1`` rank-one terms: for distinct
    nodes ``t_0..t_l``, ``(e_1 + t e_j)^{(x) l} = sum_p t^p S_p`` with ``S_p`` the
    sum of placements of ``p`` copies of ``e_j``, and weights solving
    ``sum_k w_k t_k^p = [p = 2]`` (a Vandermonde system) give
    ``sum_k w_k (e_1 + t_k e_j)^{(x) l} = S_2 = E_j``.  So ``T*`` has ``r (l+1) + 1``
    components, the rank bound of the theorem.

    Parameters
    ----------
    d, r, order : int
        ``order >= 3``, ``d > r >= 1``.
    m : int, optional
        Number of model components (default ``r (l+1) + 1``, the smallest ``m`` for
        which the theorem guarantees a global minimum of value 0).
    sign : {1, -1}
        ``-1`` flips the residual, ``T - T* = -sum_j E_j`` (a control: then the
        point is a saddle, not a minimum).

    Returns
    -------
    target : SymCP
        ``T*`` with ``r (l+1) + 1`` components (not normalised).
    U : ndarray (d, m)
    c : ndarray (m,)
    """
    order = check_int("order", order, minimum=3)
    r = check_int("r", r, minimum=1)
    d = check_int("d", d, minimum=2)
    if not d > r:
        raise ValueError(f"the construction needs d > r (directions e_2..e_(r+1)), got d={d}, r={r}")
    m = r * (order + 1) + 1 if m is None else check_int("m", m, minimum=1)
    if sign not in (1, -1):
        raise ValueError(f"sign must be 1 or -1, got {sign!r}")
    nodes = np.linspace(-1.0, 1.0, order + 1)
    w = _placement_weights(order, nodes)
    e = np.eye(d)
    factors = [e[:, 0]]
    weights = [1.0]
    for j in range(1, r + 1):
        for t_k, w_k in zip(nodes, w):
            factors.append(e[:, 0] + t_k * e[:, j])
            weights.append(-sign * w_k)  # T* = e1^l - sign * sum_j E_j
    target = SymCP(np.array(weights), np.array(factors).T, order)
    U = np.tile(e[:, [0]] / m ** (1.0 / order), (1, m))
    c = np.ones(m)
    return target, U, c


def to_homogeneous(U, c, order):
    """Write ``sum_i c_i u_i^{(x) l}`` in Algorithm 1's 2-homogeneous form.

    Returns ``(V, a, ci)`` with ``a_i = sign(c_i)``, ``v_i = u_i (|c_i| ||u_i||^{l-2})^{1/2}``
    and ``ci = 1 / ||v_i||``, so that ``a_i ci^{l-2} v_i^{(x) l} = c_i u_i^{(x) l}``.
    """
    order = check_order(order)
    U = _as_factor_matrix(U, "U")
    c = np.asarray(c, dtype=float)
    if c.shape != (U.shape[1],):
        raise ValueError(f"c must have shape ({U.shape[1]},), got {c.shape}")
    nrm = np.linalg.norm(U, axis=0)
    if np.any(nrm == 0) or np.any(c == 0):
        raise ValueError("to_homogeneous needs non-zero u_i and c_i")
    alpha = np.sqrt(np.abs(c) * nrm ** (order - 2))
    V = U * alpha[None, :]
    return V, np.sign(c), 1.0 / np.linalg.norm(V, axis=0)


def _pack(U, c, train_weights):
    return np.concatenate([U.T.ravel(), c]) if train_weights else U.T.ravel().copy()


def _unpack(theta, d, m, c_fixed, train_weights):
    U = theta[: d * m].reshape(m, d).T
    c = theta[d * m:] if train_weights else c_fixed
    return U, c


def _obj_grad(target, theta, d, m, c_fixed, train_weights):
    U, c = _unpack(theta, d, m, c_fixed, train_weights)
    f, gU, gc = fit_objective(U, c, target, grad=True)
    g = np.concatenate([gU.T.ravel(), gc]) if train_weights else gU.T.ravel()
    return float(f), g


def numerical_hessian(target, U, c, *, h=1e-5, train_weights=True):
    """Hessian of objective (2) at ``(U, c)`` by central differences of the exact gradient.

    Parameters
    ----------
    target : SymCP or dense array
    U : array (d, m)
    c : array (m,)
    h : float
        Difference step (error ``O(h^2)``).
    train_weights : bool
        Include the weights ``c`` as variables (default), or only ``U``.

    Returns
    -------
    ndarray, shape (P, P)
        Symmetrised Hessian; variables ordered as ``u_1, ..., u_m`` (each ``d``
        coordinates) then ``c_1, ..., c_m``.
    """
    target = check_target(target)
    U = _as_factor_matrix(U, "U")
    c = np.asarray(c, dtype=float)
    h = check_float("h", h, positive=True)
    d, m = U.shape
    theta = _pack(U, c, train_weights)
    P = theta.size
    H = np.empty((P, P))
    for k in range(P):
        e = np.zeros(P)
        e[k] = h
        gp = _obj_grad(target, theta + e, d, m, c, train_weights)[1]
        gm = _obj_grad(target, theta - e, d, m, c, train_weights)[1]
        H[:, k] = (gp - gm) / (2 * h)
    return 0.5 * (H + H.T)


@dataclass
class LocalMinCheck:
    """Numerical certificate of a (non-strict) local minimum, from :func:`check_local_minimum`.

    Attributes
    ----------
    objective : float
    grad_norm : float
    hessian_eigenvalues : ndarray (ascending)
    min_eigenvalue : float
    null_dim : int
        Number of eigenvalues with ``|lambda| <= tol`` (the flat directions).
    tol : float
        Tolerance used for zero eigenvalues (relative to the largest).
    radii : ndarray
        Perturbation sizes of the random test.
    random_min_change : ndarray
        Per radius, the smallest ``f(theta + rho xi) - f(theta)`` over random unit ``xi``.
    random_frac_decrease : ndarray
        Per radius, the fraction of random perturbations that decreased ``f`` (beyond round-off).
    eigen_min_change : ndarray
        Per radius, the smallest change along ``+-`` every Hessian eigenvector (flat ones included).
    changes : ndarray (n_radii, n_perturb)
        All random changes.
    is_local_min : bool
        Gradient ~0, no negative eigenvalue beyond ``tol``, and no perturbation decreased ``f``.
    """

    objective: float
    grad_norm: float
    hessian_eigenvalues: np.ndarray
    min_eigenvalue: float
    null_dim: int
    tol: float
    radii: np.ndarray
    random_min_change: np.ndarray
    random_frac_decrease: np.ndarray
    eigen_min_change: np.ndarray
    changes: np.ndarray
    is_local_min: bool


def check_local_minimum(target, U, c, *, radii=(1e-1, 1e-2, 1e-3), n_perturb=200, seed=0, h=1e-5,
                        tol=1e-6, train_weights=True):
    """Check numerically that ``(U, c)`` is a local minimum of objective (2).

    Computes the gradient, the Hessian (:func:`numerical_hessian`) and its
    spectrum, and evaluates the objective at ``n_perturb`` random perturbations of
    each size in ``radii`` (uniform directions in parameter space) and along
    ``+-`` each Hessian eigenvector.

    Parameters
    ----------
    target : SymCP or dense array
    U : array (d, m)
    c : array (m,)
    radii : sequence of float
    n_perturb : int
    seed : int
    h : float
        Finite-difference step of the Hessian.
    tol : float
        Eigenvalues with ``|lambda| <= tol * max(1, max |lambda|)`` count as zero
        (the finite-difference Hessian is accurate to about ``h^2``).  A change
        above ``-1e-10 max(1, f)`` counts as "no decrease" (round-off).
    train_weights : bool

    Returns
    -------
    LocalMinCheck
    """
    target = check_target(target)
    U = _as_factor_matrix(U, "U")
    c = np.asarray(c, dtype=float)
    d, m = U.shape
    if c.shape != (m,):
        raise ValueError(f"c must have shape ({m},), got {c.shape}")
    radii = np.array(_check_float_list("radii", radii))
    n_perturb = check_int("n_perturb", n_perturb, minimum=1)
    tol = check_float("tol", tol, positive=True)
    rng = as_rng(seed)
    theta = _pack(U, c, train_weights)
    f0, g = _obj_grad(target, theta, d, m, c, train_weights)
    H = numerical_hessian(target, U, c, h=h, train_weights=train_weights)
    lam, Q = np.linalg.eigh(H)
    scale = max(1.0, float(np.max(np.abs(lam))))
    null_dim = int(np.sum(np.abs(lam) <= tol * scale))
    slack = 1e-10 * max(abs(f0), 1.0)  # round-off of the Gram-matrix objective

    def change(th):
        Uc, cc = _unpack(th, d, m, c, train_weights)
        return float(fit_objective(Uc, cc, target)) - f0

    P = theta.size
    changes = np.empty((radii.size, n_perturb))
    eig_min = np.empty(radii.size)
    for k, rho in enumerate(radii):
        X = rng.standard_normal((n_perturb, P))
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        changes[k] = [change(theta + rho * x) for x in X]
        eig_min[k] = min(min(change(theta + rho * q), change(theta - rho * q)) for q in Q.T)
    rand_min = changes.min(axis=1)
    frac = np.mean(changes < -slack, axis=1)
    gnorm = float(np.linalg.norm(g))
    ok = gnorm <= tol * scale and lam[0] >= -tol * scale and np.all(rand_min >= -slack) and np.all(eig_min >= -slack)
    return LocalMinCheck(f0, gnorm, lam, float(lam[0]), null_dim, tol, radii, rand_min, frac, eig_min, changes,
                         bool(ok))


def algorithm1_from_state(target, U, a, *, c=None, chat=None, switched=None, epochs=10, iters=None, delta=None,
                          eta=None, lam=None, seed=None, reinit=True, mode_switch=True, record_every=None):
    """Run Algorithm 1 (``tdcore.algorithm1``'s own update loop) from a given state.

    ``tdcore.algorithm1`` always starts from a random small initialisation; this
    driver loads a state ``(U, a, c, chat, switched)`` into the same batched state
    machine (``tdcore._algorithm1._Run``) and runs its epochs unchanged:
    re-initialise the smallest column (if ``reinit``), then ``iters`` gradient
    steps with the scalar mode switch.

    Parameters
    ----------
    target : SymCP or dense array
    U : array (d, m)
        Components ``u_i`` of the model ``sum_i a_i c_i^{l-2} u_i^{(x) l}``.
    a : array (m,)
        Signs.
    c, chat : array (m,), optional
        Default ``1 / ||u_i||`` (a state after the mode switch).
    switched : array of bool (m,), optional
        Default all True (the components have already switched).
    epochs, iters, delta, eta, lam, seed, reinit, mode_switch, record_every
        As :func:`tdcore.algorithm1` (``None`` takes its default rule).

    Returns
    -------
    tdcore.Result
    """
    from ._algorithm1 import algorithm1

    U = _as_factor_matrix(U, "U")
    epochs = check_int("epochs", epochs, minimum=1)
    state = {"U": U, "a": a, "c": c, "chat": chat, "switched": switched}
    return algorithm1(target, U.shape[1], init_state=state, epochs=epochs, iters=iters, delta=delta, eta=eta,
                      lam=lam, seed=seed, backend="numpy", reinit=reinit, mode_switch=mode_switch,
                      record_every=record_every)


def bad_minimum_report(configs, *, n_perturb=100, radii=(1e-1, 1e-2, 1e-3), seed=0):
    """Verify Theorem 2's construction for several ``(order, r, d)`` (one row each).

    Each row holds the measured objective and its predicted value ``l (l-1) r / 4``,
    the gradient norm, the smallest Hessian eigenvalue, the dimension of the
    Hessian's null space and its prediction ``(2m - 1) + (d - r - 1)(m - 1)`` (the
    flat directions: moving along ``e_1`` or rescaling weights, and the unused
    directions ``e_k``, ``k > r + 1``, in which only the sum of the moves is
    penalised), the largest fraction of random perturbations that decreased the
    objective, the smallest change along the Hessian's eigenvectors and the
    verdict of :func:`check_local_minimum`.

    Parameters
    ----------
    configs : sequence of (order, r, d)
    n_perturb, radii, seed
        As :func:`check_local_minimum`.

    Returns
    -------
    rows : list of dict
    checks : list of LocalMinCheck
    """
    rows, checks = [], []
    for cfg in configs:
        if len(cfg) != 3:
            raise ValueError(f"each config must be (order, r, d), got {cfg!r}")
        order, r, d = cfg
        target, U, c = bad_local_minimum(d, r, order)
        m = U.shape[1]
        chk = check_local_minimum(target, U, c, n_perturb=n_perturb, radii=radii, seed=seed)
        checks.append(chk)
        rows.append({"order": order, "r": r, "d": d, "m": m, "objective": chk.objective,
                     "predicted": order * (order - 1) * r / 4, "grad_norm": chk.grad_norm,
                     "min_eigenvalue": chk.min_eigenvalue, "null_dim": chk.null_dim,
                     "null_predicted": (2 * m - 1) + (d - r - 1) * (m - 1), "params": chk.hessian_eigenvalues.size,
                     "max_frac_decrease": float(chk.random_frac_decrease.max()),
                     "min_eigen_change": float(chk.eigen_min_change.min()), "local_min": chk.is_local_min})
    return rows, checks


def gd_from_bad_minimum(d, r, order, *, radius=1e-2, steps=3000, eta=0.02, seed=0):
    """Plain GD on objective (2) (``U`` and ``c`` trained) from a random perturbation of Theorem 2's point.

    The perturbation is Gaussian, scaled to Euclidean norm ``radius`` in the joint
    ``(U, c)`` parameter space.

    Returns
    -------
    result : GDResult
    f0 : float
        The objective at the unperturbed point, ``l (l-1) r / 4``.
    """
    radius = check_float("radius", radius, positive=True)
    target, U, c = bad_local_minimum(d, r, order)
    rng = as_rng(seed)
    xi = rng.standard_normal(U.size + c.size)
    xi *= radius / np.linalg.norm(xi)
    U1 = U + xi[: U.size].reshape(U.shape)
    c1 = c + xi[U.size:]
    res = vanilla_gd(target, U.shape[1], steps=steps, eta=eta, init=U1, weights=c1, train_weights=True)
    return res, float(fit_objective(U, c, target))


@dataclass
class ReinitEscape:
    """Result of :func:`reinit_escape`: Algorithm 1 started at Theorem 2's point.

    Attributes
    ----------
    fit_reinit, fit_no_reinit : ndarray (n_seeds, epochs + 1)
        ``1/2 ||T - T*||^2`` at the start and after each epoch, with and without re-initialisation.
    f0 : float
        The bad local minimum's value ``l (l-1) r / 4``.
    escape_epoch : ndarray (n_seeds,)
        First epoch after which the fit is below ``f0 / 2`` with re-initialisation (-1: never).
    order, r, d, epochs : int
    seeds : list
    params : tdcore.Params
    elapsed : float
    """

    fit_reinit: np.ndarray
    fit_no_reinit: np.ndarray
    f0: float
    escape_epoch: np.ndarray
    order: int
    r: int
    d: int
    epochs: int
    seeds: list
    params: object
    elapsed: float


def reinit_escape(d, r, order, *, epochs=10, seeds=(0, 1, 2), iters=None):
    """Run Algorithm 1 from Theorem 2's bad local minimum, with and without re-initialisation.

    The construction ``c_i u_i^{(x) l}`` is written in Algorithm 1's 2-homogeneous
    form (:func:`to_homogeneous`, all components already past the mode switch)
    and :func:`algorithm1_from_state` runs ``epochs`` epochs with the default
    parameters, once with ``reinit=True`` and once with ``reinit=False``.

    Returns
    -------
    ReinitEscape
    """
    t0 = time.perf_counter()
    epochs = check_int("epochs", epochs, minimum=1)
    seeds = _check_seeds(seeds)
    target, U, c = bad_local_minimum(d, r, order)
    V, a, _ = to_homogeneous(U, c, order)
    n2 = float(target.inner(target))
    f0 = float(fit_objective(U, c, target))
    out = {True: [], False: []}
    params = None
    for seed in seeds:
        for flag in (True, False):
            res = algorithm1_from_state(target, V, a, epochs=epochs, seed=seed, reinit=flag, iters=iters)
            fits = 0.5 * n2 * np.asarray(res.history["rel_error"]) ** 2
            out[flag].append(np.concatenate([[f0], fits]))
            params = res.params
    fr, fn = np.array(out[True]), np.array(out[False])
    below = fr[:, 1:] < f0 / 2
    esc = np.where(below.any(axis=1), below.argmax(axis=1) + 1, -1)
    return ReinitEscape(fr, fn, f0, esc, order, r, d, epochs, seeds, params, time.perf_counter() - t0)


@dataclass
class SpuriousFrequency:
    """Result of :func:`spurious_frequency`.

    Attributes
    ----------
    ms : ndarray
    orthogonal : bool
    final_error : ndarray (len(ms), n_seeds)
        Relative error at the end of each run.
    grad_norm : ndarray (len(ms), n_seeds)
    spurious : ndarray of bool
        Final error above ``threshold`` (the run ended away from the global minimum).
    stalled : ndarray of bool
        Spurious *and* with a small gradient: stuck at a (near-)critical point rather than still moving.
    diverged : ndarray of bool
    threshold : float
    d, r, order, steps : int
    eta, init_scale : float
    elapsed : float
    """

    ms: np.ndarray
    orthogonal: bool
    final_error: np.ndarray
    grad_norm: np.ndarray
    spurious: np.ndarray
    stalled: np.ndarray
    diverged: np.ndarray
    threshold: float
    d: int
    r: int
    order: int
    steps: int
    eta: float
    init_scale: float
    elapsed: float

    @property
    def frequency(self):
        """Fraction of runs ending at a spurious point, per ``m``."""
        return self.spurious.mean(axis=1)

    def interval(self, level=0.95):
        """Wilson score interval of each frequency (arrays ``low``, ``high``)."""
        from scipy import stats

        n = self.spurious.shape[1]
        p = self.frequency
        z = float(stats.norm.ppf(0.5 + level / 2))
        den = 1 + z**2 / n
        mid = (p + z**2 / (2 * n)) / den
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / den
        low = np.where(p == 0, 0.0, np.clip(mid - half, 0.0, p))
        high = np.where(p == 1, 1.0, np.clip(mid + half, p, 1.0))
        return low, high


def spurious_frequency(d, r, order, ms, *, seeds, orthogonal, steps=3000, eta=0.05, init_scale=0.5,
                       threshold=0.1, grad_tol=1e-3):
    """How often plain gradient descent with ``m`` components ends at a spurious point.

    For each seed: a target ``sum_k v_k^{(x) l}`` with ``r`` unit components
    (orthonormal or uniform on the sphere; normalised to ``||T*|| = 1``), and
    vanilla GD on objective (2) with ``U`` and ``c`` trained from ``u_i`` of norm
    ``init_scale`` and weights ``+-1``.  A run is *spurious* when its final
    relative error exceeds ``threshold``; it is *stalled* when in addition its
    gradient norm is below ``grad_tol`` (it sits at a critical point).

    Parameters
    ----------
    d, r, order : int
    ms : sequence of int
        Widths (e.g. ``r, 2r, 4r``).
    seeds : sequence of int
        One target and one initialisation per seed (the same targets for every ``m``).
    orthogonal : bool
    steps : int
    eta : float
    init_scale : float
    threshold : float
    grad_tol : float

    Returns
    -------
    SpuriousFrequency
    """
    t0 = time.perf_counter()
    d = check_int("d", d, minimum=2)
    r = check_int("r", r, minimum=1)
    order = check_order(order)
    ms = _check_int_list("ms", ms, 1)
    seeds = _check_seeds(seeds)
    if not isinstance(orthogonal, bool):
        raise TypeError(f"orthogonal must be True or False, got {orthogonal!r}")
    steps = check_int("steps", steps, minimum=1)
    eta = check_float("eta", eta, positive=True)
    init_scale = check_float("init_scale", init_scale, positive=True)
    threshold = check_float("threshold", threshold, positive=True)
    grad_tol = check_float("grad_tol", grad_tol, positive=True)
    targets = [random_target(d, r, order, orthogonal=orthogonal, seed=s) for s in seeds]
    shape = (len(ms), len(seeds))
    err, gn, div = np.empty(shape), np.empty(shape), np.zeros(shape, dtype=bool)
    for k, m in enumerate(ms):
        init_seeds = [10_000 + 97 * m + (s if isinstance(s, int) else k) for s in seeds]
        res = vanilla_gd(targets, m, steps=steps, eta=eta, seeds=init_seeds, init_scale=init_scale,
                         weights="train", divergence="mark", record_every=steps)
        err[k], gn[k], div[k] = res.rel_error, res.grad_norm, res.diverged_at >= 0
    spurious = (err > threshold) | div
    stalled = spurious & (gn < grad_tol) & ~div
    return SpuriousFrequency(np.array(ms), orthogonal, err, gn, spurious, stalled, div, threshold, d, r, order,
                             steps, eta, init_scale, time.perf_counter() - t0)


# ---------------------------------------------------------------------------
# tables (Markdown, rendered by the book)
# ---------------------------------------------------------------------------
def markdown_table(rows, columns):
    """A Markdown table from a list of dicts.

    Parameters
    ----------
    rows : list of dict
    columns : list of (key, header, format)
        ``format`` is a format spec (``".3f"``) or a callable returning a string.

    Returns
    -------
    IPython.display.Markdown
    """
    from IPython.display import Markdown

    head = "| " + " | ".join(h for _, h, _ in columns) + " |"
    sep = "| " + " | ".join("---:" for _ in columns) + " |"
    lines = [head, sep]
    for row in rows:
        cells = []
        for key, _, fmt in columns:
            v = row[key]
            cells.append(fmt(v) if callable(fmt) else format(v, fmt))
        lines.append("| " + " | ".join(cells) + " |")
    return Markdown("\n".join(lines))


def lazy_table(sweep):
    """Markdown table of a :class:`LazySweep`: ``d``, the symmetric dimension, the count and ``m*``."""
    rows = sweep.table()
    return markdown_table(rows, [("d", "$d$", "d"), ("sym_dim", r"$\binom{d+l-1}{l}$", "d"),
                                 ("count", r"count $\binom{d+l-1}{l}/d$", ".1f"),
                                 ("m_star_median", "median $m^*$", ".1f"),
                                 ("m_star_min", "min", "d"), ("m_star_max", "max", "d")])


def bad_minimum_table(rows):
    """Markdown table of :func:`bad_minimum_report` rows."""
    yes = lambda v: "yes" if v else "**no**"  # noqa: E731
    return markdown_table(rows, [
        ("order", "$l$", "d"), ("r", "$r$", "d"), ("d", "$d$", "d"), ("m", "$m$", "d"),
        ("objective", "$f$", ".6g"), ("predicted", "$l(l-1)r/4$", "g"), ("grad_norm", r"$\Vert\nabla f\Vert$", ".1e"),
        ("min_eigenvalue", r"$\lambda_{\min}$", ".1e"), ("null_dim", "null dim.", "d"),
        ("null_predicted", "predicted", "d"), ("max_frac_decrease", "random: share decreasing", ".2f"),
        ("min_eigen_change", "min change along eigvecs", ".1e"), ("local_min", "local min", yes)])


def spurious_table(results):
    """Markdown table of several :class:`SpuriousFrequency` results (one row per width and kind)."""
    rows = []
    for res in results:
        lo, hi = res.interval()
        for k, m in enumerate(res.ms):
            rows.append({"kind": "orthogonal" if res.orthogonal else "random", "m": int(m),
                         "ratio": m / res.r, "n": res.spurious.shape[1], "freq": float(res.frequency[k]),
                         "ci": f"[{lo[k]:.2f}, {hi[k]:.2f}]", "stalled": float(res.stalled[k].mean()),
                         "median": float(np.median(res.final_error[k]))})
    return markdown_table(rows, [("kind", "components", "s"), ("m", "$m$", "d"), ("ratio", "$m/r$", "g"),
                                 ("n", "runs", "d"), ("freq", "spurious", ".2f"), ("ci", "95% interval", "s"),
                                 ("stalled", "stalled (gradient < 1e-3)", ".2f"),
                                 ("median", "median final error", ".3f")])


# ---------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------
def _new_ax(ax, figsize=None):
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
        return fig, ax
    return ax.figure, ax


def _plain_log_ticks(ax, values, axis="x"):
    """Log axis labelled with the given values in plain numbers (no 6x10^0 labels)."""
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    a = ax.xaxis if axis == "x" else ax.yaxis
    a.set_major_locator(FixedLocator(sorted(set(float(v) for v in values))))
    fmt = ScalarFormatter()
    fmt.set_scientific(False)
    a.set_major_formatter(fmt)
    a.set_minor_formatter(NullFormatter())


def plot_lazy_residual(sweep, ax=None):
    """Median lazy-fit residual against ``d m / C(d+l-1, l)`` for each ``d`` of a :class:`LazySweep`."""
    import matplotlib as mpl

    fig, ax = _new_ax(ax)
    cmap = mpl.colormaps["viridis"]
    for k, d in enumerate(sweep.ds):
        curves = sweep.curves[k]
        L = min(len(c) for c in curves)
        med = np.median(np.array([c[:L] for c in curves]), axis=0)
        x = d * np.arange(1, L + 1) / sym_dim(int(d), sweep.order)
        ax.plot(x, med, marker=".", color=cmap(k / max(1, len(sweep.ds) - 1)), label=f"$d={d}$")
    ax.axhline(sweep.threshold, color=method_color("reference"), ls=":", lw=1)
    ax.axvline(1.0, color=method_color("reference"), ls="--", lw=1)
    ax.set_xlabel(r"features per symmetric dimension, $dm / \binom{d+l-1}{l}$")
    ax.set_ylabel("lazy-fit relative residual")
    ax.set_title(f"order $l={sweep.order}$: median over {len(sweep.seeds)} seeds")
    ax.set_ylim(-0.02, 1.05)
    ax.legend(loc="lower left", ncol=2)
    return fig


def plot_lazy_threshold(sweeps, ax=None):
    """``m*`` against ``d`` on log-log axes, with the dimension count, for one or more :class:`LazySweep`."""
    fig, ax = _new_ax(ax)
    if isinstance(sweeps, LazySweep):
        sweeps = [sweeps]
    markers = "os^D"
    for k, sw in enumerate(sweeps):
        ds = sw.ds.astype(float)
        med = sw.m_star_median
        lo, hi = sw.m_star.min(axis=1), sw.m_star.max(axis=1)
        ax.errorbar(ds, med, yerr=[med - lo, hi - med], fmt=markers[k % 4], color=method_color("lazy"),
                    capsize=2, label=f"lazy $m^*$, $l={sw.order}$: slope {sw.fit.slope:.2f}")
        xx = np.geomspace(ds.min(), ds.max(), 50)
        ax.plot(xx, sw.fit.predict(xx), color=method_color("lazy"), lw=1)
        ax.plot(ds, sw.prediction, ls="--", marker="", color=method_color("reference"),
                label=r"count $\binom{d+l-1}{l}/d$" + f", $l={sw.order}$")
    ax.set_xscale("log")
    ax.set_yscale("log")
    _plain_log_ticks(ax, np.unique(np.concatenate([sw.ds for sw in sweeps])))
    ax.set_xlabel("dimension $d$")
    ax.set_ylabel(r"smallest width $m^*$")
    ax.legend(loc="upper left")
    return fig


def plot_lazy_gd(exp, axes=None):
    """Two panels for a :class:`LazyGDExperiment`: errors against width, and relative movement."""
    import matplotlib.pyplot as plt

    if axes is None:
        fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.6))
    else:
        fig = axes[0].figure
    ax = axes[0]
    ax.plot(exp.ms, exp.lazy_residual, "s--", color=method_color("reference"), label="lazy limit (exact)")
    ax.plot(exp.ms, exp.linear_error, "^-", color=method_color("lazy"), mfc="none",
            label=f"linearised GD, {exp.steps} steps")
    ax.plot(exp.ms, exp.gd_error, "o", color=method_color("gd"), label=f"actual GD, {exp.steps} steps")
    N = sym_dim(exp.d, exp.order)
    ax.axvline(N / exp.d, color=method_color("reference"), ls=":", lw=1)
    ax.set_xscale("log")
    _plain_log_ticks(ax, exp.ms)
    ax.set_xlabel("distinct directions $m$ (model has $2m$ components)")
    ax.set_ylabel("relative error")
    ax.set_title(f"$d={exp.d}$, $l={exp.order}$, scale {exp.scales[0]:g}")
    ax.legend()
    ax = axes[1]
    ax.loglog(exp.ms, exp.movement, "o-", color=method_color("gd"), label="measured")
    wide = exp.ms >= 2 * N / exp.d
    if wide.any():
        mw = exp.ms[wide]
        ref = exp.movement[wide][0] * np.sqrt(mw[0] / mw)
        ax.loglog(mw, ref, ls="--", color=method_color("reference"), label=r"$\propto m^{-1/2}$")
    ax.axvline(N / exp.d, color=method_color("reference"), ls=":", lw=1)
    _plain_log_ticks(ax, exp.ms)
    ax.set_xlabel("distinct directions $m$")
    ax.set_ylabel(r"$\|U - U_0\|_F / \|U_0\|_F$")
    ax.set_title("how far the parameters moved")
    ax.legend()
    return fig


def plot_lazy_scale(exp, ax=None):
    """Errors against the initialisation scale for a :func:`lazy_scale_sweep` result."""
    fig, ax = _new_ax(ax)
    ax.semilogx(exp.scales, exp.gd_error, "o-", color=method_color("gd"), label=f"actual GD, {exp.steps} steps")
    ax.semilogx(exp.scales, exp.linear_error, "^--", color=method_color("lazy"), mfc="none",
                label="linearised GD, same steps")
    ax.axhline(exp.lazy_residual[0], color=method_color("reference"), ls=":", label="lazy limit (exact)")
    ax.set_xlabel("initialisation scale")
    ax.set_ylabel("relative error")
    ax.set_title(f"$d={exp.d}$, $l={exp.order}$, $m={exp.ms[0]}$ directions")
    ax.legend()
    return fig


def plot_escape_times(results, ax=None):
    """Escape time against ``delta`` (log-log) for several :class:`EscapeTimes`, with fitted lines."""
    fig, ax = _new_ax(ax)
    markers = {3: "o", 4: "s", 5: "^"}
    for res in results:
        col = method_color("gd") if res.model == "vanilla" else method_color("algorithm1")
        med = res.median_times
        lab = (f"vanilla, $l={res.order}$: exponent {res.fit.slope:.2f}" if res.model == "vanilla" else
               f"2-homogeneous, $l={res.order}$: {res.fit_log.slope:.2f}" + r"$\,\log(1/\delta)$")
        ls = "-" if res.order == 3 else "--"
        ax.plot(res.deltas, med, marker=markers.get(res.order, "o"), ls="", color=col)
        xx = np.geomspace(res.deltas.min(), res.deltas.max(), 60)
        yy = res.fit.predict(xx) if res.model == "vanilla" else res.fit_log.predict(np.log(1 / xx))
        ax.plot(xx, yy, ls=ls, color=col, lw=1.2, label=lab)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"initialisation size $\delta$")
    ax.set_ylabel(r"escape time (steps $\times\,\eta$)")
    ax.legend(loc="center left")
    return fig


def plot_saddle_trajectories(results, delta_index=0, ax=None):
    """Relative error against time for one ``delta`` of several :class:`EscapeTimes` (first seed)."""
    fig, ax = _new_ax(ax)
    for res in results:
        col = method_color("gd") if res.model == "vanilla" else method_color("algorithm1")
        t = res.trajectories["step"] * res.eta
        y = res.trajectories["rel_error"][0, delta_index]
        ls = "-" if res.order == 3 else "--"
        ax.plot(t[: y.size], y, ls=ls, color=col,
                label=f"{res.model}, $l={res.order}$, $\\delta={res.deltas[delta_index]:g}$")
    ax.axhline(results[0].threshold, color=method_color("reference"), ls=":", lw=1)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(left=0)
    ax.set_xlabel("time (steps $\\times\\,\\eta$)")
    ax.set_ylabel("relative error")
    ax.legend(loc="lower left")
    return fig


def plot_hessian_spectrum(check, ax=None):
    """Sorted Hessian eigenvalues of a :class:`LocalMinCheck` on a symmetric-log axis."""
    fig, ax = _new_ax(ax)
    lam = check.hessian_eigenvalues
    thr = check.tol * max(1.0, float(np.max(np.abs(lam))))
    zero = np.abs(lam) <= thr
    idx = np.arange(lam.size)
    ax.plot(idx[~zero], lam[~zero], "o", color=method_color("gd"), label="non-zero")
    ax.plot(idx[zero], lam[zero], "o", mfc="none", color=method_color("reference"),
            label=f"zero (|λ| ≤ {thr:.0e}): {int(zero.sum())}")
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel("eigenvalue index")
    ax.set_ylabel("Hessian eigenvalue")
    ax.legend(loc="upper left")
    return fig


def plot_perturbation_test(checks, labels, ax=None):
    """Distribution of ``f(theta + rho xi) - f(theta)`` at the smallest radius for several checks."""
    fig, ax = _new_ax(ax)
    cols = [method_color("gd"), method_color("lazy"), method_color("algorithm1")]
    for k, (chk, lab) in enumerate(zip(checks, labels)):
        ch = chk.changes[-1]
        rho = chk.radii[-1]
        ax.plot(np.sort(ch) / rho**2, np.linspace(0, 1, ch.size), color=cols[k % 3],
                label=f"{lab}: {100 * chk.random_frac_decrease[-1]:.0f}% decrease")
    ax.axvline(0, color="k", lw=0.6)
    ax.set_xscale("symlog", linthresh=1e-2)
    ax.set_xlabel(r"$[f(\theta + \rho\xi) - f(\theta)] / \rho^2$")
    ax.set_ylabel("fraction of random directions")
    ax.legend(loc="upper left")
    return fig


def plot_spurious_frequency(results, ax=None):
    """Fraction of spurious endings against ``m / r`` for :class:`SpuriousFrequency` results."""
    fig, ax = _new_ax(ax)
    for res in results:
        col = method_color("gd") if res.orthogonal else method_color("lazy")
        lo, hi = res.interval()
        p = res.frequency
        x = res.ms / res.r
        ax.errorbar(x, p, yerr=[p - lo, hi - p], fmt="o-", color=col, capsize=3,
                    label=("orthogonal" if res.orthogonal else "random") + f" components (n={res.spurious.shape[1]})")
    ax.set_xscale("log")
    _plain_log_ticks(ax, np.unique(np.concatenate([res.ms / res.r for res in results])))
    ax.set_xlabel("over-parameterisation $m / r$")
    ax.set_ylabel("fraction ending at a spurious point")
    ax.set_ylim(-0.03, 1.03)
    ax.legend(loc="upper right")
    return fig


def plot_reinit_escape(res, ax=None):
    """Fit per epoch of Algorithm 1 from the bad minimum, with and without re-initialisation."""
    fig, ax = _new_ax(ax)
    ep = np.arange(res.epochs + 1)
    for k in range(len(res.seeds)):
        ax.plot(ep, res.fit_reinit[k], "-", color=method_color("algorithm1"), alpha=0.8,
                label="with re-initialisation" if k == 0 else None)
        ax.plot(ep, res.fit_no_reinit[k], "--", color=method_color("gd"), alpha=0.8,
                label="without re-initialisation" if k == 0 else None)
    ax.axhline(res.f0, color=method_color("reference"), ls=":", lw=1, label=r"$l(l-1)r/4$")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(r"$\frac{1}{2}\|T - T^*\|_F^2$")
    ax.set_title(f"Algorithm 1 from the bad minimum: $l={res.order}$, $r={res.r}$, $d={res.d}$, "
                 f"{len(res.seeds)} seeds")
    ax.legend(loc="lower left")
    return fig


# -- explorers: small live computations with a static default ------------------------------------
@_serial_blas
def explore_lazy_fit(ax=None, d=8, order=3, m=10, seed=0):
    """Explorer panel: lazy-fit residual against width for one ``(d, l)``, with the chosen ``m`` marked."""
    fig, ax = _new_ax(ax)
    N = sym_dim(d, order)
    M = max(m, -(-N // d) + 1)
    if d * M > 3000:
        ax.text(0.5, 0.5, f"d m = {d * M} features: too large for a live kernel\n(keep d m below 3000)",
                ha="center", va="center", transform=ax.transAxes)
        return fig
    rng = as_rng(seed)
    target = random_target(d, 1, order, seed=rng)
    U0 = _unit_columns(rng, d, M)
    ms, res, ranks = lazy_residual_path(target, U0)
    ax.plot(ms, res, ".-", color=method_color("lazy"), label="lazy-fit residual")
    ax.plot(ms, np.minimum(ms * d, N) / N, ":", color=method_color("reference"),
            label=r"$\min(dm, \binom{d+l-1}{l}) / \binom{d+l-1}{l}$")
    ax.axvline(N / d, color=method_color("reference"), ls="--", lw=1)
    ax.plot([m], [res[m - 1]], "o", ms=9, mfc="none", color="k",
            label=f"m={m}: residual {res[m - 1]:.3f}, rank {ranks[m - 1]}")
    ax.set_xlabel("width $m$")
    ax.set_ylabel("relative residual / coverage")
    ax.set_title(f"$d={d}$, $l={order}$: symmetric dimension {N}")
    ax.legend(loc="center left")
    return fig


def explore_saddle(ax=None, order=3, log10_delta=-2.0, overlap=0.5):
    """Explorer panel: vanilla and 2-homogeneous GD from size ``10**log10_delta`` (at most 15000 steps)."""
    fig, ax = _new_ax(ax)
    delta = 10.0**log10_delta
    eta = 0.5 / order**2
    target, Z = _saddle_init(6, order, [0], overlap, 0)
    pred = (delta * overlap) ** (2 - order) / (order * (order - 2))
    steps = int(min(1.5e4, math.ceil((2 * pred + 20) / eta)))
    U0 = delta * Z.T
    rec = max(1, steps // 400)
    v = vanilla_gd(target, 1, steps=steps, eta=eta, init=U0, weights=np.ones(1), hit_threshold=0.5,
                   stop_when_hit=False, divergence="mark", record_every=rec)
    steps_h = min(steps, int(math.ceil((3 * math.log(1 / delta) / order + 10) / eta)))
    h = homogeneous_gd(target, U0, np.ones(1), steps=steps_h, eta=eta, hit_threshold=0.5, record_every=1)
    for res, name, key in ((v, "vanilla", "gd"), (h, "2-homogeneous", "algorithm1")):
        t = res.history["step"] * eta
        esc = f"escape at t={res.hit_time:.1f}" if res.hit_step >= 0 else "no escape"
        ax.plot(t, res.history["rel_error"], color=method_color(key), label=f"{name}: {esc}")
    ax.axhline(0.5, color=method_color("reference"), ls=":", lw=1)
    ax.set_xscale("symlog", linthresh=1.0)
    ax.set_xlim(left=0)
    ax.set_xlabel("time (steps $\\times\\,\\eta$)")
    ax.set_ylabel("relative error")
    ax.set_title(f"$l={order}$, $\\delta=10^{{{log10_delta:g}}}$, overlap {overlap:g}")
    ax.legend(loc="lower left")
    return fig


def explore_bad_minimum(ax=None, order=3, r=1, log10_radius=-2.0, sign=1):
    """Explorer panel: objective along random perturbations of Theorem 2's point (or its flipped control)."""
    fig, ax = _new_ax(ax)
    d = r + 2
    target, U, c = bad_local_minimum(d, r, order, sign=sign)
    rho = 10.0**log10_radius
    rng = as_rng(0)
    theta = _pack(U, c, True)
    f0 = float(fit_objective(U, c, target))
    X = rng.standard_normal((300, theta.size))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    dm = U.shape
    ch = []
    for x in X:
        Uc, cc = _unpack(theta + rho * x, dm[0], dm[1], c, True)
        ch.append(float(fit_objective(Uc, cc, target)) - f0)
    ch = np.sort(np.array(ch))
    ax.plot(ch, np.linspace(0, 1, ch.size), color=method_color("gd" if sign == 1 else "lazy"))
    if ch.min() > 0:
        ax.set_xscale("log")
    else:
        ax.axvline(0, color="k", lw=0.6)
        ax.set_xscale("symlog", linthresh=max(rho**2 * 1e-2, 1e-12))
    ax.set_xlabel(r"$f(\theta + \rho\xi) - f(\theta)$")
    ax.set_ylabel("fraction of directions")
    kind = "construction" if sign == 1 else "flipped residual (control)"
    ax.set_title(f"{kind}: $l={order}$, $r={r}$, $f={f0:.3g}$, "
                 f"{100 * np.mean(ch < -1e-12):.0f}% decrease at $\\rho=10^{{{log10_radius:g}}}$")
    return fig
