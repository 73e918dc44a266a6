"""``dtitool mrs-import``: MRS quantification results as long tables per metabolite."""

from __future__ import annotations

import argparse
from pathlib import Path

_UNITS = ("auto", "water", "water-csf", "water-tissue", "water-alpha",
          "water-alpha-norm", "tcr", "ratio", "raw")


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``dtitool mrs-import``."""
    p = subparsers.add_parser(
        "mrs-import",
        help="MRS results of Gannet, Osprey or LCModel as roi_<metabolite>.tsv "
        "tables",
        description="Read the quantification tables of Gannet (its CSV export), "
        "Osprey (QuantifyResults/*.tsv) or LCModel (.table files) and write one "
        "long table per metabolite into --out: roi_gaba.tsv, roi_glx.tsv, "
        "roi_naa.tsv, roi_tcr.tsv, ... with columns participant_id, session, "
        "roi (the voxel), the value (named after the metabolite), unit and the "
        "fit quality (crlb in % for LCModel and Osprey, fit_error in % for "
        "Gannet), each with its JSON sidecar. Participant and session come from "
        "sub-<label> / ses-<label> in the dataset's file name (a Gannet row's "
        "filename, an Osprey dataset's name, the LCModel file's path) or from "
        "--mapping; the voxel from voxel-<label> or acq-<label> there, the "
        "mapping's roi column or --voxel. Metabolites without a dtitool name "
        "are kept under sanitised names, with a warning (docs/mrs.md).",
    )
    p.add_argument("files", nargs="+", metavar="FILE",
                   help="results files: Gannet CSV exports, Osprey tables of one "
                   "run, or LCModel .table files")
    p.add_argument("--format", required=True, choices=("gannet", "osprey",
                                                        "lcmodel"),
                   help="the tool that wrote the files")
    p.add_argument("--mapping", metavar="MAP.tsv",
                   help="table with columns file, participant_id, session and, "
                   "optional, roi, for datasets whose names do not say them "
                   "(file: the LCModel .table, a Gannet row's filename, an Osprey "
                   "dataset's name; a path or a file name)")
    p.add_argument("--voxel", metavar="NAME",
                   help="the voxel (roi) of datasets whose name and mapping row "
                   "name none (e.g. acc)")
    p.add_argument("--unit", default="auto", choices=_UNITS, metavar="SCALE",
                   help="which quantification to write where a file has several: "
                   "water (water-scaled, no tissue correction: i.u. or mM), "
                   "water-csf, water-tissue, water-alpha, water-alpha-norm (the "
                   "corrected ones), tcr (ratio to Cr+PCr), ratio (to another "
                   "LCModel reference), raw (unscaled); default auto: water if "
                   "the file has it, else tcr")
    p.add_argument("--metabolites", metavar="NAMES",
                   help="comma-separated dtitool names of the metabolites to "
                   "write (e.g. gaba,glx,naa,tcr); default: every one in the files")
    p.add_argument("--osprey-subjects", metavar="TSV",
                   help="Osprey: the datasets in the job's order (its "
                   "subject_names_and_excluded.tsv, or any TSV with a column "
                   "subject); default: the one in the output folder above the "
                   "tables")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="folder to write the roi_<metabolite>.tsv tables into")
    p.add_argument("--force", action="store_true",
                   help="replace the output of an earlier dtitool run (only files "
                   "listed in the folder's dtitool-run.json and unchanged since)")
    p.add_argument("--quiet", action="store_true", help="print nothing")
    return p


def run(args) -> int:
    """Run ``dtitool mrs-import``."""
    from dtitool._io import atomic_outputs
    from dtitool.mrs import mrs_tables, read_mapping, read_mrs, write_mrs_tables
    from dtitool.mrs.assemble import describe, table_names

    if args.osprey_subjects and args.format != "osprey":
        raise ValueError(f"--osprey-subjects names Osprey's datasets; the "
                         f"{args.format} files name theirs themselves")
    if args.voxel is not None and not args.voxel.strip():
        raise ValueError("--voxel must name the voxel (e.g. acc); got an empty "
                         "name")
    mapping = read_mapping(args.mapping) if args.mapping else None
    frame = read_mrs(args.files, format=args.format,
                     subjects=args.osprey_subjects)
    measures = None
    if args.metabolites is not None:
        measures = [m.strip() for m in args.metabolites.split(",") if m.strip()]
        if not measures:
            raise ValueError("--metabolites must name at least one metabolite "
                             "(e.g. gaba,glx)")
    result = mrs_tables(frame, mapping=mapping, voxel=args.voxel, unit=args.unit,
                        measures=measures)
    if not result.tables:
        raise ValueError(f"--unit {args.unit}: none of the files has a value on "
                         "that scale")
    out = Path(args.out)
    inputs = [*args.files, args.mapping, args.osprey_subjects]
    with atomic_outputs(out, table_names(result.tables), force=args.force,
                        inputs=[i for i in inputs if i]) as tmp:
        write_mrs_tables(result, tmp)
    if args.quiet:
        return 0
    print(f"wrote {len(result.tables)} table(s) into {out} from "
          f"{frame['file'].nunique()} dataset(s) in {len(args.files)} file(s):")
    for line in describe(result).values():
        print(f"  {line}")
    for note in result.notes:
        print(f"  {note}")
    return 0
