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

Bounded reading: a ``.nii.gz`` from somewhere else may be a gzip bomb (a few
megabytes that inflate to gigabytes). :class:`BoundedGzipFile` reads a gzip
file as a stream, inflating at most what it was asked for (``max_length`` of
the library's ``decompressobj``, one chunk at a time), and raises
:class:`InflateLimitError` the moment the stream would pass the size its
reader allows: :mod:`dtitool.imaging.nifti` allows what the NIfTI header
implies. Whichever library inflates (zlib-ng, ISA-L or zlib), memory stays
within that size.
"""

from __future__ import annotations

import io
import os
import zlib
from functools import cache

__all__ = [
    "BoundedGzipFile",
    "InflateLimitError",
    "backend",
    "compress",
    "decompress",
    "fast_decompression",
]

_GZIP_WBITS = 16 + zlib.MAX_WBITS  # a gzip header and trailer (CRC, size)
_IN_CHUNK = 1 << 20  # compressed bytes read from the file at a time
_OUT_CHUNK = 1 << 22  # inflated bytes asked of the library at a time


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


def _inflater():
    """Return the zlib-like module that inflates: zlib-ng, else ISA-L, else zlib.

    Each has ``decompressobj(wbits=31)`` whose ``decompress(data, max_length)``
    returns at most ``max_length`` bytes (the rest of the input waits in
    ``unconsumed_tail``): the bound of :class:`BoundedGzipFile`.
    """
    if _zlib_ng() is not None:
        from zlib_ng import zlib_ng

        return zlib_ng
    if _isal() is not None:
        from isal import isal_zlib

        return isal_zlib
    return zlib


def decompress(data, *, max_size: int | None = None) -> bytes:
    """Decompress a gzip stream (all members): zlib-ng, else ISA-L, else zlib.

    Parameters
    ----------
    data : bytes-like
        The gzip stream.
    max_size : int, optional
        Refuse to inflate more than this many bytes (:class:`InflateLimitError`);
        the memory used stays within it. Default: no bound (trusted data only).

    Raises
    ------
    InflateLimitError
        If the stream inflates past ``max_size``.
    EOFError
        If the stream ends inside a member (a truncated file).
    """
    if max_size is None:
        for lib in (_zlib_ng(), _isal()):
            if lib is not None:
                return lib.decompress(data)
        import gzip

        return gzip.decompress(data)
    with BoundedGzipFile(io.BytesIO(data), max_size) as f:
        return f.read()


class InflateLimitError(ValueError):
    """A gzip stream inflates past the size its reader allows.

    Parameters
    ----------
    limit : int
        The bytes the reader allowed.
    """

    def __init__(self, limit: int):
        super().__init__(f"the gzip stream inflates past {int(limit)} bytes")
        self.limit = int(limit)


class BoundedGzipFile(io.IOBase):
    """A read-only, seekable gzip file that never inflates past ``max_size``.

    Reads inflate only what they ask for, one chunk at a time (``max_length``
    of the library's ``decompressobj``), so memory stays within the bytes
    asked for. Several members (``cat a.gz b.gz``) and zero padding after a
    member are read as ``gzip`` reads them. Seeking forward inflates and
    discards; seeking backward starts again from the beginning. Seeking from
    the end is not supported (it would inflate everything).

    Parameters
    ----------
    source : path or binary file object
        The compressed file (opened here, and closed by :meth:`close`) or an
        open binary file positioned at the gzip stream.
    max_size : int
        Inflated bytes allowed (may be raised later: :attr:`max_size`).

    Raises
    ------
    InflateLimitError
        From a read or seek that would take the stream past ``max_size``.
    EOFError
        If the stream ends inside a member (a truncated file); the library's
        error (``zlib.error``) for corrupt data or a wrong CRC.
    """

    def __init__(self, source, max_size: int):
        self.max_size = int(max_size)
        if isinstance(source, str | os.PathLike):
            self.name = os.fspath(source)
            self._src = None
        else:
            self.name = getattr(source, "name", "<gzip stream>")
            self._src = source
            self._start = source.tell()
        self._raw = None
        self._closed = False
        self._reset()

    # ------------------------------------------------------------------ state

    def _reset(self) -> None:
        if self._src is not None:
            self._src.seek(self._start)
            self._raw = self._src
        elif self._raw is not None:
            self._raw.seek(0)
        self._lib = _inflater()
        self._d = None  # the member being inflated (None: between members)
        self._in = b""  # compressed bytes not yet given to the library
        self._pos = 0  # inflated bytes so far
        self._end = False  # the last member ended and the file too

    def _file(self):
        if self._closed:
            raise ValueError(f"I/O operation on closed file {self.name!r}")
        if self._raw is None:
            self._raw = open(self.name, "rb")  # closed in close()
        return self._raw

    def _inflate(self, n: int) -> bytes:
        """Return up to ``n`` (> 0) more inflated bytes; b"" at the end."""
        raw = self._file()
        # One byte more than allowed, if there is one, tells "too large" apart
        # from "ends exactly at the limit".
        room = min(n, self.max_size - self._pos + 1)
        while not self._end:
            if self._d is None:  # between members: skip zero padding
                self._in = self._in.lstrip(b"\0")
                if not self._in:
                    self._in = raw.read(_IN_CHUNK)
                    if not self._in:
                        self._end = True
                        break
                    continue
                self._d = self._lib.decompressobj(wbits=_GZIP_WBITS)
            out = self._d.decompress(self._in, min(room, _OUT_CHUNK))
            if self._d.eof:
                self._in, self._d = self._d.unused_data, None
            else:
                self._in = self._d.unconsumed_tail
            if out:
                self._pos += len(out)
                if self._pos > self.max_size:
                    raise InflateLimitError(self.max_size)
                return out
            if self._d is not None and not self._in:
                more = raw.read(_IN_CHUNK)
                if not more:
                    raise EOFError(f"{self.name!r} ends inside a gzip member "
                                   "(a truncated file)")
                self._in = more
        return b""

    # -------------------------------------------------------------- file API

    def read(self, n: int = -1) -> bytes:
        """Read up to ``n`` inflated bytes (all, within the bound, if ``n < 0``)."""
        chunks, want = [], (n if n is not None and n >= 0 else None)
        while want is None or want > 0:
            piece = self._inflate(_OUT_CHUNK if want is None else want)
            if not piece:
                break
            chunks.append(piece)
            if want is not None:
                want -= len(piece)
        return b"".join(chunks)

    def readinto(self, buffer) -> int:
        """Inflate into ``buffer`` (no intermediate copy of the whole); return bytes."""
        view = memoryview(buffer).cast("B")
        done = 0
        while done < len(view):
            piece = self._inflate(len(view) - done)
            if not piece:
                break
            view[done:done + len(piece)] = piece
            done += len(piece)
        return done

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move to ``offset`` (``SEEK_SET`` or ``SEEK_CUR``); return the position."""
        if whence == io.SEEK_CUR:
            offset += self._pos
        elif whence != io.SEEK_SET:
            raise io.UnsupportedOperation("a gzip stream cannot seek from its end")
        if offset < 0:
            raise ValueError(f"negative seek position {offset}")
        if offset < self._pos:
            self._reset()
        while self._pos < offset:
            if not self._inflate(offset - self._pos):
                break
        return self._pos

    def tell(self) -> int:
        """Return the position in the inflated stream."""
        return self._pos

    def finish(self) -> int:
        """Inflate (and discard) the rest, checking it ends within the bound.

        Returns
        -------
        int
            The inflated size of the whole stream.
        """
        while self._inflate(_OUT_CHUNK):
            pass
        return self._pos

    def readable(self) -> bool:
        """Return True."""
        return True

    def seekable(self) -> bool:
        """Return True (backward seeks start again from the beginning)."""
        return True

    def writable(self) -> bool:
        """Return False."""
        return False

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def close(self) -> None:
        """Close the compressed file if it was opened here."""
        if self._raw is not None and self._src is None:
            self._raw.close()
        self._raw = None
        self._d = None
        self._in = b""
        self._closed = True

    def reopen(self) -> None:
        """Make a closed stream readable again, from the beginning."""
        self._closed = False
        self._raw = None
        self._reset()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"BoundedGzipFile({self.name!r}, max_size={self.max_size})"
