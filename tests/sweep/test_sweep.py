"""The sweep engine on a real Dask LocalCluster: same results as serial, resume, kills, failures."""

import json
import os
import time

import pytest

import tdcore.sweep.registry as reg
from tdcore.sweep import Sweep, SweepError, run_sweep
from tdcore.sweep.engine import cell_key, merge_sweep

ENGINE = ("tdcore._tensor",)


def _register(name, run):
    reg.SWEEPS[name] = Sweep(name, "test sweep", "sweep_cells_for_tests:cells", f"sweep_cells_for_tests:{run}",
                             "sweep_cells_for_tests:merge", ENGINE, name + "_{size}.json")


@pytest.fixture
def sweeps(tmp_path, monkeypatch):
    monkeypatch.setenv("TDCORE_SWEEP_TEST_DIR", str(tmp_path))
    # the workers import the cell module by name: give them this folder on their path
    monkeypatch.setenv("PYTHONPATH", os.path.dirname(__file__) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for name, run in (("t_plain", "run_cell"), ("t_kill", "run_cell_killing_its_worker"),
                      ("t_fail", "run_cell_failing")):
        _register(name, run)
    yield tmp_path
    for name in ("t_plain", "t_kill", "t_fail"):
        reg.SWEEPS.pop(name, None)


def _values(path):
    return json.loads(open(path).read())["values"]


def test_two_local_workers_give_the_serial_results(sweeps):
    serial = run_sweep("t_plain", workers=0, store=sweeps / "s0", out_dir=sweeps / "o0")
    par = run_sweep("t_plain", workers=2, store=sweeps / "s2", out_dir=sweeps / "o2")
    assert serial.computed == par.computed == 6
    assert _values(serial.output) == _values(par.output)
    assert len(par.workers) >= 1 and sum(n for n, _ in par.workers.values()) == 6
    merged = json.loads(open(par.output).read())
    assert merged["provenance"]["cells"] == 6 and merged["provenance"]["engine"]["modules"] == list(ENGINE)


def test_killed_worker_does_not_lose_cells_and_rerun_recomputes_only_missing(sweeps):
    ref = run_sweep("t_plain", workers=0, store=sweeps / "ref", out_dir=sweeps / "oref")
    s = run_sweep("t_kill", workers=2, store=sweeps / "k", out_dir=sweeps / "ok")
    assert (sweeps / "killed-2").exists()  # the worker running cell 2 really died
    assert s.computed == 6 and s.failed == 0
    assert _values(s.output) == _values(ref.output)
    # a "killed" sweep: remove two stored cells; the rerun computes exactly those
    cell_dir = sweeps / "k" / "t_kill" / "quick"
    for i in (1, 5):
        (cell_dir / f"{cell_key('t_kill', 'quick', {'i': i})}.json").unlink()
    again = run_sweep("t_kill", workers=0, store=sweeps / "k", out_dir=sweeps / "ok")
    assert (again.computed, again.cached) == (2, 4)
    assert _values(again.output) == _values(ref.output)


def test_failing_cell_is_recorded_retried_and_others_kept(sweeps):
    with pytest.raises(SweepError, match="1 of 6 cells failed"):
        run_sweep("t_fail", workers=0, store=sweeps / "f", out_dir=sweeps / "of", retries=1)
    cell_dir = sweeps / "f" / "t_fail" / "quick"
    err = json.loads((cell_dir / f"{cell_key('t_fail', 'quick', {'i': 4})}.error.json").read_text())
    assert "cell 4 is broken" in err["error"] and err["attempts"] == 2
    assert len([p for p in cell_dir.glob("*.json") if not p.name.endswith(".error.json")]) == 5
    with pytest.raises(SweepError, match="not computed yet"):
        merge_sweep("t_fail", "quick", store=sweeps / "f", out_dir=sweeps / "of")


def test_merge_refuses_mixed_engines(sweeps):
    run_sweep("t_plain", workers=0, store=sweeps / "m", out_dir=sweeps / "om")
    p = sweeps / "m" / "t_plain" / "quick" / f"{cell_key('t_plain', 'quick', {'i': 0})}.json"
    rec = json.loads(p.read_text())
    rec["provenance"]["engine"]["fingerprint"] = "sha256:0000000000000000"
    p.write_text(json.dumps(rec))
    with pytest.raises(SweepError, match="different engines"):
        merge_sweep("t_plain", "quick", store=sweeps / "m", out_dir=sweeps / "om")
    # a rerun recomputes the stale cell and the merge succeeds
    s = run_sweep("t_plain", workers=0, store=sweeps / "m", out_dir=sweeps / "om")
    assert (s.computed, s.stale, s.cached) == (1, 1, 5)


def test_bad_scheduler_fails_fast_with_a_clear_message(sweeps):
    t0 = time.time()
    with pytest.raises(SweepError, match="could not reach the Dask scheduler at tcp://127.0.0.1:9"):
        run_sweep("t_plain", scheduler="tcp://127.0.0.1:9", store=sweeps / "b", out_dir=None, connect_timeout=2)
    assert time.time() - t0 < 30
    with pytest.raises(SweepError, match="scheduler must be an address"):
        run_sweep("t_plain", scheduler="localhost 8786", store=sweeps / "b", out_dir=None)


@pytest.mark.parametrize("kw, match", [({"size": "huge"}, "size must be one of"), ({"workers": -1}, "workers"),
                                       ({"workers": True}, "workers"), ({"retries": 1.5}, "retries")])
def test_bad_arguments(sweeps, kw, match):
    with pytest.raises(ValueError, match=match):
        run_sweep("t_plain", store=sweeps / "x", out_dir=None, **kw)
    with pytest.raises(ValueError, match="unknown sweep 'nope'"):
        run_sweep("nope", store=sweeps / "x")


def test_default_rule_sweep_quick_serial(tmp_path):
    s = run_sweep("default_rule", size="quick", workers=0, store=tmp_path / "s", out_dir=tmp_path)
    out = json.loads(open(s.output).read())
    assert len(out["default"]) == 4 and all(r["successes"] == r["n_seeds"] for r in out["default"])
    assert out["provenance"]["script"] == "python -m tdcore sweep default_rule --size quick"


def test_convergence_sweep_quick_gives_the_layout_the_chapters_read(tmp_path):
    from tdcore.book import convergence as cv

    s = run_sweep("convergence", size="quick", workers=0, store=tmp_path / "s", out_dir=tmp_path)
    out = json.loads(open(s.output).read())
    assert s.cells == s.computed == 15
    head = cv.HeadlineData.from_dict(out["headline"])
    assert head.orders == [3] and len(head.algorithm1[3].values) == 3
    assert set(out["m_star_vs_r"]) == {"3"} and len(out["success_curves"]) == 1
    assert out["meta"]["size"] == "quick" and out["meta"]["batches_total"] == 15
    assert out["provenance"]["engine"]["fingerprint"].startswith("sha256:")


def _cli(*args, cwd):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "tdcore", "sweep", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_cli_lists_runs_and_refuses_clearly(tmp_path):
    out = _cli("--list", cwd=tmp_path)
    assert out.returncode == 0 and "convergence" in out.stdout and "default_rule" in out.stdout
    bad = _cli("nope", cwd=tmp_path)
    assert bad.returncode == 2 and "unknown sweep 'nope'" in bad.stderr
    far = _cli("default_rule", "--size", "quick", "--scheduler", "tcp://127.0.0.1:9", cwd=tmp_path)
    assert far.returncode == 2 and "could not reach the Dask scheduler" in far.stderr and "Traceback" not in far.stderr
    neg = _cli("default_rule", "--size", "quick", "--workers", "-1", cwd=tmp_path)
    assert neg.returncode == 2 and "workers must be an integer >= 0" in neg.stderr
    ok = _cli("default_rule", "--size", "quick", "--workers", "0", "--store", "st", "--out-dir", "res", cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "4 computed, 0 cached" in ok.stdout and (tmp_path / "res" / "default_rule_quick.json").is_file()
    again = _cli("default_rule", "--size", "quick", "--workers", "0", "--store", "st", "--out-dir", "res", cwd=tmp_path)
    assert "0 computed, 4 cached" in again.stdout


def test_two_layer_sweep_cells_reproduce_the_chapters_functions(tmp_path):
    import math

    from tdcore.book import two_layer as tl
    from tdcore.sweep.two_layer import SIZES

    s = run_sweep("two_layer", size="quick", workers=0, store=tmp_path / "s", out_dir=tmp_path)
    out = json.loads(open(s.output).read())
    c = SIZES["quick"]
    direct = tl.sample_sweep(c["ds"], epochs=c["epochs"], seeds=tuple(c["sample_seeds"]))
    nan = lambda v: math.nan if v is None else v  # noqa: E731
    for reg, vals in direct.n_star.items():
        got = [nan(v) for v in out["samples"]["n_star"][reg]]
        assert all((a == b) or (math.isnan(a) and math.isnan(b)) for a, b in zip(got, vals)), reg
