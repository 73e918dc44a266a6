"""Mixed-model power of the ECT course: speed against statsmodels, and size.

Run: ``python tests/benchmarks/bench_mixed_power.py [--replicates 1000]
[--null-replicates 10000] [--statsmodels-fits 20] [--agreement 100]``.

Prints, in one run:

0. the batched engine against statsmodels MixedLM (REML, fitted tightly as in
   ``tests/test_lmm.py``: its default fit, then BFGS from its own answer to
   ``gtol = 1e-10``) on ``--agreement`` replicates of ``ect-course`` times its
   five models (the power run's own data and design matrices): the largest
   relative differences of the fixed effects, their SEs and the variance
   components where statsmodels converged to an interior optimum and both
   found the same optimum (REML log-likelihoods within 1e-6), and, where the
   log-likelihoods differ, which fit is higher;
1. the wall time of :func:`dtitool.stats.mixed_power.mixed_power` on
   ``ect-course`` (n = 40 per arm, five visits, every ROI, measure and the
   rating scale: five models per replicate) for ``--replicates`` trials and as
   many of the null counterpart, with the default models (each arm fitted on
   its own, the random slope chosen by a likelihood-ratio test: four REML
   fits per model) and with lme4's default model (one covariance, one fit per
   model); beside each, a loop of statsmodels MixedLM fits (REML, lbfgs) of
   the same models on the same data, extrapolated to the same number, and the
   ratio;
2. the size of every test at ``--null-replicates`` replicates of the null
   version of ``ect-course`` in which ECT does nothing (every change mean 0 and
   the ECT arm given the controls' SDs), with Satterthwaite df, for the
   default models (and their z-tests), for each arm on its own with the
   random slope always (``--random slope``) and for lme4's default model
   (``--variance common --random slope``), against 4 binomial SE of 0.05,
   with the default's share of fits keeping the slope and of singular fits;
3. the same for the power tables' null counterpart (change means 0, every SD
   kept: ECT patients still vary more than controls).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import pandas as pd

from dtitool.design import load_preset
from dtitool.simulate import simulate_arrays
from dtitool.stats.mixed_power import (
    _design_matrix,
    _values,
    mixed_layout,
    mixed_power,
    model_rows,
    null_course_design,
)


def statsmodels_seconds_per_model(design, fits: int, variance: str) -> float:
    """Seconds statsmodels MixedLM (REML, lbfgs) spends on one model of a trial.

    ``variance="common"``: one fit of ``arm * time + age + female + (1 + time
    | participant)``; ``"arm"``: what ``--variance arm --random select`` fits,
    per arm ``time + age + female`` with ``(1 + time | participant)`` and
    with ``(1 | participant)`` (four fits).
    """
    import statsmodels.api as sm

    a = simulate_arrays(design, rng=7, stop=fits)
    layout = mixed_layout(design)
    rows = model_rows(design)
    Z = layout.Z
    t0 = time.perf_counter()
    for r in range(fits):
        row = rows[r % len(rows)]
        y = _values(a, row)[r]
        X = _design_matrix(layout, a.arm[r:r + 1], a.age[r:r + 1],
                           a.female[r:r + 1], design.covariates.age_mean)[0]
        ok = np.isfinite(y)
        groups = np.repeat(np.arange(design.n), len(design.visits))[ok.reshape(-1)]
        Zl = np.broadcast_to(Z, (design.n, *Z.shape))[ok]
        arm = np.repeat(a.arm[r], len(design.visits))[ok.reshape(-1)]
        if variance == "common":
            parts = [(X[ok], np.ones(arm.size, dtype=bool), Zl)]
        else:
            cols = [0, layout.columns.index(layout.terms[0]), -2, -1]
            Xa = X[ok][:, cols]
            Xa[:, 2:] -= Xa[:, 2:].mean(axis=0)
            parts = [(Xa[arm == k], arm == k, Zm[arm == k]) for k in
                     range(len(design.arms)) for Zm in (Zl, Zl[:, :1])]
        for Xp, m, Zp in parts:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    sm.MixedLM(y[ok][m], Xp, groups[m], exog_re=Zp).fit(
                        reml=True, method=["lbfgs"])
                except np.linalg.LinAlgError:
                    # a random intercept whose variance L-BFGS takes to 0,
                    # where statsmodels' criterion is undefined (analyze goes
                    # on with Newton steps); its time so far counts
                    pass
    return (time.perf_counter() - t0) / fits


def agreement(design, replicates: int) -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from test_lmm import dense_vcov, statsmodels_fit

    from dtitool.stats import lmm

    a = simulate_arrays(design, rng=9, stop=replicates)
    layout = mixed_layout(design)
    rows = model_rows(design)
    Z = np.broadcast_to(layout.Z, (design.n, *layout.Z.shape))
    X = _design_matrix(layout, a.arm, a.age, a.female, design.covariates.age_mean)
    worst = {"fe": 0.0, "se": 0.0, "G": 0.0, "sigma2": 0.0}
    same = higher = lower = skipped = restarted = 0
    t0 = time.perf_counter()
    for row in rows:
        y = _values(a, row)
        fit = lmm.fit_lmm(y, X, Z)
        for r in range(replicates):
            res = statsmodels_fit(y[r], X[r], Z)
            ll = float(fit.reml_loglik[r])
            if abs(res.llf - ll) > 1e-6:
                higher += ll > res.llf
                lower += ll < res.llf
                continue
            if not res.converged or fit.singular[r]:
                skipped += 1
                continue
            same += 1
            # statsmodels restarted from our optimum: where it stays, the two
            # fits were one optimum and the differences its stopping point
            res2 = statsmodels_fit(y[r], X[r], Z, start_cov=fit.G[r] / fit.sigma2[r])
            if res2.converged and res2.llf >= res.llf - 1e-9:
                restarted += 1
                res = res2
            fe = np.asarray(res.fe_params)
            G = np.asarray(res.cov_re)
            cov = dense_vcov(y[r], X[r], Z, G, res.scale)
            se = np.sqrt(np.diag(cov))
            # a coefficient near 0 is compared on the scale of its SE, a
            # covariance on that of its variances (as the engine's own tests)
            worst["fe"] = max(worst["fe"], float(np.max(
                np.abs(fit.beta[r] - fe) / np.maximum(np.abs(fe), se))))
            worst["se"] = max(worst["se"], float(np.max(
                np.abs(np.sqrt(np.diag(fit.cov[r])) - se) / se)))
            scale_g = np.sqrt(np.outer(np.diag(G), np.diag(G)))
            worst["G"] = max(worst["G"], float(np.max(
                np.abs(fit.G[r] - G) / scale_g)))
            worst["sigma2"] = max(worst["sigma2"], float(
                abs(fit.sigma2[r] - res.scale) / res.scale))
    total = replicates * len(rows)
    print(f"0. engine vs statsmodels MixedLM on {replicates} replicates x "
          f"{len(rows)} models of ect-course ({total} fits, "
          f"{time.perf_counter() - t0:.0f} s): same optimum on {same + skipped} "
          f"({same} interior and converged), largest relative differences there: "
          f"fixed effects {worst['fe']:.1e} (of max(|b|, SE)), SEs "
          f"{worst['se']:.1e}, G {worst['G']:.1e} (of sqrt(G_ii G_jj)), sigma^2 "
          f"{worst['sigma2']:.1e}; log-likelihoods "
          f"differ on {higher + lower}: the engine higher on {higher}, "
          f"statsmodels higher on {lower}; singular or non-converged at the same "
          f"optimum: {skipped}; statsmodels restarted from our optimum stayed "
          f"there (as high or higher) on {restarted} of the {same} compared, "
          "whose differences are then the ones shown")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicates", type=int, default=1000)
    ap.add_argument("--null-replicates", type=int, default=10000)
    ap.add_argument("--statsmodels-fits", type=int, default=20)
    ap.add_argument("--agreement", type=int, default=100,
                    help="replicates compared with statsmodels (x 5 models)")
    args = ap.parse_args()
    d = load_preset("ect-course")
    if args.agreement:
        agreement(d, args.agreement)
    models = len(model_rows(d))
    R = args.replicates
    mixed_power(d, replicates=50, rng=0)  # warm up imports
    for k, (variance, random, what) in enumerate((
            ("arm", "select", "the default: each arm on its own, the random "
             "slope chosen"),
            ("common", "slope", "lme4's default model: one covariance, "
             "(1 + time | participant)"))):
        t0 = time.perf_counter()
        mixed_power(d, replicates=R, rng=1, variance=variance, random=random)
        wall = time.perf_counter() - t0
        analyses = 2 * R * models
        per = statsmodels_seconds_per_model(d, args.statsmodels_fits, variance)
        n_sm = 4 if variance == "arm" else 1
        print(f"1{'ab'[k]}. {what}: ect-course, {R} trials + {R} null, {models} "
              f"models each: {wall:.1f} s ({analyses} model analyses, "
              f"{n_sm} REML fit{'s' * (n_sm > 1)} each, with Satterthwaite df, "
              f"simulation included). statsmodels MixedLM loop of the same fits: "
              f"{1e3 * per:.0f} ms per model ({args.statsmodels_fits} models), "
              f"{per * analyses:.0f} s for the same {analyses}: the batched "
              f"engine is {per * analyses / wall:,.0f}x faster")
    N = args.null_replicates
    se = np.sqrt(0.05 * 0.95 / N)
    lo, hi = 0.05 - 4 * se, 0.05 + 4 * se
    pd.set_option("display.width", 220)
    configs = (("arm", "select"), ("arm", "slope"), ("common", "slope"))
    for k, (label, design) in enumerate((
            ("2. the null version (ECT does nothing: means 0, the ECT arm given "
             "the controls' SDs)", null_course_design(d, spread="control")),
            ("3. the power tables' null counterpart (means 0, every SD kept)", d)),
            start=2):
        # mixed_power's size columns come from the null counterpart of its
        # design, which for the null version is the null version itself
        cols = {}
        for variance, random in configs:
            t = mixed_power(design, replicates=N, rng=k, variance=variance,
                            random=random)
            key = f"{variance}/{random}"
            cols[key] = t["size"]
            if (variance, random) == configs[0]:
                base = t[["roi", "measure", "outcome", "term"]].copy()
                cols[f"{key} z"] = t["size_z"]
                cols[f"{key} slope kept"] = t["slope_kept"]
                cols[f"{key} singular"] = t["singular"]
        table = pd.concat([base, pd.DataFrame(cols)], axis=1).dropna(
            subset=[f"{v}/{r}" for v, r in configs])
        print(f"{label}: size at {N} replicates, alpha 0.05 (4 SE band "
              f"{lo:.4f}-{hi:.4f}; * outside):")
        shown = table.copy()
        for c in cols:
            if "kept" in c or "singular" in c:
                shown[c] = table[c].map("{:.2f}".format)
            else:
                shown[c] = table[c].map(lambda x: f"{x:.4f}" + (
                    "*" if not lo <= x <= hi else " "))
        print(shown.to_string(index=False))
        for c in cols:
            if "kept" in c or "singular" in c:
                continue
            inside = int(((table[c] >= lo) & (table[c] <= hi)).sum())
            print(f"   {c}: {inside} of {len(table)} tests within 4 SE; range "
                  f"{table[c].min():.4f}-{table[c].max():.4f}")


if __name__ == "__main__":
    main()
