"""The two-layer chapter's sweeps at full size: width and samples needed against d, one cell per d.

A width cell runs :func:`tdcore.book.two_layer.width_sweep` at one ``d`` with the
sample count fixed for the whole grid (the chapter's rule applied to the largest
``d``), a sample cell :func:`tdcore.book.two_layer.sample_sweep` at one ``d``;
the merge puts the per-``d`` thresholds side by side and fits their exponents in
``d`` (:func:`tdcore.fit_loglog_slope`).  The chapter itself runs the book size;
this sweep is for larger ``d`` (``python -m tdcore sweep two_layer``).
"""

from __future__ import annotations

import math

__all__ = ["SIZES", "cells", "run_cell", "merge"]

SIZES = {
    "quick": {"ds": [4, 5, 6], "seeds": [0, 1], "epochs": 60,
              "ms_lazy": [2, 4, 8, 16, 32], "ms_train": [2, 4, 8], "sample_seeds": [0, 1]},
    "book": {"ds": [4, 6, 8, 12, 16], "seeds": [0, 1, 2], "epochs": 400,
             "ms_lazy": [2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192], "ms_train": [2, 4, 8, 16],
             "sample_seeds": [0, 1, 2, 3, 4]},
    "full": {"ds": [4, 6, 8, 12, 16, 24], "seeds": [0, 1, 2, 3, 4], "epochs": 400,
             "ms_lazy": [2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512],
             "ms_train": [2, 4, 8, 16], "sample_seeds": list(range(8))},
}


def _n_for(ds):
    """The chapter's sample count for the width sweep: 4 (C(D + 2, 3) + D) for the largest D."""
    D = max(ds)
    return 4 * (math.comb(D + 2, 3) + D)


def cells(size):
    c = SIZES[size]
    n = _n_for(c["ds"])
    out = [{"kind": "width", "d": d, "n": n, "ms_lazy": c["ms_lazy"], "ms_train": c["ms_train"],
            "epochs": c["epochs"], "seeds": c["seeds"]} for d in c["ds"]]
    out += [{"kind": "samples", "d": d, "epochs": c["epochs"], "seeds": c["sample_seeds"]} for d in c["ds"]]
    return out


def run_cell(*, kind, d, **p):
    from ..book import two_layer as tl

    if kind == "width":
        w = tl.width_sweep([d], ms_lazy=p["ms_lazy"], ms_train=p["ms_train"], n=p["n"], epochs=p["epochs"],
                           seeds=tuple(p["seeds"]))
        return {"d": d, "eps": w.eps, "m_star": {k: v[0] for k, v in w.m_star.items()}}
    if kind == "samples":
        s = tl.sample_sweep([d], epochs=p["epochs"], seeds=tuple(p["seeds"]))
        return {"d": d, "eps": s.eps, "n_star": {k: v[0] for k, v in s.n_star.items()}}
    raise ValueError(f"unknown cell kind {kind!r}")


def _table(rows, key):
    ds = [r["d"] for r in rows]
    regimes = sorted({k for r in rows for k in r[key]})
    from .._stats import fit_loglog_slope

    out = {"ds": ds, key: {}, "exponent": {}}
    for reg in regimes:
        vals = [r[key].get(reg) for r in rows]
        out[key][reg] = vals
        fit = fit_loglog_slope(ds, [math.nan if v is None else v for v in vals], drop_invalid=True)
        out["exponent"][reg] = None if fit is None else {"slope": fit.slope, "low": fit.low, "high": fit.high,
                                                          "n": fit.n}
    return out


def merge(size, results):
    width = sorted((res for p, res in results if p["kind"] == "width"), key=lambda r: r["d"])
    samples = sorted((res for p, res in results if p["kind"] == "samples"), key=lambda r: r["d"])
    return {"size": size, "sizes": SIZES[size], "width": _table(width, "m_star"),
            "samples": _table(samples, "n_star")}
