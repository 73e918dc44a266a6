"""Names from the design: the default presets' power before and after, side by side.

Run: ``python tests/benchmarks/bench_names.py --before DIR [--after DIR]
[--replicates 20000] [--repeats 5]``, with ``--before`` a checkout of dtitool
from before the trial's names came from its design (the name constants of
``_constants.py``) and ``--after`` one of now (default: this tree).

For ``ketamine-rct`` and ``ketamine-rct-face-value`` it runs ``dtitool power``
(20,000 replicates, ``--n-jobs 1`` so that the engine's cost is not hidden by
scheduling) with both trees, alternating them, and prints:

1. whether ``power.tsv`` and ``familywise.tsv`` are byte-identical (the same
   seed, the same engine, the same names), and if not, the largest difference
   of power, size and median p against its Monte Carlo band (3 binomial SEs of
   the larger of the two rates);
2. the wall time of each tree and their ratio (after / before): the cost of
   taking names from the design instead of constants.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from _compare import ROOT, side_by_side


def _compare_tables(a: Path, b: Path, replicates: int) -> str:
    lines = []
    for name in ("power.tsv", "familywise.tsv"):
        x, y = (a / name).read_bytes(), (b / name).read_bytes()
        if x == y:
            lines.append(f"  {name}: byte-identical")
            continue
        ta = pd.read_csv(a / name, sep="\t")
        tb = pd.read_csv(b / name, sep="\t")
        worst = []
        for col in ("power", "size", "median_p"):
            if col not in ta or col not in tb:
                continue
            d = np.abs(ta[col].to_numpy(float) - tb[col].to_numpy(float))
            p = np.fmax(ta[col].to_numpy(float), tb[col].to_numpy(float))
            band = 3 * np.sqrt(np.clip(p * (1 - p), 1e-12, None) / replicates)
            worst.append(f"{col} max |diff| {np.nanmax(d):.4g} "
                         f"({int(np.nansum(d > band))} outside 3 SE)")
        lines.append(f"  {name}: differs; " + "; ".join(worst))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", type=Path, required=True)
    ap.add_argument("--after", type=Path, default=ROOT,
                    help="the tree to compare (default: this one)")
    ap.add_argument("--replicates", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--inference", default=None,
                    help="pass --inference to both trees (their defaults may "
                    "differ: ols before welch became the default)")
    args = ap.parse_args(argv)
    keep_dir = Path(tempfile.mkdtemp(prefix="dtitool-names-"))
    try:
        for preset in ("ketamine-rct", "ketamine-rct-face-value"):
            kept = {}

            def keep(name, out, kept=kept, preset=preset):
                if name not in kept:
                    dest = keep_dir / f"{preset}-{name}"
                    shutil.copytree(out, dest)
                    kept[name] = dest

            def argv_of(out, preset=preset):
                return ["power", "--preset", preset, "--replicates",
                        str(args.replicates), "--seed", "1", "--n-jobs", "1",
                        *(["--inference", args.inference] if args.inference
                          else []),
                        "--quiet", "--out", str(out)]

            side_by_side(args.before, argv_of, args.repeats,
                         label=f"power --preset {preset} ({args.replicates} "
                         "replicates, 1 worker)", keep=keep, after=args.after)
            print(_compare_tables(kept["before"], kept["after"], args.replicates))
    finally:
        shutil.rmtree(keep_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
