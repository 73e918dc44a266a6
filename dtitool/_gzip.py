"""gzip for the NIfTI files dtitool writes and reads: zlib-ng when installed.

Compressing the MD maps of a cohort was most of the time of writing its images:
the standard library's zlib takes ~21 ms per 3.6 MB MD map at level 1. With
the optional extra (``pip install "dtitool[fast]"``, the ``zlib-ng`` package):

- **writing** uses zlib-ng, ~5 ms per map at level 1 (files ~17 % larger than
  zlib's level 1);
- **reading** uses zlib-ng too, ~1.5x as fast as zlib.

End to end, ``dtitool simulate --images`` takes 0.61 and ``dtitool demo``
0.86 of their time without it (``tests/benchmarks/bench_gzip.py``). ISA-L
(``isal``) reads about as fast as zlib-ng (measured: 2.2 against 1.9 ms per
map) and is used for reading only if it is installed and zlib-ng is not. It
compresses faster still but is not used for writing: its compressed bytes
depend on memory it does not initialise (a hash table whose stale entries
still give valid matches in runs of zeros), so the same image could give
different ``.nii.gz`` bytes in two runs; measured here, one map in a few
hundred differed in two bytes. Decompressed bytes are unique, so reading with
it is safe.

Determinism: a zlib or zlib-ng stream is a function of the data, the level and
the library version (the header carries no time and no file name), so the same
seed gives the same ``.nii.gz`` bytes on one installation. Installations with
different libraries write files whose *decompressed* bytes are identical but
whose compressed bytes differ; :func:`backend` names the library, and
``dataset_description.json`` records it. Without the extra everything works
with the standard library alone.
"""

from __future__ import annotations

import zlib
from functools import cache

__all__ = ["backend", "compress", "decompress", "fast_decompression"]


@cache
def _zlib_ng():
    try:
        from zlib_ng import gzip_ng
    except ImportError:
        return None
    return gzip_ng


@cache
def _isal():
    try:
        from isal import igzip
    except ImportError:
        return None
    return igzip


def backend() -> str:
    """Return the library that compresses, with its version (``"zlib-ng 2.3.3"``)."""
    if _zlib_ng() is not None:
        from zlib_ng import zlib_ng

        return f"zlib-ng {zlib_ng.ZLIBNG_VERSION}"
    return f"zlib {zlib.ZLIB_RUNTIME_VERSION}"


def fast_decompression() -> bool:
    """Return True if a faster decompressor than zlib (ISA-L, zlib-ng) is installed."""
    return _isal() is not None or _zlib_ng() is not None


def compress(data, level: int = 1) -> bytes:
    """gzip-compress ``data`` (bytes-like) deterministically (mtime 0, no name).

    Parameters
    ----------
    data : bytes-like
    level : int
        Compression level 1-9 (of zlib-ng when installed, else of zlib).
    """
    ng = _zlib_ng()
    if ng is not None:
        return ng.compress(data, level, mtime=0)
    import gzip

    return gzip.compress(data, compresslevel=level, mtime=0)


def decompress(data) -> bytes:
    """Decompress a gzip stream (all members): zlib-ng, else ISA-L, else zlib."""
    for lib in (_zlib_ng(), _isal()):
        if lib is not None:
            return lib.decompress(data)
    import gzip

    return gzip.decompress(data)
