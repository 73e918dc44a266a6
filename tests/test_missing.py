"""Missing data: imputation engine, Rubin's rules, MI analysis, tipping point, power.

References: a literal transcription of mice's normal draw (van Buuren 2018,
algorithm 3.1) fed the same random numbers; the Student-t posterior predictive
of a normal regression; statsmodels' ``MICE.combine`` for Rubin's rules;
statsmodels OLS fits of the completed datasets; the full data of the same
simulated trials for bias (bands from the replicate count).
"""

import dataclasses

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
from scipy import special, stats

from dtitool.cli import main
from dtitool.design import MissingSpec, design_to_toml, load_preset, read_design
from dtitool.simulate import simulate_arrays, simulate_cohort
from dtitool.stats.analysis import RESULT_COLUMNS, fit_models
from dtitool.stats.inference import batch_models
from dtitool.stats.missing import (
    ImputationData,
    _arm_centred,
    _blocks,
    _draw,
    _plan,
    batch_models_imputed,
    impute,
    rubin,
    tipping_point,
)
from dtitool.stats.power import power

GROUP = "C(group, Treatment('saline'))"


def _design(preset="ketamine-rct", **missing):
    d = load_preset(preset)
    return dataclasses.replace(d, missing=MissingSpec(**missing))


def _z(tests, level=0.99):
    """Two-sided Bonferroni z for ``tests`` checks at overall ``level``."""
    return float(stats.norm.isf((1 - level) / 2 / tests))


# ------------------------------------------------------------------ the engine


def _toy(seed, D=3, N=48, J=2, K=2, *, scan=0.0, rating=0.0, visit=0.0):
    """Small datasets with the three loss patterns (cells set NaN)."""
    rng = np.random.default_rng(seed)
    treated = np.zeros((D, N), bool)
    treated[:, : 2 * N // 3] = True
    b = rng.normal(30, 5, (D, N, K))
    md0 = rng.normal(89, 4, (D, N, J))
    common = rng.normal(size=(D, N, 1))
    x = common + rng.normal(size=(D, N, J)) - 0.1 * (md0 - 89)
    y = (2.0 * common + np.where(treated, 1.5, 0.2)[..., None] * x[..., :1]
         - 0.2 * (b - 30) + rng.normal(0, 2, (D, N, K)))
    lost_scan = rng.random((D, N)) < scan
    lost_rating = rng.random((D, N)) < rating
    lost_visit = rng.random((D, N)) < visit
    x = np.where((lost_scan | lost_visit)[..., None], np.nan, x)
    y = np.where((lost_rating | lost_visit)[..., None], np.nan, y)
    return ImputationData(x=x, y=y, b=b, md0=md0, treated=treated,
                          use=np.ones((D, N), bool))


def _reference_impute(data, M, seed, iterations):
    """mice.impute.norm per dataset, ROI block, arm and imputation, by loops.

    Literal algorithm 3.1 of van Buuren (2018): least squares on the observed
    rows, sigma* = sqrt(SSR / g) with g the chi-square variate, beta* =
    beta_hat + sigma* chol((X'X)^-1) z1, imputation X_mis beta* + sigma* z2.
    Predictors as dtitool documents them (arm-centred baseline scores and MD,
    the block's other variables in visit order), draws taken from the same
    streams.
    """
    V, P = _blocks(data)
    D, J, N, q = V.shape
    use = np.broadcast_to(data.use[:, None], (D, J, N))
    treated = np.broadcast_to(data.treated[:, None], (D, J, N))
    arms = np.stack([treated & use, ~treated & use], axis=2).astype(float)
    Pc = _arm_centred(P.reshape(D * J, N, -1),
                      arms.reshape(D * J, 2, N)).reshape(P.shape)
    Pc[..., 0] = 1.0
    obs = np.isfinite(V)
    order, preds, _ = _plan(~obs)
    pc = Pc.shape[-1]
    p_all = pc + q - 1
    df = np.zeros((D, J, 2, q))
    for v in order:
        for a in range(2):
            member = treated[..., 0, :] if a == 0 else ~treated[..., 0, :]
            df[:, :, a, v] = (obs[..., v] & member[:, None]).sum(-1) - (
                pc + len(preds[v]))
    draws = _draw(seed, 0, D, J, M, N, q, p_all, iterations, df)
    out = np.repeat(np.where(obs, V, np.nan)[:, :, None], M, axis=2)  # D,J,M,N,q
    for d in range(D):
        for j in range(J):
            for m in range(M):
                cur = out[d, j, m]
                if iterations > 1:  # random observed value of the arm
                    for v in range(q):
                        for a in range(2):
                            member = treated[d, j] if a == 0 else ~treated[d, j]
                            pool = V[d, j, member & obs[d, j, :, v], v]
                            for n in np.flatnonzero(member & ~obs[d, j, :, v]):
                                u = draws.init[d, j, m, v, n]
                                k = min(int(u * len(pool)), len(pool) - 1)
                                cur[n, v] = pool[k]
                for t in range(iterations):
                    for v in order:
                        inc = preds[v]
                        for a in range(2):
                            member = treated[d, j] if a == 0 else ~treated[d, j]
                            X = np.column_stack([Pc[d, j], cur[:, inc]])
                            ry = member & obs[d, j, :, v]
                            miss = member & ~obs[d, j, :, v]
                            if not miss.any():
                                continue
                            Xo, yo = X[ry], cur[ry, v]
                            beta, *_ = np.linalg.lstsq(Xo, yo, rcond=None)
                            ssr = float(np.sum((yo - Xo @ beta) ** 2))
                            Vinv = np.linalg.inv(Xo.T @ Xo)
                            sig = np.sqrt(ssr / draws.chi2[t, d, j, m, a, v])
                            p = X.shape[1]
                            bstar = beta + sig * np.linalg.cholesky(Vinv) @ (
                                draws.z_beta[t, d, j, m, a, v, :p])
                            cur[miss, v] = (X[miss] @ bstar
                                            + sig * draws.z_eps[t, d, j, m, v, miss])
    return out


@pytest.mark.parametrize(("pattern", "iterations"), [
    ({"scan": 0.25}, 1),                      # lost scans: monotone, one pass
    ({"visit": 0.25}, 1),                     # lost visits: monotone, one pass
    ({"scan": 0.15, "visit": 0.15}, 1),       # both: still monotone
    ({"scan": 0.2, "rating": 0.2}, 3),        # not monotone: chained equations
])
def test_engine_equals_literal_mice_norm(pattern, iterations):
    data = _toy(1, **pattern)
    _, _, monotone = _plan(~np.isfinite(_blocks(data)[0]))
    assert monotone == (iterations == 1)
    x, y, ok = impute(data, imputations=4, rng=11, iterations=iterations)
    assert ok.all()
    ref = _reference_impute(data, 4, 11, iterations)
    np.testing.assert_allclose(x, np.moveaxis(ref[..., 0], 1, -1), rtol=1e-9,
                               atol=1e-9)
    np.testing.assert_allclose(y, np.moveaxis(ref[..., 1:], 1, -2), rtol=1e-9,
                               atol=1e-9)
    # observed values are kept as they were
    obs = np.isfinite(data.x)
    assert np.array_equal(x[:, 0][obs], data.x[obs])


@pytest.mark.slow  # over 3 s: the default suite stays under 5 minutes
def test_imputations_are_draws_from_the_student_t_posterior_predictive():
    """Under p(beta, sigma^2) ~ 1/sigma^2 a missing value is t_{n-p} around the
    least-squares prediction with scale^2 s^2 (1 + h): mean and variance of
    many imputations match (bands from the number of imputations)."""
    data = _toy(3, D=1, N=45, J=1, K=1, scan=0.2)
    M = 20_000
    x, _, ok = impute(data, imputations=M, rng=5)
    assert ok.all()
    _, P = _blocks(data)
    treated = data.treated[0]
    arms = np.stack([treated, ~treated])[None].astype(float)
    Pc = _arm_centred(P[0], arms)[0]
    Pc[:, 0] = 1.0
    X = np.column_stack([Pc, data.y[0, :, 0]])
    miss = np.flatnonzero(~np.isfinite(data.x[0, :, 0]))
    checks = 0
    for n in miss:
        member = treated == treated[n]
        ro = member & np.isfinite(data.x[0, :, 0])
        Xo, yo = X[ro], data.x[0, ro, 0]
        beta, *_ = np.linalg.lstsq(Xo, yo, rcond=None)
        df = len(yo) - X.shape[1]
        s2 = np.sum((yo - Xo @ beta) ** 2) / df
        h = X[n] @ np.linalg.inv(Xo.T @ Xo) @ X[n]
        var = s2 * (1 + h) * df / (df - 2)
        draws = x[0, :, n, 0]
        z_mean = (draws.mean() - X[n] @ beta) / np.sqrt(var / M)
        kurt = 6.0 / (df - 4)  # excess kurtosis of t_df
        se_var = var * np.sqrt(2.0 / (M - 1) + kurt / M)
        z_var = (draws.var(ddof=1) - var) / se_var
        assert abs(z_mean) < _z(2 * len(miss)), (n, z_mean)
        assert abs(z_var) < _z(2 * len(miss)), (n, z_var)
        checks += 1
    assert checks >= 5


def test_same_seed_same_imputations_and_chunk_invariance():
    d = _design(mechanism="mnar", rate=0.25, strength=1.0, scores=True)
    a = simulate_arrays(d, rng=3, stop=128)
    b = simulate_arrays(d, rng=3, start=64, stop=128)
    full, _ = batch_models_imputed(a, ("ols",), imputations=5, rng=9)
    part, _ = batch_models_imputed(b, ("ols",), imputations=5, rng=9)
    again, _ = batch_models_imputed(a, ("ols",), imputations=5, rng=9)
    assert np.array_equal(full["ols"].p, again["ols"].p, equal_nan=True)
    # replicates 64..127 alone give the same bytes as inside the whole run
    np.testing.assert_array_equal(full["ols"].estimate[64:], part["ols"].estimate)


def test_unimputable_arm_is_flagged():
    data = _toy(4, D=2, N=12, J=1, K=2, scan=0.5)
    _, _, ok = impute(data, imputations=3, rng=1)
    assert not ok.all()  # 4 saline patients cannot fit 6 coefficients


# ------------------------------------------------------------------ Rubin's rules


def test_rubin_matches_statsmodels_mice_combine_and_barnard_rubin():
    from statsmodels.imputation.mice import MICE

    rng = np.random.default_rng(0)
    fits = []
    for _ in range(7):
        X = sm.add_constant(rng.normal(size=(40, 2)))
        fits.append(sm.OLS(X @ [1.0, 2.0, 3.0] + rng.normal(size=40), X).fit())
    mice = MICE.__new__(MICE)
    mice.results_list = fits
    mice.exog_names, mice.endog_names, mice.model_class = ["c", "a", "b"], "y", sm.OLS
    ref = mice.combine()
    est = np.array([f.params for f in fits])
    se = np.array([f.bse for f in fits])
    r = rubin(est, se, np.full(est.shape, 37.0))
    np.testing.assert_allclose(r.estimate, ref.params, rtol=1e-12)
    np.testing.assert_allclose(r.se, np.sqrt(np.diag(ref.cov_params())), rtol=1e-12)
    # Barnard and Rubin (1999), written out
    M, nu = 7, 37.0
    B = est.var(axis=0, ddof=1)
    U = (se**2).mean(axis=0)
    T = U + (1 + 1 / M) * B
    gamma = (1 + 1 / M) * B / T
    np.testing.assert_allclose(gamma, ref.frac_miss_info, rtol=1e-12)
    nu_obs = (nu + 1) / (nu + 3) * nu * (1 - gamma)
    nu_old = (M - 1) / gamma**2
    np.testing.assert_allclose(r.df, 1 / (1 / nu_old + 1 / nu_obs), rtol=1e-12)
    np.testing.assert_allclose(r.p, 2 * stats.t.sf(np.abs(r.t), r.df), rtol=1e-9)
    # nothing imputed (B = 0): the complete-data analysis
    same = rubin(np.ones((5, 2)), np.full((5, 2), 0.3), np.full((5, 2), 20.0))
    assert np.all(same.df == 20.0) and np.all(same.fmi == 0.0)
    np.testing.assert_allclose(same.p, 2 * special.stdtr(20, -1 / 0.3), rtol=1e-12)


# ------------------------------------------------------------ one dataset: MI


@pytest.fixture(scope="module")
def visit_cohort():
    d = _design(mechanism="mnar", rate=0.25, strength=1.0, scores=True)
    c = simulate_cohort(d, rng=21)
    return c.participants, c.roi_md


def _completed_tables(participants, roi_md, imputations, seed):
    """The completed datasets of fit_models(missing='mi') (from the engine)."""
    from dtitool.stats.missing import _completed, _prepare
    from dtitool.tables import compute_changes

    ch = compute_changes(participants, roi_md)
    prep = _prepare(ch, None, ["madrs", "qids"], ("baseline",),
                    ch.attrs["trial_names"])
    x, y, _ = impute(prep.data, imputations=imputations,
                     rng=np.random.SeedSequence(seed))
    return [_completed(ch, prep, x[0, m], y[0, m]) for m in range(imputations)]


@pytest.mark.parametrize("inference", ["ols", "hc3"])
def test_mi_analysis_pools_statsmodels_fits_of_the_completed_data(visit_cohort,
                                                                  inference):
    p, r = visit_cohort
    res = fit_models(p, r, missing="mi", imputations=6, rng=8, inference=inference)
    done = _completed_tables(p, r, 6, 8)
    kw = {"cov_type": "HC3", "use_t": True} if inference == "hc3" else {}
    for roi, outcome in [("L_BA10", "madrs"), ("R_hippocampus", "qids")]:
        ests, ses, dfs = [], [], []
        for ch in done:
            sub = ch[ch["roi"] == roi]
            df = sub.assign(x=sub["d_md"] * 1e5, dy=sub[f"d_{outcome}"],
                            base=sub[f"{outcome}_baseline"])
            fit = smf.ols(f"dy ~ {GROUP} * x + base", df).fit(**kw)
            ct = fit.t_test(f"{GROUP}[T.ketamine]:x = 0")
            ests.append(float(ct.effect[0]))
            ses.append(float(np.asarray(ct.sd).ravel()[0]))
            dfs.append(fit.df_resid)
        want = rubin(ests, ses, dfs)
        row = res.term(roi, outcome, "interaction")
        assert row["n"] == 98 and row["n_imputed"] > 0
        np.testing.assert_allclose([row["estimate"], row["se"], row["df"], row["p"]],
                                   [want.estimate, want.se, want.df, want.p],
                                   rtol=1e-8)


def test_mi_without_missing_data_is_the_complete_case_analysis():
    c = simulate_cohort("ketamine-rct", rng=2)
    cc = fit_models(c.participants, c.roi_md)
    mi = fit_models(c.participants, c.roi_md, missing="mi", imputations=3, rng=1)
    for col in ("estimate", "se", "df", "p", "ci_low", "ci_high", "p_holm"):
        np.testing.assert_allclose(mi.table[col], cc.table[col], rtol=1e-12,
                                   err_msg=col)
    assert (mi.table["n_imputed"] == 0).all() and (mi.table["fmi"] == 0).all()


def test_every_analysis_says_who_was_left_out_and_why(visit_cohort):
    p, r = visit_cohort
    n_lost = int(p["madrs_24h"].isna().sum())
    cc = fit_models(p, r)
    assert set(RESULT_COLUMNS) <= set(cc.table.columns)
    assert (cc.table["n_dropped"] == n_lost).all()
    assert (cc.table["n"] == 98 - n_lost).all()
    assert cc.table["missing_reasons"].str.contains(f"no 24h scan {n_lost}").all()
    assert f"{n_lost} of 98 participants left out" in cc.summary()
    mi = fit_models(p, r, missing="mi", imputations=3, rng=1)
    assert (mi.table["n_imputed"] == n_lost).all() and (mi.table["n"] == 98).all()
    assert f"24h data of {n_lost} of 98 participants imputed" in mi.summary()
    # a participant without a baseline scan is left out of every MI model
    r2 = r[~((r["participant_id"] == "sub-001") & (r["session"] == "baseline")
             & (r["roi"] == "vACC"))]
    with pytest.warns(UserWarning, match="without a baseline scan"):
        mi2 = fit_models(p, r2, missing="mi", imputations=3, rng=1)
    assert (mi2.table["n_dropped"] == 1).all()
    assert "no baseline scan 1" in mi2.missing_summary


def test_mi_options_refused_clearly(visit_cohort):
    p, r = visit_cohort
    with pytest.raises(ValueError, match="missing must be one of complete-case, mi"):
        fit_models(p, r, missing="listwise")
    with pytest.raises(ValueError, match="imputations must be an integer >= 2"):
        fit_models(p, r, missing="mi", imputations=1)
    with pytest.raises(ValueError, match="custom formula is not supported"):
        fit_models(p, r, missing="mi", formula=f"d_score ~ {GROUP} * d_md")
    with pytest.raises(ValueError, match="familywise='maxt' is not supported"):
        fit_models(p, r, missing="mi", familywise="maxt")
    few = p.copy()
    saline = few.index[few["group"] == "saline"]
    few.loc[saline[:28], "madrs_24h"] = np.nan
    with pytest.raises(ValueError, match=r"cannot impute madrs change in the saline "
                       r"arm: 5 participants observed it.*6 coefficients"):
        fit_models(few, r, missing="mi")


# ------------------------------------------------------------------ tipping point


def test_tipping_point_delta_zero_is_the_mi_analysis(visit_cohort):
    """The grid's MAR point (every arm's delta 0) is the MI analysis; the grid
    itself, the SD units and the CLI are tested in tests/test_tipping_point.py."""
    p, r = visit_cohort
    tp = tipping_point(p, r, deltas=[-1, 1], imputations=5, rng=3, inference="ols")
    mi = fit_models(p, r, missing="mi", imputations=5, rng=3, inference="ols")
    zero = tp.table[(tp.table["delta_ketamine"] == 0)
                    & (tp.table["delta_saline"] == 0)].reset_index(drop=True)
    for col in ("estimate", "se", "df", "p"):
        np.testing.assert_array_equal(zero[col], mi.table[col], err_msg=col)
    assert (tp.table["n_imputed_scores"] == int(p["madrs_24h"].isna().sum())).all()
    assert "conclusion changes" in tp.summary()


def test_tipping_point_under_mnar_moves_toward_the_full_data():
    """Ratings lost by non-responders (MNAR; scans kept): MAR imputation
    understates their scores, so the ketamine-arm slope (positive, and the
    non-responders' dMD above the arm's mean) is too low at delta 0 and a
    positive delta, the direction the mechanism says, raises it toward the full
    data. Over 256 trials, band from the replicate count."""
    d = _design("ketamine-rct-face-value", mechanism="mnar", rate=0.3, strength=2.0)
    R, M = 256, 10
    a = simulate_arrays(d, rng=17, stop=R)
    from dtitool.stats.inference import model_arrays

    x, b, y, treated, observed = model_arrays(a)
    full = model_arrays(simulate_arrays(_design("ketamine-rct-face-value"), rng=17,
                                        stop=R))
    x = full[0]  # every scan kept; the ratings of the MNAR subjects lost
    y_lost = np.where(observed[..., None], y, np.nan)
    data = ImputationData(x=x, y=y_lost, b=b, md0=a.md[..., 0] / 1e-5,
                          treated=treated, use=np.ones(treated.shape, bool))
    _, Y, ok = impute(data, imputations=M, rng=2)
    assert ok.all()

    def slope(yy):  # ketamine slope of MADRS change on L_BA10 dMD, adjusting baseline
        ket = treated[:, None, :]
        xx = np.broadcast_to(x[:, None, :, 0], yy.shape)  # observed for everyone
        A = np.stack([np.ones_like(xx), xx, np.broadcast_to(b[:, None, :, 0],
                                                             yy.shape)], -1)
        A = np.where(ket[..., None], A, 0.0)
        G = np.einsum("...np,...nq->...pq", A, A)
        c = np.linalg.solve(G, np.einsum("...np,...n->...p", A,
                                         np.where(ket, yy, 0.0))[..., None])
        return c[..., 1, 0]

    lost = ~observed[:, None, :]
    truth = slope(y[:, None, :, 0])[:, 0]
    at = {dlt: slope(Y[..., 0, 0] + dlt * lost).mean(axis=1) for dlt in (0.0, 6.0)}
    z = _z(2)
    gap0 = at[0.0] - truth
    move = at[6.0] - at[0.0]
    assert gap0.mean() + z * gap0.std(ddof=1) / np.sqrt(R) < 0  # MAR: too low
    assert move.mean() - z * move.std(ddof=1) / np.sqrt(R) > 0  # delta > 0 raises it


# ------------------------------------------------------------ unbiased under MCAR


def _paired_bias_check(design, full_design, R, seed, tests):
    a = simulate_arrays(design, rng=seed, stop=R)
    f = batch_models(simulate_arrays(full_design, rng=seed, stop=R), "ols")
    mi, _ = batch_models_imputed(a, ("ols",), imputations=20, rng=seed + 1)
    diff = (mi["ols"].estimate - f.estimate)[..., :2]  # interaction, ketamine slope
    mean = diff.mean(axis=0)
    se = diff.std(axis=0, ddof=1) / np.sqrt(R)
    z = mean / se
    assert np.all(np.abs(z) < _z(tests)), np.round(z, 2)
    return mean, se


@pytest.mark.slow  # over 6 s: the default suite stays under 5 minutes
def test_mi_unbiased_under_mcar_lost_visits():
    """MCAR loss of whole 24 h visits (scans and ratings) at the trial's size:
    the pooled MI estimate of every interaction and ketamine-arm slope equals the
    full-data estimate of the same trials on average (paired over 1024 trials;
    Bonferroni band over the 28 terms at overall 99 %)."""
    full = load_preset("ketamine-rct-face-value")
    d = dataclasses.replace(full, missing=MissingSpec("mcar", 0.2, scores=True))
    _paired_bias_check(d, full, 1024, 31, 28)


@pytest.mark.slow
def test_mi_unbiased_under_mcar_lost_scans_large_trial():
    """MCAR loss of scans only: dMD is imputed given the observed scores, and the
    posterior draws add parameter uncertainty to the imputed covariate, which
    attenuates a slope by O(p / n) (2-3 % at the trial's size; docs/model.md,
    von Hippel 2016). At ten times the trial's size that is below the Monte
    Carlo band of 256 trials: the imputation is consistent."""
    full = load_preset("ketamine-rct-face-value").with_n(980)
    d = dataclasses.replace(full, missing=MissingSpec("mcar", 0.2))
    _paired_bias_check(d, full, 256, 41, 28)


# ------------------------------------------------------------------ power


def test_power_mi_invariant_to_chunks_and_workers():
    d = _design(mechanism="mnar", rate=0.2, strength=1.0, scores=True)
    kw = {"replicates": 128, "rng": 4, "missing": "mi", "imputations": 4,
          "design_analysis": False}
    a = power(d, chunk_size=64, **kw)
    b = power(d, chunk_size=128, n_jobs=2, **kw)
    pd.testing.assert_frame_equal(a.table, b.table)
    pd.testing.assert_frame_equal(a.familywise, b.familywise)
    assert a.missing == "mi" and a.imputations == 4
    assert 0 < a.mean_imputed < 98 and a.mean_n == 98
    assert (a.table["missing"] == "mi").all()


def test_power_mi_without_missing_data_equals_complete_case():
    d = load_preset("ketamine-rct")
    kw = {"replicates": 64, "rng": 5, "design_analysis": False}
    cc = power(d, **kw)
    mi = power(d, missing="mi", imputations=3, **kw)
    np.testing.assert_allclose(mi.table["power"], cc.table["power"])
    np.testing.assert_allclose(mi.table["mean_estimate"], cc.table["mean_estimate"],
                               rtol=1e-12)


def test_power_true_values_are_the_full_data_ones():
    d = _design(mechanism="mnar", rate=0.3, strength=2.0)
    a = power(d, replicates=64, rng=6, size=False)
    b = power(load_preset("ketamine-rct"), replicates=64, rng=6, size=False)
    np.testing.assert_array_equal(a.table["true_value"], b.table["true_value"])


# ------------------------------------------------------------------ design, CLI


def test_design_missing_scores_round_trip_and_tables(tmp_path):
    d = _design(mechanism="mcar", rate=0.3, scores=True)
    path = tmp_path / "d.toml"
    path.write_text(design_to_toml(d))
    assert read_design(path)[0].missing == d.missing
    assert "\nscores = " not in design_to_toml(load_preset("ketamine-rct"))
    c = simulate_cohort(d, rng=1)
    lost = c.arrays.observed_24h[0]
    assert c.participants["madrs_24h"].isna().to_numpy().tolist() == (~lost).tolist()
    with pytest.raises(TypeError, match=r"missing\.scores must be true or false"):
        MissingSpec("mcar", 0.2, scores="yes")


def test_cli_analyze_mi_and_tipping_point(visit_cohort, tmp_path, capsys):
    p, r = visit_cohort
    data = tmp_path / "data"
    data.mkdir()
    p.to_csv(data / "participants.tsv", sep="\t", index=False)
    r.to_csv(data / "roi_md.tsv", sep="\t", index=False)
    # real data: the schedule in visits.tsv, the control arm on the command line
    (data / "visits.tsv").write_text("visit\thours\tdose\tprimary\n"
                                     "baseline\t0\t\tfalse\n24h\t24\t\ttrue\n")
    out, tip = tmp_path / "res.tsv", tmp_path / "tip.tsv"
    rc = main(["analyze", str(data), "--out", str(out), "--missing", "mi",
               "--imputations", "4", "--seed", "3", "--tipping-point", str(tip),
               "--delta=-1,0,1", "--control", "saline"])
    assert rc == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    assert "missing data: multiple imputation, 4 imputations (seed 3)" in text
    assert "tipping point (interaction)" in text
    got = pd.read_csv(out, sep="\t")
    assert list(got.columns) == [*RESULT_COLUMNS, "fmi"]
    t = pd.read_csv(tip, sep="\t")
    assert sorted(t["delta_ketamine"].unique()) == [-1, 0, 1] and len(t) == 9 * 56
    zero = t[(t["delta_ketamine"] == 0)
             & (t["delta_saline"] == 0)].reset_index(drop=True)
    np.testing.assert_allclose(zero["p"], got["p"], rtol=1e-9)
    rc = main(["analyze", str(data), "--out", str(tmp_path / "x.tsv"),
               "--tipping-point", str(tmp_path / "t.tsv"), "--control", "saline"])
    assert rc == 2
    assert "needs --missing mi" in capsys.readouterr().err


def test_cli_power_missing_mi(tmp_path, capsys):
    design = tmp_path / "d.toml"
    design.write_text(design_to_toml(_design(mechanism="mcar", rate=0.2)))
    rc = main(["power", "--design", str(design), "--replicates", "64", "--seed", "1",
               "--missing", "mi", "--imputations", "3", "--out", str(tmp_path / "o")])
    assert rc == 0, capsys.readouterr().err
    text = capsys.readouterr().out
    assert "multiple imputation, 3 imputations per trial" in text
    t = pd.read_csv(tmp_path / "o" / "power.tsv", sep="\t")
    assert (t["missing"] == "mi").all()
    rc = main(["power", "--design", str(design), "--replicates", "64",
               "--missing", "mi", "--target-power", "0.8",
               "--out", str(tmp_path / "o2")])
    assert rc == 2
    assert "complete-case analyses only" in capsys.readouterr().err
