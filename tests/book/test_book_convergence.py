"""Tests of tdcore.book.convergence (the chapter *Convergence in practice*)."""

import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tdcore._stats import epochs_to_accuracy  # noqa: E402
from tdcore.book import algorithm1 as A1  # noqa: E402
from tdcore.book import convergence as C  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
TINY = {"epochs": 3, "iters": 40}


def test_all_is_complete():
    for name in C.__all__:
        assert hasattr(C, name), name
    # the ablations are computed by the Algorithm 1 module and re-exported, not copied
    assert C.ablation_study is A1.ablation_study and C.run_batch is A1.run_batch


def test_epochs_to_accuracy_and_late_error():
    assert epochs_to_accuracy([0.9, 0.3, 0.01, 0.004], 0.05) == 3
    assert epochs_to_accuracy([0.9, None, float("nan")], 0.05) == math.inf
    assert C._late_error([0.5, 0.01, 0.02], 2) == 0.02
    assert math.isnan(C._late_error([0.01], 2))
    assert math.isnan(C._late_error([0.5, None], 1))


# ---------------------------------------------------------------------------
# success curves and the m* search (logic tested on a pre-filled cache)
# ---------------------------------------------------------------------------
def _fake_cache(d, r, order, pattern, seeds, epochs=4):
    """A cache in which width m succeeds in the trials marked True in pattern[m]."""
    cache = {}
    for m, ok in pattern.items():
        curves = [[0.5] * (epochs - 1) + [0.001 if o else 0.5] for o in ok]
        cache[C.batch_key(d, r, order, m, seeds=seeds, epochs=epochs)] = {
            "errors": [c[-1] for c in curves], "curves": curves, "diverged": [], "elapsed": 0.0, "params": {}}
    return cache


def test_m_star_search_walks_up_and_certifies():
    seeds = [0, 1, 2, 3]
    pattern = {1: [False] * 4, 2: [True, False, False, True], 3: [True] * 4, 4: [True] * 4}
    cache = _fake_cache(10, 2, 3, pattern, seeds)
    res = C.m_star_search(10, 2, 3, seeds=seeds, eps=0.05, q=0.75, epochs=4, cache=cache)
    assert res.m_star == 3 and res.certified
    assert res.curve.ms == [1, 2, 3]
    np.testing.assert_allclose(res.curve.success, [0, 0.5, 1])
    # starting above m*, the search walks down until a width fails
    res = C.m_star_search(10, 2, 3, seeds=seeds, eps=0.05, q=0.75, epochs=4, start=4, cache=cache)
    assert res.m_star == 3 and res.certified and res.curve.ms == [2, 3, 4]
    # q = 0.5 accepts m = 2
    assert C.m_star_search(10, 2, 3, seeds=seeds, eps=0.05, q=0.5, epochs=4, cache=cache).m_star == 2
    # nothing succeeds up to m_max: NaN
    res = C.m_star_search(10, 2, 3, seeds=seeds, eps=0.05, q=0.75, epochs=4, m_max=2, cache=cache)
    assert math.isnan(res.m_star) and not res.certified


def test_m_star_search_certifies_at_m_min():
    seeds = [0, 1]
    cache = _fake_cache(10, 1, 3, {1: [True, True], 2: [True, True]}, seeds)
    res = C.m_star_search(10, 1, 3, seeds=seeds, eps=0.05, q=0.8, epochs=4, start=2, cache=cache)
    assert res.m_star == 1 and res.certified and res.curve.ms == [1, 2]


def test_stable_epochs_rejects_a_lucky_last_epoch():
    seeds = [0, 1]
    cache = _fake_cache(10, 1, 3, {1: [True, True]}, seeds)   # fitted in the last epoch only
    c1 = C.success_curve(10, 1, 3, [1], seeds=seeds, eps=0.05, epochs=4, cache=cache)
    c2 = C.success_curve(10, 1, 3, [1], seeds=seeds, eps=0.05, epochs=4, stable_epochs=2, cache=cache)
    assert c1.success[0] == 1 and c2.success[0] == 0 and c2.final_success[0] == 1


def test_success_curve_roundtrip_and_m_star():
    c = C.success_curve(6, 1, 3, [1, 2], seeds=[0, 1], eps=0.05, **TINY)
    assert c.errors.shape == (2, 2) and c.final_errors.shape == (2, 2)
    back = C.SuccessCurve.from_dict(json.loads(json.dumps(c.to_dict())))
    np.testing.assert_allclose(back.errors, c.errors)
    np.testing.assert_allclose(back.success, c.success)
    assert (math.isnan(back.m_star(0.5)) and math.isnan(c.m_star(0.5))) or back.m_star(0.5) == c.m_star(0.5)


def test_m_star_sweep_fit_and_roundtrip():
    seeds = [0, 1]
    cache = {}
    for r in (1, 2, 3):   # m* = r + 1 for every r
        cache.update(_fake_cache(8, r, 3, {m: [m >= r + 1] * 2 for m in range(max(1, r - 1), r + 3)}, seeds))
    sw = C.m_star_sweep("r", [1, 2, 3], order=3, d=8, seeds=seeds, eps=0.05, q=0.8, epochs=4, cache=cache)
    np.testing.assert_array_equal(sw.m_star, [2, 3, 4])
    assert 0.5 < sw.fit.slope < 0.8   # log(r + 1) against log r
    back = C.MStarSweep.from_dict(json.loads(json.dumps(sw.to_dict())))
    np.testing.assert_array_equal(back.m_star, sw.m_star)
    assert back.fit.slope == pytest.approx(sw.fit.slope)
    ax = C.plot_m_star_vs_r(back, theory_exponent=7.5)
    assert len(ax.get_lines()) >= 3
    with pytest.raises(ValueError):
        C.m_star_sweep("x", [1], order=3, d=8, seeds=seeds)


def test_m_star_sweep_without_enough_points_has_no_fit():
    seeds = [0, 1]
    cache = _fake_cache(8, 1, 3, {1: [False] * 2, 2: [True] * 2}, seeds)
    cache.update(_fake_cache(8, 2, 3, {m: [False] * 2 for m in range(1, 4)}, seeds))
    sw = C.m_star_sweep("r", [1, 2], order=3, d=8, seeds=seeds, eps=0.05, epochs=4, m_max=3, cache=cache)
    assert sw.m_star[0] == 2 and math.isnan(sw.m_star[1]) and sw.fit is None
    assert C.MStarSweep.from_dict(json.loads(json.dumps(sw.to_dict()))).fit is None


def test_headline_data_figure_and_roundtrip():
    hd = C.headline_data(orders=(3,), alg_ds={3: [4, 5, 6]}, lazy_ds={3: [3, 4, 5]}, seeds=[0, 1], lazy_seeds=[0],
                         eps=0.1, q=0.5, epochs=3, stable_epochs=1)
    alg, lazy = hd.slopes()[3]
    assert np.isfinite(lazy) and lazy > 0   # the lazy fit's m* grows with d
    axes = C.headline_figure(hd)
    labels = [t.get_text() for t in axes[0].get_legend().get_texts()]
    assert any("Algorithm 1" in s for s in labels) and any("lazy" in s for s in labels)
    back = C.HeadlineData.from_dict(json.loads(json.dumps(hd.to_dict())))
    assert back.slopes()[3][1] == pytest.approx(lazy)
    C.plot_headline(back)
    with pytest.raises(ValueError, match="order"):
        C.plot_headline(back, order=4)


# ---------------------------------------------------------------------------
# error curves, ablations, lambda sweep
# ---------------------------------------------------------------------------
def test_error_curves_and_plot():
    res = C.error_curves([{"d": 6, "r": 1, "order": 3, "m": 2, **TINY}], seeds=[0, 1])
    assert res[0]["curves"].shape == (2, TINY["epochs"])
    C.plot_error_curves(res, eps=0.05)
    with pytest.raises(ValueError, match="needs d, r, order and m"):
        C.error_curves([{"d": 6}], seeds=[0])


def test_ablation_study_and_roundtrip():
    ab = C.ablation_study(6, 1, 3, 2, seeds=[0, 1], eps=0.05, epochs=3)
    assert ab.variants == list(A1._VARIANTS)
    rows = ab.table()
    assert {r["variant"] for r in rows} == set(A1._VARIANTS)
    back = C.AblationResult.from_dict(json.loads(json.dumps(ab.to_dict())))
    assert back.table() == rows or all(
        (a["success"] == b["success"]) for a, b in zip(back.table(), rows))
    C.plot_ablation(ab)
    with pytest.raises(ValueError, match="unknown variant"):
        C.ablation_study(6, 1, 3, 2, seeds=[0], variants=["nope"])


def test_lambda_sweep_floor_and_polish():
    sw = C.lambda_sweep([1e-2, 3e-2, 1e-1], d=8, r=1, order=3, m=2, seeds=[0, 1], polish=30, epochs=4)
    med = np.nanmedian(sw.errors, axis=1)
    assert np.all(np.diff(med) > 0)                        # the floor grows with lambda
    assert 0.7 < sw.fit.slope < 1.3
    assert np.all(np.nanmedian(sw.polished, axis=1) < med)
    back = C.LambdaSweep.from_dict(json.loads(json.dumps(sw.to_dict())))
    np.testing.assert_allclose(back.errors, sw.errors)
    C.plot_lambda_sweep(back)
    with pytest.raises(ValueError, match="> 0"):
        C.lambda_sweep([0.0, 1e-2, 1e-1], d=8, r=1, order=3, m=2, seeds=[0])


def test_polish_falls_back_to_single_trials(monkeypatch):
    targets = C.sweep_targets(6, 1, 3, 2)

    def broken_batch(*a, **k):
        raise ValueError("weights contains NaN or infinite entries")

    calls = []
    real = C.algorithm1

    def flaky_single(target, m, *, seed, **kw):
        calls.append(seed)
        if seed == 1:
            raise ValueError("weights contains NaN or infinite entries")
        return real(target, m, seed=seed, **kw)

    monkeypatch.setattr(C, "algorithm1_batch", broken_batch)
    monkeypatch.setattr(C, "algorithm1", flaky_single)
    out = C._polished_errors(targets, 2, [0, 1], 1e-2, 10, 3)
    assert calls == [0, 1] and np.isfinite(out[0]) and math.isnan(out[1])


# ---------------------------------------------------------------------------
# stored results, explorer, the CLI script
# ---------------------------------------------------------------------------
def test_load_full_run(tmp_path, monkeypatch):
    (tmp_path / "x.json").write_text('{"a": 1}')
    assert C.load_full_run("x.json", directory=tmp_path) == {"a": 1}
    monkeypatch.setenv("TDCORE_RESULTS", str(tmp_path))   # the one override of the stored-results folder
    assert C.load_full_run("x.json") == {"a": 1}
    assert C.load_full_run("missing.json", required=False) is None
    with pytest.raises(FileNotFoundError, match="tdcore sweep convergence"):
        C.load_full_run("missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        C.load_full_run("bad.json")
    with pytest.raises(TypeError, match="name"):
        C.load_full_run(None)
    # no guessing from the working directory: a results/ folder under the cwd is not read
    work = tmp_path / "work"
    (work / "results").mkdir(parents=True)
    (work / "results" / "y.json").write_text('{"b": 2}')
    monkeypatch.delenv("TDCORE_RESULTS")
    monkeypatch.chdir(work)
    assert C.load_full_run("y.json", required=False) is None
    assert C.load_full_run()["meta"]["size"] == "full"   # the stored full run is found wherever the cwd is


def test_explorer_draws():
    fig, ax = plt.subplots()
    assert C.explore_error_curve(ax=ax, d=6, r=1, m=2, epochs=2) is ax
    assert ax.has_data()


def test_stored_results_file_is_consistent():
    """The committed stored full run (results/convergence_full.json) has every section the chapters read."""
    data = C.load_full_run()
    for key in ("headline", "success_curves", "m_star_vs_r", "m_star_vs_r_long", "error_curves", "ablation",
                "switch_ablation", "lambda_sweep", "reinit_jumps", "meta"):
        assert key in data, key
    hd = C.HeadlineData.from_dict(data["headline"])
    assert set(hd.orders) == {3, 4}
    for r in data["reinit_jumps"]["rows"]:
        assert "max_epoch_increase" in r
