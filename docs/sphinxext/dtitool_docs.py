"""Sphinx helpers of dtitool's site: the gallery's runner and scraper, command output.

- :func:`reset_argv` runs each gallery example as its command line does, with
  ``--out`` a temporary folder (never the source tree);
- :func:`output_files_scraper` shows the PNG figures an example wrote there
  (the examples save and close their figures, as command line programs should,
  so matplotlib's own scraper finds nothing open), and the HTML pages in a frame;
- the ``command-output`` directive runs a shell command of the user guide in a
  temporary folder shared by the page's commands and shows what it printed.

sphinx-gallery finds the two functions by name (``"dtitool_docs.reset_argv"``),
so the configuration stays picklable and Sphinx can cache the environment.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

OUT = Path(tempfile.mkdtemp(prefix="dtitool-gallery-"))
"""Where the gallery's examples write (one folder per example)."""
RUN_DIR = Path(tempfile.mkdtemp(prefix="dtitool-guide-"))
"""The user guide's working folder."""
for _tmp in (OUT, RUN_DIR):
    atexit.register(shutil.rmtree, _tmp, ignore_errors=True)

GALLERY_ARGS = {"cluster_power_grid": ["--quick", "--replicates", "128"]}
"""Options an example runs with besides ``--out`` (default: none, its defaults):
the cluster example runs its own small grid on a LocalCluster."""


def example_out(src_file: str) -> Path:
    """Return the ``--out`` folder of one example."""
    return OUT / Path(src_file).stem


def reset_argv(gallery_conf, script_vars) -> list[str]:
    """Arguments of an example in the gallery: ``--out`` a temporary folder."""
    name = Path(script_vars["src_file"]).stem
    return ["--out", str(example_out(script_vars["src_file"])),
            *GALLERY_ARGS.get(name, [])]


def output_files_scraper(block, block_vars, gallery_conf) -> str:
    """Show the figures (PNG) and pages (HTML) an example wrote; return reST.

    Figures are copied into the gallery's images; a page (the cluster example's
    interactive power explorer) is copied beside them and shown in a frame
    (:func:`_copy_pages` puts it in the built site).
    """
    from sphinx_gallery.scrapers import figure_rst

    src = Path(block_vars["src_file"])
    out = example_out(str(src))
    if not out.is_dir():
        return ""
    images = []
    for png, target in zip(sorted(out.glob("*.png")),
                           block_vars["image_path_iterator"], strict=False):
        shutil.copyfile(png, target)
        images.append(target)
    rst = figure_rst(images, gallery_conf["src_dir"],
                     fig_titles=f"The figure {src.name} wrote" if images else "")
    image_dir = Path(block_vars["image_path_iterator"].image_path).parent
    for page in sorted(out.glob("*.html")):
        name = f"sphx_glr_{src.stem}_{page.name}"
        shutil.copyfile(page, image_dir / name)
        rst += (f"\n\n.. raw:: html\n\n    <iframe class=\"dtitool-page\" "
                f'src="images/{name}" title="{page.name}, written by {src.name}">'
                f"</iframe>\n\n")
    return rst


def _copy_pages(app, exception) -> None:
    """Put the gallery's example pages into the built site, beside their frames."""
    if exception is not None or app.builder.format != "html":
        return
    galleries = app.config.sphinx_gallery_conf["gallery_dirs"]
    for gallery in [galleries] if isinstance(galleries, str) else galleries:
        src = Path(app.srcdir) / gallery / "images"
        for page in src.glob("sphx_glr_*.html"):
            dest = Path(app.outdir) / gallery / "images"
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(page, dest / page.name)


class CommandOutput(SphinxDirective):
    """Run a shell command in the guide's working folder; show it and its output.

    Every command runs in one temporary folder, in page order, so a step reads
    what the step before it wrote. A command that fails fails the build.
    ``:tail: N`` shows only the last N lines of a long output.
    """

    has_content = True
    option_spec: ClassVar = {"tail": directives.nonnegative_int}

    def run(self):
        """Run the command; return its text and its output as literal blocks."""
        command = "\n".join(self.content)
        env = {**os.environ, "MPLBACKEND": "Agg", "COLUMNS": "88"}
        start = time.perf_counter()
        proc = subprocess.run(["bash", "-c", "set -eo pipefail\n" + command],
                              cwd=RUN_DIR, env=env, capture_output=True,
                              text=True, timeout=600, check=False)
        logger.info("command-output: %.1f s: %s", time.perf_counter() - start,
                    self.content[0])
        if proc.returncode != 0:
            raise self.error(f"command failed ({proc.returncode}):\n{command}\n"
                             f"{proc.stdout}\n{proc.stderr}")
        lines = proc.stdout.rstrip().splitlines()
        tail = self.options.get("tail")
        if tail is not None and len(lines) > tail:
            lines = [f"[... {len(lines) - tail} lines ...]", *lines[-tail:]]
        # "$ " starts each command; a line after a trailing backslash continues one
        shown = "\n".join(c if prev.endswith("\\") else "$ " + c
                          for c, prev in zip(self.content, ["", *self.content],
                                             strict=False))
        cmd_node = nodes.literal_block(shown, shown, language="bash")
        out_text = "\n".join(lines) or "(no output)"
        out_node = nodes.literal_block(out_text, out_text, language="none")
        out_node["classes"].append("command-output")
        return [cmd_node, out_node]


def setup(app):
    """Register the ``command-output`` directive."""
    app.add_directive("command-output", CommandOutput)
    app.connect("build-finished", _copy_pages)
    return {"parallel_read_safe": False, "parallel_write_safe": True}
