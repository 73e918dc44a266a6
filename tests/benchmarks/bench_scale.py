"""Benchmark: scale-out (Dask vs local processes) and the power engine's floor.

Every figure is measured in one run on this machine, side by side:

1. ``dtitool power --replicates 100000`` end to end (a fresh process each,
   imports and cluster start-up included) with ``--n-jobs 2`` (a local process
   pool) and ``--dask local --n-jobs 2`` (a 2-worker ``distributed.LocalCluster``),
   alternating the two so both see the same load; ``power.tsv`` and
   ``familywise.tsv`` must be byte-identical. Must reach: cluster / pool <= 1.20.
2. ``dtitool power --replicates 20000`` end to end (``--n-jobs 1`` and the
   default, every CPU) against the time its random numbers take to draw: every
   call that draws them (the trials' blocks, the null counterpart's blocks and
   its max-T permutation keys, the reference sample of the true values) timed
   inside an in-process ``--n-jobs 1`` run of the same command. Must reach: end
   to end / drawing <= 2.
3. Inputs of the wall-time projection in ``docs/scale-out.md``: per-core
   throughput of the power engine (replicates per second at n = 40 and n = 400,
   size included, one process), the time of one reference sample (true values
   of a point), and the per-task overhead of the Dask scheduler and of the
   process pool (tiny tasks through :class:`dtitool._executor.Executor`). Then
   the projected wall time of the grid ``n=40:400:20 x effect=0.25:1.5:0.25 x
   reliability=0.2:0.9:0.1`` (912 points) at 10,000 replicates on 1, 2, 64 and
   1,000 cores.

Run:  python tests/benchmarks/bench_scale.py [--repeats 2]
      [--only cluster|floor|projection]
Needs the ``dask`` extra.
"""

from __future__ import annotations

import argparse
import filecmp
import math
import operator
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _compare import ROOT, load, run


def dtitool(*args: str) -> float:
    """Run ``python -m dtitool ARGS --quiet`` in a fresh process; its wall time."""
    return run(ROOT, [*args, "--quiet"], cwd=Path.cwd())


def cluster_vs_pool(repeats: int, replicates: int) -> None:
    print(f"\n1. dtitool power --replicates {replicates}, end to end "
          f"({repeats} alternating runs each)")
    times = {"--n-jobs 2": [], "--dask local --n-jobs 2": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            for label in times:
                out = Path(tmp) / f"{label.replace(' ', '_')}_{r}"
                times[label].append(dtitool("power", "--seed", "1", "--replicates",
                                            str(replicates), *label.split(),
                                            "--out", str(out)))
                print(f"   {label:<26} run {r + 1}: {times[label][-1]:6.1f} s")
        a = Path(tmp) / "--n-jobs_2_0"
        b = Path(tmp) / "--dask_local_--n-jobs_2_0"
        same = all(filecmp.cmp(a / f, b / f, shallow=False)
                   for f in ("power.tsv", "familywise.tsv"))
    pool = min(times["--n-jobs 2"])
    dask = min(times["--dask local --n-jobs 2"])
    print(f"   best: pool {pool:.1f} s, LocalCluster {dask:.1f} s, ratio "
          f"{dask / pool:.3f}; power.tsv and familywise.tsv byte-identical: {same}")
    print(f"   must reach: identical and ratio <= 1.20: "
          f"{'PASS' if same and dask / pool <= 1.2 else 'FAIL'}")


FLOOR_SCRIPT = r"""
import sys, time
import numpy as np
import dtitool.simulate as sim
import dtitool.stats.power_engine as pw
spent = [0.0]
def timed(fn):
    def wrapper(*a, **k):
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            spent[0] += time.perf_counter() - t
    return wrapper
sim._draw_blocks = timed(sim._draw_blocks)
pw._permutation_keys = timed(pw._permutation_keys)
from dtitool.cli import main
t = time.perf_counter()
rc = main(sys.argv[1:])
print(spent[0], time.perf_counter() - t)
"""


def floor(repeats: int, replicates: int) -> None:
    print(f"\n2. dtitool power --replicates {replicates} against the time of drawing "
          "its random numbers (one thread, as the run draws them)")
    walls, draws, default = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(repeats):
            args = ["power", "--seed", "1", "--replicates", str(replicates),
                    "--n-jobs", "1", "--quiet"]
            walls.append(dtitool(*args[:-1], "--out", f"{tmp}/e{r}"))
            default.append(dtitool(*args[:5], "--out", f"{tmp}/f{r}"))
            out = subprocess.run([sys.executable, "-c", FLOOR_SCRIPT, *args, "--out",
                                  f"{tmp}/d{r}"], check=True, capture_output=True,
                                 text=True).stdout.split()
            draws.append(float(out[-2]))
            print(f"   run {r + 1}: end to end {walls[-1]:.2f} s with --n-jobs 1, "
                  f"{default[-1]:.2f} s with the default (every CPU); drawing the "
                  f"random numbers {draws[-1]:.2f} s (in-process run "
                  f"{float(out[-1]):.2f} s)")
    d = min(draws)
    print(f"   best: drawing {d:.2f} s; end to end --n-jobs 1 {min(walls):.2f} s "
          f"({min(walls) / d:.2f}x), default {min(default):.2f} s "
          f"({min(default) / d:.2f}x)")
    print(f"   must reach: ratio <= 2 (default --n-jobs): "
          f"{'PASS' if min(default) / d <= 2 else 'FAIL'}")


def per_task_overhead(kind: str, tasks: int) -> float:
    """Seconds per tiny task through the Executor (wall / tasks)."""
    from dtitool._executor import Task, open_executor

    sink = []
    with open_executor(2, "local" if kind == "dask" else None) as ex:
        # warm the workers up (a pool forks lazily; Dask's first tasks ship code)
        ex.run([Task(operator.add, (i, 1), sink.append) for i in range(20)])
        t = time.perf_counter()
        ex.run([Task(operator.add, (i, 1), sink.append) for i in range(tasks)])
        return (time.perf_counter() - t) / tasks


def projection(replicates: int = 10_000) -> None:
    from dtitool.design import load_preset
    from dtitool.stats.design_analysis import true_values
    from dtitool.stats.power import (
        MonteCarlo,
        _chunk_replicates,
        check_grid_axes,
        null_counterpart,
        power,
        vary_design,
    )

    print("\n3. inputs of the wall-time projection (one process each)")
    base = load_preset("ketamine-rct")
    rate, null_rate = {}, {}
    for n in (40, 400):
        d = base.with_n(n)
        R = 4096 if n == 40 else 1024
        power(d, replicates=64, rng=0, design_analysis=False)  # warm caches
        t = time.perf_counter()
        power(d, replicates=R, rng=1, design_analysis=False, size=False)
        rate[n] = (time.perf_counter() - t) / R
        t = time.perf_counter()
        power(d, replicates=R, rng=1, design_analysis=False, size=True)
        null_rate[n] = (time.perf_counter() - t) / R - rate[n]
        print(f"   n = {n}: {1 / rate[n]:,.0f} trials per second per core "
              f"({rate[n] * 1e3:.3f} ms per trial; its null counterpart's trial, "
              f"max-T draws included, {null_rate[n] * 1e3:.3f} ms)")
    t = time.perf_counter()
    true_values(base, rng=1)
    truth = time.perf_counter() - t
    print(f"   one reference sample (true values of a point): {truth:.2f} s")
    over = {k: per_task_overhead(k, 2000 if k == "dask" else 4000)
            for k in ("pool", "dask")}
    t = time.perf_counter()
    from dtitool._executor import open_executor

    with open_executor(2, "local"):
        pass
    startup = time.perf_counter() - t
    print(f"   per-task overhead: process pool {over['pool'] * 1e3:.2f} ms, Dask "
          f"scheduler {over['dask'] * 1e3:.2f} ms; LocalCluster start-up and "
          f"shut-down {startup:.1f} s")

    axes = check_grid_axes([("n", list(range(40, 401, 20))),
                       ("effect", [0.25 + 0.25 * i for i in range(6)]),
                       ("reliability", [round(0.2 + 0.1 * i, 1) for i in range(8)])])
    import itertools

    def cost(n, r=rate):  # linear in n between the two measured trial sizes
        return r[40] + (r[400] - r[40]) * (n - 40) / 360

    work, nulls, truths = 0.0, set(), set()
    tasks = {None: 0, 2048: 0}  # default chunks; --chunk-size 2048
    points = impossible = 0
    for point in itertools.product(*(v for _, v in axes)):
        d = base
        try:
            for (name, _), v in zip(axes, point, strict=True):
                d = vary_design(d, name, int(v) if name == "n" else v)
        except ValueError:  # not a possible design: a blank row, no work
            impossible += 1
            continue
        points += 1
        key = repr(null_counterpart(d))
        new_null = key not in nulls
        nulls.add(key)
        work += replicates * (cost(d.n) + (cost(d.n, null_rate) if new_null else 0))
        for c in tasks:
            chunk = _chunk_replicates(d, MonteCarlo(chunk_size=c))
            tasks[c] += math.ceil(replicates / chunk) * (1 + new_null)
        truths.add(point[1:])  # the reference sample depends on effect, reliability
    work += len(truths) * truth
    for c in tasks:
        tasks[c] += len(truths)
    print(f"\n   grid: {points} possible points ({impossible} impossible) x "
          f"{replicates:,} trials, {len(nulls)} null counterparts, {len(truths)} "
          f"reference samples: {work / 3600:.2f} core-hours of computing; "
          f"{tasks[None]:,} tasks (default chunks), {tasks[2048]:,} with "
          "--chunk-size 2048")
    print("   projected wall time = computing / cores + tasks x per-task overhead "
          "(one scheduler hands out every task) [+ start-up]")
    print("   | cores | runs on | default chunks | `--chunk-size 2048` |")
    print("   |---|---|---|---|")
    for cores in (1, 2, 64, 1000):
        if cores == 1:
            walls = [work, work]
            how = "one process (`--n-jobs 1`)"
        elif cores == 2:
            walls = [work / 2 + tasks[c] * over["pool"] for c in tasks]
            how = "`--n-jobs 2`"
        else:
            walls = [work / cores + tasks[c] * over["dask"] + startup for c in tasks]
            how = "Dask (dask-jobqueue)"
        print(f"   | {cores:,} | {how} | {_fmt(walls[0])} | {_fmt(walls[1])} |")
    print("   (queue waiting time of the cluster's batch jobs not included)")


def _fmt(s: float) -> str:
    if s >= 3600:
        return f"{s / 3600:.1f} h"
    if s >= 60:
        return f"{s / 60:.1f} min"
    return f"{s:.0f} s"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--only", choices=["cluster", "floor", "projection"])
    ap.add_argument("--replicates", type=int, default=100_000,
                    help="replicates of the cluster comparison (default 100,000)")
    args = ap.parse_args()
    os.environ.setdefault("PYTHONHASHSEED", "0")
    print(f"machine: {load()}")
    if args.only in (None, "cluster"):
        cluster_vs_pool(args.repeats, args.replicates)
    if args.only in (None, "floor"):
        floor(args.repeats, 20_000)
    if args.only in (None, "projection"):
        projection()
    print(f"machine at the end: {load()}")


if __name__ == "__main__":
    main()
