"""Implicit symmetric tensors, objectives and gradients against explicit dense arithmetic."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tdcore as tc


def _rand_cp(rng, d, m, order):
    return tc.SymCP(rng.standard_normal(m), rng.standard_normal((d, m)), order)


@settings(max_examples=40, deadline=None)
@given(d=st.integers(1, 5), m1=st.integers(1, 4), m2=st.integers(1, 4), order=st.integers(2, 4),
       seed=st.integers(0, 2**31 - 1))
def test_implicit_inner_equals_dense(d, m1, m2, order, seed):
    rng = np.random.default_rng(seed)
    A, B = _rand_cp(rng, d, m1, order), _rand_cp(rng, d, m2, order)
    Ad, Bd = A.to_dense(), B.to_dense()
    dense = float(np.sum(Ad * Bd))
    scale = max(1.0, np.linalg.norm(Ad) * np.linalg.norm(Bd))
    assert abs(tc.inner(A, B) - dense) <= 1e-10 * scale
    assert abs(tc.inner(A, Bd) - dense) <= 1e-10 * scale
    assert abs(tc.inner(Ad, B) - dense) <= 1e-10 * scale
    assert abs(A.norm() - np.linalg.norm(Ad)) <= 1e-10 * max(1.0, np.linalg.norm(Ad))
    err = tc.rel_error(A, B) if B.norm() > 1e-8 else None
    if err is not None:
        want = np.linalg.norm(Ad - Bd) / np.linalg.norm(Bd)
        assert abs(err - want) <= 1e-6 * max(1.0, want)


def test_to_dense_matches_definition_and_refuses_large():
    T = tc.SymCP(np.array([2.0, -1.0]), np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), 3)
    D = T.to_dense()
    u, v = T.factors[:, 0], T.factors[:, 1]
    want = 2 * np.einsum("i,j,k->ijk", u, u, u) - np.einsum("i,j,k->ijk", v, v, v)
    np.testing.assert_allclose(D, want)
    big = tc.SymCP(np.ones(1), np.ones((1000, 1)), 4)
    with pytest.raises(MemoryError, match="max_bytes"):
        big.to_dense()


@pytest.mark.parametrize("order", [2, 3, 4])
@pytest.mark.parametrize("dense", [False, True])
def test_gradients_match_finite_differences(order, dense):
    rng = np.random.default_rng(order)
    d, m = 4, 3
    target = tc.random_target(d, 2, order, seed=1)
    if dense:
        target = target.to_dense()
    U, s = rng.standard_normal((d, m)), rng.standard_normal(m)
    f, gU, gs = tc.fit_objective(U, s, target, grad=True)
    eps = 1e-6
    num = np.zeros_like(U)
    for idx in np.ndindex(U.shape):
        E = np.zeros_like(U)
        E[idx] = eps
        num[idx] = (tc.fit_objective(U + E, s, target) - tc.fit_objective(U - E, s, target)) / (2 * eps)
    np.testing.assert_allclose(gU, num, rtol=1e-6, atol=1e-7 * np.abs(gU).max())
    nums = np.array([(tc.fit_objective(U, s + eps * e, target) - tc.fit_objective(U, s - eps * e, target)) / (2 * eps)
                     for e in np.eye(m)])
    np.testing.assert_allclose(gs, nums, rtol=1e-6, atol=1e-7 * np.abs(gs).max())
    # the value against explicit dense arithmetic
    model = tc.SymCP(s, U, order).to_dense()
    Td = target if dense else target.to_dense()
    assert f == pytest.approx(0.5 * np.sum((model - Td) ** 2), rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("order", [3, 4])
def test_paper_objective_gradient(order):
    rng = np.random.default_rng(5)
    d, m, lam = 5, 4, 0.3
    target = tc.random_target(d, 2, order, seed=2)
    U = rng.standard_normal((d, m))
    C, Ch = rng.uniform(0.5, 2, m), rng.uniform(0.5, 2, m)
    A = rng.choice([-1.0, 1.0], m)
    f, g = tc.objective(U, C, Ch, A, target, lam, grad=True)
    model = tc.SymCP(A * C ** (order - 2), U, order).to_dense()
    reg = lam * np.sum(Ch ** (order - 2) * np.linalg.norm(U, axis=0) ** order)
    assert f == pytest.approx(0.5 * np.sum((model - target.to_dense()) ** 2) + reg, rel=1e-10)
    eps = 1e-6
    num = np.zeros_like(U)
    for idx in np.ndindex(U.shape):
        E = np.zeros_like(U)
        E[idx] = eps
        num[idx] = (tc.objective(U + E, C, Ch, A, target, lam) - tc.objective(U - E, C, Ch, A, target, lam)) / (2 * eps)
    np.testing.assert_allclose(g, num, rtol=1e-6, atol=1e-8)


def test_batched_objective_equals_loop():
    rng = np.random.default_rng(0)
    target = tc.random_target(6, 2, 3, seed=0)
    U, s = rng.standard_normal((3, 6, 4)), rng.standard_normal((3, 4))
    f, gU, gs = tc.fit_objective(U, s, target, grad=True)
    for b in range(3):
        fb, gUb, gsb = tc.fit_objective(U[b], s[b], target, grad=True)
        assert f[b] == pytest.approx(fb, rel=1e-12)
        np.testing.assert_allclose(gU[b], gUb, rtol=1e-12)
        np.testing.assert_allclose(gs[b], gsb, rtol=1e-12)


def test_random_target_conventions():
    T = tc.random_target(10, 4, 3, seed=0)
    assert T.norm() == pytest.approx(1.0)
    np.testing.assert_allclose(np.linalg.norm(T.factors, axis=0), 1.0)
    O = tc.random_target(10, 4, 4, orthogonal=True, seed=0)
    np.testing.assert_allclose(O.factors.T @ O.factors, np.eye(4), atol=1e-12)
    assert O.norm() == pytest.approx(1.0)
    W = tc.random_target(8, 3, 4, orthogonal=True, weights=[3.0, 2.0, 1.0], seed=1)
    np.testing.assert_allclose(W.weights / W.weights[-1], [3, 2, 1])
    a, b = tc.random_target(5, 2, 3, seed=7), tc.random_target(5, 2, 3, seed=7)
    np.testing.assert_array_equal(a.factors, b.factors)
    basis = tc.subspace_basis(O)
    assert basis.shape == (10, 4)


def test_symmetric_checks():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3, 3, 3))
    with pytest.raises(ValueError, match="not symmetric"):
        tc.check_target(X)
    S = tc.symmetrize(X)
    assert tc.is_symmetric(S)
    np.testing.assert_allclose(tc.symmetrize(S), S)
    bad = S.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        tc.check_target(bad)
    with pytest.raises(ValueError, match="equal dimensions"):
        tc.check_target(np.zeros((3, 4, 3)))
    with pytest.raises(ValueError, match="order >= 2"):
        tc.check_target(np.zeros(3))
    with pytest.raises(TypeError, match="SymCP or a dense"):
        tc.check_target([[1.0]])


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(weights=np.ones(2), factors=np.ones((3, 3)), order=3), ValueError, "weights must have shape"),
    (dict(weights=np.ones(3), factors=np.ones(3), order=3), ValueError, "factors must be a 2-D"),
    (dict(weights=np.ones(3), factors=np.ones((3, 3)), order=1), ValueError, "order must be an integer >= 2"),
    (dict(weights=np.ones(3), factors=np.ones((3, 3)), order=2.0), TypeError, "order must be an integer"),
    (dict(weights=np.ones(1), factors=np.full((3, 1), np.inf), order=3), ValueError, "factors contains NaN"),
])
def test_symcp_bad_input(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        tc.SymCP(**kwargs)


def test_incompatible_tensors():
    a = tc.random_target(4, 1, 3, seed=0)
    with pytest.raises(ValueError, match="different orders"):
        tc.inner(a, tc.random_target(4, 1, 4, seed=0))
    with pytest.raises(ValueError, match="different dimensions"):
        tc.inner(a, tc.random_target(5, 1, 3, seed=0))
    with pytest.raises(ValueError, match="random_target|r <= d"):
        tc.random_target(3, 4, 3, orthogonal=True)
    with pytest.raises(ValueError, match="d must be an integer >= 1"):
        tc.random_target(0, 1, 3)
