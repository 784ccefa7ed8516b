"""The CuPy emulator itself: strict where CuPy is strict, and its counters count."""

import numpy as np
import pytest

pytestmark = pytest.mark.cupy


def test_refuses_implicit_conversion_and_mixing(emulated):
    cp = emulated
    x = cp.asarray(np.arange(4.0))
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(x)
    with pytest.raises(TypeError, match="Unsupported type"):
        x + np.ones(4)
    with pytest.raises(TypeError, match="Unsupported type"):
        np.ones(4) * x
    with pytest.raises(TypeError, match="Unsupported type"):
        cp.matmul(np.ones((2, 4)), x)
    with pytest.raises(TypeError):
        np.sqrt(x)  # a NumPy ufunc on a device array
    # scalars are fine, and the only ways back are explicit
    y = x * 2.0 + np.float64(1.0)
    assert isinstance(y, cp.ndarray) and type(y).__module__ == "cupy"
    np.testing.assert_array_equal(y.get(), 2 * np.arange(4.0) + 1)
    np.testing.assert_array_equal(cp.asnumpy(y), y.get())


def test_counts_syncs_transfers_and_launches(emulated):
    cp = emulated
    cp.reset_stats()
    x = cp.asarray(np.ones((3, 3)))  # one upload
    y = x @ x  # one launch
    z = y.T  # a view: no launch
    w = (z * 2.0).sum()  # two launches
    assert cp.stats["h2d"] == 1 and cp.stats["launches"] == 3 and cp.stats["syncs"] == 0
    assert float(w) == pytest.approx(54.0, rel=1e-15)
    assert bool(w > 0)
    assert cp.stats["syncs"] == 2 and cp.stats["d2h"] == 2

    @cp.fuse
    def chain(a, b):
        return (a * b + 1.0) * a - b

    before = cp.stats["launches"]
    chain(x, y)
    assert cp.stats["launches"] == before + 1  # however many operations inside


def test_reordered_noisy_sums_differ_by_rounding_only(emulated):
    cp = emulated
    rng = np.random.default_rng(0)
    a = rng.standard_normal(10_000)
    host = np.sum(a)
    dev = float(cp.sum(cp.asarray(a)))
    # another order and a relative perturbation <= 2e-16: the difference is a few ulps of sum|a_i|
    assert abs(dev - host) <= 1e3 * np.finfo(float).eps * np.sum(np.abs(a))
    A = rng.standard_normal((40, 30))
    D = (cp.asarray(A).T @ cp.asarray(A)).get()
    np.testing.assert_allclose(D, A.T @ A, rtol=0, atol=1e2 * np.finfo(float).eps * 40 * np.max(np.abs(A)) ** 2)
