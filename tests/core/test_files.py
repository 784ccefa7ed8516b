"""Files: checkpoints and CLI outputs never lose or mix results.

Checkpoints: paths checked before the run, an unusable file (empty, truncated, random, edited, another
run's) is a ``CheckpointError`` naming it, a finished run is not rerun, and kill -9 at any point of a
checkpoint write (25 deterministic kills at three phases of the write, plus kills at random moments) then
resume is bit-identical to an uninterrupted run.  CLI: ``--out`` checked before the run, never
overwritten without ``--force``, written atomically; Ctrl-C saves the partial result, flagged, exit 130.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest

import tdcore as tc
from tdcore._algorithm1 import CheckpointError, history_path
from tdcore._algorithm1.checkpoint import _checksum, _load_checkpoint
from tdcore.__main__ import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
T = tc.random_target(10, 2, 3, seed=4)
KW = dict(seed=9, epochs=6, iters=25, backend="numpy")


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = env["OPENBLAS_NUM_THREADS"] = "1"  # same kernels in every child
    return env


def _sigint_default():
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a child of a background job would inherit SIG_IGN


@pytest.fixture()
def ck(tmp_path):
    """A checkpoint of a run stopped after 3 of 6 epochs."""
    path = tmp_path / "run.npz"
    tc.algorithm1(T, 6, checkpoint=path, callback=lambda info: info["epoch"] == 3, **KW)
    return path


def _rewrite(path, edit_meta=None, edit_state=None, fix_checksum=True):
    """Rewrite a checkpoint with edited metadata/state, with or without a matching checksum."""
    with np.load(path) as z:
        meta = json.loads(str(z["meta"]))
        st = {k: z[k] for k in ("U", "a", "c", "chat", "switched")}
        checksum = str(z["checksum"])
    if edit_meta:
        edit_meta(meta)
    if edit_state:
        edit_state(st)
    meta_json = json.dumps(meta, sort_keys=True)
    if fix_checksum:
        checksum = _checksum(meta_json, st)
    np.savez(open(path, "wb"), meta=np.array(meta_json), checksum=np.array(checksum), **st)


def _refused(path, pattern, **kw):
    with pytest.raises(CheckpointError, match=pattern) as info:
        tc.algorithm1(T, 6, checkpoint=path, **{**KW, **kw})
    msg = str(info.value)
    assert os.fspath(path) in msg and "allow_pickle" not in msg
    return msg


# ---- paths before the run ------------------------------------------------------------------------------
def test_integer_checkpoint_refused_and_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TypeError, match="checkpoint must be a file path"):
        tc.algorithm1(T, 6, checkpoint=123, **KW)
    assert os.listdir(tmp_path) == []


def test_missing_directory_refused_before_the_first_epoch(tmp_path):
    calls = []
    with pytest.raises(ValueError, match="checkpoint=.*does not exist"):
        tc.algorithm1(T, 6, checkpoint=tmp_path / "nope" / "ck.npz", callback=calls.append, **KW)
    assert calls == []


# ---- another run's checkpoint ------------------------------------------------------------------------
def test_resume_with_other_seed_is_refused(ck):
    msg = _refused(ck, r"seed=9, this run has seed=10", seed=10)
    assert "mix two runs" in msg


def test_resume_with_negated_target_is_refused(ck):
    with pytest.raises(CheckpointError, match="different target"):
        tc.algorithm1(-T, 6, checkpoint=ck, **KW)
    assert tc.norm(-T) == pytest.approx(tc.norm(T), rel=1e-15)  # the norm alone could not tell


def test_resume_with_reflected_target_is_refused(ck):
    v = np.ones(10) / np.sqrt(10)
    H = np.eye(10) - 2 * np.outer(v, v)  # a reflection: same norm, same Gram matrix, another tensor
    R = tc.SymCP(T.weights, H @ T.factors, 3)
    assert tc.norm(R) == pytest.approx(tc.norm(T), rel=1e-14) and tc.rel_error(R, T) > 0.1
    with pytest.raises(CheckpointError, match=f"checkpoint '{ck}' was written for a different target"):
        tc.algorithm1(R, 6, checkpoint=ck, **KW)


def test_resume_with_other_parameters_dtype_version_is_refused(ck, monkeypatch):
    _refused(ck, r"different parameters \(iters: saved 25, now 26", iters=26)
    _refused(ck, r"used dtype float64, this run float32", dtype="float32")
    monkeypatch.setattr(tc, "__version__", "99.0")
    _refused(ck, r"written by tdcore 0\.1\.0, this is tdcore 99\.0")


def test_resume_with_other_init_state_is_refused(tmp_path, ck):
    U = np.random.default_rng(1).standard_normal((10, 6))
    _refused(ck, r"started from the random initialisation, this run from an init_state",
             init_state={"U": U, "a": np.ones(6)})
    p = tmp_path / "init.npz"
    tc.algorithm1(T, 6, checkpoint=p, init_state={"U": U, "a": np.ones(6)}, callback=lambda i: i["epoch"] == 2, **KW)
    _refused(p, r"started from another init_state", init_state={"U": 2 * U, "a": np.ones(6)})
    full = tc.algorithm1(T, 6, init_state={"U": U, "a": np.ones(6)}, **KW)
    res = tc.algorithm1(T, 6, checkpoint=p, init_state={"U": U, "a": np.ones(6)}, **KW)
    np.testing.assert_array_equal(res.model.factors, full.model.factors)


def test_checkpoint_error_is_a_value_error():
    assert issubclass(CheckpointError, ValueError)


# ---- unusable files -------------------------------------------------------------------------------------
def test_empty_file(tmp_path):
    p = tmp_path / "ck.npz"
    p.write_bytes(b"")
    _refused(p, "cannot be read: it is empty")


def test_truncated_file(ck):
    data = ck.read_bytes()
    for cut in (10, len(data) // 2, len(data) - 10):
        ck.write_bytes(data[:cut])
        _refused(ck, "cannot be read|truncated or corrupted")


def test_random_bytes(tmp_path):
    p = tmp_path / "ck.npz"
    p.write_bytes(np.random.default_rng(0).bytes(5000))
    _refused(p, "not a readable .npz archive")


def test_npy_file_and_foreign_npz(tmp_path):
    p = tmp_path / "ck.npz"
    with open(p, "wb") as fh:
        np.save(fh, np.ones(3))
    _refused(p, "single .npy array, not a tdcore checkpoint")
    with open(p, "wb") as fh:
        np.savez(fh, weights=np.ones(3))
    _refused(p, "is not a tdcore checkpoint: it lacks meta, checksum, U")


def test_corrupted_member(ck):
    with zipfile.ZipFile(ck) as z:
        names = z.namelist()
        info = z.getinfo("U.npy")
    data = bytearray(ck.read_bytes())
    data[info.header_offset + 60] ^= 0xFF  # a byte inside the stored U array
    ck.write_bytes(bytes(data))
    _refused(ck, "truncated or corrupted|modified or corrupted")
    assert "U.npy" in names


def test_edited_state_or_meta_without_checksum(ck):
    _rewrite(ck, edit_state=lambda st: st["U"].__setitem__((0, 0, 0), 1.0), fix_checksum=False)
    _refused(ck, "was modified or corrupted: its checksum does not match")


@pytest.mark.parametrize("edit,pattern", [
    (lambda m: m.__setitem__("epoch", -5), r"epoch=-5; it must be an integer in \[0, epochs=6\]"),
    (lambda m: m.__setitem__("epoch", 7), r"epoch=7"),
    (lambda m: m.__setitem__("epoch", "3"), r"epoch='3'"),
    (lambda m: m.__setitem__("fresh", [99]), r"fresh=\[99\] is not a column index"),
    (lambda m: m.__setitem__("elapsed", -1.0), r"elapsed=-1.0 is not a time"),
    (lambda m: m.__setitem__("rng", []), r"random generator state is missing"),
    (lambda m: m["rng"][0].__setitem__("bit_generator", "nope"), r"random generator state is not valid"),
    (lambda m: m.__setitem__("format", 1), r"checkpoint format 1"),
    (lambda m: m["params"].__setitem__("nonsense", 1), r"parameters this tdcore does not know"),
    (lambda m: m["history_log"].__setitem__("epochs", 2), r"history log record does not hold 3 epochs"),
    (lambda m: m["history_log"].__setitem__("chain", "0" * 64), r"hash chain does not match"),
])
def test_edited_with_valid_checksum(ck, edit, pattern):
    _rewrite(ck, edit_meta=edit)
    _refused(ck, pattern)


def test_edited_state_shape_and_nan_with_valid_checksum(ck):
    _rewrite(ck, edit_state=lambda st: st.__setitem__("U", st["U"][:, :, :3]))
    _refused(ck, r"state U has shape \(1, 10, 3\), expected \(1, 10, 6\)")
    ck2 = ck.with_name("b.npz")
    tc.algorithm1(T, 6, checkpoint=ck2, callback=lambda info: info["epoch"] == 3, **KW)
    _rewrite(ck2, edit_state=lambda st: st["c"].__setitem__((0, 0), np.nan))
    _refused(ck2, r"state c contains NaN")


def test_history_log_missing_truncated_edited(ck):
    log = history_path(ck)
    data = open(log, "rb").read()
    os.unlink(log)
    assert f"history log '{log}'" in _refused(ck, "cannot be read")
    open(log, "wb").write(data[: len(data) // 2])
    _refused(ck, "is truncated")
    edited = data.replace(b'"epoch": 2', b'"epoch": 5', 1)
    assert edited != data
    open(log, "wb").write(edited)
    _refused(ck, "was modified or corrupted: its hash chain")


def test_history_log_with_uncommitted_tail_resumes_exactly(ck):
    """A kill between the log append and the checkpoint rename leaves extra bytes: they are ignored."""
    full = tc.algorithm1(T, 6, **KW)
    with open(history_path(ck), "ab") as fh:
        fh.write(b'{"values": {"half a line')
    res = tc.algorithm1(T, 6, checkpoint=ck, **KW)
    np.testing.assert_array_equal(res.model.factors, full.model.factors)
    assert res.history["rel_error"] == full.history["rel_error"]
    assert res.history["epoch"] == list(range(1, 7))


# ---- idempotence, resume=False, linear history -------------------------------------------------------------
def test_finished_run_with_tol_is_not_rerun(tmp_path):
    p = tmp_path / "ck.npz"
    kw = dict(KW, epochs=40, iters=300, tol=0.2)
    first = tc.algorithm1(T, 6, checkpoint=p, **kw)
    k, t = first.history["stopped_at"]
    assert k < 40  # stopped early at tol, so a naive resume would run epoch k + 1
    calls = []
    again = tc.algorithm1(T, 6, checkpoint=p, callback=calls.append, **kw)
    assert calls == []  # no epoch ran
    assert again.history == first.history
    np.testing.assert_array_equal(again.model.factors, first.model.factors)
    np.testing.assert_array_equal(again.model.weights, first.model.weights)


def test_resume_false_starts_afresh(ck):
    full = tc.algorithm1(T, 6, **KW)
    res = tc.algorithm1(T, 6, checkpoint=ck, resume=False, **KW)
    np.testing.assert_array_equal(res.model.factors, full.model.factors)
    again = tc.algorithm1(T, 6, checkpoint=ck, callback=lambda i: pytest.fail("ran"), **KW)
    assert again.history["rel_error"] == full.history["rel_error"]


def test_checkpoint_write_is_linear_in_the_history(tmp_path):
    """Each save appends only the new epoch to the log: the checkpoint file itself stays the same size."""
    p = tmp_path / "ck.npz"
    sizes = []

    def cb(info):
        sizes.append((os.path.getsize(p) if p.exists() else None, os.path.getsize(history_path(p))
                      if os.path.exists(history_path(p)) else 0))

    tc.algorithm1(T, 6, checkpoint=p, callback=cb, epochs=30, iters=1, seed=0, record_every=1, backend="numpy")
    npz = [s[0] for s in sizes[1:]]
    assert max(npz) - min(npz) < 200  # state + fixed-size metadata (numbers' digits vary a little)
    logs = np.diff([s[1] for s in sizes])
    assert logs.min() > 0 and logs.max() < 2 * logs.min()  # every epoch appends about the same amount


def test_failed_write_keeps_old_checkpoint_and_no_temp_file(ck, monkeypatch):
    before = ck.read_bytes()

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", boom)
    with pytest.raises(OSError, match="No space left"):
        tc.algorithm1(T, 6, checkpoint=ck, **KW)
    monkeypatch.undo()
    assert ck.read_bytes() == before
    assert sorted(os.listdir(ck.parent)) == ["run.npz", "run.npz.history"]
    full = tc.algorithm1(T, 6, **KW)
    res = tc.algorithm1(T, 6, checkpoint=ck, **KW)  # the extra log bytes of the failed save are ignored
    np.testing.assert_array_equal(res.model.factors, full.model.factors)


# ---- kill -9 during checkpoint writes -------------------------------------------------------------------
CHILD = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    import tdcore as tc
    import tdcore._algorithm1.checkpoint as A
    ck, out, kill_at, phase = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    saves = [0]

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    orig_append, orig_savez, orig_replace = A._append_history, np.savez, os.replace

    def append(path, run):
        saves[0] += 1
        res = orig_append(path, run)
        if phase == "log" and saves[0] == kill_at:
            die()  # history appended, checkpoint not yet written
        return res

    def savez(fh, **arrays):
        if phase == "savez" and saves[0] == kill_at:
            orig_savez(fh, **arrays)
            fh.flush()
            fh.truncate(fh.tell() // 2)
            die()  # half-written temporary file
        return orig_savez(fh, **arrays)

    def replace(src, dst):
        if phase == "rename" and saves[0] == kill_at:
            die()  # complete temporary file, not yet renamed
        return orig_replace(src, dst)

    A._append_history, np.savez, os.replace = append, savez, replace
    T = tc.random_target(10, 2, 3, seed=4)
    print("READY", flush=True)
    res = tc.algorithm1(T, 6, seed=9, epochs=40, iters=3, record_every=2, backend="numpy", checkpoint=ck)
    os.replace = orig_replace
    np.savez = orig_savez
    with open(out, "wb") as fh:
        np.savez(fh, factors=res.model.factors, weights=res.model.weights,
                 history=np.array(__import__("json").dumps(res.history)))
""")


def _child(tmp_path, ck, out, kill_at=0, phase="none"):
    script = tmp_path / "child.py"
    if not script.exists():
        script.write_text(CHILD)
    return subprocess.Popen([sys.executable, str(script), str(ck), str(out), str(kill_at), phase],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), text=True)


def _load_out(out):
    """Final factors, weights and history (wall-clock ``elapsed`` left out: it differs between runs)."""
    with np.load(out) as z:
        hist = json.loads(str(z["history"]))
        hist.pop("elapsed")
        return z["factors"], z["weights"], hist


def test_kill9_during_checkpoint_writes_then_resume_is_bit_identical(tmp_path):
    ref_out = tmp_path / "ref.npz"
    p = _child(tmp_path, tmp_path / "ref_ck.npz", ref_out)
    assert p.wait(timeout=300) == 0, p.stderr.read()
    ref = _load_out(ref_out)
    ck, out = tmp_path / "ck.npz", tmp_path / "out.npz"
    phases = ("savez", "rename", "log")
    kills = 0
    # 25 kills: every epoch from 1 to 25 is saved, and the save number counts from the resumed epoch on,
    # so kill_at=1 kills the first save after each resume, at a rotating phase of the write
    for n in range(25):
        p = _child(tmp_path, ck, out, kill_at=1, phase=phases[n % 3])
        p.wait(timeout=300)
        assert p.returncode == -signal.SIGKILL, p.stderr.read()
        kills += 1
        assert not out.exists()
        if ck.exists():  # after every kill the checkpoint on disk is a complete, verified one
            meta, st = _load_checkpoint(ck)
            assert 0 <= meta["epoch"] <= n + 1
    assert any(n.startswith(".ck.npz.") for n in os.listdir(tmp_path))  # killed writers left temporaries
    p = _child(tmp_path, ck, out)
    assert p.wait(timeout=300) == 0, p.stderr.read()
    # ... which the next successful save removed (their processes are gone)
    assert not any(n.startswith(".ck.npz.") for n in os.listdir(tmp_path))
    res = _load_out(out)
    assert kills == 25
    np.testing.assert_array_equal(res[0], ref[0])
    np.testing.assert_array_equal(res[1], ref[1])
    assert res[2] == ref[2]  # the whole history, per-iteration records included


def test_kill9_at_random_moments_then_resume_is_bit_identical(tmp_path):
    ref_out = tmp_path / "ref.npz"
    p = _child(tmp_path, tmp_path / "ref_ck.npz", ref_out)
    assert p.wait(timeout=300) == 0
    ref = _load_out(ref_out)
    ck, out = tmp_path / "ck.npz", tmp_path / "out.npz"
    rnd = random.Random(0)
    for _ in range(6):
        p = _child(tmp_path, ck, out)
        assert p.stdout.readline().strip() == "READY"
        time.sleep(rnd.uniform(0.0, 0.05))
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=300)
        if p.returncode == 0:
            break
    p = _child(tmp_path, ck, out)
    assert p.wait(timeout=300) == 0, p.stderr.read()
    res = _load_out(out)
    np.testing.assert_array_equal(res[0], ref[0])
    assert res[2] == ref[2]


# ---- CLI: --out ------------------------------------------------------------------------------------------
CLI = ["run", "--d", "10", "--r", "2", "--m", "6", "--epochs", "3", "--iters", "20", "--backend", "numpy"]


def test_out_name_gets_npz_suffix_and_the_printed_name_is_the_file(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(CLI + ["--out", "data"]) == 0
    assert "saved model and history to data.npz" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path)) == ["data.npz"]
    with np.load("data.npz") as z:
        assert not bool(z["interrupted"]) and z["factors"].shape == (10, 6)


def test_out_is_not_overwritten_without_force(tmp_path, capsys):
    dest = tmp_path / "r.npz"
    dest.write_bytes(b"precious")
    assert main(CLI + ["--out", str(dest)]) == 2
    err = capsys.readouterr()
    assert f"--out '{dest}' exists; pass --force" in err.err and "final relative error" not in err.out
    assert dest.read_bytes() == b"precious"
    assert main(CLI + ["--out", str(dest), "--force"]) == 0
    with np.load(dest) as z:
        assert z["factors"].shape == (10, 6)


@pytest.mark.parametrize("same", ["x.npz", "x"])
def test_checkpoint_and_out_same_file_refused(tmp_path, capsys, same):
    assert main(CLI + ["--checkpoint", str(tmp_path / "x.npz"), "--out", str(tmp_path / same)]) == 2
    assert "--checkpoint and --out name the same file" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_out_in_unwritable_directory_refused_before_the_run(tmp_path, capsys):
    bad = ["/proc/tdcore-test-out.npz"]  # /proc refuses new files, even to root
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        bad.append(str(ro / "r.npz"))
    for path in bad:
        assert main(CLI + ["--out", path]) == 2
        cap = capsys.readouterr()
        assert "--out=" in cap.err and "cannot write in the directory" in cap.err
        assert "final relative error" not in cap.out


OUT_CHILD = textwrap.dedent("""
    import os, signal, sys
    import numpy as np
    phase = sys.argv[1]
    orig_savez, orig_replace = np.savez, os.replace

    def savez(fh, **arrays):
        if phase == "savez":
            orig_savez(fh, **arrays)
            fh.flush()
            fh.truncate(fh.tell() // 3)
            os.kill(os.getpid(), signal.SIGKILL)
        return orig_savez(fh, **arrays)

    def replace(src, dst):
        if phase == "rename":
            os.kill(os.getpid(), signal.SIGKILL)
        return orig_replace(src, dst)

    np.savez, os.replace = savez, replace
    from tdcore.__main__ import main
    sys.exit(main(sys.argv[2:]))
""")


@pytest.mark.parametrize("phase", ["savez", "rename"])
def test_kill9_during_out_save_keeps_previous_result(tmp_path, phase):
    dest = tmp_path / "r.npz"
    assert main(CLI + ["--out", str(dest), "--seed", "1"]) == 0
    before = dest.read_bytes()
    script = tmp_path / "out_child.py"
    script.write_text(OUT_CHILD)
    p = subprocess.run([sys.executable, str(script), phase] + CLI + ["--out", str(dest), "--force", "--seed", "2"],
                       env=_env(), capture_output=True, text=True, timeout=300)
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert dest.read_bytes() == before  # the previous result, whole
    with np.load(dest) as z:
        assert z["factors"].shape == (10, 6)


# ---- CLI: Ctrl-C ----------------------------------------------------------------------------------------
def test_ctrl_c_during_algorithm1_saves_flagged_partial_result(tmp_path):
    ck, dest = tmp_path / "ck.npz", tmp_path / "r.npz"
    args = [sys.executable, "-m", "tdcore", "run", "--d", "10", "--r", "2", "--m", "6", "--epochs", "100000",
            "--iters", "5", "--backend", "numpy", "--checkpoint", str(ck), "--out", str(dest)]
    p = subprocess.Popen(args, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=_sigint_default, cwd=ROOT)
    t0 = time.monotonic()
    while not ck.exists() and time.monotonic() - t0 < 120:
        time.sleep(0.02)
    assert ck.exists(), p.stderr.read() if p.poll() is not None else "no checkpoint"
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "Traceback" not in err and "interrupted (Ctrl-C); the result is in" in err
    assert "(interrupted)" in out
    with np.load(dest) as z:
        assert bool(z["interrupted"]) and not bool(z["refine_interrupted"])
        n = len(json.loads(str(z["history"]))["epoch"])
    assert 1 <= n < 100000


REFINE_CHILD = textwrap.dedent("""
    import sys, time
    import tdcore._refine as R

    def slow(*a, **k):
        print("REFINING", flush=True)
        time.sleep(120)
        raise AssertionError("not interrupted")

    R.refine = slow
    from tdcore.__main__ import main
    sys.exit(main(sys.argv[1:]))
""")


def test_ctrl_c_during_refine_keeps_the_algorithm1_result(tmp_path):
    dest = tmp_path / "r.npz"
    script = tmp_path / "refine_child.py"
    script.write_text(REFINE_CHILD)
    p = subprocess.Popen([sys.executable, str(script)] + CLI + ["--refine", "1e-12", "--out", str(dest)],
                         env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         preexec_fn=_sigint_default)
    lines = []
    while True:
        line = p.stdout.readline()
        assert line, p.stderr.read()
        lines.append(line)
        if line.strip() == "REFINING":
            break
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert "Traceback" not in err and "refine interrupted" in err
    printed = [ln for ln in lines if "final relative error" in ln][0]
    with np.load(dest) as z:
        assert bool(z["interrupted"]) and bool(z["refine_interrupted"]) and "refine" not in z.files
        model = tc.SymCP(z["weights"], z["factors"], int(z["order"]))
        target = tc.SymCP(z["target_weights"], z["target_factors"], int(z["order"]))
    # the saved model is Algorithm 1's: its error is the printed one (6 significant digits)
    assert f"{tc.rel_error(model, target):.6g}" in printed


def test_ctrl_c_during_refine_in_process(tmp_path, capsys, monkeypatch):
    import tdcore._refine as R

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(R, "refine", interrupted)
    dest = tmp_path / "r.npz"
    assert main(CLI + ["--refine", "1e-9", "--out", str(dest)]) == 130
    with np.load(dest) as z:
        assert bool(z["refine_interrupted"])


def test_divergence_keeps_the_last_finite_state(tmp_path, capsys):
    dest = tmp_path / "r.npz"
    assert main(CLI + ["--eta", "1000", "--out", str(dest)]) == 3
    assert "diverged" in capsys.readouterr().err
    with np.load(dest) as z:
        assert bool(z["diverged"]) and np.all(np.isfinite(z["factors"]))
