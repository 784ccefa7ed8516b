"""Tests of tdcore.book.setup (the measurements behind chapters/setup.ipynb)."""

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import given, settings, strategies as st  # noqa: E402

from tdcore.book import setup as sd  # noqa: E402
from tdcore._tensor import SymCP  # noqa: E402


def _explicit_power(u, order):
    """u^{(x) order} by repeated outer products (independent of SymCP.to_dense)."""
    t = u
    for _ in range(order - 1):
        t = np.multiply.outer(t, u)
    return t


@settings(max_examples=25, deadline=None)
@given(d=st.integers(1, 6), m=st.integers(1, 4), order=st.integers(2, 4), seed=st.integers(0, 2**31 - 1))
def test_gram_identity_matches_explicit_sum(d, m, order, seed):
    a = sd.random_symcp(d, m, order, seed=seed)
    b = sd.random_symcp(d, m + 1, order, seed=seed + 1)
    Ta = sum(w * _explicit_power(a.factors[:, i], order) for i, w in enumerate(a.weights))
    Tb = sum(w * _explicit_power(b.factors[:, j], order) for j, w in enumerate(b.weights))
    explicit = float(np.sum(Ta * Tb))
    gram = float(a.weights @ (a.factors.T @ b.factors) ** order @ b.weights)
    assert math.isclose(a.inner(b), explicit, rel_tol=1e-10, abs_tol=1e-12)
    assert math.isclose(gram, explicit, rel_tol=1e-10, abs_tol=1e-12)
    assert math.isclose(sd.dense_inner(a, b), explicit, rel_tol=1e-10, abs_tol=1e-12)


def test_random_symcp_is_seeded_and_shaped():
    a = sd.random_symcp(7, 3, 4, seed=5)
    b = sd.random_symcp(7, 3, 4, seed=5)
    assert isinstance(a, SymCP)
    assert a.factors.shape == (7, 3) and a.weights.shape == (3,) and a.order == 4
    np.testing.assert_array_equal(a.factors, b.factors)
    assert np.all((a.weights >= 0.5) & (a.weights <= 1.5))


def test_dense_peak_estimate():
    assert sd.dense_peak_estimate(10, 3) == 2 * 8 * 1000
    assert sd.dense_peak_estimate(10, 3, itemsize=4) == 2 * 4 * 1000


def test_loglog_slope():
    x = np.array([2.0, 4.0, 8.0, 16.0])
    assert sd._slope(x, 5 * x**3) == pytest.approx(3.0)
    assert sd._slope(x, np.full(4, 7.0)) == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(sd._slope([1.0], [1.0]))
    assert math.isnan(sd._slope([1.0, 2.0], [np.nan, 1.0]))


@pytest.fixture(scope="module")
def small_result():
    # dense stops once 2 * 8 * d^3 exceeds 64 MiB, i.e. after d = 128 (the d = 192 run is skipped);
    # d starts at 16 so that einsum's few KiB of path objects do not bend the d^3 slope
    return sd.inner_product_scaling([16, 32, 64, 128, 192, 512], order=3, m=4,
                                    max_dense_bytes=64 * 2**20, repeats=1, seed=1)


def test_scaling_result_layout(small_result):
    r = small_result
    np.testing.assert_array_equal(r["d"], [16, 32, 64, 128, 192, 512])
    assert r["order"] == 3 and r["m"] == 4 and r["max_dense_bytes"] == 64 * 2**20
    np.testing.assert_array_equal(r["dense_measured"], [True, True, True, True, False, False])
    assert np.all(np.isfinite(r["implicit_seconds"])) and np.all(r["implicit_seconds"] > 0)
    assert np.all(np.isnan(r["dense_seconds"][4:])) and np.all(np.isnan(r["dense_peak_bytes"][4:]))
    assert np.all(r["dense_seconds"][:4] > 0)


def test_scaling_claims(small_result):
    r = small_result
    assert r["max_rel_diff"] < 1e-10
    # dense peak memory is two d^3 float64 arrays (one held, one written by a matrix product);
    # the Khatri-Rao block (d^2 m) and a few KiB of Python objects come on top
    expected = 2 * 8 * r["d"][:4].astype(float) ** 3
    peak = r["dense_peak_bytes"][:4]
    assert np.all(peak >= 0.9 * expected), (peak, expected)
    assert np.all(peak <= 1.5 * expected + 64 * 1024), (peak, expected)
    assert abs(r["dense_memory_slope"] - 3) < 0.3
    # implicit memory does not grow with d: m x m Gram matrices only
    assert np.nanmax(r["implicit_peak_bytes"]) < 64 * 1024
    assert abs(r["implicit_memory_slope"]) < 0.2


@pytest.mark.parametrize("bad", [dict(ds=[]), dict(ds=[4, 4]), dict(ds=[8, 4]), dict(ds=[0, 4]),
                                 dict(ds=[4, 8], repeats=0)])
def test_scaling_rejects_bad_arguments(bad):
    kw = dict(order=3, m=2, max_dense_bytes=2**20, repeats=1)
    kw.update(bad)
    with pytest.raises(ValueError):
        sd.inner_product_scaling(**kw)


def test_plot_inner_product_scaling(small_result):
    axes = sd.plot_inner_product_scaling(small_result)
    fig = axes[0].figure
    try:
        ax_time, ax_mem = fig.axes[:2]
        assert ax_time.get_xscale() == "log" and ax_mem.get_yscale() == "log"
        # implicit line spans every d, dense line stops at the memory bound
        lens = sorted(len(line.get_xdata()) for line in ax_time.get_lines())
        assert lens == [4, 6]
        assert ax_mem.get_legend() is None and ax_time.get_legend() is not None
    finally:
        plt.close(fig)
    fig, axes = plt.subplots(1, 2)
    try:
        out = sd.plot_inner_product_scaling(small_result, axes=axes)
        assert out[0] is axes[0] and out[1] is axes[1]
    finally:
        plt.close(fig)


def test_plot_power_overlap():
    fig, ax = plt.subplots()
    try:
        out = sd.plot_power_overlap(d=16, order=3, n_pairs=500, seed=2, ax=ax)
        assert out is ax
        assert len(ax.patches) > 0
        assert "d=16" in ax.get_title() and "l=3" in ax.get_title()
    finally:
        plt.close(fig)
    ax = sd.plot_power_overlap(d=4, order=2, n_pairs=50)
    plt.close(ax.figure)


def test_all_is_complete():
    for name in sd.__all__:
        assert hasattr(sd, name), name


def test_summarize_scaling(small_result):
    s = sd.summarize_scaling(small_result)
    assert s["largest_common_d"] == 128
    k = 3
    assert s["speedup"] == pytest.approx(small_result["dense_seconds"][k] / small_result["implicit_seconds"][k])
    assert s["dense_memory_slope"] == small_result["dense_memory_slope"]
    assert s["implicit_peak_kib"] == pytest.approx(np.nanmax(small_result["implicit_peak_bytes"]) / 1024)
    assert s["max_rel_diff"] == small_result["max_rel_diff"]
    none = dict(small_result, dense_measured=np.zeros(6, dtype=bool))
    with pytest.raises(ValueError):
        sd.summarize_scaling(none)
