"""Mutants of tdcore: plausible bugs, applied in memory (no source file is edited).

Each mutant is a list of patches.  A *source patch* takes the source of one
function or method of tdcore, replaces one exact snippet (which must occur
exactly once, else the mutant is refused as stale), compiles the result in the
function's own module and puts it in place of the original: on its class for a
method, and for a module-level function in every loaded ``tdcore`` module that
holds the original object (``from ._x import f`` copies included).  A *wrapper
patch* replaces a method by a function of the original.

``apply(name)`` is called by the IPython start-up file that
``run_mutants.py`` writes into a temporary ``IPYTHONDIR`` (so every kernel that
nbclient or nbval starts with that environment runs the mutant); it writes the
marker file named by ``TDCORE_MUTANT_MARK`` only after every patch took, so the
runner can tell a mutant that was not applied from one that survived.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import textwrap


class MutantError(RuntimeError):
    """A mutant could not be applied (its snippet is missing or ambiguous)."""


def _resolve(modname, qualname):
    mod = importlib.import_module(modname)
    owner = mod
    parts = qualname.split(".")
    for p in parts[:-1]:
        owner = getattr(owner, p)
    return mod, owner, parts[-1], owner.__dict__[parts[-1]]


def _rebind(orig, new, owner, attr, mod):
    if inspect.isclass(owner):
        setattr(owner, attr, new)
        return
    for name, m in list(sys.modules.items()):
        if m is None or not (name == "tdcore" or name.startswith("tdcore.")):
            continue
        for key, val in list(vars(m).items()):
            if val is orig:
                setattr(m, key, new)
    setattr(mod, attr, new)


def source_patch(modname, qualname, old, new):
    """Replace the one occurrence of ``old`` by ``new`` in the source of ``modname.qualname``."""

    def apply():
        mod, owner, attr, orig = _resolve(modname, qualname)
        src = textwrap.dedent(inspect.getsource(orig))
        n = src.count(old)
        if n != 1:
            raise MutantError(f"{modname}.{qualname}: snippet found {n} times (need exactly 1): {old!r}")
        code = compile(src.replace(old, new), f"<mutant of {modname}.{qualname}>", "exec")
        ns = {}
        exec(code, mod.__dict__, ns)  # noqa: S102 - the mutant's whole point
        _rebind(orig, ns[attr], owner, attr, mod)

    return apply


def wrapper_patch(modname, qualname, make):
    """Replace ``modname.qualname`` by ``make(original)``."""

    def apply():
        mod, owner, attr, orig = _resolve(modname, qualname)
        _rebind(orig, make(orig), owner, attr, mod)

    return apply


RUN = "tdcore._algorithm1.run"


def _grad_through_c(orig):
    """``_Run._apply_plan`` with the gradient taken through C and Chat (c_i = k_i/||u_i||, chat_i = 1/||u_i||).

    Algorithm 1 freezes C and Chat during the gradient step and rescales them
    afterwards.  Differentiating through them instead adds, per column,
    ``-(l - 2) (s_i e_i / ||u_i||^2 + lam h_i) u_i`` to the gradient, with
    ``e_i = <T - T*, u_i^{(x) l}>``; the step then subtracts ``eta`` times it.
    """
    from tdcore._objective import FactoredTarget

    def _apply_plan(self, plan, U, active=None):
        U2 = orig(self, plan, U, active)
        p, xp = self.p, self.xp
        l = p.order
        if l <= 2 or not isinstance(self.tgt, FactoredTarget):
            return U2
        G = xp.swapaxes(U, -1, -2) @ U
        n2 = xp.diagonal(G, axis1=-2, axis2=-1)
        s = self.a * self.c ** (l - 2)
        A = xp.swapaxes(self.tgt.V, -1, -2) @ U
        e = (s[..., None, :] * G**l).sum(axis=-1) - (self.tgt.w[..., :, None] * A**l).sum(axis=-2)
        h = self.chat ** (l - 2) * n2 ** ((l - 2) / 2)
        corr = (p.eta * (l - 2)) * (s * e / n2 + p.lam * h)
        if active is not None:
            corr = corr * active[:, None]
        return U2 + U * corr[..., None, :]

    return _apply_plan


#: name -> (description, patches)
MUTANTS = {
    "reinit_largest": (
        "Algorithm 1 re-initialises the column of largest norm instead of the smallest",
        [source_patch(RUN, "_Run._reinit_index",
                      "mn = nrm.min(axis=-1, keepdims=True)\n    tied = nrm <= mn * (1.0 + self.REINIT_TIE)",
                      "mn = nrm.max(axis=-1, keepdims=True)\n    tied = nrm >= mn * (1.0 - self.REINIT_TIE)")]),
    "no_rescale": (
        "Algorithm 1 skips the rescaling of C and Chat after the gradient step",
        [source_patch(RUN, "_make_post", "c2 = c * ratio\n        chat2 = chat * ratio",
                      "c2 = c * 1.0\n        chat2 = chat * 1.0")]),
    "switch_4sqrt": (
        "the mode switch happens at 4 sqrt(m + K) delta instead of 2 sqrt(m + K) delta",
        [source_patch("tdcore._algorithm1.params", "default_params",
                      "switch_threshold=2 * math.sqrt(M) * delta", "switch_threshold=4 * math.sqrt(M) * delta")]),
    "no_regulariser": (
        "Algorithm 1 drops the regulariser (lam ignored in objective and step)",
        [source_patch(RUN, "_Run.evaluate", "l, eta, lam = p.order, p.eta, p.lam", "l, eta, lam = p.order, p.eta, 0.0")]),
    "grad_through_c": (
        "C and Chat frozen in the wrong place: the gradient step differentiates through them",
        [wrapper_patch(RUN, "_Run._apply_plan", _grad_through_c)]),
    "no_boost": (
        "the fresh column starts without the boost: c = 1/||u|| instead of sqrt(d (m + K))/||u||",
        [source_patch(RUN, "_Run._c_init", "return self.p.switch_factor if self.p.mode_switch else 1.0",
                      "return 1.0")]),
    "lazy_residual_low": (
        "the lazy fit reports its relative residual 10% low",
        [source_patch("tdcore._lazy", "lazy_fit", "rel_residual=math.sqrt(res2 / n2)",
                      "rel_residual=0.9 * math.sqrt(res2 / n2)")]),
    "theorem2_off": (
        "Theorem 2's construction off by 1%: the e_1 component of the target has weight 1.01",
        [source_patch("tdcore.book.bad_minima", "bad_local_minimum", "weights = [1.0]", "weights = [1.01]")]),
    "deflation_equal_weights": (
        "the deflation chapter's orthogonal target gets equal weights (their mean)",
        [source_patch("tdcore.book.deflation", "orthogonal_target", "w = np.asarray(weights, dtype=float)",
                      "w = np.asarray(weights, dtype=float)\n    w = np.full_like(w, w.mean()) if w.ndim == 1 "
                      "and w.size else w")]),
    "pm_deflation_sign": (
        "the power method adds the extracted component instead of subtracting it",
        [source_patch("tdcore._baselines", "power_method", "R = R - V @ (np.asarray(lams)",
                      "R = R + V @ (np.asarray(lams)")]),
    "vanilla_no_half": (
        "the vanilla objective (2) misses its 1/2: fit = ||T - T*||^2 (gradient unchanged)",
        [source_patch("tdcore._objective", "fit_terms", "fit = 0.5 * (model2 - 2.0 * cross + tgt.norm2)",
                      "fit = (model2 - 2.0 * cross + tgt.norm2)")]),
}


def apply(name):
    """Apply mutant ``name``; then write the marker file named by ``TDCORE_MUTANT_MARK`` (if set)."""
    if name not in MUTANTS:
        raise MutantError(f"unknown mutant {name!r}; known: {', '.join(MUTANTS)}")
    for patch in MUTANTS[name][1]:
        patch()
    mark = os.environ.get("TDCORE_MUTANT_MARK")
    if mark:
        with open(mark, "w") as fh:
            fh.write(name + "\n")
