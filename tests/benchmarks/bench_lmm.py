"""Benchmark of the batched REML engine (dtitool.stats.lmm), one run.

Run: ``python tests/benchmarks/bench_lmm.py [--quick]``

The design throughout: two arms of 40 (ECT and healthy controls), five visits,
fixed effects intercept, arm, time, arm:time, age, sex, random intercept and
time slope per participant (SDs 1.0 and 0.08 per session, correlation -0.3,
residual SD 0.6), 5 % of observations missing at random. Prints, measured in
this one run:

1. Agreement with statsmodels MixedLM (REML) on 500 trials with time in
   sessions ``[0, 1, 6, 12, 12]`` and 500 with time in hours ``[0, 2, 336,
   672, 2856]``. statsmodels starts from its default and is then refitted from
   its own answer by BFGS to ``gtol = 1e-10`` (independent of our answer); in
   hours it is fitted with time in weeks and its answer converted back (fitted
   in hours directly it fails on most trials: counted on 100). On the trials
   where statsmodels converged to an interior optimum (its flag, and our fit
   not singular) and found the same optimum (REML log-likelihoods within
   1e-6): the largest relative differences of the fixed effects, their SEs
   (``sigma^2 (X'V^{-1}X)^{-1}`` at statsmodels' estimates, lme4's vcov;
   statsmodels' own ``bse_fe`` is shown too, it differs by design), G and
   sigma^2. On every trial, how often the log-likelihoods differ by more than
   1e-6 and who is higher; where statsmodels reports convergence but stopped
   short, statsmodels restarted from our optimum and how well it stays there.
2. Time to fit 5,000 trials (best of 3) and the peak memory it allocates
   (tracemalloc), Satterthwaite and Kenward-Roger df for them, and the ratio
   to a loop of statsmodels fits, timed on 20 trials and extrapolated: the
   plain ``fit(reml=True)`` and the tight protocol of 1.
3. Size under the null (no arm:time effect) of the arm:time test on 2,000
   trials, Satterthwaite and Kenward-Roger t-tests beside the z-test, at 40 and
   at 10 per arm.
"""

from __future__ import annotations

import argparse
import sys
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

from test_lmm import (  # noqa: E402  (helpers shared with the tests)
    HOURS,
    SESSIONS,
    dense_vcov,
    simulate,
    statsmodels_fit,
    trial_design,
)

from dtitool.stats.lmm import (  # noqa: E402
    contrast_tests,
    fit_lmm,
    kenward_roger,
    satterthwaite,
)

SD, RHO, SIGMA = (1.0, 0.08), -0.3, 0.6
WEEK = 168.0


def _rel(a, b):
    return float(np.max(np.abs(np.asarray(a) - b) / np.abs(b)))


def _diffs(fit, b, fe, G, res, y, X, Z, sx):
    """Relative differences of ours from statsmodels' answer (in our units)."""
    se = np.sqrt(np.diag(dense_vcov(y[b], X, Z, G, res.scale)))
    off = np.abs(fit.beta[b] - fe) > 1e-6 * np.abs(fe)
    return {"fe": _rel(fit.beta[b], fe),
            # how far from zero, in SEs, a coefficient off by 1e-6 relative is
            "fe_off_size": float(np.max(np.abs(fe[off]) / se[off], initial=0.0)),
            "fe_se": float(np.max(np.abs(fit.beta[b] - fe)
                                  / np.maximum(np.abs(fe), se))),
            "se": _rel(fit.bse[b], se),
            "se_sm": _rel(fit.bse[b], res.bse_fe / sx),
            "G": float(np.max(np.abs(fit.G[b] - G)) / np.max(np.abs(G))),
            "sigma2": _rel(fit.sigma2[b], res.scale)}


def accuracy(n_trials: int, hours: bool, seed: int) -> None:
    s = 1 / 240 if hours else 1.0  # a session every 10 days
    X, Z = trial_design(times=HOURS if hours else SESSIONS, seed=seed)
    beta = (0.5, 0.2, 0.02 * s, -0.03 * s, 0.1, 0.05)
    y = simulate(X, Z, n_trials, seed + 1, sd=(SD[0], SD[1] * s), rho=RHO,
                 sigma=SIGMA, beta=beta)
    fit = fit_lmm(y, X, Z)
    # statsmodels sees time in weeks when the data are in hours
    sx = np.array([1, 1, WEEK, WEEK, 1, 1]) if hours else np.ones(6)
    sz = np.array([1, WEEK]) if hours else np.ones(2)
    Xs, Zs = X / sx, Z / sz
    S = np.diag(1 / sz)
    dllf_const = -2 * np.log(WEEK) if hours else 0.0

    def sm(b, start=None):
        res = statsmodels_fit(y[b], Xs, Zs, start_cov=start)
        return res, res.fe_params / sx, S @ res.cov_re @ S, res.llf + dllf_const

    worst = dict.fromkeys(("fe", "fe_se", "fe_off_size", "se", "se_sm", "G",
                           "sigma2"), 0.0)
    worst_short = dict.fromkeys(worst, 0.0)
    same = beyond = ours_higher = sm_higher = 0
    short = []
    max_same = max_up = max_down = 0.0
    t0 = time.perf_counter()
    for b in range(n_trials):
        res, fe, G, llf = sm(b)
        d = fit.reml_loglik[b] - llf
        if d > 1e-6:
            ours_higher += 1
            max_up = max(max_up, d)
        elif d < -1e-6:
            sm_higher += 1
            max_down = max(max_down, -d)
        if not res.converged or fit.singular[b]:
            continue
        if d > 1e-6:  # statsmodels reports convergence but stopped short
            short.append((b, d))
            continue
        same += 1
        max_same = max(max_same, abs(d))
        diffs = _diffs(fit, b, fe, G, res, y, X, Z, sx)
        for k, v in diffs.items():
            worst[k] = max(worst[k], v)
        beyond += (diffs["fe"] > 1e-6 or diffs["se"] > 1e-6 or diffs["G"] > 1e-4
                   or diffs["sigma2"] > 1e-4)
    t_sm = time.perf_counter() - t0
    max_polished = 0.0
    for b, _ in short:  # statsmodels restarted from our optimum
        start = np.diag(sz) @ fit.G[b] @ np.diag(sz) / fit.sigma2[b]
        res, fe, G, llf = sm(b, start)
        max_polished = max(max_polished, abs(fit.reml_loglik[b] - llf))
        for k, v in _diffs(fit, b, fe, G, res, y, X, Z, sx).items():
            worst_short[k] = max(worst_short[k], v)
    unit = "hours (statsmodels in weeks)" if hours else "sessions"
    print(f"\n1. {n_trials} trials, time in {unit}: statsmodels {t_sm:.0f} s; ours "
          f"converged {int(fit.converged.sum())}, singular {int(fit.singular.sum())}")
    print(f"   REML loglik, all {n_trials}: ours higher by > 1e-6 in {ours_higher} "
          f"(max {max_up:.2g}), statsmodels higher in {sm_higher} "
          f"(max {max_down:.2g})")
    print(f"   statsmodels converged and ours not singular: {same + len(short)}; of "
          f"these, the same optimum (loglik within 1e-6; max |difference| "
          f"{max_same:.1e}) in {same}:")
    print(f"     max relative difference: fe {worst['fe']:.1e} (relative to "
          f"max(|fe|, SE): {worst['fe_se']:.1e}), SE {worst['se']:.1e} "
          f"(statsmodels' own bse_fe: {worst['se_sm']:.1e}), G {worst['G']:.1e}, "
          f"sigma2 {worst['sigma2']:.1e}")
    print(f"     beyond 1e-6 relative (fe, SE) or 1e-4 (G, sigma2): {beyond} (the "
          f"fixed effects off by more than 1e-6 are within "
          f"{worst['fe_off_size']:.2g} SE of zero)")
    print(f"   statsmodels reports convergence but is lower (stopped short): "
          f"{len(short)}" + (f"; restarted from our optimum it stays there: loglik "
                             f"within {max_polished:.1e}, fe {worst_short['fe_se']:.1e}"
                             f" of max(|fe|, SE), G {worst_short['G']:.1e}"
                             if short else ""))
    if hours:
        n = min(100, n_trials)
        fails = 0
        for b in range(n):
            res = statsmodels_fit(y[b], X, Z)
            fails += (not res.converged) or (fit.reml_loglik[b] - res.llf > 1e-3)
        print(f"   statsmodels fitted in hours directly: {fails} of {n} not converged "
              "or more than 1e-3 below our log-likelihood")


def speed(quick: bool) -> None:
    B = 1000 if quick else 5000
    X, Z = trial_design(seed=3)
    y = simulate(X, Z, B, 4, sd=SD, rho=RHO, sigma=SIGMA)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        fit = fit_lmm(y, X, Z)
        times.append(time.perf_counter() - t0)
    t_fit = min(times)
    tracemalloc.start()
    fit_lmm(y, X, Z)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    L = np.eye(6)[[3]]
    t0 = time.perf_counter()
    satterthwaite(fit, y, X, Z, None, L)
    t_sat = time.perf_counter() - t0
    t0 = time.perf_counter()
    kenward_roger(fit, y, X, Z, None, L)
    t_kr = time.perf_counter() - t0
    n_sm = 20
    t_plain = t_tight = 0.0
    for b in range(n_sm):
        t0 = time.perf_counter()
        statsmodels_fit(y[b], X, Z, polish=False)
        t_plain += time.perf_counter() - t0
        t0 = time.perf_counter()
        statsmodels_fit(y[b], X, Z)
        t_tight += time.perf_counter() - t0
    per_plain, per_tight = t_plain / n_sm, t_tight / n_sm
    print(f"\n2. {B} trials (N = 80, T = 5, p = 6, q = 2), "
          f"y {y.nbytes / 1e6:.0f} MB:")
    print(f"   fit_lmm {t_fit:.2f} s (runs {', '.join(f'{t:.2f}' for t in times)}), "
          f"{1e3 * t_fit / B:.2f} ms a trial, mean {fit.iterations.mean():.1f} "
          f"Newton iterations, converged {int(fit.converged.sum())}")
    print(f"   peak memory allocated during fit_lmm: {peak / 1e6:.0f} MB")
    print(f"   satterthwaite {t_sat:.2f} s, kenward_roger {t_kr:.2f} s (one contrast)")
    print(f"   statsmodels, {n_sm} fits: fit(reml=True) {per_plain:.3f} s a fit "
          f"({per_plain * B:.0f} s for {B}: {per_plain * B / t_fit:.0f}x); tight "
          f"protocol {per_tight:.3f} s ({per_tight * B / t_fit:.0f}x)")


def null_size(n_trials: int, n_per_arm: int, seed: int) -> None:
    X, Z = trial_design(n_per_arm=n_per_arm, seed=seed)
    y = simulate(X, Z, n_trials, seed + 1, sd=SD, rho=RHO, sigma=SIGMA,
                 beta=(0.5, 0.2, 0.02, 0.0, 0.1, 0.05))
    fit = fit_lmm(y, X, Z)
    L = np.eye(6)[[3]]
    ok = fit.converged
    df_s = satterthwaite(fit, y, X, Z, None, L)
    cov_kr, df_kr = kenward_roger(fit, y, X, Z, None, L)
    rates = {}
    for name, (df, cov) in {"Satterthwaite t": (df_s, None),
                            "Kenward-Roger t": (df_kr, cov_kr),
                            "z": (np.inf, None)}.items():
        p = contrast_tests(fit, L, df, cov=cov)["p"][ok, 0]
        rates[name] = float(np.mean(p < 0.05))
    se = np.sqrt(0.05 * 0.95 / ok.sum())
    print(f"\n3. Null arm:time, {n_per_arm} per arm, {int(ok.sum())} converged trials "
          f"(binomial SE {se:.4f}), median Satterthwaite df "
          f"{np.median(df_s[ok]):.1f}:")
    print("   " + ", ".join(f"{k} {v:.4f} ({(v - 0.05) / se:+.1f} SE)"
                           for k, v in rates.items()))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="50 trials against statsmodels, 1,000 for speed")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")
    n = 50 if args.quick else 500
    accuracy(n, hours=False, seed=100)
    accuracy(n, hours=True, seed=200)
    speed(args.quick)
    null_size(2000, 40, 300)
    null_size(2000, 10, 400)
    return 0


if __name__ == "__main__":
    sys.exit(main())
