"""Why a ratio to creatine can fake or hide a change
=================================================

Teaching point: MRS values are often reported as ratios to total creatine
(tCr), on the assumption that creatine does not change. When the treatment
changes creatine itself (creatine changes during ECT: Erchinger et al. 2023),
the ratio reports creatine's change as the metabolite's. Two worlds, one
randomised trial each (treatment against sham, 30 per arm, scans before and
after), tCr up 6 % with treatment:

- fake: GABA+ does not change; GABA+/tCr falls, and the ratio "finds" a GABA
  decrease in about four trials of ten, while the water-scaled test stays at
  its level;
- hide: GABA+ rises 6 %, with creatine; the water-scaled value sees the rise,
  the ratio sees nothing.

The numbers (6 %, the SDs) are estimates for the demonstration; the noise and
between-participant spread are those of the `ketamine-mrs` preset. Every test
is the imaging change test, treatment minus sham (Welch t;
:func:`dtitool.stats.imaging_change.imaging_power`), and the same simulated
spectra give both units (the same seed).

Run::

    python examples/creatine_ratio.py --out example-output/creatine_ratio
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import pandas as pd

from dtitool.design import design_from_dict
from dtitool.stats.imaging_change import imaging_power

NAME = "creatine_ratio"
ARMS = {"treatment": 1, "sham": 1}


def world(gaba_change: float, unit: str) -> dict:
    """A two-arm MRS trial: tCr up 6 % with treatment, GABA+ by ``gaba_change``."""
    def change(mean):  # per arm: the treatment's mean, none with sham
        return {"treatment": mean, "sham": 0.0}

    gaba = {"unit": unit, "scale": 0.1 if unit == "i.u." else 0.01,
            "mean": 2.0, "sd": 0.2, "cv": 0.07, "crlb": 10.0,
            "change_mean": change(gaba_change * 2.0),
            "change_sd": {"treatment": 0.1, "sham": 0.05}}
    return {
        "schema": 2, "name": f"creatine ratio ({unit})",
        "trial": {"n": 60, "allocation": ARMS, "control": "sham", "block_size": 2},
        "visits": [{"name": "baseline", "hours": 0},
                   {"name": "post", "hours": 672, "primary": True}],
        "voxels": {"mPFC": {"measures": {
            "tcr": {"unit": "i.u.", "scale": 0.5, "mean": 8.0, "sd": 0.5,
                    "cv": 0.04, "crlb": 3.0, "change_mean": change(0.48),
                    "change_sd": {"treatment": 0.3, "sham": 0.16}},
            "gaba": gaba}}},
        "outcomes": {"madrs": {
            "scale": "MADRS", "scale_min": 0, "scale_max": 60,
            "baseline_mean": 31.9, "baseline_sd": 6.7, "inclusion_min": 20,
            "change_mean": change(-12.0),
            "change_sd": {"treatment": 10.0, "sham": 6.0},
            "reliability": 0.93}},
        "correlations": {"outcome_baseline": 0.6, "outcome_change": 1.0},
    }


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    p.add_argument("--out", type=Path, default=Path("example-output") / NAME,
                   help="output folder (default: %(default)s)")
    p.add_argument("--seed", type=int, default=3, help="random seed (default 3)")
    p.add_argument("--replicates", type=int, default=4000,
                   help="simulated trials per world and unit (default 4000)")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for label, change in (("fake", 0.0), ("hide", 0.06)):
        for unit in ("i.u.", "ratio to tCr"):
            t = imaging_power(design_from_dict(world(change, unit)),
                              replicates=args.replicates, rng=args.seed)
            r = t[(t["measure"] == "gaba") & (t["term"] == "treatment:post")]
            rows.append({"world": label, "gaba_change": change, "unit": unit,
                         "power": float(r["power"].iloc[0]),
                         "size": float(r["size"].iloc[0]),
                         "mean_estimate": float(r["mean_estimate"].iloc[0])})
    table = pd.DataFrame(rows)
    table.to_csv(args.out / f"{NAME}.tsv", sep="\t", index=False)

    fig, ax = plt.subplots(figsize=(6.0, 3.8))
    x = range(len(table))
    ax.bar(x, table["power"], color=["tab:blue", "tab:orange"] * 2)
    ax.axhline(0.05, color="k", lw=0.8, ls=":")
    ax.set_xticks(list(x), [f"{w}\n{u}" for w, u in zip(table["world"],
                                                          table["unit"],
                                                          strict=True)])
    ax.set_ylabel("share of trials rejecting 'no GABA+ change'")
    ax.set_ylim(0, 1.02)
    ax.set_title(f"tCr up 6 % with treatment, 30 per arm, {args.replicates} trials")
    fig.tight_layout()
    fig.savefig(args.out / f"{NAME}.png", dpi=120)
    plt.close(fig)

    def power(w, u):
        return float(table.loc[(table["world"] == w) & (table["unit"] == u),
                               "power"].iloc[0])

    print(f"tCr rises 6 % with treatment; 30 per arm; {args.replicates} trials:")
    print(f"- GABA+ unchanged: the water-scaled test rejects in "
          f"{power('fake', 'i.u.'):.2f} of trials (its level), GABA+/tCr in "
          f"{power('fake', 'ratio to tCr'):.2f}: a fake decrease")
    print(f"- GABA+ up 6 % with creatine: the water-scaled test detects it in "
          f"{power('hide', 'i.u.'):.2f} of trials, GABA+/tCr in "
          f"{power('hide', 'ratio to tCr'):.2f}: the ratio hides it")
    print(f"wrote {NAME}.png and {NAME}.tsv to {args.out}")


if __name__ == "__main__":
    main()
