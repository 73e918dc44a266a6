"""A self-contained HTML report: figures embedded as PNG data URIs, no network.

:class:`HTMLReport` collects sections of prose, tables and figures and renders one
HTML page that reads at laptop width, on a phone and in print (prose in a column
of at most ~48 em, tables up to ~72 em that scroll horizontally inside their own
box when the screen is narrower, figures that never overflow, and page breaks
kept out of figures and tables).

Numbers are formatted by what they are (:func:`format_value`): p-values to three
significant digits or ``<0.001``, probabilities (power, size) to two decimals,
other numbers by the table's ``float_format``. Column headers are shown with
units in typographic form (``1e-3 mm^2/s`` becomes ``10⁻³ mm²/s``) and never
break inside a number or unit.

Examples
--------
>>> import pandas as pd
>>> rep = HTMLReport(title="Demo")
>>> rep.add_section("Numbers", text="A small table.",
...                 table=pd.DataFrame({"a": [1, 2]}))
>>> html = rep.render()
>>> html.startswith("<!DOCTYPE html>") and "<table" in html
True
"""

from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd

__all__ = ["HTMLReport", "figure_png", "format_p", "format_value", "png_data_uri",
           "pretty_unit"]

_CSS = """
:root { --fg: #1b1f24; --muted: #57606a; --line: #d0d7de; --accent: #0b5cad;
        --bg-soft: #f6f8fa; }
* { box-sizing: border-box; }
body { font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica,
       Arial, sans-serif; color: var(--fg); margin: 0; background: #fff; }
main { max-width: 72em; margin: 0 auto; padding: 1.5em 1.25em 4em; }
h1 { font-size: 1.8em; margin: 0.2em 0 0.1em; }
h2 { font-size: 1.3em; margin: 2em 0 0.5em; padding-bottom: 0.2em;
     border-bottom: 1px solid var(--line); }
h3 { font-size: 1.05em; margin: 1.4em 0 0.4em; }
p, li { max-width: 48em; }
.subtitle { color: var(--muted); margin-top: 0; }
.note { background: var(--bg-soft); border-left: 4px solid var(--accent);
        padding: 0.6em 1em; margin: 1em 0; }
.table-wrap { overflow-x: auto; margin: 0.8em 0; }
table { border-collapse: collapse; font-size: 0.86em;
        font-variant-numeric: tabular-nums; }
th, td { border-bottom: 1px solid var(--line); padding: 0.3em 0.6em;
         text-align: right; white-space: nowrap; }
th { background: var(--bg-soft); position: sticky; top: 0; white-space: normal;
     vertical-align: bottom; hyphens: none; overflow-wrap: normal;
     word-break: normal; }
th .unit { white-space: nowrap; }
td.text { white-space: normal; min-width: 7em; max-width: 32em; }
td:first-child, th:first-child, td.text, th.text { text-align: left; }
figure { margin: 1em 0; }
figure img { max-width: 100%; height: auto; display: block;
             border: 1px solid var(--line); }
figcaption { color: var(--muted); font-size: 0.9em; margin-top: 0.3em; }
nav ol { columns: 2; max-width: 40em; }
@media (max-width: 40em) {
  body { font-size: 15px; }
  main { padding: 1em 0.75em 3em; }
  nav ol { columns: 1; }
}
footer { color: var(--muted); font-size: 0.85em; margin-top: 3em; }
code { background: var(--bg-soft); padding: 0 0.25em; border-radius: 3px; }
@media print {
  body { font-size: 11pt; }
  main { max-width: none; padding: 0; }
  nav { display: none; }
  h2 { break-after: avoid; }
  figure, table, .note { break-inside: avoid; }
  th { position: static; }
  .table-wrap { overflow: visible; }
}
"""


def figure_png(fig, *, dpi: int = 110) -> bytes:
    """Render a matplotlib figure to PNG bytes (the figure is left open)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    return buf.getvalue()


def png_data_uri(png: bytes) -> str:
    """Return a ``data:image/png;base64,...`` URI for PNG bytes."""
    if not png.startswith(b"\x89PNG\r\n\x1a\n"):
        raise ValueError("png_data_uri expects PNG bytes (missing PNG signature)")
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


_SUPERSCRIPT = str.maketrans("-0123456789", "\u207b\u2070\u00b9\u00b2\u00b3\u2074"
                             "\u2075\u2076\u2077\u2078\u2079")


def pretty_unit(text: str) -> str:
    """Typographic units for display: ``1e-3`` -> ``10⁻³``, ``mm^2`` -> ``mm²``.

    Examples
    --------
    >>> pretty_unit("MD (1e-3 mm^2/s)")
    'MD (10⁻³ mm²/s)'
    """
    text = re.sub(r"\b1e(-?\d+)\b",
                  lambda m: "10" + str(int(m.group(1))).translate(_SUPERSCRIPT), text)
    return re.sub(r"\^(-?\d+)", lambda m: m.group(1).translate(_SUPERSCRIPT), text)


def format_p(p: float) -> str:
    """Format a p-value for reading: ``<0.001`` or three significant digits."""
    if p != p:  # NaN
        return ""
    return "<0.001" if p < 0.001 else f"{p:#.3g}"


_P_RE = re.compile(r"(^p$|^p[_ ]|[_ ]p$|^median[_ ]p|p[_ ]value)", re.IGNORECASE)
_PROB_RE = re.compile(r"(power|size|type[_ ]s|probability|rate)", re.IGNORECASE)


def format_value(column: str, value, float_format: str = "{:.3g}") -> str:
    """Format one table cell by what its column holds.

    p-value columns (``p``, ``p_*``, ``*_p``, ``median p``) via :func:`format_p`;
    probabilities (``power``, ``size``, ``type_s``, rates) with two decimals (the
    Monte Carlo error of a few thousand replicates is ~0.01); other floats with
    ``float_format``; text escaped.
    """
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    if isinstance(value, float | np.floating):
        if value != value:
            return ""
        col = str(column)
        if _P_RE.search(col):
            return format_p(float(value))
        if _PROB_RE.search(col) and 0.0 <= value <= 1.0:
            return f"{value:.2f}"
        return float_format.format(value)
    return html.escape(str(value))


def _table_html(df: pd.DataFrame, float_format: str = "{:.3g}",
                formats: dict | None = None) -> str:
    formats = formats or {}

    def fmt(col, v):
        f = formats.get(col)
        if f is not None and not (isinstance(v, float) and v != v):
            return html.escape(f(v) if callable(f) else f.format(v))
        return format_value(col, v, float_format)

    text_cols = {c for c in df.columns if df[c].dtype == object
                 or pd.api.types.is_string_dtype(df[c])}

    def header(c):
        label = html.escape(pretty_unit(str(c)))
        # keep a parenthesised unit on one line
        return re.sub(r"(\([^()]*\))", r'<span class="unit">\1</span>', label)

    head = "".join(
        f'<th class="{"text" if c in text_cols else ""}">{header(c)}</th>'
        for c in df.columns
    )
    rows = []
    for rec in df.itertuples(index=False):
        cells = "".join(
            f'<td class="{"text" if c in text_cols else ""}">{fmt(c, v)}</td>'
            for c, v in zip(df.columns, rec, strict=True)
        )
        rows.append(f"<tr>{cells}</tr>")
    return (f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


@dataclass
class _Section:
    title: str
    parts: list[str] = field(default_factory=list)


class HTMLReport:
    """Build a self-contained HTML report section by section.

    Parameters
    ----------
    title : str
        Page title.
    subtitle : str
        Line under the title.
    """

    def __init__(self, *, title: str, subtitle: str = ""):
        self.title = title
        self.subtitle = subtitle
        self._sections: list[_Section] = []

    def add_section(self, title: str, *, text: str | None = None,
                    table: pd.DataFrame | None = None, note: str | None = None,
                    float_format: str = "{:.3g}") -> None:
        """Start a section with optional paragraph(s), table and highlighted note.

        ``text`` is plain text; blank lines separate paragraphs.
        """
        self._sections.append(_Section(title))
        if text:
            self.add_text(text)
        if table is not None:
            self.add_table(table, float_format=float_format)
        if note:
            self.add_note(note)

    def _current(self) -> _Section:
        if not self._sections:
            raise ValueError("add a section before adding content to it")
        return self._sections[-1]

    def add_text(self, text: str) -> None:
        """Add plain-text paragraphs (blank lines separate them) to the section."""
        for para in text.strip().split("\n\n"):
            self._current().parts.append(
                f"<p>{html.escape(pretty_unit(para.strip()))}</p>")

    def add_html(self, fragment: str) -> None:
        """Add a trusted HTML fragment to the section."""
        self._current().parts.append(fragment)

    def add_note(self, text: str) -> None:
        """Add a highlighted note to the section."""
        self._current().parts.append(
            f'<div class="note">{html.escape(pretty_unit(text))}</div>')

    def add_heading(self, text: str) -> None:
        """Add a sub-heading to the section."""
        self._current().parts.append(f"<h3>{html.escape(text)}</h3>")

    def add_table(self, df: pd.DataFrame, *, float_format: str = "{:.3g}",
                  caption: str | None = None, formats: dict | None = None) -> None:
        """Add a DataFrame as an HTML table.

        ``formats`` maps column names to a format string or a callable for that
        column; other cells follow :func:`format_value`.
        """
        if caption:
            self._current().parts.append(
                f"<p><strong>{html.escape(pretty_unit(caption))}</strong></p>")
        self._current().parts.append(_table_html(df, float_format, formats))

    def add_figure(self, png: bytes, *, caption: str, alt: str | None = None) -> None:
        """Embed PNG bytes (see :func:`figure_png`) with a caption."""
        uri = png_data_uri(png)
        alt = html.escape(pretty_unit(alt or caption))
        self._current().parts.append(
            f'<figure><img src="{uri}" alt="{alt}">'
            f"<figcaption>{html.escape(pretty_unit(caption))}</figcaption></figure>"
        )

    def render(self, *, footer: str | None = None) -> str:
        """Return the whole page as an HTML string."""
        toc = "".join(
            f'<li><a href="#s{i}">{html.escape(s.title)}</a></li>'
            for i, s in enumerate(self._sections, 1)
        )
        body = "".join(
            f'<section id="s{i}"><h2>{html.escape(s.title)}</h2>{"".join(s.parts)}'
            "</section>"
            for i, s in enumerate(self._sections, 1)
        )
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        foot = html.escape(pretty_unit(footer or f"Generated by dtitool on {stamp}."))
        sub = f'<p class="subtitle">{html.escape(self.subtitle)}</p>' if (
            self.subtitle) else ""
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(self.title)}</title><style>{_CSS}</style></head>"
            f"<body><main><header><h1>{html.escape(self.title)}</h1>{sub}</header>"
            f"<nav><ol>{toc}</ol></nav>{body}<footer>{foot}</footer></main>"
            "</body></html>\n"
        )
