"""Tests for tdcore._baselines: CP-ALS (TensorLy), power method, comparison targets."""

import math
import sys

import numpy as np
import pytest

import tdcore
from tdcore._baselines import (
    COMPONENT_TYPES,
    BaselineResult,
    comparison_target,
    cp_als,
    power_method,
    refit_weights,
    tensorly_available,
)
from tdcore._stats import time_to_accuracy

needs_tensorly = pytest.mark.skipif(not tensorly_available(), reason="tensorly (optional dependency) not installed")


def orth_target(d=8, r=3, order=3, seed=0, weights=None):
    return tdcore.random_target(d, r, order, orthogonal=True, seed=seed, weights=weights)


# ---------------------------------------------------------------- time to accuracy
def test_time_to_accuracy_first_crossing():
    assert time_to_accuracy([1, 2, 3, 4], [0.5, 0.1, 0.01, 0.001], 0.05) == 3.0
    assert time_to_accuracy([1, 2], [0.5, 0.2], 0.1) != time_to_accuracy([1, 2], [0.5, 0.2], 0.1)  # nan
    assert time_to_accuracy([1, 2], [0.05, 0.01], 0.05) == 1.0


def test_time_to_accuracy_validates():
    with pytest.raises(ValueError, match="equal lengths"):
        time_to_accuracy([1, 2], [0.1], 0.5)
    with pytest.raises(ValueError, match="eps"):
        time_to_accuracy([1], [0.1], 0.0)


def test_baseline_result_helpers():
    res = BaselineResult("x", orth_target(), 0.01, 1.0, 3, history={"time": [0.1, 0.2], "rel_error": [0.5, 0.01]})
    assert res.time_to(0.02) == 0.2
    assert res.succeeded(0.02) and not res.succeeded(0.001)


# ---------------------------------------------------------------- refit
def test_refit_weights_recovers_true_weights():
    T = tdcore.random_target(7, 3, 3, seed=1, weights=[1.0, 2.0, 3.0], normalize=False)
    model = refit_weights(T.factors, T)
    np.testing.assert_allclose(model.weights, [1.0, 2.0, 3.0], rtol=1e-8)
    assert tdcore.rel_error(model, T) < 1e-6


def test_refit_weights_dense_and_errors():
    T = orth_target()
    model = refit_weights(T.factors, T.to_dense())
    assert tdcore.rel_error(model, T) < 1e-6
    with pytest.raises(ValueError, match="shape"):
        refit_weights(np.ones(8), T)
    with pytest.raises(ValueError, match="order"):
        refit_weights(T.factors, T, order=4)


# ---------------------------------------------------------------- power method
@pytest.mark.parametrize("order", [3, 4])
def test_power_method_exact_on_orthogonal(order):
    T = orth_target(d=8, r=3, order=order, weights=[3.0, 2.0, 1.0])
    res = power_method(T, 3, seed=0)
    assert res.method == "power_method"
    assert res.rel_error < 1e-6
    assert isinstance(res.model, tdcore.SymCP) and res.model.m == 3
    # components come out in decreasing order of weight (largest |lambda| first)
    lam = np.abs(res.model.weights)
    assert np.all(np.diff(lam) < 0)
    assert len(res.history["rel_error"]) == 3
    assert res.history["rel_error"][0] > res.history["rel_error"][-1]


def test_power_method_is_implicit_for_symcp(monkeypatch):
    T = orth_target(d=12, r=3)

    def boom(*a, **k):
        raise AssertionError("power_method must not densify a SymCP target")

    monkeypatch.setattr(tdcore.SymCP, "to_dense", boom)
    res = power_method(T, 3, seed=0)
    assert res.rel_error < 1e-6


def test_power_method_dense_matches_symcp():
    T = orth_target(d=6, r=2)
    a = power_method(T, 2, seed=3)
    b = power_method(T.to_dense(), 2, seed=3)
    assert abs(a.rel_error - b.rel_error) < 1e-6
    assert b.rel_error < 1e-6


def test_power_method_target_error_stops_early():
    T = orth_target(d=8, r=3, weights=[3.0, 2.0, 1.0])
    res = power_method(T, 3, seed=0, target_error=0.9)
    assert res.model.m < 3
    assert res.rel_error <= 0.9


def test_power_method_not_exact_on_correlated():
    T = comparison_target("correlated", 10, 3, 3, rho=0.7, seed=0)
    res = power_method(T, 3, seed=0)
    assert res.rel_error > 0.05  # deflation leaves cross-terms behind
    refit = power_method(T, 3, seed=0, refit=True)
    assert refit.rel_error <= res.rel_error + 1e-9


def test_power_method_validates():
    T = orth_target()
    with pytest.raises(ValueError, match="rank"):
        power_method(T, 0)
    with pytest.raises(TypeError, match="n_restarts"):
        power_method(T, 2, n_restarts=2.5)
    with pytest.raises(TypeError, match="target"):
        power_method([1, 2, 3], 2)


# ---------------------------------------------------------------- CP-ALS
@needs_tensorly
def test_cp_als_orthogonal_svd_init():
    T = orth_target(d=6, r=3, weights=[3.0, 2.0, 1.0])
    res = cp_als(T, 3, init="svd", seed=0, n_iter_max=200, tol=1e-12)
    assert res.method == "cp_als"
    assert res.rel_error < 1e-5
    w, factors = res.cp
    assert len(factors) == 3 and factors[0].shape == (6, 3)
    # symmetrised read-out
    assert isinstance(res.model, tdcore.SymCP) and res.model.m == 3
    assert res.sym_rel_error < 1e-4
    # history: init + one entry per sweep, times increasing
    assert len(res.history["rel_error"]) == res.n_iter + 1
    assert np.all(np.diff(res.history["time"]) >= 0)


@needs_tensorly
def test_cp_als_target_error_stops_early():
    T = tdcore.random_target(6, 2, 3, seed=2)
    full = cp_als(T, 2, seed=0, n_iter_max=300, tol=0)
    early = cp_als(T, 2, seed=0, n_iter_max=300, tol=0, target_error=0.05)
    assert early.history["rel_error"][-1] <= 0.05
    assert early.n_iter < full.n_iter
    assert math.isclose(early.time_to(0.05), early.history["time"][-1])


@needs_tensorly
def test_cp_als_dense_input_and_seed_reproducible():
    T = tdcore.random_target(5, 2, 3, seed=4)
    a = cp_als(T.to_dense(), 2, seed=7, n_iter_max=50)
    b = cp_als(T, 2, seed=7, n_iter_max=50)
    assert abs(a.rel_error - b.rel_error) < 1e-10


@needs_tensorly
def test_cp_als_validates():
    T = orth_target()
    with pytest.raises(ValueError, match="init"):
        cp_als(T, 2, init="nope")
    with pytest.raises(ValueError, match="rank"):
        cp_als(T, 0)
    with pytest.raises(MemoryError):
        cp_als(T, 2, max_bytes=100)


def test_cp_als_missing_tensorly_names_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorly", None)
    with pytest.raises(ImportError, match="tensorly"):
        cp_als(orth_target(), 2)
    assert tensorly_available() is False


# ---------------------------------------------------------------- plain GD
# ---------------------------------------------------------------- comparison targets and tables
def test_comparison_target_types():
    for kind in COMPONENT_TYPES:
        T = comparison_target(kind, 10, 4, 3, seed=0)
        assert abs(T.norm() - 1) < 1e-12 and T.m == 4 and T.order == 3
        G = T.factors.T @ T.factors
        off = G[~np.eye(4, dtype=bool)]
        np.testing.assert_allclose(np.diag(G), 1, atol=1e-12)
        if kind == "orthogonal":
            assert np.max(np.abs(off)) < 1e-10
        elif kind == "correlated":
            np.testing.assert_allclose(off, 0.7, atol=1e-10)
        else:
            assert np.max(np.abs(off)) <= 0.4
    T = comparison_target("correlated", 10, 4, 3, rho=0.5, seed=1)
    off = (T.factors.T @ T.factors)[~np.eye(4, dtype=bool)]
    np.testing.assert_allclose(off, 0.5, atol=1e-10)


def test_comparison_target_validates():
    with pytest.raises(ValueError, match="kind"):
        comparison_target("weird", 5, 2)
    with pytest.raises(ValueError, match="rho"):
        comparison_target("correlated", 5, 2, rho=1.5)
    with pytest.raises(ValueError, match="r <= d"):
        comparison_target("orthogonal", 3, 4)
    with pytest.raises(ValueError, match="max_corr"):
        comparison_target("separated", 3, 3, max_corr=0.01, max_tries=20)
