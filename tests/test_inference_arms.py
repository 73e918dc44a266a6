"""The batched engine for trials of any number of arms: engine = statsmodels.

Three- and four-arm data sets with unequal arm sizes and residual variances and
a masked subject per replicate are fitted by :func:`arm_statistics` /
:func:`fit_terms` and every term (interactions, arm slopes, pooled slope,
omnibus F) is checked against statsmodels: formula OLS with ``t_test`` and
``f_test`` (``ols``), the same with ``cov_type="HC3", use_t=True`` (``hc3``),
per-arm OLS fits, WLS with per-arm weights and Welch's ANOVA from
``statsmodels.stats.oneway.anova_generic`` (``welch``).
"""

import dataclasses
import types

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf
from scipy import stats
from statsmodels.stats.oneway import anova_generic

from dtitool.stats import power_engine as pw
from dtitool.stats.imputation import ImputationData, batch_models_imputed, d1, impute
from dtitool.stats.inference import (
    INFERENCE,
    TermLayout,
    arm_codes,
    arm_statistics,
    batch_models,
    fit_terms,
    model_arrays,
    models_from_statistics,
    permute_within_arms,
    term_layout,
    term_statistics,
)

J, K = 2, 2
GROUP = "C(group, Treatment('ctrl'))"


def _arm_names(k):
    return [f"a{a}" for a in range(k - 1)] + ["ctrl"]


def _trials(k, *, R=3, fixed_sizes=True, seed=0, grow=1):
    """Random trials: (x, b, y, codes, mask) with unequal arm sizes and SDs."""
    rng = np.random.default_rng(seed)
    sizes = (np.arange(k) * 3 + 9) * grow  # 9, 12, 15, ... times grow
    N = int(sizes.sum())
    if fixed_sizes:
        base = np.repeat(np.arange(k), sizes)
        codes = np.stack([rng.permutation(base) for _ in range(R)])
    else:
        codes = rng.integers(0, k, size=(R, N))
        codes[:, :k] = np.arange(k)  # every arm present
    codes = codes.astype(np.int8)
    sd = 1.0 + 1.5 * np.arange(k)[codes]  # residual SD grows with the arm code
    slope = np.linspace(-0.8, 0.6, k)[codes]
    x = rng.normal(size=(R, N, J)) * 1.3
    b = rng.normal(20.0, 5.0, size=(R, N, K))
    # the first ROI's dMD predicts the score changes, with a slope per arm
    y = (slope[..., None] * x[..., :1] + 0.3 * b + 2.0 * codes[..., None]
         + sd[..., None] * rng.normal(size=(R, N, K)))
    mask = np.ones((R, N), bool)
    mask[np.arange(R), rng.integers(0, N, R)] = False
    x[~mask] = np.nan  # a masked subject's dMD may be missing
    return x, b, y, codes, mask


def _frame(x, b, y, codes, mask, r, j, kk, k):
    use = mask[r]
    names = np.array(_arm_names(k))
    return pd.DataFrame({"d_score": y[r, use, kk], "x": x[r, use, j],
                         "baseline": b[r, use, kk], "group": names[codes[r, use]]})


def _inter(a):
    return f"{GROUP}[T.{a}]:x"


def _reference(df, k, inference):
    """estimate, se, df, p of every term (TrialNames.terms order) by statsmodels."""
    arms = _arm_names(k)
    if inference in ("ols", "hc3"):
        kw = {"cov_type": "HC3", "use_t": True} if inference == "hc3" else {}
        full = smf.ols(f"d_score ~ {GROUP} * x + baseline", df).fit(**kw)
        add = smf.ols(f"d_score ~ {GROUP} + x + baseline", df).fit(**kw)
        tests = ([full.t_test(f"{_inter(a)} = 0") for a in arms[:-1]]
                 + [full.t_test(f"x + {_inter(a)} = 0") for a in arms[:-1]]
                 + [full.t_test("x = 0"), add.t_test("x = 0")])
        names = list(full.params.index)
        L = np.zeros((k - 1, len(names)))
        for i, a in enumerate(arms[:-1]):
            L[i, names.index(_inter(a))] = 1.0
        f = full.f_test(L)
        est = [t.effect.item() for t in tests] + [float(np.squeeze(f.fvalue))]
        se = [t.sd.item() for t in tests] + [np.nan]
        dfs = [full.df_resid] * (2 * k - 1) + [add.df_resid, f.df_denom]
        p = [t.pvalue.item() for t in tests] + [float(f.pvalue)]
        assert f.df_num == k - 1
        return est, se, dfs, p
    # welch: separate per-arm fits
    fit = {g: smf.ols("d_score ~ x + baseline", df[df["group"] == g]).fit()
           for g in arms}
    bs = {g: fit[g].params["x"] for g in arms}
    vs = {g: fit[g].bse["x"] ** 2 for g in arms}
    ds = {g: fit[g].df_resid for g in arms}
    c = arms[-1]
    est = [bs[a] - bs[c] for a in arms[:-1]] + [bs[g] for g in arms]
    se = [np.sqrt(vs[a] + vs[c]) for a in arms[:-1]] + [np.sqrt(vs[g]) for g in arms]
    dfs = [(vs[a] + vs[c]) ** 2 / (vs[a] ** 2 / ds[a] + vs[c] ** 2 / ds[c])
           for a in arms[:-1]] + [ds[g] for g in arms]
    # pooled: WLS of the additive model with the arms' residual variances and
    # the Kenward-Roger term for the estimated weights
    s2 = {g: fit[g].scale for g in arms}
    w = df["group"].map({g: 1 / s2[g] for g in arms}).to_numpy()
    X = np.column_stack([np.ones(len(df))]
                        + [(df["group"] == a).to_numpy() for a in arms[:-1]]
                        + [df["x"], df["baseline"]]).astype(float)
    wls = sm.WLS(df["d_score"].to_numpy(), X, weights=w).fit()
    phi = np.linalg.inv(X.T @ (w[:, None] * X))
    cx = np.zeros(X.shape[1])
    cx[k] = 1.0
    var, parts = cx @ phi @ cx, []
    for g in arms:
        Xg = X[(df["group"] == g).to_numpy()]
        H = Xg.T @ Xg / s2[g]
        a = cx @ phi @ H @ phi @ cx
        var += 4 * (a - cx @ phi @ H @ phi @ H @ phi @ cx) / ds[g]
        parts.append((a, ds[g]))
    est.append(wls.params[k])
    se.append(np.sqrt(var))
    dfs.append(sum(a for a, _ in parts) ** 2 / sum(a * a / d for a, d in parts))
    p = [2 * stats.t.sf(abs(e / s), d) for e, s, d in zip(est, se, dfs, strict=True)]
    # omnibus: Welch's ANOVA of the arm slopes (nobs - 1 = the arm's residual df)
    nobs = np.array([ds[g] + 1.0 for g in arms])
    res = anova_generic(np.array([bs[g] for g in arms]),
                        np.array([vs[g] for g in arms]) * nobs, nobs,
                        use_var="unequal")
    est.append(res.statistic)
    se.append(np.nan)
    dfs.append(res.df_denom)
    p.append(res.pvalue)
    assert res.df_num == k - 1
    return est, se, dfs, p


@pytest.mark.parametrize("fixed_sizes", [True, False])
@pytest.mark.parametrize("k", [3, 4])
@pytest.mark.parametrize("inference", INFERENCE)
def test_every_term_matches_statsmodels(inference, k, fixed_sizes):
    x, b, y, codes, mask = _trials(k, fixed_sizes=fixed_sizes, seed=k)
    R = x.shape[0]
    st = arm_statistics(x, b, y, codes, mask, keep_values=inference == "hc3")
    assert st.n_arms == k
    est, se, df = fit_terms(st, inference)
    lay = term_layout(k)
    assert est.shape == (R, J, K, lay.size) == (R, J, K, 2 * k + 1)
    t, p = term_statistics(est, se, df, n_arms=k)
    for r in range(R):
        for j in range(J):
            for kk in range(K):
                ref = _reference(_frame(x, b, y, codes, mask, r, j, kk, k), k,
                                 inference)
                e_ref, se_ref, df_ref, p_ref = (np.array(v, float) for v in ref)
                np.testing.assert_allclose(est[r, j, kk], e_ref, rtol=1e-8)
                np.testing.assert_allclose(se[r, j, kk], se_ref, rtol=1e-8)
                np.testing.assert_allclose(df[r, j, kk], df_ref, rtol=1e-10)
                np.testing.assert_allclose(p[r, j, kk], p_ref, rtol=1e-8, atol=1e-12)
    assert np.isnan(se[..., lay.omnibus]).all() and np.isnan(t[..., lay.omnibus]).all()
    assert (est[..., lay.omnibus] > 0).all()
    bm = models_from_statistics(st, inference)
    assert bm.n_arms == k and bm.layout == lay
    np.testing.assert_array_equal(bm.p, p)
    np.testing.assert_array_equal(bm.n, mask.sum(axis=1))


@pytest.mark.parametrize("inference", INFERENCE)
def test_two_arms_from_codes_equal_the_boolean_input(inference):
    x, b, y, codes, mask = _trials(2, R=4, seed=7)
    keep = inference == "hc3"
    st_bool = arm_statistics(x, b, y, codes == 0, mask, keep_values=keep)
    st_code = arm_statistics(x, b, y, codes, mask, keep_values=keep)
    assert st_bool.n_arms == st_code.n_arms == 2
    a, c = fit_terms(st_bool, inference), fit_terms(st_code, inference)
    assert a[0].shape[-1] == 4
    for u, v in zip(a, c, strict=True):
        np.testing.assert_array_equal(u, v)
    ma = models_from_statistics(st_bool, inference)
    np.testing.assert_array_equal(ma.p, models_from_statistics(st_code, inference).p)
    # and the two-arm terms are statsmodels' (no omnibus row)
    ref = _reference(_frame(x, b, y, codes, mask, 1, 0, 1, 2), 2, inference)
    n_t = 4
    np.testing.assert_allclose(a[0][1, 0, 1], ref[0][:n_t], rtol=1e-8)
    np.testing.assert_allclose(ma.p[1, 0, 1], ref[3][:n_t], rtol=1e-8, atol=1e-12)


def test_contrast_covariance_is_the_wald_tests():
    """fit_terms(contrast_cov=True): the interactions' covariance, whose diagonal
    is their squared SE under every option."""
    x, b, y, codes, mask = _trials(4, seed=2)
    st = arm_statistics(x, b, y, codes, mask, keep_values=True)
    for inference in INFERENCE:
        est, se, _df, cov = fit_terms(st, inference, contrast_cov=True)
        assert cov.shape == (*est.shape[:-1], 3, 3)
        np.testing.assert_allclose(np.diagonal(cov, axis1=-2, axis2=-1),
                                   se[..., :3] ** 2, rtol=1e-10)
        np.testing.assert_allclose(cov, np.swapaxes(cov, -1, -2), rtol=1e-12)


@pytest.mark.parametrize("k", [2, 3])
def test_permutation_keeps_rows_within_their_arm(k):
    x, b, y, codes, mask = _trials(k, R=5, fixed_sizes=False, seed=11)
    st = arm_statistics(x, b, y, codes, mask, keep_values=True)
    rng = np.random.default_rng(1)
    keys = [rng.random((5, x.shape[1])) for _ in range(k)]
    pt = permute_within_arms(st, keys)
    moved = False
    for a in range(k):
        V0, V1, use = st.V[a], pt.V[a], st.use[a]
        for r in range(5):
            # the arm's used dMD rows are a permutation of its own rows
            rows0 = V0[r, use[r], :J]
            rows1 = V1[r, use[r], :J]
            np.testing.assert_array_equal(
                rows0[np.lexsort(rows0.T)], rows1[np.lexsort(rows1.T)])
            moved |= not np.array_equal(rows0, rows1)
            np.testing.assert_array_equal(V1[r, ~use[r]], 0.0)  # unused stay zero
        np.testing.assert_array_equal(V1[..., J:], V0[..., J:])  # scores stay
        np.testing.assert_allclose(pt.S[a], V1.transpose(0, 2, 1) @ V1, atol=1e-9)
    assert moved
    with pytest.raises(ValueError, match=f"keys has {k + 1} arrays but the trials "
                                         f"have {k} arms"):
        permute_within_arms(st, [*keys, keys[0]])


@pytest.mark.parametrize("inference", INFERENCE)
def test_fast_family_minima_with_the_omnibus(inference):
    """_family_minp_of_t (one p per family and term, from the largest |t| or F)
    equals the minimum of every test's p, the omnibus term included."""
    k = 3
    x, b, y, codes, mask = _trials(k, R=40, seed=5)
    st = arm_statistics(x, b, y, codes, mask, keep_values=True)
    T = term_layout(k).size
    built_in = []
    for t in range(T):
        idx = (np.arange(J)[:, None] * K + np.arange(K)[None, :]) * T + t
        built_in.append((f"term{t}", idx.ravel(), np.zeros(J * K, int),
                         np.arange(J * K)))
    mixed = np.array([(0 * K + 1) * T + 6, (1 * K + 0) * T + 6, (1 * K + 1) * T + 0,
                      (0 * K + 0) * T + 5])
    fams = (*built_in, ("mixed", mixed, np.zeros(4, int), np.arange(4)))
    spec = pw._Spec(alpha=0.05, families=fams, inference=inference)
    full = pw._family_minp(models_from_statistics(st, inference), spec)[0]
    fast = pw._family_minp_of_t(*fit_terms(st, inference), spec, n_arms=k)
    np.testing.assert_array_equal(fast, full)
    np.testing.assert_array_equal(
        pw._family_minp_of_t(*fit_terms(st, inference), spec), fast)  # from T
    assert np.isfinite(fast).all()


def test_permutation_keys_per_arm():
    ss = np.random.SeedSequence(3)
    two = pw._permutation_keys(ss, 0, 70, 2, 11)
    assert two.shape == (70, 2, 2, 11)
    np.testing.assert_array_equal(two, pw._permutation_keys(ss, 0, 70, 2, 11, arms=2))
    three = pw._permutation_keys(ss, 64, 70, 2, 11, arms=3)
    assert three.shape == (6, 2, 3, 11)
    np.testing.assert_array_equal(three, pw._permutation_keys(ss, 0, 70, 2, 11,
                                                              arms=3)[64:])


def _cohort(k, *, lost=0.0, seed=0, R=4, grow=1):
    """A CohortArrays look-alike (arm codes, primary visit 1) for batch models."""
    x, b, y, codes, _ = _trials(k, R=R, seed=seed, grow=grow)
    rng = np.random.default_rng(seed + 100)
    md0 = rng.normal(8.9e-4, 4e-5, size=(*x.shape, 1))
    md = np.concatenate([md0, md0 + np.nan_to_num(x)[..., None] * 1e-5], axis=-1)
    observed = rng.random(codes.shape) >= lost
    md[~observed, :, 1] = np.nan
    scores = np.stack([b, b + y], axis=-1)
    return types.SimpleNamespace(
        arm=codes, md=md, scores=scores, observed=observed, scored=None, primary=1,
        start=0, design=types.SimpleNamespace(arms=tuple(_arm_names(k))),
        roi_names=("r1", "r2"), outcome_names=("o1", "o2"))


@pytest.mark.parametrize("inference", INFERENCE)
def test_imputation_without_missing_data_is_the_complete_data_analysis(inference):
    arrays = _cohort(3)
    mi, imputed = batch_models_imputed(arrays, (inference,), imputations=3, rng=1)
    cc = batch_models(arrays, inference)
    assert (imputed == 0).all() and mi[inference].n_arms == cc.n_arms == 3
    np.testing.assert_array_equal(mi[inference].estimate, cc.estimate)
    for f in ("se", "df", "p"):  # means of M equal values: equal to rounding
        np.testing.assert_allclose(getattr(mi[inference], f), getattr(cc, f),
                                   rtol=1e-10)


def _wald_parts(df, k, inference):
    """Per completed dataset: interaction estimates, covariance, complete-data
    df and the divisor of the complete-data F (statsmodels)."""
    arms = _arm_names(k)
    if inference in ("ols", "hc3"):
        kw = {"cov_type": "HC3", "use_t": True} if inference == "hc3" else {}
        full = smf.ols(f"d_score ~ {GROUP} * x + baseline", df).fit(**kw)
        names = [_inter(a) for a in arms[:-1]]
        return (full.params[names].to_numpy(),
                full.cov_params().loc[names, names].to_numpy(), full.df_resid, 1.0)
    fit = {g: smf.ols("d_score ~ x + baseline", df[df["group"] == g]).fit()
           for g in arms}
    b = np.array([fit[g].params["x"] for g in arms])
    v = np.array([fit[g].bse["x"] ** 2 for g in arms])
    nobs = np.array([fit[g].df_resid + 1.0 for g in arms])
    welch = anova_generic(b, v * nobs, nobs, use_var="unequal")
    return (b[:-1] - b[-1], np.diag(v[:-1]) + v[-1], welch.df_denom,
            1 + 2 * (k - 2) / (3 * welch.df_denom))


@pytest.mark.parametrize("inference", INFERENCE)
def test_imputed_omnibus_is_pooled_by_d1(inference):
    """The omnibus of imputed trials is D1 (mitml) of the completed datasets'
    statsmodels fits (Welch's: divided by the mean of its F's divisor)."""
    k, M = 3, 6
    arrays = _cohort(k, lost=0.2, seed=4, R=6, grow=3)
    mi, imputed = batch_models_imputed(arrays, (inference,), imputations=M, rng=2)
    bm = mi[inference]
    o = bm.layout.omnibus
    assert imputed.sum() > 0
    assert np.isfinite(bm.estimate).all() and np.isfinite(bm.df).all()
    assert ((bm.p > 0) & (bm.p <= 1)).all() and np.isnan(bm.se[..., o]).all()
    np.testing.assert_allclose(bm.p[..., o],
                               stats.f.sf(bm.estimate[..., o], 2, bm.df[..., o]),
                               rtol=1e-10)
    # the same imputations, fitted one by one
    x, b, y, arm, mask = model_arrays(arrays)
    data = ImputationData(x=np.where(mask[..., None], x, np.nan), y=y, b=b,
                          md0=arrays.md[..., 0] / 1e-5, treated=arm,
                          use=np.ones(arm.shape, bool), n_arms=k)
    X, Y, ok = impute(data, imputations=M, rng=2, start=0)
    assert ok.all()
    names = np.array(_arm_names(k))
    for r, j, kk in ((0, 0, 0), (3, 1, 1), (5, 0, 1)):
        parts = [_wald_parts(pd.DataFrame({
            "d_score": Y[r, m, :, j, kk], "x": X[r, m, :, j], "baseline": b[r, :, kk],
            "group": names[arm[r]]}), k, inference) for m in range(M)]
        Q, U, nu, scale = (np.array(v) for v in zip(*parts, strict=True))
        F, df2 = _mitml_d1(Q, U, nu.mean())
        np.testing.assert_allclose(bm.estimate[r, j, kk, o], F / scale.mean(),
                                   rtol=1e-8)
        np.testing.assert_allclose(bm.df[r, j, kk, o], df2, rtol=1e-8)


def _mitml_d1(Q, U, df_com):
    """mitml::testModels(method = "D1", df.com =), transcribed for one test."""
    m, k = Q.shape
    Qbar, Ubar, B = Q.mean(0), U.mean(0), np.cov(Q.T)
    r = (1 + 1 / m) * np.trace(B @ np.linalg.inv(Ubar)) / k
    val = Qbar @ np.linalg.solve((1 + r) * Ubar, Qbar) / k
    t = k * (m - 1)
    a = r * t / (t - 2)
    vstar = (df_com + 1) / (df_com + 3) * df_com
    v = 4 + ((vstar - 4 * (1 + a)) ** -1 + (t - 4) ** -1 * (
        (a**2 * (vstar - 2 * (1 + a))) / ((1 + a) ** 2 * (vstar - 4 * (1 + a))))) ** -1
    return val, v


def test_d1_is_mitml():
    rng = np.random.default_rng(8)
    M, q = 7, 3
    Q = rng.normal(size=(M, 5, q))
    A = rng.normal(size=(M, 5, q, q))
    U = A @ np.swapaxes(A, -1, -2) / q + np.eye(q)
    F, df1, df2 = d1(Q, U, np.full((M, 5), 45.0))
    assert (df1 == q).all()
    for i in range(5):
        np.testing.assert_allclose((F[i], df2[i]), _mitml_d1(Q[:, i], U[:, i], 45.0),
                                   rtol=1e-12)
    same = d1(np.broadcast_to(Q[:1], Q.shape), U, np.full((M, 5), 45.0))
    np.testing.assert_array_equal(same[2], 45.0)  # B = 0: the complete-data df
    with pytest.raises(ValueError, match="two or more imputations; got 1"):
        d1(Q[:1], U[:1], np.full((1, 5), 45.0))


def test_layout_and_arm_codes_refuse_bad_input():
    assert TermLayout.of_size(4) == term_layout(2)
    assert TermLayout.of_size(9) == term_layout(4)
    with pytest.raises(ValueError, match="6 terms is no trial's layout"):
        TermLayout.of_size(6)
    assert TermLayout.of_size(2) == term_layout(1)  # a single-arm course
    assert term_layout(1).size == 2 and term_layout(1).omnibus is None
    with pytest.raises(ValueError, match=r"n_arms must be a positive integer.*got 0"):
        term_layout(0)
    codes, k = arm_codes(np.array([[True, False]]))
    assert k == 2 and codes.tolist() == [[0, 1]]
    with pytest.raises(ValueError, match=r"arm codes must be in 0\.\.2 \(n_arms = 3\)"):
        arm_codes(np.array([[0, 3]]), 3)
    with pytest.raises(ValueError, match="boolean arm array gives two arms"):
        arm_codes(np.array([[True]]), 3)
    with pytest.raises(TypeError, match=r"boolean .* or integer arm codes; got dtype "
                                        r"float64"):
        arm_codes(np.array([[0.0, 1.0]]))
    with pytest.raises(ValueError, match=r"arm has shape \(2,\); expected \(1, 2\)"):
        arm_codes(np.array([0, 1]), shape=(1, 2))
    x, b, y, codes, mask = _trials(3, R=2)
    with pytest.raises(ValueError, match="estimate has 7 terms but a trial of 4"):
        term_statistics(*fit_terms(arm_statistics(x, b, y, codes, mask), "ols"),
                        n_arms=4)


def test_fit_is_deterministic_and_masked_subject_is_in_no_model():
    x, b, y, codes, mask = _trials(3, seed=9)
    st = arm_statistics(x, b, y, codes, mask, keep_values=True)
    again = arm_statistics(x, b, y, codes, mask, keep_values=True)
    for inference in INFERENCE:
        for u, v in zip(fit_terms(st, inference), fit_terms(again, inference),
                        strict=True):
            np.testing.assert_array_equal(u, v)
    # changing the masked subject's values changes nothing
    x2, y2 = x.copy(), y.copy()
    x2[~mask] = 1e3
    y2[~mask] = -1e3
    st2 = arm_statistics(x2, b, y2, codes, mask, keep_values=True)
    for inference in INFERENCE:
        np.testing.assert_allclose(fit_terms(st2, inference)[0],
                                   fit_terms(st, inference)[0], rtol=1e-10)


def test_cohort_arrays_with_the_older_field_names():
    """model_arrays reads treated / observed_24h when arm / observed are absent."""
    arrays = _cohort(2, lost=0.1, seed=3)
    old = types.SimpleNamespace(**{
        k: v for k, v in vars(arrays).items()
        if k not in ("arm", "observed", "primary", "scored", "design")})
    old.treated = arrays.arm == 0
    old.observed_24h = arrays.observed
    for inference in INFERENCE:
        a, c = batch_models(arrays, inference), batch_models(old, inference)
        for f in ("estimate", "se", "df", "p", "n"):
            np.testing.assert_array_equal(getattr(a, f), getattr(c, f))
    assert dataclasses.is_dataclass(a)


def _nominal_band(R, tests, level=0.999):
    """Two-sided binomial band of a rejection rate, Bonferroni over ``tests``."""
    q = (1 - level) / tests / 2
    return stats.binom.ppf(q, R, 0.05) / R, stats.binom.isf(q, R, 0.05) / R


@pytest.mark.parametrize("k", [3, 4])
def test_welch_interactions_and_omnibus_keep_their_level(k):
    """Equal slopes, arm SDs 1 to 5.5 and unequal arm sizes: Welch's tests of
    the slopes' differences reject at their nominal rate (bands from R)."""
    R = 4000
    x, b, _y, codes, mask = _trials(k, R=R, seed=21, grow=2)
    rng = np.random.default_rng(k)
    y = (0.3 * b + 0.5 * np.nan_to_num(x[..., :1])
         + (1.0 + 1.5 * codes[..., None]) * rng.normal(size=b.shape))
    bm = models_from_statistics(arm_statistics(x, b, y, codes, mask), "welch")
    lay = bm.layout
    cols = [*lay.interactions, lay.omnibus]
    rate = (bm.p[..., cols] <= 0.05).mean(axis=0)
    lo, hi = _nominal_band(R, rate.size)
    assert ((rate >= lo) & (rate <= hi)).all(), rate
