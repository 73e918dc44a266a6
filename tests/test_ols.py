import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
import statsmodels.formula.api as smf

from dtitool.stats.ols import ols_batch, ols_from_crossproducts

INTERACTION = [0, 0, 0, 1, 0]
SLOPE_KETAMINE = [0, 0, 1, 1, 0]
SLOPE_SALINE = [0, 0, 1, 0, 0]


def _data(R=40, N=60, seed=0, missing=0.1):
    """Tiny replicate datasets of the interaction model (not the simulator)."""
    rng = np.random.default_rng(seed)
    g = (rng.random((R, N)) < 2 / 3).astype(float)
    x = rng.normal(-1, 3, (R, N))
    b = np.rint(rng.normal(31, 6, (R, N)))
    y = -5 - 8 * g + 0.5 * x + 0.4 * g * x - 0.2 * b + rng.normal(0, 7, (R, N))
    X = np.stack([np.ones((R, N)), g, x, g * x, b], axis=-1)
    mask = rng.random((R, N)) >= missing
    return X, y, mask


@pytest.mark.parametrize("missing", [0.1, 0.0])  # masked path; complete-data path
def test_matches_statsmodels_arrays_with_mask(missing):
    X, y, mask = _data(missing=missing)
    assert mask.all() == (missing == 0)
    y = np.where(mask, y, np.nan)  # masked rows may hold NaN
    fit = ols_batch(X, y, mask=mask)
    cons = {
        tuple(c): fit.contrast(c) for c in (INTERACTION, SLOPE_KETAMINE, SLOPE_SALINE)
    }
    for r in range(X.shape[0]):
        m = mask[r]
        res = sm.OLS(y[r, m], X[r, m]).fit()
        np.testing.assert_allclose(fit.coef[r], res.params, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(fit.bse[r], res.bse, rtol=1e-9)
        np.testing.assert_allclose(fit.pvalues[r], res.pvalues, rtol=0, atol=1e-8)
        assert fit.df_resid[r] == res.df_resid == m.sum() - 5
        for c, cr in cons.items():
            tt = res.t_test(np.array(c, float))
            assert abs(cr.p[r] - tt.pvalue) < 1e-8
            np.testing.assert_allclose(cr.estimate[r], tt.effect.item(), rtol=1e-9)
            np.testing.assert_allclose(cr.se[r], tt.sd.item(), rtol=1e-9)
            lo, hi = tt.conf_int()[0]
            np.testing.assert_allclose(
                [cr.ci_low[r], cr.ci_high[r]], [lo, hi], rtol=1e-8
            )


def test_matches_statsmodels_formula_api_on_sampled_replicates():
    X, y, mask = _data(R=30, seed=3)
    fit = ols_batch(X, y, mask=mask)
    inter = fit.contrast(INTERACTION)
    slope_k = fit.contrast(SLOPE_KETAMINE)
    add = ols_batch(X[..., [0, 1, 2, 4]], y, mask=mask).contrast([0, 0, 1, 0])
    for r in np.random.default_rng(1).choice(30, size=5, replace=False):
        m = mask[r]
        df = pd.DataFrame(
            {
                "d_score": y[r, m],
                "group": np.where(X[r, m, 1] == 1, "ketamine", "saline"),
                "x": X[r, m, 2],
                "madrs_baseline": X[r, m, 4],
            }
        )
        res = smf.ols(
            "d_score ~ C(group, Treatment('saline')) * x + madrs_baseline", df
        ).fit()
        name = "C(group, Treatment('saline'))[T.ketamine]:x"
        assert abs(res.pvalues[name] - inter.p[r]) < 1e-8
        tt = res.t_test(f"x + {name} = 0")
        assert abs(tt.pvalue - slope_k.p[r]) < 1e-8
        res_add = smf.ols(
            "d_score ~ C(group, Treatment('saline')) + x + madrs_baseline", df
        ).fit()
        assert abs(res_add.pvalues["x"] - add.p[r]) < 1e-8
        np.testing.assert_allclose(res_add.params["x"], add.estimate[r], rtol=1e-9)


def test_crossproducts_path_matches():
    X, y, mask = _data(R=20, seed=5)
    fit = ols_batch(X, y, mask=mask)
    Xw = np.where(mask[..., None], X, 0.0)
    yw = np.where(mask, y, 0.0)
    fit2 = ols_from_crossproducts(
        np.einsum("rni,rnj->rij", Xw, Xw),
        np.einsum("rni,rn->ri", Xw, yw),
        np.einsum("rn,rn->r", yw, yw),
        mask.sum(1),
    )
    np.testing.assert_allclose(fit2.coef, fit.coef, rtol=1e-9)
    np.testing.assert_allclose(fit2.pvalues, fit.pvalues, atol=1e-9)


def test_rank_deficient_replicate_is_nan_others_unaffected():
    X, y, mask = _data(R=4, seed=2, missing=0.0)
    X = X.copy()
    X[1, :, 1] = 1.0  # everybody in one arm: group column == intercept
    X[1, :, 3] = X[1, :, 2]
    X[2, :, 4] = 2.0 * X[2, :, 2] + 3.0  # baseline collinear with x and intercept
    fit = ols_batch(X, y, mask=mask)
    assert fit.full_rank.tolist() == [True, False, False, True]
    assert np.all(np.isnan(fit.coef[1:3]))
    assert np.all(np.isnan(fit.pvalues[1:3]))
    assert np.all(np.isnan(fit.contrast(SLOPE_KETAMINE).p[1:3]))
    ref = sm.OLS(y[3], X[3]).fit()
    np.testing.assert_allclose(fit.pvalues[3], ref.pvalues, atol=1e-10)


def test_too_few_rows_gives_nan_not_garbage():
    X, y, mask = _data(R=2, N=12, seed=4, missing=0.0)
    mask = mask.copy()
    mask[0, 5:] = False  # 5 rows, 5 coefficients: no residual df
    fit = ols_batch(X, y, mask=mask)
    assert fit.df_resid.tolist() == [0, 7]
    assert np.isnan(fit.pvalues[0]).all()
    assert np.isfinite(fit.pvalues[1]).all()


def test_default_mask_drops_nonfinite_rows_and_shared_design():
    X, y, _ = _data(R=3, seed=6, missing=0.0)
    y = y.copy()
    y[0, :4] = np.nan
    fit = ols_batch(X, y)
    assert fit.n_obs.tolist() == [56, 60, 60]
    fit2 = ols_batch(X[0], y[1:])  # one design for all replicates
    ref = sm.OLS(y[1], X[0]).fit()
    np.testing.assert_allclose(fit2.pvalues[0], ref.pvalues, atol=1e-10)


def test_chunk_size_does_not_change_results():
    X, y, mask = _data(R=50, seed=7)
    a = ols_batch(X, y, mask=mask, chunk_size=7)
    b = ols_batch(X, y, mask=mask)
    np.testing.assert_array_equal(a.coef, b.coef)
    np.testing.assert_array_equal(a.contrast(INTERACTION).p, b.contrast(INTERACTION).p)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"X": np.ones((3, 10, 2)), "y": np.ones((3, 9))}, "X has shape"),
        ({"X": np.ones((3, 10, 2)), "y": np.ones(10)}, "y must have shape"),
        (
            {
                "X": np.ones((3, 10, 2)),
                "y": np.ones((3, 10)),
                "mask": np.ones((3, 9), bool),
            },
            "mask has shape",
        ),
        (
            {"X": np.ones((3, 10, 2)), "y": np.ones((3, 10)), "mask": np.ones((3, 10))},
            "mask must be boolean",
        ),
        (
            {"X": np.ones((3, 10, 2)), "y": np.ones((3, 10)), "chunk_size": 0},
            "chunk_size",
        ),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ols_batch(**kwargs)


def test_bad_contrast():
    X, y, mask = _data(R=2)
    fit = ols_batch(X, y, mask=mask)
    with pytest.raises(ValueError, match="contrast has shape"):
        fit.contrast([0, 1])
    with pytest.raises(ValueError, match="alpha"):
        fit.contrast(INTERACTION, alpha=1.5)


@pytest.mark.parametrize("df", [1, 2, 3, 10, 93, 94, 400])
def test_two_sided_p_series_matches_stdtr(df):
    from scipy import special

    from dtitool.stats.ols import two_sided_p

    t = np.r_[np.linspace(-60, 60, 4001), 0.0, np.inf, -np.inf, np.nan]
    ref = 2 * special.stdtr(df, -np.abs(t))
    got = two_sided_p(t, df)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_allclose(got, ref, rtol=1e-8, atol=1e-12)
