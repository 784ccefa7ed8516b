"""Benchmark 8: time to accuracy of ``decompose`` against TensorLy's CP-ALS at its best initialisation.

:func:`bench_time_to_accuracy` measures, on a table of target families
(:data:`TTA_CASES`: random, correlated, orthogonal, over-complete ``r > d``,
order 4, ``d`` from 8 to 100), the time to a relative error ``eps`` of
:func:`tdcore.decompose` and of CP-ALS with each of TensorLy's two
initialisations (``"random"`` and ``"svd"``), on the same targets and seeds,
in one process with one BLAS thread.  :func:`bench_time_to_accuracy_vs_d`
repeats it for one family as ``d`` grows (the plot of time to ``1e-6``
against ``d``).  Runs are deterministic given their seed; each successful run
is repeated in separate passes and its fastest time kept (see
:func:`tdcore.bench.baselines._run_repeated`).

ALS's "best initialisation" is the one with the lower median time over its
successful seeds, whatever its success rate: the comparison most favourable to
ALS.  The records also give, per initialisation, the expected time to a
solution with restarts (all the time spent, failures included, divided by the
number of successes).
"""

from __future__ import annotations

import time

import numpy as np

from .. import _baselines as _bl
from .baselines import _baselines_skip, _run_repeated

__all__ = ["TTA_CASES", "TTA_INITS", "tta_target", "bench_time_to_accuracy", "bench_time_to_accuracy_vs_d"]

#: The table's cases: ``(label, kind, d, r, order)``; ``kind`` "random" is :func:`tdcore.random_target`,
#: the others :func:`tdcore._baselines.comparison_target`.
TTA_CASES = (
    ("random", "random", 8, 3, 3),
    ("random", "random", 10, 4, 3),
    ("random", "random", 50, 10, 3),
    ("correlated (rho = 0.7)", "correlated", 100, 10, 3),
    ("overcomplete (r > d)", "random", 10, 15, 3),
    ("order 4", "random", 20, 5, 4),
    ("orthogonal", "orthogonal", 30, 5, 3),
)

#: TensorLy ``parafac`` initialisations compared.
TTA_INITS = ("random", "svd")


def tta_target(kind, d, r, order, seed):
    """The unit-norm target of one table case (see :data:`TTA_CASES`)."""
    from .._tensor import random_target

    if kind == "random":
        return random_target(d, r, order, seed=seed)
    return _bl.comparison_target(kind, d, r, order, seed=seed)


def _jobs(T, r, m, seed, eps, inits, als_iter_max):
    from .._refine import decompose

    def dec():
        res = decompose(T, m, tol=eps, seed=seed)
        return {"method": "decompose", "time_s": res.elapsed, "time_algorithm1_s": res.elapsed_algorithm1,
                "time_refine_s": res.elapsed_refine, "rel_error": float(res.rel_error),
                "lm_iters": res.refine.n_iter, "m_refined": int(res.refine.history[0]["m"]),
                "refine_fallback": bool(res.refine_fallback),
                "fingerprint": (float(res.rel_error), res.refine.n_iter)}

    def als(init):
        res = _bl.cp_als(T, r, seed=seed, init=init, target_error=eps, tol=0.0, n_iter_max=als_iter_max)
        return {"method": "cp_als", "init": init, "time_s": res.elapsed, "rel_error": float(res.rel_error),
                "n_iter": res.n_iter, "fingerprint": (float(res.rel_error), res.n_iter)}

    jobs = [({"method": "decompose"}, dec, eps)]
    jobs += [({"method": "cp_als", "init": i}, lambda i=i: als(i), eps) for i in inits]
    return jobs


def _warmup():
    from .._refine import decompose

    T0 = tta_target("random", 6, 2, 3, 0)
    decompose(T0, 6, tol=1e-6, seed=0)
    for init in TTA_INITS:
        _bl.cp_als(T0, 2, seed=0, init=init, n_iter_max=2)


def _summarize(recs, inits):
    """Per method (and ALS init): successes, median time of the successes, expected time with restarts."""
    out = {}
    groups = [("decompose", [x for x in recs if x["method"] == "decompose"])]
    groups += [(f"cp_als_{i}", [x for x in recs if x["method"] == "cp_als" and x["init"] == i]) for i in inits]
    for name, rs in groups:
        ok = [x for x in rs if x["success"]]
        out[name] = {"n": len(rs), "successes": len(ok),
                     "median_s": float(np.median([x["time_s"] for x in ok])) if ok else None,
                     "expected_s": (float(sum(x["time_s"] for x in rs) / len(ok)) if ok else None),
                     "median_rel_error": float(np.median([x["rel_error"] for x in rs])) if rs else None}
        if name == "decompose" and ok:
            out[name]["median_algorithm1_s"] = float(np.median([x["time_algorithm1_s"] for x in ok]))
            out[name]["median_refine_s"] = float(np.median([x["time_refine_s"] for x in ok]))
            out[name]["median_lm_iters"] = float(np.median([x["lm_iters"] for x in ok]))
            out[name]["fallbacks"] = int(sum(x["refine_fallback"] for x in rs))
        if name.startswith("cp_als") and ok:
            out[name]["median_sweeps"] = float(np.median([x["n_iter"] for x in ok]))
    als = [(i, out[f"cp_als_{i}"]) for i in inits if out[f"cp_als_{i}"]["median_s"] is not None]
    best = min(als, key=lambda kv: kv[1]["median_s"]) if als else None
    full = [kv for kv in als if kv[1]["successes"] == kv[1]["n"]]
    best_full = min(full, key=lambda kv: kv[1]["median_s"]) if full else None
    dec = out["decompose"]
    out["best_init"] = best[0] if best else None
    out["best_als_s"] = best[1]["median_s"] if best else None
    out["best_init_all_seeds"] = best_full[0] if best_full else None
    out["best_als_all_seeds_s"] = best_full[1]["median_s"] if best_full else None
    out["ratio"] = (dec["median_s"] / out["best_als_s"]) if (best and dec["median_s"]) else None
    out["ratio_all_seeds"] = (dec["median_s"] / out["best_als_all_seeds_s"]) if (best_full and dec["median_s"]) \
        else None
    out["decompose_all_seeds"] = dec["successes"] == dec["n"]
    out["met"] = bool(out["decompose_all_seeds"] and (out["ratio"] is None or out["ratio"] <= 1.0))
    return out


def bench_time_to_accuracy(cases=TTA_CASES, *, seeds=range(5), eps=1e-6, m_factor=3, inits=TTA_INITS,
                           repeats=3, als_iter_max=2000):
    """Time to relative error ``eps``: ``decompose`` against CP-ALS with each initialisation, per case.

    Parameters
    ----------
    cases : sequence of (label, kind, d, r, order)
        Default :data:`TTA_CASES`.
    seeds : iterable of int
        One target and one run of every method per seed.
    eps : float
        The accuracy (relative Frobenius error).
    m_factor : int
        ``decompose`` runs Algorithm 1 with ``m = m_factor * r`` components.
    inits : sequence of {"random", "svd"}
    repeats : int
        Each successful run is repeated this many times (in separate passes); its fastest time counts.
    als_iter_max : int
        Sweeps allowed to ALS.

    Returns
    -------
    dict
        ``status`` (``"measured"`` or ``"skipped"`` without TensorLy), ``records``
        (per case, seed, method and init), ``rows`` (per case: the summary of
        :func:`_summarize` -- successes, median times, the best ALS init and the
        ratio decompose / best ALS, ``met``), ``all_met``, ``all_identical``.
    """
    _, reason = _baselines_skip()
    if reason:
        return {"status": "skipped", "reason": reason, "records": [], "rows": []}
    eps = float(eps)
    seeds = [int(s) for s in seeds]
    inits = tuple(inits)
    _warmup()
    jobs = []
    for ci, (label, kind, d, r, order) in enumerate(cases):
        for seed in seeds:
            T = tta_target(kind, d, r, order, seed)
            jobs += [({"case": ci, "label": label, "kind": kind, "d": d, "r": r, "order": order, "seed": seed,
                       **meta}, fn, e) for meta, fn, e in _jobs(T, r, m_factor * r, seed, eps, inits, als_iter_max)]
    t0 = time.perf_counter()
    recs = _run_repeated(jobs, repeats)
    rows = []
    for ci, (label, kind, d, r, order) in enumerate(cases):
        sub = [x for x in recs if x["case"] == ci]
        rows.append({"case": ci, "label": label, "kind": kind, "d": d, "r": r, "order": order,
                     "m": m_factor * r, **_summarize(sub, inits)})
    return {"status": "measured", "eps": eps, "seeds": seeds, "m_factor": m_factor, "inits": list(inits),
            "repeats": int(repeats), "als_iter_max": als_iter_max, "records": recs, "rows": rows,
            "all_met": all(r["met"] for r in rows), "all_identical": all(x["identical"] for x in recs),
            "wall_s": time.perf_counter() - t0}


def bench_time_to_accuracy_vs_d(ds=(8, 16, 32, 64, 100), *, kind="random", r=5, order=3, seeds=range(5), eps=1e-6,
                                m_factor=3, inits=TTA_INITS, repeats=3, als_iter_max=2000):
    """:func:`bench_time_to_accuracy` on one family (``kind``, ``r``, ``order``) for each ``d`` in ``ds``."""
    cases = tuple((f"{kind} d={d}", kind, int(d), r, order) for d in ds)
    out = bench_time_to_accuracy(cases, seeds=seeds, eps=eps, m_factor=m_factor, inits=inits, repeats=repeats,
                                 als_iter_max=als_iter_max)
    out.update(ds=[int(d) for d in ds], kind=kind, r=r, order=order)
    return out
