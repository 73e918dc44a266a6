"""A three-arm, three-visit trial end to end through the command line.

The shipped ``examples/designs/three-arm.toml`` (arms high, low and placebo at
1:1:1, placebo the control; visits baseline, day1 and week1, primary week1;
outcomes hamd and bdi; ROIs thalamus and putamen; n = 90) goes through
simulate, analyze, power --inference welch and demo (reproduce's
refusal is in test_any_trial): every output
names those arms, visits, outcomes and ROIs and none of the default preset's,
and ``analyze --model change``'s p-values are a statsmodels formula fit of the
same model, the omnibus test its ``f_test`` (the mixed models of its three
visits, ``analyze``'s default here, are tested in test_mixed_analyze).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from test_any_trial import cell_values, ok

DESIGN = Path(__file__).resolve().parents[1] / "examples" / "designs" / (
    "three-arm.toml")
ARMS = ("high", "low", "placebo")
VISITS = ("baseline", "day1", "week1")
OUTCOMES = ("hamd", "bdi")
ROIS = ("thalamus", "putamen")
TERMS = ("interaction_high", "interaction_low", "slope_high", "slope_low",
         "slope_placebo", "slope_pooled", "omnibus")
# the default preset's names, but "baseline", which this design uses too
OTHER_NAMES = ("ketamine", "saline", "24h", "madrs", "qids", "L_BA10", "R_BA10",
               "L_amygdala", "R_amygdala", "L_hippocampus", "R_hippocampus",
               "vACC", "MADRS", "QIDS", "drug", "pre")


def no_other_names(values, *texts) -> None:
    tokens = set()
    for v in values:
        tokens.update(v.replace("-", "_").split("_"))
        tokens.add(v)
    for text in texts:
        tokens.update(text.replace("-", " ").replace("_", " ").replace(",", " ")
                      .replace("(", " ").replace(")", " ").split())
    found = sorted(set(OTHER_NAMES) & tokens)
    assert not found, f"names of another design in the outputs: {found}"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("three") / "cohort"
    ok(["simulate", "--design", DESIGN, "--seed", "3", "--out", out, "--quiet"])
    return out


def test_simulate_writes_every_arm_and_visit(cohort):
    p = pd.read_csv(cohort / "participants.tsv", sep="\t")
    assert p["group"].value_counts().to_dict() == dict.fromkeys(ARMS, 30)
    assert [c for c in p.columns if c.split("_")[0] in OUTCOMES] == [
        f"{k}_{v}" for k in OUTCOMES for v in VISITS]
    r = pd.read_csv(cohort / "roi_md.tsv", sep="\t")
    assert tuple(pd.unique(r["session"])) == VISITS
    assert tuple(pd.unique(r["roi"])) == ROIS
    assert len(r) == 90 * 3 * 2
    v = pd.read_csv(cohort / "visits.tsv", sep="\t")
    assert v["visit"].tolist() == list(VISITS)
    assert v["hours"].tolist() == [0, 24, 168]
    assert v["primary"].tolist() == [False, False, True]
    no_other_names(cell_values(cohort))


def test_day1_lies_on_the_way_to_week1():
    """Each arm's mean change by day1 is its fraction of the week-1 change."""
    from dtitool.design import read_design
    from dtitool.simulate import simulate_arrays

    design, _ = read_design(DESIGN)
    a = simulate_arrays(design, rng=11, stop=400)
    frac = design.visit_fractions()
    true = a.md_true[..., 0, :] - a.md_true[..., 0, :1]  # thalamus, (R, N, V)
    for code, arm in enumerate(design.arms):
        m = a.arm == code
        want = design.rois[0].change_mean[arm]
        sd = design.rois[0].change_sd[arm]
        band = 4 * sd / np.sqrt(m.sum())  # 4 Monte Carlo SEs of the mean
        assert true[m][:, 2].mean() == pytest.approx(want, abs=band)
        # each subject's own change, scaled: exact, not only on average
        np.testing.assert_allclose(true[m][:, 1], frac[code, 1] * true[m][:, 2],
                                   rtol=1e-9, atol=1e-18)


def test_analyze_equals_a_statsmodels_fit(cohort, tmp_path):
    res = tmp_path / "res"
    out, _ = ok(["analyze", cohort, "--out", res / "results.tsv", "--figures",
                 res / "figures", "--inference", "ols", "--model", "change"])
    t = pd.read_csv(res / "results.tsv", sep="\t")
    assert tuple(pd.unique(t["roi"])) == ROIS
    assert tuple(pd.unique(t["outcome"])) == OUTCOMES
    assert tuple(pd.unique(t["term"])) == TERMS
    no_other_names(cell_values(res), out)
    assert "Treatment('placebo')" in out and "(week1 minus baseline)" in out
    p = pd.read_csv(cohort / "participants.tsv", sep="\t")
    r = pd.read_csv(cohort / "roi_md.tsv", sep="\t")
    wide = r.pivot(index=["participant_id", "roi"], columns="session",
                   values="md").reset_index()
    frame = wide.merge(p, on="participant_id")
    frame["d_md"] = (frame["week1"] - frame["baseline"]) / 1e-5
    g = "C(group, Treatment('placebo'))"
    for (roi, outcome), got in t.groupby(["roi", "outcome"], sort=False):
        f = frame[frame["roi"] == roi].copy()
        f["d_score"] = f[f"{outcome}_week1"] - f[f"{outcome}_baseline"]
        f["baseline_score"] = f[f"{outcome}_baseline"]
        fit = smf.ols(f"d_score ~ {g} * d_md + baseline_score", data=f).fit()
        add = smf.ols(f"d_score ~ {g} + d_md + baseline_score", data=f).fit()
        want = {"slope_placebo": (fit.params["d_md"], fit.pvalues["d_md"]),
                "slope_pooled": (add.params["d_md"], add.pvalues["d_md"])}
        inter = [f"{g}[T.{a}]:d_md" for a in ("high", "low")]
        for a, name in zip(("high", "low"), inter, strict=True):
            want[f"interaction_{a}"] = (fit.params[name], fit.pvalues[name])
            s = fit.t_test(f"d_md + {name} = 0")
            want[f"slope_{a}"] = (float(np.squeeze(s.effect)),
                                  float(np.squeeze(s.pvalue)))
        omni = fit.f_test(", ".join(f"{name} = 0" for name in inter))
        want["omnibus"] = (float(np.squeeze(omni.fvalue)),
                           float(np.squeeze(omni.pvalue)))
        row = got.set_index("term")
        for term, (est, pval) in want.items():
            assert row.loc[term, "estimate"] == pytest.approx(est, rel=1e-8,
                                                              abs=1e-12), term
            assert row.loc[term, "p"] == pytest.approx(pval, rel=1e-8,
                                                       abs=1e-12), term
            assert row.loc[term, "n"] == len(f)
        assert row.loc["omnibus", "df"] == pytest.approx(float(omni.df_denom))
        assert np.isnan(row.loc["omnibus", "se"])


def test_power_welch_names_the_design(tmp_path):
    out = tmp_path / "power"
    text, _ = ok(["power", "--design", DESIGN, "--model", "change", "--inference",
                  "welch", "--replicates", "256", "--seed", "1", "--out", out])
    t = pd.read_csv(out / "power.tsv", sep="\t")
    assert tuple(pd.unique(t["roi"])) == ROIS
    assert tuple(pd.unique(t["outcome"])) == OUTCOMES
    assert tuple(pd.unique(t["term"])) == TERMS
    # the null counterpart's size is shown beside power, for the omnibus too
    omni = t[t["term"] == "omnibus"]
    assert omni["size"].notna().all() and omni["power"].notna().all()
    assert (omni["size"] < 0.15).all()
    no_other_names(cell_values(out), text)


@pytest.mark.slow
def test_demo_runs_on_the_design(tmp_path):
    out = tmp_path / "demo"
    text, _ = ok(["demo", "--design", DESIGN, "--replicates", "200",
                  "--curve-replicates", "100", "--out", out])
    report = (out / "report.html").read_text()
    for name in (*ARMS, *VISITS, *OUTCOMES, *ROIS, "omnibus"):
        assert name in report
    for name in ("ketamine", "saline", "L_BA10", "vACC", "24h"):
        assert name not in report and name not in text
