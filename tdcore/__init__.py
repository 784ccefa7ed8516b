"""tdcore: over-parameterised symmetric tensor decomposition, computed implicitly.

The core library, by concern (each module documents its part):

* tensors and measurements (``_tensor``; ``_inputs`` reads tensors of your own):
  :class:`SymCP`, :func:`random_target`,
  :func:`rel_error`, :func:`inner`, :func:`norm`, ... -- everything through Gram
  matrices, never the ``d**l`` array;
* objectives and gradients (``_objective``);
* the paper's Algorithm 1, single and batched (``_algorithm1``), and the
  refinement beyond the paper (``_refine``: :func:`refine`, :func:`decompose`);
* baselines (``_baselines``: CP-ALS through TensorLy, the power method) and
  gradient dynamics (``_dynamics``: plain GD, the 2-homogeneous GD, the
  deflation flow);
* lazy training (``_lazy``: the NTK kernel, the exact lazy fit, dimension counts);
* two-layer networks on Gaussian inputs (``_twolayer``: Hermite activations,
  the empirical loss in O(n m d), the three training regimes of the book);
* statistics (``_stats``: the one line fit, first-hit times, success rates);
* backends (``_backend``: NumPy, or CuPy on a GPU).

Subpackages: :mod:`tdcore.bench` (the benchmark suite), :mod:`tdcore.sweep`
(full-size sweeps on Dask) and :mod:`tdcore.book` (the chapters' experiments and
figures; not imported here, it needs the ``book`` extra).
"""

from ._algorithm1 import CheckpointError, DivergenceError, algorithm1, algorithm1_batch, default_params, estimate_memory
from ._backend import backend_info, get_backend, to_numpy
from ._baselines import cp_als, power_method, refit_weights, tensorly_available
from ._dynamics import deflation_flow, homogeneous_gd, vanilla_gd
from ._inputs import load_target
from ._lazy import lazy_fit, lazy_kernel, lazy_threshold_sweep, sym_dim
from ._objective import fit_objective, objective, vanilla_objective
from ._refine import decompose, precise_rel_error, refine
from ._stats import epochs_to_accuracy, fit_line, fit_loglog_slope, success_rate, time_to_accuracy
from ._tensor import (SymCP, check_target, inner, is_symmetric, moment_tensor, norm, random_target, rel_error,
                      subspace_basis, symmetrize)
from ._twolayer import empirical_loss, hermite, train_student

__all__ = [
    # tensors and measurements
    "SymCP", "random_target", "moment_tensor", "load_target", "rel_error", "inner", "norm", "symmetrize", "is_symmetric",
    "check_target", "subspace_basis",
    # objectives
    "fit_objective", "vanilla_objective", "objective",
    # Algorithm 1 and refinement
    "algorithm1", "algorithm1_batch", "default_params", "estimate_memory", "DivergenceError", "CheckpointError",
    "refine", "decompose",
    "precise_rel_error",
    # baselines and dynamics
    "cp_als", "power_method", "refit_weights", "tensorly_available", "vanilla_gd", "homogeneous_gd",
    "deflation_flow",
    # lazy training
    "sym_dim", "lazy_kernel", "lazy_fit", "lazy_threshold_sweep",
    # two-layer networks
    "hermite", "empirical_loss", "train_student",
    # statistics
    "fit_line", "fit_loglog_slope", "time_to_accuracy", "epochs_to_accuracy", "success_rate",
    # backends
    "get_backend", "backend_info", "to_numpy",
]

__version__ = "0.1.0"
