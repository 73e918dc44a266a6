"""Kill tests: SIGTERM and SIGKILL at random points of multi-file runs.

After every kill the destination holds the complete old outputs or the complete
new ones (for SIGKILL: once the next run has swept the dead run's staging
folder, as any next run does), and no worker process outlives its parent by
more than two seconds.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _adversarial_world import child_pids
from _trees import manifest_consistent, tree, without

MANIFEST_NAME = "dtitool-run.json"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"),
                       reason="reads /proc for worker processes"),
]

ROOT = Path(__file__).resolve().parents[1]
# PYTHONPATH=/another/checkout runs these tests against that code
ENV = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH") or str(ROOT)}
DELAYS = random.Random(13)  # "random" points, the same ones every run


class _Run:
    """A dtitool command line in a subprocess, stderr to a file (a surviving
    worker holding a pipe open must not block the test)."""

    def __init__(self, *argv):
        import tempfile

        self.err = tempfile.TemporaryFile(mode="w+")
        self.p = subprocess.Popen([sys.executable, "-m", "dtitool", *map(str, argv)],
                                  env=ENV, stdout=subprocess.DEVNULL, stderr=self.err)
        self.pid = self.p.pid

    def send_signal(self, sig):
        self.p.send_signal(sig)

    def wait(self, timeout=60) -> str:
        """Wait for the exit; return stderr."""
        self.p.wait(timeout=timeout)
        self.err.seek(0)
        return self.err.read()

    @property
    def returncode(self):
        return self.p.returncode


def _dtitool(*argv) -> _Run:
    return _Run(*argv)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.fixture(scope="module")
def old_and_new(tmp_path_factory):
    """An existing output folder (seed 1, plus a file of the user's) and the
    tree a complete run with seed 2 produces."""
    base = tmp_path_factory.mktemp("kill")
    args = ["simulate", "--n", "20", "--images"]
    for seed, name in ((1, "old"), (2, "new")):
        p = _dtitool(*args, "--seed", seed, "--out", base / name)
        err = p.wait(timeout=120)
        assert p.returncode == 0, err
    (base / "old" / "derivatives" / "my_notes.txt").write_text("mine")
    return base / "old", without(tree(base / "new"), MANIFEST_NAME)


def _next_run_sweeps(folder: Path) -> None:
    """What the next run writing into ``folder`` does first: reap dead runs."""
    from dtitool import _io

    _io._sweep(folder)


def _is_old_or_new(dest: Path, old: dict, new: dict) -> str:
    now = tree(dest)
    if now == old:
        return "old"
    assert manifest_consistent(dest)
    assert without(now, MANIFEST_NAME, "derivatives/my_notes.txt") == new
    assert now["derivatives/my_notes.txt"] == old["derivatives/my_notes.txt"]
    return "new"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_run_leaves_old_or_new_outputs(tmp_path, old_and_new, sig):
    old_dir, new = old_and_new
    seen = []
    # one point in each stretch of the ~3 s run: start-up, simulation, image
    # writing, commit and after
    for lo, hi in ((0.1, 0.8), (0.8, 1.6), (1.6, 2.6), (2.6, 4.0)):
        delay = DELAYS.uniform(lo, hi)
        dest = tmp_path / f"c{len(seen)}"
        shutil.copytree(old_dir, dest)
        old = tree(dest)
        p = _dtitool("simulate", "--n", "20", "--images", "--seed", "2", "--force",
                     "--out", dest)
        time.sleep(delay)
        p.send_signal(sig)
        err = p.wait(timeout=60)
        if sig == signal.SIGTERM:
            # 143: rolled back (or committed, if the signal came during the
            # commit); -15: the signal came before dtitool's handler was in
            # place (interpreter start-up) or after it was gone (exit)
            assert p.returncode in (0, 143, -signal.SIGTERM), err
            assert err in ("", "dtitool simulate: terminated (SIGTERM)\n"), err
            assert not list(tmp_path.glob(".dtitool-*"))  # cleaned up at once
        else:
            assert p.returncode in (0, -signal.SIGKILL), err
            _next_run_sweeps(tmp_path)
            assert not list(tmp_path.glob(".dtitool-*"))
        state = _is_old_or_new(dest, old, new)
        assert state == "new" or p.returncode != 0
        seen.append((round(delay, 2), state, p.returncode))
    print(sig, seen)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_workers_die_with_their_parent(tmp_path, sig):
    dest = tmp_path / "p"
    p = _dtitool("power", "--replicates", "200000", "--n-jobs", "2", "--seed", "1",
                 "--quiet", "--out", dest)
    workers: set[int] = set()
    deadline = time.time() + 30
    while len(workers) < 2 and time.time() < deadline:
        workers = child_pids(p.pid)
        time.sleep(0.05)
    assert len(workers) == 2, "the run never started its workers"
    time.sleep(DELAYS.uniform(0.2, 1.5))
    workers |= child_pids(p.pid)
    p.send_signal(sig)
    err = p.wait(timeout=30)
    time.sleep(2)
    survivors = [w for w in workers if _alive(w)]
    for w in survivors:  # the test's own clean-up, whatever the outcome
        with contextlib.suppress(OSError):
            os.kill(w, signal.SIGKILL)
    assert survivors == [], "workers outlived their parent"
    assert p.returncode == (143 if sig == signal.SIGTERM else -signal.SIGKILL), err
    assert not dest.exists()
    _next_run_sweeps(tmp_path)
    assert list(tmp_path.iterdir()) == []
