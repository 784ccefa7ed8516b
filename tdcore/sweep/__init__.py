"""Full-size sweeps as grids of independent cells, run on Dask and stored cell by cell.

A *sweep* (:class:`Sweep`) is a named grid of *cells*: one configuration and
one batch of seeds each, a JSON-able dict of parameters.  ``python -m tdcore
sweep NAME`` (or :func:`run_sweep`) computes every cell that is not in the
results store yet, as one task each on Dask distributed (a ``LocalCluster``
of worker processes by default, or any running scheduler), writes each
finished cell atomically to its own file with its provenance, and merges the
cells into the sweep's results file.  A killed sweep resumes where it stopped:
a rerun skips every stored cell.  A cell's key covers the sweep, the size and
all its parameters, so different sizes never mix; the merge refuses cells
computed by different engines (``tdcore._provenance.engine_fingerprint``).

The sweeps themselves are listed in ``tdcore.sweep.registry``.
"""

from .engine import CellError, SweepError, SweepSummary, Store, run_sweep
from .registry import SWEEPS, Sweep, get_sweep

__all__ = ["run_sweep", "Store", "SweepSummary", "SweepError", "CellError", "Sweep", "SWEEPS", "get_sweep"]
