import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from _analysis_tables import PLANTED, ROI_NAMES, make_tables
from statsmodels.stats.multitest import multipletests

from dtitool._constants import DMD_UNIT
from dtitool.stats.analysis import (
    RESULT_COLUMNS,
    AnalysisResults,
    default_formula,
    fit_changes,
    fit_models,
)
from dtitool.stats.multiplicity import holm_adjust as _holm
from dtitool.tables import compute_changes

# the default preset's terms (a design's are design.names.terms)
TERMS = ("interaction", "slope_ketamine", "slope_saline", "slope_pooled")

GROUP = "C(group, Treatment('saline'))"


@pytest.fixture(scope="module")
def tables():
    return make_tables(seed=0)


@pytest.fixture(scope="module")
def results(tables):
    # the classical analysis, checked against statsmodels OLS below
    return fit_models(*tables, inference="ols")


def _independent_frame(participants, roi_md, roi, outcome):
    """Build the model data for one ROI/outcome without dtitool code."""
    sub = roi_md[roi_md["roi"] == roi]
    wide = sub.pivot_table(index="participant_id", columns="session", values="md")
    wide = wide.dropna()
    df = participants.set_index("participant_id").join(wide, how="inner")
    df["x"] = (df["24h"] - df["baseline"]) * 1e5
    df["base"] = df[f"{outcome}_baseline"].astype(float)
    df["dy"] = df[f"{outcome}_24h"] - df[f"{outcome}_baseline"]
    df["bmd"] = df["baseline"] * 1e5
    return df.dropna(subset=["dy"])


def _direct(df, rhs, cov_type="nonrobust"):
    kw = {"cov_type": cov_type, "use_t": True} if cov_type != "nonrobust" else {}
    full = smf.ols(f"dy ~ {GROUP} * x + {rhs}", df).fit(**kw)
    add = smf.ols(f"dy ~ {GROUP} + x + {rhs}", df).fit(**kw)
    inter = f"{GROUP}[T.ketamine]:x"
    out = {}
    for term, res, contrast in [
        ("interaction", full, f"{inter} = 0"),
        ("slope_ketamine", full, f"x + {inter} = 0"),
        ("slope_saline", full, "x = 0"),
        ("slope_pooled", add, "x = 0"),
    ]:
        ct = res.t_test(contrast)
        ci = np.asarray(ct.conf_int()).ravel()
        out[term] = {
            "estimate": float(np.squeeze(ct.effect)),
            "se": float(np.squeeze(ct.sd)),
            "t": float(np.squeeze(ct.tvalue)),
            "p": float(np.squeeze(ct.pvalue)),
            "ci_low": ci[0],
            "ci_high": ci[1],
            "df": res.df_resid,
            "n": int(res.nobs),
        }
    # The contrasts equal the raw coefficients of the default coding.
    assert out["interaction"]["estimate"] == pytest.approx(full.params[inter])
    assert out["slope_saline"]["estimate"] == pytest.approx(full.params["x"])
    return out


def _compare(results, tables, rhs, rois=ROI_NAMES, cov_type="nonrobust"):
    p, r = tables
    for roi in rois:
        for outcome in ("madrs", "qids"):
            want = _direct(_independent_frame(p, r, roi, outcome), rhs, cov_type)
            for term in TERMS:
                got = results.term(roi, outcome, term)
                for key, val in want[term].items():
                    assert got[key] == pytest.approx(val, rel=1e-10, abs=1e-12), (
                        roi, outcome, term, key,
                    )


def test_table_layout(results):
    t = results.table
    assert tuple(t.columns) == RESULT_COLUMNS
    assert len(t) == 7 * 2 * 4
    assert list(t["roi"].unique()) == list(ROI_NAMES)
    assert list(t["term"].iloc[:4]) == list(TERMS)
    assert results.dmd_unit == DMD_UNIT
    assert results.dmd_scale == 1e-5
    assert set(results.fits) == {(r, k) for r in ROI_NAMES for k in ("madrs", "qids")}
    assert (t["n"] == 98).all()
    assert (t.loc[t["term"] != "slope_pooled", "df"] == 98 - 5).all()
    assert (t.loc[t["term"] == "slope_pooled", "df"] == 98 - 4).all()
    assert isinstance(results, AnalysisResults)


def test_agrees_with_direct_statsmodels_formula_fit(results, tables):
    _compare(results, tables, "base")


def test_hc3_agrees_with_statsmodels(tables):
    res = fit_models(*tables, robust="HC3")
    _compare(res, tables, "base", rois=("L_BA10", "vACC"), cov_type="HC3")
    classical = fit_models(*tables, inference="ols")
    assert not np.allclose(res.table["se"], classical.table["se"])


def test_covariates_agree_with_statsmodels(tables):
    res = fit_models(*tables, covariates=("baseline", "age", "sex", "baseline_md"),
                     inference="ols")
    assert res.formula == (
        f"d_score ~ {GROUP} * d_md + baseline_score + age + C(sex) + baseline_md"
    )
    _compare(res, tables, "base + age + C(sex) + bmd", rois=("R_BA10", "vACC"))
    assert (res.table["df"].iloc[:3] == 98 - 8).all()


def test_no_covariates(tables):
    res = fit_models(*tables, covariates=(), inference="ols")
    p, r = tables
    df = _independent_frame(p, r, "L_BA10", "madrs")
    full = smf.ols(f"dy ~ {GROUP} * x", df).fit()
    got = res.term("L_BA10", "madrs", "interaction")
    assert got["estimate"] == pytest.approx(full.params[f"{GROUP}[T.ketamine]:x"])


def test_formula_override_equals_default(tables, results):
    res = fit_models(*tables, formula=default_formula(("baseline",),
                                                      control="saline"),
                     inference="ols")
    pd.testing.assert_frame_equal(res.table, results.table)
    # other coding of group: same slopes, interaction sign defined as ket - sal
    res2 = fit_models(*tables, formula="d_score ~ C(group) * d_md + baseline_score",
                      inference="ols")
    pd.testing.assert_frame_equal(res2.table, results.table, rtol=1e-9)


def test_simple_slopes_equal_separate_per_arm_fits(tables):
    """Fully interacted model (every covariate slope arm-specific) = per-arm fits.

    Its design is block-diagonal by arm, so each arm's coefficients are the
    arm's own OLS fit; the SEs differ only through the pooled vs per-arm
    residual variance. With a *shared* baseline-score slope (the default model)
    the estimates would differ.
    """
    p, r = tables
    res = fit_models(
        *tables, formula=f"d_score ~ {GROUP} * (d_md + baseline_score)",
        inference="ols",
    )
    for roi in ("L_BA10", "L_hippocampus", "vACC"):
        for outcome in ("madrs", "qids"):
            df = _independent_frame(p, r, roi, outcome)
            full = res.fits[(roi, outcome)]
            s2_full = full.scale
            for arm in ("ketamine", "saline"):
                sep = smf.ols("dy ~ x + base", df[df["group"] == arm]).fit()
                got = res.term(roi, outcome, f"slope_{arm}")
                assert got["estimate"] == pytest.approx(sep.params["x"], rel=1e-10)
                # same (X'X)^-1 element: se^2 / sigma^2 agrees
                assert got["se"] ** 2 / s2_full == pytest.approx(
                    sep.bse["x"] ** 2 / sep.scale, rel=1e-9
                )
    # and the default model of ols (shared covariate slope) is NOT the per-arm
    # fit (welch's is: tests/test_inference.py)
    default = fit_models(*tables, inference="ols")
    df = _independent_frame(p, r, "L_BA10", "madrs")
    sep = smf.ols("dy ~ x + base", df[df["group"] == "saline"]).fit()
    got = default.term("L_BA10", "madrs", "slope_saline")["estimate"]
    assert abs(got - sep.params["x"]) > 1e-6


def test_planted_effects_recovered(results):
    """Planted per-arm slopes lie within 4 SE; unplanted ones are near zero."""
    t = results.table
    for roi in ROI_NAMES:
        for outcome in ("madrs", "qids"):
            s_k, s_s = PLANTED.get((roi, outcome), (0.0, 0.0))
            want = {
                "slope_ketamine": s_k,
                "slope_saline": s_s,
                "interaction": s_k - s_s,
            }
            for term, val in want.items():
                row = results.term(roi, outcome, term)
                assert abs(row["estimate"] - val) < 4 * row["se"], (roi, outcome, term)
    # the strong planted effects are detected after Holm correction
    inter = t[t["term"] == "interaction"].set_index(["roi", "outcome"])
    assert inter.loc[("L_BA10", "madrs"), "p_holm"] < 0.01
    assert inter.loc[("L_hippocampus", "madrs"), "p_holm"] < 0.01
    assert inter.loc[("L_hippocampus", "madrs"), "estimate"] < 0
    pooled = t[t["term"] == "slope_pooled"].set_index(["roi", "outcome"])
    assert pooled.loc[("R_BA10", "madrs"), "p_holm"] < 0.01
    # R_BA10 has the same slope in both arms: no interaction
    assert inter.loc[("R_BA10", "madrs"), "p"] > 0.01


def test_missing_24h_drops_subject_from_that_roi_only(tables, results):
    p, _ = tables
    _, r = make_tables(seed=0, missing_24h=[(0, "vACC"), (70, "vACC"), (5, "L_BA10")])
    res = fit_models(p, r, inference="ols")
    t = res.table.set_index(["roi", "outcome", "term"]).sort_index()
    assert (t.loc["vACC", "n"] == 96).all()
    assert (t.loc["L_BA10", "n"] == 97).all()
    assert (t.loc["R_BA10", "n"] == 98).all()
    assert (t.loc["vACC", "df"].loc[("madrs", "interaction")]) == 96 - 5
    full = results.table.set_index(["roi", "outcome", "term"]).sort_index()
    np.testing.assert_allclose(
        t.loc["R_amygdala", "estimate"], full.loc["R_amygdala", "estimate"],
        rtol=1e-12,
    )
    assert not np.allclose(t.loc["vACC", "estimate"], full.loc["vACC", "estimate"])
    # agrees with an independent fit on the same data
    _compare(res, (p, r), "base", rois=("vACC",))


def test_missing_24h_score_drops_subject_from_that_outcome_only(tables):
    p, r = tables
    p = p.astype({"qids_24h": float})
    p.loc[[3, 80], "qids_24h"] = np.nan
    t = fit_models(p, r).table
    assert (t.loc[t["outcome"] == "qids", "n"] == 96).all()
    assert (t.loc[t["outcome"] == "madrs", "n"] == 98).all()


def test_holm_and_bh_known_answers():
    p = np.array([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(_holm(p), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(
        multipletests(p, method="fdr_bh")[1], [0.02, 0.04, 0.04, 0.02]
    )
    np.testing.assert_allclose(_holm(np.array([0.5, 0.6])), [1.0, 1.0])
    rng = np.random.default_rng(3)
    for m in (1, 2, 14, 56):
        q = rng.uniform(0, 0.2, m)
        q[: m // 3] = q[0]  # ties
        np.testing.assert_allclose(_holm(q), multipletests(q, method="holm")[1])


def test_default_families_are_terms_across_models(results):
    t = results.table
    for term in TERMS:
        sub = t[t["term"] == term]
        assert len(sub) == 14
        np.testing.assert_allclose(
            sub["p_holm"], multipletests(sub["p"], method="holm")[1], rtol=1e-12
        )
        np.testing.assert_allclose(
            sub["p_fdr"], multipletests(sub["p"], method="fdr_bh")[1], rtol=1e-12
        )


def test_user_families(tables, results):
    res = fit_models(*tables, families=("term", "outcome"))
    t = res.table
    sub = t[(t["term"] == "interaction") & (t["outcome"] == "qids")]
    assert len(sub) == 7
    np.testing.assert_allclose(sub["p_holm"], multipletests(sub["p"], method="holm")[1])
    one = fit_models(*tables, families=None, inference="ols").table
    bh = multipletests(one["p"], method="fdr_bh")[1]
    np.testing.assert_allclose(one["p_fdr"], bh)
    pd.testing.assert_series_equal(one["p"], results.table["p"])
    with pytest.raises(ValueError, match=r"families must be .* got 'model'"):
        fit_models(*tables, families=("model",))


def test_deterministic(tables, results):
    again = fit_models(*tables, inference="ols")
    pd.testing.assert_frame_equal(again.table, results.table, check_exact=True)


def test_arbitrary_rois_and_one_outcome():
    p, r = make_tables(n_ketamine=20, n_saline=10, rois=("L_insula", "R_BA10"))
    p = p.drop(columns=["qids_baseline", "qids_24h"])
    res = fit_models(p, r)
    # ROIs in the order the table gives them (no name is known in advance)
    assert list(res.table["roi"].unique()) == ["L_insula", "R_BA10"]
    assert set(res.table["outcome"]) == {"madrs"}
    assert len(res.table) == 8


def test_fit_changes_matches_fit_models(tables, results):
    res = fit_changes(compute_changes(*tables), inference="ols")
    pd.testing.assert_frame_equal(res.table, results.table)


def test_summary_states_unit(results):
    text = results.summary()
    assert DMD_UNIT in text
    assert "L_hippocampus" in text
    assert "missing data: complete case" in text  # who was left out, and why
    assert len(text.splitlines()) == 7 + 56


def test_bad_options(tables):
    with pytest.raises(ValueError, match=r"unknown covariate 'weight'.*age"):
        fit_models(*tables, covariates=("weight",))
    with pytest.raises(ValueError, match=r"robust must be None or 'HC3'"):
        fit_models(*tables, robust="HC1")
    with pytest.raises(ValueError, match=r"must contain the main effects"):
        fit_models(*tables, formula="d_score ~ group + d_md")
    with pytest.raises(ValueError, match=r"linear in d_md"):
        fit_models(*tables, formula=f"d_score ~ {GROUP} * (d_md + I(d_md**2))")
    with pytest.raises(ValueError, match=r"slope depend on age"):
        fit_models(*tables, formula=f"d_score ~ {GROUP} * d_md + d_md:age")
    with pytest.raises(ValueError, match=r"cannot use formula"):
        fit_models(*tables, formula="d_score ~ group * d_md + nonexistent")
    with pytest.raises(ValueError, match=r"formula must be a patsy formula"):
        fit_models(*tables, formula="d_md")
    with pytest.raises(ValueError, match=r"alpha must be"):
        fit_models(*tables, alpha=1.5)
    with pytest.raises(TypeError, match=r"changes must be a DataFrame"):
        fit_changes("x")


def test_too_few_in_an_arm_after_missing_scans():
    miss = [(i, "vACC") for i in range(10, 13)]
    p, r = make_tables(n_ketamine=10, n_saline=4, missing_24h=miss)
    with pytest.raises(ValueError, match=r"too few subjects to fit vACC / madrs"):
        fit_models(p, r)


def test_ninety_eight_subjects_fit_fast(tables):
    # a smoke bound far above the measured ~0.07 s; the benchmark script reports
    res = fit_models(*tables)
    assert res.elapsed < 5.0


def test_missing_covariate_drops_subject_from_models_using_it(tables):
    p, r = tables
    p = p.astype({"age": float})
    p.loc[[1, 50], "age"] = np.nan
    t = fit_models(p, r, covariates=("baseline", "age")).table
    assert (t["n"] == 96).all()
    assert (fit_models(p, r).table["n"] == 98).all()


@pytest.mark.slow
def test_null_rejection_rate_is_nominal():
    """Under no planted effect each test rejects at ~alpha.

    100 datasets x 14 models per term. dMD is independent across ROIs, so the
    models of one outcome are nearly independent; counting only 7 independent
    tests per dataset (conservative), the pooled rate is 0.05 within 4
    binomial SEs of 700 tests.
    """
    rej = {t: [] for t in TERMS}
    for seed in range(100):
        t = fit_models(*make_tables(seed=1000 + seed, planted={})).table
        for term in TERMS:
            rej[term].append((t.loc[t["term"] == term, "p"] < 0.05).mean())
    band = 4 * np.sqrt(0.05 * 0.95 / 700)
    for term, r in rej.items():
        assert abs(np.mean(r) - 0.05) < band, (term, np.mean(r))
