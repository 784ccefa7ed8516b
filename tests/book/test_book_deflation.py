"""Tests of tdcore.book.deflation (chapter "Deflation"): fit times of the flow from small initialisation."""

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import tdcore  # noqa: E402
from tdcore._dynamics import DeflationResult, deflation_flow  # noqa: E402
from tdcore.book import deflation as ch  # noqa: E402
from tdcore.book.deflation import (  # noqa: E402
    FIGURE1_WEIGHTS,
    deflation_sweep,
    explore_deflation,
    fit_order,
    fit_times,
    orthogonal_target,
    plot_fit_times,
    plot_staircase,
    predicted_fit_time,
    staircase_overlap,
)


def test_orthogonal_target():
    T = orthogonal_target()
    assert (T.d, T.m, T.order) == (10, 5, 4)
    np.testing.assert_allclose(T.weights, FIGURE1_WEIGHTS)
    np.testing.assert_allclose(T.factors, np.eye(10)[:, :5])
    R = orthogonal_target((2.0, 1.0), d=6, order=3, basis="random", seed=1)
    np.testing.assert_allclose(R.factors.T @ R.factors, np.eye(2), atol=1e-12)
    assert abs(R.norm() ** 2 - 5.0) < 1e-12


def test_orthogonal_target_validates():
    with pytest.raises(ValueError, match="r <= d"):
        orthogonal_target((1, 2, 3), d=2)
    with pytest.raises(ValueError, match="basis"):
        orthogonal_target(basis="fancy")
    with pytest.raises(ValueError, match="order"):
        orthogonal_target(order=1)
    with pytest.raises(ValueError, match="non-empty"):
        orthogonal_target(())


def _synthetic(t, curves):
    """A DeflationResult with given fitted curves, shape (n, B=1, r)."""
    F = np.stack(curves, axis=-1)[:, None, :]
    r = F.shape[2]
    return DeflationResult(t=np.asarray(t, float), fitted=F, rel_error=np.zeros((len(t), 1)),
                           weights=np.linspace(1, 0.5, r), params={}, U=np.zeros((1, 2, 2)))


def test_fit_times_interpolates_and_orders():
    t = [0, 1, 2, 3]
    res = _synthetic(t, [np.array([0, 0.2, 0.8, 1.0]), np.array([0, 0, 0.1, 0.7]), np.zeros(4)])
    T = fit_times(res, 0.5)
    assert T.shape == (1, 3)
    assert math.isclose(T[0, 0], 1.5)
    assert math.isclose(T[0, 1], 2 + (0.5 - 0.1) / 0.6)
    assert np.isnan(T[0, 2])
    np.testing.assert_array_equal(fit_order(res), [[0, 1, 2]])
    # reversed order is reported as such
    res2 = _synthetic(t, [np.array([0, 0, 0.1, 0.7]), np.array([0, 0.2, 0.8, 1.0])])
    np.testing.assert_array_equal(fit_order(res2), [[1, 0]])


def test_staircase_overlap_extremes():
    t = np.linspace(0, 10, 101)
    disjoint = _synthetic(t, [np.clip(t - 1, 0, 1), np.clip(t - 5, 0, 1)])
    assert staircase_overlap(disjoint)[0, 0] == 0.0
    nested = _synthetic(t, [np.clip((t - 1) / 8, 0, 1), np.clip((t - 4) / 2, 0, 1)])
    assert staircase_overlap(nested)[0, 0] == pytest.approx(1.0, abs=1e-9)


def test_predicted_fit_time_scalings():
    # growth part scales like 1/a and slope 1/(2a) in log(1/delta)
    for order in (2, 3, 4):
        t1 = predicted_fit_time(1.0, 1e-3, order=order, d=10, m=50)
        t2 = predicted_fit_time(1.0, 1e-5, order=order, d=10, m=50)
        assert (t2 - t1) / math.log(100) == pytest.approx(0.5, rel=1e-9)
    assert predicted_fit_time(0.5, 1e-3, order=2, d=10, m=50) == pytest.approx(
        math.log(0.5 * 10 / (50 * 1e-6)) / 2.0)
    assert predicted_fit_time(0.2, 1e-3) > predicted_fit_time(1.0, 1e-3)
    with pytest.raises(ValueError, match="delta"):
        predicted_fit_time(1.0, 0.0)


def test_default_t_max_is_twice_the_prediction_for_the_smallest_weight():
    T = orthogonal_target((1.0, 0.5), d=5, order=3)
    res = deflation_flow(T, 10, delta=1e-3, eta=0.02, seeds=[0], stop_level=None)
    assert res.params["t_max"] == 2 * predicted_fit_time(0.5, 1e-3, order=3, d=5, m=10)


def test_deflation_flow_fits_in_weight_order():
    T = orthogonal_target((1.0, 0.6, 0.3), d=6, order=4)
    res = deflation_flow(T, 20, delta=1e-3, eta=0.02, seeds=[0, 1])
    assert res.fitted.shape[1:] == (2, 3)
    assert res.rel_error.shape == (len(res.t), 2)
    times = fit_times(res)
    assert np.all(np.isfinite(times))
    np.testing.assert_array_equal(fit_order(res), [[0, 1, 2], [0, 1, 2]])
    assert np.all(np.diff(times, axis=1) > 0)
    assert np.all(res.fitted[-1] > 0.95)
    assert np.all(res.rel_error[-1] < 0.05)
    # the recorded error is the true relative error of the final model
    U = res.U[0]
    nrm = np.linalg.norm(U, axis=0)
    model = tdcore.SymCP(nrm ** (2 - 4), U, 4)
    assert abs(tdcore.rel_error(model, T) - res.rel_error[-1, 0]) < 1e-6
    # close to the rough prediction (within 25%)
    pred = np.array([predicted_fit_time(a, 1e-3, order=4, d=6, m=20) for a in T.weights])
    assert np.all(np.abs(np.median(times, 0) / pred - 1) < 0.25)


def test_deflation_flow_step_size_independent():
    T = orthogonal_target((1.0, 0.5), d=5, order=3)
    a = fit_times(deflation_flow(T, 10, delta=1e-3, eta=0.02, seeds=[3]))
    b = fit_times(deflation_flow(T, 10, delta=1e-3, eta=0.01, seeds=[3]))
    np.testing.assert_allclose(a, b, rtol=0.03)


def test_deflation_flow_matrix_case():
    T = orthogonal_target((1.0, 0.5, 0.25), d=6, order=2)
    res = deflation_flow(T, 12, delta=1e-3, eta=0.02, seeds=[0])
    times = fit_times(res)[0]
    assert np.all(np.diff(times) > 0)
    pred = [predicted_fit_time(a, 1e-3, order=2, d=6, m=12) for a in T.weights]
    np.testing.assert_allclose(times, pred, rtol=0.2)


def test_deflation_sweep_over_deltas_and_weights():
    T = orthogonal_target((1.0, 0.5), d=5, order=3)
    sw = deflation_sweep(T, 10, deltas=[1e-2, 1e-4], seeds=[0], eta=0.02)
    assert sw["values"] == [1e-2, 1e-4]
    assert all(sw["order_ok"])
    assert np.all(sw["times"][1] > sw["times"][0])  # smaller init: later
    sw2 = deflation_sweep(T, 10, weight_sets=[(1.0, 0.9), (1.0, 0.5)], seeds=[0], eta=0.02, delta=1e-3)
    gaps = [float(np.diff(t, axis=1)[0, 0]) for t in sw2["times"]]
    assert gaps[1] > gaps[0] > 0
    with pytest.raises(ValueError, match="exactly one"):
        deflation_sweep(T, 10, seeds=[0])


def test_plots_return_axes():
    T = orthogonal_target((1.0, 0.5), d=5, order=4)
    res = deflation_flow(T, 8, delta=1e-2, eta=0.05, seeds=[0])
    ax = plot_staircase(res)
    assert len(ax.get_lines()) >= 2
    sw = deflation_sweep(T, 8, deltas=[1e-2, 1e-3], seeds=[0], eta=0.05)
    assert all(np.all(np.isfinite(t)) for t in sw["times"])
    ax = plot_fit_times(sw["values"], sw["times"], logx=True, weights=T.weights)
    assert ax.get_xscale() == "log"
    fig, ax = plt.subplots()
    assert explore_deflation(ax=ax, log10_delta=-2.0, m=10, d=6) is ax and len(ax.get_lines()) >= 5
    with pytest.raises(ValueError, match="gap must lie in"):
        explore_deflation(gap=0.3)
    plt.close("all")


def test_module_layout():
    assert ch.__doc__.startswith("Code of the chapter *Deflation: the largest component first* "
                                 "(chapters/deflation.ipynb)")
    for name in ch.__all__:
        obj = getattr(ch, name)
        assert name == "FIGURE1_WEIGHTS" or obj.__module__ == "tdcore.book.deflation"
