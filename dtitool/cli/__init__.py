"""The ``dtitool`` command line.

Each subcommand lives in its own module, which provides ``add_parser(subparsers)``
(registering the subcommand and its ``--help``) and ``run(args) -> int``.
``main(argv=None) -> int`` is the entry point. Whatever happens, a user sees at
most one line on stderr per problem, never a traceback:

- bad input (``ValueError``, ``TypeError``, ``OSError``, a refused memory
  request): ``dtitool CMD: error: ...``, exit code 2;
- Ctrl-C: exit code 130; SIGTERM: 143 (SIGHUP: 129); outputs roll back;
  a signal that arrives once the outputs are committed came too late to stop
  the run: one line says so and the exit code is 0;
- an unexpected exception (a bug): ``dtitool CMD: internal error: ...``, exit
  code 1 (``DTITOOL_DEBUG=1`` shows the traceback).

Warnings are collected while a command runs and printed (once each, as
``dtitool: warning: ...``) after it succeeds; a failed run prints only its
error.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import signal
import sys
import warnings

from dtitool import __version__

# subcommand name -> module providing add_parser() and run().
_COMMANDS = {
    "simulate": "dtitool.cli.simulate",
    "analyze": "dtitool.cli.analyze",
    "fit-tensor": "dtitool.cli.fit_tensor",
    "extract": "dtitool.cli.extract",
    "power": "dtitool.cli.power",
    "reproduce": "dtitool.cli.reproduce",
    "demo": "dtitool.cli.demo",
    "discriminate": "dtitool.cli.discriminate",
    "plans": "dtitool.cli.plans",
    "mrs-import": "dtitool.cli.mrs_import",
}


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line on stderr and exit 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


class _NoAbbrevParser(_Parser):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)


def _build_parser(*, suppress_defaults: bool = False) -> argparse.ArgumentParser:
    # No abbreviated options: "--n" must never silently mean "--n-jobs".
    parser = _Parser(
        allow_abbrev=False,
        prog="dtitool",
        description="Rehearse DTI mean-diffusivity trial analyses on simulated "
        "cohorts and real data.",
    )
    parser.add_argument("--version", action="version", version=f"dtitool {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND",
                                parser_class=_NoAbbrevParser)
    parsers = {}
    for name, modname in _COMMANDS.items():
        module = importlib.import_module(modname)
        p = module.add_parser(sub)
        if suppress_defaults:
            for action in p._actions:
                action.default = argparse.SUPPRESS
        p.set_defaults(_run=module.run, _name=name, _parser=p)
        parsers[name] = p
    parser.set_defaults(_parsers=parsers)
    return parser


def _explicit_options(argv: list[str]) -> set[str]:
    """Destinations of the options given on the command line itself.

    The arguments are parsed a second time with every default suppressed, so
    that only what the user typed remains; a design file's recorded options
    fill in the rest.
    """
    ns = _build_parser(suppress_defaults=True).parse_args(argv)
    return {k for k in vars(ns) if not k.startswith("_") and k != "command"}


def _options(args: argparse.Namespace) -> dict:
    return {k: v for k, v in vars(args).items()
            if not k.startswith("_") and k != "command"}


_NUMPY_SCALAR = re.compile(r"np\.(?:u?int|float|bool_?|str_)\d*\(([^()]*)\)")


def _one_line(e: BaseException) -> str:
    """Return the message on one line, numpy scalars shown as plain numbers.

    ``1``, not ``np.int64(1)``: what a message that formats a value with ``!r``
    would show.
    """
    text = " ".join(str(e).split()) or type(e).__name__
    return _NUMPY_SCALAR.sub(r"\1", text)


def main(argv: list[str] | None = None) -> int:
    """Run the ``dtitool`` command line; return the exit code."""
    from dtitool._workers import (
        Terminated,
        commit_state,
        single_threaded_blas,
        termination_signals,
        tune_malloc,
    )

    single_threaded_blas()  # first: before NumPy and SciPy load their BLAS
    from dtitool._io import run_context
    from dtitool.cli._common import check_execution_options

    argv = sys.argv[1:] if argv is None else [os.fspath(a) for a in argv]
    name = next((a for a in argv if a in _COMMANDS), "")
    caught: list[warnings.WarningMessage] = []
    try:
        with termination_signals():  # first: a SIGTERM from here on rolls back
            parser = _build_parser()
            try:
                args = parser.parse_args(argv)
            except SystemExit as e:  # --help, --version, usage errors (printed)
                return e.code if isinstance(e.code, int) else (
                    0 if e.code is None else 2)
            if getattr(args, "_run", None) is None:
                print(f"dtitool: error: no command given; choose one of "
                      f"{', '.join(_COMMANDS)} (dtitool --help explains them)",
                      file=sys.stderr)
                return 2
            args._explicit = _explicit_options(argv)
            name = args._name
            check_execution_options(args)  # before any work or output
            tune_malloc()  # a command's process: keep freed memory for reuse
            with (run_context(command=name, arguments=argv, options=_options(args)),
                  warnings.catch_warnings(record=True) as caught):
                warnings.simplefilter("default")
                code = int(args._run(args) or 0)
    except RecursionError:
        # a structure nested past Python's recursion limit: only hostile input
        # gets there (design files and manifests say which file themselves)
        print(f"dtitool {name}: error: an input is nested too deeply to read "
              "(arrays or tables inside each other thousands of levels deep)",
              file=sys.stderr)
        return 2
    except (ValueError, TypeError, OSError, MemoryError) as e:
        msg = _one_line(e)
        if isinstance(e, MemoryError) and not isinstance(e, ValueError):
            msg = f"out of memory: {msg}"
        print(f"dtitool {name}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if commit_state()[0]:
            return _too_late(name, "SIGINT", caught)
        print(f"dtitool {name}: interrupted (SIGINT)", file=sys.stderr)
        return 130
    except Terminated as e:
        if commit_state()[0]:
            return _too_late(name, str(e), caught)
        print(f"dtitool {name}: terminated ({e})", file=sys.stderr)
        return e.exit_code
    except Exception as e:
        if os.environ.get("DTITOOL_DEBUG"):
            raise
        print(f"dtitool {name}: internal error: {type(e).__name__}: {_one_line(e)} "
              "(set DTITOOL_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1
    _print_warnings(caught)
    late = commit_state()[1]
    if late:
        return _too_late(name, signal.Signals(late[0]).name, [], code=code)
    return code


def _print_warnings(caught) -> None:
    seen = set()
    for w in caught:
        text = _one_line(w.message)
        if text not in seen:
            seen.add(text)
            print(f"dtitool: warning: {text}", file=sys.stderr)


def _too_late(name: str, signame: str, caught, *, code: int = 0) -> int:
    """Report a stop signal that arrived once the outputs were committed.

    The run's outputs are complete and in place (docs/outputs.md), so the
    signal changed nothing; the exit code says the outputs are there.
    """
    _print_warnings(caught)
    print(f"dtitool {name}: {signame} came too late to stop the run: its outputs "
          "were already committed and are complete", file=sys.stderr)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
