"""The package layout keeps its promises (docs/architecture.md).

- Layering, read from the import graph with ``ast`` (imports inside functions
  count too): every part of the package (a top-level module or a subpackage)
  has a row in :data:`ALLOWED` naming the parts it may import, so a new module
  must state its place and a new import across the layers fails: no package
  imports ``cli/`` (``__main__`` excepted); ``imaging/`` never imports
  ``stats/`` or ``report/``; ``stats/`` never imports ``imaging/`` or
  ``report/``; the lower layers (``design/``, ``simulate``, ``tables``, the
  output protocol, the execution layer) import none of the stages above them;
  ``report/`` renders and does not orchestrate: it never imports the demo
  ``pipeline``, the execution layer, ``_workers`` or ``_io``;
  only ``report/`` imports matplotlib.
- No import cycle among the package's modules (imports inside functions count).
- Nothing in the repository points to a document outside it, and every
  ``docs/*.md`` it names exists.
- ``import dtitool`` and every ``--help`` stay light: no matplotlib, statsmodels,
  scipy.stats (nor nibabel or scipy.special) are imported.

Each checker is also run on a deliberately broken input, so the tests are
known to fail when the rule is broken.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "dtitool"


# ------------------------------------------------------------------- layering


def module_name(path: Path, root: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_module(root: Path, name: str) -> bool:
    """Whether the dotted ``name`` is a module or package of the tree ``root``."""
    p = root.parent.joinpath(*name.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def _type_checking_only(tree: ast.AST) -> set[int]:
    """Ids of the nodes under ``if TYPE_CHECKING:`` (never run)."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in (
                "TYPE_CHECKING", "typing.TYPE_CHECKING"):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return skip


def imports_of(path: Path, root: Path, *, run_only: bool = False) -> set[str]:
    """Absolute names of every module ``path`` imports (anywhere in the file).

    ``run_only``: leave out imports under ``if TYPE_CHECKING:``, which never
    run (the layering counts them: a type named across the layers is a
    dependency too).
    """
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    me = module_name(path, root)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    skip = _type_checking_only(tree) if run_only else set()
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if "." in mod:
                out.add(mod)
                # "from dtitool.stats import power": the module power too
                out.update(f"{mod}.{a.name}" for a in node.names
                           if _is_module(root, f"{mod}.{a.name}"))
            else:  # "from dtitool import stats": the names are the modules
                out.update(f"{mod}.{a.name}" for a in node.names)
    return out


def _stage(module: str) -> str:
    """The layer a dtitool module belongs to (its first sub-name)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


# Every part of the package (a top-level module or a subpackage) and the parts
# it may import; anything else is a layering violation. A part without a row
# fails test_every_module_has_a_row, so a new module must state its place.
# "__version__" is ``from dtitool import __version__`` (the root package's
# version string, not its lazily loaded API).
_LOW = {"_constants", "_memory", "_workers", "_validation", "columns"}
_EXECUTION = {"_executor", "_dask", "_progress", "_gzip"}
ALLOWED = {
    # the root: lazy re-exports only (PEP 562), never the CLI
    "": {"_constants", "design", "simulate", "tables", "imaging", "stats",
         "report", "pipeline", "columns", "mrs"},
    "__main__": {"cli"},
    "__version__": set(),
    # the lowest layer: shared names, memory estimates, process lifetime,
    # argument checks, the data dictionary of the written columns
    "_constants": set(),
    "_validation": set(),
    "_memory": set(),
    "_workers": set(),
    # the data dictionary describes a design's own names (its arms, visits,
    # outcome scales): it reads the design, which imports nothing above it
    "columns": {"_constants", "design"},
    # tables with their sidecars, and the output protocol
    "_tsv": {"columns"},
    "_staging": {"_workers"},
    "_io": {"_workers", "_staging", "_tsv", "columns", "__version__"},
    # where tasks run, progress, gzip: itself, _workers and the version only
    **{m: (_EXECUTION - {m}) | {"_workers", "__version__"} for m in _EXECUTION},
    # the stages, bottom up
    "design": {"_constants", "_validation"},
    "simulate": {"design", "_constants", "_io", "_memory", "columns", "_validation",
                 "simulate_scores"},
    # the simulator's score model: numbers in, numbers out
    "simulate_scores": set(),
    "tables": {"design", "_constants", "_io", "_memory", "columns", "_validation",
               "table_names"},
    # the trial's names from its tables (re-exported by tables)
    "table_names": {"design", "_io"},
    "imaging": _LOW | _EXECUTION | {"_io", "__version__"},
    # MRS quantification results (Gannet, Osprey, LCModel) read into long tables
    "mrs": {"_constants", "_validation", "_tsv", "_io", "columns"},
    "stats": _LOW | _EXECUTION | {"design", "simulate", "tables"},
    # report/ renders (figures, pages) from results it is given: it runs no
    # step, starts no process and commits no output, so it imports neither the
    # execution layer, _workers, _io nor the pipeline
    "report": (_LOW - {"_workers"}) | {"__version__", "design", "simulate",
                                       "tables", "imaging", "stats"},
    # the demo pipeline runs the steps, then has report/ render its results
    "pipeline": _LOW | _EXECUTION | {"_io", "__version__", "design", "simulate",
                                     "tables", "imaging", "stats", "report"},
    "cli": _LOW | _EXECUTION | {"_io", "__version__", "design", "simulate",
                                "tables", "imaging", "stats", "report",
                                "pipeline", "mrs"},
}


def layering_violations(root: Path) -> list[str]:
    """Every import in the package tree ``root`` that breaks a layering rule."""
    bad = []
    for path in sorted(root.rglob("*.py")):
        me = module_name(path, root)
        stage = _stage(me)
        allowed = ALLOWED.get(stage, set())
        for mod in sorted(imports_of(path, root)):
            top = mod.split(".")[0]
            if top == "matplotlib" and stage != "report":
                bad.append(f"{me} imports {mod} (only report/ may import matplotlib)")
            if top != root.name:
                continue
            target = _stage(mod)
            if target == stage:
                continue
            if target not in allowed:
                bad.append(f"{me} imports {mod} ({stage or 'the package root'} may "
                           f"not import {target or 'the package root'})")
    return bad


def parts_without_a_row(root: Path) -> list[str]:
    """Modules of the package tree ``root`` whose part has no row in ALLOWED."""
    return [module_name(p, root) for p in sorted(root.rglob("*.py"))
            if _stage(module_name(p, root)) not in ALLOWED]


def test_layering_rules_hold():
    assert layering_violations(PKG) == []


def test_every_module_has_a_row():
    assert parts_without_a_row(PKG) == []


def test_a_module_without_a_row_is_caught(tmp_path):
    root = tmp_path / "dtitool"
    _write(root, "__init__.py", "")
    _write(root, "_new_helper.py", "")
    assert parts_without_a_row(root) == ["dtitool._new_helper"]


def test_every_row_is_a_package_or_module():
    for name in set(ALLOWED) - {"", "__version__"}:
        assert (PKG / name / "__init__.py").is_file() or (
            PKG / f"{name}.py").is_file(), name


def _write(root: Path, rel: str, text: str) -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


@pytest.mark.parametrize(("rel", "text", "expect"), [
    ("stats/power.py", "from dtitool.imaging import tensor\n",
     "stats may not import imaging"),
    ("imaging/x.py", "def f():\n    import dtitool.stats.ols\n",
     "imaging may not import stats"),
    ("stats/x.py", "import matplotlib.pyplot as plt\n", "only report/ may import"),
    ("cli/x.py", "from matplotlib.figure import Figure\n", "only report/ may import"),
    ("report/x.py", "from dtitool.cli import main\n", "report may not import cli"),
    ("report/x.py", "def f():\n    from dtitool.pipeline import run_demo\n",
     "report may not import pipeline"),
    ("report/x.py", "from dtitool._executor import open_executor\n",
     "report may not import _executor"),
    ("stats/y.py", "from ..report import plots\n", "stats may not import report"),
    ("design/spec.py", "from dtitool import simulate\n",
     "design may not import simulate"),
    ("_executor.py", "def f():\n    from dtitool.stats import power\n",
     "_executor may not import stats"),
    ("_gzip.py", "from dtitool import _io\n", "_gzip may not import _io"),
    ("columns.py", "from dtitool.tables import read\n",
     "columns may not import tables"),
    ("__init__.py", "def f():\n    from dtitool.cli import main\n",
     "the package root may not import cli"),
])  # fmt: skip
def test_layering_checker_catches_a_broken_rule(tmp_path, rel, text, expect):
    root = tmp_path / "dtitool"
    for pkg in ("", "design", "imaging", "stats", "report", "cli"):
        _write(root, f"{pkg}/__init__.py" if pkg else "__init__.py", "")
    _write(root, "__main__.py", "from dtitool.cli import main\n")
    _write(root, rel, text)
    bad = layering_violations(root)
    assert len(bad) == 1 and expect in bad[0], bad


# ------------------------------------------------------------- import cycles


def import_graph(root: Path) -> dict[str, list[str]]:
    """``module -> the modules of the tree root it imports`` (anywhere in the file).

    A package is its ``__init__``; importing a submodule is not counted as
    importing its parent packages (that is how a package imports its own
    modules). Imports under ``if TYPE_CHECKING:`` never run and are left out.
    """
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    return {me: sorted(m for m in imports_of(path, root, run_only=True)
                       if m in files and m != me)
            for me, path in files.items()}


def import_cycles(root: Path) -> list[str]:
    """One cycle ``a -> b -> ... -> a`` per strongly connected set of modules.

    A set larger than the cycle shown is named after it.

    Tarjan's algorithm over :func:`import_graph`: a module-level import and one
    inside a function both make an edge, because either runs the other
    module's code while this one is being used, and a cycle is then one
    refactor away from an ImportError (partially initialised module).
    """
    graph = import_graph(root)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    out = []
    for comp in sorted(components):
        cycle = _cycle_through(graph, comp)
        among = f" (among {', '.join(comp)})" if len(comp) > len(cycle) - 1 else ""
        out.append(" -> ".join(cycle) + among)
    return out


def _cycle_through(graph: dict[str, list[str]], comp: list[str]) -> list[str]:
    """A shortest cycle from the first module of ``comp`` back to it (BFS)."""
    start, members = comp[0], set(comp)
    came = {start: None}
    queue = [start]
    for v in queue:
        for w in graph[v]:
            if w == start:
                path = [v]
                while came[path[-1]] is not None:
                    path.append(came[path[-1]])
                return [*reversed(path), start]
            if w in members and w not in came:
                came[w] = v
                queue.append(w)
    raise AssertionError(f"no cycle through {start}")  # pragma: no cover


def test_no_import_cycles():
    assert import_cycles(PKG) == []


@pytest.mark.parametrize(("files", "expect"), [
    ({"stats/a.py": "from dtitool.stats import b\n",
      "stats/b.py": "from dtitool.stats.a import f\n"},
     "dtitool.stats.a -> dtitool.stats.b -> dtitool.stats.a"),
    # the cycle that was: each side imported inside a function
    ({"stats/analysis.py": "def f():\n    from dtitool.stats.missing import g\n",
      "stats/missing.py": "def g():\n    from dtitool.stats import analysis\n"},
     "dtitool.stats.analysis -> dtitool.stats.missing -> dtitool.stats.analysis"),
    ({"stats/a.py": "from .b import x\n", "stats/b.py": "from .c import y\n",
      "stats/c.py": "def f():\n    import dtitool.stats.a\n"},
     "dtitool.stats.a -> dtitool.stats.b -> dtitool.stats.c -> dtitool.stats.a"),
    # through a package's __init__: spec runs while the package is half made
    ({"design/__init__.py": "from dtitool.design.spec import S\n",
      "design/spec.py": "from dtitool.design import presets\n",
      "design/presets.py": "from dtitool.design.spec import S\n"},
     "dtitool.design -> dtitool.design.spec -> dtitool.design (among "
     "dtitool.design, dtitool.design.presets, dtitool.design.spec)"),
])  # fmt: skip
def test_cycle_checker_catches_a_planted_cycle(tmp_path, files, expect):
    root = tmp_path / "dtitool"
    for pkg in ("", "design", "stats"):
        _write(root, f"{pkg}/__init__.py" if pkg else "__init__.py", "")
    _write(root, "stats/low.py", "")
    _write(root, "stats/high.py", "from dtitool.stats import low\n")
    assert import_cycles(root) == []
    for rel, text in files.items():
        _write(root, rel, text)
    assert import_cycles(root) == [expect]


def test_a_type_checking_import_back_is_not_a_cycle(tmp_path):
    # power_results' summary() calls power_summary, which names the result
    # classes in its annotations only
    root = tmp_path / "dtitool"
    _write(root, "__init__.py", "")
    _write(root, "stats/__init__.py", "")
    _write(root, "stats/results.py",
           "def summary():\n    from dtitool.stats.text import f\n")
    _write(root, "stats/text.py", "from typing import TYPE_CHECKING\n\n"
           "if TYPE_CHECKING:\n    from dtitool.stats.results import R\n")
    assert import_cycles(root) == []
    _write(root, "stats/text.py", "from dtitool.stats.results import R\n")
    assert import_cycles(root) == [
        "dtitool.stats.results -> dtitool.stats.text -> dtitool.stats.results"]


# -------------------------------------------------------- outside references

# Built from pieces so that this file does not match itself.
_OUTSIDE = [
    r"\b" + "DESIGN" + r"\.md\b",
    r"\b" + "STYLE" + r"\.md\b",
    r"\.\./" + "shared",
    r"\bshared/" + "seeds",
    r"\b" + "seeds" + r"/0\d\d_",
    r"\b" + "[Ii]ssues?" + r"\s+#?\d+",
    r"\bthe " + "lead" + r"(?:'s)?\b",
]
OUTSIDE_RE = re.compile("|".join(_OUTSIDE))
DOC_RE = re.compile(r"\bdocs/([A-Za-z0-9_.-]+\.md)")
TEXT_SUFFIXES = {".py", ".md", ".toml", ".tsv", ".txt", ".cfg", ".json", ".html",
                 ".bval", ".bvec", ""}


def repository_text_files(root: Path):
    tops = ["dtitool", "tests", "examples", "synthetic_data", "docs", ".ci",
            "README.md", "pyproject.toml", ".gitignore"]
    for top in tops:
        p = root / top
        files = [p] if p.is_file() else sorted(p.rglob("*")) if p.is_dir() else []
        for f in files:
            if (f.is_file() and f.suffix in TEXT_SUFFIXES
                    and "__pycache__" not in f.parts):
                yield f


def outside_references(root: Path) -> list[str]:
    bad = []
    for f in repository_text_files(root):
        try:
            text = f.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for i, line in enumerate(text.splitlines(), 1):
            if OUTSIDE_RE.search(line):
                bad.append(f"{f.relative_to(root)}:{i}: {line.strip()[:100]}")
            for doc in DOC_RE.findall(line):
                if not (root / "docs" / doc).is_file():
                    bad.append(f"{f.relative_to(root)}:{i}: names missing docs/{doc}")
    return bad


def test_nothing_points_outside_the_repository():
    assert outside_references(ROOT) == []


@pytest.mark.parametrize("line", [
    "see " + "DESIGN" + ".md section 2",
    "as " + "issue" + " 4 asks",
    "the " + "lead" + "'s simulator",
    "details in docs/" + "nowhere.md",
    "../" + "shared/" + "seeds" + "/001_x.txt",
])  # fmt: skip
def test_outside_reference_checker_catches_one(tmp_path, line):
    (tmp_path / "docs").mkdir()
    (tmp_path / "dtitool").mkdir()
    (tmp_path / "dtitool" / "m.py").write_text(f"# {line}\n")
    assert len(outside_references(tmp_path)) == 1


def test_docs_exist():
    for name in ("model.md", "architecture.md"):
        assert (ROOT / "docs" / name).is_file(), name


# ------------------------------------------------------------------- start-up

HEAVY = ("matplotlib", "statsmodels", "scipy.stats", "nibabel", "scipy.special")


def _loaded(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code],
                         capture_output=True, text=True, check=True,
                         cwd=ROOT).stderr
    mods = {ln.split("|")[-1].strip() for ln in out.splitlines() if "|" in ln}
    return sorted(m for m in mods if m.startswith(HEAVY))


def test_import_dtitool_is_light():
    assert _loaded("import dtitool") == []


@pytest.mark.parametrize("command", [
    "", "simulate", "analyze", "fit-tensor", "extract", "power", "reproduce", "demo",
    "mrs-import",
])  # fmt: skip
def test_help_is_light(command):
    argv = [c for c in (command, "--help") if c]
    code = ("import contextlib, io\nfrom dtitool.cli import main\n"
            f"with contextlib.redirect_stdout(io.StringIO()):\n    main({argv!r})")
    assert _loaded(code) == []
