"""Tests for tdcore.book.comparisons: the side-by-side runs of chapters/comparisons.ipynb."""

import math

import numpy as np
import pytest

from tdcore._baselines import power_method, tensorly_available
from tdcore.book.comparisons import (
    compare_methods,
    comparison_table,
    plot_race,
    plot_time_to_accuracy,
    race,
    summarize_comparison,
)

needs_tensorly = pytest.mark.skipif(not tensorly_available(), reason="tensorly (optional dependency) not installed")


def _toy_methods(eps):
    def pm(T, seed):
        res = power_method(T, T.m, seed=seed, target_error=eps)
        return {"rel_error": res.rel_error, "elapsed": res.elapsed, "time_to_eps": res.time_to(eps)}

    def never(T, seed):
        return {"rel_error": 1.0, "elapsed": 0.0, "time_to_eps": float("nan")}

    return {"pm": pm, "never": never}


def test_compare_methods_summary_and_table():
    eps = 0.02
    recs = compare_methods(("orthogonal", "correlated"), d=6, r=2, seeds=[0, 1], eps=eps, methods=_toy_methods(eps))
    assert len(recs) == 2 * 2 * 2
    summ = summarize_comparison(recs)
    assert summ[("pm", "orthogonal")]["success_rate"] == 1.0
    assert summ[("never", "orthogonal")]["success_rate"] == 0.0
    assert math.isnan(summ[("never", "orthogonal")]["median_time"])
    md = comparison_table(recs)
    lines = md.splitlines()
    assert lines[0].startswith("| method | orthogonal")
    assert len(lines) == 2 + 2
    assert "| never | 0/2, -- | 0/2, -- |" in md
    html = comparison_table(recs, fmt="html", time_unit="s")
    assert html.startswith("<table") and "<td>pm</td>" in html
    with pytest.raises(ValueError, match="fmt"):
        comparison_table(recs, fmt="latex")
    with pytest.raises(ValueError, match="kinds"):
        compare_methods(("bogus",), methods=_toy_methods(eps))


def test_plots_return_axes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    eps = 0.02
    recs = compare_methods(("orthogonal",), d=6, r=2, seeds=[0], eps=eps, methods=_toy_methods(eps))
    ax = plot_time_to_accuracy(recs, eps=eps)
    assert ax.get_xscale() == "log"
    plt.close("all")


@needs_tensorly
def test_race_curves():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = race("orthogonal", d=6, r=2, seed=0, eps=0.05)
    assert "Algorithm 1 (m=3r)" in curves and "power method + deflation" in curves
    for t, e in curves.values():
        assert len(t) == len(e) > 0
        assert np.all(np.diff(t) >= -1e-12)
    ax = plot_race(kind="orthogonal", d=6, r=2, eps=0.05)
    assert ax.get_yscale() == "log"
    plt.close("all")
