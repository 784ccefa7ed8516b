"""The book's layer over :mod:`tdcore`: one module per chapter, plus shared helpers.

``tdcore.book.<chapter>`` serves ``chapters/<chapter>.ipynb`` (for instance
:mod:`tdcore.book.convergence` serves the Convergence chapter); a chapter writes
``from tdcore.book import convergence as ch`` so that every cell names the file
its code lives in.  These modules run the chapters' experiments and draw their
figures; the sentences live in the notebooks.  Shared helpers:

* :mod:`tdcore.book.style`: quick mode, the palette, the figure convention
  ``plot_x(data, *, ax=None) -> Axes``;
* :mod:`tdcore.book.explorers`: static figure plus live sliders;
* :mod:`tdcore.book.tables`: Markdown tables;
* :mod:`tdcore.book.results`: where stored results are read from.

Nothing here is imported by ``import tdcore``; this layer needs the ``book``
extra (matplotlib, ipywidgets, IPython): ``pip install "tdcore[book]"``.
"""

from .explorers import Explorer, explorer
from .style import PALETTE, method_color, quick, use_book_style

__all__ = ["quick", "use_book_style", "PALETTE", "method_color", "explorer", "Explorer"]

#: Modules of this package that serve no single chapter.
SHARED_MODULES = ("style", "explorers", "tables", "results")
