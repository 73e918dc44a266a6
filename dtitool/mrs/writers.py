"""Writers of the three tools' formats, for round trips (simulate, write, read).

Each writes what the tool itself would print for the values given, at the
tool's printed precision: Gannet rounds to 3 decimals, Osprey (MATLAB's
``writetable``) prints 15 significant digits, LCModel 3 significant digits or 3
decimals. The files say in their own text that dtitool wrote them where the
format has room for it (LCModel's title lines); none of them is a fit.

The input is a frame in the readers' layout (:data:`dtitool.mrs.readers.
TIDY_COLUMNS`): ``file``, ``metabolite`` (the tool's name), ``scale``,
``value`` and, optional, ``quality`` (in %).
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

__all__ = ["format_lcmodel_number", "write_gannet", "write_lcmodel_table",
           "write_osprey"]

_GANNET_SUFFIX = {"water": "conc_iu", "tcr": "conc_Cr",
                  "water-csf": "ConcIU_CSFcorr", "water-tissue": "ConcIU_TissCorr",
                  "water-alpha": "ConcIU_AlphaTissCorr",
                  "water-alpha-norm": "ConcIU_AlphaTissCorr_GrpNorm"}
_OSPREY_QUANT = {"raw": "amplMets", "tcr": "tCr", "water": "rawWaterScaled",
                 "water-csf": "CSFWaterScaled",
                 "water-tissue": "TissCorrWaterScaled",
                 "water-alpha": "AlphaCorrWaterScaled",
                 "water-alpha-norm": "AlphaCorrWaterScaledGroupNormed"}


def _check_frame(frame: pd.DataFrame, scales: Mapping[str, str], tool: str
                 ) -> pd.DataFrame:  # fmt: skip
    need = ["file", "metabolite", "scale", "value"]
    missing = [c for c in need if c not in frame]
    if missing:
        raise ValueError(f"the {tool} writer needs columns {', '.join(need)}; "
                         f"missing {', '.join(missing)}")
    bad = sorted(set(frame["scale"]) - set(scales))
    if bad:
        raise ValueError(f"{tool} does not write scale(s) {', '.join(bad)}; it "
                         f"writes {', '.join(scales)}")
    dup = frame.duplicated(["file", "metabolite", "scale"])
    if dup.any():
        r = frame[dup].iloc[0]
        raise ValueError(f"{r['file']!r} has {r['metabolite']} on scale "
                         f"{r['scale']} twice")
    out = frame.copy()
    if "quality" not in out:
        out["quality"] = math.nan
    return out


def _g15(v: float) -> str:
    return "NaN" if v != v else f"{v:.15g}"


def write_gannet(path: str | os.PathLike, frame: pd.DataFrame, *,
                 gannet_version: str = "dtitool") -> None:
    """Write a table in Gannet's CSV export layout (``Gannet_output.csv``).

    Parameters
    ----------
    path : str or path-like
        The CSV to write.
    frame : DataFrame
        ``file`` (the raw file name Gannet puts in ``filename``),
        ``metabolite`` (Gannet's name: GABA, Glx, Cr, NAA, ...), ``scale``
        (``water``: ``<M>_conc_iu``; ``tcr``: ``<M>_conc_Cr``; the tissue
        corrections: ``<M>_ConcIU_TissCorr`` etc.), ``value`` and optional
        ``quality`` (written as ``<M>_fit_error_w`` for water-scaled values,
        ``<M>_fit_error_Cr`` for ratios, and ``<M>_fit_error``).
    gannet_version : str
        Written to the ``Gannet_version`` column (default ``dtitool``: no
        Gannet run made the file).

    Notes
    -----
    Values are rounded to 3 decimals, as Gannet rounds them; area, FWHM and SNR
    columns are written as ``NaN``.
    """
    frame = _check_frame(frame, _GANNET_SUFFIX, "Gannet")
    files = list(dict.fromkeys(frame["file"]))
    metabs = list(dict.fromkeys(frame["metabolite"]))
    cells: dict[str, dict[str, float]] = {f: {} for f in files}
    columns: list[str] = []
    tissue: list[str] = []
    for m in metabs:
        part = frame[frame["metabolite"] == m]
        scales = set(part["scale"])
        own = [f"{m}_area", f"{m}_FWHM", f"{m}_SNR", f"{m}_fit_error"]
        if "tcr" in scales:
            own.append(f"{m}_fit_error_Cr")
        if scales & {"water", "water-csf", "water-tissue", "water-alpha",
                     "water-alpha-norm"}:
            own.append(f"{m}_fit_error_w")
        own += [f"{m}_{_GANNET_SUFFIX[s]}" for s in ("tcr", "water") if s in scales]
        columns += own
        tissue += [f"{m}_{_GANNET_SUFFIX[s]}" for s in
                   ("water-csf", "water-tissue", "water-alpha", "water-alpha-norm")
                   if s in scales]
        for r in part.itertuples(index=False):
            row = cells[r.file]
            row[f"{m}_{_GANNET_SUFFIX[r.scale]}"] = round(float(r.value), 3)
            q = float(r.quality)
            if r.scale == "tcr":
                row[f"{m}_fit_error_Cr"] = round(q, 3)
            else:
                row[f"{m}_fit_error_w"] = round(q, 3)
            row.setdefault(f"{m}_fit_error", round(q, 3))
    header = ["MATLAB_version", "Gannet_version", "date_of_analysis", "filename",
              "avg_delta_F0", *columns, *tissue]
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        for name in files:
            row = cells[name]
            w.writerow(["", gannet_version, "", name, "NaN",
                        *(_g15(row.get(c, math.nan)) for c in (*columns, *tissue))])


def write_osprey(folder: str | os.PathLike, frame: pd.DataFrame, *,
                 spectrum: str = "A", voxel: int = 1, basis: int = 1
                 ) -> list[Path]:  # fmt: skip
    """Write tables in the layout of an Osprey output folder.

    Parameters
    ----------
    folder : str or path-like
        Osprey's output folder: ``QuantifyResults/<spectrum>_<quantification>
        _Voxel_<voxel>_Basis_<basis>.tsv`` (one per scale: ``tcr`` as ``tCr``,
        ``water`` as ``rawWaterScaled``, ``water-tissue`` as
        ``TissCorrWaterScaled``, ``raw`` as ``amplMets``, ...), a ``CRLB``
        table when ``quality`` is given, and ``subject_names_and_excluded.tsv``
        naming the datasets.
    frame : DataFrame
        ``file`` (the dataset's name, Osprey's ``subject``), ``metabolite``
        (Osprey's name: GABAplus, tNAA, tCr, ...), ``scale``, ``value``,
        optional ``quality`` (the CRLB, %).
    spectrum : str
        The sub-spectrum (``A``, ``diff1``, ...).
    voxel, basis : int
        The numbers in the file names.

    Returns
    -------
    list of Path
        The files written.
    """
    frame = _check_frame(frame, _OSPREY_QUANT, "Osprey")
    folder = Path(folder)
    (folder / "QuantifyResults").mkdir(parents=True, exist_ok=True)
    files = list(dict.fromkeys(frame["file"]))
    metabs = list(dict.fromkeys(frame["metabolite"]))
    written = []

    def table(name: str, values: pd.DataFrame, column: str) -> None:
        wide = values.pivot(index="file", columns="metabolite", values=column)
        wide = wide.reindex(index=files, columns=metabs)
        path = folder / "QuantifyResults" / (
            f"{spectrum}_{name}_Voxel_{voxel}_Basis_{basis}.tsv")
        lines = ["\t".join(metabs)]
        lines += ["\t".join(_g15(v) for v in row) for row in wide.to_numpy()]
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        written.append(path)

    for scale, part in frame.groupby("scale", sort=False):
        table(_OSPREY_QUANT[scale], part, "value")
    crlb = frame.dropna(subset=["quality"]).drop_duplicates(["file", "metabolite"])
    if len(crlb):
        table("CRLB", crlb, "quality")
    subjects = folder / "subject_names_and_excluded.tsv"
    subjects.write_text("group\tsubject\n" + "".join(f"1\t{f}\n" for f in files),
                        encoding="utf-8")
    written.append(subjects)
    return written


def format_lcmodel_number(x: float, width: int) -> str:
    """Return ``x`` as LCModel prints it in a ``.table`` column of ``width``.

    Fixed point with 3 decimals between 0.1 and 1000 (100 for the 7-wide ratio
    column), else 3 significant digits (2 for the ratio), as LCModel does.

    Examples
    --------
    >>> format_lcmodel_number(0.0405, 8), format_lcmodel_number(0.162, 7)
    ('4.05E-02', '  0.162')
    """
    top = 1000 if width >= 8 else 100
    if x == 0:
        return f"{0:{width}.3f}"
    if 0.1 <= abs(x) < top:
        return f"{x:{width}.3f}"
    return f"{x:{width}.{2 if width >= 8 else 1}E}"


def write_lcmodel_table(path: str | os.PathLike,
                        concentrations: Mapping[str, float], *,
                        crlb: Mapping[str, float] | None = None,
                        reference: str = "Cr+PCr", water_scaled: bool = True,
                        title: str = "written by dtitool") -> None:
    """Write an LCModel ``.table`` file for one spectrum.

    Parameters
    ----------
    path : str or path-like
        The ``.table`` file to write.
    concentrations : mapping of str to float
        LCModel metabolite name -> concentration (mM if ``water_scaled``), in
        the order to print.
    crlb : mapping of str to float, optional
        The %SD (CRLB) per metabolite, printed as an integer (default 0).
    reference : str
        The ``NAMREL`` metabolite: the ratio column divides by its
        concentration, and it must be in ``concentrations``.
    water_scaled : bool
        Write ``DOWS = T`` in the ``$$INPU`` block (what tells a reader the
        concentrations are water-scaled).
    title : str
        The title line. The first line says that dtitool, not LCModel, wrote
        the file.
    """
    if reference not in concentrations or not concentrations[reference] > 0:
        raise ValueError(f"reference {reference!r} must be one of the "
                         "concentrations, above 0, to print the ratio column")
    crlb = dict(crlb or {})
    ref = float(concentrations[reference])
    lines = [" LCModel-format table written by dtitool (not an LCModel fit)",
             f" {title}", "", f"$$CONC {len(concentrations) + 1:2d} lines in "
             "following concentration table = NCONC+1",
             f"    Conc.  %SD /{reference:<6s}  Metabolite"]
    for name, conc in concentrations.items():
        sd = min(999, round(float(crlb.get(name, 0))))
        lines.append(f" {format_lcmodel_number(float(conc), 8)} {sd:3d}% "
                     f"{format_lcmodel_number(float(conc) / ref, 7)} {name}")
    lines += ["", "$$MISC  1 lines in following misc. output table",
              "  (none: no spectrum was fitted)", "",
              "$$INPU  1 lines in following table of input changes:",
              f" DOWS = {'T' if water_scaled else 'F'}", ""]
    Path(path).write_text("\n".join(lines), encoding="utf-8")
