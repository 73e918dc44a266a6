"""The imaging path: DWI -> tensor fit -> MD map -> ROI means -> the ROI table.
============================================================================

Teaching point: the ROI table the statistics use is what the real pipeline
would extract from the scans. Here a few simulated subjects go the long way: an
MD map per scan on the synthetic MNI-like phantom (2.5 mm by default for speed;
``--resolution 2`` gives the MNI152 2 mm grid; the seven ROIs of the reference
study), a 4D diffusion-weighted series synthesised from it (single
shell b = 1000 s/mm^2, Rician noise at b0 SNR 30), a weighted least-squares
tensor fit, and ROI extraction with the atlas. The ROI means recovered from the
DWI agree with the simulated table to a fraction of a percent, far below the
scan-rescan noise of MD (CV ~2.6 %), so the image path adds essentially no error
to the MD *change* the models use.

Run::

    python examples/imaging_pipeline.py --out example-output/imaging_pipeline
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import nibabel as nib
import numpy as np
import pandas as pd

from dtitool import (
    default_protocol,
    extract_roi_md,
    fit_tensor,
    load_preset,
    make_phantom,
    simulate_cohort,
    simulate_dwi,
    simulate_md_maps,
)
from dtitool.report.plots import plot_roi_slices

NAME = "imaging_pipeline"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    p.add_argument("--out", type=Path, default=Path("example-output") / NAME,
                   help="output folder (default: %(default)s)")
    p.add_argument("--seed", type=int, default=7,
                   help="random seed (default: %(default)s)")
    p.add_argument("--subjects", type=int, default=2,
                   help="subjects taken through the DWI path (default: %(default)s)")
    p.add_argument("--resolution", type=float, default=2.5,
                   help="voxel size in mm (default: %(default)s; 2 is the MNI152 "
                   "2 mm grid, about twice as slow)")
    p.add_argument("--snr", type=float, default=30.0,
                   help="b0 signal-to-noise ratio in white matter "
                   "(default: %(default)s)")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    design = load_preset("ketamine-rct")
    cohort = simulate_cohort(design, rng=args.seed)
    ids = sorted(cohort.participants["participant_id"])[: args.subjects]
    table = cohort.roi_md[cohort.roi_md["participant_id"].isin(ids)]

    phantom = make_phantom(roi_names=design.roi_names, resolution=args.resolution)
    bvals, bvecs = default_protocol(n_b0=5, n_directions=30)
    head = phantom.tissue > 0
    # One independent noise stream per scan (NEP 19: spawn, never seed + i).
    scans = list(simulate_md_maps(table, phantom=phantom, rng=args.seed))
    streams = np.random.SeedSequence(args.seed).spawn(len(scans))
    fitted, keys = [], []
    for scan, ss in zip(scans, streams, strict=True):
        dwi = simulate_dwi(scan.md, phantom=phantom, bvals=bvals, bvecs=bvecs,
                           snr=args.snr, rng=np.random.default_rng(ss))
        fit = fit_tensor(dwi, bvals, bvecs, method="wls", mask=head)
        fitted.append(nib.Nifti1Image(fit.md.astype(np.float32), phantom.affine))
        keys.append((scan.participant_id, scan.session))
    extracted = extract_roi_md(fitted, phantom.label_image(), lut=phantom.lut,
                               ids=keys)
    elapsed = time.perf_counter() - t0

    comp = table.merge(extracted, on=["participant_id", "session", "roi"],
                       suffixes=("_table", "_image"))
    comp["rel_error"] = comp["md_image"] / comp["md_table"] - 1
    comp.to_csv(args.out / "roi_table_vs_image.tsv", sep="\t", index=False,
                float_format="%.6g")
    # MD change (24 h - baseline) from both paths: the quantity the models use.
    wide = comp.pivot_table(index=["participant_id", "roi"], columns="session",
                            values=["md_table", "md_image"])
    v0, v1 = design.baseline_visit, design.primary_visit
    d_table = wide[("md_table", v1)] - wide[("md_table", v0)]
    d_image = wide[("md_image", v1)] - wide[("md_image", v0)]
    dmd_err = (d_image - d_table).abs()
    rois = {r.name: r for r in design.rois}
    scan_noise = pd.Series({name: np.sqrt(2) * r.cv * r.md_mean
                            for name, r in rois.items()})
    noise_ratio = (dmd_err / scan_noise.reindex(dmd_err.index.get_level_values("roi"))
                   .to_numpy()).max()

    # Figure: fitted MD slices with ROI outlines | table vs image ROI means.
    fig = plt.figure(figsize=(17, 5), layout="constrained")
    left, right = fig.subfigures(1, 2, width_ratios=[2.6, 1])
    md0 = np.where(head, np.asarray(fitted[0].dataobj), 0.0)
    plot_roi_slices(md0, phantom.labels, roi_names=list(phantom.lut["name"]),
                    affine=phantom.affine, fig=left)
    left.suptitle(f"{keys[0][0]} {keys[0][1]}: MD fitted from the simulated DWI, "
                  "ROIs outlined (radiological view)", fontsize=10)
    ax2 = right.subplots()
    for ses, marker in ((v0, "o"), (v1, "s")):
        c = comp[comp["session"] == ses]
        ax2.plot(c["md_table"] * 1e3, c["md_image"] * 1e3, marker, ms=5,
                 mfc="none", label=ses)
    lims = np.array([comp[["md_table", "md_image"]].min().min(),
                     comp[["md_table", "md_image"]].max().max()]) * 1e3
    ax2.plot(lims, lims, color="0.5", lw=0.8)
    ax2.set_xlabel("ROI MD in the simulated table (1e-3 mm^2/s)")
    ax2.set_ylabel("ROI MD from DWI -> tensor -> extraction (1e-3 mm^2/s)")
    ax2.set_title(f"{len(scans)} scans x {len(rois)} ROIs: max |relative error| "
                  f"{comp['rel_error'].abs().max():.2%}", fontsize=10)
    ax2.legend(fontsize=8)
    fig.savefig(args.out / "imaging_pipeline.png", dpi=110, bbox_inches="tight")
    plt.close(fig)

    print(f"{len(ids)} subjects x 2 sessions: DWI ({len(bvals)} volumes, b0 SNR "
          f"{args.snr:g}) on a {'x'.join(map(str, phantom.shape))} "
          f"{args.resolution:g} mm grid -> WLS "
          f"tensor fit -> MD -> {len(rois)} ROI means, {elapsed:.1f} s.")
    print(f"ROI MD from the images vs the simulated table: max |relative error| "
          f"{comp['rel_error'].abs().max():.3%}, mean {comp['rel_error'].mean():+.3%}.")
    print(f"MD change (24 h - baseline): largest image-path error "
          f"{dmd_err.max():.2e} mm^2/s, {noise_ratio:.1%} of the scan-rescan noise "
          "SD of a change.")
    print("Conclusion: the imaging pipeline reproduces the ROI table; the "
          "uncertainty in dMD comes from scan-rescan variability, not from the "
          "tensor fit or extraction.")
    print(f"wrote {args.out / 'imaging_pipeline.png'} and "
          f"{args.out / 'roi_table_vs_image.tsv'}")
    return 0


if __name__ == "__main__":
    # 0 is the interpreter's own exit status; raising only for another one lets
    # the documentation's gallery run the script inside its own process.
    if status := main():
        raise SystemExit(status)
