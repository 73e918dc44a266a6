"""Bias of multiple imputation at the trial's size: MI against the full data.

Run: ``python tests/benchmarks/bench_mi_bias.py [--inference welch|ols|hc3]``

For each world (``ketamine-rct-face-value``, ``ketamine-rct``) it simulates
1,024 trials twice from one seed: with 20 % of the 24 h data lost completely at
random (MCAR) and without (the same trials, nothing lost), analyses the first by
multiple imputation (20 imputations, Rubin's rules, the batched engine) and the
second as complete data, and prints per term the mean paired difference, MI
minus full data, as a percentage of the full-data estimate: the bias MI adds.
Two kinds of loss: the scans only (dMD is imputed given the observed scores:
a covariate, which proper imputation attenuates by O(p / n), von Hippel 2013
and 2016), and whole visits (scans and ratings).

Only tests measured to a Monte Carlo SE of at most :data:`MAX_REL_SE` of their
estimate enter a range (a near-null test's percentage is noise). docs/model.md
(section 7, "Small-sample behaviour, measured") quotes the ``welch`` (default)
ranges and the pooled interaction tests' size; ``tests/test_mi_bias.py`` checks
the quote against this code.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import pandas as pd

from dtitool.design import MissingSpec, load_preset
from dtitool.simulate import simulate_arrays
from dtitool.stats.imputation import batch_models_imputed
from dtitool.stats.inference import batch_models

WORLDS = ("ketamine-rct-face-value", "ketamine-rct")
REPLICATES = 1024
SEED = 31
MAX_REL_SE = 0.015
"""A test enters a range when the Monte Carlo SE of its relative difference is
at most this (1.5 % of its estimate)."""


def paired_differences(world: str, *, scores: bool, inferences=("welch",),
                       replicates: int = REPLICATES, seed: int = SEED,
                       imputations: int = 20) -> dict[str, pd.DataFrame]:
    """Return per inference option, per ROI x outcome x term, MI minus full data.

    The trials and the imputations are the same for every option in
    ``inferences``.

    Columns ``roi, outcome, term, full`` (mean full-data estimate), ``diff``
    (mean paired difference), ``diff_se`` (its Monte Carlo SE), ``rel`` and
    ``rel_se`` (both as a fraction of ``full``), ``z`` and ``in_sd`` (``diff``
    over the SD of the full-data estimate across trials: the bias against an
    estimate's own sampling error).
    """
    full = load_preset(world)
    lossy = dataclasses.replace(full, missing=MissingSpec("mcar", 0.2,
                                                         scores=scores))
    full_arrays = simulate_arrays(full, rng=seed, stop=replicates)
    mi, _ = batch_models_imputed(simulate_arrays(lossy, rng=seed, stop=replicates),
                                 tuple(inferences), imputations=imputations,
                                 rng=seed + 1)
    out = {}
    for inference in inferences:
        f = batch_models(full_arrays, inference)
        diff = mi[inference].estimate - f.estimate  # (R, J, K, T)
        mean_full = f.estimate.mean(axis=0)
        mean = diff.mean(axis=0)
        se = diff.std(axis=0, ddof=1) / np.sqrt(replicates)
        sd_full = f.estimate.std(axis=0, ddof=1)
        rows = []
        for j, roi in enumerate(full.roi_names):
            for k, outcome in enumerate(full.outcome_names):
                for t, term in enumerate(full.names.terms):
                    m, s, ff = mean[j, k, t], se[j, k, t], mean_full[j, k, t]
                    rows.append({"roi": roi, "outcome": outcome, "term": term,
                                 "full": ff, "diff": m, "diff_se": s,
                                 "rel": m / ff, "rel_se": s / abs(ff), "z": m / s,
                                 "in_sd": m / sd_full[j, k, t]})
        out[inference] = pd.DataFrame(rows)
    return out


def pooled_sizes(world: str, *, scores: bool, inference: str = "welch",
                 replicates: int = REPLICATES, seed: int = SEED,
                 imputations: int = 20) -> pd.DataFrame:
    """Return ``power``'s table of the MI analysis: ``size`` is each pooled
    test's rejection rate in the null counterpart, 20 % MCAR."""
    from dtitool.stats.power import power

    d = dataclasses.replace(load_preset(world),
                            missing=MissingSpec("mcar", 0.2, scores=scores))
    return power(d, replicates=replicates, rng=seed, inference=inference,
                 missing="mi", imputations=imputations, design_analysis=False,
                 progress=False).table


def ranges(table: pd.DataFrame) -> dict[str, tuple[float, float, int, float]]:
    """Per term, ``(lowest, highest, count, largest |in_sd|)`` of the relative
    differences of the tests measured to :data:`MAX_REL_SE` (none: term
    absent)."""
    ok = table[table["rel_se"] <= MAX_REL_SE]
    return {term: (float(g["rel"].min()), float(g["rel"].max()), len(g),
                   float(g["in_sd"].abs().max()))
            for term, g in ok.groupby("term", sort=False)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inference", default="welch", choices=["welch", "ols", "hc3"])
    args = ap.parse_args()
    print(f"{REPLICATES} trials per world, seed {SEED}, 20 % MCAR, 20 imputations, "
          f"inference {args.inference}; MI minus full data, % of the full-data "
          f"estimate (tests measured to a Monte Carlo SE <= {MAX_REL_SE:.1%})")
    for world in WORLDS:
        for scores, what in ((False, "scans only"), (True, "whole visits")):
            t0 = time.perf_counter()
            t = paired_differences(world, scores=scores,
                                   inferences=(args.inference,))[args.inference]
            print(f"\n{world}, {what} lost ({time.perf_counter() - t0:.1f} s): "
                  f"max |z| over every test {t['z'].abs().max():.1f}")
            for term, (lo, hi, n, in_sd) in ranges(t).items():
                print(f"  {term:15s} {100 * lo:+5.1f} % to {100 * hi:+5.1f} % "
                      f"({n} tests; at most {in_sd:.2f} of an estimate's SD)")
            size = pooled_sizes(world, scores=scores, inference=args.inference)
            inter = size.loc[size["term"] == "interaction", "size"]
            print(f"  size of the pooled interaction tests in the null "
                  f"counterpart: {inter.min():.3f}-{inter.max():.3f}")


if __name__ == "__main__":
    main()
