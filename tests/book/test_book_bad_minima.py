"""Tests of tdcore.book.bad_minima (chapter "Bad local minima exist"): Theorem 2's construction."""

import itertools

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import tdcore  # noqa: E402
from tdcore._dynamics import _unit_columns  # noqa: E402
from tdcore.book import bad_minima as ch  # noqa: E402
from tdcore.book.bad_minima import (  # noqa: E402
    algorithm1_from_state,
    bad_local_minimum,
    bad_minimum_report,
    bad_minimum_table,
    check_local_minimum,
    explore_bad_minimum,
    gd_from_bad_minimum,
    numerical_hessian,
    plot_hessian_spectrum,
    plot_perturbation_test,
    plot_reinit_escape,
    plot_spurious_frequency,
    reinit_escape,
    spurious_frequency,
    spurious_table,
    to_homogeneous,
)


def _outer(vectors):
    T = vectors[0]
    for v in vectors[1:]:
        T = np.multiply.outer(T, v)
    return T


@pytest.mark.parametrize("order, r, d", [(3, 1, 3), (3, 2, 4), (4, 1, 3), (5, 1, 2)])
def test_bad_local_minimum_construction(order, r, d):
    T, U, c = bad_local_minimum(d, r, order)
    m = r * (order + 1) + 1
    assert U.shape == (d, m) and T.m == r * (order + 1) + 1
    model = tdcore.SymCP(c, U, order).to_dense()
    np.testing.assert_allclose(model, _outer([np.eye(d)[0]] * order), atol=1e-12)
    R = model - T.to_dense()
    # residual: entries 1 exactly at the placements of two e_j (2 <= j <= r+1) among e_1's
    expected = np.zeros_like(R)
    for j in range(1, r + 1):
        for pos in itertools.combinations(range(order), 2):
            idx = [0] * order
            for p in pos:
                idx[p] = j
            expected[tuple(idx)] = 1.0
    np.testing.assert_allclose(R, expected, atol=1e-10)
    f, gU, gc = tdcore.vanilla_objective(U, c, T, grad=True)
    assert float(f) == pytest.approx(order * (order - 1) * r / 4, rel=1e-12)
    assert np.abs(gU).max() < 1e-12 and np.abs(gc).max() < 1e-12


def test_bad_local_minimum_validation():
    with pytest.raises(ValueError, match="d > r"):
        bad_local_minimum(2, 2, 3)
    with pytest.raises(ValueError, match="order must be an integer >= 3"):
        bad_local_minimum(3, 1, 2)
    with pytest.raises(ValueError, match="sign must be"):
        bad_local_minimum(3, 1, 3, sign=0)


def test_numerical_hessian_against_second_differences():
    rng = np.random.default_rng(0)
    T = tdcore.random_target(3, 2, 3, seed=0)
    U, c = rng.standard_normal((3, 2)), rng.standard_normal(2)
    H = numerical_hessian(T, U, c)
    theta = np.concatenate([U.T.ravel(), c])

    def f(th):
        return float(tdcore.vanilla_objective(th[:6].reshape(2, 3).T, th[6:], T))

    h = 1e-4
    for i, j in [(0, 0), (1, 4), (6, 7), (2, 7)]:
        ei, ej = np.eye(8)[i] * h, np.eye(8)[j] * h
        fd = (f(theta + ei + ej) - f(theta + ei - ej) - f(theta - ei + ej) + f(theta - ei - ej)) / (4 * h * h)
        assert H[i, j] == pytest.approx(fd, rel=1e-4, abs=1e-6)
    assert numerical_hessian(T, U, c, train_weights=False).shape == (6, 6)


def test_check_local_minimum_certifies_construction_and_rejects_control():
    T, U, c = bad_local_minimum(4, 1, 3)
    chk = check_local_minimum(T, U, c, n_perturb=60)
    assert chk.is_local_min and chk.grad_norm < 1e-10
    assert chk.min_eigenvalue > -1e-6 and chk.null_dim == (2 * 5 - 1) + (4 - 1 - 1) * (5 - 1)
    assert np.all(chk.random_frac_decrease == 0)
    T2, U2, c2 = bad_local_minimum(4, 1, 3, sign=-1)
    ctl = check_local_minimum(T2, U2, c2, n_perturb=60)
    assert not ctl.is_local_min and ctl.min_eigenvalue < -1 and np.all(ctl.eigen_min_change < 0)


def test_to_homogeneous_round_trip():
    rng = np.random.default_rng(0)
    U, c = rng.standard_normal((4, 3)), np.array([0.5, -2.0, 1.5])
    V, a, ci = to_homogeneous(U, c, 3)
    s = a * ci ** (3 - 2)
    assert tdcore.rel_error(tdcore.SymCP(s, V, 3), tdcore.SymCP(c, U, 3)) < 1e-7
    with pytest.raises(ValueError, match="non-zero"):
        to_homogeneous(U, np.array([0.0, 1.0, 1.0]), 3)


def test_algorithm1_from_state_reproduces_algorithm1():
    d, m, order, seed, delta, eta = 5, 3, 3, 3, 1e-3, 0.02
    T = tdcore.random_target(d, 1, order, seed=0)
    ref = tdcore.algorithm1(T, m, epochs=2, iters=40, delta=delta, eta=eta, seed=seed, backend="numpy")
    rng = np.random.default_rng(seed)
    U0 = delta * _unit_columns(rng, d, m)
    a = rng.choice([-1.0, 1.0], size=m)
    nrm = np.linalg.norm(U0, axis=0)
    mine = algorithm1_from_state(T, U0, a, c=ref.params.switch_factor / nrm, chat=1 / nrm,
                                 switched=np.zeros(m, bool), epochs=2, iters=40, delta=delta, eta=eta, seed=rng)
    np.testing.assert_allclose(mine.state["U"], ref.state["U"], rtol=1e-10, atol=1e-15)


def test_reinitialisation_escapes_the_bad_minimum():
    T, U, c = bad_local_minimum(4, 1, 4)
    V, a, _ = to_homogeneous(U, c, 4)
    stuck = algorithm1_from_state(T, V, a, epochs=4, seed=1, reinit=False)
    free = algorithm1_from_state(T, V, a, epochs=4, seed=1, reinit=True)
    f0 = 4 * 3 / 4
    assert min(stuck.history["objective"]) > 0.99 * f0
    assert free.history["objective"][-1] < 0.5 * f0
    np.testing.assert_array_equal(a, np.ones(U.shape[1]))  # inputs are not modified


def test_bad_minimum_report_and_helpers():
    rows, checks = bad_minimum_report([(3, 1, 3), (4, 1, 3)], n_perturb=20)
    for row in rows:
        assert row["local_min"] and row["null_dim"] == row["null_predicted"]
        assert row["objective"] == pytest.approx(row["predicted"])
    table = bad_minimum_table(rows).data
    assert table.count("\n") == 3 and "yes" in table
    with pytest.raises(ValueError, match="each config"):
        bad_minimum_report([(3, 1)])
    gd, f0 = gd_from_bad_minimum(4, 1, 3, radius=1e-2, steps=500, eta=0.02, seed=1)
    assert f0 == pytest.approx(1.5) and abs(gd.objective - f0) < 1e-3
    esc = reinit_escape(4, 1, 4, epochs=3, seeds=[0], iters=150)
    assert esc.fit_reinit.shape == (1, 4) and esc.fit_no_reinit.min() > 0.99 * esc.f0
    assert esc.escape_epoch[0] >= 1
    ax = plot_reinit_escape(esc)
    assert ax.figure.axes
    plt.close(ax.figure)


def test_markdown_tables():
    from tdcore.book.tables import markdown_table

    md = markdown_table([{"a": 1, "b": 0.5}], [("a", "A", "d"), ("b", "B", ".2f")]).data
    assert md.splitlines() == ["| A | B |", "| ---: | ---: |", "| 1 | 0.50 |"]
    sf = spurious_frequency(4, 1, 3, [1, 2], seeds=range(3), orthogonal=True, steps=50)
    assert spurious_table([sf]).data.count("orthogonal") == 2


def test_spurious_frequency_small():
    res = spurious_frequency(6, 2, 3, [2, 8], seeds=range(6), orthogonal=True, steps=600)
    assert res.final_error.shape == (2, 6) and res.frequency.shape == (2,)
    lo, hi = res.interval()
    assert np.all(lo <= res.frequency) and np.all(res.frequency <= hi)
    assert res.frequency[1] <= res.frequency[0]
    with pytest.raises(TypeError, match="orthogonal must be True or False"):
        spurious_frequency(6, 2, 3, [2], seeds=[0], orthogonal=1)


def test_spurious_interval_is_the_wilson_interval():
    """interval() is tdcore.success_rate's Wilson interval, seen from the spurious side."""
    res = spurious_frequency(4, 1, 3, [1, 2], seeds=range(5), orthogonal=True, steps=50)
    lo, hi = res.interval()
    for k in range(len(res.ms)):
        n, p = res.spurious.shape[1], res.frequency[k]
        z = 1.959963984540054
        den = 1 + z * z / n
        mid = (p + z * z / (2 * n)) / den
        half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
        # the formula written out; two evaluation orders agree to a few ulps of numbers <= 1
        assert lo[k] == pytest.approx(0.0 if p == 0 else max(0.0, mid - half), abs=1e-12)
        assert hi[k] == pytest.approx(1.0 if p == 1 else min(1.0, mid + half), abs=1e-12)


def test_plot_helpers_draw():
    T, U, c = bad_local_minimum(3, 1, 3)
    chk = check_local_minimum(T, U, c, n_perturb=10)
    axes = [plot_hessian_spectrum(chk), plot_perturbation_test([chk], ["x"])]
    axes.append(plot_spurious_frequency([spurious_frequency(4, 1, 3, [1, 2], seeds=range(3), orthogonal=False,
                                                            steps=50)]))
    fig, ax = plt.subplots()
    assert explore_bad_minimum(ax=ax, order=3, r=1) is ax
    axes.append(ax)
    for ax in axes:
        assert ax.figure.axes
    plt.close("all")


def test_module_layout():
    assert ch.__doc__.startswith("Code of the chapter *Bad local minima exist* (chapters/bad_minima.ipynb)")
    for name in ch.__all__:
        assert getattr(ch, name).__module__ == "tdcore.book.bad_minima"
