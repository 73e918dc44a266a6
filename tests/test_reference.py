import numpy as np
import pandas as pd
import pytest
from _analysis_tables import make_tables

from dtitool.design import load_preset
from dtitool.stats.analysis import fit_models
from dtitool.stats.reference import (
    compare_to_reported,
    format_comparison,
    reported_findings,
)

ROI_NAMES = load_preset("ketamine-rct").roi_names  # the default preset's ROIs

# the default preset's terms (a design's are design.names.terms)
TERMS = ("interaction", "slope_ketamine", "slope_saline", "slope_pooled")


def test_reported_findings_content():
    f = reported_findings()
    assert list(f.columns) == [
        "roi", "outcome", "term", "direction", "p_low", "p_high", "description",
    ]
    assert set(f["roi"]) == set(ROI_NAMES)
    assert set(f["term"]) <= set(TERMS)
    assert set(f["outcome"]) <= {"madrs", "qids", "any"}
    assert (f["p_low"] <= f["p_high"]).all()
    rep = f[f["direction"] != 0].set_index(["roi", "outcome"])
    assert len(rep) == 7
    assert rep.loc[("L_BA10", "madrs"), "direction"] == 1
    assert rep.loc[("L_amygdala", "qids"), "p_high"] == 0.082
    assert rep.loc[("R_BA10", "any"), "term"] == "slope_pooled"
    assert rep.loc[("R_BA10", "any"), "p_low"] == 0.007
    assert rep.loc[("L_hippocampus", "madrs"), "direction"] == -1
    assert rep.loc[("R_hippocampus", "madrs"), "p_low"] == 0.032
    null = f[f["direction"] == 0]
    assert {"R_amygdala", "vACC", "L_hippocampus", "R_hippocampus"} == set(null["roi"])
    assert set(null.loc[null["roi"].str.contains("hippocampus"), "outcome"]) == {"qids"}
    # a fresh copy each call
    f.loc[0, "direction"] = 9
    assert reported_findings().loc[0, "direction"] == 1


def _table(rows):
    return pd.DataFrame(rows, columns=["roi", "outcome", "term", "estimate", "p"])


def test_verdicts():
    t = _table(
        [
            ("L_BA10", "madrs", "interaction", 1.0, 0.01),
            ("L_BA10", "madrs", "slope_ketamine", 1.1, 0.001),
            ("L_BA10", "qids", "interaction", 1.0, 0.2),
            ("L_amygdala", "madrs", "interaction", -1.0, 0.01),
            ("R_BA10", "madrs", "slope_pooled", 0.3, 0.3),
            ("R_BA10", "qids", "slope_pooled", 0.5, 0.004),
            ("vACC", "madrs", "interaction", 0.5, 0.01),
            ("vACC", "qids", "interaction", 0.5, 0.5),
        ]
    )
    c = compare_to_reported(t).set_index(["roi", "outcome", "term"])
    assert c.loc[("L_BA10", "madrs", "interaction"), "verdict"] == "replicated"
    assert c.loc[("L_BA10", "madrs", "interaction"), "slope_treatment"] == 1.1
    assert c.loc[("L_BA10", "qids", "interaction"), "verdict"] == "not significant"
    assert c.loc[("L_amygdala", "madrs", "interaction"), "verdict"] == (
        "significant, opposite sign")
    r = c.loc[("R_BA10", "any", "slope_pooled")]
    assert r["outcome_used"] == "qids"
    assert r["verdict"] == "replicated"
    assert c.loc[("vACC", "madrs", "interaction"), "verdict"] == (
        "significant (expected null)"
    )
    # a non-significant expected null is not a match (absence of evidence)
    assert c.loc[("vACC", "qids", "interaction"), "verdict"] == (
        "not significant (expected null)")
    assert not c.loc[("vACC", "qids", "interaction"), "agrees"]
    assert not c.loc[("L_BA10", "qids", "interaction"), "agrees"]
    assert c.loc[("R_amygdala", "madrs", "interaction"), "verdict"] == "not analysed"
    assert np.isnan(c.loc[("L_amygdala", "qids", "interaction"), "p"])
    # alpha moves the null verdicts, and the replicated ones: one rule, p <= alpha
    c2 = compare_to_reported(t, alpha=0.005).set_index(["roi", "outcome", "term"])
    assert c2.loc[("vACC", "madrs", "interaction"), "verdict"] == (
        "not significant (expected null)")
    assert c2.loc[("L_BA10", "madrs", "interaction"), "verdict"] == "not significant"
    assert c2.loc[("R_BA10", "any", "slope_pooled"), "verdict"] == "replicated"


def test_any_outcome_finding_is_one_rule():
    # R BA10 "at least one outcome": replicated when either outcome's pooled slope
    # is significant with the reported (positive) sign; the label stays "any"
    base = [("R_BA10", "madrs", "slope_pooled"), ("R_BA10", "qids", "slope_pooled")]
    cases = [
        ((0.5, 0.01), (0.5, 0.30), "replicated", "madrs"),
        ((0.5, 0.30), (0.5, 0.02), "replicated", "qids"),
        # a significant opposite sign on one outcome does not hide the other
        ((-0.5, 0.001), (0.5, 0.03), "replicated", "qids"),
        ((0.5, 0.20), (0.5, 0.06), "not significant", "qids"),
        ((-0.5, 0.01), (0.5, 0.40), "significant, opposite sign", "madrs"),
    ]
    for (e1, p1), (e2, p2), verdict, used in cases:
        t = _table([(*base[0], e1, p1), (*base[1], e2, p2)])
        c = compare_to_reported(t)
        r = c[(c["roi"] == "R_BA10") & (c["term"] == "slope_pooled")].iloc[0]
        assert r["outcome"] == "any"
        assert (r["verdict"], r["outcome_used"]) == (verdict, used)


def test_compare_with_analysis_results():
    res = fit_models(*make_tables(seed=0))
    c = compare_to_reported(res)
    assert len(c) == len(reported_findings())
    assert (c["verdict"] != "not analysed").all()
    c2 = compare_to_reported(res.table)
    pd.testing.assert_frame_equal(c, c2)
    # the planted L_BA10 ketamine-arm effect is a positive interaction
    c = c.set_index(["roi", "outcome", "term"])
    row = c.loc[("L_BA10", "madrs", "interaction")]
    assert row["found_direction"] == 1
    assert row["verdict"] == "replicated"


def test_bad_input():
    with pytest.raises(TypeError, match=r"results must be AnalysisResults"):
        compare_to_reported([1, 2])
    with pytest.raises(ValueError, match=r"missing column\(s\) \['estimate', 'p'\]"):
        compare_to_reported(pd.DataFrame(columns=["roi", "outcome", "term", "x"]))
    with pytest.raises(ValueError, match=r"alpha must be"):
        compare_to_reported(_table([]), alpha=0)


def test_a_non_significant_finding_shows_whether_its_ci_excludes_the_report():
    # L_BA10 madrs interaction, reported p 0.03 (direction +): with SE 0.4 at
    # n = 98 the report implies t(93) at p = 0.03 times 0.4, about 0.88
    f = reported_findings()
    row = f[(f["roi"] == "L_BA10") & (f["outcome"] == "madrs")
            & (f["term"] == "interaction")].iloc[0]
    from scipy import stats

    t_rep = stats.t.isf(row["p_high"] / 2, 98 - 5)
    cols = ["roi", "outcome", "term", "estimate", "se", "p", "ci_low", "ci_high", "n"]
    near = pd.DataFrame([("L_BA10", "madrs", "interaction", 0.1, 0.4, 0.8, -0.7, 0.9,
                          98)], columns=cols)
    far = pd.DataFrame([("L_BA10", "madrs", "interaction", -0.2, 0.2, 0.3, -0.6, 0.2,
                         392)], columns=cols)
    a = compare_to_reported(near).set_index(["roi", "outcome", "term"]).loc[
        ("L_BA10", "madrs", "interaction")]
    assert a["verdict"] == "not significant" and not a["agrees"]
    assert a["implied_estimate"] == pytest.approx(t_rep * 0.4, rel=1e-12)
    assert not a["ci_excludes_implied"]  # 0.88 lies in [-0.7, 0.9]
    # four times the reference's n: the SE is rescaled to n = 98 (x 2)
    b = compare_to_reported(far).set_index(["roi", "outcome", "term"]).loc[
        ("L_BA10", "madrs", "interaction")]
    assert b["implied_estimate"] == pytest.approx(t_rep * 0.2 * 2, rel=1e-12)
    assert b["ci_excludes_implied"]
    text = format_comparison(compare_to_reported(far))
    assert "CI excludes the reported effect" in text
    assert "0 of 7 reported findings replicated" in text
