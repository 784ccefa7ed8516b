"""Gradient dynamics on tdcore's objectives: vanilla GD, 2-homogeneous GD, the deflation flow.

Every gradient here comes from :mod:`tdcore._objective` (the Gram-matrix kernels):

* :func:`vanilla_gd` -- plain gradient descent on objective (2),
  ``1/2 ||sum_i c_i u_i^{(x) l} - T*||^2``, batched over trials, with optional
  trained weights, a first-hit step, a stop at a target error and wall-clock
  records (``history["time"]``, ``GDResult.time_to``) for time-to-accuracy;
* :func:`homogeneous_gd` -- the 2-homogeneous parametrisation of Section 4 of
  Wang, Wu, Lee, Ma & Ge (2020) with ``c_i = 1/||u_i||``, no boost and no
  re-initialisation (Algorithm 1's update, one epoch);
* :func:`deflation_flow` -- gradient flow (small-step GD) on the 2-homogeneous
  model ``sum_i a_i ||u_i||^{2-l} u_i^{(x) l}`` from a tiny start (Ge, Ren, Wang &
  Zhou, 2021), recording how much of each component of an orthogonal target is
  fitted, ``phi_k(t) = <T(t), v_k^{(x) l}> / a_k``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from ._algorithm1 import DivergenceError
from ._objective import FactoredTarget, fit_objective, fit_terms, make_target_operator, objective
from ._stats import time_to_accuracy
from ._tensor import SymCP, check_target
from ._validate import as_rng, check_choice, check_float, check_int, check_seed, check_seeds
from ._util import target_info as _target_info, unit_columns as _unit_columns

__all__ = ["vanilla_gd", "homogeneous_gd", "GDResult", "deflation_flow", "DeflationResult"]


@dataclass
class GDResult:
    """Outcome of :func:`vanilla_gd` or :func:`homogeneous_gd`.

    For a single run (``seed=`` or a 2-D ``init``) arrays carry no batch axis;
    for a batch (``seeds=`` or a 3-D ``init``) the first axis indexes trials.

    Attributes
    ----------
    model : SymCP or list of SymCP
        Final model(s) ``sum_i c_i u_i^{(x) l}``.
    U, c : ndarray
        Final factors ``(d, m)`` / ``(B, d, m)`` and weights ``(m,)`` / ``(B, m)``
        (for :func:`homogeneous_gd`, ``c`` holds the effective weights ``a_i ||u_i||^{2-l}``).
    U0, c0 : ndarray
        The initial factors and weights.
    history : dict
        ``step`` (recorded step counts, 0 = initial point), ``rel_error`` and
        ``objective`` (one value per recorded step; per trial for a batch), and
        ``time`` (wall-clock seconds since the start of the run at each recorded
        step, shared by all trials of a batch).
    hit_step : int or ndarray
        First step count at which the relative error was below ``hit_threshold``
        (-1 if never, or if no threshold was given).
    diverged_at : int or ndarray
        Step at which divergence was detected (-1 if none); the trial kept its last finite state.
    grad_norm : float or ndarray
        Norm of the final gradient (in ``U`` and, if trained, ``c``).
    params : dict
        ``eta``, ``steps`` (requested), ``steps_run``, ``train_weights``, ``init_scale``, ``order``, ``d``, ``m``.
    elapsed : float
        Wall-clock seconds of the whole run (set-up included; the whole batch).
    """

    model: object
    U: np.ndarray
    c: np.ndarray
    U0: np.ndarray
    c0: np.ndarray
    history: dict
    hit_step: object
    diverged_at: object
    grad_norm: object
    params: dict
    elapsed: float = math.nan

    @property
    def rel_error(self):
        """Final relative error (float, or array over trials)."""
        r = np.asarray(self.history["rel_error"])
        return float(r[-1]) if r.ndim == 1 else r[:, -1].copy()

    @property
    def objective(self):
        o = np.asarray(self.history["objective"])
        return float(o[-1]) if o.ndim == 1 else o[:, -1].copy()

    @property
    def hit_time(self):
        """``hit_step * eta`` (NaN where the threshold was never reached)."""
        h = np.asarray(self.hit_step, dtype=float)
        t = np.where(h >= 0, h * self.params["eta"], np.nan)
        return float(t) if t.ndim == 0 else t

    def time_to(self, eps):
        """Wall-clock seconds until the relative error was first recorded at or below ``eps``.

        :func:`tdcore.time_to_accuracy` on ``history["time"]`` and
        ``history["rel_error"]``: NaN if never; an array over trials for a batch
        (batch wall time).  With ``hit_threshold=eps, stop_when_hit=True`` the
        last record is the step that reached the threshold.
        """
        times = self.history["time"]
        err = np.asarray(self.history["rel_error"])
        if err.ndim == 1:
            return time_to_accuracy(times, err, eps)
        return np.array([time_to_accuracy(times, e, eps) for e in err])


def _stack_targets(target, B):
    """A batch-aware operator and per-trial ||T*||^2 for one shared target or B SymCP targets."""
    if isinstance(target, (list, tuple)):
        if len(target) != B:
            raise ValueError(f"got {len(target)} targets for {B} trials; give one target or one per trial")
        targets = [check_target(t) for t in target]
        if not all(isinstance(t, SymCP) for t in targets):
            raise TypeError("a batch of different targets must all be tdcore.SymCP")
        shapes = {(t.d, t.m, t.order) for t in targets}
        if len(shapes) != 1:
            raise ValueError(f"all targets of a batch must have the same (d, r, order), got {sorted(shapes)}")
        V = np.stack([np.asarray(t.to_numpy().factors, float) for t in targets])
        w = np.stack([np.asarray(t.to_numpy().weights, float) for t in targets])
        op = FactoredTarget(V, w, targets[0].order)
        return op, np.asarray(op.norm2, float), targets[0].d, targets[0].order
    target = check_target(target)
    op = make_target_operator(target, "numpy", np.float64)
    d, order, n2 = _target_info(target)
    return op, np.full(B, n2), d, order


def _weights_mode(weights, train_weights):
    if isinstance(weights, str):
        check_choice("weights", weights, ("sign", "train", "ones"))
        train = (weights == "train") if train_weights is None else bool(train_weights)
        return weights, train
    return "array", bool(train_weights) if train_weights is not None else False


def vanilla_gd(target, m, *, steps, eta, init_scale=None, seed=None, seeds=None, weights="sign",
               train_weights=None, init=None, record_every=None, hit_threshold=None, stop_when_hit=False,
               divergence="raise", blowup=1e6, weight_scale=1.0):
    """Plain gradient descent on objective (2), ``1/2 ||sum_i c_i u_i^{(x) l} - T*||^2``.

    Parameters
    ----------
    target : SymCP, dense array, or list of B SymCP (one per trial)
    m : int
        Number of components.
    steps : int
        Number of gradient steps.
    eta : float
        Step size.
    init_scale : float, optional
        Norm of each initial ``u_i`` (random directions); default 1.  Not allowed with ``init``.
    seed : int, optional
        A single run.
    seeds : sequence of int, optional
        A batch: trial ``b`` uses ``seeds[b]`` (same result as ``seed=seeds[b]``).
    weights : {"sign", "train", "ones"} or array
        ``"sign"``: fixed random weights ``+-1``; ``"ones"``: fixed weights 1;
        ``"train"``: random ``+-1`` initial weights, trained with ``U``; an array
        of shape ``(m,)`` or ``(B, m)``: those initial weights (fixed unless
        ``train_weights``).
    train_weights : bool, optional
        Override whether the weights are trained.
    init : array (d, m) or (B, d, m), optional
        Initial factors (then ``seed`` only drives random weights, if any).
    record_every : int, optional
        Record the error every this many steps (default ``max(1, steps // 200)``);
        the initial and the final point are always recorded.
    hit_threshold : float, optional
        Record the first step at which the relative error drops below it.
    stop_when_hit : bool
        Stop once every (non-diverged) trial has hit ``hit_threshold``.
    divergence : {"raise", "mark"}
        On a non-finite objective or one above ``blowup`` times its reference
        (``max(f(0), ||T*||^2 / 2)``): raise :class:`tdcore.DivergenceError`
        (carrying the last finite state) in the step it happens, or mark the
        trial (``diverged_at``), keep its last finite state and stop updating it.
    blowup : float
        Growth factor of the objective that counts as divergence.
    weight_scale : float
        Magnitude of the random initial weights of ``weights="sign"`` or
        ``"train"``: ``c_i = +-weight_scale`` (default 1).  For instance
        ``init_scale**(-l) / sqrt(m)`` gives an initial model of norm about 1.

    Returns
    -------
    GDResult
        ``history["time"]`` and ``elapsed`` hold wall-clock times;
        ``GDResult.time_to`` gives the time to an accuracy.

    Examples
    --------
    >>> import tdcore
    >>> T = tdcore.random_target(6, 2, 3, seed=0)
    >>> res = vanilla_gd(T, 6, steps=3000, eta=0.05, seed=0, weights="train", hit_threshold=0.02,
    ...                  stop_when_hit=True, divergence="mark", record_every=10)
    >>> bool(res.rel_error < 0.02), res.params["steps_run"] == res.hit_step, res.time_to(0.02) <= res.elapsed
    (True, True, True)
    """
    t_start = time.perf_counter()
    steps = check_int("steps", steps, minimum=0)
    eta = check_float("eta", eta, positive=True)
    m = check_int("m", m, minimum=1)
    check_choice("divergence", divergence, ("raise", "mark"))
    blowup = check_float("blowup", blowup, positive=True)
    hit_threshold = check_float("hit_threshold", hit_threshold, positive=True, allow_none=True)
    rec = check_int("record_every", record_every, minimum=1, allow_none=True) or max(1, steps // 200)
    mode, train = _weights_mode(weights, train_weights)
    weight_scale = check_float("weight_scale", weight_scale, positive=True)
    if mode not in ("sign", "train") and weight_scale != 1.0:
        raise ValueError(f"weight_scale applies to the random weights of weights='sign' or 'train', "
                         f"got weights={weights!r} with weight_scale={weight_scale:g}")
    if seed is not None and seeds is not None:
        raise ValueError("give either seed (one run) or seeds (a batch), not both")
    # batch layout
    batched = seeds is not None or (init is not None and np.ndim(init) == 3) or isinstance(target, (list, tuple))
    if seeds is not None:
        seed_list = check_seeds(seeds)
    elif init is not None and np.ndim(init) == 3:
        seed_list = [seed] * int(np.shape(init)[0])
    elif isinstance(target, (list, tuple)):
        seed_list = [seed] * len(target)
    else:
        seed_list = [check_seed(seed)]
    B = len(seed_list)
    op, n2, d, order = _stack_targets(target, B)
    rngs = [as_rng(s) if not isinstance(s, np.random.Generator) else s for s in seed_list]
    # initial factors
    if init is not None:
        if init_scale is not None:
            raise ValueError("give either init (explicit factors) or init_scale, not both")
        U0 = np.asarray(init, dtype=float)
        if U0.ndim == 2:
            U0 = np.broadcast_to(U0, (B,) + U0.shape).copy()
        if U0.shape != (B, d, m):
            raise ValueError(f"init must have shape (d, m) = ({d}, {m}) or (B, d, m) = ({B}, {d}, {m}), "
                             f"got {np.shape(init)}")
        if not np.all(np.isfinite(U0)):
            raise ValueError("init contains NaN or infinite entries")
    else:
        scale = 1.0 if init_scale is None else check_float("init_scale", init_scale, positive=True)
        U0 = np.stack([scale * _unit_columns(r, d, m) for r in rngs])
    # initial weights
    if mode in ("sign", "train"):
        c0 = np.stack([r.choice([-1.0, 1.0], size=m) for r in rngs])
        if weight_scale != 1.0:
            c0 = c0 * weight_scale
    elif mode == "ones":
        c0 = np.ones((B, m))
    else:
        c0 = np.asarray(weights, dtype=float)
        if c0.shape == (m,):
            c0 = np.broadcast_to(c0, (B, m)).copy()
        if c0.shape != (B, m):
            raise ValueError(f"weights must be 'sign', 'train', 'ones' or an array of shape ({m},) or ({B}, {m}), "
                             f"got shape {np.shape(weights)}")
        if not np.all(np.isfinite(c0)):
            raise ValueError("weights contains NaN or infinite entries")

    def evaluate(U, c):
        f, gU, gc, _ = fit_terms(U, c, op, need_grad_s=True)  # shapes of U0 and c0 checked above
        return np.asarray(f, float).reshape(B), gU, gc

    U, c = U0.copy(), c0.copy()
    f, gU, gc = evaluate(U, c)
    f_ref = np.maximum(f, 0.5 * n2)
    active = np.ones(B, dtype=bool)
    hit = np.full(B, -1, dtype=int)
    div = np.full(B, -1, dtype=int)
    hist = {"step": [], "rel_error": [], "objective": [], "time": []}

    def record(t):
        hist["time"].append(time.perf_counter() - t_start)
        hist["step"].append(t)
        hist["rel_error"].append(np.sqrt(np.maximum(2 * f, 0) / n2))
        hist["objective"].append(f.copy())

    def update_hits(t):
        if hit_threshold is not None:
            rel = np.sqrt(np.maximum(2 * f, 0) / n2)
            new = (hit < 0) & active & (rel < hit_threshold)
            hit[new] = t

    record(0)
    update_hits(0)
    t = 0
    for t in range(1, steps + 1):
        if active.all():  # the common case: no masking (same values: x * 1.0 == x)
            U2 = U - eta * gU
            c2 = c - eta * gc if train else c
        else:
            U2 = U - eta * gU * active[:, None, None]
            c2 = c - eta * gc * active[:, None] if train else c
        f2, gU2, gc2 = evaluate(U2, c2)
        bad = active & ~(np.isfinite(f2) & (f2 <= blowup * f_ref))
        if bad.any():
            if divergence == "raise":
                b = int(np.flatnonzero(bad)[0])
                raise DivergenceError(
                    f"vanilla GD diverged at step {t} (trial {b}): the objective became {f2[b]:.3g} "
                    f"(reference {f_ref[b]:.3g}) with eta={eta:g}. Try eta={eta / 4:g} or a smaller init.",
                    epoch=1, iteration=t, state={"U": U[b].copy(), "c": c[b].copy()}, suggested_eta=eta / 4)
            U2[bad], f2[bad], gU2[bad] = U[bad], f[bad], 0.0
            if train:
                c2 = c2.copy()
                c2[bad], gc2[bad] = c[bad], 0.0
            div[bad] = t
            active &= ~bad
        U, c, f, gU, gc = U2, c2, f2, gU2, gc2
        update_hits(t)
        if t % rec == 0 or t == steps:
            record(t)
        if stop_when_hit and hit_threshold is not None and np.all((hit >= 0) | ~active):
            if hist["step"][-1] != t:
                record(t)
            break
    gnorm2 = np.sum(gU * gU, axis=(-1, -2)) * active
    if train:
        gnorm2 = gnorm2 + np.sum(gc * gc, axis=-1) * active
    history = {"step": np.array(hist["step"]), "rel_error": np.stack(hist["rel_error"], axis=-1),
               "objective": np.stack(hist["objective"], axis=-1), "time": np.array(hist["time"])}
    params = {"eta": eta, "steps": steps, "steps_run": t, "train_weights": train, "init_scale": init_scale,
              "order": order, "d": d, "m": m, "weights": mode, "weight_scale": weight_scale}
    models = [SymCP(c[b], U[b], order) for b in range(B)]
    elapsed = time.perf_counter() - t_start
    if batched:
        return GDResult(models, U, c, U0, c0, history, hit, div, np.sqrt(gnorm2), params, elapsed)
    history = {"step": history["step"], "rel_error": history["rel_error"][0], "objective": history["objective"][0],
               "time": history["time"]}
    return GDResult(models[0], U[0], c[0], U0[0], c0[0], history, int(hit[0]), int(div[0]),
                    float(np.sqrt(gnorm2[0])), params, elapsed)


def homogeneous_gd(target, U0, a, *, steps, eta, lam=0.0, record_every=None, hit_threshold=None,
                   stop_when_hit=False):
    """Gradient descent on the 2-homogeneous model of Section 4, without boost or re-initialisation.

    Model ``sum_i a_i c_i^{l-2} u_i^{(x) l}`` with ``c_i = chat_i = 1/||u_i||``; each
    step is Algorithm 1's update: ``U <- U - eta grad_U f(U, C, Chat, A)`` with ``C``
    and ``Chat`` held fixed (``tdcore.objective``), then ``c_i, chat_i`` rescaled by
    ``||u_i|| / ||u_i'||`` (so they stay ``1/||u_i||``).  This is
    ``tdcore.algorithm1(..., reinit=False, mode_switch=False)`` for one epoch, from
    a given initial state.

    Parameters
    ----------
    target : SymCP or dense array
    U0 : array (d, m) or (B, d, m)
        Initial components (non-zero columns).
    a : array (m,) or (B, m)
        Signs ``a_i`` in {-1, +1}.
    steps : int
    eta : float
    lam : float
        Regularisation strength (0: pure fit).
    record_every, hit_threshold, stop_when_hit
        As :func:`vanilla_gd`.

    Returns
    -------
    GDResult
        ``c`` holds the effective weights ``a_i ||u_i||^{2-l}``.
    """
    t_start = time.perf_counter()
    target = check_target(target)
    steps = check_int("steps", steps, minimum=0)
    eta = check_float("eta", eta, positive=True)
    lam = check_float("lam", lam, nonnegative=True)
    hit_threshold = check_float("hit_threshold", hit_threshold, positive=True, allow_none=True)
    rec = check_int("record_every", record_every, minimum=1, allow_none=True) or max(1, steps // 200)
    d, order, n2 = _target_info(target)
    U0 = np.asarray(U0, dtype=float)
    batched = U0.ndim == 3
    if U0.ndim == 2:
        U0 = U0[None]
    if U0.ndim != 3 or U0.shape[1] != d:
        raise ValueError(f"U0 must have shape (d, m) or (B, d, m) with d={d}, got {np.shape(U0)}")
    B, _, m = U0.shape
    if not np.all(np.isfinite(U0)):
        raise ValueError("U0 contains NaN or infinite entries")
    if np.any(np.linalg.norm(U0, axis=1) == 0):
        raise ValueError("U0 has a zero column; the 2-homogeneous model needs u_i != 0")
    a = np.asarray(a, dtype=float)
    if a.shape == (m,):
        a = np.broadcast_to(a, (B, m)).copy()
    if a.shape != (B, m) or not np.all(np.isin(a, (-1.0, 1.0))):
        raise ValueError(f"a must hold signs in {{-1, +1}} with shape ({m},) or ({B}, {m}), got {np.shape(a)}")
    op = make_target_operator(target, "numpy", np.float64)
    U = U0.copy()
    C = 1.0 / np.linalg.norm(U, axis=1)
    hist = {"step": [], "rel_error": [], "objective": [], "time": []}
    hit = np.full(B, -1, dtype=int)

    def fit_rel(U, C):
        f = np.asarray(fit_objective(U, a * C ** (order - 2), op), float).reshape(B)
        return f, np.sqrt(np.maximum(2 * f, 0) / n2)

    def record(t, f, rel):
        hist["time"].append(time.perf_counter() - t_start)
        hist["step"].append(t)
        hist["rel_error"].append(rel)
        hist["objective"].append(f)

    f, rel = fit_rel(U, C)
    record(0, f, rel)
    if hit_threshold is not None:
        hit[rel < hit_threshold] = 0
    t = 0
    gU = np.zeros_like(U)
    for t in range(1, steps + 1):
        _, gU = objective(U, C, C, a, op, lam, grad=True)
        U2 = U - eta * gU
        n_old, n_new = np.linalg.norm(U, axis=1), np.linalg.norm(U2, axis=1)
        C = C * n_old / n_new
        U = U2
        f, rel = fit_rel(U, C)
        if not np.all(np.isfinite(f)):
            raise DivergenceError(f"homogeneous GD diverged at step {t} with eta={eta:g}", epoch=1, iteration=t,
                                  state={}, suggested_eta=eta / 4)
        if hit_threshold is not None:
            hit[(hit < 0) & (rel < hit_threshold)] = t
        if t % rec == 0 or t == steps:
            record(t, f, rel)
        if stop_when_hit and hit_threshold is not None and np.all(hit >= 0):
            if hist["step"][-1] != t:
                record(t, f, rel)
            break
    w = a * C ** (order - 2)
    history = {"step": np.array(hist["step"]), "rel_error": np.stack(hist["rel_error"], axis=-1),
               "objective": np.stack(hist["objective"], axis=-1), "time": np.array(hist["time"])}
    params = {"eta": eta, "steps": steps, "steps_run": t, "lam": lam, "order": order, "d": d, "m": m}
    gnorm = np.sqrt(np.sum(gU * gU, axis=(-1, -2)))
    models = [SymCP(w[b], U[b], order) for b in range(B)]
    c0 = a * (1.0 / np.linalg.norm(U0, axis=1)) ** (order - 2)
    div = np.full(B, -1, dtype=int)
    elapsed = time.perf_counter() - t_start
    if batched:
        return GDResult(models, U, w, U0, c0, history, hit, div, gnorm, params, elapsed)
    history = {"step": history["step"], "rel_error": history["rel_error"][0], "objective": history["objective"][0],
               "time": history["time"]}
    return GDResult(models[0], U[0], w[0], U0[0], c0[0], history, int(hit[0]), -1, float(gnorm[0]), params,
                    elapsed)




# ---------------------------------------------------------------------------
# the deflation flow (Ge, Ren, Wang & Zhou, 2021)
# ---------------------------------------------------------------------------
@dataclass
class DeflationResult:
    """Trajectories of :func:`deflation_flow`.

    Attributes
    ----------
    t : ndarray, shape (n,)
        Recorded flow times (``eta x step``).
    fitted : ndarray, shape (n, B, r)
        Fitted fraction ``phi_k = <T(t), v_k^{(x) l}> / a_k`` of each true component, per trial.
    rel_error : ndarray, shape (n, B)
        ``||T(t) - T*||_F / ||T*||_F``.
    weights : ndarray, shape (r,)
        The target's weights ``a_k`` (the components' order in ``fitted``).
    params : dict
        ``d, order, r, m, delta, eta, t_max, steps, seeds, signs, record_every``.
    U : ndarray, shape (B, d, m)
        Final factors.
    elapsed : float
        Wall-clock seconds.
    extra : dict
        Free-form additions (empty by default).
    """

    t: np.ndarray
    fitted: np.ndarray
    rel_error: np.ndarray
    weights: np.ndarray
    params: dict
    U: np.ndarray
    elapsed: float = 0.0
    extra: dict = field(default_factory=dict)


def _homogeneous_weights(U, signs, order):
    """``s_i = a_i ||u_i||^{2-l}`` and the column norms ``||u_i||``."""
    nrm = np.sqrt(np.sum(U * U, axis=-2))
    return signs * nrm ** (2 - order), nrm


def _homogeneous_fit_grad(U, signs, tgt):
    """Fit ``1/2 ||sum_i a_i ||u_i||^{2-l} u_i^{(x) l} - T*||^2`` and its gradient in ``U``.

    The weights ``s_i = a_i ||u_i||^{2-l}`` depend on ``U`` (unlike Algorithm 1,
    where ``c_i`` is held fixed during a step), so by the chain rule the gradient
    is ``tdcore._objective``'s gradient with ``s`` fixed plus
    ``(2 - l) a_i ||u_i||^{-l} u_i`` times its gradient in ``s_i``.

    Returns ``(fit, grad_U, s)`` with the batch shapes of ``U`` (B, d, m).
    """
    l = tgt.order
    s, nrm = _homogeneous_weights(U, signs, l)
    f, gU, gs, _ = fit_terms(U, s, tgt, need_grad_s=True)
    gU += (gs * signs * (2 - l) * nrm ** (-l))[..., None, :] * U
    return f, gU, s


def _predicted_fit_time(a, delta, order, d, m):
    """Rough flow time at which a component of weight ``a`` is half fitted (see ``tdcore.book.deflation``).

    Growth ``log(a / delta^2) / (4a)`` plus, for ``l >= 3``, the turning time
    ``1 / (2 l a cos^{l-2})`` from the best of ``m`` random directions
    (``cos^2 ~ 2 log(m) / d``); for ``l = 2`` ``log(a d / (m delta^2)) / (4a)``.
    Used for the default ``t_max`` of :func:`deflation_flow`.
    """
    if order == 2:
        return max(math.log(a * d / (m * delta**2)), 0.0) / (4.0 * a)
    growth = max(math.log(a / delta**2), 0.0) / (4.0 * a)
    cos2 = min(1.0, 2.0 * math.log(max(m, 2)) / d)
    align = 1.0 / (2.0 * order * a * cos2 ** ((order - 2) / 2))
    return growth + align


def deflation_flow(target, m, *, delta=1e-3, eta=0.01, t_max=None, seeds=(0,), signs="positive",
                   record_every=None, stop_level=0.98):
    """Gradient flow (small-step GD) on the 2-homogeneous model from a small start.

    Minimises ``1/2 ||sum_i a_i ||u_i||^{2-l} u_i^{(x) l} - T*||_F^2`` over ``U``
    (the weights ``||u_i||^{2-l}`` are not held fixed: plain gradient flow on a
    function of ``U`` alone) with a fixed small step, ``B = len(seeds)`` trials
    at once, from ``u_i(0)`` uniform on the sphere of radius ``delta``.  Flow time
    is ``t = eta x steps``.  For ``l = 2`` this is gradient descent on
    ``1/2 ||U U^T - M||_F^2``.

    Parameters
    ----------
    target : SymCP
        Target with orthonormal components (``V^T V = I``); the fitted fractions
        are measured along its factors.
    m : int
        Number of model components.
    delta : float
        Initial norm of every ``u_i`` (uniform direction on the sphere).
    eta : float
        Step size; the flow time of one step.  Must be small compared with
        ``1 / (l^2 max_k a_k)`` for the steps to follow the flow.
    t_max : float, optional
        Flow time to run; by default twice the predicted fit time of the
        smallest weight (``tdcore.book.deflation.predicted_fit_time``), at least 1.
    seeds : sequence of int
        One trial per seed.
    signs : {"positive", "random"}
        ``a_i = +1`` for all components (enough for positive weights) or random.
    record_every : int, optional
        Steps between records (default: about 400 records over ``t_max``).
    stop_level : float or None
        Stop early once every component of every trial has ``phi_k >= stop_level``
        (``None``: always run to ``t_max``).

    Returns
    -------
    DeflationResult

    Raises
    ------
    FloatingPointError
        When the objective becomes non-finite or exceeds ``1e6 ||T*||^2`` (step too large).

    Examples
    --------
    >>> import numpy as np, tdcore
    >>> T = tdcore.SymCP([1.0, 0.5], np.eye(5)[:, :2], 3)
    >>> res = deflation_flow(T, 10, delta=1e-3, eta=0.02, seeds=[0])
    >>> bool(np.all(res.fitted[-1] >= 0.98)), res.fitted.shape[1:]
    (True, (1, 2))
    """
    if not isinstance(target, SymCP):
        raise TypeError("target must be a tdcore.SymCP with orthonormal components "
                        "(see tdcore.book.deflation.orthogonal_target)")
    V = np.asarray(target.to_numpy().factors, dtype=np.float64)
    a = np.asarray(target.to_numpy().weights, dtype=np.float64)
    if not np.allclose(V.T @ V, np.eye(V.shape[1]), atol=1e-8):
        raise ValueError("target must have orthonormal components (factors with V^T V = I); "
                         "use tdcore.book.deflation.orthogonal_target")
    l, d, r = target.order, target.d, target.m
    m = check_int("m", m, minimum=1)
    delta = check_float("delta", delta, positive=True)
    eta = check_float("eta", eta, positive=True)
    signs = check_choice("signs", signs, ("positive", "random"))
    seeds = check_seeds(seeds)
    stop_level = check_float("stop_level", stop_level, positive=True, allow_none=True)
    if t_max is None:
        amin = float(np.min(np.abs(a)))
        t_max = max(1.0, 2.0 * _predicted_fit_time(amin, delta, l, d, m))
    t_max = check_float("t_max", t_max, positive=True)
    steps = max(1, int(math.ceil(t_max / eta)))
    if record_every is None:
        record_every = max(1, steps // 400)
    record_every = check_int("record_every", record_every, minimum=1)

    B = len(seeds)
    U = np.empty((B, d, m))
    sg = np.ones((B, m))
    for b, s in enumerate(seeds):
        rng = as_rng(s)
        X = rng.standard_normal((d, m))
        U[b] = delta * X / np.linalg.norm(X, axis=0, keepdims=True)
        if signs == "random":
            sg[b] = rng.choice([-1.0, 1.0], size=m)
    tgt = FactoredTarget(V[None], a[None], l)
    tn2 = float(a @ ((V.T @ V) ** l) @ a)

    ts, fits, errs = [], [], []
    t0 = time.perf_counter()
    step = 0
    for step in range(steps + 1):
        fit, grad, s = _homogeneous_fit_grad(U, sg, tgt)
        if step % record_every == 0 or step == steps:
            A = np.einsum("dr,bdm->brm", V, U)  # (B, r, m): v_k . u_i
            phi = np.sum(s[:, None, :] * A**l, axis=-1) / a  # (B, r)
            ts.append(step * eta)
            fits.append(phi)
            errs.append(np.sqrt(np.maximum(2 * fit, 0) / tn2))
            if not np.all(np.isfinite(fit)) or np.any(fit > 1e6 * tn2):
                raise FloatingPointError(f"deflation_flow diverged at t={step * eta:g}; use a smaller eta "
                                         f"(got eta={eta:g})")
            if stop_level is not None and np.all(phi >= stop_level):
                break
        if step == steps:
            break
        U = U - eta * grad
    return DeflationResult(
        t=np.asarray(ts), fitted=np.asarray(fits), rel_error=np.asarray(errs), weights=a.copy(),
        params={"d": d, "order": l, "r": r, "m": m, "delta": delta, "eta": eta, "t_max": t_max,
                "steps": step, "seeds": list(seeds), "signs": signs, "record_every": record_every},
        U=U, elapsed=time.perf_counter() - t0)
