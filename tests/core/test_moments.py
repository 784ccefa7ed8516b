"""moment_tensor and chunked norms: agreement with the dense moment, chunk independence, bounded memory.

Tolerances: the dense reference and the implicit tensor sum the same n products in
different orders, each with relative rounding ~eps per term; their difference is
at most about n eps times the largest term, i.e. ~1e-13 relative for n <= 500 here
(``RTOL = 1e-11`` leaves a 100x margin).  Chunking only changes the summation order.
"""

import tracemalloc

import numpy as np
import pytest

import tdcore as tc

RTOL = 1e-11


def _dense_moment(X, order, center=False):
    if center:
        X = X - X.mean(axis=0)
    n = X.shape[0]
    letters = "abcdefg"[:order]
    spec = ",".join(f"k{c}" for c in letters) + "->" + letters
    return np.einsum(spec, *([X] * order)) / n


@pytest.mark.parametrize("order", [2, 3, 4])
@pytest.mark.parametrize("center", [False, True])
def test_moment_tensor_matches_the_dense_moment(order, center):
    X = np.random.default_rng(order).standard_normal((300, 4)) + 0.5
    M = tc.moment_tensor(X, order, center=center)
    assert (M.d, M.m, M.order) == (4, 300, order)
    D = _dense_moment(X, order, center)
    scale = np.abs(D).max()
    np.testing.assert_allclose(M.to_dense(), D, rtol=0, atol=RTOL * scale)
    assert M.norm() == pytest.approx(np.linalg.norm(D), rel=RTOL)
    assert tc.rel_error(M, D) <= RTOL * 10
    assert tc.inner(M, D) == pytest.approx(np.sum(D * D), rel=RTOL)


@pytest.mark.parametrize("center", [False, True])
def test_chunk_size_does_not_change_the_result(center):
    X = np.random.default_rng(1).standard_normal((500, 6)) * 3.0 + 1.0
    ref = tc.moment_tensor(X, 3, center=center)
    for chunk in (1, 7, 499, 500, 10_000):
        M = tc.moment_tensor(X, 3, center=center, chunk=chunk)
        np.testing.assert_allclose(M.factors, ref.factors, rtol=0, atol=1e-13 * np.abs(X).max())
        assert M.norm() == pytest.approx(ref.norm(), rel=RTOL)
    # the norm's own blocks: Gram blocks (d^l too large for the chunk) or the dense tensor in blocks
    want = np.linalg.norm(_dense_moment(X, 3, center))
    for chunk_bytes in (2**12, 2**14, 2**20, None):
        assert ref.norm(chunk_bytes=chunk_bytes) == pytest.approx(want, rel=RTOL)
        other = tc.moment_tensor(X[:250], 3, center=center)
        assert tc.inner(ref, other, chunk_bytes=chunk_bytes) == pytest.approx(
            np.sum(_dense_moment(X, 3, center) * _dense_moment(X[:250], 3, center)), rel=RTOL)
        assert tc.rel_error(other, ref, chunk_bytes=chunk_bytes) == pytest.approx(
            tc.rel_error(_dense_moment(X[:250], 3, center), _dense_moment(X, 3, center)), rel=1e-9)


def _peak(fn):
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_norms_of_many_components_form_nothing_n_by_n():
    n, d = 4000, 12
    X = np.random.default_rng(2).standard_normal((n, d))
    M = tc.moment_tensor(X, 4)
    chunk = 2**16  # d^4 doubles (166 KB) exceed half of it: the Gram path, in blocks
    want = M.norm(chunk_bytes=2**26)  # default bound: the dense tensor in blocks (d^4 is small)
    peak = _peak(lambda: M.norm(chunk_bytes=chunk))
    # unit-column copies of the factors (a few n x d arrays) plus blocks within chunk_bytes;
    # an n x n Gram matrix alone would be 128 MB
    assert peak <= 6 * n * d * 8 + 4 * chunk, peak
    assert M.norm(chunk_bytes=chunk) == pytest.approx(want, rel=1e-10)


def test_the_issue_case_n60000_d24_is_cheap_in_memory():
    n, d = 60_000, 24
    X = np.random.default_rng(3).standard_normal((n, d))
    M = tc.moment_tensor(X, 3)
    vals = {}
    peak = _peak(lambda: vals.setdefault("norm", M.norm()))
    # n x n would be 26.8 GiB; the dense route needs d^3 doubles plus blocks of DEFAULT_CHUNK_BYTES
    assert peak <= 6 * n * d * 8 + 2 * tc._tensor.DEFAULT_CHUNK_BYTES, peak
    # reference: the dense moment, accumulated over blocks of samples
    D = sum(_dense_moment(X[s:s + 5000], 3) * (min(5000, n - s) / n) for s in range(0, n, 5000))
    assert vals["norm"] == pytest.approx(np.linalg.norm(D), rel=1e-10)


def test_algorithm1_on_a_moment_tensor_forms_nothing_n_by_n():
    n, d = 20_000, 8
    X = np.random.default_rng(4).standard_normal((n, d))
    M = tc.moment_tensor(X, 3, center=True)
    res = {}
    peak = _peak(lambda: res.setdefault("r", tc.algorithm1(M, 6, seed=0, epochs=1, iters=5, backend="numpy")))
    # n x m products only (m = 6) and the blocks of the norm; n x n would be 3.2 GB
    assert peak <= 64 * 2**20, peak
    assert np.isfinite(res["r"].rel_error)


def test_moment_tensor_bad_input():
    X = np.ones((5, 3))
    with pytest.raises(ValueError, match="shape"):
        tc.moment_tensor(np.ones(5), 3)
    with pytest.raises(ValueError, match="order"):
        tc.moment_tensor(X, 1)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="row 3"):
        tc.moment_tensor(bad, 3)
    with pytest.raises(TypeError, match="center"):
        tc.moment_tensor(X, 3, center="yes")
    with pytest.raises(ValueError, match="chunk"):
        tc.moment_tensor(X, 3, chunk=0)
    with pytest.raises(TypeError, match="dtype"):
        tc.moment_tensor(X.astype(complex), 3)


def test_many_component_targets_are_contracted_densely(monkeypatch):
    # d^l = 216 <= r d / 2 = 9000: Algorithm 1 and refine contract the dense array (O(d^l) per
    # column instead of O(r d)); the factored route gives the same run up to rounding, which a
    # short, converging run keeps at ~1e-13 (tolerance 1e-8)
    from tdcore import _objective

    X = np.random.default_rng(5).standard_normal((3000, 6))
    M = tc.moment_tensor(X, 3, center=True)
    assert _objective.dense_is_cheaper(M)
    assert isinstance(_objective.make_target_operator(M), _objective.DenseTarget)
    kw = dict(seed=0, epochs=3, iters=100, backend="numpy")
    dense = tc.algorithm1(M, 6, **kw)
    monkeypatch.setattr(_objective, "dense_is_cheaper", lambda target: False)
    factored = tc.algorithm1(M, 6, **kw)
    assert dense.rel_error == pytest.approx(factored.rel_error, rel=1e-8)
    assert tc.rel_error(dense.model, M) == pytest.approx(dense.rel_error, rel=1e-8)
