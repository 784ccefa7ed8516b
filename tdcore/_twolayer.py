"""Two-layer networks on Gaussian inputs, and their tensor objective.

For ``x ~ N(0, I_d)`` and the normalised Hermite polynomial ``h_l = He_l / sqrt(l!)``,
``E[h_l(u.x) h_l(v.x)] = (u.v)^l`` for unit ``u, v``.  A teacher
``y(x) = sum_j b_j h_l(v_j.x)`` (unit ``v_j``) and a student
``f(x) = sum_i s_i ||u_i||^p h_l(u_i.x / ||u_i||)`` therefore have population loss

    1/2 E (f - y)^2 = 1/2 || sum_i s_i ||u_i||^{p-l} u_i^{(x) l} - sum_j b_j v_j^{(x) l} ||_F^2,

the tensor objective of :mod:`tdcore._objective` (``p = l``: the plain model
``sum_i s_i u_i^{(x) l}``; ``p = 2``: the 2-homogeneous model of Algorithm 1).

Everything here works on samples: the empirical loss and its gradient cost
O(n m d) (the products ``X U`` and ``X^T W``) and no ``d^l`` array is formed.
All kernels take a leading batch axis of independent trials (``X`` of shape
(B, n, d), ``U`` (B, d, m), ``s`` (B, m)) and are written against the array
module of their inputs (NumPy or CuPy); random numbers are drawn on the host
with NumPy, one generator per trial, so a seed gives the same run on every backend.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ._backend import get_backend, to_numpy, xp_of
from ._objective import fit_objective
from ._tensor import SymCP, check_target
from ._validate import check_choice, check_dtype, check_float, check_int, check_seeds
from ._util import unit_columns as _unit_columns

__all__ = ["hermite", "hermite_coefficients", "activation_output", "activation_population_loss", "sample_inputs",
           "network_output", "teacher_output", "empirical_loss", "population_loss", "ntk_features",
           "ntk_fit", "NTKFit", "train_student", "TrainResult", "REGIMES", "ACTIVATIONS"]

#: The training regimes of :func:`train_student`.
REGIMES = ("lazy", "gd", "algorithm1")
#: Activations of :func:`hermite_coefficients`.
ACTIVATIONS = ("hermite", "power", "relu")


def _mT(a):
    return a.swapaxes(-1, -2)


def hermite(z, l, *, derivative=False):
    """The normalised probabilists' Hermite polynomial ``h_l(z) = He_l(z) / sqrt(l!)``.

    Evaluated by the three-term recurrence ``h_{k+1} = (z h_k - sqrt(k) h_{k-1}) / sqrt(k+1)``,
    which is stable for the moderate ``|z|`` of Gaussian inputs.

    Parameters
    ----------
    z : array (NumPy or CuPy)
    l : int
        Degree, ``l >= 0``.
    derivative : bool
        Also return ``h_l'(z) = sqrt(l) h_{l-1}(z)``.

    Returns
    -------
    array, or (array, array) when ``derivative``

    Examples
    --------
    >>> import numpy as np
    >>> z = np.array([0.0, 1.0, 2.0])
    >>> np.allclose(hermite(z, 3), (z**3 - 3 * z) / np.sqrt(6))
    True
    """
    l = check_int("l", l, minimum=0)
    xp = xp_of(z)
    prev, cur = xp.zeros_like(z), xp.ones_like(z)
    for k in range(l):
        prev, cur = cur, (z * cur - math.sqrt(k) * prev) / math.sqrt(k + 1)
    if derivative:
        return cur, math.sqrt(l) * prev
    return cur


def hermite_coefficients(activation, order, kmax):
    """Coefficients ``c_k = E[sigma(z) h_k(z)]``, ``k = 0..kmax``, of an activation, z ~ N(0, 1).

    Parameters
    ----------
    activation : {"hermite", "power", "relu"}
        ``h_order`` itself, the monomial ``z^order``, or ``max(z, 0)`` (``order`` ignored).
    order : int
        Degree of ``"hermite"`` and ``"power"``.
    kmax : int

    Returns
    -------
    numpy.ndarray of shape (kmax + 1,)
        ``sigma = sum_k c_k h_k`` in L2(N(0, 1)); ``E[sigma(u.x) sigma(v.x)] = sum_k c_k^2 (u.v)^k``
        for unit ``u, v``.  Monomials are computed by Gauss--Hermite quadrature
        (exact for polynomials); ReLU by its closed form ``c_0 = 1/sqrt(2 pi)``,
        ``c_1 = 1/2``, ``c_k = He_{k-2}(0) / sqrt(2 pi k!)`` for ``k >= 2``.

    Examples
    --------
    >>> c = hermite_coefficients("power", 3, 4)      # z^3 = sqrt(6) h_3 + 3 h_1
    >>> np.round(c, 12).tolist() == [0.0, 3.0, 0.0, round(math.sqrt(6), 12), 0.0]
    True
    """
    check_choice("activation", activation, ACTIVATIONS)
    order = check_int("order", order, minimum=0)
    kmax = check_int("kmax", kmax, minimum=0)
    c = np.zeros(kmax + 1)
    if activation == "hermite":
        if order <= kmax:
            c[order] = 1.0
        return c
    if activation == "power":
        nodes, weights = np.polynomial.hermite_e.hermegauss(order + kmax + 2)
        weights = weights / math.sqrt(2 * math.pi)
        for k in range(kmax + 1):
            c[k] = float(np.sum(weights * nodes**order * hermite(nodes, k)))
        c[np.abs(c) < 1e-12 * max(1.0, np.abs(c).max())] = 0.0  # quadrature round-off of exact zeros
        return c
    c[0] = 1 / math.sqrt(2 * math.pi)
    if kmax >= 1:
        c[1] = 0.5
    for k in range(2, kmax + 1):
        j = k - 2  # He_j(0) = 0 for odd j, (-1)^{j/2} (j-1)!! for even j
        if j % 2 == 0:
            # in the log domain ((j-1)!! = j! / (2^{j/2} (j/2)!)): k! and (j-1)!! overflow floats for k > 170
            log_df = math.lgamma(j + 1) - (j // 2) * math.log(2) - math.lgamma(j // 2 + 1)
            c[k] = (-1) ** (j // 2) * math.exp(log_df - 0.5 * math.log(2 * math.pi) - 0.5 * math.lgamma(k + 1))
    return c


def activation_output(X, U, s, activation, order):
    """``sum_i s_i sigma(u_i.x)`` for the activations of :func:`hermite_coefficients`, in O(n m d).

    ``"hermite"`` is ``||u||^l h_l(u.x/||u||)`` (the Hermite student), ``"power"``
    is ``(u.x)^l`` and ``"relu"`` is ``max(u.x, 0)``.  ``X`` (n, d) or (B, n, d), ``U``
    (d, m) or (B, d, m), ``s`` (m,) or (B, m).
    """
    check_choice("activation", activation, ACTIVATIONS)
    order = check_int("order", order, minimum=0)
    xp = xp_of(U)
    X, U, s = xp.asarray(X), xp.asarray(U), xp.asarray(s, dtype=U.dtype)
    _check_net(X, U, s)
    if activation == "hermite":
        return _forward(X, U, s, order, order)[0]
    Z = X @ U
    act = Z**order if activation == "power" else xp.maximum(Z, 0)
    return xp.sum(act * s[..., None, :], axis=-1)


def activation_population_loss(U, s, target, activation, *, kmax=None):
    """Population loss ``1/2 E(f - y)^2`` of plain-activation networks, as a sum of tensor losses.

    Student ``f(x) = sum_i s_i sigma(u_i.x)``, teacher ``y(x) = sum_j b_j sigma(v_j.x)``
    (``target = SymCP(V, b, l)``) with ``sigma`` the activation of
    :func:`hermite_coefficients`; ``"power"`` and ``"hermite"`` are ``l``-homogeneous
    and ReLU 1-homogeneous, so ``sigma(u.x) = ||u||^q sum_k c_k h_k(u.x/||u||)`` and

        1/2 E(f - y)^2 = sum_k 1/2 c_k^2 || sum_i s_i ||u_i||^q ubar_i^{(x) k}
                                          - sum_j b_j ||v_j||^q vbar_j^{(x) k} ||^2 .

    Parameters
    ----------
    U : array (d, m)
    s : array (m,)
    target : SymCP
        Teacher directions, weights and the degree ``l``.
    activation : {"hermite", "power", "relu"}
    kmax : int, optional
        Highest Hermite order kept: ``l`` for the polynomials (exact), 200 for ReLU
        (the tail ``sum_{k > K} c_k^2`` is below 1e-4 there).

    Returns
    -------
    (total, per_order) : (float, numpy.ndarray)
        ``per_order[k]`` is the order-k tensor term.
    """
    check_choice("activation", activation, ACTIVATIONS)
    target = check_target(target)
    if not isinstance(target, SymCP):
        raise TypeError("target must be a SymCP (the teacher's directions and weights)")
    U = np.asarray(to_numpy(U), dtype=float)
    s = np.asarray(to_numpy(s), dtype=float)
    if U.ndim != 2 or U.shape[0] != target.d or s.shape != (U.shape[1],):
        raise ValueError(f"U must have shape ({target.d}, m) and s shape (m,), got {U.shape} and {s.shape}")
    l = target.order
    if kmax is None:
        kmax = 200 if activation == "relu" else l
    c = hermite_coefficients(activation, l, kmax)
    q = 1 if activation == "relu" else l
    V, b = np.asarray(target.factors, float), np.asarray(target.weights, float)
    ru, rv = np.linalg.norm(U, axis=0), np.linalg.norm(V, axis=0)
    if np.any(ru == 0):
        raise ValueError("U must have non-zero columns")
    Ub, Vb = U / ru, V / rv
    al, be = s * ru**q, b * rv**q
    Guu, Guv, Gvv = Ub.T @ Ub, Ub.T @ Vb, Vb.T @ Vb
    per = np.array([0.5 * c[k] ** 2 * (al @ Guu**k @ al - 2 * al @ Guv**k @ be + be @ Gvv**k @ be)
                    for k in range(kmax + 1)])
    return float(per.sum()), per


def sample_inputs(n, d, *, seed=None, trials=None, backend="numpy", dtype=np.float64):
    """Gaussian inputs ``x ~ N(0, I_d)``: shape (n, d), or (B, n, d) for ``trials`` seeds.

    Parameters
    ----------
    n, d : int
    seed : int, optional
        One trial.
    trials : sequence of int, optional
        One generator per trial (trial b equals ``sample_inputs(n, d, seed=trials[b])``).
    backend, dtype
        Where the array lives; drawn on the host in float64, then cast.
    """
    n = check_int("n", n, minimum=1)
    d = check_int("d", d, minimum=1)
    dtype = check_dtype(dtype)
    be = get_backend(backend)
    if trials is not None:
        if seed is not None:
            raise ValueError("give either seed or trials, not both")
        seeds = check_seeds(trials)
        X = np.stack([np.random.default_rng(t).standard_normal((n, d)) for t in seeds])
    else:
        X = np.random.default_rng(seed).standard_normal((n, d))
    return be.asarray(X, dtype)


def _forward(X, U, s, order, power):
    """Pre-activations and Hermite values: ``(out, z, h, dh, r)``, O(n m d)."""
    xp = xp_of(U)
    r = xp.sqrt(xp.sum(U * U, axis=-2))  # (.., m)
    z = (X @ U) / r[..., None, :]  # (.., n, m)
    h, dh = hermite(z, order, derivative=True)
    coef = s * r**power  # (.., m)
    out = xp.sum(h * coef[..., None, :], axis=-1)  # (.., n)
    return out, z, h, dh, r


def _check_net(X, U, s):
    if U.ndim not in (2, 3):
        raise ValueError(f"U must have shape (d, m) or (B, d, m), got {U.shape}")
    if X.ndim != U.ndim or X.shape[-1] != U.shape[-2] or X.shape[:-2] != U.shape[:-2]:
        raise ValueError(f"X must have shape {U.shape[:-2] + ('n', U.shape[-2])} to match U, got {X.shape}")
    if s.shape != U.shape[:-2] + U.shape[-1:]:
        raise ValueError(f"s must have shape {U.shape[:-2] + U.shape[-1:]} to match U, got {s.shape}")


def network_output(X, U, s, order, *, power=None):
    """``f(x) = sum_i s_i ||u_i||^p h_l(u_i.x / ||u_i||)`` on every row of ``X``.

    Parameters
    ----------
    X : array (n, d) or (B, n, d)
    U : array (d, m) or (B, d, m)
        Non-zero columns.
    s : array (m,) or (B, m)
        Output weights.
    order : int
        The Hermite degree ``l``.
    power : int, optional
        Homogeneity ``p`` in ``||u_i||`` (default ``l``: the student's tensor is
        ``sum_i s_i u_i^{(x) l}``; 2 gives the 2-homogeneous model).

    Returns
    -------
    array (n,) or (B, n)
    """
    order = check_int("order", order, minimum=0)
    power = order if power is None else check_int("power", power, minimum=0)
    xp = xp_of(U)
    X, U, s = xp.asarray(X), xp.asarray(U), xp.asarray(s, dtype=U.dtype)
    _check_net(X, U, s)
    return _forward(X, U, s, order, power)[0]


def teacher_output(X, target):
    """The teacher ``y(x) = sum_j b_j ||v_j||^l h_l(v_j.x/||v_j||)`` of a SymCP target.

    For unit ``v_j`` this is ``sum_j b_j h_l(v_j.x)``.  ``X`` of shape (n, d) or (B, n, d).
    """
    target = check_target(target)
    if not isinstance(target, SymCP):
        raise TypeError("target must be a SymCP (a teacher is a sum of Hermite neurons)")
    xp = xp_of(X)
    V = xp.asarray(target.factors, dtype=X.dtype)
    b = xp.asarray(target.weights, dtype=X.dtype)
    if X.ndim == 3:
        V = xp.broadcast_to(V, X.shape[:1] + V.shape)
        b = xp.broadcast_to(b, X.shape[:1] + b.shape)
    return network_output(X, V, b, target.order)


def _loss_grad(X, y, U, s, order, power, radial):
    """Loss ``1/(2n) sum (f - y)^2`` (batch shape), residual, and gradients in U and s."""
    xp = xp_of(U)
    n = X.shape[-2]
    out, z, h, dh, r = _forward(X, U, s, order, power)
    res = out - y  # (.., n)
    loss = 0.5 * xp.mean(res * res, axis=-1)
    # d/du [r^p h(u.x/r)] = radial r^{p-2} h u + r^{p-1} h' (x - z u/r);  radial = p for the true gradient
    Rh = res[..., :, None] * dh  # (.., n, m)
    W = _mT(X) @ Rh  # (.., d, m): sum_k res_k h'_ki x_k
    g_tan = xp.sum(Rh * z, axis=-2)  # sum_k res_k h'_ki z_ki
    g_rad = xp.sum(res[..., :, None] * h, axis=-2)  # sum_k res_k h_ki
    sr = s * r ** (power - 1) / n
    rad = s * r ** (power - 2) * (radial * g_rad - g_tan) / n
    gU = W * sr[..., None, :] + U * rad[..., None, :]
    gs = g_rad * r**power / n
    return loss, res, gU, gs


def empirical_loss(X, y, U, s, order, *, power=None, grad=False):
    """Empirical loss ``1/(2n) sum_k (f(x_k) - y_k)^2`` and optionally its gradients, in O(n m d).

    Parameters
    ----------
    X : array (n, d) or (B, n, d)
    y : array (n,) or (B, n)
    U, s, order, power
        The student, as in ``network_output``.
    grad : bool
        Also return ``(grad_U, grad_s)``.

    Returns
    -------
    loss, or (loss, grad_U, grad_s)
        ``loss`` has the batch shape.
    """
    order = check_int("order", order, minimum=0)
    power = order if power is None else check_int("power", power, minimum=0)
    xp = xp_of(U)
    X, U, s, y = xp.asarray(X), xp.asarray(U), xp.asarray(s, dtype=U.dtype), xp.asarray(y, dtype=U.dtype)
    _check_net(X, U, s)
    if y.shape != X.shape[:-1]:
        raise ValueError(f"y must have shape {X.shape[:-1]} to match X, got {y.shape}")
    loss, _, gU, gs = _loss_grad(X, y, U, s, order, power, power)
    return (loss, gU, gs) if grad else loss


def population_loss(U, s, target, *, power=None):
    """The population loss ``1/2 E(f - y)^2`` in closed form: the tensor objective.

    ``= 1/2 || sum_i s_i ||u_i||^{p-l} u_i^{(x) l} - T* ||_F^2`` for unit-norm teacher
    directions (:func:`tdcore.fit_objective` with weights ``s ||u||^{p-l}``).
    """
    target = check_target(target)
    xp = xp_of(U)
    U = xp.asarray(U)
    s = xp.asarray(s, dtype=U.dtype)
    l = target.order if isinstance(target, SymCP) else target.ndim
    power = l if power is None else check_int("power", power, minimum=0)
    if isinstance(target, SymCP) and not np.allclose(np.linalg.norm(to_numpy(target.factors), axis=0), 1.0, rtol=1e-10):
        raise ValueError("population_loss needs unit-norm teacher directions "
                         "(the Hermite identity holds for unit u, v)")
    r = xp.sqrt(xp.sum(U * U, axis=-2))
    return fit_objective(U, s * r ** (power - l), target)


# --------------------------------------------------------------------------- NTK (linearised) student


def ntk_features(X, U, s, order, *, power=None):
    """Features of the student linearised in ``U`` at ``(U, s)``: ``df(x)/dU``, shape (n, m d).

    Column block i holds ``s_i (p r^{p-2} h u_i + r^{p-1} h' (x - z u_i / r))``: the
    gradient of neuron i (unbatched; NumPy or CuPy).
    """
    order = check_int("order", order, minimum=0)
    power = order if power is None else check_int("power", power, minimum=0)
    xp = xp_of(U)
    X, U, s = xp.asarray(X), xp.asarray(U), xp.asarray(s, dtype=U.dtype)
    if U.ndim != 2:
        raise ValueError(f"ntk_features is unbatched: U must have shape (d, m), got {U.shape}")
    _check_net(X, U, s)
    _, z, h, dh, r = _forward(X, U, s, order, power)
    p = power
    a = s * r ** (p - 1)  # weight of h' x
    bcoef = s * r ** (p - 2)
    F = dh[:, :, None] * a[None, :, None] * X[:, None, :]  # (n, m, d)
    F += ((p * h - z * dh) * bcoef)[:, :, None] * U.T[None, :, :]
    return F.reshape(X.shape[0], -1)


@dataclass
class NTKFit:
    """The NTK (linearised) student fitted by kernel ridge regression.

    Attributes
    ----------
    dU : array (d, m)
        Displacement of the components (the linear model's coefficients).
    train_error, test_error : float
        Relative errors ``||f - y|| / ||y||`` on the training and test samples.
    n_features : int
        ``m d``.
    ridge : float
    """

    dU: object
    train_error: float
    test_error: float
    n_features: int
    ridge: float


def ntk_fit(X, y, U0, s, order, *, X_test=None, y_test=None, power=None, ridge=1e-6, offset=True):
    """Fit ``f_lin(x) = f(x; U0) + <df/dU(x; U0), dU>`` to ``(X, y)`` by ridge least squares.

    The linear model is the infinite-scale limit of lazy training (Chizat, Oyallon
    & Bach 2019); ``ridge`` is relative to the mean diagonal of the kernel
    ``Phi Phi^T / n`` (a small value approaches the minimum-norm interpolant that
    gradient descent from ``dU = 0`` converges to).  Solved in the primal
    (``m d`` unknowns) or the dual (``n`` unknowns), whichever is smaller.
    ``offset=False`` drops ``f(x; U0)`` from the linear model: use it for one half of a
    symmetric initialisation, whose full model is zero at ``U0``.
    """
    ridge = check_float("ridge", ridge, positive=True)
    xp = xp_of(U0)
    X, y = xp.asarray(X), xp.asarray(y, dtype=U0.dtype)
    Phi = ntk_features(X, U0, s, order, power=power)
    f0 = network_output(X, U0, s, order, power=power) if offset else xp.zeros_like(y)
    t = y - f0
    n, p = Phi.shape
    scale = float(xp.sum(Phi * Phi)) / n
    lam = ridge * scale
    if p <= n:
        A = _mT(Phi) @ Phi + lam * xp.eye(p, dtype=Phi.dtype)
        theta = xp.linalg.solve(A, _mT(Phi) @ t)
    else:
        K = Phi @ _mT(Phi) + lam * xp.eye(n, dtype=Phi.dtype)
        theta = _mT(Phi) @ xp.linalg.solve(K, t)
    dU = theta.reshape(U0.shape[1], U0.shape[0]).T
    pred = f0 + Phi @ theta
    train_err = float(xp.linalg.norm(pred - y) / xp.linalg.norm(y))
    test_err = math.nan
    if X_test is not None:
        Xt, yt = xp.asarray(X_test), xp.asarray(y_test, dtype=U0.dtype)
        pt = ntk_features(Xt, U0, s, order, power=power) @ theta
        if offset:
            pt = pt + network_output(Xt, U0, s, order, power=power)
        test_err = float(xp.linalg.norm(pt - yt) / xp.linalg.norm(yt))
    return NTKFit(dU=dU, train_error=train_err, test_error=test_err, n_features=p, ridge=lam)


# --------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    """Outcome of :func:`train_student` for B trials.

    Attributes
    ----------
    regime : str
    epochs : numpy.ndarray (E,)
        Epochs at which errors were recorded (0 = initialisation).
    test_error : numpy.ndarray (B, E)
        Relative test error ``sqrt(sum (f - y)^2 / sum y^2)`` on fresh samples.
    train_loss : numpy.ndarray (B, E)
        Empirical loss on the training samples.
    tensor_error : numpy.ndarray (B, E)
        ``||T - T*||_F / ||T*||_F`` of the student's tensor: the population
        (n = infinity) value of the test error.
    U, s : numpy.ndarray
        Final parameters (the output weights ``s`` include the lazy scale).
    movement : numpy.ndarray (B,)
        ``||U - U0||_F / ||U0||_F``: small in the lazy regime.
    diverged : numpy.ndarray of bool (B,)
        Trials whose step produced non-finite or exploding components (an empirical
        loss on few samples can be unbounded below along some directions); they are
        frozen at their last finite state and their errors are NaN from then on.
    params : dict
        The values used (eta, scale, lam, ...).
    """

    regime: str
    epochs: np.ndarray
    test_error: np.ndarray
    train_loss: np.ndarray
    tensor_error: np.ndarray
    U: np.ndarray
    s: np.ndarray
    movement: np.ndarray
    params: dict
    diverged: np.ndarray = None

    @property
    def final_test_error(self):
        """Test error at the last recorded epoch, per trial."""
        return self.test_error[:, -1]


def _init(regime, rng, d, m, scale):
    """Initial components and output weights of one trial."""
    if regime == "lazy":
        half = _unit_columns(rng, d, m // 2)
        U0 = np.concatenate([half, half], axis=1)  # symmetric pairs: f(x; U0) = 0
        s = np.concatenate([np.ones(m // 2), -np.ones(m // 2)])
        return U0, s * scale
    U0 = scale * _unit_columns(rng, d, m)
    s = rng.choice([-1.0, 1.0], size=m)
    return U0, s


_DEFAULTS = {"lazy": {"scale": 100.0, "lam": 0.0}, "gd": {"scale": 0.3, "lam": 0.0},
             "algorithm1": {"scale": 1e-2, "lam": 2e-3}}


def train_student(target, m, n, *, regime, epochs, eta=None, scale=None, lam=None, batch_size=None,
                  reinit_every=None, n_test=4000, seeds=(0,), record_every=1, backend="numpy",
                  dtype=np.float64):
    """Train the two-layer student on ``n`` samples of the teacher, batched over trials.

    Regimes (the student ``f = sum_i s_i ||u_i||^p h_l(u_i.x/||u_i||)``):

    * ``"lazy"``: ``p = l``, components in symmetric pairs ``(u, +scale), (u, -scale)``
      with unit ``u`` (so ``f = 0`` at initialisation) and the loss divided by
      ``scale^2`` (Chizat, Oyallon & Bach 2019): for large ``scale`` the components move
      by O(1/scale) and the student follows its linearisation (the NTK).
      Default ``scale = 100``; ``eta`` defaults to ``1 / lambda_max`` of the NTK
      feature covariance (power iteration).
    * ``"gd"``: ``p = l``, components of norm ``scale`` (default 0.3, small), output
      weights random signs, plain (S)GD on ``U``.
    * ``"algorithm1"``: Algorithm 1's recipe on samples: ``p = 2`` (2-homogeneous),
      components of norm ``scale`` (default 1e-2), the step of Algorithm 1 (norms held
      fixed in the gradient, i.e. radial factor ``l``), the regulariser
      ``lam sum_i ||u_i||^2`` (default ``2e-3 ||T*||``) and, every ``reinit_every``
      epochs (default ``max(1, epochs // 10)``), re-initialisation of the component of
      smallest norm.

    Parameters
    ----------
    target : SymCP
        The teacher ``sum_j b_j h_l(v_j.x)`` (unit ``v_j``).
    m, n : int
        Width and number of training samples.
    epochs : int
        Passes over the training set; one full-batch step per epoch, or
        ``n // batch_size`` mini-batch steps.
    eta : float, optional
        Step size (default: see the regimes above; ``0.75 / (l^2 ||T*||)`` for ``"gd"``,
        ``0.25 / (l^2 ||T*||)`` (Algorithm 1's default) for ``"algorithm1"``).
    batch_size : int, optional
        Mini-batch SGD (samples drawn without replacement within an epoch); None: full batch.
    n_test : int
        Fresh samples for the test error.
    seeds : sequence of int
        One trial per seed (its own samples and initialisation).
    record_every : int
        Record errors every this many epochs (and at the last one).
    backend, dtype
        NumPy or CuPy; float32 is allowed (large n).

    Returns
    -------
    TrainResult
    """
    target = check_target(target)
    if not isinstance(target, SymCP):
        raise TypeError("target must be a SymCP (the teacher's directions and weights)")
    check_choice("regime", regime, REGIMES)
    m = check_int("m", m, minimum=1)
    n = check_int("n", n, minimum=1)
    epochs = check_int("epochs", epochs, minimum=0)
    if regime == "lazy" and m % 2:
        raise ValueError(f"the lazy regime pairs its components: m must be even, got {m}")
    seeds = check_seeds(seeds, distinct=True)
    n_test = check_int("n_test", n_test, minimum=1)
    record_every = check_int("record_every", record_every, minimum=1)
    batch_size = check_int("batch_size", batch_size, minimum=1, allow_none=True)
    if batch_size is not None and batch_size > n:
        raise ValueError(f"batch_size must be at most n={n}, got {batch_size}")
    reinit_every = check_int("reinit_every", reinit_every, minimum=1, allow_none=True)
    if reinit_every is not None and regime != "algorithm1":
        raise ValueError("reinit_every is part of the 'algorithm1' regime only")
    dtype = check_dtype(dtype)
    scale = check_float("scale", _DEFAULTS[regime]["scale"] if scale is None else scale, positive=True)
    lam = check_float("lam", _DEFAULTS[regime]["lam"] if lam is None else lam, nonnegative=True)
    eta = check_float("eta", eta, positive=True, allow_none=True)
    V_host, b_host = np.asarray(to_numpy(target.factors), float), np.asarray(to_numpy(target.weights), float)
    if not np.allclose(np.linalg.norm(V_host, axis=0), 1.0, rtol=1e-10):
        raise ValueError("the teacher's directions must have unit norm")
    be = get_backend(backend)
    xp = be.xp
    d, l = target.d, target.order
    power = 2 if regime == "algorithm1" else l
    radial = l if regime == "algorithm1" else power
    tn = float(np.sqrt(b_host @ (V_host.T @ V_host) ** l @ b_host))  # ||T*||_F
    if regime == "algorithm1":
        lam = lam * tn
        reinit_every = reinit_every or max(1, epochs // 10)

    rngs = [np.random.default_rng(s) for s in seeds]
    B = len(seeds)
    inits = [_init(regime, g, d, m, scale) for g in rngs]
    U = be.asarray(np.stack([u for u, _ in inits]), dtype)
    s = be.asarray(np.stack([w for _, w in inits]), dtype)
    U0 = U.copy()
    X = be.asarray(np.stack([g.standard_normal((n, d)) for g in rngs]), dtype)
    Xt = be.asarray(np.stack([g.standard_normal((n_test, d)) for g in rngs]), dtype)
    y, yt = teacher_output(X, target), teacher_output(Xt, target)
    yt2 = xp.sum(yt * yt, axis=-1)
    loss_scale = 1.0 / scale**2 if regime == "lazy" else 1.0

    if eta is None:
        if regime == "lazy":
            eta = _lazy_step(X[0], U[0], s[0], l, loss_scale, be)
        elif regime == "gd":
            # a fitted component of weight w has curvature ~ l^2 w <= l^2 ||T*||: a third of the limit 2 / (l^2 w)
            eta = 0.75 / (l**2 * tn)
        else:
            eta = 0.25 / (l**2 * tn)  # Algorithm 1's default step (tdcore.default_params)

    def record():
        out = _forward(Xt, U, s, l, power)[0]
        te = xp.sqrt(xp.sum((out - yt) ** 2, axis=-1) / yt2)
        tr = _loss_grad(X, y, U, s, l, power, radial)[0] * loss_scale
        tens = np.array([math.sqrt(max(0.0, 2 * float(population_loss(U[b], s[b], target, power=power)))) / tn
                         for b in range(B)])
        return to_numpy(te), to_numpy(tr), tens

    rec_epochs, tes, trs, tens = [], [], [], []
    diverged = np.zeros(B, dtype=bool)  # trials frozen at their last finite state (errors NaN from then on)
    steps_per_epoch = 1 if batch_size is None else n // batch_size
    for ep in range(epochs + 1):
        if ep % record_every == 0 or ep == epochs:
            te, tr, tz = record()
            te[diverged], tr[diverged], tz[diverged] = np.nan, np.nan, np.nan
            rec_epochs.append(ep)
            tes.append(te)
            trs.append(tr)
            tens.append(tz)
        if ep == epochs:
            break
        if regime == "algorithm1" and ep > 0 and ep % reinit_every == 0:
            r = to_numpy(xp.sqrt(xp.sum(U * U, axis=-2)))
            j = np.argmin(r, axis=-1)
            Un = to_numpy(U)
            for b in range(B):
                Un[b, :, j[b]] = scale * _unit_columns(rngs[b], d, 1)[:, 0]
            U = be.asarray(Un, dtype)
        if batch_size is None:
            batches = [None]
        else:
            perms = [g.permutation(n) for g in rngs]
            batches = [np.stack([p[k * batch_size:(k + 1) * batch_size] for p in perms])
                       for k in range(steps_per_epoch)]
        for idx in batches:
            if idx is None:
                Xb, yb = X, y
            else:
                ib = be.asarray(idx)
                Xb = xp.take_along_axis(X, ib[:, :, None], axis=1)
                yb = xp.take_along_axis(y, ib, axis=1)
            _, _, gU, _ = _loss_grad(Xb, yb, U, s, l, power, radial)
            if lam:
                gU = gU + (2 * lam) * U
            U_new = U - (eta * loss_scale) * gU
            ok = to_numpy(xp.isfinite(xp.sum(U_new * U_new, axis=(-1, -2))))
            ok &= to_numpy(xp.sqrt(xp.sum(U_new * U_new, axis=(-1, -2)))) < 1e6 * math.sqrt(m) * max(1.0, scale)
            if not ok.all():
                diverged |= ~ok
                U_new = xp.where(be.asarray(ok)[:, None, None], U_new, U)
            U = U_new
    mov = to_numpy(xp.sqrt(xp.sum((U - U0) ** 2, axis=(-1, -2)) / xp.sum(U0 * U0, axis=(-1, -2))))
    return TrainResult(regime=regime, epochs=np.array(rec_epochs), test_error=np.array(tes).T,
                       train_loss=np.array(trs).T, tensor_error=np.array(tens).T, U=to_numpy(U), s=to_numpy(s),
                       movement=mov, diverged=diverged, params={"eta": eta, "scale": scale, "lam": lam, "power": power,
                                             "batch_size": batch_size, "reinit_every": reinit_every, "m": m,
                                             "n": n, "d": d, "order": l, "epochs": epochs})


def _lazy_step(X, U, s, order, loss_scale, be, iters=30):
    """``1 / lambda_max`` of the lazy loss's Gauss--Newton matrix ``loss_scale Phi^T Phi / n`` (power iteration)."""
    Phi = ntk_features(X, U, s, order)
    xp = be.xp
    v = xp.ones(Phi.shape[1], dtype=Phi.dtype) / math.sqrt(Phi.shape[1])
    lam = 1.0
    for _ in range(iters):
        w = _mT(Phi) @ (Phi @ v) / Phi.shape[0]
        lam = float(xp.linalg.norm(w))
        v = w / lam
    return 1.0 / (lam * loss_scale * 1.05)
