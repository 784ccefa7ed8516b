"""The sweeps ``python -m tdcore sweep NAME`` knows.

Each :class:`Sweep` names the function that computes one cell as a string
``"module:function"``, imported on the worker, so that this module (part of the
core) does not import the book layer; the chapters' sweeps run code of
``tdcore.book``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

__all__ = ["Sweep", "SWEEPS", "get_sweep", "SIZES", "resolve"]

#: Sizes every sweep accepts: ``quick`` (seconds, for tests), ``book`` (the chapters'), ``full`` (hours).
SIZES = ("quick", "book", "full")


@dataclass(frozen=True)
class Sweep:
    """A named grid of cells.

    Attributes
    ----------
    name : str
    description : str
    cells : str
        ``"module:function"``; ``function(size) -> list of dict`` gives the
        cells' parameters (JSON-able) for a size in ``SIZES``.
    run : str
        ``"module:function"``; ``function(**params) -> dict`` computes one cell.
    merge : str
        ``"module:function"``; ``function(size, cells) -> dict`` assembles the
        results file from ``[(params, result), ...]`` in the order of ``cells``.
    engine : tuple of str
        Modules whose source the engine fingerprint covers.
    output : str
        File name of the merged results (``{size}`` is replaced), under ``results/``.
    """

    name: str
    description: str
    cells: str
    run: str
    merge: str
    engine: tuple
    output: str

    def cell_params(self, size):
        """The parameters of every cell at ``size``."""
        if size not in SIZES:
            raise ValueError(f"size must be one of {SIZES}, got {size!r}")
        cells = resolve(self.cells)(size)
        if not cells:
            raise ValueError(f"sweep {self.name!r} has no cells at size {size!r}")
        return cells


def resolve(path) -> Callable:
    """The object named ``"package.module:attribute"``."""
    mod, _, attr = path.partition(":")
    if not mod or not attr:
        raise ValueError(f"expected 'module:function', got {path!r}")
    return getattr(importlib.import_module(mod), attr)


_CORE = ("tdcore._backend", "tdcore._tensor", "tdcore._gram", "tdcore._objective", "tdcore._algorithm1",
         "tdcore._algorithm1.api",
         "tdcore._algorithm1.params", "tdcore._algorithm1.run", "tdcore._algorithm1.checkpoint", "tdcore._validate",
         "tdcore._util")

SWEEPS = {
    s.name: s
    for s in (
        Sweep("default_rule",
              "success counts of Algorithm 1 with every parameter left to tdcore.default_params "
              "(orders 3 and 4, d, r, m = 3r), and the two rules it was chosen against",
              "tdcore.sweep.defaults:cells", "tdcore.sweep.defaults:run_cell", "tdcore.sweep.defaults:merge",
              _CORE + ("tdcore.sweep.defaults",), "default_rule_{size}.json"),
        Sweep("convergence",
              "the full-size sweeps of the part Beyond lazy training: m* against d (headline, with the lazy "
              "fit) and r, success curves, error curves, ablations, the mode switch against d, lambda, "
              "re-initialisation jumps",
              "tdcore.sweep.convergence:cells", "tdcore.sweep.convergence:run_cell",
              "tdcore.sweep.convergence:merge",
              _CORE + ("tdcore._lazy", "tdcore._stats", "tdcore.book.algorithm1",
                       "tdcore.book.convergence", "tdcore.book.proof_pictures", "tdcore.sweep.convergence"),
              "convergence_{size}.json"),
        Sweep("two_layer",
              "the two-layer chapter at larger d: the width and the number of samples each regime needs "
              "(lazy NTK, plain GD, Algorithm 1's recipe), with their exponents in d",
              "tdcore.sweep.two_layer:cells", "tdcore.sweep.two_layer:run_cell", "tdcore.sweep.two_layer:merge",
              _CORE + ("tdcore._twolayer", "tdcore._stats", "tdcore.book.two_layer", "tdcore.sweep.two_layer"),
              "two_layer_{size}.json"),
    )
}


def get_sweep(name):
    """The :class:`Sweep` called ``name``; a clear error listing the known ones otherwise."""
    try:
        return SWEEPS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown sweep {name!r}; known sweeps: {', '.join(sorted(SWEEPS))}") from None
