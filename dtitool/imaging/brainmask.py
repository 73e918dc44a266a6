"""A brain mask from the b0 volumes: median filter and Otsu threshold.

What DIPY's ``median_otsu`` does with its defaults (Garyfallidis et al. 2014):
the mean of the b0 volumes is smoothed by a 3D median filter of radius 4
voxels, applied 4 times, and thresholded at Otsu's (1979) threshold of the
smoothed image. ``dtitool fit-tensor`` uses it when no ``--mask`` is given, so
that background voxels (noise, where a tensor fit gives FA > 1 and negative MD)
are not fitted; the mask is written beside the maps.

Sorting every 9 x 9 x 9 window four times is what made this slow (about 10 s
per million voxels). Two facts make it fast without changing what is
thresholded:

- A median filter commutes with thresholding (Fitch et al. 1984): the voxels
  where the filtered image exceeds ``t`` are the majority vote, window by
  window, of the voxels where the image exceeds ``t``, and a majority vote is a
  box sum. So the mask at any threshold, and the number of filtered voxels
  above any value, are exact at the cost of a few box filters.
- Otsu's threshold needs only the histogram of the filtered image. Its range
  (the filtered minimum and maximum) is found exactly by such votes; the counts
  at a few values are exact; between them the histogram takes its shape from
  the same filter run on the image sampled at every other voxel.

The mask is the filtered image (exact) above that threshold (estimated). It
differs from DIPY's only if the estimate lands in another of Otsu's 256 bins,
and then only by the voxels between the two (on DIPY's sample images and on
simulated DWI, at most 4 voxels in 10,000: the estimate was off by one bin at
most). Images of up to :data:`EXACT_BUDGET` window values (DIPY's 10 x 10 x 10
``small_64D``, say) are filtered exactly, as DIPY does. (DIPY itself takes
scikit-image's Otsu threshold when scikit-image is installed, which can differ
from its own by a bin too.)

References
----------
Fitch JP, Coyle EJ, Gallagher NC. Median filtering by threshold decomposition.
IEEE Trans Acoust Speech Signal Process 1984;32:1183-1188.
Garyfallidis E, et al. Dipy, a library for the analysis of diffusion MRI data.
Front Neuroinform 2014;8:8.
Otsu N. A threshold selection method from gray-level histograms. IEEE Trans
Syst Man Cybern 1979;9:62-66.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["EXACT_BUDGET", "median_filter", "median_otsu", "otsu_threshold"]

EXACT_BUDGET = 1 << 28
"""Window values (voxels x window size x passes) up to which :func:`median_otsu`
filters the whole image exactly by default: about 92,000 voxels with DIPY's
defaults, under a second; larger images take the fast path."""

N_LEVELS = 5
"""Values between the filtered image's extremes where the fast path counts the
filtered voxels exactly (3 let the threshold of cropped DIPY images wander by
4 bins, 7 or 11 did no better than 5)."""

_NBINS = 256  # Otsu's histogram, as DIPY's otsu


def otsu_threshold(image, *, nbins: int = 256) -> float:
    """Return Otsu's threshold of ``image`` (as DIPY's ``otsu``, for equal masks).

    The between-class variance is maximised over the ``nbins + 1`` histogram
    edges, pairing each edge with the class sums up to the bin it closes,
    exactly as ``dipy.segment.threshold.otsu`` does (so that the masks agree
    voxel for voxel).

    Parameters
    ----------
    image : array_like
        Values to threshold (any shape).
    nbins : int
        Number of histogram bins.

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = np.r_[rng.normal(0, 1, 500), rng.normal(10, 1, 500)]
    >>> 3 < otsu_threshold(x) < 7
    True
    """
    hist, edges = np.histogram(np.asarray(image, dtype=float).ravel(), nbins)
    return _otsu_from_histogram(hist, edges)


def _otsu_from_histogram(hist: np.ndarray, edges: np.ndarray) -> float:
    """Otsu's threshold of a histogram (counts may be fractional), DIPY's way."""
    hist = np.asarray(hist, dtype=float)
    w1 = np.cumsum(hist)
    w2 = np.cumsum(hist[::-1])[::-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        m1 = np.cumsum(hist * edges[1:]) / w1
        m2 = (np.cumsum((hist * edges[1:])[::-1]) / w2[::-1])[::-1]
        var = w1[:-1] * w2[1:] * (m1[:-1] - m2[1:]) ** 2
    if not np.any(np.isfinite(var)):
        return float(edges[0])
    return float(edges[:-1][int(np.nanargmax(var))])


def _check_count(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    return int(value)


def median_otsu(b0, *, median_radius: int = 4, numpass: int = 4,
                exact: bool | None = None) -> np.ndarray:
    """Return a brain mask of a 3D b0 image (DIPY's ``median_otsu`` defaults).

    Parameters
    ----------
    b0 : array_like, shape (X, Y, Z)
        Mean of the b0 volumes (any non-diffusion-weighted image). NaN and
        infinite values count as 0.
    median_radius : int
        Radius (voxels) of the cubic median filter window (side 2r + 1).
    numpass : int
        Number of median filter passes.
    exact : bool or None
        True: filter the whole image (as DIPY does; about 10 s per million
        voxels). False: the fast path (module docstring). None (default):
        exact for images of up to :data:`EXACT_BUDGET` window values.

    Returns
    -------
    ndarray of bool, shape (X, Y, Z)
        True inside the brain.

    Raises
    ------
    ValueError
        If ``b0`` is not a 3D array of numbers, or ``median_radius`` or
        ``numpass`` is not an integer >= 0.

    Notes
    -----
    With :math:`F` the image after ``numpass`` passes of the median filter and
    :math:`t` Otsu's threshold of :math:`F`, the mask is :math:`F > t`; the
    windows extend past the edges by reflection (scipy's ``"reflect"``), as
    in DIPY. The fast path computes :math:`F > t` exactly for its estimate of
    :math:`t`: :math:`[F > t]` is ``numpass`` majority votes of
    :math:`[b_0 > t]` (Fitch et al. 1984).

    Examples
    --------
    >>> import numpy as np
    >>> b0 = np.full((24, 24, 24), 20.0)
    >>> b0[4:20, 4:20, 4:20] = 1000.0  # a bright cube in a dark field
    >>> mask = median_otsu(b0, exact=False)
    >>> bool(mask[12, 12, 12]), bool(mask[0, 0, 0])
    (True, False)
    >>> bool((mask == median_otsu(b0, exact=True)).all())
    True
    """
    b0 = np.asarray(b0)
    if b0.ndim != 3:
        raise ValueError(f"b0 has shape {b0.shape}; expected a 3D image")
    if not (np.issubdtype(b0.dtype, np.number) or b0.dtype == bool):
        raise ValueError(f"b0 must hold numbers, got dtype {b0.dtype}")
    b0 = b0.astype(float)
    if not np.all(np.isfinite(b0)):
        b0 = np.where(np.isfinite(b0), b0, 0.0)
    radius = _check_count(median_radius, "median_radius")
    numpass = _check_count(numpass, "numpass")
    if exact is not None and not isinstance(exact, bool):
        raise ValueError(f"exact must be True, False or None, got {exact!r}")
    if radius == 0 or numpass == 0:
        return b0 > otsu_threshold(b0)
    if exact is None:
        exact = b0.size * (2 * radius + 1) ** 3 * numpass <= EXACT_BUDGET
    if exact:
        filtered = _median_passes(b0, radius, numpass)
        return filtered > otsu_threshold(filtered)
    return _majority(b0 > _estimate_threshold(b0, radius, numpass), radius, numpass)


def _median_passes(image: np.ndarray, radius, numpass: int) -> np.ndarray:
    """``numpass`` passes of the exact median filter (on ranks, then values).

    ``radius`` is one int, or one per axis.
    """
    # A median filter only compares values, so filtering the ranks of the
    # distinct values and mapping back is exact, and small integers select
    # fastest. Later passes only ever see values (ranks) that are already there.
    values, ranks = np.unique(image, return_inverse=True)
    ranks = ranks.reshape(image.shape).astype(_rank_dtype(len(values)))
    size = tuple(2 * r + 1 for r in np.broadcast_to(radius, (3,)))
    for _ in range(numpass):
        ranks = median_filter(ranks, size)
    return values[ranks]


def _majority(binary: np.ndarray, radius: int, numpass: int) -> np.ndarray:
    """Median-filter a boolean image ``numpass`` times: repeated majority votes.

    The median of a window of 0s and 1s is 1 when at least half of it (k + 1
    of 2k + 1 voxels) is 1: a box sum, three 1D sums in small integers (exact),
    the edges reflected as scipy's ``median_filter`` reflects them.
    """
    size = 2 * radius + 1
    need = (size**3 + 1) // 2
    a = np.asarray(binary, dtype=bool).view(np.uint8)
    for _ in range(numpass):
        for axis in range(3):
            a = _box_sum(a, axis, radius, _count_dtype(size ** (axis + 1)))
        a = (a >= need).view(np.uint8)
    return a.view(bool)


def _count_dtype(most: int):
    for dt in (np.uint8, np.uint16, np.uint32):
        if most <= np.iinfo(dt).max:
            return dt
    return np.uint64


def _box_sum(a: np.ndarray, axis: int, radius: int, dtype) -> np.ndarray:
    """Sum over 2 r + 1 neighbours along ``axis``, edges reflected (d c b a | a b)."""
    n = a.shape[axis]
    size = 2 * radius + 1
    pad = [(0, 0)] * a.ndim
    pad[axis] = (radius, radius)
    padded = np.pad(a, pad, mode="symmetric").astype(dtype, copy=False)

    def take(arr, start, stop):
        index = [slice(None)] * arr.ndim
        index[axis] = slice(start, stop)
        return arr[tuple(index)]

    # sums of 1, 2, 4, ... neighbours by doubling, then size as a sum of those
    # (9 = 8 + 1): a few whole-array additions instead of one per neighbour
    runs = {1: padded}
    width = 1
    while 2 * width <= size:
        prev = runs[width]
        length = prev.shape[axis]
        runs[2 * width] = take(prev, 0, length - width) + take(prev, width, length)
        width *= 2
    total, offset = None, 0
    for width in sorted(runs, reverse=True):
        if size - offset >= width:
            part = take(runs[width], offset, offset + n)
            total = part if total is None else total + part
            offset += width
    return total


def _vote_in(image, value, radius, numpass, region) -> np.ndarray:
    """Voxels of ``region`` where the filtered ``image`` is >= ``value``.

    ``region`` (bool, or None for every voxel) must hold every such voxel. The
    votes run in its bounding box widened by ``numpass * radius`` voxels: a
    wrong value at the box's edge (reflected instead of read) moves inward by
    one radius per pass, so it never reaches the region.
    """
    if region is None:
        return _majority(image >= value, radius, numpass)
    out = np.zeros(image.shape, dtype=bool)
    if not region.any():
        return out
    margin = numpass * radius
    box = tuple(slice(max(0, int(i.min()) - margin), int(i.max()) + 1 + margin)
                for i in np.nonzero(region))
    out[box] = _majority(image[box] >= value, radius, numpass) & region[box]
    return out


def _filtered_max(image, radius, numpass, *, guess, step, tol, region=None,
                  region_above=-np.inf) -> tuple[float, np.ndarray]:
    """Largest value of the filtered image and the voxels that hold it.

    Brackets the maximum around ``guess`` (steps of ``step``, doubling), then
    bisects over the image's own values (the filtered image holds no others)
    until one is left or the bracket is narrower than ``tol`` (the value
    returned is then at most ``tol`` below the maximum, and the voxels those
    at least that high). ``region`` holds every voxel whose filtered value
    exceeds ``region_above``: votes above that value run near it only, as do
    the votes above a value already held.
    """
    top, bottom = float(image.max()), float(image.min())

    def vote(v, reg):
        return _vote_in(image, v, radius, numpass, reg)

    def first(v):
        return vote(v, region if v > region_above else None)

    hit = first(guess)
    if hit.any():  # the maximum is at least guess: step up until nothing is left
        lo, hi, width = guess, guess + step, step
        while hi <= top and (h := vote(hi, hit)).any():
            lo, hit, width = hi, h, 2 * width
            hi = lo + width
    else:  # below guess: step down until some voxel is left
        hi, lo, width = guess, max(guess - step, bottom), step
        while not (hit := first(lo)).any():
            hi, width = lo, 2 * width
            lo = max(hi - width, bottom)
    # hit: the voxels >= lo (so >= values[0], the image holding no value
    # between); none is >= hi
    values = np.unique(image[(image >= lo) & (image < hi)])
    i, j = 0, len(values) - 1
    while i < j and values[j] - values[i] > tol:
        mid = (i + j + 1) // 2
        h = vote(values[mid], hit)
        if h.any():
            i, hit = mid, h
        else:
            j = mid - 1
    return float(values[i]), hit


def _estimate_threshold(b0: np.ndarray, radius: int, numpass: int) -> float:
    """Otsu's threshold of the filtered image, from exact votes and a proxy."""
    proxy = _proxy(b0, radius, numpass)
    lo, hi = float(proxy[0]), float(proxy[-1])
    step = (hi - lo) / _NBINS or (float(b0.max()) - float(b0.min())) / _NBINS
    if step == 0:  # a constant image
        return otsu_threshold(b0[:1, :1, :1])
    levels = np.linspace(lo, hi, N_LEVELS + 2)[1:-1]
    above = [_majority(b0 >= t, radius, numpass) for t in levels]
    # the extremes to a quarter of one of Otsu's bins (exact for integer
    # images), searched from the proxy's in quarter-bin steps
    search = {"step": step / 4, "tol": step / 4}
    fmax, at_max = _filtered_max(b0, radius, numpass, guess=hi, region=above[-1],
                                 region_above=levels[-1], **search)
    # the minimum is the maximum of the negated image (a median commutes with it)
    neg_fmin, _ = _filtered_max(-b0, radius, numpass, guess=-lo, region=~above[0],
                                region_above=-levels[0], **search)
    fmin = -neg_fmin
    if fmin >= fmax:
        return otsu_threshold(np.array([fmin]))
    # where the proxy missed part of the range (structure the sampling skipped),
    # its shape says nothing: count there too
    for a, b in ((fmin, lo), (hi, fmax)):
        if b - a > (fmax - fmin) / (N_LEVELS + 1):
            extra = np.linspace(a, b, N_LEVELS + 2)[1:-1]
            levels = np.r_[levels, extra]
            above += [_majority(b0 >= t, radius, numpass) for t in extra]
    order = np.argsort(levels)
    levels, above = levels[order], [above[i] for i in order]
    inside = (levels > fmin) & (levels < fmax)
    counts = np.array([a.sum() for a, keep in zip(above, inside, strict=True)
                       if keep], dtype=float)
    # the number of filtered voxels below each known value, exact
    known = np.r_[fmin, levels[inside], fmax]
    below = np.r_[0.0, b0.size - counts, b0.size - at_max.sum()]
    edges = np.linspace(fmin, fmax, _NBINS + 1)
    cdf = _interpolate_cdf(edges[1:-1], known, below, proxy)
    cdf = np.maximum.accumulate(np.r_[0.0, cdf, b0.size])
    return _otsu_from_histogram(np.diff(cdf), edges)


def _proxy(b0: np.ndarray, radius: int, numpass: int) -> np.ndarray:
    """Return the filter of every other voxel, sorted: the filtered shape.

    Axes shorter than two windows are kept whole (sampling every other slice
    of a thin slab would see half of it), and keep the full radius.
    """
    long = np.array(b0.shape) >= 2 * (2 * radius + 1)
    step = np.where(long, 2, 1)
    sampled = b0[tuple(slice(None, None, int(k)) for k in step)]
    radii = tuple(int(r) for r in np.where(long, (radius + 1) // 2, radius))
    return np.sort(_median_passes(sampled, radii, numpass), axis=None)


def _interpolate_cdf(x, known, below, proxy) -> np.ndarray:
    """Voxels below each of ``x``: exact at ``known``, shaped by ``proxy`` between."""
    seg = np.clip(np.searchsorted(known, x, side="right") - 1, 0, len(known) - 2)
    a, b = known[seg], known[seg + 1]
    pa, pb, px = (np.searchsorted(proxy, v) for v in (a, b, x))
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(pb > pa, (px - pa) / (pb - pa), (x - a) / (b - a))
    return below[seg] + np.clip(frac, 0.0, 1.0) * (below[seg + 1] - below[seg])


_CHUNK_ELEMENTS = 1 << 24  # window values gathered per step (~32 MB as int16)


def _rank_dtype(n: int):
    for dt in (np.uint8, np.uint16, np.uint32):
        if n <= np.iinfo(dt).max + 1:
            return dt
    return np.int64


def median_filter(image: np.ndarray, size) -> np.ndarray:
    """Return the median over a box window of odd sides ``size``, per voxel.

    The same values as ``scipy.ndimage.median_filter(image, size=size)`` (its
    default ``mode="reflect"``: the edge is mirrored, repeating the edge voxel),
    computed by gathering each voxel's window (a strided view of the padded
    image, copied a slab of voxels at a time) and selecting its middle element
    with :func:`numpy.partition`.

    Parameters
    ----------
    image : ndarray, shape (X, Y, Z)
        Any real dtype; small integer types (ranks) are fastest.
    size : int or tuple of 3 int
        Odd side of the window (2 r + 1), or one per axis.

    Returns
    -------
    ndarray
        Same shape and dtype as ``image``.

    Examples
    --------
    >>> import numpy as np
    >>> from scipy import ndimage
    >>> x = np.random.default_rng(0).integers(0, 50, (6, 7, 5))
    >>> bool((median_filter(x, 3) == ndimage.median_filter(x, size=3)).all())
    True
    >>> bool((median_filter(x, (3, 1, 5)) == ndimage.median_filter(
    ...     x, size=(3, 1, 5))).all())
    True
    """
    from numpy.lib.stride_tricks import sliding_window_view

    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"image has shape {image.shape}; expected 3D")
    sizes = tuple(int(k) for k in np.broadcast_to(size, (3,)))
    if any(k < 1 or k % 2 == 0 for k in sizes):
        raise ValueError(f"size must be positive odd integers; got {size}")
    if sizes == (1, 1, 1):
        return image.copy()
    # scipy's "reflect" (d c b a | a b c d) is numpy's "symmetric"; for a pad
    # wider than the image, scipy keeps reflecting, as numpy does.
    padded = np.pad(image, [(k // 2, k // 2) for k in sizes], mode="symmetric")
    win = sliding_window_view(padded, sizes)
    out = np.empty_like(image)
    X, Y, Z = image.shape
    k = int(np.prod(sizes))
    mid = k // 2
    rows = max(1, _CHUNK_ELEMENTS // (Y * Z * k))
    for x0 in range(0, X, rows):
        w = win[x0 : x0 + rows].reshape(-1, k)  # a copy: the slab's windows
        out[x0 : x0 + rows] = np.partition(w, mid, axis=1)[:, mid].reshape(
            -1, Y, Z)
    return out
