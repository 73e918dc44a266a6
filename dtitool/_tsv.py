"""Tab-separated tables as dtitool reads and writes them, with JSON sidecars.

Tables are read with :func:`read_tsv` and written with :func:`write_tsv`, which
rounds each column by what it holds and writes a BIDS-style JSON sidecar (same
stem, ``.json``) describing every column from the data dictionary
(:mod:`dtitool.columns`). Writers run inside the output protocol
(:mod:`dtitool._io`), which re-exports both.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

__all__ = ["FLOAT_FORMAT", "read_tsv", "write_tsv"]

FLOAT_FORMAT = "%.10g"
"""Float format of a column the data dictionary gives no kind of number for."""


def write_tsv(df: pd.DataFrame, path: str | os.PathLike, *,
              table: str | None = None, sidecar: bool = True,
              design=None) -> None:
    """Write ``df`` as a tab-separated table, with its JSON sidecar.

    Parameters
    ----------
    df : DataFrame
    path : str or path-like
        The ``.tsv`` file; the sidecar is the same path with ``.json``.
    table : str, optional
        Which table this is, for column meanings that differ between tables
        (:data:`dtitool.columns.TABLE_COLUMNS`); default the file's stem.
    sidecar : bool
        Write the sidecar (every column must be in the data dictionary).
    design : StudyDesign, optional
        The design whose arms, visits, ROIs and outcome scales the sidecar
        names (levels and score columns); without it they come from the
        table's own values.

    Notes
    -----
    Each float column is written with the digits its kind of number supports
    (:data:`dtitool.columns.FORMATS`); missing values are empty cells.
    """
    from dtitool.columns import column_format
    from dtitool.columns import sidecar as make_sidecar

    path = Path(path)
    table = table or path.stem
    out = df.copy(deep=False)
    for col in out.columns:
        if not pd.api.types.is_float_dtype(out[col]):
            continue
        fmt = column_format(str(col), table, design=design) if sidecar else None
        fmt = fmt or FLOAT_FORMAT
        vals = out[col].to_numpy()
        out[col] = [("" if v != v else fmt % v) for v in vals]
    out.to_csv(path, sep="\t", index=False, float_format=FLOAT_FORMAT,
               lineterminator="\n")
    if sidecar:
        text = json.dumps(make_sidecar(df, table, design=design), indent=2,
                          ensure_ascii=False)
        path.with_suffix(".json").write_text(text + "\n", encoding="utf-8")


def read_tsv(path: str | os.PathLike, *, what: str = "table",
             dtype: Mapping[str, object] | None = None,
             text: Iterable[str] = ()) -> pd.DataFrame:
    """Read a tab-separated table, turning I/O and parse failures into ValueError.

    Parameters
    ----------
    path : str or path-like
        File to read.
    what : str
        What the table is, for error messages (e.g. ``"participants table"``).
    dtype : mapping, optional
        Column types, passed to :func:`pandas.read_csv` (columns not in the file
        are ignored); ``{"participant_id": str}`` keeps ``001`` and ``1.10`` as
        written.
    text : iterable of str
        Columns whose cells are text as written: only an empty cell is
        missing, so identifiers such as ``NA``, ``nan``, ``NULL``, ``None``,
        ``n/a`` or ``#N/A`` stay text. Other columns keep pandas's
        missing-value markers.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} {str(path)!r} does not exist or is not a file")
    text = set(text)
    try:
        na = {}
        if text:
            from pandas._libs.parsers import STR_NA_VALUES

            columns = pd.read_csv(path, sep="\t", nrows=0).columns
            na = {"keep_default_na": False, "na_values": {
                c: [""] if c in text else sorted(STR_NA_VALUES) for c in columns}}
        df = pd.read_csv(path, sep="\t", dtype=dict(dtype) if dtype else None, **na)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError,
            ValueError, OverflowError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(
            f"cannot read {what} {str(path)!r} as a tab-separated table: {first}"
        ) from None
    if df.shape[1] == 1 and len(df.columns) and "," in str(df.columns[0]):
        raise ValueError(
            f"{what} {str(path)!r} looks comma-separated; dtitool expects "
            "tab-separated tables (.tsv)"
        )
    return df
