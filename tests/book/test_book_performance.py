"""The Performance chapter's code (tdcore/book/performance.py) and its sentences (chapters/performance.ipynb).

The chapter writes its sentences in its own cells; these tests run those cells
(with the chapter's import cell) on tiny benchmark payloads and check that the
sentences say what the numbers say.
"""

import json
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from tdcore import bench  # noqa: E402
from tdcore.book import performance as ch  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "chapters" / "performance.ipynb"

TINY = {
    "step": {"sizes": [(5, 4, 2, 3)], "repeats": 2, "min_time": 0.001},
    "dense": {"time": {"d": 6, "order": 3, "m": 4, "r": 2, "repeats": 2},
              "memory": {"implicit": [4, 8], "dense": [4, 6], "order": 3, "m": 4, "r": 2}},
    "scale": {"runs": [{"d": 20, "r": 2, "order": 3, "m": 5, "epochs": 1, "iters": 10},
                       {"d": 20, "r": 2, "order": 3, "m": 5, "tol": 1e-8, "method": "decompose"}]},
    "batch": {"B": 2, "d": 6, "m": 3, "r": 2, "order": 3, "epochs": 1, "iters": 3, "repeats": 1, "workers": [2]},
    "gpu": {},
    "baselines": {"kinds": ("separated",), "d": 6, "r": 2, "seeds": [0], "als_iter_max": 20, "repeats": 1,
                  "sweep": {"ds": [6, 7], "seeds": [0], "repeats": 1, "als_iter_max": 20}},
    "accuracy": {"cases": [("random", "random", 6, 2, 3), ("orthogonal", "orthogonal", 6, 2, 3)], "seeds": [0, 1],
                 "repeats": 1, "als_iter_max": 30,
                 "vs_d": {"ds": [6, 7], "r": 2, "seeds": [0], "repeats": 1, "als_iter_max": 30}},
    "build": {},
}
# the chapter's cells that write sentences, by benchmark
STORY_CELLS = {"step": "perf-09", "dense": "perf-12b", "scale": "perf-16b", "batch": "perf-18b", "gpu": "perf-20",
               "baselines": "perf-22", "baselines_sweep": "perf-23a", "accuracy": "perf-23e", "build": "perf-24"}


@pytest.fixture(scope="module")
def res():
    return {name: bench.run_benchmark(name, quick=True, **cfg)[0] for name, cfg in TINY.items()}


def _cells():
    nb = json.loads(NOTEBOOK.read_text())
    return {c.get("id"): "".join(c["source"]) for c in nb["cells"]}


def story(R, name):
    """Run the chapter's import cell and its sentence cell for ``name`` on ``R``; the Markdown it displays."""
    cells = _cells()
    ns = {}
    exec(cells["perf-02"], ns)
    shown = []
    ns["display"], ns["R"] = shown.append, R
    exec(cells[STORY_CELLS[name]], ns)
    plt.close("all")
    texts = [x.data for x in shown if type(x).__name__ == "Markdown"]
    assert len(texts) == 1, texts
    return texts[0]


def test_plots_draw(res):
    for fn, name in ((ch.plot_bench_step_floor, "step"), (ch.plot_bench_memory, "dense"),
                     (ch.plot_bench_scale, "scale"), (ch.plot_bench_baselines, "baselines")):
        fig, ax = plt.subplots()
        assert fn(res[name], ax=ax) is ax
        assert ax.has_data() or ax.texts
        plt.close(fig)
        ax = fn(res[name])  # a new figure when no Axes is given
        assert ax.has_data() or ax.texts
        plt.close(ax.figure)
    if res["baselines"]["result"]["status"] == "measured":
        for what in ("success", "time"):
            fig, ax = plt.subplots()
            ch.plot_bench_baselines(res["baselines"], ax=ax, eps=min(res["baselines"]["result"]["eps"]), what=what)
            assert ax.has_data()
            plt.close(fig)
        for what in ("time", "ratio"):
            fig, ax = plt.subplots()
            ch.plot_bench_baselines_sweep(res["baselines"], ax=ax, what=what)
            assert len(ax.lines) >= (3 if what == "time" else 2)
            plt.close(fig)
        fig, ax = plt.subplots()
        with pytest.raises(ValueError, match="what"):
            ch.plot_bench_baselines_sweep(res["baselines"], ax=ax, what="speed")
        with pytest.raises(ValueError, match="what"):
            ch.plot_bench_baselines(res["baselines"], ax=ax, what="speed")
        with pytest.raises(ValueError, match="eps"):
            ch.plot_bench_baselines(res["baselines"], ax=ax, eps=0.5)
        plt.close(fig)
    if res["accuracy"]["result"]["status"] == "measured":
        fig, ax = plt.subplots()
        assert ch.plot_time_to_accuracy_vs_d(res["accuracy"], ax=ax) is ax
        assert len(ax.lines) >= 3  # decompose and ALS with each of the two inits
        assert [int(x) for x in ax.lines[0].get_xdata()] == [6, 7]
        plt.close(fig)
    ax = ch.plot_time_to_accuracy_vs_d({"result": {"status": "skipped"}})
    assert ax.texts
    plt.close(ax.figure)
    fig, ax = plt.subplots()
    ch.plot_bench_memory_model(res, ax=ax, d=8, order=3, m=4)
    assert len(ax.lines) >= 3
    plt.close(fig)
    ax = ch.explore_memory_model(d=8, order=3, m=4, results=res)
    assert len(ax.lines) >= 3 + 2  # the model's lines and the stored measurements (order 3, m = 4 match)
    plt.close(ax.figure)


def test_memory_model_explorer_builds():
    from tdcore.book import explorer

    ex = explorer(ch.explore_memory_model, d=(8, 20000, 8, 64), order=(3, 5, 1, 4), m=(16, 1024, 16, 256),
                  results=None, display=False)
    assert ex.values["d"] == 64 and ex.figure is not None
    plt.close("all")


def test_tables_and_stories_from_payloads(res):
    for name in TINY:
        html = ch.bench_table(res, name)
        assert html.startswith("<") and "$" not in html
        md = ch.bench_table(res, name, fmt="markdown")
        assert md.strip()
        text = story(res, name)
        assert text.strip() and "$" not in text  # plain text: outputs are rendered as CommonMark
    assert "<table" in ch.bench_table(res, "step") and "<th>floor (3 products)</th>" in ch.bench_table(res, "step")
    assert "not the target size" in story(res, "batch")
    if res["baselines"]["result"]["status"] == "measured":
        assert "Size sweep" in story(res, "baselines_sweep")
        text = story(res, "baselines")
        assert "not the target size" in text or "too few" in text
    assert "No size sweep" in story({"baselines": {"result": {"status": "measured"}}}, "baselines_sweep")
    m = ch.machine_table(res, fmt="markdown")
    assert m.startswith("Machine:") and m.count("| quick |") == len(TINY)
    with pytest.raises(ValueError, match="fmt"):
        ch.bench_table(res, "step", fmt="pdf")
    assert "No stored result" in ch.bench_table({}, "step")


def test_scale_story(res):
    rec = next(r for r in res["scale"]["runs"] if r["method"] == "decompose")
    text = story({"scale": {"runs": [rec]}}, "scale")
    assert f"{rec['rel_error']:.1e}" in text and "Levenberg" in text and "peaked" not in text
    mem = {**rec, "peak_traced_bytes": 3 * 2**30, "factor_bytes": 2**30, "process_peak_rss_bytes": 4 * 2**30}
    text = story({"scale": {"runs": [mem]}}, "scale")
    assert "peaked at 3.00 GiB, 3.0 times one d × m factor matrix (1024 MiB" in text


def test_batch_story(res):
    text = story(res, "batch")
    assert "one-core ratio" in text
    b = res["batch"]["result"]
    assert f"{b['throughput_ratio']:.2f}x" in text and f"{b['workers'][0]['throughput_ratio']:.2f}x" in text


def test_baselines_sweep_story():
    sw = bench.bench_baselines_sweep(ds=(6, 8), kinds=("separated", "correlated"), r=2, seeds=[0, 1], repeats=1,
                                     als_iter_max=30, eps=(1e-6, 1e-2))
    if sw["status"] == "skipped":
        pytest.skip(sw["reason"])
    text = story({"baselines": {"result": {"status": "measured", "sweep": sw}}}, "baselines_sweep")
    assert "d = 6" in text and "d = 8" in text and "$" not in text


def test_step_story_judges_the_target_size_only():
    def row(d, m, ratio):
        return {"d": d, "m": m, "r": 10, "order": 3, "B": 1, "ratio": ratio, "step_s": 1e-3, "floor_s": 1e-3 / ratio,
                "per_trial_step_s": 1e-3}

    for ratio, word in ((1.1, "**met**"), (1.3, "**not met**")):
        text = story({"step": {"rows": [row(200, 1000, ratio), row(10, 10, 5.0)]}}, "step")
        assert word in text and f"{ratio:.2f}x the floor" in text
    text = story({"step": {"rows": [row(10, 10, 5.0)]}}, "step")
    assert "target" not in text  # no row at the target's size: nothing judged


def test_gpu_story_says_not_measured(res):
    assert bench.GPU_NOT_MEASURED in story(res, "gpu") or res["gpu"]["result"]["status"] == "measured"


def test_build_story_reads_stored_record_when_no_local_build(res, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the cell reads ../_build: nothing there
    stored = {"mode": "full", "result": {"status": "found", "started": "x", "commit": "abc", "total_seconds": 3.5,
                                         "stages": {"unit-tests": {"seconds": 3.5, "ok": True}}}}
    text = story({"build": stored}, "build")
    assert "unit-tests 4 s" in text and "commit abc" in text
    assert "No build timings" in story({}, "build")


@pytest.mark.parametrize("ratio,met", [(1.1, True), (1.3, False)])
def test_headline_table(ratio, met):
    res = {"step": {"rows": [{"d": 200, "m": 1000, "r": 10, "order": 3, "B": 1, "ratio": ratio}]},
           "gpu": {"result": {"status": "skipped", "sizes": {"batch": [1024, 100, 64], "large": [4096, 16384]},
                              "batched_throughput_ratio": bench.GPU_NOT_MEASURED,
                              "large_fraction_of_cublas": bench.GPU_NOT_MEASURED}}}
    md = ch.headline_table(res, fmt="markdown")
    assert "not measured" in md and ("| met |" in md) is met
    assert ch.headline_table(res).startswith("<table")


def test_md_to_html_escapes_and_formats():
    html = ch._md_to_html("<!-- c -->\nA **bold** `x<y`\n\n| a | b |\n|---|---|\n| 1 | <2> |")
    assert "<b>bold</b>" in html and "<code>x&lt;y</code>" in html
    assert "<td>&lt;2&gt;</td>" in html and "<!--" not in html


def test_load_suite_reads_results_and_names_what_is_missing(res, tmp_path):
    for name, payload in res.items():
        bench.write_bench_result(tmp_path / f"bench_quick_{name}.json", payload)
    R = ch.load_suite(tmp_path)
    assert set(R) == set(TINY) and all(p["mode"] == "quick" for p in R.values())
    (tmp_path / "bench_quick_step.json").unlink()
    with pytest.raises(FileNotFoundError, match="step"):
        ch.load_suite(tmp_path)
    assert "step" not in ch.load_suite(tmp_path, require=("dense",))
    with pytest.raises(ValueError, match="require"):
        ch.load_suite(tmp_path, require=("speed",))
    with pytest.raises(FileNotFoundError, match="does not exist"):
        ch.load_suite(tmp_path / "nowhere")


def test_stored_suite_is_found_without_a_path(monkeypatch):
    """The chapter's ``ch.load_suite()``: the stored results shipped with tdcore (checkout or wheel)."""
    monkeypatch.delenv("TDCORE_RESULTS", raising=False)
    try:
        R = ch.load_suite()
    except ModuleNotFoundError as e:  # tdcore.book.data needs the install that maps it onto results/
        pytest.fail(f"stored results not installed as tdcore.book.data ({e}); reinstall tdcore (pip install -e .)")
    assert set(ch.SUITE_REQUIRED) <= set(R)


def test_lookups():
    assert ch.verdict(1.1, "step") == {"op": "<=", "target": 1.2, "met": True}
    assert ch.verdict(100.0, "dense")["met"] is False
    assert ch.step_row([{"d": 1, "m": 2, "order": 3, "B": 4}], 1, 2, 3, 4) == {"d": 1, "m": 2, "order": 3, "B": 4}
    assert ch.step_row([{"d": 1, "m": 2, "order": 3, "B": 4}], 1, 2, 3) is None
    res = {"summary": [{"method": "cp_als", "kind": "k", "eps": 0.01, "n": 3}],
           "ratios": [{"method": "decompose", "kind": "k", "eps": 0.01, "n_seeds": 2}]}
    assert ch.baseline_summary(res, "cp_als", "k", 0.01)["n"] == 3
    assert ch.baseline_summary(res, "cp_als", "k", 1e-6) is None
    assert ch.baseline_ratio(res, "decompose", "k", 0.01)["n_seeds"] == 2
    assert ch.superscript(12) == "\u00b9\u00b2"


def test_accuracy_story_names_the_missed_cases(res):
    acc = res["accuracy"]
    if acc["result"]["status"] != "measured":
        pytest.skip(acc["result"]["reason"])
    rows = acc["result"]["rows"]
    text = story(res, "accuracy")
    assert f"on every seed of {sum(r['decompose_all_seeds'] for r in rows)} of {len(rows)} cases" in text
    for r in rows:
        assert (f"Missed: *{r['label']}*" in text) == (not r["met"])
    # a row decompose loses is named with both ALS ratios
    lost = {**rows[0], "met": False, "ratio": 2.0, "best_init": "random", "ratio_all_seeds": 1.5,
            "best_init_all_seeds": "svd", "best_als_all_seeds_s": 1e-3, "label": "made-up"}
    text = story({"accuracy": {**acc, "result": {**acc["result"], "rows": [lost]}}}, "accuracy")
    assert "Missed: *made-up*" in text and "ratio is 1.50" in text

