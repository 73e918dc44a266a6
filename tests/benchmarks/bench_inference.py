"""Benchmark of the inference options, size, max-T and design analysis, one run.

Run: ``python tests/benchmarks/bench_inference.py [--quick]``

Prints, measured side by side in this one run:

1. ``dtitool power --preset null --inference welch --replicates 20000`` (a fresh
   process): every test's rejection rate against 0.05 in binomial SEs, and the
   max-T family-wise error of every family (the null preset is its own null
   counterpart, simulated on other streams, so ``power_any`` of the max-T rows
   is an out-of-sample family-wise error), with the same for ``ols``.
2. Wall time of ``dtitool power`` for the same replicates with ``--inference``
   ``ols``, ``hc3`` and ``welch`` (fresh processes, size included, interleaved
   and repeated; the fastest of each), and their ratios to ``ols``.
3. Models per second, the batched engine against a statsmodels formula loop,
   for every option. One unit = the four terms of one ROI x outcome: ``ols`` and
   ``hc3`` fit the interaction and additive formulas (``smf.ols``; HC3 via
   ``cov_type="HC3", use_t=True``) and read the contrasts with ``t_test``;
   ``welch`` fits each arm (``smf.ols``) and the weighted additive model
   (``smf.wls``). Data frames are built outside the timer.
4. Freedman-Lane max-T: ``fit_models(..., familywise="maxt", permutations=10000)``
   on one 98-patient cohort (14 models x 4 terms), per option.
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
import statsmodels.formula.api as smf
from bench_power import _timeit  # same timing loop as the power benchmark

from dtitool.design import load_preset
from dtitool.simulate import simulate_arrays, simulate_cohort
from dtitool.stats.analysis import fit_models
from dtitool.stats.inference import INFERENCE, batch_models

GROUP = "C(group, Treatment('saline'))"
INTER = f"{GROUP}[T.ketamine]:x"


def _cli_power(inference: str, replicates: int, out: str) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "dtitool", "power", "--preset", "null",
                    "--inference", inference, "--replicates", str(replicates),
                    "--seed", "1", "--out", out, "--quiet", "--force"], check=True,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def bench_null_run(replicates: int) -> None:
    se = np.sqrt(0.05 * 0.95 / replicates)
    print(f"\n1. dtitool power --preset null --inference X --replicates {replicates} "
          f"--seed 1 (binomial SE of a rate at 0.05: {se:.5f})")
    for inference in ("welch", "ols"):
        with tempfile.TemporaryDirectory() as out:
            _cli_power(inference, replicates, out)
            t = pd.read_csv(f"{out}/power.tsv", sep="\t")
            fw = pd.read_csv(f"{out}/familywise.tsv", sep="\t")
        z = (t["power"] - 0.05) / se
        print(f"   --inference {inference}: rejection rate of the 56 tests "
              f"{t['power'].min():.4f}-{t['power'].max():.4f}, max |z| = "
              f"{z.abs().max():.2f} (all within 4 SE: {bool((z.abs() <= 4).all())})")
        for term, g in t.groupby("term", sort=False):
            print(f"      {term:15s} mean {g['power'].mean():.4f}  range "
                  f"{g['power'].min():.4f}-{g['power'].max():.4f}  max |z| "
                  f"{((g['power'] - 0.05) / se).abs().max():5.2f}")
        mx = fw[fw["method"] == "maxt"]
        print("      max-T family-wise error (power_any), z in binomial SE; "
              "[size: the null counterpart's, out of sample]")
        for r in mx.itertuples():
            if r.directional:  # counts only the stated sign: ~alpha / 2 expected
                print(f"      {r.family:15s} {r.power_any:.4f}  (directional family: "
                      "only rejections with the reported sign count, so about "
                      "alpha / 2)")
                continue
            holm = fw[(fw.family == r.family) & (fw.method == "holm")].power_any
            print(f"      {r.family:15s} {r.power_any:.4f}  z "
                  f"{(r.power_any - 0.05) / se:5.2f}  [{r.size:.4f}, z "
                  f"{(r.size - 0.05) / se:5.2f}]   Holm {holm.iloc[0]:.4f}")


def bench_cli_cost(replicates: int, rounds: int) -> None:
    times = {k: [] for k in INFERENCE}
    with tempfile.TemporaryDirectory() as out:
        for _ in range(rounds):
            for inference in INFERENCE:
                times[inference].append(_cli_power(inference, replicates, out))
    best = {k: min(v) for k, v in times.items()}
    print(f"\n2. wall time of dtitool power --replicates {replicates} (null "
          f"preset, size and design analysis included; fastest of {rounds})")
    for k, v in best.items():
        print(f"   --inference {k:6s} {v:6.2f} s   ratio to ols "
              f"{v / best['ols']:.2f}   (all: "
              f"{', '.join(f'{x:.2f}' for x in times[k])})")


def bench_engine(R_loop: int, R_batch: int) -> None:
    design = load_preset("ketamine-rct")
    arr = simulate_arrays(design, rng=7, stop=R_batch, chunk_size=R_batch)
    frames = []
    for r in range(R_loop):
        frames.append(pd.DataFrame({
            "d_score": arr.d_score[r, :, 0],
            "group": np.where(arr.treated[r], "ketamine", "saline"),
            "x": arr.d_md[r, :, 0] / 1e-5, "baseline": arr.scores[r, :, 0, 0]}))

    def loop(inference):
        def run():
            for df in frames:
                if inference == "welch":
                    s2 = {}
                    for g in ("ketamine", "saline"):
                        sub = df[df["group"] == g]
                        f = smf.ols("d_score ~ x + baseline", sub).fit()
                        _ = f.pvalues["x"]
                        s2[g] = f.scale
                    w = 1.0 / df["group"].map(s2)
                    wls = smf.wls(f"d_score ~ {GROUP} + x + baseline", df,
                                  weights=w).fit(cov_type="fixed scale")
                    _ = wls.params["x"], wls.normalized_cov_params
                    continue
                kw = {"cov_type": "HC3", "use_t": True} if inference == "hc3" else {}
                full = smf.ols(f"d_score ~ {GROUP} * x + baseline", df).fit(**kw)
                add = smf.ols(f"d_score ~ {GROUP} + x + baseline", df).fit(**kw)
                _ = (full.pvalues[INTER], full.t_test(f"x + {INTER} = 0").pvalue,
                     full.pvalues["x"], add.pvalues["x"])
        return run

    print(f"\n3. models per second (one unit = the 4 terms of one ROI x outcome, "
          f"n = 98; statsmodels loop over {R_loop} data sets, engine over "
          f"{R_batch} replicates x 14 pairs)")
    for inference in INFERENCE:
        t_loop = _timeit(loop(inference)) / R_loop
        t_eng = _timeit(lambda inf=inference: batch_models(arr, inf)) / (R_batch * 14)
        print(f"   {inference:6s} statsmodels {1 / t_loop:9,.0f}/s   engine "
              f"{1 / t_eng:12,.0f}/s   ratio {t_loop / t_eng:8,.0f}x "
              f"(>= 1000x: {t_loop / t_eng >= 1000})")


def bench_maxt(permutations: int) -> None:
    cohort = simulate_cohort(load_preset("ketamine-rct"), rng=7)
    p, r = cohort.participants, cohort.roi_md
    print(f"\n4. Freedman-Lane max-T, {permutations} permutations x 14 models x 4 "
          "terms of one 98-patient cohort (fit_models, statsmodels fits included)")
    for inference in INFERENCE:
        t0 = time.perf_counter()
        fit_models(p, r, inference=inference)
        base = time.perf_counter() - t0
        t0 = time.perf_counter()
        fit_models(p, r, inference=inference, familywise="maxt",
                   permutations=permutations, rng=1)
        total = time.perf_counter() - t0
        print(f"   {inference:6s} {total:6.2f} s in all ({total - base:5.2f} s of "
              f"permutations; < 10 s: {total < 10})")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true",
                    help="fewer replicates and rounds (the figures are then not "
                    "the Must-reach ones)")
    a = ap.parse_args()
    R = 4000 if a.quick else 20_000
    print(f"python {sys.version.split()[0]}, numpy {np.__version__}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at start")
    bench_null_run(R)
    bench_cli_cost(R, 1 if a.quick else 3)
    bench_engine(R_loop=50 if a.quick else 200, R_batch=1024)
    bench_maxt(2000 if a.quick else 10_000)
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
