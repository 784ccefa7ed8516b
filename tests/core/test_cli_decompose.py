"""Tests of ``python -m tdcore decompose``: the three inputs, the output file, --json, and bad input."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import tdcore
from tdcore.__main__ import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture
def files(tmp_path):
    T = tdcore.random_target(6, 3, 3, seed=2)
    dense, fact = tmp_path / "dense.npy", tmp_path / "fact.npz"
    np.save(dense, T.to_dense())
    np.savez(fact, weights=T.weights, factors=T.factors, order=3)
    rng = np.random.default_rng(0)
    V = np.linalg.qr(rng.standard_normal((5, 2)))[0]
    X = (rng.exponential(size=(4000, 2)) - 1.0) @ V.T + 0.1 * rng.standard_normal((4000, 5))
    samples = tmp_path / "X.npy"
    np.save(samples, X)
    return {"T": T, "dense": str(dense), "fact": str(fact), "X": X, "samples": str(samples), "dir": tmp_path}


def _listing(d):
    return sorted(os.listdir(d))


def _load(p):
    with np.load(p, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_dense_input_default_out(files, capsys):
    assert main(["decompose", files["dense"]]) == 0
    out = capsys.readouterr().out
    model_path = os.path.join(files["dir"], "dense.model.npz")
    assert f"saved weights, factors and order to {model_path}" in out and "relative error" in out
    z = _load(model_path)
    model = tdcore.SymCP(z["weights"], z["factors"], int(z["order"]))
    summary = json.loads(str(z["summary"]))
    # the stored summary is the error of the stored model (same evaluation)
    assert summary["rel_error"] == tdcore.rel_error(model, files["T"].to_dense())
    assert summary["rel_error"] <= 1e-6 and summary["converged"]
    assert summary["input"]["kind"] == "dense" and summary["m"] == 12
    assert summary["provenance"]["engine"]["fingerprint"].startswith("sha256:")


def test_factored_input_json(files, capsys):
    out = os.path.join(files["dir"], "f")
    assert main(["decompose", files["fact"], "--m", "6", "--out", out, "--json", "--seed", "3"]) == 0
    stdout = capsys.readouterr().out
    s = json.loads(stdout)  # stdout is the JSON document alone
    assert s["out"] == out + ".npz" and s["m"] == 6 and s["seed"] == 3 and s["input"]["components"] == 3
    z = _load(out + ".npz")
    model = tdcore.SymCP(z["weights"], z["factors"], int(z["order"]))
    assert s["rel_error"] == tdcore.rel_error(model, files["T"]) <= 1e-6
    assert s["components"] == int(np.count_nonzero(z["weights"]))
    assert s["parameters"] == s["components"] * 7


def test_moments_input(files, capsys):
    out = os.path.join(files["dir"], "mom.npz")
    assert main(["decompose", "--moments", files["samples"], "--order", "3", "--m", "4", "--tol", "1e-3",
                 "--out", out, "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    z = _load(out)
    s = json.loads(str(z["summary"]))
    model = tdcore.SymCP(z["weights"], z["factors"], 3)
    M = tdcore.moment_tensor(files["X"], 3)
    assert s["input"]["kind"] == "moments" and s["input"]["n"] == 4000
    assert s["rel_error"] == pytest.approx(tdcore.rel_error(model, M), rel=1e-9)
    assert s["rel_error"] < 0.1


def test_moments_answer_does_not_depend_on_chunk(tmp_path):
    # 40 samples in d = 5: the moment stays factored (40 components; the dense 5^3 array is not cheaper),
    # copied in blocks of --chunk samples: the same tensor bit for bit, so the same run bit for bit
    X = np.random.default_rng(5).standard_normal((40, 5))
    p = tmp_path / "X.npy"
    np.save(p, X)
    outs = []
    for chunk in (1, 7, 40, 10**6):
        out = str(tmp_path / f"c{chunk}.npz")
        assert main(["decompose", "--moments", str(p), "--order", "3", "--m", "4", "--tol", "1e-2",
                     "--chunk", str(chunk), "--out", out, "--quiet"]) == 0
        outs.append(_load(out))
    assert json.loads(str(outs[0]["summary"]))["input"]["held_as"] == "factored"
    for z in outs[1:]:
        assert np.array_equal(z["weights"], outs[0]["weights"]) and np.array_equal(z["factors"], outs[0]["factors"])


def test_moments_dense_route_matches_factored(files, capsys):
    # 4000 samples in d = 5: the CLI sums the 5^3 array block by block instead of holding 4000 components
    assert main(["decompose", "--moments", files["samples"], "--order", "3", "--m", "4", "--tol", "1e-3",
                 "--json", "--out", str(files["dir"] / "d.npz")]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["input"]["held_as"] == "dense"
    z = _load(str(files["dir"] / "d.npz"))
    model = tdcore.SymCP(z["weights"], z["factors"], 3)
    # the summary's error, against the dense sum, is the error against the factored moment to rounding
    # (two summations of 4000 terms: ~1e-13 relative; the relative error itself is ~1e-3)
    assert s["rel_error"] == pytest.approx(tdcore.rel_error(model, tdcore.moment_tensor(files["X"], 3)), rel=1e-8)


def test_algorithm1_method(files, capsys):
    out = os.path.join(files["dir"], "a1.npz")
    assert main(["decompose", files["fact"], "--method", "algorithm1", "--m", "6", "--tol", "0.05", "--out", out,
                 "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert s["method"] == "algorithm1" and s["rel_error"] <= 0.05 and s["converged"]


def test_existing_out_needs_force(files, capsys):
    out = os.path.join(files["dir"], "x.npz")
    open(out, "wb").write(b"keep me")
    assert main(["decompose", files["dense"], "--out", out]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert open(out, "rb").read() == b"keep me"
    assert main(["decompose", files["dense"], "--out", out, "--force", "--quiet"]) == 0
    assert "weights" in _load(out)


BAD = [
    ("nonsym.npy", lambda p: np.save(p, np.arange(27.0).reshape(3, 3, 3)), [], "not symmetric"),
    ("nan.npy", lambda p: np.save(p, np.full((3, 3, 3), np.nan)), [], "NaN or infinite"),
    ("vec.npy", lambda p: np.save(p, np.ones(3)), [], r"order >= 2"),
    ("rect.npy", lambda p: np.save(p, np.ones((3, 4))), [], "equal dimensions"),
    ("junk.npy", lambda p: open(p, "wb").write(b"junk"), [], r"not a valid \.npy file"),
    ("nokeys.npz", lambda p: np.savez(p, a=np.ones(2)), [], "missing 'weights', 'factors'"),
    ("noorder.npz", lambda p: np.savez(p, weights=np.ones(2), factors=np.ones((3, 2))), [], "stores no 'order'"),
    ("shape.npz", lambda p: np.savez(p, weights=np.ones(3), factors=np.ones((3, 2)), order=3), [], "'weights' must"),
    ("junk.npz", lambda p: open(p, "wb").write(b"junk"), [], r"not a valid \.npz file"),
    ("zero.npz", lambda p: np.savez(p, weights=np.zeros(2), factors=np.ones((3, 2)), order=3), [], "zero norm"),
    ("x.txt", lambda p: open(p, "w").write("1"), [], r"must be a \.npy file"),
    ("data3.npy", lambda p: np.save(p, np.ones((2, 2, 2))), ["--moments"], r"shape \(n, d\)"),
    ("nanrow.npy", lambda p: np.save(p, np.vstack([np.ones((5, 2)), [[np.nan, 1]]])), ["--moments"],
     r"first in row 5"),
    ("noorder.npy", lambda p: np.save(p, np.ones((5, 2))), ["--moments", "--no-order"], "needs its order"),
]


@pytest.mark.parametrize("name, make, flags, msg", BAD, ids=[b[0] for b in BAD])
def test_bad_input_writes_nothing(tmp_path, capsys, name, make, flags, msg):
    p = str(tmp_path / name)
    make(p)
    before = _listing(tmp_path)
    if "--moments" in flags:
        argv = ["decompose", "--moments", p] + ([] if "--no-order" in flags else ["--order", "3"])
    else:
        argv = ["decompose", p]
    assert main(argv) == 2
    err = capsys.readouterr().err
    import re

    assert err.startswith("error: ") and p in err and re.search(msg, err), err
    assert _listing(tmp_path) == before  # nothing written, no temporary left


def test_missing_input_and_bad_flags(tmp_path, files, capsys):
    assert main(["decompose", str(tmp_path / "none.npy")]) == 2
    assert "none.npy: no such file" in capsys.readouterr().err
    assert main(["decompose"]) == 2
    assert "give exactly one input" in capsys.readouterr().err
    assert main(["decompose", files["dense"], "--moments", files["samples"]]) == 2
    assert "give exactly one input" in capsys.readouterr().err
    assert main(["decompose", files["dense"], "--center"]) == 2
    assert "--center applies to --moments only" in capsys.readouterr().err
    for flag, val, msg in (("--tol", "0", "--tol must be > 0"), ("--m", "0", "--m must be an integer >= 1"),
                           ("--order", "1", "order must be an integer >= 2"),
                           ("--out", str(tmp_path / "no" / "dir.npz"), "does not exist")):
        before = _listing(files["dir"])
        assert main(["decompose", files["dense"], flag, val]) == 2
        assert msg in capsys.readouterr().err
        assert _listing(files["dir"]) == before
    assert main(["decompose", files["fact"], "--out", files["fact"], "--force"]) == 2
    assert "names the input file" in capsys.readouterr().err


def test_help_of_every_flag_of_every_subcommand():
    import argparse

    ap_holder = {}
    orig = argparse.ArgumentParser.parse_args

    def grab(self, *a, **k):
        ap_holder["ap"] = self
        raise SystemExit(0)

    argparse.ArgumentParser.parse_args = grab
    try:
        with pytest.raises(SystemExit):
            main(["info"])
    finally:
        argparse.ArgumentParser.parse_args = orig
    ap = ap_holder["ap"]
    subs = next(a for a in ap._actions if isinstance(a, argparse._SubParsersAction))
    assert set(subs.choices) == {"info", "run", "decompose", "sweep"}
    for name, sp in subs.choices.items():
        for action in sp._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help and len(action.help) > 10, f"{name} {action.option_strings or action.dest}"


def test_fresh_process_and_progress_off_when_not_a_terminal(files):
    # as a new user runs it: a separate process, stdout a pipe (so no progress bar on stderr)
    r = subprocess.run([sys.executable, "-m", "tdcore", "decompose", files["fact"], "--m", "6", "--json"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert json.loads(r.stdout)["rel_error"] <= 1e-6
    h = subprocess.run([sys.executable, "-m", "tdcore", "decompose", "--help"], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)
    assert h.returncode == 0 and "--moments" in h.stdout and "memory-mapped" in h.stdout


def test_run_quiet_prints_nothing(tmp_path, capsys):
    assert main(["run", "--d", "4", "--r", "2", "--m", "4", "--epochs", "2", "--quiet"]) == 0
    assert capsys.readouterr().out == ""
    assert main(["run", "--d", "4", "--r", "2", "--m", "4", "--epochs", "2"]) == 0
    assert "final relative error" in capsys.readouterr().out


def test_progress_rule(monkeypatch):
    from argparse import Namespace

    from tdcore.__main__ import _want_progress

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    assert _want_progress(Namespace(quiet=False, progress=None)) is True
    assert _want_progress(Namespace(quiet=True, progress=None)) is False
    monkeypatch.setattr(sys.stdout, "isatty", lambda: False, raising=False)
    assert _want_progress(Namespace(quiet=False, progress=None)) is False
    assert _want_progress(Namespace(quiet=False, progress=True)) is True
