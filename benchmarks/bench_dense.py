#!/usr/bin/env python3
"""Benchmark 'dense' of tdcore's suite (tdcore.bench; see benchmarks/run_all.py).

    python benchmarks/bench_dense.py [--full] [--backend cupy] [--out-dir DIR]
"""

import _env  # noqa: F401  (must come before NumPy)

import sys

from run_all import main

if __name__ == "__main__":
    sys.exit(main(default_only=["dense"]))
