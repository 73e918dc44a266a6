"""``dtitool extract``: ROI means of parameter maps (MD, FA, ...) and a label atlas."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from dtitool._constants import MD_UNIT
from dtitool._io import atomic_outputs, read_tsv, write_tsv
from dtitool._progress import Progress
from dtitool.cli._common import add_execution_options, executor


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``dtitool extract``."""
    p = subparsers.add_parser(
        "extract",
        help="mean MD (or FA, ...) per ROI from parameter maps and a label atlas",
        description="Average parameter maps (MD by default: FSL dtifit "
        "*_MD.nii.gz, DIPY md.nii.gz, dtitool *_param-MD_dwimap.nii.gz, in "
        "mm^2/s; or FA or any measure named by --measure) within each ROI of a "
        "label atlas on the same grid and write roi_<measure>.tsv "
        "(participant_id, session, roi, <measure>, n_voxels, n_excluded) with "
        "its JSON sidecar. ROI names come from the lookup table (--lut, or the "
        "_dseg.tsv beside the atlas, which dtitool writes beside its own). "
        "Participant and session (any visit names) come from sub-<label> / "
        "ses-<label> in the file paths, or from --mapping. Non-finite (NaN, "
        "infinite), zero and negative voxels are excluded and counted "
        "(n_excluded, and a warning).",
    )
    p.add_argument(
        "maps",
        nargs="*",
        metavar="MAP",
        help="maps (3D NIfTI); default: every path in --mapping",
    )
    p.add_argument(
        "--labels", required=True, metavar="ATLAS.nii.gz", help="label atlas"
    )
    p.add_argument(
        "--lut",
        metavar="LUT.tsv",
        help="lookup table naming the atlas's labels: TSV with columns index, "
        "name (any ROI names); default: the atlas's _dseg.tsv sidecar (same "
        "stem, .tsv); without either, an error",
    )
    p.add_argument(
        "--measure", default="md", metavar="NAME",
        help="what the maps hold, and the name of the value column and table "
        "(roi_NAME.tsv): md (mm^2/s, with a unit check; the default), fa, or "
        "any name of letters, digits and underscores",
    )
    p.add_argument(
        "--unit", metavar="UNIT",
        help="unit of the measure, recorded in the sidecar (default: mm^2/s for "
        "md, none for fa and other measures); md is always mm^2/s",
    )
    p.add_argument(
        "--mapping",
        metavar="MAP.tsv",
        help="table with columns path, participant_id, session (relative paths "
        "are taken from the working folder or the table's folder)",
    )
    p.add_argument(
        "--visits", metavar="visits.tsv",
        help="the schedule (column visit, in order): rows follow it and a map of "
        "another session is an error; default: the visits.tsv in --out's folder "
        "if there is one, else the sessions in the order the maps show them",
    )
    p.add_argument("--out", metavar="roi_<measure>.tsv",
                   help="output table, or a folder to write roi_<measure>.tsv "
                   "into (default: roi_<measure>.tsv here)")
    p.add_argument("--force", action="store_true",
                   help="replace the output of an earlier dtitool run (only a file "
                   "listed in its folder's dtitool-run.json and unchanged since)")
    add_execution_options(p, what="maps (Dask workers must see the files)")
    p.add_argument("--quiet", action="store_true",
                   help="print nothing (no progress, no summary)")
    return p


def _unit(measure: str, unit: str | None) -> str:
    if measure == "md":
        if unit not in (None, MD_UNIT):
            raise ValueError(
                f"--unit {unit!r}: MD maps are read in {MD_UNIT} (the unit check "
                "refuses others); rescale the maps, or name the measure "
                "otherwise (--measure)")
        return MD_UNIT
    return "" if unit is None else unit


def _out_path(out: str | None, measure: str) -> Path:
    name = f"roi_{measure}.tsv"
    if out is None:
        return Path(name)
    if out in ("", ".", "..") or out.endswith(("/", os.sep)) or Path(out).is_dir():
        return Path(out or ".") / name
    return Path(out)


def _schedule(args, out: Path) -> tuple[list[str] | None, str]:
    """Visit names in order (or None) and where they came from."""
    from dtitool.tables import read_visits

    path = Path(args.visits) if args.visits else out.parent / "visits.tsv"
    if not args.visits and not path.is_file():
        return None, ""
    return [v.name for v in read_visits(path)], str(path)


def _sidecar(table, measure: str, unit: str, stem: str) -> dict:
    """Sidecar of a table of another measure than MD: its column described here."""
    from dtitool.columns import sidecar

    rest = table.drop(columns=[measure])
    meta = sidecar(rest, stem)
    entry = {"Description": f"ROI mean of the {measure} map: the mean over its "
             "included voxels", "Units": unit}
    return {c: (entry if c == measure else meta[c]) for c in table.columns}


def run(args) -> int:
    """Run ``dtitool extract``."""
    from dtitool.imaging.extract import check_measure, extract_roi_means, sidecar_lut

    measure = check_measure(args.measure)
    unit = _unit(measure, args.unit)
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
        raise ValueError("no maps given (list them, or give --mapping)")
    out = _out_path(args.out, measure)
    if out.name in ("", ".", ".."):
        raise ValueError(f"--out must name a file (roi_{measure}.tsv) or a folder, "
                         f"not {args.out!r}")
    side = sidecar_lut(args.labels)
    names_from = args.lut or (str(side) if side.is_file() else None)
    sessions, visits_from = _schedule(args, out)
    inputs = [*maps, args.labels, args.lut, args.mapping, str(side), args.visits]
    what = measure.upper() if measure in ("md", "fa") else measure
    # Enter first: an existing output is refused before reading every map.
    prog = Progress(1, quiet=args.quiet)
    with atomic_outputs(out.parent, [out.name], force=args.force,
                        inputs=inputs) as tmp:
        with (prog.step(f"extracting ROI {what} from {len(maps)} map(s)",
                        total=len(maps), unit="map") as bar,
              executor(args) as ex):
            table = extract_roi_means(maps, args.labels, measure=measure,
                                      lut=args.lut, ids=ids, sessions=sessions,
                                      dask=ex, progress=bar)
        if measure == "md":
            write_tsv(table, tmp / out.name)
        else:
            write_tsv(table, tmp / out.name, sidecar=False)
            meta = _sidecar(table, measure, unit, out.stem)
            (tmp / out.name).with_suffix(".json").write_text(
                json.dumps(meta, indent=2, ensure_ascii=False) + "\n",
                encoding="utf-8")
    if args.quiet:
        return 0
    print(
        f"wrote {out}: {len(maps)} map(s) x {table['roi'].nunique()} ROIs "
        f"({table['participant_id'].nunique()} participants)"
    )
    if not args.lut:
        print(f"ROI names from {names_from}, the lookup table beside the atlas")
    if visits_from:
        print(f"sessions in the order of {visits_from}")
    return 0
