"""Author-year labels in the bibliography, to match the author-year citations.

The book cites with ``bibtex_reference_style: author_year`` ("[Kolda and
Bader, 2009]"), but pybtex's standard styles label the reference list "[1]",
"[2]", ...  This extension registers the pybtex formatting style
``tdcore_author_year``: the ``unsrt`` entry format, sorted by author, year and
title, labelled "Kolda and Bader, 2009" / "Comon et al., 2008".  `_config.yml`
selects it with ``bibtex_default_style``.
"""

from __future__ import annotations

from pybtex.plugin import register_plugin
from pybtex.richtext import Text
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle


def _plain(latex: str) -> str:
    return Text.from_latex(latex).render_as("text")


class AuthorYearLabelStyle(BaseLabelStyle):
    """Labels "Last, year", "Last and Last, year" or "Last et al., year"."""

    def format_labels(self, sorted_entries):
        seen: dict[str, int] = {}
        for entry in sorted_entries:
            persons = entry.persons.get("author") or entry.persons.get("editor") or []
            last = [_plain(" ".join(p.last_names)) for p in persons]
            if not last:
                names = _plain(entry.fields.get("title", "Anonymous"))
            elif len(last) == 1:
                names = last[0]
            elif len(last) == 2:
                names = f"{last[0]} and {last[1]}"
            else:
                names = f"{last[0]} et al."
            label = f"{names}, {entry.fields.get('year', 'n.d.')}"
            # same authors and year twice: 2019a, 2019b, ...
            n = seen.get(label, 0)
            seen[label] = n + 1
            yield label if n == 0 else f"{label}{'abcdefghijklmnopqrstuvwxyz'[n]}"


class AuthorYearStyle(UnsrtStyle):
    default_label_style = AuthorYearLabelStyle
    default_sorting_style = "author_year_title"


def setup(app):
    register_plugin("pybtex.style.formatting", "tdcore_author_year", AuthorYearStyle)
    return {"version": "1.0", "parallel_read_safe": True, "parallel_write_safe": True}
