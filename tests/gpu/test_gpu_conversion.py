"""One conversion rule at every public entry: inputs on either side (host / device) give the host result.

Rule (tdcore/_backend.py): with a ``backend`` argument the run computes there and
moves its inputs; without one, a computation with any device input runs on the
device.  Each case below mixes host and device inputs and compares with the
all-host value.  Tolerances: the device's sums run in another order with 2e-16
noise, so values agree to a few ulps of the terms summed; 1e-12 relative covers
that with room (the terms here are O(1) and there are at most a few thousand).
"""

import itertools

import numpy as np
import pytest

import tdcore as tc
from tdcore._objective import make_target_operator

pytestmark = pytest.mark.cupy

SIDES = ("host", "device")


def _on(cp, side, a):
    return cp.asarray(a) if side == "device" else a


def _cp_on(cp, side, T):
    return tc.SymCP(_on(cp, side, T.weights), _on(cp, side, T.factors), T.order)


@pytest.fixture
def pair():
    T = tc.random_target(6, 2, 3, seed=0)
    M = tc.SymCP(np.array([0.7, -0.2, 0.4]), np.random.default_rng(1).standard_normal((6, 3)), 3)
    return M, T


@pytest.mark.parametrize("ms,ts", list(itertools.product(SIDES, SIDES)))
@pytest.mark.parametrize("dense", ["none", "target", "both"])
def test_rel_error_and_inner_any_side(cupy_backend, pair, ms, ts, dense):
    cp = cupy_backend
    M, T = pair
    want_rel, want_inner = tc.rel_error(M, T.to_dense() if dense != "none" else T), tc.inner(M, T)
    m = _cp_on(cp, ms, M)
    t = _cp_on(cp, ts, T)
    if dense in ("target", "both"):
        t = _on(cp, ts, T.to_dense())
    if dense == "both":
        m = _on(cp, ms, M.to_dense())
    got = tc.rel_error(m, t)
    assert isinstance(got, float)
    assert got == pytest.approx(want_rel, rel=1e-12)
    assert tc.inner(m, t) == pytest.approx(want_inner if dense != "both" else tc.inner(M.to_dense(), T.to_dense()),
                                           rel=1e-12)
    assert tc.norm(t) == pytest.approx(tc.norm(T), rel=1e-12)


@pytest.mark.parametrize("us,ss,ts", list(itertools.product(SIDES, SIDES, SIDES)))
def test_fit_objective_and_objective_any_side(cupy_backend, pair, us, ss, ts):
    cp = cupy_backend
    _, T = pair
    rng = np.random.default_rng(2)
    U, s = rng.standard_normal((6, 4)), rng.standard_normal(4)
    f0, gU0, gs0 = tc.fit_objective(U, s, T, grad=True)
    f, gU, gs = tc.fit_objective(_on(cp, us, U), _on(cp, ss, s), _cp_on(cp, ts, T), grad=True)
    on_device = "device" in (us, ss)  # computed where the rule says, results stay there
    assert (type(gU).__module__.startswith("cupy")) == on_device
    np.testing.assert_allclose(cp.asnumpy(gU), gU0, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(cp.asnumpy(gs), gs0, rtol=1e-12, atol=1e-13)
    assert float(f) == pytest.approx(float(f0), rel=1e-12)
    C, Chat, A = np.abs(s) + 0.5, np.abs(s) + 1.0, np.sign(s)
    o0, g0 = tc.objective(U, C, Chat, A, T, 0.01, grad=True)
    o, g = tc.objective(_on(cp, us, U), _on(cp, ss, C), Chat, _on(cp, ss, A), _cp_on(cp, ts, T), 0.01, grad=True)
    assert float(o) == pytest.approx(float(o0), rel=1e-12)
    np.testing.assert_allclose(cp.asnumpy(g), g0, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("ts", SIDES)
@pytest.mark.parametrize("backend", ["numpy", "cupy"])
@pytest.mark.parametrize("dense", [False, True])
def test_algorithm1_target_on_either_side(cupy_backend, ts, backend, dense):
    cp = cupy_backend
    T = tc.random_target(8, 2, 3, seed=3)
    kw = dict(seed=1, epochs=2, iters=40)
    ref = tc.algorithm1(T.to_dense() if dense else T, 5, backend="numpy", **kw)
    t = _on(cp, ts, T.to_dense()) if dense else _cp_on(cp, ts, T)
    res = tc.algorithm1(t, 5, backend=backend, **kw)
    assert isinstance(res.model.factors, np.ndarray)
    # identical on the host; on the device the sums round differently (see the module docstring)
    np.testing.assert_allclose(res.model.factors, ref.model.factors, rtol=1e-9, atol=1e-12)
    op = make_target_operator(t, backend)
    assert type(op.norm2).__module__.startswith("cupy" if backend == "cupy" else "numpy")


@pytest.mark.parametrize("ss", SIDES)
@pytest.mark.parametrize("backend", ["numpy", "cupy"])
def test_algorithm1_init_state_and_batch_on_either_side(cupy_backend, ss, backend):
    cp = cupy_backend
    T = tc.random_target(8, 2, 3, seed=4)
    rng = np.random.default_rng(0)
    st = {"U": rng.standard_normal((8, 4)) * 1e-2, "a": np.array([1.0, -1.0, 1.0, 1.0])}
    kw = dict(seed=2, epochs=2, iters=30)
    ref = tc.algorithm1(T, 4, backend="numpy", init_state=st, **kw)
    res = tc.algorithm1(T, 4, backend=backend, init_state={k: _on(cp, ss, v) for k, v in st.items()}, **kw)
    np.testing.assert_allclose(res.model.factors, ref.model.factors, rtol=1e-9, atol=1e-12)
    targets = [_cp_on(cp, ss, tc.random_target(8, 2, 3, seed=s)) for s in range(3)]
    b = tc.algorithm1_batch(targets, 4, seeds=[0, 1, 2], backend=backend, epochs=2, iters=20)
    b0 = tc.algorithm1_batch([tc.random_target(8, 2, 3, seed=s) for s in range(3)], 4, seeds=[0, 1, 2],
                             backend="numpy", epochs=2, iters=20)
    np.testing.assert_allclose(b.rel_errors, b0.rel_errors, rtol=1e-9)


@pytest.mark.parametrize("ts", SIDES)
def test_vanilla_gd_deflation_flow_and_symcp_with_a_device_target(cupy_backend, ts):
    cp = cupy_backend
    T = tc.random_target(6, 2, 3, seed=5)
    kw = dict(steps=20, eta=0.05, seed=0, weights="train", record_every=1)
    ref = tc.vanilla_gd(T, 3, **kw)
    got = tc.vanilla_gd(_cp_on(cp, ts, T), 3, **kw)
    np.testing.assert_allclose(got.history["rel_error"], ref.history["rel_error"], rtol=1e-12)
    To = tc.random_target(6, 2, 3, orthogonal=True, seed=5)   # the flow needs orthonormal components
    ref = tc.deflation_flow(To, 4, eta=0.05, t_max=2.0, seeds=(0,))
    got = tc.deflation_flow(_cp_on(cp, ts, To), 4, eta=0.05, t_max=2.0, seeds=(0,))
    np.testing.assert_allclose(got.rel_error, ref.rel_error, rtol=1e-12)
    # a SymCP from weights and factors on different sides lives on the device
    mixed = tc.SymCP(T.weights, cp.asarray(T.factors), 3)
    assert type(mixed.factors).__module__.startswith("cupy")
    assert type(mixed.weights).__module__.startswith("cupy")
    assert tc.norm(mixed + T) == pytest.approx(2 * tc.norm(T), rel=1e-12)


def test_refine_decompose_and_baselines_with_device_inputs(cupy_backend):
    cp = cupy_backend
    T = tc.random_target(8, 2, 3, seed=1)
    M = tc.algorithm1(T, 4, seed=0, epochs=3, iters=100, backend="numpy").model
    Td, Md = _cp_on(cp, "device", T), _cp_on(cp, "device", M)
    # errors near zero are compared absolutely at 1e-8: a relative error from a Gram expansion
    # resolves about sqrt(eps) ~ 1.5e-8 (see tdcore.rel_error), whatever the summation order
    ref = tc.refine(M, T)
    for m, t in ((Md, T), (M, Td), (Md, Td)):
        got = tc.refine(m, t)
        assert got.rel_error == pytest.approx(ref.rel_error, rel=1e-6, abs=1e-8)
        assert tc.precise_rel_error(m, t) == pytest.approx(tc.precise_rel_error(M, T), rel=1e-9, abs=1e-12)
    for backend in ("numpy", "cupy"):
        d = tc.decompose(Td, 4, seed=0, backend=backend)
        assert d.rel_error <= 1e-6  # decompose's tol
    assert tc.cp_als(Td, 2).rel_error == pytest.approx(tc.cp_als(T, 2).rel_error, rel=1e-9, abs=1e-8)
    assert tc.power_method(Td, 2).rel_error == pytest.approx(tc.power_method(T, 2).rel_error, rel=1e-9, abs=1e-8)
