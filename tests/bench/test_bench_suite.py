"""Functional tests of the benchmark suite (tdcore/bench/suite.py, baselines.py, report.py, benchmarks/).

Tiny sizes only, and no assertion on timings: these check that every benchmark
runs, returns well-formed records, writes valid JSON/Markdown, and that the
headline sentences agree with the numbers they report.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tdcore
from tdcore import bench
from tdcore.bench import baselines as bench_baselines_mod
from tdcore.bench import report as bench_report
from tdcore.bench import suite as bench_suite

ROOT = Path(__file__).resolve().parents[2]


def _finite_json(path):
    text = Path(path).read_text()
    assert "NaN" not in text and "Infinity" not in text
    return json.loads(text)


def test_step_floor_rows():
    rows = bench.bench_step_floor([(6, 5, 2, 3), (5, 4, 2, 4, 3)], repeats=2, min_time=0.001)
    assert len(rows) == 2
    for r in rows:
        assert r["floor_s"] > 0 and r["step_s"] > 0 and r["ratio"] > 0
        assert r["per_trial_step_s"] == pytest.approx(r["step_s"] / r["B"])
    assert rows[1]["B"] == 3


def test_run_state_rejects_unknown_parameters():
    with pytest.raises(TypeError, match="unknown parameter"):
        bench.bench_run_state(6, 5, 2, 3, etaa=0.1)


@pytest.mark.parametrize("order", [3, 4])
def test_dense_step_matches_implicit_gradient(order):
    from tdcore._objective import fit_terms, make_target_operator

    T, U, s = bench_suite._dense_inputs(7, order, 5, 2)
    f_d, U2, g_d = bench.dense_gradient_step(U, s, T.to_dense(), 0.1)
    f_i, g_i, _, _ = fit_terms(U, s, make_target_operator(T))
    # Both sides sum the same O(d^l m) products in different orders: rounding of a few ulps per
    # term, far below 1e-9 relative at these sizes (the terms are O(1), d^l <= 7^4 of them).
    assert f_d == pytest.approx(float(f_i), rel=1e-10)
    # near-zero gradient entries cancel terms of the size of the largest entries: absolute slack from those
    np.testing.assert_allclose(g_d, g_i, rtol=1e-9, atol=1e-12 * np.abs(g_i).max())
    np.testing.assert_allclose(U2, U - 0.1 * g_d)


def test_implicit_dense_record():
    rec = bench.bench_implicit_dense(d=8, order=3, m=6, r=2, repeats=2)
    assert rec["implicit_s"] > 0 and rec["dense_s"] > 0 and rec["speedup"] > 0
    assert rec["max_rel_diff_grad"] < 1e-10
    assert rec["dense_bytes"] == 8 * 8**3


@pytest.mark.parametrize("kind", ["implicit", "dense"])
def test_memory_probe_in_subprocess(kind):
    rec = bench.bench_memory(kind, [4, 8], order=3, m=5, r=2)
    assert rec["kind"] == kind and len(rec["rows"]) == 2
    for row in rec["rows"]:
        assert row["step_peak_bytes"] > 0 and row["maxrss_bytes"] > 0 and row["input_bytes"] > 0
    assert np.isfinite(rec["slope"])
    # the slope is the least-squares slope of log peak against log d over the (here two) points
    (a, b) = rec["rows"]
    want = np.log(b["step_peak_bytes"] / a["step_peak_bytes"]) / np.log(b["d"] / a["d"])
    assert rec["slope"] == pytest.approx(want, rel=1e-9)


def test_memory_probe_rejects_unknown_kind():
    with pytest.raises(ValueError, match="kind"):
        bench.bench_memory("sparse", [4])


def test_scale_record():
    rec = bench.bench_scale(d=30, r=2, order=3, m=6, epochs=2, iters=20, tol=1e-9, budget_s=600)
    assert rec["epochs_run"] == 2 and len(rec["trace"]) == 2 and rec["method"] == "algorithm1"
    assert rec["dense_entries"] == 30.0**3 and rec["within_budget"] is True
    assert 0 <= rec["rel_error"] < 10


def test_scale_decompose_record():
    rec = bench.bench_scale(d=30, r=2, order=3, m=6, tol=1e-9, method="decompose")
    assert rec["method"] == "decompose" and rec["converged"] is True
    assert rec["rel_error"] <= 1e-9 < rec["rel_error_handoff"] <= rec["handoff"]
    assert rec["elapsed_algorithm1_s"] + rec["elapsed_refine_s"] <= rec["elapsed_s"] * 1.001
    lm = [p for p in rec["trace"] if "lm_iter" in p]
    ep = [p for p in rec["trace"] if "epoch" in p]
    assert len(ep) == rec["epochs_run"] and len(lm) == rec["lm_iters"] + 1  # record 0 is the handoff state
    assert min(p["elapsed_s"] for p in lm) >= max(p["elapsed_s"] for p in ep) - 1e-9
    md = bench_report._scale_md([rec])
    assert "decompose" in md and "LM iterations" in md
    # the chapter's sentence on this record: tests/book/test_book_performance.py::test_scale_story
    with pytest.raises(ValueError, match="method"):
        bench.bench_scale(d=10, r=2, m=4, method="als")
    with pytest.raises(ValueError, match="polish"):
        bench.bench_scale(d=10, r=2, m=4, method="decompose", polish=5)


def test_batch_record_and_equality():
    rec = bench.bench_batch(B=3, d=8, m=4, r=2, epochs=1, iters=5, repeats=1)
    assert rec["sequential_s"] > 0 and rec["batched_s"] > 0 and rec["throughput_ratio"] > 0
    # trial b of the batch equals the single run b: the same operations, up to the BLAS kernel's blocking
    assert rec["max_abs_diff_rel_error"] <= 1e-10
    rec2 = bench.bench_batch(B=4, d=8, m=4, r=2, epochs=1, iters=3, repeats=1, seq_trials=2, allocator_check=True)
    assert rec2["sequential_extrapolated"] is True and rec2["sequential_trials_timed"] == 2
    assert rec2["default_allocator"]["throughput_ratio"] > 0
    assert "default allocator" in bench_report._batch_md(rec2)
    rec3 = bench.bench_batch(B=4, d=8, m=4, r=2, epochs=1, iters=3, repeats=1, workers=[2])
    (wr,) = rec3["workers"]
    assert wr["workers"] == 2 and wr["throughput_ratio"] > 0 and wr["max_abs_diff_rel_error"] <= 1e-10
    assert "split over 2 threads" in bench_report._batch_md(rec3)
    # the chapter's sentence ("one-core ratio"): tests/book/test_book_performance.py::test_batch_story
    with pytest.raises(ValueError, match="workers"):
        bench.bench_batch(B=2, d=6, m=3, r=2, epochs=1, iters=2, repeats=1, workers=[1])


def test_gpu_skips_cleanly_without_gpu():
    rec = bench.bench_gpu(backend="numpy")
    assert rec["status"] == "skipped" and "not a GPU backend" in rec["reason"]
    assert rec["batched_throughput_ratio"] == bench.GPU_NOT_MEASURED
    if not bench.bench_gpu_status("cupy")[0]:
        rec = bench.bench_gpu(backend="cupy")
        assert rec["status"] == "skipped" and rec["large_fraction_of_cublas"] == bench.GPU_NOT_MEASURED
        assert "not measured" in bench_report._gpu_md(rec)


def _skip_without_tensorly(rec):
    if rec["status"] == "skipped":
        assert rec["reason"]
        pytest.skip(rec["reason"])


def test_baselines_record():
    rec = bench.bench_baselines(kinds=("orthogonal", "separated"), d=6, r=2, seeds=[0, 1], als_iter_max=50,
                                repeats=2)
    _skip_without_tensorly(rec)
    lo, hi = max(rec["eps"]), min(rec["eps"])
    by = {}
    for x in rec["records"]:
        by.setdefault(x["method"], set()).add(x["eps"])
        assert x["success"] == (x["rel_error"] <= x["eps"])
        assert len(x["times_s"]) == (2 if x["success"] else 1) and x["time_s"] == min(x["times_s"])
        assert x["identical"] is True  # deterministic given the seed
    assert by == {"algorithm1": {lo}, "decompose": {lo, hi}, "cp_als": {lo, hi}, "power_method": {lo, hi}}
    for x in rec["records"]:
        if x["method"] == "decompose":
            assert 0 < x["time_algorithm1_s"] and 0 <= x["time_refine_s"]
            assert x["time_algorithm1_s"] + x["time_refine_s"] <= x["time_s"] * 1.001
    for s in rec["summary"]:
        rs = [x for x in rec["records"] if (x["method"], x["kind"], x["eps"]) == (s["method"], s["kind"], s["eps"])]
        assert s["n"] == len(rs) == 2 and s["successes"] == sum(x["success"] for x in rs)
        assert (s["median_time_s"] is None) == (s["successes"] == 0)
    for x in rec["ratios"]:  # recomputed from the records
        rs = {(y["method"], y["seed"]): y for y in rec["records"] if (y["kind"], y["eps"]) == (x["kind"], x["eps"])}
        both = [sd for sd in (0, 1) if rs[("cp_als", sd)]["success"] and rs[(x["method"], sd)]["success"]]
        assert x["n_seeds"] == len(both)
        if both:
            want = np.median([rs[(x["method"], sd)]["time_s"] / rs[("cp_als", sd)]["time_s"] for sd in both])
            assert x["median_ratio"] == pytest.approx(want)
    md = bench_report._baselines_md(rec)
    assert "decompose" in md and "median of ratios" in md and "polish" not in md


def _rec(method, seed, t, ok, kind="k", eps=0.01):
    return {"method": method, "kind": kind, "eps": eps, "seed": seed, "time_s": t, "success": ok}


def test_ratio_to_als_pairs_seeds_where_both_succeed():
    recs = [_rec("cp_als", 0, 1.0, True), _rec("decompose", 0, 2.0, True),
            _rec("cp_als", 1, 2.0, True), _rec("decompose", 1, 8.0, True),
            _rec("cp_als", 2, 1.0, False), _rec("decompose", 2, 1.0, True),  # ALS fails: not counted
            _rec("cp_als", 3, 1.0, True), _rec("decompose", 3, 0.5, False)]  # ours fails where ALS succeeds
    x = bench_baselines_mod._ratio_to_als(recs, "decompose", "k", 0.01, 3)
    assert x["n_seeds"] == 2 and x["n_als_success"] == 3 and x["n_method_fail_where_als_succeeds"] == 1
    assert x["assessed"] is False and x["median_ratio"] == pytest.approx(3.0)
    assert x["ratio_of_medians"] == pytest.approx(5.0 / 1.5) and (x["min_ratio"], x["max_ratio"]) == (2.0, 4.0)
    assert bench_baselines_mod._ratio_to_als(recs, "decompose", "k", 0.01, 2)["assessed"] is True
    assert bench_baselines_mod._ratio_to_als(recs, "algorithm1", "k", 0.01, 2) is None


def test_run_repeated_keeps_fastest_spreads_repeats_and_checks_identity():
    order = []

    def job(name, times, err, fps):
        times, fps = iter(times), iter(fps)

        def fn():
            order.append(name)
            return {"time_s": next(times), "rel_error": err, "fingerprint": next(fps)}
        return ({"name": name}, fn, 0.01)

    jobs = [job("a", [3.0, 1.0, 2.0], 0.001, [1, 1, 1]),
            job("fail", [5.0], 0.5, [1]),  # misses the accuracy: run once
            job("b", [1.0, 2.0, 3.0], 0.0, [1, 2, 1])]  # a repeat differs: flagged
    a, fail, b = bench_baselines_mod._run_repeated(jobs, 3)
    assert order == ["a", "fail", "b", "a", "b", "a", "b"]  # passes, not back-to-back repeats
    assert a["name"] == "a" and a["time_s"] == 1.0 and a["times_s"] == [3.0, 1.0, 2.0]
    assert a["identical"] and a["success"] and a["eps"] == 0.01 and "fingerprint" not in a
    assert fail["times_s"] == [5.0] and fail["success"] is False and fail["identical"]
    assert b["time_s"] == 1.0 and b["identical"] is False


def _ratio(kind, eps, med, n, n_als, total=10, assessed=None):
    return {"method": "decompose", "kind": kind, "eps": eps, "median_ratio": med, "ratio_of_medians": med,
            "n_seeds": n, "n_als_success": n_als, "n_seeds_total": total,
            "assessed": n >= 3 if assessed is None else assessed}


@pytest.mark.parametrize("sep,met", [(2.5, True), (3.5, False)])
def test_baselines_headline_worst_assessed_kind(sep, met):
    res = {"status": "measured", "d": 20, "r": 5, "eps": [0.01, 1e-6], "min_seeds": 3,
           "ratios": [_ratio("separated", 0.01, sep, 7, 7), _ratio("correlated", 0.01, 1.1, 10, 10),
                      _ratio("orthogonal", 0.01, 9.0, 1, 1),  # too few seeds: reported, never the worst
                      _ratio("separated", 1e-6, 2.0, 7, 7), _ratio("orthogonal", 1e-6, None, 0, 0)]}
    hs = {h["key"]: h for h in bench.bench_headline({"baselines": {"result": res}})}
    h = hs["baselines"]
    assert h["value"] == sep and h["met"] is met and "separated" in h["sentence"]
    assert "orthogonal not assessed: ALS succeeded on 1 of 10 seeds" in h["sentence"]
    assert "over 7 seeds" in h["sentence"]
    assert hs["baselines_tight"]["value"] == 2.0 and hs["baselines_tight"]["met"] is True
    assert "orthogonal not assessed: ALS succeeded on 0 of 10 seeds" in hs["baselines_tight"]["sentence"]
    res["d"] = 12  # another size: reported, not judged
    h = {h["key"]: h for h in bench.bench_headline({"baselines": {"result": res}})}["baselines"]
    assert h["met"] is None and "smaller size" in h["sentence"]


def test_baselines_headline_when_no_kind_has_enough_seeds():
    res = {"status": "measured", "d": 20, "r": 5, "eps": [0.01], "min_seeds": 3,
           "ratios": [_ratio("orthogonal", 0.01, 4.0, 2, 2)]}
    (h, _) = bench.bench_headline({"baselines": {"result": res}})
    assert h["met"] is None and "not assessed" in h["sentence"] and "2 of 10" in h["sentence"]


def test_baselines_sweep_record():
    sw = bench.bench_baselines_sweep(ds=(6, 8), kinds=("separated", "correlated"), r=2, seeds=[0, 1], repeats=1,
                                     als_iter_max=30, eps=(1e-6, 1e-2))
    _skip_without_tensorly(sw)
    assert sw["eps"] == [1e-2, 1e-6]
    assert [(w["d"], w["kind"], w["eps"]) for w in sw["rows"]] == [
        (d, k, e) for d in (6, 8) for k in ("separated", "correlated") for e in (1e-2, 1e-6)]
    assert {x["method"] for x in sw["records"]} == {"decompose", "cp_als"}
    for w in sw["rows"]:
        recs = [x for x in sw["records"] if (x["d"], x["kind"], x["eps"]) == (w["d"], w["kind"], w["eps"])]
        assert len(recs) == 4
        assert w["decompose_successes"] == sum(x["success"] for x in recs if x["method"] == "decompose")
        assert w["als_successes"] == sum(x["success"] for x in recs if x["method"] == "cp_als")
        assert w["n_paired"] <= min(w["decompose_successes"], w["als_successes"])
        assert w["als_sweep_s"] > 0 and (w["als_median_sweeps"] is None or w["als_median_sweeps"] >= 1)
    # the chapter's sentences on this sweep: tests/book/test_book_performance.py::test_baselines_sweep_story


def test_build_timings(tmp_path):
    rec = bench.bench_build(root=tmp_path)
    assert rec["status"] == "missing"
    (tmp_path / "_build").mkdir()
    (tmp_path / "_build" / "timings.json").write_text(json.dumps(
        {"started": "x", "commit": "abc", "stages": {"unit-tests": {"seconds": 3.5, "ok": True}},
         "total_seconds": 3.5}))
    rec = bench.bench_build(root=tmp_path)
    assert rec["status"] == "found" and rec["stages"]["unit-tests"]["seconds"] == 3.5
    assert "unit-tests" in bench_report._build_md(rec)
    with pytest.raises(NotADirectoryError, match="root"):
        bench.bench_build(root=tmp_path / "nowhere")


def test_build_reads_the_current_directory_by_default(tmp_path, monkeypatch):
    (tmp_path / "_build").mkdir()
    (tmp_path / "_build" / "timings.json").write_text(json.dumps({"stages": {}}))
    monkeypatch.chdir(tmp_path)
    assert bench.bench_build()["status"] == "found"


TINY = {
    "step": {"sizes": [(5, 4, 2, 3)], "repeats": 2, "min_time": 0.001},
    "dense": {"time": {"d": 6, "order": 3, "m": 4, "r": 2, "repeats": 2},
              "memory": {"implicit": [4, 8], "dense": [4, 6], "order": 3, "m": 4, "r": 2},
              "to_dense": {"sizes": [(8, 3, 3), (5, 4, 2)], "repeats": 2, "min_time": 0.001}},
    "scale": {"runs": [{"d": 20, "r": 2, "order": 3, "m": 5, "epochs": 1, "iters": 10},
                       {"d": 20, "r": 2, "order": 3, "m": 5, "tol": 1e-8, "method": "decompose"}]},
    "batch": {"B": 2, "d": 6, "m": 3, "r": 2, "order": 3, "epochs": 1, "iters": 3, "repeats": 1},
    "gpu": {},
    "baselines": {"kinds": ("separated",), "d": 6, "r": 2, "seeds": [0], "als_iter_max": 20, "repeats": 1,
                  "sweep": {"ds": [6, 7], "seeds": [0], "repeats": 1, "als_iter_max": 20}},
    "accuracy": {"cases": [("random", "random", 6, 2, 3)], "seeds": [0], "repeats": 1, "als_iter_max": 20,
                 "vs_d": {"ds": [6, 7], "r": 2, "seeds": [0], "repeats": 1, "als_iter_max": 20}},
    "build": {},
}


@pytest.mark.parametrize("name", list(TINY))
def test_run_benchmark_writes_wellformed_results(name, tmp_path):
    payload, md = bench.run_benchmark(name, quick=True, **TINY[name])
    assert payload["benchmark"] == name and payload["mode"] == "quick" and payload["machine"]["cores"] >= 1
    assert md.startswith("<!-- generated") and len(md.splitlines()) >= 3
    path = bench.write_bench_result(tmp_path / f"bench_quick_{name}.json", payload, md)
    data = _finite_json(path)
    assert data["benchmark"] == name
    assert (tmp_path / f"bench_quick_{name}.md").read_text().strip() == md.strip()
    loaded = bench.load_bench_results(tmp_path)
    assert name in loaded and loaded[name]["mode"] == "quick"
    assert bench.report_markdown(name, data).strip() in md  # the report regenerates from the stored JSON


def test_run_benchmark_rejects_unknown():
    with pytest.raises(ValueError, match="name must be one of"):
        bench.run_benchmark("nope")
    with pytest.raises(TypeError, match="sizez"):
        bench.run_benchmark("step", sizez=[(5, 4, 2, 3)])
    with pytest.raises(ValueError, match="name must be one of"):
        bench.report_markdown("nope", {})


def _step_payload(ratio, proposed=None):
    row = {"d": 200, "m": 1000, "r": 10, "order": 3, "B": 1, "ratio": ratio}
    if proposed is not None:
        row["proposed_ratio"] = proposed
    return {"rows": [row]}


@pytest.mark.parametrize("ratio,met", [(1.1, True), (1.3, False)])
def test_headline_sentences_match_numbers(ratio, met):
    res = {"step": _step_payload(ratio, proposed=1.05),
           "gpu": {"result": bench_suite._gpu_skipped("no GPU here", {"batch": [1024, 100, 64],
                                                                      "large": [4096, 16384]})},
           "batch": {"result": {"B": 64, "d": 50, "m": 50, "throughput_ratio": 2.0}}}
    hs = {h["key"]: h for h in bench.bench_headline(res)}
    assert hs["step"]["met"] is met
    assert ("NOT met" in hs["step"]["sentence"]) is (not met)
    assert f"{ratio:.3g}" in hs["step"]["sentence"] and "1.05" in hs["step"]["sentence"]
    assert hs["gpu_batch"]["met"] is None and bench.GPU_NOT_MEASURED in hs["gpu_batch"]["sentence"]
    assert hs["batch"]["met"] is False
    # the table of these figures (book side): tests/book/test_book_performance.py::test_headline_table


def test_headline_does_not_judge_other_sizes():
    res = {"batch": {"result": {"B": 8, "d": 10, "m": 10, "throughput_ratio": 9.0}}}
    (h,) = bench.bench_headline(res)
    assert h["met"] is None and "smaller size" in h["sentence"]


def test_target_met():
    assert bench.target_met(1.1, "step") is True and bench.target_met(1.3, "step") is False
    assert bench.target_met(300.0, "dense") is True and bench.target_met(float("nan"), "dense") is None
    assert bench.target_met(bench.GPU_NOT_MEASURED, "gpu_batch") is None
    with pytest.raises(ValueError, match="key must be one of"):
        bench.target_met(1.0, "speed")


def test_run_all_cli(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--only", "gpu", "build",
                          "--out-dir", str(tmp_path)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "bench_quick_gpu.json").exists() and (tmp_path / "bench_quick_build.md").exists()
    summary = (tmp_path / "bench_quick_summary.md").read_text()
    assert "headline" in summary
    gpu = _finite_json(tmp_path / "bench_quick_gpu.json")
    assert gpu["machine"]["blas_threads"] != "default"  # benchmarks/_env.py pins BLAS threads
    if gpu["result"]["status"] == "skipped":
        assert bench.GPU_NOT_MEASURED in summary


def test_run_all_cli_writes_to_env_folder_or_cwd(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != bench.OUT_ENV_VAR}
    script = str(ROOT / "benchmarks" / "bench_gpu.py")
    out = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env={**env, bench.OUT_ENV_VAR: str(tmp_path / "env")})
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "env" / "bench_quick_gpu.json").exists() and not (tmp_path / "results").exists()
    out = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=300, cwd=tmp_path,
                         env=env)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "results" / "bench_quick_gpu.json").exists()  # default: results/ under the cwd


def _perf_patch():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import perf_patch
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return perf_patch


def test_prepatch_code_matches_installed_fit_terms():
    perf_patch = _perf_patch()
    from tdcore._objective import fit_terms, make_target_operator

    rng = np.random.default_rng(0)
    for order in (2, 3, 4):
        T = tdcore.random_target(9, 2, order, seed=1)
        op = make_target_operator(T)
        U, s = rng.standard_normal((9, 5)), rng.standard_normal(5)
        a = fit_terms(U, s, op, need_grad_s=True)
        b = perf_patch.fit_terms_prepatch(U, s, perf_patch._prepatch_target(op), need_grad_s=True)
        for x, y in zip(a, b):
            # entries near zero cancel terms as large as the largest entry: absolute slack relative to it
            np.testing.assert_allclose(y, x, rtol=1e-12, atol=1e-12 * np.abs(np.asarray(x)).max())


def test_prepatch_context_restores_installed_code():
    perf_patch = _perf_patch()
    from tdcore import _objective
    from tdcore._algorithm1 import run as _algorithm1

    before = (_algorithm1._Run.step, _algorithm1.fit_terms, _objective.FactoredTarget.contract)
    with perf_patch.prepatch():
        assert _algorithm1.fit_terms is perf_patch.fit_terms_prepatch
    assert (_algorithm1._Run.step, _algorithm1.fit_terms, _objective.FactoredTarget.contract) == before
    rows = perf_patch.time_steps([(5, 4, 2, 3, 1)], repeats=1, min_time=0.001)
    assert rows[0]["speedup"] > 0


def _acc_rec(method, seed, t, ok, init=None):
    r = {"method": method, "seed": seed, "time_s": t, "success": ok, "rel_error": 1e-7 if ok else 1e-2}
    if method == "decompose":
        r.update(time_algorithm1_s=t / 2, time_refine_s=t / 2, lm_iters=5, refine_fallback=False)
    else:
        r.update(init=init, n_iter=10)
    return r


def test_accuracy_summary_takes_the_faster_init_whatever_its_success_rate():
    from tdcore.bench.accuracy import _summarize

    recs = [_acc_rec("decompose", s, 4e-3, True) for s in range(3)]
    recs += [_acc_rec("cp_als", s, 2e-3 if s == 0 else 9e-3, s == 0, "random") for s in range(3)]  # 1/3, fast
    recs += [_acc_rec("cp_als", s, 5e-3, True, "svd") for s in range(3)]  # 3/3, slower
    out = _summarize(recs, ("random", "svd"))
    assert out["best_init"] == "random" and out["best_als_s"] == pytest.approx(2e-3)
    assert out["ratio"] == pytest.approx(2.0) and out["met"] is False
    assert out["best_init_all_seeds"] == "svd" and out["ratio_all_seeds"] == pytest.approx(0.8)
    # expected time with restarts: all the time spent over the successes
    assert out["cp_als_random"]["expected_s"] == pytest.approx((2e-3 + 2 * 9e-3) / 1)
    # a decompose failure misses the goal whatever the times
    recs[0] = _acc_rec("decompose", 0, 1e-3, False)
    assert _summarize(recs, ("random", "svd"))["met"] is False
    # decompose faster than every init: met
    fast = [_acc_rec("decompose", s, 1e-3, True) for s in range(3)] + recs[3:]
    assert _summarize(fast, ("random", "svd"))["met"] is True


def test_accuracy_record_and_headline():
    res = bench.bench_time_to_accuracy([("random", "random", 6, 2, 3), ("orthogonal", "orthogonal", 6, 2, 3)],
                                       seeds=[0, 1], repeats=1, als_iter_max=30)
    if res["status"] == "skipped":
        pytest.skip(res["reason"])
    assert [r["label"] for r in res["rows"]] == ["random", "orthogonal"]
    for r in res["rows"]:
        assert r["decompose"]["n"] == 2 and r["m"] == 6
        assert set(r) >= {"cp_als_random", "cp_als_svd", "best_init", "ratio", "met"}
        assert r["decompose"]["successes"] == 2  # decompose reaches 1e-6 on these easy targets
    assert len(res["records"]) == 2 * 2 * 3 and res["all_identical"]
    (h,) = [x for x in bench.bench_headline({"accuracy": {"mode": "full", "result": res}}) if x["key"] == "accuracy"]
    worst = max(r["ratio"] for r in res["rows"] if r["ratio"] is not None)
    assert h["value"] == pytest.approx(worst) and h["met"] == (worst <= 1.0)
    assert "cases met" in h["sentence"]


def test_to_dense_record_and_headline():
    rows = bench.bench_to_dense(((8, 3, 3), (6, 4, 2)), repeats=2, min_time=0.001)
    assert [(r["d"], r["order"], r["m"]) for r in rows] == [(8, 3, 3), (6, 4, 2)]
    for r in rows:
        assert r["to_dense_s"] > 0 and r["product_s"] > 0 and r["ratio"] > 0
        assert r["max_abs_diff"] <= 1e-15  # the same product
    hs = {h["key"]: h for h in bench.bench_headline({"dense": {"time": {"d": 6, "order": 3, "m": 4, "speedup": 2.0},
                                                               "memory": {"implicit": {"slope": 1.0},
                                                                          "dense": {"slope": 3.0}},
                                                               "to_dense": rows}})}
    assert hs["to_dense"]["value"] == rows[0]["ratio"] and hs["to_dense"]["met"] is None  # not the target size

