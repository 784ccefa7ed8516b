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
equals a single run with the same seed, on every backend.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import zipfile
import zlib
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from ._backend import get_backend, to_numpy, xp_of
from ._objective import FactoredTarget, _coldot, _ipow, _mT, fit_terms, make_target_operator
from ._tensor import SymCP, _scaled_symcp, check_target, norm, subspace_basis
from ._validate import (as_rng, atomic_write, check_bool, check_dtype, check_float, check_int, check_memory,
                        check_nonzero_target, check_path, check_seed, check_seeds)

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
      so this keeps every fitted component at a quarter of the stability limit.
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


def _unit_columns(rng, d, k):
    X = rng.standard_normal((d, k))
    return X / np.linalg.norm(X, axis=0, keepdims=True)


class _Run:
    """The batched state machine behind algorithm1 and algorithm1_batch."""

    def __init__(self, targets, p, rngs, be, dtype, *, basis=None, record_every=None, callback=None,
                 divergence="raise", blowup=1e4, check_every=None):
        self.p, self.rngs, self.be, self.xp, self.dtype = p, rngs, be, be.xp, dtype
        self.B = len(rngs)
        self.tgt = targets  # internal operator, batch-aware
        self.basis = basis  # (B, d, k) orthonormal bases of S, or None
        self.record_every, self.callback = record_every, callback
        self.divergence, self.blowup = divergence, blowup
        self.epoch = 0
        self._set_active(np.ones(self.B, dtype=bool))
        self.hist = [_empty_history() for _ in range(self.B)]
        self.fresh = np.zeros(self.B, dtype=int)  # latest re-initialised column per trial
        self.check_every = self.CHECK_EVERY if check_every is None else int(check_every)
        self._post = None  # the fused element-wise tail of a step (see _make_post)
        self._kernels = None  # fused kernels of evaluate on CuPy (see _make_fused)
        self._badk = None  # the divergence test (see _make_badk)
        self._thr = None  # divergence threshold per trial (device)
        self._epoch_start = None  # state after this epoch's re-initialisation
        self.stop_requested = False  # set from another thread: stop like Ctrl-C

    @property
    def fresh(self):
        """Latest re-initialised column per trial (NumPy; a device copy is kept as ``_fresh_dev``)."""
        return self._fresh_host

    @fresh.setter
    def fresh(self, value):
        self._fresh_host = np.asarray(value, dtype=int)
        self._fresh_dev = self.xp.asarray(self._fresh_host, dtype=self.xp.int64)

    # -- state ---------------------------------------------------------------------
    def init_state(self):
        p, xp, d, m = self.p, self.xp, self.p.d, self.p.m
        U = np.empty((self.B, d, m))
        a = np.empty((self.B, m))
        for b, rng in enumerate(self.rngs):
            U[b] = p.delta * _unit_columns(rng, d, m)
            a[b] = rng.choice([-1.0, 1.0], size=m)
        Ua = xp.asarray(np.concatenate([U, a[:, None, :]], axis=1), dtype=self.dtype)  # one upload
        self.U, self.a = xp.ascontiguousarray(Ua[:, :d, :]), xp.ascontiguousarray(Ua[:, d, :])
        nrm = xp.sqrt(xp.sum(self.U * self.U, axis=-2))
        self.c = self._c_init() / nrm
        self.chat = 1.0 / nrm
        self.switched = xp.zeros((self.B, m), dtype=bool)

    def _c_init(self):
        return self.p.switch_factor if self.p.mode_switch else 1.0

    def state_numpy(self, b=None, *, weights=False):
        """The state (``U``, ``a``, ``c``, ``chat``, ``switched``) as NumPy arrays, in one copy.

        The arrays are packed on the device into one ``(B, d + 4, m)`` block (five
        with ``weights=True``, which adds ``weights``: ``a c^{l-2}``) and read
        back at once.
        """
        xp, d = self.xp, self.p.d
        rows = [self.a, self.c, self.chat, self.switched.astype(self.U.dtype)]
        if weights:
            rows.append(self.weights())
        dt = np.result_type(self.U.dtype, *(r.dtype for r in rows))
        block = xp.concatenate([self.U.astype(dt, copy=False)] + [r.astype(dt, copy=False)[:, None, :] for r in rows],
                               axis=1)
        if b is not None:
            block = block[b:b + 1]
        host = to_numpy(block)
        names = ["a", "c", "chat", "switched"] + (["weights"] if weights else [])
        arrs = {"U": np.array(host[:, :d, :], dtype=self.U.dtype)}
        for i, k in enumerate(names):
            arrs[k] = np.array(host[:, d + i, :], dtype=bool if k == "switched" else self.U.dtype)
        if b is None:
            return arrs
        return {k: v[0] for k, v in arrs.items()}

    def load_state(self, st):
        xp = self.xp
        for k in ("U", "a", "c", "chat"):
            setattr(self, k, xp.asarray(st[k], dtype=self.dtype))
        self.switched = xp.asarray(st["switched"], dtype=bool)

    # -- pieces --------------------------------------------------------------------
    def weights(self, c=None):
        return self.a * (self.c if c is None else c) ** (self.p.order - 2)

    #: Form the step on the m side (m x m matrices) while m < M_SIDE_RATIO * d, else on the d side.
    M_SIDE_RATIO = 2.5

    def evaluate(self, U=None, c=None, chat=None, G=None, nrm=None):
        """(objective, fit, regularizer, step plan, column norms) at the given or current state.

        ``G``: the Gram matrix ``U^T U`` when the caller has it already, ``nrm``
        the column norms (the square root of its diagonal).

        The step plan holds what :meth:`step` needs to form ``U - eta grad_U f`` with
        as few passes over memory as the shapes allow.  With ``s = a c^{l-2}``,
        ``S = diag(s) G^{o(l-1)} diag(s)``, ``h_i = chat_i^{l-2} ||u_i||^{l-2}`` and
        the target term ``Q = eta l diag(w) (V^T U)^{o(l-1)} diag(s)`` (r x m; for a
        dense target ``Q = eta l R diag(s)``, d x m), the new factors are

        * m side (``m < M_SIDE_RATIO d``): ``U' = V Q - U M`` with the m x m matrix
          ``M = eta l (S + lam diag(h)) - I``: two matrix products and one pass
          over the d x m array; ``S`` costs two m x m passes;
        * d side (many more components than dimensions): ``U' = V Q + U diag(1 -
          eta l lam h) - (U diag(eta l s)) G^{o(l-1)} diag(s)``, where the scalings
          are d x m passes and ``G`` is powered once.

        The two agree to rounding.  Nothing in the plan is modified by :meth:`step`.
        """
        xp, p = self.xp, self.p
        U = self.U if U is None else U
        c = self.c if c is None else c
        chat = self.chat if chat is None else chat
        l, eta, lam = p.order, p.eta, p.lam
        if G is None:
            G = _mT(U) @ U
        B, d, m = U.shape
        if self._fused and m < self.M_SIDE_RATIO * d and isinstance(self.tgt, FactoredTarget):
            return self._evaluate_fused(U, c, chat, G, nrm)
        s = self.a * _ipow(c, l - 2)
        n2 = G.diagonal(axis1=-2, axis2=-1)
        if nrm is None:
            nrm = xp.sqrt(n2)
        h = _ipow(chat, l - 2) * _ipow(nrm, l - 2)  # chat^{l-2} ||u||^{l-2}
        reg = lam * (h * n2).sum(axis=-1)
        if m < self.M_SIDE_RATIO * d:
            # M = eta l S - I + eta l lam diag(h), in l passes over the m x m array
            k = (s * math.sqrt(eta * l))[..., :, None]
            M = _ipow(G, l - 1) if l > 2 else G.copy()
            M *= k
            M *= _mT(k)  # M_ij = eta l s_i s_j G_ij^{l-1}
            # s^T G^{o l} s = <S, G>, one batched dot product
            model2 = (M.reshape(B, 1, m * m) @ G.reshape(B, m * m, 1)).reshape(B)
            model2 *= 1.0 / (eta * l)
            h1 = h * (eta * l * lam)
            h1 -= 1.0
            M.reshape(B, m * m)[:, :: m + 1] += h1
            plan = ("m", M)
        else:
            Gp = G * G if l == 3 else (_ipow(G, l - 1) if l > 3 else G)
            UM = (U * (eta * l * s)[..., None, :]) @ Gp  # eta l U diag(s) G^{o(l-1)}
            model2 = (s * _coldot(U, UM)).sum(axis=-1) / (eta * l)
            UM *= s[..., None, :]
            plan = ("d", UM, 1.0 - (eta * l * lam) * h)
        tgt = self.tgt
        if isinstance(tgt, FactoredTarget):
            A = _mT(tgt.V) @ U  # (B, r, m)
            Q = _ipow(A, l - 1) if l > 2 else A.copy()
            Q *= tgt.w[..., :, None]
            Q *= (eta * l * s)[..., None, :]  # eta l diag(w) A^{o(l-1)} diag(s)
            # sum_i s_i T*(u_i, ..., u_i) = sum_{k,i} s_i w_k A_ki^l = <Q, A> / (eta l)
            r = A.shape[-2]
            cross = (Q.reshape(B, 1, r * m) @ A.reshape(B, r * m, 1)).reshape(B)
            cross *= 1.0 / (eta * l)
        else:
            Q = tgt.contract(U)  # R, (B, d, m)
            cross = (s * _coldot(U, Q)).sum(axis=-1)
            Q *= (eta * l * s)[..., None, :]
        fit = 0.5 * (model2 - 2.0 * cross + tgt.norm2)
        return fit + reg, fit, reg, plan + (Q,), nrm

    @property
    def _fused(self):
        """True on CuPy: the element-wise chains of a step run as fused kernels (see :func:`_make_fused`)."""
        return self.xp is not np and hasattr(self.xp, "fuse")

    def _evaluate_fused(self, U, c, chat, G, nrm):
        """:meth:`evaluate` (m side, factored target) with its element-wise chains fused: 11 kernels.

        The same operations in the same order as the NumPy code, grouped into
        ``cupy.fuse`` kernels: the (B, m) vectors, ``M``, ``Q`` and the final sums.
        """
        xp, p = self.xp, self.p
        key = (p.order, p.eta, p.lam)
        if self._kernels is None or self._kernels[0] != key:
            self._kernels = (key, _make_fused(xp, *key))
        vec, mform, qform, fin = self._kernels[1]
        B, d, m = U.shape
        n2 = G.diagonal(axis1=-2, axis2=-1)
        if nrm is None:
            nrm = xp.sqrt(n2)
        s, hn2, k, h1, es = vec(self.a, c, chat, nrm, n2)
        reg = p.lam * hn2.sum(axis=-1)
        M = mform(G, k[..., :, None], k[..., None, :])
        model2 = (M.reshape(B, 1, m * m) @ G.reshape(B, m * m, 1)).reshape(B)
        M.reshape(B, m * m)[:, :: m + 1] += h1
        tgt = self.tgt
        A = _mT(tgt.V) @ U  # (B, r, m)
        Q = qform(A, tgt.w[..., :, None], es[..., None, :])
        r = A.shape[-2]
        cross = (Q.reshape(B, 1, r * m) @ A.reshape(B, r * m, 1)).reshape(B)
        obj, fit = fin(model2, cross, tgt.norm2, reg)
        return obj, fit, reg, ("m", M, Q), nrm

    def _apply_plan(self, plan, U, active=None):
        """``U - eta grad`` from a step plan (see :meth:`evaluate`); inactive trials keep ``U``."""
        xp = self.xp
        Q = plan[-1]
        if active is not None:
            Q = Q * active[:, None, None]
        U2 = self.tgt.V @ Q if isinstance(self.tgt, FactoredTarget) else Q.copy()
        if plan[0] == "m":
            M = plan[1]
            if active is not None:
                M = xp.where(active[:, None, None], M, -xp.eye(M.shape[-1], dtype=M.dtype))
            U2 -= U @ M
        else:
            UM, a = plan[1], plan[2]
            if active is not None:
                UM = UM * active[:, None, None]
                a = xp.where(active[:, None], a, 1.0)
            U2 -= UM
            U2 += U * a[..., None, :]
        return U2

    def gradient(self, ev=None):
        """The gradient in ``U`` of the objective (``C``, ``Chat`` fixed) at the current state."""
        ev = self.evaluate() if ev is None else ev
        return (self.U - self._apply_plan(ev[3], self.U)) / self.p.eta

    #: Relative width of a tie in the re-initialisation's argmin (see :meth:`reinit`).
    REINIT_TIE = 1e-12

    def _reinit_index(self, nrm):
        """The column to re-initialise per trial: the lowest index among near-minimal norms.

        After the random start every norm equals ``delta`` to a few ulps, so a plain
        argmin would be decided by rounding, and a GPU (whose reductions sum in
        another order) would pick another column.  Norms within a relative
        ``REINIT_TIE = 1e-12`` of the minimum count as tied, far above the ~1e-15
        rounding of a norm in any summation order and far below any real
        difference; the lowest tied index wins, on every backend.
        """
        xp = self.xp
        mn = nrm.min(axis=-1, keepdims=True)
        tied = nrm <= mn * (1.0 + self.REINIT_TIE)
        return xp.argmax(tied.astype(xp.int8), axis=-1)  # the first True

    def reinit(self, nrm=None):
        """Re-initialise each active trial's column of smallest norm (see :meth:`_reinit_index`).

        The new directions and signs are drawn on the host (one NumPy generator per
        trial, as always) and moved to the device in one upload; the column is
        chosen and replaced on the device, so nothing is read back.  Returns the
        chosen indices as a backend array of shape (B,).
        """
        p, xp = self.p, self.xp
        if nrm is None:
            nrm = xp.sqrt(xp.sum(self.U * self.U, axis=-2))
        j = self._reinit_index(nrm)
        draws = np.empty((self.B, p.d + 1))
        for b, rng in enumerate(self.rngs):
            draws[b, :-1] = p.delta * _unit_columns(rng, p.d, 1)[:, 0]
            draws[b, -1] = rng.choice([-1.0, 1.0])
        draws = xp.asarray(draws, dtype=self.dtype)  # the one upload of the epoch
        newu, newa = draws[:, :-1], draws[:, -1]
        # only active trials are re-initialised; frozen (diverged) ones keep their state
        hit = xp.arange(p.m)[None, :] == j[:, None]
        if not self._all_active:
            hit = hit & self._active_dev[:, None]
        self.U = xp.where(hit[:, None, :], newu[:, :, None], self.U)
        self.a = xp.where(hit, newa[:, None], self.a)
        self.c = xp.where(hit, float(self._c_init() / p.delta), self.c)
        self.chat = xp.where(hit, float(1.0 / p.delta), self.chat)
        self.switched = self.switched & ~hit
        self._fresh_dev = j if self._all_active else xp.where(self._active_dev, j, self._fresh_dev)
        return j

    def _post_step(self, nrm, n2new, c, chat, switched):
        """Norm ratios, rescaled ``c``/``chat`` and the mode switch (one fused kernel on CuPy)."""
        key = (self.p.mode_switch, self.p.switch_threshold, self.p.switch_factor)
        if self._post is None or self._post[0] != key:  # _polish runs with other parameters
            self._post = (key, _make_post(self.xp, *key))
        return self._post[1](nrm, n2new, c, chat, switched)

    def step(self, ev):
        """One iteration from the current state, whose evaluation ``ev`` is given.

        Returns ``(nsw, new_state, new_ev)``: the number of mode switches per trial,
        the new ``(U, c, chat, switched)`` and its evaluation (reused by the next step).

        The gradient step ``U - eta grad_U f`` is formed from the plan that
        :meth:`evaluate` built (for ``m`` up to a few times ``d``: ``U' = V Q - U M``,
        two matrix products and one pass over the d x m array).  The new column norms are the
        diagonal of the next Gram matrix, which the next evaluation needs anyway.
        Nothing is read back to the host.
        """
        p = self.p
        nrm = ev[4]
        U2 = self._apply_plan(ev[3], self.U, None if self._all_active else self._active_dev)
        G2 = _mT(U2) @ U2
        nrm2, c2, chat2, switched2, sw = self._post_step(nrm, G2.diagonal(axis1=-2, axis2=-1), self.c, self.chat,
                                                         self.switched)
        nsw = sw.sum(axis=-1) if p.mode_switch else None
        new = (U2, c2, chat2, switched2)
        return nsw, new, self.evaluate(U2, c2, chat2, G=G2, nrm=nrm2)

    def _set_active(self, active):
        self.active = np.asarray(active, dtype=bool)
        self._all_active = bool(self.active.all())
        self._active_dev = self.xp.asarray(self.active)

    # -- the loop ------------------------------------------------------------------
    #: Iterations between two reads of the device-side divergence / tol flags.
    CHECK_EVERY = 32

    def run(self, *, progress=False, checkpoint=None, checkpoint_every=1, tol=None, t0=None, on_epoch=None):
        """K epochs (from ``self.epoch``); returns True when interrupted.

        The divergence test (and the ``tol`` test) is computed on the device after
        every iteration and accumulated; the host reads the flags once every
        ``check_every`` iterations (and at the end of an epoch).  When a flag is
        set, the run goes back to the state of the last check and replays those
        iterations one by one with a host check after each (the iterations are
        deterministic, so the replay is the same computation), which finds the
        exact iteration where a trial diverged or reached ``tol``.  Per-iteration
        records stay on the device until the end of the epoch, when everything the
        history needs comes back in one copy.
        """
        p, xp = self.p, self.xp
        t0 = time.perf_counter() if t0 is None else t0
        self._thr = None
        bar = _progress(progress, p.epochs, initial=self.epoch)
        interrupted = False
        n2 = self.tgt.norm2 * xp.ones(self.B, dtype=self.dtype)
        goal = None if tol is None else (0.5 * tol * tol) * n2
        every = self.check_every
        try:
            while self.epoch < p.epochs:
                k = self.epoch + 1
                ev0 = self.evaluate()
                f_before = ev0[0]
                j = self.reinit(ev0[4]) if p.reinit else xp.full(self.B, -1, dtype=xp.int64)
                ev = self.evaluate()
                f_after = ev[0]
                self._epoch_start = (self.U, self.c, self.chat, self.switched)
                if self._thr is None:
                    self._thr = self.blowup * xp.maximum(f_before, 0.5 * n2)
                nsw_epoch = xp.zeros(self.B, dtype=xp.int64)
                recs = []
                snap = (0, self.U, self.c, self.chat, self.switched, ev, nsw_epoch, 0)
                flag = None
                reached = False
                t = 0
                while t < p.iters:
                    t += 1
                    if self.stop_requested:
                        self._restore(snap)
                        raise KeyboardInterrupt
                    try:
                        with np.errstate(over="ignore", invalid="ignore"):  # a diverging trial is found below
                            nsw, new, ev2 = self.step(ev)
                    except KeyboardInterrupt:
                        self._restore(snap)  # the last checked state: no NaN from an unchecked step
                        raise
                    flag = self._flags(ev2, goal, flag)
                    if self.record_every and (t - 1) % self.record_every == 0:
                        recs.append(self._record_row(ev, new, nsw))
                    self.U, self.c, self.chat, self.switched = new
                    ev = ev2
                    if nsw is not None:
                        nsw_epoch = nsw_epoch + nsw
                    if t % every and t < p.iters:
                        continue
                    fl = self._read_flags(flag)  # the one sync of `every` iterations
                    flag = None
                    if fl.any():
                        # back to the last check, then one iteration at a time with host checks
                        t_end = t
                        t, self.U, self.c, self.chat, self.switched, ev, nsw_epoch, nrec = snap
                        del recs[nrec:]
                        while t < t_end:
                            t += 1
                            nsw, new, ev2 = self.step(ev)
                            new, ev2 = self._check_divergence(new, ev2, ev, k, t, snap)
                            if self.record_every and (t - 1) % self.record_every == 0:
                                recs.append(self._record_row(ev, new, nsw))
                            self.U, self.c, self.chat, self.switched = new
                            ev = ev2
                            if nsw is not None:
                                nsw_epoch = nsw_epoch + nsw
                            if goal is not None and self._reached(ev[1], goal):
                                reached = True
                                break
                    if reached:
                        break
                    snap = (t, self.U, self.c, self.chat, self.switched, ev, nsw_epoch, len(recs))
                self._end_epoch(k, j, ev, f_before, f_after, nsw_epoch, recs, n2, t0)
                rel = np.array([h["rel_error"][-1] for h in self.hist])
                self.epoch = k
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(rel_error=f"{np.nanmedian(rel):.3g}")
                stop = False
                if self.callback is not None:
                    stop = bool(self.callback(self._epoch_info(rel)))
                if on_epoch is not None:
                    on_epoch(self)
                if reached:
                    for b in range(self.B):
                        self.hist[b]["stopped_at"] = [k, t]
                    stop = True
                # also at an early stop, so that resuming continues from exactly there
                if checkpoint and (k % checkpoint_every == 0 or k == p.epochs or stop):
                    _save_checkpoint(checkpoint, self, t0, finished=reached or k == p.epochs)
                if stop:
                    break
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if bar is not None:
                bar.close()
        return interrupted

    def _restore(self, snap):
        self.U, self.c, self.chat, self.switched = snap[1:5]

    def _flags(self, ev, goal, acc):
        """Device-side test of one iteration, OR-ed into ``acc``: ``(diverged (B,), tol reached ())``.

        A trial diverged when its objective is not ``<=`` its threshold (NaN and inf
        included); only active trials count.  ``tol`` is reached when every active
        trial's fit is at most ``goal`` (as :meth:`_reached` on the host).
        """
        xp = self.xp
        if self._badk is None:
            self._badk = _make_badk(xp)
        if acc is None:
            acc = (xp.zeros(self.B, dtype=bool), None if goal is None else xp.zeros((), dtype=bool))
        bad = self._badk(acc[0], ev[0], self._thr)
        if not self._all_active:
            bad = bad & self._active_dev
        done = acc[1]
        if goal is not None:
            ok = ev[1] <= goal
            if self._all_active:
                done = done | xp.all(ok)
            else:
                act = self._active_dev
                done = done | xp.all(ok) | (xp.any(act) & xp.all(ok | ~act))
        return bad, done

    def _read_flags(self, acc):
        """One device->host copy of the accumulated flags: (B + 1,) int8, 1 = diverged / reached."""
        xp = self.xp
        bad, done = acc
        if done is None:
            done = xp.zeros((), dtype=bool)
        return to_numpy(xp.concatenate([bad, done.reshape(1)]).astype(xp.int8))

    def _end_epoch(self, k, j, ev, f_before, f_after, nsw_epoch, recs, n2, t0):
        """Write epoch k's history from one device->host copy of everything it needs."""
        xp, B = self.xp, self.B
        cols = [ev[0], ev[1], ev[2], f_before, f_after, n2, nsw_epoch, j, self._fresh_dev]
        pb = self._pb_norm2_dev()
        if pb is not None:
            cols.append(pb)
        # float64 holds every float32 value and every index exactly
        f64 = xp.float64
        flat = [xp.stack([v.astype(f64, copy=False) for v in cols], axis=1)]
        if recs:
            flat.append(xp.stack(recs, axis=1).astype(f64, copy=False).reshape(B, -1))
        host = to_numpy(xp.concatenate(flat, axis=1) if len(flat) > 1 else flat[0])
        ncol = len(cols)
        f, fit, reg, fb, fa, nn, nsw, jj, fresh = (host[:, i] for i in range(9))
        pbv = host[:, 9] if pb is not None else None
        rel = np.sqrt(np.maximum(2 * fit, 0) / nn)
        el = time.perf_counter() - t0
        self._fresh_host = fresh.astype(int)  # the device copy is _fresh_dev already
        rows = host[:, ncol:].reshape(B, len(recs), -1) if recs else None
        for b in range(B):
            h = self.hist[b]
            h["epoch"].append(k)
            h["rel_error"].append(float(rel[b]))
            h["objective"].append(float(f[b]))
            h["regularizer"].append(float(reg[b]))
            h["n_switches"].append(int(nsw[b]))
            h["reinit_index"].append(int(jj[b]))
            h["f_before_reinit"].append(float(fb[b]))
            h["f_after_reinit"].append(float(fa[b]))
            h["pb_norm2"].append(None if pbv is None else float(pbv[b]))
            h["elapsed"].append(el)
            if rows is not None:
                for n, row in enumerate(rows[b]):
                    t = 1 + n * self.record_every
                    h["iterations"].append({
                        "epoch": k, "iteration": t, "objective": float(row[0]), "fit": float(row[1]),
                        "rel_error": math.sqrt(max(2 * row[1], 0) / nn[b]), "step_change": float(row[2]),
                        "fresh_index": int(row[4]), "fresh_norm": float(row[5]),
                        "fresh_ps_norm": None if self.basis is None else float(row[6]),
                        "n_switches": int(row[3])})

    def _reached(self, fit, goal):
        """Host test (used in replays): every active trial's fit at most ``goal``."""
        ok = to_numpy(fit <= goal)
        if ok.all():
            return True
        if self.active.all():
            return False
        return bool(self.active.any() and ok[self.active].all())

    def _epoch_info(self, rel):
        return {"epoch": self.epoch, "rel_error": rel.copy(), "state": self.state_numpy(), "params": self.p,
                "history": self.hist}

    def _pb_norm2_dev(self):
        if self.basis is None:
            return None
        Q = self.basis
        PU = self.U - Q @ (Q.swapaxes(-1, -2) @ self.U)
        return self.xp.sum(PU * PU, axis=(-1, -2))

    def _pb_norm2(self):
        pb = self._pb_norm2_dev()
        return None if pb is None else to_numpy(pb)

    def _record_row(self, ev, new, nsw):
        """Per-iteration record of a step, kept on the device: (B, 7) values before / of the step.

        Columns: objective, fit, ``||T_t - T_{t-1}||_F``, switches made by the step,
        index, norm and ``||P_S u||`` of the latest re-initialised column.
        """
        xp = self.xp
        U2, c2 = new[0], new[1]
        s_old = self.weights()
        s_new = self.a * c2 ** (self.p.order - 2)
        # ||T_t - T_{t-1}||_F^2 via Gram matrices of [U_new, U_old]
        W = xp.concatenate([U2, self.U], axis=-1)
        w = xp.concatenate([s_new, -s_old], axis=-1)
        G = W.swapaxes(-1, -2) @ W
        change = xp.sqrt(xp.maximum(xp.sum(w[:, :, None] * G**self.p.order * w[:, None, :], axis=(-1, -2)), 0))
        ar = xp.arange(self.B)
        fresh_u = self.U[ar, :, self._fresh_dev]  # (B, d)
        fresh_norm = xp.sqrt(xp.sum(fresh_u * fresh_u, axis=-1))
        if self.basis is not None:
            proj = (self.basis.swapaxes(-1, -2) @ fresh_u[:, :, None])[:, :, 0]
            fresh_ps = xp.sqrt(xp.sum(proj * proj, axis=-1))
        else:
            fresh_ps = xp.zeros(self.B, dtype=self.dtype)
        sw = xp.zeros(self.B, dtype=self.dtype) if nsw is None else nsw.astype(self.dtype)
        return xp.stack([ev[0].astype(self.dtype), ev[1].astype(self.dtype), change.astype(self.dtype), sw,
                         self._fresh_dev.astype(self.dtype), fresh_norm, fresh_ps], axis=-1)

    def _check_divergence(self, new, ev_new, ev_old, k, t, snap=None):
        """Host check of one iteration (in a replay): NaN/inf or a blow-up of the objective."""
        f2 = to_numpy(ev_new[0])
        thr = to_numpy(self._thr)
        ok = f2 <= thr  # False for NaN and inf too
        if ok.all():
            return new, ev_new
        bad = ~ok & self.active
        if not bad.any():
            return new, ev_new
        if self.divergence == "raise":
            b = int(np.flatnonzero(bad)[0])
            eta2 = min(self.p.eta / 4, default_params(self.p.d, self.p.order, self.p.m, self.p.target_norm,
                                                      epochs=self.p.epochs).eta)
            last = self.state_numpy(b)
            state, back = self._stable_state(b, eta2, snap, t)
            raise DivergenceError(
                f"Algorithm 1 diverged in epoch {k}, iteration {t} (trial {b}): the objective became "
                f"{f2[b]:.3g} (reference {thr[b] / self.blowup:.3g}) with eta={self.p.eta:g}. Try eta={eta2:g} "
                "(from exc.state) or a smaller delta.",
                epoch=k, iteration=t, state=state, suggested_eta=eta2, last_finite_state=last,
                state_iteration=back)
        # "freeze": keep the last finite state of the diverged trials and stop updating them
        xp = self.xp
        keep = xp.asarray(bad)
        U2, c2, chat2, sw2 = new
        new_state = (xp.where(keep[:, None, None], self.U, U2), xp.where(keep[:, None], self.c, c2),
                     xp.where(keep[:, None], self.chat, chat2), xp.where(keep[:, None], self.switched, sw2))
        self._set_active(self.active & ~bad)
        for b in np.flatnonzero(bad):
            self.hist[b]["diverged_at"] = (k, t)
        # the frozen trials are back at their last finite state: evaluate the mixed state afresh
        return new_state, self.evaluate(*new_state[:3])

    #: Steps with the suggested eta that a state offered by DivergenceError must survive.
    STABLE_PROBE = 64

    def _stable_state(self, b, eta2, snap, t):
        """A state of trial ``b`` from which ``STABLE_PROBE`` steps with ``eta2`` stay finite and bounded.

        Candidates, newest first: the last finite state (iteration ``t - 1``), the
        last checked state (``snap``, up to ``check_every`` iterations back) and the
        state right after this epoch's re-initialisation.  Returns the state (NumPy
        arrays) and the iteration it is from (0 = start of the epoch).
        """
        cands = [(t - 1, (self.U, self.c, self.chat, self.switched))]
        if snap is not None and snap[0] < t - 1:
            cands.append((snap[0], snap[1:5]))
        if getattr(self, "_epoch_start", None) is not None:
            cands.append((0, self._epoch_start))
        keep = (self.U, self.c, self.chat, self.switched, self.p)
        chosen = None
        try:
            self.p = replace(self.p, eta=eta2)
            for it, st in cands:
                self.U, self.c, self.chat, self.switched = st
                ev = self.evaluate()
                ok = True
                for _ in range(self.STABLE_PROBE):
                    _, new, ev = self.step(ev)
                    self.U, self.c, self.chat, self.switched = new
                    if not float(to_numpy(ev[0])[b]) <= float(to_numpy(self._thr)[b]):
                        ok = False
                        break
                if ok:
                    chosen = (it, st)
                    break
        finally:
            self.U, self.c, self.chat, self.switched, self.p = keep
        it, st = chosen if chosen is not None else cands[-1]
        arrs = dict(zip(("U", "c", "chat", "switched"), st))
        out = {k: np.array(to_numpy(v[b]), copy=True) for k, v in arrs.items()}
        out["a"] = np.array(to_numpy(self.a[b]), copy=True)
        return {k: out[k] for k in ("U", "a", "c", "chat", "switched")}, it


def _make_fused(xp, l, eta, lam):
    """The element-wise chains of :meth:`_Run.evaluate` (m side) as four ``cupy.fuse`` kernels.

    Each repeats the NumPy code's operations in its order (``eta * l * s`` is
    ``(eta l) s`` there too), so the two paths differ only by the device's rounding.
    """

    def pw(x, k):
        if k == 0:
            return x * 0.0 + 1.0
        out = x
        if k >= 2:
            out = x * x
            for _ in range(k - 2):
                out = out * x
        return out

    el = eta * l
    sq = math.sqrt(eta * l)
    inv = 1.0 / (eta * l)

    def vec(a, c, chat, nrm, n2):
        s = a * pw(c, l - 2)
        h = pw(chat, l - 2) * pw(nrm, l - 2)
        h1 = h * (el * lam)
        h1 = h1 - 1.0
        return s, h * n2, s * sq, h1, el * s

    def mform(G, kc, kr):
        M = pw(G, l - 1) if l > 2 else G * 1.0
        return M * kc * kr

    def qform(A, wc, er):
        Q = pw(A, l - 1) if l > 2 else A * 1.0
        return Q * wc * er

    def fin(model2, cross, norm2, reg):
        fit = 0.5 * (model2 * inv - 2.0 * (cross * inv) + norm2)
        return fit + reg, fit

    return tuple(xp.fuse(f) for f in (vec, mform, qform, fin))


def _make_badk(xp):
    """``acc | ~(f <= thr)`` (one fused kernel on CuPy): a trial's objective not below its threshold."""

    def badk(acc, f, thr):
        return acc | ~(f <= thr)

    return badk if xp is np else xp.fuse(badk)


def _make_post(xp, mode_switch, thr, factor):
    """The element-wise tail of a step as one function (``cupy.fuse``-d on CuPy).

    ``(nrm, ||u'||^2, c, chat, switched) -> (||u'||, c', chat', switched', switched now)``;
    the operations are those of the unfused NumPy code, in the same order.
    """

    def post(nrm, n2new, c, chat, switched):
        nrm2 = xp.sqrt(n2new)
        ratio = nrm / nrm2
        c2 = c * ratio
        chat2 = chat * ratio
        if not mode_switch:
            return nrm2, c2, chat2, switched, switched & False
        sw = (~switched) & (nrm <= thr) & (nrm2 > thr)
        c2 = xp.where(sw, c2 / factor, c2)
        return nrm2, c2, chat2, switched | sw, sw

    if xp is np:
        return post
    return xp.fuse(post)


def _empty_history():
    keys = ("epoch", "rel_error", "objective", "regularizer", "n_switches", "reinit_index", "f_before_reinit",
            "f_after_reinit", "pb_norm2", "elapsed", "iterations", "polish")
    return {k: [] for k in keys}


def _progress(enabled, total, initial=0):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="Algorithm 1", unit="epoch")


# -- checkpoints ---------------------------------------------------------------------
#: Version of the checkpoint layout (bumped when its content changes).
CHECKPOINT_FORMAT = 2
_STATE_KEYS = ("U", "a", "c", "chat", "switched")
_EPOCH_KEYS = ("epoch", "rel_error", "objective", "regularizer", "n_switches", "reinit_index", "f_before_reinit",
               "f_after_reinit", "pb_norm2", "elapsed")


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: unreadable, corrupted, edited, or from another run.

    The message names the file and, for another run, what differs (parameters,
    seed, target, dtype or tdcore version).
    """


def _tdcore_version():
    from . import __version__

    return __version__


def target_fingerprint(target):
    """SHA-256 of a target's arrays (hex string), stored in checkpoints.

    For a :class:`SymCP`: its order, weights and factors (float64, C order); for a
    dense target: its shape and entries.  ``-T`` or a reflection of the factors
    has the same norm but a different fingerprint.
    """
    h = hashlib.sha256()
    if isinstance(target, SymCP):
        h.update(f"symcp:{target.order}:{target.d}:{target.m}".encode())
        arrays = (target.weights, target.factors)
    else:
        h.update(f"dense:{tuple(target.shape)}".encode())
        arrays = (target,)
    for a in arrays:
        h.update(np.ascontiguousarray(to_numpy(a), dtype=np.float64).tobytes())
    return h.hexdigest()


def _seed_record(seed):
    if seed is None or isinstance(seed, int):
        return seed
    return "generator"


def _checksum(meta_json, st):
    h = hashlib.sha256(meta_json.encode())
    for k in _STATE_KEYS:
        a = np.ascontiguousarray(st[k])
        h.update(f"{k}:{a.dtype.str}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


_CHAIN0 = "0" * 64


def history_path(checkpoint):
    """The history log that goes with a checkpoint file: ``checkpoint + ".history"``."""
    return os.fspath(checkpoint) + ".history"


def _chain(prev, line):
    return hashlib.sha256(prev.encode() + line).hexdigest()


def _append_history(path, run):
    """Append the epochs not yet logged to the checkpoint's history log; return the log's new position.

    The log holds one JSON line per epoch (its per-epoch values, its iteration
    records and the keys that are not per-epoch, such as ``stopped_at``), so each
    save writes only what is new: the cost is linear in the run, not quadratic.
    Bytes past the last committed position (from a kill between this append and
    the checkpoint's rename) are overwritten.  A hash chain over the lines, kept in
    the checkpoint, detects any edit or truncation of the log.
    """
    log = getattr(run, "ck_log", None)
    fresh = log is None
    if fresh:
        log = {"epochs": 0, "iters": 0, "bytes": 0, "chain": _CHAIN0}
    h = run.hist[0]
    its = h["iterations"]
    extra = {k: v for k, v in h.items() if k not in _EPOCH_KEYS and k not in ("iterations", "polish")}
    chain, data, i = log["chain"], [], log["iters"]
    for e in range(log["epochs"], run.epoch):
        j = i
        while j < len(its) and its[j]["epoch"] <= e + 1:
            j += 1
        rec = {"values": {k: h[k][e] for k in _EPOCH_KEYS}, "iterations": its[i:j],
               "extra": extra if e == run.epoch - 1 else {}}
        line = (json.dumps(rec, default=_json_default, sort_keys=True) + "\n").encode()
        chain = _chain(chain, line)
        data.append(line)
        i = j
    blob = b"".join(data)
    fd = os.open(history_path(path), os.O_RDWR | os.O_CREAT | (os.O_TRUNC if fresh else 0), 0o666)
    with os.fdopen(fd, "r+b") as fh:
        fh.seek(log["bytes"])
        fh.write(blob)
        fh.truncate()
        fh.flush()
        os.fsync(fh.fileno())
    return {"epochs": run.epoch, "iters": i, "bytes": log["bytes"] + len(blob), "chain": chain}


def _read_history(path, log):
    """The history recorded in a checkpoint's log, verified against the chain hash ``log`` holds."""
    bad = f"history log {history_path(path)!r} of checkpoint {os.fspath(path)!r}"
    hint = "Delete both files, or pass resume=False to start afresh and overwrite them."
    if not (isinstance(log, dict) and all(isinstance(log.get(k), int) and not isinstance(log.get(k), bool)
                                          and log.get(k) >= 0 for k in ("epochs", "iters", "bytes"))
            and isinstance(log.get("chain"), str)):
        raise CheckpointError(f"checkpoint {os.fspath(path)!r} has no valid history-log record. {hint}")
    try:
        with open(history_path(path), "rb") as fh:
            blob = fh.read(log["bytes"])
    except OSError as exc:
        raise CheckpointError(f"{bad} cannot be read ({exc.strerror or exc}). {hint}") from exc
    if len(blob) != log["bytes"]:
        raise CheckpointError(f"{bad} is truncated: {len(blob)} bytes, the checkpoint recorded {log['bytes']}. "
                              f"{hint}")
    lines = blob.splitlines(keepends=True)
    chain = _CHAIN0
    for line in lines:
        chain = _chain(chain, line)
    if chain != log["chain"] or len(lines) != log["epochs"]:
        raise CheckpointError(f"{bad} was modified or corrupted: its hash chain does not match the checkpoint. "
                              f"{hint}")
    hist = _empty_history()
    for line in lines:
        rec = json.loads(line)
        for k, v in rec["values"].items():
            hist[k].append(v)
        hist["iterations"] += rec["iterations"]
        hist.update(rec["extra"])
    if len(hist["iterations"]) != log["iters"]:
        raise CheckpointError(f"{bad} holds {len(hist['iterations'])} iteration records, the checkpoint "
                              f"recorded {log['iters']}. {hint}")
    return hist


def _save_checkpoint(path, run, t0, finished=False):
    """Write the run's state atomically (temporary file, fsync, rename): a kill leaves the old file.

    The history goes to the append-only log :func:`history_path` first; the
    checkpoint then commits how much of it is valid.
    """
    st = run.state_numpy()
    info = getattr(run, "ck_info", {})
    log = _append_history(path, run)
    meta = {
        "format": CHECKPOINT_FORMAT,
        "tdcore_version": _tdcore_version(),
        "seed": info.get("seed"),
        "target_fingerprint": info.get("target_fingerprint"),
        "init_state_fingerprint": info.get("init_state_fingerprint"),
        "params": run.p.to_dict(),
        "epoch": run.epoch,
        "finished": bool(finished),
        "rng": [r.bit_generator.state for r in run.rngs],
        "history_log": log,
        "active": run.active.tolist(),
        "fresh": run.fresh.tolist(),
        "elapsed": time.perf_counter() - t0,
        "dtype": str(np.dtype(run.dtype)),
    }
    meta_json = json.dumps(meta, default=_json_default, sort_keys=True)
    checksum = _checksum(meta_json, st)
    atomic_write(path, lambda fh: np.savez(fh, meta=np.array(meta_json), checksum=np.array(checksum), **st))
    run.ck_log = log


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))


def _load_checkpoint(path):
    """Read and verify a checkpoint: every way it can be unusable is a :class:`CheckpointError` naming it."""
    bad = f"checkpoint {os.fspath(path)!r}"
    hint = "Delete it, or pass resume=False to start afresh and overwrite it."
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as exc:
        reason = "empty" if os.path.getsize(path) == 0 else "not a readable .npz archive (truncated or not a checkpoint)"
        raise CheckpointError(f"{bad} cannot be read: it is {reason}. {hint}") from exc
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise CheckpointError(f"{bad} is a single .npy array, not a tdcore checkpoint (.npz archive). {hint}")
    try:
        with z:
            missing = [k for k in ("meta", "checksum") + _STATE_KEYS if k not in z.files]
            if missing:
                raise CheckpointError(f"{bad} is not a tdcore checkpoint: it lacks {', '.join(missing)}. {hint}")
            meta_json = str(z["meta"])
            checksum = str(z["checksum"])
            st = {k: z[k] for k in _STATE_KEYS}
    except CheckpointError:
        raise
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        raise CheckpointError(f"{bad} is truncated or corrupted ({type(exc).__name__} while reading it). "
                              f"{hint}") from exc
    if _checksum(meta_json, st) != checksum:
        raise CheckpointError(f"{bad} was modified or corrupted: its checksum does not match its content. {hint}")
    try:
        meta = json.loads(meta_json)
    except ValueError as exc:  # pragma: no cover - the checksum matched, so only a foreign writer gets here
        raise CheckpointError(f"{bad} has unreadable metadata. {hint}") from exc
    if not isinstance(meta, dict) or meta.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{bad} has checkpoint format {meta.get('format') if isinstance(meta, dict) else None!r}, "
                              f"this tdcore reads format {CHECKPOINT_FORMAT}. {hint}")
    return meta, st


def _init_fingerprint(init_state):
    """SHA-256 of a checked ``init_state`` (None for the random initialisation)."""
    if init_state is None:
        return None
    h = hashlib.sha256()
    for k in _STATE_KEYS:
        h.update(np.ascontiguousarray(init_state[k]).tobytes())
    return h.hexdigest()


def _check_checkpoint_matches(path, meta, st, p, dtype, seed, fingerprint, init_fp=None):
    """Refuse to resume a checkpoint of another run; say what differs."""
    bad = f"checkpoint {os.fspath(path)!r}"
    hint = "Delete it, or pass resume=False to start afresh and overwrite it."
    if meta.get("tdcore_version") != _tdcore_version():
        raise CheckpointError(f"{bad} was written by tdcore {meta.get('tdcore_version')}, this is tdcore "
                              f"{_tdcore_version()}: a resumed run would mix two versions. {hint}")
    if meta.get("seed") != _seed_record(seed):
        raise CheckpointError(f"{bad} was written with seed={meta.get('seed')!r}, this run has "
                              f"seed={_seed_record(seed)!r}: resuming would mix two runs. {hint}")
    if meta.get("target_fingerprint") != fingerprint:
        raise CheckpointError(f"{bad} was written for a different target (fingerprint "
                              f"{str(meta.get('target_fingerprint'))[:12]}..., this target {fingerprint[:12]}...): "
                              f"resuming would mix two runs. {hint}")
    if meta.get("init_state_fingerprint") != init_fp:
        what = {None: "the random initialisation"}
        raise CheckpointError(f"{bad} was started from {what.get(meta.get('init_state_fingerprint'), 'another init_state')}"
                              f", this run from {what.get(init_fp, 'an init_state')} that differs: resuming would mix "
                              f"two runs. {hint}")
    try:
        saved = Params(**meta["params"])
    except (TypeError, KeyError) as exc:
        raise CheckpointError(f"{bad} holds parameters this tdcore does not know ({exc}). {hint}") from exc
    if saved != p:
        diff = ", ".join(f"{k}: saved {v!r}, now {getattr(p, k)!r}" for k, v in saved.to_dict().items()
                         if v != getattr(p, k))
        raise CheckpointError(f"{bad} was written with different parameters ({diff}):\n  saved: {saved}\n"
                              f"  now:   {p}\n{hint}")
    if meta.get("dtype") != str(np.dtype(dtype)):
        raise CheckpointError(f"{bad} used dtype {meta.get('dtype')}, this run {np.dtype(dtype)}. {hint}")
    # structure (a checkpoint written by this code always passes; this guards hand-made files)
    epoch = meta.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch <= p.epochs:
        raise CheckpointError(f"{bad} has epoch={epoch!r}; it must be an integer in [0, epochs={p.epochs}]. {hint}")
    shapes = {"U": (1, p.d, p.m), "a": (1, p.m), "c": (1, p.m), "chat": (1, p.m), "switched": (1, p.m)}
    for k, shp in shapes.items():
        if st[k].shape != shp:
            raise CheckpointError(f"{bad}: state {k} has shape {st[k].shape}, expected {shp}. {hint}")
        if k != "switched" and not np.all(np.isfinite(st[k])):
            raise CheckpointError(f"{bad}: state {k} contains NaN or infinite entries. {hint}")
    log = meta.get("history_log")
    if not isinstance(log, dict) or log.get("epochs") != epoch:
        raise CheckpointError(f"{bad}: its history log record does not hold {epoch} epochs. {hint}")
    hist = _read_history(path, log)
    if not all(len(hist[k]) == epoch for k in _EPOCH_KEYS):  # pragma: no cover - the chain hash matched
        raise CheckpointError(f"{bad}: its history does not hold {epoch} epochs. {hint}")
    meta["history"] = [hist]
    fresh = meta.get("fresh")
    if not (isinstance(fresh, list) and len(fresh) == 1 and isinstance(fresh[0], int) and 0 <= fresh[0] < p.m):
        raise CheckpointError(f"{bad}: fresh={fresh!r} is not a column index in [0, {p.m}). {hint}")
    rng = meta.get("rng")
    if not (isinstance(rng, list) and len(rng) == 1 and isinstance(rng[0], dict)):
        raise CheckpointError(f"{bad}: its random generator state is missing. {hint}")
    el = meta.get("elapsed")
    if isinstance(el, bool) or not isinstance(el, (int, float)) or not math.isfinite(el) or el < 0:
        raise CheckpointError(f"{bad}: elapsed={el!r} is not a time in seconds. {hint}")


# -- public API ----------------------------------------------------------------------
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


def _prepare_targets(targets, be, dtype):
    """Stack B targets (all SymCP of one shape, or one shared target) into an operator."""
    if len(targets) == 1 or all(t is targets[0] for t in targets):
        t = targets[0]
        op = make_target_operator(t, be, dtype)
        if isinstance(op, FactoredTarget):
            op = FactoredTarget(op.V[None], op.w[None], op.order)
        bases = [subspace_basis(t)] * len(targets) if isinstance(t, SymCP) else None
        return op, bases
    if not all(isinstance(t, SymCP) for t in targets):
        raise TypeError("a batch of different targets must all be tdcore.SymCP (dense targets can only be shared)")
    shapes = {(t.d, t.m, t.order) for t in targets}
    if len(shapes) != 1:
        raise ValueError(f"all targets of a batch must have the same (d, r, order), got {sorted(shapes)}")
    V = np.stack([to_numpy(t.factors) for t in targets])
    w = np.stack([to_numpy(t.weights) for t in targets])
    op = FactoredTarget(be.asarray(V, dtype), be.asarray(w, dtype), targets[0].order)
    return op, [subspace_basis(t) for t in targets]


def _normalise_target(target):
    """``(T* / ||T*||, ||T*||)``: the run's target, with factor columns in a safe range.

    For a SymCP the weights are divided by the norm and columns whose largest
    entry is beyond ``2**+-16`` are shifted by an exact power of two (the weight
    taking the opposite shift), so that the Gram powers of the run neither
    overflow nor underflow; other columns, and every column of a unit-norm target,
    are left bit-for-bit as they are.
    """
    alpha = norm(target)
    if alpha == 0:
        raise ValueError("target has zero norm: there is nothing to fit")
    if not math.isfinite(alpha):
        raise ValueError(f"target norm {alpha} is beyond the floating range")
    if not isinstance(target, SymCP):
        return target / alpha, alpha
    xp = xp_of(target.factors)
    F, w, l = target.factors, target.weights, target.order
    colmax = xp.max(xp.abs(F), axis=0)
    _, e = xp.frexp(xp.where(colmax > 0, colmax, 1.0))
    e = xp.where(xp.abs(e) > 16, e, 0).astype(np.int64)
    am, ea = math.frexp(alpha)
    with np.errstate(under="ignore"):
        w = xp.ldexp(w / am, l * e - ea)  # = w 2^(l e) / alpha, rounded once
    if not bool(xp.all(xp.isfinite(w))):
        raise ValueError("target has a component far larger than its norm (beyond the floating range "
                         "after normalisation)")
    return SymCP(w, xp.ldexp(F, -e), l), alpha


def _run_params(d, order, m, alpha, epochs, iters, delta, eta, lam, reinit, mode_switch, polish, tol):
    """Parameters of the run on ``T* / alpha``: explicit values (given for ``T*``) mapped by the
    scale covariance of Algorithm 1 (eta alpha, lam / alpha, delta / sqrt(alpha)), the rest
    from :func:`default_params` at ``||T*|| = 1``."""
    eta_i = None if eta is None else check_float("eta", eta, positive=True) * alpha
    lam_i = None if lam is None else check_float("lam", lam, nonnegative=True) / alpha
    delta_i = None if delta is None else check_float("delta", delta, positive=True) / math.sqrt(alpha)
    p = default_params(d, order, m, 1.0, epochs=epochs, iters=iters, delta=delta_i, eta=eta_i, lam=lam_i)
    polish = check_int("polish", polish, minimum=0)
    tol = check_float("tol", tol, positive=True, allow_none=True)
    return Params(**{**p.to_dict(), "reinit": bool(reinit), "mode_switch": bool(mode_switch), "polish": polish,
                     "tol": tol})


def _user_params(p, alpha, eta=None, lam=None, delta=None):
    """The run's parameters ``p`` (for ``T* / alpha``) expressed for ``T*`` itself."""
    if alpha == 1.0:
        return p
    r = math.sqrt(alpha)
    dl = p.delta * r if delta is None else float(delta)
    return replace(p, eta=p.eta / alpha if eta is None else float(eta), lam=p.lam * alpha if lam is None else float(lam),
                   delta=dl, target_norm=float(alpha), switch_threshold=p.switch_threshold * r)


def _state_scaled(st, alpha, inverse=False):
    """A state of the run on ``T* / alpha`` as a state for ``T*`` (or back): U sqrt(alpha), c, chat / sqrt(alpha)."""
    if alpha == 1.0:
        return st
    r = np.sqrt(np.asarray(alpha, dtype=float))
    if inverse:
        r = 1.0 / r
    rU = r.reshape(r.shape + (1, 1)) if r.ndim else r
    rc = r.reshape(r.shape + (1,)) if r.ndim else r
    out = dict(st)
    for key, fac, div in (("U", rU, False), ("c", rc, True), ("chat", rc, True)):
        x = st[key]
        f = np.asarray(fac, dtype=x.dtype) if hasattr(x, "dtype") else fac  # keep float32 float32
        out[key] = x / f if div else x * f
    return out


#: History entries scaled like the objective (alpha^2) and like U^2 or the tensor (alpha).
_HIST_SQUARED = ("objective", "regularizer", "f_before_reinit", "f_after_reinit", "fit")
_HIST_LINEAR = ("pb_norm2", "step_change")


def _history_scaled(h, alpha):
    """A copy of a history of the run on ``T* / alpha`` with its absolute values for ``T*``.

    Relative errors, counts and indices are unchanged; objective values are
    multiplied by ``alpha^2`` and ``||P_B U||^2``, ``||T_t - T_{t-1}||`` by ``alpha``
    (``inf`` where the value itself is beyond the floating range).
    """
    def conv(key, v):
        if v is None or not isinstance(v, (int, float)) or isinstance(v, bool):
            return v
        if key in _HIST_SQUARED:
            return _mul_safe(_mul_safe(v, alpha), alpha)
        if key in _HIST_LINEAR:
            return _mul_safe(v, alpha)
        return v

    out = {}
    for key, val in h.items():
        if key == "iterations":
            out[key] = [{k: conv(k, v) for k, v in rec.items()} for rec in val]
        elif isinstance(val, list):
            out[key] = [conv(key, v) if not isinstance(v, dict) else dict(v) for v in val]
        else:
            out[key] = val
    return out


def _mul_safe(x, y):
    with np.errstate(over="ignore"):
        return float(np.float64(x) * np.float64(y))


def _user_result(res, alpha, params):
    """A Result of the normalised run, for the target as given (model, state, history scaled back)."""
    res.params = params
    if alpha != 1.0:
        res.model = _scaled_symcp(res.model.weights, res.model.factors, res.model.order, alpha)
        res.state = _state_scaled(res.state, alpha)
        res.history = _history_scaled(res.history, alpha)
    return res


def _user_callback(callback, alphas, params, trials=None):
    """Wrap a callback so that it sees states and parameters for the targets as given."""
    if callback is None:
        return None
    alphas = np.asarray(alphas, dtype=float)

    def cb(info):
        info = dict(info)
        if np.any(alphas != 1.0):
            info["state"] = _state_scaled(info["state"], alphas)
            info["history"] = [_history_scaled(h, float(a)) for h, a in zip(info["history"], alphas)]
        info["params"] = params
        if trials is not None:
            info["trials"] = list(trials)
        return callback(info)

    return cb


def _make_params(target, m, epochs, iters, delta, eta, lam, reinit, mode_switch, polish, tol):
    """The parameters of a run on ``target`` as given (no normalisation): benchmarks and tests that drive
    :class:`_Run` directly use it."""
    d, order = target.shape[0], len(target.shape)
    p = default_params(d, order, m, norm(target), epochs=epochs, iters=iters, delta=delta, eta=eta, lam=lam)
    polish = check_int("polish", polish, minimum=0)
    tol = check_float("tol", tol, positive=True, allow_none=True)
    return Params(**{**p.to_dict(), "reinit": check_bool("reinit", reinit),
                     "mode_switch": check_bool("mode_switch", mode_switch), "polish": polish, "tol": tol})


def algorithm1_batch(targets, m, *, seeds, epochs=None, iters=None, delta=None, eta=None, lam=None,
                     backend="auto", dtype=None, reinit=True, mode_switch=True, polish=0, tol=None,
                     record_every=None, callback=None, divergence="freeze", progress=False, return_numpy=True,
                     workers=1, max_bytes=None):
    """Run B independent trials of Algorithm 1 together (batched matrix products).

    Parameters
    ----------
    targets : SymCP, dense array, or sequence of B SymCP of equal shape
        One shared target, or one target per trial.  Every trial runs on its own
        normalised target ``T*_b / ||T*_b||`` with its own parameters, exactly as
        :func:`algorithm1` would: the default rule then gives all trials the same
        normalised parameters (one batch, whatever the norms); explicit ``eta``,
        ``lam``, ``delta`` are for each target as given, so trials whose norms
        differ (beyond 1e-12) run in separate batches.
    m : int
        Number of components.
    seeds : sequence of int
        One seed per trial; trial b equals ``algorithm1(targets[b], m, seed=seeds[b])``
        (with the same explicit parameters, if any).
    divergence : {"freeze", "raise"}
        ``"freeze"`` stops updating a diverged trial and keeps its last finite state
        (marked ``history["diverged_at"]``); ``"raise"`` raises :class:`DivergenceError`.
    tol : float, optional
        Stop once every trial (of a chunk, see ``workers``) has relative error at
        most ``tol``; trials that got there earlier keep iterating until then.
    workers : int
        Split the batch into this many contiguous chunks and run them in as many
        threads (NumPy releases the GIL inside its matrix products and
        element-wise loops), with BLAS limited to one thread meanwhile, so that
        the chunks use separate cores instead of competing for them.  Every
        trial's computation is the same as with ``workers=1`` (with ``tol``, a
        chunk stops when its own trials are done).  Not with ``callback`` or
        ``progress``, which report on the whole batch; CPU (NumPy) backend only.
    callback : callable, optional
        As in :func:`algorithm1`, per batch of trials sharing their parameters;
        when there are several such batches ``info["trials"]`` lists the trial
        indices and ``info["params"]`` the normalised parameters of that batch.
    max_bytes : int, optional
        Refuse (``MemoryError``, before any work) a run whose estimated peak
        memory (:func:`estimate_memory`) is above this; default: the environment
        variable ``TDCORE_MAX_BYTES``, else half the physical memory.
    Other parameters
        As :func:`algorithm1`.

    Returns
    -------
    BatchResult
    """
    if divergence not in ("freeze", "raise"):
        raise ValueError(f"divergence must be 'freeze' or 'raise', got {divergence!r}")
    seeds = check_seeds(seeds)
    if isinstance(targets, (list, tuple)):
        if not targets:
            raise ValueError("targets must hold at least one target")
        targets = [check_target(t, name=f"targets[{k}]") for k, t in enumerate(targets)]
        if len(targets) != len(seeds):
            raise ValueError(f"got {len(targets)} targets for {len(seeds)} seeds; give one target or one per seed")
        for k, t in enumerate(targets):
            check_nonzero_target(t, name=f"targets[{k}]")
    else:
        targets = [check_target(targets, name="targets")] * len(seeds)
        check_nonzero_target(targets[0], name="targets")
    m = check_int("m", m, minimum=1)
    progress = check_bool("progress", progress)
    return_numpy = check_bool("return_numpy", return_numpy)
    reinit = check_bool("reinit", reinit)
    mode_switch = check_bool("mode_switch", mode_switch)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")
    d, order = targets[0].shape[0], len(targets[0].shape)
    # every trial runs on its own normalised target T*_b / ||T*_b||
    if all(t is targets[0] for t in targets):
        t_int, a0 = _normalise_target(targets[0])
        internal, alphas = [t_int] * len(targets), [a0] * len(targets)
    else:
        pairs = [_normalise_target(t) for t in targets]
        internal, alphas = [q[0] for q in pairs], [q[1] for q in pairs]
    # per-trial parameters: with the default rule they do not depend on the norm, so all trials
    # share them; explicit eta / lam / delta are for each target as given, and trials whose norms
    # agree to 1e-12 share one mapping (the difference is below the rounding of the run)
    ref_alphas, groups, user_params = [], {}, []
    for b, a in enumerate(alphas):
        a_g = next((g for g in ref_alphas if abs(a / g - 1.0) <= 1e-12), None)
        if a_g is None:
            ref_alphas.append(a)
            a_g = a
        if eta is None and lam is None and delta is None:
            a_g = 1.0
        p_b = _run_params(d, order, m, a_g, epochs, iters, delta, eta, lam, reinit, mode_switch, polish, tol)
        groups.setdefault(p_b, []).append(b)
        user_params.append(_user_params(p_b, a, eta, lam, delta))
    be = get_backend(backend)
    dt = check_dtype(dtype)
    rec = check_int("record_every", record_every, minimum=1, allow_none=True)
    workers = check_int("workers", workers, minimum=1)
    _check_run_memory("algorithm1_batch", next(iter(groups)), targets, len(seeds), dt, rec, max_bytes)
    rngs = [as_rng(s) for s in seeds]
    if workers > 1:
        if callback is not None or progress:
            raise ValueError("workers > 1 cannot be combined with callback or progress (they report on the whole "
                             "batch); use workers=1")
        if be.name != "numpy":
            raise ValueError(f"workers > 1 is for the CPU (NumPy) backend; this run uses {be.name!r}")
    t0 = time.perf_counter()
    chunks, runs, run_params = [], [], []
    for p, members in groups.items():
        members = np.asarray(members)
        op, bases = _prepare_targets([internal[i] for i in members], be, dt)
        basis = (None if bases is None else be.asarray(np.stack(bases), dt) if len({b.shape for b in bases}) == 1
                 else None)
        parts = [c for c in np.array_split(np.arange(len(members)), workers) if len(c)]
        for loc in parts:
            if len(parts) == 1:
                op_c, basis_c = op, basis
            elif isinstance(op, FactoredTarget) and op.V.shape[0] > 1:
                op_c = FactoredTarget(op.V[loc], op.w[loc], op.order)
                basis_c = None if basis is None else basis[loc]
            else:  # one shared target
                op_c, basis_c = op, None if basis is None else basis[loc]
            idx = members[loc]
            cb = _user_callback(callback, [alphas[i] for i in idx], p, trials=None if len(groups) == 1 else idx)
            chunks.append(idx)
            run_params.append(p)
            runs.append(_Run(op_c, p, [rngs[i] for i in idx], be, dt, basis=basis_c, record_every=rec,
                             callback=cb, divergence=divergence))

    def go(run):
        run.init_state()
        stopped = run.run(progress=progress, tol=run.p.tol, t0=t0)
        if run.p.polish and not stopped:
            _polish(run, run.p.polish)
        return stopped

    if len(runs) == 1:
        flags = [go(runs[0])]
    elif workers == 1:
        flags = []
        for run in runs:
            if flags and flags[-1]:  # Ctrl-C in an earlier group: the rest keep their initial state
                run.init_state()
                flags.append(True)
            else:
                flags.append(go(run))
    else:
        flags = _run_threads(go, runs, workers)
    interrupted = any(flags)
    results, diverged = [None] * len(seeds), []
    for idx, run in zip(chunks, runs):
        for i, res in zip(idx, _collect(run, return_numpy, [seeds[i] for i in idx])):
            results[int(i)] = _user_result(res, alphas[int(i)], user_params[int(i)])
        diverged += [int(idx[b]) for b in range(run.B) if not run.active[b]]
    return BatchResult(results=results, params=next(iter(groups)) if len(groups) == 1 else None,
                       elapsed=time.perf_counter() - t0, interrupted=interrupted, diverged=sorted(diverged))


def _run_threads(fn, runs, workers=None):
    """``fn(run)`` for every run, in ``workers`` threads (default one each), BLAS single-threaded;
    Ctrl-C stops them all."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    n_threads = len(runs) if workers is None else max(1, min(workers, len(runs)))
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(n_threads) as ex:
        futs = [ex.submit(fn, run) for run in runs]
        try:
            return [f.result() for f in futs]
        except KeyboardInterrupt:
            for run in runs:
                run.stop_requested = True
            return [f.result() or True for f in futs]


def algorithm1(target, m, *, epochs=None, iters=None, delta=None, eta=None, lam=None, seed=None, backend="auto",
               dtype=None, reinit=True, mode_switch=True, polish=0, tol=None, record_every=None, callback=None,
               progress=False, checkpoint=None, checkpoint_every=1, resume=True, return_numpy=True, init_state=None,
               max_bytes=None):
    """Algorithm 1 of Wang et al. (2020): over-parameterised tensor decomposition.

    Parameters
    ----------
    target : SymCP or dense symmetric array of shape (d,)*l
        The tensor ``T*`` to fit.
    m : int
        Number of components (``m >= 1``).
    epochs, iters, delta, eta, lam : optional
        K, H, the initialisation radius, the step size and the regularisation
        strength.  ``None`` takes :func:`default_params`' rule.
    seed : int or numpy.random.Generator, optional
    backend : {"auto", "numpy", "cupy"}
    dtype : float64 (default) or float32
    reinit, mode_switch : bool
        Ablation switches: turn off re-initialisation, or the scalar mode switch
        (then ``c_i = 1/||u_i||`` from the start, no boost).  ``lam=0`` removes
        the regulariser.
    polish : int
        Beyond the paper: after the K epochs, this many plain gradient steps on
        the fit with ``lam = 0`` and no re-initialisation, preceded by a
        least-squares refit of the weights; removes the O(lam) error floor.
        For errors far below that floor, :func:`tdcore.refine` (Levenberg--Marquardt)
        or :func:`tdcore.decompose` (Algorithm 1, then refine) converge much faster.
    tol : float, optional
        Stop early once the relative error is at most ``tol`` (checked after every
        iteration; ``history["stopped_at"]`` records the epoch and iteration).
    record_every : int, optional
        Record per-iteration values every this many iterations.
    callback : callable, optional
        ``callback(info)`` after each epoch with a dict (``epoch``, ``rel_error``,
        ``state``, ``params``, ``history``); returning True stops the run.
    progress : bool
        Show a tqdm progress bar.
    checkpoint : path, optional
        Save the state every ``checkpoint_every`` epochs (and at an early stop),
        atomically (temporary file and rename: a kill leaves the previous
        checkpoint intact); when the file exists and ``resume`` is true the run
        continues from it and gives exactly the result of an uninterrupted run
        with the same seed.  The file records the seed, a fingerprint of the
        target (:func:`target_fingerprint`), the parameters, the dtype and the
        tdcore version; resuming with any of them different raises
        :class:`CheckpointError` saying what differs, as does an unreadable,
        truncated or edited file (a checksum covers its content).  A run that
        stopped at ``tol`` is finished: rerunning it returns the same result
        without further iterations.  The directory is checked for writing
        before the run.
    return_numpy : bool
        Return NumPy arrays (default) rather than backend arrays.
    max_bytes : int, optional
        Refuse (``MemoryError``, before any work) a run whose estimated peak
        memory (:func:`estimate_memory`) is above this; default: the environment
        variable ``TDCORE_MAX_BYTES``, else half the physical memory.
    init_state : dict, optional
        Start from a given state instead of the random initialisation: ``U``
        (d, m) and signs ``a`` (m,) are required; ``c`` and ``chat`` default to
        ``1/||u_i||`` and ``switched`` to all True (a state after the mode switch).
        Used, e.g., to start at the bad local minimum of Theorem 2.

    Returns
    -------
    Result

    Notes
    -----
    Scale invariance: the run works on ``T* / ||T*||`` with :func:`default_params`
    at ``||T*|| = 1`` (explicit ``eta``, ``lam``, ``delta`` are for ``T*`` as given
    and are mapped to ``eta ||T*||``, ``lam / ||T*||``, ``delta / sqrt(||T*||)``); the
    model, the state and ``Result.params`` are scaled back.  The relative errors
    of ``c T*`` are those of ``T*`` for any ``c`` in the floating range (checked
    from ``1e-300`` to ``1e300`` in ``tests/core/test_scale.py``).  ``callback``
    sees the state and parameters for ``T*`` as given; ``checkpoint`` files hold
    the normalised run.

    Raises
    ------
    DivergenceError
        In the iteration where the objective becomes non-finite or grows by
        orders of magnitude; carries the last finite state and a suggested step.
    TypeError, ValueError
        Before any work, for an argument of the wrong type or out of range (the
        message names it), a target of zero norm, or a checkpoint path whose
        directory is missing or not writable.
    MemoryError
        Before any work, when :func:`estimate_memory` exceeds ``max_bytes``.
    CheckpointError
        Before any work, for a checkpoint that cannot be resumed (see ``checkpoint``).
        A ``numpy.random.Generator`` seed is recorded as ``"generator"``: its state
        is restored from the file, so resuming needs a Generator again.
    KeyboardInterrupt is caught: the partial result is returned with
    ``interrupted=True``.
    """
    target = check_target(target)
    check_nonzero_target(target)
    m = check_int("m", m, minimum=1)
    seed = check_seed(seed)
    progress = check_bool("progress", progress)
    resume = check_bool("resume", resume)
    return_numpy = check_bool("return_numpy", return_numpy)
    reinit = check_bool("reinit", reinit)
    mode_switch = check_bool("mode_switch", mode_switch)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, got {type(callback).__name__}")
    # the run works on T* / ||T*|| (scale invariance) and is scaled back at the end
    t_int, alpha = _normalise_target(target)
    p = _run_params(target.shape[0], len(target.shape), m, alpha, epochs, iters, delta, eta, lam, reinit,
                    mode_switch, polish, tol)
    p_user = _user_params(p, alpha, eta, lam, delta)
    be = get_backend(backend)
    dt = check_dtype(dtype)
    rec = check_int("record_every", record_every, minimum=1, allow_none=True)
    checkpoint_every = check_int("checkpoint_every", checkpoint_every, minimum=1)
    if checkpoint is not None:
        checkpoint = check_path("checkpoint", checkpoint)
    if init_state is not None:
        init_state = _check_init_state(init_state, p.d, m)
    _check_run_memory("algorithm1", p, [target], 1, dt, rec, max_bytes)
    fingerprint = target_fingerprint(target) if checkpoint else None
    loaded = None
    if checkpoint and resume and os.path.exists(checkpoint):
        loaded = _load_checkpoint(checkpoint)
        _check_checkpoint_matches(checkpoint, *loaded, p, dt, seed, fingerprint, _init_fingerprint(init_state))
    op, bases = _prepare_targets([t_int], be, dt)
    basis = None if bases is None else be.asarray(np.stack(bases), dt)
    rng = as_rng(seed)
    run = _Run(op, p, [rng], be, dt, basis=basis, record_every=rec, callback=_user_callback(callback, [alpha], p_user),
               divergence="raise")
    run.ck_info = {"seed": _seed_record(seed), "target_fingerprint": fingerprint,
                   "init_state_fingerprint": _init_fingerprint(init_state) if checkpoint else None}
    t0 = time.perf_counter()
    finished = False
    if loaded is not None:
        meta, st = loaded
        try:
            run.rngs[0].bit_generator.state = meta["rng"][0]
        except (TypeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"checkpoint {checkpoint!r}: its random generator state is not valid ({exc}). "
                                  "Delete it, or pass resume=False.") from exc
        run.load_state(st)
        run.epoch = meta["epoch"]
        run.hist = meta["history"]
        run.ck_log = meta["history_log"]
        run.fresh = np.array(meta["fresh"], dtype=int)
        t0 -= meta["elapsed"]
        finished = bool(meta.get("finished")) and run.epoch > 0
    elif init_state is not None:
        run.load_state(_state_scaled(init_state, alpha, inverse=True))
    else:
        run.init_state()
    try:
        # a finished run (all epochs, or stopped at tol) is not run again: rerunning is idempotent
        interrupted = False if finished else run.run(progress=progress, checkpoint=checkpoint,
                                                     checkpoint_every=checkpoint_every, tol=p.tol, t0=t0)
    except DivergenceError as exc:
        partial = _user_result(_collect(run, True, [seed])[0], alpha, p_user)
        if alpha == 1.0:
            exc.partial = partial
            raise
        # the run's step eta is eta_user * alpha: so is its suggestion min(eta / 4, default)
        suggested = exc.suggested_eta / alpha
        msg = str(exc).replace(f"eta={p.eta:g}. Try eta={exc.suggested_eta:g}",
                               f"eta={p_user.eta:g}. Try eta={suggested:g}")
        raise DivergenceError(msg + " (objective values of the run on T*/||T*||)", epoch=exc.epoch,
                              iteration=exc.iteration, state=_state_scaled(exc.state, alpha),
                              suggested_eta=suggested, partial=partial,
                              last_finite_state=_state_scaled(exc.last_finite_state, alpha),
                              state_iteration=exc.state_iteration) from None
    if p.polish and not interrupted:
        try:
            _polish(run, p.polish)
        except KeyboardInterrupt:  # keep the (consistent) partly polished state, flagged
            interrupted = True
            run.hist[0]["polish_interrupted"] = True
    res = _user_result(_collect(run, return_numpy, [seed])[0], alpha, p_user)
    res.interrupted = interrupted
    return res


def _check_init_state(st, d, m):
    """Validate a user-given starting state; return it batched (B = 1) as NumPy copies."""
    if not isinstance(st, dict) or "U" not in st or "a" not in st:
        raise TypeError("init_state must be a dict with at least 'U' (d, m) and 'a' (m,)")
    unknown = set(st) - {"U", "a", "c", "chat", "switched"}
    if unknown:
        raise ValueError(f"init_state has unknown keys {sorted(unknown)}; allowed: U, a, c, chat, switched")
    U = np.array(to_numpy(st["U"]), dtype=float)
    if U.shape != (d, m):
        raise ValueError(f"init_state['U'] must have shape (d, m) = ({d}, {m}), got {U.shape}")
    if not np.all(np.isfinite(U)):
        raise ValueError("init_state['U'] contains NaN or infinite entries")
    nrm = np.linalg.norm(U, axis=0)
    if np.any(nrm == 0):
        raise ValueError("init_state['U'] has a zero column (c = 1/||u|| is undefined)")
    a = np.array(to_numpy(st["a"]), dtype=float)
    if a.shape != (m,) or not np.all(np.isin(a, (-1.0, 1.0))):
        raise ValueError(f"init_state['a'] must hold signs in {{-1, +1}} with shape ({m},), got shape {a.shape}")
    out = {"U": U, "a": a}
    for key, default, dtype in (("c", 1.0 / nrm, float), ("chat", 1.0 / nrm, float),
                                ("switched", np.ones(m, dtype=bool), bool)):
        v = np.array(to_numpy(st[key]), dtype=dtype) if st.get(key) is not None else default
        if v.shape != (m,):
            raise ValueError(f"init_state['{key}'] must have shape ({m},), got {v.shape}")
        if dtype is float and not np.all(np.isfinite(v) & (v > 0)):
            raise ValueError(f"init_state['{key}'] must be finite and > 0")
        out[key] = v
    return {k: v[None].copy() for k, v in out.items()}


def _collect(run, return_numpy, seeds):
    """One :class:`Result` per trial, from one device->host copy of the whole state."""
    out = []
    st = run.state_numpy(weights=True)
    s_host = st.pop("weights")
    s_all = s_host if return_numpy else run.weights()
    for b in range(run.B):
        if return_numpy:
            model = SymCP(s_all[b], st["U"][b], run.p.order)
        else:
            model = SymCP(s_all[b], run.U[b], run.p.order)
        out.append(Result(model=model, history=run.hist[b], params=run.p,
                          state={k: v[b] for k, v in st.items()}, seed=seeds[b]))
    return out


def _polish(run, steps):
    """Beyond the paper: remove the O(lam) floor of the regulariser.

    The weights are refitted by least squares (``G^{o l} s = (T*(u_i, ..., u_i))_i``),
    written back in the 2-homogeneous form (``a_i = sign s_i``, ``c_i = chat_i = 1/||u_i||``
    after rescaling ``u_i``), and then Algorithm 1's own iteration continues with
    ``lam = 0``, no re-initialisation and no mode switch; a last refit ends it.
    """
    xp, p = run.xp, run.p
    l = p.order
    n2 = run.tgt.norm2 * xp.ones(run.B)
    act = xp.asarray(run.active)

    def refit_and_normalise():
        G = run.U.swapaxes(-1, -2) @ run.U
        A = G**l
        rhs = xp.sum(run.U * run.tgt.contract(run.U), axis=-2)
        # minimum-norm least squares through the eigendecomposition of the PSD matrix A:
        # two columns on the same component make A singular, and a plain solve breaks down
        evals, evecs = xp.linalg.eigh(A)
        cut = 1e-10 * xp.max(xp.abs(evals), axis=-1, keepdims=True)
        inv = xp.where(evals > cut, 1.0 / xp.where(evals > cut, evals, 1.0), 0.0)
        s = (evecs @ (inv * (evecs.swapaxes(-1, -2) @ rhs[..., None])[..., 0])[..., None])[..., 0]
        s = xp.where(act[:, None], s, run.weights())
        nrm = xp.sqrt(xp.sum(run.U * run.U, axis=-2))
        # s_i u_i^{(x)l} = a_i ||v_i||^{2-l} v_i^{(x)l} with v_i = alpha_i u_i
        alpha = xp.maximum(xp.sqrt(xp.abs(s) * nrm ** (l - 2)), 1e-150)
        run.U = run.U * alpha[:, None, :]
        run.a = xp.where(s >= 0, 1.0, -1.0).astype(run.dtype)
        nv = xp.maximum(alpha * nrm, 1e-300)
        run.c, run.chat = 1.0 / nv, 1.0 / nv
        run.switched = xp.ones_like(run.switched)

    def record(t):
        fit = fit_terms(run.U, run.weights(), run.tgt)[0]
        rel = to_numpy(xp.sqrt(xp.maximum(2 * fit, 0) / n2))
        for b in range(run.B):
            run.hist[b]["polish"].append({"step": t, "rel_error": float(rel[b])})

    saved = run.p
    before = {k: getattr(run, k) for k in ("U", "a", "c", "chat", "switched")}
    run.p = replace(p, lam=0.0, mode_switch=False)
    try:
        refit_and_normalise()
        record(0)
        every = max(1, steps // 50)
        ev = run.evaluate()
        for t in range(1, steps + 1):
            _, new, ev = run.step(ev)
            run.U, run.c, run.chat, run.switched = new
            if t % every == 0 and t < steps:
                record(t)
        refit_and_normalise()
        record(steps)
    finally:
        run.p = saved
    # a trial whose polish went non-finite keeps its pre-polish state
    bad = ~np.isfinite(to_numpy(xp.sum(run.U, axis=(-1, -2)) + xp.sum(run.c, axis=-1)))
    if bad.any():
        keep = xp.asarray(bad)
        for k, v in before.items():
            cur = getattr(run, k)
            setattr(run, k, xp.where(keep.reshape((-1,) + (1,) * (cur.ndim - 1)), v, cur))
        for b in np.flatnonzero(bad):
            run.hist[b]["polish_failed"] = True
