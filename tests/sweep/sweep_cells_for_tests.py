"""Cell functions of the sweep tests, imported by the Dask workers by name."""

import os

import numpy as np


def cells(size):
    return [{"i": i} for i in range(6)]


def run_cell(*, i):
    rng = np.random.default_rng(i)
    return {"i": i, "value": float(rng.standard_normal()), "pid": os.getpid()}


def run_cell_killing_its_worker(*, i):
    """Cell 2 kills the worker process it runs on, the first time only (a marker file says so)."""
    marker = os.path.join(os.environ["TDCORE_SWEEP_TEST_DIR"], f"killed-{i}")
    if i == 2 and not os.path.exists(marker):
        open(marker, "w").close()
        os._exit(1)
    return run_cell(i=i)


def run_cell_failing(*, i):
    if i == 4:
        raise RuntimeError("cell 4 is broken")
    return run_cell(i=i)


def merge(size, results):
    return {"values": [res["value"] for _, res in results], "n": len(results)}
