"""Tests of tdcore.book.own_tensor (the measurements behind chapters/own_tensor.ipynb)."""

import os

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import tdcore  # noqa: E402
from tdcore.book import own_tensor as ch  # noqa: E402


def test_ica_samples_shapes_and_cumulants():
    X, V, k3 = ch.ica_samples(500, 6, 3, scales=[1.0, 0.5, 0.25], seed=0)
    assert X.shape == (500, 6) and V.shape == (6, 3)
    assert np.allclose(np.linalg.norm(V, axis=0), 1.0, rtol=0, atol=1e-15)
    assert np.array_equal(k3, 2.0 * np.array([1.0, 0.5, 0.25]) ** 3)


def test_empirical_moment_approaches_the_planted_one():
    # the planted tensor is E[x^(x)3]: the empirical moment's distance to it falls with n
    errs = []
    for n in (2_000, 200_000):
        X, V, k3 = ch.ica_samples(n, 5, 2, seed=1)
        errs.append(tdcore.rel_error(tdcore.moment_tensor(X, 3), ch.planted_moment(V, k3)))
    # 100 times the samples: ~10 times smaller; a factor 3 leaves room for the sampling noise
    assert errs[1] < errs[0] / 3, errs


def test_reduce_components_merges_parallel_and_folds_signs():
    rng = np.random.default_rng(0)
    v, u = np.linalg.qr(rng.standard_normal((4, 2)))[0].T
    # (w, -v) is the component (-w, v) at odd order: the three are one component of weight 1 + 0.5 + 0.25
    M = tdcore.SymCP([1.0, 0.5, -0.25, 0.1], np.stack([v, 2 * v, -v, u], axis=1), 3)
    R = ch.reduce_components(M, 2)
    assert R.m == 2
    assert np.allclose(sorted(np.abs(R.weights)), [0.1, 1.0 + 0.5 * 8 + 0.25], rtol=1e-14)
    # exactly parallel members: the merged model is the same tensor (to rounding, ~1e-15 relative)
    assert tdcore.rel_error(R, M) < 1e-12
    assert ch.reduce_components(M, 1).m == 1


def test_match_components_undoes_permutation_and_sign():
    X, V, k3 = ch.ica_samples(10, 6, 3, seed=2)
    M = tdcore.SymCP(-k3[[2, 0, 1]], -V[:, [2, 0, 1]], 3)  # permuted, each (w, v) written as (-w, -v)
    mt = ch.match_components(M, V, k3)
    assert np.all(mt["angles_deg"] < 1e-5)
    assert np.allclose(mt["weights"], k3, rtol=1e-14) and np.all(mt["weight_rel_err"] < 1e-14)
    wrong = ch.match_components(tdcore.SymCP(k3, V[:, [1, 0, 2]] + 0.0, 3), V, k3)  # weights on the wrong vectors
    assert wrong["weight_rel_err"].max() > 0.1


def test_recover_finds_the_mixing_matrix():
    X, V, k3 = ch.ica_samples(100_000, 8, 3, seed=3)
    model, el = ch.recover(X, 3, seed=0)
    mt = ch.match_components(model, V, k3)
    assert model.m == 3 and el > 0
    # the sampling error at n = 1e5 is ~1% of the tensor: a degree and 10% leave a wide margin
    assert mt["angles_deg"].max() < 2.0 and mt["weight_rel_err"].max() < 0.1, mt


def test_summarize_sweep_slope_of_exact_rate():
    ns = np.repeat([1_000, 4_000, 16_000, 64_000], 2)
    res = {"n": ns, "max_angle_deg": 30 / np.sqrt(ns), "max_weight_rel_err": 1 / np.sqrt(ns),
           "rel_error": np.sqrt(2.0) / np.sqrt(ns)}
    s = ch.summarize_sweep(res)
    assert np.array_equal(s["n"], [1_000, 4_000, 16_000, 64_000])
    assert s["slope_error"].slope == pytest.approx(-0.5, abs=1e-12)
    assert s["slope_angle"].slope == pytest.approx(-0.5, abs=1e-12)
    res["rel_error"] = np.where(np.arange(8) % 2, 1.0, 7.0) / np.sqrt(ns)  # RMS of 1 and 7 is 5
    assert np.allclose(ch.summarize_sweep(res)["rel_error"], 5 / np.sqrt(ns[::2]), rtol=1e-14)


def test_recovery_sweep_rows():
    res = ch.recovery_sweep([20_000], d=6, r=2, seeds=(0, 1))
    assert list(res["n"]) == [20_000, 20_000] and list(res["seed"]) == [0, 1]
    assert res["angles_deg"].shape == (2, 2) and np.all(res["max_angle_deg"] == res["angles_deg"].max(axis=1))


def test_three_inputs_through_the_cli(tmp_path, capsys):
    paths, V, k3 = ch.write_example_inputs(str(tmp_path), n=5_000, d=6)
    assert ch.run_cli("decompose", paths["dense"], "--quiet") == 0
    assert ch.run_cli("decompose", paths["factored"], "--m", 6, "--quiet") == 0
    assert ch.run_cli("decompose", "--moments", paths["samples"], "--order", 3, "--m", 6, "--tol", "1e-2",
                      "--quiet") == 0
    for p, tol in ((paths["dense"], 1e-6), (paths["factored"], 1e-6), (paths["samples"], 0.5)):
        model, s = ch.read_model(os.path.splitext(p)[0] + ".model.npz")
        assert s["rel_error"] <= tol and model.order == 3
    assert ch.run_cli("decompose", paths["dense"]) == 2  # the model file exists now
    assert "exists; pass --force" in capsys.readouterr().err


def test_plot_recovery():
    s = {"n": np.array([1e3, 1e4]), "rel_error": np.array([0.1, 0.03]), "max_angle_deg": np.array([2.0, 0.6])}
    ax = ch.plot_recovery(s)
    assert len(ax.lines) == 3
    plt.close(ax.figure)


def test_recover_equals_refinement_from_truth():
    # the chapter's claim: the recovery is limited by the samples, not by the fit -- the recovered model is
    # the rank-r fit of the empirical moment that a refinement started at the true components reaches
    X, V, k3 = ch.ica_samples(50_000, 8, 3, seed=4)
    model, _ = ch.recover(X, 3, seed=1)
    M = tdcore.moment_tensor(X, 3)
    best = tdcore.refine(ch.planted_moment(V, k3), M, tol=1e-10, prune=0.0, drop=0.0, merge=None).model
    # both are stationary points of the same least-squares fit: equal to the refinement's resolution
    assert tdcore.rel_error(model, best) < 1e-5
    assert tdcore.rel_error(model, M) <= tdcore.rel_error(best, M) * (1 + 1e-6)
