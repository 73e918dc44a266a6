"""The one output protocol every dtitool writer goes through.

Tables are read and written by :mod:`dtitool._tsv` (re-exported here as
:func:`read_tsv` and :func:`write_tsv`). Every file dtitool writes goes through
:func:`atomic_outputs` (or, for a run with several output folders,
:func:`output_transaction`); ``docs/outputs.md`` describes the protocol for
users. In short:

- **Staged, then committed together.** A run writes into one temporary folder
  (``.dtitool-tmp-NAME``) beside its destination. Only when every output is
  complete are they moved into place, by ``rename`` within one file system: a
  new folder appears with one rename; into an existing folder, the old files are
  first moved aside and a journal is written, so that a commit cut short (even
  by SIGKILL or a power cut) is completed by the next run. A failed or
  interrupted run changes nothing in the destination and leaves no folder
  behind. SIGINT/SIGTERM wait for a commit or rollback to finish.
- **A manifest.** Each destination folder gets ``dtitool-run.json``: per run,
  the command, dtitool version, arguments, options, seed, and every file it
  wrote with its size and SHA-256.
- **--force replaces only dtitool's own files**: files listed in the
  destination's manifest and unchanged since (same SHA-256). A file of the
  user's, a changed file, a non-regular file (device, FIFO, symbolic link,
  folder) and any input of the same run are never replaced, with or without
  ``force``. Files of a superseded earlier run that the new run does not write
  again are removed with it, so a folder never mixes two runs of one command.
- **Outputs of one run never collide**, and a lock (an ``flock`` on a file in
  the staging folder, released by the kernel when the process dies) refuses a
  second run into the same destination. Staging folders of dead runs are
  removed (or their commit completed) by the next run.

A writer that runs inside another's staging folder (e.g. the images written by
``dtitool simulate --images``) writes straight into it: its files are part of
the outer run and its manifest.
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import hashlib
import json
import os
import shutil
import stat
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

from dtitool import _staging
from dtitool._staging import JOURNAL as _JOURNAL
from dtitool._staging import LOCK as _LOCK
from dtitool._staging import NEW_PREFIX as _NEW_PREFIX
from dtitool._staging import UnsafePath
from dtitool._staging import do_op as _do_op
from dtitool._staging import lock_nb as _lock_nb
from dtitool._staging import reap as _reap
from dtitool._staging import remove_stage as _remove_stage
from dtitool._staging import sweep as _sweep
from dtitool._staging import undo_op as _undo_op
from dtitool._tsv import FLOAT_FORMAT, read_tsv, write_tsv
from dtitool._workers import (
    available_cpus,
    commit_point,
    deferred_signals,
    parent_only,
)

__all__ = [
    "FLOAT_FORMAT",
    "MANIFEST_NAME",
    "OutputTransaction",
    "atomic_outputs",
    "file_sha256",
    "output_transaction",
    "read_manifest",
    "read_tsv",
    "run_context",
    "write_tsv",
]


MANIFEST_NAME = "dtitool-run.json"
"""File name of the manifest written into every destination folder."""

MANIFEST_FORMAT = "dtitool-run/1"



# ----------------------------------------------------------------- run context


@dataclass(frozen=True)
class _RunInfo:
    command: str | None = None
    arguments: tuple[str, ...] | None = None
    options: Mapping | None = None


_CONTEXT: contextvars.ContextVar[_RunInfo | None] = contextvars.ContextVar(
    "dtitool_run", default=None
)


@contextlib.contextmanager
def run_context(*, command: str, arguments: Sequence[str],
                options: Mapping | None = None) -> Iterator[None]:
    """Name the command whose outputs are written inside this block.

    The command line enters it around every command, so that each manifest
    records ``dtitool COMMAND ARGUMENTS`` and the parsed options, whichever
    library function does the writing.
    """
    token = _CONTEXT.set(_RunInfo(command, tuple(arguments),
                                  dict(options) if options else None))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def _jsonable(v):
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple | set | frozenset):
        return [_jsonable(x) for x in v]
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, os.PathLike):
        return os.fspath(v)
    if hasattr(v, "item"):  # numpy scalar
        return _jsonable(v.item())
    return repr(v)


# ----------------------------------------------------------------- manifests


def file_sha256(path: str | os.PathLike) -> str:
    """Return the SHA-256 of a file's bytes, as hex."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _file_records(items) -> dict:
    """``{rel: {"bytes", "sha256"}}`` of ``(rel, path)`` items, hashed in threads.

    hashlib releases the GIL while it hashes, so a run that wrote hundreds of
    megabytes (the demo's images) has them hashed on every CPU at once.
    """
    items = list(items)
    if len(items) < 8:
        digests = [file_sha256(p) for _, p in items]
    else:
        import concurrent.futures as cf

        with cf.ThreadPoolExecutor(max_workers=min(len(items),
                                                   available_cpus())) as pool:
            digests = list(pool.map(file_sha256, [p for _, p in items]))
    return {rel: {"bytes": p.stat().st_size, "sha256": h}
            for (rel, p), h in zip(items, digests, strict=True)}


def read_manifest(folder: str | os.PathLike) -> dict:
    """Return the parsed ``dtitool-run.json`` of ``folder`` (empty runs if none).

    Raises
    ------
    ValueError
        If the file exists but is not a dtitool manifest.
    """
    path = Path(folder) / MANIFEST_NAME
    try:
        st = path.lstat()
    except FileNotFoundError:
        return {"format": MANIFEST_FORMAT, "runs": []}
    except NotADirectoryError:
        return {"format": MANIFEST_FORMAT, "runs": []}
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(f"{str(path)!r} exists and is not a regular file; dtitool "
                         "keeps its manifest there: move it away")
    why = ""
    try:
        data = _staging.loads_json(path.read_text(encoding="utf-8"), "it")
        runs = data["runs"]
        ok = (data.get("format") == MANIFEST_FORMAT and isinstance(runs, list)
              and all(isinstance(r, dict) and isinstance(r.get("files"), dict)
                      for r in runs))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError,
            AttributeError) as e:
        ok, why = False, f": {e}" if isinstance(e, ValueError) else ""
    if not ok:
        raise ValueError(
            f"{str(path)!r} is not a readable dtitool manifest (format "
            f"{MANIFEST_FORMAT}){why}; dtitool records its outputs there: move the "
            "file away"
        )
    for run in runs:
        for rel, rec in run["files"].items():
            try:
                _staging.rel_parts(rel)
            except UnsafePath:
                raise ValueError(
                    f"{str(path)!r} lists {rel!r}, which is not a path inside "
                    f"{str(folder)!r}; dtitool never writes such an entry (the "
                    "manifest was edited): nothing was changed; move the manifest "
                    "away"
                ) from None
            if not (isinstance(rec, dict) and isinstance(rec.get("bytes"), int)
                    and isinstance(rec.get("sha256"), str)):
                raise ValueError(
                    f"{str(path)!r} has no size and SHA-256 for {rel!r}; dtitool "
                    "always records both (the manifest was edited): move it away"
                )
    return data


def _manifest_owner(manifest: dict, rel: str) -> dict | None:
    for run in manifest["runs"]:
        if rel in run["files"]:
            return run
    return None


# ----------------------------------------------------------------- transaction


@dataclass
class _Dest:
    path: Path  # resolved destination folder
    rel: PurePosixPath  # relative to the stage's anchor
    names: dict[str, str] = field(default_factory=dict)  # name -> label


@dataclass
class _Stage:
    anchor: Path
    path: Path
    fd: int
    marker: dict  # the folder's identity (dtitool._staging)
    dests: dict[Path, _Dest] = field(default_factory=dict)
    ops: list[tuple[str, str]] = field(default_factory=list)
    done: list[tuple[str, str]] = field(default_factory=list)

    @property
    def new(self) -> Path:
        return self.path / "new"


_ACTIVE: list[Path] = []  # staging roots of this process's open transactions


def _inside_active_stage(path: Path) -> bool:
    p = Path(os.path.realpath(path))
    return any(p == a or a in p.parents for a in _ACTIVE)


def _resolve(path) -> Path:
    return Path(os.path.realpath(os.fspath(path)))


def _check_names(names: Sequence[str]) -> list[str]:
    if isinstance(names, str):
        names = [names]
    out = []
    for n in names:
        n = os.fspath(n)
        p = PurePosixPath(n.replace(os.sep, "/"))
        if (not n or p.is_absolute() or ".." in p.parts or str(p) in ("", ".")):
            raise ValueError(f"output name {n!r} must be a relative path inside the "
                             "output folder")
        if str(p) == MANIFEST_NAME:
            raise ValueError(f"{MANIFEST_NAME!r} is the name of dtitool's manifest; "
                             "choose another output name")
        out.append(str(p))
    return out


def _is_input(target: Path, inputs: Mapping[Path, str]) -> str | None:
    """Return the input (as the user named it) that ``target`` is, or None."""
    rt = _resolve(target)
    for rp, given in inputs.items():
        if rt == rp:
            return given
        with contextlib.suppress(OSError):
            if os.path.exists(rt) and os.path.exists(rp) and os.path.samefile(rt, rp):
                return given
    return None


class OutputTransaction:
    """Outputs of one run, possibly in several folders, committed together.

    Made by :func:`output_transaction`; :meth:`destination` adds a folder and
    returns the staging folder to write into. See the module docstring for the
    protocol.
    """

    def __init__(self, *, force: bool, inputs, seed, command, arguments, options):
        self.force = bool(force)
        self.inputs: dict[Path, str] = {}
        for p in inputs or ():
            if p is None:
                continue
            self.inputs[_resolve(p)] = os.fspath(p)
        self.seed = seed
        ctx = _CONTEXT.get()
        self.command = (ctx.command if ctx and ctx.command else command)
        self.arguments = (list(ctx.arguments) if ctx and ctx.arguments is not None
                          else None if arguments is None else list(arguments))
        self.options = (ctx.options if ctx and ctx.options is not None else options)
        self.stages: dict[Path, _Stage] = {}
        self.shown: dict[Path, str] = {}  # destination -> as the user named it
        # (output path, option that named it, path as the user wrote it)
        self.declared: list[tuple[Path, str, str]] = []
        self.manifests: dict[Path, dict] = {}
        self._hashes: dict[tuple, str] = {}
        # One identity for the run's staging folders, so that recovering one
        # completes its siblings (other output folders) and no other folder.
        self.run = _staging.new_token()

    def named(self, e: OSError) -> OSError:
        """``e`` with the output folder(s) named, if it names no file itself.

        A write that fails for want of space or quota (``[Errno 28]``) reports
        no file name; the user needs to know which output could not be
        written, and that nothing of it was kept.
        """
        if e.errno is None or (e.filename is not None
                               and os.path.isabs(os.fspath(e.filename))):
            return e  # not a failed write (a worker died), or it names its file
        where = ", ".join(repr(v) for v in dict.fromkeys(self.shown.values()))
        return OSError(e.errno, f"{e.strerror or e} while writing the outputs to "
                       f"{where or 'the output folder'}; nothing was written there")

    def _sha256(self, path: Path, st, *, inside: tuple[Path, str] | None = None
                ) -> str:
        """SHA-256 of an existing file, hashed once per run (size, time, inode).

        ``inside=(folder, rel)`` opens ``path`` as ``rel`` below ``folder``
        without following a link (a path taken from a manifest).
        """
        key = (str(path), st.st_size, st.st_mtime_ns, st.st_ino)
        if key not in self._hashes:
            self._hashes[key] = (file_sha256(path) if inside is None
                                 else _staging.sha256_inside(*inside))
        return self._hashes[key]

    def _show(self, dest: Path, rel: str = "") -> str:
        base = self.shown.get(dest, str(dest))
        return os.path.join(base, rel) if rel else base

    # -- adding destinations ------------------------------------------------

    def destination(self, out_dir, names: Sequence[str], *,
                    label: str | None = None) -> Path:
        """Add output folder ``out_dir`` with outputs ``names``; return its stage.

        Parameters
        ----------
        out_dir : str or path-like
            Destination folder (created on commit if missing).
        names : sequence of str
            Relative paths of the outputs (sub-folders allowed). Files written
            into the stage beyond these are outputs too (and in the manifest).
        label : str, optional
            How the user named this output (``"--figures"``), for messages.

        Returns
        -------
        pathlib.Path
            Folder to write the outputs into (mirrors ``out_dir``).

        Raises
        ------
        ValueError
            If an output exists (without ``force``), is not dtitool's, is a
            non-regular file or an input of the run, collides with another
            output, or another run is writing to the folder.
        """
        names = _check_names(names)
        given = os.fspath(out_dir)
        dest = _resolve(out_dir)
        self.shown.setdefault(dest, given)
        if os.path.lexists(dest) and not dest.is_dir():
            raise ValueError(f"output folder {given!r} exists and is not a folder")
        label = label or "--out"
        for n in names:
            p = dest / n
            for q, qlabel, qshown in self.declared:
                if p == q or q in p.parents or p in q.parents:
                    how = "are the same path" if p == q else "overlap (one is inside " \
                        "the other)"
                    raise ValueError(
                        f"outputs collide: {self._show(dest, n)!r} ({label}) and "
                        f"{qshown!r} ({qlabel}) {how}; give them different names"
                    )
            self.declared.append((p, label, self._show(dest, n)))
        # Lock first: the manifest read below cannot change under us.
        stage = self._stage_for(dest)
        manifest = self._manifest(dest)
        existing = []
        for n in names:
            target = dest / n
            self._check_path_into(dest, n)
            inp = _is_input(target, self.inputs)
            if inp is not None:
                raise ValueError(
                    f"output {self._show(dest, n)!r} would replace {inp!r}, an "
                    "input of this run; write the outputs elsewhere"
                )
            try:
                st = target.lstat()
            except (FileNotFoundError, NotADirectoryError):
                continue
            if stat.S_ISDIR(st.st_mode):
                continue  # a folder of outputs: checked file by file on commit
            existing.append(n)
            self._check_replaceable(dest, n, st, manifest)
        if existing and not self.force:
            raise ValueError(
                f"{self._show(dest, existing[0])!r} already exists ({len(existing)} of "
                f"{len(names)} outputs do); use --force to replace the outputs of "
                "an earlier dtitool run"
            )
        d = stage.dests.get(dest)
        if d is None:
            rel = PurePosixPath(Path(os.path.relpath(dest, stage.anchor)).as_posix())
            d = stage.dests[dest] = _Dest(dest, rel)
        for n in names:
            d.names[n] = label
        folder = stage.new / d.rel
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def _manifest(self, dest: Path) -> dict:
        if dest not in self.manifests:
            self.manifests[dest] = read_manifest(dest) if dest.is_dir() else {
                "format": MANIFEST_FORMAT, "runs": []}
        return self.manifests[dest]

    def _check_replaceable(self, dest: Path, rel: str, st, manifest) -> None:
        target = self._show(dest, rel)
        mpath = self._show(dest, MANIFEST_NAME)
        if not stat.S_ISREG(st.st_mode):
            kind = ("a symbolic link" if stat.S_ISLNK(st.st_mode) else
                    "a folder" if stat.S_ISDIR(st.st_mode) else "not a regular file")
            raise ValueError(
                f"{target!r} exists and is {kind}; dtitool never replaces it "
                "(with or without --force): choose another output path"
            )
        if not self.force:
            return
        owner = _manifest_owner(manifest, rel)
        if owner is None:
            raise ValueError(
                f"{target!r} exists and is not listed in {mpath!r}; --force "
                "replaces only files an earlier dtitool run wrote there: move the "
                "file away or choose another output folder"
            )
        rec = owner["files"][rel]
        if rec.get("bytes") != st.st_size or rec.get("sha256") != self._sha256(
                dest / rel, st):
            raise ValueError(
                f"{target!r} was changed after dtitool wrote it (it differs from "
                f"{mpath!r}); --force replaces only unchanged dtitool outputs: "
                "move the file away or choose another output folder"
            )

    def _stage_for(self, dest: Path) -> _Stage:
        if dest.exists():
            parent = dest.parent
            try:
                same_dev = parent.stat().st_dev == dest.stat().st_dev
            except OSError:
                same_dev = False
            if (parent != dest and same_dev
                    and os.access(parent, os.W_OK | os.X_OK)):
                anchor, key = parent, dest.name
            else:
                anchor, key = dest, ""
        else:
            a, key = dest, dest.name
            while not os.path.lexists(a):
                key, a = a.name, a.parent
            if not a.is_dir():
                raise ValueError(f"cannot create output folder {self._show(dest)!r}: "
                                 f"{str(a)!r} is not a folder")
            anchor = a
        path = anchor / _staging.stage_name(key)
        if path in self.stages:
            return self.stages[path]
        _sweep(anchor, keep=self.stages)
        if dest.is_dir() and dest != anchor:
            _sweep(dest, keep=self.stages)
        stage = self._create_stage(anchor, path, dest, key)
        self.stages[path] = stage
        _ACTIVE.append(stage.new)
        return stage

    def _create_stage(self, anchor: Path, path: Path, dest: Path,
                      key: str) -> _Stage:
        """Make, mark and lock a staging folder, then give it its name.

        Set up under a unique temporary name first (marker, then lock, then
        ``new/``), so that the folder named for the destination is always
        complete and locked.
        """
        pre = Path(tempfile.mkdtemp(prefix=_NEW_PREFIX, dir=anchor))
        fd = -1
        token = _staging.new_token()
        try:
            _staging.write_marker(pre, anchor=anchor, key=key, token=token,
                                  run=self.run, command=self.command,
                                  destination=dest)
            fd = os.open(pre / _LOCK, os.O_CREAT | os.O_EXCL | os.O_RDWR
                         | getattr(os, "O_CLOEXEC", 0), 0o644)
            parent_only(fd)  # forked workers do not keep the lock
            _lock_nb(fd)
            os.write(fd, json.dumps({"pid": os.getpid(), "command": self.command,
                                     "destination": str(dest),
                                     "token": token}).encode())
            (pre / "new").mkdir()
            for _ in range(5):
                try:
                    os.rename(pre, path)
                    break
                except OSError as e:
                    if e.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                        raise
                    status = _reap(path)
                    if status == "gone":
                        continue
                    if status == "foreign":
                        raise ValueError(
                            f"{str(path)!r} exists and is not a staging folder of "
                            f"dtitool's; dtitool stages the outputs for "
                            f"{self._show(dest)!r} there: move it away"
                        ) from None
                    who = " ".join(x for x in ("another dtitool run",
                                               _staging.lock_info(path)) if x)
                    raise ValueError(
                        f"{who} is writing to {self._show(dest)!r}; wait for it to "
                        "finish or choose another output folder"
                    ) from None
            else:  # pragma: no cover - a stale folder that keeps coming back
                raise ValueError(f"cannot lock {str(dest)!r}: {str(path)!r} is busy")
        except BaseException:
            if fd >= 0:
                parent_only(fd, held=False)
                os.close(fd)
            shutil.rmtree(pre, ignore_errors=True)
            raise
        marker, _ = _staging.identify(path)
        if marker is None or marker["token"] != token:  # pragma: no cover
            raise RuntimeError(f"internal error: staging folder {str(path)!r} "
                               "lost its marker")
        return _Stage(anchor=anchor, path=path, fd=fd, marker=marker)

    # -- commit ---------------------------------------------------------------

    def _files_of(self, stage: _Stage, d: _Dest) -> dict[str, Path]:
        """Every file staged for destination ``d`` (relative posix path -> file)."""
        root = stage.new / d.rel
        inner = [stage.new / o.rel for o in stage.dests.values()
                 if o is not d and (stage.new / d.rel) in (stage.new / o.rel).parents]
        out = {}
        for dirpath, dirnames, filenames in os.walk(root):
            dp = Path(dirpath)
            dirnames[:] = sorted(x for x in dirnames if dp / x not in inner)
            for f in sorted(filenames):
                p = dp / f
                rel = p.relative_to(root).as_posix()
                if not stat.S_ISREG(p.lstat().st_mode):
                    raise ValueError(f"internal error: staged output {rel!r} is not "
                                     "a regular file")
                out[rel] = p
        return out

    def _prepare(self, stage: _Stage, written: str) -> None:
        from dtitool import __version__

        replace: set[str] = set()  # anchor-relative files to back up and replace
        remove: list[str] = []  # anchor-relative leftovers to back up only
        prunes: set[PurePosixPath] = set()  # folders that may be left empty
        manifests: list[str] = []
        for d in stage.dests.values():
            root = stage.new / d.rel
            missing = [n for n in d.names if not os.path.lexists(root / n)]
            if missing:
                raise RuntimeError(f"internal error: outputs not written: {missing}")
            if os.path.lexists(root / MANIFEST_NAME):
                raise RuntimeError(f"internal error: {MANIFEST_NAME} written by a "
                                   "writer")
            files = self._files_of(stage, d)
            manifest = self._manifest(d.path)
            for rel in files:
                target = d.path / rel
                shown = self._show(d.path, rel)
                self._check_path_into(d.path, rel)
                try:
                    st = target.lstat()
                except (FileNotFoundError, NotADirectoryError):
                    continue
                if not self.force and stat.S_ISREG(st.st_mode):
                    raise ValueError(
                        f"{shown!r} already exists; use --force to replace "
                        "the outputs of an earlier dtitool run"
                    )
                self._check_replaceable(d.path, rel, st, manifest)
                inp = _is_input(target, self.inputs)
                if inp is not None:
                    raise ValueError(
                        f"output {shown!r} would replace {inp!r}, an input of "
                        "this run; write the outputs elsewhere"
                    )
                replace.add((d.rel / rel).as_posix())
            new_set = set(files)
            kept, superseded = [], []
            for run in manifest["runs"]:
                (superseded if set(run["files"]) & new_set else kept).append(run)
            for run in superseded:
                behind_links = []
                for rel, rec in run["files"].items():
                    if rel in new_set:
                        continue
                    target = d.path / rel
                    try:  # never through a link: what lies beyond is not ours
                        st = _staging.lstat_inside(d.path, rel)
                    except UnsafePath:
                        behind_links.append(rel)
                        continue
                    if st is None:
                        continue
                    if not stat.S_ISREG(st.st_mode) or st.st_size != rec.get(
                            "bytes") or self._sha256(target, st, inside=(
                                d.path, rel)) != rec.get("sha256"):
                        continue  # changed since: the user's now, left alone
                    inp = _is_input(target, self.inputs)
                    if inp is not None:
                        raise ValueError(
                            f"replacing the outputs of the earlier dtitool "
                            f"{run.get('command') or ''} run in "
                            f"{self._show(d.path)!r} would also remove "
                            f"{self._show(d.path, rel)!r}, an input of this "
                            "run (given as {!r}); write the outputs elsewhere"
                            .format(inp)
                        )
                    remove.append((d.rel / rel).as_posix())
                    parent = (d.rel / rel).parent
                    while len(parent.parts) > len(d.rel.parts):
                        prunes.add(parent)
                        parent = parent.parent
                if behind_links:
                    warnings.warn(
                        f"left {len(behind_links)} file(s) of the earlier dtitool "
                        f"{run.get('command') or ''} run in {self._show(d.path)!r} "
                        f"alone, the first {behind_links[0]!r}: a symbolic link (or "
                        "a file) stands where that run wrote a folder, and dtitool "
                        "never follows one", stacklevel=2)
            record = {
                "command": self.command,
                "dtitool_version": __version__,
                "arguments": _jsonable(self.arguments),
                "options": _jsonable(self.options),
                "seed": _jsonable(self.seed),
                "written": written,
                "files": _file_records(sorted(files.items())),
            }
            text = json.dumps({
                "format": MANIFEST_FORMAT,
                "description": "Files written by dtitool into this folder, per run "
                "(command, version, arguments, seed, size and SHA-256 of every "
                "file). 'dtitool ... --force' replaces only files listed here and "
                "unchanged since.",
                "runs": [*kept, record],
            }, indent=1) + "\n"
            (root / MANIFEST_NAME).write_text(text, encoding="utf-8")
            mrel = (d.rel / MANIFEST_NAME).as_posix()
            if os.path.lexists(stage.anchor / mrel):
                replace.add(mrel)
            manifests.append(mrel)

        places = []
        self._plan(stage, PurePosixPath("."), replace, places)
        places.sort(key=lambda r: (r in manifests, r))
        # deepest first, so that a folder emptied of its sub-folders goes too
        pruned = sorted(prunes, key=lambda p: (-len(p.parts), p.as_posix()))
        stage.ops = ([("keep", r) for r in sorted(replace)]
                     + [("place", r) for r in places]
                     + [("remove", r) for r in sorted(remove)]
                     + [("prune", p.as_posix()) for p in pruned])

    def _check_path_into(self, dest: Path, rel: str) -> None:
        """Every existing folder between ``dest`` and ``dest/rel`` must be a folder."""
        p = dest
        for part in PurePosixPath(rel).parent.parts:
            p = p / part
            try:
                st = p.lstat()
            except (FileNotFoundError, NotADirectoryError):
                return
            if not stat.S_ISDIR(st.st_mode):
                raise ValueError(
                    f"{str(p)!r} exists and is not a folder (dtitool does not write "
                    "through symbolic links or over files); choose another output "
                    "path"
                )

    def _plan(self, stage: _Stage, rel: PurePosixPath, replace: set[str],
              places: list[str]) -> None:
        for entry in sorted(os.scandir(stage.new / rel), key=lambda e: e.name):
            r = (rel / entry.name) if rel != PurePosixPath(".") else PurePosixPath(
                entry.name)
            target = stage.anchor / r
            try:
                st = target.lstat()
            except (FileNotFoundError, NotADirectoryError):
                places.append(r.as_posix())
                continue
            if entry.is_dir(follow_symlinks=False):
                if not stat.S_ISDIR(st.st_mode):
                    raise ValueError(f"{str(target)!r} exists and is not a folder; "
                                     "choose another output path")
                self._plan(stage, r, replace, places)
            elif r.as_posix() in replace:
                places.append(r.as_posix())
            else:
                raise ValueError(f"{str(target)!r} already exists; use --force to "
                                 "replace the outputs of an earlier dtitool run")

    def _write_journal(self, stage: _Stage) -> None:
        _staging.write_journal(stage.path, marker=stage.marker, ops=stage.ops,
                               siblings=self.stages)

    def commit(self) -> None:
        """Move every staged output into place (all destinations) or none."""
        written = datetime.now(UTC).isoformat(timespec="seconds")
        for stage in self.stages.values():
            self._prepare(stage, written)
        for stage in self.stages.values():
            self._write_journal(stage)
        try:
            for stage in self.stages.values():
                for op, rel in stage.ops:
                    if _do_op(stage.path, stage.anchor, op, rel):
                        stage.done.append((op, rel))
                        _test_stop("commit")
        except (OSError, UnsafePath) as e:  # a link planted since the checks too
            try:
                for stage in reversed(self.stages.values()):
                    for op, rel in reversed(stage.done):
                        _undo_op(stage.path, stage.anchor, op, rel)
                    stage.done.clear()
                    (stage.path / _JOURNAL).unlink(missing_ok=True)
            except (OSError, UnsafePath):
                for stage in self.stages.values():  # keep them: the next run
                    stage.fd = _detach(stage)      # completes the commit
                raise OSError(
                    f"writing the outputs failed half-way ({e}); the next dtitool "
                    "run into the same folder completes it"
                ) from None
            raise

    def close(self) -> None:
        """Remove the staging folders and release the locks."""
        for stage in self.stages.values():
            with contextlib.suppress(ValueError):
                _ACTIVE.remove(stage.new)
            if stage.fd >= 0:
                _remove_stage(stage.path)
                parent_only(stage.fd, held=False)
                os.close(stage.fd)
                stage.fd = -1
        self.stages.clear()


def _detach(stage: _Stage) -> int:
    if stage.fd >= 0:
        parent_only(stage.fd, held=False)
        os.close(stage.fd)
    return -1


@contextlib.contextmanager
def output_transaction(
    *,
    force: bool = False,
    inputs: Iterable[str | os.PathLike] = (),
    seed=None,
    command: str | None = None,
    arguments: Sequence[str] | None = None,
    options: Mapping | None = None,
) -> Iterator[OutputTransaction]:
    """Write the outputs of one run, in one or more folders, all or nothing.

    Parameters
    ----------
    force : bool
        Replace outputs of an earlier dtitool run listed in the destination's
        manifest (and unchanged since).
    inputs : iterable of path
        Files the run reads; none of them may be replaced or removed.
    seed : int, optional
        The run's seed, recorded in the manifest.
    command, arguments, options : optional
        Recorded in the manifest when no :func:`run_context` names the run
        (the command line always does).

    Yields
    ------
    OutputTransaction
        Call :meth:`OutputTransaction.destination` for each output folder.
    """
    tx = OutputTransaction(force=force, inputs=inputs, seed=seed, command=command,
                           arguments=arguments, options=options)
    try:
        try:
            yield tx
            _test_stop("staged")
            with deferred_signals() as held:
                tx.commit()
                tx.close()
                commit_point(held)  # a signal held meanwhile came too late
        except OSError as e:
            raise tx.named(e) from None
        _test_stop("committed")
    finally:
        with deferred_signals():
            tx.close()


def _test_stop(point: str) -> None:
    """Send this process a stop signal at ``point`` of the commit, for tests.

    ``DTITOOL_TEST_STOP=POINT[:SIGNAL]`` (``staged``: outputs written, commit not
    begun; ``commit``: after the commit's first move; ``committed``: outputs in
    place) makes the two sides of the commit point testable without timing
    luck. Unset (always, outside the test suite), this does nothing.
    """
    spec = os.environ.get("DTITOOL_TEST_STOP")
    if not spec:
        return
    where, _, sig = spec.partition(":")
    if where == point:
        import signal

        os.kill(os.getpid(), getattr(signal, sig or "SIGTERM"))


@contextlib.contextmanager
def atomic_outputs(
    out_dir: str | os.PathLike,
    names: Sequence[str],
    *,
    force: bool = False,
    inputs: Iterable[str | os.PathLike] = (),
    seed=None,
    command: str | None = None,
    arguments: Sequence[str] | None = None,
    options: Mapping | None = None,
    label: str | None = None,
) -> Iterator[Path]:
    """Write several files into ``out_dir`` all at once or not at all.

    Yields a staging folder; the caller writes each of ``names`` (relative
    paths, sub-folders allowed) into it. On normal exit everything written there
    is moved into ``out_dir`` together with a manifest; on an exception (or
    SIGINT/SIGTERM) nothing in ``out_dir`` changes. Inside another run's staging
    folder the files are written straight into it (they belong to that run).

    Parameters
    ----------
    out_dir : str or path-like
        Destination folder, created if missing.
    names : sequence of str
        Relative paths of the outputs. Existing ones are an error unless
        ``force`` (and even then unless an earlier dtitool run wrote them).
    force : bool
        Replace the outputs of an earlier dtitool run.
    inputs : iterable of path
        Files the run reads: never replaced.
    seed, command, arguments, options
        Recorded in the manifest (see :func:`output_transaction`).
    label : str, optional
        The option naming this output, for messages.

    Raises
    ------
    ValueError
        If an output exists and ``force`` is False, ``out_dir`` is a file, an
        output is not replaceable (see the module docstring), outputs collide,
        or another run writes to ``out_dir``.
    """
    if _inside_active_stage(out_dir):
        folder = Path(out_dir)
        names = _check_names(names)
        clash = [n for n in names if os.path.lexists(folder / n)]
        if clash:
            raise ValueError(f"outputs collide: {str(folder / clash[0])!r} is "
                             "written twice in one run")
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
        missing = [n for n in names if not os.path.lexists(folder / n)]
        if missing:
            raise RuntimeError(f"internal error: outputs not written: {missing}")
        return
    with output_transaction(force=force, inputs=inputs, seed=seed, command=command,
                            arguments=arguments, options=options) as tx:
        yield tx.destination(out_dir, names, label=label)
