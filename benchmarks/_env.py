"""Pin BLAS threads before NumPy is imported (imported first by every benchmark script).

The machines we benchmark on are shared: with several processes competing for
two cores, multi-threaded OpenBLAS spins on its barriers and products with a
small inner dimension become up to 100x slower, which swamps every ratio.  So
the benchmarks run single-threaded BLAS unless ``TDCORE_BENCH_THREADS`` (or an
explicit ``OPENBLAS_NUM_THREADS`` / ``OMP_NUM_THREADS``) says otherwise; the
value used is recorded with every result.
"""

import os

_n = os.environ.get("TDCORE_BENCH_THREADS", "1")
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, _n)
