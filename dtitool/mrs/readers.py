"""Readers for the quantification tables of Gannet, Osprey and LCModel.

Each reader returns one tidy frame (:data:`TIDY_COLUMNS`), one row per dataset,
metabolite and quantification scale:

``file``
    the dataset: the raw file named in a Gannet table's ``filename`` column, an
    Osprey dataset's name (``subject_names_and_excluded.tsv``), the LCModel
    ``.table`` file itself; participant, session and voxel are read from it
    (:func:`dtitool.mrs.mrs_tables`).
``metabolite``, ``measure``
    the tool's name and dtitool's (:func:`dtitool.mrs.names.measure_name`);
    ``known`` is False for a name kept under its sanitised form.
``scale``, ``value``, ``unit``
    the quantification (:data:`dtitool.mrs.names.SCALES`), the number as
    printed in the file, its unit (``i.u.``, ``mM``, ``ratio to tCr``, ...).
``quality``, ``quality_kind``
    the fit's quality figure in % and what it is (``crlb``, ``fit_error``;
    :data:`dtitool.mrs.names.QUALITY`); NaN where the file gives none.
``source``, ``line``, ``spectrum``
    the results file and the line the value is on (for messages), and the
    Osprey sub-spectrum (``A``, ``diff1``, ...; empty for the others).

The formats, as the tools write them:

- **Gannet** (``ExportToCSV.m``: ``Gannet_output.csv``, earlier
  ``MRS_struct_vox1.csv``): comma-separated, one row per dataset, columns
  ``MATLAB_version, Gannet_version, date_of_analysis, filename, avg_delta_F0``,
  then per metabolite (GABA, Glx, Glu, GSH, EtOH, Lac, water, Cr, Cho, NAA)
  ``<M>_area, <M>_FWHM, <M>_SNR, <M>_fit_error, <M>_fit_error_Cr,
  <M>_fit_error_w, <M>_conc_Cr, <M>_conc_iu``; GannetSegment and
  GannetQuantify add ``fGM, fWM, fCSF`` and ``<M>_ConcIU_CSFcorr``,
  ``<M>_ConcIU_TissCorr``, ``<M>_ConcIU_AlphaTissCorr``,
  ``<M>_ConcIU_AlphaTissCorr_GrpNorm``, ``<M>_alpha``. Values are rounded to
  3 decimals; a missing one is ``NaN``.
- **Osprey** (``exportQuant.m``): ``QuantifyResults/<spectrum>_<quantification>
  _Voxel_<n>_Basis_<n>.tsv`` (Osprey 1.x: comma-separated ``.csv`` without the
  basis), tab-separated, one column per metabolite of the basis set and one row
  per dataset in the job's order (excluded datasets left out), no dataset
  column: the datasets are named in ``subject_names_and_excluded.tsv`` in the
  output folder (written by OspreyOverview; columns ``group, subject`` and
  ``exclude``). Quantifications: ``amplMets`` (raw), ``tCr``,
  ``rawWaterScaled``, ``CSFWaterScaled``, ``TissCorrWaterScaled``,
  ``AlphaCorrWaterScaled``, ``AlphaCorrWaterScaledGroupNormed``, and with
  LCModel fitting ``CRLB`` (the %SD) and ``h2oarea``.
- **LCModel** (``.table``): a ``$$CONC`` block, ``Conc.  %SD /Cr+PCr
  Metabolite`` and one line per metabolite (concentration, %SD = CRLB, ratio
  to the ``NAMREL`` metabolite, name); the concentration is water-scaled (mM,
  institutional units) when the ``$$INPU`` block shows ``DOWS = T``, else in
  arbitrary units.
"""

from __future__ import annotations

import csv
import math
import os
import re
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from dtitool.mrs.names import measure_name

__all__ = [
    "FORMATS",
    "TIDY_COLUMNS",
    "read_gannet",
    "read_lcmodel",
    "read_mrs",
    "read_osprey",
    "sniff_format",
]

TIDY_COLUMNS = ("file", "metabolite", "measure", "scale", "value", "unit",
                "quality", "quality_kind", "source", "line", "spectrum", "known")
"""Columns of the frames the readers return (module docstring)."""

FORMATS = ("gannet", "osprey", "lcmodel")
"""The formats read, by ``--format`` name."""

_WHAT = {"gannet": "Gannet table", "osprey": "Osprey table",
         "lcmodel": "LCModel table"}
_EXPECT = {
    "gannet": "Gannet's CSV export (comma-separated; columns MATLAB_version, "
              "Gannet_version, date_of_analysis, filename, then <metabolite>_conc_iu, "
              "<metabolite>_conc_Cr, <metabolite>_fit_error_w, ...)",
    "osprey": "an Osprey QuantifyResults table (<spectrum>_<quantification>"
              "_Voxel_1_Basis_1.tsv: one column per metabolite, one row per "
              "dataset)",
    "lcmodel": "an LCModel .table file (a '$$CONC' block with the columns "
               "'Conc.  %SD /Cr+PCr  Metabolite')",
}


# ------------------------------------------------------------------ plumbing


def _read_text(path, what: str) -> str:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"{what} {str(path)!r} does not exist or is not a file")
    data = p.read_bytes()
    if not data.strip():
        raise ValueError(f"{what} {str(path)!r} is empty")
    if b"\0" in data:
        raise ValueError(f"{what} {str(path)!r} is not a text file (it holds NUL "
                         "bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:  # older tools on Windows write Latin-1
        return data.decode("latin-1")


def sniff_format(path: str | os.PathLike) -> str | None:
    """Return the format a results file looks like, or None.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.table"
    >>> _ = p.write_text("$$CONC  2 lines in following concentration table")
    >>> sniff_format(p)
    'lcmodel'
    """
    try:
        with open(path, "rb") as f:
            head = f.read(8192).decode("utf-8", "replace")
    except OSError:
        return None
    if "$$CONC" in head or re.search(r"Conc\.\s+%SD", head):
        return "lcmodel"
    first = head.lstrip().split("\n", 1)[0].strip()
    if ("," in first and re.search(r"(?i)(^|,)filename(,|$)", first)
            and re.search(r"_(conc_iu|conc_cr|fit_error)", first, re.I)):
        return "gannet"
    if _OSPREY_NAME.fullmatch(Path(path).stem):
        return "osprey"
    cells = re.split(r"[\t,]", first)
    if len(cells) > 1 and all(re.fullmatch(r"[A-Za-z][A-Za-z0-9_+]*", c)
                              for c in cells):
        return "osprey"
    return None


def _wrong_format(path, fmt: str, problem: str) -> ValueError:
    """Return the error for a file not in ``fmt``, saying what it looks like."""
    looks = sniff_format(path)
    hint = (f"; it looks like {_WHAT[looks].split()[0]} output (--format {looks})"
            if looks and looks != fmt else "")
    return ValueError(f"{_WHAT[fmt]} {str(path)!r} {problem}; expected "
                      f"{_EXPECT[fmt]}{hint}")


def _number(cell: str, where: str, expected: str) -> float:
    text = cell.strip()
    if text == "" or text.lower() in ("nan", "na", "n/a"):
        return math.nan
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: {text!r} is not a number; expected "
                         f"{expected}") from None
    if math.isinf(value):
        raise ValueError(f"{where}: {text!r} is infinite; expected {expected}")
    return value


def _frame(rows: list[dict]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=list(TIDY_COLUMNS))
    return df.astype({"value": float, "quality": float, "line": int,
                      "known": bool})


def _as_paths(paths) -> list:
    if isinstance(paths, (str, os.PathLike)):
        return [paths]
    out = []
    for p in paths:
        out.extend(_as_paths(p) if not isinstance(p, (str, os.PathLike)) else [p])
    return out


def _warn_unknown(frame: pd.DataFrame, stacklevel: int = 3) -> None:
    unknown = frame.loc[~frame["known"], ["metabolite", "measure"]].drop_duplicates()
    if len(unknown):
        pairs = ", ".join(f"{m} as {n}" for m, n in unknown.itertuples(index=False))
        warnings.warn(f"metabolite(s) without a dtitool name, read under sanitised "
                      f"names: {pairs}", stacklevel=stacklevel)


# -------------------------------------------------------------------- Gannet

_GANNET_COLUMN = re.compile(
    r"([A-Za-z0-9]+)_(conc_iu|conc_Cr|ConcIU_CSFcorr|ConcIU_TissCorr"
    r"|ConcIU_AlphaTissCorr_GrpNorm|ConcIU_AlphaTissCorr|fit_error_w"
    r"|fit_error_Cr|fit_error)", re.I)
# column suffix (lower case) -> scale
_GANNET_SCALE = {"conc_iu": "water", "conciu_csfcorr": "water-csf",
                 "conciu_tisscorr": "water-tissue",
                 "conciu_alphatisscorr": "water-alpha",
                 "conciu_alphatisscorr_grpnorm": "water-alpha-norm",
                 "conc_cr": "tcr"}


def read_gannet(path: str | os.PathLike) -> pd.DataFrame:
    """Read Gannet's CSV export (``Gannet_output.csv``) into a tidy frame.

    Parameters
    ----------
    path : str or path-like
        The CSV GannetFit, GannetSegment or GannetQuantify wrote.

    Returns
    -------
    DataFrame
        :data:`TIDY_COLUMNS`: per dataset (``file`` is the raw file of the
        ``filename`` column) and metabolite, the water-scaled values
        (``<M>_conc_iu``: ``water``, i.u.; the CSF-, tissue- and
        alpha-corrected ones when present) and the ratio to Cr (``<M>_conc_Cr``:
        ``tcr``, Gannet's Cr being the 3.0 ppm peak of Cr+PCr); ``quality`` is
        the fit error of the value's ratio (``<M>_fit_error_w`` for
        water-scaled values, ``<M>_fit_error_Cr`` for ratios, else
        ``<M>_fit_error``), in %. Gannet's GABA is GABA+ (``gaba``).

    Raises
    ------
    ValueError
        If the file is missing or empty, is not a Gannet table (the message
        says which format it looks like), has no ``filename`` or concentration
        column, a row with another number of fields than the header, an empty
        file name, or a cell that is not a number (file, line and column named).

    Warns
    -----
    UserWarning
        For metabolites without a dtitool name (kept under sanitised names).
    """
    frame = _read_gannet(path)
    _warn_unknown(frame)
    return frame


def _read_gannet(path) -> pd.DataFrame:
    what = f"Gannet table {str(path)!r}"
    text = _read_text(path, "Gannet table")
    reader = csv.reader(text.splitlines())
    header = None
    rows = []
    for record in reader:
        if not any(c.strip() for c in record):
            continue
        if header is None:
            header = [c.strip() for c in record]
            continue
        rows.append((reader.line_num, record))
    if header is None or len(header) < 2:
        raise _wrong_format(path, "gannet", "has no comma-separated header line")
    lower = [h.lower() for h in header]
    if "filename" not in lower:
        raise _wrong_format(path, "gannet", "has no column 'filename'")
    name_col = lower.index("filename")
    values, errors = {}, {}
    for j, h in enumerate(header):
        m = _GANNET_COLUMN.fullmatch(h)
        if not m:
            continue
        metab, kind = m.group(1), m.group(2).lower()
        if kind in _GANNET_SCALE:
            values[j] = (metab, _GANNET_SCALE[kind])
        else:
            errors[(metab, kind)] = j
    if not values:
        raise _wrong_format(path, "gannet", "has no concentration column "
                            "(<metabolite>_conc_iu, <metabolite>_conc_Cr, "
                            "<metabolite>_ConcIU_TissCorr, ...)")
    if not rows:
        raise ValueError(f"{what} has a header but no dataset rows")
    out = []
    for line, record in rows:
        if len(record) != len(header):
            raise ValueError(f"{what}, line {line}: {len(record)} fields but the "
                             f"header has {len(header)}; expected one value per "
                             "column")
        name = record[name_col].strip()
        if not name:
            raise ValueError(f"{what}, line {line}, column {header[name_col]}: "
                             "empty; expected the dataset's file name")
        for j, (metab, scale) in values.items():
            where = f"{what}, line {line}, column {header[j]}"
            value = _number(record[j], where, "a concentration (a number, or NaN "
                            "for none)")
            ref = "fit_error_w" if scale.startswith("water") else "fit_error_cr"
            k = errors.get((metab, ref), errors.get((metab, "fit_error")))
            quality = math.nan if k is None else _number(
                record[k], f"{what}, line {line}, column {header[k]}",
                "a fit error in % (a number, or NaN)")
            measure, known = measure_name(metab, fmt="gannet")
            out.append({"file": name, "metabolite": metab, "measure": measure,
                        "scale": scale, "value": value,
                        "unit": "ratio to tCr" if scale == "tcr" else "i.u.",
                        "quality": quality, "quality_kind": "fit_error",
                        "source": str(path), "line": line, "spectrum": "",
                        "known": known})
    return _frame(out)


# -------------------------------------------------------------------- Osprey

_OSPREY_QUANT = {"amplMets": ("raw", "a.u."), "tCr": ("tcr", "ratio to tCr"),
                 "rawWaterScaled": ("water", "i.u."),
                 "CSFWaterScaled": ("water-csf", "i.u."),
                 "TissCorrWaterScaled": ("water-tissue", "mM"),
                 "AlphaCorrWaterScaled": ("water-alpha", "mM"),
                 "AlphaCorrWaterScaledGroupNormed": ("water-alpha-norm", "mM"),
                 "CRLB": ("crlb", "%"), "h2oarea": ("h2oarea", "a.u.")}
_OSPREY_NAME = re.compile(
    r"(?P<spectrum>.+?)_(?P<quant>" + "|".join(
        sorted(_OSPREY_QUANT, key=len, reverse=True))
    + r")(?:_Voxel_(?P<voxel>\d+))?(?:_Basis_(?P<basis>\d+))?")
SUBJECTS_FILE = "subject_names_and_excluded.tsv"
"""The file in an Osprey output folder naming its datasets in order."""


def read_osprey(*paths, subjects=None) -> pd.DataFrame:
    """Read Osprey's quantification tables (``QuantifyResults/*.tsv``).

    Parameters
    ----------
    *paths : str or path-like
        Tables of one Osprey run, e.g. ``A_tCr_Voxel_1_Basis_1.tsv``,
        ``A_rawWaterScaled_Voxel_1_Basis_1.tsv``,
        ``diff1_tCr_Voxel_1_Basis_1.tsv`` and (LCModel fitting)
        ``A_CRLB_Voxel_1_Basis_1.tsv``; the quantification is read from the
        file name. A ``CRLB`` table gives the ``quality`` of the values of the
        same spectrum, voxel and basis.
    subjects : path or sequence of str, optional
        The datasets in the job's order: Osprey's
        ``subject_names_and_excluded.tsv`` (columns ``subject`` and, optional,
        ``exclude``: rows with ``exclude`` 1 are not in the tables), any TSV
        with a ``subject`` column, or the names. Default: the
        ``subject_names_and_excluded.tsv`` beside a table or in the folder
        above it (Osprey's output folder). A table with a ``subject`` column of
        its own needs none.

    Returns
    -------
    DataFrame
        :data:`TIDY_COLUMNS`; ``file`` is the dataset's name as Osprey gives it
        (``sub-01`` for BIDS data, else the raw file's path); ``spectrum`` the
        sub-spectrum. Units: ``i.u.`` (raw and CSF-corrected water scaling),
        ``mM`` (tissue-corrected, molal), ``ratio to tCr``, ``a.u.``
        (amplitudes). Osprey's ``GABAplus`` is ``gaba``; its ``GABA`` beside it
        is ``gaba_nomm``.

    Raises
    ------
    ValueError
        If a file is missing, empty or not an Osprey table (the message says
        which format it looks like), its name does not say its quantification,
        a cell is not a number (file, line and column named), no dataset names
        are found, or their number differs from the table's rows.

    Warns
    -----
    UserWarning
        For ``h2oarea`` tables (skipped: the water signal is no metabolite) and
        metabolites without a dtitool name.
    """
    frame = _read_osprey(_as_paths(paths), subjects)
    _warn_unknown(frame)
    return frame


def _read_subjects(path) -> list[str]:
    """Dataset names in table order (excluded ones left out)."""
    what = f"Osprey dataset list {str(path)!r}"
    text = _read_text(path, "Osprey dataset list")
    sep = "\t" if "\t" in text.split("\n", 1)[0] else ","
    reader = csv.reader(text.splitlines(), delimiter=sep)
    header = [c.strip() for c in next(reader)]
    lower = [h.lower() for h in header]
    if "subject" not in lower:
        raise ValueError(f"{what} has no column 'subject' (got {header}); expected "
                         f"Osprey's {SUBJECTS_FILE} (columns group, subject, "
                         "exclude)")
    s, x = lower.index("subject"), lower.index("exclude") if "exclude" in lower \
        else None
    out = []
    for record in reader:
        if not any(c.strip() for c in record):
            continue
        if len(record) != len(header):
            raise ValueError(f"{what}, line {reader.line_num}: {len(record)} fields "
                             f"but the header has {len(header)}")
        if x is not None and record[x].strip().lower() in ("1", "true"):
            continue
        if not record[s].strip():
            raise ValueError(f"{what}, line {reader.line_num}, column subject: "
                             "empty; expected the dataset's name")
        out.append(record[s].strip())
    return out


def _find_subjects(table: Path) -> Path | None:
    for folder in (table.parent, table.parent.parent):
        if (folder / SUBJECTS_FILE).is_file():
            return folder / SUBJECTS_FILE
    return None


def _read_osprey(paths: Sequence, subjects) -> pd.DataFrame:
    if not paths:
        raise ValueError("no Osprey tables given")
    if isinstance(subjects, (str, os.PathLike)):
        subjects = _read_subjects(subjects)
    elif subjects is not None:
        subjects = [str(s) for s in subjects]
    values, crlb = [], {}
    for path in paths:
        stem = Path(path).name.rsplit(".", 1)[0]
        m = _OSPREY_NAME.fullmatch(stem)
        if not m:
            _read_text(path, "Osprey table")  # missing or empty files first
            raise _wrong_format(path, "osprey", "has a name that does not say its "
                                "quantification (Osprey names its tables "
                                "<spectrum>_<quantification>_Voxel_<n>_Basis_<n>"
                                f".tsv, quantification one of "
                                f"{', '.join(_OSPREY_QUANT)})")
        quant = m.group("quant")
        if quant == "h2oarea":
            _read_text(path, "Osprey table")
            warnings.warn(f"skipped Osprey table {str(path)!r}: h2oarea is the "
                          "water reference's area, not a metabolite", stacklevel=3)
            continue
        key = (m.group("spectrum"), m.group("voxel") or "1", m.group("basis") or "1")
        rows = _osprey_rows(path, subjects)
        if quant == "CRLB":
            for name, metab, value, _ in rows:
                crlb[(*key, name, metab)] = value
            continue
        scale, unit = _OSPREY_QUANT[quant]
        values.extend((key, scale, unit, r) for r in rows)
    out = []
    for key, scale, unit, (name, metab, value, (line, gaba_plus)) in values:
        measure, known = measure_name(metab, fmt="osprey")
        if measure == "gaba" and metab == "GABA" and gaba_plus:
            measure, known = "gaba_nomm", True
        out.append({"file": name, "metabolite": metab, "measure": measure,
                    "scale": scale, "value": value, "unit": unit,
                    "quality": crlb.get((*key, name, metab), math.nan),
                    "quality_kind": "crlb", "source": str(line[0]),
                    "line": line[1], "spectrum": key[0], "known": known})
    if not out:
        raise ValueError("no Osprey metabolite tables among "
                         f"{[str(p) for p in paths]} (only CRLB or h2oarea ones)")
    return _frame(out)


def _osprey_rows(path, subjects) -> list[tuple]:
    """``(dataset, metabolite, value, ((path, line), has GABAplus))`` per cell."""
    what = f"Osprey table {str(path)!r}"
    text = _read_text(path, "Osprey table")
    first = text.lstrip().split("\n", 1)[0]
    sep = "\t" if "\t" in first else ","
    reader = csv.reader(text.splitlines(), delimiter=sep)
    header, records = None, []
    for record in reader:
        if not any(c.strip() for c in record):
            continue
        if header is None:
            header = [c.strip() for c in record]
        else:
            records.append((reader.line_num, record))
    lower = [h.lower() for h in header]
    if "$$conc" in first.lower() or "filename" in lower:
        raise _wrong_format(path, "osprey", "is not a table of metabolites by "
                            "dataset")
    subject_col = lower.index("subject") if "subject" in lower else None
    names = subjects
    if subject_col is None and names is None:
        found = _find_subjects(Path(path))
        if found is None:
            raise ValueError(
                f"{what} does not name its datasets, and no {SUBJECTS_FILE} is "
                "beside it or in the folder above (Osprey's output folder, where "
                "OspreyOverview writes it); copy it there, give it (--osprey-"
                "subjects), or give a TSV with a column 'subject' listing the "
                "job's files in order")
        names = _read_subjects(found)
    if subject_col is None and len(names) != len(records):
        raise ValueError(f"{what} has {len(records)} dataset rows but the dataset "
                         f"list names {len(names)} (excluded ones left out); they "
                         "must come from the same Osprey run")
    gaba_plus = any(h in ("GABAplus", "GABA+") for h in header)
    out = []
    for i, (line, record) in enumerate(records):
        if len(record) != len(header):
            raise ValueError(f"{what}, line {line}: {len(record)} fields but the "
                             f"header has {len(header)}")
        name = record[subject_col].strip() if subject_col is not None else names[i]
        for j, metab in enumerate(header):
            if j == subject_col:
                continue
            if not metab:
                raise ValueError(f"{what}: column {j + 1} of the header has no "
                                 "name; expected a metabolite name")
            value = _number(record[j], f"{what}, line {line}, column {metab}",
                            "a number (or NaN)")
            out.append((name, metab, value, ((path, line), gaba_plus)))
    if not out:
        raise ValueError(f"{what} has a header but no dataset rows")
    return out


# ------------------------------------------------------------------- LCModel

_CONC_LINE = re.compile(r"\$\$CONC\s+(\d+)\s+lines")
_CONC_HEADER = re.compile(r"Conc\.\s+%SD\s+/\s*(\S+)\s+Metab")
_CONC_ROW = re.compile(r"\s*(\S+)\s+(\d+)%\s+(\S+)\s+(\S.*?)\s*")
_TCR_NAMES = {"cr+pcr", "pcr+cr", "tcr", "cr_pcr"}
_DOWS = re.compile(r"(?i)\bdows\s*=\s*\.?t")


def read_lcmodel(path: str | os.PathLike) -> pd.DataFrame:
    """Read an LCModel ``.table`` file into a tidy frame.

    Parameters
    ----------
    path : str or path-like
        The ``.table`` file (``FILTAB``) of one spectrum.

    Returns
    -------
    DataFrame
        :data:`TIDY_COLUMNS`, two rows per metabolite: the concentration
        (``water``, mM, when the ``$$INPU`` block shows water scaling
        ``DOWS = T``; else ``raw``, a.u.) and the ratio to the ``NAMREL``
        metabolite (``tcr`` for Cr+PCr, else ``ratio``, the unit naming it);
        ``quality`` is the %SD (the Cramer-Rao lower bound; 999 where LCModel
        could not estimate it). ``file`` is ``path``.

    Raises
    ------
    ValueError
        If the file is missing, empty or not an LCModel table (the message says
        which format it looks like), a concentration line does not have the
        four columns or a number where one belongs (the line named), or the
        block has another number of lines than its ``$$CONC`` line announces.

    Warns
    -----
    UserWarning
        For metabolites without a dtitool name (kept under sanitised names).
    """
    frame = _read_lcmodel(path)
    _warn_unknown(frame)
    return frame


def _read_lcmodel(path) -> pd.DataFrame:
    what = f"LCModel table {str(path)!r}"
    lines = _read_text(path, "LCModel table").splitlines()
    start = next((i for i, ln in enumerate(lines) if _CONC_LINE.search(ln)), None)
    if start is None:
        raise _wrong_format(path, "lcmodel", "has no '$$CONC' block")
    announced = int(_CONC_LINE.search(lines[start]).group(1)) - 1
    head = start + 1
    while head < len(lines) and not lines[head].strip():
        head += 1
    m = _CONC_HEADER.search(lines[head]) if head < len(lines) else None
    if not m:
        raise ValueError(f"{what}, line {head + 1}: expected the header "
                         "'Conc.  %SD /Cr+PCr  Metabolite' after the $$CONC line")
    ref = m.group(1)
    ratio_scale = "tcr" if ref.lower() in _TCR_NAMES else "ratio"
    ratio_unit = "ratio to tCr" if ratio_scale == "tcr" else f"ratio to {ref}"
    inpu = next((i for i, ln in enumerate(lines) if ln.startswith("$$INPU")), None)
    water = inpu is not None and any(_DOWS.search(ln) for ln in lines[inpu:])
    scale, unit = ("water", "mM") if water else ("raw", "a.u.")
    out = []
    for i in range(head + 1, len(lines)):
        text = lines[i]
        if not text.strip() or text.lstrip().startswith("$$"):
            break
        row = _CONC_ROW.fullmatch(text)
        if not row:
            raise ValueError(f"{what}, line {i + 1}: {text.strip()!r} does not have "
                             "the columns concentration, %SD, ratio, metabolite "
                             "(e.g. ' 4.05E-02  32%   0.162 GABA')")
        conc_s, sd, ratio_s, metab = row.groups()
        where = f"{what}, line {i + 1}"
        conc = _number(conc_s, f"{where}, column Conc.", "a concentration")
        ratio = _number(ratio_s, f"{where}, column /{ref}", f"a ratio to {ref}")
        measure, known = measure_name(metab, fmt="lcmodel")
        base = {"file": str(path), "metabolite": metab, "measure": measure,
                "quality": float(sd), "quality_kind": "crlb",
                "source": str(path), "line": i + 1, "spectrum": "",
                "known": known}
        out.append({**base, "scale": scale, "value": conc, "unit": unit})
        out.append({**base, "scale": ratio_scale, "value": ratio,
                    "unit": ratio_unit})
    if len(out) // 2 != announced:
        raise ValueError(f"{what}: the $$CONC line (line {start + 1}) announces "
                         f"{announced} metabolite line(s) but the block has "
                         f"{len(out) // 2}; is the file cut short or edited?")
    if not out:
        raise ValueError(f"{what} lists no metabolites")
    return _frame(out)


# ---------------------------------------------------------------- any format


def read_mrs(paths: Iterable[str | os.PathLike] | str | os.PathLike, *,
             format: str, subjects=None) -> pd.DataFrame:
    """Read the results files of one tool into one tidy frame.

    Parameters
    ----------
    paths : path or iterable of path
        Gannet CSV exports, Osprey tables (of one run) or LCModel ``.table``
        files.
    format : {"gannet", "osprey", "lcmodel"}
        The tool that wrote them.
    subjects : path or sequence of str, optional
        Osprey only: the dataset names (:func:`read_osprey`).

    Returns
    -------
    DataFrame
        :data:`TIDY_COLUMNS`, the files' rows in order.

    Raises
    ------
    ValueError
        If ``format`` is not one of :data:`FORMATS`, no file is given, or a
        reader refuses a file.

    Warns
    -----
    UserWarning
        Once, naming every metabolite without a dtitool name.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}; got "
                         f"{format!r}")
    paths = _as_paths(paths)
    if not paths:
        raise ValueError("no results files given")
    if subjects is not None and format != "osprey":
        raise ValueError(f"subjects names Osprey's datasets; the {format} files "
                         "name theirs themselves")
    if format == "osprey":
        frame = _read_osprey(paths, subjects)
    else:
        read = _read_gannet if format == "gannet" else _read_lcmodel
        frame = pd.concat([read(p) for p in paths], ignore_index=True)
    _warn_unknown(frame)
    return frame
