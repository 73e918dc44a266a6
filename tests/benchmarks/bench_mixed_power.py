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
   many of the null counterpart;
2. the time per fit of a loop of statsmodels MixedLM fits (REML, lbfgs) of the
   same models on the same data, extrapolated to the same number of fits, and
   the ratio;
3. the size of every test at ``--null-replicates`` replicates of the null
   version of ``ect-course`` in which ECT does nothing (every change mean 0 and
   the ECT arm given the controls' SDs), with Satterthwaite df and with
   z-tests, against 4 binomial SE of 0.05, and the share of singular fits;
4. the same for the power tables' null counterpart (change means 0, every SD
   kept: ECT patients still vary more than controls), where the model's one
   random-effects covariance for both arms is wrong.
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


def statsmodels_seconds_per_fit(design, fits: int) -> float:
    import statsmodels.api as sm

    a = simulate_arrays(design, rng=7, stop=fits)
    layout = mixed_layout(design)
    rows = model_rows(design)
    Z = layout.Z
    t0 = time.perf_counter()
    done = 0
    for r in range(fits):
        row = rows[r % len(rows)]
        y = _values(a, row)[r]
        X = _design_matrix(layout, a.arm[r:r + 1], a.age[r:r + 1],
                           a.female[r:r + 1], design.covariates.age_mean)[0]
        ok = np.isfinite(y)
        groups = np.repeat(np.arange(design.n), len(design.visits))[ok.reshape(-1)]
        Zl = np.broadcast_to(Z, (design.n, *Z.shape))[ok]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sm.MixedLM(y[ok], X[ok], groups, exog_re=Zl).fit(reml=True,
                                                             method=["lbfgs"])
        done += 1
    return (time.perf_counter() - t0) / done


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
    t0 = time.perf_counter()
    mixed_power(d, replicates=R, rng=1)
    wall = time.perf_counter() - t0
    fits = 2 * R * models
    print(f"1. ect-course, {R} trials + {R} null, {models} models each: {wall:.1f} s "
          f"({fits} REML fits with Satterthwaite df, simulation included; "
          f"{1e3 * wall / fits:.2f} ms per fit)")
    per = statsmodels_seconds_per_fit(d, args.statsmodels_fits)
    print(f"2. statsmodels MixedLM loop: {1e3 * per:.0f} ms per fit "
          f"({args.statsmodels_fits} fits), {per * fits:.0f} s for the same "
          f"{fits} fits: the batched engine is {per * fits / wall:,.0f}x faster")
    N = args.null_replicates
    se = np.sqrt(0.05 * 0.95 / N)
    pd.set_option("display.width", 200)
    cols = ["roi", "measure", "outcome", "term", "size", "within_4se", "size_z",
            "z_within_4se", "singular", "nonconverged"]
    for k, (label, design) in enumerate((
            ("3. the null version (ECT does nothing)",
             null_course_design(d, spread="control")),
            ("4. the power tables' null counterpart (SDs kept)", d)), start=2):
        # mixed_power's size columns come from the null counterpart of its
        # design, which for the null version is the null version itself
        t = mixed_power(design, replicates=N, rng=k)
        t["within_4se"] = (t["size"] - 0.05).abs() <= 4 * se
        t["z_within_4se"] = (t["size_z"] - 0.05).abs() <= 4 * se
        print(f"{label}: size at {N} replicates (4 SE band {0.05 - 4 * se:.4f}-"
              f"{0.05 + 4 * se:.4f}):")
        print(t[cols].to_string(index=False))


if __name__ == "__main__":
    main()
