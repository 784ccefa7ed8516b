"""Shared look of the book's figures, and quick mode.

* :func:`quick` tells a chapter to shrink its experiment (``TDCORE_QUICK=1``,
  used by the nbval run of ``make test``); the book build runs at book size.
* :func:`use_book_style` and :data:`PALETTE` give every figure the same look
  and every method the same colour across chapters.
* :func:`new_ax` is the one figure convention of ``tdcore.book``: every
  ``plot_x(data, *, ax=None)`` draws on ``ax`` (a new figure when None) and
  returns the Axes.
"""

from __future__ import annotations

import os

__all__ = ["quick", "use_book_style", "PALETTE", "method_color", "new_ax", "legend", "plain_log_ticks"]

#: Colours used for the same method or quantity in every chapter.
PALETTE = {
    "algorithm1": "#0072B2",   # blue: the paper's Algorithm 1 (beyond lazy training)
    "lazy": "#D55E00",         # vermillion: lazy training / NTK linearisation
    "gd": "#009E73",           # green: plain gradient descent on objective (2)
    "deflation": "#CC79A7",    # purple: the deflation-process variant (2021 paper)
    "implicit": "#0072B2",     # Gram-matrix (implicit) computation
    "dense": "#D55E00",        # dense d**l computation
    "reference": "#7F7F7F",    # grey: reference slopes, bounds, theory curves
}


def quick() -> bool:
    """Whether chapters should run their quick (small) variant.

    Quick mode is on when the environment variable ``TDCORE_QUICK`` is set to a
    non-empty value other than ``"0"``.  ``make test`` sets it for the nbval run
    so that notebook checks finish fast; the book build leaves it unset and runs
    every experiment at book size.

    Returns
    -------
    bool

    Examples
    --------
    >>> import os
    >>> from tdcore.book import quick
    >>> os.environ["TDCORE_QUICK"] = "1"; quick()
    True
    >>> os.environ["TDCORE_QUICK"] = "0"; quick()
    False
    >>> del os.environ["TDCORE_QUICK"]; quick()
    False
    """
    value = os.environ.get("TDCORE_QUICK", "").strip()
    return value not in ("", "0")


def method_color(name: str) -> str:
    """Colour of a method or quantity in :data:`PALETTE` (grey if unknown)."""
    return PALETTE.get(name, PALETTE["reference"])


def use_book_style() -> None:
    """Apply the book's matplotlib style (sizes, grid, fonts) globally.

    Idempotent; chapters call it once after importing ``tdcore``.
    """
    import matplotlib as mpl

    mpl.rcParams.update({
        "figure.figsize": (6.4, 3.6),
        "figure.dpi": 100,
        "savefig.dpi": 100,
        "figure.constrained_layout.use": True,
        "axes.grid": True,
        "grid.alpha": 0.3,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.titlesize": 11,
        "axes.labelsize": 10,
        "legend.fontsize": 9,
        "legend.frameon": False,
        "xtick.labelsize": 9,
        "ytick.labelsize": 9,
        "lines.linewidth": 1.8,
        "lines.markersize": 5,
    })




def new_ax(ax=None, figsize=None):
    """The Axes to draw on: ``ax`` itself, or the Axes of a new figure when ``ax`` is None.

    Every plotting function of ``tdcore.book`` has the form
    ``plot_x(data, *, ax=None) -> Axes`` and starts with ``ax = new_ax(ax)``.
    """
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=figsize)
    return ax


def legend(ax, **kwargs):
    """``ax.legend(**kwargs)`` when something is labelled (no warning on an empty panel)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)


def plain_log_ticks(ax, values, axis="x"):
    """Log axis labelled with the given values in plain numbers (no 6x10^0 labels)."""
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    a = ax.xaxis if axis == "x" else ax.yaxis
    a.set_major_locator(FixedLocator(sorted(set(float(v) for v in values))))
    fmt = ScalarFormatter()
    fmt.set_scientific(False)
    a.set_major_formatter(fmt)
    a.set_minor_formatter(NullFormatter())
