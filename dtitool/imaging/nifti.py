"""NIfTI input and output shared by the commands and the demo.

Reading checks what a researcher's file must be before any array is touched
(exists, is NIfTI, has the expected dimensionality, lies on the expected grid);
writing keeps the reference image's affine and header, as FSL ``dtifit`` does.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel.fileholders import FileHolder

from dtitool._gzip import BoundedGzipFile, InflateLimitError

__all__ = [
    "FIT_SUFFIXES",
    "MASK_SUFFIX",
    "check_header",
    "check_volumes",
    "fit_map_bytes",
    "has_scaling",
    "image_data",
    "load_dwi",
    "load_mask",
    "load_nifti",
    "map_bytes",
    "mask_bytes",
    "read_data",
    "write_fit_maps",
    "write_mask",
]

FIT_SUFFIXES = ("_MD.nii.gz", "_FA.nii.gz")
"""Names of the fitted maps after the output prefix, as FSL ``dtifit`` writes them."""

MASK_SUFFIX = "_mask.nii.gz"
"""Name of the brain mask ``dtitool fit-tensor`` computes when none is given."""


def load_nifti(path: str | os.PathLike, what: str):
    """Load a NIfTI image lazily, turning every failure into one ValueError.

    The header is checked here (positive dimensions, a finite, invertible
    affine); the voxel data are read by :func:`read_data`, which checks the
    memory they need and turns a truncated or corrupt file into a ValueError.

    Parameters
    ----------
    path : str or path-like
    what : str
        What the image is, for the message (``"DWI"``, ``"mask"``).

    Returns
    -------
    nibabel.Nifti1Image or nibabel.Nifti2Image
    """
    path = str(path)
    if not Path(path).is_file():
        raise ValueError(f"{what} {path!r} does not exist or is not a file")
    try:
        with nibabel_messages(what, path):
            img = _load_gzip_nifti(path)
            if img is None:
                img = nib.load(path)
    except InflateLimitError as e:
        raise ValueError(_inflate_message(what, path, e.limit)) from None
    except MemoryError:
        raise
    except Exception as e:  # nibabel raises several types for unreadable files
        raise ValueError(
            f"cannot read {what} {path!r}: not a readable NIfTI image (.nii or "
            f".nii.gz) ({_first_line(e)})"
        ) from None
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise ValueError(
            f"{what} {path!r} is a {type(img).__name__}, not NIfTI; convert it to "
            ".nii.gz (e.g. mri_convert or nibabel)"
        )
    check_header(img, path, what)
    stream = _gzip_stream(img)
    if isinstance(stream, BoundedGzipFile):
        _bound_to_header(img)
        stream.close()  # reopened by read_data: no file left open meanwhile
    return img


_GZIP_MAGIC = b"\x1f\x8b"
_HEADER_PROBE = 540 + 4  # a NIfTI-2 header and its extension flag
GZIP_SLACK = 1 << 20
"""Inflated bytes allowed after the end of the data the header describes
(trailing bytes some writers leave); more is an error (a gzip bomb)."""


def _load_gzip_nifti(path: str):
    """Open a gzip-compressed NIfTI through :class:`BoundedGzipFile`, or None.

    nibabel would inflate the file with its own gzip reader, with no bound
    (an extension's size, or a header's data size, is whatever the file
    says). Here the header is read from a stream bounded first by the header's
    own ``vox_offset`` (header and extensions), then, in :func:`load_nifti`,
    by what the header implies (:func:`_bound_to_header`). Returns None for a
    file that is not gzip or holds no NIfTI header (nibabel then reads, or
    rejects, it as it would).
    """
    with open(path, "rb") as f:
        if f.read(2) != _GZIP_MAGIC:
            return None
    with BoundedGzipFile(path, _HEADER_PROBE) as probe:
        head = probe.read(_HEADER_PROBE)
    if len(head) >= 348 and head[344:347] in (b"n+1", b"ni1"):
        klass, size, fmt, at = nib.Nifti1Image, 348, "f", 108
    elif len(head) >= 540 and head[4:7] in (b"n+2", b"ni2"):
        klass, size, fmt, at = nib.Nifti2Image, 540, "q", 168
    else:
        return None
    # vox_offset, in the byte order nibabel would guess (dim[0] in 1..7)
    end = "<" if 1 <= struct.unpack_from("<h", head, 40 if size == 348 else 16)[
        0] <= 7 else ">"
    offset = float(struct.unpack_from(end + fmt, head, at)[0])
    offset = offset if np.isfinite(offset) and offset > 0 else 0.0
    header_end = max(offset, size + 4.0) + GZIP_SLACK
    from dtitool._memory import check_memory

    check_memory(header_end, f"reading the header of {path!r} (vox_offset "
                 f"{offset:.0f})", hint="check the header's vox_offset")
    stream = BoundedGzipFile(path, int(header_end))
    holder = FileHolder(filename=path, fileobj=stream)
    return klass.from_file_map({"image": holder}, mmap=False)


def _gzip_stream(img):
    """Return the :class:`BoundedGzipFile` an image reads from, or None."""
    fm = getattr(img, "file_map", None) or {}
    holder = fm.get("image")
    return getattr(holder, "fileobj", None)


def _bound_to_header(img) -> None:
    """Bound an image's gzip stream by the bytes its header implies.

    The data start at the header's data offset (after the header and any
    extensions already read) and take ``prod(shape) * itemsize`` bytes;
    :data:`GZIP_SLACK` more are tolerated.
    """
    stream = _gzip_stream(img)
    shape = tuple(int(x) for x in img.shape)
    itemsize = np.dtype(img.get_data_dtype()).itemsize
    try:
        offset = int(img.header.get_data_offset())
    except (TypeError, ValueError):
        offset = 0
    start = max(offset, stream.tell(), 0)
    stream.max_size = int(start + float(np.prod([float(x) for x in shape]))
                          * itemsize + GZIP_SLACK)


def _inflate_message(what: str, name: str, limit: int) -> str:
    from dtitool._memory import format_bytes

    return (f"{what} {name!r} inflates past {format_bytes(limit)}, more than its "
            "NIfTI header implies (header, extensions and voxel data): a "
            "damaged file or a gzip bomb; dtitool does not read it")


class _Collect(logging.Filter):
    """A logger filter that keeps every record for later and lets none through."""

    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.records.append(record)
        return False


@contextlib.contextmanager
def nibabel_messages(what: str, name: str) -> Iterator[None]:
    """Turn what nibabel prints or warns while reading ``name`` into dtitool's own.

    nibabel logs header problems (``sizeof_hdr should be 348``, ``vox offset
    too low``) to a handler of its own on the process's stderr, where they
    would stand beside dtitool's one line; its warnings carry no file name.
    Inside this block both are collected. If the block raises (nibabel gave up:
    the exception says why, and :func:`load_nifti` turns it into one line),
    they are dropped; if it succeeds, each becomes one ``UserWarning`` naming
    the file, e.g. ``MD map 'x.nii.gz': sizeof_hdr should be 348; set
    sizeof_hdr to 348 (nibabel, reading it; the file is unchanged)``.

    Parameters
    ----------
    what : str
        What the image is (``"DWI"``).
    name : str
        The file, for the messages.
    """
    logger = logging.getLogger("nibabel.global")
    collect = _Collect()
    logger.addFilter(collect)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        logger.removeFilter(collect)
    texts = [r.getMessage() for r in collect.records]
    texts += [str(w.message) for w in caught]
    for text in dict.fromkeys(" ".join(t.split()) for t in texts if t.strip()):
        warnings.warn(f"{what} {name!r}: {text} (nibabel, reading it; the file "
                      "is unchanged)", UserWarning, stacklevel=3)


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0]}" if text else type(e).__name__


def check_header(img, name: str, what: str) -> None:
    """Raise if the header's shape or affine cannot describe a real image.

    Parameters
    ----------
    img : nibabel image
    name : str
        The file (or a description), for the message.
    what : str
        What the image is.

    Raises
    ------
    ValueError
        On a dimension < 1, or an affine with NaN/infinite values or a
        singular 3 x 3 part (a voxel of zero size), as nibabel would have
        to guess where the voxels are.
    """
    try:
        shape = tuple(int(x) for x in img.shape)
        affine = np.asarray(img.affine, dtype=float)
    except Exception as e:  # a header nibabel cannot interpret
        raise ValueError(f"{what} {name!r} has an unreadable header: "
                         f"{_first_line(e)}") from None
    if not shape or min(shape) < 1:
        raise ValueError(f"{what} {name!r} has shape {shape}; every dimension must "
                         "be at least 1")
    if affine.shape != (4, 4) or not np.all(np.isfinite(affine)):
        raise ValueError(
            f"{what} {name!r} has an affine with NaN or infinite values (its sform, "
            "qform or pixdim header fields); dtitool cannot tell where its voxels "
            "are: fix the header (e.g. fslorient, nibabel)"
        )
    with np.errstate(all="ignore"):
        det = float(np.linalg.det(affine[:3, :3]))
    if not np.isfinite(det) or abs(det) < 1e-12:
        raise ValueError(
            f"{what} {name!r} has a singular affine (voxel size "
            f"{np.round(np.sqrt((affine[:3, :3] ** 2).sum(axis=0)), 6).tolist()}); "
            "fix the header's pixdim / sform"
        )


def read_data(img, name: str, what: str, *, dtype=None) -> np.ndarray:
    """Read an image's voxel array, refusing what cannot fit or cannot be read.

    Parameters
    ----------
    img : nibabel image
        From :func:`load_nifti` (or in memory).
    name : str
        The file, for messages.
    what : str
        What the image is (``"DWI"``).
    dtype : numpy dtype, optional
        Convert to this type (scaling applied); default the stored type.

    Returns
    -------
    ndarray

    Raises
    ------
    ValueError
        If the array would not fit in memory (the size is named; a header
        that lies about its shape is caught here before any allocation), or
        the file is truncated or corrupt.
    """
    from dtitool._memory import check_memory, format_bytes

    shape = tuple(int(x) for x in img.shape)
    stored = np.dtype(img.get_data_dtype())
    n_vox = float(np.prod([float(x) for x in shape]))
    out_size = np.dtype(dtype).itemsize if dtype is not None else stored.itemsize
    need = n_vox * (stored.itemsize + out_size)
    check_memory(need, f"reading {what} {name!r} ({' x '.join(map(str, shape))} "
                 f"voxels)", hint="check the header's dimensions")
    fname = img.get_filename() if hasattr(img, "get_filename") else None
    stream = _gzip_stream(img)
    bounded = isinstance(stream, BoundedGzipFile)
    if fname and not bounded and not str(fname).endswith(".gz"):
        try:
            offset = int(img.header.get_data_offset())
            size = os.path.getsize(fname)
        except (OSError, TypeError, ValueError):
            offset = size = None
        if size is not None and size < offset + n_vox * stored.itemsize:
            raise ValueError(
                f"{what} {name!r} is truncated: its header promises "
                f"{format_bytes(offset + n_vox * stored.itemsize)} but the file "
                f"has {format_bytes(size)}"
            )
    try:
        if bounded and stream.closed:
            stream.reopen()
        with nibabel_messages(what, name):
            if dtype is None:
                data = np.asanyarray(img.dataobj)
            else:
                data = np.asarray(img.dataobj, dtype=dtype)
        if bounded:
            # The rest of the stream must end within the bound: a file that
            # inflates past what its header implies is refused, and reading to
            # the end checks every member's CRC.
            stream.finish()
            stream.close()
        return data
    except InflateLimitError as e:
        raise ValueError(_inflate_message(what, name, e.limit)) from None
    except MemoryError:
        raise
    except Exception as e:  # EOFError, zlib.error, OSError from a damaged file
        raise ValueError(
            f"cannot read the voxel data of {what} {name!r}: the file is truncated "
            f"or corrupt ({_first_line(e)})"
        ) from None
    finally:
        if bounded:
            stream.close()


def has_scaling(img) -> bool:
    """Return True if the voxels are stored scaled (slope != 1 or inter != 0)."""
    obj = getattr(img, "dataobj", None)
    slope, inter = getattr(obj, "slope", 1.0), getattr(obj, "inter", 0.0)
    return not (slope == 1 and inter == 0)


def load_dwi(path: str | os.PathLike):
    """Load a 4D DWI lazily (see :func:`check_volumes` for the gradient table)."""
    img = load_nifti(path, "DWI")
    if img.ndim != 4:
        raise ValueError(
            f"DWI {str(path)!r} has shape {img.shape}; expected a 4D image "
            "(x, y, z, volumes)"
        )
    return img


def check_volumes(img, path, n_bvals: int, bval_path) -> None:
    """Raise if the DWI ``img`` does not have one volume per b-value."""
    if img.shape[3] != n_bvals:
        raise ValueError(
            f"DWI {str(path)!r} has {img.shape[3]} volumes but {str(bval_path)!r} "
            f"has {n_bvals} b-values"
        )


def image_data(img, name: str = "image", what: str = "image") -> np.ndarray:
    """Return the image's voxel array in its stored type (scaling applied).

    See :func:`read_data` for the checks.
    """
    return read_data(img, name, what)


def load_mask(path: str | os.PathLike, like, *, like_name: str = "the image"
              ) -> np.ndarray:
    """Load a brain mask on the grid of image ``like``; return it as booleans.

    ``like_name`` names ``like`` in messages (e.g. ``"DWI 'sub-01_dwi.nii.gz'"``).

    Raises
    ------
    ValueError
        If the mask is not on ``like``'s grid (shape and affine), holds NaN or
        infinite values, or has no nonzero voxel.
    """
    path = str(path)
    mimg = load_nifti(path, "mask")
    mshape = mimg.shape[:3] if mimg.ndim == 4 and mimg.shape[3] == 1 else mimg.shape
    if mshape != like.shape[:3]:
        raise ValueError(
            f"mask {path!r} has shape {mimg.shape} but {like_name} has grid "
            f"{like.shape[:3]}; the mask must be on that grid"
        )
    if not np.allclose(mimg.affine, like.affine, atol=1e-4):
        raise ValueError(
            f"mask {path!r} has affine {mimg.affine.tolist()} but {like_name} has "
            f"affine {like.affine.tolist()}; the mask must be on that grid"
        )
    m = read_data(mimg, path, "mask").reshape(mshape)
    if not np.all(np.isfinite(m)):
        raise ValueError(f"mask {path!r} contains NaN or infinite values")
    mask = m != 0
    if not mask.any():
        raise ValueError(f"mask {path!r} has no nonzero voxel")
    return mask


def _file_bytes(img, path) -> bytes:
    """Return ``img`` as the bytes of a file ``path`` (.nii.gz: dtitool's gzip)."""
    from dtitool._gzip import compress

    raw = img.to_bytes()
    return compress(raw, 1) if str(path).endswith(".gz") else raw


def map_bytes(array: np.ndarray, like, path: str | os.PathLike) -> bytes:
    """Return the file bytes of a map on ``like``'s grid, as float32 NIfTI.

    ``like``'s affine and header are kept (units, orientation), with the data
    shape, scaling and display range set for the new data, as FSL dtifit does;
    a 4D ``array`` (an eigenvector map, x, y, z along the 4th axis) keeps the
    header's 4th pixdim.
    """
    hdr = like.header.copy()
    hdr.set_data_shape(array.shape)
    img = nib.Nifti1Image(np.asarray(array, dtype=np.float32), like.affine,
                          header=hdr)
    img.set_data_dtype(np.float32)
    img.header.set_slope_inter(1.0, 0.0)
    img.header["cal_min"] = 0.0
    img.header["cal_max"] = 0.0
    return _file_bytes(img, path)


def fit_map_bytes(fit, like, paths: Sequence[str | os.PathLike]) -> list[bytes]:
    """Return the file bytes of ``fit.md`` and ``fit.fa`` (:func:`write_fit_maps`)."""
    return [map_bytes(arr, like, path)
            for path, arr in zip(paths, (fit.md, fit.fa), strict=True)]


def write_fit_maps(fit, like, paths: Sequence[str | os.PathLike]) -> None:
    """Write ``fit.md`` and ``fit.fa`` to ``paths`` as float32 NIfTI.

    Parameters
    ----------
    fit : TensorFit
        A fit from :func:`dtitool.imaging.tensor.fit_tensor`.
    like : nibabel image
        The DWI the fit came from: its affine and header are kept, with the
        scaling and display range reset for the new data, as FSL dtifit does.
    paths : sequence of two paths
        Where to write MD (mm^2/s) and FA (``.nii.gz`` compressed with
        :mod:`dtitool._gzip`).
    """
    for path, data in zip(paths, fit_map_bytes(fit, like, paths), strict=True):
        Path(path).write_bytes(data)


def mask_bytes(mask: np.ndarray, like, path: str | os.PathLike) -> bytes:
    """Return the file bytes of a brain mask (see :func:`write_mask`)."""
    hdr = like.header.copy()
    hdr.set_data_shape(mask.shape)
    out = nib.Nifti1Image(np.asarray(mask, dtype=np.uint8), like.affine, header=hdr)
    out.set_data_dtype(np.uint8)
    out.header.set_slope_inter(1.0, 0.0)
    out.header["cal_min"] = 0.0
    out.header["cal_max"] = 1.0
    return _file_bytes(out, path)


def write_mask(mask: np.ndarray, like, path: str | os.PathLike) -> None:
    """Write a boolean brain mask as uint8 NIfTI with ``like``'s affine and header.

    Parameters
    ----------
    mask : ndarray of bool, shape like.shape[:3]
    like : nibabel image
        Reference image (the DWI).
    path : path
    """
    Path(path).write_bytes(mask_bytes(mask, like, path))
