"""The ``dtitool`` command line.

Each subcommand lives in its own module, which provides ``add_parser(subparsers)``
(registering the subcommand and its ``--help``) and ``run(args) -> int``.
``main(argv=None) -> int`` is the entry point; bad input becomes one line on
stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
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
}


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors are one line on stderr and exit 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="dtitool",
        description="Rehearse DTI mean-diffusivity trial analyses on simulated "
        "cohorts and real data.",
    )
    parser.add_argument("--version", action="version", version=f"dtitool {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name, modname in _COMMANDS.items():
        module = importlib.import_module(modname)
        p = module.add_parser(sub)
        p.set_defaults(_run=module.run, _name=name)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``dtitool`` command line; return the exit code."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, --version and usage errors (already printed)
        return 0 if e.code is None else int(e.code)
    if getattr(args, "_run", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("default")
            warnings.showwarning = _show_warning
            return int(args._run(args) or 0)
    except (ValueError, TypeError, OSError) as e:
        msg = " ".join(str(e).split())
        print(f"dtitool {args._name}: error: {msg}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dtitool {args._name}: interrupted", file=sys.stderr)
        return 130


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"dtitool: warning: {message}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
