"""Algorithm 1's parameters, results and errors: the default rule, the memory estimate."""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field

import numpy as np

from .._tensor import SymCP
from .._validate import check_float, check_int, check_memory



def regulariser_floor(lam_rel, rank):
    """Algorithm 1's error floor, relative to ``||T*||``: about ``lam sqrt(r)``.

    Each fitted component of weight ``w`` settles at ``w - lam`` (the regulariser's
    fixed point), so ``r`` fitted components leave a residual of norm about
    ``lam sqrt(r)``; ``lam_rel`` is ``lam / ||T*||``.
    """
    return float(lam_rel) * math.sqrt(max(int(rank), 1))


def _warn_below_floor(tol, lam_rel, rank, polish, where, stacklevel=3):
    """Warn (``UserWarning``) when ``tol`` is below the regulariser floor of a run without polish steps.

    Algorithm 1 alone then runs all its epochs without reaching ``tol``; the
    message names the tools that go below the floor.
    """
    if tol is None or polish or lam_rel <= 0:
        return
    floor = regulariser_floor(lam_rel, rank)
    if tol < 0.5 * floor:
        warnings.warn(
            f"{where}: tol={tol:.3g} is below Algorithm 1's regulariser floor, a relative error of about "
            f"lam*sqrt(r) = {lam_rel:.3g}*sqrt({int(rank)}) = {floor:.3g}; the run will most likely use all its "
            "epochs without reaching tol. To go below the floor use tdcore.decompose(target, m, tol=...) "
            "(Algorithm 1, then Levenberg-Marquardt), tdcore.refine on this result, or polish=N steps "
            "(Algorithm 1 then plain gradient descent with lam = 0).", UserWarning, stacklevel=stacklevel)

class DivergenceError(FloatingPointError):
    """A run diverged (NaN, inf, or the objective grew by orders of magnitude).

    Attributes
    ----------
    epoch, iteration : int
        Where it happened (1-based epoch, 1-based iteration within the epoch).
    state : dict
        A finite state (NumPy arrays ``U``, ``a``, ``c``, ``chat``, ``switched``) to
        restart from with ``suggested_eta``: the newest of the last finite state,
        the last checked state and the state at the start of the epoch from which
        64 steps with ``suggested_eta`` stay finite and bounded (pass it as
        ``init_state``); ``state_iteration`` says which iteration of the epoch
        it is from (0: right after the re-initialisation).
    last_finite_state : dict
        The parameters before the step that diverged (may diverge again at once).
    suggested_eta : float
        A step size to try instead: ``min(eta / 4, default eta)``, so that a run
        started with a far too large step gets the default rule's step at once.
    partial : Result or None
        History up to the divergence.
    """

    def __init__(self, message, *, epoch, iteration, state, suggested_eta, partial=None, last_finite_state=None,
                 state_iteration=None):
        super().__init__(message)
        self.epoch, self.iteration, self.state = epoch, iteration, state
        self.suggested_eta, self.partial = suggested_eta, partial
        self.last_finite_state = state if last_finite_state is None else last_finite_state
        self.state_iteration = iteration - 1 if state_iteration is None else state_iteration


@dataclass(frozen=True)
class Params:
    """The values an Algorithm 1 run actually used (see :func:`default_params`).

    In a :class:`Result` they are for the target as given (``target_norm`` is
    ``||T*||``); the run itself used the equivalent values for ``T* / ||T*||``
    (``eta * target_norm``, ``lam / target_norm``, ``delta / sqrt(target_norm)``,
    ``target_norm = 1``), which :attr:`BatchResult.params` and checkpoints hold.
    """

    d: int
    order: int
    m: int
    epochs: int
    iters: int
    delta: float
    eta: float
    lam: float
    target_norm: float
    switch_factor: float  # sqrt(d (m + K))
    switch_threshold: float  # 2 sqrt(m + K) delta
    reinit: bool = True
    mode_switch: bool = True
    polish: int = 0
    tol: float | None = None

    def to_dict(self):
        return asdict(self)


def default_params(d, order, m, target_norm=1.0, *, epochs=None, iters=None, delta=None, eta=None, lam=None):
    """The default rule for Algorithm 1's parameters, in terms of (d, l, m, ||T*||).

    Every argument left as ``None`` is filled in:

    * ``epochs  K = 40`` and ``iters H = 300``.  In the sweep every run that reached
      0.05 did so within the first ten epochs; 40 leaves room for re-initialisations
      to repair a bad start while a default run at d = 200, m = 100 stays well
      under 20 s on one core.
    * ``eta     = 0.25 / (l^2 ||T*||)``.  After the mode switch a component of weight
      ``w`` has curvature about ``l^2 w`` along its own direction and ``w <= ||T*||``,
      so ``eta l^2 w <= 1/4``: the step is an eighth of the stability limit
      ``2 / (l^2 w)`` of every fitted component (a quarter would be ``0.5 / (l^2 ||T*||)``).
    * ``lam     = 2e-3 ||T*||``: the regulariser's bias on a fitted component of
      weight ``w`` is about ``lam`` (its fixed point is ``w - lam``), so it adds
      roughly ``lam sqrt(r)`` to the relative error.
    * ``delta``: before its switch a column's step is multiplied by the boost
      ``beta = (d (m + K))^{(l-2)/2}``; one boosted step can therefore carry a column
      from the threshold ``2 sqrt(m + K) delta`` to ``(1 + eta l beta ||T*||)`` times it.
      ``delta`` is chosen so that even this overshoot leaves a component of weight at
      most ``1e-4 ||T*||`` after the switch:
      ``delta = 1e-2 sqrt(||T*||) / (2 sqrt(m + K) (1 + eta l beta ||T*||))``, capped at
      ``1e-3 sqrt(||T*||)``.
      This is what keeps l = 4 stable where a fixed delta and a step that works at
      l = 3 diverge.

    The sweep behind these numbers is ``scripts/default_rule_sweep.py``; its
    results are in ``results/default_rule_sweep.json`` and ``.md``: 10/10 seeds
    below 0.05 for every l in {3, 4}, d in {10, 50, 200}, r in {2, 5, 8}, m = 3r; a
    fixed delta = 1e-3 with eta = 0.05 diverges in 10/10 runs at l = 4 (m = 60).  Four
    times the default step also succeeded there: the default keeps that margin.

    The rule is scale-covariant: for ``c T*`` it gives ``eta / c``, ``c lam`` and
    ``sqrt(c) delta``, under which Algorithm 1 maps the run on ``T*`` exactly onto the
    run on ``c T*`` (the model is 2-homogeneous in ``U``).  :func:`algorithm1` uses
    this: it runs on ``T* / ||T*||`` with the rule at ``||T*|| = 1`` and scales back.
    """
    d = check_int("d", d, minimum=1)
    order = check_int("order", order, minimum=2)
    m = check_int("m", m, minimum=1)
    tn = check_float("target_norm", target_norm, positive=True)
    K = check_int("epochs", epochs, minimum=1, allow_none=True)
    H = check_int("iters", iters, minimum=1, allow_none=True)
    if K is None:
        K = 40
    if H is None:
        H = 300
    if eta is None:
        eta = 0.25 / (order**2 * tn)
    eta = check_float("eta", eta, positive=True)
    if lam is None:
        lam = 2e-3 * tn
    lam = check_float("lam", lam, nonnegative=True)
    M = m + K
    boost = (d * M) ** ((order - 2) / 2)
    if delta is None:
        delta = min(1e-3, 1e-2 / (2 * math.sqrt(M) * (1 + eta * order * boost * tn))) * math.sqrt(tn)
    delta = check_float("delta", delta, positive=True)
    return Params(d=d, order=order, m=m, epochs=K, iters=H, delta=delta, eta=eta, lam=lam, target_norm=tn,
                  switch_factor=math.sqrt(d * M), switch_threshold=2 * math.sqrt(M) * delta)


@dataclass
class Result:
    """Outcome of one Algorithm 1 run.

    Attributes
    ----------
    model : SymCP
        ``sum_i a_i c_i^{l-2} u_i^{(x) l}`` (NumPy arrays unless ``return_numpy=False``).
    history : dict
        Per-epoch lists: ``epoch``, ``rel_error``, ``objective``, ``regularizer``,
        ``n_switches``, ``reinit_index``, ``f_before_reinit``, ``f_after_reinit``,
        ``pb_norm2`` (``||P_B U||_F^2``, when the target's subspace is known), ``elapsed``;
        ``iterations``: per-iteration records at the requested stride (``objective``,
        ``fit`` and ``rel_error`` before the step; ``step_change`` = ``||T_t - T_{t-1}||_F``,
        ``n_switches`` made by the step; ``fresh_index``, ``fresh_norm``, ``fresh_ps_norm``
        of the latest re-initialised column); ``polish``: records of the optional
        final polish (``polish_failed`` is set when its refit broke down and the
        pre-polish state was kept).  The run works on ``T* / ||T*||``; errors are
        relative, and the absolute values (``objective``, ``regularizer``, ``fit``,
        ``f_*_reinit``, ``step_change``, ``pb_norm2``) are scaled back to ``T*`` as
        given (``inf`` only where such a value is itself beyond the floating range).
    params : Params
        The parameter values used, for the target as given (``target_norm`` is its
        norm).  The run itself works on ``T* / ||T*||`` (see :func:`algorithm1`).
    state : dict
        Final raw state (``U``, ``a``, ``c``, ``chat``, ``switched``) as NumPy arrays,
        for the target as given.
    interrupted : bool
        True when the run was stopped by Ctrl-C (the result is partial).
    """

    model: SymCP
    history: dict
    params: Params
    state: dict
    interrupted: bool = False
    seed: object = None

    @property
    def rel_error(self):
        """Relative error of the final model (last recorded value)."""
        if self.history.get("polish"):
            return self.history["polish"][-1]["rel_error"]
        return self.history["rel_error"][-1] if self.history["rel_error"] else float("nan")


@dataclass
class BatchResult:
    """Outcome of B trials run together: ``results[b]`` is a :class:`Result`.

    ``params`` holds the parameters every trial ran with on its normalised target
    ``T*_b / ||T*_b||`` (``target_norm = 1``), or None when the trials needed
    different ones (explicit ``eta``, ``lam`` or ``delta`` with targets of
    different norms); ``results[b].params`` are trial b's values at its own scale.
    """

    results: list
    params: Params
    elapsed: float
    interrupted: bool = False
    diverged: list = field(default_factory=list)

    @property
    def rel_errors(self):
        return np.array([r.rel_error for r in self.results])



def estimate_memory(d, m, *, r=None, order=3, batch=1, dtype=np.float64, dense=False, record=False):
    """Bytes an Algorithm 1 run of ``batch`` trials allocates at its peak (an upper estimate).

    Per trial, in the run's dtype: the state ``U`` (d x m) and the step's new ``U'``
    and its plan (together 4 d x m arrays), the Gram matrices ``G``, ``G'`` and the
    m x m step matrices (4 m x m), the target products ``V^T U`` and ``Q``
    (2 r x m); the initialisation draws in float64 (2 d x m); with ``record``, the
    per-iteration change ``[U', U]`` (2 d x m) and its Gram matrix (4 m x m times 2).
    A dense target adds its ``d^order`` entries, ``T(., u, ..., u)`` (d x m) and the
    64 MiB contraction block.

    Parameters
    ----------
    d, m : int
        Dimension and number of components.
    r : int, optional
        Number of target components (SymCP target); ignored when ``dense``.
    order : int
    batch : int
        Number of trials run together.
    dtype : float64 or float32
    dense : bool
        Dense target of shape ``(d,)*order``.
    record : bool
        Per-iteration records (``record_every``).
    """
    it = np.dtype(dtype).itemsize
    r = 0 if (dense or r is None) else int(r)
    per = 4 * d * m + 4 * m * m + 2 * r * m + d * r
    if record:
        per += 2 * d * m + 8 * m * m
    total = batch * (it * per + 8 * 2 * d * m)
    if dense:
        total += it * d**order + batch * it * d * m + 64 * 2**20
    return int(total)


def _check_run_memory(what, p, targets, batch, dt, rec, max_bytes):
    t = targets[0]
    dense = not isinstance(t, SymCP)
    need = estimate_memory(p.d, p.m, r=None if dense else t.m, order=p.order, batch=batch, dtype=dt, dense=dense,
                           record=rec is not None)
    check_memory(what, need, max_bytes=max_bytes,
                 detail=f"d={p.d}, m={p.m}, batch={batch}, {np.dtype(dt)}: U is d x m, the Gram matrix m x m")


def _empty_history():
    keys = ("epoch", "rel_error", "objective", "regularizer", "n_switches", "reinit_index", "f_before_reinit",
            "f_after_reinit", "pb_norm2", "elapsed", "iterations", "polish")
    return {k: [] for k in keys}


