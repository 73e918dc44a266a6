"""Staging folders: where a run's outputs wait, how they are committed and recovered.

:mod:`dtitool._io` stages every output of a run in a folder beside its
destination and commits them together (``docs/outputs.md``). This module holds
the parts of that protocol that touch the file system outside a run's own
files, under the rules a tool writing into folders other people share must
keep (nothing outside the destination, ever):

- **Paths are walked, never trusted.** Every path the protocol acts on (a
  journal's operations, a manifest's files) is a relative path without ``..``
  or ``.`` components, and is reached folder by folder with
  ``open(O_DIRECTORY | O_NOFOLLOW)`` relative to the folder above it
  (``openat``), at the moment of use: a symbolic link anywhere below the
  destination stops the operation (:class:`UnsafePath`) instead of being
  followed, even one planted after the checks.
- **A staging folder is dtitool's only if it says so.** Each one holds a
  marker, ``stage.json``: the creating run's identity (a random token, also
  written into its lock file, and a run id shared by the staging folders of one
  run), the folder it sits in and the destination it belongs to. Recovery
  (completing a dead run's commit from its journal, removing a dead run's
  folder) needs that marker, the folder owned by the current user, a free lock
  holding the same token, and a name matching the destination; a folder that
  merely has the name is left alone, with a warning. A recovered journal acts
  only inside the destination named by its folder's name; a journal that
  breaks these rules is an error naming it, and nothing is touched.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import secrets
import shutil
import stat
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

try:  # POSIX; elsewhere the lock is advisory on process ids only
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None

STAGE_PREFIX = ".dtitool-tmp"
NEW_PREFIX = ".dtitool-new-"
LOCK = "lock"
MARKER = "stage.json"
JOURNAL = "journal.json"
MARKER_FORMAT = "dtitool-stage/1"
JOURNAL_FORMAT = "dtitool-journal/1"
OPS = ("keep", "place", "remove", "prune")
# A staging folder without a lock file is one whose creator died before locking
# it; younger ones may still be being set up.
UNLOCKED_GRACE_S = 60.0
# Markers, locks and journals are dtitool's own small JSON files; a journal
# lists one operation per output file (~100 bytes each).
MAX_META_BYTES = 64 * 2**20
# Nesting deeper than this is not a file dtitool wrote (and Python's JSON
# parser recurses: a deep enough file would crash it).
MAX_JSON_DEPTH = 64

_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_DIR_FLAGS = os.O_RDONLY | _O_DIRECTORY | _O_NOFOLLOW | _O_CLOEXEC


class UnsafePath(ValueError):
    """A path that would leave the folder it belongs to, or pass a symbolic link."""


# ----------------------------------------------------------------- paths


def rel_parts(rel) -> tuple[str, ...]:
    """Split a relative posix path into its parts, refusing any that could escape.

    Raises
    ------
    UnsafePath
        If ``rel`` is not a non-empty string, is absolute, or has an empty,
        ``.`` or ``..`` component (or a NUL byte).
    """
    if not isinstance(rel, str) or not rel or "\x00" in rel or rel.startswith("/"):
        raise UnsafePath(f"{rel!r} is not a relative path inside the folder")
    parts = tuple(rel.split("/"))
    if any(p in ("", ".", "..") for p in parts):
        raise UnsafePath(f"{rel!r} is not a relative path inside the folder "
                         "(no '..', '.' or empty parts)")
    return parts


def open_dir(root: str | os.PathLike, parts: Sequence[str], *,
             create: bool = False) -> int:
    """Open folder ``root/parts...`` without following a symbolic link below root.

    Each part is opened relative to the folder above it with ``O_NOFOLLOW``,
    so a symbolic link (or a file) where a folder should be raises
    :class:`UnsafePath` rather than being followed. ``create`` makes missing
    folders. Returns a descriptor the caller closes.
    """
    fd = os.open(root, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
    try:
        for part in parts:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o777, dir_fd=fd)
            try:
                nfd = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as e:
                if e.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise UnsafePath(
                        f"{part!r} in {os.fspath(root)!r} is a symbolic link or not "
                        "a folder; dtitool never follows one below an output folder"
                    ) from None
                raise
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def dir_fd(root, parts: Sequence[str], *, create: bool = False) -> Iterator[int]:
    """:func:`open_dir` as a context manager (the descriptor is closed on exit)."""
    fd = open_dir(root, parts, create=create)
    try:
        yield fd
    finally:
        os.close(fd)


def lstat_at(fd: int, name: str) -> os.stat_result | None:
    """``lstat`` of ``name`` in the folder open as ``fd``; None if missing."""
    try:
        return os.stat(name, dir_fd=fd, follow_symlinks=False)
    except (FileNotFoundError, NotADirectoryError):
        return None


def lstat_inside(root: Path, rel: str) -> os.stat_result | None:
    """``lstat`` of ``root/rel`` reached without following a link below ``root``.

    Returns None if it (or a folder on the way) does not exist; raises
    :class:`UnsafePath` for an unsafe ``rel`` or a link on the way.
    """
    parts = rel_parts(rel)
    try:
        with dir_fd(root, parts[:-1]) as fd:
            return lstat_at(fd, parts[-1])
    except FileNotFoundError:
        return None


def sha256_inside(root: Path, rel: str) -> str:
    """SHA-256 of the regular file ``root/rel``, opened without following links."""
    parts = rel_parts(rel)
    with dir_fd(root, parts[:-1]) as d:
        fd = os.open(parts[-1], os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC, dir_fd=d)
    with os.fdopen(fd, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _depth(obj, limit: int) -> int:
    """Nesting depth of parsed JSON, stopping once past ``limit``."""
    stack, deepest = [(obj, 1)], 0
    while stack:
        o, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > limit:
            break
        if isinstance(o, dict):
            stack.extend((v, d + 1) for v in o.values())
        elif isinstance(o, list):
            stack.extend((v, d + 1) for v in o)
    return deepest


def loads_json(text: str, what: str) -> object:
    """Parse JSON that dtitool wrote; ValueError naming ``what`` otherwise.

    Nesting deeper than :data:`MAX_JSON_DEPTH` (Python's parser would run out
    of stack on a deep enough file) is refused as not dtitool's.
    """
    try:
        data = json.loads(text)
    except RecursionError:
        raise ValueError(f"{what} is nested too deep to be a file dtitool "
                         "wrote") from None
    except ValueError as e:
        raise ValueError(f"{what} is not valid JSON ({e})") from None
    if _depth(data, MAX_JSON_DEPTH) > MAX_JSON_DEPTH:
        raise ValueError(f"{what} is nested more than {MAX_JSON_DEPTH} deep; "
                         "dtitool never writes such a file")
    return data


def _read_small(folder: Path, name: str) -> str | None:
    """Text of dtitool's own small file ``folder/name``; None if missing or not one.

    Opened without following a link; a file larger than
    :data:`MAX_META_BYTES` or not UTF-8 is not one of dtitool's.
    """
    try:
        fd = os.open(folder / name, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None
        data = f.read(MAX_META_BYTES + 1)
    if len(data) > MAX_META_BYTES:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


# ----------------------------------------------------------------- identity


def stage_name(key: str) -> str:
    """Name of the staging folder of destination ``key`` (its first path part).

    ``""`` is the destination itself (a run staged inside its destination
    because the folder above cannot be written).
    """
    name = STAGE_PREFIX + (f"-{key}" if key else "")
    if len(name.encode()) > 200:
        name = STAGE_PREFIX + "-" + hashlib.sha256(key.encode()).hexdigest()[:16]
    return name


def new_token() -> str:
    """Return a random identity for a staging folder or a run.

    Not drawn from a seeded stream: it is never part of an output.
    """
    return secrets.token_hex(16)


def _is_token(v) -> bool:
    return (isinstance(v, str) and len(v) == 32
            and all(c in "0123456789abcdef" for c in v))


def identify(path: Path) -> tuple[dict | None, str]:
    """Return ``(marker, "")`` for a dtitool staging folder, else ``(None, why)``.

    A dtitool staging folder is a real folder (not a link) owned by the
    current user, holding a valid marker whose token, folder and destination
    match the folder itself. ``why`` is ``"gone"`` if there is nothing at
    ``path``.
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None, "gone"
    except OSError as e:
        return None, f"it cannot be read ({e.strerror})"
    if not stat.S_ISDIR(st.st_mode):
        return None, "it is not a folder"
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        return None, f"it belongs to another user (uid {st.st_uid})"
    text = _read_small(path, MARKER)
    if text is None:
        return None, f"it has no dtitool marker ({MARKER})"
    try:
        m = loads_json(text, MARKER)
    except ValueError:
        m = None
    if not isinstance(m, dict) or m.get("format") != MARKER_FORMAT:
        return None, f"its {MARKER} is not a dtitool marker"
    key = m.get("key")
    if not (_is_token(m.get("token")) and _is_token(m.get("run"))
            and isinstance(key, str) and "/" not in key and key not in (".", "..")):
        return None, f"its {MARKER} is not a dtitool marker"
    if m.get("anchor") != os.path.realpath(path.parent):
        return None, f"its {MARKER} names another folder ({m.get('anchor')!r})"
    if not (path.name == stage_name(key) or path.name.startswith(NEW_PREFIX)):
        return None, f"its {MARKER} names another destination ({key!r})"
    return m, ""


def write_marker(folder: Path, *, anchor: Path, key: str, token: str, run: str,
                 command: str | None, destination: Path) -> None:
    """Write the marker of a new staging folder (before its lock)."""
    data = json.dumps({
        "format": MARKER_FORMAT,
        "description": "A dtitool run stages its outputs here; dtitool removes "
        "this folder when the run ends, or the next run beside it does.",
        "token": token, "run": run, "key": key,
        "anchor": os.path.realpath(anchor), "destination": str(destination),
        "command": command, "pid": os.getpid(),
        "uid": os.geteuid() if hasattr(os, "geteuid") else None,
    }, indent=1).encode()
    fd = os.open(folder / MARKER, os.O_CREAT | os.O_EXCL | os.O_WRONLY
                 | _O_NOFOLLOW | _O_CLOEXEC, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


# ----------------------------------------------------------------- locks


def lock_nb(fd: int) -> bool:
    """Try to take an exclusive lock on ``fd``; False if another process holds it."""
    if fcntl is None:  # pragma: no cover
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise
    return True


def lock_info(stage: Path) -> str:
    """``(dtitool COMMAND, pid N)`` of the run holding ``stage``, or ``""``."""
    text = _read_small(stage, LOCK)
    try:
        info = loads_json(text, LOCK) if text else None
        return f"(dtitool {info.get('command') or 'run'}, pid {info.get('pid')})"
    except (ValueError, AttributeError):
        return ""


def _age(path: Path) -> float:
    try:
        return time.time() - os.lstat(path).st_mtime
    except OSError:
        return 0.0


# ----------------------------------------------------------------- journal


def _split(rel: str) -> tuple[tuple[str, ...], str]:
    parts = rel_parts(rel)
    return parts[:-1], parts[-1]


def do_op(stage: Path, anchor: Path, op: str, rel: str) -> bool:
    """Carry out one journal operation; return whether it changed anything.

    ``keep``: hard-link a file about to be replaced into the staging folder
    (so that at every moment the destination holds the old or the new file);
    ``place``: move a new file or folder into place; ``remove``: move a file of
    a retired run aside; ``prune``: remove a folder that became empty. Each is
    idempotent, so that a commit cut short can be run again from the start.
    Every path is reached without following a link (:func:`open_dir`); only
    regular files are kept or removed.
    """
    head, name = _split(rel)
    sname = stage.name
    if op in ("keep", "remove"):
        try:
            tfd = open_dir(anchor, head)
        except FileNotFoundError:
            return False
        try:
            st = lstat_at(tfd, name)
            if st is None or not stat.S_ISREG(st.st_mode):
                return False
            if op == "keep":
                try:
                    with dir_fd(anchor, (sname, "new", *head)) as nfd:
                        if lstat_at(nfd, name) is None:
                            return False  # already placed: the old file is gone
                except FileNotFoundError:
                    return False
            with dir_fd(anchor, (sname, "old", *head), create=True) as ofd:
                if lstat_at(ofd, name) is not None:
                    return False
                if op == "keep":
                    try:
                        os.link(name, name, src_dir_fd=tfd, dst_dir_fd=ofd,
                                follow_symlinks=False)
                        return True
                    except OSError:  # no hard links on this file system
                        pass
                os.replace(name, name, src_dir_fd=tfd, dst_dir_fd=ofd)
                return True
        finally:
            os.close(tfd)
    if op == "place":
        try:
            nfd = open_dir(anchor, (sname, "new", *head))
        except FileNotFoundError:
            return False
        try:
            if lstat_at(nfd, name) is None:
                return False
            with dir_fd(anchor, head) as tfd:
                os.replace(name, name, src_dir_fd=nfd, dst_dir_fd=tfd)
            return True
        finally:
            os.close(nfd)
    if op == "prune":
        try:
            with dir_fd(anchor, head) as tfd:
                os.rmdir(name, dir_fd=tfd)  # only an empty folder; never a link
        except OSError:
            return False
        return True
    raise ValueError(f"unknown journal operation {op!r}")  # pragma: no cover


def undo_op(stage: Path, anchor: Path, op: str, rel: str) -> None:
    """Undo one operation :func:`do_op` carried out."""
    head, name = _split(rel)
    sname = stage.name
    if op in ("keep", "remove"):
        with (dir_fd(anchor, (sname, "old", *head)) as ofd,
              dir_fd(anchor, head) as tfd):
            os.replace(name, name, src_dir_fd=ofd, dst_dir_fd=tfd)
    elif op == "place":
        with (dir_fd(anchor, (sname, "new", *head), create=True) as nfd,
              dir_fd(anchor, head) as tfd):
            os.replace(name, name, src_dir_fd=tfd, dst_dir_fd=nfd)
    elif op == "prune":
        with dir_fd(anchor, head) as tfd, contextlib.suppress(FileExistsError):
            os.mkdir(name, dir_fd=tfd)


def write_journal(stage: Path, *, marker: dict, ops: Sequence[tuple[str, str]],
                  siblings: Iterable[Path]) -> None:
    """Write (and sync) the journal of a commit about to start."""
    data = json.dumps({
        "format": JOURNAL_FORMAT, "token": marker["token"], "run": marker["run"],
        "anchor": marker["anchor"], "key": marker["key"],
        "ops": [list(o) for o in ops],
        "siblings": [str(p) for p in siblings],
    })
    tmp = stage / (JOURNAL + ".part")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, stage / JOURNAL)


def read_journal(stage: Path, marker: dict) -> dict:
    """Return the journal of a dead run's staging folder, checked against its marker.

    Raises
    ------
    ValueError
        If the journal is not one dtitool wrote for this folder: another
        format, token or folder, an unknown operation, or a path that is not
        inside the destination the folder belongs to.
    """
    where = str(stage / JOURNAL)

    def bad(why: str) -> ValueError:
        return ValueError(
            f"{where!r} is not a journal dtitool wrote for this folder ({why}); "
            f"nothing was done: remove {str(stage)!r} if no dtitool run is using it"
        )

    text = _read_small(stage, JOURNAL)
    if text is None:
        raise bad("it is not a readable dtitool file")
    try:
        j = loads_json(text, "it")
    except ValueError as e:
        raise bad(str(e)) from None
    if not isinstance(j, dict) or j.get("format") != JOURNAL_FORMAT:
        raise bad("unknown format")
    for k in ("token", "run", "anchor", "key"):
        if j.get(k) != marker.get(k):
            raise bad(f"its {k} is not the folder's")
    ops, sibs = j.get("ops"), j.get("siblings", [])
    if not isinstance(ops, list) or not isinstance(sibs, list):
        raise bad("no list of operations")
    key = marker["key"]
    for o in ops:
        if not (isinstance(o, list) and len(o) == 2 and o[0] in OPS):
            raise bad(f"operation {o!r} is not one of {', '.join(OPS)}")
        try:
            parts = rel_parts(o[1])
        except UnsafePath as e:
            raise bad(str(e)) from None
        if (key and parts[0] != key) or parts[0].startswith((STAGE_PREFIX,
                                                            NEW_PREFIX)):
            raise bad(f"{o[1]!r} is outside the destination "
                      f"{os.path.join(marker['anchor'], key)!r}")
    for s in sibs:
        if not (isinstance(s, str) and os.path.isabs(s)
                and os.path.basename(s).startswith(STAGE_PREFIX)):
            raise bad(f"sibling {s!r} is not a dtitool staging folder")
    return j


def roll_forward(stage: Path, marker: dict) -> None:
    """Complete the commit journalled in ``stage`` (a run that died committing)."""
    j = read_journal(stage, marker)
    anchor = Path(marker["anchor"])
    if not anchor.is_dir():
        return
    skipped = []
    for op, rel in j["ops"]:
        try:
            do_op(stage, anchor, op, rel)
        except UnsafePath:
            skipped.append(rel)
        except OSError:
            pass
    if skipped:
        warnings.warn(
            f"completing the interrupted dtitool run in {str(anchor)!r} left "
            f"{len(skipped)} path(s) alone, the first {skipped[0]!r}: a symbolic "
            "link or a file stands where it wrote a folder", stacklevel=2)
    # Sibling stages of the same run (another output folder) finish too.
    for sib in j["siblings"]:
        p = Path(sib)
        if p != stage:
            reap(p, run=marker["run"])


# ----------------------------------------------------------------- recovery


def reap(path: Path, *, run: str | None = None) -> str:
    """Remove a dead run's staging folder, completing its commit.

    Returns ``"gone"`` (nothing there any more), ``"busy"`` (a live run holds
    it, or it is too young to judge) or ``"foreign"`` (not a dtitool staging
    folder, or not of run ``run``: left alone, with a warning).
    """
    marker, why = identify(path)
    if marker is None:
        if why == "gone":
            return "gone"
        if (path.name.startswith(NEW_PREFIX) and why.startswith("it has no")
                and _age(path) >= UNLOCKED_GRACE_S):
            with contextlib.suppress(OSError):  # a creator that died at once
                os.rmdir(path)  # leaves it empty; anything in it is kept
            if not os.path.lexists(path):
                return "gone"
        warnings.warn(
            f"left {str(path)!r} alone: it is named like a dtitool staging folder "
            f"but {why}; remove it if no dtitool run is using it", stacklevel=2)
        return "foreign"
    if run is not None and marker["run"] != run:
        warnings.warn(f"left {str(path)!r} alone: it belongs to another dtitool "
                      "run than the journal that named it", stacklevel=2)
        return "foreign"
    try:
        fd = os.open(path / LOCK, os.O_RDWR | _O_NOFOLLOW | _O_CLOEXEC)
    except FileNotFoundError:
        if _age(path) < UNLOCKED_GRACE_S:
            return "busy"
        if os.path.lexists(path / JOURNAL):  # only a locked run journals
            warnings.warn(f"left {str(path)!r} alone: it has a journal but no "
                          "lock, which no dtitool run leaves", stacklevel=2)
            return "foreign"
        shutil.rmtree(path, ignore_errors=True)
        return "busy" if os.path.lexists(path) else "gone"
    except OSError:
        return "busy"
    try:
        if fcntl is None and _age(path) < 24 * 3600:  # pragma: no cover
            return "busy"  # no kernel locks here: only a day-old folder is dead
        if not lock_nb(fd):
            return "busy"
        text = _read_small(path, LOCK) or ""
        try:
            token = loads_json(text, LOCK).get("token") if text.strip() else None
        except (ValueError, AttributeError):
            token = "?"
        if token not in (None, marker["token"]):  # None: died before writing it
            warnings.warn(f"left {str(path)!r} alone: its lock and its marker name "
                          "different runs", stacklevel=2)
            return "foreign"
        if os.path.lexists(path / JOURNAL):
            roll_forward(path, marker)
        shutil.rmtree(path, ignore_errors=True)
    finally:
        os.close(fd)
    return "busy" if os.path.lexists(path) else "gone"


def sweep(folder: Path, keep: Iterable[Path] = ()) -> None:
    """Reap every dead staging folder directly inside ``folder``."""
    keep = {Path(k) for k in keep}
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for e in sorted(entries, key=lambda e: e.name):
        if not e.name.startswith((STAGE_PREFIX, NEW_PREFIX)):
            continue
        p = Path(e.path)
        if p in keep:
            continue
        reap(p)


def remove_stage(path: Path) -> None:
    """Remove this process's own staging folder, its lock file last.

    Killed half-way, the folder keeps its marker and lock file, so the next run
    sees a dead run's folder (lock free) and reaps it at once, rather than a
    lockless folder it must leave alone for a while (it could be one being set
    up).
    """
    try:
        entries = list(os.scandir(path))
    except OSError:
        return
    for e in entries:
        if e.name in (LOCK, MARKER):
            continue
        if e.is_dir(follow_symlinks=False):
            shutil.rmtree(e.path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(e.path)
    with contextlib.suppress(OSError):
        os.unlink(path / LOCK)
    shutil.rmtree(path, ignore_errors=True)
