"""Benchmark: ``dtitool simulate --images`` for the 98-subject ketamine-rct preset.

Runs the command in a fresh subprocess (so the peak resident memory is that run's
alone) and prints wall time, peak memory and the number of MD maps written
(196 = 98 subjects x 2 sessions when no 24 h scan is missing). Then times
``write_cohort_images`` alone in-process and reports the Python-heap peak
(tracemalloc). Must reach: < 60 s and < 2 GB on 2 cores.

Run:  python tests/benchmarks/bench_images.py [--profile]
Needs pyinstrument for --profile (the ``bench`` extra).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, resource, sys, time
from dtitool.cli import main
t0 = time.perf_counter()
rc = main(["simulate", "--seed", "1", "--images", "--out", sys.argv[1]])
wall = time.perf_counter() - t0
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rc": rc, "wall": wall, "peak_mb": peak / 1024}))
"""


def in_process(folder: Path, profile: bool) -> None:
    import tracemalloc

    from dtitool.design import load_preset
    from dtitool.imaging.synthetic import write_cohort_images
    from dtitool.simulate import simulate_cohort

    cohort = simulate_cohort(load_preset("ketamine-rct"), rng=1)
    tracemalloc.start()
    t0 = time.perf_counter()
    if profile:
        from pyinstrument import Profiler

        with Profiler() as prof:
            idx = write_cohort_images(cohort.participants, cohort.roi_md, folder, rng=1)
        prof.print()
    else:
        idx = write_cohort_images(cohort.participants, cohort.roi_md, folder, rng=1)
    wall = time.perf_counter() - t0
    _, heap_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(
        f"write_cohort_images alone: {wall:.1f} s for {len(idx)} maps "
        f"({wall / len(idx) * 1000:.0f} ms/map), Python-heap peak "
        f"{heap_peak / 2**20:.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        t0 = time.perf_counter()
        res = subprocess.run(
            [sys.executable, "-c", CHILD, str(out)],
            check=True,
            capture_output=True,
            text=True,
        )
        outer = time.perf_counter() - t0
        stats = json.loads(res.stdout.strip().splitlines()[-1])
        maps = list(out.glob("derivatives/dtitool/sub-*/ses-*/dwi/*_dwimap.nii.gz"))
        size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
        ok = stats["rc"] == 0 and stats["wall"] < 60 and stats["peak_mb"] < 2048
        print(
            f"dtitool simulate --images: {len(maps)} MD maps, {size / 1e6:.0f} MB on "
            f"disk, {os.cpu_count()} CPUs"
        )
        print(
            f"  wall {stats['wall']:.1f} s in-command ({outer:.1f} s with "
            f"interpreter start), peak RSS {stats['peak_mb']:.0f} MiB "
            f"(must reach < 60 s, < 2048 MiB): {'PASS' if ok else 'FAIL'}"
        )
        in_process(Path(tmp) / "direct", args.profile)


if __name__ == "__main__":
    main()
