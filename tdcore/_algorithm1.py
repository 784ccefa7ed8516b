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

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from ._backend import get_backend, to_numpy, xp_of
from ._objective import FactoredTarget, _coldot, _ipow, _mT, fit_terms, make_target_operator
from ._tensor import SymCP, _scaled_symcp, check_target, norm, subspace_basis
from ._validate import as_rng, check_dtype, check_float, check_int, check_seed

__all__ = [
    "algorithm1",
    "algorithm1_batch",
    "default_params",
    "Params",
    "Result",
    "BatchResult",
    "DivergenceError",
]


class DivergenceError(FloatingPointError):
    """A run diverged (NaN, inf, or the objective grew by orders of magnitude).

    Attributes
    ----------
    epoch, iteration : int
        Where it happened (1-based epoch, 1-based iteration within the epoch).
    state : dict
        The last finite state (NumPy arrays ``U``, ``a``, ``c``, ``chat``, ``switched``),
        i.e. the parameters before the step that diverged.
    suggested_eta : float
        A step size to try instead (a quarter of the one that diverged).
    partial : Result or None
        History up to the divergence.
    """

    def __init__(self, message, *, epoch, iteration, state, suggested_eta, partial=None):
        super().__init__(message)
        self.epoch, self.iteration, self.state = epoch, iteration, state
        self.suggested_eta, self.partial = suggested_eta, partial


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
                 divergence="raise", blowup=1e4):
        self.p, self.rngs, self.be, self.xp, self.dtype = p, rngs, be, be.xp, dtype
        self.B = len(rngs)
        self.tgt = targets  # internal operator, batch-aware
        self.basis = basis  # (B, d, k) orthonormal bases of S, or None
        self.record_every, self.callback = record_every, callback
        self.divergence, self.blowup = divergence, blowup
        self.epoch = 0
        self.active = np.ones(self.B, dtype=bool)
        self.hist = [_empty_history() for _ in range(self.B)]
        self.fresh = np.zeros(self.B, dtype=int)  # latest re-initialised column per trial
        self._fit_goal = None  # (tol, fit value at relative error tol) per trial
        self.stop_requested = False  # set from another thread: stop like Ctrl-C

    # -- state ---------------------------------------------------------------------
    def init_state(self):
        p, xp, d, m = self.p, self.xp, self.p.d, self.p.m
        U = np.empty((self.B, d, m))
        a = np.empty((self.B, m))
        for b, rng in enumerate(self.rngs):
            U[b] = p.delta * _unit_columns(rng, d, m)
            a[b] = rng.choice([-1.0, 1.0], size=m)
        self.U = xp.asarray(U, dtype=self.dtype)
        self.a = xp.asarray(a, dtype=self.dtype)
        nrm = xp.sqrt(xp.sum(self.U * self.U, axis=-2))
        self.c = self._c_init() / nrm
        self.chat = 1.0 / nrm
        self.switched = xp.zeros((self.B, m), dtype=bool)

    def _c_init(self):
        return self.p.switch_factor if self.p.mode_switch else 1.0

    def state_numpy(self, b=None):
        # copies: re-initialisation updates a, c, chat and switched in place
        arrs = {k: np.array(to_numpy(getattr(self, k)), copy=True) for k in ("U", "a", "c", "chat", "switched")}
        if b is None:
            return arrs
        return {k: v[b].copy() for k, v in arrs.items()}

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

    def evaluate(self, U=None, c=None, chat=None, G=None):
        """(objective, fit, regularizer, step plan, column norms) at the given or current state.

        ``G``: the Gram matrix ``U^T U`` when the caller has it already.

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
        s = self.a * _ipow(c, l - 2)
        if G is None:
            G = _mT(U) @ U
        n2 = G.diagonal(axis1=-2, axis2=-1)
        B, d, m = U.shape
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

    def reinit(self):
        p, xp = self.p, self.xp
        nrm = to_numpy(xp.sqrt(xp.sum(self.U * self.U, axis=-2)))
        j = np.argmin(nrm, axis=1)
        newu = np.empty((self.B, p.d))
        newa = np.empty(self.B)
        for b, rng in enumerate(self.rngs):
            newu[b] = p.delta * _unit_columns(rng, p.d, 1)[:, 0]
            newa[b] = rng.choice([-1.0, 1.0])
        idx = np.arange(self.B)
        act = self.active
        # only active trials are re-initialised; frozen (diverged) ones keep their state
        self.U = self.U.copy()
        self.U[xp.asarray(idx[act]), :, xp.asarray(j[act])] = xp.asarray(newu[act], dtype=self.dtype)
        for name, val in (("a", newa), ("c", np.full(self.B, self._c_init() / p.delta)),
                          ("chat", np.full(self.B, 1.0 / p.delta))):
            arr = getattr(self, name)
            arr[xp.asarray(idx[act]), xp.asarray(j[act])] = xp.asarray(val[act], dtype=self.dtype)
        self.switched[xp.asarray(idx[act]), xp.asarray(j[act])] = False
        self.fresh = np.where(act, j, self.fresh)
        return j

    def step(self, ev):
        """One iteration from the current state, whose evaluation ``ev`` is given.

        Returns ``(nsw, new_state, new_ev)``: the number of mode switches per trial,
        the new ``(U, c, chat, switched)`` and its evaluation (reused by the next step).

        The gradient step ``U - eta grad_U f`` is formed from the plan that
        :meth:`evaluate` built (for ``m`` up to a few times ``d``: ``U' = V Q - U M``,
        two matrix products and one pass over the d x m array).  The new column norms are the
        diagonal of the next Gram matrix, which the next evaluation needs anyway.
        """
        xp, p = self.xp, self.p
        nrm = ev[4]
        U2 = self._apply_plan(ev[3], self.U, None if self.active.all() else xp.asarray(self.active))
        G2 = _mT(U2) @ U2
        nrm2 = xp.sqrt(G2.diagonal(axis1=-2, axis2=-1))
        ratio = nrm / nrm2
        c2 = self.c * ratio
        chat2 = self.chat * ratio
        switched2 = self.switched
        nsw = None
        if p.mode_switch:
            thr = p.switch_threshold
            sw = (~self.switched) & (nrm <= thr) & (nrm2 > thr)
            c2 = xp.where(sw, c2 / p.switch_factor, c2)
            switched2 = self.switched | sw
            nsw = sw.sum(axis=-1)
        new = (U2, c2, chat2, switched2)
        return nsw, new, self.evaluate(U2, c2, chat2, G=G2)

    # -- the loop ------------------------------------------------------------------
    def run(self, *, progress=False, checkpoint=None, checkpoint_every=1, tol=None, t0=None, on_epoch=None):
        p, xp = self.p, self.xp
        t0 = time.perf_counter() if t0 is None else t0
        f_ref = None
        bar = _progress(progress, p.epochs, initial=self.epoch)
        interrupted = False
        try:
            while self.epoch < p.epochs:
                k = self.epoch + 1
                f_before = to_numpy(self.evaluate()[0])
                j = self.reinit() if p.reinit else np.full(self.B, -1)
                ev = self.evaluate()
                f_after = to_numpy(ev[0])
                if f_ref is None:
                    f_ref = np.maximum(f_before, 0.5 * to_numpy(self.tgt.norm2 * xp.ones(self.B)))
                nsw_epoch = xp.zeros(self.B, dtype=xp.int64)
                reached = False
                for t in range(1, p.iters + 1):
                    if self.stop_requested:
                        raise KeyboardInterrupt
                    nsw, new, ev2 = self.step(ev)
                    new, ev2 = self._check_divergence(new, ev2, ev, f_ref, k, t)
                    if self.record_every and (t - 1) % self.record_every == 0:
                        self._record_iteration(k, t, ev[0], ev[1], new, nsw)
                    self.U, self.c, self.chat, self.switched = new
                    ev = ev2
                    if nsw is not None:
                        nsw_epoch += nsw
                    if tol is not None and self._reached(ev[1], tol):
                        reached = True
                        break
                nsw_epoch = to_numpy(nsw_epoch)
                f, fit, reg = to_numpy(ev[0]), to_numpy(ev[1]), to_numpy(ev[2])
                rel = np.sqrt(np.maximum(2 * fit, 0) / to_numpy(self.tgt.norm2 * xp.ones(self.B)))
                pb = self._pb_norm2()
                el = time.perf_counter() - t0
                for b in range(self.B):
                    h = self.hist[b]
                    h["epoch"].append(k)
                    h["rel_error"].append(float(rel[b]))
                    h["objective"].append(float(f[b]))
                    h["regularizer"].append(float(reg[b]))
                    h["n_switches"].append(int(nsw_epoch[b]))
                    h["reinit_index"].append(int(j[b]))
                    h["f_before_reinit"].append(float(f_before[b]))
                    h["f_after_reinit"].append(float(f_after[b]))
                    h["pb_norm2"].append(None if pb is None else float(pb[b]))
                    h["elapsed"].append(el)
                self.epoch = k
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(rel_error=f"{np.nanmedian(rel):.3g}")
                stop = False
                if self.callback is not None:
                    stop = bool(self.callback(self._epoch_info(rel)))
                if on_epoch is not None:
                    on_epoch(self)
                if checkpoint and (k % checkpoint_every == 0 or k == p.epochs):
                    _save_checkpoint(checkpoint, self, t0)
                if reached:
                    for b in range(self.B):
                        self.hist[b]["stopped_at"] = [k, t]
                    stop = True
                if stop:
                    break
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if bar is not None:
                bar.close()
        return interrupted

    def _reached(self, fit, tol):
        """True when every active trial's relative error is at most ``tol``."""
        if self._fit_goal is None or self._fit_goal[0] != tol:
            n2 = to_numpy(self.tgt.norm2 * self.xp.ones(self.B))
            self._fit_goal = (tol, 0.5 * tol * tol * n2)
        ok = to_numpy(fit) <= self._fit_goal[1]
        if ok.all():
            return True
        if self.active.all():
            return False
        return bool(self.active.any() and ok[self.active].all())

    def _epoch_info(self, rel):
        return {"epoch": self.epoch, "rel_error": rel.copy(), "state": self.state_numpy(), "params": self.p,
                "history": self.hist}

    def _pb_norm2(self):
        if self.basis is None:
            return None
        Q = self.basis
        PU = self.U - Q @ (Q.swapaxes(-1, -2) @ self.U)
        return to_numpy(self.xp.sum(PU * PU, axis=(-1, -2)))

    def _record_iteration(self, k, t, f, fit, new, nsw=None):
        """Per-iteration record of step t: values before the step, and what the step did."""
        xp = self.xp
        U2, c2 = new[0], new[1]
        s_old = self.weights()
        s_new = self.a * c2 ** (self.p.order - 2)
        # ||T_t - T_{t-1}||_F^2 via Gram matrices of [U_new, U_old]
        W = xp.concatenate([U2, self.U], axis=-1)
        w = xp.concatenate([s_new, -s_old], axis=-1)
        G = W.swapaxes(-1, -2) @ W
        change = xp.sqrt(xp.maximum(xp.sum(w[:, :, None] * G**self.p.order * w[:, None, :], axis=(-1, -2)), 0))
        idx = xp.asarray(self.fresh)
        ar = xp.arange(self.B)
        fresh_u = self.U[ar, :, idx]  # (B, d)
        rec_f, rec_fit, rec_ch = to_numpy(f), to_numpy(fit), to_numpy(change)
        rec_sw = np.zeros(self.B, dtype=int) if nsw is None else to_numpy(nsw)
        fresh_norm = to_numpy(xp.sqrt(xp.sum(fresh_u * fresh_u, axis=-1)))
        if self.basis is not None:
            proj = (self.basis.swapaxes(-1, -2) @ fresh_u[:, :, None])[:, :, 0]
            fresh_ps = to_numpy(xp.sqrt(xp.sum(proj * proj, axis=-1)))
        else:
            fresh_ps = None
        n2 = to_numpy(self.tgt.norm2 * xp.ones(self.B))
        for b in range(self.B):
            self.hist[b]["iterations"].append({
                "epoch": k, "iteration": t, "objective": float(rec_f[b]), "fit": float(rec_fit[b]),
                "rel_error": math.sqrt(max(2 * rec_fit[b], 0) / n2[b]), "step_change": float(rec_ch[b]),
                "fresh_index": int(self.fresh[b]), "fresh_norm": float(fresh_norm[b]),
                "fresh_ps_norm": None if fresh_ps is None else float(fresh_ps[b]),
                "n_switches": int(rec_sw[b])})

    def _check_divergence(self, new, ev_new, ev_old, f_ref, k, t):
        """Catch NaN/inf or a blow-up of the objective in the iteration it happens."""
        f2 = to_numpy(ev_new[0])
        ok = f2 <= self.blowup * f_ref  # False for NaN and inf too
        if ok.all():
            return new, ev_new
        bad = ~ok & self.active
        if not bad.any():
            return new, ev_new
        if self.divergence == "raise":
            b = int(np.flatnonzero(bad)[0])
            raise DivergenceError(
                f"Algorithm 1 diverged in epoch {k}, iteration {t} (trial {b}): the objective became "
                f"{f2[b]:.3g} (reference {f_ref[b]:.3g}) with eta={self.p.eta:g}. Try eta={self.p.eta / 4:g} "
                "or a smaller delta.",
                epoch=k, iteration=t, state=self.state_numpy(b), suggested_eta=self.p.eta / 4)
        # "freeze": keep the last finite state of the diverged trials and stop updating them
        xp = self.xp
        keep = xp.asarray(bad)
        U2, c2, chat2, sw2 = new
        new_state = (xp.where(keep[:, None, None], self.U, U2), xp.where(keep[:, None], self.c, c2),
                     xp.where(keep[:, None], self.chat, chat2), xp.where(keep[:, None], self.switched, sw2))
        self.active = self.active & ~bad
        for b in np.flatnonzero(bad):
            self.hist[b]["diverged_at"] = (k, t)
        # the frozen trials are back at their last finite state: evaluate the mixed state afresh
        return new_state, self.evaluate(*new_state[:3])


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
def _save_checkpoint(path, run, t0):
    st = run.state_numpy()
    meta = {
        "params": run.p.to_dict(),
        "epoch": run.epoch,
        "rng": [r.bit_generator.state for r in run.rngs],
        "history": run.hist,
        "active": run.active.tolist(),
        "fresh": run.fresh.tolist(),
        "elapsed": time.perf_counter() - t0,
        "dtype": str(np.dtype(run.dtype)),
    }
    tmp = str(path) + ".tmp"
    with open(tmp, "wb") as fh:
        np.savez(fh, meta=np.array(json.dumps(meta, default=_json_default)), **st)
    os.replace(tmp, path)


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o))


def _load_checkpoint(path):
    with np.load(path, allow_pickle=False) as z:
        meta = json.loads(str(z["meta"]))
        st = {k: z[k] for k in ("U", "a", "c", "chat", "switched")}
    return meta, st


# -- public API ----------------------------------------------------------------------
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
    d, order = target.shape[0], len(target.shape)
    p = default_params(d, order, m, norm(target), epochs=epochs, iters=iters, delta=delta, eta=eta, lam=lam)
    polish = check_int("polish", polish, minimum=0)
    tol = check_float("tol", tol, positive=True, allow_none=True)
    return Params(**{**p.to_dict(), "reinit": bool(reinit), "mode_switch": bool(mode_switch), "polish": polish,
                     "tol": tol})


def algorithm1_batch(targets, m, *, seeds, epochs=None, iters=None, delta=None, eta=None, lam=None,
                     backend="auto", dtype=None, reinit=True, mode_switch=True, polish=0, tol=None,
                     record_every=None, callback=None, divergence="freeze", progress=False, return_numpy=True,
                     workers=1):
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
    Other parameters
        As :func:`algorithm1`.

    Returns
    -------
    BatchResult
    """
    if divergence not in ("freeze", "raise"):
        raise ValueError(f"divergence must be 'freeze' or 'raise', got {divergence!r}")
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must name at least one trial")
    if isinstance(targets, (list, tuple)):
        targets = [check_target(t) for t in targets]
        if len(targets) != len(seeds):
            raise ValueError(f"got {len(targets)} targets for {len(seeds)} seeds; give one target or one per seed")
    else:
        targets = [check_target(targets)] * len(seeds)
    m = check_int("m", m, minimum=1)
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
    rngs = [as_rng(check_seed(s)) for s in seeds]
    workers = check_int("workers", workers, minimum=1)
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
               progress=False, checkpoint=None, checkpoint_every=1, resume=True, return_numpy=True, init_state=None):
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
        Save the state every ``checkpoint_every`` epochs; when the file exists and
        ``resume`` is true the run continues from it and gives exactly the result
        of an uninterrupted run with the same seed.
    return_numpy : bool
        Return NumPy arrays (default) rather than backend arrays.
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
    KeyboardInterrupt is caught: the partial result is returned with
    ``interrupted=True``.
    """
    target = check_target(target)
    m = check_int("m", m, minimum=1)
    seed = check_seed(seed)
    # the run works on T* / ||T*|| (scale invariance) and is scaled back at the end
    t_int, alpha = _normalise_target(target)
    p = _run_params(target.shape[0], len(target.shape), m, alpha, epochs, iters, delta, eta, lam, reinit,
                    mode_switch, polish, tol)
    p_user = _user_params(p, alpha, eta, lam, delta)
    be = get_backend(backend)
    dt = check_dtype(dtype)
    rec = check_int("record_every", record_every, minimum=1, allow_none=True)
    checkpoint_every = check_int("checkpoint_every", checkpoint_every, minimum=1)
    op, bases = _prepare_targets([t_int], be, dt)
    basis = None if bases is None else be.asarray(np.stack(bases), dt)
    rng = as_rng(seed)
    run = _Run(op, p, [rng], be, dt, basis=basis, record_every=rec, callback=_user_callback(callback, [alpha], p_user),
               divergence="raise")
    t0 = time.perf_counter()
    if checkpoint and resume and os.path.exists(checkpoint):
        meta, st = _load_checkpoint(checkpoint)
        saved = Params(**meta["params"])
        if saved != p:
            raise ValueError(f"checkpoint {checkpoint} was written with different parameters:\n  saved: {saved}\n"
                             f"  now:   {p}\nDelete it or pass resume=False.")
        if meta["dtype"] != str(np.dtype(dt)):
            raise ValueError(f"checkpoint {checkpoint} used dtype {meta['dtype']}, this run {np.dtype(dt)}")
        run.load_state(st)
        run.epoch = meta["epoch"]
        run.rngs[0].bit_generator.state = meta["rng"][0]
        run.hist = meta["history"]
        run.fresh = np.array(meta["fresh"], dtype=int)
        t0 -= meta["elapsed"]
    elif init_state is not None:
        run.load_state(_state_scaled(_check_init_state(init_state, p.d, m), alpha, inverse=True))
    else:
        run.init_state()
    try:
        interrupted = run.run(progress=progress, checkpoint=checkpoint, checkpoint_every=checkpoint_every, tol=p.tol,
                              t0=t0)
    except DivergenceError as exc:
        partial = _user_result(_collect(run, True, [seed])[0], alpha, p_user)
        if alpha == 1.0:
            exc.partial = partial
            raise
        msg = str(exc).replace(f"eta={p.eta:g}. Try eta={p.eta / 4:g}",
                               f"eta={p_user.eta:g}. Try eta={p_user.eta / 4:g}")
        raise DivergenceError(msg + " (objective values of the run on T*/||T*||)", epoch=exc.epoch,
                              iteration=exc.iteration, state=_state_scaled(exc.state, alpha),
                              suggested_eta=p_user.eta / 4, partial=partial) from None
    if p.polish and not interrupted:
        _polish(run, p.polish)
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
    out = []
    st = run.state_numpy()
    s_all = run.weights()
    for b in range(run.B):
        if return_numpy:
            model = SymCP(to_numpy(s_all)[b], st["U"][b], run.p.order)
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
