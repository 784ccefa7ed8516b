"""Code of the chapter *The proof in pictures* (chapters/proof_pictures.ipynb): one measurement per lemma.

Each function measures one step of the proof of Theorem 3 on real runs of
:func:`tdcore.algorithm1`, and a ``plot_*`` function draws it:

* :func:`recorded_run`: a run recording every iteration and every epoch-end state;
* :func:`lemma3_steps` (every ordinary step decreases ``f``),
  :func:`reinit_jumps` (Lemmas 2 and 4: the cost of a re-initialisation against
  ``1 / (lam m)``), :func:`lemma5_ratios` (the mass outside ``S``),
  :func:`lemma6_correlations` (a fresh component's correlation with the
  residual), :func:`lemma7_growth` (geometric growth of the fresh column),
  :func:`lemma9_paths` (path length of an epoch), :func:`lemma1_decrease`
  (the fraction of epochs that make progress);
* :func:`explore_fresh_growth`: the chapter's explorer.

Targets and batch keys come from :mod:`tdcore.book.algorithm1`
(:func:`sweep_targets` is re-exported here); the stored full-size run is read
with :func:`tdcore.book.convergence.load_full_run` (re-exported as well).
"""

from __future__ import annotations

import math

import numpy as np

from .._algorithm1 import algorithm1, algorithm1_batch, default_params
from .._objective import objective
from .._stats import fit_line
from .._tensor import SymCP, subspace_basis
from .._validate import as_rng, check_float, check_int, check_int_list, check_seed, check_seeds
from .algorithm1 import _squeeze_state, batch_key, sweep_targets
from .convergence import load_full_run
from .style import legend, method_color, new_ax
from .._validate import check_float_list

__all__ = [
    "sweep_targets",
    "load_full_run",
    "recorded_run",
    "lemma3_steps",
    "lemma3_bound",
    "plot_lemma3",
    "reinit_jumps",
    "plot_reinit_jumps",
    "lemma5_ratios",
    "lemma5_fresh",
    "plot_lemma5",
    "lemma6_correlations",
    "plot_lemma6",
    "lemma7_growth",
    "lemma7_independent",
    "plot_lemma7",
    "lemma9_paths",
    "plot_lemma9",
    "lemma1_decrease",
    "plot_lemma1",
    "explore_fresh_growth",
]


def recorded_run(target, m, *, seed=0, epochs=12, **alg_kwargs):
    """An Algorithm 1 run recording every iteration and every epoch-end state.

    Returns
    -------
    dict
        ``result`` (Result with ``record_every=1``), ``states`` (list of epoch-end
        states ``U, a, c, chat, switched``), ``basis`` (of S), ``target``.

    Examples
    --------
    >>> run = recorded_run(sweep_targets(6, 1, 3, 1)[0], 2, seed=0, epochs=2, iters=10)
    >>> len(run["states"]), len(run["result"].history["iterations"])
    (2, 20)
    """
    if not isinstance(target, SymCP):
        raise TypeError("recorded_run needs a SymCP target")
    states = []

    def cb(info):
        states.append(_squeeze_state(info["state"]))
        return False

    res = algorithm1(target, m, seed=seed, epochs=epochs, record_every=1, callback=cb, **alg_kwargs)
    return {"result": res, "states": states, "basis": subspace_basis(target), "target": target}


def _epoch_records(res):
    recs = {}
    for it in res.history["iterations"]:
        recs.setdefault(it["epoch"], []).append(it)
    return recs


def lemma3_steps(run):
    """Change of the objective in every iteration of a recorded run (Lemma 3).

    Step ``t`` of epoch ``k`` changes ``f`` from the record of iteration ``t`` to that
    of ``t + 1`` (to the epoch-end objective for ``t = H``).  Steps that may contain
    a scalar mode switch are flagged: where the records carry a per-iteration
    ``n_switches`` it is used; otherwise, in an epoch with switches, the step at
    which the fresh column crosses the threshold is flagged and, if the epoch has
    more switches than such crossings, every step of the epoch.

    Parameters
    ----------
    run : dict from :func:`recorded_run` (or a Result recorded with ``record_every=1``)

    Returns
    -------
    dict
        ``df`` (changes), ``f`` (objective before the step), ``epoch``, ``switch``
        (bool mask of flagged steps), ``n_increase_normal`` (normal steps with
        ``df > tol``), ``max_rel_increase_normal``, ``max_rel_increase_switch``,
        ``tol`` (rounding: ``1e-12`` relative plus the Gram expansion's absolute
        rounding ``4 (l sqrt(d) + 4) eps (3 ||T*||)^2``); ``n_switch_mismatch``: in
        epochs >= 2, the steps where the records' switches and the fresh column's
        crossings of the paper's threshold ``2 sqrt(m + K) delta`` disagree (the
        last step of an epoch is not checked: its crossing is not recorded).
    """
    res = run["result"] if isinstance(run, dict) else run
    p = res.params
    h = res.history
    if p.iters and h["iterations"] and len(h["iterations"]) != p.iters * len(h["epoch"]):
        raise ValueError("lemma3_steps needs a run recorded with record_every=1")
    recs = _epoch_records(res)
    df, f, ep, flag = [], [], [], []
    for k_idx, k in enumerate(h["epoch"]):
        rec = recs[k]
        fk = [it["objective"] for it in rec] + [h["objective"][k_idx]]
        fresh = [it["fresh_norm"] for it in rec]
        nsw = h["n_switches"][k_idx]
        per_it = rec[0].get("n_switches") is not None
        crossings = [t for t in range(len(rec) - 1) if fresh[t] <= p.switch_threshold < fresh[t + 1]]
        whole = (not per_it) and nsw > len(crossings)
        for t in range(len(rec)):
            df.append(fk[t + 1] - fk[t])
            f.append(fk[t])
            ep.append(k)
            if per_it:
                flag.append(bool(rec[t]["n_switches"]))
            else:
                flag.append(bool(nsw) and (whole or t in crossings or (t == len(rec) - 1 and nsw > len(crossings))))
    df, f, flag = np.array(df), np.array(f), np.array(flag, dtype=bool)
    # the paper's switch rule, from the run's m, K and delta (not from the engine's switch_threshold):
    # in epochs >= 2 only the fresh column can switch, in the step where it crosses 2 sqrt(m + K) delta
    mismatch = 0
    for k in h["epoch"]:
        rec = recs[k]
        if k < 2 or rec[0].get("n_switches") is None:
            continue
        thr = 2 * math.sqrt(p.m + p.epochs) * p.delta
        fresh = [it["fresh_norm"] for it in rec]
        cross = {t for t in range(len(rec) - 1) if fresh[t] <= thr < fresh[t + 1]}
        made = {t for t in range(len(rec) - 1) if rec[t]["n_switches"]}
        mismatch += len(cross ^ made)
    # rounding of the objective itself: 1e-12 relative, plus the Gram expansion's absolute rounding,
    # about (l sqrt(d) + 4) eps (||T_t|| + ||T*||)^2 with ||T_t|| <= 2 ||T*|| along a decreasing run
    gram = 4 * (p.order * math.sqrt(p.d) + 4) * np.finfo(float).eps * (3 * p.target_norm) ** 2
    tol = 1e-12 * np.maximum(np.abs(f), 1e-300) + gram
    inc = df > tol
    rel = df / np.maximum(np.abs(f), 1e-300)
    return {"df": df, "f": f, "epoch": np.array(ep), "switch": flag, "n_switch_mismatch": mismatch,
            "n_steps": int(df.size), "n_flagged": int(flag.sum()),
            "n_increase_normal": int(np.sum(inc & ~flag)), "n_increase_switch": int(np.sum(inc & flag)),
            "max_rel_increase_normal": float(np.max(np.where(~flag, rel, -np.inf))) if (~flag).any() else math.nan,
            "max_rel_increase_switch": float(np.max(np.where(flag, rel, -np.inf))) if flag.any() else math.nan,
            "tol": tol}


def lemma3_bound(target, state, *, steps, eta, lam, delta, seed=0):
    """Lemma 3's decrease, step by step: each iteration of the engine against ``(eta/l) ||grad_U f||^2``.

    Runs :func:`tdcore.algorithm1` one iteration at a time (``epochs=1, iters=1,
    reinit=False``) from ``state``, whose smallest column is first replaced by a
    fresh one (norm ``delta``, ``c = sqrt(d (m + 1)) / delta``, ``chat = 1/delta``,
    not switched: the start of an epoch).  At every state the objective and its
    gradient in ``U`` with ``C``, ``Chat`` fixed come from :func:`tdcore.objective`,
    independently of the engine's own arithmetic.

    Parameters
    ----------
    target : SymCP
        Unit Frobenius norm (the engine works on ``T* / ||T*||``).
    state : dict
        ``U, a, c, chat, switched`` (an epoch-end state of :func:`recorded_run`).
    steps : int
    eta, lam, delta : float
        The run's parameters.
    seed : int
        For the fresh column.

    Returns
    -------
    dict
        ``f`` (before each step), ``df``, ``grad2`` (``||grad_U f||_F^2``), ``switch``
        (a mode switch in the step), ``ratio`` (``-df / ((eta/l) grad2)``; Lemma 3
        says ``>= 1`` on steps without a switch), ``step_dev`` (largest relative
        deviation of the engine's ``U'`` from ``U - eta grad_U f``),
        ``rescale_dev`` (largest relative deviation of its ``c'``, ``chat'`` from
        ``c ||u|| / ||u'||``, divided by ``sqrt(d (m + 1))`` at a switch).
    """
    if not isinstance(target, SymCP) or not math.isclose(target.norm(), 1.0, rel_tol=1e-12):
        raise ValueError("lemma3_bound needs a SymCP target of unit Frobenius norm")
    steps = check_int("steps", steps, minimum=1)
    d, l = target.d, target.order
    st = {k: np.array(v, dtype=float if k != "switched" else bool) for k, v in state.items()}
    m = st["U"].shape[1]
    factor = default_params(d, l, m, epochs=1, iters=1, delta=delta, eta=eta, lam=lam).switch_factor
    rng = as_rng(check_seed(seed))
    j = int(np.argmin(np.linalg.norm(st["U"], axis=0)))
    g = rng.standard_normal(d)
    st["U"][:, j] = delta * g / np.linalg.norm(g)
    st["a"][j] = rng.choice([-1.0, 1.0])
    st["c"][j], st["chat"][j], st["switched"][j] = factor / delta, 1.0 / delta, False
    f, df, grad2, sw, ratio, step_dev, resc_dev = [], [], [], [], [], 0.0, 0.0
    f_now, grad = objective(st["U"], st["c"], st["chat"], st["a"], target, lam, grad=True)
    for _ in range(steps):
        res = algorithm1(target, m, epochs=1, iters=1, eta=eta, lam=lam, delta=delta, reinit=False, init_state=st)
        new = res.state
        expect_u = st["U"] - eta * grad
        step_dev = max(step_dev, float(np.linalg.norm(new["U"] - expect_u) / np.linalg.norm(expect_u)))
        switched_now = np.asarray(new["switched"], bool) & ~st["switched"]
        ratio_u = np.linalg.norm(st["U"], axis=0) / np.linalg.norm(new["U"], axis=0)
        expect_c = st["c"] * ratio_u / np.where(switched_now, factor, 1.0)
        resc_dev = max(resc_dev, float(np.max(np.abs(new["c"] / expect_c - 1))),
                       float(np.max(np.abs(new["chat"] / (st["chat"] * ratio_u) - 1))))
        st = {k: np.array(new[k]) for k in ("U", "a", "c", "chat", "switched")}
        f_new, grad_new = objective(st["U"], st["c"], st["chat"], st["a"], target, lam, grad=True)
        g2 = float(np.sum(grad * grad))
        f.append(float(f_now))
        df.append(float(f_new - f_now))
        grad2.append(g2)
        sw.append(bool(switched_now.any()))
        ratio.append(-(f_new - f_now) / (eta / l * g2) if g2 > 0 else math.nan)
        f_now, grad = f_new, grad_new
    return {"f": np.array(f), "df": np.array(df), "grad2": np.array(grad2), "switch": np.array(sw, bool),
            "ratio": np.array(ratio), "step_dev": step_dev, "rescale_dev": resc_dev}


def plot_lemma3(steps, *, ax=None):
    """The objective through the run (log scale), with flagged (switch) steps marked."""
    ax = new_ax(ax)
    f = steps["f"]
    t = np.arange(f.size)
    ax.plot(t, f, color=method_color("algorithm1"), lw=1.2, label="objective $f$ before each step")
    inc = steps["df"] > steps["tol"]
    sel = inc & steps["switch"]
    if sel.any():
        ax.plot(t[sel], f[sel], "^", color=method_color("lazy"), ms=6, label="increase in a step with a switch")
    sel = inc & ~steps["switch"]
    if sel.any():
        ax.plot(t[sel], f[sel], "x", color="k", ms=7, label="increase in a normal step")
    ep = steps["epoch"]
    for b in np.flatnonzero(np.diff(ep)) + 1:
        ax.axvline(b, color=method_color("reference"), lw=0.5, alpha=0.5)
    ax.set_yscale("log")
    ax.set_xlabel("iteration (thin lines: re-initialisations)")
    ax.set_ylabel("objective $f$")
    legend(ax, loc="upper right", fontsize=8)
    return ax


def reinit_jumps(*, ms, lams, d, r, order, seeds, epochs=10, target_seed=0, cache=None):
    """Increase of ``f`` at re-initialisation against ``1 / (lam m)`` (Lemmas 2 and 4).

    For every ``(m, lam)`` a batch of runs; the jump of epoch ``k >= 2`` is
    ``f_after_reinit - f_before_reinit``.  Also records, for Lemma 5, the largest
    ``||P_B U||_F^2 / ((m + K) delta^2)`` of each batch.

    Returns
    -------
    dict
        ``rows``: one dict per ``(m, lam)`` with ``bound = 1/(lam m)``, ``max_jump``,
        ``median_jump``, ``constant = max_jump * lam * m``, ``max_epoch_increase``
        (largest ``f`` at the end of an epoch minus ``f`` before its re-initialisation,
        Lemma 2), ``max_pb_ratio``, ``delta`` (the runs' initial radius) and
        ``fresh_cost`` (``median_jump / (lam delta^2)``: a fresh column of norm
        ``delta`` adds ``lam delta^2`` to the regulariser);
        ``constant``: the largest measured constant; ``slope_lam``: the fitted slope
        of ``log(median_jump / delta^2)`` against ``log(lam)`` over all rows (the
        bound's scaling would be -1).
    """
    ms = check_int_list("ms", ms, 1)
    lams = check_float_list("lams", lams, nonnegative=True)
    if any(v <= 0 for v in lams):
        raise ValueError("lams must be > 0")
    seeds = check_seeds(seeds, distinct=True)
    targets = sweep_targets(d, r, order, len(seeds), target_seed=target_seed)
    rows = []
    for m in ms:
        for lam in lams:
            key = batch_key(d, r, order, m, seeds=seeds, target_seed=target_seed, lam=lam, epochs=epochs) + ";jumps"
            if cache is not None and key in cache:
                rows.append(cache[key])
                continue
            with np.errstate(all="ignore"):
                br = algorithm1_batch(targets, m, seeds=seeds, lam=lam, epochs=epochs)
            jumps, pbr, incr = [], [], []
            for res in br.results:
                h = res.history
                jumps.extend(np.array(h["f_after_reinit"][1:]) - np.array(h["f_before_reinit"][1:]))
                incr.extend(np.array(h["objective"][1:]) - np.array(h["f_before_reinit"][1:]))
                p = res.params
                pb = [v for v in h["pb_norm2"] if v is not None]
                if pb:
                    pbr.append(max(pb) / ((p.m + p.epochs) * p.delta**2))
            jumps = np.array(jumps, float)
            dl = float(br.results[0].params.delta)
            row = {"m": m, "lam": lam, "bound": 1.0 / (lam * m), "max_jump": float(jumps.max()),
                   "median_jump": float(np.median(jumps)), "constant": float(jumps.max() * lam * m),
                   "delta": dl, "fresh_cost": float(np.median(jumps) / (lam * dl**2)),
                   "max_epoch_increase": float(np.max(incr)),
                   "max_pb_ratio": float(max(pbr)) if pbr else math.nan}
            if cache is not None:
                cache[key] = row
            rows.append(row)
    slope = math.nan
    if len({r_["lam"] for r_ in rows}) >= 2:
        slope = fit_line(np.log([r_["lam"] for r_ in rows]),
                         np.log([r_["median_jump"] / r_["delta"] ** 2 for r_ in rows]), min_points=2).slope
    return {"rows": rows, "constant": max(r_["constant"] for r_ in rows), "slope_lam": float(slope),
            "config": {"d": d, "r": r, "order": order, "epochs": epochs, "n_seeds": len(seeds)}}


def plot_reinit_jumps(jumps, *, ax=None):
    """Largest and median re-initialisation jump against ``1/(lam m)``, with the line ``y = x``."""
    ax = new_ax(ax)
    rows = jumps["rows"]
    b = np.array([r_["bound"] for r_ in rows])
    mx = np.maximum([r_["max_jump"] for r_ in rows], 1e-18)
    md = np.maximum([r_["median_jump"] for r_ in rows], 1e-18)
    ax.plot(b, mx, "o", color=method_color("algorithm1"), label="largest jump")
    ax.plot(b, md, "s", color=method_color("algorithm1"), mfc="none", label="median jump")
    xx = np.geomspace(b.min(), b.max(), 20)
    ax.plot(xx, xx, ls="--", color=method_color("reference"), label=r"$1/(\lambda m)$")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"$1/(\lambda m)$")
    ax.set_ylabel(r"$f$ after $-$ $f$ before re-initialisation")
    legend(ax, loc="lower right", fontsize=8)
    return ax


def lemma5_ratios(run):
    """``||P_B U||_F^2 / ((m + K) delta^2)`` at the end of every epoch (Lemma 5 says <= 1)."""
    res = run["result"] if isinstance(run, dict) else run
    p = res.params
    pb = np.array([np.nan if v is None else v for v in res.history["pb_norm2"]], float)
    return pb / ((p.m + p.epochs) * p.delta**2)


def lemma5_fresh(run):
    """The fresh column's part outside ``S``, at every recorded iteration, against its start (Lemma 5's mechanism).

    The records hold ``||u||`` and ``||P_S u||`` of the latest re-initialised
    column at every iteration, so ``||P_B u_t||^2 = ||u_t||^2 - ||P_S u_t||^2``.  The
    proof's argument is that a step does not push a small column further into
    ``B``; for the fresh column that means ``||P_B u_t|| <= delta`` throughout its
    epoch, and no increase while the column is below the switch level
    ``2 sqrt(m + K) delta``.

    Returns
    -------
    dict
        ``ratio`` (``||P_B u_t||^2 / delta^2`` per iteration), ``max_ratio`` and
        ``tol`` (the rounding of the difference of squares,
        per iteration; ``4 d eps ||u_t||^2 / delta^2``), ``n_increase`` (steps below the
        switch level that increased it beyond that rounding) and ``n_steps`` (such steps).
    """
    res = run["result"] if isinstance(run, dict) else run
    p = res.params
    its = res.history["iterations"]
    n = np.array([it["fresh_norm"] for it in its], float)
    ps = np.array([it["fresh_ps_norm"] for it in its], float)
    ratio = (n**2 - ps**2) / p.delta**2
    # ||P_S u|| = ||Q^T u|| carries a relative rounding of about d eps, so the difference of squares
    # is known to about 4 d eps ||u||^2
    tol = 4 * p.d * np.finfo(float).eps * n**2 / p.delta**2
    ep = np.array([it["epoch"] for it in its])
    small = n[:-1] <= 2 * math.sqrt(p.m + p.epochs) * p.delta  # the lemma's regime: before the switch
    same = (ep[1:] == ep[:-1]) & small
    grew = (ratio[1:] > ratio[:-1] + tol[1:] + tol[:-1]) & same
    return {"ratio": ratio, "max_ratio": float(np.max(ratio - tol)), "tol": tol, "n_increase": int(grew.sum()),
            "n_steps": int(same.sum())}


def plot_lemma5(ratios, *, ax=None, labels=None):
    """Lemma 5's ratio by epoch for one or more runs, with the bound 1."""
    ax = new_ax(ax)
    if isinstance(ratios, np.ndarray) and ratios.ndim == 1:
        ratios = [ratios]
    for k, rr in enumerate(ratios):
        ax.plot(np.arange(1, len(rr) + 1), rr, marker=".",
                label=None if labels is None else labels[k])
    ax.axhline(1.0, color=method_color("reference"), ls="--", lw=1, label="Lemma 5's bound")
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(r"$\|P_B U\|_F^2 \,/\, ((m+K)\delta^2)$")
    legend(ax, loc="lower left", fontsize=8)
    return ax


def _projected_residual(U, s, target, Q):
    """``P_{S^{(x)l}} T - T*`` as a SymCP (T's factors projected onto S)."""
    PU = Q @ (Q.T @ np.asarray(U, float))
    return SymCP(np.concatenate([np.asarray(s, float), -np.asarray(target.weights, float)]),
                 np.hstack([PU, np.asarray(target.factors, float)]), target.order)


def lemma6_correlations(target, U, s, *, n_samples=20000, seed=0, space="S"):
    """Monte Carlo of Lemma 6: correlation of a fresh component with the residual, inside S.

    For ``n_samples`` draws of a sign ``a`` and a direction ``v`` uniform on the unit
    sphere of ``S`` (the normalised ``P_S u`` of a fresh ``u ~ Unif(S^{d-1})``),
    computes ``a <P_{S^l} T - T*, v^{(x) l}> / ||P_{S^l} T - T*||_F``.

    Parameters
    ----------
    target : SymCP
    U, s : arrays (d, m), (m,)
        The current model ``sum_i s_i u_i^{(x) l}``.
    n_samples : int
    seed : int
    space : {"S", "full"}
        ``"full"`` draws ``v`` uniform on the whole sphere ``S^{d-1}`` instead
        (the correlation a fresh component has before any projection), for comparison.

    Returns
    -------
    dict
        ``corr`` (samples), ``residual_norm``, ``r`` (dimension of S),
        ``p_negative``, ``c6`` (largest ``c`` with ``P(corr <= -c r^{-l/2}) >= 1/5``:
        minus the 20% quantile times ``r^{l/2}``).
    """
    if not isinstance(target, SymCP):
        raise TypeError("lemma6_correlations needs a SymCP target")
    n_samples = check_int("n_samples", n_samples, minimum=10)
    Q = subspace_basis(target)
    R = _projected_residual(U, s, target, Q)
    rn = R.norm()
    # the projection Q Q^T u rounds every factor by about d eps: a residual below that is zero
    if rn <= 64 * target.d * np.finfo(float).eps * target.norm():
        raise ValueError("the residual is zero: the model already equals the target")
    if space not in ("S", "full"):
        raise ValueError(f"space must be 'S' or 'full', got {space!r}")
    rng = as_rng(check_seed(seed))
    k = Q.shape[1]
    if space == "S":
        g = rng.standard_normal((k, n_samples))
        V = Q @ (g / np.linalg.norm(g, axis=0, keepdims=True))
    else:
        g = rng.standard_normal((target.d, n_samples))
        V = g / np.linalg.norm(g, axis=0, keepdims=True)
    a = rng.choice([-1.0, 1.0], size=n_samples)
    vals = (R.weights[:, None] * (R.factors.T @ V) ** R.order).sum(axis=0)
    corr = a * vals / rn
    q20 = float(np.quantile(corr, 0.2))
    return {"corr": corr, "residual_norm": float(rn), "r": k, "order": target.order, "space": space,
            "p_negative": float(np.mean(corr < 0)), "q20": q20, "c6": -q20 * k ** (target.order / 2)}


def plot_lemma6(mc, *, ax=None):
    """Histogram of the scaled correlation ``corr * r^{l/2}``, with the 20% quantile."""
    ax = new_ax(ax)
    scale = mc["r"] ** (mc["order"] / 2)
    ax.hist(mc["corr"] * scale, bins=80, color=method_color("algorithm1"), alpha=0.8)
    ax.axvline(-mc["c6"], color=method_color("lazy"), ls="--",
               label=f"20% quantile: $-{mc['c6']:.2f}$")
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel(r"$a\,\langle P_{S^{\otimes l}}T - T^*, \bar v^{\otimes l}\rangle\,/\,\|\cdot\|_F"
                  r"\;\times\; r^{l/2}$")
    ax.set_ylabel("count")
    legend(ax, loc="upper right", fontsize=8)
    return ax


def _fit_rate(t, y):
    """Least-squares slope of log(y) against t (per-step exponential rate)."""
    t = np.asarray(t, float)
    y = np.asarray(y, float)
    if t.size < 3 or not np.all(np.isfinite(y) & (y > 0)):
        return math.nan
    return fit_line(t, np.log(y)).slope


def lemma7_growth(run, *, min_growth=100.0, saturation=0.1, eps=None):
    """Exponential growth of ``||P_S u_t||^2`` of the fresh column (Lemma 7), epoch by epoch.

    An epoch ``k >= 2`` counts as a growth epoch when its fresh column's
    ``||P_S u||`` ends at least ``min_growth`` times larger than it started.  In
    such an epoch the per-step growth rate of ``log ||P_S u_t||^2`` is fitted
    separately before the mode switch (``||u|| <= threshold``) and after it, up to
    the point where ``||P_S u||`` reaches ``saturation`` (then the component is no
    longer small and the lemma's regime ends).

    Returns
    -------
    dict
        ``epochs`` (growth epochs), ``rate_before``, ``rate_after`` (per-step
        rates of ``log ||P_S u||^2``), ``eps_start`` (relative error right after the
        re-initialisation: the fit part of ``f_after_reinit``), ``kappa``
        (``(exp(rate_after) - 1) r^{l/2} / (eta eps_start)``: the constant of a growth
        factor ``1 + kappa eta eps_start / r^{l/2}``, with the error the column actually
        sees), ``kappa_eps`` (the same with the lemma's ``eps`` in place of
        ``eps_start``, when ``eps`` is given), ``ps0_ratio`` (``||P_S u_0|| / (delta /
        sqrt(d))``, the lemma's hypothesis ``||P_S u_0|| >= Omega(delta / sqrt(d))``),
        ``n_epochs`` (epochs >= 2), ``curves`` (``t, ||P_S u_t||`` per growth epoch).
    """
    if eps is not None:
        eps = check_float("eps", eps, positive=True)
    res = run["result"] if isinstance(run, dict) else run
    p = res.params
    h = res.history
    recs = _epoch_records(res)
    r = run["basis"].shape[1] if isinstance(run, dict) else None
    out = {"epochs": [], "rate_before": [], "rate_after": [], "eps_start": [], "kappa": [], "kappa_eps": [],
           "ps0_ratio": [], "curves": [], "n_epochs": 0, "eta": p.eta, "r": r, "order": p.order, "eps": eps}
    for k_idx, k in enumerate(h["epoch"]):
        if k < 2:
            continue
        out["n_epochs"] += 1
        rec = recs[k]
        ps = np.array([it["fresh_ps_norm"] for it in rec], float)
        nrm = np.array([it["fresh_norm"] for it in rec], float)
        if not np.all(np.isfinite(ps)) or ps[-1] < min_growth * ps[0]:
            continue
        t = np.arange(1, ps.size + 1)
        before = (nrm <= p.switch_threshold)
        sat = np.flatnonzero(ps >= saturation)
        end = sat[0] if sat.size else ps.size
        after = (~before) & (t - 1 < end)
        # skip the first few steps: the S-component of a fresh column needs a moment to dominate
        b_idx = np.flatnonzero(before)[2:]
        rb = _fit_rate(t[b_idx], ps[b_idx] ** 2) if b_idx.size >= 3 else math.nan
        ra = _fit_rate(t[after], ps[after] ** 2) if after.sum() >= 3 else math.nan
        # the residual the fresh column sees: after the re-initialisation (fit part of f_after)
        fit0 = h["f_after_reinit"][k_idx] - h["regularizer"][k_idx - 1]
        eps0 = math.sqrt(max(2.0 * fit0, 0.0)) / p.target_norm
        out["epochs"].append(k)
        out["rate_before"].append(rb)
        out["rate_after"].append(ra)
        out["eps_start"].append(eps0)
        kap = math.nan
        if r is not None and np.isfinite(ra) and eps0 > 0:
            kap = (math.exp(ra) - 1) * r ** (p.order / 2) / (p.eta * eps0)
        out["kappa"].append(kap)
        out["kappa_eps"].append(kap * eps0 / eps if eps is not None and np.isfinite(kap) else math.nan)
        out["ps0_ratio"].append(float(ps[0] / (p.delta / math.sqrt(p.d))))
        out["curves"].append((t, ps))
    return out


def lemma7_independent(d, r, order, m, *, seeds, epochs=8, eps=0.05, **kwargs):
    """Lemma 7 on independent samples: the first growth epoch of each of several independent runs.

    The growth epochs of one run are not independent (with ``m = r`` a run keeps
    losing and refitting the same component).  Here every seed gets its own
    target (:func:`sweep_targets`) and its own recorded run, and only its first
    growth epoch (see :func:`lemma7_growth`, which gets ``eps`` and ``kwargs``) is kept.

    Returns
    -------
    dict
        The lists of :func:`lemma7_growth` with one entry per run that had a growth
        epoch (``seed`` says which), ``n_runs``.
    """
    seeds = check_seeds(seeds, distinct=True)
    targets = sweep_targets(d, r, order, len(seeds))
    keys = ("epochs", "rate_before", "rate_after", "eps_start", "kappa", "kappa_eps", "ps0_ratio", "curves")
    out = {k: [] for k in keys}
    out.update(seed=[], n_runs=len(seeds), eps=eps, r=r, order=order)
    for target, seed in zip(targets, seeds):
        g = lemma7_growth(recorded_run(target, m, seed=seed, epochs=epochs), eps=eps, **kwargs)
        if g["epochs"]:
            for k in keys:
                out[k].append(g[k][0])
            out["seed"].append(seed)
            out["eta"] = g["eta"]
    return out


def plot_lemma7(growth, *, ax=None, max_curves=6):
    """``||P_S u_t||`` of the fresh column in growth epochs (log scale)."""
    import matplotlib as mpl

    ax = new_ax(ax)
    cmap = mpl.colormaps["viridis"]
    curves = growth["curves"][:max_curves]
    for n, ((t, ps), k) in enumerate(zip(curves, growth["epochs"])):
        ax.plot(t, ps, color=cmap(n / max(1, len(curves) - 1)), label=f"epoch {k}")
    ax.set_yscale("log")
    ax.set_xlabel("iteration within the epoch")
    ax.set_ylabel(r"$\|P_S u_t\|$ of the fresh column")
    legend(ax, loc="lower right", fontsize=8)
    return ax


def lemma9_paths(run, *, min_decrease=1e-9):
    """Path length of the tensor in each epoch against Lemma 9's ``sqrt(eta H / lam (f_0 - f_H))``.

    Returns
    -------
    dict
        ``epochs``, ``path`` (``sum_t ||T_t - T_{t-1}||_F``), ``decrease``
        (``f_0 - f_H`` with ``f_0`` after the re-initialisation), ``scale``
        (``sqrt(eta H / lam * decrease)``), ``ratio`` (path / scale, only for
        epochs whose decrease exceeds ``min_decrease``), ``constant`` (largest ratio);
        with the epoch-end states of :func:`recorded_run` also ``norm2`` (the larger of
        ``||U||_F^2`` at the epoch's start and end, standing in for its maximum over the
        epoch), ``ratio_u`` (``path / sqrt(eta H decrease norm2)``: the bound with the
        measured column norms in place of the proof's ``f_0 / lam``; the argument of
        the proof gives ``ratio_u <= l^{3/2}``) and ``constant_u``.
    """
    res = run["result"] if isinstance(run, dict) else run
    p = res.params
    if p.lam <= 0:
        raise ValueError("Lemma 9's scale needs lam > 0")
    h = res.history
    recs = _epoch_records(res)
    states = run.get("states") if isinstance(run, dict) else None
    out = {"epochs": [], "path": [], "decrease": [], "scale": [], "ratio": [], "norm2": [], "ratio_u": []}
    for k_idx, k in enumerate(h["epoch"]):
        path = float(sum(it["step_change"] for it in recs[k]))
        dec = h["f_after_reinit"][k_idx] - h["objective"][k_idx]
        scale = math.sqrt(p.eta * p.iters / p.lam * max(dec, 0.0))
        out["epochs"].append(k)
        out["path"].append(path)
        out["decrease"].append(dec)
        out["scale"].append(scale)
        out["ratio"].append(path / scale if dec > min_decrease else math.nan)
        if states is not None:
            end = float(np.sum(np.asarray(states[k_idx]["U"]) ** 2))
            start = float(np.sum(np.asarray(states[k_idx - 1]["U"]) ** 2)) if k_idx else 0.0
            n2 = max(start, end)
            out["norm2"].append(n2)
            ok = dec > min_decrease and n2 > 0
            out["ratio_u"].append(path / math.sqrt(p.eta * p.iters * dec * n2) if ok else math.nan)
    rat = np.array(out["ratio"], float)
    out["constant"] = float(np.nanmax(rat)) if np.isfinite(rat).any() else math.nan
    ru = np.array(out["ratio_u"], float)
    out["constant_u"] = float(np.nanmax(ru)) if ru.size and np.isfinite(ru).any() else math.nan
    return out


def plot_lemma9(paths, *, ax=None):
    """Path length against Lemma 9's scale, per epoch (log-log), with ``y = x``."""
    ax = new_ax(ax)
    sc = np.array(paths["scale"])
    pa = np.array(paths["path"])
    ok = np.isfinite(np.array(paths["ratio"], float))
    ax.plot(sc[ok], pa[ok], "o", color=method_color("algorithm1"), label="epochs of the run")
    if ok.any():
        xx = np.geomspace(sc[ok].min(), sc[ok].max(), 10)
        ax.plot(xx, xx, ls="--", color=method_color("reference"), label="path = scale")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(r"$\sqrt{\eta H/\lambda\;(f_0 - f_H)}$")
    ax.set_ylabel(r"$\sum_t \|T_t - T_{t-1}\|_F$")
    legend(ax, loc="lower right", fontsize=8)
    return ax


def lemma1_decrease(results, *, eps, substantial=0.1, include_first=True):
    """Fraction of epochs that decrease ``f`` while the error exceeds ``eps`` (Lemma 1).

    An epoch ``k`` counts when the relative error at its start (end of epoch
    ``k - 1``; epoch 1 starts from the initialisation, error 1) exceeds ``eps``;
    it decreases when ``f`` at its end is below ``f`` before its re-initialisation.

    Parameters
    ----------
    results : sequence of Result
    eps : float
    substantial : float
        Also count the epochs whose decrease is at least this fraction of ``f``
        before the re-initialisation.
    include_first : bool
        Count epoch 1 (whose progress is all columns growing at once from the
        initialisation, not the fresh column of the lemma).  Either way, ``first``
        reports epoch 1 on its own.

    Returns
    -------
    dict
        ``n_epochs`` (counted), ``n_decrease``, ``fraction`` (any decrease),
        ``n_substantial``, ``fraction_substantial``, ``decreases`` (``f_before -
        f_end`` of the counted epochs), ``f_before``; ``first``: epoch 1 of every run
        (``n``, ``n_substantial``, ``decreases``, ``f_before``).
    """
    eps = check_float("eps", eps, positive=True)
    substantial = check_float("substantial", substantial, nonnegative=True)
    if not isinstance(include_first, bool):
        raise TypeError(f"include_first must be True or False, got {include_first!r}")
    dec, fb, dec1, fb1 = [], [], [], []
    for res in results:
        h = res.history
        for k_idx in range(len(h["epoch"])):
            d_k = h["f_before_reinit"][k_idx] - h["objective"][k_idx]
            if k_idx == 0:
                dec1.append(d_k)
                fb1.append(h["f_before_reinit"][k_idx])
                if not include_first:
                    continue
            start = 1.0 if k_idx == 0 else h["rel_error"][k_idx - 1]
            if start > eps:
                dec.append(d_k)
                fb.append(h["f_before_reinit"][k_idx])
    dec, fb = np.array(dec, float), np.array(fb, float)
    dec1, fb1 = np.array(dec1, float), np.array(fb1, float)
    n = int(dec.size)
    nd = int(np.sum(dec > 0))
    ns = int(np.sum(dec >= substantial * fb))
    return {"n_epochs": n, "n_decrease": nd, "fraction": nd / n if n else math.nan, "n_substantial": ns,
            "fraction_substantial": ns / n if n else math.nan, "substantial": substantial, "decreases": dec,
            "f_before": fb, "include_first": include_first,
            "first": {"n": int(dec1.size), "n_substantial": int(np.sum(dec1 >= substantial * fb1)),
                      "decreases": dec1, "f_before": fb1}}


def plot_lemma1(stats, *, ax=None):
    """Histogram of the relative per-epoch change of ``f`` in epochs that start above the accuracy."""
    ax = new_ax(ax)
    rel = -stats["decreases"] / np.maximum(stats["f_before"], 1e-300)
    ax.hist(rel, bins=40, color=method_color("algorithm1"), alpha=0.8)
    ax.axvline(0, color="k", lw=0.8)
    ax.axvline(-stats["substantial"], color=method_color("lazy"), ls="--", lw=1)
    ax.set_xlabel(r"($f$ at the end of the epoch $-$ $f$ before its re-initialisation) / $f$ before")
    ax.set_ylabel("epochs")
    return ax


# ---------------------------------------------------------------------------
# explorer
# ---------------------------------------------------------------------------
def explore_fresh_growth(*, ax=None, d=30, r=3, order=3, m=3, seed=0, epoch=3):
    """Explorer panel: the fresh column's ``||u||`` and ``||P_S u||`` in one epoch of a run."""
    ax = new_ax(ax)
    target = sweep_targets(d, r, order, 1, target_seed=seed)[0]
    epoch = int(epoch)
    run = algorithm1(target, m, seed=seed, epochs=epoch, record_every=1)
    rec = [it for it in run.history["iterations"] if it["epoch"] == epoch]
    t = [it["iteration"] for it in rec]
    ax.plot(t, [it["fresh_norm"] for it in rec], color=method_color("algorithm1"), label=r"$\|u\|$")
    ax.plot(t, [it["fresh_ps_norm"] for it in rec], color=method_color("algorithm1"), ls="--",
            label=r"$\|P_S u\|$")
    ax.axhline(run.params.switch_threshold, color=method_color("reference"), ls=":", lw=1,
               label="switch threshold")
    ax.set_yscale("log")
    ax.set_xlabel(f"iteration in epoch {epoch}")
    ax.set_ylabel("fresh column")
    legend(ax, loc="lower right", fontsize=8)
    return ax
