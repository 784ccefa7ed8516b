"""The hot-path rewrites of Algorithm 1: equality and speedup against the code before them.

The step (``tdcore/_algorithm1.py::_Run.evaluate/step``, and ``fit_terms`` /
``FactoredTarget.contract`` in ``tdcore/_objective.py`` which it used to call)
was rewritten twice.  This script keeps a verbatim copy of the code as it was
before the first rewrite (commit 35073b1: :func:`fit_terms_prepatch`,
:class:`PrepatchRun`) and measures the installed code against it:

* equality: ``fit_terms`` values and gradients at orders 2-4, and whole
  ``algorithm1`` / ``algorithm1_batch`` runs (pre-patch vs installed, same seeds);
* speedup: one Algorithm 1 iteration, pre-patch vs installed, interleaved in one
  process, at small and large sizes.

First rewrite (commit fb44535; same maths, fewer passes over memory):

1. ``(G^{o l} s)_i = u_i . (U diag(s) G^{o(l-1)})_i``: the m x m product ``M * G``
   and its column sums became a d x m column dot product with the matrix ``U M``
   that the gradient needs anyway.
2. ``U M = (U diag(s)) G^{o(l-1)}``: the row scaling moved from the m x m matrix
   to the d x m one; ``G^{o(l-1)}`` is formed in place (one m x m pass at l = 3).
3. The gradient is assembled in place, column norms use one ``einsum``.
4. Integer powers of arrays are repeated multiplications: NumPy's ``x ** 3``
   calls ``pow`` and costs about fifteen multiplications.

Second rewrite (the fused step, ``_Run.evaluate`` builds a step plan):

5. The whole update ``U - eta grad`` (fit, regulariser and target terms) is two
   matrix products, ``U' = V Q - U M`` with ``M = eta l (S + lam diag(h)) - I``
   (m x m) and ``Q = eta l diag(w) (V^T U)^{o(l-1)} diag(s)`` (r x m); the model
   term of the objective is ``<S, G>``, one batched dot product; the target term
   ``T*(u_i, ..., u_i) = sum_k w_k (v_k . u_i)^l`` comes from the r x m matrix
   ``V^T U``.  No d x m temporary besides the products' outputs.
6. The new column norms are the diagonal of the next Gram matrix.
7. When ``m`` is several times ``d`` (``_Run.M_SIDE_RATIO``) the m x m passes
   would cost more than d x m ones, and the step keeps the first rewrite's form
   (scalings on the d x m side).

Run ``python benchmarks/perf_patch.py [--quick] [--out PATH]``; writes ``bench_perf_patch.json`` (+ ``.md``)
to ``--out``, else to ``$TDCORE_BENCH_OUT``, else to ``results/`` under the current directory.
"""

from __future__ import annotations

import _env  # noqa: F401  (must come before NumPy)

import argparse
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np

import tdcore
from tdcore._algorithm1 import run as _a1
from tdcore import _objective as _obj
from tdcore._backend import xp_of

_mT = _obj._mT


# ---------------------------------------------------------------------------------------------
# the code before the rewrite (verbatim from commit 35073b1, names suffixed)
# ---------------------------------------------------------------------------------------------
def fit_terms_prepatch(U, s, tgt, *, need_grad_s=False):
    """Fit value 1/2||T - T*||^2 and its gradient in U (and in s on request).

    Returns ``(fit, grad_U, grad_s or None, model_norm2)``; ``fit`` has the batch shape.
    """
    xp = xp_of(U)
    l = tgt.order
    G = _mT(U) @ U
    Gp = G ** (l - 1)
    M = s[..., :, None] * Gp
    R = tgt.contract(U)
    GlS = xp.sum(M * G, axis=-2)  # (G^{o l} s)_i
    UR = xp.sum(U * R, axis=-2)  # u_i . R_i = T*(u_i, ..., u_i)
    model2 = xp.sum(s * GlS, axis=-1)
    cross = xp.sum(s * UR, axis=-1)
    fit = 0.5 * (model2 - 2.0 * cross + tgt.norm2)
    grad_U = l * (U @ M - R) * s[..., None, :]
    grad_s = (GlS - UR) if need_grad_s else None
    return fit, grad_U, grad_s, model2


class PrepatchFactoredTarget(_obj.FactoredTarget):
    """``FactoredTarget`` with the pre-patch ``contract``."""

    def contract(self, U):
        A = _mT(self.V) @ U  # (.., r, m)
        return self.V @ (self.w[..., :, None] * A ** (self.order - 1))


def _prepatch_target(tgt):
    if type(tgt) is _obj.FactoredTarget:
        tgt = PrepatchFactoredTarget(tgt.V, tgt.w, tgt.order)
    return tgt


class PrepatchRun(_a1._Run):
    """``_Run`` with the pre-patch ``evaluate`` / ``step`` / target contraction."""

    def __init__(self, targets, *args, **kwargs):
        super().__init__(_prepatch_target(targets), *args, **kwargs)

    def evaluate(self, U=None, c=None, chat=None):
        """(objective, fit, regularizer, model_norm2, grad_U) at the given or current state."""
        xp, p = self.xp, self.p
        U = self.U if U is None else U
        c = self.c if c is None else c
        chat = self.chat if chat is None else chat
        l = p.order
        fit, gU, _, _ = fit_terms_prepatch(U, self.a * c ** (l - 2), self.tgt)
        nrm = xp.sqrt(xp.sum(U * U, axis=-2))
        reg = p.lam * xp.sum(chat ** (l - 2) * nrm**l, axis=-1)
        gU = gU + (p.lam * l) * U * (chat ** (l - 2) * nrm ** (l - 2))[:, None, :]
        return fit + reg, fit, reg, gU, nrm

    def step(self, ev):
        """One iteration from the current state, whose evaluation ``ev`` is given."""
        xp, p = self.xp, self.p
        _, _, _, gU, nrm = ev
        if not self.active.all():
            gU = gU * xp.asarray(self.active)[:, None, None]
        U2 = self.U - p.eta * gU
        nrm2 = xp.sqrt(xp.sum(U2 * U2, axis=-2))
        ratio = nrm / nrm2
        c2 = self.c * ratio
        chat2 = self.chat * ratio
        switched2 = self.switched
        nsw = None
        if p.mode_switch:
            thr = p.switch_threshold
            sw = (~self.switched) & (nrm <= thr) & (nrm2 > thr)
            c2 = xp.where(sw, c2 / p.switch_factor, c2)
            switched2 = self.switched | sw
            nsw = xp.sum(sw, axis=-1)
        new = (U2, c2, chat2, switched2)
        return nsw, new, self.evaluate(U2, c2, chat2)


@contextmanager
def prepatch():
    """Temporarily put the pre-patch code back into tdcore (for whole-run comparisons)."""
    saved = (_a1._Run.evaluate, _a1._Run.step, _a1.fit_terms, _obj.FactoredTarget.contract)
    _a1._Run.evaluate = PrepatchRun.evaluate
    _a1._Run.step = PrepatchRun.step
    _a1.fit_terms = fit_terms_prepatch
    _obj.FactoredTarget.contract = PrepatchFactoredTarget.contract
    try:
        yield
    finally:
        _a1._Run.evaluate, _a1._Run.step, _a1.fit_terms, _obj.FactoredTarget.contract = saved


# ---------------------------------------------------------------------------------------------
# checks
# ---------------------------------------------------------------------------------------------
def _rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-300))


def check_equality(quick=True):
    """Compare the installed code with the pre-patch code; returns max relative differences."""
    out = {}
    rng = np.random.default_rng(0)
    for order in (2, 3, 4):
        T = tdcore.random_target(12, 3, order, seed=1)
        U = rng.standard_normal((2, 12, 7)) * 0.3
        s = rng.standard_normal((2, 7))
        op = _a1._prepare_targets([T, T], tdcore.get_backend("numpy"), np.dtype(np.float64))[0]
        a = fit_terms_prepatch(U, s, _prepatch_target(op), need_grad_s=True)
        b = _obj.fit_terms(U.copy(), s, op, need_grad_s=True)
        out[f"fit_terms_order{order}"] = max(_rel(x, y) for x, y in zip(b, a))
    cases = [dict(d=20, r=3, order=3, m=10, epochs=8), dict(d=15, r=2, order=4, m=8, epochs=8),
             dict(d=12, r=3, order=2, m=6, epochs=5)]
    if not quick:
        cases.append(dict(d=60, r=5, order=3, m=20, epochs=30))
    for cs in cases:
        T = tdcore.random_target(cs["d"], cs["r"], cs["order"], seed=3)
        kw = dict(epochs=cs["epochs"], iters=100, backend="numpy")
        new = tdcore.algorithm1(T, cs["m"], seed=5, **kw)
        newb = tdcore.algorithm1_batch(T, cs["m"], seeds=[5, 6, 7], **kw)
        with prepatch():
            ref = tdcore.algorithm1(T, cs["m"], seed=5, **kw)
            refb = tdcore.algorithm1_batch(T, cs["m"], seeds=[5, 6, 7], **kw)
        key = f"algorithm1_d{cs['d']}_order{cs['order']}_m{cs['m']}"
        out[key + "_U"] = _rel(new.state["U"], ref.state["U"])
        out[key + "_rel_error"] = abs(new.rel_error - ref.rel_error)
        out[key + "_batch_U"] = max(_rel(x.state["U"], y.state["U"]) for x, y in zip(newb.results, refb.results))
        out[key + "_reinit_same"] = float(new.history["reinit_index"] == ref.history["reinit_index"])
    return out


def time_steps(sizes, repeats=7, min_time=0.05):
    """Pre-patch vs installed ``_Run.step`` (interleaved), per size; returns a list of dicts."""
    from tdcore.bench import bench_run_state, bench_step_callable, time_interleaved

    rows = []
    for (d, m, r, order, B) in sizes:
        run_old = bench_run_state(d, m, r, order, B=B, cls=PrepatchRun)
        run_new = bench_run_state(d, m, r, order, B=B)
        t = time_interleaved({"prepatch": bench_step_callable(run_old), "installed": bench_step_callable(run_new)},
                             repeats=repeats, min_time=min_time)
        rows.append({"d": d, "m": m, "r": r, "order": order, "B": B, "prepatch_s": t["prepatch"],
                     "installed_s": t["installed"], "speedup": t["prepatch"] / t["installed"]})
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes only")
    ap.add_argument("--out", default=None, help="the JSON file to write (default bench_perf_patch.json in "
                                                "$TDCORE_BENCH_OUT, else in results/ under the current directory)")
    args = ap.parse_args(argv)
    from tdcore.bench import bench_machine_info, bench_output_dir, write_bench_result

    out = Path(args.out) if args.out else bench_output_dir() / "bench_perf_patch.json"
    if out.suffix != ".json":
        ap.error(f"--out must end in .json, got {str(out)!r}")

    eq = check_equality(quick=args.quick)
    sizes = [(10, 10, 3, 3, 1), (50, 50, 5, 3, 1), (50, 50, 5, 3, 64), (64, 256, 8, 4, 1)]
    if not args.quick:
        sizes += [(200, 1000, 10, 3, 1)]
    rows = time_steps(sizes, repeats=5 if args.quick else 9)
    from tdcore._provenance import provenance
    from tdcore.bench import BENCH_ENGINE

    payload = {"benchmark": "perf_patch", "quick": args.quick, "machine": bench_machine_info(),
               "equality_max_rel_diff": eq, "steps": rows,
               "provenance": provenance(modules=BENCH_ENGINE,
                                        script="python benchmarks/perf_patch.py" + (" --quick" if args.quick else ""))}
    lines = ["| d | m | r | order | B | pre-patch step | installed step | speedup |",
             "|---|---|---|---|---|---|---|---|"]
    for rw in rows:
        lines.append(f"| {rw['d']} | {rw['m']} | {rw['r']} | {rw['order']} | {rw['B']} | "
                     f"{rw['prepatch_s'] * 1e6:.1f} us | {rw['installed_s'] * 1e6:.1f} us | {rw['speedup']:.2f}x |")
    lines += ["", "Largest relative differences, installed vs pre-patch: "
              + ", ".join(f"{k} {v:.1e}" for k, v in eq.items())]
    write_bench_result(out, payload, "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
