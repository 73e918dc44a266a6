"""Compact HTML of a results object, for Jupyter's rich display (``_repr_html_``).

The way pandas and statsmodels render in a notebook: a small table of the run's
facts (design, replicates, seed, inference, ...), then the result table with
numbers at 4 significant digits. Text is escaped; nothing is loaded from outside
the page.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

import pandas as pd

__all__ = ["result_html"]

_STYLE = ("<style>.dtitool-result table{border-collapse:collapse;margin:0.3em 0}"
          ".dtitool-result th,.dtitool-result td{padding:0.1em 0.6em;"
          "text-align:right}.dtitool-result caption{text-align:left;"
          "font-weight:bold}</style>")


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def result_html(title: str, facts: Iterable[tuple[str, object]],
                table: pd.DataFrame | None = None, *,
                columns: Sequence[str] | None = None, max_rows: int = 60) -> str:
    """Return ``<div>`` HTML: a caption, a two-column facts table, then ``table``.

    Parameters
    ----------
    title : str
        The caption (the class and what it is of).
    facts : iterable of (str, object)
        Label and value pairs shown first; a None value leaves its row out.
    table : pandas.DataFrame, optional
        The result table, shown without its index.
    columns : sequence of str, optional
        The columns of ``table`` to show, those present in it in this order
        (default: all).
    max_rows : int
        Longer tables show their first and last rows with an ellipsis between.

    Examples
    --------
    >>> out = result_html("Result", [("seed", 1)], pd.DataFrame({"p": [0.01234]}))
    >>> "<td>0.01234</td>" in out and "seed" in out
    True
    """
    rows = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(_fmt(v))}</td></tr>"
        for k, v in facts if v is not None)
    parts = [_STYLE, '<div class="dtitool-result">',
             f"<table><caption>{html.escape(title)}</caption>{rows}</table>"]
    if table is not None:
        if columns is not None:
            table = table[[c for c in columns if c in table.columns]]
        parts.append(table.to_html(index=False, max_rows=max_rows, na_rep="-",
                                   float_format=lambda x: f"{x:.4g}", border=0,
                                   classes="dtitool-table"))
    parts.append("</div>")
    return "".join(parts)
