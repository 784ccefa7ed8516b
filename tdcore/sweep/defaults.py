"""The sweep behind :func:`tdcore.default_params`: success counts of the default rule.

For orders 3 and 4, several ``d`` and ``r`` and ``m = 3r``, Algorithm 1 runs with
every parameter left to the default rule on one batch of seeds per cell; two
alternative rules (a fixed radius ``delta = 1e-3`` with ``eta = 0.05``, and four
times the default step) run at ``d = 50, r = 5, m = 60``.  Each cell records how
many seeds reach relative error 0.05, the median and largest error, the epoch
where 0.05 was first reached and the parameters used.
"""

from __future__ import annotations

import time

import numpy as np

from .._algorithm1 import algorithm1_batch, default_params
from .._tensor import random_target

__all__ = ["cells", "run_cell", "merge"]

EPS = 0.05

_GRID = {
    "quick": {"orders": (3,), "ds": (6, 8), "rs": (1, 2), "seeds": 2, "alt": False},
    "book": {"orders": (3, 4), "ds": (10, 50), "rs": (2, 5), "seeds": 4, "alt": True},
    "full": {"orders": (3, 4), "ds": (10, 50, 200), "rs": (2, 5, 8), "seeds": 10, "alt": True},
}


def cells(size):
    """One cell per (rule, order, d, r) with its seeds."""
    g = _GRID[size]
    seeds = list(range(g["seeds"]))
    out = [{"rule": "default", "order": o, "d": d, "r": r, "m": 3 * r, "seeds": seeds}
           for o in g["orders"] for d in g["ds"] for r in g["rs"]]
    if g["alt"]:
        for o in g["orders"]:
            out.append({"rule": "fixed-delta", "order": o, "d": 50, "r": 5, "m": 60, "seeds": seeds,
                        "delta": 1e-3, "eta": 0.05})
            out.append({"rule": "4x-eta", "order": o, "d": 50, "r": 5, "m": 60, "seeds": seeds,
                        "eta": 4 * 0.25 / o**2})
    return out


def run_cell(*, rule, order, d, r, m, seeds, eta=None, delta=None):
    """Algorithm 1 on ``len(seeds)`` random targets of rank ``r`` (target seed ``1000 + seed``)."""
    targets = [random_target(d, r, order, seed=1000 + s) for s in seeds]
    t0 = time.perf_counter()
    b = algorithm1_batch(targets, m, seeds=seeds, backend="numpy", eta=eta, delta=delta)
    elapsed = time.perf_counter() - t0
    errs = np.asarray(b.rel_errors, dtype=float)
    first = []
    for res in b.results:
        e = np.asarray(res.history["rel_error"], dtype=float)
        hit = np.flatnonzero(e <= EPS)
        first.append(int(hit[0]) + 1 if hit.size else None)
    p = default_params(d, order, m, eta=eta, delta=delta)
    return {
        "rule": rule, "order": order, "d": d, "r": r, "m": m, "n_seeds": len(seeds),
        "successes": int(np.sum(errs <= EPS)), "median_error": float(np.median(errs)),
        "max_error": float(np.max(errs)), "diverged": len(b.diverged), "first_epoch_below_0.05": first,
        "batch_seconds": elapsed,
        "params": {"epochs": p.epochs, "iters": p.iters, "eta": p.eta, "delta": p.delta, "lam": p.lam},
    }


def merge(size, results):
    """The results file: rows of the default rule, rows of the alternatives, and a Markdown table."""
    rows = [res for _, res in results]
    default = [r for r in rows if r["rule"] == "default"]
    alt = [r for r in rows if r["rule"] != "default"]
    md = ["| rule | l | d | r | m | successes | median error | diverged |", "|---|---|---|---|---|---|---|---|"]
    for row in default + alt:
        md.append(f"| {row['rule']} | {row['order']} | {row['d']} | {row['r']} | {row['m']} | "
                  f"{row['successes']}/{row['n_seeds']} | {row['median_error']:.2g} | {row['diverged']} |")
    return {"size": size, "success_threshold": EPS, "default": default, "alternatives": alt,
            "markdown": "\n".join(md) + "\n"}
