"""The power explorer: one self-contained HTML page to walk a power surface.

:func:`explorer_html` turns a :class:`~dtitool.stats.power.PowerGrid` into one
page with its data embedded (no network, no external script): a control per
grid axis, a choice of test and of the axis to plot against, and a plot of
power (with its 95 % Wilson band) and size against that axis, with the
target-power line and, when ``n`` is an axis, the smallest grid n that reaches
the target at the chosen settings. The plotted values are the numbers of
``power_grid.tsv``, formatted with the same digits (the page and the table
never disagree), and listed in a table under the plot.
"""

from __future__ import annotations

import html
import json
import math

import numpy as np

__all__ = ["explorer_html"]

_COLUMNS = ("power", "power_ci_low", "power_ci_high", "size")


def _number(fmt: str | None, v) -> float | None:
    """Return a value as the TSV writes it (same digits); None for NaN."""
    v = float(v)
    if not math.isfinite(v):
        return None
    return float(fmt % v) if fmt else v


def explorer_data(grid, *, target_power: float = 0.8, tests=None) -> dict:
    """Return the data the explorer page embeds (plain JSON types).

    Parameters
    ----------
    grid : PowerGrid
    target_power : float
        Initial target-power line (the reader can change it).
    tests : sequence of (roi, outcome, term[, direction]), optional
        Tests to offer first (the reported findings); default the interactions.

    Returns
    -------
    dict
        ``axes`` (name, values, the design's own value), ``tests`` (labels),
        ``power``, ``power_ci_low``, ``power_ci_high``, ``size``: per test a
        list over grid points in row-major axis order (the last axis fastest,
        as in ``power_grid.tsv``); ``default_test``; run facts.
    """
    from dtitool.columns import column_format

    t = grid.table
    names = [a for a, _ in grid.axes]
    keys = t[["roi", "outcome", "term"]].drop_duplicates().itertuples(index=False)
    keys = [tuple(k) for k in keys]
    n_tests = len(keys)
    n_points = math.prod(len(v) for _, v in grid.axes)
    data = {}
    for col in _COLUMNS:
        fmt = column_format(col, "power_grid")
        vals = t[col].to_numpy(dtype=float).reshape(n_points, n_tests).T
        data[col] = [[_number(fmt, v) for v in row] for row in vals]
    first = [(r, o, term) for r, o, term, *_ in (tests or [])]
    order = [k for k in first if k in keys] + [k for k in keys if k[2] ==
                                               "interaction" and k not in first]
    default = keys.index(order[0]) if order else 0
    return {
        "design": grid.design_name,
        "replicates": grid.replicates,
        "seed": grid.seed,
        "alpha": grid.alpha,
        "inference": grid.inference,
        "target": float(target_power),
        "axes": [{"name": a, "values": [float(v) for v in vals],
                  "base": float(grid.base.get(a, np.nan))}
                 for a, vals in grid.axes],
        "tests": [f"{r} / {o} / {term}" for r, o, term in keys],
        "default_test": int(default),
        "suggested": [keys.index(k) for k in order],
        "impossible": len(grid.impossible),
        **data,
        "names": names,
    }


_CSS = """
:root { --fg: #1b1f24; --muted: #57606a; --line: #d0d7de; --accent: #0b5cad;
        --size: #b35900; --bg-soft: #f6f8fa; }
* { box-sizing: border-box; }
body { font: 16px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica,
       Arial, sans-serif; color: var(--fg); margin: 0; }
main { max-width: 64em; margin: 0 auto; padding: 1.2em 1em 3em; }
h1 { font-size: 1.5em; margin: 0.2em 0; }
.muted { color: var(--muted); }
.controls { display: grid; grid-template-columns: repeat(auto-fit,
            minmax(15em, 1fr)); gap: 0.6em 1.2em; background: var(--bg-soft);
            padding: 0.8em 1em; border: 1px solid var(--line); border-radius: 6px; }
.controls label { display: block; font-size: 0.9em; }
.controls select, .controls input[type=range], .controls input[type=number] {
  width: 100%; }
.controls output { font-weight: 600; }
.controls .off { opacity: 0.45; }
svg { width: 100%; height: auto; display: block; margin-top: 0.8em; }
.axis line, .axis path { stroke: #888; }
.axis text { font-size: 12px; fill: var(--muted); }
.band { fill: var(--accent); fill-opacity: 0.15; }
.power { fill: none; stroke: var(--accent); stroke-width: 2.5; }
.size { fill: none; stroke: var(--size); stroke-width: 2; stroke-dasharray: 6 4; }
.target { stroke: #2a7a2a; stroke-width: 1.5; stroke-dasharray: 3 3; }
.reach { stroke: #2a7a2a; stroke-width: 1.5; }
.pt-power { fill: var(--accent); }
.pt-size { fill: var(--size); }
.legend text { font-size: 12px; }
#answer { font-weight: 600; margin: 0.6em 0; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.85em;
        font-variant-numeric: tabular-nums; margin-top: 0.8em; }
th, td { border-bottom: 1px solid var(--line); padding: 0.25em 0.6em;
         text-align: right; }
th { background: var(--bg-soft); }
"""



def _script() -> str:
    from importlib.resources import files

    return files("dtitool.report").joinpath("explorer.js").read_text(
        encoding="utf-8")


def explorer_html(grid, *, target_power: float = 0.8, tests=None) -> str:
    """Return the explorer page of a power grid (one self-contained HTML file).

    Parameters
    ----------
    grid : PowerGrid
        From :func:`dtitool.stats.power.power_grid`.
    target_power : float
        Initial target-power line.
    tests : sequence of tuples, optional
        Tests offered first (the reported findings); default the interactions.

    Returns
    -------
    str
        The page: inline CSS and script, the data as JSON in a
        ``<script type="application/json">`` block; nothing is loaded from
        elsewhere.
    """
    data = explorer_data(grid, target_power=target_power, tests=tests)
    payload = json.dumps(data, separators=(",", ":"), allow_nan=False)
    payload = payload.replace("</", "<\\/")  # never closes the script element
    axes_text = ", ".join(f"{a} ({len(v)} values)" for a, v in grid.axes)
    points = math.prod(len(v) for _, v in grid.axes)
    title = f"Power explorer: {grid.design_name}"
    note = (f" {data['impossible']} points are not possible designs (gaps)."
            if data["impossible"] else "")
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<main>
<h1>{html.escape(title)}</h1>
<p class="muted">{points} design points ({html.escape(axes_text)}), {grid.replicates}
simulated trials per point (common random numbers, seed {grid.seed}), alpha
{grid.alpha:g}, {html.escape(grid.inference)} inference. Power is the share of
trials in which the test is significant; size is its rejection rate in the
design's null counterpart (every MD-outcome correlation 0). The numbers are those
of power_grid.tsv.{html.escape(note)}</p>
<div class="controls">
  <div><label for="test">test (ROI / outcome / term)</label>
    <select id="test"></select></div>
  <div><label for="xaxis">plot against</label><select id="xaxis"></select></div>
  <div><label for="target">target power</label>
    <input type="number" id="target" min="0.05" max="0.99" step="0.05"></div>
  <div id="sliders" style="display:contents"></div>
</div>
<svg id="plot" viewBox="0 0 720 400" role="img"
  aria-label="Power with its 95% band and size against the chosen axis"></svg>
<p id="answer"></p>
<div class="table-wrap"><table>
<thead><tr><th id="xhead"></th><th>power</th><th>95% interval</th><th>size</th></tr>
</thead><tbody id="rows"></tbody></table></div>
</main>
<script type="application/json" id="grid-data">{payload}</script>
<script>{_script()}</script>
</body>
</html>
"""
