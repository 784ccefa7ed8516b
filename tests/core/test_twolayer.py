"""The two-layer model of tdcore._twolayer: Hermite algebra, sample gradients, the tensor limit, training."""

import math

import numpy as np
import pytest

import tdcore as tc
from tdcore import _twolayer as tl


def _quad(n=40):
    z, w = np.polynomial.hermite_e.hermegauss(n)
    return z, w / math.sqrt(2 * math.pi)


def test_hermite_orthonormal_by_quadrature():
    # 40-point Gauss-Hermite is exact for degree <= 79; the products here have degree <= 16
    z, w = _quad()
    H = np.stack([tl.hermite(z, k) for k in range(9)])
    G = (H * w) @ H.T
    assert np.allclose(G, np.eye(9), atol=1e-12)


def test_hermite_derivative_and_closed_forms():
    z = np.linspace(-3, 3, 13)
    assert np.allclose(tl.hermite(z, 4), (z**4 - 6 * z**2 + 3) / math.sqrt(24))
    h = 1e-6
    for l in range(6):
        _, dh = tl.hermite(z, l, derivative=True)
        fd = (tl.hermite(z + h, l) - tl.hermite(z - h, l)) / (2 * h)
        assert np.allclose(dh, fd, atol=1e-7 * (1 + np.abs(z).max() ** l))


@pytest.mark.parametrize("l", [1, 2, 3, 4])
@pytest.mark.parametrize("rho", [-0.7, 0.0, 0.3, 0.95])
def test_mehler_identity_by_quadrature(l, rho):
    # E[h_k(z1) h_l(z2)] = delta_kl rho^l for a standard Gaussian pair of correlation rho (exact tensor quadrature)
    z, w = _quad()
    Z1, Z2 = np.meshgrid(z, z, indexing="ij")
    W = np.outer(w, w)
    Y = rho * Z1 + math.sqrt(1 - rho**2) * Z2
    for k in range(6):
        val = np.sum(W * tl.hermite(Z1, k) * tl.hermite(Y, l))
        assert val == pytest.approx(rho**l if k == l else 0.0, abs=1e-12)


def test_hermite_coefficients():
    c = tl.hermite_coefficients("power", 4, 6)
    assert np.allclose(c, [3, 0, 6 * math.sqrt(2), 0, math.sqrt(24), 0, 0], atol=1e-12)
    assert np.allclose(tl.hermite_coefficients("hermite", 3, 5), [0, 0, 0, 1, 0, 0])
    from scipy import integrate

    c = tl.hermite_coefficients("relu", 0, 8)
    for k in range(9):
        ref = integrate.quad(lambda t: t * tl.hermite(np.array(t), k) * math.exp(-t * t / 2) / math.sqrt(2 * math.pi),
                             0, np.inf, epsabs=1e-13)[0]
        assert c[k] == pytest.approx(ref, abs=1e-10)
    assert np.sum(c**2) < 0.5  # E[relu(z)^2] = 1/2 is the full sum (Parseval)
    assert np.sum(tl.hermite_coefficients("relu", 0, 400) ** 2) == pytest.approx(0.5, abs=1e-3)
    with pytest.raises(ValueError, match="activation"):
        tl.hermite_coefficients("tanh", 3, 4)


def _student(d=6, m=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((d, m)), rng.standard_normal(m)


@pytest.mark.parametrize("power", [3, 2, 0])
def test_empirical_gradient_matches_finite_differences(power):
    T = tc.random_target(6, 2, 3, seed=1)
    U, s = _student()
    X = tl.sample_inputs(40, 6, seed=2)
    y = tl.teacher_output(X, T)
    L, gU, gs = tl.empirical_loss(X, y, U, s, 3, power=power, grad=True)
    h = 1e-6
    fdU = np.zeros_like(U)
    for i in range(U.shape[0]):
        for j in range(U.shape[1]):
            E = np.zeros_like(U)
            E[i, j] = h
            fdU[i, j] = (tl.empirical_loss(X, y, U + E, s, 3, power=power)
                         - tl.empirical_loss(X, y, U - E, s, 3, power=power)) / (2 * h)
    fds = np.array([(tl.empirical_loss(X, y, U, s + h * e, 3, power=power)
                     - tl.empirical_loss(X, y, U, s - h * e, 3, power=power)) / (2 * h) for e in np.eye(4)])
    # central differences: O(h^2) truncation plus O(eps |L| / h) round-off, ~1e-9 relative here
    scale = 1 + np.abs(gU).max()
    assert np.allclose(gU, fdU, atol=1e-6 * scale)
    assert np.allclose(gs, fds, atol=1e-6 * (1 + np.abs(gs).max()))


def test_batched_loss_equals_per_trial():
    T = tc.random_target(5, 2, 3, seed=3)
    rng = np.random.default_rng(4)
    U, s = rng.standard_normal((3, 5, 4)), rng.standard_normal((3, 4))
    X = tl.sample_inputs(30, 5, trials=[7, 8, 9])
    y = tl.teacher_output(X, T)
    L, gU, gs = tl.empirical_loss(X, y, U, s, 3, grad=True)
    # batched and 2-D matrix products may sum in different orders: ~30 terms of size O(1), so the
    # difference is a few eps relative; 1e-12 leaves a factor 1000 for BLAS kernels
    for b in range(3):
        Xb = tl.sample_inputs(30, 5, seed=7 + b)
        assert np.array_equal(X[b], Xb)
        Lb, gUb, gsb = tl.empirical_loss(Xb, tl.teacher_output(Xb, T), U[b], s[b], 3, grad=True)
        assert np.allclose(L[b], Lb, rtol=1e-13) and np.allclose(gU[b], gUb, rtol=1e-12, atol=1e-14)
        assert np.allclose(gs[b], gsb, rtol=1e-12, atol=1e-14)


def test_algorithm1_step_is_the_fixed_weight_gradient():
    # radial factor l on the 2-homogeneous model = gradient of the l-homogeneous model with the
    # weights s_i ||u_i||^{2-l} held fixed (Algorithm 1's C held fixed)
    T = tc.random_target(6, 2, 3, seed=5)
    U, s = _student(seed=6)
    X = tl.sample_inputs(50, 6, seed=7)
    y = tl.teacher_output(X, T)
    r = np.linalg.norm(U, axis=0)
    _, _, g_alg1, _ = tl._loss_grad(X, y, U, s, 3, 2, 3)
    _, g_fixed, _ = tl.empirical_loss(X, y, U, s * r ** (2 - 3), 3, power=3, grad=True)
    assert np.allclose(g_alg1, g_fixed, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("power", [3, 2])
def test_population_limit_is_the_tensor_objective(power):
    T = tc.random_target(5, 2, 3, seed=8)
    U, s = _student(d=5, m=3, seed=9)
    U *= 0.5
    pop = float(tl.population_loss(U, s, T, power=power))
    r = np.linalg.norm(U, axis=0)
    assert pop == pytest.approx(float(tc.fit_objective(U, s * r ** (power - 3), T)), rel=1e-13)
    n = 200_000
    X = tl.sample_inputs(n, 5, seed=10)
    res = tl.network_output(X, U, s, 3, power=power) - tl.teacher_output(X, T)
    per = 0.5 * res**2
    # the empirical mean of n i.i.d. terms is within 5 standard errors of its expectation
    assert abs(per.mean() - pop) < 5 * per.std() / math.sqrt(n)


def test_plain_activation_losses_match_closed_forms():
    T = tc.random_target(4, 2, 3, seed=11)
    U, s = _student(d=4, m=3, seed=12)
    V, b = T.factors, T.weights

    def gram_loss(kernel):
        return 0.5 * (s @ kernel(U, U) @ s - 2 * s @ kernel(U, V) @ b + b @ kernel(V, V) @ b)

    def cube(A, B):  # E[(a.x)^3 (b.x)^3] = 6 (a.b)^3 + 9 (a.b) |a|^2 |b|^2  (Isserlis)
        G = A.T @ B
        na, nb = np.sum(A * A, 0), np.sum(B * B, 0)
        return 6 * G**3 + 9 * G * np.outer(na, nb)

    def relu(A, B):  # arc-cosine kernel of degree 1
        na, nb = np.linalg.norm(A, axis=0), np.linalg.norm(B, axis=0)
        c = np.clip((A.T @ B) / np.outer(na, nb), -1, 1)
        th = np.arccos(c)
        return np.outer(na, nb) / (2 * np.pi) * (np.sin(th) + (np.pi - th) * c)

    tot, per = tl.activation_population_loss(U, s, T, "power")
    assert tot == pytest.approx(gram_loss(cube), rel=1e-11)
    assert per[3] > 0 and per[1] > 0 and per[0] == 0 and per[2] == 0
    tot, per = tl.activation_population_loss(U, s, T, "relu", kmax=400)
    # truncation: sum_{k>400} c_k^2 ~ 4e-5 times the squared weights
    assert tot == pytest.approx(gram_loss(relu), rel=2e-3, abs=1e-4)
    assert tl.activation_population_loss(U, s, T, "hermite")[0] == pytest.approx(float(tl.population_loss(U, s, T)),
                                                                                    rel=1e-12)


def test_ntk_features_are_the_jacobian():
    U, s = _student(d=4, m=3, seed=13)
    X = tl.sample_inputs(7, 4, seed=14)
    Phi = tl.ntk_features(X, U, s, 3)
    h = 1e-6
    for i in range(3):
        for k in range(4):
            E = np.zeros_like(U)
            E[k, i] = h
            fd = (tl.network_output(X, U + E, s, 3) - tl.network_output(X, U - E, s, 3)) / (2 * h)
            assert np.allclose(Phi[:, i * 4 + k], fd, atol=1e-6 * (1 + np.abs(fd).max()))


def test_ntk_fit_solves_the_linear_model():
    T = tc.random_target(4, 1, 3, seed=15)
    U, s = _student(d=4, m=12, seed=16)
    X = tl.sample_inputs(30, 4, seed=17)
    y = tl.teacher_output(X, T)
    fit = tl.ntk_fit(X, y, U, s, 3, ridge=1e-12)  # 48 features > 30 samples: interpolation
    assert fit.train_error < 1e-6 and fit.n_features == 48
    pred = tl.network_output(X, U, s, 3) + tl.ntk_features(X, U, s, 3) @ fit.dU.T.ravel()
    assert np.allclose(pred, y, atol=1e-6 * np.abs(y).max())


def test_train_student_validation():
    T = tc.random_target(4, 1, 3, seed=0)
    with pytest.raises(ValueError, match="regime"):
        tl.train_student(T, 4, 10, regime="ntk", epochs=1)
    with pytest.raises(ValueError, match="m must be even"):
        tl.train_student(T, 3, 10, regime="lazy", epochs=1)
    with pytest.raises(ValueError, match="batch_size"):
        tl.train_student(T, 4, 10, regime="gd", epochs=1, batch_size=11)
    with pytest.raises(ValueError, match="reinit_every"):
        tl.train_student(T, 4, 10, regime="gd", epochs=1, reinit_every=2)
    with pytest.raises(TypeError, match="integer"):
        tl.train_student(T, 4.0, 10, regime="gd", epochs=1)
    with pytest.raises(ValueError, match="unit norm"):
        tl.train_student(tc.SymCP(np.ones(1), 2 * np.eye(4)[:, :1], 3), 4, 10, regime="gd", epochs=1)
    with pytest.raises(TypeError, match="SymCP"):
        tl.train_student(T.to_dense(), 4, 10, regime="gd", epochs=1)


def test_trial_of_a_batch_equals_a_single_run():
    T = tc.random_target(5, 1, 3, seed=1)
    a = tl.train_student(T, 4, 100, regime="algorithm1", epochs=20, seeds=(3, 4), n_test=200, record_every=5)
    b = tl.train_student(T, 4, 100, regime="algorithm1", epochs=20, seeds=(4,), n_test=200, record_every=5)
    # same draws, same arithmetic up to the summation order of batched products (eps per step); 20 steps
    # from a small initialisation amplify that by far less than the 1e5 that rtol=1e-10 allows
    assert np.allclose(a.test_error[1], b.test_error[0], rtol=1e-10)
    assert np.allclose(a.U[1], b.U[0], rtol=1e-10, atol=1e-14)


def test_regimes_fit_or_stay_lazy():
    T = tc.random_target(5, 1, 3, seed=2)
    alg = tl.train_student(T, 4, 400, regime="algorithm1", epochs=300, seeds=(0, 1), n_test=2000)
    assert np.all(alg.final_test_error < 0.1), alg.final_test_error
    # the test error on fresh samples estimates the tensor (n = infinity) error
    assert np.allclose(alg.test_error[:, -1], alg.tensor_error[:, -1], rtol=0.3, atol=0.01)
    sgd = tl.train_student(T, 4, 400, regime="algorithm1", epochs=30, batch_size=40, seeds=(0,), n_test=2000)
    assert sgd.final_test_error[0] < 0.1
    lazy = tl.train_student(T, 8, 400, regime="lazy", epochs=600, seeds=(0,), n_test=2000, record_every=600)
    assert lazy.movement[0] < 0.01
    rng = np.random.default_rng(0)  # the same draws as train_student's trial 0
    U0, s0 = tl._init("lazy", rng, 5, 8, 100.0)
    X, Xt = rng.standard_normal((400, 5)), rng.standard_normal((2000, 5))
    ntk = tl.ntk_fit(X, tl.teacher_output(X, T), U0[:, :4], s0[:4], 3, X_test=Xt, y_test=tl.teacher_output(Xt, T),
                     ridge=1e-10, offset=False)
    # not rounding: lazy GD after 600 epochs is within ~0.005 of its limit (the slowest kernel directions
    # are still converging) and the O(1/alpha) = 1e-2 nonlinearity moves it by about as much
    assert lazy.final_test_error[0] == pytest.approx(ntk.test_error, abs=0.02)


def test_float32_and_divergence_is_recorded():
    T = tc.random_target(4, 1, 3, seed=3)
    r = tl.train_student(T, 4, 200, regime="gd", epochs=20, seeds=(0,), dtype=np.float32, n_test=100)
    assert r.U.dtype == np.float32 and np.isfinite(r.final_test_error).all()
    bad = tl.train_student(T, 4, 50, regime="gd", epochs=50, eta=50.0, scale=1.0, seeds=(0, 1), n_test=100)
    assert bad.diverged.all() and np.isnan(bad.final_test_error).all()
    assert np.isfinite(bad.U).all()  # frozen at the last finite state
