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
import logging
import os
import signal
import threading
from collections.abc import Iterator

import distributed
from distributed.diagnostics.plugin import WorkerPlugin

__all__ = ["CONNECT_TIMEOUT_S", "WorkerLifetime", "connect"]

CONNECT_TIMEOUT_S = 20
"""Seconds to wait for an existing scheduler to answer."""


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
        from dtitool._workers import die_with_parent, tune_malloc

        if os.getppid() != self.pid:
            return
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        tune_malloc()  # a worker of this run only, as in a process pool
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
        cluster = distributed.LocalCluster(
            n_workers=int(n_workers), threads_per_worker=1, processes=True,
            dashboard_address=None, silence_logs=quiet)
        try:
            with distributed.Client(cluster) as client:
                client.register_plugin(WorkerLifetime(os.getpid()),
                                       name=WorkerLifetime.name)
                yield client
        finally:
            cluster.close()
        return
    kwargs: dict = {"timeout": CONNECT_TIMEOUT_S}
    target = address
    if address.endswith(".json"):
        kwargs["scheduler_file"], target = address, None
    try:
        client = distributed.Client(target, **kwargs)
    except (OSError, TimeoutError, ValueError) as e:
        raise ValueError(f"cannot reach the Dask scheduler at {address!r} "
                         f"({type(e).__name__}: {' '.join(str(e).split())}); is it "
                         "running, and is the address right (tcp://HOST:PORT or "
                         "a scheduler file .json)?") from None
    with client:
        yield client
