"""Benchmark: ROI extraction from 196 MD maps, dtitool vs nilearn's NiftiLabelsMasker.

Writes the 98-subject ketamine-rct cohort's MD maps (196 maps of 91 x 109 x 91,
float32 .nii.gz) once, then times, end to end including reading every file:

- dtitool: ``extract_roi_md(paths, atlas)`` (one bincount pass per map);
- nilearn: ``NiftiLabelsMasker(atlas, strategy="mean").fit()`` then
  ``transform(path)`` per map.

Prints both times, the ratio nilearn / dtitool, and the largest relative
difference between the two sets of ROI means. Must reach: ratio >= 5.

Run:  python tests/benchmarks/bench_extract.py [--repeats 2] [--profile]
Needs the ``bench`` extra (nilearn; pyinstrument for --profile).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np


def make_maps(folder: Path) -> tuple[list[Path], Path]:
    from dtitool.imaging.phantom import ATLAS_FILENAME
    from dtitool.imaging.synthetic import write_cohort_images

    try:
        from dtitool.design import load_preset
        from dtitool.simulate import simulate_cohort

        cohort = simulate_cohort(load_preset("ketamine-rct"), rng=1)
        participants, roi_md = cohort.participants, cohort.roi_md
        if len(roi_md) != 98 * 14:  # a missing 24 h scan: keep 196 maps
            participants, roi_md = None, _numpy_table(98)
    except ImportError:  # pragma: no cover - before the simulator existed
        participants, roi_md = None, _numpy_table(98)
    index = write_cohort_images(participants, roi_md, folder, rng=2)
    return [folder / p for p in index["md_path"]], folder / ATLAS_FILENAME


def _numpy_table(n: int):
    import pandas as pd

    from dtitool.design import load_preset

    ROI_NAMES = load_preset("ketamine-rct").roi_names
    SESSIONS = load_preset("ketamine-rct").visit_names

    rng = np.random.default_rng(0)
    pid = np.repeat([f"sub-{i:03d}" for i in range(1, n + 1)], 14)
    ses = np.tile(np.repeat(SESSIONS, 7), n)
    roi = np.tile(ROI_NAMES, 2 * n)
    return pd.DataFrame(
        {
            "participant_id": pid,
            "session": ses,
            "roi": roi,
            "md": rng.normal(0.8e-3, 4e-5, 14 * n),
        }
    )


def run_ours(paths, atlas):
    from dtitool.imaging.extract import extract_roi_md

    df = extract_roi_md(paths, atlas)
    return df["md"].to_numpy().reshape(len(paths), -1)


def run_nilearn(paths, atlas):
    from nilearn.maskers import NiftiLabelsMasker

    masker = NiftiLabelsMasker(labels_img=str(atlas), strategy="mean").fit()
    return np.vstack([masker.transform(str(p)) for p in paths])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="profile dtitool's extraction with pyinstrument",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        paths, atlas = make_maps(Path(tmp) / "deriv")
        print(
            f"wrote {len(paths)} MD maps in {time.perf_counter() - t0:.1f} s "
            f"({platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} CPUs)"
        )
        if args.profile:
            from pyinstrument import Profiler

            with Profiler() as prof:
                run_ours(paths, atlas)
            prof.print()
        best = {}
        results = {}
        for name, fn in (("dtitool", run_ours), ("nilearn", run_nilearn)):
            times = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    results[name] = fn(paths, atlas)
                times.append(time.perf_counter() - t)
            best[name] = min(times)
            print(
                f"{name:8s}: {best[name]:.2f} s for {len(paths)} maps "
                f"(best of {args.repeats}; {len(paths) / best[name]:.0f} maps/s)"
            )
        diff = np.max(np.abs(results["dtitool"] / results["nilearn"] - 1))
        ratio = best["nilearn"] / best["dtitool"]
        print(
            f"ratio nilearn / dtitool: {ratio:.1f}x (must reach >= 5x): "
            f"{'PASS' if ratio >= 5 else 'FAIL'}"
        )
        print(f"max relative difference of ROI means: {diff:.1e}")


if __name__ == "__main__":
    main()
