"""Diffusion gradient tables: FSL ``.bval`` / ``.bvec`` I/O and a default protocol.

Axis conventions: ``bvals`` has shape ``(K,)`` in s/mm^2 and ``bvecs`` has shape
``(K, 3)`` (one row per volume). On disk, FSL writes b-values as one row of ``K``
numbers and b-vectors as 3 rows of ``K`` numbers; :func:`read_bvals_bvecs` also
accepts the transposed ``K x 3`` layout that some converters write.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

__all__ = [
    "B0_THRESHOLD",
    "check_bvals",
    "clean_bvecs",
    "default_protocol",
    "read_bvals_bvecs",
    "write_bvals_bvecs",
]

B0_THRESHOLD = 50.0
"""Default b-value (s/mm^2) at or below which a volume counts as a b0 volume
(DIPY's default ``b0_threshold``); it enters the tensor fit at its actual b."""

B_MAX = 1e5
"""Largest b-value (s/mm^2) taken as plausible: human DTI uses 700-3000 and
ex vivo or preclinical diffusion MRI rarely exceeds 30,000 s/mm^2, while
b = 1000 s/mm^2 written in s/m^2 is 1e9."""


def _load_text_matrix(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise ValueError(f"{what} file {str(path)!r} does not exist or is not a file")
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise ValueError(
            f"{what} file {str(path)!r} is not a text file of numbers"
        ) from None
    rows = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        # FSL files are whitespace separated; some tools write commas.
        fields = line.replace(",", " ").split()
        if not fields:
            continue
        try:
            rows.append([float(f) for f in fields])
        except ValueError:
            raise ValueError(
                f"{what} file {str(path)!r} line {lineno} has a value that is not a "
                f"number: {line.strip()[:60]!r}"
            ) from None
    if not rows:
        raise ValueError(f"{what} file {str(path)!r} is empty")
    lengths = {len(r) for r in rows}
    if len(lengths) != 1:
        raise ValueError(
            f"{what} file {str(path)!r} has rows of unequal length "
            f"{sorted(lengths)}; expected a rectangular table of numbers"
        )
    return np.asarray(rows, dtype=float)


def check_bvals(bvals: np.ndarray, where: str) -> None:
    """Raise unless ``bvals`` are finite, >= 0 and plausibly in s/mm^2.

    Parameters
    ----------
    bvals : ndarray, shape (K,)
    where : str
        Where they came from, for the message (``"b-value file 'x.bval'"``).

    Raises
    ------
    ValueError
        On NaN or infinite values, a negative b-value, or b-values above
        :data:`B_MAX` (b-values in s/m^2 are named, with the conversion).
    """
    if not np.all(np.isfinite(bvals)):
        raise ValueError(f"{where} contains NaN or infinite values")
    if np.any(bvals < 0):
        i = int(np.flatnonzero(bvals < 0)[0])
        raise ValueError(
            f"{where} has a negative b-value {bvals[i]:g} at volume {i}; b-values "
            "must be >= 0 s/mm^2"
        )
    top = float(bvals.max()) if bvals.size else 0.0
    if top > B_MAX:
        if top / 1e6 <= B_MAX:
            raise ValueError(
                f"{where} has b-values up to {top:.4g}, which look like s/m^2; "
                "dtitool expects s/mm^2: divide them by 1e6 (b = 1e9 s/m^2 is "
                "1000 s/mm^2)"
            )
        raise ValueError(
            f"{where} has b-values up to {top:.4g}, far above any diffusion MRI "
            f"protocol (at most ~{B_MAX:g} s/mm^2); dtitool expects s/mm^2"
        )


def clean_bvecs(bvals: np.ndarray, bvecs: np.ndarray, b0_threshold: float,
                where: str) -> np.ndarray:
    """Read an undefined direction of a b0 volume as a zero vector.

    Some converters write ``nan nan nan`` as the direction of b0 volumes; it
    carries no information there (a b0 volume's b is too small for its
    direction to matter, and a zero vector contributes nothing to the tensor
    fit). Elsewhere a non-finite direction is an error. The file reader and
    :func:`dtitool.imaging.tensor.fit_tensor` apply this same rule with the
    same threshold.

    Parameters
    ----------
    bvals : ndarray, shape (K,)
        b-values in s/mm^2.
    bvecs : ndarray, shape (K, 3)
    b0_threshold : float
        Volumes with b <= this are b0 volumes.
    where : str
        Where the vectors came from, for the message.

    Returns
    -------
    ndarray, shape (K, 3)
        ``bvecs`` with non-finite rows of b0 volumes set to zero.
    """
    bad = ~np.isfinite(bvecs).all(axis=1)
    dw = bad & (bvals > b0_threshold)
    if np.any(dw):
        i = int(np.flatnonzero(dw)[0])
        raise ValueError(
            f"{where} has NaN or infinite values at volume {i} (b = {bvals[i]:g}); "
            f"only b0 volumes (b <= {b0_threshold:g}) may have an undefined "
            "direction"
        )
    return np.where(bad[:, None], 0.0, bvecs)


def read_bvals_bvecs(
    fbval: str | os.PathLike, fbvec: str | os.PathLike, *,
    b0_threshold: float = B0_THRESHOLD,
) -> tuple[np.ndarray, np.ndarray]:
    """Read an FSL gradient table.

    Parameters
    ----------
    fbval : str or path-like
        FSL b-value file: ``K`` numbers (s/mm^2) on one row (one per line and
        one column are accepted too).
    fbvec : str or path-like
        FSL b-vector file: 3 rows of ``K`` numbers (the FSL layout); ``K`` rows of
        3 numbers are accepted too.
    b0_threshold : float
        Volumes with b <= this count as b0 volumes: their direction may be
        undefined (NaN), read as a zero vector (see :func:`clean_bvecs`).

    Returns
    -------
    bvals : ndarray, shape (K,)
        b-values in s/mm^2.
    bvecs : ndarray, shape (K, 3)
        Gradient directions, as stored (not normalised); a NaN direction of a
        b0 volume is read as a zero vector.

    Raises
    ------
    ValueError
        If a file is missing, not numeric, not a vector / 3-column table, holds
        non-finite values (other than a b0 volume's direction), negative
        b-values or b-values in s/m^2 (see :func:`check_bvals`), or the two
        lengths differ.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> b, g = default_protocol(n_b0=1, n_directions=6)
    >>> write_bvals_bvecs(d / "x.bval", d / "x.bvec", b, g)
    >>> b2, g2 = read_bvals_bvecs(d / "x.bval", d / "x.bvec")
    >>> b2.shape, g2.shape
    ((7,), (7, 3))
    """
    fbval, fbvec = Path(fbval), Path(fbvec)
    b = _load_text_matrix(fbval, "b-value")
    if b.ndim == 2 and 1 not in b.shape:
        raise ValueError(
            f"b-value file {str(fbval)!r} holds a {b.shape[0]} x {b.shape[1]} table; "
            "expected one row (or one column) of b-values"
        )
    bvals = b.ravel()
    g = _load_text_matrix(fbvec, "b-vector")
    if g.shape[0] == 3 and g.shape[1] != 3:
        bvecs = g.T
    elif g.shape[1] == 3 and g.shape[0] != 3:
        bvecs = g
    elif g.shape == (3, 3):
        # Ambiguous; FSL's layout (3 rows of K) is the documented one.
        bvecs = g.T
    else:
        raise ValueError(
            f"b-vector file {str(fbvec)!r} holds a {g.shape[0]} x {g.shape[1]} "
            "table; expected 3 rows of K numbers (FSL layout) or K rows of 3"
        )
    check_bvals(bvals, f"b-value file {str(fbval)!r}")
    if bvals.shape[0] != bvecs.shape[0]:
        raise ValueError(
            f"b-value file {str(fbval)!r} has {bvals.shape[0]} values but b-vector "
            f"file {str(fbvec)!r} has {bvecs.shape[0]} directions"
        )
    bvecs = clean_bvecs(bvals, bvecs, float(b0_threshold),
                        f"b-vector file {str(fbvec)!r}")
    return bvals, np.ascontiguousarray(bvecs)


def write_bvals_bvecs(
    fbval: str | os.PathLike,
    fbvec: str | os.PathLike,
    bvals: np.ndarray,
    bvecs: np.ndarray,
) -> None:
    """Write a gradient table in FSL layout (b-values on one row, 3 rows of vectors).

    Parameters
    ----------
    fbval, fbvec : str or path-like
        Output files.
    bvals : array_like, shape (K,)
        b-values in s/mm^2.
    bvecs : array_like, shape (K, 3)
        Gradient directions.

    Raises
    ------
    ValueError
        If the shapes do not match or values are not finite.
    """
    bvals = np.asarray(bvals, dtype=float)
    bvecs = np.asarray(bvecs, dtype=float)
    if bvals.ndim != 1:
        raise ValueError(f"bvals has shape {bvals.shape}; expected (K,)")
    if bvecs.shape != (bvals.shape[0], 3):
        raise ValueError(
            f"bvecs has shape {bvecs.shape} but bvals has shape {bvals.shape}; "
            f"expected bvecs of shape ({bvals.shape[0]}, 3)"
        )
    if not (np.all(np.isfinite(bvals)) and np.all(np.isfinite(bvecs))):
        raise ValueError("bvals and bvecs must be finite")
    Path(fbval).write_text(" ".join(f"{b:.10g}" for b in bvals) + "\n")
    Path(fbvec).write_text(
        "\n".join(" ".join(f"{v:.10g}" for v in row) for row in bvecs.T) + "\n"
    )


def _half_sphere_spiral(n: int) -> np.ndarray:
    """Return ``n`` unit vectors spread over the half sphere z >= 0.

    A golden-angle (Fibonacci) spiral over the upper hemisphere: equal-area
    bands in z, azimuth advanced by the golden angle. Antipodal directions are
    equivalent in diffusion MRI, so the half sphere covers all orientations.
    """
    i = np.arange(n, dtype=float)
    z = 1.0 - (i + 0.5) / n
    r = np.sqrt(np.maximum(0.0, 1.0 - z * z))
    phi = i * np.pi * (3.0 - np.sqrt(5.0))
    return np.column_stack([r * np.cos(phi), r * np.sin(phi), z])


def default_protocol(
    *, n_b0: int = 6, n_directions: int = 64, bval: float = 1000.0
) -> tuple[np.ndarray, np.ndarray]:
    """Return a deterministic single-shell DTI protocol.

    Parameters
    ----------
    n_b0 : int
        Number of b = 0 volumes (>= 1). The first volume is a b0; the rest are
        spread evenly through the series, as scanners interleave them to track
        drift.
    n_directions : int
        Number of diffusion-weighted directions (>= 6, the minimum for a tensor).
    bval : float
        b-value of the shell in s/mm^2 (> 0).

    Returns
    -------
    bvals : ndarray, shape (n_b0 + n_directions,)
        b-values in s/mm^2 (0 for the b0 volumes).
    bvecs : ndarray, shape (n_b0 + n_directions, 3)
        Unit directions on the half sphere (golden-angle spiral); zero vectors
        for the b0 volumes.

    Raises
    ------
    ValueError
        If an argument is out of range.

    Examples
    --------
    >>> bvals, bvecs = default_protocol()
    >>> bvals.shape, int((bvals == 0).sum())
    ((70,), 6)
    """
    if isinstance(n_b0, bool) or not isinstance(n_b0, (int, np.integer)) or n_b0 < 1:
        raise ValueError(f"n_b0 must be an integer >= 1, got {n_b0!r}")
    if (
        isinstance(n_directions, bool)
        or not isinstance(n_directions, (int, np.integer))
        or n_directions < 6
    ):
        raise ValueError(
            f"n_directions must be an integer >= 6 (a tensor has 6 unknowns), "
            f"got {n_directions!r}"
        )
    bval = float(bval)
    if not np.isfinite(bval) or bval <= 0:
        raise ValueError(f"bval must be a finite number > 0 s/mm^2, got {bval!r}")
    k = n_b0 + n_directions
    b0_pos = np.round(np.arange(n_b0) * k / n_b0).astype(int)
    is_b0 = np.zeros(k, dtype=bool)
    is_b0[b0_pos] = True
    bvals = np.where(is_b0, 0.0, bval)
    bvecs = np.zeros((k, 3))
    bvecs[~is_b0] = _half_sphere_spiral(n_directions)
    return bvals, bvecs
