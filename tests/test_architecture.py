"""The package layout keeps its promises (docs/architecture.md).

- Layering, read from the import graph with ``ast`` (imports inside functions
  count too): no package imports ``cli/`` (``__main__`` excepted); ``imaging/``
  never imports ``stats/`` or ``report/``; ``stats/`` never imports ``imaging/`` or
  ``report/``; only ``report/`` imports matplotlib; the lower layers (``design/``,
  ``simulate``, ``tables``) import none of the stages above them.
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


def imports_of(path: Path, root: Path) -> set[str]:
    """Absolute names of every module ``path`` imports (anywhere in the file)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    me = module_name(path, root)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
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
            else:  # "from dtitool import stats": the names are the modules
                out.update(f"{mod}.{a.name}" for a in node.names)
    return out


def _stage(module: str) -> str:
    """The layer a dtitool module belongs to (its first sub-name)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


FORBIDDEN = {
    # stage of the importer -> stages it may not import
    "design": {"simulate", "tables", "imaging", "stats", "report", "cli"},
    "simulate": {"tables", "imaging", "stats", "report", "cli"},
    "tables": {"simulate", "imaging", "stats", "report", "cli"},
    "_constants": {"design", "simulate", "tables", "imaging", "stats", "report",
                   "cli", "_io"},
    "_io": {"design", "simulate", "tables", "imaging", "stats", "report", "cli",
            "_memory"},
    "_workers": {"design", "simulate", "tables", "imaging", "stats", "report",
                 "cli", "_io", "_memory"},
    "_memory": {"design", "simulate", "tables", "imaging", "stats", "report",
                "cli", "_io", "_workers"},
    "imaging": {"stats", "report", "cli"},
    "stats": {"imaging", "report", "cli"},
    "report": {"cli"},
    "": {"cli"},  # dtitool/__init__.py
}


def layering_violations(root: Path) -> list[str]:
    """Every import in the package tree ``root`` that breaks a layering rule."""
    bad = []
    for path in sorted(root.rglob("*.py")):
        me = module_name(path, root)
        stage = _stage(me)
        for mod in sorted(imports_of(path, root)):
            top = mod.split(".")[0]
            if top == "matplotlib" and stage != "report":
                bad.append(f"{me} imports {mod} (only report/ may import matplotlib)")
            if top != root.name:
                continue
            target = _stage(mod)
            if me == f"{root.name}.__main__" or stage == "cli":
                continue
            if target in FORBIDDEN.get(stage, set()):
                bad.append(f"{me} imports {mod} ({stage or 'the package root'} may "
                           f"not import {target})")
    return bad


def test_layering_rules_hold():
    assert layering_violations(PKG) == []


def test_every_stage_is_a_package_or_module():
    for name in ("design", "imaging", "stats", "report", "cli"):
        assert (PKG / name / "__init__.py").is_file(), name
    for name in ("simulate.py", "tables.py", "_io.py", "_workers.py", "_memory.py",
                 "__main__.py"):
        assert (PKG / name).is_file(), name


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
    ("stats/y.py", "from ..report import plots\n", "stats may not import report"),
    ("design/spec.py", "from dtitool import simulate\n",
     "design may not import simulate"),
])  # fmt: skip
def test_layering_checker_catches_a_broken_rule(tmp_path, rel, text, expect):
    root = tmp_path / "dtitool"
    for pkg in ("", "design", "imaging", "stats", "report", "cli"):
        _write(root, f"{pkg}/__init__.py" if pkg else "__init__.py", "")
    _write(root, "__main__.py", "from dtitool.cli import main\n")
    _write(root, rel, text)
    bad = layering_violations(root)
    assert len(bad) == 1 and expect in bad[0], bad


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
])  # fmt: skip
def test_help_is_light(command):
    argv = [c for c in (command, "--help") if c]
    code = ("import contextlib, io\nfrom dtitool.cli import main\n"
            f"with contextlib.redirect_stdout(io.StringIO()):\n    main({argv!r})")
    assert _loaded(code) == []
