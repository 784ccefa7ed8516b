"""Tests of tdcore.book.proof_pictures (the chapter *The proof in pictures*): one measurement per lemma."""

from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import tdcore  # noqa: E402
from tdcore.book import convergence as C  # noqa: E402
from tdcore.book import proof_pictures as P  # noqa: E402


def test_all_is_complete_and_shares_the_experiment_helpers():
    for name in P.__all__:
        assert hasattr(P, name), name
    assert P.sweep_targets is C.sweep_targets and P.load_full_run is C.load_full_run   # imported, not copied


@pytest.fixture(scope="module")
def recorded():
    target = P.sweep_targets(12, 2, 3, 1)[0]
    return P.recorded_run(target, 2, seed=1, epochs=4, iters=120)


def test_lemma3_steps(recorded):
    s = P.lemma3_steps(recorded)
    assert s["n_steps"] == 4 * 120
    assert s["n_increase_normal"] == 0
    assert s["df"].shape == s["switch"].shape
    P.plot_lemma3(s)
    target = recorded["target"]
    coarse = tdcore.algorithm1(target, 2, seed=0, epochs=2, iters=20, record_every=2)
    with pytest.raises(ValueError, match="record_every=1"):
        P.lemma3_steps(coarse)


def test_lemma3_flags_switch_steps_from_per_iteration_records():
    H = 3
    its = [{"epoch": 1, "iteration": t, "objective": f, "fresh_norm": 1e-4, "n_switches": sw}
           for t, f, sw in ((1, 1.0, 0), (2, 0.9, 1), (3, 0.95, 0))]
    res = SimpleNamespace(params=SimpleNamespace(iters=H, switch_threshold=1.0, order=3, d=5, target_norm=1.0),
                          history={"epoch": [1], "iterations": its, "objective": [0.94], "n_switches": [1]})
    s = P.lemma3_steps(res)
    np.testing.assert_allclose(s["df"], [-0.1, 0.05, -0.01])
    assert s["switch"].tolist() == [False, True, False]
    assert s["n_increase_normal"] == 0 and s["n_increase_switch"] == 1


def test_lemma5_and_lemma9(recorded):
    ratios = P.lemma5_ratios(recorded)
    assert ratios.shape == (4,) and np.all(ratios < 1)
    paths = P.lemma9_paths(recorded)
    assert len(paths["path"]) == 4 and all(p >= 0 for p in paths["path"])
    P.plot_lemma5(ratios)
    P.plot_lemma9(paths)


def test_lemma9_needs_a_regulariser():
    target = P.sweep_targets(6, 1, 3, 1)[0]
    run = tdcore.algorithm1(target, 2, seed=0, epochs=1, iters=5, record_every=1, lam=0.0)
    with pytest.raises(ValueError, match="lam > 0"):
        P.lemma9_paths(run)


def test_lemma6_rank_one_exact():
    # model zero: residual -T*; for a rank-one target S is one-dimensional, v = +-u*,
    # and the correlation is -a (+-1)^3 in {-1, +1}: c6 = 1 exactly
    target = P.sweep_targets(10, 1, 3, 1)[0]
    U = np.zeros((10, 1))
    mc = P.lemma6_correlations(target, U, np.zeros(1), n_samples=2000, seed=0)
    assert set(np.round(mc["corr"], 10)) <= {-1.0, 1.0}
    assert mc["c6"] == pytest.approx(1.0)
    full = P.lemma6_correlations(target, U, np.zeros(1), n_samples=2000, seed=0, space="full")
    assert full["c6"] < 0.5
    P.plot_lemma6(mc)
    with pytest.raises(ValueError, match="space"):
        P.lemma6_correlations(target, U, np.zeros(1), space="B")
    with pytest.raises(ValueError, match="zero"):
        P.lemma6_correlations(target, target.factors, target.weights)


def test_lemma7_growth_runs(recorded):
    g = P.lemma7_growth(recorded)
    assert g["n_epochs"] == 3
    assert len(g["epochs"]) == len(g["rate_after"]) == len(g["kappa"])
    P.plot_lemma7(g)


def test_fit_rate_is_the_exponential_rate():
    t = np.arange(1, 6)
    assert P._fit_rate(t, 3.0 * np.exp(0.25 * t)) == pytest.approx(0.25, rel=1e-12)
    assert np.isnan(P._fit_rate(t[:2], np.ones(2)))            # too few points
    assert np.isnan(P._fit_rate(t, np.r_[np.ones(4), 0.0]))    # log of zero


def test_lemma1_decrease_counts():
    def res(rel, fb, fend):
        return SimpleNamespace(history={"epoch": list(range(1, len(rel) + 1)), "rel_error": rel,
                                        "f_before_reinit": fb, "objective": fend})

    a = res([0.5, 0.5, 0.01], [0.5, 0.2, 0.2], [0.2, 0.19, 0.001])   # epochs 1-3 start above eps
    b = res([0.01, 0.01], [0.5, 0.01], [0.01, 0.02])                 # only epoch 1 counts
    out = P.lemma1_decrease([a, b], eps=0.05, substantial=0.1)
    assert out["n_epochs"] == 4 and out["n_decrease"] == 4 and out["n_substantial"] == 3
    assert out["fraction_substantial"] == pytest.approx(0.75)
    P.plot_lemma1(out)


def test_reinit_jumps_rows():
    out = P.reinit_jumps(ms=[2, 3], lams=[1e-2], d=6, r=1, order=3, seeds=[0, 1], epochs=3)
    assert len(out["rows"]) == 2
    for row in out["rows"]:
        assert row["bound"] == pytest.approx(1 / (row["lam"] * row["m"]))
        assert row["max_pb_ratio"] < 1
    P.plot_reinit_jumps(out)


def test_explorer_draws():
    fig, ax = plt.subplots()
    assert P.explore_fresh_growth(ax=ax, d=6, r=1, m=2, epoch=2) is ax
    assert ax.has_data()


def test_lemma3_switch_mismatch_uses_the_papers_level():
    its = [{"epoch": k, "iteration": t, "objective": 1.0 - 0.01 * t, "fresh_norm": n, "n_switches": sw}
           for k in (1, 2) for t, n, sw in ((1, 1.0, 0), (2, 1.5, 0), (3, 3.0, 1), (4, 3.1, 0))]
    params = dict(iters=4, switch_threshold=99.0, order=3, d=5, target_norm=1.0, m=2, epochs=2, delta=1.0)
    res = SimpleNamespace(params=SimpleNamespace(**params),
                          history={"epoch": [1, 2], "iterations": its, "objective": [0.9, 0.9], "n_switches": [1, 1]})
    # the paper's level 2 sqrt(m + K) delta = 4: no crossing, but a switch in epoch 2 (step 3)
    assert P.lemma3_steps(res)["n_switch_mismatch"] == 1
    params["delta"] = 0.7  # level 2.8: crossed in step 2 (1.5 -> 3.0), the switch was made in step 3
    res.params = SimpleNamespace(**params)
    assert P.lemma3_steps(res)["n_switch_mismatch"] == 2
    params["delta"] = 0.6  # level 2.4: the same crossing, still one step off
    its[5]["n_switches"], its[6]["n_switches"] = 1, 0
    res.params = SimpleNamespace(**params)
    assert P.lemma3_steps(res)["n_switch_mismatch"] == 0


def test_lemma3_bound_matches_the_engine_and_the_lemma(recorded):
    st = recorded["states"][1]
    p = recorded["result"].params
    out = P.lemma3_bound(recorded["target"], st, steps=60, eta=p.eta, lam=p.lam, delta=p.delta, seed=0)
    assert out["f"].shape == out["df"].shape == out["grad2"].shape == (60,)
    assert out["step_dev"] < 1e-12 and out["rescale_dev"] < 1e-12
    assert np.all(out["ratio"][~out["switch"]] >= 1)
    with pytest.raises(ValueError, match="unit Frobenius norm"):
        P.lemma3_bound(tdcore.SymCP([2.0], np.eye(12)[:, :1], 3), st, steps=1, eta=p.eta, lam=p.lam, delta=p.delta)


def test_lemma5_fresh_and_lemma9_with_norms(recorded):
    x = P.lemma5_fresh(recorded)
    assert x["ratio"].shape == (4 * 120,) and x["max_ratio"] <= 1 and x["n_increase"] == 0
    paths = P.lemma9_paths(recorded)
    assert len(paths["ratio_u"]) == 4 and paths["constant_u"] <= 3 ** 1.5
    assert np.isnan(P.lemma9_paths(recorded["result"])["constant_u"])   # no states: no norms


def test_lemma1_first_epoch_apart():
    def res(rel, fb, fend):
        return SimpleNamespace(history={"epoch": list(range(1, len(rel) + 1)), "rel_error": rel,
                                        "f_before_reinit": fb, "objective": fend})

    a = res([0.5, 0.5, 0.01], [0.5, 0.2, 0.2], [0.2, 0.19, 0.001])
    out = P.lemma1_decrease([a], eps=0.05, substantial=0.1, include_first=False)
    assert out["n_epochs"] == 2 and out["n_substantial"] == 1
    assert out["first"]["n"] == 1 and out["first"]["n_substantial"] == 1
    with pytest.raises(TypeError, match="include_first"):
        P.lemma1_decrease([a], eps=0.05, include_first=1)


def test_lemma7_independent_and_reinit_fresh_cost():
    g = P.lemma7_independent(12, 2, 3, 2, seeds=[0, 1], epochs=3, eps=0.05)
    assert g["n_runs"] == 2 and len(g["seed"]) == len(g["kappa_eps"]) == len(g["ps0_ratio"]) <= 2
    for k0, ke, e0 in zip(g["kappa"], g["kappa_eps"], g["eps_start"]):
        assert ke == pytest.approx(k0 * e0 / 0.05, rel=1e-12)
    j = P.reinit_jumps(ms=[3], lams=[0.05, 0.2], d=12, r=2, order=3, seeds=[0, 1], epochs=3)
    for row in j["rows"]:
        assert row["fresh_cost"] == pytest.approx(row["median_jump"] / (row["lam"] * row["delta"] ** 2))
    assert np.isfinite(j["slope_lam"])
