"""Start-up cost of the command line, measured side by side in one run.

Prints the median wall time of ``dtitool --help`` (the installed entry point),
``python -m dtitool power --help`` and ``python -c "import numpy, pandas"`` over
interleaved repeats, their ratios, and which heavy modules ``python -X
importtime -m dtitool power --help`` loads (none of matplotlib, statsmodels,
scipy.stats should appear).

Usage: python tests/benchmarks/bench_startup.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

HEAVY = ("matplotlib", "statsmodels", "scipy.stats", "nibabel", "scipy.special")


def _time(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    exe = shutil.which("dtitool")
    cmds = {
        "import numpy, pandas": [sys.executable, "-c", "import numpy, pandas"],
        "python -m dtitool power --help": [sys.executable, "-m", "dtitool", "power",
                                           "--help"],
    }
    if exe:
        cmds["dtitool --help"] = [exe, "--help"]
    for c in cmds.values():  # warm the file cache
        _time(c)
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for _ in range(args.repeats):
        for k, c in cmds.items():
            times[k].append(_time(c))
    base = statistics.median(times["import numpy, pandas"])
    print(f"median wall time over {args.repeats} interleaved runs")
    for k, v in times.items():
        m = statistics.median(v)
        print(f"  {k:<34} {m * 1e3:7.0f} ms   ratio to numpy+pandas {m / base:5.2f}")
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "dtitool", "power", "--help"],
        capture_output=True, text=True, check=True,
    ).stderr
    mods = {ln.split("|")[-1].strip() for ln in out.splitlines() if "|" in ln}
    loaded = sorted(m for m in mods if m.startswith(HEAVY))
    print("heavy modules loaded by `dtitool power --help`:",
          ", ".join(loaded) if loaded else "none")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
