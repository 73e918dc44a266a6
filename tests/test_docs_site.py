"""The documentation site builds, offline and without a warning, and shows the gallery.

``python -m sphinx -W -b html docs OUT`` (docs/conf.py): every page, the API
reference from the docstrings, the user guide (which runs the README's commands)
and the sphinx-gallery of ``examples/`` (which runs every script). Then headless
Chromium opens the gallery's index and one example's page, as a reader would,
and finds the figure decoded and no console error, exception or failed load.

Needs the ``docs`` extra (``pip install ".[docs]"``) and a Chromium; without
them the test is skipped, unless ``DTITOOL_REQUIRE_DOCS=1`` (``.ci/run`` sets it),
which makes a missing tool a failure. The build takes about 1.5 minutes on
2 cores, so the test is marked slow.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(p.stem for p in (ROOT / "examples").glob("*.py"))
# Examples that write a PNG figure (the cluster example writes a table and an
# interactive page instead).
WITH_FIGURE = [e for e in EXAMPLES if e != "cluster_power_grid"]
TOOLS = ("sphinx", "myst_parser", "numpydoc", "sphinx_gallery", "furo")

pytestmark = pytest.mark.slow


def _need(what: str):
    if os.environ.get("DTITOOL_REQUIRE_DOCS") == "1":
        pytest.fail(f"{what} (DTITOOL_REQUIRE_DOCS=1)")
    pytest.skip(what)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    missing = [t for t in TOOLS if importlib.util.find_spec(t) is None]
    if missing:
        _need(f"the docs extra is not installed (no {', '.join(missing)})")
    out = tmp_path_factory.mktemp("site")
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html",
         "-d", str(out / "doctrees"), "docs", str(out / "html")],
        cwd=ROOT, capture_output=True, text=True, timeout=900,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, (
        f"sphinx -W failed ({proc.returncode}):\n{proc.stdout[-5000:]}\n"
        f"{proc.stderr[-10000:]}")
    print(f"site built in {elapsed:.0f} s")
    return out / "html"


def test_every_page_is_built(site):
    for page in ("index", "user-guide", "api", "model", "outputs", "scale-out",
                 "architecture", "auto_examples/index"):
        assert (site / f"{page}.html").is_file(), page
    # the API reference documents the whole public API
    import dtitool

    api = {p.name for p in (site / "generated").glob("dtitool.*.html")}
    documented = {n for n in dtitool.__all__ if not n.isupper() and n != "__version__"}
    assert {f"dtitool.{n}.html" for n in documented} <= api
    guide = (site / "user-guide.html").read_text(encoding="utf-8")
    assert guide.count('<div class="command-output') >= 8
    assert "open demo/report.html" in guide


@pytest.mark.parametrize("name", EXAMPLES)
def test_every_example_ran_with_its_output(site, name):
    page = (site / "auto_examples" / f"{name}.html").read_text(encoding="utf-8")
    assert "sphx-glr-script-out" in page, f"{name}: no printed output"
    assert "failed to execute" not in page and "Traceback" not in page
    if name in WITH_FIGURE:
        assert re.search(rf'<img [^>]*src="[^"]*sphx_glr_{name}_001\.png"', page), (
            f"{name}: no figure")


def _chromium():
    sys.path.insert(0, str(Path(__file__).parent))
    from _browser import find_chromium

    exe = find_chromium()
    if exe is None:
        _need("no Chromium installed (.ci/run installs Debian's chromium)")
    return exe


def test_gallery_in_a_browser(site, tmp_path):
    from _browser import render_page

    exe = _chromium()
    index = render_page(exe, site / "auto_examples" / "index.html",
                        tmp_path / "gallery.png")
    assert index["errors"] == []
    assert len(index["images"]) >= len(WITH_FIGURE)  # the thumbnails
    assert all(ok and w > 0 for ok, w, _ in index["images"]), index["images"]

    path = site / "auto_examples" / "reproduce_trial.html"
    page = render_page(exe, path, tmp_path / "example.png")
    assert page["errors"] == []
    # document.images is in the order of the page's <img> tags
    srcs = re.findall(r'<img [^>]*src="([^"]*)"', path.read_text(encoding="utf-8"))
    assert len(srcs) == len(page["images"])
    figures = [img for img, src in zip(page["images"], srcs, strict=True)
               if src.endswith("sphx_glr_reproduce_trial_001.png")]
    assert len(figures) == 1, srcs
    ok, width, height = figures[0]
    assert ok and width > 400 and height > 200  # decoded, the figure's size

    # the cluster example's interactive explorer, in a frame beside its output
    path = site / "auto_examples" / "cluster_power_grid.html"
    frame = re.search(r'<iframe [^>]*src="([^"]+)"', path.read_text(encoding="utf-8"))
    assert frame and (path.parent / frame.group(1)).is_file()
    page = render_page(exe, path, tmp_path / "cluster.png")
    assert page["errors"] == []
