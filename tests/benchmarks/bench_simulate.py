"""Benchmark: simulate 10,000 replicates of the ketamine-rct preset.

Prints wall time and peak memory (resident set size) of the array simulation
(98 subjects, 7 ROIs, 2 sessions, 2 outcomes per replicate), each measured in a
fresh subprocess so the peak belongs to that run alone. Must reach: < 5 s wall and
< 2 GB peak on 2 cores.

Run: python tests/benchmarks/bench_simulate.py [--replicates 10000]
"""

import argparse
import json
import subprocess
import sys

CHILD = r"""
import json, resource, sys, time
import numpy as np
from dtitool import load_preset, simulate_arrays, simulate_cohort
reps, mode = int(sys.argv[1]), sys.argv[2]
design = load_preset("ketamine-rct")
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
if mode == "arrays":
    a = simulate_arrays(design, rng=1, stop=reps)
    n_values = a.md.size + a.scores.size
else:
    c = simulate_cohort(design, rng=1, replicates=reps)
    n_values = len(c.roi_md) + len(c.participants)
wall = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"wall": wall, "peak_mb": peak / 1024, "import_mb": base / 1024,
                  "n_values": n_values}))
"""


def run(reps: int, mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(reps), mode],
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicates", type=int, default=10_000)
    args = parser.parse_args()
    r = args.replicates
    print(f"simulate {r:,} replicates of ketamine-rct (98 subjects, 7 ROIs, "
          "2 sessions, 2 outcomes)")
    for mode, label in (("arrays", "arrays (simulate_arrays)"),
                        ("tables", "tidy tables (simulate_cohort + DataFrames)")):
        res = run(r, mode)
        print(f"  {label:44s} wall {res['wall']:6.2f} s   peak RSS "
              f"{res['peak_mb']:7.0f} MB (of which {res['import_mb']:.0f} MB at "
              f"import)   {res['n_values']:,} values")
    print("must reach: arrays < 5 s and < 2048 MB")


if __name__ == "__main__":
    main()
