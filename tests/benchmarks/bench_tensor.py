"""Benchmark: dtitool's vectorised tensor fit against DIPY's TensorModel.

Both fit the same simulated DWI (realistic GM/WM tensors with random orientations,
6 b0 + 64 directions at b = 1000 s/mm^2, Rician noise at b0 SNR 20) and produce
MD and FA maps; the time covers fit + MD + FA for both. Prints voxel throughput,
the ratio ours / DIPY, and the largest relative MD difference.

Run:  python tests/benchmarks/bench_tensor.py [--n 300000] [--repeats 3] [--profile]
Needs the ``bench`` extra (dipy; pyinstrument for --profile).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
from scipy.spatial.transform import Rotation

from dtitool.imaging.gradients import default_protocol
from dtitool.imaging.tensor import fit_tensor, predict_signal, tensor_from_evals_evecs


def simulate(n: int, rng: np.random.Generator):
    bvals, bvecs = default_protocol()
    rot = Rotation.random(n, random_state=rng).as_matrix()
    wm = rng.random(n) < 0.4
    evals = np.where(
        wm[:, None], [1.6e-3, 0.4e-3, 0.3e-3], [0.9e-3, 0.8e-3, 0.75e-3]
    ) * rng.uniform(0.9, 1.1, (n, 3))
    s0 = rng.uniform(800, 1200, n)
    signal = predict_signal(tensor_from_evals_evecs(evals, rot), bvals, bvecs, s0=s0)
    sigma = 1000.0 / 20
    data = np.hypot(
        signal + rng.normal(0, sigma, signal.shape), rng.normal(0, sigma, signal.shape)
    )
    return data, bvals, bvecs


def best_time(fn, repeats: int):
    best, out = np.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=300_000, help="voxels (default 300000)")
    ap.add_argument("--repeats", type=int, default=3, help="best of R (default 3)")
    ap.add_argument("--profile", action="store_true", help="pyinstrument our WLS")
    args = ap.parse_args()

    import dipy
    import dipy.reconst.dti as dti
    from dipy.core.gradients import gradient_table

    try:
        import threadpoolctl

        tpc = f"threadpoolctl {threadpoolctl.__version__}"
    except ImportError:
        tpc = "no threadpoolctl (BLAS threads not limited)"
    data, bvals, bvecs = simulate(args.n, np.random.default_rng(2026))
    gtab = gradient_table(bvals, bvecs=bvecs)
    print(
        f"{args.n} voxels x {bvals.size} volumes, float64; numpy {np.__version__}, "
        f"dipy {dipy.__version__}, {os.cpu_count()} CPUs, {platform.machine()}, "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '')!r}, {tpc}"
    )

    if args.profile:
        from pyinstrument import Profiler

        prof = Profiler()
        prof.start()
        f = fit_tensor(data, bvals, bvecs, method="wls")
        _ = f.md, f.fa
        prof.stop()
        print(prof.output_text(unicode=False, color=False))

    def ours(method):
        def run():
            f = fit_tensor(data, bvals, bvecs, method=method)
            return f.md, f.fa

        return run

    def theirs(method):
        model = dti.TensorModel(gtab, fit_method=method.upper())

        def run():
            f = model.fit(data)
            return f.md, f.fa

        return run

    print(
        f"{'method':6} {'dtitool vox/s':>14} {'DIPY vox/s':>12} {'ratio':>7} "
        f"{'max rel dMD':>12} {'max |dFA|':>10}"
    )
    for method in ("wls", "ols"):
        t_ours, (md, fa) = best_time(ours(method), args.repeats)
        t_dipy, (md_d, fa_d) = best_time(theirs(method), args.repeats)
        ok = np.isfinite(md) & (md_d > 1e-6)
        rel = np.max(np.abs(md[ok] / md_d[ok] - 1))
        dfa = np.max(np.abs(fa[ok] - fa_d[ok]))
        print(
            f"{method.upper():6} {args.n / t_ours:14.0f} {args.n / t_dipy:12.0f} "
            f"{t_dipy / t_ours:7.2f} {rel:12.2e} {dfa:10.2e}"
        )
    print("ratio = DIPY time / dtitool time (targets: WLS >= 5, OLS >= 1)")


if __name__ == "__main__":
    main()
