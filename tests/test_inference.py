"""Inference options ols / hc3 / welch: engine = statsmodels, sizes under the null.

The ``null`` preset keeps the reference design's unequal score-change SDs
(ketamine arm more variable than saline); the classical pooled-variance tests
are off their level there, and these tests see it. Sizes are checked against
binomial bands computed from the replicate count (scipy), never guessed.
"""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
from scipy import stats

from dtitool.design import MissingSpec, load_preset
from dtitool.simulate import simulate_arrays, simulate_cohort
from dtitool.stats.analysis import fit_models
from dtitool.stats.inference import INFERENCE, batch_models, check_inference
from dtitool.stats.power import (
    NULL_STREAM,
    child_seed,
    null_counterpart,
    power,
    size_band,
    size_warning,
)

# the default preset's terms (a design's are design.names.terms)
TERMS = ("interaction", "slope_ketamine", "slope_saline", "slope_pooled")

GROUP = "C(group, Treatment('saline'))"
INTER = f"{GROUP}[T.ketamine]:x"


@pytest.fixture(scope="module")
def null_design():
    return load_preset("null")


def _frame(arrays, r, j, k, obs):
    return pd.DataFrame({
        "d_score": arrays.d_score[r, obs, k],
        "group": np.where(arrays.treated[r, obs], "ketamine", "saline"),
        "x": arrays.d_md[r, obs, j] / 1e-5,
        "baseline": arrays.scores[r, obs, k, 0],
    })


def _reference(df, inference):
    """p, estimate, df of the four terms, written from statsmodels pieces."""
    if inference in ("ols", "hc3"):
        kw = {"cov_type": "HC3", "use_t": True} if inference == "hc3" else {}
        full = smf.ols(f"d_score ~ {GROUP} * x + baseline", df).fit(**kw)
        add = smf.ols(f"d_score ~ {GROUP} + x + baseline", df).fit(**kw)
        tests = [full.t_test(f"{INTER} = 0"), full.t_test(f"x + {INTER} = 0"),
                 full.t_test("x = 0"), add.t_test("x = 0")]
        return ([float(t.pvalue) for t in tests], [t.effect.item() for t in tests],
                [full.df_resid] * 3 + [add.df_resid])
    # welch: separate per-arm fits; Welch-Satterthwaite df for the difference
    arm = {g: smf.ols("d_score ~ x + baseline", df[df["group"] == g]).fit()
           for g in ("ketamine", "saline")}
    bk, bs = arm["ketamine"].params["x"], arm["saline"].params["x"]
    vk, vs = arm["ketamine"].bse["x"] ** 2, arm["saline"].bse["x"] ** 2
    dk, ds = arm["ketamine"].df_resid, arm["saline"].df_resid
    dfw = (vk + vs) ** 2 / (vk**2 / dk + vs**2 / ds)
    # pooled: WLS of the additive model with the arms' residual variances,
    # Var = (X'WX)^{-1} plus the Kenward-Roger term for the estimated weights
    s2 = {g: arm[g].scale for g in arm}
    w = df["group"].map({g: 1 / s2[g] for g in s2}).to_numpy()
    X = np.column_stack([np.ones(len(df)), df["group"] == "ketamine", df["x"],
                         df["baseline"]]).astype(float)
    wls = sm.WLS(df["d_score"].to_numpy(), X, weights=w).fit()
    phi = np.linalg.inv(X.T @ (w[:, None] * X))
    c = np.array([0, 0, 1.0, 0])
    var, parts = c @ phi @ c, []
    for g in ("ketamine", "saline"):
        Xg = X[(df["group"] == g).to_numpy()]
        H = Xg.T @ Xg / s2[g]
        a = c @ phi @ H @ phi @ c
        var += 4 * (a - c @ phi @ H @ phi @ H @ phi @ c) / arm[g].df_resid
        parts.append((a, arm[g].df_resid))
    dfp = sum(a for a, _ in parts) ** 2 / sum(a * a / d for a, d in parts)
    est = [bk - bs, bk, bs, wls.params[2]]
    se = [np.sqrt(vk + vs), np.sqrt(vk), np.sqrt(vs), np.sqrt(var)]
    dfs = [dfw, dk, ds, dfp]
    p = [2 * stats.t.sf(abs(e / s), d) for e, s, d in zip(est, se, dfs, strict=True)]
    return p, est, dfs


@pytest.mark.parametrize("inference", INFERENCE)
def test_engine_matches_statsmodels_with_missing_scans(inference):
    design = dataclasses.replace(load_preset("ketamine-rct"),
                                 missing=MissingSpec("mcar", 0.15))
    arrays = simulate_arrays(design, rng=11, stop=4)
    bm = batch_models(arrays, inference)
    assert bm.inference == inference
    rng = np.random.default_rng(0)
    for r in range(4):
        obs = arrays.observed_24h[r]
        assert bm.n[r] == obs.sum() < design.n
        for j, k in zip(rng.integers(0, 7, 3), rng.integers(0, 2, 3), strict=True):
            p, est, df = _reference(_frame(arrays, r, j, k, obs), inference)
            np.testing.assert_allclose(bm.p[r, j, k], p, rtol=0, atol=1e-8)
            np.testing.assert_allclose(bm.estimate[r, j, k], est, rtol=1e-8)
            np.testing.assert_allclose(bm.df[r, j, k], df, rtol=1e-10)


@pytest.mark.parametrize("inference", INFERENCE)
def test_analysis_equals_engine(inference):
    """statsmodels for one dataset, the batched engine for many: the same p."""
    design = dataclasses.replace(load_preset("null"),
                                 missing=MissingSpec("mcar", 0.1))
    cohort = simulate_cohort(design, rng=5)
    res = fit_models(cohort.participants, cohort.roi_md, inference=inference)
    bm = batch_models(cohort.arrays, inference)
    t = res.table
    assert (t["inference"] == inference).all()
    assert res.inference == inference
    for j, roi in enumerate(design.roi_names):
        for k, outcome in enumerate(design.outcome_names):
            rows = t[(t["roi"] == roi) & (t["outcome"] == outcome)].set_index("term")
            np.testing.assert_allclose(rows.loc[list(TERMS), "p"], bm.p[0, j, k],
                                       rtol=0, atol=1e-8)
            np.testing.assert_allclose(rows.loc[list(TERMS), "estimate"],
                                       bm.estimate[0, j, k], rtol=1e-9)
            np.testing.assert_allclose(rows.loc[list(TERMS), "df"], bm.df[0, j, k],
                                       rtol=1e-10)


def test_welch_analysis_keeps_per_arm_fits_and_ci():
    cohort = simulate_cohort(load_preset("null"), rng=2)
    res = fit_models(cohort.participants, cohort.roi_md, inference="welch")
    arms = res.arm_fits[("L_BA10", "madrs")]
    row = res.term("L_BA10", "madrs", "slope_saline")
    assert row["estimate"] == pytest.approx(arms["saline"].params[1])
    assert row["df"] == arms["saline"].df_resid
    lo, hi = np.asarray(arms["saline"].conf_int())[1]
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((lo, hi), rel=1e-10)
    inter = res.term("L_BA10", "madrs", "interaction")
    assert inter["df"] != int(inter["df"])  # Welch-Satterthwaite df
    q = stats.t.ppf(0.975, inter["df"])
    assert inter["ci_high"] - inter["estimate"] == pytest.approx(q * inter["se"])
    assert "Welch" in res.summary()


def test_robust_flag_is_hc3():
    cohort = simulate_cohort(load_preset("null"), rng=3)
    a = fit_models(cohort.participants, cohort.roi_md, robust="HC3")
    b = fit_models(cohort.participants, cohort.roi_md, inference="hc3")
    pd.testing.assert_frame_equal(a.table, b.table)
    assert a.robust == "HC3" and a.inference == "hc3"
    with pytest.raises(ValueError, match=r"robust='HC3' asks for inference 'hc3'"):
        fit_models(cohort.participants, cohort.roi_md, robust="HC3",
                   inference="welch")
    with pytest.raises(ValueError, match=r"inference must be one of ols, hc3, welch"):
        fit_models(cohort.participants, cohort.roi_md, inference="gls")
    with pytest.raises(ValueError, match=r"inference must be one of"):
        check_inference("HC3")


def _nominal_band(R, tests, level=0.999):
    """Two-sided binomial band of a rejection rate, Bonferroni over ``tests``."""
    q = (1 - level) / tests / 2
    return stats.binom.ppf(q, R, 0.05) / R, stats.binom.isf(q, R, 0.05) / R


@pytest.mark.parametrize("inference", INFERENCE)
def test_type_one_error_under_unequal_arm_variances(null_design, inference):
    """The null preset as it is: every term, every option, bands from R."""
    R = 4000
    res = power(null_design, replicates=R, rng=21, inference=inference, size=False,
                design_analysis=False)
    rate = res.table.set_index(["roi", "outcome", "term"])["power"]
    lo, hi = _nominal_band(R, len(rate))
    by_term = rate.groupby(level="term")
    if inference == "ols":
        # The reported analysis is off its level: the pooled residual variance
        # is too small for the (more variable) ketamine arm, too large for saline.
        assert (by_term.get_group("slope_ketamine") > 0.05).all()
        assert by_term.get_group("slope_ketamine").mean() > hi
        assert by_term.get_group("slope_saline").mean() < lo
        assert by_term.get_group("interaction").mean() < lo
    else:
        assert rate.between(lo, hi).all(), rate[~rate.between(lo, hi)]
        # the mean of 14 tests of a term: at least as precise as one test
        se = np.sqrt(0.05 * 0.95 / R)
        assert (by_term.mean() - 0.05).abs().max() < 4 * se, by_term.mean()


def test_size_is_the_null_counterparts_rejection_rate():
    """size = power of the null counterpart on the run's child stream, exactly."""
    design = load_preset("ketamine-rct")
    ss = np.random.SeedSequence(8)
    res = power(design, replicates=256, rng=ss, inference="welch",
                design_analysis=False)
    null = null_counterpart(design)
    assert all(np.all(np.asarray(m) == 0)
               for m in null.correlations.roi_outcome.values())
    ref = power(null, replicates=256, rng=child_seed(ss, NULL_STREAM),
                inference="welch", size=False, design_analysis=False)
    np.testing.assert_array_equal(res.table["size"], ref.table["power"])
    # the main run is untouched by the null counterpart
    plain = power(design, replicates=256, rng=ss, inference="welch", size=False,
                  design_analysis=False)
    np.testing.assert_array_equal(res.table["power"], plain.table["power"])


def test_size_band_is_the_binomial_quantiles():
    R, m = 20000, 56
    lo, hi = size_band(R, 0.05, m)
    q = 0.01 / m / 2
    assert stats.binom.cdf(lo - 1, R, 0.05) < q <= stats.binom.cdf(lo, R, 0.05)
    assert stats.binom.sf(hi, R, 0.05) <= q < stats.binom.sf(hi - 1, R, 0.05)
    _, hi1 = size_band(R, 0.05, 12, sided="upper")
    assert stats.binom.sf(hi1, R, 0.05) <= 0.01 / 12 < stats.binom.sf(hi1 - 1, R,
                                                                      0.05)
    with pytest.raises(ValueError, match="sided must be"):
        size_band(R, 0.05, m, sided="lower")


def test_size_flags_and_warning_name_the_tests_and_the_fix(null_design):
    res = power(null_design, replicates=3000, rng=4, inference="ols",
                design_analysis=False)
    t = res.table
    assert t.loc[t["term"] == "slope_saline", "size_ok"].eq(False).all()
    assert t.loc[t["term"] == "slope_ketamine", "size_ok"].eq(False).any()
    line = size_warning(res)
    assert "\n" not in line
    assert "slope_saline (all 14 models" in line
    assert "under --inference ols" in line
    assert "--inference welch" in line
    alt = res.alternative_size
    assert set(alt["inference"]) == {"welch"}
    assert alt.loc[alt["term"] == "slope_saline", "size_ok"].all()
    welch = power(null_design, replicates=3000, rng=4, inference="welch",
                  design_analysis=False)
    assert welch.alternative_size is None
    assert welch.table["size_ok"].all()
    assert size_warning(welch) is None


@pytest.mark.slow  # 2-4 s: the default suite stays under 5 minutes
def test_power_same_for_any_chunk_and_jobs_with_size_and_maxt():
    design = load_preset("ketamine-rct")
    fam = {"reported": [("L_BA10", "madrs", "interaction", "positive"),
                        ("R_BA10", "madrs", "slope_pooled")]}
    kw = {"replicates": 300, "rng": 5, "inference": "hc3", "families": fam}
    a = power(design, chunk_size=64, **kw)
    b = power(design, chunk_size=1000, **kw)
    c = power(design, chunk_size=128, n_jobs=2, **kw)
    for other in (b, c):
        pd.testing.assert_frame_equal(a.table, other.table, check_exact=True)
        pd.testing.assert_frame_equal(a.familywise, other.familywise,
                                      check_exact=True)
        assert a.critical_p == other.critical_p


def test_inference_argument_checked(null_design):
    with pytest.raises(ValueError, match=r"inference must be one of ols, hc3, welch"):
        power(null_design, replicates=10, inference="robust")
