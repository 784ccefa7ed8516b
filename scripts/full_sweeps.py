"""Full-size sweeps of the part *Beyond lazy training*, resumable, written to ``results/``.

The chapters *Convergence in practice* and *The proof in pictures* execute small
versions of these sweeps every time the book is built, and show the stored
results of this script beside them.  Everything here is computed by the
chapters' modules ``tdcore.book.algorithm1``, ``tdcore.book.convergence`` and
``tdcore.book.proof_pictures``; this script only fixes the sizes, checkpoints
every finished batch of trials and assembles the results file.

Usage::

    python scripts/full_sweeps.py                      # full size -> results/convergence_full.json
    python scripts/full_sweeps.py --size small         # a few minutes, for a check
    python scripts/full_sweeps.py --max-minutes 5      # stop cleanly after ~5 min; run again to resume

Checkpoints: every batch of trials (one configuration, one width, all seeds) is
stored in the checkpoint file (default ``runs/convergence_full.checkpoint.json``)
as soon as it finishes.  Running the script again skips every stored batch, so
an interrupted run (Ctrl-C, ``--max-minutes``, a crash) resumes where it stopped
and ends with exactly the results of an uninterrupted run.  ``--fresh`` ignores
an existing checkpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np

from tdcore._util import jsonable
from tdcore.book import algorithm1 as A1
from tdcore.book import convergence as E
from tdcore.book import proof_pictures as PP

#: Sizes of every sweep.  "full" is what results/convergence_full.json holds;
#: "small" is a few minutes; "tiny" is the unit test's.
SIZES = {
    "full": {
        "seeds": list(range(8)),
        "epochs": 16,
        "stable_epochs": 4,
        "eps_m": 0.05,
        "q": 0.8,
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
        "lambda": {"lams": [3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1], "d": 30, "r": 3, "order": 3, "m": 4,
                   "polish": 300},
        "jumps": {"ms": [4, 8, 16, 32, 64], "lams": [2e-3, 1e-2, 5e-2], "d": 30, "r": 3, "order": 3,
                  "epochs": 10},
    },
    "small": {
        "seeds": list(range(5)),
        "epochs": 12,
        "stable_epochs": 3,
        "eps_m": 0.05,
        "q": 0.8,
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
    "tiny": {
        "seeds": [0, 1],
        "epochs": 4,
        "stable_epochs": 2,
        "eps_m": 0.05,
        "q": 0.5,
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


class OutOfTime(Exception):
    """Raised (between batches) when the time budget of ``--max-minutes`` is spent."""


class CheckpointCache(dict):
    """A dict of finished batches that is written to disk after every new entry.

    Looking up a missing key after the deadline raises :class:`OutOfTime`, so a
    run stops between two batches with everything done so far saved.
    """

    def __init__(self, path, deadline=None, fresh=False):
        super().__init__()
        self.path, self.deadline, self.new = path, deadline, 0
        if path and os.path.exists(path) and not fresh:
            with open(path) as fh:
                self.update(json.load(fh))
        self.loaded = len(self)

    def __contains__(self, key):
        have = super().__contains__(key)
        if not have and self.deadline is not None and time.time() > self.deadline:
            raise OutOfTime(key)
        return have

    def __setitem__(self, key, value):
        super().__setitem__(key, jsonable(value))
        self.new += 1
        self.save()

    def save(self):
        if not self.path:
            return
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(dict(self), fh)
        os.replace(tmp, self.path)


def run_all(size, cache, log=print):
    """Every sweep at the given size; returns the results dict (JSON-ready)."""
    cfg = SIZES[size]
    seeds, K, st, q, eps_m = cfg["seeds"], cfg["epochs"], cfg["stable_epochs"], cfg["q"], cfg["eps_m"]
    out = {}
    t0 = time.perf_counter()

    def step(name):
        log(f"[{time.perf_counter() - t0:7.1f} s] {name}  (batches in checkpoint: {len(cache)})")

    step("headline: m* against d, Algorithm 1 and lazy fit")
    h = cfg["headline"]
    hd = E.headline_data(orders=h["orders"], alg_ds=h["alg_ds"], lazy_ds=h["lazy_ds"], seeds=seeds,
                         lazy_seeds=h["lazy_seeds"], eps=h["eps"], q=q, epochs=K, stable_epochs=st, cache=cache,
                         label=f"stored {size} run")
    out["headline"] = hd.to_dict()

    step("success probability against m")
    s = cfg["success"]
    out["success_curves"] = [
        E.success_curve(d, s["r"], o, s["ms"], seeds=seeds, eps=eps_m, epochs=K, stable_epochs=st,
                        cache=cache).to_dict()
        for o in s["orders"] for d in s["ds"]]

    step("m* against r")
    mr = cfg["m_star_r"]
    out["m_star_vs_r"] = {str(o): E.m_star_sweep("r", mr["rs"], order=o, d=mr["d"], seeds=seeds, eps=eps_m, q=q,
                                                 epochs=K, stable_epochs=st, cache=cache).to_dict()
                          for o in mr["orders"]}

    step("m* against r with a longer epoch budget")
    ml = cfg["m_star_r_long"]
    out["m_star_vs_r_long"] = {str(o): E.m_star_sweep("r", ml["rs"], order=o, d=ml["d"], seeds=seeds, eps=eps_m, q=q,
                                                      epochs=ml["epochs"], stable_epochs=ml["stable_epochs"],
                                                      cache=cache).to_dict()
                               for o in ml["orders"]}

    step("error against epochs")
    ec = E.error_curves([{**c, "epochs": K} for c in cfg["error_curves"]], seeds=seeds, cache=cache)
    out["error_curves"] = jsonable(ec)

    step("ablations")
    out["ablation"] = [E.ablation_study(c["d"], c["r"], c["order"], c["m"], seeds=cfg["ablation_seeds"], eps=eps_m,
                                        epochs=K, cache=cache).to_dict() for c in cfg["ablation"]]

    step("mode switch against d")
    sw = cfg["switch"]
    out["switch_ablation"] = jsonable(A1.switch_ablation_vs_d(sw["ds"], sw["r"], sw["order"], sw["m"],
                                                                seeds=seeds, eps=eps_m, epochs=sw["epochs"],
                                                                cache=cache))

    step("lambda sweep and polish")
    lm = cfg["lambda"]
    out["lambda_sweep"] = E.lambda_sweep(lm["lams"], d=lm["d"], r=lm["r"], order=lm["order"], m=lm["m"],
                                         seeds=seeds, polish=lm["polish"], epochs=K, cache=cache).to_dict()

    step("re-initialisation jumps (Lemmas 2, 4) and Lemma 5")
    jp = cfg["jumps"]
    out["reinit_jumps"] = jsonable(PP.reinit_jumps(ms=jp["ms"], lams=jp["lams"], d=jp["d"], r=jp["r"],
                                                     order=jp["order"], seeds=seeds, epochs=jp["epochs"],
                                                     cache=cache))
    step("done")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", choices=sorted(SIZES), default="full")
    ap.add_argument("--out", default=None, help="results file (default results/convergence_<size>.json)")
    ap.add_argument("--checkpoint", default=None,
                    help="checkpoint file (default runs/convergence_<size>.checkpoint.json)")
    ap.add_argument("--max-minutes", type=float, default=None, help="stop cleanly after this long; rerun to resume")
    ap.add_argument("--fresh", action="store_true", help="ignore an existing checkpoint")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    out_path = args.out or f"results/convergence_{args.size}.json"
    ck_path = args.checkpoint or f"runs/convergence_{args.size}.checkpoint.json"
    deadline = None if args.max_minutes is None else time.time() + 60 * args.max_minutes
    cache = CheckpointCache(ck_path, deadline=deadline, fresh=args.fresh)
    log = (lambda *a, **k: None) if args.quiet else (lambda *a: print(*a, flush=True))
    log(f"size {args.size}: {cache.loaded} batches read from {ck_path}")
    t0 = time.time()
    try:
        results = run_all(args.size, cache, log=log)
    except (OutOfTime, KeyboardInterrupt):
        cache.save()
        log(f"stopped after {time.time() - t0:.0f} s with {len(cache)} batches in {ck_path}; "
            "run the same command again to resume")
        return 2
    import tdcore

    results["meta"] = {
        "script": "scripts/full_sweeps.py", "size": args.size, "sizes": jsonable(SIZES[args.size]),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"), "wall_seconds_this_session": time.time() - t0,
        "batches_total": len(cache), "batches_computed_this_session": cache.new,
        "batches_from_checkpoint": cache.loaded,
        "compute_seconds_all_batches": float(sum(v.get("elapsed", 0.0) for v in cache.values()
                                                 if isinstance(v, dict) and isinstance(v.get("elapsed"), float))),
        "tdcore_version": tdcore.__version__,
        "python": sys.version.split()[0], "numpy": np.__version__, "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
    }
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    tmp = out_path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(jsonable(results), fh, indent=1)
    os.replace(tmp, out_path)
    log(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
