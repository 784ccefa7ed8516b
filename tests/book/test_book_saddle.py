"""Tests of tdcore.book.saddle (chapter "Zero is a high-order saddle")."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tdcore.book import saddle as ch  # noqa: E402
from tdcore.book.saddle import (  # noqa: E402
    explore_saddle,
    plot_escape_times,
    plot_saddle_trajectories,
    saddle_escape_times,
)


def test_saddle_exponents():
    van = saddle_escape_times(3, [0.01, 0.02, 0.04, 0.08], model="vanilla", d=5, seeds=[0])
    assert van.all_escaped and van.fit.slope == pytest.approx(-1.0, abs=0.1)
    hom = saddle_escape_times(3, [1e-4, 1e-3, 1e-2, 1e-1], model="homogeneous", d=5, seeds=[0])
    assert hom.all_escaped and abs(hom.fit.slope) < 0.35
    assert hom.fit_log.slope == pytest.approx(1 / 3, rel=0.3)
    assert np.all(hom.median_times < van.median_times.min())
    with pytest.raises(ValueError, match="model must be one of"):
        saddle_escape_times(3, [0.1, 0.2, 0.3], model="lazy")
    with pytest.raises(ValueError, match="order must be an integer >= 3"):
        saddle_escape_times(2, [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="at least 3"):
        saddle_escape_times(3, [0.1, 0.2])
    with pytest.raises(ValueError, match="overlap must be in"):
        saddle_escape_times(3, [0.1, 0.2, 0.3], overlap=1.5)


def test_saddle_random_directions_flip_sign():
    res = saddle_escape_times(3, [0.05, 0.1, 0.2], model="vanilla", d=4, seeds=[0, 1], overlap=None)
    assert res.all_escaped


def test_saddle_validates_deltas():
    with pytest.raises(ValueError, match=r"deltas\[1\] must be > 0"):
        saddle_escape_times(3, [0.1, -0.2, 0.3])
    with pytest.raises(TypeError, match="deltas must be a sequence"):
        saddle_escape_times(3, 0.1)


def test_plot_helpers_draw():
    van = saddle_escape_times(3, [0.05, 0.1, 0.2], d=4, seeds=[0])
    hom = saddle_escape_times(3, [0.05, 0.1, 0.2], d=4, seeds=[0], model="homogeneous")
    axes = [plot_escape_times([van, hom]), plot_saddle_trajectories([van, hom])]
    fig, ax = plt.subplots()
    assert explore_saddle(ax=ax, log10_delta=-1.0) is ax
    axes.append(ax)
    for ax in axes:
        assert ax.figure.axes and ax.get_lines()
    plt.close("all")


def test_module_layout():
    assert ch.__doc__.startswith("Code of the chapter *Zero is a high-order saddle* (chapters/saddle.ipynb)")
    for name in ch.__all__:
        assert getattr(ch, name).__module__ == "tdcore.book.saddle"
