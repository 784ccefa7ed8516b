"""The public entries ``algorithm1`` and ``algorithm1_batch``: validation, normalisation, scaling back."""

from __future__ import annotations

import math
import os
import time
from dataclasses import replace

import numpy as np

from .._backend import get_backend, to_numpy, xp_of
from .._objective import FactoredTarget
from .._tensor import SymCP, _scaled_symcp, check_target, norm
from .._validate import (as_rng, check_bool, check_dtype, check_float, check_int, check_nonzero_target, check_path,
                        check_seed, check_seeds)
from .checkpoint import (CheckpointError, _check_checkpoint_matches, _init_fingerprint, _load_checkpoint,
                         _seed_record, target_fingerprint)
from .params import (BatchResult, DivergenceError, Params, _check_run_memory, _warn_below_floor, default_params)
from .run import _Run, _collect, _polish, _prepare_targets


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


def _rank_bound(target):
    """The number of components of a SymCP target (a bound on its rank); 1 for a dense one."""
    return target.m if isinstance(target, SymCP) else 1


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
        (with the same explicit parameters, if any) to rounding.
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
    _warn_below_floor(p_b.tol, p_b.lam, max(_rank_bound(t) for t in targets), p_b.polish, "algorithm1_batch")
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
        target (``target_fingerprint``), the parameters, the dtype and the
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

    Notes
    -----
    Ctrl-C (``KeyboardInterrupt``) is caught: the partial result is returned with
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
    _warn_below_floor(p.tol, p.lam, _rank_bound(target), p.polish, "algorithm1")
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


