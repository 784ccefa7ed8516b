"""Hostile input: every case is refused at the entry with the right exception type and a message that
names the parameter (or, for memory, states the size and the limit); a few hostile-but-valid inputs are
checked to be computed right.

Each case is ``(id, exception, regex the message must match, callable)``; the regex always contains the
parameter's name.  Memory cases set ``TDCORE_MAX_BYTES`` or pass sizes whose need (PiB) is above any machine.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import tdcore as tc
from tdcore.__main__ import main
from tdcore._validate import memory_limit

T3 = tc.random_target(6, 2, 3, seed=0)
T4 = tc.random_target(6, 2, 4, seed=0)
T3d7 = tc.random_target(7, 2, 3, seed=0)
D3 = T3.to_dense()
ZERO = tc.SymCP(np.zeros(2), T3.factors, 3)
ZERO_D = np.zeros((6, 6, 6))
NAN_D = D3.copy()
NAN_D[0, 0, 0] = np.nan
ASYM = D3.copy()
ASYM[0, 1, 2] += 1.0
BIG_M = tc.SymCP(np.ones(10**6), np.ones((1, 10**6)), 3)  # 8 MB arrays; its Gram matrix is 8 TB
A1 = dict(epochs=1, iters=2, backend="numpy")


def a1(**kw):
    return lambda: tc.algorithm1(T3, 4, **{**A1, **kw})


def batch(**kw):
    args = {**A1, "seeds": [0, 1], **kw}
    targets = args.pop("targets", T3)
    return lambda: tc.algorithm1_batch(targets, 4, **args)


def U_for(d, value=1.0):
    return np.full((d, 3), value)


CASES = [
    # ---- tensors: SymCP, check_target, rel_error, inner, norm, contract, to_dense -------------------------
    ("rel_error dense order 2 vs 3", ValueError, r"model.*shape \(5, 5\).*target.*\(5, 5, 5\)",
     lambda: tc.rel_error(np.eye(5), tc.random_target(5, 2, 3, seed=0).to_dense())),
    ("rel_error SymCP d mismatch", ValueError, r"model.*target", lambda: tc.rel_error(T3d7, T3)),
    ("rel_error SymCP order mismatch", ValueError, r"model.*target", lambda: tc.rel_error(T4, T3)),
    ("rel_error SymCP vs dense of other order", ValueError, r"model.*target", lambda: tc.rel_error(T3, np.eye(6))),
    ("rel_error zero target", ValueError, r"target has zero norm", lambda: tc.rel_error(T3, ZERO)),
    ("rel_error zero dense target", ValueError, r"target has zero norm", lambda: tc.rel_error(D3, ZERO_D)),
    ("rel_error model str", TypeError, r"model must be", lambda: tc.rel_error("abc", T3)),
    ("rel_error target None", TypeError, r"target must be", lambda: tc.rel_error(T3, None)),
    ("rel_error target list", TypeError, r"target must be", lambda: tc.rel_error(T3, [[1.0]])),
    ("rel_error NaN target", ValueError, r"target contains NaN", lambda: tc.rel_error(D3, NAN_D)),
    ("rel_error NaN model", ValueError, r"model contains NaN", lambda: tc.rel_error(NAN_D, D3)),
    ("rel_error asymmetric target", ValueError, r"target is not symmetric", lambda: tc.rel_error(D3, ASYM)),
    ("rel_error complex target", TypeError, r"target must be a real", lambda: tc.rel_error(D3, D3 + 0j)),
    ("rel_error 1-D target", ValueError, r"target must have order >= 2", lambda: tc.rel_error(T3, np.ones(6))),
    ("rel_error ragged dense", ValueError, r"target must have equal dimensions",
     lambda: tc.rel_error(T3, np.ones((6, 6, 5)))),
    ("inner order mismatch", ValueError, r"a has order 3, b has order 4", lambda: tc.inner(T3, T4)),
    ("inner d mismatch", ValueError, r"a has d=6, b has d=7", lambda: tc.inner(T3, T3d7)),
    ("inner dense shapes", ValueError, r"different shapes", lambda: tc.inner(D3, np.eye(6))),
    ("inner SymCP vs dense shape", ValueError, r"a is a SymCP.*b a dense", lambda: tc.inner(T3, np.eye(6))),
    ("inner b str", TypeError, r"b must be", lambda: tc.inner(T3, "x")),
    ("inner a int", TypeError, r"a must be", lambda: tc.inner(3, T3)),
    ("norm str", TypeError, r"T must be", lambda: tc.norm("abc")),
    ("norm NaN dense", ValueError, r"T contains NaN", lambda: tc.norm(NAN_D)),
    ("contract 1-D vector", ValueError, r"U must be a 2-D array.*u\[:, None\]", lambda: T3.contract(np.ones(6))),
    ("contract wrong d", ValueError, r"U must be a 2-D array .* d = 6, got shape \(5, 3\)",
     lambda: T3.contract(np.ones((5, 3)))),
    ("contract 3-D", ValueError, r"U must be a 2-D", lambda: T3.contract(np.ones((6, 3, 1)))),
    ("contract NaN", ValueError, r"U contains NaN", lambda: T3.contract(U_for(6, np.nan))),
    ("contract inf", ValueError, r"U contains NaN or infinite", lambda: T3.contract(U_for(6, np.inf))),
    ("contract complex", TypeError, r"U must be a real", lambda: T3.contract(U_for(6) + 1j)),
    ("contract bool", TypeError, r"U must be a real", lambda: T3.contract(np.ones((6, 2), dtype=bool))),
    ("contract str", ValueError, r"U must be a 2-D", lambda: T3.contract("abc")),
    ("contract memory", MemoryError, r"SymCP.contract would allocate .*above the limit",
     lambda: BIG_M.contract(np.ones((1, 10**6)))),
    ("SymCP weights 2-D", ValueError, r"weights must have shape", lambda: tc.SymCP(np.ones((2, 1)), np.eye(3)[:, :2], 3)),
    ("SymCP factors 1-D", ValueError, r"factors must be a 2-D", lambda: tc.SymCP(np.ones(2), np.ones(3), 3)),
    ("SymCP m mismatch", ValueError, r"weights must have shape \(m,\) = \(2,\)",
     lambda: tc.SymCP(np.ones(3), np.eye(3)[:, :2], 3)),
    ("SymCP NaN weights", ValueError, r"weights contains NaN", lambda: tc.SymCP([np.nan, 1], np.eye(3)[:, :2], 3)),
    ("SymCP inf factors", ValueError, r"factors contains NaN or infinite",
     lambda: tc.SymCP([1, 1], np.full((3, 2), np.inf), 3)),
    ("SymCP order 1", ValueError, r"order must be an integer >= 2", lambda: tc.SymCP([1.0], [[1.0]], 1)),
    ("SymCP order float", TypeError, r"order must be an integer", lambda: tc.SymCP([1.0], [[1.0]], 3.0)),
    ("SymCP order bool", TypeError, r"order must be an integer", lambda: tc.SymCP([1.0], [[1.0]], True)),
    ("SymCP order str", TypeError, r"order must be an integer", lambda: tc.SymCP([1.0], [[1.0]], "3")),
    ("SymCP complex factors", TypeError, r"factors must be a real", lambda: tc.SymCP([1.0], [[1j]], 3)),
    ("SymCP str weights", TypeError, r"weights must be a real", lambda: tc.SymCP(["a"], [[1.0]], 3)),
    ("SymCP object weights", TypeError, r"weights must be a real",
     lambda: tc.SymCP(np.array([None], dtype=object), [[1.0]], 3)),
    ("SymCP empty", ValueError, r"factors must have d >= 1 rows", lambda: tc.SymCP(np.ones(0), np.ones((3, 0)), 3)),
    ("SymCP times NaN", ValueError, r"weights contains NaN", lambda: T3 * np.nan),
    ("normalized zero", ValueError, r"zero norm", lambda: ZERO.normalized()),
    ("to_dense too big", MemoryError, r"to_dense\(\) would allocate .*max_bytes",
     lambda: tc.random_target(2000, 2, 3, seed=0).to_dense()),
    ("to_dense max_bytes str", TypeError, r"max_bytes must be an integer", lambda: T3.to_dense(max_bytes="1GB")),
    # ---- random_target ------------------------------------------------------------------------------------
    ("random_target d=0", ValueError, r"d must be an integer >= 1", lambda: tc.random_target(0, 2, 3)),
    ("random_target r=0", ValueError, r"r must be an integer >= 1", lambda: tc.random_target(5, 0, 3)),
    ("random_target order=1", ValueError, r"order must be an integer >= 2", lambda: tc.random_target(5, 2, 1)),
    ("random_target d float", TypeError, r"d must be an integer", lambda: tc.random_target(5.0, 2, 3)),
    ("random_target d bool", TypeError, r"d must be an integer", lambda: tc.random_target(True, 2, 3)),
    ("random_target seed -1", ValueError, r"seed must be an integer >= 0", lambda: tc.random_target(5, 2, 3, seed=-1)),
    ("random_target seed str", TypeError, r"seed must be an integer", lambda: tc.random_target(5, 2, 3, seed="1")),
    ("random_target orthogonal str", TypeError, r"orthogonal must be True or False",
     lambda: tc.random_target(5, 2, 3, orthogonal="False")),
    ("random_target orthogonal int", TypeError, r"orthogonal must be True or False",
     lambda: tc.random_target(5, 2, 3, orthogonal=1)),
    ("random_target normalize str", TypeError, r"normalize must be True or False",
     lambda: tc.random_target(5, 2, 3, normalize="no")),
    ("random_target orthogonal r > d", ValueError, r"orthogonal=True needs r <= d",
     lambda: tc.random_target(3, 4, 3, orthogonal=True)),
    ("random_target weights shape", ValueError, r"weights must have shape \(2,\)",
     lambda: tc.random_target(5, 2, 3, weights=[1.0, 2.0, 3.0])),
    ("random_target weights NaN", ValueError, r"weights contains NaN",
     lambda: tc.random_target(5, 2, 3, weights=[1.0, np.nan])),
    ("random_target weights zero", ValueError, r"weights are all zero",
     lambda: tc.random_target(5, 2, 3, weights=[0.0, 0.0])),
    ("random_target d=1e9 memory", MemoryError, r"random_target would allocate .*GiB.*d x r = 1000000000 x 2.*limit",
     lambda: tc.random_target(10**9, 2, 3)),
    # ---- algorithm1 ---------------------------------------------------------------------------------------
    ("algorithm1 reinit str", TypeError, r"reinit must be True or False", a1(reinit="False")),
    ("algorithm1 mode_switch str", TypeError, r"mode_switch must be True or False", a1(mode_switch="no")),
    ("algorithm1 mode_switch int", TypeError, r"mode_switch must be True or False", a1(mode_switch=0)),
    ("algorithm1 progress str", TypeError, r"progress must be True or False", a1(progress="yes")),
    ("algorithm1 resume str", TypeError, r"resume must be True or False", a1(resume="no")),
    ("algorithm1 return_numpy int", TypeError, r"return_numpy must be True or False", a1(return_numpy=1)),
    ("algorithm1 callback not callable", TypeError, r"callback must be callable", a1(callback=5)),
    ("algorithm1 polish float", TypeError, r"polish must be an integer", a1(polish=1.5)),
    ("algorithm1 polish -1", ValueError, r"polish must be an integer >= 0", a1(polish=-1)),
    ("algorithm1 tol 0", ValueError, r"tol must be > 0", a1(tol=0)),
    ("algorithm1 tol NaN", ValueError, r"tol must be finite", a1(tol=float("nan"))),
    ("algorithm1 tol str", TypeError, r"tol must be a real number", a1(tol="0.1")),
    ("algorithm1 epochs 0", ValueError, r"epochs must be an integer >= 1", a1(epochs=0)),
    ("algorithm1 iters -1", ValueError, r"iters must be an integer >= 1", a1(iters=-1)),
    ("algorithm1 eta 0", ValueError, r"eta must be > 0", a1(eta=0.0)),
    ("algorithm1 eta inf", ValueError, r"eta must be finite", a1(eta=float("inf"))),
    ("algorithm1 lam -1", ValueError, r"lam must be >= 0", a1(lam=-1.0)),
    ("algorithm1 delta 0", ValueError, r"delta must be > 0", a1(delta=0.0)),
    ("algorithm1 seed -1", ValueError, r"seed must be an integer >= 0", a1(seed=-1)),
    ("algorithm1 seed float", TypeError, r"seed must be an integer", a1(seed=1.5)),
    ("algorithm1 backend", ValueError, r"backend must be one of", a1(backend="torch")),
    ("algorithm1 dtype float16", ValueError, r"dtype must be float64 or float32", a1(dtype=np.float16)),
    ("algorithm1 dtype int32", ValueError, r"dtype must be float64 or float32", a1(dtype="int32")),
    ("algorithm1 dtype nonsense", TypeError, r"dtype must be float64 or float32", a1(dtype="nonsense")),
    ("algorithm1 record_every 0", ValueError, r"record_every must be an integer >= 1", a1(record_every=0)),
    ("algorithm1 checkpoint_every 0", ValueError, r"checkpoint_every must be an integer >= 1", a1(checkpoint_every=0)),
    ("algorithm1 init_state list", TypeError, r"init_state must be a dict", a1(init_state=[1, 2])),
    ("algorithm1 init_state U shape", ValueError, r"init_state\['U'\] must have shape",
     a1(init_state={"U": np.ones((5, 4)), "a": np.ones(4)})),
    ("algorithm1 init_state U NaN", ValueError, r"init_state\['U'\] contains NaN",
     a1(init_state={"U": np.full((6, 4), np.nan), "a": np.ones(4)})),
    ("algorithm1 init_state zero column", ValueError, r"init_state\['U'\] has a zero column",
     a1(init_state={"U": np.zeros((6, 4)), "a": np.ones(4)})),
    ("algorithm1 init_state a not signs", ValueError, r"init_state\['a'\] must hold signs",
     a1(init_state={"U": np.ones((6, 4)), "a": np.full(4, 0.5)})),
    ("algorithm1 init_state unknown key", ValueError, r"init_state has unknown keys",
     a1(init_state={"U": np.ones((6, 4)), "a": np.ones(4), "x": 1})),
    ("algorithm1 m 0", ValueError, r"m must be an integer >= 1", lambda: tc.algorithm1(T3, 0, **A1)),
    ("algorithm1 m float", TypeError, r"m must be an integer", lambda: tc.algorithm1(T3, 4.0, **A1)),
    ("algorithm1 m bool", TypeError, r"m must be an integer", lambda: tc.algorithm1(T3, True, **A1)),
    ("algorithm1 zero SymCP target", ValueError, r"target has zero norm", lambda: tc.algorithm1(ZERO, 4, **A1)),
    ("algorithm1 zero dense target", ValueError, r"target has zero norm", lambda: tc.algorithm1(ZERO_D, 4, **A1)),
    ("algorithm1 NaN target", ValueError, r"target contains NaN", lambda: tc.algorithm1(NAN_D, 4, **A1)),
    ("algorithm1 asymmetric target", ValueError, r"target is not symmetric", lambda: tc.algorithm1(ASYM, 4, **A1)),
    ("algorithm1 list target", TypeError, r"target must be", lambda: tc.algorithm1([[1.0]], 4, **A1)),
    ("algorithm1 m=1e7 memory", MemoryError, r"algorithm1 would allocate .*PiB.*m=10000000.*limit",
     lambda: tc.algorithm1(tc.random_target(5, 2, 3, seed=0), 10**7, **A1)),
    ("algorithm1 max_bytes refuses", MemoryError, r"algorithm1 would allocate .*above the limit of 1000 B",
     a1(max_bytes=1000)),
    ("algorithm1 max_bytes 0", ValueError, r"max_bytes must be an integer >= 1", a1(max_bytes=0)),
    ("algorithm1 max_bytes str", TypeError, r"max_bytes must be an integer", a1(max_bytes="1e9")),
    ("algorithm1 checkpoint int", TypeError, r"checkpoint must be a file path", a1(checkpoint=123)),
    ("algorithm1 checkpoint missing dir", ValueError, r"checkpoint=.*does not exist",
     a1(checkpoint="/nonexistent-dir-tdcore/ck.npz")),
    ("algorithm1 checkpoint empty", ValueError, r"checkpoint must be a non-empty", a1(checkpoint="")),
    ("algorithm1 checkpoint is a dir", ValueError, r"checkpoint=.*is a directory", a1(checkpoint="/tmp")),
    # ---- algorithm1_batch ---------------------------------------------------------------------------------
    ("batch seeds int", TypeError, r"seeds must be a sequence of seeds .*single integer 5", batch(seeds=5)),
    ("batch seeds empty", ValueError, r"seeds must contain at least one seed", batch(seeds=[])),
    ("batch seeds negative", ValueError, r"seed must be an integer >= 0", batch(seeds=[0, -1])),
    ("batch seeds floats", TypeError, r"seed must be an integer", batch(seeds=[0.5])),
    ("batch seeds None", TypeError, r"seeds must be a sequence", batch(seeds=None)),
    ("batch targets empty", ValueError, r"targets must hold at least one", batch(targets=[])),
    ("batch targets count", ValueError, r"got 3 targets for 2 seeds", batch(targets=[T3, T3, T3])),
    ("batch targets[1] zero", ValueError, r"targets\[1\] has zero norm", batch(targets=[T3, ZERO])),
    ("batch shared zero target", ValueError, r"targets has zero norm", batch(targets=ZERO)),
    ("batch targets[0] str", TypeError, r"targets\[0\] must be", batch(targets=["x", T3])),
    ("batch divergence", ValueError, r"divergence must be 'freeze' or 'raise'", batch(divergence="maybe")),
    ("batch workers 0", ValueError, r"workers must be an integer >= 1", batch(workers=0)),
    ("batch workers float", TypeError, r"workers must be an integer", batch(workers=2.0)),
    ("batch reinit str", TypeError, r"reinit must be True or False", batch(reinit="False")),
    ("batch progress str", TypeError, r"progress must be True or False", batch(progress="no")),
    ("batch memory", MemoryError, r"algorithm1_batch would allocate .*batch=2.*above the limit", batch(max_bytes=1000)),
    # ---- refine, decompose ----------------------------------------------------------------------------------
    ("refine model dense", TypeError, r"model must be a tdcore.SymCP", lambda: tc.refine(D3, T3)),
    ("refine model d", ValueError, r"model has dimension d=7", lambda: tc.refine(T3d7, T3)),
    ("refine model order", ValueError, r"model has order 4", lambda: tc.refine(T4, T3)),
    ("refine zero target", ValueError, r"target has zero norm", lambda: tc.refine(T3, ZERO)),
    ("refine tol 0", ValueError, r"tol must be > 0", lambda: tc.refine(T3, T3, tol=0.0)),
    ("refine method", ValueError, r"method must be one of", lambda: tc.refine(T3, T3, method="lu")),
    ("refine merge > 1", ValueError, r"merge must be a cosine", lambda: tc.refine(T3, T3, merge=1.5)),
    ("refine max_iter -1", ValueError, r"max_iter must be an integer >= 0", lambda: tc.refine(T3, T3, max_iter=-1)),
    ("refine memory", MemoryError, r"refine would allocate .*m=1000000.*above the limit",
     lambda: tc.refine(BIG_M, tc.random_target(1, 1, 3, seed=0))),
    ("decompose zero target", ValueError, r"target has zero norm", lambda: tc.decompose(ZERO, 4)),
    ("decompose tol 0", ValueError, r"tol must be > 0", lambda: tc.decompose(T3, 4, tol=0.0)),
    ("decompose handoff NaN", ValueError, r"handoff must be finite", lambda: tc.decompose(T3, 4, handoff=float("nan"))),
    ("decompose refine_kwargs", TypeError, r"refine_kwargs must be a dict", lambda: tc.decompose(T3, 4, refine_kwargs=5)),
    ("decompose str target", TypeError, r"target must be", lambda: tc.decompose("T", 4)),
    # ---- baselines ---------------------------------------------------------------------------------------
    ("power_method zero target", ValueError, r"target has zero norm", lambda: tc.power_method(ZERO, 2)),
    ("power_method zero dense", ValueError, r"target has zero norm", lambda: tc.power_method(ZERO_D, 2)),
    ("power_method rank 0", ValueError, r"rank must be an integer >= 1", lambda: tc.power_method(T3, 0)),
    ("power_method refit str", TypeError, r"refit must be True or False", lambda: tc.power_method(T3, 2, refit="yes")),
    ("power_method n_restarts 0", ValueError, r"n_restarts must be an integer >= 1",
     lambda: tc.power_method(T3, 2, n_restarts=0)),
    ("power_method seed str", TypeError, r"seed must be an integer", lambda: tc.power_method(T3, 2, seed="s")),
    ("power_method memory", MemoryError, r"power_method would allocate .*n_restarts=10000000000",
     lambda: tc.power_method(T3, 2, n_restarts=10**10)),
    ("refit_weights 1-D factors", ValueError, r"factors must be a 2-D", lambda: tc.refit_weights(np.ones(6), T3)),
    ("refit_weights wrong d", ValueError, r"factors must be a 2-D array .* d = 6", lambda: tc.refit_weights(np.ones((5, 2)), T3)),
    ("refit_weights NaN", ValueError, r"factors contains NaN", lambda: tc.refit_weights(np.full((6, 2), np.nan), T3)),
]

try:
    import tensorly  # noqa: F401

    CASES += [
        ("cp_als zero target", ValueError, r"target has zero norm", lambda: tc.cp_als(ZERO, 2)),
        ("cp_als zero dense", ValueError, r"target has zero norm", lambda: tc.cp_als(ZERO_D, 2)),
        ("cp_als rank 0", ValueError, r"rank must be an integer >= 1", lambda: tc.cp_als(T3, 0)),
        ("cp_als linesearch str", TypeError, r"linesearch must be True or False",
         lambda: tc.cp_als(T3, 2, linesearch="False")),
        ("cp_als init", ValueError, r"init must be one of", lambda: tc.cp_als(T3, 2, init="nvecs")),
        ("cp_als max_bytes 0", ValueError, r"max_bytes must be an integer >= 1", lambda: tc.cp_als(T3, 2, max_bytes=0)),
        ("cp_als dense too big", MemoryError, r"max_bytes", lambda: tc.cp_als(T3, 2, max_bytes=100)),
    ]
except ImportError:  # pragma: no cover - the optional extra
    pass


@pytest.mark.parametrize("exc,pattern,call", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_refused_with_message_naming_the_parameter(exc, pattern, call):
    with pytest.raises(exc, match=pattern) as info:
        call()
    assert "allow_pickle" not in str(info.value)


def test_suite_size():
    assert len(CASES) >= 100


# ---- memory limit: its sources ----------------------------------------------------------------------
def test_memory_limit_env_and_argument(monkeypatch):
    monkeypatch.setenv("TDCORE_MAX_BYTES", "5000")
    assert memory_limit() == 5000
    with pytest.raises(MemoryError, match=r"random_target would allocate .*limit of 4.9 KiB"):
        tc.random_target(100, 2, 3)
    assert memory_limit(10**9) == 10**9  # an explicit argument wins over the environment
    tc.algorithm1(T3, 4, max_bytes=10**9, **A1)
    monkeypatch.setenv("TDCORE_MAX_BYTES", "lots")
    with pytest.raises(ValueError, match="TDCORE_MAX_BYTES must be a number of bytes"):
        memory_limit()
    monkeypatch.delenv("TDCORE_MAX_BYTES")
    phys = tc._validate.physical_memory()
    assert memory_limit() == (int(0.5 * phys) if phys else 8 * 2**30)


def test_estimate_memory_counts_the_gram_matrix():
    # m = 1e7 components: the m x m Gram matrix alone is 8e14 bytes (728 TiB)
    assert tc.estimate_memory(5, 10**7) >= 8 * 10**14
    # linear in the batch, and a dense target adds its d^l entries
    assert tc.estimate_memory(10, 6, r=2, batch=4) == 4 * tc.estimate_memory(10, 6, r=2)
    assert tc.estimate_memory(10, 6, dense=True) - tc.estimate_memory(10, 6) >= 8 * 10**3


# ---- CLI: refused before any work, exit status 2 with a message on stderr ----------------------------
CLI_BASE = ["run", "--d", "6", "--r", "2", "--m", "4", "--epochs", "1", "--iters", "2", "--backend", "numpy"]

CLI_CASES = [
    ("--m 0", ["--m", "0"], r"m must be an integer >= 1"),
    ("--d 0", ["--d", "0"], r"--d must be an integer >= 1"),
    ("--r 0", ["--r", "0"], r"--r must be an integer >= 1"),
    ("--order 1", ["--order", "1"], r"--order must be an integer >= 2"),
    ("--d 1e9", ["--d", "1000000000"], r"would allocate .*d=1000000000.*limit"),
    ("--m 1e7", ["--m", "10000000"], r"would allocate .*PiB.*m=10000000"),
    ("--eta -1", ["--eta", "-1"], r"eta must be > 0"),
    ("--eta nan", ["--eta", "nan"], r"eta must be finite"),
    ("--lam -1", ["--lam", "-1"], r"lam must be >= 0"),
    ("--tol 0", ["--tol", "0"], r"tol must be > 0"),
    ("--refine -1", ["--refine", "-1"], r"refine must be > 0"),
    ("--epochs 0", ["--epochs", "0"], r"epochs must be an integer >= 1"),
    ("--polish -1", ["--polish", "-1"], r"polish must be an integer >= 0"),
    ("--checkpoint-every 0", ["--checkpoint-every", "0"], r"checkpoint_every must be an integer >= 1"),
    ("--seed -1", ["--seed", "-1"], r"seed must be an integer >= 0"),
    ("--target-seed -1", ["--target-seed", "-1"], r"seed must be an integer >= 0"),
    ("--out missing dir", ["--out", "/nonexistent-dir-tdcore/x"], r"--out=.*does not exist"),
    ("--out is a dir", ["--out", "/tmp/"], r"--out=.*is a directory"),
    ("--checkpoint missing dir", ["--checkpoint", "/nonexistent-dir-tdcore/ck.npz"], r"--checkpoint=.*does not exist"),
]


@pytest.mark.parametrize("extra,pattern", [c[1:] for c in CLI_CASES], ids=[c[0] for c in CLI_CASES])
def test_cli_refuses_before_running(extra, pattern, capsys):
    assert main(CLI_BASE + extra) == 2
    cap = capsys.readouterr()
    assert "final relative error" not in cap.out  # nothing ran
    assert re.search(pattern, cap.err), cap.err


@pytest.mark.parametrize("extra,name", [(["--backend", "torch"], "--backend"), (["--dtype", "float16"], "--dtype"),
                                        (["--d", "abc"], "--d"), (["--m", "2.5"], "--m")])
def test_cli_argparse_refusals_name_the_option(extra, name, capsys):
    with pytest.raises(SystemExit) as info:
        main(CLI_BASE + extra)
    assert info.value.code == 2 and name in capsys.readouterr().err


# ---- hostile but valid: computed right ---------------------------------------------------------------
def test_float16_and_integer_inputs_are_computed_in_float64():
    D16 = D3.astype(np.float16)
    assert tc.check_target(D16).dtype == np.float64
    # the error of the float16-rounded tensor against the exact one is its rounding error, about
    # 2^-11 relative per entry: far above float64 noise and far below 1
    err = tc.rel_error(D16, D3)
    ref = np.linalg.norm(D16.astype(np.float64) - D3) / np.linalg.norm(D3)
    assert err == pytest.approx(ref, rel=1e-12) and 0 < err < 2.0**-10
    S16 = tc.SymCP(T3.weights.astype(np.float16), T3.factors.astype(np.float16), 3)
    assert S16.factors.dtype == np.float64
    Si = tc.SymCP(np.array([1, 2]), np.array([[1, 0], [0, 1]]), 3)
    assert Si.factors.dtype == np.float64 and tc.norm(Si) == pytest.approx(np.sqrt(5), rel=1e-15)


def test_contract_accepts_a_column_and_float16_columns():
    u = T3.factors[:, :1]
    np.testing.assert_allclose(T3.contract(u)[:, 0],
                               np.einsum("ijk,j,k->i", D3, u[:, 0], u[:, 0]), rtol=1e-12, atol=1e-14)
    U16 = np.ones((6, 2), dtype=np.float16)
    assert T3.contract(U16).dtype == np.float64
    np.testing.assert_allclose(T3.contract(U16), T3.contract(np.ones((6, 2))), rtol=0, atol=0)


def test_numpy_scalars_and_booleans_are_accepted():
    res = tc.algorithm1(T3, np.int64(4), epochs=np.int32(1), iters=2, reinit=np.bool_(False),
                        mode_switch=np.True_, seed=np.uint8(3), backend="numpy")
    ref = tc.algorithm1(T3, 4, epochs=1, iters=2, reinit=False, mode_switch=True, seed=3, backend="numpy")
    np.testing.assert_array_equal(res.model.factors, ref.model.factors)
    assert res.params.reinit is False and res.params.mode_switch is True


def test_rel_error_of_mixed_kinds_agrees():
    M = tc.random_target(6, 3, 3, seed=5)
    a = tc.rel_error(M, T3)
    for model, target in ((M.to_dense(), T3), (M, D3), (M.to_dense(), D3)):
        # Gram expansion vs direct difference: agree to sqrt(eps)-level cancellation of O(1) terms
        assert tc.rel_error(model, target) == pytest.approx(a, abs=1e-7)


def test_many_components_are_computed_in_blocks_not_refused():
    # a million components in d = 1: the 8 TB Gram matrix is never formed (dense accumulation in blocks)
    assert tc.norm(BIG_M) == pytest.approx(1e6, rel=1e-12)
    assert tc.inner(BIG_M, BIG_M) == pytest.approx(1e12, rel=1e-12)
