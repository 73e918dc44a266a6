"""synthetic_data/ is exactly what its MANIFEST command produces."""

import shlex
from pathlib import Path

import pytest

from dtitool import __version__
from dtitool.cli import main

DATA = Path(__file__).resolve().parents[1] / "synthetic_data"


def _manifest() -> dict[str, str]:
    entries = {}
    for line in (DATA / "MANIFEST").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition(": ")
            entries[key] = value
    return entries


def test_manifest_matches_package():
    m = _manifest()
    assert m["dtitool_version"] == __version__
    assert m["command"].startswith("dtitool simulate ")


def test_regenerates_byte_for_byte(tmp_path, capsys):
    m = _manifest()
    argv = shlex.split(m["command"])[1:]
    i = argv.index("--out")
    argv[i + 1] = str(tmp_path / "regen")
    assert main(argv) == 0, capsys.readouterr().err
    files = m["files"].split()
    assert files
    for name in files:
        got = (tmp_path / "regen" / name).read_bytes()
        want = (DATA / name).read_bytes()
        if got != want:
            pytest.fail(f"synthetic_data/{name} differs from a fresh run of "
                        f"{m['command']!r}; regenerate it with that command")
