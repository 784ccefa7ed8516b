"""Classical baselines: CP-ALS (TensorLy) and the tensor power method.

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

Plain gradient descent on the vanilla objective (2) is :func:`tdcore.vanilla_gd`
(in ``tdcore._dynamics``, with the other gradient dynamics); its result has the
same ``time_to`` helper.

For fair timing every result carries a per-iteration ``history`` of
``(time, rel_error)`` pairs, and :meth:`BaselineResult.time_to` (or
:func:`tdcore.time_to_accuracy`) reads off the first time the relative error reached a
given accuracy.  ``target_error=`` stops a run as soon as that accuracy is
reached, so that "time to accuracy" is not inflated by iterations run after it.

The targets of the comparison chapter and of the benchmarks (well-separated,
correlated, orthogonal components) come from :func:`comparison_target`; the
chapter's side-by-side runs live in :mod:`tdcore.book.comparisons`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from ._backend import to_numpy
from ._stats import time_to_accuracy
from ._tensor import SymCP, _contract_dense, check_target, inner, rel_error
from ._validate import (as_rng, check_bool, check_choice, check_factor_matrix, check_float, check_int, check_memory,
                        check_nonzero_target, check_seed)

__all__ = [
    "BaselineResult",
    "cp_als",
    "power_method",
    "tensorly_available",
    "refit_weights",
    "comparison_target",
    "COMPONENT_TYPES",
]

#: Component types of :func:`comparison_target`.
COMPONENT_TYPES = ("separated", "correlated", "orthogonal")


@dataclass
class BaselineResult:
    """Outcome of one baseline run.

    Attributes
    ----------
    method : str
        ``"cp_als"`` or ``"power_method"``.
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
    d = target.d if isinstance(target, SymCP) else target.shape[0]
    U = np.asarray(to_numpy(check_factor_matrix("factors", to_numpy(factors), d)), dtype=np.float64)
    check_memory("refit_weights", 8 * 3 * U.shape[1] ** 2, detail=f"{U.shape[1]} x {U.shape[1]} normal equations")
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
    check_nonzero_target(target)
    rank = check_int("rank", rank, minimum=1)
    linesearch = check_bool("linesearch", linesearch)
    max_bytes = check_int("max_bytes", max_bytes, minimum=1)
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
    check_nonzero_target(target)
    rank = check_int("rank", rank, minimum=1)
    refit = check_bool("refit", refit)
    n_restarts = check_int("n_restarts", n_restarts, minimum=1)
    n_iter = check_int("n_iter", n_iter, minimum=1)
    tol = check_float("tol", tol, nonnegative=True)
    target_error = check_float("target_error", target_error, positive=True, allow_none=True)
    rng = as_rng(check_seed(seed))
    d_ = target.d if isinstance(target, SymCP) else target.shape[0]
    r_ = target.m if isinstance(target, SymCP) else 0
    # the restart block and its contraction (d x n_restarts, r x n_restarts), the deflated components
    check_memory("power_method", 8 * (4 * d_ * n_restarts + 2 * (r_ + rank) * n_restarts + 2 * d_ * rank),
                 detail=f"d={d_}, n_restarts={n_restarts}, rank={rank}")
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
