"""One answer per question: the demo's outputs agree with each other for any seed.

For two seeds the demo report is built from scratch (as a user would, in a
subprocess) and checked: R BA10's finding has the same label and the same rule
everywhere; the n for 80 % power in ``sample_size.tsv`` is the n the report
quotes; every TSV has a complete JSON sidecar; nothing reaches stderr.
"""

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module", params=[7, 11])
def demo(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(f"demo{request.param}") / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "dtitool", "demo", "--out", str(out), "--seed",
         str(request.param), "--replicates", "200", "--curve-replicates", "100",
         "--dwi-subjects", "0", "--quiet"],
        capture_output=True, text=True, cwd=ROOT, check=False)
    return out, proc


pytestmark = pytest.mark.slow


def test_exit_0_and_nothing_on_stderr(demo):
    _, proc = demo
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no warning of ours or of a library leaks


def test_r_ba10_has_one_label_and_one_rule(demo):
    out, _ = demo
    t = out / "tables"
    for name in ("comparison.tsv", "reproduce.tsv"):
        df = pd.read_csv(t / name, sep="\t")
        r = df[(df["roi"] == "R_BA10") & (df["term"] == "slope_pooled")]
        assert r["outcome"].tolist() == ["any"], name
    fw = pd.read_csv(t / "familywise.tsv", sep="\t")
    assert "finding R_BA10 any slope_pooled" in set(fw["family"])
    rep = fw[(fw["family"] == "reported") & (fw["method"] == "none")].iloc[0]
    assert (rep["tests"], rep["hypotheses"]) == (7, 8)
    # the power of the finding in reproduce.tsv is its one-finding family's
    repro = pd.read_csv(t / "reproduce.tsv", sep="\t").set_index("roi")
    fam = fw[(fw["family"] == "finding R_BA10 any slope_pooled")
             & (fw["method"] == "none")].iloc[0]
    assert repro.loc["R_BA10", "power"] == pytest.approx(fam["power_any"])
    html = (out / "report.html").read_text()
    assert "on the MADRS or the QIDS-SR16" in html  # the rule, stated
    assert re.search(r"<td[^>]*>R_BA10</td><td[^>]*>any</td>", html)
    assert not re.search(r"<td[^>]*>R_BA10</td><td[^>]*>(madrs|qids)</td>"
                         r"<td[^>]*>slope_pooled", html)


def test_one_n_for_the_target(demo):
    out, _ = demo
    ss = pd.read_csv(out / "tables" / "sample_size.tsv", sep="\t")
    assert len(ss) == 1 and ss["target_power"].iloc[0] == 0.8
    html = (out / "report.html").read_text()
    quoted = re.findall(r"n = (\d+) in total", html)
    if pd.isna(ss["n"].iloc[0]):
        assert quoted == [] and "is not reached by n" in html
    else:
        n = int(ss["n"].iloc[0])
        assert quoted == [str(n)]
        assert f"n = {n} for 80% power marked" in html  # the curve's mark
    trace = pd.read_csv(out / "tables" / "sample_size_trace.tsv", sep="\t")
    assert trace["n"].is_monotonic_increasing and trace["n"].is_unique


def test_every_tsv_has_a_complete_sidecar(demo):
    out, _ = demo
    tsvs = sorted(out.rglob("*.tsv"))
    assert len(tsvs) > 10
    for tsv in tsvs:
        side = tsv.with_suffix(".json")
        assert side.is_file(), tsv
        meta = json.loads(side.read_text())
        cols = list(pd.read_csv(tsv, sep="\t", nrows=0).columns)
        assert list(meta) == cols, tsv
        for col, entry in meta.items():
            assert entry["Description"], (tsv, col)
            assert set(entry) <= {"Description", "Units", "Levels"}


def test_no_number_carries_more_digits_than_it_has(demo):
    out, _ = demo
    for name in ("power.tsv", "familywise.tsv", "reproduce.tsv",
                 "power_curve.tsv"):
        text = (out / "tables" / name).read_text()
        assert "e-18" not in text and "e-19" not in text, name
        for cell in re.findall(r"(?<=\t)-?\d\.\d+(?=\t|\n)", text):
            assert len(cell.lstrip("-")) <= 12, (name, cell)
    pw = pd.read_csv(out / "tables" / "power.tsv", sep="\t", dtype=str)
    # Monte Carlo medians and interval bounds: 4 significant digits
    for col in ("median_p", "power_ci_low", "mean_estimate"):
        digits = pw[col].dropna().str.replace(r"[-.]|e.*$", "", regex=True)
        assert digits.str.lstrip("0").str.len().max() <= 4, col
