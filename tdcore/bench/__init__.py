"""Benchmarks of tdcore: the timing harness, the benchmark suite and its reports.

The scripts in ``benchmarks/`` are thin command lines around this package; the
Performance chapter reads the stored results (through
:func:`tdcore.book.performance.load_suite`) and reruns a little of it live.
Nothing here plots or needs matplotlib.

* ``tdcore.bench.timing``: ``bench_machine_info``, ``tune_malloc``,
  ``time_interleaved``, ``bench_paired_ratio``, and where results are
  written: ``write_bench_result`` to a folder given by argument, else by
  ``$TDCORE_BENCH_OUT``, else ``results/`` under the current directory
  (``bench_output_dir``);
* ``tdcore.bench.suite``: every measurement (``bench_*``), the quick and
  full configurations ``BENCH_SUITE`` and ``run_benchmark``;
* ``tdcore.bench.baselines``: time to accuracy against CP-ALS and the power method;
* ``tdcore.bench.accuracy``: time to ``1e-6`` of ``decompose`` against CP-ALS at its best initialisation;
* ``tdcore.bench.report``: the Markdown tables written beside each result
  and the headline figures against the issue's targets.

Examples
--------
>>> from tdcore import bench
>>> t = bench.time_interleaved({"a": lambda: None}, repeats=2, min_time=1e-3)
>>> t["a"] > 0
True
"""

from .accuracy import TTA_CASES, bench_time_to_accuracy, bench_time_to_accuracy_vs_d
from .baselines import BASELINE_METHODS, BASELINES_MIN_SEEDS, bench_baselines, bench_baselines_sweep
from .report import METHOD_LABELS, VARIANT_LABELS, bench_headline, report_markdown, target_met, variants_of
from .suite import (
    BENCH_SUITE,
    BENCH_TARGETS,
    GPU_NOT_MEASURED,
    StackedStepRun,
    bench_batch,
    bench_build,
    bench_gpu,
    bench_gpu_status,
    bench_implicit_dense,
    bench_memory,
    bench_run_state,
    bench_scale,
    bench_step_callable,
    bench_step_floor,
    bench_to_dense,
    dense_gradient_step,
    run_benchmark,
)
from .timing import (
    BENCH_ENGINE,
    BENCH_NAMES,
    OUT_ENV_VAR,
    bench_machine_info,
    bench_output_dir,
    bench_paired_ratio,
    fmt_time,
    load_bench_result,
    load_bench_results,
    time_interleaved,
    tune_malloc,
    write_bench_result,
)

__all__ = [
    # timing harness and storage
    "bench_machine_info", "tune_malloc", "time_interleaved", "bench_paired_ratio", "fmt_time",
    "bench_output_dir", "OUT_ENV_VAR", "write_bench_result", "load_bench_result", "load_bench_results",
    "BENCH_NAMES", "BENCH_ENGINE",
    # measurements
    "bench_run_state", "bench_step_callable", "StackedStepRun", "bench_step_floor", "dense_gradient_step", "bench_implicit_dense",
    "bench_memory", "bench_to_dense", "bench_scale", "bench_batch", "bench_gpu_status", "bench_gpu", "GPU_NOT_MEASURED",
    "bench_baselines", "bench_baselines_sweep", "BASELINE_METHODS", "BASELINES_MIN_SEEDS", "bench_build",
    "bench_time_to_accuracy", "bench_time_to_accuracy_vs_d", "TTA_CASES",
    # the suite and its reports
    "BENCH_SUITE", "BENCH_TARGETS", "run_benchmark", "report_markdown", "bench_headline", "target_met",
    "variants_of", "VARIANT_LABELS", "METHOD_LABELS",
]
