"""Command-line pieces shared by the subcommands that start from a design.

A run that writes a ``design.toml`` records in its ``[run]`` table everything
needed to repeat it: the seed, the command and every option that changes the
results. ``--design design.toml`` reads them back: options given on the command
line win, the recorded ones fill in the rest, and an unknown key is an error
naming the valid ones. Options that never change the results (output paths,
``--force``, ``--quiet``, ``--n-jobs``, ``--chunk-size``) are not recorded.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import warnings
from collections.abc import Iterator, Mapping

from dtitool import __version__
from dtitool._constants import CURVE_PARAMETERS
from dtitool.design import StudyDesign, available_presets, load_preset, read_design

NOT_RECORDED = frozenset({
    "out", "force", "quiet", "design", "preset", "seed", "n", "n_jobs",
    "chunk_size", "dask", "help", "version",
})
"""Options that are not part of a run record: where outputs go, how they are
computed (workers, chunks, Dask) and what is printed never change the results;
the design (with ``--n`` applied) and the seed are recorded separately."""

RUN_META = ("seed", "command", "dtitool_version")
"""Keys of a ``[run]`` table besides the command's own options."""

_LEGACY_KEYS = frozenset({"seed", "replicates", "dtitool_version"})


def add_design_options(p: argparse.ArgumentParser, *, what: str = "the outputs"
                       ) -> None:  # fmt: skip
    """Add ``--preset``, ``--design`` and ``--seed`` to a subcommand."""
    p.add_argument("--preset", default="ketamine-rct",
                   help="preset design (default: ketamine-rct; known: "
                   f"{', '.join(available_presets())})")
    p.add_argument("--design", metavar="FILE.toml",
                   help="design file (overrides --preset); a design.toml written by "
                   "an earlier run repeats it: seed and options included (options "
                   "given here win)")
    p.add_argument("--seed", type=int, default=None,
                   help="random seed (non-negative integer); default: the design "
                   f"file's [run] seed, else fresh entropy; recorded in {what}")


def _recordable(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {a.dest: a for a in parser._actions
            if a.dest not in NOT_RECORDED and not a.dest.startswith("_")
            and a.option_strings}


def run_record(args: argparse.Namespace, seed: int) -> dict:
    """Return the ``[run]`` table of a run: seed, command, options, version.

    Every option of the command that can change the results is recorded (None,
    i.e. "not set", is left out: reading the file back gives None again).
    """
    rec: dict = {"seed": int(seed), "command": args._name}
    for dest in _recordable(args._parser):
        v = getattr(args, dest, None)
        if v is None:
            continue
        rec[dest] = list(v) if isinstance(v, list | tuple) else v
    rec["dtitool_version"] = __version__
    return rec


def run_design_text(design: StudyDesign, args: argparse.Namespace, seed: int,
                    command: str, what: str = "", *, holds: str = "seed") -> str:
    """Return a run's ``design.toml``: the design, its ``[run]`` table, a header.

    The header says what the file holds (``holds``: "seed", "plans, seed") of
    which run (``dtitool <command> run<what>``) and how to repeat it.
    """
    from dtitool.design import design_to_toml

    return design_to_toml(design, run=run_record(args, seed), header=(
        f"Design, {holds} and options of a dtitool {command} run{what}; repeat "
        f"it with\n  dtitool {command} --design design.toml --out DIR"))


def _convert(action: argparse.Action, value, where: str):
    """Check a recorded option value as argparse would check it on the line."""
    if isinstance(action, argparse._StoreTrueAction | argparse._StoreFalseAction):
        if not isinstance(value, bool):
            raise ValueError(f"{where} must be true or false; got {value!r}")
        return value
    multiple = isinstance(action, argparse._AppendAction) or action.nargs in (
        "*", "+") or isinstance(action.nargs, int)
    if multiple and not isinstance(value, list):
        raise ValueError(f"{where} must be an array; got {value!r}")
    items = value if multiple else [value]
    out = []
    for v in items:
        if isinstance(v, bool) or not isinstance(v, int | float | str):
            raise ValueError(f"{where} must hold numbers or strings; got {v!r}")
        try:
            x = action.type(str(v)) if action.type else str(v)
        except (TypeError, ValueError, argparse.ArgumentTypeError):
            kind = getattr(action.type, "__name__", "value")
            raise ValueError(f"{where} must be a valid {kind}; got {v!r}") from None
        if action.choices is not None and x not in action.choices:
            raise ValueError(f"{where} must be one of "
                             f"{', '.join(map(str, action.choices))}; got {v!r}")
        out.append(x)
    return out if multiple else out[0]


def apply_run_record(args: argparse.Namespace, run: Mapping, source: str):
    """Fill options not given on the command line from a ``[run]`` table.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed arguments (with ``_name``, ``_parser``, ``_parsers`` and
        ``_explicit`` set by :func:`dtitool.cli.main`).
    run : mapping
        The design file's ``[run]`` table.
    source : str
        The file, for messages.

    Returns
    -------
    int or None
        The recorded seed.

    Raises
    ------
    ValueError
        On an unknown key (the message lists the valid ones), a run of an
        unknown command, or a value the option would not accept.
    """
    if not run:
        return None
    parsers = getattr(args, "_parsers", {})
    # commands whose --design repeats a design's run (analyze's --design only
    # describes the data it reads: it records no run)
    repeatable = {c for c, p in parsers.items()
                  if "design" in {a.dest for a in p._actions} and c != "analyze"}
    cmd = run.get("command")
    if cmd is None:  # written before runs recorded their command
        allowed = set(_LEGACY_KEYS)
    else:
        if not isinstance(cmd, str) or cmd not in repeatable:
            known = sorted(repeatable)
            raise ValueError(f"{source}: run.command must be one of "
                             f"{', '.join(known)}; got {cmd!r}")
        allowed = set(RUN_META) | set(_recordable(parsers[cmd]))
    unknown = sorted(set(run) - allowed)
    if unknown:
        raise ValueError(f"{source}: unknown key run.{unknown[0]}; valid keys in "
                         f"[run]: {', '.join(sorted(allowed))}")
    seed = run.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)
                             or seed < 0):
        raise ValueError(f"{source}: run.seed must be a non-negative integer; got "
                         f"{seed!r}")
    version = run.get("dtitool_version")
    if version is not None and version != __version__:
        warnings.warn(f"{source} was written by dtitool {version}; this is "
                      f"{__version__}, so the same seed may not give the same bytes",
                      stacklevel=2)
    if cmd == args._name:
        explicit = getattr(args, "_explicit", set())
        for dest, action in _recordable(args._parser).items():
            if dest in run and dest not in explicit:
                value = _convert(action, run[dest], f"{source}: run.{dest}")
                setattr(args, dest, value)
    elif cmd is not None:
        warnings.warn(f"{source} records a dtitool {cmd} run; {args._name} uses only "
                      "its design and seed", stacklevel=2)
    return seed


def resolve_design(args: argparse.Namespace) -> tuple[StudyDesign, int]:
    """Return ``(design, seed)`` from ``--preset/--design/--n/--seed``.

    With ``--design``, the file's ``[run]`` table also fills every option not
    given on the command line (see :func:`apply_run_record`). The seed is
    ``--seed``, else the file's ``[run]`` seed, else fresh entropy; either way
    the returned integer repeats the run.
    """
    from dtitool.simulate import as_seed_sequence

    run_seed = None
    if args.design:
        design, run = read_design(args.design)
        run_seed = apply_run_record(args, run, f"design file {args.design!r}")
    else:
        design = load_preset(args.preset)
    n = getattr(args, "n", None)
    if n is not None:
        design = design.with_n(n)
    seed = args.seed if args.seed is not None else run_seed
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)
                             or seed < 0):
        raise ValueError(f"--seed must be a non-negative integer; got {seed!r}")
    return design, int(as_seed_sequence(seed).entropy)


def add_execution_options(p: argparse.ArgumentParser, *, what: str) -> None:
    """Add ``--n-jobs`` and ``--dask``: where the work of a command runs."""
    p.add_argument("--n-jobs", type=int, default=None, metavar="N",
                   help=f"worker processes for the {what} (default -1: one per "
                   "CPU this process may use; with --dask local, the cluster's "
                   "workers); results do not depend on it")
    p.add_argument("--dask", metavar="local|ADDRESS", default=None,
                   help=f"run the {what} on Dask: 'local' starts a LocalCluster "
                   "of --n-jobs workers for this run; tcp://HOST:PORT or a "
                   "scheduler file (.json) uses a running cluster (SLURM/PBS with "
                   "dask-jobqueue: docs/scale-out.md). Byte-identical results; "
                   'needs pip install "dtitool[dask]"')


OUTPUT_OPTIONS = ("out", "figures", "tipping_point")
"""Options that name where a command writes: never empty."""


def check_execution_options(args: argparse.Namespace) -> None:
    """Check ``--n-jobs``, ``--dask`` and the output paths before any work.

    Raises
    ------
    ValueError
        Naming the option: ``--n-jobs`` 0 or below -1, ``--dask`` empty, an
        output path (``--out``, ``--figures``, ``--tipping-point``) empty or
        blank (an empty path is the current folder to the operating system:
        outputs would land wherever the command happened to run).
    """
    for dest in OUTPUT_OPTIONS:
        value = getattr(args, dest, None)
        if isinstance(value, str) and not value.strip():
            option = "--" + dest.replace("_", "-")
            raise ValueError(f"{option} must name where to write; got {value!r} "
                             "(an empty path would write into the current folder)")
    n = getattr(args, "n_jobs", None)
    if n is not None and (n == 0 or n < -1):
        raise ValueError(f"--n-jobs must be a positive integer or -1 (one worker per "
                         f"CPU); got {n}")
    dask = getattr(args, "dask", None)
    if dask is not None and not dask.strip():
        raise ValueError("--dask must be 'local', a scheduler address "
                         f"(tcp://HOST:PORT) or a scheduler file (.json); got {dask!r}")


def n_jobs(args: argparse.Namespace) -> int:
    """Return the ``--n-jobs`` worker count (default -1: every available CPU)."""
    n = getattr(args, "n_jobs", None)
    return -1 if n is None else n


@contextlib.contextmanager
def executor(args: argparse.Namespace) -> Iterator[object]:
    """Open where a command's tasks run (``--n-jobs``, ``--dask``) for a block."""
    from dtitool._executor import open_executor

    with open_executor(n_jobs(args), getattr(args, "dask", None)) as ex:
        yield ex


MAX_CURVE_POINTS = 200
"""Most points a ``--curve`` or ``--grid`` axis may have."""


def _curve_number(text: str, spec: str, option: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise ValueError(f"{option} values must be numbers; got {text.strip()!r} in "
                         f"{spec!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{option} values must be finite numbers; got "
                         f"{text.strip()!r} in {spec!r}")
    return v


def parse_curve(spec: str, *, option: str = "--curve") -> tuple[str, list[float]]:
    """Parse ``PARAM=start:stop:step`` or ``PARAM=v1,v2,...``.

    Values must be finite; ``n`` values whole numbers (never silently
    truncated); at most :data:`MAX_CURVE_POINTS` of them. ``option`` names the
    option in messages (``--curve``, ``--grid``).
    """
    name, sep, values = spec.partition("=")
    name = name.strip()
    if not sep or name not in CURVE_PARAMETERS:
        raise ValueError(f"{option} must be PARAM=VALUES with PARAM one of "
                         f"{', '.join(CURVE_PARAMETERS)}; got {spec!r}")
    if ":" in values:
        parts = values.split(":")
        if len(parts) != 3:
            raise ValueError(f"{option} range must be start:stop:step; got "
                             f"{values!r}")
        start, stop, step = (_curve_number(v, spec, option) for v in parts)
        if step <= 0 or stop < start:
            raise ValueError(f"{option} range needs step > 0 and stop >= start; got "
                             f"{values!r}")
        count = math.floor((stop - start) / step + 0.5) + 1
        if count > MAX_CURVE_POINTS:
            raise ValueError(f"{option} needs 1 to {MAX_CURVE_POINTS} values; "
                             f"{values!r} gives {count}")
        out = [round(start + i * step, 10) for i in range(count)]
        # stop is included when the steps land on it (up to rounding), never
        # exceeded: n=40:55:20 is 40 alone
        out = [v for v in out if v <= stop + 1e-9 * max(1.0, abs(stop))]
    else:
        out = [_curve_number(v, spec, option) for v in values.split(",")]
    if not out or len(out) > MAX_CURVE_POINTS:
        raise ValueError(f"{option} needs 1 to {MAX_CURVE_POINTS} values; got "
                         f"{len(out)}")
    if len(set(out)) != len(out):
        raise ValueError(f"{option} repeats a value in {spec!r}")
    if name == "n":
        frac = [v for v in out if v != math.floor(v)]
        if frac:
            raise ValueError(f"{option} n values must be whole numbers; got "
                             f"{frac[0]:g}")
        return name, [int(v) for v in out]
    return name, out


def add_mixed_choices(p: argparse.ArgumentParser) -> None:
    """Add ``--variance`` and ``--random``, the choices of the mixed models."""
    p.add_argument(
        "--variance", choices=["arm", "common"], default=None,
        help="--model mixed: arm (default): each arm fitted on its own, with its "
        "own random-effects covariance, residual variance and covariate effects, "
        "the arms' differences tested with Welch-Satterthwaite df (at their "
        "level when a comparison group differs in spread, such as healthy "
        "controls at a rating scale's floor); common: one covariance for all "
        "arms, lme4's default model (docs/model.md, Mixed models)")
    p.add_argument(
        "--random", choices=["select", "slope"], default=None,
        help="--model mixed: select (default): the random slope kept in a fit "
        "where a REML likelihood-ratio test favours it at 0.2, else (1 | "
        "participant) (Matuschek et al. 2017; near its level where a slope "
        "variance is near 0); slope: always (1 + time | participant), the "
        "maximal model (conservative there)")
