"""Command-line pieces shared by the subcommands that start from a design."""

from __future__ import annotations

import argparse

from dtitool.design import StudyDesign, available_presets, load_preset, read_design


def add_design_options(p: argparse.ArgumentParser, *, what: str = "the outputs"
                       ) -> None:  # fmt: skip
    """Add ``--preset``, ``--design`` and ``--seed`` to a subcommand."""
    p.add_argument("--preset", default="ketamine-rct",
                   help="preset design (default: ketamine-rct; known: "
                   f"{', '.join(available_presets())})")
    p.add_argument("--design", metavar="FILE.toml",
                   help="design file (overrides --preset); a design.toml written by "
                   "an earlier run repeats it, seed included")
    p.add_argument("--seed", type=int, default=None,
                   help="random seed (non-negative integer); default: the design "
                   f"file's [run] seed, else fresh entropy; recorded in {what}")


def resolve_design(args: argparse.Namespace) -> tuple[StudyDesign, int]:
    """Return ``(design, seed)`` from ``--preset/--design/--n/--seed``.

    The seed is the design file's ``[run]`` seed when ``--seed`` is not given, and
    fresh entropy when neither is; either way the returned integer repeats the run.
    """
    from dtitool.simulate import as_seed_sequence

    run = {}
    if args.design:
        design, run = read_design(args.design)
    else:
        design = load_preset(args.preset)
    n = getattr(args, "n", None)
    if n is not None:
        design = design.with_n(n)
    seed = args.seed if args.seed is not None else run.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)
                             or seed < 0):
        raise ValueError(f"--seed must be a non-negative integer; got {seed!r}")
    return design, int(as_seed_sequence(seed).entropy)
