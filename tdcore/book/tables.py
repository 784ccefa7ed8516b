"""Tables shown in the chapters: one Markdown convention for all of them."""

from __future__ import annotations

__all__ = ["markdown_text", "markdown_table"]


def markdown_text(rows, columns):
    """A Markdown table, as text, from a list of dicts.

    Parameters
    ----------
    rows : list of dict
    columns : list of (key, header, format)
        ``format`` is a format spec (``".3f"``) or a callable returning a string.

    Returns
    -------
    str

    Examples
    --------
    >>> print(markdown_text([{"d": 4, "e": 0.25}], [("d", "d", "d"), ("e", "error", ".2f")]))
    | d | error |
    | ---: | ---: |
    | 4 | 0.25 |
    """
    head = "| " + " | ".join(h for _, h, _ in columns) + " |"
    sep = "| " + " | ".join("---:" for _ in columns) + " |"
    lines = [head, sep]
    for row in rows:
        cells = []
        for key, _, fmt in columns:
            v = row[key]
            cells.append(fmt(v) if callable(fmt) else format(v, fmt))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown_table(rows, columns):
    """:func:`markdown_text` wrapped for display in a notebook (``IPython.display.Markdown``)."""
    from IPython.display import Markdown

    return Markdown(markdown_text(rows, columns))
