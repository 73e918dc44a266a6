"""Max-T family-wise control: Freedman-Lane permutation (analyze) and the null
counterpart's critical values (power)."""

import dataclasses
import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.formula.api as smf
from _analysis_tables import make_tables
from scipy import stats

from dtitool.design import MissingSpec, load_preset
from dtitool.simulate import simulate_arrays, simulate_cohort
from dtitool.stats.analysis import MAXT_COLUMN, fit_models
from dtitool.stats.inference import INFERENCE
from dtitool.stats.permutation import (
    PermutationModel,
    maxt_adjust,
    permutation_p,
    within_arm_permutations,
)
from dtitool.stats.power import power, vary_design

L3 = np.array([[0, 0, 0, 1, 0], [0, 0, 1, 1, 0], [0, 0, 1, 0, 0.0]])
KEEP = np.array([1, 1, 1, 0, 1], bool)
WITHIN = np.array([1, 0, 1, 0, 1], bool)
POOLED = np.array([0, 0, 1, 0.0])


def _models(arrays, r):
    """The 14 models of replicate ``r`` (complete data), default design columns."""
    g = arrays.treated[r].astype(float)
    x = arrays.d_md[r] / 1e-5
    n = len(g)
    out = []
    for j in range(x.shape[1]):
        for k in range(arrays.scores.shape[2]):
            X = np.column_stack([np.ones(n), g, x[:, j], g * x[:, j],
                                 arrays.scores[r, :, k, 0]])
            out.append(PermutationModel(arrays.d_score[r, :, k], X, arrays.treated[r],
                                        np.arange(n), L3, KEEP, POOLED, WITHIN))
    return out


def _brute_maxt(obs, perm):
    """Step-down minP by the definition, one test at a time (reference)."""
    m = len(obs)
    order = np.argsort(obs, kind="stable")
    adj = np.empty(m)
    prev = 0.0
    for j, i in enumerate(order):
        rest = order[j:]
        count = sum(perm[b, rest].min() <= obs[i] for b in range(perm.shape[0]))
        prev = max(prev, (1 + count) / (perm.shape[0] + 1))
        adj[i] = prev
    return adj


def test_maxt_adjust_matches_the_definition():
    rng = np.random.default_rng(1)
    obs = rng.uniform(size=6) ** 3
    perm = rng.uniform(size=(300, 6))
    perm[:, 1] = perm[:, 0] * 0.9  # dependent tests
    got = maxt_adjust(obs, perm)
    np.testing.assert_allclose(got, _brute_maxt(obs, perm), rtol=0, atol=1e-15)
    assert np.all(got >= obs)
    order = np.argsort(obs)
    assert np.all(np.diff(got[order]) >= 0)
    # a NaN test is left out of the family
    obs2 = obs.copy()
    obs2[2] = np.nan
    got2 = maxt_adjust(obs2, perm)
    assert np.isnan(got2[2])
    keep = [0, 1, 3, 4, 5]
    np.testing.assert_allclose(got2[keep], _brute_maxt(obs[keep], perm[:, keep]))


def test_within_arm_permutations():
    rng = np.random.default_rng(0)
    ket = np.array([True, False] * 5)
    keys = rng.uniform(size=(200, 12))
    subjects = np.arange(10) + 2
    pos = within_arm_permutations(keys, subjects, ket)
    assert np.all(ket[pos] == ket[None, :])  # rows receive from their own arm
    assert all(sorted(p) == list(range(10)) for p in pos)
    # the same subjects in another model get the same permutation
    np.testing.assert_array_equal(pos, within_arm_permutations(keys, subjects, ket))
    # each row of an arm of 5 receives each row of that arm ~ 1/5 of the time
    share = np.mean(pos[:, 0] == 4)
    assert abs(share - 0.2) < 4 * np.sqrt(0.2 * 0.8 / 200)


@pytest.mark.parametrize("inference", INFERENCE)
def test_permutation_refit_matches_statsmodels(inference):
    """Observed p = the analysis; one permuted data set = a fresh statsmodels fit."""
    arrays = simulate_arrays(load_preset("null"), rng=2, stop=1)
    models = _models(arrays, 0)[:3]
    keys = np.random.default_rng(3).uniform(size=(4, 98))
    obs, perm = permutation_p(models, inference=inference, keys=keys)
    cohort = simulate_cohort(load_preset("null"), rng=2)
    res = fit_models(cohort.participants, cohort.roi_md, inference=inference)
    t = res.table
    want = np.concatenate([
        t[(t["roi"] == "L_BA10") & (t["outcome"] == "madrs")]["p"],
        t[(t["roi"] == "L_BA10") & (t["outcome"] == "qids")]["p"],
        t[(t["roi"] == "R_BA10") & (t["outcome"] == "madrs")]["p"]])
    np.testing.assert_allclose(obs, want, rtol=0, atol=1e-8)
    # Freedman-Lane by hand for the interaction of model 0 (reduced = additive
    # model for ols/hc3; common slope, per-arm intercept and baseline for welch)
    m = models[0]
    pos = within_arm_permutations(keys, m.subjects, m.ketamine)
    df = pd.DataFrame({"y": m.y, "x": m.X[:, 2], "b": m.X[:, 4],
                       "group": np.where(m.ketamine, "ketamine", "saline")})
    red = "y ~ C(group) + x + b" if inference != "welch" else "y ~ C(group) * b + x"
    fit = smf.ols(red, df).fit()
    for b in range(4):
        d = df.assign(y=fit.fittedvalues + fit.resid.to_numpy()[pos[b]])
        if inference == "welch":
            arm = {g: smf.ols("y ~ x + b", d[d["group"] == g]).fit()
                   for g in ("ketamine", "saline")}
            vk, vs = (arm[g].bse["x"] ** 2 for g in ("ketamine", "saline"))
            dk, ds = (arm[g].df_resid for g in ("ketamine", "saline"))
            t_ = (arm["ketamine"].params["x"] - arm["saline"].params["x"]) / np.sqrt(
                vk + vs)
            p = 2 * stats.t.sf(abs(t_), (vk + vs) ** 2 / (vk**2 / dk + vs**2 / ds))
        else:
            kw = {"cov_type": "HC3", "use_t": True} if inference == "hc3" else {}
            f = smf.ols("y ~ C(group, Treatment('saline')) * x + b", d).fit(**kw)
            p = f.pvalues["C(group, Treatment('saline'))[T.ketamine]:x"]
        assert perm[b, 0] == pytest.approx(p, abs=1e-8)


def test_analyze_maxt_column_reproducible_and_not_below_p():
    design = dataclasses.replace(load_preset("null"), missing=MissingSpec("mcar",
                                                                          0.1))
    cohort = simulate_cohort(design, rng=9)
    kw = {"inference": "welch", "familywise": "maxt", "permutations": 400, "rng": 4}
    a = fit_models(cohort.participants, cohort.roi_md, **kw)
    b = fit_models(cohort.participants, cohort.roi_md, **kw)
    t = a.table
    np.testing.assert_array_equal(t[MAXT_COLUMN], b.table[MAXT_COLUMN])
    assert a.seed == 4 and a.permutations == 400
    assert (t[MAXT_COLUMN] >= t["p"] - 1e-12).all()
    assert (t[MAXT_COLUMN] >= 1 / 401).all()
    assert "p_maxt" in a.summary()
    assert MAXT_COLUMN not in fit_models(cohort.participants, cohort.roi_md).table
    with pytest.raises(ValueError, match="familywise must be one of holm-bh, maxt"):
        fit_models(cohort.participants, cohort.roi_md, familywise="westfall")
    with pytest.raises(ValueError, match="permutations must be a positive integer"):
        fit_models(cohort.participants, cohort.roi_md, familywise="maxt",
                   permutations=0)


def _fl_fwer(inference, datasets, permutations, seed):
    arrays = simulate_arrays(load_preset("null"), rng=seed, stop=datasets)
    rng = np.random.default_rng(seed)
    errors = np.zeros(4)
    for r in range(datasets):
        keys = rng.uniform(size=(permutations, arrays.treated.shape[1]))
        obs, perm = permutation_p(_models(arrays, r), inference=inference, keys=keys)
        for t in range(4):
            idx = np.arange(t, len(obs), 4)
            errors[t] += (maxt_adjust(obs[idx], perm[:, idx]) <= 0.05).any()
    return errors / datasets


@pytest.mark.slow  # over 6 s: the default suite stays under 5 minutes
def test_freedman_lane_maxt_error_at_alpha_under_the_null_preset():
    """Within-arm Freedman-Lane max-T keeps each term family's error at alpha.

    The null preset as it is (unequal arm SDs). 240 null data sets x 200
    permutations: each family's rejection rate within 3 binomial SE of 0.05
    (and the four families' mean within 3 SE of one family's).
    """
    D = 240
    fwer = _fl_fwer("welch", D, 200, seed=31)
    se = np.sqrt(0.05 * 0.95 / D)
    assert np.all(np.abs(fwer - 0.05) < 3 * se), fwer
    assert abs(fwer.mean() - 0.05) < 3 * se


@pytest.mark.slow
@pytest.mark.parametrize("inference", INFERENCE)
def test_freedman_lane_maxt_error_every_option(inference):
    D = 600
    fwer = _fl_fwer(inference, D, 200, seed=32)
    se = np.sqrt(0.05 * 0.95 / D)
    assert np.all(np.abs(fwer - 0.05) < 3.5 * se), fwer


def _correlated_null():
    """The null preset with strongly correlated observed dMD: correlated tests.

    True MD changes correlate 0.9 between ROIs and scans are nearly noiseless
    (CV 0.2 %), so the observed dMD of the 7 ROIs correlate about as much.
    """
    d = vary_design(load_preset("null"), "cv", 0.002)
    J = len(d.rois)
    rho = np.full((J, J), 0.9)
    np.fill_diagonal(rho, 1.0)
    c = dataclasses.replace(d.correlations,
                            roi_change=tuple(tuple(r) for r in rho.tolist()))
    return dataclasses.replace(d, correlations=c)


def test_power_maxt_error_at_alpha_and_holm_below_it():
    """In a null design max-T's family-wise error is alpha; Holm's is below it.

    The critical value comes from the null counterpart (independent streams), so
    the error rate of the main run carries the binomial error of the run plus the
    Monte Carlo error of the critical value (4 null draws per trial: a quarter of
    the variance; the band allows for half).
    """
    R = 6000
    res = power(_correlated_null(), replicates=R, rng=12, inference="welch",
                design_analysis=False)
    fw = res.familywise.set_index(["family", "method"])
    se = np.sqrt(0.05 * 0.95 / R)
    holm = []
    for term in ("interaction", "slope_ketamine", "slope_saline", "slope_pooled"):
        maxt = fw.loc[(term, "maxt"), "power_any"]
        assert abs(maxt - 0.05) < 3.5 * np.sqrt(1.5) * se, (term, maxt)
        assert fw.loc[(term, "maxt"), "size_ok"]
        holm.append(fw.loc[(term, "holm"), "power_any"])
        assert holm[-1] < maxt, term
    # Holm guards against the worst case and loses error rate (and so power)
    # when the 14 tests of a family correlate.
    assert np.mean(holm) < 0.05 - 3 * se, holm
    assert set(res.critical_p) >= {"interaction", "slope_pooled"}
    # between Bonferroni's 0.05 / 14 (up to Monte Carlo error) and alpha
    assert all(0.05 / 14 * 0.8 < c < 0.05 for c in res.critical_p.values())


@pytest.mark.parametrize("inference", ["ols", "hc3"])
def test_null_permutation_draws_are_null_draws(inference):
    """The max-T critical values add within-arm dMD permutations of each null
    trial. In the null counterpart these are draws from the same distribution,
    also when missing scans depend on the outcome (MNAR): the family minima of the
    simulated trials and of their permutations agree (two-sample KS)."""
    from dtitool.stats import power as pw

    design = dataclasses.replace(load_preset("null"), missing=MissingSpec(
        "mnar", 0.2, outcome="madrs", strength=1.0))
    spec = pw._Spec(alpha=0.05, families=pw._normalise_families(design, None),
                    inference=inference, null=True, extra_draws=2)
    out = pw._chunk(design, np.random.SeedSequence(6), 0, 3000, spec)
    sim, perm = out["minp"], out["minp_extra"]
    assert perm.shape == (3000, 2, sim.shape[1])
    for f in range(sim.shape[1]):
        for c in range(2):
            assert stats.ks_2samp(sim[:, f], perm[:, c, f]).pvalue > 1e-3
    # and they are new draws, not copies
    assert np.mean(sim[:, 0] == perm[:, 0, 0]) < 0.01


def test_untestable_terms_are_left_out_of_maxt():
    """A 4-patient saline arm cannot carry its own baseline, age and sex slopes:
    under welch its slope, the interaction and the pooled slope have no test
    (NaN, as in the analysis) and max-T adjusts the testable ones only."""
    p, r = make_tables(n_ketamine=10, n_saline=4, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t = fit_models(p, r, inference="welch", covariates=("baseline", "age", "sex"),
                       familywise="maxt", permutations=50, rng=1).table
    bad = t["term"] != "slope_ketamine"
    assert t.loc[bad, "p"].isna().all() and t.loc[bad, MAXT_COLUMN].isna().all()
    ok = t.loc[~bad]
    assert ok["p"].notna().all() and (ok[MAXT_COLUMN] >= ok["p"]).all()


@pytest.mark.parametrize("inference", INFERENCE)
@pytest.mark.parametrize("mechanism", ["none", "mnar"])
def test_fast_permutation_minima_equal_the_full_refit(inference, mechanism):
    """The extra null draws take each family's smallest p from the largest |t|
    per term and permute without copying the values; their minima are the same
    float32 numbers as a full refit with every p computed (the reference path:
    permute_within_arms with values kept, models_from_statistics, _family_minp),
    including a user family that mixes terms and outcomes."""
    from dtitool.stats import power as pw
    from dtitool.stats.inference import (
        arm_statistics,
        fit_terms,
        model_arrays,
        models_from_statistics,
        permute_within_arms,
    )

    design = dataclasses.replace(load_preset("ketamine-rct"), missing=MissingSpec(
        mechanism, 0.0 if mechanism == "none" else 0.2, outcome="madrs",
        strength=1.0))
    fams = pw._normalise_families(design, {"mixed": [
        ("R_BA10", "any", "interaction", "negative"),
        ("vACC", "qids", "slope_pooled"), ("L_amygdala", "madrs", "slope_saline")]})
    spec = pw._Spec(alpha=0.05, families=fams, inference=inference)
    arrays = simulate_arrays(design, rng=3, stop=640, lean=True)
    st = arm_statistics(*model_arrays(arrays), keep_values=True)
    keys = pw._permutation_keys(np.random.SeedSequence(4), 0, 640, 1,
                                arrays.treated.shape[1])
    k = (keys[:, 0, 0], keys[:, 0, 1])
    full = pw._family_minp(models_from_statistics(
        permute_within_arms(st, k), inference), spec)[0]
    lean = permute_within_arms(st, k, keep_values=inference == "hc3")
    fast = pw._family_minp_of_t(*fit_terms(lean, inference), spec)
    assert fast.dtype == np.float32 and fast.shape == (640, len(fams))
    np.testing.assert_array_equal(fast, full)
    assert np.isfinite(fast).all()
    if inference != "hc3":
        assert lean.V is None  # nothing copied that the fit does not read


def test_lean_simulation_has_the_same_model_inputs():
    """simulate_arrays(lean=True) skips what the models do not read; what they
    read is bit for bit the full simulation's, with and without missing scans."""
    for mech in ("none", "mcar"):
        design = dataclasses.replace(load_preset("ketamine-rct"), missing=MissingSpec(
            mech, 0.0 if mech == "none" else 0.3))
        full = simulate_arrays(design, rng=9, start=70, stop=200)
        lean = simulate_arrays(design, rng=9, start=70, stop=200, lean=True)
        for f in ("treated", "md", "scores", "observed_24h"):
            np.testing.assert_array_equal(getattr(lean, f), getattr(full, f))
        assert lean.md_true is None and lean.age is None and lean.female is None
        assert full.age is not None
        assert np.isnan(full.md[..., 1]).any() == (mech == "mcar")
