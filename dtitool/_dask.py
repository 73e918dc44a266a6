"""Dask, the optional scale-out engine: connecting, and workers that die with a run.

Imported only by :mod:`dtitool._executor`, and only when a run asks for Dask
(``--dask local`` or ``--dask ADDRESS``): without the optional extra
(``pip install "dtitool[dask]"``) everything else works, and asking for Dask is
a clear error (exit code 2 on the command line).

- ``"local"`` starts a ``distributed.LocalCluster`` of worker processes (one
  thread each). Its workers are processes of this run, so they get the rules
  of :mod:`dtitool._workers`: they die with this process, even if it is killed
  outright, and leave Ctrl-C to it (:class:`WorkerLifetime`).
- Anything else is the address of a running scheduler (``tcp://host:8786``, or
  a scheduler file ``*.json``, e.g. from ``dask_jobqueue.SLURMCluster``); its
  workers belong to the cluster, not to the run, and are left alone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator

import distributed
from distributed.diagnostics.plugin import WorkerPlugin

__all__ = ["CONNECT_TIMEOUT_S", "WORKER_TIMEOUT_S", "WorkerLifetime", "connect"]

CONNECT_TIMEOUT_S = 20
"""Seconds to wait for an existing scheduler to answer."""

WORKER_TIMEOUT_S = 120.0
"""Seconds to wait for an existing scheduler to have a worker (a scheduler with
none would hold the run's tasks forever). The environment variable
``DTITOOL_DASK_WORKER_TIMEOUT`` changes it, e.g. for a batch system whose
worker jobs wait in a queue."""

WORKER_TIMEOUT_ENV = "DTITOOL_DASK_WORKER_TIMEOUT"


class WorkerLifetime(WorkerPlugin):
    """Worker plugin of a local cluster: its workers die with the run's process.

    ``setup`` runs in every worker (also in one the nanny restarts): it applies
    :func:`dtitool._workers.die_with_parent` to the run's process and ignores
    SIGINT (Ctrl-C reaches the whole process group; the run itself stops the
    cluster). A worker whose parent is not the run's process is left alone.

    Parameters
    ----------
    pid : int
        Process id of the run (the parent of a ``LocalCluster``'s workers).
    """

    name = "dtitool-worker-lifetime"

    def __init__(self, pid: int):
        self.pid = int(pid)

    def setup(self, worker=None) -> None:
        """Tie this worker process to the run's process."""
        from dtitool._workers import die_with_parent, single_threaded_blas, tune_malloc

        if os.getppid() != self.pid:
            return
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        tune_malloc()  # a worker of this run only, as in a process pool
        single_threaded_blas()
        die_with_parent(self.pid)


@contextlib.contextmanager
def connect(address: str, *, n_workers: int) -> Iterator[distributed.Client]:
    """Yield a ``distributed.Client``: of a new local cluster or an existing one.

    Parameters
    ----------
    address : str
        ``"local"`` for a new ``LocalCluster``; else a scheduler address
        (``tcp://host:8786``) or a scheduler file (a path ending in ``.json``).
    n_workers : int
        Workers of a local cluster (one thread each).

    Raises
    ------
    ValueError
        If the scheduler cannot be reached.
    """
    quiet = logging.ERROR  # the run's stderr stays the run's: errors only
    for name in ("distributed", "distributed.client", "distributed.comm",
                 "distributed.scheduler", "distributed.nanny", "distributed.worker"):
        logging.getLogger(name).setLevel(quiet)
    if address == "local":
        # No dashboard; the scheduler's HTTP server (metrics) on a free port:
        # its default, 8787, is often taken (another run, a notebook's
        # cluster), which costs a warning and a leaked socket.
        import dask

        # Workers forked from this process start with its modules imported
        # (NumPy, pandas, dtitool), as the local process pool's do, instead of
        # importing them again after a spawn: ~1 s of 2 cores per run. And no
        # statistical profiler sampling every worker's stack every 10 ms: it
        # only feeds the dashboard, which a run's cluster does not have.
        with dask.config.set({"distributed.worker.multiprocessing-method": "fork",
                              "distributed.worker.profile.enabled": False}):
            cluster = distributed.LocalCluster(
                n_workers=int(n_workers), threads_per_worker=1, processes=True,
                dashboard_address=None,
                scheduler_kwargs={"dashboard_address": ":0"},
                # A worker's errors reach the run as its task's exception;
                # what its log adds is the shutdown race (a heartbeat to the
                # scheduler as it closes, logged as an error with a traceback).
                silence_logs=logging.CRITICAL)
        try:
            with distributed.Client(cluster) as client:
                client.register_plugin(WorkerLifetime(os.getpid()),
                                       name=WorkerLifetime.name)
                yield client
        finally:
            cluster.close()
        return
    target = _scheduler_file_address(address) if address.endswith(
        ".json") else address
    try:
        _probe(target)
        client = distributed.Client(target, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, ValueError) as e:
        where = repr(target) + ("" if target == address else f" (from {address!r})")
        raise ValueError(f"cannot reach the Dask scheduler at {where} "
                         f"({type(e).__name__}: {' '.join(str(e).split())}); is it "
                         "running, and is the address right (tcp://HOST:PORT or "
                         "a scheduler file .json)?") from None
    with client:
        _wait_for_a_worker(client, target)
        yield client


def worker_timeout() -> float:
    """Return the seconds to wait for a worker (:data:`WORKER_TIMEOUT_S`).

    Raises
    ------
    ValueError
        If ``DTITOOL_DASK_WORKER_TIMEOUT`` is set but is not a positive number.
    """
    text = os.environ.get(WORKER_TIMEOUT_ENV)
    if text is None or not text.strip():
        return float(WORKER_TIMEOUT_S)
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (0 < value < float("inf")):
        raise ValueError(f"{WORKER_TIMEOUT_ENV} must be a positive number of "
                         f"seconds; got {text!r}")
    return value


def _wait_for_a_worker(client, where: str) -> None:
    """Return once the scheduler has a worker; raise after :func:`worker_timeout`.

    A scheduler without workers accepts tasks and holds them: without this
    check a run would wait, silently, forever.
    """
    timeout = worker_timeout()
    try:
        if client.scheduler_info().get("workers"):
            return
        client.wait_for_workers(1, timeout=timeout)
    except (TimeoutError, OSError) as e:
        if isinstance(e, OSError) and not isinstance(e, TimeoutError):
            raise ValueError(f"lost the Dask scheduler at {where!r} "
                             f"({type(e).__name__}: {' '.join(str(e).split())})"
                             ) from None
        raise ValueError(
            f"the Dask scheduler at {where!r} has no workers (waited {timeout:g} "
            "s); start workers for it (dask worker ADDRESS, or scale the "
            f"dask-jobqueue cluster), or set {WORKER_TIMEOUT_ENV} to wait longer"
        ) from None


def _probe(address: str) -> None:
    """Fail at once if nothing listens at a ``tcp://HOST:PORT`` address.

    Dask's client retries a refused connection until its timeout (20 s of
    silence for a mistyped port); one plain TCP connection tells the
    difference between "nothing there" (an error now) and "slow to answer"
    (left to the client and its timeout). Other protocols are left to Dask.
    """
    import socket
    from urllib.parse import urlsplit

    if not address.startswith("tcp://"):
        return
    try:
        parts = urlsplit(address)
        host, port = parts.hostname, parts.port
    except ValueError:
        return  # Dask gives its own message for a malformed address
    if not host or port is None:
        return
    try:
        with socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S):
            pass
    except ConnectionRefusedError as e:
        raise ConnectionRefusedError(f"nothing listens at {host}:{port}") from e


def _scheduler_file_address(path: str) -> str:
    """Return the scheduler address in a scheduler file (a scheduler's JSON).

    A scheduler that is starting writes its file once it listens, so a
    missing file is waited for up to :data:`CONNECT_TIMEOUT_S` (Dask's own
    client would wait for it forever).

    Raises
    ------
    ValueError
        If the file does not appear in time, or holds no scheduler address.
    """
    deadline = time.monotonic() + CONNECT_TIMEOUT_S
    while not os.path.isfile(path):
        if time.monotonic() >= deadline:
            raise ValueError(f"Dask scheduler file {path!r} does not exist (waited "
                             f"{CONNECT_TIMEOUT_S} s); give the file the scheduler "
                             "writes (dask scheduler --scheduler-file FILE.json)")
        time.sleep(0.1)
    try:
        with open(path, encoding="utf-8") as f:
            address = json.load(f).get("address")
    except (OSError, ValueError, AttributeError) as e:
        raise ValueError(f"Dask scheduler file {path!r} holds no scheduler address "
                         f"(it is not the JSON a Dask scheduler writes: "
                         f"{type(e).__name__})") from None
    if not isinstance(address, str) or not address:
        raise ValueError(f"Dask scheduler file {path!r} holds no scheduler address "
                         "(its JSON lacks the key 'address')")
    return address
