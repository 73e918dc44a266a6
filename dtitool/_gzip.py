"""gzip for the NIfTI files dtitool writes and reads: ISA-L when installed, else zlib.

Compressing the MD maps and DWI of a cohort was most of the time of writing its
images: zlib level 1 takes ~34 ms per 3.6 MB MD map, ISA-L's igzip (the
optional ``isal`` package, ``pip install "dtitool[fast]"``) ~2 ms at level 1,
with smaller files (its level 1 compresses like zlib's 6); decompression is
about twice as fast as zlib's (``tests/benchmarks/bench_images.py``). Without
``isal`` everything works the same with the standard library's zlib.

Determinism: a stream is a function of the data, the level and the
implementation (the header carries no time and no file name), so the same seed
gives the same ``.nii.gz`` bytes on one installation. Two installations with
different implementations (ISA-L or zlib, or different versions) write files
whose *decompressed* bytes are identical but whose compressed bytes differ;
:func:`backend` names the implementation, and ``dataset_description.json``
records it.
"""

from __future__ import annotations

import zlib
from functools import cache

__all__ = ["backend", "compress", "decompress"]


@cache
def _isal():
    try:
        from isal import igzip
    except ImportError:
        return None
    return igzip


def backend() -> str:
    """Return the gzip implementation in use, with its version (``"isal 1.9.1"``)."""
    if _isal() is not None:
        import isal

        return f"isal {isal.__version__}"
    return f"zlib {zlib.ZLIB_RUNTIME_VERSION}"


def compress(data, level: int = 1) -> bytes:
    """gzip-compress ``data`` (bytes-like) deterministically (mtime 0, no name).

    Parameters
    ----------
    data : bytes-like
    level : int
        zlib level 1-9; with ISA-L, 1-6 use its level 1 and 7-9 its level 3.
    """
    igzip = _isal()
    if igzip is not None:
        return igzip.compress(data, 1 if level <= 6 else 3, mtime=0)
    import gzip

    return gzip.compress(data, compresslevel=level, mtime=0)


def decompress(data) -> bytes:
    """Decompress a gzip stream (all members)."""
    igzip = _isal()
    if igzip is not None:
        return igzip.decompress(data)
    import gzip

    return gzip.decompress(data)
