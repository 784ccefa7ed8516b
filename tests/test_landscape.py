"""Tests of tdcore._landscape: lazy fits, GD drivers, the saddle and Theorem 2's construction."""

import itertools
import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import tdcore  # noqa: E402
from tdcore import DivergenceError  # noqa: E402
from tdcore._landscape import (  # noqa: E402
    ALEXANDER_HIRSCHOWITZ_DEFECTIVE,
    _unit_columns,
    bad_minimum_report,
    bad_minimum_table,
    gd_from_bad_minimum,
    lazy_table,
    markdown_table,
    plot_reinit_escape,
    reinit_escape,
    span_defects,
    spurious_table,
    algorithm1_from_state,
    bad_local_minimum,
    check_local_minimum,
    explore_bad_minimum,
    explore_lazy_fit,
    explore_saddle,
    fit_line,
    fit_loglog_slope,
    homogeneous_gd,
    lazy_fit,
    lazy_gd_experiment,
    lazy_init,
    lazy_kernel,
    lazy_residual_path,
    lazy_scale_sweep,
    lazy_threshold_sweep,
    linearized_gd_error,
    numerical_hessian,
    plot_escape_times,
    plot_hessian_spectrum,
    plot_lazy_gd,
    plot_lazy_residual,
    plot_lazy_scale,
    plot_lazy_threshold,
    plot_perturbation_test,
    plot_saddle_trajectories,
    plot_spurious_frequency,
    saddle_escape_times,
    spurious_frequency,
    sym_dim,
    to_homogeneous,
    vanilla_gd,
)


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


def test_lazy_fit_dense_target_and_full_span():
    rng = np.random.default_rng(0)
    T = tdcore.random_target(3, 1, 3, seed=2)
    U = rng.standard_normal((3, 4))  # d m = 12 >= C(5, 3) = 10: the whole space
    fit_cp = lazy_fit(T, U)
    fit_dense = lazy_fit(T.to_dense(), U)
    assert fit_cp.rank == 10 and fit_cp.rel_residual < 1e-6
    assert fit_dense.rel_residual == pytest.approx(fit_cp.rel_residual, abs=1e-7)


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
        assert res[m - 1] == pytest.approx(fit.rel_residual, abs=2e-7)
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
    assert ranks[9] == 35 and res[9] < 1e-5  # zero up to the sqrt(eps) resolution of lazy_fit


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


# -- line fits ------------------------------------------------------------------------------------------
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


def test_lazy_gd_follows_linearisation_at_large_scale_and_leaves_it_at_small_scale():
    ex = lazy_gd_experiment(4, 3, [2, 3, 6], scale=300.0, steps=300, seed=0)
    assert np.max(np.abs(ex.gd_error - ex.linear_error)) < 0.01
    assert np.all(ex.movement < 0.01)
    assert np.all(ex.gd_error >= ex.lazy_residual - 0.01)
    sc = lazy_scale_sweep(4, 3, 2, [1.0, 300.0], steps=300, seed=0)
    assert sc.gd_error[0] < sc.lazy_residual[0] - 0.2  # small init: beyond the lazy limit
    assert abs(sc.gd_error[1] - sc.linear_error[1]) < 0.01
    with pytest.raises(ValueError, match="eta_factor must be < 2"):
        lazy_gd_experiment(4, 3, [2], eta_factor=2.5)


# -- vanilla GD -----------------------------------------------------------------------------------------
def test_vanilla_gd_single_step_and_batch_consistency():
    T = tdcore.random_target(5, 2, 3, seed=0)
    res = vanilla_gd(T, 3, steps=1, eta=0.01, seed=4, weights="train", record_every=1)
    f, gU, gc = tdcore.vanilla_objective(res.U0, res.c0, T, grad=True)
    np.testing.assert_allclose(res.U, res.U0 - 0.01 * gU)
    np.testing.assert_allclose(res.c, res.c0 - 0.01 * gc)
    assert res.history["objective"][0] == pytest.approx(float(f))
    assert np.linalg.norm(res.U0, axis=0) == pytest.approx(np.ones(3))
    batch = vanilla_gd(T, 3, steps=40, eta=0.02, seeds=[4, 5], weights="train")
    single = vanilla_gd(T, 3, steps=40, eta=0.02, seed=5, weights="train")
    np.testing.assert_allclose(batch.U[1], single.U)
    assert batch.rel_error[1] == pytest.approx(single.rel_error)
    assert isinstance(batch.model, list) and isinstance(single.model, tdcore.SymCP)
    assert tdcore.rel_error(single.model, T) == pytest.approx(single.rel_error, abs=1e-9)


def test_vanilla_gd_weight_modes_and_targets_batch():
    T = tdcore.random_target(4, 1, 3, seed=0)
    fixed = vanilla_gd(T, 2, steps=5, eta=0.01, seed=0, weights="sign")
    np.testing.assert_array_equal(fixed.c, fixed.c0)
    assert set(np.abs(fixed.c0)) == {1.0}
    ones = vanilla_gd(T, 2, steps=5, eta=0.01, seed=0, weights="ones", init_scale=0.3)
    np.testing.assert_array_equal(ones.c, [1.0, 1.0])
    assert np.linalg.norm(ones.U0, axis=0) == pytest.approx([0.3, 0.3])
    arr = vanilla_gd(T, 2, steps=5, eta=0.01, init=np.eye(4)[:, :2], weights=[0.5, 0.5], train_weights=True)
    assert not np.allclose(arr.c, 0.5)
    targets = [tdcore.random_target(4, 2, 3, seed=s) for s in range(3)]
    b = vanilla_gd(targets, 2, steps=10, eta=0.01, seeds=[0, 1, 2])
    s1 = vanilla_gd(targets[1], 2, steps=10, eta=0.01, seed=1)
    assert b.rel_error[1] == pytest.approx(s1.rel_error)


def test_vanilla_gd_validation():
    T = tdcore.random_target(4, 1, 3, seed=0)
    with pytest.raises(ValueError, match="weights must be one of"):
        vanilla_gd(T, 2, steps=1, eta=0.1, weights="random")
    with pytest.raises(ValueError, match="either seed"):
        vanilla_gd(T, 2, steps=1, eta=0.1, seed=1, seeds=[1, 2])
    with pytest.raises(ValueError, match="init must have shape"):
        vanilla_gd(T, 2, steps=1, eta=0.1, init=np.ones((3, 2)))
    with pytest.raises(ValueError, match="either init"):
        vanilla_gd(T, 2, steps=1, eta=0.1, init=np.ones((4, 2)), init_scale=1.0)
    with pytest.raises(ValueError, match="eta must be > 0"):
        vanilla_gd(T, 2, steps=1, eta=0.0)
    with pytest.raises(ValueError, match="divergence must be one of"):
        vanilla_gd(T, 2, steps=1, eta=0.1, divergence="ignore")
    with pytest.raises(ValueError, match="weights must be"):
        vanilla_gd(T, 2, steps=1, eta=0.1, weights=np.ones(3))


def test_vanilla_gd_divergence_is_caught_in_its_step():
    T = tdcore.random_target(4, 1, 3, seed=0)
    with pytest.raises(DivergenceError) as info:
        vanilla_gd(T, 2, steps=50, eta=5.0, seed=0, init_scale=2.0)
    err = info.value
    assert err.iteration >= 1 and np.all(np.isfinite(err.state["U"])) and err.suggested_eta == pytest.approx(1.25)
    ok = vanilla_gd(T, 2, steps=50, eta=1e-3, seed=1, init_scale=0.5)
    res = vanilla_gd(T, 2, steps=50, eta=np.float64(5.0), init=np.stack([np.full((4, 2), 2.0), ok.U0]),
                     weights="ones", divergence="mark")
    assert res.diverged_at[0] == err.iteration or res.diverged_at[0] >= 1
    assert res.diverged_at[1] == -1 or res.diverged_at[1] >= 1
    assert np.all(np.isfinite(res.U))


def test_hit_step_and_stop():
    T = tdcore.random_target(4, 1, 3, seed=0)
    v = T.factors[:, 0]
    res = vanilla_gd(T, 1, steps=5000, eta=0.05, init=0.3 * v[:, None], weights=np.ones(1), hit_threshold=0.5,
                     stop_when_hit=True)
    assert res.hit_step > 0 and res.params["steps_run"] == res.hit_step
    assert res.history["rel_error"][-1] < 0.5
    assert res.hit_time == pytest.approx(res.hit_step * 0.05)


# -- 2-homogeneous GD -------------------------------------------------------------------------------------
def test_homogeneous_gd_equals_algorithm1_without_switch_and_reinit():
    d, m, order, seed, delta, eta, H = 5, 3, 3, 7, 0.1, 0.02, 60
    T = tdcore.random_target(d, 2, order, seed=1)
    rng = np.random.default_rng(seed)
    U0 = delta * _unit_columns(rng, d, m)
    a = rng.choice([-1.0, 1.0], size=m)
    ref = tdcore.algorithm1(T, m, epochs=1, iters=H, delta=delta, eta=eta, lam=0.0, seed=seed, reinit=False,
                            mode_switch=False, backend="numpy")
    mine = homogeneous_gd(T, U0, a, steps=H, eta=eta)
    np.testing.assert_allclose(mine.U, ref.state["U"], rtol=1e-10, atol=1e-14)
    assert mine.rel_error == pytest.approx(ref.rel_error, rel=1e-8)
    with pytest.raises(ValueError, match="signs"):
        homogeneous_gd(T, U0, np.zeros(m), steps=1, eta=eta)
    with pytest.raises(ValueError, match="zero column"):
        homogeneous_gd(T, np.zeros((d, m)), a, steps=1, eta=eta)


# -- the saddle --------------------------------------------------------------------------------------------
def test_saddle_exponents():
    van = saddle_escape_times(3, [0.01, 0.02, 0.04, 0.08], model="vanilla", d=5, seeds=[0])
    assert van.all_escaped and van.fit.slope == pytest.approx(-1.0, abs=0.1)
    hom = saddle_escape_times(3, [1e-4, 1e-3, 1e-2, 1e-1], model="homogeneous", d=5, seeds=[0])
    assert hom.all_escaped and abs(hom.fit.slope) < 0.35
    assert hom.fit_log.slope == pytest.approx(1 / 3, rel=0.3)
    assert np.all(hom.median_times < van.median_times.min())
    with pytest.raises(ValueError, match="model must be one of"):
        saddle_escape_times(3, [0.1, 0.2, 0.3], model="lazy")
    with pytest.raises(ValueError, match="order must be an integer >= 3"):
        saddle_escape_times(2, [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="at least 3"):
        saddle_escape_times(3, [0.1, 0.2])
    with pytest.raises(ValueError, match="overlap must be in"):
        saddle_escape_times(3, [0.1, 0.2, 0.3], overlap=1.5)


def test_saddle_random_directions_flip_sign():
    res = saddle_escape_times(3, [0.05, 0.1, 0.2], model="vanilla", d=4, seeds=[0, 1], overlap=None)
    assert res.all_escaped


# -- Theorem 2 --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("order, r, d", [(3, 1, 3), (3, 2, 4), (4, 1, 3), (5, 1, 2)])
def test_bad_local_minimum_construction(order, r, d):
    T, U, c = bad_local_minimum(d, r, order)
    m = r * (order + 1) + 1
    assert U.shape == (d, m) and T.m == r * (order + 1) + 1
    model = tdcore.SymCP(c, U, order).to_dense()
    np.testing.assert_allclose(model, _outer([np.eye(d)[0]] * order), atol=1e-12)
    R = model - T.to_dense()
    # residual: entries 1 exactly at the placements of two e_j (2 <= j <= r+1) among e_1's
    expected = np.zeros_like(R)
    for j in range(1, r + 1):
        for pos in itertools.combinations(range(order), 2):
            idx = [0] * order
            for p in pos:
                idx[p] = j
            expected[tuple(idx)] = 1.0
    np.testing.assert_allclose(R, expected, atol=1e-10)
    f, gU, gc = tdcore.vanilla_objective(U, c, T, grad=True)
    assert float(f) == pytest.approx(order * (order - 1) * r / 4, rel=1e-12)
    assert np.abs(gU).max() < 1e-12 and np.abs(gc).max() < 1e-12


def test_bad_local_minimum_validation():
    with pytest.raises(ValueError, match="d > r"):
        bad_local_minimum(2, 2, 3)
    with pytest.raises(ValueError, match="order must be an integer >= 3"):
        bad_local_minimum(3, 1, 2)
    with pytest.raises(ValueError, match="sign must be"):
        bad_local_minimum(3, 1, 3, sign=0)


def test_numerical_hessian_against_second_differences():
    rng = np.random.default_rng(0)
    T = tdcore.random_target(3, 2, 3, seed=0)
    U, c = rng.standard_normal((3, 2)), rng.standard_normal(2)
    H = numerical_hessian(T, U, c)
    theta = np.concatenate([U.T.ravel(), c])

    def f(th):
        return float(tdcore.vanilla_objective(th[:6].reshape(2, 3).T, th[6:], T))

    h = 1e-4
    for i, j in [(0, 0), (1, 4), (6, 7), (2, 7)]:
        ei, ej = np.eye(8)[i] * h, np.eye(8)[j] * h
        fd = (f(theta + ei + ej) - f(theta + ei - ej) - f(theta - ei + ej) + f(theta - ei - ej)) / (4 * h * h)
        assert H[i, j] == pytest.approx(fd, rel=1e-4, abs=1e-6)
    assert numerical_hessian(T, U, c, train_weights=False).shape == (6, 6)


def test_check_local_minimum_certifies_construction_and_rejects_control():
    T, U, c = bad_local_minimum(4, 1, 3)
    chk = check_local_minimum(T, U, c, n_perturb=60)
    assert chk.is_local_min and chk.grad_norm < 1e-10
    assert chk.min_eigenvalue > -1e-6 and chk.null_dim == (2 * 5 - 1) + (4 - 1 - 1) * (5 - 1)
    assert np.all(chk.random_frac_decrease == 0)
    T2, U2, c2 = bad_local_minimum(4, 1, 3, sign=-1)
    ctl = check_local_minimum(T2, U2, c2, n_perturb=60)
    assert not ctl.is_local_min and ctl.min_eigenvalue < -1 and np.all(ctl.eigen_min_change < 0)


def test_to_homogeneous_round_trip():
    rng = np.random.default_rng(0)
    U, c = rng.standard_normal((4, 3)), np.array([0.5, -2.0, 1.5])
    V, a, ci = to_homogeneous(U, c, 3)
    s = a * ci ** (3 - 2)
    assert tdcore.rel_error(tdcore.SymCP(s, V, 3), tdcore.SymCP(c, U, 3)) < 1e-7
    with pytest.raises(ValueError, match="non-zero"):
        to_homogeneous(U, np.array([0.0, 1.0, 1.0]), 3)


def test_algorithm1_from_state_reproduces_algorithm1():
    d, m, order, seed, delta, eta = 5, 3, 3, 3, 1e-3, 0.02
    T = tdcore.random_target(d, 1, order, seed=0)
    ref = tdcore.algorithm1(T, m, epochs=2, iters=40, delta=delta, eta=eta, seed=seed, backend="numpy")
    rng = np.random.default_rng(seed)
    U0 = delta * _unit_columns(rng, d, m)
    a = rng.choice([-1.0, 1.0], size=m)
    nrm = np.linalg.norm(U0, axis=0)
    mine = algorithm1_from_state(T, U0, a, c=ref.params.switch_factor / nrm, chat=1 / nrm,
                                 switched=np.zeros(m, bool), epochs=2, iters=40, delta=delta, eta=eta, seed=rng)
    np.testing.assert_allclose(mine.state["U"], ref.state["U"], rtol=1e-10, atol=1e-15)


def test_reinitialisation_escapes_the_bad_minimum():
    T, U, c = bad_local_minimum(4, 1, 4)
    V, a, _ = to_homogeneous(U, c, 4)
    stuck = algorithm1_from_state(T, V, a, epochs=4, seed=1, reinit=False)
    free = algorithm1_from_state(T, V, a, epochs=4, seed=1, reinit=True)
    f0 = 4 * 3 / 4
    assert min(stuck.history["objective"]) > 0.99 * f0
    assert free.history["objective"][-1] < 0.5 * f0
    np.testing.assert_array_equal(a, np.ones(U.shape[1]))  # inputs are not modified


def test_bad_minimum_report_and_helpers():
    rows, checks = bad_minimum_report([(3, 1, 3), (4, 1, 3)], n_perturb=20)
    for row in rows:
        assert row["local_min"] and row["null_dim"] == row["null_predicted"]
        assert row["objective"] == pytest.approx(row["predicted"])
    table = bad_minimum_table(rows).data
    assert table.count("\n") == 3 and "yes" in table
    with pytest.raises(ValueError, match="each config"):
        bad_minimum_report([(3, 1)])
    gd, f0 = gd_from_bad_minimum(4, 1, 3, radius=1e-2, steps=500, eta=0.02, seed=1)
    assert f0 == pytest.approx(1.5) and abs(gd.objective - f0) < 1e-3
    esc = reinit_escape(4, 1, 4, epochs=3, seeds=[0], iters=150)
    assert esc.fit_reinit.shape == (1, 4) and esc.fit_no_reinit.min() > 0.99 * esc.f0
    assert esc.escape_epoch[0] >= 1
    fig = plot_reinit_escape(esc)
    assert fig.axes
    plt.close(fig)


def test_markdown_tables():
    md = markdown_table([{"a": 1, "b": 0.5}], [("a", "A", "d"), ("b", "B", ".2f")]).data
    assert md.splitlines() == ["| A | B |", "| ---: | ---: |", "| 1 | 0.50 |"]
    sw = lazy_threshold_sweep([3, 4, 5], 3, seeds=(0,))
    assert lazy_table(sw).data.count("\n") == 4
    sf = spurious_frequency(4, 1, 3, [1, 2], seeds=range(3), orthogonal=True, steps=50)
    assert spurious_table([sf]).data.count("orthogonal") == 2


def test_spurious_frequency_small():
    res = spurious_frequency(6, 2, 3, [2, 8], seeds=range(6), orthogonal=True, steps=600)
    assert res.final_error.shape == (2, 6) and res.frequency.shape == (2,)
    lo, hi = res.interval()
    assert np.all(lo <= res.frequency) and np.all(res.frequency <= hi)
    assert res.frequency[1] <= res.frequency[0]
    with pytest.raises(TypeError, match="orthogonal must be True or False"):
        spurious_frequency(6, 2, 3, [2], seeds=[0], orthogonal=1)


# -- figures ------------------------------------------------------------------------------------------------
def test_plot_helpers_draw():
    sw = lazy_threshold_sweep([3, 4, 5], 3, seeds=(0,))
    figs = [plot_lazy_residual(sw), plot_lazy_threshold([sw])]
    ex = lazy_gd_experiment(3, 3, [1, 2, 4], scale=100.0, steps=20)
    figs.append(plot_lazy_gd(ex))
    figs.append(plot_lazy_scale(lazy_scale_sweep(3, 3, 1, [1.0, 10.0], steps=20)))
    van = saddle_escape_times(3, [0.05, 0.1, 0.2], d=4, seeds=[0])
    hom = saddle_escape_times(3, [0.05, 0.1, 0.2], d=4, seeds=[0], model="homogeneous")
    figs += [plot_escape_times([van, hom]), plot_saddle_trajectories([van, hom])]
    T, U, c = bad_local_minimum(3, 1, 3)
    chk = check_local_minimum(T, U, c, n_perturb=10)
    figs += [plot_hessian_spectrum(chk), plot_perturbation_test([chk], ["x"])]
    figs.append(plot_spurious_frequency([spurious_frequency(4, 1, 3, [1, 2], seeds=range(3), orthogonal=False,
                                                            steps=50)]))
    for fn, kw in ((explore_lazy_fit, dict(d=4, order=3, m=3)), (explore_saddle, dict(log10_delta=-1.0)),
                   (explore_bad_minimum, dict(order=3, r=1))):
        fig, ax = plt.subplots()
        fn(ax=ax, **kw)
        figs.append(fig)
    for fig in figs:
        assert fig.axes
        plt.close(fig)
