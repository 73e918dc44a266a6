"""Benchmark of the power engine, every figure measured side by side in one run.

Run: ``python tests/benchmarks/bench_power.py [--quick]``

1. Models per second on the same simulated replicates of the ketamine-rct preset:
   - a loop of statsmodels formula fits (``smf.ols``) of the interaction model,
     reading the interaction p and the ketamine-arm slope's p (``t_test``);
   - a loop of ``sm.OLS`` on prebuilt arrays, the slope contrast from
     ``cov_params`` (the fastest reasonable statsmodels loop);
   - the batched engine: ``dtitool.stats.ols.ols_batch`` (one model, any design) and
     ``dtitool.stats.power.batch_models`` (all 28 models of a replicate, every term).
   The statsmodels loops get their DataFrames / arrays built outside the timer.
2. Wall time of ``dtitool power`` for 20,000 replicates (a fresh process, imports
   included) with --n-jobs 1 and 2, and the in-process time of ``power()``.
3. Peak memory of ``power()`` over 1,000,000 replicates, measured in a fresh
   subprocess with ``resource.getrusage`` (RUSAGE_SELF and RUSAGE_CHILDREN
   ``ru_maxrss``). ``--quick`` uses 200,000 replicates and says so.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd
import statsmodels.api as sm
import statsmodels.formula.api as smf
from scipy import special

from dtitool.design import load_preset
from dtitool.simulate import simulate_arrays
from dtitool.stats.ols import ols_batch
from dtitool.stats.power import batch_models, power

MEM_SCRIPT = """
import resource, sys, time
from dtitool.design import load_preset
from dtitool.stats.power import power
R, jobs = int(sys.argv[1]), int(sys.argv[2])
t = time.perf_counter()
res = power(load_preset("ketamine-rct"), replicates=R, rng=1, n_jobs=jobs,
            progress=False)
wall = time.perf_counter() - t
self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(wall, self_kb, child_kb, res.table["median_p"].iloc[0])
"""


def _timeit(fn, min_time=1.0):
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        t = time.perf_counter() - t0
        if t >= min_time:
            return t / n


def bench_models(R_loop: int, R_batch: int) -> dict:
    design = load_preset("ketamine-rct")
    arr = simulate_arrays(design, rng=7, stop=R_batch, chunk_size=R_batch)
    j, k = 0, 0  # L_BA10, MADRS
    g = arr.treated.astype(float)
    x = arr.d_md[..., j] / 1e-5
    b = arr.scores[..., k, 0]
    y = arr.d_score[..., k]
    X = np.stack([np.ones_like(x), g, x, g * x, b], axis=-1)
    c = np.array([0, 0, 1, 1, 0.0])

    frames = [pd.DataFrame({"d_score": y[r], "group": np.where(g[r] == 1, "ketamine",
                                                                "saline"),
                            "x": x[r], "madrs_baseline": b[r]}) for r in range(R_loop)]
    name = "C(group, Treatment('saline'))[T.ketamine]:x"

    def loop_formula():
        for df in frames:
            res = smf.ols("d_score ~ C(group, Treatment('saline')) * x + "
                          "madrs_baseline", df).fit()
            _ = res.pvalues[name], res.t_test(f"x + {name} = 0").pvalue

    def loop_arrays():
        for r in range(R_loop):
            res = sm.OLS(y[r], X[r]).fit()
            se = np.sqrt(c @ res.cov_params() @ c)
            _ = res.pvalues[3], 2 * special.stdtr(res.df_resid, -abs(c @ res.params)
                                                  / se)

    def engine_one():
        fit = ols_batch(X, y)
        fit.contrast([0, 0, 0, 1, 0])
        fit.contrast(c)

    def engine_all():
        batch_models(arr, "ols")

    t_formula = _timeit(loop_formula) / R_loop
    t_arrays = _timeit(loop_arrays) / R_loop
    t_one = _timeit(engine_one) / R_batch
    t_all = _timeit(engine_all) / (R_batch * 28)
    return {"smf.ols loop": 1 / t_formula, "sm.OLS loop": 1 / t_arrays,
            "ols_batch (1 model)": 1 / t_one,
            "batch_models (28 models/replicate)": 1 / t_all}


def bench_cli(replicates: int) -> dict:
    out = {}
    for jobs in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "dtitool", "power",
                            "--replicates", str(replicates), "--seed", "1", "--out",
                            tmp, "--quiet", "--n-jobs", str(jobs)], check=True)
            out[f"dtitool power CLI, --n-jobs {jobs}"] = time.perf_counter() - t
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import dtitool.cli as c; c._build_parser()"],
                   check=True)
    out["of which: start python + build the CLI parser"] = time.perf_counter() - t0
    d = load_preset("ketamine-rct")
    for jobs in (1, 2):
        t = time.perf_counter()
        power(d, replicates=replicates, rng=1, n_jobs=jobs, progress=False)
        out[f"power() in-process, n_jobs={jobs}"] = time.perf_counter() - t
    t = time.perf_counter()
    for a in range(0, replicates, 1024):
        simulate_arrays(d, rng=1, start=a, stop=min(a + 1024, replicates))
    out["of which: simulate_arrays alone, 1 core"] = time.perf_counter() - t
    return out


def bench_memory(replicates: int, jobs: int) -> tuple:
    # ru_maxrss survives fork + exec on Linux (the high-water mark of the mm that
    # was replaced), so a child forked from this (large) process would report our
    # size. A tiny launcher process starts the measured one from a small image.
    launcher = ("import subprocess, sys; r = subprocess.run(sys.argv[1:], check=True, "
                "capture_output=True, text=True); print(r.stdout, end='')")
    r = subprocess.run([sys.executable, "-c", launcher, sys.executable, "-c",
                        MEM_SCRIPT, str(replicates), str(jobs)],
                       check=True, capture_output=True, text=True)
    wall, self_kb, child_kb, _ = r.stdout.split()
    return float(wall), int(self_kb) / 1024, int(child_kb) / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    rates = bench_models(R_loop=100 if a.quick else 300, R_batch=1024)
    print("\n1. models per second (interaction model of L_BA10 x MADRS, n = 98)")
    for k, v in rates.items():
        print(f"   {k:38s} {v:14,.0f} models/s")
    for eng in ("ols_batch (1 model)", "batch_models (28 models/replicate)"):
        print(f"   {eng}: {rates[eng] / rates['smf.ols loop']:,.0f}x smf.ols loop, "
              f"{rates[eng] / rates['sm.OLS loop']:,.0f}x sm.OLS loop")
    print("\n2. 20,000 replicates of ketamine-rct (simulation + 28 fits x 4 terms)")
    for k, v in bench_cli(20_000).items():
        print(f"   {k:42s} {v:6.2f} s")
    R = 200_000 if a.quick else 1_000_000
    print(f"\n3. peak memory, power() over {R:,} replicates (fresh subprocess)")
    for jobs in (1, 2):
        wall, self_mb, child_mb = bench_memory(R, jobs)
        print(f"   n_jobs={jobs}: {wall:6.1f} s; max RSS main {self_mb:7.0f} MB, "
              f"largest worker {child_mb:7.0f} MB, sum {self_mb + child_mb:7.0f} MB "
              f"(< 2048 MB: {self_mb + child_mb < 2048})")


if __name__ == "__main__":
    main()
