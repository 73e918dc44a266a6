"""Where independent tasks run: here, in local worker processes, or on Dask.

Every long computation of dtitool is cut into independent, seeded tasks
(replicate blocks of the power engine, grid points, subjects' images, MD maps,
subject-sessions of a tensor fit). A task is a module-level function and its
arguments; its result depends on nothing else. Results come back to this
process, where each task's callback folds its result in; the folds are
order-independent (integer counts, slices of preallocated arrays, files named
by the task), so the same tasks give the same bytes wherever they ran:

- here, one after the other (``n_jobs=1``);
- in local worker processes (``n_jobs > 1``, :func:`dtitool._workers.process_pool`:
  forked, they die with this process);
- on a Dask cluster (the optional extra, ``pip install "dtitool[dask]"``): a
  ``distributed.LocalCluster`` started for the run (``dask="local"``; its workers
  die with this process too), an existing scheduler (``dask="tcp://host:8786"``,
  e.g. one started by ``dask_jobqueue`` on SLURM or PBS), or a
  ``distributed.Client`` you opened. Each task checks that its worker runs the
  same versions of dtitool, Python, NumPy, SciPy and gzip as this process, since
  bytes are only reproducible within one software environment.

Tasks are handed out a few at a time (at most a few per worker waiting), so
results are folded in as they arrive and memory stays bounded however many
tasks a run has.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import numbers
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache

from dtitool._workers import available_cpus, process_pool

__all__ = [
    "DASK_HINT",
    "DaskMissingError",
    "Executor",
    "Shared",
    "Task",
    "WorkerDiedError",
    "available_cpus",
    "check_n_jobs",
    "environment",
    "open_executor",
]

DASK_HINT = 'pip install "dtitool[dask]"'
"""How to install the optional Dask extra (quoted in every message about it)."""


class DaskMissingError(ImportError, ValueError):
    """Dask was asked for but is not installed (a ``ValueError``: exit code 2)."""


class WorkerDiedError(ChildProcessError):
    """A local worker process died in the middle of a task (exit code 2).

    An ``OSError`` (the command line answers with one line and exit code 2):
    the run stops, its outputs roll back, and the message says the likely
    cause, the kernel's out-of-memory killer or a ``kill -9``.
    """


def _worker_died(ex, seen=()) -> WorkerDiedError:
    """Return the error for a pool whose worker died, naming how if known.

    ``seen``: the worker processes noted while tasks were handed out (the
    pool may have forgotten its processes by the time it reports the death).
    """
    import signal

    procs = {id(p): p for p in (*seen, *(getattr(ex, "_processes", None) or {}
                                         ).values())}
    codes = []
    for proc in procs.values():
        with contextlib.suppress(Exception):
            proc.join(timeout=1)  # reap it: its exit code is known once joined
        code = getattr(proc, "exitcode", None)
        if code:
            codes.append(code)
    # The pool ends the survivors with SIGTERM once one has died: the telling
    # death is the other one (SIGKILL from the OOM killer, a crash, an exit).
    codes.sort(key=lambda c: c == -signal.SIGTERM)
    how = ""
    if codes and codes[0] < 0:
        try:
            how = f" (killed by {signal.Signals(-codes[0]).name})"
        except ValueError:
            how = f" (killed by signal {-codes[0]})"
    elif codes:
        how = f" (exit code {codes[0]})"
    return WorkerDiedError(
        f"a worker process died in the middle of its task{how}: most often the "
        "system ran out of memory and killed it, or someone killed it (kill -9); "
        "nothing was written; run again, with a smaller --n-jobs if memory is "
        "short")


@dataclass(frozen=True, slots=True)
class Task:
    """One independent piece of work.

    Parameters
    ----------
    fn : callable
        A module-level function (picklable by reference).
    args : tuple
        Its arguments; a :class:`Shared` placeholder stands for an object
        handed to :meth:`Executor.run` once (not pickled with every task).
    done : callable
        Called in this process with ``fn``'s result.
    size : float
        Progress units the task completes (replicates, maps, subjects).
    """

    fn: Callable
    args: tuple
    done: Callable[[object], None]
    size: float = 1.0


@dataclass(frozen=True, slots=True)
class Shared:
    """Placeholder in :attr:`Task.args` for an object shared by many tasks."""

    key: str


_SHARED: dict = {}  # shared objects of the pool run in progress (per process)


def _set_shared(values: Mapping) -> None:
    _SHARED.clear()
    _SHARED.update(values)


def _resolve(args: tuple, table: Mapping) -> tuple:
    return tuple(table[a.key] if isinstance(a, Shared) else a for a in args)


def _call_in_pool(fn, args):
    return fn(*_resolve(args, _SHARED))


@cache
def environment() -> tuple[tuple[str, str], ...]:
    """Versions that decide the bytes of a task's result.

    Python (major.minor), dtitool, NumPy, SciPy and the gzip implementation
    (:func:`dtitool._gzip.backend`).
    """
    import numpy
    import scipy

    from dtitool import __version__
    from dtitool._gzip import backend

    return (("Python", ".".join(map(str, sys.version_info[:2]))),
            ("dtitool", __version__), ("NumPy", numpy.__version__),
            ("SciPy", scipy.__version__), ("gzip", backend()))


def _call_checked(fn, expected, *args):
    """Run a task on a Dask worker after checking its software environment."""
    here = environment()
    if here != expected:
        diff = [f"{name} {mine} (this run: {theirs})"
                for (name, mine), (_, theirs) in zip(here, expected, strict=True)
                if mine != theirs]
        raise ValueError(
            "a Dask worker runs a different software environment: "
            + ", ".join(diff) + "; results would not be byte-identical to a "
            "local run: give the workers the same environment as this process")
    return fn(*args)


def check_n_jobs(n_jobs) -> int:
    """Return ``n_jobs`` as a positive worker count (-1: all CPUs), else raise."""
    if isinstance(n_jobs, bool) or not isinstance(n_jobs, numbers.Integral) or (
            n_jobs == 0 or n_jobs < -1):
        raise ValueError(f"n_jobs must be a positive integer or -1 (all CPUs), "
                         f"got {n_jobs!r}")
    if n_jobs == -1:
        return available_cpus()
    return int(n_jobs)


def _is_client(obj) -> bool:
    return type(obj).__name__ == "Client" and hasattr(obj, "submit") and hasattr(
        obj, "scheduler_info")


class Executor:
    """Runs :class:`Task` objects here, in a process pool or on Dask.

    Open one with :func:`open_executor`; pass it on (as ``dask=``) to reuse its
    workers across calls.

    Attributes
    ----------
    kind : {"serial", "processes", "dask"}
    workers : int
        Tasks that can run at once.
    client : distributed.Client or None
    """

    def __init__(self, kind: str, workers: int, client=None):
        self.kind = kind
        self.workers = max(int(workers), 1)
        self.client = client
        self._pool = None
        self._pool_cm = None

    def __repr__(self) -> str:
        return f"Executor(kind={self.kind!r}, workers={self.workers})"

    def run(self, tasks: Iterable[Task], *, shared: Mapping | None = None,
            progress=None) -> None:
        """Run every task, calling its ``done`` with its result as it arrives.

        Parameters
        ----------
        tasks : iterable of Task
            May be a generator: tasks are drawn as workers free up.
        shared : mapping, optional
            Objects the tasks' :class:`Shared` placeholders stand for: handed
            to each worker once.
        progress : object with ``update(n)``, optional
            Advanced by each finished task's ``size``.
        """
        shared = dict(shared or {})
        if self.kind == "serial" or (self.kind == "processes" and isinstance(
                tasks, list | tuple) and len(tasks) <= 1 and self._pool is None):
            # (one task: not worth starting worker processes for)
            for t in tasks:
                t.done(t.fn(*_resolve(t.args, shared)))
                if progress is not None:
                    progress.update(t.size)
        elif self.kind == "processes":
            self._run_pool(tasks, shared, progress)
        else:
            self._run_dask(tasks, shared, progress)

    # -------------------------------------------------------------- processes

    def _pool_for(self, shared: dict):
        if shared:  # a pool of its own, whose workers hold the shared objects
            return process_pool(self.workers, setup=_set_shared,
                                setup_args=(shared,)), True
        if self._pool is None:  # kept for the executor's life: forked once
            self._pool_cm = process_pool(self.workers)
            self._pool = self._pool_cm.__enter__()
        return contextlib.nullcontext(self._pool), False

    def _run_pool(self, tasks, shared, progress) -> None:
        cm, own = self._pool_for(shared)
        try:
            with cm as ex:
                seen: dict = {}

                def submit(t):
                    f = ex.submit(_call_in_pool, t.fn, t.args)
                    seen.update(getattr(ex, "_processes", None) or {})
                    return f

                try:
                    _drain(ex, tasks, progress, 2 * self.workers, submit)
                except cf.BrokenExecutor:  # BrokenProcessPool: a worker died
                    raise _worker_died(ex, seen.values()) from None
        except BaseException:
            if not own and self._pool is not None:
                self._close_pool(*sys.exc_info())
            raise

    def _close_pool(self, *exc) -> None:
        cm, self._pool, self._pool_cm = self._pool_cm, None, None
        if cm is not None:
            cm.__exit__(*(exc or (None, None, None)))

    # ------------------------------------------------------------------- dask

    def _run_dask(self, tasks, shared, progress) -> None:
        from distributed import as_completed

        client = self.client
        futures = {k: client.scatter(v, broadcast=True, hash=False)
                   for k, v in shared.items()}
        env = environment()
        ac = as_completed()
        owner: dict = {}

        def submit(t: Task):
            args = _resolve(t.args, futures)
            f = client.submit(_call_checked, t.fn, env, *args, pure=False)
            owner[f.key] = t
            ac.add(f)
            return f

        it = iter(tasks)

        def fill() -> None:
            # A few tasks per worker thread; a cluster that grows (dask-jobqueue
            # starting more jobs) gets more as its workers join.
            window = max(2 * _client_threads(client), 4)
            for t in _take(it, window - len(owner)):
                submit(t)

        try:
            fill()
            for f in ac:
                t = owner.pop(f.key)
                result = f.result()
                f.release()
                t.done(result)
                if progress is not None:
                    progress.update(t.size)
                fill()
        except BaseException:
            with contextlib.suppress(Exception):
                client.cancel(list(ac.futures))
            raise
        finally:
            for f in futures.values():
                with contextlib.suppress(Exception):
                    f.release()

    # --------------------------------------------------------------- lifetime

    def close(self) -> None:
        """Shut the executor's own process pool down (a Dask client is not ours)."""
        self._close_pool()


def _take(it: Iterator, k: int) -> list:
    out = []
    for _ in range(k):
        try:
            out.append(next(it))
        except StopIteration:
            break
    return out


def _drain(ex, tasks, progress, window: int, submit) -> None:
    """Keep ``window`` tasks in flight on a concurrent.futures executor."""
    it = iter(tasks)
    pending: dict = {}
    for t in _take(it, window):
        pending[submit(t)] = t
    while pending:
        done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
        for f in done:
            t = pending.pop(f)
            t.done(f.result())
            if progress is not None:
                progress.update(t.size)
        for t in _take(it, len(done)):
            pending[submit(t)] = t


@contextlib.contextmanager
def open_executor(n_jobs=1, dask=None) -> Iterator[Executor]:
    """Open where tasks run for the duration of a ``with`` block.

    Parameters
    ----------
    n_jobs : int
        Local worker processes (-1: all CPUs); with ``dask="local"`` the
        number of workers of the local cluster.
    dask : None, "local", str, distributed.Client or Executor
        None: local processes (or this process for ``n_jobs=1``). ``"local"``:
        a ``distributed.LocalCluster`` started here and stopped at the end.
        Another string: the address of a running Dask scheduler
        (``tcp://host:8786``) or a scheduler file (``*.json``). A
        ``distributed.Client`` or an open :class:`Executor` is used as it is
        (and left open).

    Raises
    ------
    DaskMissingError
        If Dask is asked for but not installed (the message says how to
        install it).
    ValueError
        On a bad ``n_jobs`` or ``dask``, or a scheduler that cannot be reached.
    """
    if isinstance(dask, Executor):
        yield dask
        return
    workers = check_n_jobs(n_jobs)
    if dask is None:
        ex = Executor("serial" if workers == 1 else "processes", workers)
        try:
            yield ex
        except BaseException:
            ex._close_pool(*sys.exc_info())
            raise
        ex.close()
        return
    if _is_client(dask):
        yield Executor("dask", _client_threads(dask), client=dask)
        return
    if not isinstance(dask, str) or not dask.strip():
        raise ValueError("dask must be 'local', a scheduler address (tcp://HOST:PORT)"
                         f", a scheduler file (.json) or a distributed.Client; got "
                         f"{dask!r}")
    try:
        from dtitool import _dask
    except ImportError as e:
        if (e.name or "").split(".")[0] not in ("dask", "distributed"):
            raise
        raise DaskMissingError(
            f"--dask needs Dask, which is not installed; install it with {DASK_HINT}"
        ) from None
    with _dask.connect(dask.strip(), n_workers=workers) as client:
        yield Executor("dask", _client_threads(client), client=client)


def _client_threads(client) -> int:
    try:
        info = client.scheduler_info()["workers"]
        return sum(int(w.get("nthreads", 1)) for w in info.values()) or 1
    except Exception:  # a scheduler that is still waiting for workers
        return 1
