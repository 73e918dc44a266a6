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
