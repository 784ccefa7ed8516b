"""Algorithm 1: invariants of the paper's update, reproducibility, checkpoints, bad input."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tdcore as tc
from tdcore._algorithm1 import _Run, _prepare_targets
from tdcore._backend import get_backend


def _small_run(order=3, d=8, r=2, m=6, seed=0, **kw):
    target = tc.random_target(d, r, order, seed=seed)
    p = tc._algorithm1._make_params(target, m, kw.get("epochs", 4), kw.get("iters", 30), kw.get("delta"),
                                    kw.get("eta"), kw.get("lam"), True, True, 0, None)
    be = get_backend("numpy")
    op, bases = _prepare_targets([target], be, np.float64)
    run = _Run(op, p, [np.random.default_rng(seed)], be, np.float64)
    run.init_state()
    return run


@settings(max_examples=12, deadline=None)
@given(order=st.sampled_from([3, 4]), seed=st.integers(0, 10_000), m=st.integers(3, 8))
def test_homogeneity_invariants_and_switches(order, seed, m):
    """c_i ||u_i|| is constant between switches (boost before, 1 after); chat_i ||u_i|| = 1;
    at most one switch per (re)initialisation; the re-initialised column is the smallest."""
    run = _small_run(order=order, m=m, seed=seed)
    p = run.p
    switches_since_init = np.zeros(m, dtype=int)
    for _epoch in range(p.epochs):
        nrm = np.linalg.norm(run.U[0], axis=0)
        # the smallest norm, ties (within a relative 1e-12, far above the ulps in which two summation
        # orders differ) going to the lowest index: see _Run._reinit_index
        smallest = np.flatnonzero(nrm <= nrm.min() * (1 + 1e-12))
        j = run.reinit()[0]
        assert j == smallest[0]
        switches_since_init[j] = 0
        assert np.linalg.norm(run.U[0][:, j]) == pytest.approx(p.delta)
        ev = run.evaluate()
        for _ in range(p.iters):
            nsw, new, ev = run.step(ev)
            sw_before = run.switched[0].copy()
            run.U, run.c, run.chat, run.switched = new
            newly = run.switched[0] & ~sw_before
            switches_since_init += newly
            assert switches_since_init.max() <= 1
            assert int(nsw[0]) == int(newly.sum())
            n = np.linalg.norm(run.U[0], axis=0)
            cn = run.c[0] * n
            want = np.where(run.switched[0], 1.0, p.switch_factor)
            np.testing.assert_allclose(cn, want, rtol=1e-9)
            np.testing.assert_allclose(run.chat[0] * n, 1.0, rtol=1e-9)


def test_switch_happens_exactly_at_threshold_crossing():
    run = _small_run(order=3, m=5, seed=3, epochs=2, iters=200)
    thr = run.p.switch_threshold
    ev = run.evaluate()
    for _ in range(200):
        n_before = np.linalg.norm(run.U[0], axis=0)
        sw_before = run.switched[0].copy()
        _, new, ev = run.step(ev)
        run.U, run.c, run.chat, run.switched = new
        n_after = np.linalg.norm(run.U[0], axis=0)
        newly = run.switched[0] & ~sw_before
        crossing = (~sw_before) & (n_before <= thr) & (n_after > thr)
        np.testing.assert_array_equal(newly, crossing)


def test_default_runs_succeed_order3_and_order4():
    for order, d, r, m in [(3, 20, 3, 12), (4, 15, 3, 12)]:
        T = tc.random_target(d, r, order, seed=11)
        res = tc.algorithm1(T, m, seed=5, backend="numpy", epochs=20)
        assert res.rel_error <= 0.05, (order, res.rel_error)
        assert tc.rel_error(res.model, T) == pytest.approx(res.rel_error, abs=1e-6)
        assert res.params.epochs == 20 and res.params.iters == 300


def test_default_rule_values():
    p = tc.default_params(50, 4, 20, 1.0)
    assert p.epochs == 40 and p.iters == 300
    assert p.eta == pytest.approx(0.25 / 16)
    assert p.lam == pytest.approx(2e-3)
    M = p.m + p.epochs
    boost = (50 * M) ** 1.0
    assert p.switch_factor == pytest.approx(math.sqrt(50 * M))
    assert p.switch_threshold == pytest.approx(2 * math.sqrt(M) * p.delta)
    # the overshoot bound: one boosted step from the threshold leaves weight <= 1e-4
    overshoot = (1 + p.eta * 4 * boost) * p.switch_threshold
    assert overshoot**2 <= 1e-4 * (1 + 1e-9)
    # scaling the target scales eta down and lam up
    q = tc.default_params(50, 4, 20, 4.0)
    assert q.eta == pytest.approx(p.eta / 4) and q.lam == pytest.approx(4 * p.lam)


def test_same_seed_identical_and_batch_equals_sequential():
    targets = [tc.random_target(10, 2, 3, seed=s) for s in range(3)]
    kw = dict(epochs=3, iters=40, backend="numpy")
    seq = [tc.algorithm1(t, 6, seed=100 + s, **kw) for s, t in enumerate(targets)]
    again = tc.algorithm1(targets[0], 6, seed=100, **kw)
    np.testing.assert_array_equal(seq[0].model.factors, again.model.factors)
    batch = tc.algorithm1_batch(targets, 6, seeds=[100, 101, 102], **kw)
    for s in range(3):
        np.testing.assert_allclose(batch.results[s].model.factors, seq[s].model.factors, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(batch.results[s].history["rel_error"], seq[s].history["rel_error"], rtol=1e-9)
    # a shared target
    shared = tc.algorithm1_batch(targets[0], 6, seeds=[100, 7], **kw)
    np.testing.assert_allclose(shared.results[0].model.factors, seq[0].model.factors, rtol=1e-10, atol=1e-14)


def test_history_contents_and_records():
    T = tc.random_target(12, 2, 3, seed=1)
    res = tc.algorithm1(T, 6, seed=0, epochs=3, iters=20, record_every=5, backend="numpy")
    h = res.history
    assert h["epoch"] == [1, 2, 3]
    for key in ("rel_error", "objective", "regularizer", "n_switches", "reinit_index", "pb_norm2", "elapsed",
                "f_before_reinit", "f_after_reinit"):
        assert len(h[key]) == 3, key
    assert len(h["iterations"]) == 3 * 4
    rec = h["iterations"][0]
    assert {"objective", "rel_error", "step_change", "fresh_norm", "fresh_ps_norm"} <= set(rec)
    # ||P_B U||^2 from the history equals a direct computation
    Q = tc.subspace_basis(T)
    U = res.state["U"]
    PB = U - Q @ (Q.T @ U)
    assert h["pb_norm2"][-1] == pytest.approx(np.sum(PB**2), rel=1e-9)
    # objective = fit + regulariser, and the model is what the state says
    s = res.state["a"] * res.state["c"] ** (3 - 2)
    np.testing.assert_allclose(res.model.weights, s)
    f = tc.objective(U, res.state["c"], res.state["chat"], res.state["a"], T, res.params.lam)
    assert h["objective"][-1] == pytest.approx(float(f), rel=1e-10)


def test_dense_target_matches_factored():
    T = tc.random_target(6, 2, 3, seed=2)
    kw = dict(seed=1, epochs=3, iters=30, backend="numpy")
    a = tc.algorithm1(T, 5, **kw)
    b = tc.algorithm1(T.to_dense(), 5, **kw)
    np.testing.assert_allclose(a.history["rel_error"], b.history["rel_error"], rtol=1e-8)
    assert b.history["pb_norm2"][-1] is None  # the subspace of a dense target is unknown


def test_checkpoint_resume_equals_uninterrupted(tmp_path):
    T = tc.random_target(10, 2, 3, seed=4)
    kw = dict(seed=9, epochs=6, iters=25, backend="numpy")
    full = tc.algorithm1(T, 6, **kw)
    ck = tmp_path / "run.npz"
    stop_at_3 = lambda info: info["epoch"] == 3  # noqa: E731
    part = tc.algorithm1(T, 6, checkpoint=ck, callback=stop_at_3, **kw)
    assert len(part.history["epoch"]) == 3 and ck.exists()
    resumed = tc.algorithm1(T, 6, checkpoint=ck, **kw)
    assert resumed.history["epoch"] == list(range(1, 7))
    np.testing.assert_array_equal(resumed.model.factors, full.model.factors)
    np.testing.assert_array_equal(resumed.model.weights, full.model.weights)
    assert resumed.history["rel_error"] == full.history["rel_error"]
    with pytest.raises(ValueError, match="different parameters"):
        tc.algorithm1(T, 6, checkpoint=ck, **{**kw, "iters": 26})


def test_keyboard_interrupt_returns_partial_result():
    T = tc.random_target(10, 2, 3, seed=4)

    def interrupt(info):
        if info["epoch"] == 2:
            raise KeyboardInterrupt

    res = tc.algorithm1(T, 6, seed=0, epochs=5, iters=10, callback=interrupt, backend="numpy")
    assert res.interrupted and res.history["epoch"] == [1, 2]


def test_divergence_is_caught_with_last_finite_state():
    # the measured fact behind the default rule: a step and radius fine at order 3 diverge at order 4
    T3 = tc.random_target(50, 5, 3, seed=0)
    # (d = 50, r = 5, m = 60, eta = 0.05, delta = 1e-3: the boost sqrt(d (m + K))^{l-2} is ~70x larger at l = 4)
    ok = tc.algorithm1(T3, 60, seed=0, eta=0.05, delta=1e-3, epochs=3, iters=300, backend="numpy")
    assert ok.rel_error < 0.05
    T4 = tc.random_target(50, 5, 4, seed=0)
    with pytest.raises(tc.DivergenceError) as info:
        tc.algorithm1(T4, 60, seed=0, eta=0.05, delta=1e-3, epochs=3, iters=300, backend="numpy")
    err = info.value
    assert err.suggested_eta == pytest.approx(0.05 / 4)
    assert all(np.all(np.isfinite(v)) for v in err.state.values())
    assert err.epoch >= 1 and err.iteration >= 1
    assert "eta" in str(err)
    # batched runs freeze the diverged trial instead, keeping its last finite state
    b = tc.algorithm1_batch(T4, 60, seeds=[0], eta=0.05, delta=1e-3, epochs=2, iters=300, backend="numpy")
    assert b.diverged == [0]
    assert np.all(np.isfinite(b.results[0].state["U"]))


def test_polish_removes_regulariser_floor():
    T = tc.random_target(15, 3, 3, seed=3)
    base = tc.algorithm1(T, 10, seed=2, epochs=10, lam=2e-2, backend="numpy")
    pol = tc.algorithm1(T, 10, seed=2, epochs=10, lam=2e-2, polish=300, backend="numpy")
    assert base.rel_error > 0.01
    assert pol.rel_error < base.rel_error / 10
    assert pol.history["polish"][-1]["rel_error"] == pytest.approx(tc.rel_error(pol.model, T), abs=1e-6)


def test_float32_runs():
    T = tc.random_target(10, 2, 3, seed=0)
    res = tc.algorithm1(T, 6, seed=0, epochs=5, dtype="float32", backend="numpy")
    assert res.state["U"].dtype == np.float32
    assert res.rel_error < 0.05


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(m=0), ValueError, "m must be an integer >= 1"),
    (dict(m=2.5), TypeError, "m must be an integer"),
    (dict(epochs=0), ValueError, "epochs must be an integer >= 1"),
    (dict(iters=0), ValueError, "iters must be an integer >= 1"),
    (dict(delta=0.0), ValueError, "delta must be > 0"),
    (dict(delta=-1e-3), ValueError, "delta must be > 0"),
    (dict(eta=0.0), ValueError, "eta must be > 0"),
    (dict(eta=float("nan")), ValueError, "eta must be finite"),
    (dict(lam=-1.0), ValueError, "lam must be >= 0"),
    (dict(backend="torch"), ValueError, "backend must be one of"),
    (dict(dtype="float16"), ValueError, "dtype must be float64 or float32"),
    (dict(seed=-1), ValueError, "seed must be an integer >= 0"),
    (dict(polish=-1), ValueError, "polish must be an integer >= 0"),
    (dict(record_every=0), ValueError, "record_every must be an integer >= 1"),
])
def test_algorithm1_bad_input(kwargs, exc, match):
    T = tc.random_target(5, 1, 3, seed=0)
    args = {"m": 3, **kwargs}
    m = args.pop("m")
    with pytest.raises(exc, match=match):
        tc.algorithm1(T, m, **args)


def test_bad_targets_rejected():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="not symmetric"):
        tc.algorithm1(rng.standard_normal((4, 4, 4)), 3)
    X = tc.symmetrize(rng.standard_normal((4, 4, 4)))
    X[1, 2, 3] = np.inf
    with pytest.raises(ValueError, match="NaN or infinite"):
        tc.algorithm1(X, 3)
    with pytest.raises(ValueError, match="seeds"):
        tc.algorithm1_batch(tc.random_target(4, 1, 3), 3, seeds=[])
    with pytest.raises(ValueError, match="targets for"):
        tc.algorithm1_batch([tc.random_target(4, 1, 3)] * 2, 3, seeds=[1, 2, 3])


def test_init_state_starts_from_given_state_and_is_validated():
    T = tc.random_target(8, 2, 3, seed=0)
    fitted = tc.algorithm1(T, 6, seed=1, epochs=10, backend="numpy")
    st = fitted.state
    # restarting from a fitted state without re-initialisation keeps the fit
    again = tc.algorithm1(T, 6, seed=2, epochs=1, iters=10, reinit=False, backend="numpy",
                          init_state={k: st[k] for k in ("U", "a", "c", "chat", "switched")})
    assert again.history["rel_error"][0] == pytest.approx(fitted.rel_error, abs=1e-3)
    U = np.eye(8)[:, :6]
    res = tc.algorithm1(T, 6, epochs=1, iters=1, init_state={"U": U, "a": np.ones(6)}, reinit=False,
                        backend="numpy")
    np.testing.assert_allclose(res.state["chat"] * np.linalg.norm(res.state["U"], axis=0), 1.0)
    for bad, match in [({"U": U}, "at least 'U'"), ({"U": U[:, :5], "a": np.ones(6)}, "shape"),
                       ({"U": U, "a": np.zeros(6)}, "signs"), ({"U": 0 * U, "a": np.ones(6)}, "zero column"),
                       ({"U": U, "a": np.ones(6), "x": 1}, "unknown keys")]:
        with pytest.raises((ValueError, TypeError), match=match):
            tc.algorithm1(T, 6, init_state=bad, backend="numpy")


def test_polish_survives_duplicate_columns():
    # two columns converge onto one component: the least-squares refit matrix is singular
    T = tc.random_target(30, 3, 3, seed=104)
    res = tc.algorithm1(T, 6, seed=4, lam=0.01, polish=200, backend="numpy")
    assert np.isfinite(res.rel_error) and res.rel_error < 1e-3
    assert "polish_failed" not in res.history


def test_callback_states_are_copies_and_switches_recorded():
    T = tc.random_target(10, 2, 3, seed=0)
    states = []
    res = tc.algorithm1(T, 6, seed=0, epochs=4, iters=50, record_every=1, backend="numpy",
                        callback=lambda info: states.append(info["state"]))
    # a stored state is not overwritten by later re-initialisations
    for k in range(3):
        j = res.history["reinit_index"][k + 1]
        assert np.linalg.norm(states[k]["U"][0][:, j]) != pytest.approx(res.params.delta)
    np.testing.assert_array_equal(states[-1]["U"][0], res.state["U"])
    recs = res.history["iterations"]
    per_epoch = {}
    for rec in recs:
        per_epoch[rec["epoch"]] = per_epoch.get(rec["epoch"], 0) + rec["n_switches"]
    assert [per_epoch[e] for e in range(1, 5)] == res.history["n_switches"]
