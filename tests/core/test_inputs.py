"""Tests of tdcore._inputs: loading a user's tensor from .npy / .npz / moment data, and every bad file."""

import os

import numpy as np
import pytest

import tdcore
from tdcore._inputs import InputError, default_m, load_target, model_summary


@pytest.fixture
def target():
    return tdcore.random_target(5, 3, 3, seed=4)


def _save(tmp_path, name, **arrays):
    p = tmp_path / name
    if name.endswith(".npz"):
        np.savez(p, **arrays)
    else:
        np.save(p, arrays["a"])
    return str(p)


# -- the three kinds ------------------------------------------------------------------
def test_dense_roundtrip(tmp_path, target):
    p = _save(tmp_path, "T.npy", a=target.to_dense())
    T, info = load_target(p)
    assert info == {"kind": "dense", "path": p, "d": 5, "order": 3, "components": None, "n": None}
    # the file holds exactly the array that was saved (np.save is bit-exact)
    assert np.array_equal(T, target.to_dense())
    assert load_target(p, order=3)[1]["order"] == 3


def test_integer_dense_is_read_in_float64(tmp_path):
    p = _save(tmp_path, "I.npy", a=np.ones((3, 3, 3), dtype=np.int32))
    T, _ = load_target(p)
    assert T.dtype == np.float64 and T.sum() == 27


def test_factored_roundtrip(tmp_path, target):
    p = _save(tmp_path, "T.npz", weights=target.weights, factors=target.factors, order=3)
    T, info = load_target(p)
    assert info["kind"] == "factored" and info["components"] == 3 and info["d"] == 5
    assert np.array_equal(T.weights, target.weights) and np.array_equal(T.factors, target.factors)
    # the order may come from the caller instead of the file
    p2 = _save(tmp_path, "U.npz", weights=target.weights, factors=target.factors)
    T2, info2 = load_target(p2, order=4)
    assert T2.order == 4 and info2["order"] == 4


def test_model_file_of_run_is_a_factored_input(tmp_path):
    from tdcore.__main__ import main

    out = tmp_path / "m.npz"
    assert main(["run", "--d", "4", "--r", "2", "--m", "4", "--epochs", "2", "--out", str(out), "--quiet"]) == 0
    T, info = load_target(str(out))
    assert info["kind"] == "factored" and T.order == 3 and T.d == 4


def test_moments_equal_moment_tensor(tmp_path):
    X = np.random.default_rng(0).standard_normal((300, 4))
    p = _save(tmp_path, "X.npy", a=X)
    T, info = load_target(p, order=3, moments=True)
    ref = tdcore.moment_tensor(X, 3)
    assert info == {"kind": "moments", "path": p, "d": 4, "order": 3, "components": 300, "n": 300,
                    "center": False, "held_as": "factored"}
    assert np.array_equal(T.factors, ref.factors) and np.array_equal(T.weights, ref.weights)
    # the dense moment, summed independently: (1/n) sum_k x_k (x) x_k (x) x_k
    dense = np.einsum("ka,kb,kc->abc", X, X, X) / 300
    # both are sums of 300 products of three O(1) numbers: agreement to ~300 eps relative
    assert np.max(np.abs(T.to_dense() - dense)) <= 1e-12 * np.max(np.abs(dense))


@pytest.mark.parametrize("chunk", [1, 7, 64, 299, 300, 10**6])
@pytest.mark.parametrize("center", [False, True])
def test_moments_same_for_any_chunk(tmp_path, chunk, center):
    X = 1.0 + np.random.default_rng(1).standard_normal((300, 4))
    p = _save(tmp_path, "X.npy", a=X)
    T, _ = load_target(p, order=3, moments=True, center=center, chunk=chunk)
    R, _ = load_target(p, order=3, moments=True, center=center, chunk=None)
    if not center:  # a copy in blocks: bit-identical for every block size
        assert np.array_equal(T.factors, R.factors)
    else:  # the mean is summed block by block: the same to rounding (300 terms of O(1): 1e-13 is 500 eps)
        assert np.allclose(T.factors, R.factors, rtol=0, atol=1e-13)
        assert np.allclose(T.factors.mean(axis=1), 0, atol=1e-13)
    assert abs(tdcore.norm(T) - tdcore.norm(R)) <= 1e-12 * tdcore.norm(R)


@pytest.mark.parametrize("chunk", [1, 7, 64, 300, None])
@pytest.mark.parametrize("center", [False, True])
def test_dense_moments_equal_the_factored_ones(tmp_path, chunk, center):
    X = 1.0 + np.random.default_rng(1).standard_normal((300, 4))
    p = _save(tmp_path, "X.npy", a=X)
    D, info = load_target(p, order=3, moments=True, center=center, chunk=chunk, dense=True)
    F, info_f = load_target(p, order=3, moments=True, center=center, chunk=chunk)
    assert info["held_as"] == "dense" and info_f["held_as"] == "factored" and D.shape == (4, 4, 4)
    # two summation orders of 300 products of three O(1) numbers: 1e-13 relative is ~500 eps
    ref = F.to_dense()
    assert np.max(np.abs(D - ref)) <= 1e-13 * np.max(np.abs(ref))
    auto, info_a = load_target(p, order=3, moments=True, center=center, chunk=chunk, dense="auto")
    assert info_a["held_as"] == "dense" and np.array_equal(auto, D)  # 2 * 4^3 <= 300 * 4: dense is cheaper


def test_auto_keeps_few_samples_factored(tmp_path):
    p = _save(tmp_path, "X.npy", a=np.random.default_rng(1).standard_normal((10, 4)))
    T, info = load_target(p, order=3, moments=True, dense="auto")
    assert info["held_as"] == "factored" and T.m == 10  # 2 * 4^3 > 10 * 4
    with pytest.raises(TypeError, match="dense must be True, False or 'auto'"):
        load_target(p, order=3, moments=True, dense="yes")


def test_compact_target():
    from tdcore._inputs import compact_target

    T = tdcore.moment_tensor(np.random.default_rng(0).standard_normal((500, 3)), 3)
    D = compact_target(T)
    assert isinstance(D, np.ndarray) and np.allclose(D, T.to_dense(), rtol=0, atol=1e-15)
    small = tdcore.random_target(10, 3, 3, seed=0)
    assert compact_target(small) is small


def test_moments_of_memmapped_float32_stay_float32(tmp_path):
    X = np.random.default_rng(2).standard_normal((50, 3)).astype(np.float32)
    p = _save(tmp_path, "X.npy", a=X)
    T, _ = load_target(p, order=2, moments=True)
    assert T.factors.dtype == np.float32 and T.m == 50


def test_default_m():
    assert default_m({"kind": "factored", "d": 10, "components": 3}) == 6
    assert default_m({"kind": "factored", "d": 4, "components": 30}) == 8
    assert default_m({"kind": "dense", "d": 7, "components": None}) == 14
    assert default_m({"kind": "moments", "d": 5, "components": 10**6}) == 10


def test_model_summary(target):
    s = model_summary(target, target, elapsed=1.5, info={"kind": "x"}, method="m", extra={"a": 1})
    assert s["rel_error"] == 0.0 and s["components"] == 3 and s["parameters"] == 18
    assert s["elapsed_s"] == 1.5 and s["input"] == {"kind": "x"} and s["a"] == 1


# -- bad files: every one refused with the file's name and the reason ---------------------------
def _bad(tmp_path):
    rng = np.random.default_rng(3)
    A = rng.standard_normal((3, 3, 3))
    nan = tdcore.random_target(3, 2, 3, seed=0).to_dense()
    nan[0, 1, 2] = np.nan
    return A, nan


def test_missing_and_directory(tmp_path):
    with pytest.raises(InputError, match=r"nope\.npy: no such file"):
        load_target(str(tmp_path / "nope.npy"))
    with pytest.raises(InputError, match="is a directory"):
        load_target(str(tmp_path))
    with pytest.raises(TypeError, match="must be a file path"):
        load_target(3)


def test_wrong_suffix(tmp_path):
    p = tmp_path / "T.txt"
    p.write_text("1 2 3")
    with pytest.raises(InputError, match=r"T\.txt: .*must be a \.npy file .*'\.txt'"):
        load_target(str(p))
    with pytest.raises(InputError, match=r"must be a \.npy file"):
        load_target(str(_save(tmp_path, "T.npz", weights=np.ones(1), factors=np.ones((2, 1)))), moments=True,
                    order=3)


@pytest.mark.parametrize("content", [b"", b"garbage that is not numpy", b"\x93NUMPY\x01\x00"])
def test_corrupt_npy(tmp_path, content):
    p = tmp_path / "C.npy"
    p.write_bytes(content)
    with pytest.raises(InputError, match=r"C\.npy: is not a valid \.npy file"):
        load_target(str(p))


def test_truncated_npy(tmp_path, target):
    p = _save(tmp_path, "T.npy", a=target.to_dense())
    data = open(p, "rb").read()
    open(p, "wb").write(data[:-40])
    with pytest.raises(InputError, match=r"T\.npy: is not a valid \.npy file"):
        load_target(p)


def test_pickled_npy_is_refused(tmp_path):
    p = tmp_path / "O.npy"
    np.save(p, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InputError, match="Python objects"):
        load_target(str(p))


@pytest.mark.parametrize("arr, msg", [
    (np.ones(4), r"order >= 2 \(ndim >= 2\)"),
    (np.ones((3, 4)), r"equal dimensions .* --moments"),
    (np.ones((3, 3, 2)), "equal dimensions"),
    (np.ones((3, 3), dtype=complex), "real numeric"),
    (np.ones((3, 3), dtype=bool), "real numeric"),
    (np.zeros((3, 3, 3)), "zero norm"),
])
def test_bad_dense(tmp_path, arr, msg):
    p = _save(tmp_path, "B.npy", a=arr)
    with pytest.raises((InputError, TypeError), match=r"B\.npy: .*" + msg):
        load_target(p)


def test_dense_not_symmetric_nonfinite_wrong_order(tmp_path):
    A, nan = _bad(tmp_path)
    with pytest.raises(InputError, match=r"A\.npy: .*not symmetric.*symmetrize"):
        load_target(_save(tmp_path, "A.npy", a=A))
    with pytest.raises(InputError, match=r"N\.npy: contains NaN or infinite entries \(first at index \(0, 1, 2\)\)"):
        load_target(_save(tmp_path, "N.npy", a=nan))
    with pytest.raises(InputError, match=r"S\.npy: holds an order-3 tensor but order=4 was asked"):
        load_target(_save(tmp_path, "S.npy", a=tdcore.symmetrize(A)), order=4)


@pytest.mark.parametrize("arrays, order, msg", [
    ({"weights": np.ones(2)}, None, r"missing 'factors'"),
    ({}, None, r"missing 'weights', 'factors' \(found: none\)"),
    ({"weights": np.ones(2), "factors": np.ones((3, 2))}, None, r"stores no 'order'"),
    ({"weights": np.ones(2), "factors": np.ones((3, 2)), "order": 3}, 4, "stores order=3 but order=4"),
    ({"weights": np.ones(2), "factors": np.ones((3, 2)), "order": 1}, None, "'order' must be an integer >= 2"),
    ({"weights": np.ones(2), "factors": np.ones((3, 2)), "order": 2.5}, None, "'order' must be a single integer"),
    ({"weights": np.ones(2), "factors": np.ones((3, 2)), "order": [3, 3]}, None, "single integer"),
    ({"weights": np.ones(3), "factors": np.ones((3, 2)), "order": 3}, None,
     r"'weights' must have shape \(m,\) = \(2,\)"),
    ({"weights": np.ones(2), "factors": np.ones(3), "order": 3}, None, "'factors' must be a 2-D array"),
    ({"weights": np.ones(2), "factors": np.full((3, 2), np.inf), "order": 3}, None, "'factors' contains NaN"),
    ({"weights": np.array([1.0, np.nan]), "factors": np.ones((3, 2)), "order": 3}, None, "'weights' contains NaN"),
    ({"weights": np.ones(2), "factors": np.ones((3, 2), dtype=complex), "order": 3}, None, "real numeric"),
    ({"weights": np.array(["a", "b"]), "factors": np.ones((3, 2)), "order": 3}, None, "real numeric"),
    ({"weights": np.zeros(2), "factors": np.ones((3, 2)), "order": 3}, None, "zero norm"),
    ({"weights": np.ones(0), "factors": np.ones((3, 0)), "order": 3}, None, "m >= 1 columns"),
])
def test_bad_npz(tmp_path, arrays, order, msg):
    p = _save(tmp_path, "F.npz", **arrays)
    with pytest.raises((InputError, TypeError), match=r"F\.npz: .*" + msg):
        load_target(p, order=order)


def test_corrupt_and_pickled_npz(tmp_path):
    p = tmp_path / "Z.npz"
    p.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(InputError, match=r"Z\.npz: is not a valid \.npz file"):
        load_target(str(p))
    q = tmp_path / "P.npz"
    np.savez(q, weights=np.array([object()], dtype=object), factors=np.ones((2, 1)))
    with pytest.raises(InputError, match=r"P\.npz: holds Python objects"):
        load_target(str(q), order=3)


@pytest.mark.parametrize("arr, order, msg", [
    (np.ones(5), 3, r"shape \(n, d\)"),
    (np.ones((2, 2, 2)), 3, r"shape \(n, d\)"),
    (np.ones((0, 3)), 3, "n >= 1 rows"),
    (np.ones((4, 0)), 3, "d >= 1 columns"),
    (np.ones((4, 3), dtype=bool), 3, "real numeric"),
    (np.zeros((4, 3)), 3, "zero norm"),
    (np.ones((4, 3)), None, "needs its order"),
])
@pytest.mark.parametrize("dense", [False, True])
def test_bad_moments(tmp_path, arr, order, msg, dense):
    p = _save(tmp_path, "X.npy", a=arr)
    with pytest.raises((InputError, TypeError), match=r"X\.npy: .*" + msg):
        load_target(p, order=order, moments=True, dense=dense)


def test_moments_nonfinite_names_the_row(tmp_path):
    X = np.ones((100, 3))
    X[57, 1] = np.inf
    p = _save(tmp_path, "X.npy", a=X)
    for chunk in (1, 10, 1000):
        for dense in (False, True):
            with pytest.raises(InputError, match=r"X\.npy: the data contain NaN or inf.* \(first in row 57\)"):
                load_target(p, order=3, moments=True, chunk=chunk, dense=dense)


def test_bad_arguments(tmp_path, target):
    p = _save(tmp_path, "T.npy", a=target.to_dense())
    with pytest.raises(ValueError, match="order must be an integer >= 2"):
        load_target(p, order=1)
    with pytest.raises(TypeError, match="moments must be True or False"):
        load_target(p, moments="yes")
    with pytest.raises(ValueError, match="center=True applies to moment data only"):
        load_target(p, center=True)
    with pytest.raises(ValueError, match="chunk must be an integer >= 1"):
        load_target(p, chunk=0)


def test_moment_memory_limit(tmp_path, monkeypatch):
    p = _save(tmp_path, "X.npy", a=np.ones((1000, 10)))
    monkeypatch.setenv("TDCORE_MAX_BYTES", "1000")
    with pytest.raises(MemoryError, match=r"moment tensor would allocate .*/X\.npy"):
        load_target(p, order=3, moments=True)


def test_unreadable(tmp_path, target):
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    p = _save(tmp_path, "T.npy", a=target.to_dense())
    os.chmod(p, 0)
    try:
        with pytest.raises(PermissionError, match="not readable"):
            load_target(p)
    finally:
        os.chmod(p, 0o644)
