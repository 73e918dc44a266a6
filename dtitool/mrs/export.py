"""A cohort's MRS tables written as the quantification tools' output files.

:func:`write_tool_files` turns long tables (``roi_<measure>.tsv`` of a
simulated cohort, or of ``dtitool mrs-import``) into what Gannet, Osprey or
LCModel would have written for those values: a teaching aid (what will the
files of my trial look like?) and the first half of a round trip (simulate,
write, import, compare). Datasets are named BIDS-style,
``sub-<id>_ses-<visit>_voxel-<voxel>``, so that ``dtitool mrs-import`` reads
the participant, session and voxel back from the names.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from dtitool._constants import MRS_UNITS
from dtitool.mrs.writers import write_gannet, write_lcmodel_table, write_osprey

__all__ = ["TOOL_NAMES", "write_tool_files"]

TOOL_NAMES = {
    "gannet": {"gaba": "GABA", "glx": "Glx", "tcr": "Cr", "tnaa": "NAA",
               "tcho": "Cho", "gsh": "GSH"},
    "osprey": {"gaba": "GABAplus", "glx": "Glx", "tcr": "tCr", "tnaa": "tNAA",
               "tcho": "tCho", "gsh": "GSH", "glu": "Glu", "gln": "Gln",
               "mi": "mI", "naa": "NAA"},
    "lcmodel": {"gaba": "GABA", "glx": "Glu+Gln", "tcr": "Cr+PCr",
                "tnaa": "NAA+NAAG", "tcho": "GPC+PCh", "gsh": "GSH", "glu": "Glu",
                "gln": "Gln", "mi": "Ins", "naa": "NAA"},
}
"""Per format, the name the tool gives each dtitool measure."""

FORMATS = tuple(TOOL_NAMES)


def _long(tables: Mapping[str, pd.DataFrame], fmt: str) -> pd.DataFrame:
    """One row per dataset and metabolite: the writers' frame layout."""
    rows = []
    for measure, t in tables.items():
        if measure not in TOOL_NAMES[fmt]:
            raise ValueError(f"{fmt} has no name for measure {measure!r} here; "
                             f"it writes {', '.join(TOOL_NAMES[fmt])}")
        need = {"participant_id", "session", "roi", measure, "unit"}
        missing = sorted(need - set(t.columns))
        if missing:
            raise ValueError(f"the {measure} table lacks column(s) "
                             f"{', '.join(missing)}")
        bad = sorted(set(t["unit"]) - set(MRS_UNITS))
        if bad:
            raise ValueError(f"the {measure} table has unit {bad[0]!r}; the tools "
                             f"write {', '.join(MRS_UNITS)}")
        quality = next((c for c in ("crlb", "fit_error") if c in t), None)
        pid = t["participant_id"].astype(str)
        pid = pid.where(pid.str.startswith("sub-"), "sub-" + pid)
        rows.append(pd.DataFrame({
            "file": (pid + "_ses-" + t["session"].astype(str) + "_voxel-"
                     + t["roi"].astype(str)).to_numpy(),
            "metabolite": TOOL_NAMES[fmt][measure],
            "scale": t["unit"].map(MRS_UNITS).to_numpy(),
            "value": t[measure].to_numpy(dtype=float),
            "quality": (t[quality].to_numpy(dtype=float) if quality
                        else float("nan")),
        }))
    if not rows:
        raise ValueError("no MRS tables to write")
    return pd.concat(rows, ignore_index=True)


def write_tool_files(tables: Mapping[str, pd.DataFrame], fmt: str,
                     folder: str | os.PathLike) -> list[Path]:
    """Write MRS long tables as one quantification tool's output files.

    Parameters
    ----------
    tables : mapping of str to DataFrame
        Measure -> long table (``participant_id, session, roi, <measure>,
        unit`` and optional ``crlb`` or ``fit_error``), as
        :meth:`dtitool.simulate.Cohort.measure_table` gives.
    fmt : {"gannet", "osprey", "lcmodel"}
        Gannet: one ``Gannet_output.csv`` (raw files named ``<dataset>.7``);
        Osprey: its ``QuantifyResults`` tables; LCModel: one ``<dataset>.table``
        per spectrum (water-scaled values in mM, ``DOWS = T``; every spectrum
        needs ``tcr``, LCModel's ratio reference).
    folder : path-like
        An existing folder to write into.

    Returns
    -------
    list of Path
        The files written, in the order to give them to ``dtitool mrs-import``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {fmt!r}")
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"folder {str(folder)!r} does not exist")
    frame = _long(tables, fmt)
    if fmt == "gannet":
        frame["file"] = frame["file"] + ".7"
        path = folder / "Gannet_output.csv"
        write_gannet(path, frame)
        return [path]
    if fmt == "osprey":
        return [p for p in write_osprey(folder, frame, spectrum="A")
                if p.name != "subject_names_and_excluded.tsv"]
    ratio = frame["scale"] == "tcr"
    if ratio.any():
        raise ValueError("LCModel writes concentrations and computes the ratio to "
                         "tCr itself: give the tables in i.u. or mM")
    paths = []
    for name, part in frame.groupby("file", sort=False):
        if TOOL_NAMES["lcmodel"]["tcr"] not in set(part["metabolite"]):
            raise ValueError(f"{name}: LCModel needs total creatine (tcr) in every "
                             "spectrum, its ratio reference")
        path = folder / f"{name}.table"
        write_lcmodel_table(path, dict(zip(part["metabolite"], part["value"],
                                           strict=True)),
                            crlb=dict(zip(part["metabolite"],
                                          part["quality"].fillna(0.0),
                                          strict=True)))
        paths.append(path)
    return paths
