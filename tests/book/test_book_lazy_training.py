"""Tests of tdcore.book.lazy_training (gradient descent in the lazy scaling, the table and figures)."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tdcore._lazy import lazy_threshold_sweep  # noqa: E402
from tdcore.book import explorer  # noqa: E402
from tdcore.book import lazy_training as ch  # noqa: E402


def test_lazy_gd_follows_linearisation_at_large_scale_and_leaves_it_at_small_scale():
    ex = ch.lazy_gd_experiment(4, 3, [2, 3, 6], scale=300.0, steps=300, seed=0)
    assert np.max(np.abs(ex.gd_error - ex.linear_error)) < 0.01
    assert np.all(ex.movement < 0.01)
    assert np.all(ex.gd_error >= ex.lazy_residual - 0.01)
    sc = ch.lazy_scale_sweep(4, 3, 2, [1.0, 300.0], steps=300, seed=0)
    assert sc.gd_error[0] < sc.lazy_residual[0] - 0.2  # small init: beyond the lazy limit
    assert abs(sc.gd_error[1] - sc.linear_error[1]) < 0.01
    with pytest.raises(ValueError, match="eta_factor must be < 2"):
        ch.lazy_gd_experiment(4, 3, [2], eta_factor=2.5)


def test_lazy_experiment_validation():
    with pytest.raises(TypeError, match="scales must be a sequence"):
        ch.lazy_scale_sweep(4, 3, 2, 1.0)
    with pytest.raises(ValueError, match=r"scales\[1\] must be > 0"):
        ch.lazy_scale_sweep(4, 3, 2, [1.0, -1.0])
    with pytest.raises(ValueError, match=r"ms\[0\]"):
        ch.lazy_gd_experiment(4, 3, [0, 2])


def test_lazy_table():
    sw = lazy_threshold_sweep([3, 4, 5], 3, seeds=(0,))
    assert ch.lazy_table(sw).data.count("\n") == 4


def test_plot_helpers_draw():
    sw = lazy_threshold_sweep([3, 4, 5], 3, seeds=(0,))
    axes = [ch.plot_lazy_residual(sw), ch.plot_lazy_threshold([sw]), ch.plot_lazy_threshold(sw)]
    ex = ch.lazy_gd_experiment(3, 3, [1, 2, 4], scale=100.0, steps=20)
    panels = ch.plot_lazy_gd(ex)
    assert len(panels) == 2 and panels[0].figure is panels[1].figure
    axes += list(panels)
    axes.append(ch.plot_lazy_scale(ch.lazy_scale_sweep(3, 3, 1, [1.0, 10.0], steps=20)))
    fig, ax = plt.subplots()
    assert ch.explore_lazy_fit(ax=ax, d=4, order=3, m=3) is ax
    axes.append(ax)
    for ax in axes:
        assert ax.figure.axes
        assert ax.lines or ax.collections
    plt.close("all")


def test_explorer_panel_refuses_large_kernels_and_runs_in_the_explorer():
    fig, ax = plt.subplots()
    ch.explore_lazy_fit(ax=ax, d=16, order=4, m=10)  # d m = 16 * 242 features: a note, no curve
    assert not ax.lines and "too large" in ax.texts[0].get_text()
    ex = explorer(ch.explore_lazy_fit, d=(2, 16, 1, 8), order=(2, 4, 1, 3), m=(1, 60, 1, 10),
                  seed=(0, 20, 1, 0), display=False)
    assert ex.values == {"d": 8, "order": 3, "m": 10, "seed": 0}
    assert ex.figure.axes[0].lines
    plt.close("all")


def test_dense_lazy_residual_agrees_with_lazy_fit():
    import tdcore

    T = tdcore.random_target(4, 1, 3, seed=0)
    U0 = np.random.default_rng(2).standard_normal((4, 5))   # N = C(6, 3) = 20 = d m at m = 5
    for m in (1, 2, 3, 4):
        a = tdcore.lazy_fit(T, U0[:, :m]).rel_residual
        assert abs(ch.dense_lazy_residual(T, U0[:, :m]) - a) < 1e-8
    assert ch.dense_lazy_residual(T, U0) < 1e-10
    # an order-4 case: the features are symmetrised over all four slots
    T4 = tdcore.random_target(3, 1, 4, seed=1)
    U4 = np.random.default_rng(3).standard_normal((3, 2))
    assert abs(ch.dense_lazy_residual(T4, U4) - tdcore.lazy_fit(T4, U4).rel_residual) < 1e-8
