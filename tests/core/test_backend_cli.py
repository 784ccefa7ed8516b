"""Backends (NumPy everywhere, CuPy where a GPU is usable) and the command line."""

import json
import subprocess
import sys

import numpy as np
import pytest

import tdcore as tc
from tdcore.__main__ import main

GPU = tc.backend_info()["cupy_usable"]


def test_auto_backend_follows_detection(monkeypatch):
    monkeypatch.delenv("TDCORE_BACKEND", raising=False)
    info = tc.backend_info()
    assert info["auto"] == ("cupy" if info["cupy_usable"] else "numpy")
    assert tc.get_backend("auto").name == info["auto"]
    assert tc.get_backend("numpy").xp is np
    assert isinstance(info["cupy_reason"], str) and info["cupy_reason"]


def test_env_var_selects_backend(monkeypatch):
    monkeypatch.setenv("TDCORE_BACKEND", "numpy")
    assert tc.get_backend("auto").name == "numpy"
    monkeypatch.setenv("TDCORE_BACKEND", "tpu")
    with pytest.raises(ValueError, match="TDCORE_BACKEND must be one of"):
        tc.get_backend("auto")


def test_unknown_backend_and_cupy_without_gpu():
    with pytest.raises(ValueError, match="backend must be one of"):
        tc.get_backend("jax")
    with pytest.raises(TypeError, match="backend must be one of"):
        tc.get_backend(3)
    if not GPU:
        with pytest.raises(ValueError, match="CuPy cannot use a GPU here"):
            tc.get_backend("cupy")
        with pytest.raises(ValueError, match="CuPy cannot use a GPU here"):
            tc.algorithm1(tc.random_target(5, 1, 3), 3, backend="cupy")


def test_results_are_numpy_by_default():
    res = tc.algorithm1(tc.random_target(6, 1, 3, seed=0), 3, seed=0, epochs=2, iters=5, backend="numpy")
    assert isinstance(res.model.factors, np.ndarray)
    assert all(isinstance(v, np.ndarray) for v in res.state.values())


# NumPy/CuPy agreement: tests/gpu/test_gpu_agreement.py (real CuPy on a GPU, the emulator elsewhere)


def test_cli_info_and_run(tmp_path, capsys):
    assert main(["info", "--json"]) == 0
    out = capsys.readouterr().out
    assert "backend='auto' resolves to" in out
    info = json.loads(out.strip().splitlines()[-1])
    assert info["auto"] in ("numpy", "cupy")
    dest = tmp_path / "run.npz"
    assert main(["run", "--d", "12", "--r", "2", "--order", "3", "--m", "8", "--seed", "0", "--epochs", "4",
                 "--backend", "numpy", "--out", str(dest)]) == 0
    out = capsys.readouterr().out
    assert "final relative error" in out
    with np.load(dest) as z:
        assert z["factors"].shape == (12, 8)
        hist = json.loads(str(z["history"]))
        assert len(hist["rel_error"]) == 4


def test_cli_run_with_refine(tmp_path, capsys):
    import tdcore as tc

    dest = tmp_path / "run.npz"
    assert main(["run", "--d", "30", "--r", "3", "--order", "3", "--m", "9", "--seed", "1", "--tol", "0.3",
                 "--refine", "1e-9", "--backend", "numpy", "--out", str(dest)]) == 0
    assert "refine (Levenberg-Marquardt" in capsys.readouterr().out
    with np.load(dest) as z:
        rec = json.loads(str(z["refine"]))
        model = tc.SymCP(z["weights"], z["factors"], int(z["order"]))
        target = tc.SymCP(z["target_weights"], z["target_factors"], int(z["order"]))
    assert rec["converged"] and rec["rel_error"] <= 1e-9
    assert tc.precise_rel_error(model, target) <= 1e-9
    assert main(["run", "--d", "10", "--r", "2", "--m", "4", "--refine", "-1"]) == 2
    assert "refine must be" in capsys.readouterr().err


def test_cli_reports_bad_input(capsys):
    assert main(["run", "--d", "10", "--r", "2", "--m", "0"]) == 2
    assert "m must be an integer >= 1" in capsys.readouterr().err


def test_cli_checkpoint_resume(tmp_path, capsys):
    ck = tmp_path / "ck.npz"
    args = ["run", "--d", "10", "--r", "2", "--m", "6", "--epochs", "3", "--iters", "20", "--backend", "numpy",
            "--checkpoint", str(ck)]
    assert main(args) == 0
    first = capsys.readouterr().out
    assert ck.exists()
    assert main(args) == 0  # resumes from the final checkpoint: nothing left to run, same answer
    second = capsys.readouterr().out
    err = [ln for ln in first.splitlines() if "final relative error" in ln]
    assert err == [ln for ln in second.splitlines() if "final relative error" in ln]


def test_module_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "tdcore", "info"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "tdcore" in out.stdout
