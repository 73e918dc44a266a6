"""Reliability attenuation: test-retest noise shrinks every dMD effect and its power.
==================================================================================

Teaching point: MD *change* is a difference of two noisy scans, so its
reliability, ``var(true dMD) / (var(true dMD) + 2 (cv * MD)^2)``, falls fast as
the test-retest coefficient of variation (CV) grows. Over the CV range reported
for gray-matter MD (1 % to 7.4 %, Grech-Sollars et al. 2015, NMR Biomed 28:468)
the observed correlation of dMD with symptom change shrinks to
``true r * sqrt(reliability)`` (Spearman's attenuation), regression slopes to
``true slope * reliability``, and the power of the trial's tests collapses, with
the biology unchanged.

The ``ketamine-rct`` design (the realistic default: a true 24 h MD-change SD of
3 % of MD in the ketamine arm) is simulated at each CV (every ROI gets that CV);
correlations are measured in the ketamine arm for L BA10 and the MADRS. The
expected observed correlation is the simulated correlation with *true* dMD times
``sqrt(reliability)``: the score model (rating error, bounded scale) attenuates
both alike, so their ratio isolates what the scanner does.

Run::

    python examples/reliability_attenuation.py --out example-output/reliability
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from dtitool import load_preset, simulate_arrays
from dtitool.stats.power import power_curve, vary_design

NAME = "reliability_attenuation"
ROI, OUTCOME = "L_BA10", "madrs"
CVS = (0.01, 0.018, 0.026, 0.034, 0.042, 0.05, 0.058, 0.066, 0.074)
"""Test-retest CVs (fractions): Grech-Sollars et al. 2015 range, mean 2.6 %."""


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    p.add_argument("--out", type=Path, default=Path("example-output") / NAME,
                   help="output folder (default: %(default)s)")
    p.add_argument("--seed", type=int, default=2015,
                   help="random seed (default: %(default)s)")
    p.add_argument("--replicates", type=int, default=500,
                   help="simulated trials per CV (default: %(default)s)")
    return p.parse_args(argv)


def arm_statistics(design, *, seed, replicates) -> dict[str, float]:
    """Pooled ketamine-arm correlations and slopes of dMADRS on true/observed dMD."""
    a = simulate_arrays(design, rng=seed, stop=replicates)
    j = design.roi_names.index(ROI)
    k = design.outcome_names.index(OUTCOME)
    ket = a.treated
    obs = a.d_md[..., j][ket]
    true = (a.md_true[..., j, 1] - a.md_true[..., j, 0])[ket]
    dy = a.d_score[..., k][ket]

    def corr_slope(x):
        c = np.cov(x, dy)
        return c[0, 1] / np.sqrt(c[0, 0] * c[1, 1]), c[0, 1] / c[0, 0]

    r_true, b_true = corr_slope(true)
    r_obs, b_obs = corr_slope(obs)
    return {"r_true_dmd": r_true, "r_observed_dmd": r_obs,
            "slope_true_dmd": b_true * 1e-5, "slope_observed_dmd": b_obs * 1e-5}


def main(argv=None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    base = load_preset("ketamine-rct")
    j = base.roi_names.index(ROI)
    k = base.outcome_names.index(OUTCOME)
    r_design = base.correlations.roi_outcome_array("ketamine")[j, k]

    rows = []
    for cv in CVS:
        d = vary_design(base, "cv", cv)
        rel = d.reliability("ketamine")[ROI]
        st = arm_statistics(d, seed=args.seed, replicates=args.replicates)
        roi = d.rois[j]
        # the saline arm's observed dMD spread: true change and two scans' noise
        sd_sal = np.sqrt(roi.change_sd["saline"] ** 2 + 2 * roi.noise_sd ** 2)
        rows.append({"cv": cv, "reliability": rel,
                     "r_expected": st["r_true_dmd"] * np.sqrt(rel),
                     "dmd_sd_saline": sd_sal / 1e-5, **st})
    tab = pd.DataFrame(rows)
    curve = power_curve(base, parameter="cv", values=CVS,
                        replicates=args.replicates, rng=args.seed)
    t = curve.table
    for term in ("interaction", "slope_ketamine"):
        sel = t[(t["roi"] == ROI) & (t["outcome"] == OUTCOME) & (t["term"] == term)]
        tab[f"power_{term}"] = sel["power"].to_numpy()
    tab["slope_ratio"] = tab["slope_observed_dmd"] / tab["slope_true_dmd"]
    tab.to_csv(args.out / "reliability_attenuation.tsv", sep="\t", index=False,
               float_format="%.6g")

    pct = 100 * tab["cv"]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5))
    ax1.plot(pct, tab["r_true_dmd"], "s", color="0.3",
             label="with true dMD (simulated)")
    ax1.axhline(r_design, color="0.3", lw=0.8, ls=":")
    ax1.plot(pct, tab["r_expected"], "-", color="#d95f02",
             label="r with true dMD x sqrt(reliability)")
    ax1.plot(pct, tab["r_observed_dmd"], "o", color="#d95f02",
             label="with observed dMD (simulated)")
    ax1.set_xlabel("test-retest CV of MD (%)")
    ax1.set_ylabel(f"correlation of d{OUTCOME.upper()} with dMD ({ROI}, ketamine arm)")
    ax1.set_ylim(0, 0.65)
    ax1.legend(fontsize=8, loc="lower left")
    top = ax1.secondary_xaxis("top")
    top.set_xticks(pct[::2], [f"{r:.2f}" for r in tab["reliability"][::2]])
    top.set_xlabel("reliability of dMD", fontsize=8)
    ax2.plot(pct, tab["power_interaction"], "o-", color="#d95f02",
             label="group x dMD interaction")
    ax2.plot(pct, tab["power_slope_ketamine"], "s--", color="#7570b3",
             label="dMD slope, ketamine arm")
    ax2.axhline(0.8, color="k", ls="--", lw=0.8)
    ax2.axvline(2.6, color="0.5", ls=":", lw=0.8)
    ax2.text(2.7, 0.02, "mean CV 2.6%", fontsize=8, color="0.4")
    ax2.set_ylim(0, 1)
    ax2.set_xlabel("test-retest CV of MD (%)")
    ax2.set_ylabel(f"power, {ROI} x {OUTCOME.upper()}, n = {base.n}")
    ax2.legend(fontsize=8)
    fig.suptitle(f"Same biology (true r = {r_design:.2f}), noisier scanner: "
                 f"{args.replicates} simulated trials per CV, seed {args.seed}",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out / "reliability_attenuation.png", dpi=110)
    plt.close(fig)

    lo, mid, hi = tab.iloc[0], tab.iloc[2], tab.iloc[-1]
    print(f"{ROI} x {OUTCOME.upper()}, ketamine arm: design correlation "
          f"{r_design:.2f} with true MD change ({lo['r_true_dmd']:.2f} simulated, "
          "through the bounded, noisily rated score):")
    for r in (lo, mid, hi):
        print(f"  CV {100 * r['cv']:.1f}%: dMD reliability {r['reliability']:.2f}, "
              f"observed r {r['r_observed_dmd']:.2f} (expected "
              f"{r['r_expected']:.2f}), slope shrunk to "
              f"{r['slope_ratio']:.0%}, power: ketamine-arm slope "
              f"{r['power_slope_ketamine']:.2f}, interaction "
              f"{r['power_interaction']:.2f}")
    print(f"Conclusion: from CV 1% to 7.4% the reliability of dMD falls from "
          f"{lo['reliability']:.2f} to {hi['reliability']:.2f}, the observed "
          f"correlation from {lo['r_observed_dmd']:.2f} to "
          f"{hi['r_observed_dmd']:.2f}, and the ketamine-arm slope's power from "
          f"{lo['power_slope_ketamine']:.2f} to {hi['power_slope_ketamine']:.2f}; "
          "the scanner's test-retest CV matters as much as n. The interaction "
          f"stays below the ketamine-arm slope's at every CV (power at most "
          f"{tab['power_interaction'].max():.2f}): its saline-arm slope is fitted "
          "to a dMD that is almost all noise, so the slope difference is imprecise "
          "whatever the scanner.")
    best = tab.loc[tab["power_interaction"].idxmax()]
    print(f"Why the interaction need not gain from a better scanner: the saline "
          f"arm's observed dMD SD falls from {hi['dmd_sd_saline']:.2f} to "
          f"{lo['dmd_sd_saline']:.2f} (1e-5 mm^2/s) as the CV drops from 7.4% to "
          "1%, nearly all of it noise; a slope's SE is the residual SD over the "
          "spread of its regressor, so the saline slope, and the slope difference "
          "with it, lose precision as that spread shrinks, while the ketamine "
          "slope is attenuated less. Interaction power peaks at "
          f"{best['power_interaction']:.2f} at CV {100 * best['cv']:.1f}% "
          "instead of rising to the best scanner.")
    print(f"wrote {args.out / 'reliability_attenuation.png'} and "
          f"{args.out / 'reliability_attenuation.tsv'}")
    return 0


if __name__ == "__main__":
    # 0 is the interpreter's own exit status; raising only for another one lets
    # the documentation's gallery run the script inside its own process.
    if status := main():
        raise SystemExit(status)
