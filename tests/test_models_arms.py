"""The statsmodels analysis path (fit_changes / fit_models) for any number of arms.

A three-arm changes table (arms high, low and placebo, placebo the control,
unequal arm sizes and score-change variances) is analysed under ``ols``,
``hc3`` and ``welch`` and every term's p checked against an independent
statsmodels computation: one formula fit with ``t_test`` / ``f_test`` for
``ols`` and ``hc3``; per-arm formula fits, Welch-Satterthwaite t tests, a
statsmodels WLS for the pooled slope and Welch's (1951) test of the arm slopes
for ``welch``. A two-arm table gives exactly the numbers of the two-arm-only
code (stored below). Max-T runs for three arms, its permuted
omnibus tests are fresh statsmodels fits of Freedman-Lane data, and multiple
imputation pools the omnibus test by D1.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import patsy
import pytest
import statsmodels.formula.api as smf
from scipy import stats

from dtitool.design.layout import TrialNames
from dtitool.stats import models
from dtitool.stats.analysis import MAXT_COLUMN, fit_changes
from dtitool.stats.omnibus import f_sf, welch_omnibus
from dtitool.stats.permutation import (
    PermutationModel,
    permutation_p,
    within_arm_permutations,
)
from dtitool.tables import compute_changes

ARMS = ("high", "low", "placebo")
NAMES = TrialNames(arms=ARMS, control="placebo", visits=("pre", "week1"))
ROIS = ("thalamus", "putamen")
OUTCOMES = ("hamd", "bdi")
TERMS = ("interaction_high", "interaction_low", "slope_high", "slope_low",
         "slope_placebo", "slope_pooled", "omnibus")
GROUP = "C(group, Treatment('placebo'))"
FORMULA = f"d_score ~ {GROUP} * d_md + baseline_score"
INFERENCE = ("ols", "hc3", "welch")


def make_tables(arms=ARMS, n=(14, 12, 16), sd=(6.0, 3.0, 1.5),
                slopes=(1.2, 0.4, 0.0), seed=0, drop_scans=(), rois=ROIS):
    """Participants and roi_md tables with per-arm dMD slopes and noise SDs.

    The hamd change depends on the first ROI's dMD with the arm's slope (score
    points per 1e-5 mm^2/s, improvement negative), bdi on nothing; noise SD
    ``sd`` per arm. ``drop_scans`` lists (participant_id, roi) whose week1
    scan is lost.
    """
    rng = np.random.default_rng(seed)
    group = np.repeat(arms, n)
    ids = [f"sub-{a}{i:02d}" for a, na in zip(arms, n, strict=True)
           for i in range(na)]
    N = len(ids)
    noise = np.repeat(sd, n)
    slope = np.repeat(slopes, n)
    p = pd.DataFrame({"participant_id": ids, "group": group,
                      "hamd_pre": rng.integers(20, 40, N),
                      "bdi_pre": rng.integers(20, 45, N)})
    md0 = {r: rng.normal(0.8e-3, 0.03e-3, N) for r in rois}
    dmd = {r: rng.normal(-1e-5, 2e-5, N) for r in rois}
    hamd = (-5.0 + 0.2 * (p["hamd_pre"] - 30) - slope * dmd[rois[0]] / 1e-5
            + noise * rng.normal(size=N))
    p["hamd_week1"] = np.round(p["hamd_pre"] + hamd).astype(int)
    p["bdi_week1"] = np.round(p["bdi_pre"] - 6.0 + noise * rng.normal(size=N)
                              ).astype(int)
    rows = []
    for r in rois:
        for i, pid in enumerate(ids):
            rows.append((pid, "pre", r, md0[r][i]))
            if (pid, r) not in drop_scans:
                rows.append((pid, "week1", r, md0[r][i] + dmd[r][i]))
    roi_md = pd.DataFrame(rows, columns=["participant_id", "session", "roi", "md"])
    return p, roi_md


def changes_of(p, r, arms=ARMS):
    names = TrialNames(arms=arms, control="placebo", visits=("pre", "week1"))
    return compute_changes(p, r, names=names)


@pytest.fixture(scope="module")
def changes():
    p, r = make_tables(drop_scans={("sub-low03", "thalamus")})
    return changes_of(p, r)


@pytest.fixture(scope="module")
def results(changes):
    return {inf: fit_changes(changes, inference=inf) for inf in INFERENCE}


def _frame(changes, roi, outcome):
    f = changes[(changes["roi"] == roi)].copy()
    f["d_score"] = f[f"d_{outcome}"]
    f["baseline_score"] = f[f"{outcome}_pre"]
    f["d_md"] = f["d_md"] / 1e-5
    return f.dropna(subset=["d_score", "d_md", "baseline_score"])


# --------------------------------------------- independent statsmodels numbers


def _statsmodels_ols(f, inference):
    """Every term's (estimate, df, p) from one statsmodels formula fit."""
    kw = {"cov_type": "HC3", "use_t": True} if inference == "hc3" else {}
    fit = smf.ols(FORMULA, data=f).fit(**kw)
    add = smf.ols(f"d_score ~ {GROUP} + d_md + baseline_score", data=f).fit(**kw)
    out = {"slope_placebo": (fit.params["d_md"], fit.df_resid, fit.pvalues["d_md"]),
           "slope_pooled": (add.params["d_md"], add.df_resid, add.pvalues["d_md"])}
    inter = [f"{GROUP}[T.{a}]:d_md" for a in ARMS[:-1]]
    for a, name in zip(ARMS[:-1], inter, strict=True):
        out[f"interaction_{a}"] = (fit.params[name], fit.df_resid, fit.pvalues[name])
        s = fit.t_test(f"d_md + {name} = 0")
        out[f"slope_{a}"] = (float(np.squeeze(s.effect)), fit.df_resid,
                             float(np.squeeze(s.pvalue)))
    ft = fit.f_test(", ".join(f"{name} = 0" for name in inter))
    out["omnibus"] = (float(np.squeeze(ft.fvalue)), float(ft.df_denom),
                      float(np.squeeze(ft.pvalue)))
    return out


def _statsmodels_welch(f):
    """Every term's (estimate, df, p) from per-arm fits (Welch inference)."""
    arm = {a: smf.ols("d_score ~ d_md + baseline_score", data=f[f["group"] == a]
                      ).fit() for a in ARMS}
    b = {a: arm[a].params["d_md"] for a in ARMS}
    v = {a: arm[a].bse["d_md"] ** 2 for a in ARMS}
    d = {a: arm[a].df_resid for a in ARMS}
    out = {}
    for a in ARMS:
        out[f"slope_{a}"] = (b[a], d[a], arm[a].pvalues["d_md"])
    for a in ARMS[:-1]:
        c = "placebo"
        df = (v[a] + v[c]) ** 2 / (v[a] ** 2 / d[a] + v[c] ** 2 / d[c])
        t = (b[a] - b[c]) / np.sqrt(v[a] + v[c])
        out[f"interaction_{a}"] = (b[a] - b[c], df, 2 * stats.t.sf(abs(t), df))
    F, df1, df2 = welch_omnibus([b[a] for a in ARMS], [v[a] for a in ARMS],
                                [d[a] for a in ARMS])
    out["omnibus"] = (float(F), float(df2), float(stats.f.sf(F, df1, df2)))
    # pooled slope: statsmodels WLS with weights 1 / s_a^2 (fixed scale), its
    # variance adjusted for the estimated weights (Kenward-Roger), Satterthwaite df
    s2 = {a: arm[a].scale for a in ARMS}
    add = f"d_score ~ {GROUP} + d_md + baseline_score"
    w = smf.wls(add, data=f, weights=1.0 / f["group"].map(s2)).fit(
        cov_type="fixed scale")
    names = list(w.params.index)
    lam = np.array([n == "d_md" for n in names], float)
    Phi = np.asarray(w.normalized_cov_params)
    m = Phi @ lam
    var, parts = float(lam @ m), []
    for a in ARMS:
        Xa = w.model.exog[(f["group"] == a).to_numpy()]
        H = Xa.T @ Xa / s2[a]
        va = m @ H @ m
        var += 4 * (va - m @ H @ Phi @ H @ m) / d[a]
        parts.append((va, d[a]))
    df = sum(x for x, _ in parts) ** 2 / sum(x ** 2 / n for x, n in parts)
    t = w.params["d_md"] / np.sqrt(var)
    out["slope_pooled"] = (w.params["d_md"], df, 2 * stats.t.sf(abs(t), df))
    return out


def test_three_arm_table_has_every_term_in_order(results):
    for inf, res in results.items():
        t = res.table
        assert tuple(pd.unique(t["roi"])) == ROIS
        assert tuple(pd.unique(t["outcome"])) == OUTCOMES
        assert list(t["term"]) == list(TERMS) * (len(ROIS) * len(OUTCOMES))
        assert (t["inference"] == inf).all()
        omni = t[t["term"] == "omnibus"]
        for col in ("se", "t", "ci_low", "ci_high"):
            assert omni[col].isna().all(), col
        assert omni[["estimate", "df", "p"]].notna().all().all()
        assert res.names == NAMES
        assert set(res.interactions) == {(r, k) for r in ROIS for k in OUTCOMES}


@pytest.mark.parametrize("inference", INFERENCE)
def test_every_term_equals_an_independent_statsmodels_computation(
        changes, results, inference):
    t = results[inference].table
    for roi in ROIS:
        for outcome in OUTCOMES:
            f = _frame(changes, roi, outcome)
            want = (_statsmodels_welch(f) if inference == "welch"
                    else _statsmodels_ols(f, inference))
            got = t[(t["roi"] == roi) & (t["outcome"] == outcome)].set_index("term")
            assert set(want) == set(TERMS)
            for term, (est, df, p) in want.items():
                row = got.loc[term]
                assert row["estimate"] == pytest.approx(est, rel=1e-8, abs=1e-10), term
                assert row["df"] == pytest.approx(df, rel=1e-8), term
                assert row["p"] == pytest.approx(p, rel=1e-8, abs=1e-10), term
                assert row["n"] == len(f)


def test_the_omnibus_p_is_its_f_on_the_stated_df(results):
    for res in results.values():
        o = res.table[res.table["term"] == "omnibus"]
        np.testing.assert_allclose(o["p"], f_sf(o["estimate"], 2, o["df"]),
                                   rtol=1e-12)


def test_interactions_hold_the_contrasts_and_their_covariance(changes, results):
    f = _frame(changes, "thalamus", "hamd")
    kw = {"ols": {}, "hc3": {"cov_type": "HC3", "use_t": True}}
    for inf, fit_kw in kw.items():
        fit = smf.ols(FORMULA, data=f).fit(**fit_kw)
        inter = [f"{GROUP}[T.{a}]:d_md" for a in ARMS[:-1]]
        est, cov = results[inf].interactions[("thalamus", "hamd")]
        np.testing.assert_allclose(est, fit.params[inter], rtol=1e-9)
        np.testing.assert_allclose(cov, fit.cov_params().loc[inter, inter],
                                   rtol=1e-8)
    arm = {a: smf.ols("d_score ~ d_md + baseline_score", data=f[f["group"] == a]
                      ).fit() for a in ARMS}
    est, cov = results["welch"].interactions[("thalamus", "hamd")]
    v = [arm[a].bse["d_md"] ** 2 for a in ARMS]
    np.testing.assert_allclose(cov, np.diag(v[:2]) + v[2], rtol=1e-9)
    np.testing.assert_allclose(
        est, [arm[a].params["d_md"] - arm["placebo"].params["d_md"]
              for a in ARMS[:2]], rtol=1e-9)


def test_summary_shows_the_omnibus_as_a_test(results):
    text = results["ols"].summary()
    assert "interaction_high" in text and "omnibus" in text
    assert "F statistic" in text and "placebo arm" in text
    line = next(x for x in text.splitlines() if " omnibus " in x)
    assert "[" not in line  # no interval for a test statistic


def test_multiplicity_treats_the_omnibus_as_its_own_family(results):
    t = results["ols"].table
    o = t[t["term"] == "omnibus"]
    p = np.sort(o["p"].to_numpy())
    holm = np.sort(o["p_holm"].to_numpy())
    np.testing.assert_allclose(holm, np.minimum(1, np.maximum.accumulate(
        p * np.arange(len(p), 0, -1))))


def test_a_group_that_is_not_an_arm_is_refused(changes):
    two = TrialNames(arms=("high", "placebo"), control="placebo",
                     visits=("pre", "week1"))
    with pytest.raises(ValueError, match="group 'low' is not one of the trial's "
                                         "arms"):
        fit_changes(changes, names=two)


def test_an_arm_without_data_is_named(changes):
    ch = changes[changes["group"] != "low"].copy()
    ch.attrs = changes.attrs
    with pytest.raises(ValueError, match="no participant of the low arm has "
                                         "complete data for the hamd models"):
        fit_changes(ch)


def test_a_term_not_estimable_in_one_arm(changes):
    """dMD constant within the low arm: its interaction, slope and the omnibus
    are NaN; the high arm's terms are still estimated."""
    ch = changes.copy()
    ch.loc[ch["group"] == "low", "d_md"] = -1e-5
    for inf in INFERENCE:
        with pytest.warns(UserWarning, match="does not vary within the low arm"):
            res = fit_changes(ch, inference=inf)
        t = res.table[(res.table["roi"] == "thalamus")
                      & (res.table["outcome"] == "hamd")].set_index("term")
        for term in ("interaction_low", "slope_low", "omnibus"):
            assert np.isnan(t.loc[term, "p"]), (inf, term)
        for term in ("interaction_high", "slope_high", "slope_placebo"):
            assert np.isfinite(t.loc[term, "p"]), (inf, term)
        assert ("thalamus", "hamd") in res.not_estimable


# ------------------------------------------------------------- two arms: unchanged

# The two-arm table of make_tables(arms=("high", "placebo"), n=(14, 16),
# sd=(6.0, 1.5), slopes=(1.2, 0.0), seed=3) as the two-arm-only code computed
# it (commit 07d9370): (estimate, p) per row in table order (ROIs,
# outcomes, terms interaction, slope_high, slope_placebo, slope_pooled).
TWO_ARM = {
    "ols": [
        (-1.742985401483869, 0.007579293907826731),
        (-1.7326318420497242, 0.0033874912246410448),
        (0.01035355943414483, 0.9743240764992596),
        (-0.4134432211838755, 0.20916802270358928),
        (-1.0334265736611639, 0.2160893604391829),
        (-0.7585980447909988, 0.2958022219996236),
        (0.2748285288701651, 0.5016996476936898),
        (0.02474675548191655, 0.9450856456378378),
        (-0.805227661075327, 0.23995304524181385),
        (-0.6162112179467842, 0.22946725981392854),
        (0.18901644312854277, 0.6754312801848882),
        (-0.1675380309094165, 0.6227521748749594),
        (-0.8035610153672343, 0.2997145759244587),
        (-0.8735829477471212, 0.12577875545638384),
        (-0.07002193237988685, 0.8941831374652984),
        (-0.4490255284455491, 0.24762084772845708),
    ],
    "hc3": [
        (-1.742985401483869, 0.015090774310608294),
        (-1.7326318420497242, 0.017807025730429783),
        (0.01035355943414483, 0.9526917953239339),
        (-0.4134432211838755, 0.16980898044263462),
        (-1.0334265736611639, 0.13199070953458894),
        (-0.7585980447909988, 0.2556875507782437),
        (0.2748285288701651, 0.1334199150689943),
        (0.02474675548191655, 0.9187584470011064),
        (-0.805227661075327, 0.2941602235791115),
        (-0.6162112179467842, 0.40793939180674926),
        (0.18901644312854277, 0.2467709891577812),
        (-0.1675380309094165, 0.5916223649228033),
        (-0.8035610153672343, 0.38224779746123294),
        (-0.8735829477471212, 0.2928067724138172),
        (-0.07002193237988685, 0.7834053342584647),
        (-0.4490255284455491, 0.2511393033322216),
    ],
    "welch": [
        (-1.6720730335963978, 0.049118181490325076),
        (-1.70589396701214, 0.04175339439959791),
        (-0.033820933415742105, 0.8723934683186583),
        (-0.11475026239164002, 0.574989995954054),
        (-1.002663132503508, 0.3587069585037801),
        (-0.7413738847734753, 0.49054307265604935),
        (0.26128924773003276, 0.07668798942014038),
        (0.2455258748473934, 0.09231148294080649),
        (-0.7398784052573087, 0.3503706120730599),
        (-0.5535103941932056, 0.46499019710375455),
        (0.18636801106410317, 0.41339290638372717),
        (0.10549053451830029, 0.631472935231936),
        (-0.8411649458180592, 0.32472168843640836),
        (-0.8735439199318196, 0.2951614700015413),
        (-0.032378974113760284, 0.8760791628177275),
        (-0.08904108062048077, 0.6639386778833055),
    ],
}
TWO_ARM_MAXT = [0.25, 0.21, 0.97, 0.91, 0.71, 0.69, 0.21, 0.36, 0.71, 0.69, 0.84,
                0.91, 0.71, 0.64, 0.97, 0.91]
"""p_maxt under welch, 99 permutations, rng=5 (the same code and data)."""


@pytest.fixture(scope="module")
def two_arm_changes():
    p, r = make_tables(arms=("high", "placebo"), n=(14, 16), sd=(6.0, 1.5),
                       slopes=(1.2, 0.0), seed=3)
    return changes_of(p, r, arms=("high", "placebo"))


@pytest.mark.parametrize("inference", INFERENCE)
def test_two_arms_give_the_table_of_before(two_arm_changes, inference):
    t = fit_changes(two_arm_changes, inference=inference).table
    assert list(t["term"]) == ["interaction", "slope_high", "slope_placebo",
                               "slope_pooled"] * 4
    assert "omnibus" not in set(t["term"])
    want = np.array(TWO_ARM[inference])
    # the same operations as before: equal to the last bits on this machine
    np.testing.assert_allclose(t["estimate"], want[:, 0], rtol=1e-12, atol=0)
    np.testing.assert_allclose(t["p"], want[:, 1], rtol=1e-10, atol=0)


def test_two_arm_maxt_as_before(two_arm_changes):
    t = fit_changes(two_arm_changes, inference="welch", familywise="maxt",
                    permutations=99, rng=5).table
    np.testing.assert_allclose(t[MAXT_COLUMN], TWO_ARM_MAXT, rtol=1e-12)


def test_permutation_model_takes_a_two_arm_indicator():
    ket = np.array([True, False, True, False, False])
    m = PermutationModel(np.zeros(5), np.ones((5, 1)), ket, np.arange(5),
                         np.zeros((3, 1)), np.ones(1, bool), np.ones(1),
                         np.ones(1, bool))
    np.testing.assert_array_equal(m.arms, [0, 1, 0, 1, 1])
    np.testing.assert_array_equal(m.ketamine, ket)
    assert (m.n_arms, m.n_terms) == (2, 4)
    keys = np.random.default_rng(0).uniform(size=(7, 5))
    np.testing.assert_array_equal(within_arm_permutations(keys, m.subjects, ket),
                                  within_arm_permutations(keys, m.subjects, m.arms))
    with pytest.raises(ValueError, match="arms must be arm codes"):
        PermutationModel(np.zeros(2), np.ones((2, 1)), np.array([0.5, 1.0]),
                         np.arange(2), np.zeros((3, 1)), np.ones(1, bool),
                         np.ones(1), np.ones(1, bool))


# -------------------------------------------------------------------- max-T


@pytest.mark.parametrize("inference", INFERENCE)
def test_maxt_runs_for_three_arms(changes, inference):
    kw = {"inference": inference, "familywise": "maxt", "permutations": 199,
          "rng": 7}
    res = fit_changes(changes, **kw)
    t = res.table
    assert list(t["term"]) == list(TERMS) * 4
    assert t[MAXT_COLUMN].notna().all()
    assert (t[MAXT_COLUMN] >= 1 / 200).all()
    np.testing.assert_array_equal(t[MAXT_COLUMN],
                                  fit_changes(changes, **kw).table[MAXT_COLUMN])
    # every test alone (a family of one): its permutation p, never above the
    # max-T p of the same test in a larger family (same permutations)
    alone = fit_changes(changes, families=("roi", "outcome", "term"), **kw).table
    assert (t[MAXT_COLUMN] >= alone[MAXT_COLUMN] - 1e-12).all()


def test_maxt_is_not_below_p_under_the_null():
    """No dMD effect, four ROIs per family: max-T p at or above the p of the
    (well calibrated) Welch tests."""
    p, r = make_tables(slopes=(0.0, 0.0, 0.0), seed=11,
                       rois=("thalamus", "putamen", "caudate", "insula"))
    ch = changes_of(p, r)
    t = fit_changes(ch, inference="welch", familywise="maxt", permutations=199,
                    rng=2).table
    assert (t[MAXT_COLUMN] >= t["p"] - 1e-12).all()


def _model_of(changes, roi, outcome):
    """The data and PermutationModel the analysis builds for one ROI and outcome."""
    f = _frame(changes, roi, outcome).reset_index(drop=True)
    y, X = patsy.dmatrices(FORMULA, f, return_type="dataframe")
    info = X.design_info
    L = models._arm_contrasts(models._slope_contrasts(info, f, FORMULA, NAMES))
    keep = ~models._interaction_columns(info)
    model = PermutationModel(
        y.to_numpy()[:, 0], X.to_numpy(),
        models._arm_codes(f["group"].to_numpy(), NAMES), np.arange(len(f)), L,
        keep, L[2][keep], ~models._group_columns(info))
    return f, model


@pytest.mark.parametrize("inference", INFERENCE)
def test_permuted_omnibus_is_a_fresh_fit_of_freedman_lane_data(changes, inference):
    """Observed p = the analysis; a permuted omnibus p = statsmodels (ols, hc3)
    or per-arm statsmodels fits and Welch's test (welch) on y0 + P e0."""
    f, model = _model_of(changes, "thalamus", "hamd")
    keys = np.random.default_rng(1).uniform(size=(3, len(f)))
    obs, perm = permutation_p([model], inference=inference, keys=keys)
    t = fit_changes(changes, inference=inference).table
    want = t[(t["roi"] == "thalamus") & (t["outcome"] == "hamd")]["p"]
    np.testing.assert_allclose(obs, want, rtol=1e-8, atol=1e-12)
    pos = within_arm_permutations(keys, model.subjects, model.arms)
    inter = [f"{GROUP}[T.{a}]:d_md" for a in ARMS[:-1]]
    if inference == "welch":  # reduced: per-arm intercept and baseline, one slope
        red = smf.ols(f"d_score ~ {GROUP} * baseline_score + d_md", data=f).fit()
    else:
        red = smf.ols(f"d_score ~ {GROUP} + d_md + baseline_score", data=f).fit()
    for b in range(len(keys)):
        d = f.assign(d_score=red.fittedvalues + red.resid.to_numpy()[pos[b]])
        if inference == "welch":
            arm = [smf.ols("d_score ~ d_md + baseline_score",
                           data=d[d["group"] == a]).fit() for a in ARMS]
            F, df1, df2 = welch_omnibus([a.params["d_md"] for a in arm],
                                        [a.bse["d_md"] ** 2 for a in arm],
                                        [a.df_resid for a in arm])
            p = stats.f.sf(F, df1, df2)
        else:
            kw = {"cov_type": "HC3", "use_t": True} if inference == "hc3" else {}
            fit = smf.ols(FORMULA, data=d).fit(**kw)
            p = float(np.squeeze(fit.f_test(", ".join(f"{n} = 0" for n in inter)
                                            ).pvalue))
        assert perm[b, 6] == pytest.approx(p, rel=1e-8, abs=1e-12)


# ---------------------------------------------------------- multiple imputation


@pytest.fixture(scope="module")
def mi_tables():
    """Lost week1 thalamus scans and hamd ratings (putamen scans all kept)."""
    p, r = make_tables(drop_scans={("sub-high03", "thalamus"),
                                   ("sub-low05", "thalamus"),
                                   ("sub-placebo02", "thalamus")})
    p.loc[p["participant_id"].isin(["sub-low01", "sub-placebo07"]),
          "hamd_week1"] = np.nan
    return p, r


@pytest.mark.parametrize("inference", INFERENCE)
def test_multiple_imputation_pools_the_omnibus_by_d1(mi_tables, inference):
    ch = changes_of(*mi_tables)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing suspicious on the way
        res = fit_changes(ch, inference=inference, missing="mi", imputations=6,
                          rng=4)
    t = res.table
    assert list(t["term"]) == list(TERMS) * 4
    o = t[t["term"] == "omnibus"].set_index(["roi", "outcome"])
    assert o[["se", "t", "ci_low", "ci_high"]].isna().all().all()
    assert o[["estimate", "df", "p", "fmi"]].notna().all().all()
    assert ((o["fmi"] >= 0) & (o["fmi"] < 1)).all()
    np.testing.assert_allclose(o["p"], f_sf(o["estimate"], 2, o["df"]), rtol=1e-12)
    # putamen bdi: nothing imputed (scores of bdi all rated, putamen scans all
    # kept), so every imputation is the complete data: the complete-case test
    cc = fit_changes(ch, inference=inference).table
    row = cc[(cc["roi"] == "putamen") & (cc["outcome"] == "bdi")
             & (cc["term"] == "omnibus")].iloc[0]
    got = o.loc[("putamen", "bdi")]
    assert got["estimate"] == pytest.approx(row["estimate"], rel=1e-12)
    assert got["df"] == pytest.approx(row["df"], rel=1e-12)
    assert got["p"] == pytest.approx(row["p"], rel=1e-12)
    assert got["fmi"] == 0.0
    assert o.loc[("thalamus", "hamd"), "fmi"] > 0


def test_d1_is_li_raghunathan_rubin():
    """The pooled omnibus F: D1 = Q' U^{-1} Q / (q (1 + r)) (ols), and the
    Welch correction divides it by the mean of 1 + 2 (k - 2) / (3 f)."""
    from dtitool.stats.missing import _pool_omnibus

    rng = np.random.default_rng(0)
    M, q = 8, 2
    Q = rng.normal([1.0, 0.5], 0.2, (M, q))
    A = rng.normal(size=(M, q, q))
    U = 0.1 * (A @ A.transpose(0, 2, 1) + np.eye(q))
    df = np.full(M, 40.0)
    qbar, ubar = Q.mean(0), U.mean(0)
    B = np.cov(Q.T)
    r = (1 + 1 / M) * np.trace(B @ np.linalg.inv(ubar)) / q
    d1 = qbar @ np.linalg.solve(ubar, qbar) / (q * (1 + r))
    contrasts = list(zip(Q, U, strict=True))
    got = _pool_omnibus(contrasts, np.zeros(M), df, "ols")
    assert got["estimate"] == pytest.approx(d1, rel=1e-10)
    assert got["fmi"] == pytest.approx(r / (1 + r), rel=1e-10)
    assert got["p"] == pytest.approx(stats.f.sf(d1, q, got["df"]), rel=1e-10)
    assert 4 < got["df"] <= 40
    welch = _pool_omnibus(contrasts, np.zeros(M), df, "welch")
    assert welch["estimate"] == pytest.approx(d1 / (1 + 2 / 120), rel=1e-10)
    assert np.isnan(got["se"]) and np.isnan(got["ci_low"])


def test_tipping_point_summary_names_a_three_arm_interaction(mi_tables):
    from dtitool.stats.missing import tipping_point

    tp = tipping_point(*mi_tables, names=NAMES, imputations=3, rng=1,
                       deltas=(-2.0, 0.0, 2.0))
    assert set(tp.table["term"]) == set(TERMS)
    assert tp.summary().startswith("tipping point (interaction_high)")
    assert "omnibus" in tp.summary("omnibus")
