"""Run every script in examples/ as a user would, and check what it reports.

Each script runs in a subprocess (``python examples/NAME.py --out tmp_path``)
from a neutral working folder, so it must work from an installed dtitool with no
path tricks. Checks: exit code 0, one valid PNG and the TSV written into
``--out``, and the key printed number within a band that the script's own Monte
Carlo error (at its fixed seed and default replicates) stays well inside.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
NUM = r"([-+]?\d+(?:\.\d+)?)"  # a printed number, without a trailing full stop


def run_example(name: str, out: Path, *args: str) -> str:
    script = EXAMPLES / f"{name}.py"
    assert script.is_file(), script
    env = {**os.environ, "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, str(script), "--out", str(out), *args],
        cwd=out.parent, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def check_outputs(out: Path, png: str, tsv: str) -> pd.DataFrame:
    files = sorted(p.name for p in out.iterdir())
    assert [f for f in files if f.endswith(".png")] == [png], files
    path = out / png
    assert path.read_bytes()[:8] == PNG_MAGIC
    img = matplotlib.image.imread(path)
    assert img.ndim == 3 and min(img.shape[:2]) > 200
    table = pd.read_csv(out / tsv, sep="\t")
    assert len(table) > 0
    return table


def number(pattern: str, text: str, group: int = 1) -> float:
    m = re.search(pattern, text)
    assert m, f"{pattern!r} not found in:\n{text}"
    return float(m.group(group))


def readme_row(script: str) -> str:
    """The row of examples/README.md that describes ``script``: what it quotes."""
    readme = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    rows = [ln for ln in readme.splitlines() if ln.startswith(f"| `{script}.py`")]
    assert len(rows) == 1, script
    return rows[0]


@pytest.mark.slow  # over 4 s: the default suite stays under 5 minutes
def test_reproduce_trial(tmp_path):
    out = tmp_path / "reproduce"
    text = run_example("reproduce_trial", out)
    table = check_outputs(out, "reproduce_trial.png", "reported_vs_simulated.tsv")
    assert len(table) == 7
    # Calibrated preset, under the reported analysis: every reported median p
    # is in range, R BA10 by the one rule (its p the smaller outcome p per
    # trial), as the README row says; the numbers are the README's
    row = readme_row("reproduce_trial")
    in_range = number(r"median p of (\d) of 7 reported tests falls", text)
    assert in_range == 7 and "every reported range (7 of 7" in row
    one = number(r"(\d) of 7 reported findings replicated", text)
    assert 0 < one < 7 and f"some reported findings ({one:.0f} of 7)" in row
    power = number(r"typical power of a reported test is " + NUM, text)
    assert 0.45 <= power <= 0.65 and f"typically {power:.2f}" in row
    assert set(table["outcome"]) == {"madrs", "qids", "any"}


@pytest.mark.slow  # over 6 s: the default suite stays under 5 minutes
def test_power_replication(tmp_path):
    out = tmp_path / "power"
    text = run_example("power_replication", out)
    table = check_outputs(out, "power_replication.png", "power_curve.tsv")
    assert set(table["term"]) == {"interaction", "slope_pooled"}
    n80 = number(r"80% power on all 7 reported tests: n = (\d+)", text)
    assert 140 <= n80 <= 280
    lo = number(r"at the trial's n = 98: " + NUM + r" to " + NUM, text, 1)
    hi = number(r"at the trial's n = 98: " + NUM + r" to " + NUM, text, 2)
    assert 0.35 <= lo <= hi <= 0.9
    real = r"the same tests have power " + NUM + r" to " + NUM + r" at n = 98"
    r_lo, r_hi = number(real, text, 1), number(real, text, 2)
    # what the README row quotes is what the script prints
    row = readme_row("power_replication")
    assert f"({lo:.2f}-{hi:.2f}, analysed with the default welch" in row
    assert f"~{round(50 * (lo + hi), -1):.0f}% power" in row
    assert f"needs n = {n80:.0f} for 80% on all seven" in row
    assert f"their power at n = 98 is {r_lo:.2f}-{r_hi:.2f}" in row
    # and the project README's face-value n, with its Monte Carlo interval
    ci = r"n = (\d+) \(Monte Carlo interval (\d+) to (\d+)\)"
    n, lo_n, hi_n = (number(ci, text, g) for g in (1, 2, 3))
    readme = " ".join((EXAMPLES.parent / "README.md").read_text(
        encoding="utf-8").split())
    assert (f"a replication needs n = {n:.0f} ({lo_n:.0f}-{hi_n:.0f}; "
            "`examples/power_replication.py`)") in readme
    # Face value: an interaction p of 0.036 at n = 98 implies observed r ~ 0.43.
    r = number(r"L_BA10\s+madrs interaction\s+p = 0.036: observed r " + NUM,
               text)
    assert r == pytest.approx(0.43, abs=0.02)


@pytest.mark.slow  # over 4 s: the default suite stays under 5 minutes
def test_reliability_attenuation(tmp_path):
    out = tmp_path / "reliability"
    text = run_example("reliability_attenuation", out)
    table = check_outputs(out, "reliability_attenuation.png",
                          "reliability_attenuation.tsv")
    assert len(table) == 9
    # Reliability is analytic: var(true dMD) / (var(true dMD) + 2 (cv MD)^2).
    from dtitool import load_preset

    roi = load_preset("ketamine-rct").rois[0]
    c2 = roi.change_sd["ketamine"] ** 2
    rel = r"reliability of dMD falls from " + NUM + " to " + NUM
    for group, cv in ((1, 0.01), (2, 0.074)):
        expected = c2 / (c2 + 2 * (cv * roi.md_mean) ** 2)
        assert number(rel, text, group) == pytest.approx(expected, abs=0.005)
    # Observed r = r with true dMD x sqrt(reliability): 500 x 65 ketamine-arm
    # subjects per CV give a standard error of the correlation ~0.005.
    pairs = re.findall(r"observed r " + NUM + r" \(expected " + NUM + r"\)", text)
    assert len(pairs) == 3
    for obs, exp in pairs:
        assert float(obs) == pytest.approx(float(exp), abs=0.03)
    diff = table["r_observed_dmd"] - table["r_expected"]
    assert diff.abs().max() < 0.03
    power = table["power_slope_ketamine"]
    assert power.iloc[0] > power.iloc[-1] + 0.4
    # the saline arm's observed dMD SD, analytic, printed at both ends
    s2 = roi.change_sd["saline"] ** 2
    sd = r"saline arm's observed dMD SD falls from " + NUM + " to " + NUM
    for group, cv in ((1, 0.074), (2, 0.01)):
        want = (s2 + 2 * (cv * roi.md_mean) ** 2) ** 0.5 / 1e-5
        assert number(sd, text, group) == pytest.approx(want, abs=0.006)
    peak = number(r"Interaction power peaks at " + NUM, text)
    assert peak == pytest.approx(table["power_interaction"].max(), abs=0.006)
    # below the ketamine-arm slope at every CV, as the script and README say
    assert (table["power_interaction"] < table["power_slope_ketamine"]).all()
    row = readme_row("reliability_attenuation")
    at = number(r"Interaction power peaks at " + NUM + r" at CV " + NUM + "%", text,
                2)
    assert f"peaks at {peak:.2f} at CV {at:g}%" in row
    slope = r"ketamine-arm slope's power from " + NUM + " to " + NUM
    assert (f"collapses ({number(slope, text, 1):.2f} to "
            f"{number(slope, text, 2):.2f})") in row
    assert (f"from {number(rel, text, 1):.2f} to {number(rel, text, 2):.2f}"
            in row)


@pytest.mark.slow  # over 3 s: the default suite stays under 5 minutes
def test_multiplicity(tmp_path):
    out = tmp_path / "multiplicity"
    text = run_example("multiplicity", out)
    table = check_outputs(out, "multiplicity.png", "familywise_error.tsv")
    assert len(table) == 6
    pat = (r"14 tests: P\(at least one p <= 0.05\) unadjusted " + NUM + r", "
           r"Holm " + NUM + r", BH " + NUM)
    unadj, holm, bh = (number(pat, text, g) for g in (1, 2, 3))
    # Correlated tests: between one test's 0.05 and independence's 0.51.
    assert 0.2 < unadj < 0.51
    # Holm controls the FWER at 5 % (4000 trials: binomial SE ~0.0035).
    assert holm < 0.06 and bh < 0.06
    # each test alone at its level under the default (welch) inference: 14
    # tests, 4000 trials, a 99.9 % band Bonferroni over the 14
    each = r"each interaction test alone rejects in " + NUM + " to " + NUM
    half = 4.0 * (0.05 * 0.95 / 4000) ** 0.5
    assert 0.05 - half < number(each, text, 1) <= number(each, text, 2) < 0.05 + half
    row = readme_row("multiplicity")
    assert f"about 1 trial of 2 ({unadj:.3f})" in row and 0.4 < unadj < 0.6
    assert f"under 5% ({holm:.3f} and {bh:.3f})" in row


@pytest.mark.slow  # over 4 s: the default suite stays under 5 minutes
def test_imaging_pipeline(tmp_path):
    out = tmp_path / "imaging"
    text = run_example("imaging_pipeline", out)
    table = check_outputs(out, "imaging_pipeline.png", "roi_table_vs_image.tsv")
    assert len(table) == 2 * 2 * 7
    assert (table["n_excluded"] == 0).all()
    err = number(r"max \|relative error\| " + NUM + "%", text)
    assert err < 1.0
    assert f"~{err:.1f}%" in readme_row("imaging_pipeline")
    assert table["rel_error"].abs().max() < 0.01


@pytest.mark.slow  # over 3 s: the default suite stays under 5 minutes
def test_regression_to_mean(tmp_path):
    out = tmp_path / "rtm"
    text = run_example("regression_to_mean", out)
    table = check_outputs(out, "regression_to_mean.png", "regression_to_mean.tsv")
    # The default world's saline arm: observed = true change + RTM. 3000 trials x
    # 33 saline patients: SE of the mean change ~0.02; integer rounding of the
    # scores adds up to ~0.03.
    pat = (r"saline arm changes by " + NUM + r" points = true change " + NUM
           + r" \+ regression to the mean " + NUM)
    obs, true, rtm = (number(pat, text, g) for g in (1, 2, 3))
    assert obs == pytest.approx(true + rtm, abs=0.1)
    assert -0.1 < rtm < 0  # reliable rating, threshold far below the mean
    # Admitted at 36: untreated patients regress by the closed-form amount.
    sim = number(r"change by " + NUM + r" points on average beyond", text)
    expected = number(r"\(expected " + NUM + r"\)", text)
    assert sim == pytest.approx(expected, abs=0.1)
    assert sim < -0.3
    g = table.set_index("estimator")
    between = g.iloc[2:]
    # randomised comparisons are unbiased: SD over 3000 trials / sqrt(3000) ~0.04
    assert (between["bias"].abs() < 0.15).all()
    sd = g["sd_over_trials"]
    assert sd["24 h score, ketamine - saline"] > sd["change, ketamine - saline"]
    assert sd["24 h score, ketamine - saline"] > sd[
        "change adjusted for baseline (ANCOVA)"]


@pytest.mark.slow  # 2.5-4 s: the default suite stays under 5 minutes
def test_ect_mechanisms(tmp_path):
    out = tmp_path / "ect"
    text = run_example("ect_mechanisms", out)
    table = check_outputs(out, "ect_mechanisms.png", "ect_mechanisms.tsv")
    assert set(table["n"]) == {20, 40, 60, 80}
    row = readme_row("ect_mechanisms")
    gain = r"gain is " + NUM + r" \(plasticity\) and " + NUM
    a, b = number(gain, text, 1), number(gain, text, 2)
    # the courses' expected values: Emax 14 x 12/16; transient 7 x its shape
    assert a == pytest.approx(10.5) and a > b > 0
    p_end = number(r"power to tell them apart " + NUM, text)
    fu = r"follow-up vs 2 h after session 1: " + NUM + " and " + NUM
    fa, fb = number(fu, text, 1), number(fu, text, 2)
    assert fa > 0 > fb  # opposite signs
    p_fu = number(r"\(opposite signs\); power " + NUM, text)
    n80 = number(r"reaching 80% power: scans at session1 and followup, n = (\d+)",
                 text)
    assert p_fu > p_end
    assert (f"({a:.1f} and {b:.1f} x 10 mm^3 at n = 40) and tell them apart with "
            f"power {p_end:.2f}") in row
    assert f"opposite signs ({fa:.1f} and {fb:.1f})" in row
    assert f"power {p_fu:.2f}; 80% is reached at n = {n80:.0f}" in row


def test_examples_readme_lists_every_script():
    readme = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    scripts = sorted(p.name for p in EXAMPLES.glob("*.py"))
    assert len(scripts) == 11 and readme.count("\n| `") == 11
    assert readme.startswith("# dtitool examples\n\nEleven runnable scripts")
    for s in scripts:
        assert f"python examples/{s} --out" in readme, s


@pytest.mark.slow  # over 6 s: the default suite stays under 5 minutes
def test_cluster_power_grid(tmp_path):
    pytest.importorskip("distributed")
    out = tmp_path / "grid"
    text = run_example("cluster_power_grid", out, "--quick", "--replicates", "128")
    assert number(r"(\d+) points x 128 trials on a local cluster", text) == 12
    assert sorted(p.name for p in out.iterdir()) == ["power_explorer.html",
                                                     "power_grid.tsv"]
    table = pd.read_csv(out / "power_grid.tsv", sep="\t")
    assert list(table.columns[:3]) == ["n", "effect", "reliability"]
    assert len(table) == 12 * 56
    assert table.groupby(["n", "effect", "reliability"]).ngroups == 12
    assert table["power"].between(0, 1).all()
    html = (out / "power_explorer.html").read_text(encoding="utf-8")
    assert "http://" not in html and "https://" not in html


@pytest.mark.slow  # over 3 s: the default suite stays under 5 minutes
def test_analysis_plans(tmp_path):
    out = tmp_path / "plans"
    text = run_example("analysis_plans", out)
    table = check_outputs(out, "analysis_plans.png", "analysis_plans.tsv")
    assert set(table["outcome"]) == {"madrs", "qids"}
    row = readme_row("analysis_plans")
    unadj = number(r"no adjustment: power " + NUM + r", but size " + NUM, text)
    size = number(r"no adjustment: power " + NUM + r", but size " + NUM, text, 2)
    holm = number(r"with Holm: power " + NUM + r" at size " + NUM, text)
    hsize = number(r"with Holm: power " + NUM + r" at size " + NUM, text, 2)
    mean = number(r"mean dMD over the ROIs: power " + NUM, text)
    assert size > 0.2 and hsize < 0.07 and unadj > holm > mean
    for value in (f"{unadj:.2f}", f"{size:.2f}", f"{holm:.2f}", f"{hsize:.3f}",
                  f"{mean:.2f}"):
        assert value in row, value


@pytest.mark.slow  # about 4 s: the default suite stays under 5 minutes
def test_mrs_infusion(tmp_path):
    out = tmp_path / "mrs"
    text = run_example("mrs_infusion", out)
    table = check_outputs(out, "mrs_infusion.png", "mrs_infusion.tsv")
    assert set(table["measure"]) == {"gaba", "glx"}
    row = readme_row("mrs_infusion")
    gaba = number(r"GABA\+ rise detected with power " + NUM, text)
    glx = number(r"Glx " + NUM + r" \(noncentral t", text)
    a_gaba = number(r"noncentral t " + NUM + " and " + NUM, text)
    a_glx = number(r"noncentral t " + NUM + " and " + NUM, text, 2)
    first = number(r"the first frame \(13 min\): GABA\+ " + NUM, text)
    late = number(r"at 24 h: " + NUM, text)
    ruled = number(r"peak's GABA\+ test " + NUM, text)
    kept = number(r"every spectrum kept " + NUM, text)
    # 4000 trials: the Monte Carlo SE is at most 0.008
    assert abs(gaba - a_gaba) < 0.03 and abs(glx - a_glx) < 0.03
    assert first < gaba and late < 0.08 and ruled > 0.06 > kept
    for value in (f"{gaba:.2f}", f"{glx:.2f}", f"{a_gaba:.2f}", f"{first:.2f}",
                  f"{ruled:.3f}", f"{kept:.3f}"):
        assert value in row, value


@pytest.mark.slow  # about 4 s: the default suite stays under 5 minutes
def test_creatine_ratio(tmp_path):
    out = tmp_path / "cr"
    text = run_example("creatine_ratio", out)
    table = check_outputs(out, "creatine_ratio.png", "creatine_ratio.tsv")
    assert len(table) == 4
    row = readme_row("creatine_ratio")
    fake_iu = number(r"water-scaled test rejects in " + NUM, text)
    fake_ratio = number(r"GABA\+/tCr in " + NUM + r": a fake", text)
    hide_iu = number(r"detects it in " + NUM, text)
    hide_ratio = number(r"GABA\+/tCr in " + NUM + r": the ratio hides", text)
    assert fake_iu < 0.08 and hide_ratio < 0.08
    assert fake_ratio > 0.3 and hide_iu > 0.4
    for value in (fake_ratio, fake_iu, hide_iu, hide_ratio):
        assert f"{value:.2f}" in row, value
