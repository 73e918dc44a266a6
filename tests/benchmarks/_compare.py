"""Shared pieces of the before/after benchmarks: timed subprocess runs, the load.

A benchmark times the same command of two checkouts of dtitool ("before", given
with ``--before DIR``, e.g. a checkout of an older commit; "after", this tree),
alternating them so that both see the same machine load and flushing the
kernel's pending writes before each run, and prints the medians, their ratio
and the load average at the start and the end.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def load() -> str:
    """The 1-, 5- and 15-minute load averages, and the CPUs."""
    try:
        a, b, c = os.getloadavg()
    except OSError:
        return "load unknown"
    return f"load {a:.2f} {b:.2f} {c:.2f} on {os.cpu_count()} CPUs"


def run(tree: Path, argv: list[str], *, cwd: Path, env: dict | None = None,
        check: bool = True) -> float:
    """Wall time (s) of ``python -m dtitool ARGV`` with ``tree`` on the path."""
    e = {**os.environ, "PYTHONPATH": str(tree), **(env or {})}
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "dtitool", *argv], cwd=cwd, env=e,
                       stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                       text=True, check=False)
    wall = time.perf_counter() - t
    if check and p.returncode != 0:
        raise RuntimeError(f"{tree}: dtitool {' '.join(argv)} failed: "
                           f"{p.stderr.strip()[-500:]}")
    return wall


def disk_use(path: Path) -> int:
    """Bytes of disk under ``path`` (allocated blocks, as du counts them)."""
    total = 0
    for p in Path(path).rglob("*"):
        try:
            st = p.lstat()
        except OSError:
            continue
        total += getattr(st, "st_blocks", st.st_size // 512) * 512
    return total


def side_by_side(before: Path, make_argv, repeats: int, *, label: str,
                 after: Path = ROOT, keep=None) -> dict:
    """Time ``make_argv(out_dir)`` for both trees, alternating; print the result.

    Returns ``{"before": [...], "after": [...], "ratio": after/before of the
    medians, "disk": {...}}``.
    """
    times: dict[str, list[float]] = {"before": [], "after": []}
    disk: dict[str, int] = {}
    start_load = load()
    with tempfile.TemporaryDirectory(prefix="dtitool-bench-") as tmp:
        tmp = Path(tmp)
        for i in range(repeats):
            order = (("before", before), ("after", after))
            for name, tree in (order if i % 2 == 0 else order[::-1]):
                out = tmp / f"{name}{i}"
                # Start each run with no dirty pages: the kernel writes a run's
                # outputs back some 30 s later, inside whichever run comes next
                # (the demo writes 0.3-0.5 GB).
                os.sync()
                times[name].append(run(tree, make_argv(out), cwd=tmp))
                disk[name] = disk_use(out) if out.exists() else 0
                if keep is not None:
                    keep(name, out)
                shutil.rmtree(out, ignore_errors=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    ratio = med["after"] / med["before"]
    print(f"{label}: before {med['before']:.2f} s, after {med['after']:.2f} s "
          f"(medians of {repeats}; runs {fmt(times['before'])} / "
          f"{fmt(times['after'])}): after/before = {ratio:.2f}")
    print(f"  {start_load} at the start, {load()} at the end")
    return {**times, "ratio": ratio, "disk": disk}


def fmt(xs) -> str:
    return ", ".join(f"{x:.1f}" for x in xs)
