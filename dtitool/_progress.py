"""Progress of a run: a bar on a terminal, one line per step otherwise.

Every command reports its steps the same way, on stdout (stderr carries only
problems: one line per error, and warnings):

- on a terminal, a step that runs longer than :data:`BAR_DELAY_S` shows a tqdm
  bar (on stderr, erased when done) while it runs; each step ends with one line
  ``step 2/6 fitting tensors ... done in 12.3 s``;
- elsewhere (a log file, a batch job, a pipe) the same line, written in two
  parts for a step that takes longer than :data:`BAR_DELAY_S`: its name then,
  ``done in 12.3 s`` when it ends, so a log shows what a run is doing (a run
  that stops at once on bad input writes only its error line);
- with ``--quiet``, nothing.

Library functions take ``progress``: None (a bar of their own on a terminal,
after :data:`BAR_DELAY_S`), False (none), True (always), or a bar made by
:meth:`Progress.step` (they advance it and set its total).
"""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Iterator

__all__ = ["BAR_DELAY_S", "Progress", "bar", "null_bar"]

BAR_DELAY_S = 2.0
"""A bar appears only once its step has run this long (seconds)."""


class _NullBar:
    """Stands in for a tqdm bar where none is shown."""

    total = None
    n = 0

    def update(self, n=1) -> None:
        self.n += n

    def set_total(self, total) -> None:
        self.total = total


def null_bar() -> _NullBar:
    """Return a bar that shows nothing."""
    return _NullBar()


def _tqdm(total, desc: str, unit: str, stream, *, delay: float):
    from tqdm.auto import tqdm

    b = tqdm(total=total, desc=desc, unit=unit, delay=delay, leave=False,
             file=stream, dynamic_ncols=True, unit_scale=unit in ("rep", "trial"))

    def set_total(t):
        b.total = t
        b.refresh()

    b.set_total = set_total
    return b


def _is_bar(progress) -> bool:
    return hasattr(progress, "update") and not isinstance(progress, bool)


@contextlib.contextmanager
def bar(progress, total: float | None, desc: str, *, unit: str = "it"):
    """Yield what a library function advances as it works.

    Parameters
    ----------
    progress : None, bool or bar
        None: a tqdm bar on stderr when it is a terminal, shown once the work
        has run :data:`BAR_DELAY_S`; True: a bar always; False: none; a bar
        from :meth:`Progress.step`: that bar (its total becomes the work done so
        far plus ``total``).
    total : float or None
        Units of work.
    desc : str
        Label of a bar of its own.
    unit : str
        Unit of work (``"rep"``, ``"map"``).
    """
    if _is_bar(progress):
        # A step's bar may serve several calls (a sample-size search): each
        # call adds its work to what is done so far.
        if total is not None:
            progress.set_total(progress.n + total)
        yield progress
        return
    stream = sys.stderr
    show = stream.isatty() if progress is None else bool(progress)
    if not show:
        yield _NullBar()
        return
    b = _tqdm(total, desc, unit, stream,
              delay=BAR_DELAY_S if progress is None else 0.0)
    try:
        yield b
    finally:
        b.close()


class Progress:
    """The steps of one command run, reported on stdout (bars on stderr).

    Parameters
    ----------
    steps : int, optional
        Number of steps (for ``step i/n``); None writes no numbers.
    quiet : bool
        Report nothing.
    stream : file, optional
        Where to write the step lines (default ``sys.stdout`` at the time of
        each write); a terminal there means bars on stderr.

    Examples
    --------
    >>> import io
    >>> out = io.StringIO()
    >>> p = Progress(2, stream=out)
    >>> with p.step("simulating the cohort"):
    ...     pass
    >>> out.getvalue().startswith("step 1/2 simulating the cohort ... done in")
    True
    """

    def __init__(self, steps: int | None = None, *, quiet: bool = False,
                 stream=None):
        self.steps = steps
        self.quiet = quiet
        self._stream = stream
        self.i = 0
        self.t0 = time.perf_counter()

    @property
    def stream(self):
        """The stream step lines go to."""
        return self._stream if self._stream is not None else sys.stdout

    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.perf_counter() - self.t0

    def _label(self, text: str) -> str:
        self.i += 1
        if self.steps:
            return f"step {self.i}/{max(self.steps, self.i)} {text}"
        return text

    @contextlib.contextmanager
    def step(self, text: str, *, total: float | None = None, unit: str = "it"
             ) -> Iterator[object]:  # fmt: skip
        """Report one step; yield a bar that the step's work advances.

        Parameters
        ----------
        text : str
            What the step does ("fitting tensors").
        total : float, optional
            Units of work, when known (the work may also set it).
        unit : str
            Unit of work.
        """
        label = self._label(text)
        if self.quiet:
            yield _NullBar()
            return
        out = self.stream
        t = time.perf_counter()
        tty = out.isatty() and sys.stderr.isatty()
        # Off a terminal the step's name is written once it has run for
        # BAR_DELAY_S (a log shows what a long run is doing), else with its
        # time at the end: a run that stops at once on bad input writes
        # nothing but its one error line.
        state = {"written": tty, "over": False}
        lock = threading.Lock()

        def announce():
            with lock:
                if not state["over"] and not state["written"]:
                    out.write(f"{label} ...")
                    out.flush()
                    state["written"] = True

        timer = None
        if tty:
            b = _tqdm(total, label, unit, sys.stderr, delay=BAR_DELAY_S)
        else:
            b = _NullBar()
            timer = threading.Timer(BAR_DELAY_S, announce)
            timer.daemon = True
            timer.start()
        try:
            yield b
        except BaseException:
            if timer is not None:
                timer.cancel()
            with lock:
                state["over"] = True
                if tty:
                    b.close()
                elif state["written"]:
                    out.write("\n")
                    out.flush()
            raise
        if timer is not None:
            timer.cancel()
        with lock:
            state["over"] = True
            if tty:
                b.close()
            if tty or not state["written"]:
                out.write(f"{label} ...")
            out.write(f" done in {time.perf_counter() - t:.1f} s\n")
            out.flush()

    def note(self, text: str) -> None:
        """Write one line (not a step), unless quiet."""
        if not self.quiet:
            self.stream.write(text + "\n")
            self.stream.flush()
