"""The batched iteration of Algorithm 1 (:class:`_Run`): steps, checks off the hot path, re-initialisation."""

from __future__ import annotations

import math
import time
from dataclasses import replace

import numpy as np

from .._backend import to_numpy
from .._objective import FactoredTarget, _coldot, _ipow, _mT, fit_terms, make_target_operator
from .._tensor import SymCP, subspace_basis
from .._util import unit_columns as _unit_columns
from .checkpoint import _save_checkpoint
from .params import DivergenceError, Result, _empty_history, default_params


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
        if check_every is None:
            check_every = self.CHECK_EVERY_HOST if self.xp is np else self.CHECK_EVERY
        self.check_every = int(check_every)
        self._post = None  # the fused element-wise tail of a step (see _make_post)
        self._kernels = None  # fused kernels of evaluate on CuPy (see _make_fused)
        self._badk = None  # the divergence test (see _make_badk)
        self._t1 = None  # work array of _step_host1
        self._host1_consts = None  # see _factored
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
            # G is not needed after this (n2 and nrm are taken already): square it in place at l = 3
            Gp = xp.multiply(G, G, out=G) if l == 3 else (_ipow(G, l - 1) if l > 3 else G)
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
        if self.xp is np and self.B == 1 and self._all_active and ev[3][0] == "m" and self._factored:
            return self._step_host1(ev)
        nrm = ev[4]
        U2 = self._apply_plan(ev[3], self.U, None if self._all_active else self._active_dev)
        G2 = _mT(U2) @ U2
        nrm2, c2, chat2, switched2, sw = self._post_step(nrm, G2.diagonal(axis1=-2, axis2=-1), self.c, self.chat,
                                                         self.switched)
        nsw = sw.sum(axis=-1) if p.mode_switch else None
        new = (U2, c2, chat2, switched2)
        return nsw, new, self.evaluate(U2, c2, chat2, G=G2, nrm=nrm2)

    def _step_host1(self, ev):
        """:meth:`step` for a single trial on NumPy (m side, factored target), with the fewest calls.

        The operations of :meth:`step` and :meth:`evaluate`, in the same order, on
        the 2-D arrays of the one trial: a NumPy call on a 2-D array costs less than
        on a stacked one, the three reductions are single dot products, and the
        mode-switch test is skipped once every column has switched (it could only
        find nothing).  The results agree with the batched code to rounding (its
        stacked products and sums may round differently), not bit for bit.
        """
        p = self.p
        l, lam = p.order, p.lam
        el = p.eta * l
        inv = 1.0 / el
        M, Q = ev[3][1][0], ev[3][2][0]
        U, V = self.U[0], self.tgt.V[0]
        d, m = U.shape
        U2 = V @ Q
        if self._t1 is None or self._t1.shape != (d, m):
            self._t1 = np.empty((d, m), dtype=U.dtype)  # U M (internal: no state keeps it)
        np.matmul(U, M, out=self._t1)
        U2 -= self._t1
        G2 = U2.T @ U2
        n2 = G2.diagonal()
        nrm = ev[4][0]
        nrm2 = np.sqrt(n2)
        ratio = nrm / nrm2
        c2 = self.c[0] * ratio
        chat2 = self.chat[0] * ratio
        sw0 = self.switched[0]
        switched2, nsw = sw0, None
        if p.mode_switch:
            n_new = 0
            if not sw0.all():
                thr = p.switch_threshold
                sw = (~sw0) & (nrm <= thr) & (nrm2 > thr)
                n_new = int(np.count_nonzero(sw))
                if n_new:
                    c2 = np.where(sw, c2 / p.switch_factor, c2)
                    switched2 = sw0 | sw
            nsw = np.array([n_new], dtype=np.int64)
        # the evaluation at the new state (as evaluate(), m side)
        s = self.a[0] * _ipow(c2, l - 2)
        h = _ipow(chat2, l - 2) * _ipow(nrm2, l - 2)
        reg = lam * float(h @ n2)
        k = s * math.sqrt(el)
        Mn = _ipow(G2, l - 1) if l > 2 else G2.copy()
        Mn *= k[:, None]
        Mn *= k
        model2 = float(np.vdot(Mn, G2)) * inv
        h1 = h * (el * lam)
        h1 -= 1.0
        Mn.reshape(m * m)[:: m + 1] += h1
        A = V.T @ U2
        Qn = _ipow(A, l - 1) if l > 2 else A.copy()
        Qn *= self._wcol
        Qn *= el * s
        cross = float(np.vdot(Qn, A)) * inv
        fit = 0.5 * (model2 - 2.0 * cross + self._tn2)
        new = (U2[None], c2[None], chat2[None], switched2[None])
        ev2 = (np.array([fit + reg]), np.array([fit]), np.array([reg]), ("m", Mn[None], Qn[None]), nrm2[None])
        return nsw, new, ev2

    @property
    def _factored(self):
        """True for a factored target (and then the one-trial constants of :meth:`_step_host1` are set)."""
        if self._host1_consts is None:
            tgt = self.tgt
            ok = isinstance(tgt, FactoredTarget)
            if ok:
                self._wcol = tgt.w.reshape(-1)[:, None] if tgt.w.ndim == 1 else tgt.w[0][:, None]
                self._tn2 = float(np.asarray(tgt.norm2).reshape(-1)[0])
            self._host1_consts = ok
        return self._host1_consts

    def _set_active(self, active):
        self.active = np.asarray(active, dtype=bool)
        self._all_active = bool(self.active.all())
        self._active_dev = self.xp.asarray(self.active)

    # -- the loop ------------------------------------------------------------------
    #: Iterations between two reads of the device-side divergence / tol flags.
    CHECK_EVERY = 32
    #: The same on NumPy, where a read costs no device sync: only the replay after a set flag
    #: matters, and 4 was the fastest of 1, 4, 8 and 32 on runs stopped at ``tol``
    #: (orthogonal d = 30, r = 5 and random d = 10, r = 4: 3.1 ms against 4.3 ms with 32).
    CHECK_EVERY_HOST = 4

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


def _progress(enabled, total, initial=0):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="Algorithm 1", unit="epoch")



def _prepare_targets(targets, be, dtype):
    """Stack B targets (all SymCP of one shape, or one shared target) into an operator."""
    if len(targets) == 1 or all(t is targets[0] for t in targets):
        t = targets[0]
        op = make_target_operator(t, be, dtype)
        if isinstance(op, FactoredTarget):
            op = FactoredTarget(op.V[None], op.w[None], op.order, norm2=op.norm2[None])  # the same target
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

