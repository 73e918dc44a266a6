"""Benchmark: wall time and disk use of each command of the README's tutorial.

Runs the tutorial's commands in order in a scratch folder (each a fresh
process, default ``--n-jobs``: every CPU), and prints a Markdown table of wall
time and the disk space of what each wrote, for the README. Also prints the
demo's n for 80 % power, read from its ``sample_size.tsv``.

Run:  python tests/benchmarks/bench_commands.py [--repeats 1]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from _compare import ROOT, load, run

COMMANDS = [
    ("simulate", "simulate --preset ketamine-rct --seed 7 --out cohort", "cohort"),
    ("simulate --images", "simulate --preset ketamine-rct --seed 7 --out cohort-img "
     "--images --dwi --dwi-subjects 2", "cohort-img"),
    ("analyze", "analyze cohort --out cohort/results.tsv --figures cohort/figures "
     "--compare", "cohort/figures"),
    ("fit-tensor", "fit-tensor {dwi} --bval {bval} --bvec {bvec} --out tensor/sub-01",
     "tensor"),
    ("extract", "extract --labels cohort-img/derivatives/dtitool/"
     "atlas-dtitool_dseg.nii.gz --out roi_md_images.tsv {maps}", "roi_md_images.tsv"),
    ("power", "power --preset ketamine-rct --replicates 2000 --seed 1 --out power "
     "--curve n=40:200:20 --target-power 0.8", "power"),
    ("reproduce", "reproduce --preset ketamine-rct --replicates 2000 --seed 1 "
     "--out repro", "repro"),
    ("demo", "demo --out demo", "demo"),
]


def size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=1)
    args = ap.parse_args()
    print(f"machine: {load()}")
    rows = {}
    for r in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            cwd = Path(tmp)
            for label, cmd, out in COMMANDS:
                fields = {}
                if "{dwi}" in cmd:
                    d = next((cwd / "cohort-img").rglob("*_dwi.nii*"))
                    stem = str(d).split(".nii")[0]
                    fields = {"dwi": d, "bval": stem + ".bval", "bvec": stem + ".bvec"}
                    (cwd / "tensor").mkdir(exist_ok=True)
                if "{maps}" in cmd:
                    fields = {"maps": " ".join(str(p) for p in sorted(
                        (cwd / "cohort-img").rglob("*_param-MD_dwimap.nii.gz")))}
                argv = cmd.format(**fields).split()
                before = size(cwd / out) if (cwd / out).exists() else 0
                wall = run(ROOT, argv, cwd=cwd)
                rows.setdefault(label, []).append((wall, size(cwd / out) - before))
            ss = cwd / "demo" / "tables" / "sample_size.tsv"
            if r == 0 and ss.exists():
                print("demo sample_size.tsv:\n" + ss.read_text(encoding="utf-8"))
    print("| command | wall time | disk |")
    print("|---|---|---|")
    for label, vals in rows.items():
        wall = min(v[0] for v in vals)
        disk = vals[0][1]
        print(f"| `dtitool {label}` | {wall:.1f} s | {_mb(disk)} |")
    print(f"machine at the end: {load()}; {os.cpu_count()} CPUs")


def _mb(b: int) -> str:
    if b >= 1e6:
        return f"{b / 1e6:.0f} MB"
    return f"{b / 1e3:.0f} kB"


if __name__ == "__main__":
    main()
