"""Benchmark of missing-data handling, every figure measured side by side in one run.

Run: ``python tests/benchmarks/bench_missing.py [--quick]``

Prints the machine load (``os.getloadavg``) first: timings on a shared machine
are noisy; the ratios, measured interleaved in one run, are what to compare.

1. Multiple imputation of one 98-patient dataset (``ketamine-rct``, 20 % of the
   24 h visits lost, MNAR on the MADRS): ``fit_models(..., missing="mi",
   imputations=20)`` (imputation, 20 x 14 models x 2 fits with statsmodels,
   Rubin's rules), beside the complete-case ``fit_models`` of the same tables;
   the fastest of repeated runs, and the same for ``inference`` ``hc3`` and
   ``welch``. Also ``tipping_point`` with the 7 default deltas.
2. ``power(..., missing="mi", imputations=M)`` against ``power(...,
   missing="complete-case")`` of the same design, replicates and seed (size and
   design analysis included, as ``dtitool power`` runs them), for a design that
   loses scans only and one that loses whole visits; interleaved and repeated,
   the fastest of each. Prints the ratio and the ratio divided by M (the target
   is at most 1.5).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time

from dtitool.design import MissingSpec, load_preset
from dtitool.simulate import simulate_cohort
from dtitool.stats.analysis import fit_models
from dtitool.stats.missing import tipping_point
from dtitool.stats.power import power


def _fastest(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def _design(scores: bool):
    d = load_preset("ketamine-rct")
    return dataclasses.replace(d, missing=MissingSpec("mnar", 0.2, "madrs", 1.0,
                                                      scores))


def bench_analysis(repeats: int) -> None:
    c = simulate_cohort(_design(True), rng=12)
    p, r = c.participants, c.roi_md
    lost = int(p["madrs_24h"].isna().sum())
    print(f"\n1. one 98-patient dataset, {lost} participants without their 24 h "
          "visit; 14 models (7 ROIs x 2 outcomes), 4 terms each")
    fit_models(p, r, missing="mi", imputations=20, rng=1)  # warm imports
    for inference in ("ols", "hc3", "welch"):
        cc = _fastest(lambda inf=inference: fit_models(p, r, inference=inf),
                      repeats)
        mi = _fastest(lambda inf=inference: fit_models(
            p, r, missing="mi", imputations=20, rng=1, inference=inf), repeats)
        print(f"   {inference:5s}: complete case {cc:6.3f} s   MI, 20 imputations "
              f"{mi:6.3f} s   ratio {mi / cc:5.1f}   (target: MI under 5 s)")
    tp = _fastest(lambda: tipping_point(p, r, imputations=20, rng=1), 1)
    print(f"   tipping point, the default 9 x 9 grid of the arms' deltas x 20 "
          f"imputations x 14 models (welch): {tp:.2f} s")


def bench_power(replicates: int, imputations: int, repeats: int) -> None:
    print(f"\n2. power(), {replicates} replicates, size and design analysis included, "
          f"M = {imputations} imputations per trial")
    for scores, what in ((False, "24 h scans lost (MNAR 20 %)"),
                         (True, "24 h visits lost (MNAR 20 %)")):
        d = _design(scores)
        times = {"complete-case": float("inf"), "mi": float("inf")}
        for _ in range(repeats):  # interleaved
            for missing in times:
                t = time.perf_counter()
                power(d, replicates=replicates, rng=3, missing=missing,
                      imputations=imputations, progress=False)
                times[missing] = min(times[missing], time.perf_counter() - t)
        ratio = times["mi"] / times["complete-case"]
        print(f"   {what}: complete case {times['complete-case']:6.2f} s   MI "
              f"{times['mi']:6.2f} s   ratio {ratio:5.1f} = {ratio / imputations:.2f} "
              "x M   (target: at most 1.5 x M)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="fewer replicates and repeats (smoke test)")
    args = ap.parse_args()
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on "
          f"{os.cpu_count()} CPUs")
    bench_analysis(1 if args.quick else 3)
    bench_power(256 if args.quick else 2000, 20, 1 if args.quick else 2)


if __name__ == "__main__":
    main()
