"""Classical baselines: CP-ALS (TensorLy), the tensor power method, plain GD.

Every baseline takes a target (:class:`~tdcore.SymCP` or a dense symmetric
array) and returns a :class:`BaselineResult` with the same fields, so that the
book's comparison chapter and the benchmarks can time all methods alike:

* :func:`cp_als` -- alternating least squares for the CP decomposition, from
  TensorLy's ``parafac`` (an *optional* dependency: ``pip install tensorly`` or
  ``pip install tdcore[tensorly]``).  It works on the dense ``d**l`` array, so it
  is for small ``d`` only, and its model is not symmetric (one factor matrix per
  mode); a symmetrised read-out is returned next to it.
* :func:`power_method` -- the symmetric tensor power method with deflation
  (restarts, power iterations, subtract ``lambda u^{(x) l}``, repeat).  For a
  SymCP target it is implicit: ``T(., u, ..., u)`` comes from Gram products and
  the deflated tensor is kept as a longer SymCP sum, never as a dense array.
* :func:`plain_gd` -- gradient descent on the vanilla objective (2) of Wang et
  al. (2020), ``1/2 ||sum_i c_i u_i^{(x) l} - T*||^2``, batched over seeds.

For fair timing every result carries a per-iteration ``history`` of
``(time, rel_error)`` pairs, and :meth:`BaselineResult.time_to` (or
:func:`time_to_accuracy`) reads off the first time the relative error reached a
given accuracy.  ``target_error=`` stops a run as soon as that accuracy is
reached, so that "time to accuracy" is not inflated by iterations run after it.

The targets of the comparison chapter (well-separated, correlated, orthogonal
components) come from :func:`comparison_target`; :func:`compare_methods` runs
the methods side by side and :func:`comparison_table` renders the summary.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from ._backend import to_numpy
from ._objective import _as_operator, fit_terms
from ._tensor import SymCP, _contract_dense, check_target, inner, norm, rel_error
from ._validate import as_rng, check_choice, check_float, check_int, check_seed

__all__ = [
    "BaselineResult",
    "cp_als",
    "power_method",
    "plain_gd",
    "time_to_accuracy",
    "tensorly_available",
    "refit_weights",
    "comparison_target",
    "COMPONENT_TYPES",
    "compare_methods",
    "summarize_comparison",
    "comparison_table",
    "plot_time_to_accuracy",
    "race",
    "plot_race",
]

#: Component types of :func:`comparison_target`.
COMPONENT_TYPES = ("separated", "correlated", "orthogonal")


@dataclass
class BaselineResult:
    """Outcome of one baseline run.

    Attributes
    ----------
    method : str
        ``"cp_als"``, ``"power_method"`` or ``"plain_gd"``.
    model : SymCP
        A symmetric model.  For CP-ALS this is the symmetrised read-out of the
        (non-symmetric) CP factors, see :func:`cp_als`.
    rel_error : float
        ``||T - T*||_F / ||T*||_F`` of the method's own model (for CP-ALS: the
        non-symmetric CP model, which is what ALS optimises).
    elapsed : float
        Wall-clock seconds of the run (set-up such as ``to_dense`` included).
    n_iter : int
        Iterations performed (ALS sweeps; power iterations summed over all
        restarts and components; GD steps).
    history : dict
        ``"time"`` and ``"rel_error"``: lists recorded during the run (per ALS
        sweep, per deflation step, or every ``record_every`` GD steps), with
        ``time`` measured from the start of the run.
    params : dict
        The parameter values used.
    cp : tuple or None
        CP-ALS only: ``(weights, [A_1, ..., A_l])``, the raw TensorLy factors.
    sym_rel_error : float or None
        CP-ALS only: relative error of the symmetrised read-out ``model``.
    """

    method: str
    model: SymCP
    rel_error: float
    elapsed: float
    n_iter: int
    history: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    cp: tuple | None = None
    sym_rel_error: float | None = None

    def time_to(self, eps):
        """First recorded time at which the relative error was at most ``eps`` (nan if never)."""
        return time_to_accuracy(self.history.get("time", []), self.history.get("rel_error", []), eps)

    def succeeded(self, eps):
        """Whether the final relative error is at most ``eps``."""
        return bool(self.rel_error <= eps)


def time_to_accuracy(times, errors, eps):
    """First time at which ``errors`` drops to ``eps`` or below.

    Parameters
    ----------
    times, errors : sequences of equal length
        A run's recorded ``(time, rel_error)`` pairs, in order.
    eps : float
        The accuracy (relative error) to reach.

    Returns
    -------
    float
        The time, or ``nan`` when the accuracy is never reached.

    Examples
    --------
    >>> time_to_accuracy([0.1, 0.2, 0.3], [0.5, 0.04, 0.01], 0.05)
    0.2
    """
    eps = check_float("eps", eps, positive=True)
    times, errors = list(times), list(errors)
    if len(times) != len(errors):
        raise ValueError(f"times and errors must have equal lengths, got {len(times)} and {len(errors)}")
    for t, e in zip(times, errors):
        if e is not None and e <= eps:
            return float(t)
    return float("nan")


def tensorly_available():
    """True when the optional dependency TensorLy can be imported."""
    try:
        import tensorly  # noqa: F401
    except ImportError:
        return False
    return True


def _import_tensorly():
    try:
        import tensorly
        from tensorly.cp_tensor import cp_to_tensor
        from tensorly.decomposition import parafac
    except ImportError as exc:  # pragma: no cover - exercised only without tensorly
        raise ImportError(
            "tdcore.cp_als needs the optional dependency TensorLy. Install it with "
            "`pip install tensorly` or `pip install tdcore[tensorly]` (the 'tensorly' extra).") from exc
    return tensorly, parafac, cp_to_tensor


def _dense_numpy(target, max_bytes):
    if isinstance(target, SymCP):
        return np.asarray(to_numpy(target.to_dense(max_bytes=max_bytes)), dtype=np.float64)
    T = np.asarray(to_numpy(target), dtype=np.float64)
    if T.nbytes > max_bytes:
        raise MemoryError(f"the dense target needs {T.nbytes} bytes, above max_bytes={max_bytes}")
    return T


def refit_weights(factors, target, order=None, *, ridge=1e-12):
    """Least-squares weights for fixed unit directions.

    Solves ``min_w ||sum_i w_i u_i^{(x) l} - T*||_F`` for the columns ``u_i`` of
    ``factors``: the normal equations are ``(G^{o l}) w = (T*(u_i, ..., u_i))_i``
    with ``G = U^T U`` (a tiny ridge keeps them solvable for repeated columns).

    Parameters
    ----------
    factors : array, shape (d, k)
    target : SymCP or dense symmetric array
    order : int, optional
        Defaults to the target's order.
    ridge : float
        Relative Tikhonov term added to the diagonal.

    Returns
    -------
    SymCP
        ``sum_i w_i u_i^{(x) l}`` with the refitted weights.
    """
    target = check_target(target)
    U = np.asarray(to_numpy(factors), dtype=np.float64)
    if U.ndim != 2:
        raise ValueError(f"factors must have shape (d, k), got shape {U.shape}")
    l = target.order if isinstance(target, SymCP) else target.ndim
    if order is not None and order != l:
        raise ValueError(f"order={order} does not match the target's order {l}")
    rhs = _target_values(target, U)
    A = (U.T @ U) ** l
    A = A + ridge * max(float(np.max(np.abs(A))), 1e-300) * np.eye(A.shape[0])
    w = np.linalg.solve(A, rhs)
    return SymCP(w, U, l)


def _target_contract(target, U):
    """``T*(., u_j, ..., u_j)`` for each column of U (SymCP implicit, dense by contraction)."""
    if isinstance(target, SymCP):
        return np.asarray(to_numpy(target.contract(U)), dtype=np.float64)
    return np.asarray(to_numpy(_contract_dense(target, U)), dtype=np.float64)


def _target_values(target, U):
    """``T*(u_j, ..., u_j)`` for each column of U."""
    return np.sum(U * _target_contract(target, U), axis=0)


# ---------------------------------------------------------------------------
# CP-ALS (TensorLy)
# ---------------------------------------------------------------------------
def cp_als(target, rank, *, n_iter_max=500, tol=1e-10, init="random", seed=None, target_error=None,
           linesearch=False, max_bytes=2**28):
    """CP decomposition of the dense target by alternating least squares (TensorLy).

    A thin wrapper around :func:`tensorly.decomposition.parafac` with the NumPy
    backend.  The target is made dense (``to_dense``), so this is for small
    ``d`` only (``d**l`` entries).  ALS does not know the target is symmetric:
    it fits ``sum_r w_r a^{(1)}_r (x) ... (x) a^{(l)}_r`` with a separate factor
    matrix per mode.

    Parameters
    ----------
    target : SymCP or dense symmetric array
    rank : int
        Number of CP components (``rank = r`` or over-parameterised ``> r``).
    n_iter_max : int
        Maximum number of ALS sweeps.
    tol : float
        TensorLy's stopping rule: stop when the relative error decreases by less
        than ``tol`` in one sweep.
    init : {"random", "svd"}
        TensorLy's initialisation (``"svd"`` needs ``rank <= d`` per mode
        unfolding; TensorLy pads with random columns otherwise).
    seed : int, optional
        Seed of the random initialisation.
    target_error : float, optional
        Stop as soon as the relative error is at most this value (for timing to
        a fixed accuracy).
    linesearch : bool
        TensorLy's line-search acceleration.
    max_bytes : int
        Largest dense target allowed (default 256 MiB).

    Returns
    -------
    BaselineResult
        ``rel_error`` is that of the CP model; ``cp`` holds TensorLy's
        ``(weights, factors)``; ``model`` is the symmetrised read-out: for each
        component, the sign-aligned average of its ``l`` normalised mode
        factors, with weights refitted by least squares against the target
        (:func:`refit_weights`); ``sym_rel_error`` is its relative error.
        ``history`` has one ``(time, rel_error)`` entry per sweep, the first at
        the initialisation.

    Raises
    ------
    ImportError
        When TensorLy is not installed (install the ``tensorly`` extra).
    """
    tl, parafac, cp_to_tensor = _import_tensorly()
    target = check_target(target)
    rank = check_int("rank", rank, minimum=1)
    n_iter_max = check_int("n_iter_max", n_iter_max, minimum=1)
    tol = check_float("tol", tol, nonnegative=True)
    init = check_choice("init", init, ("random", "svd"))
    seed = check_seed(seed)
    if isinstance(seed, np.random.Generator):
        seed = int(seed.integers(2**31 - 1))
    target_error = check_float("target_error", target_error, positive=True, allow_none=True)

    t0 = time.perf_counter()
    T = _dense_numpy(target, max_bytes)
    l = T.ndim
    times, errors = [], []

    def callback(cp_tensor, err):
        times.append(time.perf_counter() - t0)
        errors.append(float(err))
        return bool(target_error is not None and err <= target_error)

    with tl.backend_context("numpy"):
        # return_errors=True makes TensorLy compute the error every sweep, which
        # the callback needs even when tol == 0.
        cp_tensor, _ = parafac(T, rank, n_iter_max=n_iter_max, init=init, tol=tol, random_state=seed,
                               return_errors=True, callback=callback, linesearch=linesearch,
                               normalize_factors=False)
        weights, factors = cp_tensor
        weights = np.asarray(weights, dtype=np.float64)
        factors = [np.asarray(f, dtype=np.float64) for f in factors]
        approx = np.asarray(cp_to_tensor((weights, factors)))
    tn = float(np.linalg.norm(T))
    err = float(np.linalg.norm(approx - T) / tn)
    elapsed = time.perf_counter() - t0
    sym = _symmetric_readout(factors, T)
    sym_err = rel_error(sym, T)
    return BaselineResult(
        method="cp_als", model=sym, rel_error=err, elapsed=elapsed, n_iter=max(len(errors) - 1, 0),
        history={"time": times, "rel_error": errors},
        params={"rank": rank, "n_iter_max": n_iter_max, "tol": tol, "init": init, "seed": seed,
                "target_error": target_error, "linesearch": linesearch, "order": l, "d": T.shape[0]},
        cp=(weights, factors), sym_rel_error=float(sym_err))


def _symmetric_readout(factors, T):
    """Sign-aligned mean of the normalised mode factors, weights refitted by least squares."""
    normed = [f / np.maximum(np.linalg.norm(f, axis=0, keepdims=True), 1e-300) for f in factors]
    ref = normed[0]
    acc = np.zeros_like(ref)
    for f in normed:
        sgn = np.sign(np.sum(f * ref, axis=0))
        sgn[sgn == 0] = 1.0
        acc += f * sgn
    nrm = np.linalg.norm(acc, axis=0, keepdims=True)
    U = np.where(nrm > 1e-12, acc / np.maximum(nrm, 1e-300), ref)
    return refit_weights(U, T)


# ---------------------------------------------------------------------------
# tensor power method with deflation
# ---------------------------------------------------------------------------
def power_method(target, rank, *, n_restarts=10, n_iter=100, seed=None, tol=1e-10, refit=False,
                 target_error=None):
    """Symmetric tensor power method with deflation.

    For ``k = 1, ..., rank``: start ``n_restarts`` power iterations
    ``u <- R(., u, ..., u) / ||R(., u, ..., u)||`` from random unit vectors on
    the current residual ``R`` (``R = T*`` for ``k = 1``), run each for at most
    ``n_iter`` steps (stopping early when every restart moved by less than
    ``tol``), keep the restart with the largest ``|R(u, ..., u)|``, refine it
    with another ``n_iter`` steps, and deflate: ``R <- R - lambda u^{(x) l}``
    with ``lambda = R(u, ..., u)``.  This is the robust tensor power method of
    Anandkumar, Ge, Hsu, Kakade & Telgarsky (2014) in its plain form.  It is
    exact for orthogonally decomposable tensors; with non-orthogonal
    components each deflation leaves cross-terms behind.

    For a SymCP target nothing dense is formed: ``R`` is the SymCP sum
    ``T* - sum_k lambda_k u_k^{(x) l}`` and ``R(., u, ..., u)`` costs
    ``O(d (r + k))`` per vector.  Dense targets use tensor contractions.

    Parameters
    ----------
    target : SymCP or dense symmetric array
    rank : int
        Number of components to extract.
    n_restarts : int
        Random starts per component (run together as one ``d x n_restarts`` block).
    n_iter : int
        Maximum power iterations per start (and for the final refinement).
    seed : int or numpy.random.Generator, optional
    tol : float
        Early stop when ``max_j ||u_j^new - u_j|| < tol`` (up to sign for even orders).
    refit : bool
        After deflation, refit all weights jointly by least squares
        (:func:`refit_weights`).  Not part of the classical method; helps when
        the components are correlated.
    target_error : float, optional
        Stop extracting components once the relative error is at most this.

    Returns
    -------
    BaselineResult
        ``model`` is the SymCP ``sum_k lambda_k u_k^{(x) l}``; ``history`` has
        one ``(time, rel_error)`` entry per extracted component.
    """
    target = check_target(target)
    rank = check_int("rank", rank, minimum=1)
    n_restarts = check_int("n_restarts", n_restarts, minimum=1)
    n_iter = check_int("n_iter", n_iter, minimum=1)
    tol = check_float("tol", tol, nonnegative=True)
    target_error = check_float("target_error", target_error, positive=True, allow_none=True)
    rng = as_rng(check_seed(seed))
    if isinstance(target, SymCP):
        target = target.to_numpy()
        target = SymCP(np.asarray(target.weights, np.float64), np.asarray(target.factors, np.float64), target.order)
        d, l = target.d, target.order
    else:
        target = np.asarray(to_numpy(target), dtype=np.float64)
        d, l = target.shape[0], target.ndim

    t0 = time.perf_counter()
    lams, us = [], []
    times, errors = [], []
    total_iter = 0
    tn2 = inner(target, target)

    def residual_contract(U):
        R = _target_contract(target, U)
        if us:
            V = np.stack(us, axis=1)
            R = R - V @ (np.asarray(lams)[:, None] * (V.T @ U) ** (l - 1))
        return R

    def iterate(U, steps):
        nonlocal total_iter
        for _ in range(steps):
            Y = residual_contract(U)
            nrm = np.linalg.norm(Y, axis=0, keepdims=True)
            Unew = Y / np.maximum(nrm, 1e-300)
            total_iter += U.shape[1]
            # compare up to sign (for even orders u and -u give the same component)
            diff = np.minimum(np.linalg.norm(Unew - U, axis=0), np.linalg.norm(Unew + U, axis=0))
            U = Unew
            if np.all(diff < tol):
                break
        return U

    model = None
    for _k in range(rank):
        U = rng.standard_normal((d, n_restarts))
        U /= np.linalg.norm(U, axis=0, keepdims=True)
        U = iterate(U, n_iter)
        vals = np.sum(U * residual_contract(U), axis=0)
        best = int(np.argmax(np.abs(vals)))
        u = iterate(U[:, best:best + 1], n_iter)[:, 0]
        lam = float(u @ residual_contract(u[:, None])[:, 0])
        lams.append(lam)
        us.append(u)
        model = SymCP(np.asarray(lams), np.stack(us, axis=1), l)
        if refit:
            model = refit_weights(model.factors, target)
            lams = list(np.asarray(model.weights))
        err = _rel_error_fast(model, target, tn2)
        times.append(time.perf_counter() - t0)
        errors.append(err)
        if target_error is not None and err <= target_error:
            break
    elapsed = time.perf_counter() - t0
    return BaselineResult(
        method="power_method", model=model, rel_error=errors[-1], elapsed=elapsed, n_iter=total_iter,
        history={"time": times, "rel_error": errors},
        params={"rank": rank, "n_restarts": n_restarts, "n_iter": n_iter, "tol": tol, "refit": refit,
                "target_error": target_error, "order": l, "d": d})


def _rel_error_fast(model, target, tn2):
    """Relative error from the Gram expansion with the target norm known; the automatic
    precise evaluation of :func:`tdcore.rel_error` where it would be dominated by rounding."""
    d2 = inner(model, model) - 2 * inner(model, target) + tn2
    if d2 < 1e-6 * tn2:  # below ~1e-3 relative: cancellation can dominate (sqrt(eps)-level noise)
        return rel_error(model, target)
    return math.sqrt(max(d2, 0.0) / tn2)


# ---------------------------------------------------------------------------
# plain gradient descent on the vanilla objective (2)
# ---------------------------------------------------------------------------
def plain_gd(target, m, *, seeds=(0,), iters=2000, eta=None, init_scale=1.0, target_error=None,
             record_every=10):
    """Gradient descent on the vanilla objective (2), batched over seeds.

    Minimises ``f(U, c) = 1/2 ||sum_i c_i u_i^{(x) l} - T*||_F^2`` over factors
    and weights jointly, with a fixed step, from ``u_i`` uniform on the sphere of
    radius ``init_scale`` and ``c_i = +-init_scale**(-l) / sqrt(m)`` (random
    signs; the initial model then has norm about 1 whatever ``init_scale``).
    This is the baseline "just run GD" of Wang et al. (2020), Section 3: with
    ``m = r`` it can stop at a spurious local minimum.

    Parameters
    ----------
    target : SymCP or dense symmetric array
    m : int
        Number of components.
    seeds : sequence of int
        One trial per seed, all run together (leading batch axis).
    iters : int
        Number of GD steps.
    eta : float, optional
        Step size; default ``0.45 / (l^2 max(||T*||, 1))`` (0.05 for ``l = 3``).
    init_scale : float
        Norm of the initial ``u_i``.
    target_error : float, optional
        Stop once every trial's relative error is at most this value.
    record_every : int
        Record ``(time, rel_error)`` every this many steps.

    Returns
    -------
    list of BaselineResult
        One per seed.  ``elapsed`` and ``history["time"]`` are the batch's wall
        time divided by the number of trials (an amortised per-trial time).
        Trials whose objective becomes non-finite are frozen at their last
        finite state (``params["diverged"]`` is True).
    """
    target = check_target(target)
    m = check_int("m", m, minimum=1)
    seeds = [check_seed(s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must name at least one trial")
    iters = check_int("iters", iters, minimum=1)
    init_scale = check_float("init_scale", init_scale, positive=True)
    target_error = check_float("target_error", target_error, positive=True, allow_none=True)
    record_every = check_int("record_every", record_every, minimum=1)
    tnorm = norm(target)
    l = target.order if isinstance(target, SymCP) else target.ndim
    d = target.d if isinstance(target, SymCP) else target.shape[0]
    if eta is None:
        eta = 0.45 / (l**2 * max(tnorm, 1.0))
    eta = check_float("eta", eta, positive=True)
    B = len(seeds)
    U = np.empty((B, d, m))
    c = np.empty((B, m))
    for b, s in enumerate(seeds):
        rng = as_rng(s)
        X = rng.standard_normal((d, m))
        U[b] = init_scale * X / np.linalg.norm(X, axis=0, keepdims=True)
        c[b] = rng.choice([-1.0, 1.0], size=m) * init_scale ** (-l) / math.sqrt(m)
    tgt = _as_operator(target, U)
    tn2 = tnorm**2
    active = np.ones(B, dtype=bool)
    times, errs = [], []
    t0 = time.perf_counter()
    n_done = 0
    f_ref = None
    prev = None
    for t in range(iters + 1):
        f, gU, gc, _ = fit_terms(U, c, tgt, need_grad_s=True)
        if f_ref is None:
            f_ref = np.maximum(f, 0.5 * tn2)
        bad = active & (~np.isfinite(f) | (f > 1e6 * f_ref))
        if bad.any():  # freeze diverged trials at their last finite state
            U = np.where(bad[:, None, None], prev[0], U)
            c = np.where(bad[:, None], prev[1], c)
            active &= ~bad
            f, gU, gc, _ = fit_terms(U, c, tgt, need_grad_s=True)
        rel = np.sqrt(np.maximum(2 * f, 0) / tn2)
        reached = target_error is not None and bool(np.all(rel[active] <= target_error))
        if t % record_every == 0 or t == iters or reached:
            times.append((time.perf_counter() - t0) / B)
            errs.append(rel.copy())
        if reached or t == iters:
            break
        prev = (U, c)
        if active.all():
            U = U - eta * gU
            c = c - eta * gc
        else:
            U = np.where(active[:, None, None], U - eta * gU, U)
            c = np.where(active[:, None], c - eta * gc, c)
        n_done = t + 1
    elapsed = (time.perf_counter() - t0) / B
    errs = np.array(errs)
    out = []
    for b, s in enumerate(seeds):
        model = SymCP(c[b], U[b], l)
        final = float(errs[-1, b])
        out.append(BaselineResult(
            method="plain_gd", model=model, rel_error=final, elapsed=elapsed, n_iter=n_done,
            history={"time": list(times), "rel_error": [float(e) for e in errs[:, b]]},
            params={"m": m, "seed": s, "iters": iters, "eta": eta, "init_scale": init_scale,
                    "target_error": target_error, "diverged": bool(not active[b]), "order": l, "d": d}))
    return out


# ---------------------------------------------------------------------------
# side-by-side comparison (the book's "Comparisons" chapter)
# ---------------------------------------------------------------------------
def comparison_target(kind, d, r, order=3, *, rho=0.7, max_corr=0.4, weights=None, seed=None, max_tries=10000):
    """A unit-norm rank-r target of one of three component types.

    Parameters
    ----------
    kind : {"separated", "correlated", "orthogonal"}
        * ``"separated"``: independent uniform unit vectors, redrawn until every
          pairwise ``|<v_j, v_k>|`` is at most ``max_corr``;
        * ``"correlated"``: ``v_k = sqrt(rho) g + sqrt(1 - rho) z_k`` with ``g, z_1,
          ..., z_r`` orthonormal, so every pair has correlation exactly ``rho``;
        * ``"orthogonal"``: a random orthonormal set.
    d, r, order : int
    rho : float
        Pairwise correlation of the ``"correlated"`` type, in (0, 1).
    max_corr : float
        Largest allowed pairwise ``|correlation|`` of the ``"separated"`` type.
    weights : sequence of float, optional
        Component weights before normalisation (default all ones).
    seed : int or numpy.random.Generator, optional
    max_tries : int
        Redraws allowed for ``"separated"``.

    Returns
    -------
    SymCP
        Normalised to ``||T*||_F = 1``.
    """
    kind = check_choice("kind", kind, COMPONENT_TYPES)
    d = check_int("d", d, minimum=1)
    r = check_int("r", r, minimum=1)
    rho = check_float("rho", rho, positive=True)
    if not rho < 1:
        raise ValueError(f"rho must lie in (0, 1), got {rho}")
    max_corr = check_float("max_corr", max_corr, positive=True)
    rng = as_rng(check_seed(seed))
    w = np.ones(r) if weights is None else np.asarray(weights, dtype=float)
    if w.shape != (r,):
        raise ValueError(f"weights must have shape (r,) = ({r},), got shape {w.shape}")
    if kind == "orthogonal":
        if r > d:
            raise ValueError(f"kind='orthogonal' needs r <= d, got r={r}, d={d}")
        Q, R = np.linalg.qr(rng.standard_normal((d, r)))
        V = Q * np.sign(np.diag(R))
    elif kind == "correlated":
        if r + 1 > d:
            raise ValueError(f"kind='correlated' needs r + 1 <= d, got r={r}, d={d}")
        Q, _ = np.linalg.qr(rng.standard_normal((d, r + 1)))
        V = math.sqrt(rho) * Q[:, :1] + math.sqrt(1 - rho) * Q[:, 1:]
    else:
        for _ in range(max_tries):
            V = rng.standard_normal((d, r))
            V /= np.linalg.norm(V, axis=0, keepdims=True)
            G = np.abs(V.T @ V - np.eye(r))
            if r == 1 or G.max() <= max_corr:
                break
        else:
            raise ValueError(f"no {r} directions in d={d} with pairwise |correlation| <= {max_corr} found in "
                             f"{max_tries} draws; raise max_corr or d")
    return SymCP(w, V, order).normalized()


def _default_methods(r, eps, *, gd_iters=5000, gd_eta=0.05, als_iter=1000, a1_epochs=None):
    """The method set of the comparison chapter: name -> callable(target, seed) -> record."""
    def a1(m):
        def run(T, seed):
            from ._algorithm1 import algorithm1

            t0 = time.perf_counter()
            res = algorithm1(T, m, seed=seed, backend="numpy", tol=eps, epochs=a1_epochs)
            el = time.perf_counter() - t0
            h = res.history
            return {"rel_error": res.rel_error, "elapsed": el,
                    "time_to_eps": time_to_accuracy(h["elapsed"], h["rel_error"], eps)}
        return run

    def gd(m):
        def run(T, seed):
            try:
                from ._landscape import vanilla_gd
            except ImportError:  # pragma: no cover - the landscape module ships with tdcore
                vanilla_gd = None
            if vanilla_gd is None:
                res = plain_gd(T, m, seeds=[seed], iters=gd_iters, eta=gd_eta, target_error=eps)[0]
                return {"rel_error": res.rel_error, "elapsed": res.elapsed, "time_to_eps": res.time_to(eps)}
            # the GD of the landscape chapter: u_i on the unit sphere, weights +-1, both trained
            t0 = time.perf_counter()
            res = vanilla_gd(T, m, steps=gd_iters, eta=gd_eta, seed=seed, weights="train", hit_threshold=eps,
                             stop_when_hit=True, divergence="mark")
            el = time.perf_counter() - t0
            err = float(res.rel_error)
            return {"rel_error": err, "elapsed": el, "time_to_eps": el if err <= eps else float("nan")}
        return run

    def als(R, init):
        def run(T, seed):
            res = cp_als(T, R, seed=seed, init=init, n_iter_max=als_iter, target_error=eps)
            return {"rel_error": res.rel_error, "elapsed": res.elapsed, "time_to_eps": res.time_to(eps)}
        return run

    def pm(T, seed):
        res = power_method(T, r, seed=seed, target_error=eps)
        return {"rel_error": res.rel_error, "elapsed": res.elapsed, "time_to_eps": res.time_to(eps)}

    methods = {
        "Algorithm 1 (m=3r)": a1(3 * r),
        "GD (m=r)": gd(r),
        "GD (m=3r)": gd(3 * r),
    }
    if tensorly_available():
        methods.update({
            "CP-ALS (rank r, random init)": als(r, "random"),
            "CP-ALS (rank r, SVD init)": als(r, "svd"),
            "CP-ALS (rank 2r, random init)": als(2 * r, "random"),
        })
    methods["power method + deflation"] = pm
    return methods


def compare_methods(kinds=COMPONENT_TYPES, *, d=10, r=4, order=3, seeds=range(4), eps=0.02, rho=0.7,
                    methods=None, gd_iters=5000, gd_eta=0.05, warmup=True):
    """Run every method on the same targets and seeds.

    For each component type and seed one target is drawn
    (:func:`comparison_target` with that seed) and every method runs on it once,
    unbatched, with the seed as its own random seed.  Each run stops as soon as
    its relative error is at most ``eps`` (so its elapsed time is the time to
    that accuracy) or when its iteration budget is spent.

    Parameters
    ----------
    kinds : sequence of {"separated", "correlated", "orthogonal"}
    d, r, order : int
    seeds : iterable of int
    eps : float
        Accuracy defining success (final relative error ``<= eps``).
    rho : float
        Correlation of the correlated type.
    methods : dict, optional
        ``name -> callable(target, seed)`` returning a dict with ``rel_error``,
        ``elapsed`` and ``time_to_eps``; by default Algorithm 1 (``m = 3r``,
        :func:`tdcore.algorithm1` with its default parameters and ``tol=eps``),
        plain GD on objective (2) with ``m = r`` and ``3r`` (``tdcore.vanilla_gd``
        with trained weights, the GD of the landscape chapter), CP-ALS
        (:func:`cp_als`; rank ``r`` with random and SVD initialisation, rank
        ``2r``; left out when TensorLy is missing) and :func:`power_method`.
    gd_iters, gd_eta : int, float
        Step budget and step size of plain GD.
    warmup : bool
        Run every method once on a tiny problem first (imports, caches), so
        that the first timed run is not penalised.

    Returns
    -------
    list of dict
        One record per (kind, method, seed): ``kind, method, seed, rel_error,
        success, time_to_eps, elapsed``.
    """
    eps = check_float("eps", eps, positive=True)
    for k in kinds:
        check_choice("kinds", k, COMPONENT_TYPES)
    default = methods is None
    if default:
        methods = _default_methods(r, eps, gd_iters=gd_iters, gd_eta=gd_eta)
    seeds = list(seeds)
    if warmup:
        small = comparison_target("orthogonal", max(r + 1, 3), r, order, seed=0)
        if default:
            # a few iterations of each default method: imports and caches, not a full run
            for fn in _default_methods(r, eps, gd_iters=5, gd_eta=gd_eta, als_iter=2, a1_epochs=1).values():
                fn(small, 0)
        else:
            for fn in methods.values():
                fn(small, 0)
    records = []
    for kind in kinds:
        for s in seeds:
            T = comparison_target(kind, d, r, order, rho=rho, seed=s)
            for name, fn in methods.items():
                out = fn(T, s)
                records.append({"kind": kind, "method": name, "seed": s, "rel_error": float(out["rel_error"]),
                                "success": bool(out["rel_error"] <= eps * (1 + 1e-9)),
                                "time_to_eps": float(out["time_to_eps"]), "elapsed": float(out["elapsed"])})
    return records


def summarize_comparison(records):
    """Success rate and median time to accuracy per (method, kind).

    Returns
    -------
    dict
        ``(method, kind) -> {"success_rate", "n", "median_time", "median_error"}``;
        ``median_time`` is over successful runs only (``nan`` if none).
    """
    out = {}
    keys = []
    for rec in records:
        key = (rec["method"], rec["kind"])
        if key not in out:
            out[key] = []
            keys.append(key)
        out[key].append(rec)
    summary = {}
    for key in keys:
        recs = out[key]
        ok = [r for r in recs if r["success"]]
        summary[key] = {
            "success_rate": len(ok) / len(recs),
            "n": len(recs),
            "median_time": float(np.median([r["time_to_eps"] for r in ok])) if ok else float("nan"),
            "median_error": float(np.median([r["rel_error"] for r in recs])),
        }
    return summary


def comparison_table(records, *, fmt="markdown", time_unit="ms"):
    """Render the summary as a table: one row per method, per kind "success, time".

    Parameters
    ----------
    records : list of dict
        From :func:`compare_methods`.
    fmt : {"markdown", "html"}
    time_unit : {"ms", "s"}

    Returns
    -------
    str
        Cells read ``k/n, t`` with ``k`` successes out of ``n`` runs and ``t`` the
        median time to accuracy of the successful runs (``--`` if none).
    """
    check_choice("fmt", fmt, ("markdown", "html"))
    check_choice("time_unit", time_unit, ("ms", "s"))
    scale = 1000.0 if time_unit == "ms" else 1.0
    summary = summarize_comparison(records)
    methods, kinds = [], []
    for m, k in summary:
        if m not in methods:
            methods.append(m)
        if k not in kinds:
            kinds.append(k)
    header = ["method"] + [f"{k}: success, median time ({time_unit})" for k in kinds]
    rows = []
    for m in methods:
        row = [m]
        for k in kinds:
            s = summary.get((m, k))
            if s is None:
                row.append("")
                continue
            ok = int(round(s["success_rate"] * s["n"]))
            t = s["median_time"]
            tt = "--" if not np.isfinite(t) else (f"{t * scale:.0f}" if time_unit == "ms" else f"{t:.2f}")
            row.append(f"{ok}/{s['n']}, {tt}")
        rows.append(row)
    if fmt == "markdown":
        lines = ["| " + " | ".join(header) + " |", "| " + " | ".join(["---"] * len(header)) + " |"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    cell = "<td>{}</td>".format
    html = ['<table class="table tdcore-comparison">',
            "<thead><tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr></thead>", "<tbody>"]
    html += ["<tr>" + "".join(cell(c) for c in r) + "</tr>" for r in rows]
    html += ["</tbody>", "</table>"]
    return "\n".join(html)


def plot_time_to_accuracy(records, *, ax=None, kind=None, eps=None, title=None):
    """Time to accuracy of every successful run, one row of dots per method.

    Failed runs are drawn as crosses at the right edge.

    Parameters
    ----------
    records : list of dict
        From :func:`compare_methods`.
    ax : matplotlib Axes, optional
    kind : str, optional
        Restrict to one component type (default: all, in different markers).
    eps : float, optional
        Only used in the axis label.
    title : str, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    import matplotlib.pyplot as plt

    from ._book import method_color

    if ax is None:
        _, ax = plt.subplots()
    recs = [r for r in records if kind is None or r["kind"] == kind]
    methods = []
    for r in recs:
        if r["method"] not in methods:
            methods.append(r["method"])
    kinds = []
    for r in recs:
        if r["kind"] not in kinds:
            kinds.append(r["kind"])
    markers = dict(zip(COMPONENT_TYPES, ("o", "s", "^")))
    ok_times = [r["time_to_eps"] for r in recs if r["success"]]
    right = 2.0 * max(ok_times) if ok_times else 1.0
    colors = {"Algorithm 1": method_color("algorithm1"), "GD": method_color("gd"),
              "CP-ALS": "#E69F00", "power": method_color("deflation")}
    for i, m in enumerate(methods):
        color = next((c for k, c in colors.items() if m.startswith(k)), method_color("reference"))
        for j, k in enumerate(kinds):
            rs = [r for r in recs if r["method"] == m and r["kind"] == k]
            y = i + (j - (len(kinds) - 1) / 2) * 0.22
            ok = [r["time_to_eps"] for r in rs if r["success"]]
            bad = [r for r in rs if not r["success"]]
            lab = k if i == 0 else None
            ax.scatter(ok, [y] * len(ok), marker=markers.get(k, "o"), color=color, s=18, label=lab,
                       edgecolors="none")
            if bad:
                ax.scatter([right] * len(bad), [y] * len(bad), marker="x", color=color, s=22)
    ax.set_xscale("log")
    ax.set_yticks(range(len(methods)))
    ax.set_yticklabels(methods)
    ax.invert_yaxis()
    what = f"relative error {eps:g}" if eps is not None else "accuracy"
    ax.set_xlabel(f"time to {what} (s, log scale); x = not reached")
    if len(kinds) > 1:
        leg = ax.legend(loc="upper left", title="components")
        for h in leg.legend_handles:
            h.set_color(method_color("reference"))
    if title:
        ax.set_title(title)
    return ax


def race(kind="correlated", *, d=10, r=4, order=3, seed=0, rho=0.7, eps=0.02, gd_iters=3000, gd_eta=0.05):
    """Error-versus-time curves of four methods on one target (for the chapter's explorer).

    Runs Algorithm 1 (``m = 3r``), plain GD (``m = 3r``), CP-ALS (rank ``r``, SVD
    initialisation; skipped without TensorLy) and the power method on
    ``comparison_target(kind, d, r, order, rho=rho, seed=seed)``, each until its
    relative error is at most ``eps`` or its budget is spent.

    Returns
    -------
    dict
        ``name -> (times, rel_errors)`` (lists).  Algorithm 1's and GD's
        per-iteration records carry no clock: their times are the run's wall
        time spread evenly over its iterations.
    """
    from ._algorithm1 import algorithm1

    T = comparison_target(kind, d, r, order, rho=rho, seed=seed)
    curves = {}
    t0 = time.perf_counter()
    res = algorithm1(T, 3 * r, seed=seed, backend="numpy", tol=eps, record_every=10)
    el = time.perf_counter() - t0
    its = res.history["iterations"]
    H = res.params.iters
    idx = np.array([(it["epoch"] - 1) * H + it["iteration"] for it in its], dtype=float)
    total = len(res.history["epoch"]) * H
    # per-iteration records carry no clock: spread the run's wall time evenly over its iterations
    curves["Algorithm 1 (m=3r)"] = (list(el * idx / total) + [el],
                                    [it["rel_error"] for it in its] + [res.rel_error])
    try:
        from ._landscape import vanilla_gd
    except ImportError:  # pragma: no cover
        vanilla_gd = None
    if vanilla_gd is not None:
        t0 = time.perf_counter()
        g = vanilla_gd(T, 3 * r, steps=gd_iters, eta=gd_eta, seed=seed, weights="train", hit_threshold=eps,
                       stop_when_hit=True, divergence="mark", record_every=max(1, gd_iters // 100))
        el = time.perf_counter() - t0
        steps = np.asarray(g.history["step"], dtype=float)
        per_step = el / max(steps[-1], 1.0)
        curves["GD (m=3r)"] = (list(steps * per_step), [float(e) for e in g.history["rel_error"]])
    else:  # pragma: no cover
        g = plain_gd(T, 3 * r, seeds=[seed], iters=gd_iters, eta=gd_eta, target_error=eps)[0]
        curves["GD (m=3r)"] = (g.history["time"], g.history["rel_error"])
    if tensorly_available():
        c = cp_als(T, r, seed=seed, init="svd", target_error=eps, n_iter_max=1000)
        curves["CP-ALS (rank r, SVD init)"] = (c.history["time"], c.history["rel_error"])
    p = power_method(T, r, seed=seed, target_error=eps)
    curves["power method + deflation"] = (p.history["time"], p.history["rel_error"])
    return curves


def plot_race(ax=None, kind="correlated", seed=0, rho=0.7, eps=0.02, d=10, r=4, order=3):
    """Plot :func:`race`: relative error against wall time, log-log.

    Parameters are those of :func:`race`; returns the Axes.
    """
    import matplotlib.pyplot as plt

    from ._book import method_color

    if ax is None:
        _, ax = plt.subplots()
    curves = race(kind, d=d, r=r, order=order, seed=seed, rho=rho, eps=eps)
    colors = {"Algorithm 1": method_color("algorithm1"), "GD": method_color("gd"), "CP-ALS": "#E69F00",
              "power": method_color("deflation")}
    for name, (t, e) in curves.items():
        color = next((c for k, c in colors.items() if name.startswith(k)), method_color("reference"))
        t, e = np.asarray(t, dtype=float), np.asarray(e, dtype=float)
        keep = t > 0  # log axis: the t = 0 record (the initialisation) is left out
        ax.plot(t[keep], np.maximum(e[keep], 1e-6), "o-" if keep.sum() < 30 else "-", color=color,
                label=name, ms=3)
    ax.axhline(eps, color=method_color("reference"), ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("wall time (s)")
    ax.set_ylabel("relative error")
    extra = f", $\\rho$={rho:g}" if kind == "correlated" else ""
    ax.set_title(f"{kind} components{extra}: d={d}, r={r}, order {order}, seed {seed}")
    ax.legend(loc="lower left")
    return ax
