"""The README's commands refer to files dtitool really writes; its numbers are
dtitool's."""

import glob
import re
import shlex
from pathlib import Path

import pytest

from dtitool.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def _commands(text: str) -> list[list[str]]:
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    out = []
    for block in blocks:
        for cmd in block.replace("\\\n", " ").splitlines():
            cmd = cmd.split("#")[0].strip()
            if cmd.startswith("dtitool "):
                out.append(shlex.split(cmd))
    return out


def test_extract_glob_matches_dtitools_own_maps(tmp_path, capsys):
    cmds = _commands(README.read_text())
    sim = next(c for c in cmds if c[:2] == ["dtitool", "simulate"] and "--images" in c)
    ext = next(c for c in cmds if c[:2] == ["dtitool", "extract"]
               and any("derivatives/dtitool" in a for a in c))
    # the tutorial's image cohort, small: the same folder name the glob uses
    out = sim[sim.index("--out") + 1]
    assert main(["simulate", "--seed", "1", "--n", "6", "--images", "--quiet",
                 "--out", str(tmp_path / out)]) == 0
    pattern = next(a for a in ext if "*" in a)
    maps = sorted(glob.glob(str(tmp_path / pattern)))
    assert len(maps) == 6 * 2  # every scan's MD map, nothing else
    labels = ext[ext.index("--labels") + 1]
    assert (tmp_path / labels).is_file()
    argv = ["extract", "--labels", str(tmp_path / labels), "--out",
            str(tmp_path / "roi.tsv"), *maps]
    assert main(argv) == 0, capsys.readouterr().err


@pytest.mark.slow
def test_readme_quotes_the_demos_n_for_80_percent_power():
    """The README's n for 80 % power is the default demo's (same search, seed 7)."""
    from dtitool.design import load_preset
    from dtitool.pipeline import DemoSettings
    from dtitool.stats.power import sample_size
    from dtitool.stats.reference import reported_families

    design = load_preset("ketamine-rct")
    s = DemoSettings()
    ss = sample_size(design, target_power=0.8,
                     tests=reported_families(design)["reported"],
                     replicates=s.curve_replicates, rng=s.seed, progress=False)
    row = ss.table.iloc[0]
    text = README.read_text(encoding="utf-8")
    quoted = re.search(r"about \*\*n = (\d+)\*\* patients \(Monte Carlo interval "
                       r"(\d+)-(\d+)\)", text)
    assert quoted, "the README no longer quotes the demo's n for 80% power"
    assert [int(g) for g in quoted.groups()] == [
        int(row["n"]), int(row["n_ci_low"]), int(row["n_ci_high"])]
