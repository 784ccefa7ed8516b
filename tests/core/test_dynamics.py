"""Tests of tdcore._dynamics: vanilla GD, the 2-homogeneous GD and the deflation flow."""

import math

import numpy as np
import pytest

import tdcore
from tdcore._algorithm1 import DivergenceError
from tdcore._dynamics import (
    DeflationResult,
    GDResult,
    _homogeneous_fit_grad,
    _unit_columns,
    deflation_flow,
    homogeneous_gd,
    vanilla_gd,
)
from tdcore._objective import FactoredTarget


def _orthogonal(weights, d, order, *, random_basis_seed=None):
    """sum_k a_k v_k^{(x) l} with orthonormal v_k (standard basis or a random one)."""
    r = len(weights)
    if random_basis_seed is None:
        V = np.eye(d)[:, :r]
    else:
        Q, R = np.linalg.qr(np.random.default_rng(random_basis_seed).standard_normal((d, r)))
        V = Q * np.sign(np.diag(R))
    return tdcore.SymCP(np.asarray(weights, float), V, order)


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
    with pytest.raises(ValueError, match="weight_scale must be > 0"):
        vanilla_gd(T, 2, steps=1, eta=0.1, weight_scale=0.0)
    with pytest.raises(ValueError, match="weight_scale applies to the random weights"):
        vanilla_gd(T, 2, steps=1, eta=0.1, weights="ones", weight_scale=0.5)


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


def test_vanilla_gd_records_times_for_time_to_accuracy():
    """What the time-to-accuracy comparisons need: clock per record, stop at eps, elapsed."""
    T = tdcore.random_target(6, 2, 3, seed=0)
    res = vanilla_gd(T, 6, steps=3000, eta=0.05, seed=0, weights="train", hit_threshold=0.02, stop_when_hit=True,
                     divergence="mark", record_every=10)
    t, err = res.history["time"], res.history["rel_error"]
    assert t.shape == err.shape == res.history["step"].shape
    assert np.all(np.diff(t) >= 0) and 0 <= t[0] <= t[-1] <= res.elapsed
    assert res.rel_error < 0.02 and res.params["steps_run"] == res.hit_step  # stopped at the target error
    assert res.time_to(0.02) == t[-1]  # the stop step is the first record at or below eps
    assert math.isnan(res.time_to(1e-9))
    batch = vanilla_gd(T, 6, steps=300, eta=0.05, seeds=[0, 1], weights="train", record_every=50)
    assert batch.history["time"].shape == batch.history["step"].shape and batch.time_to(0.99).shape == (2,)


def test_vanilla_gd_weight_scale_is_plain_gd():
    """weight_scale=s: the same run as GD written out by hand from u_i ~ unit sphere, c_i = +-s."""
    T = tdcore.random_target(5, 2, 3, seed=1)
    m, eta, steps, seed = 4, 0.05, 60, 7
    res = vanilla_gd(T, m, steps=steps, eta=eta, seed=seed, weights="train", weight_scale=1 / math.sqrt(m),
                     record_every=1)
    rng = np.random.default_rng(seed)
    U = _unit_columns(rng, 5, m)
    c = rng.choice([-1.0, 1.0], size=m) / math.sqrt(m)
    np.testing.assert_array_equal(res.U0, U)
    np.testing.assert_array_equal(res.c0, c)
    for _ in range(steps):
        _, gU, gc = tdcore.vanilla_objective(U, c, T, grad=True)
        U, c = U - eta * gU, c - eta * gc
    # same operations in the same order; only the batch axis differs (a few ulps from BLAS blocking)
    np.testing.assert_allclose(res.U, U, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(res.c, c, rtol=1e-12, atol=1e-14)
    assert res.params["weight_scale"] == 1 / math.sqrt(m)


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
    assert isinstance(mine, GDResult) and mine.history["time"].shape == mine.history["step"].shape
    with pytest.raises(ValueError, match="signs"):
        homogeneous_gd(T, U0, np.zeros(m), steps=1, eta=eta)
    with pytest.raises(ValueError, match="zero column"):
        homogeneous_gd(T, np.zeros((d, m)), a, steps=1, eta=eta)


# -- the deflation flow -------------------------------------------------------------------------------------
def _einsum_homogeneous_gradient(U, signs, V, a, order):
    """The gradient as tdcore._deflation wrote it before the move (einsum, independent of _objective)."""
    l = order
    nrm2 = np.einsum("bdm,bdm->bm", U, U)
    s = signs * nrm2 ** ((2 - l) / 2)
    G = np.matmul(U.transpose(0, 2, 1), U)
    A = np.einsum("dr,bdm->brm", V, U)
    Gp = G ** (l - 1)
    Ap = A ** (l - 1)
    gU = l * (np.matmul(U, s[:, :, None] * Gp) - np.einsum("dr,brm->bdm", V * a, Ap)) * s[:, None, :]
    gs = np.einsum("bij,bj->bi", Gp * G, s) - np.einsum("r,brm->bm", a, Ap * A)
    return gU + (gs * signs * (2 - l) * nrm2 ** (-l / 2))[:, None, :] * U


@pytest.mark.parametrize("order", [2, 3, 4])
def test_homogeneous_gradient_is_objective_gradient_plus_chain_rule(order):
    rng = np.random.default_rng(order)
    T = _orthogonal((1.0, 0.7, 0.3), 5, order, random_basis_seed=2)
    U = rng.standard_normal((2, 5, 4))
    signs = rng.choice([-1.0, 1.0], size=(2, 4))
    tgt = FactoredTarget(T.factors[None], T.weights[None], order)
    f, g, s = _homogeneous_fit_grad(U, signs, tgt)
    ref = _einsum_homogeneous_gradient(U, signs, T.factors, T.weights, order)
    # two summation orders of the same O(m + r)-term sums: agreement to a few ulps of the terms' size
    np.testing.assert_allclose(g, ref, rtol=1e-12, atol=1e-12 * np.abs(ref).max())
    np.testing.assert_allclose(s, signs * np.linalg.norm(U, axis=1) ** (2 - order), rtol=1e-14)
    for b in range(2):
        model = tdcore.SymCP(s[b], U[b], order)
        assert f[b] == pytest.approx(0.5 * (tdcore.rel_error(model, T) * T.norm()) ** 2, rel=1e-10)


@pytest.mark.parametrize("order", [2, 3, 4])
def test_homogeneous_gradient_matches_finite_differences(order):
    rng = np.random.default_rng(order)
    T = _orthogonal((1.0, 0.7, 0.3), 5, order, random_basis_seed=2)
    U = rng.standard_normal((2, 5, 4))
    signs = rng.choice([-1.0, 1.0], size=(2, 4))

    def loss(U):
        s = signs * np.linalg.norm(U, axis=1) ** (2 - order)
        return sum(0.5 * (tdcore.rel_error(tdcore.SymCP(s[b], U[b], order), T) * T.norm()) ** 2 for b in range(2))

    g = _homogeneous_fit_grad(U, signs, FactoredTarget(T.factors[None], T.weights[None], order))[1]
    num = np.zeros_like(U)
    h = 1e-6
    for idx in np.ndindex(*U.shape):
        E = np.zeros_like(U)
        E[idx] = h
        num[idx] = (loss(U + E) - loss(U - E)) / (2 * h)
    np.testing.assert_allclose(g, num, rtol=1e-4, atol=1e-6)


def test_deflation_flow_records_and_true_error():
    T = _orthogonal((1.0, 0.6, 0.3), 6, 4)
    res = deflation_flow(T, 20, delta=1e-3, eta=0.02, seeds=[0, 1])
    assert isinstance(res, DeflationResult)
    assert res.fitted.shape[1:] == (2, 3)
    assert res.rel_error.shape == (len(res.t), 2)
    assert np.all(res.fitted[-1] > 0.95)
    assert np.all(res.rel_error[-1] < 0.05)
    np.testing.assert_allclose(res.t, np.arange(len(res.t)) * res.params["record_every"] * 0.02)
    # the recorded error is the true relative error of the final model
    U = res.U[0]
    nrm = np.linalg.norm(U, axis=0)
    model = tdcore.SymCP(nrm ** (2 - 4), U, 4)
    assert abs(tdcore.rel_error(model, T) - res.rel_error[-1, 0]) < 1e-6
    # and the recorded fractions are <T, v_k^l> / a_k of that model (two summation orders of m terms of
    # size <= 1: agreement to a few ulps, far inside 1e-10)
    phi = [tdcore.inner(model, tdcore.SymCP([1.0], T.factors[:, [k]], 4)) / T.weights[k] for k in range(3)]
    np.testing.assert_allclose(res.fitted[-1, 0], phi, rtol=1e-10)


def test_deflation_flow_validates():
    T = _orthogonal((1.0, 0.8, 0.6, 0.4, 0.2), 10, 4)
    with pytest.raises(TypeError, match="SymCP"):
        deflation_flow(T.to_dense(), 5)
    nonorth = tdcore.random_target(6, 3, 3, seed=0)
    with pytest.raises(ValueError, match="orthonormal"):
        deflation_flow(nonorth, 5)
    with pytest.raises(ValueError, match="delta"):
        deflation_flow(T, 5, delta=-1.0)
    with pytest.raises(ValueError, match="signs"):
        deflation_flow(T, 5, signs="both")
    with pytest.raises(ValueError, match="seeds"):
        deflation_flow(T, 5, seeds=[])
    with pytest.raises(FloatingPointError, match="eta"):
        deflation_flow(_orthogonal((1.0,), 3, 3), 3, delta=0.5, eta=1e4, t_max=1e6)


def test_public_names():
    from tdcore import _dynamics

    assert set(_dynamics.__all__) == {"vanilla_gd", "homogeneous_gd", "GDResult", "deflation_flow",
                                      "DeflationResult"}
    for name in _dynamics.__all__:
        assert getattr(_dynamics, name).__module__ == "tdcore._dynamics"
