"""The fused Algorithm 1 step: both step plans, the gradient they encode, frozen trials in a batch."""

import numpy as np
import pytest

import tdcore as tc
from tdcore._algorithm1 import _Run, _make_params, _prepare_targets
from tdcore._backend import get_backend


def _run(target, m, B=2, seed=0, ratio=None, lam=None, perturb=True):
    p = _make_params(target, m, 2, 10, None, None, lam, True, True, 0, None)
    be = get_backend("numpy")
    op, _ = _prepare_targets([target] * B, be, np.float64)
    run = _Run(op, p, [np.random.default_rng(seed + b) for b in range(B)], be, np.float64)
    if ratio is not None:
        run.M_SIDE_RATIO = ratio
    run.init_state()
    if not perturb:
        return run
    # move off the tiny initialisation so every term of the gradient matters
    rng = np.random.default_rng(seed + 100)
    run.U = run.U + 0.3 * rng.standard_normal(run.U.shape)
    run.switched[:, ::2] = True  # half the columns after their mode switch
    nrm = np.linalg.norm(run.U, axis=-2)
    run.c = np.where(run.switched, 1.0, p.switch_factor) / nrm * rng.uniform(0.5, 2.0, nrm.shape)
    run.chat = rng.uniform(0.5, 2.0, nrm.shape) / nrm
    return run


@pytest.mark.parametrize("order", [2, 3, 4])
@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("ratio", [1e9, 0.0])  # always the m side / always the d side
def test_step_plan_encodes_the_paper_gradient(order, dense, ratio):
    T = tc.random_target(5, 2, order, seed=order)
    target = T.to_dense() if dense else T
    run = _run(target, 4, ratio=ratio, lam=0.05)
    ev = run.evaluate()
    assert ev[3][0] == ("m" if ratio > 1 else "d")
    for b in range(run.B):
        f, g = tc.objective(run.U[b], run.c[b], run.chat[b], run.a[b], target, run.p.lam, grad=True)
        assert ev[0][b] == pytest.approx(f, rel=1e-12)
        np.testing.assert_allclose(run.gradient(ev)[b], g, rtol=1e-10, atol=1e-12 * np.abs(g).max())
    _, new, _ = run.step(ev)
    np.testing.assert_allclose(new[0], run.U - run.p.eta * run.gradient(ev), rtol=1e-12, atol=1e-14)


def test_both_plans_take_the_same_steps():
    T = tc.random_target(12, 3, 3, seed=1)
    runs = [_run(T, 9, B=3, ratio=r, perturb=False) for r in (1e9, 0.0)]
    evs = [r.evaluate() for r in runs]
    f0 = evs[0][0].copy()
    for _ in range(200):
        for i, r in enumerate(runs):
            _, new, evs[i] = r.step(evs[i])
            r.U, r.c, r.chat, r.switched = new
    np.testing.assert_allclose(runs[0].U, runs[1].U, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(evs[0][0], evs[1][0], rtol=1e-10)
    assert np.all(np.isfinite(runs[0].U)) and np.all(evs[0][0] < 0.9 * f0)  # the runs moved, and descended


def test_step_does_not_modify_its_evaluation():
    run = _run(tc.random_target(6, 2, 3, seed=0), 5)
    ev = run.evaluate()
    plan = [np.array(x, copy=True) for x in ev[3][1:]]
    first = run.step(ev)[1][0]
    second = run.step(ev)[1][0]
    np.testing.assert_array_equal(first, second)
    for a, b in zip(plan, ev[3][1:]):
        np.testing.assert_array_equal(a, b)


def test_batch_freezes_only_the_diverged_trial():
    # an explicit step size holds for every target as given: the second one is 1000x larger and
    # diverges with the step that suits the first (default parameters would follow each norm)
    T = tc.random_target(10, 2, 3, seed=4)
    big = tc.SymCP(T.weights * 1000.0, T.factors, 3)
    eta = tc.default_params(10, 3, 6).eta
    b = tc.algorithm1_batch([T, big, T], 6, seeds=[1, 2, 3], epochs=3, iters=100, eta=eta, backend="numpy")
    assert b.diverged == [1]
    assert np.all(np.isfinite(b.results[1].state["U"]))
    assert "diverged_at" in b.results[1].history
    for i, seed in ((0, 1), (2, 3)):
        single = tc.algorithm1(T, 6, seed=seed, epochs=3, iters=100, eta=eta, backend="numpy")
        np.testing.assert_allclose(b.results[i].state["U"], single.state["U"], rtol=1e-12, atol=1e-14)
        assert b.results[i].rel_error == pytest.approx(single.rel_error, rel=1e-10)


@pytest.mark.parametrize("shared", [True, False])
def test_workers_split_the_batch_without_changing_any_trial(shared):
    T = [tc.random_target(10, 2, 3, seed=s) for s in range(5)]
    targets = T[0] if shared else T
    if not shared:
        T[3] = tc.SymCP(T[3].weights * 1000.0, T[3].factors, 3)  # diverges with the unit-norm step size
    kw = dict(seeds=[3, 4, 5, 6, 7], epochs=2, iters=60, backend="numpy", eta=tc.default_params(10, 3, 6).eta)
    one = tc.algorithm1_batch(targets, 6, **kw)
    two = tc.algorithm1_batch(targets, 6, workers=2, **kw)
    assert one.diverged == two.diverged == ([] if shared else [3])
    for a, b in zip(one.results, two.results):
        np.testing.assert_array_equal(a.state["U"], b.state["U"])
        assert a.seed == b.seed and a.history["rel_error"] == b.history["rel_error"]


def test_workers_bad_input():
    T = tc.random_target(6, 2, 3, seed=0)
    with pytest.raises(ValueError, match="workers must be"):
        tc.algorithm1_batch(T, 4, seeds=[0, 1], workers=0)
    with pytest.raises(ValueError, match="callback or progress"):
        tc.algorithm1_batch(T, 4, seeds=[0, 1], workers=2, callback=lambda info: None)
