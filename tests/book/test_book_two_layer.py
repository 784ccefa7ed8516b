"""The chapter module tdcore.book.two_layer: sweeps on tiny sizes, the search, the figures."""

import math

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tdcore.book import two_layer as ch  # noqa: E402


def test_module_docstring_names_its_chapter():
    assert ch.__doc__.startswith("Code of the chapter *From tensors to two-layer networks* (chapters/two_layer.ipynb)")


def test_bridge_convergence_small():
    res = ch.bridge_convergence(4, 3, [200, 800, 3200], repeats=8, n_sd=20000)
    assert res.tensor_check < 1e-10
    for act in res.activations:
        assert res.rms_gap[act].shape == (3,)
        assert res.rms_gap[act][-1] < res.rms_gap[act][0]  # a factor 4 in sqrt(n) separates them
        assert res.population[act] == pytest.approx(res.per_order[act].sum())
    assert ch.plot_bridge(res) is not None and ch.plot_hermite_orders(res) is not None


def test_first_success_doubles_then_bisects():
    calls = []

    def ev(n):
        calls.append(n)
        return [1.0 / n, 1.0 / n]

    n_star, tried, errs = ch._first_success(ev, 0.01, 8, 10_000, 2)
    # doubling: 8 ... 64 fail, 128 succeeds; bisection: 91 fails, 108 succeeds
    assert calls == [8, 16, 32, 64, 128, 91, 108]
    assert n_star == 108 and tried == sorted(calls) and len(errs) == len(calls)
    assert math.isnan(ch._first_success(lambda n: [1.0], 0.5, 8, 100, 2)[0])


def test_median_counts_divergence_as_failure():
    assert ch._median([0.01, np.nan, 0.02]) == 0.02
    assert ch._median([np.nan, np.nan, 0.02]) == math.inf


def test_width_sweep_lazy_width_is_the_feature_count():
    w = ch.width_sweep([4, 5], ms_lazy=[2, 4, 8, 12, 16, 24], ms_train=[2, 4, 8], epochs=150, seeds=(0, 1), n_test=500)
    for d, m in zip(w.ds, w.m_star["lazy"]):
        assert m == min(mm for mm in w.ms["lazy"] if (mm // 2) * d >= ch.sym_count(d, 3) + d)
    axes = ch.plot_width(w)
    assert axes.shape == (2,)
    with pytest.raises(ValueError, match="even"):
        ch.width_sweep([3], ms_lazy=[3], ms_train=[2])


def test_sample_sweep_small():
    s = ch.sample_sweep([3, 4], epochs=150, seeds=(0, 1, 2), lazy_seeds=(0,), n_test=500, refine=1)
    for d, n in zip(s.ds, s.n_star["lazy"]):
        assert n >= 0.8 * ch.sym_count(d, 3)
        assert s.ns[("lazy", d)] == sorted(s.ns[("lazy", d)])
    assert ch.plot_samples(s) is not None


def test_training_curves_and_explorer():
    c = ch.training_curves(4, 1, 4, 200, epochs=30, seeds=(0,), batch_size=50, n_test=300, record_every=10)
    assert set(c) == {"lazy", "gd", "algorithm1", "algorithm1_sgd", "ntk"}
    assert ch.plot_training(c) is not None
    for regime in ("algorithm1", "gd", "lazy"):
        ax = ch.explore_student(d=4, m=3, log2_n=7, regime=regime, epochs=20)
        assert ax.get_title()
    assert ch.sym_count(4, 3) == 20
