"""Code of the chapter *Bad local minima exist* (chapters/bad_minima.ipynb): Theorem 2, checked numerically.

* :func:`bad_local_minimum` builds the construction of Theorem 2 of Wang, Wu,
  Lee, Ma & Ge (2020) as an exact symmetric CP target and a point ``(U, c)``;
  :func:`check_local_minimum` certifies it numerically (gradient, Hessian
  spectrum, random perturbations), :func:`bad_minimum_report` does so for
  several ``(l, r, d)``.
* :func:`gd_from_bad_minimum` runs plain GD (``tdcore.vanilla_gd``) from a
  perturbation of it; :func:`reinit_escape` runs Algorithm 1 from it
  (:func:`algorithm1_from_state`), with and without re-initialisation.
* :func:`spurious_frequency` counts how often plain GD from a random start ends
  at a spurious point, against the width ``m``.

The construction stays here, in the chapter's module: it is an example built
for the theorem, not a tool of the library.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .._algorithm1 import algorithm1
from .._dynamics import vanilla_gd
from .._objective import fit_objective
from .._stats import success_rate
from .._tensor import SymCP, check_target, random_target
from .._validate import as_rng, check_float, check_int, check_int_list, check_order, check_seeds
from .style import legend, method_color, new_ax, plain_log_ticks
from .tables import markdown_table
from .._validate import check_float_list, check_matrix

__all__ = [
    "bad_local_minimum", "to_homogeneous", "numerical_hessian", "check_local_minimum", "LocalMinCheck",
    "algorithm1_from_state", "bad_minimum_report", "bad_minimum_table", "gd_from_bad_minimum",
    "reinit_escape", "ReinitEscape", "spurious_frequency", "SpuriousFrequency", "spurious_table",
    "plot_hessian_spectrum", "plot_perturbation_test", "plot_reinit_escape", "plot_spurious_frequency",
    "explore_bad_minimum",
]


# ---------------------------------------------------------------------------
# argument helpers
# ---------------------------------------------------------------------------
# ---------------------------------------------------------------------------
# the construction (Theorem 2)
# ---------------------------------------------------------------------------
def _placement_weights(order, nodes):
    """Weights w_k with sum_k w_k t_k^p = [p == 2] for p = 0..l (Vandermonde solve)."""
    t = np.asarray(nodes, dtype=float)
    Vm = t[None, :] ** np.arange(order + 1)[:, None]  # (l+1, n)
    rhs = np.zeros(order + 1)
    rhs[2] = 1.0
    return np.linalg.solve(Vm, rhs)


def bad_local_minimum(d, r, order, m=None, *, sign=1):
    """Theorem 2's bad local minimum of objective (2), with an exact symmetric CP target.

    All components equal ``u_i = e_1 / m^{1/l}`` with weights ``c_i = 1``, so the
    model is ``T = e_1^{(x) l}``.  The target is chosen so that the residual is

        ``T - T* = sum_{j=2}^{r+1} E_j``,

    where ``E_j`` is the sum of the ``C(l, 2)`` distinct tensors with ``e_j`` in two
    of the ``l`` slots and ``e_1`` in the others (an orthonormal family).  Hence
    ``f = ||sum_j E_j||^2 / 2 = l (l-1) r / 4`` while the global minimum is 0.

    Each ``E_j`` is written exactly with ``l + 1`` rank-one terms: for distinct
    nodes ``t_0..t_l``, ``(e_1 + t e_j)^{(x) l} = sum_p t^p S_p`` with ``S_p`` the
    sum of placements of ``p`` copies of ``e_j``, and weights solving
    ``sum_k w_k t_k^p = [p = 2]`` (a Vandermonde system) give
    ``sum_k w_k (e_1 + t_k e_j)^{(x) l} = S_2 = E_j``.  So ``T*`` has ``r (l+1) + 1``
    components, the rank bound of the theorem.

    Parameters
    ----------
    d, r, order : int
        ``order >= 3``, ``d > r >= 1``.
    m : int, optional
        Number of model components (default ``r (l+1) + 1``, the smallest ``m`` for
        which the theorem guarantees a global minimum of value 0).
    sign : {1, -1}
        ``-1`` flips the residual, ``T - T* = -sum_j E_j`` (a control: then the
        point is a saddle, not a minimum).

    Returns
    -------
    target : SymCP
        ``T*`` with ``r (l+1) + 1`` components (not normalised).
    U : ndarray (d, m)
    c : ndarray (m,)

    Examples
    --------
    >>> import tdcore
    >>> T, U, c = bad_local_minimum(4, 1, 3)
    >>> T.m, U.shape, round(float(tdcore.vanilla_objective(U, c, T)), 12)
    (5, (4, 5), 1.5)
    """
    order = check_int("order", order, minimum=3)
    r = check_int("r", r, minimum=1)
    d = check_int("d", d, minimum=2)
    if not d > r:
        raise ValueError(f"the construction needs d > r (directions e_2..e_(r+1)), got d={d}, r={r}")
    m = r * (order + 1) + 1 if m is None else check_int("m", m, minimum=1)
    if sign not in (1, -1):
        raise ValueError(f"sign must be 1 or -1, got {sign!r}")
    nodes = np.linspace(-1.0, 1.0, order + 1)
    w = _placement_weights(order, nodes)
    e = np.eye(d)
    factors = [e[:, 0]]
    weights = [1.0]
    for j in range(1, r + 1):
        for t_k, w_k in zip(nodes, w):
            factors.append(e[:, 0] + t_k * e[:, j])
            weights.append(-sign * w_k)  # T* = e1^l - sign * sum_j E_j
    target = SymCP(np.array(weights), np.array(factors).T, order)
    U = np.tile(e[:, [0]] / m ** (1.0 / order), (1, m))
    c = np.ones(m)
    return target, U, c


def to_homogeneous(U, c, order):
    """Write ``sum_i c_i u_i^{(x) l}`` in Algorithm 1's 2-homogeneous form.

    Returns ``(V, a, ci)`` with ``a_i = sign(c_i)``, ``v_i = u_i (|c_i| ||u_i||^{l-2})^{1/2}``
    and ``ci = 1 / ||v_i||``, so that ``a_i ci^{l-2} v_i^{(x) l} = c_i u_i^{(x) l}``.
    """
    order = check_order(order)
    U = check_matrix("U", U)
    c = np.asarray(c, dtype=float)
    if c.shape != (U.shape[1],):
        raise ValueError(f"c must have shape ({U.shape[1]},), got {c.shape}")
    nrm = np.linalg.norm(U, axis=0)
    if np.any(nrm == 0) or np.any(c == 0):
        raise ValueError("to_homogeneous needs non-zero u_i and c_i")
    alpha = np.sqrt(np.abs(c) * nrm ** (order - 2))
    V = U * alpha[None, :]
    return V, np.sign(c), 1.0 / np.linalg.norm(V, axis=0)


# ---------------------------------------------------------------------------
# numerical certificate
# ---------------------------------------------------------------------------
def _pack(U, c, train_weights):
    return np.concatenate([U.T.ravel(), c]) if train_weights else U.T.ravel().copy()


def _unpack(theta, d, m, c_fixed, train_weights):
    U = theta[: d * m].reshape(m, d).T
    c = theta[d * m:] if train_weights else c_fixed
    return U, c


def _obj_grad(target, theta, d, m, c_fixed, train_weights):
    U, c = _unpack(theta, d, m, c_fixed, train_weights)
    f, gU, gc = fit_objective(U, c, target, grad=True)
    g = np.concatenate([gU.T.ravel(), gc]) if train_weights else gU.T.ravel()
    return float(f), g


def numerical_hessian(target, U, c, *, h=1e-5, train_weights=True):
    """Hessian of objective (2) at ``(U, c)`` by central differences of the exact gradient.

    Parameters
    ----------
    target : SymCP or dense array
    U : array (d, m)
    c : array (m,)
    h : float
        Difference step (error ``O(h^2)``).
    train_weights : bool
        Include the weights ``c`` as variables (default), or only ``U``.

    Returns
    -------
    ndarray, shape (P, P)
        Symmetrised Hessian; variables ordered as ``u_1, ..., u_m`` (each ``d``
        coordinates) then ``c_1, ..., c_m``.
    """
    target = check_target(target)
    U = check_matrix("U", U)
    c = np.asarray(c, dtype=float)
    h = check_float("h", h, positive=True)
    d, m = U.shape
    theta = _pack(U, c, train_weights)
    P = theta.size
    H = np.empty((P, P))
    for k in range(P):
        e = np.zeros(P)
        e[k] = h
        gp = _obj_grad(target, theta + e, d, m, c, train_weights)[1]
        gm = _obj_grad(target, theta - e, d, m, c, train_weights)[1]
        H[:, k] = (gp - gm) / (2 * h)
    return 0.5 * (H + H.T)


@dataclass
class LocalMinCheck:
    """Numerical certificate of a (non-strict) local minimum, from :func:`check_local_minimum`.

    Attributes
    ----------
    objective : float
    grad_norm : float
    hessian_eigenvalues : ndarray (ascending)
    min_eigenvalue : float
    null_dim : int
        Number of eigenvalues with ``|lambda| <= tol`` (the flat directions).
    tol : float
        Tolerance used for zero eigenvalues (relative to the largest).
    radii : ndarray
        Perturbation sizes of the random test.
    random_min_change : ndarray
        Per radius, the smallest ``f(theta + rho xi) - f(theta)`` over random unit ``xi``.
    random_frac_decrease : ndarray
        Per radius, the fraction of random perturbations that decreased ``f`` (beyond round-off).
    eigen_min_change : ndarray
        Per radius, the smallest change along ``+-`` every Hessian eigenvector (flat ones included).
    changes : ndarray (n_radii, n_perturb)
        All random changes.
    is_local_min : bool
        Gradient ~0, no negative eigenvalue beyond ``tol``, and no perturbation decreased ``f``.
    """

    objective: float
    grad_norm: float
    hessian_eigenvalues: np.ndarray
    min_eigenvalue: float
    null_dim: int
    tol: float
    radii: np.ndarray
    random_min_change: np.ndarray
    random_frac_decrease: np.ndarray
    eigen_min_change: np.ndarray
    changes: np.ndarray
    is_local_min: bool


def check_local_minimum(target, U, c, *, radii=(1e-1, 1e-2, 1e-3), n_perturb=200, seed=0, h=1e-5,
                        tol=1e-6, train_weights=True):
    """Check numerically that ``(U, c)`` is a local minimum of objective (2).

    Computes the gradient, the Hessian (:func:`numerical_hessian`) and its
    spectrum, and evaluates the objective at ``n_perturb`` random perturbations of
    each size in ``radii`` (uniform directions in parameter space) and along
    ``+-`` each Hessian eigenvector.

    Parameters
    ----------
    target : SymCP or dense array
    U : array (d, m)
    c : array (m,)
    radii : sequence of float
    n_perturb : int
    seed : int
    h : float
        Finite-difference step of the Hessian.
    tol : float
        Eigenvalues with ``|lambda| <= tol * max(1, max |lambda|)`` count as zero
        (the finite-difference Hessian is accurate to about ``h^2``).  A change
        above ``-1e-10 max(1, f)`` counts as "no decrease" (round-off).
    train_weights : bool

    Returns
    -------
    LocalMinCheck
    """
    target = check_target(target)
    U = check_matrix("U", U)
    c = np.asarray(c, dtype=float)
    d, m = U.shape
    if c.shape != (m,):
        raise ValueError(f"c must have shape ({m},), got {c.shape}")
    radii = np.array(check_float_list("radii", radii, positive=True))
    n_perturb = check_int("n_perturb", n_perturb, minimum=1)
    tol = check_float("tol", tol, positive=True)
    rng = as_rng(seed)
    theta = _pack(U, c, train_weights)
    f0, g = _obj_grad(target, theta, d, m, c, train_weights)
    H = numerical_hessian(target, U, c, h=h, train_weights=train_weights)
    lam, Q = np.linalg.eigh(H)
    scale = max(1.0, float(np.max(np.abs(lam))))
    null_dim = int(np.sum(np.abs(lam) <= tol * scale))
    slack = 1e-10 * max(abs(f0), 1.0)  # round-off of the Gram-matrix objective

    def change(th):
        Uc, cc = _unpack(th, d, m, c, train_weights)
        return float(fit_objective(Uc, cc, target)) - f0

    P = theta.size
    changes = np.empty((radii.size, n_perturb))
    eig_min = np.empty(radii.size)
    for k, rho in enumerate(radii):
        X = rng.standard_normal((n_perturb, P))
        X /= np.linalg.norm(X, axis=1, keepdims=True)
        changes[k] = [change(theta + rho * x) for x in X]
        eig_min[k] = min(min(change(theta + rho * q), change(theta - rho * q)) for q in Q.T)
    rand_min = changes.min(axis=1)
    frac = np.mean(changes < -slack, axis=1)
    gnorm = float(np.linalg.norm(g))
    ok = gnorm <= tol * scale and lam[0] >= -tol * scale and np.all(rand_min >= -slack) and np.all(eig_min >= -slack)
    return LocalMinCheck(f0, gnorm, lam, float(lam[0]), null_dim, tol, radii, rand_min, frac, eig_min, changes,
                         bool(ok))


def bad_minimum_report(configs, *, n_perturb=100, radii=(1e-1, 1e-2, 1e-3), seed=0):
    """Verify Theorem 2's construction for several ``(order, r, d)`` (one row each).

    Each row holds the measured objective and its predicted value ``l (l-1) r / 4``,
    the gradient norm, the smallest Hessian eigenvalue, the dimension of the
    Hessian's null space and its prediction ``(2m - 1) + (d - r - 1)(m - 1)`` (the
    flat directions: moving along ``e_1`` or rescaling weights, and the unused
    directions ``e_k``, ``k > r + 1``, in which only the sum of the moves is
    penalised), the largest fraction of random perturbations that decreased the
    objective, the smallest change along the Hessian's eigenvectors and the
    verdict of :func:`check_local_minimum`.

    Parameters
    ----------
    configs : sequence of (order, r, d)
    n_perturb, radii, seed
        As :func:`check_local_minimum`.

    Returns
    -------
    rows : list of dict
    checks : list of LocalMinCheck
    """
    rows, checks = [], []
    for cfg in configs:
        if len(cfg) != 3:
            raise ValueError(f"each config must be (order, r, d), got {cfg!r}")
        order, r, d = cfg
        target, U, c = bad_local_minimum(d, r, order)
        m = U.shape[1]
        chk = check_local_minimum(target, U, c, n_perturb=n_perturb, radii=radii, seed=seed)
        checks.append(chk)
        rows.append({"order": order, "r": r, "d": d, "m": m, "objective": chk.objective,
                     "predicted": order * (order - 1) * r / 4, "grad_norm": chk.grad_norm,
                     "min_eigenvalue": chk.min_eigenvalue, "null_dim": chk.null_dim,
                     "null_predicted": (2 * m - 1) + (d - r - 1) * (m - 1), "params": chk.hessian_eigenvalues.size,
                     "max_frac_decrease": float(chk.random_frac_decrease.max()),
                     "min_eigen_change": float(chk.eigen_min_change.min()), "local_min": chk.is_local_min})
    return rows, checks


# ---------------------------------------------------------------------------
# dynamics from the bad minimum
# ---------------------------------------------------------------------------
def algorithm1_from_state(target, U, a, *, c=None, chat=None, switched=None, epochs=10, iters=None, delta=None,
                          eta=None, lam=None, seed=None, reinit=True, mode_switch=True, record_every=None):
    """Run Algorithm 1 (``tdcore.algorithm1``'s own update loop) from a given state.

    ``tdcore.algorithm1`` starts from a random small initialisation unless given
    ``init_state``; this driver loads a state ``(U, a, c, chat, switched)`` into
    it and runs its epochs unchanged: re-initialise the smallest column (if
    ``reinit``), then ``iters`` gradient steps with the scalar mode switch.

    Parameters
    ----------
    target : SymCP or dense array
    U : array (d, m)
        Components ``u_i`` of the model ``sum_i a_i c_i^{l-2} u_i^{(x) l}``.
    a : array (m,)
        Signs.
    c, chat : array (m,), optional
        Default ``1 / ||u_i||`` (a state after the mode switch).
    switched : array of bool (m,), optional
        Default all True (the components have already switched).
    epochs, iters, delta, eta, lam, seed, reinit, mode_switch, record_every
        As :func:`tdcore.algorithm1` (``None`` takes its default rule).

    Returns
    -------
    tdcore.Result
    """
    U = check_matrix("U", U)
    epochs = check_int("epochs", epochs, minimum=1)
    state = {"U": U, "a": a, "c": c, "chat": chat, "switched": switched}
    return algorithm1(target, U.shape[1], init_state=state, epochs=epochs, iters=iters, delta=delta, eta=eta,
                      lam=lam, seed=seed, backend="numpy", reinit=reinit, mode_switch=mode_switch,
                      record_every=record_every)


def gd_from_bad_minimum(d, r, order, *, radius=1e-2, steps=3000, eta=0.02, seed=0):
    """Plain GD on objective (2) (``U`` and ``c`` trained) from a random perturbation of Theorem 2's point.

    The perturbation is Gaussian, scaled to Euclidean norm ``radius`` in the joint
    ``(U, c)`` parameter space.

    Returns
    -------
    result : tdcore.GDResult
    f0 : float
        The objective at the unperturbed point, ``l (l-1) r / 4``.
    """
    radius = check_float("radius", radius, positive=True)
    target, U, c = bad_local_minimum(d, r, order)
    rng = as_rng(seed)
    xi = rng.standard_normal(U.size + c.size)
    xi *= radius / np.linalg.norm(xi)
    U1 = U + xi[: U.size].reshape(U.shape)
    c1 = c + xi[U.size:]
    res = vanilla_gd(target, U.shape[1], steps=steps, eta=eta, init=U1, weights=c1, train_weights=True)
    return res, float(fit_objective(U, c, target))


@dataclass
class ReinitEscape:
    """Result of :func:`reinit_escape`: Algorithm 1 started at Theorem 2's point.

    Attributes
    ----------
    fit_reinit, fit_no_reinit : ndarray (n_seeds, epochs + 1)
        ``1/2 ||T - T*||^2`` at the start and after each epoch, with and without re-initialisation.
    f0 : float
        The bad local minimum's value ``l (l-1) r / 4``.
    escape_epoch : ndarray (n_seeds,)
        First epoch after which the fit is below ``f0 / 2`` with re-initialisation (-1: never).
    order, r, d, epochs : int
    seeds : list
    params : tdcore.Params
    elapsed : float
    """

    fit_reinit: np.ndarray
    fit_no_reinit: np.ndarray
    f0: float
    escape_epoch: np.ndarray
    order: int
    r: int
    d: int
    epochs: int
    seeds: list
    params: object
    elapsed: float


def reinit_escape(d, r, order, *, epochs=10, seeds=(0, 1, 2), iters=None):
    """Run Algorithm 1 from Theorem 2's bad local minimum, with and without re-initialisation.

    The construction ``c_i u_i^{(x) l}`` is written in Algorithm 1's 2-homogeneous
    form (:func:`to_homogeneous`, all components already past the mode switch)
    and :func:`algorithm1_from_state` runs ``epochs`` epochs with the default
    parameters, once with ``reinit=True`` and once with ``reinit=False``.

    Returns
    -------
    ReinitEscape
    """
    t0 = time.perf_counter()
    epochs = check_int("epochs", epochs, minimum=1)
    seeds = check_seeds(seeds)
    target, U, c = bad_local_minimum(d, r, order)
    V, a, _ = to_homogeneous(U, c, order)
    n2 = float(target.inner(target))
    f0 = float(fit_objective(U, c, target))
    out = {True: [], False: []}
    params = None
    for seed in seeds:
        for flag in (True, False):
            res = algorithm1_from_state(target, V, a, epochs=epochs, seed=seed, reinit=flag, iters=iters)
            fits = 0.5 * n2 * np.asarray(res.history["rel_error"]) ** 2
            out[flag].append(np.concatenate([[f0], fits]))
            params = res.params
    fr, fn = np.array(out[True]), np.array(out[False])
    below = fr[:, 1:] < f0 / 2
    esc = np.where(below.any(axis=1), below.argmax(axis=1) + 1, -1)
    return ReinitEscape(fr, fn, f0, esc, order, r, d, epochs, seeds, params, time.perf_counter() - t0)


# ---------------------------------------------------------------------------
# how often plain GD ends at a spurious point
# ---------------------------------------------------------------------------
@dataclass
class SpuriousFrequency:
    """Result of :func:`spurious_frequency`.

    Attributes
    ----------
    ms : ndarray
    orthogonal : bool
    final_error : ndarray (len(ms), n_seeds)
        Relative error at the end of each run.
    grad_norm : ndarray (len(ms), n_seeds)
    spurious : ndarray of bool
        Final error above ``threshold``, or diverged (the run ended away from the global minimum).
    stalled : ndarray of bool
        Spurious *and* with a small gradient: stuck at a (near-)critical point rather than still moving.
    diverged : ndarray of bool
    threshold : float
    d, r, order, steps : int
    eta, init_scale : float
    elapsed : float
    """

    ms: np.ndarray
    orthogonal: bool
    final_error: np.ndarray
    grad_norm: np.ndarray
    spurious: np.ndarray
    stalled: np.ndarray
    diverged: np.ndarray
    threshold: float
    d: int
    r: int
    order: int
    steps: int
    eta: float
    init_scale: float
    elapsed: float

    @property
    def frequency(self):
        """Fraction of runs ending at a spurious point, per ``m``."""
        return self.spurious.mean(axis=1)

    def interval(self, level=0.95):
        """Wilson score interval of each frequency (arrays ``low``, ``high``).

        The complement of :func:`tdcore.success_rate`'s interval for the share of
        runs that reached the threshold (a diverged run counts as spurious),
        clipped so that ``low <= frequency <= high`` holds exactly.
        """
        p = self.frequency
        low, high = np.empty(p.size), np.empty(p.size)
        for k in range(p.size):
            ok = np.where(self.diverged[k], np.nan, self.final_error[k])
            _, lo_ok, hi_ok = success_rate(ok, self.threshold, level=level)
            low[k], high[k] = 1.0 - hi_ok, 1.0 - lo_ok
        low = np.where(p == 0, 0.0, np.clip(low, 0.0, p))
        high = np.where(p == 1, 1.0, np.clip(high, p, 1.0))
        return low, high


def spurious_frequency(d, r, order, ms, *, seeds, orthogonal, steps=3000, eta=0.05, init_scale=0.5,
                       threshold=0.1, grad_tol=1e-3):
    """How often plain gradient descent with ``m`` components ends at a spurious point.

    For each seed: a target ``sum_k v_k^{(x) l}`` with ``r`` unit components
    (orthonormal or uniform on the sphere; normalised to ``||T*|| = 1``), and
    vanilla GD on objective (2) with ``U`` and ``c`` trained from ``u_i`` of norm
    ``init_scale`` and weights ``+-1``.  A run is *spurious* when its final
    relative error exceeds ``threshold``; it is *stalled* when in addition its
    gradient norm is below ``grad_tol`` (it sits at a critical point).

    Parameters
    ----------
    d, r, order : int
    ms : sequence of int
        Widths (e.g. ``r, 2r, 4r``).
    seeds : sequence of int
        One target and one initialisation per seed (the same targets for every ``m``).
    orthogonal : bool
    steps : int
    eta : float
    init_scale : float
    threshold : float
    grad_tol : float

    Returns
    -------
    SpuriousFrequency
    """
    t0 = time.perf_counter()
    d = check_int("d", d, minimum=2)
    r = check_int("r", r, minimum=1)
    order = check_order(order)
    ms = check_int_list("ms", ms, 1)
    seeds = check_seeds(seeds)
    if not isinstance(orthogonal, bool):
        raise TypeError(f"orthogonal must be True or False, got {orthogonal!r}")
    steps = check_int("steps", steps, minimum=1)
    eta = check_float("eta", eta, positive=True)
    init_scale = check_float("init_scale", init_scale, positive=True)
    threshold = check_float("threshold", threshold, positive=True)
    grad_tol = check_float("grad_tol", grad_tol, positive=True)
    targets = [random_target(d, r, order, orthogonal=orthogonal, seed=s) for s in seeds]
    shape = (len(ms), len(seeds))
    err, gn, div = np.empty(shape), np.empty(shape), np.zeros(shape, dtype=bool)
    for k, m in enumerate(ms):
        init_seeds = [10_000 + 97 * m + (s if isinstance(s, int) else k) for s in seeds]
        res = vanilla_gd(targets, m, steps=steps, eta=eta, seeds=init_seeds, init_scale=init_scale,
                         weights="train", divergence="mark", record_every=steps)
        err[k], gn[k], div[k] = res.rel_error, res.grad_norm, res.diverged_at >= 0
    spurious = (err > threshold) | div
    stalled = spurious & (gn < grad_tol) & ~div
    return SpuriousFrequency(np.array(ms), orthogonal, err, gn, spurious, stalled, div, threshold, d, r, order,
                             steps, eta, init_scale, time.perf_counter() - t0)


# ---------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------
def bad_minimum_table(rows):
    """Markdown table of :func:`bad_minimum_report` rows."""
    yes = lambda v: "yes" if v else "**no**"  # noqa: E731
    return markdown_table(rows, [
        ("order", "$l$", "d"), ("r", "$r$", "d"), ("d", "$d$", "d"), ("m", "$m$", "d"),
        ("objective", "$f$", ".6g"), ("predicted", "$l(l-1)r/4$", "g"), ("grad_norm", r"$\Vert\nabla f\Vert$", ".1e"),
        ("min_eigenvalue", r"$\lambda_{\min}$", ".1e"), ("null_dim", "null dim.", "d"),
        ("null_predicted", "predicted", "d"), ("max_frac_decrease", "random: share decreasing", ".2f"),
        ("min_eigen_change", "min change along eigvecs", ".1e"), ("local_min", "local min", yes)])


def spurious_table(results):
    """Markdown table of several :class:`SpuriousFrequency` results (one row per width and kind)."""
    rows = []
    for res in results:
        lo, hi = res.interval()
        for k, m in enumerate(res.ms):
            rows.append({"kind": "orthogonal" if res.orthogonal else "random", "m": int(m),
                         "ratio": m / res.r, "n": res.spurious.shape[1], "freq": float(res.frequency[k]),
                         "ci": f"[{lo[k]:.2f}, {hi[k]:.2f}]", "stalled": float(res.stalled[k].mean()),
                         "median": float(np.median(res.final_error[k]))})
    return markdown_table(rows, [("kind", "components", "s"), ("m", "$m$", "d"), ("ratio", "$m/r$", "g"),
                                 ("n", "runs", "d"), ("freq", "spurious", ".2f"), ("ci", "95% interval", "s"),
                                 ("stalled", "stalled (gradient < 1e-3)", ".2f"),
                                 ("median", "median final error", ".3f")])


# ---------------------------------------------------------------------------
# figures
# ---------------------------------------------------------------------------
def plot_hessian_spectrum(check, *, ax=None):
    """Sorted Hessian eigenvalues of a :class:`LocalMinCheck` on a symmetric-log axis; returns the Axes."""
    ax = new_ax(ax)
    lam = check.hessian_eigenvalues
    thr = check.tol * max(1.0, float(np.max(np.abs(lam))))
    zero = np.abs(lam) <= thr
    idx = np.arange(lam.size)
    ax.plot(idx[~zero], lam[~zero], "o", color=method_color("gd"), label="non-zero")
    ax.plot(idx[zero], lam[zero], "o", mfc="none", color=method_color("reference"),
            label=f"zero (|λ| ≤ {thr:.0e}): {int(zero.sum())}")
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.axhline(0, color="k", lw=0.6)
    ax.set_xlabel("eigenvalue index")
    ax.set_ylabel("Hessian eigenvalue")
    legend(ax, loc="upper left")
    return ax


def plot_perturbation_test(checks, labels, *, ax=None):
    """Distribution of ``f(theta + rho xi) - f(theta)`` at the smallest radius for several checks; returns the Axes."""
    ax = new_ax(ax)
    cols = [method_color("gd"), method_color("lazy"), method_color("algorithm1")]
    for k, (chk, lab) in enumerate(zip(checks, labels)):
        ch = chk.changes[-1]
        rho = chk.radii[-1]
        ax.plot(np.sort(ch) / rho**2, np.linspace(0, 1, ch.size), color=cols[k % 3],
                label=f"{lab}: {100 * chk.random_frac_decrease[-1]:.0f}% decrease")
    ax.axvline(0, color="k", lw=0.6)
    ax.set_xscale("symlog", linthresh=1e-2)
    ax.set_xlabel(r"$[f(\theta + \rho\xi) - f(\theta)] / \rho^2$")
    ax.set_ylabel("fraction of random directions")
    legend(ax, loc="upper left")
    return ax


def plot_spurious_frequency(results, *, ax=None):
    """Fraction of spurious endings against ``m / r`` for :class:`SpuriousFrequency` results; returns the Axes."""
    ax = new_ax(ax)
    for res in results:
        col = method_color("gd") if res.orthogonal else method_color("lazy")
        lo, hi = res.interval()
        p = res.frequency
        x = res.ms / res.r
        ax.errorbar(x, p, yerr=[p - lo, hi - p], fmt="o-", color=col, capsize=3,
                    label=("orthogonal" if res.orthogonal else "random") + f" components (n={res.spurious.shape[1]})")
    ax.set_xscale("log")
    plain_log_ticks(ax, np.unique(np.concatenate([res.ms / res.r for res in results])))
    ax.set_xlabel("over-parameterisation $m / r$")
    ax.set_ylabel("fraction ending at a spurious point")
    ax.set_ylim(-0.03, 1.03)
    legend(ax, loc="upper right")
    return ax


def plot_reinit_escape(res, *, ax=None):
    """Fit per epoch of Algorithm 1 from the bad minimum, with and without re-initialisation; returns the Axes."""
    ax = new_ax(ax)
    ep = np.arange(res.epochs + 1)
    for k in range(len(res.seeds)):
        ax.plot(ep, res.fit_reinit[k], "-", color=method_color("algorithm1"), alpha=0.8,
                label="with re-initialisation" if k == 0 else None)
        ax.plot(ep, res.fit_no_reinit[k], "--", color=method_color("gd"), alpha=0.8,
                label="without re-initialisation" if k == 0 else None)
    ax.axhline(res.f0, color=method_color("reference"), ls=":", lw=1, label=r"$l(l-1)r/4$")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(r"$\frac{1}{2}\|T - T^*\|_F^2$")
    ax.set_title(f"Algorithm 1 from the bad minimum: $l={res.order}$, $r={res.r}$, $d={res.d}$, "
                 f"{len(res.seeds)} seeds")
    legend(ax, loc="lower left")
    return ax


def explore_bad_minimum(*, ax=None, order=3, r=1, log10_radius=-2.0, sign=1):
    """Explorer panel: objective along random perturbations of Theorem 2's point (or its flipped control).

    300 random unit directions ``xi`` in the ``(U, c)`` parameter space, radius
    ``rho = 10**log10_radius``, ``d = r + 2``.

    Returns
    -------
    matplotlib.axes.Axes
    """
    ax = new_ax(ax)
    log10_radius = check_float("log10_radius", log10_radius)
    d = check_int("r", r, minimum=1) + 2
    target, U, c = bad_local_minimum(d, r, order, sign=sign)
    rho = 10.0**log10_radius
    rng = as_rng(0)
    theta = _pack(U, c, True)
    f0 = float(fit_objective(U, c, target))
    X = rng.standard_normal((300, theta.size))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    dm = U.shape
    ch = []
    for x in X:
        Uc, cc = _unpack(theta + rho * x, dm[0], dm[1], c, True)
        ch.append(float(fit_objective(Uc, cc, target)) - f0)
    ch = np.sort(np.array(ch))
    ax.plot(ch, np.linspace(0, 1, ch.size), color=method_color("gd" if sign == 1 else "lazy"))
    if ch.min() > 0:
        ax.set_xscale("log")
    else:
        ax.axvline(0, color="k", lw=0.6)
        ax.set_xscale("symlog", linthresh=max(rho**2 * 1e-2, 1e-12))
    ax.set_xlabel(r"$f(\theta + \rho\xi) - f(\theta)$")
    ax.set_ylabel("fraction of directions")
    kind = "construction" if sign == 1 else "flipped residual (control)"
    ax.set_title(f"{kind}: $l={order}$, $r={r}$, $f={f0:.3g}$, "
                 f"{100 * np.mean(ch < -1e-12):.0f}% decrease at $\\rho=10^{{{log10_radius:g}}}$")
    return ax
