"""The batched REML engine for linear mixed models (dtitool.stats.lmm).

Cross-checked against independent implementations:

- the REML criterion against a brute-force dense computation (T x T
  covariance per participant) and against R's lme4 (the criterion at R's theta
  equals R's REMLcrit);
- its analytic gradient and Hessian against finite differences;
- the fits against statsmodels' MixedLM (REML), started from the simulation's
  true parameters and run with BFGS to ``gtol = 1e-10`` so that its answer is
  accurate (from its own default start statsmodels stops short or fails on a
  sizable fraction of these datasets: tests/benchmarks/bench_lmm.py and the
  slow test compare against that independent start as well, on 500 trials);
- Satterthwaite and Kenward-Roger degrees of freedom, SEs and p-values against
  R's lmerTest and pbkrtest, stored in tests/data/lmm/reference.json by
  tests/data/lmm/make_reference.py (``test_r_live`` reruns R when it is there).

Standard errors: ``LMMFit.cov`` is ``sigma^2 (X'V^{-1}X)^{-1}``, lme4's
``vcov`` (what lmerTest tests with). statsmodels' ``bse_fe`` inverts its joint
observed information of fixed effects and variance parameters, whose
off-diagonal block is not zero away from expectation, so it differs from lme4's
by 0.1-4 % on these data; the SEs are therefore compared with
``sigma^2 (X'V^{-1}X)^{-1}`` computed densely at statsmodels' estimates.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from dtitool.stats import lmm
from dtitool.stats.lmm import (
    LMMFit,
    contrast_tests,
    fit_lmm,
    kenward_roger,
    reml_loglik,
    satterthwaite,
)

DATA = Path(__file__).resolve().parent / "data" / "lmm"
sys.path.insert(0, str(DATA))
import make_reference  # noqa: E402

SESSIONS = (0, 1, 6, 12, 12)
HOURS = (0, 2, 336, 672, 2856)
BETA = (0.5, 0.2, 0.02, -0.03, 0.1, 0.05)  # intercept, arm, time, arm:time, age, sex


# ------------------------------------------------------------------ helpers


def trial_design(n_per_arm=40, times=SESSIONS, seed=0):
    """X (N, T, 6): intercept, arm, time, arm:time, age (standardised), sex;
    Z (N, T, 2): intercept, time. Two arms (e.g. ECT and healthy controls)."""
    rng = np.random.default_rng(seed)
    N = 2 * n_per_arm
    t = np.asarray(times, dtype=float)
    T = t.size
    arm = np.repeat([0.0, 1.0], n_per_arm)
    age = (rng.normal(45, 12, N) - 45) / 12
    sex = rng.integers(0, 2, N).astype(float)
    tt = np.broadcast_to(t, (N, T))
    X = np.stack([np.ones((N, T)), np.repeat(arm[:, None], T, 1), tt,
                  arm[:, None] * tt, np.repeat(age[:, None], T, 1),
                  np.repeat(sex[:, None], T, 1)], axis=-1)
    return X, X[..., [0, 2]].copy()


def simulate(X, Z, B, rng, *, sd=(1.0, 0.08), rho=-0.3, sigma=0.6, missing=0.05,
             beta=BETA):
    """B replicate outcomes (B, N, T) of the random-slope model, NaN missing."""
    rng = np.random.default_rng(rng)
    N, T, _ = Z.shape
    u0 = sd[0] * rng.normal(size=(B, N))
    u1 = sd[1] * (rho * u0 / sd[0] + np.sqrt(1 - rho**2) * rng.normal(size=(B, N)))
    u = np.stack([u0, u1], axis=-1)
    y = (X @ np.asarray(beta) + np.einsum("ntq,bnq->bnt", Z, u)
         + sigma * rng.normal(size=(B, N, T)))
    y[rng.random((B, N, T)) < missing] = np.nan
    return y


def true_start(sd, rho, sigma):
    """statsmodels' start: the simulation's covariance relative to sigma^2."""
    G = np.array([[sd[0] ** 2, rho * sd[0] * sd[1]], [rho * sd[0] * sd[1], sd[1] ** 2]])
    return G / sigma**2


def statsmodels_fit(yb, X, Z, *, start_cov=None, polish=True):
    """statsmodels MixedLM (REML) of one dataset, with tight convergence.

    ``start_cov`` (relative to the residual variance) starts it there;
    otherwise it starts from its default and, with ``polish``, is refitted from
    its own answer. Either way the last fit is BFGS with ``gtol = 1e-10``.
    """
    from statsmodels.regression.mixed_linear_model import MixedLM, MixedLMParams

    m = ~np.isnan(yb)
    N, T = yb.shape
    groups = np.repeat(np.arange(N), T).reshape(N, T)[m]
    model = MixedLM(yb[m], X[m], groups, exog_re=Z[m])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if start_cov is None:
            res = model.fit(reml=True)
            if not polish:
                return res
            start = res.params_object
        else:
            start = MixedLMParams.from_components(
                fe_params=np.zeros(X.shape[-1]), cov_re=start_cov)
        return model.fit(reml=True, start_params=start, method=["bfgs", "lbfgs"],
                         gtol=1e-10, maxiter=1000)


def dense_vcov(yb, X, Z, G, sigma2):
    """sigma^2 (X'V^{-1}X)^{-1} computed densely, participant by participant."""
    C = 0.0
    for i in range(yb.shape[0]):
        m = ~np.isnan(yb[i])
        if m.any():
            Xi, Zi = X[i][m], Z[i][m]
            V = sigma2 * np.eye(m.sum()) + Zi @ G @ Zi.T
            C = C + Xi.T @ np.linalg.solve(V, Xi)
    return np.linalg.inv(C)


def dense_deviance(theta, yb, X, Z):
    """-2 REML log-likelihood, brute force with the T x T V_i."""
    q = Z.shape[-1]
    Lam = np.zeros((q, q))
    Lam[np.triu_indices(q)[::-1]] = theta
    D = Lam @ Lam.T
    logdet, C, Xvy, yvy = 0.0, 0.0, 0.0, 0.0
    for i in range(yb.shape[0]):
        m = ~np.isnan(yb[i])
        if not m.any():
            continue
        Xi, Zi, yi = X[i][m], Z[i][m], yb[i][m]
        V = np.eye(m.sum()) + Zi @ D @ Zi.T
        Vi = np.linalg.inv(V)
        logdet += np.linalg.slogdet(V)[1]
        C = C + Xi.T @ Vi @ Xi
        Xvy = Xvy + Xi.T @ Vi @ yi
        yvy += yi @ Vi @ yi
    b = np.linalg.solve(C, Xvy)
    r2 = yvy - b @ Xvy
    n, p = int((~np.isnan(yb)).sum()), X.shape[-1]
    return (logdet + np.linalg.slogdet(C)[1]
            + (n - p) * (1 + np.log(2 * np.pi * r2 / (n - p))))


def rel(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    return np.max(np.abs(a - b) / np.abs(b))


# ------------------------------------------------------ the criterion itself


@pytest.mark.parametrize("q", [1, 2, 3])
def test_deviance_equals_dense_computation(q):
    X, Z2 = trial_design(n_per_arm=6, seed=1)
    Z = np.concatenate([Z2, (Z2[..., 1:] / 12) ** 2], axis=-1)[..., :q]
    y = simulate(X, Z2, 3, 2, missing=0.2)
    y[0, 4] = np.nan  # a participant with no observation at all
    rng = np.random.default_rng(3)
    theta = rng.uniform(0.05, 1.5, (3, q * (q + 1) // 2))
    got = -2 * reml_loglik(theta, y, X, Z)
    want = [dense_deviance(theta[b], y[b], X, Z) for b in range(3)]
    np.testing.assert_allclose(got, want, rtol=1e-11)


def test_gradient_and_hessian_match_finite_differences():
    X, Z = trial_design(n_per_arm=8, seed=4)
    y = simulate(X, Z, 4, 5, missing=0.1)
    mask = ~np.isnan(y)
    st = lmm._stats(y, X[None], Z[None], mask)
    theta = np.array([[1.5, 0.03, 0.2], [0.8, -0.05, 0.1], [2.0, 0.0, 0.05],
                      [1.0, 0.1, 0.3]])
    ev = lmm._evaluate(st, theta, 2)
    h = 1e-6
    for k in range(3):
        e = np.zeros(3)
        e[k] = h
        fd_g = (lmm._evaluate(st, theta + e, 0)["f"]
                - lmm._evaluate(st, theta - e, 0)["f"]) / (2 * h)
        fd_h = (lmm._evaluate(st, theta + e, 1)["grad"]
                - lmm._evaluate(st, theta - e, 1)["grad"]) / (2 * h)
        np.testing.assert_allclose(ev["grad"][:, k], fd_g, rtol=1e-6, atol=1e-5)
        np.testing.assert_allclose(ev["hess"][:, k], fd_h, rtol=1e-6, atol=1e-4)


# ------------------------------------------------------------- statsmodels


# over 7 s: the default suite stays under 5 minutes (the R fixtures check the
# engine there; tests/test_lmm_slow.py runs 500 statsmodels trials)
@pytest.mark.slow
def test_matches_statsmodels_mixedlm():
    """25 trials of 80 participants (40 per arm), 5 visits, 5 % missing.

    (500 from statsmodels' own start: tests/test_lmm_slow.py, marked slow.)
    """
    sd, rho, sigma = (1.0, 0.08), -0.3, 0.6
    X, Z = trial_design(seed=10)
    y = simulate(X, Z, 25, 11, sd=sd, rho=rho, sigma=sigma)
    fit = fit_lmm(y, X, Z)
    assert fit.converged.all()
    interior = 0
    for b in range(y.shape[0]):
        res = statsmodels_fit(y[b], X, Z, start_cov=true_start(sd, rho, sigma))
        # Ours is at least as high, whoever stopped where.
        assert fit.reml_loglik[b] >= res.llf - 1e-8
        if not res.converged or fit.singular[b]:
            continue
        interior += 1
        assert rel(fit.beta[b], res.fe_params) < 1e-6
        se = np.sqrt(np.diag(dense_vcov(y[b], X, Z, res.cov_re, res.scale)))
        assert rel(fit.bse[b], se) < 1e-6
        assert np.max(np.abs(fit.G[b] - res.cov_re)) / np.max(np.abs(res.cov_re)) < 1e-4
        assert rel(fit.sigma2[b], res.scale) < 1e-4
        assert abs(fit.reml_loglik[b] - res.llf) < 1e-6
        assert fit.n_obs[b] == int(res.model.nobs)
    assert interior >= 22


def test_hours_and_weeks_give_the_same_model():
    """Time in hours (slope variances ~1e-7) is fitted as well as in weeks."""
    Xh, Zh = trial_design(n_per_arm=20, times=HOURS, seed=12)
    s = 1 / 168
    y = simulate(Xh, Zh, 30, 13, sd=(1.0, 0.08 * s * 2),
                 beta=(0.5, 0.2, 0.02 * s, -0.03 * s, 0.1, 0.05))
    scale_x = np.array([1, 1, s, s, 1, 1])
    fh = fit_lmm(y, Xh, Zh)
    fw = fit_lmm(y, Xh * scale_x, Zh * [1, s])
    assert fh.converged.all() and fw.converged.all()
    np.testing.assert_allclose(fh.beta, fw.beta * scale_x, rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(fh.sigma2, fw.sigma2, rtol=1e-7)
    S = np.diag([1, s])
    np.testing.assert_allclose(fh.G, S @ fw.G @ S, rtol=1e-6, atol=1e-14)
    # log|X'V^{-1}X| moves by 2 log|S_X|: two columns scaled by 1/168
    np.testing.assert_allclose(-2 * fh.reml_loglik, -2 * fw.reml_loglik
                               + 4 * np.log(168), rtol=1e-10)
    # and statsmodels, fitted in weeks, agrees with the fit in hours
    for b in range(3):
        res = statsmodels_fit(y[b], Xh * scale_x, Zh * [1, s],
                              start_cov=true_start((1.0, 0.08 * 2), -0.3, 0.6))
        assert rel(fh.beta[b], res.fe_params * scale_x) < 1e-6
        assert rel(fh.sigma2[b], res.scale) < 1e-4


# ------------------------------------------------------------------ R fixture


REFERENCE = json.loads((DATA / "reference.json").read_text(encoding="utf-8"))


def _check_against_r(name, r, folder):
    d = make_reference.read_dataset(folder, name)
    y, X, Z, L = d["y"], d["X"], d["Z"], d["L"]
    fit = fit_lmm(y, X, Z)
    assert fit.converged[0]
    assert fit.singular[0] == r["singular"]
    assert fit.n_obs[0] == r["n_obs"]
    # The criterion is lme4's: at R's theta it is R's REMLcrit, and ours is no
    # higher (R's bobyqa stops a little short when a theta is ~1e-4).
    theta_r = np.atleast_1d(r["theta"])
    assert abs(-2 * reml_loglik(theta_r, y, X, Z)[0] - r["reml_criterion"]) < 1e-9
    assert -2 * fit.reml_loglik[0] <= r["reml_criterion"] + 1e-9
    np.testing.assert_allclose(fit.theta[0], theta_r, rtol=0,
                               atol=2e-5 * np.abs(theta_r).max())
    assert rel(fit.beta[0], r["beta"]) < 1e-5
    assert rel(fit.bse[0], np.sqrt(np.diag(r["vcov"]))) < 1e-5
    assert rel(np.sqrt(fit.sigma2[0]), r["sigma"]) < 1e-5
    sat = satterthwaite(fit, y, X, Z, None, L)[0]
    cov_kr, df_kr = kenward_roger(fit, y, X, Z, None, L)
    s_ref, k_ref = ({k: np.array([c[k] for c in r[m]]) for k in r[m][0]}
                    for m in ("satterthwaite", "kenward_roger"))
    assert rel(sat, s_ref["df"]) < 1e-4
    assert rel(df_kr[0], k_ref["df"]) < 1e-4
    assert rel(cov_kr[0], np.array(r["vcov_adj"])) < 1e-4 or np.allclose(
        cov_kr[0], r["vcov_adj"], rtol=1e-4, atol=1e-6 * np.abs(cov_kr[0]).max())
    ts = contrast_tests(fit, L, sat[None])
    tk = contrast_tests(fit, L, df_kr, cov=cov_kr)
    for got, ref in ((ts, s_ref), (tk, k_ref)):
        assert rel(got["estimate"][0], ref["estimate"]) < 1e-5
        assert rel(got["se"][0], ref["se"]) < 1e-5
        np.testing.assert_allclose(got["p"][0], ref["p"], rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("name", sorted(REFERENCE["datasets"]))
def test_matches_r_lmertest_and_pbkrtest(name):
    _check_against_r(name, REFERENCE["datasets"][name], DATA / "datasets")


def test_reference_fixture_covers_the_cases():
    ds = REFERENCE["datasets"]
    assert {len(np.atleast_1d(r["theta"])) for r in ds.values()} == {1, 3, 6}
    assert any(r["singular"] for r in ds.values())
    assert not all(r["singular"] for r in ds.values())


def test_r_live(tmp_path):
    """Rerun R on freshly written datasets (skipped without R and its packages)."""
    if not make_reference.r_available():
        pytest.skip("Rscript with lme4, lmerTest, pbkrtest and jsonlite not found")
    ref = make_reference.run_r(tmp_path)
    for name, r in ref["datasets"].items():
        _check_against_r(name, r, tmp_path)


def test_balanced_random_intercept_has_the_classical_df():
    """Balanced split-plot: Satterthwaite (and KR) df are those of the ANOVA:
    N - 4 for the between-participant age and sex effects, N (T - 1) - 2 for
    the within-participant time and arm:time."""
    X, Z = trial_design(n_per_arm=7, seed=20)
    y = simulate(X, Z, 5, 21, sd=(1.0, 0.0), missing=0.0)
    fit = fit_lmm(y, X, Z[..., :1])
    assert fit.converged.all() and not fit.singular.any()
    L = np.eye(6)[[2, 3, 4, 5]]
    N, T = 14, 5
    want = [N * (T - 1) - 2] * 2 + [N - 4] * 2
    sat = satterthwaite(fit, y, X, Z[..., :1], None, L)
    np.testing.assert_allclose(sat, np.broadcast_to(want, sat.shape), rtol=1e-7)
    _, kr = kenward_roger(fit, y, X, Z[..., :1], None, L)
    np.testing.assert_allclose(kr, np.broadcast_to(want, sat.shape), rtol=1e-7)


# ----------------------------------------------------------------- boundary


@pytest.mark.slow  # 2.5-4 s: the default suite stays under 5 minutes
def test_no_slope_variance_gives_singular_fits_at_the_boundary_optimum():
    sd, rho, sigma = (1.0, 0.0), 0.0, 0.6
    X, Z = trial_design(n_per_arm=20, seed=30)
    y = simulate(X, Z, 30, 31, sd=sd, rho=rho, sigma=sigma)
    fit = fit_lmm(y, X, Z)
    assert fit.converged.all()
    assert np.isfinite(fit.beta).all() and np.isfinite(fit.cov).all()
    assert 5 <= fit.singular.sum() < 30
    sing = np.flatnonzero(fit.singular)
    # Rank-one G on the boundary (a zero variance or a correlation of +-1).
    assert np.all(np.abs(np.linalg.det(fit.G[sing])) < 1e-6 * fit.G[sing, 0, 0])
    for b in sing[:6]:
        res = statsmodels_fit(y[b], X, Z, start_cov=true_start((1.0, 0.02), 0.0, sigma))
        assert fit.reml_loglik[b] >= res.llf - 1e-8
    # The boundary is a minimum: the profiled criterion rises into the interior.
    th = fit.theta[sing]
    for step in ([0, 0, 1e-3], [0, 1e-3, 0]):
        up = reml_loglik(th + step, y[sing], X, Z)
        assert np.all(up <= fit.reml_loglik[sing] + 1e-9)


def test_zero_intercept_variance_reduces_to_ols():
    X, Z = trial_design(n_per_arm=10, seed=32)
    rng = np.random.default_rng(33)
    y = X @ np.asarray(BETA) + 0.5 * rng.normal(size=(40, 20, 5))
    fit = fit_lmm(y, X, Z[..., :1])
    zero = fit.theta[:, 0] < 1e-6
    assert zero.sum() >= 5 and fit.converged.all()
    assert np.all(fit.singular == (fit.theta[:, 0] < 1e-4))
    Xf = X.reshape(-1, 6)
    for b in np.flatnonzero(zero):
        coef, rss = np.linalg.lstsq(Xf, y[b].ravel(), rcond=None)[:2]
        np.testing.assert_allclose(fit.beta[b], coef, rtol=1e-7, atol=1e-9)
        np.testing.assert_allclose(fit.sigma2[b], rss[0] / (100 - 6), rtol=1e-7)


# ---------------------------------------------------------- missing, layout


def test_missing_values_are_masked():
    X, Z = trial_design(n_per_arm=10, seed=40)
    y = simulate(X, Z, 6, 41, missing=0.1)
    y[2, 5] = np.nan  # participant 5 of batch 2 has nothing
    fit = fit_lmm(y, X, Z)
    np.testing.assert_array_equal(fit.n_obs, (~np.isnan(y)).sum(axis=(1, 2)))
    # observed=False is the same as NaN (the value underneath is ignored)
    y_filled = np.where(np.isnan(y), 1e6, y)
    fit2 = fit_lmm(y_filled, X, Z, observed=~np.isnan(y))
    np.testing.assert_allclose(fit2.beta, fit.beta, rtol=1e-12)
    np.testing.assert_allclose(fit2.reml_loglik, fit.reml_loglik, rtol=1e-12)
    # a participant without observations is the same as no participant;
    # X and Z may hold NaN where y is missing
    keep = np.arange(20) != 5
    alone = fit_lmm(y[2:3, keep], X[keep], Z[keep])
    Xn = np.where(np.isnan(y)[..., None], np.nan, X)
    fit3 = fit_lmm(y[2:3], Xn[2], Z)
    for f in (alone, fit3):
        np.testing.assert_allclose(f.beta[0], fit.beta[2], rtol=1e-9)
        np.testing.assert_allclose(f.G[0], fit.G[2], rtol=1e-7)
        np.testing.assert_allclose(f.reml_loglik[0], fit.reml_loglik[2], rtol=1e-12)


def test_shared_and_per_batch_designs_and_chunks_agree():
    X, Z = trial_design(n_per_arm=10, seed=42)
    y = simulate(X, Z, 25, 43)
    ref = fit_lmm(y, X, Z)
    per = fit_lmm(y, np.broadcast_to(X, (25, *X.shape)),
                  np.broadcast_to(Z, (25, *Z.shape)), chunk_size=7)
    for f in (per, fit_lmm(y, X, Z, chunk_size=1)):
        np.testing.assert_allclose(f.beta, ref.beta, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(f.theta, ref.theta, rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(f.reml_loglik, ref.reml_loglik, rtol=1e-12)
    again = fit_lmm(y, X, Z)
    for field in ("beta", "cov", "G", "theta", "reml_loglik"):
        np.testing.assert_array_equal(getattr(again, field), getattr(ref, field))


def test_participant_specific_visit_times():
    """Every participant with their own times (no shared pattern)."""
    X, Z = trial_design(n_per_arm=8, seed=44)
    rng = np.random.default_rng(45)
    jitter = np.cumsum(rng.uniform(0.5, 3, (16, 5)), axis=1)
    X[..., 2], X[..., 3], Z[..., 1] = jitter, jitter * X[..., 1], jitter
    y = simulate(X, Z, 4, 46, missing=0.1)
    fit = fit_lmm(y, X, Z)
    theta = fit.theta
    want = [dense_deviance(theta[b], y[b], X, Z) for b in range(4)]
    np.testing.assert_allclose(-2 * fit.reml_loglik, want, rtol=1e-11)
    for b in range(2):
        res = statsmodels_fit(y[b], X, Z, start_cov=true_start((1.0, 0.08), -0.3, 0.6))
        assert fit.reml_loglik[b] >= res.llf - 1e-8
        if res.converged and not fit.singular[b]:
            assert rel(fit.beta[b], res.fe_params) < 1e-6


# --------------------------------------------------------------- flags, errors


def test_rank_deficient_batch_is_flagged_not_dropped():
    X, Z = trial_design(n_per_arm=6, seed=50)
    y = simulate(X, Z, 3, 51)
    y[1, 6:] = np.nan  # batch 1 has no participant of the second arm
    with pytest.warns(RuntimeWarning, match="1 of 3 batches have a rank-deficient"):
        fit = fit_lmm(y, X, Z)
    assert not fit.converged[1] and np.isnan(fit.beta[1]).all()
    assert fit.converged[[0, 2]].all() and np.isfinite(fit.beta[[0, 2]]).all()
    L = np.eye(6)[[3]]
    for df in (satterthwaite(fit, y, X, Z, None, L),
               kenward_roger(fit, y, X, Z, None, L)[1]):
        assert np.isnan(df[1]).all() and np.isfinite(df[[0, 2]]).all()
    p = contrast_tests(fit, L, df)["p"]
    assert np.isnan(p[1]).all() and np.isfinite(p[[0, 2]]).all()


def test_iteration_limit_is_flagged():
    X, Z = trial_design(n_per_arm=6, seed=52)
    y = simulate(X, Z, 4, 53)
    fit = fit_lmm(y, X, Z, max_iter=1)
    assert not fit.converged.any()
    assert np.all(fit.iterations == 1) and np.isfinite(fit.beta).all()


def test_contrast_tests_t_and_z():
    from scipy import stats

    X, Z = trial_design(n_per_arm=6, seed=54)
    y = simulate(X, Z, 3, 55)
    fit = fit_lmm(y, X, Z)
    L = np.array([[0, 0, 0, 1, 0, 0], [0, 1, 0, 12, 0, 0]], float)
    df = satterthwaite(fit, y, X, Z, None, L)
    res = contrast_tests(fit, L, df)
    est = fit.beta @ L.T
    se = np.sqrt(np.einsum("kp,bpr,kr->bk", L, fit.cov, L))
    np.testing.assert_allclose(res["estimate"], est)
    np.testing.assert_allclose(res["se"], se)
    np.testing.assert_allclose(res["p"], 2 * stats.t.sf(np.abs(est / se), df),
                               rtol=1e-10)
    z = contrast_tests(fit, L, np.inf)
    np.testing.assert_allclose(z["p"], 2 * stats.norm.sf(np.abs(est / se)), rtol=1e-10)
    with pytest.raises(ValueError, match="df must be positive"):
        contrast_tests(fit, L, 0.0)
    with pytest.raises(ValueError, match=r"L must have shape \(k, 6\)"):
        contrast_tests(fit, [1, 0], 5.0)


def test_invalid_inputs_are_named():
    X, Z = trial_design(n_per_arm=3, seed=56)
    y = simulate(X, Z, 2, 57)
    with pytest.raises(ValueError, match=r"y must have shape \(B, N, T\)"):
        fit_lmm(y[0], X, Z)
    with pytest.raises(ValueError, match=r"X must have shape \(B, N, T, p\)"):
        fit_lmm(y, X[:, :4], Z)
    with pytest.raises(ValueError, match=r"Z must have .* got shape \(3, 6, 5, 2\)"):
        fit_lmm(y, X, np.broadcast_to(Z, (3, *Z.shape)))
    Xb = X.copy()
    Xb[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match="X must be finite where y is observed"):
        fit_lmm(y, Xb, Z)
    with pytest.raises(ValueError, match="infinite"):
        fit_lmm(np.where(np.isnan(y), np.inf, y), X, Z)
    with pytest.raises(ValueError, match="observed must be a boolean array"):
        fit_lmm(y, X, Z, observed=np.ones(y.shape))
    with pytest.raises(ValueError, match="more observations than fixed effects"):
        fit_lmm(np.where(np.arange(6)[:, None] < 5, np.nan, y), X, Z)
    two = simulate(*trial_design(n_per_arm=3, times=(0, 6), seed=58), 2, 59,
                   missing=0.0)
    X2, Z2 = trial_design(n_per_arm=3, times=(0, 6), seed=58)
    with pytest.raises(ValueError, match="more observations than random effects"):
        fit_lmm(two, X2, Z2)  # a random slope on two visits
    assert fit_lmm(two, X2, Z2[..., :1]).converged.all()
    with pytest.raises(ValueError, match="max_iter must be a positive integer"):
        fit_lmm(y, X, Z, max_iter=0)
    with pytest.raises(ValueError, match="chunk_size must be a positive integer"):
        fit_lmm(y, X, Z, chunk_size=0)
    with pytest.raises(ValueError, match=r"theta must be finite with shape \(3,\)"):
        reml_loglik([1.0, 0.0], y, X, Z)
    fit = fit_lmm(y, X, Z)
    with pytest.raises(ValueError, match="pass the arrays it was fitted to"):
        satterthwaite(fit, y, X[..., :5], Z, None, np.eye(5))
    with pytest.raises(TypeError, match="fit must be an LMMFit"):
        satterthwaite(fit.beta, y, X, Z, None, np.eye(6))
    with pytest.raises(ValueError, match=r"L must be a finite contrast matrix"):
        kenward_roger(fit, y, X, Z, None, np.eye(5))
    assert isinstance(fit, LMMFit)


@pytest.mark.parametrize(("sd", "rho", "times", "q"), [
    ((0.0, 0.08), 0.0, SESSIONS, 2),  # no intercept variance beside a slope
    ((1.0, 0.0), 0.0, SESSIONS, 2),  # no slope variance
    ((1.0, 0.08), 0.99, SESSIONS, 2),  # a correlation of 1
    ((3.0, 0.0), -0.9, HOURS, 2),  # hours, no slope variance
    ((0.05, 0.3), 0.0, SESSIONS, 2),  # a tiny intercept, a large slope
    ((0.05, 0.0), 0.0, HOURS, 1),  # a tiny random intercept
])
def test_hard_configurations_converge_to_a_minimum(sd, rho, times, q):
    s = 1.0 if times == SESSIONS else 1 / 240
    X, Z = trial_design(n_per_arm=10, times=times, seed=60)
    y = simulate(X, Z, 150, 61, sd=(max(sd[0], 1e-12), sd[1] * s), rho=rho,
                 missing=0.1, beta=(0.5, 0.2, 0.02 * s, -0.03 * s, 0.1, 0.05))
    Z = Z[..., :q]
    fit = fit_lmm(y, X, Z)
    assert fit.converged.all()
    assert np.isfinite(fit.beta).all() and np.isfinite(fit.G).all()
    # No nearby point of the PSD cone is lower: D scaled up and down, and D
    # plus random positive semi-definite matrices.
    rng = np.random.default_rng(62)
    tri = np.triu_indices(q)[::-1]
    Lam = np.zeros((150, q, q))
    Lam[:, *tri] = fit.theta
    D = Lam @ np.swapaxes(Lam, 1, 2)
    size = np.diagonal(D, axis1=1, axis2=2).max(axis=1)[:, None, None] + 1e-10
    near = [D * 1.001, D * 0.999]
    for _ in range(3):
        E = rng.normal(size=(150, q, q)) * np.sqrt(1e-3 * size)
        near.append(D + E @ np.swapaxes(E, 1, 2))
    for Dp in near:
        Lp = np.linalg.cholesky(Dp + 1e-14 * size * np.eye(q))
        assert np.all(reml_loglik(Lp[:, *tri], y, X, Z) <= fit.reml_loglik + 1e-7)


def test_outcome_units_do_not_matter():
    """y in mm^2/s (MD ~ 0.8e-3, noise ~1e-5) gives the same theta, and beta,
    G, sigma^2 and the deviance move as the units do."""
    X, Z = trial_design(n_per_arm=10, seed=70)
    y = simulate(X, Z, 20, 71)
    c, a = 1.5e-5, 0.8e-3
    f1 = fit_lmm(y, X, Z)
    f2 = fit_lmm(a + c * y, X, Z)
    np.testing.assert_allclose(f2.theta, f1.theta, rtol=1e-7, atol=1e-10)
    shift = np.array([a, 0, 0, 0, 0, 0])
    np.testing.assert_allclose(f2.beta, shift + c * f1.beta, rtol=1e-8, atol=1e-15)
    np.testing.assert_allclose(f2.G, c**2 * f1.G, rtol=1e-7)
    np.testing.assert_allclose(f2.sigma2, c**2 * f1.sigma2, rtol=1e-8)
    dev = -2 * f2.reml_loglik - 2 * (f1.n_obs - 6) * np.log(c)
    np.testing.assert_allclose(dev, -2 * f1.reml_loglik, rtol=1e-10)
