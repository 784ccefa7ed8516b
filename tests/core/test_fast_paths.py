"""The performance issue's changes: decompose's first stage and merge, the floor warning, to_dense, host checks.

Only behaviour is tested here (what is computed, what is warned, what is tried
again); the times are measured by the benchmark suite (``tdcore.bench``).
"""

import math
import tracemalloc
import warnings

import numpy as np
import pytest

import tdcore
from tdcore import _baselines as bl
from tdcore._algorithm1 import _Run, default_params
from tdcore._algorithm1.params import regulariser_floor
from tdcore._gram import DEFAULT_CHUNK_BYTES, _cp_form, _dense_flat, _dense_product
from tdcore._refine import (DECOMPOSE_DELTA, DECOMPOSE_ETA, DECOMPOSE_RETRIES, DEFAULT_COMPRESS, decompose,
                            refine)


# -- the regulariser-floor warning -------------------------------------------------------------
def _floor_warnings(fn):
    with warnings.catch_warnings(record=True) as got:
        warnings.simplefilter("always")
        fn()
    return [w for w in got if "regulariser floor" in str(w.message)]


def test_algorithm1_warns_below_its_floor_and_names_the_way_out():
    T = tdcore.random_target(10, 4, 3, seed=0)
    got = _floor_warnings(lambda: tdcore.algorithm1(T, 12, epochs=1, iters=3, tol=1e-6, seed=0))
    assert len(got) == 1 and got[0].category is UserWarning
    msg = str(got[0].message)
    p = default_params(10, 3, 12)
    assert "tol=1e-06" in msg and f"{regulariser_floor(p.lam, 4):.3g}" in msg
    assert "tdcore.decompose" in msg and "polish" in msg and "refine" in msg
    assert got[0].filename == __file__  # points at the caller's line


@pytest.mark.parametrize("kw", [dict(tol=1e-2), dict(tol=1e-6, polish=5), dict(tol=1e-6, lam=0.0), dict()])
def test_no_warning_at_or_above_the_floor_or_without_a_regulariser(kw):
    T = tdcore.random_target(10, 4, 3, seed=0)
    assert not _floor_warnings(lambda: tdcore.algorithm1(T, 12, epochs=1, iters=3, seed=0, **kw))


def test_floor_scales_with_the_target_and_the_batch_warns_too():
    T = tdcore.random_target(10, 4, 3, seed=0)
    big = tdcore.SymCP(T.weights * 1e6, T.factors, 3)
    # the floor is relative: the same tol relative to a 1e6 times larger target warns the same way
    assert len(_floor_warnings(lambda: tdcore.algorithm1(big, 12, epochs=1, iters=2, tol=1e-6, seed=0))) == 1
    assert len(_floor_warnings(lambda: tdcore.algorithm1_batch(T, 12, seeds=[0, 1], epochs=1, iters=2,
                                                               tol=1e-6))) == 1
    assert not _floor_warnings(lambda: decompose(T, 12, tol=1e-8, seed=0))
    assert regulariser_floor(2e-3, 4) == pytest.approx(4e-3)


# -- to_dense: one matrix product ------------------------------------------------------------
@pytest.mark.parametrize("order", [2, 3, 4])
def test_to_dense_one_product_equals_the_blocked_accumulation(order):
    T = tdcore.random_target(9, 5, order, seed=order)
    T = tdcore.SymCP(T.weights * np.array([1.0, -2.0, 0.5, 3.0, -1.0]), T.factors, order)
    p = _cp_form(T)
    ref = np.ldexp(_dense_flat(p.F, p.c, order, 1024), p.E).reshape(T.shape)
    got = T.to_dense()
    scale = float(np.sum(np.abs(T.weights) * np.linalg.norm(T.factors, axis=0) ** order))
    # the same sums in another order: at most (n + 1) eps times the size of the terms
    assert np.max(np.abs(got - ref)) <= 8 * (T.m + 1) * np.finfo(float).eps * scale
    assert tdcore.rel_error(T, got) < 1e-14


def test_to_dense_allocates_only_the_output_and_the_khatri_rao_block():
    d, m = 60, 8
    T = tdcore.random_target(d, m, 3, seed=1)
    T.to_dense()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    out = T.to_dense()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    need = out.nbytes + 8 * (d * d * m + d * m)  # the result, K (d^2 x m) and diag(w) F^T
    assert out.nbytes <= peak <= need + 64 * 1024, (peak, need)


def test_to_dense_keeps_the_scale_robust_path_for_extreme_scales():
    T = tdcore.random_target(6, 3, 3, seed=2)
    tiny = tdcore.SymCP(T.weights * 1e-300, T.factors, 3)
    big = tdcore.SymCP(T.weights, T.factors * 1e90, 3)  # entries ~1e270: representable, the weights are not safe
    for X, c in ((tiny, 1e-300), (big, 1e270)):
        D = X.to_dense()
        assert np.all(np.isfinite(D))
        np.testing.assert_allclose(D / c, T.to_dense(), rtol=1e-12, atol=1e-14 * np.abs(T.to_dense()).max())
    # a Khatri-Rao block beyond DEFAULT_CHUNK_BYTES: the blocked accumulation, equal to the one product
    wide = tdcore.random_target(100, 1000, 3, seed=3)
    assert 8 * 100**2 * wide.m > DEFAULT_CHUNK_BYTES
    D = wide.to_dense()
    one = _dense_product(wide.factors, wide.weights, 3).reshape(wide.shape)
    assert np.max(np.abs(D - one)) <= 8 * wide.m * np.finfo(float).eps * float(np.sum(np.abs(wide.weights)))


# -- refine(compress=...) ----------------------------------------------------------------------
def test_compress_merges_the_copies_of_a_direction_before_the_first_step():
    T = tdcore.random_target(12, 3, 3, seed=0)
    rng = np.random.default_rng(0)
    # each component split into three near-parallel copies whose weights sum to the component's
    U = np.repeat(T.factors, 3, axis=1) + 1e-4 * rng.standard_normal((12, 9))
    w = np.repeat(T.weights / 3, 3)
    M = tdcore.SymCP(w, U, 3)
    res = refine(M, T, tol=1e-10, compress=0.99)
    assert res.history[0]["m"] == 3 and res.n_merged >= 6 and res.converged
    plain = refine(M, T, tol=1e-10)
    assert plain.history[0]["m"] == 9
    assert res.n_iter <= plain.n_iter


def test_compress_does_not_merge_distinct_components():
    # two correlated but distinct directions (cos 0.9 < 0.99): nothing is merged
    d = 8
    e1, e2 = np.eye(d)[:, 0], np.eye(d)[:, 1]
    v = 0.9 * e1 + math.sqrt(1 - 0.81) * e2
    T = tdcore.SymCP([1.0, 1.0], np.stack([e1, v], axis=1), 3)
    M = tdcore.SymCP([0.9, 1.1], np.stack([e1, v], axis=1) + 1e-3, 3)
    assert refine(M, T, tol=1e-10, compress=DEFAULT_COMPRESS).history[0]["m"] == 2


@pytest.mark.parametrize("bad", [0.0, -0.5, 1.5, float("nan"), "x"])
def test_compress_must_be_a_cosine(bad):
    T = tdcore.random_target(6, 2, 3, seed=0)
    with pytest.raises((ValueError, TypeError), match="compress"):
        refine(T, T, compress=bad)


# -- decompose ---------------------------------------------------------------------------------
def test_decompose_first_stage_uses_its_own_step_and_radius():
    T = tdcore.random_target(10, 3, 3, seed=0)
    res = decompose(T, 9, tol=1e-8, seed=0)
    p = res.algorithm1.params
    rule = default_params(10, 3, 9, eta=DECOMPOSE_ETA / 9)
    assert p.eta == pytest.approx(DECOMPOSE_ETA / 9) and p.eta == pytest.approx(4 * default_params(10, 3, 9).eta)
    assert p.delta == pytest.approx(DECOMPOSE_DELTA * rule.delta)
    assert res.converged and res.retries == 0
    # an explicit step is kept, with the rule's radius for it
    mine = decompose(T, 9, tol=1e-8, seed=0, eta=0.02)
    assert mine.algorithm1.params.eta == pytest.approx(0.02)
    assert mine.algorithm1.params.delta == pytest.approx(default_params(10, 3, 9, eta=0.02).delta)
    # compress=None refines Algorithm 1's model as it is
    full = decompose(T, 9, tol=1e-8, seed=0, refine_kwargs={"compress": None})
    assert full.refine.history[0]["m"] > res.refine.history[0]["m"] and full.converged


def test_decompose_reruns_to_a_lower_handoff_when_the_refinement_falls_short():
    # a correlated order-4 target where Levenberg-Marquardt from the 0.3 handoff stalls near 0.2
    T = bl.comparison_target("correlated", 20, 5, 4, seed=3)
    res = decompose(T, 15, tol=1e-6, seed=3)
    assert res.converged and res.rel_error <= 1e-6
    assert res.retries >= 1 and res.refine_fallback
    assert res.algorithm1.params.tol == pytest.approx(0.3 * 0.5 ** res.retries)
    assert res.elapsed >= res.elapsed_algorithm1 + res.elapsed_refine - 1e-9
    assert 1 <= DECOMPOSE_RETRIES <= 4


def test_decompose_divergence_falls_back_to_the_default_rule(monkeypatch):
    import tdcore._algorithm1 as a1

    calls = []
    real = a1.algorithm1

    def flaky(target, m, **kw):
        calls.append(kw.get("eta"))
        if len(calls) == 1:
            raise a1.DivergenceError("boom", epoch=1, iteration=1, state={}, last_finite_state={},
                                     suggested_eta=1e-3, partial=None)
        return real(target, m, **kw)

    monkeypatch.setattr(a1, "algorithm1", flaky)
    T = tdcore.random_target(8, 2, 3, seed=0)
    res = decompose(T, 6, tol=1e-8, seed=0)
    assert calls[0] == pytest.approx(DECOMPOSE_ETA / 9) and calls[1] is None and res.converged


# -- host checks on NumPy ----------------------------------------------------------------------
def test_numpy_runs_read_their_flags_every_few_iterations_and_stop_at_the_same_iteration(monkeypatch):
    T = tdcore.random_target(12, 3, 3, seed=0)
    ref_every = []
    orig = _Run.__init__

    def spy(self, *a, **k):
        orig(self, *a, **k)
        ref_every.append(self.check_every)

    monkeypatch.setattr(_Run, "__init__", spy)
    got = tdcore.algorithm1(T, 9, tol=0.3, seed=0, backend="numpy")
    assert ref_every == [_Run.CHECK_EVERY_HOST] and _Run.CHECK_EVERY_HOST < _Run.CHECK_EVERY
    monkeypatch.setattr(_Run, "CHECK_EVERY_HOST", 1)
    one = tdcore.algorithm1(T, 9, tol=0.3, seed=0, backend="numpy")
    assert got.history["stopped_at"] == one.history["stopped_at"]
    np.testing.assert_array_equal(got.model.factors, one.model.factors)


@pytest.mark.parametrize("order,d,r,m", [(3, 12, 3, 9), (4, 8, 2, 6), (3, 5, 2, 20)])
def test_single_trial_numpy_step_agrees_with_the_batched_code(monkeypatch, order, d, r, m):
    """The one-trial NumPy path (2-D arrays, dot-product reductions) follows the batched code to rounding."""
    T = tdcore.random_target(d, r, order, seed=order)
    kw = dict(epochs=3, iters=60, seed=1, backend="numpy", record_every=7)
    calls = []
    orig = _Run._step_host1

    def counted(self, ev):
        calls.append(1)
        return orig(self, ev)

    monkeypatch.setattr(_Run, "_step_host1", counted)
    lean = tdcore.algorithm1(T, m, **kw)
    uses_m_side = m < _Run.M_SIDE_RATIO * d
    assert (len(calls) > 0) == uses_m_side  # taken on the m side only (the d side has its own plan)
    monkeypatch.setattr(_Run, "_factored", property(lambda self: False))
    ref = tdcore.algorithm1(T, m, **kw)
    np.testing.assert_allclose(lean.model.factors, ref.model.factors, rtol=1e-9, atol=1e-13)
    np.testing.assert_allclose(lean.history["rel_error"], ref.history["rel_error"], rtol=1e-9)
    assert lean.history["n_switches"] == ref.history["n_switches"]
    a = [x["objective"] for x in lean.history["iterations"]]
    b = [x["objective"] for x in ref.history["iterations"]]
    np.testing.assert_allclose(a, b, rtol=1e-9)
