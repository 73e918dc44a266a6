import base64
import re

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from dtitool.report.html import HTMLReport, figure_png, png_data_uri


def test_report_embeds_figures_and_escapes_text():
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    png = figure_png(fig)
    rep = HTMLReport(title="T <1>", subtitle="sub")
    rep.add_section("Results", text="a < b\n\nsecond paragraph",
                    table=pd.DataFrame({"roi": ["L_BA10"], "p": [0.01234]}),
                    note="note & more")
    rep.add_figure(png, caption="A line")
    page = rep.render(footer="fixed")
    assert page.startswith("<!DOCTYPE html>")
    assert "T &lt;1&gt;" in page and "a &lt; b" in page and "note &amp; more" in page
    assert page.count("<p>") >= 2
    assert "<td>0.0123</td>" in page or ">0.0123</td>" in page
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(uris) == 1
    assert base64.b64decode(uris[0]) == png
    assert "http://" not in page and "https://" not in page
    assert "@media print" in page


def test_bad_inputs():
    with pytest.raises(ValueError, match="expects PNG bytes"):
        png_data_uri(b"GIF89a")
    rep = HTMLReport(title="x")
    with pytest.raises(ValueError, match="add a section before"):
        rep.add_text("orphan")


@pytest.mark.parametrize(("column", "value", "shown"), [
    ("p", 0.01234, "0.0123"),
    ("p", 0.5, "0.500"),
    ("p", 0.0004, "<0.001"),
    ("median_p", 0.04, "0.0400"),
    ("p_holm", 1.0, "1.00"),
    ("power", 0.5321, "0.53"),
    ("size", 0.0501, "0.05"),
    ("estimate", 1.23456, "1.23"),
    ("estimate", float("nan"), ""),
    ("roi", "L_BA10", "L_BA10"),
    ("size_ok", True, "yes"),
])  # fmt: skip
def test_cells_are_formatted_by_what_they_hold(column, value, shown):
    from dtitool.report.html import format_value

    assert format_value(column, value) == shown


def test_headers_show_units_typographically_and_keep_them_whole():
    rep = HTMLReport(title="x")
    rep.add_section("S", table=pd.DataFrame({"MD (1e-3 mm^2/s)": [0.8]}))
    page = rep.render(footer="f")
    assert "1e-3" not in page and "mm^2" not in page
    assert '<span class="unit">(10⁻³ mm²/s)</span>' in page


def _page_with(tmp_path, body):
    from dtitool.report.html import _CSS

    path = tmp_path / "page.html"
    path.write_text(f"<!DOCTYPE html><html><head><style>{_CSS}</style></head>"
                    f"<body><main>{body}</main></body></html>")
    return path


def test_browser_check_catches_overflow_and_console_errors(tmp_path):
    # The report's browser test relies on these checks: show that they fail on
    # a table that overflows the page outside a scrollable box, on content a box
    # hides, and on a console error, and pass on a scrollable table.
    from _browser import find_chromium, render_page

    exe = find_chromium()
    if exe is None:
        pytest.skip("no Chromium installed (.ci/run installs Debian's chromium)")
    wide = "<tr>" + "".join(f"<td>{'x' * 30}</td>" for _ in range(12)) + "</tr>"
    bad = _page_with(tmp_path, f"<table>{wide}</table>"
                     '<div style="overflow:hidden;width:100px">'
                     f'<span style="white-space:nowrap">{"y" * 80}</span></div>'
                     "<script>console.error('boom')</script>")
    info = render_page(exe, bad, tmp_path / "bad.png", width=390)
    assert any(o.startswith("outside the page: table") for o in info["overflow"])
    assert any(o.startswith("clipped: div") for o in info["overflow"])
    assert info["errors"] == ["boom"]
    good = _page_with(tmp_path, f'<div class="table-wrap"><table>{wide}</table></div>')
    info = render_page(exe, good, tmp_path / "good.png", width=390)
    assert info["overflow"] == [] and info["errors"] == []
