"""Tests of tdcore.book.algorithm1 (the chapter *Algorithm 1, piece by piece*): targets, batches, one run."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import tdcore  # noqa: E402
from tdcore.book import algorithm1 as A1  # noqa: E402

TINY = {"epochs": 3, "iters": 40}


def test_all_is_complete():
    for name in A1.__all__:
        assert hasattr(A1, name), name


# ---------------------------------------------------------------------------
# targets, keys, batches
# ---------------------------------------------------------------------------
def test_sweep_targets_deterministic_and_distinct():
    a = A1.sweep_targets(6, 2, 3, 3, target_seed=1)
    b = A1.sweep_targets(6, 2, 3, 3, target_seed=1)
    c = A1.sweep_targets(6, 2, 3, 3, target_seed=2)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.factors, y.factors)
    assert not np.allclose(a[0].factors, a[1].factors)
    assert not np.allclose(a[0].factors, c[0].factors)
    assert all(abs(t.norm() - 1) < 1e-12 for t in a)
    # the target of trial s does not depend on how many trials are drawn
    np.testing.assert_array_equal(A1.sweep_targets(6, 2, 3, 1, target_seed=1)[0].factors, a[0].factors)


@pytest.mark.parametrize("kwargs, exc", [
    (dict(d=0, r=1, order=3, n=1), ValueError),
    (dict(d=4, r=1, order=1, n=1), ValueError),
    (dict(d=4, r=1, order=3, n=1.5), TypeError),
])
def test_sweep_targets_rejects_bad_input(kwargs, exc):
    with pytest.raises(exc):
        A1.sweep_targets(**kwargs)


def test_batch_key_is_stable_and_distinguishes_options():
    k1 = A1.batch_key(8, 2, 3, 4, seeds=[0, 1], epochs=5)
    assert k1 == A1.batch_key(8, 2, 3, 4, seeds=[0, 1], epochs=5)
    assert k1 != A1.batch_key(8, 2, 3, 4, seeds=[0, 1], epochs=6)
    assert k1 != A1.batch_key(8, 2, 3, 4, seeds=[0, 1], epochs=5, reinit=False)
    assert A1.batch_key(8, 2, 3, 4, seeds=[0], lam=None) == A1.batch_key(8, 2, 3, 4, seeds=[0])


def test_run_batch_matches_algorithm1_and_uses_cache():
    cache = {}
    out = A1.run_batch(6, 1, 3, 2, seeds=[3, 4], cache=cache, **TINY)
    assert len(cache) == 1 and len(out["errors"]) == 2 and len(out["curves"][0]) == TINY["epochs"]
    target = A1.sweep_targets(6, 1, 3, 2)[1]
    single = tdcore.algorithm1(target, 2, seed=4, **TINY)
    assert out["errors"][1] == pytest.approx(single.rel_error, rel=1e-10)
    assert A1.run_batch(6, 1, 3, 2, seeds=[3, 4], cache=cache, **TINY) is out   # read back, not recomputed
    with pytest.raises(TypeError, match="unknown Algorithm 1 option"):
        A1.run_batch(6, 1, 3, 2, seeds=[0], bogus=1)
    with pytest.raises(ValueError, match="distinct"):
        A1.run_batch(6, 1, 3, 2, seeds=[0, 0])


# ---------------------------------------------------------------------------
# the mode switch against d
# ---------------------------------------------------------------------------
def test_switch_ablation_vs_d_shapes():
    res = A1.switch_ablation_vs_d([5, 6], 1, 3, 2, seeds=[0, 1], epochs=3)
    assert res["with"].shape == (2, 2) and res["without"].shape == (2, 2)
    A1.plot_switch_ablation(res)


# ---------------------------------------------------------------------------
# Algorithm 1 piece by piece
# ---------------------------------------------------------------------------
def test_squeeze_state_copies():
    st = {"U": np.ones((1, 3, 2)), "a": np.ones((1, 2)), "c": np.ones((1, 2)), "chat": np.ones((1, 2)),
          "switched": np.zeros((1, 2), bool)}
    out = A1._squeeze_state(st)
    st["c"][0, 0] = 99.0
    assert out["U"].shape == (3, 2) and out["c"].shape == (2,) and out["c"][0] == 1.0


def test_trajectory_run_and_plot():
    target = A1.sweep_targets(8, 2, 3, 1)[0]
    tr = A1.trajectory_run(target, 3, seed=0, epochs=3, iters=60, record_every=5)
    assert tr["norms"].shape == (3, 3) and tr["align"].shape == (3, 3)
    assert np.all((tr["align"] >= 0) & (tr["align"] <= 1 + 1e-12))
    p = tr["result"].params
    st = tr["result"].state
    # the stored per-epoch state is the real one: the last snapshot equals the final state
    np.testing.assert_allclose(tr["norms"][-1], np.linalg.norm(st["U"], axis=0))
    np.testing.assert_allclose(tr["weights"][-1], st["a"] * st["c"] ** (p.order - 2))
    axes = A1.plot_trajectories(tr)
    assert len(axes) == 4 and len(axes[0].figure.axes) == 4
    with pytest.raises(TypeError):
        A1.trajectory_run(target.to_dense(), 3)
    with pytest.raises(ValueError, match="four Axes"):
        A1.plot_trajectories(tr, axes=plt.subplots(1, 2)[1])


def test_rescue_seed_returns_a_rescued_trial_or_none():
    out = A1.rescue_seed(6, 1, 3, 2, seeds=[0, 1, 2], epochs=3)
    assert out["n_seeds"] == 3
    if out["seed"] is not None:
        assert out["target"] is not None and out["stuck_epochs"] >= 0


def test_regularizer_comparison_identity():
    rc = A1.regularizer_comparison(8, 2, 3, 3, seeds=[0, 1], lams=(0.0, 1e-2), epochs=3)
    for lam in rc["lams"]:
        x = rc[lam]
        # regulariser / lambda = sum ||u_i||^2 = total Frobenius size of the terms (once switched)
        np.testing.assert_allclose(x["sum_sq"], x["weight_l1"], rtol=1e-3)
    targets = A1.sweep_targets(8, 2, 3, 2)
    assert rc["target_l1"] == pytest.approx([float(np.abs(t.weights).sum()) for t in targets], rel=1e-15)


def test_explorer_draws():
    fig, ax = plt.subplots()
    assert A1.explore_run(ax=ax, d=6, r=1, m=2) is ax
    assert ax.has_data()
