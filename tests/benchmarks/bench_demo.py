"""Benchmark: ``dtitool demo`` and ``dtitool simulate --images``, before and after.

Must reach: each in at most half of the wall time of the code as it was before
(given with ``--before DIR``: a checkout whose package is importable from DIR),
measured in the same run, alternating the two trees so that both see the same
load. Prints the medians, the ratio, the disk space the demo's outputs take, and
the load average at the start and the end.

Run:  python tests/benchmarks/bench_demo.py --before /path/to/old/checkout
      [--repeats 3] [--only demo|images]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from _compare import load, side_by_side


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", required=True, type=Path,
                    help="checkout of the code before (its dtitool importable)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", choices=["demo", "images"], default=None)
    args = ap.parse_args()
    print(f"machine: {load()}")
    if args.only in (None, "images"):
        r = side_by_side(args.before, lambda out: ["simulate", "--seed", "1",
                                                   "--images", "--out", str(out)],
                         args.repeats, label="simulate --images (98 subjects, "
                         "196 MD maps)")
        print(f"  must reach after/before <= 0.50: "
              f"{'PASS' if r['ratio'] <= 0.5 else 'FAIL'}")
    if args.only in (None, "demo"):
        r = side_by_side(args.before, lambda out: ["demo", "--out", str(out)],
                         args.repeats, label="dtitool demo")
        d = r["disk"]
        print(f"  disk: before {d['before'] / 1e6:.0f} MB, after "
              f"{d['after'] / 1e6:.0f} MB")
        print(f"  must reach after/before <= 0.50: "
              f"{'PASS' if r['ratio'] <= 0.5 else 'FAIL'}")


if __name__ == "__main__":
    main()
