"""Design analysis: true values, type S errors, exaggeration ratios.

References: the R package retrodesign (closed form of Lu, Qiu and Deng 2019,
``retro_design``; Gelman and Carlin 2014) re-implemented here with scipy, and
Monte Carlo bands from the number of draws.
"""

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from dtitool.design import PerArm, load_preset
from dtitool.simulate import simulate_arrays
from dtitool.stats.design_analysis import REFERENCE_N, retrodesign, true_values
from dtitool.stats.implied import implied_effect
from dtitool.stats.inference import batch_models
from dtitool.stats.power import power
from dtitool.stats.reproduce import HALF_EFFECT, reproduce_table

# the default preset's terms (a design's are design.names.terms)
TERMS = ("interaction", "slope_ketamine", "slope_saline", "slope_pooled")


def _lu_closed_form(A, s, alpha=0.05):
    """retrodesign::retro_design (normal): power, type S, type M."""
    z = stats.norm.ppf(1 - alpha / 2)
    p_hi = 1 - stats.norm.cdf(z - A / s)
    p_lo = stats.norm.cdf(-z - A / s)
    power_ = p_hi + p_lo
    type_s = p_lo / power_ if A >= 0 else 1 - p_lo / power_
    lam = A / s
    type_m = (stats.norm.pdf(lam + z) + stats.norm.pdf(lam - z)
              + lam * (stats.norm.cdf(lam + z) + stats.norm.cdf(lam - z) - 1)) / (
        lam * (1 - stats.norm.cdf(lam + z) + stats.norm.cdf(lam - z)))
    return power_, type_s, abs(type_m)


@pytest.mark.parametrize(("A", "s"), [(0.1, 3.28), (2.0, 8.1), (1.0, 0.5),
                                      (-0.7, 0.4), (3.0, 1.0)])
def test_retrodesign_equals_the_normal_closed_form(A, s):
    r = retrodesign(A, s)
    want = _lu_closed_form(A, s)
    np.testing.assert_allclose([r["power"], r["type_s"], r["exaggeration"]], want,
                               rtol=1e-10)


def test_gelman_carlin_example():
    # Gelman & Carlin 2014: beauty and sex ratio, true effect 0.1, SE 3.28:
    # power 0.05, type S 0.46 (their exaggeration, 78, was simulated).
    r = retrodesign(0.1, 3.28)
    assert round(float(r["power"]), 2) == 0.05
    assert round(float(r["type_s"]), 2) == 0.46
    assert 76 < r["exaggeration"] < 78


@pytest.mark.parametrize(("A", "df"), [(0.5, 10), (2.0, 30), (1.2, 5)])
def test_retrodesign_t_reference_against_simulation(A, df):
    """retrodesign(A, s, df): estimate = A + s * t_df, within 3 Monte Carlo SE."""
    n = 400_000
    est = A + np.random.default_rng(1).standard_t(df, n)
    sig = np.abs(est) > stats.t.ppf(0.975, df)
    k = sig.sum()
    r = retrodesign(A, 1.0, df=df)
    ph = sig.mean()
    assert abs(ph - r["power"]) < 3 * math.sqrt(ph * (1 - ph) / n)
    ts = np.mean(est[sig] < 0)
    assert abs(ts - r["type_s"]) < 3 * math.sqrt(max(ts * (1 - ts), 1 / k) / k)
    ex = np.abs(est[sig])
    assert abs(ex.mean() / A - r["exaggeration"]) < 3 * ex.std() / math.sqrt(k) / A


def test_retrodesign_bad_input():
    with pytest.raises(ValueError, match="se must be > 0"):
        retrodesign(1.0, 0.0)
    with pytest.raises(ValueError, match="true_value must be finite and non-zero"):
        retrodesign(0.0, 1.0)
    with pytest.raises(ValueError, match="df must be > 1"):
        retrodesign(1.0, 1.0, df=1)


def _normal_design(rho_k=0.35, rho_s=0.1, n=None):
    """The null preset with one ROI-outcome link (L_BA10 x MADRS) and no clipping.

    MADRS change is normal and additive (``change_model="additive"``) with mean
    0 in both arms (SD 6 and 5), so the 0-60 scale is practically never reached:
    the true slopes then have a closed form.
    """
    d = load_preset("null")
    outs = list(d.outcomes)
    outs[0] = dataclasses.replace(outs[0], change_model="additive",
                                  change_mean=PerArm(ketamine=0.0, saline=0.0),
                                  change_sd=PerArm(ketamine=6.0, saline=5.0))
    c = d.correlations
    ro = {}
    for arm, rho in (("ketamine", rho_k), ("saline", rho_s)):
        m = np.zeros((len(d.rois), len(d.outcomes)))
        m[0, 0] = rho
        ro[arm] = tuple(tuple(r) for r in m.tolist())
    d = dataclasses.replace(d, outcomes=tuple(outs),
                            correlations=dataclasses.replace(c, roi_outcome=ro))
    return d if n is None else d.with_n(n)


def _closed_form_slopes(design):
    """Population slopes of MADRS change on observed dMD (per 1e-5) per arm and
    the OLS pooled slope, from the design's inputs."""
    roi, out = design.rois[0], design.outcomes[0]
    cov, var = {}, {}
    for arm in ("ketamine", "saline"):
        rho = design.correlations.roi_outcome[arm][0][0]
        st = roi.change_sd[arm]
        cov[arm] = rho * out.change_sd[arm] * st / 1e-5
        var[arm] = (st**2 + 2 * roi.noise_sd**2) / 1e-10
    slope = {a: cov[a] / var[a] for a in cov}
    nk, ns = design.arm_sizes()
    pk, ps = nk / (nk + ns), ns / (nk + ns)
    pooled = (pk * cov["ketamine"] + ps * cov["saline"]) / (
        pk * var["ketamine"] + ps * var["saline"])
    return np.array([slope["ketamine"] - slope["saline"], slope["ketamine"],
                     slope["saline"], pooled])


def test_true_values_match_the_closed_form():
    design = _normal_design()
    value, se = true_values(design, inference="ols", rng=3)
    ref = design.with_n(math.ceil(REFERENCE_N / 64))
    want = _closed_form_slopes(ref)
    got, got_se = value[0, 0], se[0, 0]  # L_BA10 x MADRS
    assert np.all(np.abs(got - want) < 3.5 * got_se), (got, want, got_se)
    # every other ROI-outcome pair has no link: true values 0 within their SE
    others = np.ones(value.shape[:2], bool)
    others[0, 0] = False
    z = value[others] / se[others]
    assert np.abs(z).max() < 4.5
    # welch targets the same arm slopes and interaction
    wv, wse = true_values(design, inference="welch", rng=3)
    assert np.all(np.abs(wv[0, 0, :3] - want[:3]) < 3.5 * wse[0, 0, :3])


def test_power_design_analysis_bookkeeping():
    """true_value, type_s, exaggeration of power() equal the replicates' own."""
    design = _normal_design(rho_k=0.3, rho_s=0.0)
    R = 640
    res = power(design, replicates=R, rng=7, inference="welch", size=False)
    # both terms of L_BA10 x MADRS: one with >= 100 significant trials, one not
    sig_counts = res.table.set_index(["roi", "outcome", "term"]).loc[
        [("L_BA10", "madrs", x) for x in TERMS[:2]], "n_significant"]
    assert sig_counts.min() < 100 <= sig_counts.max()
    bm = batch_models(simulate_arrays(design, rng=7, stop=R), "welch")
    value, _ = true_values(design, inference="welch",
                           rng=np.random.SeedSequence(7, spawn_key=(0x74727565,)))
    t = res.table.set_index(["roi", "outcome", "term"])
    for i, term in enumerate(TERMS[:2]):
        row = t.loc[("L_BA10", "madrs", term)]
        assert row["true_value"] == value[0, 0, i]
        est, p = bm.estimate[:, 0, 0, i], bm.p[:, 0, 0, i]
        sig = p <= 0.05
        assert row["n_significant"] == sig.sum()
        if sig.sum() < 100:  # too few significant trials: left empty
            assert np.isnan(row["type_s"]) and np.isnan(row["exaggeration"])
            continue
        assert row["type_s"] == pytest.approx(np.mean(np.sign(est[sig])
                                                      != np.sign(value[0, 0, i])))
        assert row["exaggeration"] == pytest.approx(
            np.abs(est[sig]).mean() / abs(value[0, 0, i]), rel=1e-12)
    # no link: the true value is 0 within its SE and the sign is unknown
    null_rows = t.xs("R_amygdala", level="roi")
    assert null_rows["type_s"].isna().all()
    assert null_rows["exaggeration"].isna().all()
    assert (null_rows["true_value"].abs() < 5 * null_rows["true_value_se"]).all()


@pytest.mark.slow  # over 6 s: the default suite stays under 5 minutes
def test_engine_type_s_and_exaggeration_match_retrodesign():
    """One near-normal estimate (n = 600): simulated type S and exaggeration
    against retrodesign's closed form at the closed-form true value, within 3
    Monte Carlo SE of the simulation. The SE of the estimate is the replicates'
    RMS standard error under ``welch`` (per-arm residual variances: under ``ols``
    the ketamine-arm SE pools the smaller saline variance and is biased low)."""
    design = _normal_design(rho_k=0.1, rho_s=0.0, n=600)
    R = 4000
    bm = batch_models(simulate_arrays(design, rng=5, stop=R), "welch")
    A = _closed_form_slopes(design)[1]  # ketamine-arm slope
    est, se, p = (v[:, 0, 0, 1] for v in (bm.estimate, bm.se, bm.p))
    s = math.sqrt(np.mean(se**2))
    assert abs(est.std() / s - 1) < 3 / math.sqrt(2 * R)
    r = retrodesign(A, s)
    sig = p <= 0.05
    k = sig.sum()
    assert 0.2 < r["power"] < 0.5 and k > 800
    ts = np.mean(np.sign(est[sig]) != np.sign(A))
    assert abs(ts - r["type_s"]) < 3 * math.sqrt(r["type_s"] * (1 - r["type_s"]) / k)
    ex = np.abs(est[sig]) / abs(A)
    assert abs(ex.mean() - r["exaggeration"]) < 3 * ex.std() / math.sqrt(k)


def test_reproduce_half_effect_columns():
    res = power(load_preset("ketamine-rct"), replicates=128, rng=1,
                families=None)
    tab = reproduce_table(res)
    rep = tab[tab["direction"] != 0]
    assert rep["half_effect_exaggeration"].gt(1.5).all()
    row = rep.iloc[0]
    design = res.design
    rel = design.reliability("ketamine")[row["roi"]]
    e = implied_effect(math.sqrt(row["p_low"] * row["p_high"]), n=design.n,
                       allocation=design.allocation.as_tuple(), reliability=rel,
                       term=row["term"], alpha=0.05)
    want = retrodesign(HALF_EFFECT * e.t, 1.0, df=e.df)
    assert row["half_effect_exaggeration"] == pytest.approx(want["exaggeration"])
    assert row["half_effect_power"] == pytest.approx(want["power"])
    assert {"size", "type_s", "exaggeration", "inference"} <= set(tab.columns)
    nulls = tab[tab["direction"] == 0]
    assert nulls["half_effect_exaggeration"].isna().all()
    assert isinstance(tab, pd.DataFrame)
