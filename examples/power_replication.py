"""Power of a replication: how many patients it takes to see the reported effects.
===============================================================================

Teaching point: the reported tests of the 98-patient ketamine trial (Kopelman et
al. 2023) were significant at p ~ 0.01-0.08, which means their power was only
about one half; a replication designed to *detect* the same effects with 80 %
power needs a much larger sample. Two routes to that sample size are shown:

- Monte Carlo: simulate the face-value world ``ketamine-rct-face-value`` (effects
  calibrated so that each reported test's median p falls in its range) at each n,
  fit every model, count rejections (``dtitool.stats.power.power_curve`` and
  ``sample_size``);
- face value: solve for the effect size a reported p implies and its
  noncentral-F power (``dtitool.stats.implied.implied_effect``), what G*Power would
  say if the published effect were taken as the true one.

Both are face-value answers, and so optimistic: in the realistic default world
``ketamine-rct`` (every parameter inside its sourced range) the same tests have
much less power at n = 98, which the script prints too.

The simulated replication is analysed as a replication should be, with
dtitool's default ``welch`` inference (each arm fitted with its own variance,
at its nominal level when the arms' variances differ). The face-value world was
calibrated to the reported p-values under the reported pooled-variance OLS,
whose interaction tests are conservative here, so at n = 98 its reported tests
have a little more than one half power under welch.

Run::

    python examples/power_replication.py --out example-output/power_replication
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from dtitool import load_preset, reported_findings
from dtitool.report.plots import plot_power_curve
from dtitool.stats.implied import implied_effect
from dtitool.stats.power import power, power_curve, sample_size

NAME = "power_replication"

CURVE_TESTS = [
    ("L_BA10", "madrs", "interaction"),
    ("L_amygdala", "madrs", "interaction"),
    ("L_hippocampus", "madrs", "interaction"),
    ("R_BA10", "madrs", "slope_pooled"),
]
"""Tests drawn on the power curve (one per kind of reported finding)."""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    p.add_argument("--out", type=Path, default=Path("example-output") / NAME,
                   help="output folder (default: %(default)s)")
    p.add_argument("--seed", type=int, default=10,
                   help="random seed (default: %(default)s)")
    p.add_argument("--replicates", type=int, default=600,
                   help="simulated trials per point (default: %(default)s)")
    return p.parse_args(argv)


def reported_tests(design) -> list[tuple[str, str, str, float]]:
    """(roi, outcome, term, reported p) of every reported finding.

    A p range is summarised by its geometric mean; the R BA10 finding, whose
    outcome the abstract does not name, is taken on the MADRS.
    """
    f = reported_findings()
    f = f[f["direction"] != 0]
    return [(r.roi, design.outcome_names[0] if r.outcome == "any" else r.outcome,
             r.term, math.sqrt(r.p_low * r.p_high)) for r in f.itertuples()]


def main(argv=None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    design = load_preset("ketamine-rct-face-value")
    tests = reported_tests(design)
    # The trial's own n among the points, then steps of 25 up to 350.
    ns = [50, 75, design.n, *range(125, 351, 25)]

    curve = power_curve(design, parameter="n", values=ns,
                        replicates=args.replicates, rng=args.seed)
    t = curve.table
    keep = np.zeros(len(t), bool)
    for roi, outcome, term, _ in tests:
        keep |= ((t["roi"] == roi) & (t["outcome"] == outcome)
                 & (t["term"] == term)).to_numpy()
    t[keep].to_csv(args.out / "power_curve.tsv", sep="\t", index=False,
                   float_format="%.6g")

    # n for 80 % power for *every* reported test (the weakest one decides).
    ss = sample_size(design, target_power=0.8,
                     tests=[x[:3] for x in tests], n_min=100, n_max=600,
                     replicates=args.replicates, rng=args.seed)
    at98 = {x[:3]: float(t[(t["value"] == design.n) & (t["roi"] == x[0])
                           & (t["outcome"] == x[1]) & (t["term"] == x[2])]
                         ["power"].iloc[0]) for x in tests}
    realistic = power(load_preset("ketamine-rct"), replicates=args.replicates,
                      rng=args.seed)
    real98 = [float(realistic.get(*x[:3])["power"]) for x in tests]

    rel_k = design.reliability("ketamine")
    rel_s = design.reliability("saline")
    implied = []
    for roi, _outcome, term, p in tests:
        # The pooled slope mixes both arms: their mean reliability.
        rel = rel_k[roi] if term != "slope_pooled" else 0.5 * (rel_k[roi] + rel_s[roi])
        implied.append(implied_effect(p, n=design.n,
                                      allocation=design.allocation.as_tuple(),
                                      reliability=rel, term=term))

    fig, ax = plt.subplots(figsize=(8, 5))
    plot_power_curve(curve, CURVE_TESTS, ax=ax, target_power=0.8)
    ax.axvline(design.n, color="0.4", ls=":", lw=1)
    ax.text(design.n + 3, 0.03, f"trial n = {design.n}", fontsize=8)
    if ss.n is not None:
        ax.axvline(ss.n, color="#d95f02", ls="-.", lw=1)
        ax.text(ss.n + 3, 0.1, f"n = {ss.n}: every reported test\nat 80% power",
                fontsize=8, color="#d95f02")
    ax.set_title("Power of a replication of the ketamine trial (2:1, baseline-"
                 f"adjusted models)\n{args.replicates} simulated trials per n, "
                 f"seed {args.seed}; dashed: 80%", fontsize=9)
    fig.tight_layout()
    fig.savefig(args.out / "power_replication.png", dpi=110)
    plt.close(fig)

    l_ba10 = t[(t["roi"] == "L_BA10") & (t["outcome"] == "madrs")
               & (t["term"] == "interaction")]
    n80_l_ba10 = next((int(v) for v, pw in zip(l_ba10["value"], l_ba10["power"],
                                               strict=True) if pw >= 0.8), None)
    print(f"Simulated power of the reported tests at the trial's n = {design.n}: "
          f"{min(at98.values()):.2f} to {max(at98.values()):.2f}.")
    print(f"L BA10 x MADRS interaction: 80% power first reached at n = "
          f"{n80_l_ba10} on the curve ({ns[0]}..{ns[-1]}).")
    print(f"Sample size for 80% power on all {len(tests)} reported tests: "
          f"{ss.summary()}.")
    print("Face value (effect implied by the reported p, noncentral F):")
    for (roi, outcome, term, p), e in zip(tests, implied, strict=True):
        print(f"  {roi:14s} {outcome:5s} {term:13s} p = {p:.3f}: observed r "
              f"{e.r_observed:.2f}, true r {e.r_true:.2f}; same-size replication "
              f"power {e.replication_power:.2f}, n for 80% = {e.replication_n80}")
    worst = max(e.replication_n80 for e in implied)
    print(f"In the realistic world (ketamine-rct) the same tests have power "
          f"{min(real98):.2f} to {max(real98):.2f} at n = {design.n}.")
    print(f"Conclusion: a trial the size of the original (n = {design.n}) has about "
          f"{np.median(list(at98.values())):.0%} power per reported test; a "
          f"replication needs n = {ss.n} (simulation) or up to n = {worst} "
          "(face value) for 80%.")
    print(f"wrote {args.out / 'power_replication.png'} and "
          f"{args.out / 'power_curve.tsv'}")
    return 0


if __name__ == "__main__":
    # 0 is the interpreter's own exit status; raising only for another one lets
    # the documentation's gallery run the script inside its own process.
    if status := main():
        raise SystemExit(status)
