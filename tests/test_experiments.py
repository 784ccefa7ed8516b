"""Tests of tdcore._experiments (the part *Beyond lazy training*) and scripts/full_sweeps.py."""

import importlib.util
import json
import math
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import tdcore  # noqa: E402
from tdcore import _experiments as E  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TINY = {"epochs": 3, "iters": 40}


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ---------------------------------------------------------------------------
# targets, keys, batches
# ---------------------------------------------------------------------------
def test_all_is_complete_and_reexported():
    for name in E.__all__:
        assert hasattr(E, name), name
        assert getattr(tdcore, name) is getattr(E, name), name


def test_sweep_targets_deterministic_and_distinct():
    a = E.sweep_targets(6, 2, 3, 3, target_seed=1)
    b = E.sweep_targets(6, 2, 3, 3, target_seed=1)
    c = E.sweep_targets(6, 2, 3, 3, target_seed=2)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.factors, y.factors)
    assert not np.allclose(a[0].factors, a[1].factors)
    assert not np.allclose(a[0].factors, c[0].factors)
    assert all(abs(t.norm() - 1) < 1e-12 for t in a)
    # the target of trial s does not depend on how many trials are drawn
    np.testing.assert_array_equal(E.sweep_targets(6, 2, 3, 1, target_seed=1)[0].factors, a[0].factors)


@pytest.mark.parametrize("kwargs, exc", [
    (dict(d=0, r=1, order=3, n=1), ValueError),
    (dict(d=4, r=1, order=1, n=1), ValueError),
    (dict(d=4, r=1, order=3, n=1.5), TypeError),
])
def test_sweep_targets_rejects_bad_input(kwargs, exc):
    with pytest.raises(exc):
        E.sweep_targets(**kwargs)


def test_batch_key_is_stable_and_distinguishes_options():
    k1 = E.batch_key(8, 2, 3, 4, seeds=[0, 1], epochs=5)
    assert k1 == E.batch_key(8, 2, 3, 4, seeds=[0, 1], epochs=5)
    assert k1 != E.batch_key(8, 2, 3, 4, seeds=[0, 1], epochs=6)
    assert k1 != E.batch_key(8, 2, 3, 4, seeds=[0, 1], epochs=5, reinit=False)
    assert E.batch_key(8, 2, 3, 4, seeds=[0], lam=None) == E.batch_key(8, 2, 3, 4, seeds=[0])


def test_run_batch_matches_algorithm1_and_uses_cache():
    cache = {}
    out = E.run_batch(6, 1, 3, 2, seeds=[3, 4], cache=cache, **TINY)
    assert len(cache) == 1 and len(out["errors"]) == 2 and len(out["curves"][0]) == TINY["epochs"]
    target = E.sweep_targets(6, 1, 3, 2)[1]
    single = tdcore.algorithm1(target, 2, seed=4, **TINY)
    assert out["errors"][1] == pytest.approx(single.rel_error, rel=1e-10)
    assert E.run_batch(6, 1, 3, 2, seeds=[3, 4], cache=cache, **TINY) is out   # read back, not recomputed
    with pytest.raises(TypeError, match="unknown Algorithm 1 option"):
        E.run_batch(6, 1, 3, 2, seeds=[0], bogus=1)
    with pytest.raises(ValueError, match="distinct"):
        E.run_batch(6, 1, 3, 2, seeds=[0, 0])


def test_epochs_to_accuracy_and_late_error():
    assert E.epochs_to_accuracy([0.9, 0.3, 0.01, 0.004], 0.05) == 3
    assert E.epochs_to_accuracy([0.9, None, float("nan")], 0.05) == math.inf
    assert E._late_error([0.5, 0.01, 0.02], 2) == 0.02
    assert math.isnan(E._late_error([0.01], 2))
    assert math.isnan(E._late_error([0.5, None], 1))


# ---------------------------------------------------------------------------
# success curves and the m* search (logic tested on a pre-filled cache)
# ---------------------------------------------------------------------------
def _fake_cache(d, r, order, pattern, seeds, epochs=4):
    """A cache in which width m succeeds in the trials marked True in pattern[m]."""
    cache = {}
    for m, ok in pattern.items():
        curves = [[0.5] * (epochs - 1) + [0.001 if o else 0.5] for o in ok]
        cache[E.batch_key(d, r, order, m, seeds=seeds, epochs=epochs)] = {
            "errors": [c[-1] for c in curves], "curves": curves, "diverged": [], "elapsed": 0.0, "params": {}}
    return cache


def test_m_star_search_walks_up_and_certifies():
    seeds = [0, 1, 2, 3]
    pattern = {1: [False] * 4, 2: [True, False, False, True], 3: [True] * 4, 4: [True] * 4}
    cache = _fake_cache(10, 2, 3, pattern, seeds)
    res = E.m_star_search(10, 2, 3, seeds=seeds, eps=0.05, q=0.75, epochs=4, cache=cache)
    assert res.m_star == 3 and res.certified
    assert res.curve.ms == [1, 2, 3]
    np.testing.assert_allclose(res.curve.success, [0, 0.5, 1])
    # starting above m*, the search walks down until a width fails
    res = E.m_star_search(10, 2, 3, seeds=seeds, eps=0.05, q=0.75, epochs=4, start=4, cache=cache)
    assert res.m_star == 3 and res.certified and res.curve.ms == [2, 3, 4]
    # q = 0.5 accepts m = 2
    assert E.m_star_search(10, 2, 3, seeds=seeds, eps=0.05, q=0.5, epochs=4, cache=cache).m_star == 2
    # nothing succeeds up to m_max: NaN
    res = E.m_star_search(10, 2, 3, seeds=seeds, eps=0.05, q=0.75, epochs=4, m_max=2, cache=cache)
    assert math.isnan(res.m_star) and not res.certified


def test_stable_epochs_rejects_a_lucky_last_epoch():
    seeds = [0, 1]
    cache = _fake_cache(10, 1, 3, {1: [True, True]}, seeds)   # fitted in the last epoch only
    c1 = E.success_curve(10, 1, 3, [1], seeds=seeds, eps=0.05, epochs=4, cache=cache)
    c2 = E.success_curve(10, 1, 3, [1], seeds=seeds, eps=0.05, epochs=4, stable_epochs=2, cache=cache)
    assert c1.success[0] == 1 and c2.success[0] == 0 and c2.final_success[0] == 1


def test_success_curve_roundtrip_and_m_star():
    c = E.success_curve(6, 1, 3, [1, 2], seeds=[0, 1], eps=0.05, **TINY)
    assert c.errors.shape == (2, 2) and c.final_errors.shape == (2, 2)
    back = E.SuccessCurve.from_dict(json.loads(json.dumps(c.to_dict())))
    np.testing.assert_allclose(back.errors, c.errors)
    np.testing.assert_allclose(back.success, c.success)
    assert (math.isnan(back.m_star(0.5)) and math.isnan(c.m_star(0.5))) or back.m_star(0.5) == c.m_star(0.5)


def test_m_star_sweep_fit_and_roundtrip():
    seeds = [0, 1]
    cache = {}
    for r in (1, 2, 3):   # m* = r + 1 for every r
        cache.update(_fake_cache(8, r, 3, {m: [m >= r + 1] * 2 for m in range(max(1, r - 1), r + 3)}, seeds))
    sw = E.m_star_sweep("r", [1, 2, 3], order=3, d=8, seeds=seeds, eps=0.05, q=0.8, epochs=4, cache=cache)
    np.testing.assert_array_equal(sw.m_star, [2, 3, 4])
    assert 0.5 < sw.fit.slope < 0.8   # log(r + 1) against log r
    back = E.MStarSweep.from_dict(json.loads(json.dumps(sw.to_dict())))
    np.testing.assert_array_equal(back.m_star, sw.m_star)
    assert back.fit.slope == pytest.approx(sw.fit.slope)
    fig = E.plot_m_star_vs_r(back, theory_exponent=7.5)
    assert len(fig.axes[0].get_lines()) >= 3
    with pytest.raises(ValueError):
        E.m_star_sweep("x", [1], order=3, d=8, seeds=seeds)


def test_headline_data_figure_and_roundtrip():
    hd = E.headline_data(orders=(3,), alg_ds={3: [4, 5, 6]}, lazy_ds={3: [3, 4, 5]}, seeds=[0, 1], lazy_seeds=[0],
                         eps=0.1, q=0.5, epochs=3, stable_epochs=1)
    alg, lazy = hd.slopes()[3]
    assert np.isfinite(lazy) and lazy > 0   # the lazy fit's m* grows with d
    fig = E.headline_figure(hd)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any("Algorithm 1" in s for s in labels) and any("lazy" in s for s in labels)
    back = E.HeadlineData.from_dict(json.loads(json.dumps(hd.to_dict())))
    assert back.slopes()[3][1] == pytest.approx(lazy)
    E.plot_headline(back)


# ---------------------------------------------------------------------------
# error curves, ablations, lambda sweep
# ---------------------------------------------------------------------------
def test_error_curves_and_plot():
    res = E.error_curves([{"d": 6, "r": 1, "order": 3, "m": 2, **TINY}], seeds=[0, 1])
    assert res[0]["curves"].shape == (2, TINY["epochs"])
    E.plot_error_curves(res, eps=0.05)
    with pytest.raises(ValueError, match="needs d, r, order and m"):
        E.error_curves([{"d": 6}], seeds=[0])


def test_ablation_study_and_roundtrip():
    ab = E.ablation_study(6, 1, 3, 2, seeds=[0, 1], eps=0.05, epochs=3)
    assert ab.variants == list(E._VARIANTS)
    rows = ab.table()
    assert {r["variant"] for r in rows} == set(E._VARIANTS)
    back = E.AblationResult.from_dict(json.loads(json.dumps(ab.to_dict())))
    assert back.table() == rows or all(
        (a["success"] == b["success"]) for a, b in zip(back.table(), rows))
    E.plot_ablation(ab)
    with pytest.raises(ValueError, match="unknown variant"):
        E.ablation_study(6, 1, 3, 2, seeds=[0], variants=["nope"])


def test_switch_ablation_vs_d_shapes():
    res = E.switch_ablation_vs_d([5, 6], 1, 3, 2, seeds=[0, 1], epochs=3)
    assert res["with"].shape == (2, 2) and res["without"].shape == (2, 2)
    E.plot_switch_ablation(res)


def test_lambda_sweep_floor_and_polish():
    sw = E.lambda_sweep([1e-2, 3e-2, 1e-1], d=8, r=1, order=3, m=2, seeds=[0, 1], polish=30, epochs=4)
    med = np.nanmedian(sw.errors, axis=1)
    assert np.all(np.diff(med) > 0)                        # the floor grows with lambda
    assert 0.7 < sw.fit.slope < 1.3
    assert np.all(np.nanmedian(sw.polished, axis=1) < med)
    back = E.LambdaSweep.from_dict(json.loads(json.dumps(sw.to_dict())))
    np.testing.assert_allclose(back.errors, sw.errors)
    E.plot_lambda_sweep(back)
    with pytest.raises(ValueError, match="> 0"):
        E.lambda_sweep([0.0, 1e-2, 1e-1], d=8, r=1, order=3, m=2, seeds=[0])


def test_polish_falls_back_to_single_trials(monkeypatch):
    targets = E.sweep_targets(6, 1, 3, 2)

    def broken_batch(*a, **k):
        raise ValueError("weights contains NaN or infinite entries")

    calls = []
    real = E.algorithm1

    def flaky_single(target, m, *, seed, **kw):
        calls.append(seed)
        if seed == 1:
            raise ValueError("weights contains NaN or infinite entries")
        return real(target, m, seed=seed, **kw)

    monkeypatch.setattr(E, "algorithm1_batch", broken_batch)
    monkeypatch.setattr(E, "algorithm1", flaky_single)
    out = E._polished_errors(targets, 2, [0, 1], 1e-2, 10, 3)
    assert calls == [0, 1] and np.isfinite(out[0]) and math.isnan(out[1])


# ---------------------------------------------------------------------------
# Algorithm 1 piece by piece
# ---------------------------------------------------------------------------
def test_squeeze_state_copies():
    st = {"U": np.ones((1, 3, 2)), "a": np.ones((1, 2)), "c": np.ones((1, 2)), "chat": np.ones((1, 2)),
          "switched": np.zeros((1, 2), bool)}
    out = E._squeeze_state(st)
    st["c"][0, 0] = 99.0
    assert out["U"].shape == (3, 2) and out["c"].shape == (2,) and out["c"][0] == 1.0


def test_trajectory_run_and_plot():
    target = E.sweep_targets(8, 2, 3, 1)[0]
    tr = E.trajectory_run(target, 3, seed=0, epochs=3, iters=60, record_every=5)
    assert tr["norms"].shape == (3, 3) and tr["align"].shape == (3, 3)
    assert np.all((tr["align"] >= 0) & (tr["align"] <= 1 + 1e-12))
    p = tr["result"].params
    st = tr["result"].state
    # the stored per-epoch state is the real one: the last snapshot equals the final state
    np.testing.assert_allclose(tr["norms"][-1], np.linalg.norm(st["U"], axis=0))
    np.testing.assert_allclose(tr["weights"][-1], st["a"] * st["c"] ** (p.order - 2))
    fig = E.plot_trajectories(tr)
    assert len(fig.axes) == 4
    with pytest.raises(TypeError):
        E.trajectory_run(target.to_dense(), 3)


def test_rescue_seed_returns_a_rescued_trial_or_none():
    out = E.rescue_seed(6, 1, 3, 2, seeds=[0, 1, 2], epochs=3)
    assert out["n_seeds"] == 3
    if out["seed"] is not None:
        assert out["target"] is not None and out["stuck_epochs"] >= 0


def test_regularizer_comparison_identity():
    rc = E.regularizer_comparison(8, 2, 3, 3, seeds=[0, 1], lams=(0.0, 1e-2), epochs=3)
    for lam in rc["lams"]:
        x = rc[lam]
        # regulariser / lambda = sum ||u_i||^2 = total Frobenius size of the terms (once switched)
        np.testing.assert_allclose(x["sum_sq"], x["weight_l1"], rtol=1e-3)


# ---------------------------------------------------------------------------
# the lemmas
# ---------------------------------------------------------------------------
@pytest.fixture(scope="module")
def recorded():
    target = E.sweep_targets(12, 2, 3, 1)[0]
    return E.recorded_run(target, 2, seed=1, epochs=4, iters=120)


def test_lemma3_steps(recorded):
    s = E.lemma3_steps(recorded)
    assert s["n_steps"] == 4 * 120
    assert s["n_increase_normal"] == 0
    assert s["df"].shape == s["switch"].shape
    E.plot_lemma3(s)
    target = recorded["target"]
    coarse = tdcore.algorithm1(target, 2, seed=0, epochs=2, iters=20, record_every=2)
    with pytest.raises(ValueError, match="record_every=1"):
        E.lemma3_steps(coarse)


def test_lemma3_flags_switch_steps_from_per_iteration_records():
    H = 3
    its = [{"epoch": 1, "iteration": t, "objective": f, "fresh_norm": 1e-4, "n_switches": sw}
           for t, f, sw in ((1, 1.0, 0), (2, 0.9, 1), (3, 0.95, 0))]
    res = SimpleNamespace(params=SimpleNamespace(iters=H, switch_threshold=1.0),
                          history={"epoch": [1], "iterations": its, "objective": [0.94], "n_switches": [1]})
    s = E.lemma3_steps(res)
    np.testing.assert_allclose(s["df"], [-0.1, 0.05, -0.01])
    assert s["switch"].tolist() == [False, True, False]
    assert s["n_increase_normal"] == 0 and s["n_increase_switch"] == 1


def test_lemma5_and_lemma9(recorded):
    ratios = E.lemma5_ratios(recorded)
    assert ratios.shape == (4,) and np.all(ratios < 1)
    paths = E.lemma9_paths(recorded)
    assert len(paths["path"]) == 4 and all(p >= 0 for p in paths["path"])
    E.plot_lemma5(ratios)
    E.plot_lemma9(paths)


def test_lemma9_needs_a_regulariser():
    target = E.sweep_targets(6, 1, 3, 1)[0]
    run = tdcore.algorithm1(target, 2, seed=0, epochs=1, iters=5, record_every=1, lam=0.0)
    with pytest.raises(ValueError, match="lam > 0"):
        E.lemma9_paths(run)


def test_lemma6_rank_one_exact():
    # model zero: residual -T*; for a rank-one target S is one-dimensional, v = +-u*,
    # and the correlation is -a (+-1)^3 in {-1, +1}: c6 = 1 exactly
    target = E.sweep_targets(10, 1, 3, 1)[0]
    U = np.zeros((10, 1))
    mc = E.lemma6_correlations(target, U, np.zeros(1), n_samples=2000, seed=0)
    assert set(np.round(mc["corr"], 10)) <= {-1.0, 1.0}
    assert mc["c6"] == pytest.approx(1.0)
    full = E.lemma6_correlations(target, U, np.zeros(1), n_samples=2000, seed=0, space="full")
    assert full["c6"] < 0.5
    E.plot_lemma6(mc)
    with pytest.raises(ValueError, match="space"):
        E.lemma6_correlations(target, U, np.zeros(1), space="B")
    with pytest.raises(ValueError, match="zero"):
        E.lemma6_correlations(target, target.factors, target.weights)


def test_lemma7_growth_runs(recorded):
    g = E.lemma7_growth(recorded)
    assert g["n_epochs"] == 3
    assert len(g["epochs"]) == len(g["rate_after"]) == len(g["kappa"])
    E.plot_lemma7(g)


def test_lemma1_decrease_counts():
    def res(rel, fb, fend):
        return SimpleNamespace(history={"epoch": list(range(1, len(rel) + 1)), "rel_error": rel,
                                        "f_before_reinit": fb, "objective": fend})

    a = res([0.5, 0.5, 0.01], [0.5, 0.2, 0.2], [0.2, 0.19, 0.001])   # epochs 1-3 start above eps
    b = res([0.01, 0.01], [0.5, 0.01], [0.01, 0.02])                 # only epoch 1 counts
    out = E.lemma1_decrease([a, b], eps=0.05, substantial=0.1)
    assert out["n_epochs"] == 4 and out["n_decrease"] == 4 and out["n_substantial"] == 3
    assert out["fraction_substantial"] == pytest.approx(0.75)
    E.plot_lemma1(out)


def test_reinit_jumps_rows():
    out = E.reinit_jumps(ms=[2, 3], lams=[1e-2], d=6, r=1, order=3, seeds=[0, 1], epochs=3)
    assert len(out["rows"]) == 2
    for row in out["rows"]:
        assert row["bound"] == pytest.approx(1 / (row["lam"] * row["m"]))
        assert row["max_pb_ratio"] < 1
    E.plot_reinit_jumps(out)


# ---------------------------------------------------------------------------
# stored results, explorers, the CLI script
# ---------------------------------------------------------------------------
def test_load_results(tmp_path, monkeypatch):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "x.json").write_text('{"a": 1}')
    monkeypatch.chdir(tmp_path)
    assert E.load_results("x.json") == {"a": 1}
    assert E.load_results(str(tmp_path / "results" / "x.json")) == {"a": 1}
    assert E.load_results("missing.json") is None
    with pytest.raises(FileNotFoundError, match="full_sweeps"):
        E.load_results("missing.json", required=True)


def test_explorers_draw():
    for fn, kw in ((E.explore_run, dict(d=6, r=1, m=2)),
                   (E.explore_error_curve, dict(d=6, r=1, m=2, epochs=2)),
                   (E.explore_fresh_growth, dict(d=6, r=1, m=2, epoch=2))):
        fig, ax = plt.subplots()
        fn(ax=ax, **kw)
        assert ax.has_data()


def _load_script():
    spec = importlib.util.spec_from_file_location("full_sweeps", ROOT / "scripts" / "full_sweeps.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_full_sweeps_checkpoint_and_resume(tmp_path):
    mod = _load_script()
    out, ck = tmp_path / "r.json", tmp_path / "ck.json"
    args = ["--size", "tiny", "--out", str(out), "--checkpoint", str(ck), "--quiet"]
    # a budget that is already spent stops before the first batch, cleanly
    assert mod.main(args + ["--max-minutes", "0"]) == 2 and not out.exists()
    # stop part-way (the cache refuses new batches after 3), then resume
    cache = mod.CheckpointCache(str(ck))
    orig = mod.CheckpointCache.__setitem__

    def limited(self, key, value):
        orig(self, key, value)
        if self.new >= 3:
            raise KeyboardInterrupt

    mod.CheckpointCache.__setitem__ = limited
    try:
        assert mod.main(args) == 2
    finally:
        mod.CheckpointCache.__setitem__ = orig
    saved = json.loads(ck.read_text())
    assert len(saved) == 3 and not out.exists()
    assert mod.main(args) == 0
    first = json.loads(out.read_text())
    assert first["meta"]["batches_from_checkpoint"] == 3
    assert {"headline", "success_curves", "m_star_vs_r", "ablation", "lambda_sweep", "reinit_jumps"} <= set(first)
    # a fresh, uninterrupted run gives the same results
    out2 = tmp_path / "r2.json"
    assert mod.main(["--size", "tiny", "--out", str(out2), "--checkpoint", str(tmp_path / "ck2.json"),
                     "--quiet"]) == 0
    second = json.loads(out2.read_text())
    for key in ("headline", "success_curves", "m_star_vs_r", "ablation", "reinit_jumps"):
        a, b = json.dumps(first[key], sort_keys=True), json.dumps(second[key], sort_keys=True)
        # elapsed times differ; everything else must match
        strip = lambda s: json.loads(s)  # noqa: E731
        assert _drop_elapsed(strip(a)) == _drop_elapsed(strip(b)), key
    del cache


def _drop_elapsed(o):
    if isinstance(o, dict):
        return {k: _drop_elapsed(v) for k, v in o.items() if k != "elapsed"}
    if isinstance(o, list):
        return [_drop_elapsed(v) for v in o]
    return o


def test_stored_results_file_is_consistent():
    """The committed results/convergence_full.json (if present) has every section the chapters read."""
    data = E.load_results("convergence_full.json")
    if data is None:
        pytest.skip("results/convergence_full.json not present")
    for key in ("headline", "success_curves", "m_star_vs_r", "m_star_vs_r_long", "error_curves", "ablation",
                "switch_ablation", "lambda_sweep", "reinit_jumps", "meta"):
        assert key in data, key
    hd = E.HeadlineData.from_dict(data["headline"])
    assert set(hd.orders) == {3, 4}
    for r in data["reinit_jumps"]["rows"]:
        assert "max_epoch_increase" in r
