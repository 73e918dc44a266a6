"""Memory estimates made before big allocations, with a clear refusal.

A request that cannot fit (a huge ``--n``, a NIfTI header that claims a
terabyte of voxels, a billion replicates) should be answered with one sentence
naming the size asked for, not with a ``MemoryError`` traceback or a machine
swapping itself to a halt. :func:`check_memory` compares an estimate with the
memory this process can still use (``MemAvailable``, bounded by a cgroup limit
when there is one) and raises :class:`InsufficientMemoryError` when it does not
fit.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["InsufficientMemoryError", "available_memory", "check_memory",
           "format_bytes"]


class InsufficientMemoryError(MemoryError, ValueError):
    """A request needs more memory than is available (also a ``ValueError``).

    Being a ``ValueError`` too, the command line answers it like any other
    bad input: one line on stderr, exit code 2.
    """


def format_bytes(n: float) -> str:
    """Return ``n`` bytes as a short human-readable size (``"3.2 GB"``).

    Examples
    --------
    >>> format_bytes(3.2e9)
    '3.2 GB'
    >>> format_bytes(512)
    '512 bytes'
    """
    n = float(n)
    for unit, size in (("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6),
                       ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} bytes"


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_memory() -> int | None:
    """Bytes of memory this process can still allocate, or None if unknown.

    ``MemAvailable`` from ``/proc/meminfo`` (the kernel's own estimate of what
    can be allocated without swapping), bounded by the cgroup v2 / v1 limit of
    the container minus its current use; elsewhere the free physical pages.
    """
    avail = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                avail = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        avail = None
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = None
    for limit_f, usage_f in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
         "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        limit, usage = _read_int(limit_f), _read_int(usage_f)
        if limit is not None and usage is not None and limit < 2**60:
            room = max(limit - usage, 0)
            avail = room if avail is None else min(avail, room)
            break
    return avail


def check_memory(nbytes: float, what: str, *, hint: str = "") -> None:
    """Refuse (raise) when ``nbytes`` will not fit in the available memory.

    Parameters
    ----------
    nbytes : float
        Estimated bytes the request needs (a float, so that estimates of
        absurd requests such as ``n = 1e300`` do not overflow).
    what : str
        What needs the memory, for the message (``"simulating 64 trials of
        n = 1000000000"``).
    hint : str
        What the user can do about it (``"use a smaller --n"``).

    Raises
    ------
    InsufficientMemoryError
        If ``nbytes`` exceeds the available memory (or is not finite).
    """
    nbytes = float(nbytes)
    avail = available_memory()
    if nbytes == nbytes and avail is not None and nbytes <= avail:
        return
    if avail is None and nbytes == nbytes and nbytes < 2**62:
        return
    have = "" if avail is None else f", more than the {format_bytes(avail)} available"
    size = format_bytes(nbytes) if nbytes == nbytes and nbytes < 1e30 else (
        "an impossible amount of memory")
    raise InsufficientMemoryError(
        f"{what} needs about {size} of memory{have}"
        + (f"; {hint}" if hint else "")
    )
