"""From the readers' tidy frames to one long table per metabolite.

:func:`mrs_tables` gives each dataset its participant, session and voxel (the
``roi``), picks one quantification scale per value and checks that no
participant, session and voxel has a metabolite twice. :func:`write_mrs_tables`
writes the tables (``roi_<measure>.tsv`` with JSON sidecars) into a folder.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from dtitool.mrs.names import EDITED, MEASURES, QUALITY, SCALES, bids_entity

__all__ = ["AUTO_SCALES", "MRSTables", "mrs_tables", "read_mapping",
           "write_mrs_tables"]

AUTO_SCALES = ("water", "tcr", "ratio", "raw")
"""The scale ``unit="auto"`` takes for a value, the first one its file has:
water-scaled (no tissue correction) if present, else the ratio to tCr."""

_MAPPING_FORMAT = ("a TSV with columns file, participant_id, session and, "
                   "optional, roi")


@dataclass(frozen=True, slots=True)
class MRSTables:
    """The long tables of one import, and what was chosen on the way.

    Parameters
    ----------
    tables : dict of str to DataFrame
        Measure -> its table: ``participant_id``, ``session``, ``roi``, the
        value column (named after the measure), ``unit`` and the quality
        column(s) (``crlb`` or ``fit_error``, in %).
    notes : tuple of str
        One sentence per choice made: the scale taken where a file has several,
        the sub-spectrum taken where an Osprey run has several.
    """

    tables: dict[str, pd.DataFrame]
    notes: tuple[str, ...] = field(default=())


def read_mapping(path: str | os.PathLike) -> pd.DataFrame:
    """Read a mapping table: ``file, participant_id, session[, roi]``.

    ``file`` names a dataset as the results name it: an LCModel ``.table``
    file (its path, or its name alone), the raw file in a Gannet table's
    ``filename`` column, an Osprey dataset's ``subject``.

    Raises
    ------
    ValueError
        If a column is missing, a cell is empty, or a file is listed twice.
    """
    from dtitool._tsv import read_tsv

    cols = ("file", "participant_id", "session", "roi")
    df = read_tsv(path, what="mapping table", dtype=dict.fromkeys(cols, str),
                  text=cols)
    missing = [c for c in cols[:3] if c not in df]
    if missing:
        raise ValueError(f"mapping table {str(path)!r} lacks column(s) "
                         f"{', '.join(missing)} (got {', '.join(map(str, df))}); "
                         f"expected {_MAPPING_FORMAT}")
    for col in [c for c in cols if c in df]:
        empty = df.index[df[col].isna() | (df[col].astype(str).str.strip() == "")]
        if len(empty) and col != "roi":
            raise ValueError(f"mapping table {str(path)!r}, line {empty[0] + 2}, "
                             f"column {col}: empty; every row needs a {col}")
    dup = df["file"][df["file"].duplicated()]
    if len(dup):
        raise ValueError(f"mapping table {str(path)!r} lists file {dup.iloc[0]!r} "
                         "twice")
    df.attrs["base_dir"] = str(Path(path).parent)
    return df


class _Ids:
    """Participant, session and voxel of each dataset."""

    def __init__(self, mapping: pd.DataFrame | None, voxel: str | None):
        self.voxel = voxel
        self.used: set[str] = set()
        self.voxel_ignored: list[str] = []
        self.lookup: dict[str, tuple] = {}
        if mapping is None:
            return
        base = Path(mapping.attrs.get("base_dir", "."))
        names: dict[str, list] = {}
        has_roi = "roi" in mapping
        for row in mapping.itertuples(index=False):
            roi = getattr(row, "roi", None) if has_roi else None
            roi = None if roi is None or pd.isna(roi) or not str(roi).strip() \
                else str(roi).strip()
            entry = (str(row.participant_id).strip(), str(row.session).strip(),
                     roi, row.file)
            self.lookup[row.file] = entry
            for cand in {Path(row.file), base / row.file}:
                self.lookup.setdefault(str(cand.resolve()), entry)
            names.setdefault(Path(row.file.replace("\\", "/")).name, []).append(
                entry)
        for name, entries in names.items():
            self.lookup.setdefault(f"name:{name}",
                                   entries[0] if len(entries) == 1 else None)

    def _mapped(self, key: str):
        if key in self.lookup:
            return self.lookup[key]
        try:
            resolved = str(Path(key).resolve())
        except (OSError, ValueError):
            resolved = None
        if resolved in self.lookup:
            return self.lookup[resolved]
        name = f"name:{Path(key.replace(chr(92), '/')).name}"
        if name in self.lookup:
            if self.lookup[name] is None:
                raise ValueError(f"dataset {key!r} matches several rows of the "
                                 "mapping table by its file name; give the "
                                 "mapping's file as the full path")
            return self.lookup[name]
        return None

    def of(self, key: str, source: str, line: int) -> tuple[str, str, str]:
        where = (f"{key!r}" if key == source
                 else f"{key!r} ({source!r}, line {line})")
        mapped = self._mapped(key)
        if mapped is not None:
            self.used.add(mapped[3])
            pid, ses, roi, _ = mapped
        else:
            sub, ses = bids_entity(key, "sub"), bids_entity(key, "ses")
            if sub is None or ses is None:
                missing = "sub-<label>" if sub is None else "ses-<label>"
                raise ValueError(
                    f"cannot tell participant and session of dataset {where}: no "
                    f"{missing} in its name and no row in a mapping table; name "
                    "files like sub-01_ses-baseline_svs.dat, or give --mapping "
                    f"({_MAPPING_FORMAT})")
            pid, roi = f"sub-{sub}", None
        if roi is None:
            named = bids_entity(key, "voxel") or bids_entity(key, "acq") or (
                bids_entity(source, "voxel") or bids_entity(source, "acq"))
            if named and self.voxel and named != self.voxel:
                self.voxel_ignored.append(key)
            roi = named or self.voxel
        if roi is None:
            raise ValueError(
                f"cannot tell the voxel of dataset {where}: no voxel-<label> or "
                "acq-<label> in its name, no roi in a mapping table and no "
                "--voxel")
        return pid, ses, roi


def _pick_spectra(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """Keep one Osprey sub-spectrum per dataset and measure (:data:`EDITED`)."""
    if not df["spectrum"].astype(bool).any():
        return df, []
    n_spec = df.groupby(["file", "measure"])["spectrum"].transform("nunique")
    edited_for = pd.Series([m in EDITED.get(s, ()) for m, s in
                            zip(df["measure"], df["spectrum"], strict=True)],
                           index=df.index)
    has_edited = edited_for.groupby([df["file"], df["measure"]]).transform("any")
    diff = df["spectrum"].str.startswith("diff")
    keep = (n_spec == 1) | (has_edited & edited_for) | (~has_edited & ~diff)
    notes = []
    chosen = df[keep & (n_spec > 1)]
    for spectrum, part in chosen.groupby("spectrum"):
        dropped = sorted(set(df.loc[~keep & df["measure"].isin(part["measure"]),
                                    "spectrum"]))
        kind = ("the difference spectrum edited for them" if spectrum in EDITED
                else "the unedited spectrum")
        notes.append(f"from spectrum {spectrum} ({kind}), not "
                     f"{', '.join(dropped)}: "
                     f"{', '.join(sorted(set(part['measure'])))}")
    return df[keep], notes


def _pick_scale(df: pd.DataFrame, unit: str) -> tuple[pd.DataFrame, list[str]]:
    notes = []
    if unit == "auto":
        rank = {s: i for i, s in enumerate(AUTO_SCALES)}
        ranked = df.assign(_rank=df["scale"].map(rank)).dropna(subset=["_rank"])
        best = ranked.groupby(["file", "measure"])["_rank"].transform("min")
        chosen = ranked[ranked["_rank"] == best].drop(columns="_rank")
    else:
        chosen = df[df["scale"] == unit]
        lacking = sorted(set(df["measure"]) - set(chosen["measure"]))
        if lacking:
            warnings.warn(f"--unit {unit}: no {SCALES[unit]} value for "
                          f"{', '.join(lacking)} in the files; no table for "
                          "them", stacklevel=3)
    summary: dict[str, list[str]] = {}
    for measure, part in chosen.groupby("measure", sort=True):
        taken = sorted(set(part["unit"]))
        other = sorted(set(df.loc[df["measure"] == measure, "scale"])
                       - set(part["scale"]))
        text = " and ".join(taken)
        if other:
            text += f" (also in the files: {', '.join(other)})"
        summary.setdefault(text, []).append(measure)
        if len(taken) > 1:
            warnings.warn(f"the {measure} table mixes units ({', '.join(taken)}): "
                          "the files quantify it differently; choose one with "
                          "--unit", stacklevel=3)
    notes += [f"{text}: {', '.join(ms)}" for text, ms in summary.items()]
    return chosen, notes


def mrs_tables(frames: pd.DataFrame | Iterable[pd.DataFrame], *,
               mapping: pd.DataFrame | str | os.PathLike | None = None,
               voxel: str | None = None, unit: str = "auto",
               measures: Iterable[str] | None = None) -> MRSTables:
    """Assemble the readers' tidy frames into one long table per metabolite.

    Parameters
    ----------
    frames : DataFrame or iterable of DataFrame
        Frames of :func:`dtitool.mrs.read_gannet`, :func:`~dtitool.mrs.
        read_osprey`, :func:`~dtitool.mrs.read_lcmodel`.
    mapping : DataFrame or path, optional
        Participant, session (and voxel) of datasets whose names do not say
        them (:func:`read_mapping`). A dataset it lists takes its ids from it;
        the others from BIDS entities in their names (``sub-``, ``ses-``,
        ``voxel-`` or ``acq-``).
    voxel : str, optional
        The voxel (``roi``) of the datasets whose names and mapping row name
        none.
    unit : str
        The scale to write (:data:`dtitool.mrs.names.SCALES`: ``water``,
        ``water-tissue``, ``tcr``, ...); ``"auto"`` (default): per value, the
        first of :data:`AUTO_SCALES` its file has.
    measures : iterable of str, optional
        The measures to keep (``gaba``, ``glx``, ...); default all.

    Returns
    -------
    MRSTables
        Per measure, rows sorted by participant, session (in order of
        appearance) and voxel; ``notes`` say which scale and spectrum were
        taken.

    Raises
    ------
    ValueError
        If ``unit`` is unknown, a measure asked for is in no file, a
        dataset's participant, session or voxel cannot be told (the dataset
        and its file named), or a participant,
        session and voxel has a metabolite twice (both places named).

    Warns
    -----
    UserWarning
        When a table mixes units, ``unit`` leaves a metabolite without any
        value, ``voxel`` is overridden by the voxel a file name gives, or the
        mapping lists files no results name.
    """
    if unit != "auto" and unit not in SCALES:
        raise ValueError(f"unit must be 'auto' or one of {', '.join(SCALES)}; got "
                         f"{unit!r}")
    if isinstance(frames, pd.DataFrame):
        frames = [frames]
    frames = [f for f in frames if len(f)]
    if not frames:
        raise ValueError("no values to assemble: the frames are empty")
    df = pd.concat(frames, ignore_index=True)
    if measures is not None:
        measures = list(measures)
        unknown = sorted(set(measures) - set(df["measure"]))
        if unknown:
            raise ValueError(f"no {', '.join(unknown)} in the files; they have "
                             f"{', '.join(sorted(set(df['measure'])))}")
        df = df[df["measure"].isin(measures)]
    if isinstance(mapping, (str, os.PathLike)):
        mapping = read_mapping(mapping)
    ids = _Ids(mapping, voxel)
    keys = df[["file", "source", "line"]].drop_duplicates("file")
    where = {k: ids.of(k, s, int(ln)) for k, s, ln in keys.itertuples(index=False)}
    if ids.voxel_ignored:
        warnings.warn(f"--voxel {voxel} left aside for {len(ids.voxel_ignored)} "
                      f"dataset(s) whose names give their voxel (the first "
                      f"{ids.voxel_ignored[0]!r})", stacklevel=2)
    if mapping is not None:
        unused = sorted(set(mapping["file"]) - ids.used)
        if unused:
            warnings.warn(f"the mapping table lists {len(unused)} file(s) that no "
                          f"results file names (the first {unused[0]!r})",
                          stacklevel=2)
    df, spectrum_notes = _pick_spectra(df)
    df, scale_notes = _pick_scale(df, unit)
    ident = pd.DataFrame([where[k] for k in df["file"]], index=df.index,
                         columns=["participant_id", "session", "roi"])
    df = pd.concat([ident, df], axis=1)
    _check_duplicates(df)
    order = {s: i for i, s in enumerate(dict.fromkeys(ident["session"]))}
    tables = {}
    for measure, part in df.groupby("measure", sort=True):
        part = part.assign(_s=part["session"].map(order)).sort_values(
            ["participant_id", "_s", "roi"], kind="stable")
        table = part[["participant_id", "session", "roi"]].copy()
        table[measure] = part["value"].to_numpy()
        table["unit"] = part["unit"].to_numpy()
        for kind in QUALITY:
            if (part["quality_kind"] == kind).any():
                table[kind] = part["quality"].where(
                    part["quality_kind"] == kind).to_numpy()
        tables[measure] = table.reset_index(drop=True)
    return MRSTables(tables, tuple(spectrum_notes + scale_notes))


def _check_duplicates(df: pd.DataFrame) -> None:
    key = ["participant_id", "session", "roi", "measure"]
    dup = df[df.duplicated(key, keep=False)]
    if not len(dup):
        return
    a = dup.iloc[0]
    b = dup[(dup[key] == a[key]).all(axis=1)].iloc[1]
    places = [f"{r['source']!r} line {r['line']}"
              + (f" ({r['metabolite']})" if r["metabolite"] != r["measure"] else "")
              for r in (a, b)]
    raise ValueError(f"{a['participant_id']} session {a['session']} voxel "
                     f"{a['roi']} has {a['measure']} twice: {places[0]} and "
                     f"{places[1]}; each participant, session and voxel may have "
                     "one value (drop a file, or tell them apart with --mapping)")


def _value_entry(measure: str, table: pd.DataFrame) -> dict:
    desc = MEASURES.get(measure, (f"metabolite {measure} (the tool's own name, "
                                  "sanitised)",))[0]
    units = sorted(set(table["unit"]))
    entry = {"Description": f"{desc}: the value the quantification tool reports "
             "for the voxel, in the unit of column unit"}
    if len(units) == 1:
        entry["Units"] = units[0]
    return entry


def write_mrs_tables(result: MRSTables, folder: str | os.PathLike) -> list[str]:
    """Write each table as ``roi_<measure>.tsv`` with its JSON sidecar.

    Call it inside :func:`dtitool._io.atomic_outputs` (the command line does):
    it writes straight into ``folder``.

    Returns
    -------
    list of str
        The file names written, tables and sidecars.
    """
    from dtitool._tsv import write_tsv
    from dtitool.columns import sidecar

    folder = Path(folder)
    written = []
    for measure, table in result.tables.items():
        name = f"roi_{measure}.tsv"
        write_tsv(table, folder / name, sidecar=False)
        rest = sidecar(table.drop(columns=[measure]), f"roi_{measure}")
        meta = {c: (_value_entry(measure, table) if c == measure else rest[c])
                for c in table.columns}
        (folder / name).with_suffix(".json").write_text(
            json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        written += [name, name.replace(".tsv", ".json")]
    return written


def table_names(measures: Iterable[str]) -> list[str]:
    """Return the file names :func:`write_mrs_tables` writes for ``measures``."""
    return [f"roi_{m}.{ext}" for m in measures for ext in ("tsv", "json")]


def describe(result: MRSTables) -> Mapping[str, str]:
    """Return one line per table: rows, participants and unit(s)."""
    out = {}
    for measure, t in result.tables.items():
        out[measure] = (f"roi_{measure}.tsv: {len(t)} rows, "
                        f"{t['participant_id'].nunique()} participant(s), "
                        f"{', '.join(sorted(set(t['unit'])))}")
    return out
