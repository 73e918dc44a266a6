"""MRS power: the change at n = 8 and 40 against the noncentral t, and the cost.

Run: ``python tests/benchmarks/bench_mrs.py [--replicates 10000] [--repeats 3]``.

Prints, in one run:

1. ``ketamine-mrs`` at n = 8 (Milak et al. 2016's usable sample) and n = 40:
   per metabolite and follow-up visit, the Monte Carlo power of the imaging
   change test (one-sample t of the change from baseline), its size in the
   null counterpart, the noncentral-t power from the design's SD and CV
   (:func:`dtitool.stats.imaging_change.analytic_imaging_power`) and the
   difference in Monte Carlo SE (``sqrt(p (1 - p) / R)``), with every spectrum
   kept (the analytic power's setting) and with analyze's default quality rule
   (CRLB > 20 % excluded), whose value-dependent exclusion raises the size;
2. the cost of MRS measures per model fitted: ``ketamine-rct-mrs`` (seven MD
   ROIs and three metabolites) against the same design without its voxel, for
   the change-score, mixed and imaging power runs, timed side by side
   (``--repeats`` alternations, the median), as seconds per model fitted and
   the ratio.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from dtitool.design import design_from_dict, design_to_dict, load_preset
from dtitool.stats.imaging_change import imaging_power
from dtitool.stats.mixed_power import mixed_power
from dtitool.stats.power import MonteCarlo, power


def _without_voxels(design):
    d = design_to_dict(design)
    del d["voxels"]
    d["name"] = f"{design.name} without its voxel"
    return design_from_dict(d)


def _power_table(n: int, replicates: int) -> None:
    design = load_preset("ketamine-mrs").with_n(n)
    for label, limits in (("every spectrum kept", {"crlb": 1e9}),
                          ("crlb > 20% excluded (analyze's default)", None)):
        t = imaging_power(design, replicates=replicates, rng=1,
                          quality_limits=limits)
        t = t[t["measure"] != "tcr"]
        print(f"\nketamine-mrs, n = {n}, {replicates} trials, {label}:")
        print(f"{'measure':8} {'term':7} {'power':>7} {'analytic':>8} {'z':>6} "
              f"{'size':>7} {'in band':>7} {'mean n':>7}")
        for _, r in t.iterrows():
            p, a = r["power"], r["analytic_power"]
            se = np.sqrt(max(p * (1 - p), 1e-12) / replicates)
            z = (p - a) / se if p * (1 - p) > 0 else float("nan")
            print(f"{r['measure']:8} {r['term']:7} {p:7.4f} {a:8.4f} {z:6.2f} "
                  f"{r['size']:7.4f} {r['size_ok']!s:>7} {r['mean_n']:7.2f}")


def _timed(fn) -> float:
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fn()
    return time.perf_counter() - t0


def _cost(replicates: int, repeats: int) -> None:
    with_mrs = load_preset("ketamine-rct-mrs")
    without = _without_voxels(with_mrs)
    K = len(with_mrs.outcomes)
    runs = {
        "change": (lambda d: power(d, settings=MonteCarlo(replicates=replicates,
                                                          rng=1)),
                   lambda d: (len(d.roi_names) + len(d.measures)) * K),
        "mixed": (lambda d: mixed_power(d, replicates=replicates // 4, rng=1,
                                        time="visit"),
                  lambda d: len(d.roi_names) + len(d.measures) + K),
        "imaging": (lambda d: imaging_power(d, replicates=replicates, rng=1),
                    lambda d: len(d.roi_names) + len(d.measures)),
    }
    print(f"\ncost per model fitted, ketamine-rct-mrs with and without its voxel "
          f"(change and imaging {replicates} trials, mixed {replicates // 4}; "
          f"each with its null counterpart; median of {repeats}):")
    print(f"{'model':8} {'models':>12} {'s with':>8} {'s without':>9} "
          f"{'ms/model with':>14} {'without':>8} {'ratio':>6}")
    for name, (run, models) in runs.items():
        t_with, t_without = [], []
        for _ in range(repeats):  # alternated, so that load affects both
            t_with.append(_timed(lambda run=run: run(with_mrs)))
            t_without.append(_timed(lambda run=run: run(without)))
        a, b = np.median(t_with), np.median(t_without)
        ma, mb = models(with_mrs), models(without)
        per_a, per_b = 1e3 * a / ma, 1e3 * b / mb
        print(f"{name:8} {ma:>5} vs {mb:<4} {a:8.2f} {b:9.2f} {per_a:14.2f} "
              f"{per_b:8.2f} {per_a / per_b:6.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicates", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    for n in (8, 40):
        _power_table(n, args.replicates)
    _cost(args.replicates, args.repeats)


if __name__ == "__main__":
    main()
