"""The timing harness of tdcore.bench (tdcore/bench/timing.py): timing, machine record, storage.

No assertion on timings (performance is measured by the benchmarks, not by
tests): these check the records' shape, the validation and where results go.
"""

import json
import math
import subprocess
import sys

import pytest

from tdcore import bench


def test_time_interleaved_medians_and_samples():
    calls = {"a": 0, "b": 0}

    def fa():
        calls["a"] += 1

    def fb():
        calls["b"] += 1
        sum(range(200))

    t = bench.time_interleaved({"a": fa, "b": fb}, repeats=3, min_time=0.001)
    assert set(t) == {"a", "b", "_samples"}
    assert len(t["_samples"]["a"]) == 3 and len(t["_samples"]["b"]) == 3
    assert t["a"] > 0 and t["b"] > 0 and calls["a"] > 3
    r = bench.bench_paired_ratio(t, "b", "a")
    assert r > 0 and math.isfinite(r)


def test_paired_ratio_is_the_median_of_per_round_ratios():
    t = {"_samples": {"a": [2.0, 4.0, 9.0], "b": [1.0, 1.0, 3.0]}}
    assert bench.bench_paired_ratio(t, "a", "b") == 3.0  # ratios 2, 4, 3
    with pytest.raises(KeyError, match="'c'"):
        bench.bench_paired_ratio(t, "c", "b")


@pytest.mark.parametrize("bad", [{}, None])
def test_time_interleaved_rejects_empty(bad):
    with pytest.raises((ValueError, TypeError)):
        bench.time_interleaved(bad or {})


def test_time_interleaved_rejects_bad_repeats():
    with pytest.raises(ValueError, match="repeats"):
        bench.time_interleaved({"a": lambda: None}, repeats=0)
    with pytest.raises(TypeError, match="repeats"):
        bench.time_interleaved({"a": lambda: None}, repeats=2.5)
    with pytest.raises(TypeError, match="callable"):
        bench.time_interleaved({"a": 3})
    with pytest.raises(ValueError, match="min_time"):
        bench.time_interleaved({"a": lambda: None}, min_time=-1.0)


def test_machine_info_is_json():
    m = bench.bench_machine_info()
    json.dumps(m)
    assert m["cores"] >= 1 and "blas" in m and "date" in m and "malloc_tuned" in m


def test_tune_malloc_in_subprocess():
    code = ("from tdcore import bench; ok = bench.tune_malloc(); "
            "print(ok, bench.bench_machine_info()['malloc_tuned'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    ok, recorded = out.stdout.split()
    assert ok in ("True", "False") and recorded == ok


def test_tune_malloc_rejects_bad_thresholds():
    with pytest.raises(TypeError, match="mmap_threshold"):
        bench.tune_malloc(mmap_threshold=1.5)
    with pytest.raises(ValueError, match="top_pad"):
        bench.tune_malloc(top_pad=-1)


def test_fmt_time():
    assert bench.fmt_time(1.5e-5) == "15.0 us" and bench.fmt_time(0.25) == "250.00 ms"
    assert bench.fmt_time(3) == "3.00 s" and bench.fmt_time(None) == bench.fmt_time(float("nan")) == "n/a"


def test_output_dir_argument_then_env_then_cwd(tmp_path, monkeypatch):
    monkeypatch.delenv(bench.OUT_ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    assert bench.bench_output_dir(create=False) == tmp_path / "results"
    assert not (tmp_path / "results").exists()  # create=False creates nothing
    assert bench.bench_output_dir() == tmp_path / "results" and (tmp_path / "results").is_dir()
    monkeypatch.setenv(bench.OUT_ENV_VAR, str(tmp_path / "env"))
    assert bench.bench_output_dir() == tmp_path / "env"
    assert bench.bench_output_dir(tmp_path / "arg") == tmp_path / "arg"  # the argument wins
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError, match="file"):
        bench.bench_output_dir(tmp_path / "file")


def test_write_result_drops_samples_and_nonfinite(tmp_path):
    payload = {"a": float("nan"), "b": [1.0, float("inf")], "_samples": [1, 2], "c": {"_raw": 1, "d": 2}}
    path = bench.write_bench_result(tmp_path / "sub" / "bench_x.json", payload, "# x\n\n")
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    stored = json.loads(text)
    prov = stored.pop("provenance")   # every stored result says where it came from
    assert stored == {"a": None, "b": [1.0, None], "c": {"d": 2}}
    assert prov["engine"]["modules"] == sorted(bench.BENCH_ENGINE) and prov["machine"]["cores"] >= 1
    assert (tmp_path / "sub" / "bench_x.md").read_text() == "# x\n"
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["bench_x.json", "bench_x.md"]  # no temp left
    with pytest.raises(ValueError, match="json"):
        bench.write_bench_result(tmp_path / "bench_x.txt", payload)
    with pytest.raises(TypeError, match="payload"):
        bench.write_bench_result(tmp_path / "bench_y.json", [1, 2])
    assert not (tmp_path / "bench_y.json").exists()


def test_load_prefers_full(tmp_path):
    bench.write_bench_result(tmp_path / "bench_quick_build.json", {"mode": "quick"})
    assert bench.load_bench_results(tmp_path)["build"]["mode"] == "quick"
    bench.write_bench_result(tmp_path / "bench_build.json", {"mode": "full"})
    assert bench.load_bench_results(tmp_path)["build"]["mode"] == "full"
    assert bench.load_bench_results(tmp_path, prefer="quick")["build"]["mode"] == "quick"
    assert bench.load_bench_result("build", tmp_path)["mode"] == "full"
    assert bench.load_bench_result("nothing", tmp_path) is None
    with pytest.raises(ValueError, match="prefer"):
        bench.load_bench_results(tmp_path, prefer="best")


def test_load_reads_the_output_dir_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv(bench.OUT_ENV_VAR, str(tmp_path))
    bench.write_bench_result(tmp_path / "bench_quick_gpu.json", {"mode": "quick"})
    assert bench.load_bench_results()["gpu"]["mode"] == "quick"
    assert bench.load_bench_result("gpu") is None  # the full result is bench_gpu.json


def test_bench_imports_without_plotting_or_the_book():
    code = ("import sys, tdcore.bench; print(' '.join(m for m in ('matplotlib', 'IPython', 'tdcore.book') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""
