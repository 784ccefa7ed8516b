"""Numbers right at every scale: inner/norm/rel_error and Algorithm 1 from 1e-300 to 1e300.

Tolerances (floating-point arguments, not one machine's output):

* Scaling an array by a decimal power (not a power of two) rounds every entry once,
  a relative perturbation of at most eps = 2.2e-16 per weight and factor entry, so
  a tensor of order l moves by at most about (l + 1) eps relative.  inner/norm pull
  the scale out exactly (powers of two) and then do the arithmetic of the unscaled
  problem, whose own rounding is a few eps times (sum |c_i|)^2 / ||T||^2 (about 10
  here).  ``RTOL_SCALE = 1e-12`` leaves a margin of more than 100 over both.
* Algorithm 1 on c T* runs on c T* / ||c T*||, which equals T* / ||T*|| up to those
  few eps; the run with a fixed seed is a smooth function of its target over a few
  hundred steps (no decision -- re-initialised column, mode switch -- sits within
  1e-12 of its threshold for these seeds), so relative errors agree to far better
  than ``RTOL_ALG = 1e-9``.
"""

import math

import numpy as np
import pytest

import tdcore as tc

RTOL_SCALE = 1e-12
RTOL_ALG = 1e-9
SCALES = [1e-300, 1e-150, 1e-40, 1.0, 1e40, 1e150, 1e300]


def _pair(d=10, r=3, order=3):
    T = tc.random_target(d, r, order, seed=0)
    M = tc.random_target(d, r, order, seed=1)
    return M, T


# ------------------------------------------------------------------ the reported cases
def test_gram_powers_neither_underflow_nor_overflow():
    T = tc.random_target(10, 3, 3, seed=0)
    u = T.factors[:, :1]
    # 2e300 (1e-100 u)^3 = 2 u^3 up to the rounding of 1e-100 (relative ~ 3 eps): the error is 1
    err = tc.rel_error(tc.SymCP([2e300], u * 1e-100, 3), tc.SymCP([1.0], u, 3))
    assert err == pytest.approx(1.0, rel=RTOL_SCALE)
    big = T * 1e160
    assert big.norm() == pytest.approx(1e160 * T.norm(), rel=RTOL_SCALE)
    M = tc.SymCP(T.weights * 1.01, T.factors, 3)  # error 0.01 up to one rounding per weight
    for c in (1e-160, 1e160):
        assert tc.rel_error(M * c, T * c) == pytest.approx(0.01, rel=1e-12)
    W = tc.random_target(5, 2, 3, weights=[1e200, 1e200], seed=3)
    ref = tc.random_target(5, 2, 3, weights=[1.0, 1.0], seed=3)
    assert W.norm() == pytest.approx(1.0, rel=RTOL_SCALE)
    assert tc.rel_error(W, ref) <= RTOL_SCALE


def test_dense_arrays_at_extreme_scales():
    M, T = _pair()
    Dm, Dt = M.to_dense(), T.to_dense()
    want = tc.rel_error(Dm, Dt)
    for c in (1e-300, 1e-160, 1e160, 1e300):
        assert tc.norm(Dt * c) == pytest.approx(c * tc.norm(Dt), rel=RTOL_SCALE)
        assert tc.rel_error(Dm * c, Dt * c) == pytest.approx(want, rel=RTOL_SCALE)
        assert tc.rel_error(M * c, Dt * c) == pytest.approx(want, rel=RTOL_SCALE)
        assert tc.rel_error(Dm * c, T * c) == pytest.approx(want, rel=RTOL_SCALE)
        assert tc.inner(M * c, Dt) == pytest.approx(c * tc.inner(Dm, Dt), rel=RTOL_SCALE)
    assert tc.inner(Dt * 1e200, Dt * 1e200) == math.inf  # the true value 1e400 is not a float


@pytest.mark.parametrize("order", [3, 4])
def test_weights_and_factors_across_the_floating_range(order):
    M, T = _pair(order=order)
    base_norm, base_inner, base_err = T.norm(), tc.inner(M, T), tc.rel_error(M, T)
    wscales = [1e-300, 1e-150, 1.0, 1e150, 1e300]
    fscales = [1e-75, 1e-30, 1.0, 1e30, 1e75]
    for ws in wscales:
        for fs in fscales:
            lg = math.log10(ws) + order * math.log10(fs)
            if abs(lg) > 300:  # the tensor itself is outside the floating range
                continue
            s = ws * fs**order
            Ts = tc.SymCP(T.weights * ws, T.factors * fs, order)
            Ms = tc.SymCP(M.weights * ws, M.factors * fs, order)
            assert Ts.norm() == pytest.approx(s * base_norm, rel=RTOL_SCALE)
            assert tc.rel_error(Ms, Ts) == pytest.approx(base_err, rel=RTOL_SCALE)
            # the same tensor written with the scale in the weights instead of the factors
            assert tc.rel_error(Ms, T * s) == pytest.approx(base_err, rel=RTOL_SCALE)
            assert tc.rel_error(Ts, T * s) <= 1e-13
            if abs(2 * lg) <= 300:
                assert tc.inner(Ms, Ts) == pytest.approx(s * s * base_inner, rel=RTOL_SCALE)
            else:  # the inner product is out of range: inf / 0 in the right direction
                assert tc.inner(Ms, Ts) in (0.0, math.inf, -math.inf)
            assert Ts.normalized().norm() == pytest.approx(1.0, rel=RTOL_SCALE)


# ------------------------------------------------------------------ precise rel_error
@pytest.mark.parametrize("order", [3, 4])
@pytest.mark.parametrize("d,r", [(6, 3), (20, 8), (40, 30)])
def test_permuted_and_rewritten_copies_have_error_zero(order, d, r):
    T = tc.random_target(d, r, order, seed=d + r)
    p = np.random.default_rng(order).permutation(r)
    P = tc.SymCP(T.weights[p], T.factors[:, p], order)
    assert tc.rel_error(P, T) == 0.0
    # u -> 2u with w -> w / 2^l, and u -> -u with w -> (-1)^l w: the same tensor, bit for bit
    R = tc.SymCP(T.weights / 2.0**order * (-1) ** order, -2.0 * T.factors, order)
    assert tc.rel_error(R, T) == 0.0
    # precise=False is the plain Gram expansion: an upper bound of sqrt(eps)-level noise only
    assert tc.rel_error(P, T, precise=False) <= 1e-6


@pytest.mark.parametrize("true", [7.6e-9, 3e-12, 1e-5])
def test_tiny_true_errors_are_reported_right(true):
    T = tc.random_target(8, 3, 3, seed=5)
    S = tc.random_target(8, 2, 3, seed=6)
    # M - T = delta S exactly (T's components cancel bitwise), so the true error is delta ||S|| / ||T||
    delta = true * T.norm() / S.norm()
    M = tc.SymCP(np.r_[T.weights, delta * S.weights], np.c_[T.factors, S.factors], 3)
    want = delta * S.norm() / T.norm()
    assert tc.rel_error(M, T) == pytest.approx(want, rel=1e-12)


def test_precise_path_without_bitwise_cancellation():
    # factors moved by 1e-10: the error (~1e-10) is far below what the Gram expansion resolves;
    # the dense residual (entries exact to eps ||T||, i.e. ~1e-6 relative of the error) is the reference
    T = tc.random_target(6, 3, 3, seed=2)
    M = tc.SymCP(T.weights, T.factors + 1e-10 * np.ones((6, 3)), 3)
    want = np.linalg.norm(M.to_dense() - T.to_dense()) / T.norm()
    assert 1e-11 < want < 1e-8
    assert tc.rel_error(M, T) == pytest.approx(want, rel=1e-4)
    assert tc.precise_rel_error(M, T) == pytest.approx(want, rel=1e-4)
    assert tc.precise_rel_error is tc._refine.precise_rel_error


def test_rel_error_bad_input():
    T = tc.random_target(4, 2, 3, seed=0)
    with pytest.raises(TypeError, match="precise"):
        tc.rel_error(T, T, precise="yes")
    with pytest.raises(ValueError, match="chunk_bytes"):
        tc.rel_error(T, T, chunk_bytes=10)
    with pytest.raises(ValueError, match="zero norm"):
        tc.rel_error(T, tc.SymCP([0.0], T.factors[:, :1], 3))
    assert tc.rel_error(tc.SymCP([0.0], T.factors[:, :1], 3), T) == 1.0


# ------------------------------------------------------------------ Algorithm 1
KW = dict(epochs=6, iters=200, backend="numpy")


def test_algorithm1_is_scale_invariant():
    T = tc.random_target(10, 3, 3, seed=0)
    base = tc.algorithm1(T, 9, seed=1, **KW)
    assert base.rel_error < 0.05
    for c in SCALES:
        r = tc.algorithm1(T * c, 9, seed=1, **KW)
        assert r.rel_error == pytest.approx(base.rel_error, rel=RTOL_ALG), c
        assert tc.rel_error(r.model, T * c) == pytest.approx(base.rel_error, rel=1e-8), c
        assert r.params.target_norm == pytest.approx(c, rel=RTOL_SCALE)
        assert r.params.eta * c == pytest.approx(base.params.eta, rel=RTOL_SCALE)
        assert r.params.lam / c == pytest.approx(base.params.lam, rel=RTOL_SCALE)
        assert r.params.delta / math.sqrt(c) == pytest.approx(base.params.delta, rel=RTOL_SCALE)
        # absolute history values are for the target as given (objective ~ c^2, when a float)
        if 1e-150 <= c <= 1e150:
            assert r.history["objective"][-1] == pytest.approx(c * c * base.history["objective"][-1], rel=RTOL_ALG)
            assert r.history["pb_norm2"][-1] == pytest.approx(c * base.history["pb_norm2"][-1], rel=RTOL_ALG)
        # the state is for the target as given: its model is the returned model
        st = r.state
        model = tc.SymCP(st["a"] * st["c"], st["U"], 3)
        if 1e-100 <= c <= 1e100:  # the state's own weights a c stay representable
            assert tc.rel_error(model, r.model) <= 1e-12


def test_algorithm1_scale_invariant_for_dense_targets_and_explicit_parameters():
    T = tc.random_target(6, 2, 3, seed=2)
    D = T.to_dense()
    base = tc.algorithm1(D, 6, seed=3, **KW)
    p = base.params
    for c in (1e-150, 1e150):
        r = tc.algorithm1(D * c, 6, seed=3, **KW)
        assert r.rel_error == pytest.approx(base.rel_error, rel=RTOL_ALG)
        # explicit parameters transform covariantly: the same run
        e = tc.algorithm1(T * c, 6, seed=3, eta=p.eta / c, lam=p.lam * c, delta=p.delta * math.sqrt(c), **KW)
        f = tc.algorithm1(T, 6, seed=3, eta=p.eta, lam=p.lam, delta=p.delta, **KW)
        assert e.rel_error == pytest.approx(f.rel_error, rel=RTOL_ALG)
        assert e.params.eta == p.eta / c


def test_batch_with_mixed_norms_equals_single_runs():
    Ts = [tc.random_target(10, 3, 3, seed=s) for s in range(3)]
    targets = [Ts[0], Ts[1] * 141.0, Ts[2] * 1e-3]
    b = tc.algorithm1_batch(targets, 9, seeds=[4, 5, 6], **KW)
    assert b.params is not None and b.params.target_norm == 1.0
    for T, s, res in zip(targets, [4, 5, 6], b.results):
        single = tc.algorithm1(T, 9, seed=s, **KW)
        assert res.rel_error == pytest.approx(single.rel_error, rel=1e-12)
        assert res.params == single.params
        assert tc.rel_error(res.model, T) == pytest.approx(single.rel_error, rel=1e-8)
    assert b.results[1].rel_error < 0.05  # the norm-141 trial is not stalled by the others' step size
    # explicit parameters are for each target as given: per-trial, reported per trial
    e = tc.algorithm1_batch(targets, 9, seeds=[4, 5, 6], eta=1e-4, **KW)
    assert e.params is None
    for T, s, res in zip(targets, [4, 5, 6], e.results):
        single = tc.algorithm1(T, 9, seed=s, eta=1e-4, **KW)
        assert res.rel_error == pytest.approx(single.rel_error, rel=1e-12) and res.params.eta == 1e-4


def test_divergence_is_reported_for_the_target_as_given():
    T = tc.random_target(10, 2, 3, seed=4)
    c = 1e40
    with pytest.raises(tc.DivergenceError) as info:
        tc.algorithm1(T * c, 6, seed=1, epochs=2, iters=100, eta=30.0 / c, backend="numpy")
    err = info.value
    assert err.suggested_eta == pytest.approx(7.5 / c, rel=RTOL_SCALE)
    assert f"eta={30.0 / c:g}" in str(err)
    assert err.partial.params.target_norm == pytest.approx(c, rel=RTOL_SCALE)


def test_zero_target_is_refused():
    T = tc.random_target(4, 2, 3, seed=0)
    with pytest.raises(ValueError, match="zero norm"):
        tc.algorithm1(T * 0.0, 3, epochs=1, iters=1, backend="numpy")


def test_checkpoint_resume_and_init_state_at_scale(tmp_path):
    T = tc.random_target(8, 2, 3, seed=7)
    c = 1e-40
    kw = dict(seed=2, epochs=4, iters=80, backend="numpy")
    full = tc.algorithm1(T * c, 6, **kw)
    ck = str(tmp_path / "ck.npz")
    part = tc.algorithm1(T * c, 6, checkpoint=ck, callback=lambda info: info["epoch"] == 2, **kw)
    assert len(part.history["epoch"]) == 2
    resumed = tc.algorithm1(T * c, 6, checkpoint=ck, **kw)
    assert resumed.history["rel_error"] == full.history["rel_error"]
    np.testing.assert_array_equal(resumed.state["U"], full.state["U"])
    # a returned state is for the target as given: restarting from it is scale-invariant too
    base = tc.algorithm1(T, 6, **kw)
    kw2 = dict(epochs=1, iters=20, reinit=False, seed=0, backend="numpy")
    again = tc.algorithm1(T * c, 6, init_state=full.state, **kw2)
    again1 = tc.algorithm1(T, 6, init_state=base.state, **kw2)
    assert again.rel_error == pytest.approx(again1.rel_error, rel=RTOL_ALG)
