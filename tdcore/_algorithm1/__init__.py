"""Algorithm 1 of Wang, Wu, Lee, Ma & Ge (2020), batched over independent trials.

Model ``T = sum_i a_i c_i^{l-2} u_i^{(x) l}``.  Initialisation ``u_i ~ delta Unif(S^{d-1})``,
``a_i ~ Unif{-1, +1}``, ``c_i = sqrt(d (m + K)) / ||u_i||``, ``chat_i = 1 / ||u_i||``.
Each of K epochs: re-initialise the column of smallest norm, then H iterations of

    U' = U - eta grad_U f(U, C, Chat, A)          (C, Chat held fixed)
    c_i, chat_i  <-  (||u_i|| / ||u'_i||) c_i, chat_i
    c_i <- c_i / sqrt(d (m + K))  the first time ||u_i|| <= 2 sqrt(m + K) delta < ||u'_i||
                                  since column i was (re)initialised (scalar mode switch)

The loop runs on a leading batch axis so that B independent seeds of one
configuration share every matrix product; ``algorithm1`` is the case B = 1.
Random numbers come from one NumPy generator per trial, so trial b of a batch
equals a single run with the same seed, on every backend (to rounding: a single
NumPy trial takes a path with 2-D arrays, whose products and sums may round
differently from the stacked ones).

The package is split by concern: :mod:`.params` (the default rule, results, errors,
the memory estimate), :mod:`.run` (the batched iteration), :mod:`.checkpoint`
(checkpoints) and :mod:`.api` (the two public entries).
"""

from .api import _make_params, algorithm1, algorithm1_batch
from .checkpoint import CheckpointError, history_path, target_fingerprint
from .params import BatchResult, DivergenceError, Params, Result, default_params, estimate_memory
from .run import _prepare_targets, _Run  # noqa: F401  (used by the benchmarks and the step tests)

__all__ = [
    "algorithm1",
    "algorithm1_batch",
    "default_params",
    "Params",
    "Result",
    "BatchResult",
    "DivergenceError",
    "CheckpointError",
    "estimate_memory",
    "target_fingerprint",
    "history_path",
]
