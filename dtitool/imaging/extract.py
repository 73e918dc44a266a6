"""ROI means of parameter maps (MD, FA, ...) and a label atlas (FSL, DIPY, dtitool).

Real scans enter dtitool here: maps in NIfTI (FSL dtifit ``*_MD.nii.gz``,
DIPY ``md.nii.gz``, dtitool's ``*_model-DTI_param-MD_dwimap.nii.gz``, or FA and
any other voxel-wise measure) on the same grid as a label atlas (e.g. after
registration to MNI space) are reduced to one mean per ROI, in the
``roi_<measure>.tsv`` format (``roi_md.tsv`` for MD) with voxel counts. The
ROI names are the atlas's lookup table's, the sessions the maps' own.

Each map is reduced in one vectorised pass: the voxels inside any ROI are
gathered once (their flat indices precomputed from the atlas) and summed per
label with :func:`numpy.bincount`, so the cost is reading the file (with zlib-ng
installed, decompressed in one call: :mod:`dtitool._gzip`). Maps are
independent tasks:
local worker processes or a Dask cluster reduce them in batches.
"""

from __future__ import annotations

import functools
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from dtitool import _progress
from dtitool._constants import MD_UNIT
from dtitool._executor import Shared, Task, open_executor
from dtitool._io import read_tsv
from dtitool.imaging.nifti import check_header, has_scaling, load_nifti, read_data

__all__ = [
    "LUT_FORMAT",
    "check_measure",
    "extract_roi_md",
    "extract_roi_means",
    "ids_from_path",
    "read_lut",
    "sidecar_lut",
]

LUT_FORMAT = ("a TSV with columns index and name, one row per label (BIDS "
              "_dseg.tsv layout), e.g. the lines 'index<TAB>name', "
              "'1<TAB>thalamus', '2<TAB>putamen'")
"""The lookup-table format, as error messages state it."""

_MEASURE_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*")
# Columns of the output table that a measure may not be named as.
_RESERVED = ("participant_id", "session", "roi", "n_voxels", "n_excluded")

_SUB_RE = re.compile(r"(?:^|[_/\\])sub-([A-Za-z0-9]+)")
_SES_RE = re.compile(r"(?:^|[_/\\])ses-([A-Za-z0-9]+)")
_NIFTI_TYPES = (nib.Nifti1Image, nib.Nifti2Image)
# Plausible MD range in mm^2/s: 1e-4 (dense WM, restricted) to 4e-3 (free water
# at body temperature is 3.0e-3; allow for noise).
_MD_PLAUSIBLE = (5e-5, 5e-3)
_MAX_LABEL = 2**53  # labels are exact integers up to here, even in a float image


def ids_from_path(path: str | os.PathLike) -> tuple[str, str]:
    """Participant and session from BIDS-like ``sub-<label>`` / ``ses-<label>``.

    The entities may be in the file name or in parent folders; the last one
    found wins (the file name over its folders).

    Returns
    -------
    (participant_id, session) : tuple of str
        e.g. ``("sub-001", "baseline")``.

    Raises
    ------
    ValueError
        If either entity is absent.

    Examples
    --------
    >>> ids_from_path("derivs/sub-07/ses-24h/dwi/sub-07_ses-24h_MD.nii.gz")
    ('sub-07', '24h')
    """
    text = str(Path(path).as_posix())
    subs = _SUB_RE.findall(text)
    sess = _SES_RE.findall(text)
    if not subs or not sess:
        what = "sub-<label>" if not subs else "ses-<label>"
        raise ValueError(
            f"cannot tell participant and session of {str(path)!r}: no {what} in "
            "its path; name files like sub-001_ses-baseline_MD.nii.gz or give a "
            "mapping table (columns path, participant_id, session)"
        )
    return f"sub-{subs[-1]}", sess[-1]


def read_lut(lut: str | os.PathLike | pd.DataFrame) -> pd.DataFrame:
    """Read and check a lookup table with columns ``index`` and ``name``.

    Parameters
    ----------
    lut : path or DataFrame
        TSV (BIDS ``_dseg.tsv`` layout) or a DataFrame.

    Returns
    -------
    DataFrame
        Columns ``index`` (int, > 0) and ``name`` (str), sorted by index.

    Raises
    ------
    ValueError
        If columns are missing, indices are not positive integers or repeat,
        or names are empty, repeat, or hold tabs or line breaks. Any other
        name is an ROI name (the atlas's own, e.g. ``thalamus`` or
        ``Left-Putamen``).

    Examples
    --------
    >>> read_lut(pd.DataFrame({"index": [2, 1], "name": ["putamen", "thalamus"]}))
       index      name
    0      1  thalamus
    1      2   putamen
    """
    what = "lookup table"
    if isinstance(lut, pd.DataFrame):
        df = lut.copy()
    else:
        what = f"lookup table {str(lut)!r}"
        df = read_tsv(lut, what="lookup table")
    missing = [c for c in ("index", "name") if c not in df]
    if missing:
        raise ValueError(
            f"{what} lacks column(s) {missing}; expected columns index, name "
            f"(got {list(df.columns)})"
        )
    idx = pd.to_numeric(df["index"], errors="coerce")
    if idx.isna().any() or (idx % 1 != 0).any() or (idx <= 0).any():
        raise ValueError(f"{what}: index must be positive integers, got {idx.tolist()}")
    df = pd.DataFrame({"index": idx.astype(int), "name": df["name"].astype(str)})
    for col in ("index", "name"):
        dup = df[col][df[col].duplicated()]
        if len(dup):
            # .item(): the number as a user wrote it, not np.int64(1)
            first = dup.iloc[0]
            first = first.item() if hasattr(first, "item") else first
            raise ValueError(f"{what} repeats {col} {first!r}")
    bad = [n for n in df["name"] if not n.strip() or n != n.strip()
           or any(c in n for c in "\t\r\n") or n.lower() == "nan"]
    if bad:
        raise ValueError(
            f"{what} has ROI name(s) {bad[:5]} that are empty or hold spaces "
            "at either end, tabs or line breaks; give every label a name")
    return df.sort_values("index", ignore_index=True)


def sidecar_lut(atlas: str | os.PathLike) -> Path:
    """Return the lookup table naming an atlas's labels: ``<stem>.tsv`` beside it.

    BIDS keeps a ``_dseg.nii.gz``'s label names in the ``_dseg.tsv`` of the
    same stem; dtitool writes its atlases so (``atlas-dtitool_dseg.tsv``). The
    path is returned whether or not the file exists.

    Examples
    --------
    >>> sidecar_lut("derivs/atlas-dtitool_dseg.nii.gz").as_posix()
    'derivs/atlas-dtitool_dseg.tsv'
    """
    return Path(re.sub(r"\.nii(\.gz)?$", "", str(atlas)) + ".tsv")


def check_measure(measure) -> str:
    """Return ``measure`` if it can name a measure (and its table's column).

    A letter, then letters, digits and underscores (``md``, ``fa``,
    ``volume``, ``naa_cr``); not a name the table uses for another column.
    """
    if not isinstance(measure, str):
        raise TypeError(f"measure must be a str, got {type(measure).__name__}")
    if not _MEASURE_RE.fullmatch(measure) or not measure.isascii():
        raise ValueError(
            f"measure must be a name of letters, digits and underscores starting "
            f"with a letter (e.g. md, fa, volume); got {measure!r}")
    if measure in _RESERVED:
        raise ValueError(
            f"measure may not be {measure!r}: the table has a column of that "
            f"name already ({', '.join(_RESERVED)})")
    return measure


def _map_kind(measure: str) -> str:
    """How messages call a map of ``measure`` ("MD map", "FA map", "volume map")."""
    return f"{measure.upper() if measure in ('md', 'fa') else measure} map"


def _load_nifti(path, what: str):
    if isinstance(path, _NIFTI_TYPES):
        check_header(path, "<in-memory image>", what)
        return path, "<in-memory image>"
    return load_nifti(path, what), str(path)


def _as_3d_shape(img, name: str, what: str) -> tuple[int, ...]:
    shape = tuple(img.shape)
    if len(shape) == 4 and shape[3] == 1:
        return shape[:3]
    if len(shape) != 3:
        raise ValueError(
            f"{what} {name!r} has shape {shape}; expected a 3D image (one value "
            "per voxel). Is it a 4D DWI series? Fit the tensor first "
            "(dtitool fit-tensor)"
        )
    return shape


def _resolve_ids(maps, ids) -> list[tuple[str, str]]:
    """(participant_id, session) per map, from names or from ``ids``."""
    if ids is None:
        out = []
        for m in maps:
            if isinstance(m, _NIFTI_TYPES):
                raise ValueError(
                    "in-memory images have no file name to take participant and "
                    "session from; pass ids"
                )
            out.append(ids_from_path(m))
        return out
    if isinstance(ids, pd.DataFrame):
        missing = [c for c in ("path", "participant_id", "session") if c not in ids]
        if missing:
            raise ValueError(
                f"mapping table lacks column(s) {missing}; expected path, "
                "participant_id, session"
            )
        base = Path(ids.attrs.get("base_dir", "."))
        lookup: dict[str, tuple[str, str]] = {}
        for p, pid, ses in ids[["path", "participant_id", "session"]].itertuples(
            index=False
        ):
            pair = (str(pid), str(ses))
            for cand in {Path(str(p)), base / str(p)}:
                lookup[str(cand.resolve())] = pair
        out = []
        for m in maps:
            key = str(Path(m).resolve()) if not isinstance(m, _NIFTI_TYPES) else None
            if key not in lookup:
                raise ValueError(
                    f"map {str(m)!r} is not listed in the mapping table (column "
                    "path); list every map"
                )
            out.append(lookup[key])
        return out
    if isinstance(ids, Mapping):
        ids = [ids[m] for m in maps]
    ids = [tuple(map(str, t)) for t in ids]
    if len(ids) != len(maps) or any(len(t) != 2 for t in ids):
        raise ValueError(
            f"ids must give one (participant_id, session) pair per map: "
            f"{len(maps)} maps, {len(ids)} ids"
        )
    return ids


_MAPS_PER_TASK = 8
"""Maps reduced per task: enough to amortise a task's overhead on a cluster."""


@dataclass(frozen=True, slots=True)
class _Geometry:
    """The atlas as every map's reduction needs it (shared with the workers)."""

    shape: tuple
    affine: np.ndarray
    name: str
    roi_f: np.ndarray  # flat Fortran-order index of each ROI voxel (C order)
    roi_code: np.ndarray  # its ROI (0 .. n_roi - 1)
    n_roi: int
    names: tuple
    kind: str = "MD map"  # how messages call a map


def _reduce_maps(geo: _Geometry, maps) -> list[tuple]:
    """Per map: ROI sums, voxel counts, exclusions (3), per-ROI exclusions, median."""
    return [_reduce_map(geo, m) for m in maps]


def _reduce_map(geo: _Geometry, m) -> tuple:
    img, name = _load_nifti(m, geo.kind)
    shape = _as_3d_shape(img, name, geo.kind)
    if shape != geo.shape:
        raise ValueError(
            f"{geo.kind} {name!r} has grid shape {shape} but atlas {geo.name!r} "
            f"has {geo.shape}; resample the map (or atlas) onto the other's "
            "grid"
        )
    if not np.allclose(img.affine, geo.affine, rtol=0, atol=1e-3):
        raise ValueError(
            f"{geo.kind} {name!r} has affine {np.round(img.affine, 4).tolist()} but "
            f"atlas {geo.name!r} has {np.round(geo.affine, 4).tolist()}; "
            "they are not on the same grid"
        )
    # Stored values as they are (float32 maps: exact in float64 below); scaled
    # ones in float64, as nibabel scales them.
    arr = read_data(img, name, geo.kind,
                    dtype=np.float64 if has_scaling(img) else None)
    vals = arr.reshape(-1, order="F")[geo.roi_f].astype(np.float64)
    n_roi, code = geo.n_roi, geo.roi_code
    excl_roi = np.zeros(n_roi, dtype=np.int64)
    with np.errstate(invalid="ignore"):
        good = np.isfinite(vals) & (vals > 0)
    if good.all():
        sums = np.bincount(code, vals, n_roi)
        counts = np.bincount(code, minlength=n_roi)
        excl = np.zeros(3, dtype=np.int64)
    else:
        sums = np.bincount(code[good], vals[good], n_roi)
        counts = np.bincount(code[good], minlength=n_roi)
        bad = vals[~good]
        nonfinite = ~np.isfinite(bad)
        excl = np.array([nonfinite.sum(), (bad == 0).sum(),
                         (np.isfinite(bad) & (bad < 0)).sum()], dtype=np.int64)
        excl_roi = np.bincount(code[~good], minlength=n_roi)
    if np.any(counts == 0):
        empty = np.asarray(geo.names)[counts == 0].tolist()
        raise ValueError(
            f"{geo.kind} {name!r} has no usable (finite, > 0) voxels in ROI(s) {empty}"
        )
    return sums, counts, excl, excl_roi, float(np.median(sums / counts))


def extract_roi_md(maps: Sequence, labels, **kwargs) -> pd.DataFrame:
    """Mean MD per ROI of each map: :func:`extract_roi_means` of ``md``.

    Parameters
    ----------
    maps, labels, **kwargs
        As :func:`extract_roi_means` (``measure`` is ``"md"``).

    Returns
    -------
    DataFrame
        The ``roi_md.tsv`` table: ``participant_id``, ``session``, ``roi``,
        ``md`` (mm^2/s), ``n_voxels``, ``n_excluded``.

    Examples
    --------
    >>> import numpy as np, nibabel as nib
    >>> lab = np.zeros((4, 4, 4), np.int16); lab[:2] = 1; lab[2:] = 7
    >>> md = np.where(lab == 1, 0.8e-3, 0.9e-3).astype(np.float32)
    >>> atlas, img = nib.Nifti1Image(lab, np.eye(4)), nib.Nifti1Image(md, np.eye(4))
    >>> lut = {"index": [1, 7], "name": ["L_BA10", "vACC"]}
    >>> df = extract_roi_md([img], atlas, lut=pd.DataFrame(lut),
    ...                     ids=[("sub-01", "baseline")])
    >>> df[["roi", "n_voxels"]].values.tolist()
    [['L_BA10', 32], ['vACC', 32]]
    """
    if "measure" in kwargs:
        raise TypeError("extract_roi_md() measures md; use extract_roi_means "
                        "for another measure")
    return extract_roi_means(maps, labels, measure="md", **kwargs)


def extract_roi_means(
    maps: Sequence,
    labels,
    *,
    measure: str = "md",
    lut: str | os.PathLike | pd.DataFrame | None = None,
    ids=None,
    sessions: Sequence[str] | None = None,
    n_jobs: int = 1,
    dask=None,
    progress=None,
) -> pd.DataFrame:
    """Mean of a measure per ROI of each map, in the ``roi_<measure>.tsv`` format.

    Parameters
    ----------
    maps : sequence of path or nibabel image
        3D maps of the measure (MD in mm^2/s), on the atlas grid.
    labels : path or nibabel image
        Integer label atlas (0 = no ROI).
    measure : str
        What the maps hold, and the name of the table's value column: ``md``
        (mean diffusivity in mm^2/s: ROI means in another unit are an error),
        ``fa`` (ROI means above 1 are an error) or any other name of letters,
        digits and underscores (no unit check).
    lut : path, DataFrame or None
        Lookup table (``index``, ``name``; :data:`LUT_FORMAT`) that names the
        atlas's labels: any names. ``None``: the ``.tsv`` beside the atlas with
        the same stem (BIDS ``_dseg.tsv``; dtitool writes one beside each atlas
        it makes, :func:`sidecar_lut`); without one, an error.
    ids : DataFrame, sequence or mapping, optional
        Participant and session of each map: a mapping table (columns ``path``,
        ``participant_id``, ``session``; relative paths are tried against the
        working folder and ``ids.attrs["base_dir"]``), a sequence of
        ``(participant_id, session)`` pairs in map order, or a dict from map to
        pair. ``None``: BIDS entities ``sub-`` and ``ses-`` in the file paths.
        Sessions are the study's visit names, whatever they are.
    sessions : sequence of str, optional
        The visits in schedule order (a design's ``visit_names``, the ``visit``
        column of ``visits.tsv``): the rows follow it, and a map of another
        session is an error. ``None``: sessions in the order the maps first
        show them.
    n_jobs : int
        Worker processes (-1: all CPUs) reducing map files in batches; the table
        does not depend on it (in-memory images are reduced here).
    dask : None, "local", str or distributed.Client
        Reduce the map files on Dask instead (its workers must see the files:
        a shared file system); see :func:`dtitool._executor.open_executor`.
    progress : None, bool or bar
        Progress over the maps (:mod:`dtitool._progress`).

    Returns
    -------
    DataFrame
        One row per map x ROI: ``participant_id``, ``session``, ``roi``,
        ``<measure>`` (mean over included voxels), ``n_voxels`` (included) and
        ``n_excluded`` (non-finite, i.e. NaN or infinite, zero or negative
        voxels: the background of a parameter map). Rows sorted by participant,
        session (schedule order) and LUT order.

    Raises
    ------
    ValueError
        If a map is not a 3D NIfTI, its grid shape or affine differ from the
        atlas, an ROI has no usable voxels, the atlas's labels have no names
        (no ``lut`` and no sidecar table), the LUT and atlas disagree, names
        carry no ids, a (participant, session) pair repeats, a session is not
        in ``sessions``, or the ROI means look like another unit (MD: um^2/s,
        1e-3 mm^2/s, m^2/s; FA: percent or x1000).

    Warns
    -----
    UserWarning
        When non-finite, zero or negative voxels inside ROIs were excluded (with
        counts).

    Examples
    --------
    >>> import numpy as np, nibabel as nib
    >>> lab = np.zeros((4, 4, 4), np.int16); lab[:2] = 1; lab[2:] = 2
    >>> fa = np.where(lab == 1, 0.3, 0.2).astype(np.float32)
    >>> atlas, img = nib.Nifti1Image(lab, np.eye(4)), nib.Nifti1Image(fa, np.eye(4))
    >>> lut = pd.DataFrame({"index": [1, 2], "name": ["thalamus", "putamen"]})
    >>> df = extract_roi_means([img], atlas, measure="fa", lut=lut,
    ...                        ids=[("sub-01", "pre")])
    >>> df[["session", "roi", "fa"]].round(3).values.tolist()
    [['pre', 'thalamus', 0.3], ['pre', 'putamen', 0.2]]
    """
    measure = check_measure(measure)
    kind = _map_kind(measure)
    if isinstance(maps, (str, os.PathLike)) or isinstance(maps, _NIFTI_TYPES):
        maps = [maps]
    maps = list(maps)
    if not maps:
        raise ValueError(f"no {kind}s given")
    for m in maps:
        if not isinstance(m, _NIFTI_TYPES) and not Path(m).is_file():
            raise ValueError(f"{kind} {str(m)!r} does not exist or is not a file")
    atlas_img, atlas_name = _load_nifti(labels, "atlas")
    atlas_shape = _as_3d_shape(atlas_img, atlas_name, "atlas")
    lab = read_data(atlas_img, atlas_name, "atlas").reshape(atlas_shape)
    if not np.issubdtype(lab.dtype, np.integer):
        if not np.all(np.isfinite(lab)) or np.any(lab % 1 != 0):
            raise ValueError(
                f"atlas {atlas_name!r} holds non-integer values; expected integer "
                "labels (0 = no ROI)"
            )
    if lab.min() < 0:
        raise ValueError(f"atlas {atlas_name!r} holds negative labels")
    if lab.max() > _MAX_LABEL:
        raise ValueError(
            f"atlas {atlas_name!r} holds label {lab.max():.15g}, beyond the "
            f"integers a label image can hold exactly (2**53); is it a label image?"
        )
    lab = lab.astype(np.int64, copy=False)
    present = np.unique(lab[lab > 0])
    if lut is None:
        side = None if atlas_name == "<in-memory image>" else sidecar_lut(atlas_name)
        if side is None or not side.is_file():
            where = ("" if side is None
                     else f" (no lookup table {side.name!r} beside it)")
            raise ValueError(
                f"atlas {atlas_name!r} has labels {present[:10].tolist()} but "
                f"nothing names them{where}; give the lookup table (--lut, "
                f"lut=): {LUT_FORMAT}")
        lut_df = read_lut(side)
    else:
        lut_df = read_lut(lut)
    not_in_lut = sorted(set(present.tolist()) - set(lut_df["index"].tolist()))
    if not_in_lut:
        raise ValueError(
            f"atlas {atlas_name!r} has label(s) {not_in_lut[:10]} that the lookup "
            f"table does not name (it lists {lut_df['index'].tolist()}); add them "
            "to the table or set them to 0 in the atlas"
        )
    not_in_atlas = lut_df[~lut_df["index"].isin(present)]
    if len(not_in_atlas):
        raise ValueError(
            f"ROI(s) {not_in_atlas['name'].tolist()} (label(s) "
            f"{not_in_atlas['index'].tolist()}) have no voxels in atlas "
            f"{atlas_name!r}"
        )
    pairs = _resolve_ids(maps, ids)
    if sessions is None:
        schedule = list(dict.fromkeys(s for _, s in pairs))
    else:
        if isinstance(sessions, str) or not hasattr(sessions, "__iter__"):
            raise TypeError(
                f"sessions must be a sequence of visit names, got {sessions!r}")
        schedule = [str(v) for v in sessions]
    seen: dict[tuple[str, str], object] = {}
    for m, pair in zip(maps, pairs, strict=True):
        if pair in seen:
            raise ValueError(
                f"maps {str(seen[pair])!r} and {str(m)!r} are both {pair[0]} "
                f"session {pair[1]}"
            )
        seen[pair] = m
        if pair[1] not in schedule:
            raise ValueError(
                f"map {str(m)!r} has session {pair[1]!r}; the visits are "
                f"{schedule} (rename, or give a mapping table)"
            )

    # Precompute, once, the flat indices of ROI voxels and their compact codes
    # (by sorted search: a label of 2**31 costs nothing, unlike a lookup array).
    # The voxels are taken in C order (the order their sums have always been
    # formed in) from the maps' flat Fortran-order arrays (NIfTI's own order:
    # no copy of a map to reorder it).
    flat_lab = lab.reshape(-1)
    roi_idx = np.flatnonzero(flat_lab)
    roi_code = np.searchsorted(lut_df["index"].to_numpy(), flat_lab[roi_idx])
    roi_f = np.ravel_multi_index(np.unravel_index(roi_idx, atlas_shape),
                                 atlas_shape, order="F")
    n_roi = len(lut_df)
    geometry = _Geometry(atlas_shape, np.asarray(atlas_img.affine), atlas_name,
                         roi_f, roi_code, n_roi, tuple(lut_df["name"]), kind)

    sums = np.empty((len(maps), n_roi))
    counts = np.empty((len(maps), n_roi), dtype=np.int64)
    excl = np.empty((len(maps), 3), dtype=np.int64)  # non-finite, zero, negative
    excl_roi = np.zeros((len(maps), n_roi), dtype=np.int64)
    medians = np.empty(len(maps))

    def keep(first, results):
        for n, (s_, c_, e_, er_, med) in enumerate(results, start=first):
            sums[n], counts[n], excl[n], excl_roi[n], medians[n] = s_, c_, e_, er_, med

    in_memory = any(isinstance(m, _NIFTI_TYPES) for m in maps)
    batch = 1 if in_memory else _MAPS_PER_TASK
    # In-memory images stay in this process; files go to the workers.
    with (open_executor(1 if in_memory else n_jobs, None if in_memory else dask)
          as ex,
          _progress.bar(progress, len(maps), "extracting", unit="map") as bar):
        # A Dask worker has a working folder of its own: it gets full paths.
        paths = [os.path.abspath(m) for m in maps] if ex.kind == "dask" else maps
        tasks = [Task(_reduce_maps, (Shared("geometry"), paths[a:a + batch]),
                      functools.partial(keep, a), len(paths[a:a + batch]))
                 for a in range(0, len(maps), batch)]
        ex.run(tasks, shared={"geometry": geometry}, progress=bar)

    if excl.sum():
        worst = int(np.argmax(excl.sum(axis=1)))
        warnings.warn(
            f"excluded {excl[:, 0].sum()} non-finite (NaN or infinite), "
            f"{excl[:, 1].sum()} zero and {excl[:, 2].sum()} negative voxel(s) "
            "inside ROIs (column n_excluded), in "
            f"{int((excl.sum(axis=1) > 0).sum())} of {len(maps)} map(s) (most in "
            f"{str(maps[worst])!r}: {int(excl[worst].sum())})",
            stacklevel=2,
        )
    _check_unit(measure, medians, maps)

    n_maps = len(maps)
    df = pd.DataFrame(
        {
            "participant_id": np.repeat([p for p, _ in pairs], n_roi),
            "session": np.repeat([s for _, s in pairs], n_roi),
            "roi": np.tile(lut_df["name"].to_numpy(), n_maps),
            measure: (sums / counts).reshape(-1),
            "n_voxels": counts.reshape(-1),
            "n_excluded": excl_roi.reshape(-1),
        }
    )
    order = np.lexsort(
        (
            np.tile(np.arange(n_roi), n_maps),
            df["session"].map({s: i for i, s in enumerate(schedule)}).to_numpy(),
            df["participant_id"].to_numpy(),
        )
    )
    return df.iloc[order].reset_index(drop=True)


def _check_unit(measure: str, medians: np.ndarray, maps) -> None:
    """Refuse ROI means that look like another unit (MD) or scale (FA)."""
    if measure == "fa":
        odd = medians > 1.0
        if odd.any():
            first = str(maps[int(np.flatnonzero(odd)[0])])
            raise ValueError(
                f"{int(odd.sum())} of {len(maps)} FA map(s) (the first {first!r}) "
                f"have ROI means around {float(np.median(medians[odd])):.3g}; FA "
                "lies in [0, 1], so these look like percent or x1000; rescale "
                "the maps (e.g. fslmaths FA -div 1000)")
        return
    if measure != "md":
        return
    lo, hi = _MD_PLAUSIBLE
    odd = (medians < lo) | (medians > hi)
    if odd.any():
        # An error, not a warning: ROI means in another unit would enter the
        # models 1e3 or 1e6 times too large or too small.
        med = float(np.median(medians[odd]))
        hint = (
            "um^2/s or 1e-3 mm^2/s (e.g. 800 or 0.8)"
            if med > hi
            else "m^2/s (e.g. 8e-10)"
        )
        first = str(maps[int(np.flatnonzero(odd)[0])])
        raise ValueError(
            f"{int(odd.sum())} of {len(maps)} map(s) (the first {first!r}) have "
            f"ROI mean MD around {med:.3g}, outside the plausible {lo:g}-{hi:g}; "
            f"dtitool assumes {MD_UNIT}, and these look like {hint}; rescale the "
            "maps to mm^2/s (e.g. fslmaths MD -div 1e6)"
        )
