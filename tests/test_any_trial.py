"""A trial with names of its own, end to end through the command line.

The shipped ``examples/designs/drug-placebo.toml`` (arms drug and placebo,
visits pre and week1, outcomes hamd and bdi, ROIs thalamus and putamen)
goes through simulate, analyze, power, reproduce and demo: every output names
those arms, visits, outcomes and ROIs and none of the default preset's, and
``analyze``'s numbers are a statsmodels formula fit of the same model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from _adversarial_world import quiet_main
from _designs import ARMS, DEFAULT_NAMES, OUTCOMES, ROIS, VISITS

DESIGN = Path(__file__).resolve().parents[1] / "examples" / "designs" / (
    "drug-placebo.toml")
TERMS = ("interaction", "slope_drug", "slope_placebo", "slope_pooled")


def ok(argv) -> tuple[str, str]:
    code, out, err = quiet_main(argv)
    assert code == 0, err
    assert "Traceback" not in err
    return out, err


def cell_values(folder: Path) -> set[str]:
    """Every column name and text cell of every TSV, and every JSON key."""
    seen: set[str] = set()
    for f in folder.rglob("*.tsv"):
        t = pd.read_csv(f, sep="\t", dtype=str, keep_default_na=False)
        seen.update(map(str, t.columns))
        for c in t.columns:
            seen.update(t[c].tolist())
    for f in folder.rglob("*.json"):
        def keys(o):
            if isinstance(o, dict):
                for k, v in o.items():
                    seen.add(str(k))
                    keys(v)
            elif isinstance(o, list):
                for v in o:
                    keys(v)
        keys(json.loads(f.read_text()))
    return seen


def no_default_names(values: set[str]) -> None:
    tokens = set()
    for v in values:
        tokens.update(v.replace("-", "_").split("_"))
        tokens.add(v)
    found = sorted(set(DEFAULT_NAMES) & tokens)
    assert not found, f"default names in the outputs: {found}"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trial") / "cohort"
    ok(["simulate", "--design", DESIGN, "--seed", "3", "--out", out, "--quiet"])
    return out


def test_simulate_names_everything_by_the_design(cohort):
    p = pd.read_csv(cohort / "participants.tsv", sep="\t")
    assert set(p["group"]) == set(ARMS)
    assert [c for c in p.columns if c.split("_")[0] in OUTCOMES] == [
        f"{k}_{v}" for k in OUTCOMES for v in VISITS]
    r = pd.read_csv(cohort / "roi_md.tsv", sep="\t")
    assert tuple(pd.unique(r["session"])) == VISITS
    assert tuple(pd.unique(r["roi"])) == ROIS
    v = pd.read_csv(cohort / "visits.tsv", sep="\t")
    assert v["visit"].tolist() == list(VISITS) and v["hours"].tolist() == [0, 168]
    assert v["primary"].tolist() == [False, True]
    no_default_names(cell_values(cohort))


def test_analyze_names_everything_and_equals_a_statsmodels_fit(cohort, tmp_path):
    res = tmp_path / "res"
    out, _ = ok(["analyze", cohort, "--out", res / "results.tsv", "--figures",
                 res / "figures", "--inference", "ols"])
    t = pd.read_csv(res / "results.tsv", sep="\t")
    assert tuple(pd.unique(t["roi"])) == ROIS
    assert tuple(pd.unique(t["outcome"])) == OUTCOMES
    assert tuple(pd.unique(t["term"])) == TERMS
    assert len(t) == len(ROIS) * len(OUTCOMES) * len(TERMS)
    no_default_names(cell_values(res))
    assert "Treatment('placebo')" in out and "(week1 minus pre)" in out
    # the same model, fitted by statsmodels from the tables themselves
    p = pd.read_csv(cohort / "participants.tsv", sep="\t")
    r = pd.read_csv(cohort / "roi_md.tsv", sep="\t")
    wide = r.pivot(index=["participant_id", "roi"], columns="session",
                   values="md").reset_index()
    frame = wide.merge(p, on="participant_id")
    frame["d_md"] = (frame["week1"] - frame["pre"]) / 1e-5
    for (roi, outcome), got in t.groupby(["roi", "outcome"], sort=False):
        f = frame[frame["roi"] == roi].copy()
        f["d_score"] = f[f"{outcome}_week1"] - f[f"{outcome}_pre"]
        f["baseline_score"] = f[f"{outcome}_pre"]
        fit = smf.ols("d_score ~ C(group, Treatment('placebo')) * d_md "
                      "+ baseline_score", data=f).fit()
        inter = "C(group, Treatment('placebo'))[T.drug]:d_md"
        drug = fit.t_test(f"d_md + {inter} = 0")
        add = smf.ols("d_score ~ C(group, Treatment('placebo')) + d_md "
                      "+ baseline_score", data=f).fit()
        want = {
            "interaction": (fit.params[inter], fit.pvalues[inter]),
            "slope_drug": (float(np.squeeze(drug.effect)),
                           float(np.squeeze(drug.pvalue))),
            "slope_placebo": (fit.params["d_md"], fit.pvalues["d_md"]),
            "slope_pooled": (add.params["d_md"], add.pvalues["d_md"]),
        }
        g = got.set_index("term")
        for term, (est, pval) in want.items():
            assert g.loc[term, "estimate"] == pytest.approx(est, rel=1e-8, abs=1e-12)
            assert g.loc[term, "p"] == pytest.approx(pval, rel=1e-8, abs=1e-12)
            assert g.loc[term, "n"] == len(f)


def test_power_names_the_design(tmp_path):
    out = tmp_path / "power"
    ok(["power", "--design", DESIGN, "--inference", "welch", "--replicates", "200",
        "--seed", "1", "--out", out, "--quiet"])
    t = pd.read_csv(out / "power.tsv", sep="\t")
    assert tuple(pd.unique(t["roi"])) == ROIS
    assert tuple(pd.unique(t["outcome"])) == OUTCOMES
    assert tuple(pd.unique(t["term"])) == TERMS
    no_default_names(cell_values(out))


@pytest.mark.parametrize("design", [DESIGN, DESIGN.with_name("three-arm.toml")],
                         ids=["drug-placebo", "three-arm"])
def test_reproduce_says_the_findings_belong_to_another_design(design, tmp_path):
    code, _, err = quiet_main(["reproduce", "--design", design, "--replicates",
                               "100", "--out", tmp_path / "rep"])
    assert code == 2
    assert err.count("\n") == 1 and "belong to another design" in err
    assert not (tmp_path / "rep").exists()


@pytest.mark.slow
def test_demo_runs_on_the_design(tmp_path):
    out = tmp_path / "demo"
    text, _ = ok(["demo", "--design", DESIGN, "--replicates", "200",
                  "--curve-replicates", "100", "--out", out])
    report = (out / "report.html").read_text()
    for name in (*ARMS, *OUTCOMES, *ROIS):
        assert name in report
    for name in ("ketamine", "saline", "L_BA10", "vACC"):
        assert name not in report and name not in text
