"""Code of the appendix chapter *Your own tensor* (chapters/own_tensor.ipynb).

The chapter shows the three inputs of ``python -m tdcore decompose`` (and of
:func:`tdcore.load_target`): a dense symmetric ``.npy`` array, a
factored ``.npz`` tensor, and the empirical moment tensor of a data matrix.
Its worked example is the method of moments for independent component
analysis: samples ``x = V s + sigma g`` with ``r`` independent, zero-mean,
skewed sources ``s_j = a_j (E_j - 1)`` (``E_j`` standard exponential), a
``d x r`` mixing matrix ``V`` with unit columns, and Gaussian noise ``g``.  The
third moment of ``x`` is exactly

    E[x^{(x) 3}] = sum_j kappa3(s_j) v_j^{(x) 3},   kappa3(s_j) = 2 a_j^3,

(independent zero-mean sources have no cross terms, and the odd moments of
the Gaussian noise vanish), so decomposing the empirical third moment
recovers the columns of ``V`` and the third cumulants of the sources.  The
estimate's error shrinks like ``1/sqrt(n)`` in the number of samples.
"""

from __future__ import annotations

import os
import time

import numpy as np
from scipy.optimize import linear_sum_assignment

from .._objective import dense_is_cheaper
from .._refine import decompose, refine
from .._stats import fit_loglog_slope
from .._tensor import SymCP, moment_tensor, random_target, rel_error
from .style import new_ax

__all__ = [
    "ica_samples",
    "planted_moment",
    "reduce_components",
    "match_components",
    "recover",
    "recovery_sweep",
    "summarize_sweep",
    "write_example_inputs",
    "run_cli",
    "read_model",
    "plot_recovery",
]


def ica_samples(n, d, r, *, sigma=0.3, scales=None, seed=None):
    """Samples ``x = V s + sigma g`` of the ICA model, one per row.

    Parameters
    ----------
    n, d, r : int
        Samples, dimension and number of sources (``r <= d``).
    sigma : float
        Standard deviation of the isotropic Gaussian noise.
    scales : array_like of shape (r,), optional
        Source scales ``a_j`` (default ``linspace(1, 0.7, r)``): ``s_j = a_j (E_j - 1)``
        with ``E_j`` standard exponential, so ``kappa3(s_j) = 2 a_j^3``.
    seed : int, optional

    Returns
    -------
    X : ndarray, shape (n, d)
    V : ndarray, shape (d, r)
        The mixing matrix, unit columns (uniform directions).
    kappa3 : ndarray, shape (r,)
        Third cumulants of the sources.
    """
    rng = np.random.default_rng(seed)
    a = np.linspace(1.0, 0.7, r) if scales is None else np.asarray(scales, dtype=float)
    V = rng.standard_normal((d, r))
    V /= np.linalg.norm(V, axis=0)
    S = (rng.exponential(size=(n, r)) - 1.0) * a
    X = S @ V.T + sigma * rng.standard_normal((n, d))
    return X, V, 2.0 * a ** 3


def planted_moment(V, kappa3):
    """The exact third moment ``sum_j kappa3_j v_j^{(x) 3}`` of the ICA model, as a SymCP."""
    return SymCP(np.asarray(kappa3, dtype=float), V, 3)


def _unit(model):
    nrm = np.linalg.norm(model.factors, axis=0)
    keep = nrm > 0
    return model.weights[keep] * nrm[keep] ** model.order, model.factors[:, keep] / nrm[keep]


def reduce_components(model, r, *, cos_min=0.9):
    """Merge (anti)parallel components of an over-parameterised model and keep the ``r`` heaviest.

    Components are grouped greedily, heaviest first, by ``|cos| >= cos_min``; a
    group becomes one component (weights summed with the sign ``s^order`` of
    each member's orientation, direction the weight-averaged unit vector).

    Returns
    -------
    SymCP
        At most ``r`` components with unit factors.
    """
    l = model.order
    w, U = _unit(model)
    left = list(np.argsort(-np.abs(w)))
    out_w, out_u = [], []
    while left:
        c = U.T @ U[:, left[0]]
        mem = [j for j in left if abs(c[j]) >= cos_min]
        s = np.sign(c[mem])
        u = (U[:, mem] * (np.abs(w[mem]) * s)).sum(axis=1)
        out_w.append(float(np.sum(w[mem] * s ** l)))
        out_u.append(u / np.linalg.norm(u))
        left = [j for j in left if j not in mem]
    k = np.argsort(-np.abs(out_w))[:r]
    return SymCP(np.asarray(out_w)[k], np.asarray(out_u).T[:, k], l)


def match_components(model, V, kappa3):
    """Match a model's components to the planted ones (Hungarian on ``|cos|``).

    Returns
    -------
    dict
        ``angles_deg`` (per planted component, degrees), ``weights`` (the
        matched weights, sign-corrected for the orientation), ``weight_rel_err``
        (``|w - kappa3| / kappa3``), all of shape ``(r,)``.
    """
    w, U = _unit(model)
    C = V.T @ U
    ri, ci = linear_sum_assignment(-np.abs(C))
    cos = C[ri, ci]
    ang = np.degrees(np.arccos(np.minimum(1.0, np.abs(cos))))
    wj = w[ci] * np.sign(cos) ** model.order
    k3 = np.asarray(kappa3, dtype=float)[ri]
    return {"angles_deg": ang, "weights": wj, "weight_rel_err": np.abs(wj - k3) / np.abs(k3)}


def recover(X, r, *, m=None, seed=0, center=False, handoff=0.1):
    """Decompose the empirical third moment of ``X`` and return ``r`` components.

    The moment tensor (:func:`tdcore.moment_tensor`, ``n`` components) is fitted
    by :func:`tdcore.decompose` with ``m = 2 r`` components (over-parameterised);
    the fit spreads a planted component over several parallel ones and spends
    the rest on the sampling noise, so parallel components are merged and the
    ``r`` heaviest are refined once more against the empirical moment
    (:func:`tdcore.refine`, ``r`` components): the best rank-``r`` fit near them.
    ``handoff`` is :func:`tdcore.decompose`'s: at its default 0.3 the
    refinement started from one of six seeds of this example in a bad basin
    (relative error 0.22, a component lost); at 0.1 all six reached the noise
    floor (``d = 10``, ``r = 3``, ``n = 4 10^4``).

    Returns
    -------
    model : SymCP
        ``r`` components.
    elapsed : float
        Seconds (moment tensor included).
    """
    t0 = time.perf_counter()
    T = moment_tensor(X, 3, center=center)
    if dense_is_cheaper(T):
        # what the fit would do by itself on each call (see tdcore._objective.dense_is_cheaper): build the
        # small d^3 array once, in blocks of samples, instead of once per stage
        T = T.to_dense()
    res = decompose(T, 2 * r if m is None else m, seed=seed, tol=1e-6, handoff=handoff, progress=False)
    ref = refine(reduce_components(res.model, r), T, tol=1e-10, prune=0.0, drop=0.0, merge=None)
    return ref.model, time.perf_counter() - t0


def recovery_sweep(ns, *, d=10, r=3, sigma=0.3, seeds=(0, 1, 2)):
    """Recovery of the ICA components from ``n`` samples, for every ``n`` in ``ns`` and every seed.

    Returns
    -------
    dict
        ``n`` (per row), ``seed``, ``max_angle_deg`` (worst planted component),
        ``max_weight_rel_err``, ``rel_error`` (``||model - M3|| / ||M3||`` against the
        exact moment), ``seconds``, and ``angles_deg`` / ``weights`` per component
        (rows of shape ``(r,)``), ``kappa3``, ``d``, ``r``, ``sigma``.
    """
    rows = {k: [] for k in ("n", "seed", "max_angle_deg", "max_weight_rel_err", "rel_error", "seconds",
                            "angles_deg", "weights")}
    k3 = None
    for n in ns:
        for s in seeds:
            X, V, k3 = ica_samples(int(n), d, r, sigma=sigma, seed=1000 + int(s))
            model, el = recover(X, r, seed=int(s))
            mt = match_components(model, V, k3)
            rows["n"].append(int(n))
            rows["seed"].append(int(s))
            rows["max_angle_deg"].append(float(mt["angles_deg"].max()))
            rows["max_weight_rel_err"].append(float(mt["weight_rel_err"].max()))
            rows["rel_error"].append(float(rel_error(model, planted_moment(V, k3))))
            rows["seconds"].append(el)
            rows["angles_deg"].append(mt["angles_deg"])
            rows["weights"].append(mt["weights"])
    out = {k: np.asarray(v) for k, v in rows.items()}
    out.update(kappa3=k3, d=d, r=r, sigma=sigma)
    return out


def summarize_sweep(res):
    """Per sample size: typical errors over the data sets, and the fitted rates.

    Returns
    -------
    dict
        ``n`` (distinct sizes); ``max_angle_deg`` and ``max_weight_rel_err``
        (medians over the data sets of the worst component); ``rel_error`` (the
        root mean square over the data sets of ``||model - M3|| / ||M3||``, whose
        square estimates the mean squared error, ``~ 1/n``); and ``slope_error`` /
        ``slope_angle``, the :func:`tdcore.fit_loglog_slope` fits of ``rel_error``
        and of the median worst angle against ``n`` (``-1/2`` is the ``1/sqrt(n)`` rate).
    """
    ns = np.unique(res["n"])
    med = {k: np.array([np.median(res[k][res["n"] == n]) for n in ns])
           for k in ("max_angle_deg", "max_weight_rel_err")}
    rms = np.array([np.sqrt(np.mean(res["rel_error"][res["n"] == n] ** 2)) for n in ns])
    return {"n": ns, **med, "rel_error": rms, "slope_error": fit_loglog_slope(ns, rms),
            "slope_angle": fit_loglog_slope(ns, med["max_angle_deg"])}


def write_example_inputs(folder, *, n=20000, d=8, r=3, seed=0):
    """Write the three kinds of input into ``folder``: ``dense.npy``, ``factored.npz``, ``samples.npy``.

    ``dense.npy`` and ``factored.npz`` hold the same random rank-``r`` order-3
    tensor (:func:`tdcore.random_target`); ``samples.npy`` is ``n`` ICA samples
    (:func:`ica_samples`).  Returns the three paths and the planted ``V`` and
    ``kappa3`` of the samples.
    """
    T = random_target(d, r, 3, seed=seed)
    paths = {k: os.path.join(folder, f) for k, f in
             (("dense", "dense.npy"), ("factored", "factored.npz"), ("samples", "samples.npy"))}
    np.save(paths["dense"], T.to_dense())
    np.savez(paths["factored"], weights=T.weights, factors=T.factors, order=3)
    X, V, k3 = ica_samples(n, d, r, seed=seed)
    np.save(paths["samples"], X)
    return paths, V, k3


def run_cli(*args):
    """Run ``python -m tdcore ARGS`` in this process (its output goes to stdout); returns the exit status."""
    from ..__main__ import main

    return main([str(a) for a in args])


def read_model(path):
    """The model and summary that ``python -m tdcore decompose`` saved in ``path``: ``(SymCP, dict)``."""
    import json

    with np.load(path, allow_pickle=False) as z:
        return SymCP(z["weights"], z["factors"], int(z["order"])), json.loads(str(z["summary"]))


def plot_recovery(summary, *, ax=None):
    """Median relative error and worst angle (radians) against ``n``, log-log, with the ``1/sqrt(n)`` guide."""
    ax = new_ax(ax)
    n = summary["n"]
    ax.loglog(n, summary["rel_error"], "o-", label=r"$\|\hat M - M_3\| / \|M_3\|$")
    ax.loglog(n, np.radians(summary["max_angle_deg"]), "s-", label="worst angle (rad)")
    guide = summary["rel_error"][0] * np.sqrt(n[0] / n)
    ax.loglog(n, guide, "k--", lw=1, label=r"$\propto 1/\sqrt{n}$")
    ax.set_xlabel("samples n")
    ax.set_ylabel("error")
    ax.legend()
    return ax
