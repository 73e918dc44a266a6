"""Benchmark: the brain mask of ``dtitool fit-tensor`` against the tensor fit.

Simulates one participant's DWI as the tutorial does (``dtitool simulate
--images --dwi``: 91 x 109 x 91 voxels, 70 volumes, int16), then, in a fresh
process per repeat (so that the mask step pays its imports, as the command
does), times on the DWI read into memory:

- the brain-mask step: the mean of the b0 volumes and ``median_otsu`` (what
  ``fit-tensor`` does without ``--mask``);
- the tensor fit's own time: ``fit_tensor`` in that mask, alone and with every
  map the command writes (MD, FA, AD, RD, eigenvalues, eigenvectors, the sum of
  squared errors).

Prints each repeat and the medians, the ratio mask / fit (must reach: at most
2), and the wall time of the whole command (``dtitool fit-tensor DWI --bval
--bvec --out``, reading and writing included). ``--dipy`` also times DIPY's
``median_otsu`` on the same b0 (about 20-40 s) and counts the voxels where its
mask and dtitool's differ; ``--exact`` does the same for dtitool's exact filter.

Run:  python tests/benchmarks/bench_fit_tensor.py [--repeats 3] [--dipy] [--exact]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _compare import ROOT, load, run

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
from dtitool.imaging.batch import b0_mean
from dtitool.imaging.gradients import read_bvals_bvecs
from dtitool.imaging.nifti import load_dwi, read_data
dwi, bval, bvec, save = sys.argv[1:5]
img = load_dwi(dwi)
bvals, bvecs = read_bvals_bvecs(bval, bvec, b0_threshold=50.0)
data = read_data(img, dwi, "DWI")
t_read = time.perf_counter() - t0

t = time.perf_counter()
from dtitool.imaging.brainmask import median_otsu
mask = median_otsu(b0_mean(data, bvals, 50.0))
t_mask = time.perf_counter() - t

from dtitool.imaging.tensor import fit_tensor
t = time.perf_counter()
fit = fit_tensor(data, bvals, bvecs, mask=mask, b0_threshold=50.0)
t_fit = time.perf_counter() - t
t = time.perf_counter()
for name in ("md", "fa", "ad", "rd", "evals", "evecs"):
    getattr(fit, name)
fit.sse(data)
t_maps = time.perf_counter() - t
np.save(save, mask)
print(json.dumps({"read": t_read, "mask": t_mask, "fit": t_fit, "maps": t_maps,
                  "voxels": int(mask.sum()), "shape": list(mask.shape)}))
"""


def simulate(tmp: Path) -> tuple[Path, Path, Path]:
    """One participant's simulated DWI (the tutorial's), and its gradient files."""
    run(ROOT, ["simulate", "--preset", "ketamine-rct", "--seed", "7", "--out",
               "cohort", "--images", "--dwi", "--dwi-subjects", "1", "--n-jobs", "1",
               "--quiet"], cwd=tmp)
    dwi = sorted((tmp / "cohort").rglob("*_dwi.nii*"))[0]
    stem = str(dwi).split(".nii")[0]
    return dwi, Path(stem + ".bval"), Path(stem + ".bvec")


def child(dwi, bval, bvec, save: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", CHILD, str(dwi), str(bval),
                          str(bvec), str(save)], env=env, capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout)


def compare_with(b0, mask, which: str) -> None:
    import time

    import numpy as np

    t = time.perf_counter()
    if which == "dipy":
        from dipy.segment.mask import median_otsu

        _, ref = median_otsu(b0[..., None], vol_idx=[0])
    else:
        from dtitool.imaging.brainmask import median_otsu

        ref = median_otsu(b0, exact=True)
    took = time.perf_counter() - t
    differ = int(np.count_nonzero(ref != mask))
    print(f"{which:>6} median_otsu: {took:.2f} s; masks differ in {differ} of "
          f"{mask.size} voxels ({differ / mask.size:.1e}; {ref.sum()} vs "
          f"{mask.sum()} in the brain)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dipy", action="store_true",
                    help="also time DIPY's median_otsu and compare the masks")
    ap.add_argument("--exact", action="store_true",
                    help="also time dtitool's exact filter and compare the masks")
    args = ap.parse_args()
    print(f"machine: {load()}")
    with tempfile.TemporaryDirectory(prefix="dtitool-bench-") as tmp:
        tmp = Path(tmp)
        dwi, bval, bvec = simulate(tmp)
        rows = []
        for i in range(args.repeats):
            r = child(dwi, bval, bvec, tmp / "mask.npy")
            rows.append(r)
            print(f"repeat {i + 1}: read {r['read']:.2f} s, mask {r['mask']:.2f} s, "
                  f"fit {r['fit']:.2f} s (+ maps {r['maps']:.2f} s); mask / fit "
                  f"{r['mask'] / r['fit']:.2f}, mask / (fit + maps) "
                  f"{r['mask'] / (r['fit'] + r['maps']):.2f}")
        med = {k: statistics.median(r[k] for r in rows)
               for k in ("read", "mask", "fit", "maps")}
        print(f"DWI {rows[0]['shape']} x 70 volumes, {rows[0]['voxels']} voxels in "
              "the mask")
        print(f"median: mask {med['mask']:.2f} s, tensor fit {med['fit']:.2f} s, "
              f"with its maps {med['fit'] + med['maps']:.2f} s")
        print(f"ratio mask / fit: {med['mask'] / med['fit']:.2f} (must reach <= 2); "
              f"mask / (fit + maps): {med['mask'] / (med['fit'] + med['maps']):.2f}")
        out = tmp / "tensor"
        out.mkdir()
        wall = run(ROOT, ["fit-tensor", str(dwi), "--bval", str(bval), "--bvec",
                          str(bvec), "--out", str(out / "sub-01"), "--quiet"],
                   cwd=tmp)
        print(f"dtitool fit-tensor (read, mask, fit, 12 maps and sidecars "
              f"written): {wall:.2f} s")
        if args.dipy or args.exact:
            import nibabel as nib
            import numpy as np

            from dtitool.imaging.batch import b0_mean

            data = np.asarray(nib.load(dwi).dataobj)
            b0 = b0_mean(data, np.loadtxt(bval), 50.0)
            mask = np.load(tmp / "mask.npy")
            for which in ("dipy",) * args.dipy + ("exact",) * args.exact:
                compare_with(b0, mask, which)
    print(f"machine: {load()}")


if __name__ == "__main__":
    main()
