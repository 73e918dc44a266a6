"""``dtitool extract``: ROI-mean MD from MD maps and a label atlas."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from dtitool._io import atomic_outputs, read_tsv, write_tsv
from dtitool._progress import Progress
from dtitool.cli._common import add_execution_options, executor


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``dtitool extract``."""
    p = subparsers.add_parser(
        "extract",
        help="mean MD per ROI from MD maps and a label atlas",
        description="Average MD maps (FSL dtifit *_MD.nii.gz, DIPY md.nii.gz, "
        "dtitool *_param-MD_dwimap.nii.gz; mm^2/s) within each ROI of a label "
        "atlas on the same grid and write roi_md.tsv (participant_id, session, "
        "roi, md, n_voxels, n_excluded). Participant and session come from "
        "sub-<label> / ses-<label> in the file paths, or from --mapping. "
        "Non-finite (NaN, infinite), zero and negative voxels are excluded and "
        "counted (n_excluded, and a warning).",
    )
    p.add_argument(
        "maps",
        nargs="*",
        metavar="MAP",
        help="MD maps (3D NIfTI); default: every path in --mapping",
    )
    p.add_argument(
        "--labels", required=True, metavar="ATLAS.nii.gz", help="label atlas"
    )
    p.add_argument(
        "--lut",
        metavar="LUT.tsv",
        help="lookup table (columns index, name); default: the atlas's "
        "_dseg.tsv sidecar, else the dtitool ROI order",
    )
    p.add_argument(
        "--mapping",
        metavar="MAP.tsv",
        help="table with columns path, participant_id, session (relative paths "
        "are taken from the working folder or the table's folder)",
    )
    p.add_argument("--out", required=True, metavar="roi_md.tsv", help="output table")
    p.add_argument("--force", action="store_true",
                   help="replace the output of an earlier dtitool run (only a file "
                   "listed in its folder's dtitool-run.json and unchanged since)")
    add_execution_options(p, what="maps (Dask workers must see the files)")
    p.add_argument("--quiet", action="store_true",
                   help="print nothing (no progress, no summary)")
    return p


def run(args) -> int:
    """Run ``dtitool extract``."""
    from dtitool.imaging.extract import extract_roi_md

    ids = None
    maps = list(args.maps)
    if args.mapping:
        ids = read_tsv(args.mapping, what="mapping table",
                       dtype={"participant_id": str, "session": str, "path": str},
                       text=("participant_id", "session", "path"))
        ids.attrs["base_dir"] = str(Path(args.mapping).parent)
        if not maps:
            if "path" not in ids:
                raise ValueError(
                    f"mapping table {args.mapping!r} lacks the column 'path'"
                )
            base = Path(args.mapping).parent
            maps = [
                p if Path(p).exists() or not (base / p).exists() else str(base / p)
                for p in ids["path"].astype(str)
            ]
    if not maps:
        raise ValueError("no MD maps given (list them, or give --mapping)")
    out = Path(args.out)
    if out.name in ("", ".", "..") or args.out.endswith(("/", os.sep)) or out.is_dir():
        raise ValueError(f"--out must name a file (roi_md.tsv), not the folder "
                         f"{args.out!r}")
    side = re.sub(r"\.nii(\.gz)?$", "", args.labels) + ".tsv"
    inputs = [*maps, args.labels, args.lut, args.mapping, side]
    # Enter first: an existing output is refused before reading every map.
    prog = Progress(1, quiet=args.quiet)
    with atomic_outputs(out.parent, [out.name], force=args.force,
                        inputs=inputs) as tmp:
        with (prog.step(f"extracting ROI MD from {len(maps)} map(s)",
                        total=len(maps), unit="map") as bar,
              executor(args) as ex):
            table = extract_roi_md(maps, args.labels, lut=args.lut, ids=ids,
                                   dask=ex, progress=bar)
        write_tsv(table, tmp / out.name)
    if args.quiet:
        return 0
    print(
        f"wrote {out}: {len(maps)} map(s) x {table['roi'].nunique()} ROIs "
        f"({table['participant_id'].nunique()} participants)"
    )
    return 0
