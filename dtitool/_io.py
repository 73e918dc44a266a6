"""Table I/O shared by the CLI and the public API.

Every file dtitool writes goes through :func:`atomic_outputs`: outputs are first
written into a private temporary folder beside the destination and moved into
place only when all of them are complete, so a failed run leaves nothing
half-written and never replaces a file the user already had (unless ``force``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pandas as pd

FLOAT_FORMAT = "%.10g"
"""Float format of every TSV dtitool writes (10 significant digits)."""


def write_tsv(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write ``df`` as a tab-separated table with dtitool's fixed float format."""
    df.to_csv(
        path, sep="\t", index=False, float_format=FLOAT_FORMAT, lineterminator="\n"
    )


def read_tsv(path: str | os.PathLike, *, what: str = "table") -> pd.DataFrame:
    """Read a tab-separated table, turning I/O and parse failures into ValueError.

    Parameters
    ----------
    path : str or path-like
        File to read.
    what : str
        What the table is, for error messages (e.g. ``"participants table"``).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} {str(path)!r} does not exist or is not a file")
    try:
        df = pd.read_csv(path, sep="\t")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as e:
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


@contextlib.contextmanager
def atomic_outputs(
    out_dir: str | os.PathLike, names: Sequence[str], *, force: bool = False
) -> Iterator[Path]:
    """Write several files into ``out_dir`` all at once or not at all.

    Yields a temporary folder; the caller writes each of ``names`` (relative
    paths, sub-folders allowed) into it. On normal exit the files are moved into
    ``out_dir``; on an exception nothing in ``out_dir`` changes.

    Parameters
    ----------
    out_dir : str or path-like
        Destination folder, created if missing.
    names : sequence of str
        Relative paths of the outputs. Existing ones are an error unless ``force``.
    force : bool
        Replace existing outputs.

    Raises
    ------
    ValueError
        If an output exists and ``force`` is False, or ``out_dir`` is a file.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ValueError(f"output folder {str(out)!r} exists and is not a folder")
    if not force:
        existing = [n for n in names if (out / n).exists()]
        if existing:
            raise ValueError(
                f"{str(out / existing[0])!r} already exists "
                f"({len(existing)} of {len(names)} outputs do); use --force to "
                "overwrite"
            )
    parent = out.parent if not out.exists() else out
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".dtitool-tmp-", dir=parent))
    try:
        yield tmp
        missing = [n for n in names if not (tmp / n).exists()]
        if missing:
            raise RuntimeError(f"internal error: outputs not written: {missing}")
        out.mkdir(parents=True, exist_ok=True)
        for n in names:
            dest = out / n
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.is_dir():
                shutil.rmtree(dest)
            os.replace(tmp / n, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
