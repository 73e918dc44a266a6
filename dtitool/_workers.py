"""Process lifetime in one place: worker processes, termination signals.

Everything that starts a worker process or has to stop cleanly on a signal goes
through here, so that a local process pool today and another executor later
share one set of rules:

- **Workers die with their parent.** :func:`worker_initializer` (run first in
  every worker) asks Linux to kill the worker when its parent dies
  (``prctl(PR_SET_PDEATHSIG)``) and, everywhere, starts a watchdog thread that
  exits the worker once its parent is gone. A killed ``dtitool power --n-jobs
  2`` leaves no worker running.
- **Workers leave signals to the parent.** Ctrl-C reaches the whole process
  group; workers ignore SIGINT and keep the default SIGTERM, and the parent,
  on any exception, cancels what is queued and terminates them
  (:func:`process_pool`).
- **SIGTERM is an exception.** :func:`termination_signals` turns SIGTERM (and
  SIGHUP) into :class:`Terminated`, so ``with`` blocks roll back exactly as they
  do for Ctrl-C's ``KeyboardInterrupt``; the command line exits 128 + signal
  number (143 for SIGTERM, 130 for SIGINT).
- **Short critical sections are not interrupted.** :func:`deferred_signals`
  holds SIGINT/SIGTERM back while outputs are committed or rolled back and
  delivers them right after, except a signal that arrived while the outputs
  were being committed: the run is done by then, so the command line says the
  signal came too late and exits 0 (:func:`commit_point`).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Iterator

__all__ = [
    "Terminated",
    "available_cpus",
    "commit_point",
    "commit_state",
    "deferred_signals",
    "die_with_parent",
    "parent_only",
    "process_pool",
    "single_threaded_blas",
    "termination_signals",
    "tune_malloc",
    "worker_initializer",
]

_PARENT_POLL_S = 0.5
_PR_SET_PDEATHSIG = 1

_PARENT_ONLY_FDS: set[int] = set()

_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM} | (
    {signal.SIGHUP} if hasattr(signal, "SIGHUP") else set())


def parent_only(fd: int, *, held: bool = True) -> None:
    """Register (or, ``held=False``, forget) a descriptor workers must not keep.

    A forked worker inherits every open descriptor of its parent. The lock of
    a run's staging folder (an ``flock``) is released only when every copy of
    its descriptor is closed, so a worker still holding a copy for a moment
    after its parent was killed would keep the dead run's folder locked:
    :func:`worker_initializer` closes these descriptors first thing.
    """
    if held:
        _PARENT_ONLY_FDS.add(int(fd))
    else:
        _PARENT_ONLY_FDS.discard(int(fd))


class Terminated(BaseException):
    """Raised in the main thread when the process receives SIGTERM or SIGHUP.

    A ``BaseException`` (like ``KeyboardInterrupt``), so ordinary ``except
    Exception`` handlers do not swallow it.

    Parameters
    ----------
    signum : int
        The signal received.
    """

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = int(signum)

    def __str__(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        """The shell's convention for a run ended by a signal: 128 + number."""
        return 128 + self.signum


def _raise_terminated(signum, frame):
    raise Terminated(signum)


class _CommitState:
    """What the command line needs to know of its run's commit point."""

    def __init__(self):
        self.active = False  # inside termination_signals: late signals reported
        self.committed = False  # the run's outputs are in place
        self.late: list[int] = []  # signals that arrived while they were placed


_STATE = _CommitState()


def commit_point(held: list[int]) -> None:
    """Record that a run's outputs are committed; absorb the signals ``held``.

    Called by the output protocol right after its commit, with the signals
    :func:`deferred_signals` held back meanwhile. Inside
    :func:`termination_signals` (the command line) those signals came too late
    to stop the run: they are recorded (and ``held`` is emptied, so they are
    not re-sent), and the command line reports them and exits 0. Elsewhere
    (a library call) nothing changes: the held signals are delivered as usual.
    """
    if _STATE.active:
        _STATE.committed = True
        _STATE.late.extend(s for s in held if s not in _STATE.late)
        held.clear()


def commit_state() -> tuple[bool, tuple[int, ...]]:
    """Return (outputs committed, signals that arrived during the commit)."""
    return _STATE.committed, tuple(_STATE.late)


@contextlib.contextmanager
def termination_signals() -> Iterator[None]:
    """Turn SIGTERM (and SIGHUP, unless ignored) into :class:`Terminated`.

    Only in the main thread (elsewhere a no-op); the previous handlers are
    restored on exit. SIGINT keeps Python's ``KeyboardInterrupt``.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {}
    sigs = [signal.SIGTERM]
    if hasattr(signal, "SIGHUP") and signal.getsignal(signal.SIGHUP) != signal.SIG_IGN:
        sigs.append(signal.SIGHUP)
    for s in sigs:
        old[s] = signal.signal(s, _raise_terminated)
    _STATE.active, _STATE.committed, _STATE.late = True, False, []
    try:
        yield
    finally:
        _STATE.active = False
        for s, h in old.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for the duration of a short critical section.

    A signal arriving inside is recorded and re-sent to this process on exit,
    when the handlers that were in place before (raising ``KeyboardInterrupt``
    / :class:`Terminated`, or the default action) take over. Used around the
    commit and the rollback of outputs, which must not stop half-way.
    Outside the main thread this is a no-op (Python runs signal handlers there
    only). Yields the list of signals held so far; a caller that empties it
    (:func:`commit_point`) keeps them from being re-sent.
    """
    if threading.current_thread() is not threading.main_thread():
        yield []
        return
    pending: list[int] = []

    def hold(signum, frame):
        pending.append(signum)

    old = {}
    for s in (signal.SIGINT, signal.SIGTERM):
        prev = signal.getsignal(s)
        if prev is None:  # installed outside Python: cannot be restored
            continue
        old[s] = prev
        signal.signal(s, hold)
    try:
        yield pending
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        for s in dict.fromkeys(pending):
            os.kill(os.getpid(), s)


def _watch_parent(parent_pid: int) -> None:
    import time

    while True:
        if os.getppid() != parent_pid:
            os._exit(1)
        time.sleep(_PARENT_POLL_S)


def worker_initializer(parent_pid: int) -> None:
    """Run first in every worker process: die with the parent, leave signals to it.

    Parameters
    ----------
    parent_pid : int
        Process id of the parent (the process that owns the outputs).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
    # Forked with these signals blocked (see process_pool): now that their
    # handlers are the worker's own, let pending ones in.
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOP_SIGNALS)
    for fd in list(_PARENT_ONLY_FDS):
        with contextlib.suppress(OSError):
            os.close(fd)
    _PARENT_ONLY_FDS.clear()
    tune_malloc()
    single_threaded_blas()
    die_with_parent(parent_pid)


_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3


def tune_malloc() -> None:
    """Let glibc's malloc keep freed memory for reuse (a run's own processes).

    Each chunk of simulated trials allocates and frees arrays of a few MB.
    glibc hands arrays above its mmap threshold back to the kernel on every
    free, and trims the heap top above 128 kB, so the next chunk's arrays
    fault fresh, zeroed pages in again: a tenth of a power run's time was
    such page faults (measured: 7.4 s -> 6.4 s for 20,000 replicates). Here
    arrays up to 32 MB (glibc's largest mmap threshold) come from the heap and
    freed memory stays with the process until it exits. Called by the command
    line and in dtitool's worker processes, never on import (a library user's
    process keeps its own settings); a no-op without glibc.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.mallopt(_M_MMAP_THRESHOLD, 32 * 1024 * 1024)
        libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
        libc.mallopt(_M_TOP_PAD, 64 * 1024 * 1024)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass


_BLAS_LIMITED = False
_BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS",
                          "OMP_NUM_THREADS")


def single_threaded_blas() -> None:
    """Keep BLAS (OpenBLAS, MKL, BLIS) on one thread in this process.

    dtitool's parallelism is processes, one per CPU: BLAS threads of their own
    only compete with them, and OpenBLAS's threads spin after each call. In a
    20,000-replicate power run on 2 workers the command's own process, which
    only reads the design and waits for the workers, used 0.86 s of CPU with
    its BLAS threads and 0.50 s without: a third of a second taken from the
    workers (the products are small: no kernel is slower on one thread).

    Libraries already loaded are limited with threadpoolctl; those loaded
    later (SciPy brings an OpenBLAS of its own) by the environment variables
    they read when they load. A user who set any of ``OPENBLAS_NUM_THREADS``,
    ``MKL_NUM_THREADS``, ``BLIS_NUM_THREADS`` or ``OMP_NUM_THREADS`` keeps
    their setting. Called by the command line and in dtitool's worker
    processes (pools, local Dask workers), never on import (a library user's
    process keeps its own settings).
    """
    global _BLAS_LIMITED
    if _BLAS_LIMITED or any(v in os.environ for v in _BLAS_THREAD_VARIABLES):
        return
    for v in _BLAS_THREAD_VARIABLES[:3]:
        os.environ[v] = "1"
    _BLAS_LIMITED = True
    if "numpy" not in sys.modules:  # nothing loaded yet: the variables suffice
        return
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a runtime dependency
        return
    threadpool_limits(limits=1, user_api="blas")


def die_with_parent(parent_pid: int) -> None:
    """Make this process exit as soon as ``parent_pid`` (its parent) is gone.

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``; everywhere: a daemon thread
    that polls the parent. Called from :func:`worker_initializer` and by the
    worker plugin of a local Dask cluster (whose workers are processes of the
    run, like a pool's), so no worker outlives a killed run.

    Parameters
    ----------
    parent_pid : int
        Process id of the parent; if it is not this process's parent any more
        (the parent died already), this process exits at once.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):  # pragma: no cover - exotic libc
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True,
                     name="dtitool-parent-watch").start()


def _mp_context():
    # fork: workers start in milliseconds and share the parent's imports.
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else None)


def _stop_now(ex: cf.ProcessPoolExecutor) -> None:
    # The executor has no public way to stop running tasks: cancel what is
    # queued, then terminate the worker processes themselves.
    procs = list((getattr(ex, "_processes", None) or {}).values())
    ex.shutdown(wait=False, cancel_futures=True)
    for p in procs:
        with contextlib.suppress(Exception):
            p.terminate()
    for p in procs:
        with contextlib.suppress(Exception):
            p.join(timeout=2)
            if p.is_alive():
                p.kill()
                p.join(timeout=1)


def _noop() -> None:
    return None


def _start(ex: cf.ProcessPoolExecutor) -> None:
    """Fork the pool's workers now, with SIGINT/SIGTERM/SIGHUP blocked.

    A forked worker starts with its parent's Python signal handlers (a
    SIGTERM would raise :class:`Terminated` in it and print a traceback)
    until :func:`worker_initializer` installs its own; blocked at the fork,
    a signal waits for those. (A fork pool starts every worker at the first
    task; the parent's own signals wait the few milliseconds this takes.)
    """
    if not hasattr(signal, "pthread_sigmask") or (
            threading.current_thread() is not threading.main_thread()):
        return
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    try:
        ex.submit(_noop).result()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def _initialize(parent_pid: int, setup, setup_args: tuple) -> None:
    worker_initializer(parent_pid)
    if setup is not None:
        setup(*setup_args)


def available_cpus() -> int:
    """CPUs this process may run on (its affinity: what a batch job was given)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not on Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def process_pool(max_workers: int, *, setup=None, setup_args: tuple = ()
                 ) -> Iterator[cf.ProcessPoolExecutor]:  # fmt: skip
    """Run a process pool whose workers never outlive the run.

    On normal exit the pool is shut down as usual; on any exception (including
    ``KeyboardInterrupt`` and :class:`Terminated`) queued tasks are cancelled
    and the workers terminated before the exception propagates.

    Parameters
    ----------
    max_workers : int
        Number of worker processes.
    setup : callable, optional
        Run in each worker after :func:`worker_initializer`, with
        ``setup_args`` (handed over once per worker, not once per task).
    setup_args : tuple
        Arguments of ``setup``.
    """
    ex = cf.ProcessPoolExecutor(
        max_workers=max_workers, mp_context=_mp_context(),
        initializer=_initialize, initargs=(os.getpid(), setup, tuple(setup_args)),
    )
    try:
        _start(ex)
        yield ex
    except BaseException:
        with deferred_signals():
            _stop_now(ex)
        raise
    ex.shutdown(wait=True)
