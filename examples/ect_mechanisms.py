"""Plasticity or inflammation: which ECT scan schedule can tell them apart?
=========================================================================

Teaching point: two mechanisms of the hippocampal changes seen during a course
of electroconvulsive therapy (ECT) predict different time courses.
Structural plasticity (``ect-plasticity``) grows with each session and lasts;
transient neuroinflammation (``ect-inflammation``) rises after each session and
is gone weeks later. The common two-visit design (before and after the course)
sees a volume gain in both worlds and can tell them apart only by its size,
which nobody knows in advance. A scan 2 h after the first session and one at 3
months contrast with *opposite signs* in the two worlds, so they tell the
mechanisms apart whatever the sizes, and with far fewer patients.

Both scenarios of the ``ect-course`` design (bilateral ECT against healthy
controls, five visits) are simulated; the figure shows the mean hippocampal
volume of each arm at every visit in each world, and the power of three
contrasts to tell the worlds apart (each world's trials rejecting the other's
predicted treated-minus-control change, Welch tests, both ways) against the
total sample size (:func:`dtitool.stats.discriminate.discriminate`).

Run::

    python examples/ect_mechanisms.py --out example-output/ect_mechanisms
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from dtitool import load_preset, simulate_arrays
from dtitool.stats.discriminate import discriminate

NAME = "ect_mechanisms"
SCENARIOS = ("ect-plasticity", "ect-inflammation")
CONTRASTS = ("end-baseline", "followup-session1", "session1-baseline")
SIZES = (20, 40, 60, 80)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    p.add_argument("--out", type=Path, default=Path("example-output") / NAME,
                   help="output folder (default: %(default)s)")
    p.add_argument("--seed", type=int, default=2018,
                   help="random seed (default: %(default)s)")
    p.add_argument("--replicates", type=int, default=1000,
                   help="simulated trials per scenario and n (default: %(default)s)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    a, b = (load_preset(s) for s in SCENARIOS)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    hours = np.array([v.hours for v in a.visits])
    x = np.arange(len(hours))
    for design, style in zip((a, b), ("-", "--"), strict=True):
        sim = simulate_arrays(design, rng=args.seed, stop=200)
        vol = sim.extra[:, :, 0, :]  # hippocampal volume, (R, N, visits)
        for code, arm in enumerate(design.arms):
            mean = vol[sim.arm == code].mean(axis=0)
            axes[0].plot(x, mean, style, marker="o",
                         label=f"{arm}, {design.name.removeprefix('ect-')}")
    axes[0].set_xticks(x, a.visit_names)
    axes[0].set_ylabel("hippocampal volume (mm^3)")
    axes[0].set_title("mean volume per arm, both worlds")
    axes[0].legend(fontsize=8)

    table = discriminate(a, b, n=SIZES, replicates=args.replicates, rng=args.seed)
    vol = table[(table["roi"] == "hippocampus") & (table["measure"] == "volume")]
    for contrast in CONTRASTS:
        c = vol[vol["contrast"] == contrast].sort_values("n")
        axes[1].plot(c["n"], c["power"], marker="o",
                     label=contrast.replace("-", " vs "))
    axes[1].axhline(0.8, color="0.5", lw=0.8, ls="--")
    axes[1].set_xlabel("total n (half ECT, half controls)")
    axes[1].set_ylabel("power to tell the worlds apart")
    axes[1].set_ylim(0, 1.02)
    axes[1].set_title("hippocampal volume contrasts")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out / f"{NAME}.png", dpi=110)
    plt.close(fig)
    vol.to_csv(args.out / f"{NAME}.tsv", sep="\t", index=False)

    at = vol[vol["n"] == 40].set_index("contrast")
    end = at.loc["end-baseline"]
    fu = at.loc["followup-session1"]
    print(f"hippocampal volume, n = 40 (20 ECT, 20 controls), "
          f"{args.replicates} trials per world:")
    print(f"  end vs baseline: the ECT-minus-control gain is {end.true_a:.1f} "
          f"(plasticity) and {end.true_b:.1f} (inflammation) x 10 mm^3; power to "
          f"tell them apart {end.power:.2f}")
    print(f"  follow-up vs 2 h after session 1: {fu.true_a:.1f} and "
          f"{fu.true_b:.1f} x 10 mm^3 (opposite signs); power {fu.power:.2f}")
    best = vol[vol["power"] >= 0.8].sort_values(["n", "power"],
                                               ascending=[True, False])
    if len(best):
        r = best.iloc[0]
        print(f"smallest design reaching 80% power: scans at {r.from_visit} and "
              f"{r.to_visit}, n = {r.n} (power {r.power:.2f})")
    print(f"wrote {NAME}.png and {NAME}.tsv to {args.out}")
    return 0


if __name__ == "__main__":
    # 0 is the interpreter's own exit status; raising only for another one lets
    # the documentation's gallery run the script inside its own process.
    if status := main():
        raise SystemExit(status)
