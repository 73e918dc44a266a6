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
    text = " ".join(README.read_text(encoding="utf-8").split())
    quoted = re.search(r"about \*\*n = (\d+)\*\* patients \(Monte Carlo interval "
                       r"(\d+)-(\d+)\)", text)
    assert quoted, "the README no longer quotes the demo's n for 80% power"
    assert [int(g) for g in quoted.groups()] == [
        int(row["n"]), int(row["n_ci_low"]), int(row["n_ci_high"])]


@pytest.mark.slow
def test_readme_quotes_the_demos_limiting_test():
    """The README's limiting test is the default demo's (same search, seed 7)."""
    from dtitool.design import load_preset
    from dtitool.pipeline import DemoSettings
    from dtitool.stats.power import sample_size
    from dtitool.stats.reference import reported_families

    design = load_preset("ketamine-rct")
    s = DemoSettings()
    ss = sample_size(design, target_power=0.8,
                     tests=reported_families(design)["reported"],
                     replicates=s.curve_replicates, rng=s.seed, progress=False)
    roi, outcome, term = ss.limiting_test.split("/")[:3]
    side, name = roi.split("_")
    words = f"{'left' if side == 'L' else 'right'} {name} x {outcome.upper()} {term}"
    text = " ".join(README.read_text(encoding="utf-8").split())
    assert f"The limiting test is the {words}." in text


def test_readme_quotes_the_demos_power_at_the_trials_n():
    """'at the trial's n = 98 their power is A-B': the demo's reported-versus-
    simulated table (its power run: 2,000 trials, seed 7, default inference)."""
    from dtitool.design import load_preset
    from dtitool.pipeline import DemoSettings
    from dtitool.stats.power import power
    from dtitool.stats.reference import reported_families
    from dtitool.stats.reproduce import reproduce_table

    design = load_preset("ketamine-rct")
    s = DemoSettings()
    res = power(design, replicates=s.replicates, rng=s.seed,
                families=reported_families(design), progress=False)
    assert res.inference == "welch"
    rep = reproduce_table(res)
    rep = rep[rep["direction"] != 0]
    text = " ".join(README.read_text(encoding="utf-8").split())
    assert (f"at the trial's n = 98 their power is {rep['power'].min():.2f}-"
            f"{rep['power'].max():.2f} (the report's") in text
    assert "(analysed with the default welch inference)" in text


def _analyze_scaled(tmp_path, factor: float):
    """analyze on the README's cohort with MD multiplied by ``factor``."""
    import subprocess
    import sys

    import pandas as pd

    folder = tmp_path / f"x{factor:g}"
    assert main(["simulate", "--seed", "7", "--quiet", "--out", str(folder)]) == 0
    r = pd.read_csv(folder / "roi_md.tsv", sep="\t")
    r["md"] *= factor
    r.to_csv(folder / "roi_md.tsv", sep="\t", index=False)
    return subprocess.run([sys.executable, "-m", "dtitool", "analyze", str(folder),
                           "--out", str(folder / "res.tsv")],
                          capture_output=True, text=True)


@pytest.mark.slow  # over 3 s: the default suite stays under 5 minutes
def test_readme_md_units_error_or_warning_as_it_says(tmp_path):
    """Another unit is an error naming the assumed unit (analyze and extract); a
    median off by a factor of 10 in mm^2/s is a warning, and analyze exits 0."""
    import nibabel as nib
    import numpy as np

    text = " ".join(README.read_text(encoding="utf-8").split())
    assert ("MD in another unit is an error that says which unit was assumed"
            in text)
    assert "is only a warning: `analyze` goes on and exits 0" in text
    for factor, unit in ((1e3, "1e-3 mm^2/s"), (1e6, "um^2/s")):
        p = _analyze_scaled(tmp_path, factor)
        assert p.returncode == 2, p.stderr
        assert "in mm^2/s (the default)" in p.stderr and f"look like {unit}" in (
            p.stderr) and "--md-unit" in p.stderr
    p = _analyze_scaled(tmp_path, 10.0)
    assert p.returncode == 0, p.stderr
    assert "warning" in p.stderr and "check the unit" in p.stderr
    # extract: ROI means outside 5e-5..5e-3 mm^2/s are refused
    labels = np.zeros((4, 4, 4), np.int16)
    labels[:2] = 1
    nib.save(nib.Nifti1Image(labels, np.eye(4)), tmp_path / "atlas.nii.gz")
    (tmp_path / "lut.tsv").write_text("index\tname\n1\tA\n")
    md = nib.Nifti1Image(np.full((4, 4, 4), 0.8, np.float32), np.eye(4))
    nib.save(md, tmp_path / "sub-01_ses-a_MD.nii.gz")
    code = main(["extract", "--labels", str(tmp_path / "atlas.nii.gz"), "--lut",
                 str(tmp_path / "lut.tsv"), "--out", str(tmp_path / "roi.tsv"),
                 str(tmp_path / "sub-01_ses-a_MD.nii.gz")])
    assert code == 2 and not (tmp_path / "roi.tsv").exists()
