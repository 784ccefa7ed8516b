"""Tests of tdcore._lazy: the lazy kernel and fit, dimension counts, the threshold sweep, linearised GD."""

import itertools
import math

import numpy as np
import pytest

import tdcore
from tdcore._lazy import (
    ALEXANDER_HIRSCHOWITZ_DEFECTIVE,
    lazy_fit,
    lazy_init,
    lazy_kernel,
    lazy_residual_path,
    lazy_threshold_sweep,
    linearized_gd_error,
    span_defects,
    sym_dim,
)
from tdcore._stats import fit_line, fit_loglog_slope


# -- dense helpers (small d only) -----------------------------------------------------------------
def _outer(vectors):
    T = vectors[0]
    for v in vectors[1:]:
        T = np.multiply.outer(T, v)
    return T


def sym_feature(u, x, order):
    """Dense sym(u^{(x)(l-1)} (x) x)."""
    return tdcore.symmetrize(_outer([u] * (order - 1) + [x]))


def dense_features(U, order):
    d, m = U.shape
    return np.array([sym_feature(U[:, i], np.eye(d)[a], order).ravel() for i in range(m) for a in range(d)])


# -- symmetric dimension ----------------------------------------------------------------------------
def test_sym_dim_counts_monomials():
    for d, l in [(1, 3), (2, 2), (3, 3), (5, 4)]:
        n = len(list(itertools.combinations_with_replacement(range(d), l)))
        assert sym_dim(d, l) == n
    with pytest.raises(ValueError, match="order"):
        sym_dim(3, 1)
    with pytest.raises(TypeError, match="d must be an integer"):
        sym_dim(3.0, 3)


# -- the lazy kernel ----------------------------------------------------------------------------------
@pytest.mark.parametrize("order", [2, 3, 4])
def test_lazy_kernel_matches_dense_features(order):
    rng = np.random.default_rng(order)
    U = rng.standard_normal((4, 3))
    F = dense_features(U, order)
    K = lazy_kernel(U, order)
    assert K.shape == (12, 12)
    np.testing.assert_allclose(K, F @ F.T, atol=1e-12, rtol=0)


@pytest.mark.parametrize("order", [2, 3, 4])
def test_general_inner_product_formula(order):
    # <sym(u^{l-1} x), sym(v^{l-1} y)> for arbitrary (non-basis) x, y
    rng = np.random.default_rng(10 + order)
    u, v, x, y = rng.standard_normal((4, 3))
    dense = float(np.sum(sym_feature(u, x, order) * sym_feature(v, y, order)))
    uv = u @ v
    formula = (uv ** (order - 1) * (x @ y) + (order - 1) * uv ** (order - 2) * (u @ y) * (v @ x)) / order
    assert dense == pytest.approx(formula, rel=1e-12)


@pytest.mark.parametrize("order", [2, 3, 4])
@pytest.mark.parametrize("with_weights", [False, True])
def test_lazy_fit_equals_dense_least_squares(order, with_weights):
    rng = np.random.default_rng(order)
    d, m = 4, 3
    U = rng.standard_normal((d, m))
    T = tdcore.random_target(d, 2, order, seed=1)
    F = dense_features(U, order)
    rhs = T.to_dense().ravel()
    w = None
    if with_weights:
        w = rng.standard_normal(m)
        rhs = rhs - tdcore.SymCP(w, U, order).to_dense().ravel()
    coef, *_ = np.linalg.lstsq(F.T, rhs, rcond=None)
    expected = np.linalg.norm(F.T @ coef - rhs) / T.norm()
    fit = lazy_fit(T, U, weights=w)
    assert fit.rel_residual == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert fit.rank == np.linalg.matrix_rank(F)
    assert fit.n_features == d * m and fit.sym_dim == sym_dim(d, order)
    assert float(fit) == fit.rel_residual
    if not with_weights:
        # the returned directions realise the projection
        X = fit.directions
        T_lazy = sum(sym_feature(U[:, i], X[:, i], order) for i in range(m)).ravel()
        assert np.linalg.norm(T_lazy - rhs) / T.norm() == pytest.approx(expected, rel=1e-8)


def _noise(fit):
    """Rounding bound of a lazy residual: ||T||^2 - ||proj||^2 goes through an eigen-solve of the kernel,
    so the relative residual carries about sqrt(16 eps kappa), kappa = condition number of the kept part."""
    lam = np.asarray(fit.eigenvalues, dtype=float)
    kept = lam[lam > 1e-10 * lam.max()]
    return math.sqrt(16 * np.finfo(float).eps * kept.max() / kept.min())


def test_lazy_fit_dense_target_and_full_span():
    rng = np.random.default_rng(0)
    T = tdcore.random_target(3, 1, 3, seed=2)
    U = rng.standard_normal((3, 4))  # d m = 12 >= C(5, 3) = 10: the whole space
    fit_cp = lazy_fit(T, U)
    fit_dense = lazy_fit(T.to_dense(), U)
    assert fit_cp.rank == 10 and fit_cp.rel_residual < _noise(fit_cp)
    assert fit_dense.rel_residual == pytest.approx(fit_cp.rel_residual, abs=_noise(fit_cp) + _noise(fit_dense))


def test_lazy_fit_validation():
    T = tdcore.random_target(4, 1, 3, seed=0)
    with pytest.raises(ValueError, match="U0 has d=3 rows"):
        lazy_fit(T, np.ones((3, 2)))
    with pytest.raises(ValueError, match="2-D array"):
        lazy_fit(T, np.ones(4))
    with pytest.raises(ValueError, match="weights must have shape"):
        lazy_fit(T, np.ones((4, 2)), weights=np.ones(3))
    with pytest.raises(ValueError, match="NaN"):
        lazy_fit(T, np.full((4, 2), np.nan))
    with pytest.raises(TypeError, match="target"):
        lazy_fit("T", np.ones((4, 2)))


@pytest.mark.parametrize("d, order, M", [(6, 3, 12), (5, 4, 15), (4, 4, 11), (5, 3, 9), (3, 4, 6)])
def test_residual_path_matches_prefix_fits(d, order, M):
    rng = np.random.default_rng(d + order)
    T = tdcore.random_target(d, 1, order, seed=3)
    U = rng.standard_normal((d, M))
    ms, res, ranks = lazy_residual_path(T, U)
    for m in ms:
        fit = lazy_fit(T, U[:, :m])
        assert res[m - 1] == pytest.approx(fit.rel_residual, abs=2 * _noise(fit))
        assert ranks[m - 1] == fit.rank
    assert np.all(np.diff(res) <= 1e-9)  # nested spans: non-increasing
    N = sym_dim(d, order)
    # generic rank min(d m, N) (Terracini + Alexander-Hirschowitz), except the defective cases
    defective = {(3, 4, 5), (4, 4, 9), (5, 4, 14), (5, 3, 7)}
    expected = [min(d * m, N) - ((d, order, m) in defective) for m in ms]
    assert list(ranks) == expected


def test_residual_path_sees_the_alexander_hirschowitz_defect():
    # quartics in 4 variables: 9 generic points span 34 < min(36, 35) dimensions
    rng = np.random.default_rng(1)
    U = rng.standard_normal((4, 10))
    T = tdcore.random_target(4, 1, 4, seed=5)
    _, res, ranks = lazy_residual_path(T, U)
    assert ranks[8] == 34 and res[8] > 1e-6
    assert ranks[9] == 35 and res[9] < 2 * _noise(lazy_fit(T, U))  # zero up to the resolution of lazy_fit


def test_span_defects_are_the_alexander_hirschowitz_cases():
    cases = [(d, 3) for d in range(3, 7)] + [(d, 4) for d in range(3, 6)]
    rows = span_defects(cases, seed=0)
    found = sorted((r["d"], r["order"], m) for r in rows for m, _, _ in r["defects"])
    assert found == sorted(ALEXANDER_HIRSCHOWITZ_DEFECTIVE)
    assert all(rank == full - 1 for r in rows for _, rank, full in r["defects"])
    with pytest.raises(ValueError, match="each case"):
        span_defects([(3, 3, 1)])


def test_residual_path_stop_below_skips_eigendecompositions():
    rng = np.random.default_rng(2)
    U = rng.standard_normal((5, 9))
    T = tdcore.random_target(5, 1, 3, seed=1)
    _, full, _ = lazy_residual_path(T, U)
    _, part, _ = lazy_residual_path(T, U, stop_below=0.5)
    ok = np.isfinite(part)
    np.testing.assert_allclose(part[ok], full[ok])
    assert np.any(part[ok] < 0.5)


def test_lazy_threshold_sweep_tracks_dimension_count():
    sw = lazy_threshold_sweep([4, 6, 8, 10], 3, threshold=0.1, seeds=(0, 1))
    assert sw.m_star.shape == (4, 2)
    ratio = sw.m_star_median / sw.prediction
    assert np.all(ratio > 0.6) and np.all(ratio < 1.25)
    assert 1.2 < sw.fit.slope < 2.3
    assert len(sw.table()) == 4 and sw.table()[0]["sym_dim"] == 20
    assert sw.fit_prediction.slope < 2  # the finite-d count is below its asymptotic slope
    with pytest.raises(ValueError, match="threshold must be in"):
        lazy_threshold_sweep([4, 6, 8], 3, threshold=1.5)
    with pytest.raises(TypeError, match="seeds must be a sequence"):
        lazy_threshold_sweep([4, 6, 8], 3, seeds=3)
    with pytest.raises(ValueError, match="ds\\[0\\]"):
        lazy_threshold_sweep([1, 6, 8], 3)


# -- line fits (tdcore._stats: the fits of the threshold sweep) ------------------------------------
def test_fit_loglog_exact_and_noisy():
    x = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    fit = fit_loglog_slope(x, 3 * x**2.5)
    assert fit.slope == pytest.approx(2.5) and fit.stderr == pytest.approx(0, abs=1e-12)
    np.testing.assert_allclose(fit.predict(x), 3 * x**2.5)
    rng = np.random.default_rng(0)
    y = 2 * x**-1.0 * np.exp(0.05 * rng.standard_normal(x.size))
    fit = fit_loglog_slope(x, y)
    assert fit.contains(-1.0) and fit.low < fit.slope < fit.high
    assert "95% CI" in str(fit)


def test_fit_line_interval_width_and_errors():
    f = fit_line([0, 1, 2, 3], [0.1, 0.9, 2.1, 2.9])
    assert f.slope == pytest.approx(0.96) and f.high - f.low > 0
    with pytest.raises(ValueError, match="at least 3 points"):
        fit_line([0, 1], [0, 1])
    with pytest.raises(ValueError, match="positive"):
        fit_loglog_slope([1, 2, 3], [1, -1, 2])
    with pytest.raises(ValueError, match="distinct"):
        fit_line([1, 1, 1], [1, 2, 3])
    with pytest.raises(ValueError, match="level"):
        fit_line([0, 1, 2], [0, 1, 2], level=1.5)


# -- linearised dynamics ----------------------------------------------------------------------------------
def test_linearized_gd_error_matches_explicit_iteration():
    order, d, m = 3, 3, 2
    rng = np.random.default_rng(4)
    T = tdcore.random_target(d, 1, order, seed=0)
    U0 = rng.standard_normal((d, m))
    c = np.array([0.7, -0.4])
    F = dense_features(U0, order)  # rows: phi_{i,a}
    J = order * (np.repeat(c, d)[:, None] * F).T  # d^l x (d m)
    R0 = T.to_dense().ravel() - tdcore.SymCP(c, U0, order).to_dense().ravel()
    _, mu_max = linearized_gd_error(T, U0, c, eta=1.0, steps=0)
    assert mu_max == pytest.approx(np.linalg.eigvalsh(J.T @ J)[-1])
    eta = 1.0 / mu_max
    delta, errs = np.zeros(d * m), []
    for _ in range(6):
        errs.append(np.linalg.norm(R0 - J @ delta) / T.norm())
        delta = delta + eta * J.T @ (R0 - J @ delta)
    pred, _ = linearized_gd_error(T, U0, c, eta=eta, steps=np.arange(6))
    np.testing.assert_allclose(pred, errs, rtol=1e-8)


def test_paired_init_is_zero_and_equals_reduced_model():
    order, d, m, scale = 3, 4, 3, 5.0
    U0, c, Z = lazy_init(d, m, order, scale=scale, seed=0)
    assert U0.shape == (d, 2 * m) and c.shape == (2 * m,)
    # The paired model is exactly zero, but its norm comes from Gram powers: ||T||^2 = c^T (U^T U)^{o l} c
    # sums terms of size up to (sum_i |c_i| ||u_i||^l)^2 that cancel, so the computed ||T||^2 carries an
    # error of a few m^2 eps times that size (any BLAS kernel, any summation order): ||T|| is of order
    # sqrt(eps) * sum_i |c_i| ||u_i||^l, not of order eps.  The dense array, where no squares cancel,
    # is zero to a few m eps times the terms.
    size = float(np.sum(np.abs(c) * np.linalg.norm(U0, axis=0) ** order))
    eps = np.finfo(float).eps
    assert tdcore.SymCP(c, U0, order).norm() <= math.sqrt(4 * (2 * m) ** 2 * eps) * size
    assert np.max(np.abs(tdcore.SymCP(c, U0, order).to_dense())) <= 8 * (2 * m) * eps * size
    T = tdcore.random_target(d, 1, order, seed=1)
    steps = np.array([0, 3, 10])
    full, mu_full = linearized_gd_error(T, U0, c, eta=0.1, steps=steps, include_offset=False)
    red, mu_red = linearized_gd_error(T, scale * Z, np.full(m, math.sqrt(2) * c[0]), eta=0.1, steps=steps,
                                      include_offset=False)
    np.testing.assert_allclose(full, red, rtol=1e-8)
    assert mu_full == pytest.approx(mu_red)
    with pytest.raises(ValueError, match="directions must have shape"):
        lazy_init(d, m, order, scale=1.0, directions=np.ones((d, m + 1)))


def test_bad_arguments_are_refused_before_any_work():
    T = tdcore.random_target(4, 1, 3, seed=0)
    U = np.random.default_rng(0).standard_normal((4, 3))
    with pytest.raises(ValueError, match="stop_below must be > 0"):
        lazy_residual_path(T, U, stop_below=-1.0)
    with pytest.raises(ValueError, match="each case must be"):
        span_defects([(3, 3), 5])
    with pytest.raises(ValueError, match="order must be an integer >= 2"):
        span_defects([(3, 3), (3, 1)])
    with pytest.raises(ValueError, match="c contains NaN"):
        linearized_gd_error(T, U, np.array([1.0, np.nan, 1.0]), eta=0.1, steps=1)
    with pytest.raises(ValueError, match="c must have shape"):
        linearized_gd_error(T, U, np.ones(2), eta=0.1, steps=1)
    with pytest.raises(ValueError, match="steps must be non-negative"):
        linearized_gd_error(T, U, np.ones(3), eta=0.1, steps=-1)
    with pytest.raises(ValueError, match="scale must be > 0"):
        lazy_init(4, 2, 3, scale=0.0)
