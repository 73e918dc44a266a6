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
        self._lock = threading.RLock()
        self._open = None  # the step whose "label ..." line awaits its end

    @property
    def stream(self):
        """The stream step lines go to."""
        return self._stream if self._stream is not None else sys.stdout

    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.perf_counter() - self.t0

    def _label(self, text: str) -> str:
        with self._lock:
            self.i += 1
            if self.steps:
                return f"step {self.i}/{max(self.steps, self.i)} {text}"
            return text

    def _write(self, text: str) -> None:
        with self._lock:
            self.stream.write(text)
            self.stream.flush()

    def step(self, text: str, *, total: float | None = None, unit: str = "it",
             background: bool = False) -> _Step:
        """Report one step: a context manager yielding a bar its work advances.

        Parameters
        ----------
        text : str
            What the step does ("fitting tensors").
        total : float, optional
            Units of work, when known (the work may also set it).
        unit : str
            Unit of work.
        background : bool
            The step runs elsewhere beside the others (another process or
            thread): no bar, and its line is written whole when it ends
            (:meth:`_Step.report`).

        Notes
        -----
        A step's number is taken when its line can first appear: when it is
        created, or for a background step when it is reported, so the numbers
        a reader sees always rise (a background step started first and ended
        after the sixth gets number 6 or 7, never 1 printed after 6).

        Examples
        --------
        >>> import io
        >>> out = io.StringIO()
        >>> p = Progress(3, stream=out)
        >>> lane = p.step("power, in the background", background=True)
        >>> for name in ("simulating", "fitting"):
        ...     with p.step(name):
        ...         pass
        >>> lane.report(1.5)
        >>> [line.split(" ... ")[0] for line in out.getvalue().splitlines()]
        ['step 1/3 simulating', 'step 2/3 fitting', 'step 3/3 power, in the background']
        """
        if background:
            return _Step(self, text, total, unit, background)
        return _Step(self, self._label(text), total, unit, background)

    def note(self, text: str) -> None:
        """Write one line (not a step), unless quiet."""
        if not self.quiet:
            self._write(text + "\n")


class _Step:
    """One step of a :class:`Progress` (see :meth:`Progress.step`)."""

    def __init__(self, prog: Progress, label: str, total, unit: str,
                 background: bool):
        self.prog, self.label, self.total, self.unit = prog, label, total, unit
        self.background = background
        self._bar = None
        self._timer = None
        self._written = False
        self._over = False
        self._t = 0.0

    def report(self, seconds: float) -> None:
        """Write the line of a step that ran elsewhere and took ``seconds``.

        A background step takes its number here (:meth:`Progress.step`).
        """
        p = self.prog
        if self.background:
            self.label = p._label(self.label)
            self.background = False  # numbered once
        if p.quiet:
            return
        with p._lock:
            if p._open is not None:
                p._write("\n")
                p._open._written = False
                p._open = None
            p._write(f"{self.label} ... done in {seconds:.1f} s\n")

    def __enter__(self):
        p = self.prog
        self._t = time.perf_counter()
        if p.quiet or self.background:
            return _NullBar()
        tty = p.stream.isatty() and sys.stderr.isatty()
        if tty:
            self._bar = _tqdm(self.total, self.label, self.unit, sys.stderr,
                              delay=BAR_DELAY_S)
            self._written = True  # the line is written whole at the end
            return self._bar
        # Off a terminal the step's name is written once it has run for
        # BAR_DELAY_S (a log shows what a long run is doing), else with its
        # time at the end: a run that stops at once on bad input writes
        # nothing but its one error line.
        self._timer = threading.Timer(BAR_DELAY_S, self._announce)
        self._timer.daemon = True
        self._timer.start()
        return _NullBar()

    def _announce(self) -> None:
        with self.prog._lock:
            if not self._over and not self._written:
                self.prog._write(f"{self.label} ...")
                self._written = True
                self.prog._open = self

    def __exit__(self, exc_type, exc, tb) -> bool:
        p = self.prog
        if self._timer is not None:
            self._timer.cancel()
        if self._bar is not None:
            self._bar.close()
        if p.quiet:
            return False
        with p._lock:
            self._over = True
            mine = p._open is self
            if p._open is not None and not mine:
                # another step's line is open: close it; it is written whole
                # when that step ends
                p._write("\n")
                p._open._written = False
                p._open = None
            if mine:
                p._open = None
            if exc_type is not None:
                if mine:
                    p._write("\n")
                return False
            head = "" if mine else f"{self.label} ..."
            p._write(f"{head} done in {time.perf_counter() - self._t:.1f} s\n")
        return False
