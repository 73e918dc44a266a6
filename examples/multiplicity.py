"""Multiplicity: 14 tests under a true null find "something", far above 5 %.
=========================================================================

Teaching point: the reference analysis runs one group x dMD interaction test per
ROI and outcome, 7 x 2 = 14 tests (56 if the simple and pooled slopes are read
too). Under the ``null`` preset, where MD change is unrelated to symptom change
in both arms, each test alone rejects at its nominal 5 %, yet the chance that at
least one of them does (the family-wise error rate, FWER) is many times larger.
Holm's step-down correction brings the FWER back to 5 %; Benjamini-Hochberg
controls the false discovery rate instead, which under a complete null is the
same as the FWER. The tests are correlated (the two outcomes, and the ROIs'
MD changes), so the FWER is below the independent-tests value 1 - 0.95^m.

Aside: each test alone is at its nominal 5 % here because dtitool's default
inference, ``welch``, fits each arm with its own residual variance. The preset's
arms differ in the SD of symptom change (MADRS about 11 vs 6); the classical OLS
test the study reported (``power(..., inference="ols")``) pools one residual
variance, and with the larger variance in the larger (ketamine) arm the pooled
SE of the slope difference is too large: its interaction tests reject only
1.3-2.6 % of null trials (conservative) and its ketamine-arm slope tests
7.0-8.5 % (docs/model.md, "Inference"; ``PowerResult.table["size"]`` shows each
test's actual size).

Run::

    python examples/multiplicity.py --out example-output/multiplicity
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from dtitool import load_preset
from dtitool.stats.power import power

NAME = "multiplicity"
ALPHA = 0.05
METHOD_LABELS = {"none": "unadjusted", "holm": "Holm", "bh": "Benjamini-Hochberg"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    p.add_argument("--out", type=Path, default=Path("example-output") / NAME,
                   help="output folder (default: %(default)s)")
    p.add_argument("--seed", type=int, default=14,
                   help="random seed (default: %(default)s)")
    p.add_argument("--replicates", type=int, default=4000,
                   help="simulated null trials (default: %(default)s)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    design = load_preset("null")
    every = [(r, o, t) for r in design.roi_names for o in design.outcome_names
             for t in design.names.terms]
    res = power(design, replicates=args.replicates, alpha=ALPHA, rng=args.seed,
                families={"all_terms": every})
    fw = res.familywise
    fw = fw[fw["family"].isin(["interaction", "all_terms"])
            & fw["method"].isin(list(METHOD_LABELS))].reset_index(drop=True)
    fw.to_csv(args.out / "familywise_error.tsv", sep="\t", index=False,
              float_format="%.6g")
    get = fw.set_index(["family", "method"])
    m14 = int(get.loc[("interaction", "none"), "tests"])
    m56 = int(get.loc[("all_terms", "none"), "tests"])
    per_test = res.table.loc[res.table["term"] == "interaction", "power"]

    # Number of unadjusted "significant" interactions in each null trial.
    p_int = np.abs(res.signed_p[..., res.design.names.terms.index("interaction")])
    hits = (p_int.reshape(args.replicates, -1) <= ALPHA).sum(axis=1)
    counts = np.bincount(hits, minlength=4)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.5),
                                   gridspec_kw={"width_ratios": [1.3, 1]})
    width = 0.26
    colors = {"none": "#d95f02", "holm": "#1b9e77", "bh": "#7570b3"}
    for i, method in enumerate(METHOD_LABELS):
        for x, fam in enumerate(["interaction", "all_terms"]):
            r = get.loc[(fam, method)]
            ax1.bar(x + (i - 1) * width, r["power_any"], width, color=colors[method],
                    yerr=[[r["power_any"] - r["power_any_ci_low"]],
                          [r["power_any_ci_high"] - r["power_any"]]],
                    capsize=3, label=METHOD_LABELS[method] if x == 0 else None)
            ax1.text(x + (i - 1) * width, r["power_any"] + 0.02,
                     f"{r['power_any']:.2f}", ha="center", fontsize=8)
    for x, m in enumerate((m14, m56)):
        ax1.hlines(1 - (1 - ALPHA) ** m, x - 1.5 * width, x + 1.5 * width,
                   color="0.3", ls=":", lw=1.2,
                   label="1 - 0.95^m (independent tests)" if x == 0 else None)
    ax1.axhline(ALPHA, color="k", ls="--", lw=0.8)
    ax1.set_xticks([0, 1], [f"interaction\n(m = {m14} tests)",
                            f"all four terms\n(m = {m56} tests)"])
    ax1.set_ylabel("P(at least one p <= 0.05)  (family-wise error)")
    ax1.set_ylim(0, 1)
    ax1.legend(fontsize=8, loc="upper left")
    ax1.set_title(f"Null design, {args.replicates} simulated trials", fontsize=10)
    k = np.arange(len(counts))
    ax2.bar(k, counts / args.replicates, color="#d95f02")
    ax2.set_xlabel(f"unadjusted significant interactions per trial (of {m14})")
    ax2.set_ylabel("fraction of null trials")
    ax2.set_xticks(k)
    ax2.set_title("How many 'findings' a null trial yields", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out / "multiplicity.png", dpi=110)
    plt.close(fig)

    print(f"Null design ({design.name}), {args.replicates} simulated trials of "
          f"n = {design.n}, alpha {ALPHA}:")
    print(f"  each interaction test alone rejects in {per_test.min():.3f} to "
          f"{per_test.max():.3f} of trials (nominal {ALPHA}; {res.inference} "
          "inference, at its level although the arms' change SDs differ, see the "
          "docstring)")
    for fam, m in (("interaction", m14), ("all_terms", m56)):
        r = {meth: get.loc[(fam, meth), "power_any"] for meth in METHOD_LABELS}
        print(f"  {m} tests: P(at least one p <= {ALPHA}) unadjusted "
              f"{r['none']:.3f}, Holm {r['holm']:.3f}, BH {r['bh']:.3f} "
              f"(independent tests would give {1 - (1 - ALPHA) ** m:.3f})")
    fwer = get.loc[("interaction", "none"), "power_any"]
    print(f"Conclusion: with {m14} interaction tests and no true effect, "
          f"{fwer:.0%} of trials report at least one 'significant' ROI; Holm "
          f"keeps that at {get.loc[('interaction', 'holm'), 'power_any']:.1%}.")
    print(f"wrote {args.out / 'multiplicity.png'} and "
          f"{args.out / 'familywise_error.tsv'}")
    return 0


if __name__ == "__main__":
    # 0 is the interpreter's own exit status; raising only for another one lets
    # the documentation's gallery run the script inside its own process.
    if status := main():
        raise SystemExit(status)
