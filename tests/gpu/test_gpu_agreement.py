"""Algorithm 1 on the CuPy path: agreement with NumPy, syncs and launches per iteration, exact replays.

On a GPU machine these run on real CuPy (the counting tests skip there); elsewhere on
the emulator, whose reductions and matrix products sum in another order with 2e-16
noise.  Agreement tolerance 1e-8: with re-initialisation ties broken the same way on
both sides (_Run._reinit_index), the two runs differ only by rounding, amplified by the
iteration's sensitivity; the 1e-14 seen over these short runs leaves six orders of
magnitude for a real GPU's different kernels.
"""

import numpy as np
import pytest

import tdcore as tc
from tdcore._algorithm1 import _Run

pytestmark = pytest.mark.cupy


@pytest.mark.parametrize("order", [3, 4])
def test_cupy_agrees_with_numpy_with_reinit(order):
    T = tc.random_target(20, 3, order, seed=1)
    kw = dict(seed=3, epochs=4, iters=100, record_every=10)
    a = tc.algorithm1(T, 10, backend="numpy", **kw)
    b = tc.algorithm1(T, 10, backend="cupy", **kw)
    assert isinstance(b.model.factors, np.ndarray)
    assert b.history["reinit_index"] == a.history["reinit_index"]
    np.testing.assert_allclose(b.model.factors, a.model.factors, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(b.history["rel_error"], a.history["rel_error"], rtol=1e-8)
    # step_change = sqrt of a Gram expansion over (2m)^2 terms of size <= ||T||^2 = 1: its square
    # carries an absolute rounding error of about (2m)^2 eps ~ 1e-13, the value about sqrt(1e-13) ~ 3e-7
    for key, atol in (("objective", 1e-14), ("fresh_norm", 1e-14), ("step_change", 1e-6)):
        np.testing.assert_allclose([r[key] for r in b.history["iterations"]],
                                   [r[key] for r in a.history["iterations"]], rtol=1e-8, atol=atol)
    c = tc.algorithm1(T, 10, backend="cupy", return_numpy=False, **kw)
    assert type(c.model.factors).__module__.startswith("cupy")


def test_cupy_batch_agrees_with_numpy():
    targets = [tc.random_target(15, 2, 3, seed=s) for s in range(4)]
    kw = dict(seeds=[0, 1, 2, 3], epochs=3, iters=60)
    a = tc.algorithm1_batch(targets, 6, backend="numpy", **kw)
    b = tc.algorithm1_batch(targets, 6, backend="cupy", **kw)
    np.testing.assert_allclose(b.rel_errors, a.rel_errors, rtol=1e-8)
    for ra, rb in zip(a.results, b.results):
        np.testing.assert_allclose(rb.state["U"], ra.state["U"], rtol=1e-8, atol=1e-12)


def test_syncs_and_launches_per_iteration_within_budget(emulated, capsys):
    """Default settings: at most 1/16 sync per iteration over a whole run (set-up included)."""
    cp = emulated
    T = tc.random_target(30, 3, 3, seed=0)
    epochs, iters = 4, 300
    rows = []
    for name, kw in (("default", {}), ("tol", {"tol": 1e-9}), ("record_every=1", {"record_every": 1}),
                     ("batch B=8", {"batch": 8})):
        kw = dict(kw)
        B = kw.pop("batch", None)
        cp.reset_stats()
        if B:
            tc.algorithm1_batch(T, 12, seeds=range(B), epochs=epochs, iters=iters, backend="cupy", **kw)
        else:
            tc.algorithm1(T, 12, seed=0, epochs=epochs, iters=iters, backend="cupy", **kw)
        n = epochs * iters
        rows.append((name, cp.stats["syncs"] / n, cp.stats["launches"] / n, cp.stats["h2d"]))
    with capsys.disabled():
        print("\n  CuPy path under the emulator, d=30, m=12, K=4, H=300:")
        for name, s, la, up in rows:
            print(f"    {name:15s} syncs/iter {s:.4f}  launches/iter {la:5.1f}  uploads/run {up}")
    for name, s, la, up in rows:
        if name != "record_every=1":
            assert s <= 1 / 16, (name, s)
        # one upload per epoch for the re-initialisation, plus the set-up's few
        assert up <= epochs + 8, (name, up)
    # the step is fused: a plain step (no tol, no records) launches far fewer kernels than the 46 unfused ones
    assert rows[0][2] <= 25


@pytest.mark.parametrize("every", [1, 2, 5])
def test_replay_finds_the_exact_divergence(monkeypatch, every):
    """Rolling back to the last check and replaying gives today's per-iteration guarantee."""
    T = tc.random_target(20, 3, 3, seed=0)
    kw = dict(seed=0, eta=1.0, epochs=3, iters=200, backend="numpy", reinit=False)
    with pytest.raises(tc.DivergenceError) as ref:
        monkeypatch.setattr(_Run, "CHECK_EVERY_HOST", 1)
        tc.algorithm1(T, 12, **kw)
    monkeypatch.setattr(_Run, "CHECK_EVERY_HOST", every * 32)
    with pytest.raises(tc.DivergenceError) as got:
        tc.algorithm1(T, 12, **kw)
    r, g = ref.value, got.value
    assert (g.epoch, g.iteration) == (r.epoch, r.iteration) == (2, 157)
    for k in r.last_finite_state:
        np.testing.assert_array_equal(g.last_finite_state[k], r.last_finite_state[k])
    assert g.partial.history["rel_error"] == r.partial.history["rel_error"]


def test_replay_freezes_and_stops_at_the_exact_iteration(monkeypatch):
    T = tc.random_target(20, 3, 3, seed=0)
    kw = dict(seeds=[0, 1, 2], eta=1.0, epochs=3, iters=200, backend="numpy", record_every=9, reinit=False)
    monkeypatch.setattr(_Run, "CHECK_EVERY_HOST", 1)
    ref = tc.algorithm1_batch(T, 12, **kw)
    ref_tol = tc.algorithm1(T, 12, seed=0, epochs=6, iters=200, tol=0.3, backend="numpy")
    monkeypatch.setattr(_Run, "CHECK_EVERY_HOST", 32)
    got = tc.algorithm1_batch(T, 12, **kw)
    got_tol = tc.algorithm1(T, 12, seed=0, epochs=6, iters=200, tol=0.3, backend="numpy")
    assert got.diverged == ref.diverged and ref.diverged
    for a, b in zip(ref.results, got.results):
        assert a.history.get("diverged_at") == b.history.get("diverged_at")
        assert a.history["iterations"] == b.history["iterations"]
        np.testing.assert_array_equal(a.state["U"], b.state["U"])
    assert got_tol.history["stopped_at"] == ref_tol.history["stopped_at"]
    assert got_tol.history["stopped_at"][1] % 32 != 0  # inside a block: found by the replay
    np.testing.assert_array_equal(got_tol.model.factors, ref_tol.model.factors)


def test_replay_on_the_cupy_path(monkeypatch):
    # a diverging run amplifies rounding, so where it diverges differs between NumPy and the device;
    # on the device itself (deterministic kernels) the replay must find the per-iteration answer
    T = tc.random_target(20, 3, 3, seed=0)
    kw = dict(seed=0, eta=1.0, epochs=3, iters=200, reinit=False, backend="cupy")
    monkeypatch.setattr(_Run, "CHECK_EVERY", 1)
    with pytest.raises(tc.DivergenceError) as ref:
        tc.algorithm1(T, 12, **kw)
    monkeypatch.setattr(_Run, "CHECK_EVERY", 32)
    with pytest.raises(tc.DivergenceError) as got:
        tc.algorithm1(T, 12, **kw)
    assert (got.value.epoch, got.value.iteration) == (ref.value.epoch, ref.value.iteration)
    assert got.value.iteration % 32 != 0


def test_divergence_suggests_a_step_and_state_that_work():
    """Issue #11: the suggestion is min(eta/4, default eta), and the state it comes with is stable for it."""
    T = tc.random_target(20, 3, 3, seed=0)
    default = tc.default_params(20, 3, 12, tc.norm(T)).eta
    for eta in (1e6, 1.0):
        with pytest.raises(tc.DivergenceError) as info:
            tc.algorithm1(T, 12, seed=0, eta=eta, epochs=3, iters=200, backend="numpy", reinit=False)
        err = info.value
        assert err.suggested_eta == pytest.approx(min(eta / 4, default))
        assert all(np.all(np.isfinite(v)) for v in err.state.values())
        assert 0 <= err.state_iteration <= err.iteration - 1
        # restarting from the offered state with the suggested step does not diverge
        res = tc.algorithm1(T, 12, seed=1, eta=err.suggested_eta, epochs=2, iters=200, backend="numpy",
                            init_state=err.state)
        assert np.isfinite(res.rel_error)
