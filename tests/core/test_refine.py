"""Tests for tdcore._refine: Levenberg--Marquardt refinement of symmetric CP models.

The formulas (gradient, Gauss--Newton matrix, its matrix-free product and the
reduced solve) are checked against an explicit Jacobian built by finite
differences of the dense model; the LM iteration is checked from perturbed exact
decompositions (plain, with tiny extra components, with a split component), on
SymCP and dense targets, l = 3 and 4, and from Algorithm 1's output.

Timings against CP-ALS are not tested here: ``scripts/refine_benchmark.py``
measures them (results in ``results/refine_benchmark.md``).
"""

import math

import numpy as np
import pytest
from scipy.linalg import cho_factor, cho_solve

import tdcore
from tdcore._refine import (
    DEFAULT_HANDOFF,
    DecomposeResult,
    RefineResult,
    _merge_parallel,
    _Problem,
    _sym_dense,
    decompose,
    precise_rel_error,
    refine,
)


# ---------------------------------------------------------------- helpers
def fd_jacobian(X, sigma, l, h=1e-6):
    """Jacobian of vec(sum_i sigma_i x_i^l) in X (columns ordered i * d + a), central differences."""
    d, m = X.shape
    J = np.zeros((d**l, m * d))
    for i in range(m):
        for a in range(d):
            Xp, Xm = X.copy(), X.copy()
            Xp[a, i] += h
            Xm[a, i] -= h
            J[:, i * d + a] = (_sym_dense(Xp, sigma, l).ravel() - _sym_dense(Xm, sigma, l).ravel()) / (2 * h)
    return J


def small_case(l, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((4, 3))
    sigma = np.array([1.0, -1.0, 1.0])
    T = tdcore.random_target(4, 2, l, seed=seed + 1)
    return X, sigma, T


def perturbed(l, scenario, seed=0, noise=0.01, d=8, r=3):
    """A rank-r target and a perturbed exact decomposition of it (rel. error ~1e-2)."""
    rng = np.random.default_rng(seed)
    T = tdcore.random_target(d, r, l, seed=seed + 10)
    w, U = T.weights.copy(), T.factors.copy()
    if l % 2 == 0:  # mixed signs for even orders
        w[1] *= -1
        T = tdcore.SymCP(w, U, l).normalized()
        w, U = T.weights.copy(), T.factors.copy()
    if scenario == "extra":  # m > r: two tiny extra components
        w = np.r_[w, 1e-4, -1e-5]
        U = np.c_[U, rng.standard_normal((d, 2)) / math.sqrt(d)]
    elif scenario == "split":  # m > r: component 0 split 70/30 into two parallel copies
        w = np.r_[w, 0.3 * w[0]]
        w[0] *= 0.7
        U = np.c_[U, U[:, 0]]
    U = U + noise * rng.standard_normal(U.shape) / math.sqrt(d)
    return T, tdcore.SymCP(w, U, l)


def iterations_to(res, eps):
    return next((h["iteration"] for h in res.history if h["rel_error"] <= eps), None)


# ---------------------------------------------------------------- formulas
@pytest.mark.parametrize("l", [3, 4])
def test_objective_and_gradient_match_finite_differences(l):
    X, sigma, T = small_case(l)
    prob = _Problem(T, sigma, 10**8)
    f, g, G, rel = prob.evaluate(X)
    E = _sym_dense(X, sigma, l).ravel() - T.to_dense().ravel()
    assert f == pytest.approx(0.5 * E @ E, rel=1e-12)
    assert rel == pytest.approx(math.sqrt(E @ E) / T.norm(), rel=1e-12)
    J = fd_jacobian(X, sigma, l)
    np.testing.assert_allclose(g.T.ravel(), J.T @ E, rtol=1e-7, atol=1e-7 * np.abs(g).max())
    # and against finite differences of f itself
    h = 1e-6
    for i, a in [(0, 0), (1, 2), (2, 3)]:
        Xp, Xm = X.copy(), X.copy()
        Xp[a, i] += h
        Xm[a, i] -= h
        fd = (prob.evaluate(Xp)[0] - prob.evaluate(Xm)[0]) / (2 * h)
        assert g[a, i] == pytest.approx(fd, rel=1e-6, abs=1e-6 * np.abs(g).max())


@pytest.mark.parametrize("l", [3, 4])
def test_gauss_newton_matrix_and_product_match_explicit_jacobian(l):
    X, sigma, T = small_case(l)
    prob = _Problem(T, sigma, 10**8)
    G = X.T @ X
    J = fd_jacobian(X, sigma, l)
    N = prob.jtj_dense(X, G)
    np.testing.assert_allclose(N, J.T @ J, rtol=1e-8, atol=1e-8 * np.abs(N).max())
    W = np.random.default_rng(5).standard_normal(X.shape)
    np.testing.assert_allclose(prob.jtj_matvec(X, G, W).T.ravel(), N @ W.T.ravel(), rtol=1e-12,
                               atol=1e-12 * np.abs(N).max())
    # D_i = l^2 ||x_i||^{2(l-1)} is the top eigenvalue of the diagonal block B_ii
    d = X.shape[0]
    for i in range(X.shape[1]):
        top = np.linalg.eigvalsh(N[i * d:(i + 1) * d, i * d:(i + 1) * d])[-1]
        assert prob.damping(X)[i] == pytest.approx(top, rel=1e-10)


@pytest.mark.parametrize("d,m", [(7, 3), (3, 5)])  # span(X) smaller than R^d, and k = d < m
@pytest.mark.parametrize("l", [3, 4])
def test_reduced_solves_match_full_system(d, m, l):
    rng = np.random.default_rng(d * 10 + m)
    X = rng.standard_normal((d, m))
    sigma = np.where(rng.random(m) < 0.5, -1.0, 1.0) if l % 2 == 0 else np.ones(m)
    T = tdcore.random_target(d, 2, l, seed=3)
    prob = _Problem(T, sigma, 10**8)
    f, g, G, _ = prob.evaluate(X)
    D = prob.damping(X)
    for mu in (1e-1, 1e-4):
        full = prob.jtj_dense(X, G) + np.diag(np.repeat(mu * D, d))
        ref = cho_solve(cho_factor(full), -g.T.ravel()).reshape(m, d).T
        direct, _ = prob.solve(prob.prepare(X, G), G, g, mu, D, "direct", 0.0, 1)
        cg, its = prob.solve(prob.prepare(X, G), G, g, mu, D, "cg", 1e-13, 2000)
        np.testing.assert_allclose(direct, ref, rtol=1e-8, atol=1e-10 * np.abs(ref).max())
        np.testing.assert_allclose(cg, ref, rtol=1e-6, atol=1e-7 * np.abs(ref).max())
        assert its >= 1


def test_merge_parallel_is_exact_for_parallel_components():
    u = np.array([0.6, 0.8, 0.0])
    v = np.array([0.0, 0.0, 1.0])
    # odd order: antiparallel copies fold their signs; even order: opposite signs subtract
    for l, X, sigma, w_expected in [
        (3, np.c_[2.0 * u, -1.0 * u, v], np.ones(3), 8.0 - 1.0),
        (4, np.c_[2.0 * u, -1.0 * u, v], np.array([1.0, -1.0, 1.0]), 16.0 - 1.0),
    ]:
        Xm, sm = _merge_parallel(X, sigma, l, 0.999)
        assert Xm.shape[1] == 2
        before = _sym_dense(X, sigma, l)
        after = _sym_dense(Xm, sm, l)
        np.testing.assert_allclose(after, before, atol=1e-12)
        w = sm * np.linalg.norm(Xm, axis=0) ** l
        assert np.sort(np.abs(w))[-1] == pytest.approx(w_expected)
    assert _merge_parallel(np.c_[u, v], np.ones(2), 3, 0.999) is None


def test_precise_rel_error_resolves_tiny_errors():
    T = tdcore.random_target(6, 3, 3, seed=2)
    M = tdcore.SymCP(T.weights, T.factors + 1e-10 * np.ones((6, 3)), 3)
    dense_err = np.linalg.norm(M.to_dense() - T.to_dense()) / T.norm()
    assert 1e-11 < dense_err < 1e-8
    assert precise_rel_error(M, T) == pytest.approx(dense_err, rel=1e-4)
    assert precise_rel_error(M, T.to_dense()) == pytest.approx(dense_err, rel=1e-4)
    # large errors agree with the Gram expansion; a tiny budget falls back to it
    M2 = tdcore.random_target(6, 2, 3, seed=9)
    assert precise_rel_error(M2, T) == pytest.approx(tdcore.rel_error(M2, T), rel=1e-10)
    assert precise_rel_error(M2, T, budget=1) == tdcore.rel_error(M2, T)


# ---------------------------------------------------------------- the LM iteration
@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("scenario", ["plain", "extra", "split"])
@pytest.mark.parametrize("l", [3, 4])
def test_refine_from_perturbed_decomposition(l, scenario, dense):
    T, M = perturbed(l, scenario)
    start = tdcore.rel_error(M, T)
    assert 5e-3 < start < 5e-2
    target = T.to_dense() if dense else T
    res = refine(M, target, tol=1e-10)
    assert isinstance(res, RefineResult)
    assert res.converged and res.stop_reason == "tol" and res.rel_error <= 1e-10
    assert iterations_to(res, 1e-8) <= 15
    # the reported error is that of the returned model
    assert precise_rel_error(res.model, T) == pytest.approx(res.rel_error, rel=1e-3, abs=1e-13)
    assert abs(tdcore.rel_error(res.model, T) - res.rel_error) < 5e-8  # Gram expansion's resolution
    if scenario == "extra":  # the tiny components are removed (or absorbed), never kept tiny
        assert res.n_dropped >= 1 and res.model.m <= 4
        assert np.min(np.abs(res.model.weights)) > 1e-3
    if scenario == "split":
        assert res.n_merged == 1 and res.model.m == 3


@pytest.mark.parametrize("l", [3, 4])
def test_refine_without_drop_and_merge_still_converges(l):
    for scenario in ("extra", "split"):
        T, M = perturbed(l, scenario, seed=1)
        res = refine(M, T, tol=1e-8, drop=0.0, merge=None, max_iter=60)
        assert res.converged, (scenario, res.stop_reason, res.rel_error)
        assert res.n_dropped == 0 and res.n_merged == 0


@pytest.mark.parametrize("l", [3, 4])
def test_direct_and_cg_agree(l):
    T, M = perturbed(l, "plain", seed=2)
    a = refine(M, T, tol=1e-12, method="direct")
    b = refine(M, T, tol=1e-12, method="cg", cg_iters=500)
    assert a.method == "direct" and b.method == "cg"
    assert a.converged and b.converged
    assert any(h["cg_iters"] > 0 for h in b.history[1:])
    # m = r: the decomposition is unique, so both end at the target's components
    for res in (a, b):
        np.testing.assert_allclose(res.model.weights, T.weights, rtol=1e-8)
        np.testing.assert_allclose(np.abs(np.sum(res.model.factors * T.factors, axis=0)), 1.0, atol=1e-10)
    # CG solves the same systems inexactly (to relative residual min(0.1, rel_error)): similar paths
    assert abs(a.n_iter - b.n_iter) <= 3


def test_auto_picks_the_solver_by_size():
    T, M = perturbed(3, "plain")
    assert refine(M, T).method == "direct"
    assert refine(M, T, direct_max_size=1).method == "cg"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_refine_from_algorithm1_output(seed):
    T = tdcore.random_target(20, 5, 3, seed=seed)
    a1 = tdcore.algorithm1(T, 15, tol=5e-2, seed=seed)
    assert a1.rel_error <= 5e-2
    res = refine(a1.model, T, tol=1e-6)
    assert res.converged and res.rel_error <= 1e-6
    assert res.n_iter <= 30
    assert precise_rel_error(res.model, T) == pytest.approx(res.rel_error, rel=1e-3)


def test_decompose_runs_both_stages():
    T = tdcore.random_target(20, 4, 3, seed=4)
    out = decompose(T, 12, tol=1e-8, seed=1)
    assert isinstance(out, DecomposeResult)
    assert out.converged and out.rel_error <= 1e-8
    assert out.algorithm1.rel_error <= DEFAULT_HANDOFF
    assert out.refine.rel_error == out.rel_error and out.model is out.refine.model
    assert out.elapsed >= out.elapsed_algorithm1 + out.elapsed_refine - 1e-6
    assert out.elapsed_algorithm1 > 0 and out.elapsed_refine > 0
    # a loose tolerance needs no refinement beyond the handoff point
    loose = decompose(T, 12, tol=0.5, handoff=0.5, seed=1)
    assert loose.converged and loose.refine.n_iter == 0
    # refine_kwargs reach refine
    capped = decompose(T, 12, tol=1e-12, seed=1, refine_kwargs={"max_iter": 1})
    assert capped.refine.n_iter == 1 and not capped.converged


def test_result_fields_and_model_form():
    T, M = perturbed(4, "plain", seed=3)
    res = refine(M, T, tol=1e-9)
    h0 = res.history[0]
    assert h0["iteration"] == 0 and h0["rel_error"] == pytest.approx(tdcore.rel_error(M, T), rel=1e-8)
    assert set(h0) == {"iteration", "rel_error", "mu", "accepted", "m", "step_norm", "cg_iters", "elapsed"}
    assert [h["iteration"] for h in res.history] == list(range(res.n_iter + 1))
    assert all(b["elapsed"] >= a["elapsed"] for a, b in zip(res.history, res.history[1:]))
    errs = [h["rel_error"] for h in res.history]
    assert all(b <= a for a, b in zip(errs, errs[1:]))  # only decreasing steps are accepted
    assert res.history[-1]["rel_error"] == res.rel_error
    np.testing.assert_allclose(np.linalg.norm(res.model.factors, axis=0), 1.0)
    np.testing.assert_allclose(res.model.weights, res.signs * np.linalg.norm(res.X, axis=0) ** 4)
    assert res.elapsed >= res.history[-1]["elapsed"]
    # a model that already meets tol is returned after no iteration
    again = refine(res.model, T, tol=1e-6)
    assert again.n_iter == 0 and again.converged and again.stop_reason == "tol"


def test_stop_reasons_and_pruning():
    T, M = perturbed(3, "plain", seed=4)
    capped = refine(M, T, tol=1e-14, max_iter=1)
    assert capped.stop_reason == "max_iter" and not capped.converged and capped.n_iter == 1
    timed = refine(M, T, tol=1e-14, time_limit=1e-9)
    assert timed.stop_reason == "time_limit" and timed.n_iter == 1
    zero = refine(M, T, tol=1e-14, max_iter=0)
    assert zero.n_iter == 0 and len(zero.history) == 1
    # components at or below prune * ||T*|| are removed before refining
    w = np.r_[M.weights, 1e-9]
    U = np.c_[M.factors, np.ones(8) / math.sqrt(8)]
    res = refine(tdcore.SymCP(w, U, 3), T, tol=1e-8)
    assert res.n_pruned == 1 and res.converged
    with pytest.raises(ValueError, match="prune"):
        refine(tdcore.SymCP(1e-9 * np.ones(2), np.eye(8)[:, :2], 3), T)


def test_non_finite_step_keeps_last_finite_state(monkeypatch):
    T, M = perturbed(3, "plain", seed=5)
    start = refine(M, T, max_iter=0)

    def bad_solve(self, *args, **kwargs):
        return np.full((8, 3), np.nan), 0

    monkeypatch.setattr(_Problem, "solve", bad_solve)
    res = refine(M, T, tol=1e-8)
    assert res.stop_reason == "non_finite" and not res.converged
    assert np.all(np.isfinite(res.X))
    np.testing.assert_allclose(res.X, start.X)
    assert res.rel_error == pytest.approx(start.rel_error)


def test_bad_inputs_raise():
    T, M = perturbed(3, "plain")
    with pytest.raises(TypeError, match="model"):
        refine(T.to_dense(), T)
    with pytest.raises(ValueError, match="order"):
        refine(tdcore.SymCP(M.weights, M.factors, 4), T)
    with pytest.raises(ValueError, match="dimension"):
        refine(tdcore.SymCP(M.weights, M.factors[:5], 3), T)
    with pytest.raises(TypeError, match="target"):
        refine(M, "T")
    with pytest.raises(ValueError, match="tol"):
        refine(M, T, tol=0.0)
    with pytest.raises(ValueError, match="max_iter"):
        refine(M, T, max_iter=-1)
    with pytest.raises(TypeError, match="max_iter"):
        refine(M, T, max_iter=2.5)
    with pytest.raises(ValueError, match="prune"):
        refine(M, T, prune=-1.0)
    with pytest.raises(ValueError, match="drop"):
        refine(M, T, drop=-1.0)
    with pytest.raises(ValueError, match="merge"):
        refine(M, T, merge=1.5)
    with pytest.raises(ValueError, match="mu0"):
        refine(M, T, mu0=0.0)
    with pytest.raises(ValueError, match="method"):
        refine(M, T, method="lu")
    with pytest.raises(ValueError, match="cg_iters"):
        refine(M, T, cg_iters=0)
    with pytest.raises(ValueError, match="time_limit"):
        refine(M, T, time_limit=-1.0)
    with pytest.raises(ValueError, match="zero norm"):
        refine(M, tdcore.SymCP(np.zeros(1), np.ones((8, 1)), 3))
    with pytest.raises(TypeError, match="model"):
        precise_rel_error(T.to_dense(), T)
    with pytest.raises(ValueError, match="tol"):
        decompose(T, 6, tol=-1.0)
    with pytest.raises(ValueError, match="handoff"):
        decompose(T, 6, handoff=0.0)
    with pytest.raises(TypeError, match="refine_kwargs"):
        decompose(T, 6, refine_kwargs=[("max_iter", 1)])
    with pytest.raises(TypeError, match="decompose\\(tol"):
        decompose(T, 6, refine_kwargs={"tol": 1e-3})


def test_merge_of_distinct_components_is_undone(monkeypatch):
    # two distinct target components at cos 0.999; force the merge heuristic to accept merging them
    import tdcore._refine as refine_module

    rng = np.random.default_rng(0)
    u, v = np.linalg.qr(rng.standard_normal((8, 2)))[0].T
    th = math.acos(0.999)
    U = np.c_[u, math.cos(th) * u + math.sin(th) * v, rng.standard_normal(8) / math.sqrt(8)]
    T = tdcore.SymCP(np.array([1.0, 0.8, 0.5]), U, 3).normalized()
    M = tdcore.SymCP(T.weights, T.factors + 3e-3 * rng.standard_normal((8, 3)) / math.sqrt(8), 3)
    assert refine(M, T, tol=1e-10, merge=0.99).n_merged == 0  # the objective check refuses it
    monkeypatch.setattr(refine_module, "_MERGE_BELOW", 1.0)
    monkeypatch.setattr(refine_module, "_MERGE_MAX_INCREASE", math.inf)
    res = refine(M, T, tol=1e-10, merge=0.99, max_iter=150)
    assert min(h["m"] for h in res.history) == 2  # merged, the run stagnated, the merge was undone
    assert res.converged and res.n_merged == 0 and res.model.m == 3
