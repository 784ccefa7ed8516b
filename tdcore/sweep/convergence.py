"""The full-size sweeps of the part *Beyond lazy training*, as independent cells.

The chapters *Convergence in practice* and *The proof in pictures* run small
versions of these sweeps at every build and show the stored full run beside
them (``results/convergence_full.json``).  Each cell is one independent unit of
that run: one ``m*`` search (one order and one ``d`` or ``r``), one lazy
threshold sweep, one success curve, one error-curve configuration, one ablation,
the switch ablation, the lambda sweep, the re-initialisation jumps.  The merge
assembles them into the layout the chapters read (``tdcore.book.convergence``).
"""

from __future__ import annotations

import math
import time

__all__ = ["SIZES", "cells", "run_cell", "merge"]

#: Sizes of every sweep: ``full`` is the stored run, ``book`` a few minutes, ``quick`` the tests'.
SIZES = {
    "full": {
        "seeds": list(range(8)), "epochs": 16, "stable_epochs": 4, "eps_m": 0.05, "q": 0.8,
        "headline": {"orders": [3, 4], "eps": 0.1,
                     "alg_ds": {3: [8, 16, 32, 64, 128, 256, 512], 4: [8, 16, 32, 64, 128, 256]},
                     "lazy_ds": {3: [4, 6, 8, 10, 12, 16, 20], 4: [4, 5, 6, 7, 8, 10]},
                     "lazy_seeds": [0, 1, 2, 3, 4]},
        "success": {"r": 2, "orders": [3, 4], "ds": [10, 40, 160, 640], "ms": [1, 2, 3, 4, 6]},
        "m_star_r": {"d": 64, "orders": [3, 4], "rs": [1, 2, 3, 4, 6, 8, 12, 16]},
        "m_star_r_long": {"d": 64, "orders": [4], "rs": [4, 8, 12, 16], "epochs": 40, "stable_epochs": 4},
        "error_curves": [{"d": 40, "r": 2, "order": 3, "m": 3}, {"d": 40, "r": 4, "order": 3, "m": 5},
                         {"d": 160, "r": 4, "order": 3, "m": 6}, {"d": 40, "r": 2, "order": 4, "m": 3},
                         {"d": 160, "r": 3, "order": 4, "m": 5}],
        "ablation": [{"d": 64, "r": 3, "order": 3, "m": 4}, {"d": 64, "r": 3, "order": 3, "m": 6},
                     {"d": 64, "r": 2, "order": 4, "m": 3}, {"d": 64, "r": 2, "order": 4, "m": 5}],
        "ablation_seeds": list(range(16)),
        "switch": {"ds": [8, 16, 32, 64, 128, 256], "r": 2, "order": 4, "m": 3, "epochs": 40},
        "lambda": {"lams": [3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1], "d": 30, "r": 3, "order": 3, "m": 4, "polish": 300},
        "jumps": {"ms": [4, 8, 16, 32, 64], "lams": [2e-3, 1e-2, 5e-2], "d": 30, "r": 3, "order": 3, "epochs": 10},
    },
    "book": {
        "seeds": list(range(5)), "epochs": 12, "stable_epochs": 3, "eps_m": 0.05, "q": 0.8,
        "headline": {"orders": [3], "eps": 0.1, "alg_ds": {3: [8, 32, 128]}, "lazy_ds": {3: [4, 6, 8, 12]},
                     "lazy_seeds": [0, 1, 2]},
        "success": {"r": 2, "orders": [3], "ds": [10, 40], "ms": [1, 2, 3, 4]},
        "m_star_r": {"d": 40, "orders": [3], "rs": [1, 2, 4]},
        "m_star_r_long": {"d": 40, "orders": [4], "rs": [2, 4], "epochs": 20, "stable_epochs": 3},
        "error_curves": [{"d": 40, "r": 2, "order": 3, "m": 3}],
        "ablation": [{"d": 40, "r": 3, "order": 3, "m": 4}],
        "ablation_seeds": list(range(8)),
        "switch": {"ds": [8, 32, 128], "r": 2, "order": 4, "m": 3, "epochs": 20},
        "lambda": {"lams": [1e-3, 1e-2, 1e-1], "d": 30, "r": 3, "order": 3, "m": 4, "polish": 200},
        "jumps": {"ms": [4, 16], "lams": [2e-3, 5e-2], "d": 30, "r": 3, "order": 3, "epochs": 8},
    },
    "quick": {
        "seeds": [0, 1], "epochs": 4, "stable_epochs": 2, "eps_m": 0.05, "q": 0.5,
        "headline": {"orders": [3], "eps": 0.1, "alg_ds": {3: [6, 8, 10]}, "lazy_ds": {3: [3, 4, 5]},
                     "lazy_seeds": [0]},
        "success": {"r": 1, "orders": [3], "ds": [6], "ms": [1, 2]},
        "m_star_r": {"d": 8, "orders": [3], "rs": [1, 2, 3]},
        "m_star_r_long": {"d": 8, "orders": [3], "rs": [1, 2], "epochs": 6, "stable_epochs": 2},
        "error_curves": [{"d": 8, "r": 1, "order": 3, "m": 2}],
        "ablation": [{"d": 8, "r": 1, "order": 3, "m": 2}],
        "ablation_seeds": [0, 1],
        "switch": {"ds": [6, 8], "r": 1, "order": 3, "m": 2, "epochs": 4},
        "lambda": {"lams": [1e-3, 1e-2, 1e-1], "d": 6, "r": 1, "order": 3, "m": 2, "polish": 20},
        "jumps": {"ms": [2, 3], "lams": [1e-2], "d": 6, "r": 1, "order": 3, "epochs": 3},
    },
}


def cells(size):
    """Every independent unit of the run at ``size``, as a dict with a ``kind``."""
    c = SIZES[size]
    seeds, K, st, q, eps = c["seeds"], c["epochs"], c["stable_epochs"], c["q"], c["eps_m"]
    out = []
    h = c["headline"]
    for o in h["orders"]:
        for d in h["alg_ds"][o]:
            out.append({"kind": "m_star", "section": "headline", "d": d, "r": 1, "order": o, "seeds": seeds,
                        "eps": h["eps"], "q": q, "epochs": K, "stable_epochs": st, "m_min": 1})
        out.append({"kind": "lazy", "order": o, "ds": h["lazy_ds"][o], "threshold": h["eps"],
                    "seeds": h["lazy_seeds"]})
    s = c["success"]
    for o in s["orders"]:
        for d in s["ds"]:
            out.append({"kind": "success", "d": d, "r": s["r"], "order": o, "ms": s["ms"], "seeds": seeds,
                        "eps": eps, "epochs": K, "stable_epochs": st})
    for section in ("m_star_r", "m_star_r_long"):
        mr = c[section]
        for o in mr["orders"]:
            for r in mr["rs"]:
                out.append({"kind": "m_star", "section": section, "d": mr["d"], "r": r, "order": o,
                            "seeds": seeds, "eps": eps, "q": q, "epochs": mr.get("epochs", K),
                            "stable_epochs": mr.get("stable_epochs", st), "m_min": 1})
    for cfg in c["error_curves"]:
        out.append({"kind": "error_curve", "config": {**cfg, "epochs": K}, "seeds": seeds})
    for cfg in c["ablation"]:
        out.append({"kind": "ablation", **cfg, "seeds": c["ablation_seeds"], "eps": eps, "epochs": K})
    sw = c["switch"]
    out.append({"kind": "switch", **sw, "seeds": seeds, "eps": eps})
    lm = c["lambda"]
    out.append({"kind": "lambda", **lm, "seeds": seeds, "epochs": K})
    jp = c["jumps"]
    out.append({"kind": "jumps", **jp, "seeds": seeds})
    return out


def run_cell(*, kind, **p):
    """Compute one cell (a dict of JSON types)."""
    from .._lazy import lazy_threshold_sweep
    from .._util import jsonable
    from ..book import algorithm1 as a1
    from ..book import convergence as cv
    from ..book import proof_pictures as pp

    if kind == "m_star":
        p.pop("section")
        t0 = time.perf_counter()
        res = cv.m_star_search(p.pop("d"), p.pop("r"), p.pop("order"), **p)
        return {"m_star": None if math.isnan(res.m_star) else res.m_star, "certified": res.certified,
                "q": res.q, "curve": res.curve.to_dict(), "elapsed": time.perf_counter() - t0}
    if kind == "lazy":
        lz = lazy_threshold_sweep(p["ds"], p["order"], threshold=p["threshold"], seeds=tuple(p["seeds"]))
        return cv._lazy_to_dict(lz)
    if kind == "success":
        return cv.success_curve(p.pop("d"), p.pop("r"), p.pop("order"), p.pop("ms"), **p).to_dict()
    if kind == "error_curve":
        return jsonable(cv.error_curves([p["config"]], seeds=p["seeds"]))
    if kind == "ablation":
        return a1.ablation_study(p.pop("d"), p.pop("r"), p.pop("order"), p.pop("m"), **p).to_dict()
    if kind == "switch":
        return jsonable(a1.switch_ablation_vs_d(p.pop("ds"), p.pop("r"), p.pop("order"), p.pop("m"), **p))
    if kind == "lambda":
        return cv.lambda_sweep(p.pop("lams"), **p).to_dict()
    if kind == "jumps":
        return jsonable(pp.reinit_jumps(**p))
    raise ValueError(f"unknown cell kind {kind!r}")


def _m_star_sweep(vary, entries):
    """The stored form of an m* sweep from its per-value cells (``MStarSweep.to_dict``)."""
    from ..book import convergence as cv

    entries = sorted(entries, key=lambda e: e[0][vary])
    p0 = entries[0][0]
    fixed = {"order": p0["order"], "eps": p0["eps"], "q": p0["q"], "epochs": p0["epochs"],
             "stable_epochs": p0["stable_epochs"], "n_seeds": len(p0["seeds"])}
    fixed.update({"r": p0["r"]} if vary == "d" else {"d": p0["d"]})
    results = [cv.MStarResult(math.nan if res["m_star"] is None else float(res["m_star"]),
                              cv.SuccessCurve.from_dict(res["curve"]), res["q"], bool(res["certified"]))
               for _, res in entries]
    values = [p[vary] for p, _ in entries]
    return cv.assemble_m_star_sweep(vary, values, fixed, results, float(sum(r["elapsed"] for _, r in entries)))


def merge(size, results):
    """The results file in the layout of ``results/convergence_full.json``."""
    from .._util import jsonable
    from ..book import convergence as cv

    c = SIZES[size]
    by = {}
    for p, res in results:
        by.setdefault(p["kind"], []).append((p, res))
    h = c["headline"]
    alg = {o: _m_star_sweep("d", [e for e in by["m_star"] if e[0]["section"] == "headline" and e[0]["order"] == o])
           for o in h["orders"]}
    lazy = {o: next(res for p, res in by["lazy"] if p["order"] == o) for o in h["orders"]}
    out = {"headline": cv.HeadlineData(h["orders"], alg, lazy, h["eps"], f"stored {size} run").to_dict()}
    out["success_curves"] = [res for _, res in by["success"]]
    for section, key in (("m_star_r", "m_star_vs_r"), ("m_star_r_long", "m_star_vs_r_long")):
        out[key] = {str(o): _m_star_sweep("r", [e for e in by["m_star"]
                                                 if e[0]["section"] == section and e[0]["order"] == o]).to_dict()
                    for o in c[section]["orders"]}
    out["error_curves"] = [entry for _, res in by["error_curve"] for entry in res]
    out["ablation"] = [res for _, res in by["ablation"]]
    out["switch_ablation"] = by["switch"][0][1]
    out["lambda_sweep"] = by["lambda"][0][1]
    out["reinit_jumps"] = by["jumps"][0][1]
    elapsed = 0.0
    for _, res in results:
        if isinstance(res, dict) and isinstance(res.get("elapsed"), (int, float)):
            elapsed += float(res["elapsed"])
    out["meta"] = {"script": "python -m tdcore sweep convergence --size " + size, "size": size,
                   "sizes": jsonable(c), "batches_total": len(results), "compute_seconds_all_batches": elapsed,
                   "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
    return jsonable(out)
