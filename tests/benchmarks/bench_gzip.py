"""Benchmark: is the ``fast`` extra (zlib-ng writes, ISA-L reads) worth it?

1. Per MD map (one simulated 91 x 109 x 91 float32 map, 3.6 MB raw): compress
   at level 1 with the standard library's zlib and with zlib-ng; decompress
   with zlib, zlib-ng and ISA-L; compressed sizes.
2. End to end, side by side: ``dtitool simulate --images`` and ``dtitool demo``
   with the extra and without it (a subprocess in which ``zlib_ng`` and
   ``isal`` cannot be imported), alternating.

Run:  python tests/benchmarks/bench_gzip.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from _compare import ROOT, load, run

BLOCK = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("zlib_ng", "isal"):
            raise ImportError(f"{name} blocked for the benchmark")
        return None
sys.meta_path.insert(0, _Block())
"""


def per_map() -> None:
    from isal import igzip
    from zlib_ng import gzip_ng

    from dtitool.design import load_preset
    from dtitool.imaging.synthetic import simulate_md_maps
    from dtitool.simulate import simulate_cohort

    cohort = simulate_cohort(load_preset("ketamine-rct"), rng=1)
    scan = next(iter(simulate_md_maps(cohort.roi_md, rng=1)))
    raw = np.asfortranarray(scan.md).tobytes(order="F")

    def best(fn, k=7):
        ts = []
        for _ in range(k):
            t = time.perf_counter()
            out = fn()
            ts.append(time.perf_counter() - t)
        return min(ts), out

    tz, cz = best(lambda: gzip.compress(raw, compresslevel=1, mtime=0))
    tn, cn = best(lambda: gzip_ng.compress(raw, 1, mtime=0))
    print(f"1. one MD map, {len(raw) / 1e6:.1f} MB raw")
    print(f"   compress level 1: zlib {tz * 1e3:.1f} ms ({len(cz) / 1e6:.2f} MB), "
          f"zlib-ng {tn * 1e3:.1f} ms ({len(cn) / 1e6:.2f} MB): {tz / tn:.1f}x")
    dz, _ = best(lambda: gzip.decompress(cn))
    dn, _ = best(lambda: gzip_ng.decompress(cn))
    di, _ = best(lambda: igzip.decompress(cn))
    print(f"   decompress: zlib {dz * 1e3:.1f} ms, zlib-ng {dn * 1e3:.1f} ms, ISA-L "
          f"{di * 1e3:.1f} ms: {dz / di:.1f}x")


def end_to_end(repeats: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        block = Path(tmp) / "block"
        block.mkdir()
        (block / "sitecustomize.py").write_text(BLOCK)
        envs = {"with the extra": {},
                "standard library": {"PYTHONPATH": os.pathsep.join(
                    [str(ROOT), str(block)])}}
        for label, argv in (("simulate --images", ["simulate", "--seed", "1",
                                                   "--images"]),
                            ("demo", ["demo"])):
            times: dict = {k: [] for k in envs}
            for r in range(repeats):
                for k, env in envs.items():
                    out = Path(tmp) / f"{label.split()[0]}-{r}-{k[:4]}"
                    times[k].append(run(ROOT, [*argv, "--out", str(out),
                                               "--quiet"], cwd=Path(tmp), env=env))
            a = statistics.median(times["with the extra"])
            b = statistics.median(times["standard library"])
            print(f"2. dtitool {label}: with the extra {a:.2f} s, standard library "
                  f"{b:.2f} s (medians of {repeats}): extra / stdlib = {a / b:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"machine: {load()}")
    per_map()
    end_to_end(args.repeats)
    print(f"machine at the end: {load()}")


if __name__ == "__main__":
    main()
