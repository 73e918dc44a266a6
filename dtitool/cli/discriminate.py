"""``dtitool discriminate``: which schedule and n tell two scenarios apart."""

from __future__ import annotations

import argparse
from pathlib import Path

from dtitool._io import atomic_outputs, write_tsv

NAMES = ["discriminate.tsv", "discriminate_best.tsv", "discriminate.png",
         "discriminate.html", "design_a.toml", "design_b.toml"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``dtitool discriminate``."""
    p = subparsers.add_parser(
        "discriminate",
        help="which visits and n tell two scenario designs apart",
        description="Simulate two scenarios of one longitudinal design (for "
        "example --design ect-plasticity --design ect-inflammation) and, for "
        "every contrast between two visits, ROI, measure and n, the power to "
        "tell them apart: data from each scenario reject the other's value of "
        "the treated-minus-control change between the visits (Welch t-tests, "
        "both ways; the power is the smaller rate, the size columns each "
        "scenario's rejection of its own value). Writes DIR/discriminate.tsv, "
        "DIR/discriminate_best.tsv (per ROI and measure, the contrast and "
        "smallest n reaching --target-power), DIR/discriminate.png, a "
        "self-contained report DIR/discriminate.html and both designs "
        "(docs/model.md, Telling mechanisms apart).",
    )
    p.add_argument("--design", action="append", required=True, metavar="PRESET|FILE",
                   help="a scenario: a preset name or a design file; give exactly "
                   "two")
    p.add_argument("--n", default=None, metavar="N,N,...",
                   help="total sample sizes to try (comma list or start:stop:step; "
                   "default the designs' n)")
    p.add_argument("--visits", default=None, metavar="V,V,...",
                   help="candidate visits whose pairs are contrasted (default all)")
    p.add_argument("--replicates", type=int, default=1000,
                   help="simulated trials per scenario and n (default 1000)")
    p.add_argument("--alpha", type=float, default=0.05,
                   help="two-sided level of each test (default 0.05)")
    p.add_argument("--target-power", type=float, default=0.8, metavar="P",
                   help="power the best design must reach (default 0.8)")
    p.add_argument("--seed", type=int, default=None,
                   help="random seed (default: fresh entropy, recorded)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--quiet", action="store_true", help="no summary on stdout")
    p.add_argument("--force", action="store_true",
                   help="replace the outputs of an earlier dtitool run in DIR")
    return p


def _design(spec: str):
    from dtitool.design import available_presets, load_preset, read_design

    if spec in available_presets():
        return load_preset(spec), None
    path = Path(spec)
    if not path.is_file():
        raise ValueError(f"--design {spec!r} is neither a preset "
                         f"({', '.join(available_presets())}) nor a design file")
    return read_design(path)[0], str(path)


def _sizes(text: str | None) -> list[int] | None:
    from dtitool.cli._common import parse_curve

    if text is None:
        return None
    _, values = parse_curve(f"n={text}", option="--n")
    return [int(v) for v in values]


def run(args) -> int:
    """Run ``dtitool discriminate``."""
    from dtitool.design import design_to_toml
    from dtitool.simulate import as_seed_sequence
    from dtitool.stats.discriminate import best_designs, discriminate

    if len(args.design) != 2:
        raise ValueError(f"--design must be given exactly twice (two scenarios); "
                         f"got {len(args.design)}")
    (a, fa), (b, fb) = _design(args.design[0]), _design(args.design[1])
    if not 0 < args.target_power < 1:
        raise ValueError(f"--target-power must be in (0, 1); got {args.target_power}")
    if args.seed is not None and args.seed < 0:
        raise ValueError(f"--seed must be a non-negative integer; got {args.seed}")
    seed = int(as_seed_sequence(args.seed).entropy)
    sizes = _sizes(args.n)
    visits = None if args.visits is None else [
        v.strip() for v in args.visits.split(",") if v.strip()]
    table = discriminate(a, b, n=sizes, visits=visits, replicates=args.replicates,
                         rng=seed, alpha=args.alpha)
    best = best_designs(table, args.target_power)
    inputs = [f for f in (fa, fb) if f]
    with atomic_outputs(args.out, NAMES, force=args.force, inputs=inputs,
                        seed=seed) as tmp:
        write_tsv(table, tmp / "discriminate.tsv")
        write_tsv(best, tmp / "discriminate_best.tsv")
        from dtitool.report.plots_longitudinal import (
            discrimination_report,
            save_discrimination,
        )

        save_discrimination(table, tmp / "discriminate.png",
                            target_power=args.target_power,
                            title=f"{a.name} vs {b.name}")
        (tmp / "discriminate.html").write_text(discrimination_report(
            table, best, a, b, target_power=args.target_power, seed=seed),
            encoding="utf-8")
        for name, d in (("design_a.toml", a), ("design_b.toml", b)):
            (tmp / name).write_text(design_to_toml(
                d, header=f"Scenario of a dtitool discriminate run (seed {seed})"),
                encoding="utf-8")
    if not args.quiet:
        print(f"telling {a.name} from {b.name}: {args.replicates} trials of each "
              f"per n, seed {seed}")
        for r in best.itertuples():
            what = f"{r.roi} {r.measure}" + (f" ({r.arm})" if len(a.arms) > 2 else "")
            if r.reached:
                print(f"  {what}: {r.contrast} reaches power {r.power:.2f} at n = "
                      f"{r.n}")
            else:
                print(f"  {what}: no contrast reaches {args.target_power:g} within "
                      f"the n tried (best {r.contrast}, power {r.power:.2f} at n = "
                      f"{r.n})")
        print(f"wrote {', '.join(NAMES)} to {args.out}")
    return 0
