"""Results objects show themselves in Jupyter: ``_repr_html_`` is a compact table.

As pandas and statsmodels render in a notebook: the run's facts (design, seed,
inference, ...) and the result table, every test a row, numbers at 4 significant
digits, text escaped, nothing fetched from outside the page.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from _analysis_tables import make_tables

from dtitool.design import load_preset
from dtitool.stats.analysis import fit_models
from dtitool.stats.power import power
from dtitool.stats.sample_size import sample_size

R = 64


class _Cells(HTMLParser):
    """Collects every table's rows of cell texts, and checks the tags balance."""

    def __init__(self):
        super().__init__()
        self.tables, self.stack, self._cell = [], [], None

    def handle_starttag(self, tag, attrs):
        self.stack.append(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        assert self.stack.pop() == tag
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self._cell.strip())
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data


def parse(html: str) -> _Cells:
    p = _Cells()
    p.feed(html)
    p.close()
    assert p.stack == []
    assert "http://" not in html and "https://" not in html
    return p


@pytest.fixture(scope="module")
def design():
    return load_preset("ketamine-rct")


def facts(tables):
    return {row[0]: row[1] for row in tables[0] if len(row) == 2}


def test_power_result_html(design):
    res = power(design, replicates=R, rng=1, progress=False)
    p = parse(res._repr_html_())
    info = facts(p.tables)
    assert info["design"] == design.name
    assert info["replicates"] == str(R) and info["seed"] == "1"
    assert info["inference"] == res.inference
    header, *rows = p.tables[1]
    assert header[:3] == ["roi", "outcome", "term"]
    assert "power" in header and "size" in header
    assert len(rows) == len(res.table)  # every test, nothing cut at this size
    first = res.table.iloc[0]
    cells = dict(zip(header, rows[0], strict=True))
    assert cells["roi"] == first["roi"] and cells["term"] == first["term"]
    assert float(cells["power"]) == pytest.approx(first["power"], rel=1e-3)


def test_analysis_results_html():
    res = fit_models(*make_tables(seed=0))
    p = parse(res._repr_html_())
    info = facts(p.tables)
    assert info["formula"] == res.formula  # "~", "*", quotes: escaped and back
    assert info["inference"] == res.inference
    header, *rows = p.tables[1]
    assert header[:3] == ["roi", "outcome", "term"]
    assert {"estimate", "se", "p", "p_holm"} <= set(header)
    assert len(rows) == len(res.table)
    cells = dict(zip(header, rows[0], strict=True))
    assert float(cells["p"]) == pytest.approx(res.table["p"].iloc[0], rel=1e-3)
    # numbers at 4 significant digits, not pandas' full precision
    assert all(len(re.sub(r"[^0-9]", "", c.split("e")[0]).lstrip("0")) <= 4
               for c in (dict(zip(header, r, strict=True))["estimate"]
                         for r in rows))


def test_sample_size_result_html(design):
    res = sample_size(design, tests=[("L_BA10", "madrs", "interaction")], n_min=20,
                      n_max=60, replicates=R, rng=1, progress=False)
    p = parse(res._repr_html_())
    info = facts(p.tables)
    n = str(res.n) if res.n is not None else "not reached by 60"
    assert info["n"] == n
    assert info["limiting test"] == res.limiting_test
    assert info["seed"] == str(res.seed)
    header, *rows = p.tables[1]
    assert "n" in header and "power" in header
    assert len(rows) == len(res.evaluated)


def test_text_is_escaped(design):
    from dtitool.stats._html import result_html

    out = result_html("<b>", [("a<b", "x & y"), ("skipped", None)])
    assert "<b>" not in out
    assert "&lt;b&gt;" in out and "a&lt;b" in out and "x &amp; y" in out
    assert "skipped" not in out
