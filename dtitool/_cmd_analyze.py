"""``dtitool analyze``: fit the group x dMD models to a folder of tables.

Reads ``DIR/participants.tsv`` and ``DIR/roi_md.tsv`` (simulated or real),
writes the tidy results table and optionally PNG figures, all through
:func:`dtitool._io.atomic_outputs` (nothing is written when anything fails), and
prints a readable summary with the dMD unit.

Tables holding several replicates (a ``replicate`` column with more than one
value) are an error unless ``--replicate K`` picks one: silently analysing one
replicate of a Monte Carlo set would look like a result about all of them.
"""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from dtitool._io import atomic_outputs, write_tsv
from dtitool.tables import COVARIATES, MD_UNITS, read_tables

FIGURES = ("scatter_grid.png", "md_sessions.png", "forest.png")
"""PNG files written under ``--figures``."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``dtitool analyze``."""
    p = subparsers.add_parser(
        "analyze",
        help="fit the group x MD-change models to participants.tsv and roi_md.tsv",
        description="For every ROI and outcome (MADRS, QIDS) fit by OLS "
        "d_score ~ C(group, Treatment('saline')) * d_md + covariates, and write "
        "the interaction, the dMD slope in each arm (contrasts of that fit) and "
        "the pooled slope of the additive model, with SE, t, df, p, 95% CI, n "
        "and Holm / Benjamini-Hochberg adjusted p. Estimates are score points "
        "per 1e-5 mm^2/s of MD change (24 h minus baseline). Tables holding "
        "several replicates need --replicate K.",
    )
    p.add_argument(
        "dir", metavar="DIR", help="folder with participants.tsv and roi_md.tsv"
    )
    p.add_argument(
        "--out", required=True, metavar="FILE.tsv", help="results table to write"
    )
    p.add_argument(
        "--figures",
        metavar="FIGDIR",
        help=f"also write PNG figures ({', '.join(FIGURES)}) into FIGDIR",
    )
    p.add_argument(
        "--robust", action="store_true", help="HC3 heteroscedasticity-robust SEs"
    )
    p.add_argument(
        "--covariates",
        nargs="*",
        default=["baseline"],
        metavar="NAME",
        help="covariates besides group * d_md: "
        + ", ".join(COVARIATES)
        + " or any participants column (default: baseline; give none for no "
        "covariates)",
    )
    p.add_argument(
        "--families",
        nargs="*",
        default=["term"],
        choices=["roi", "outcome", "term"],
        metavar="COL",
        help="columns defining the multiplicity families for p_holm and p_fdr "
        "(default: term, i.e. each term across all ROI x outcome models; "
        "'term outcome' adjusts within each outcome; none: all rows together)",
    )
    p.add_argument(
        "--replicate",
        type=int,
        metavar="K",
        help="replicate to analyse when the tables hold several",
    )
    p.add_argument(
        "--md-unit",
        default="mm^2/s",
        choices=list(MD_UNITS),
        help="unit of the md column, converted to mm^2/s (default: mm^2/s)",
    )
    p.add_argument(
        "--compare",
        action="store_true",
        help="also print the comparison with the findings reported by Kopelman "
        "et al. 2023",
    )
    p.add_argument("--force", action="store_true", help="overwrite existing outputs")
    return p


def run(args) -> int:
    """Run ``dtitool analyze``."""
    # statsmodels loads only when a model is fitted: keeps other commands fast
    from dtitool.analysis import RESULT_COLUMNS, fit_models

    out = Path(args.out)
    if out.name in ("", ".", "..") or out.is_dir():
        raise ValueError(f"--out must name a file, got {args.out!r}")
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(
            atomic_outputs(out.parent, [out.name], force=args.force)
        )
        figtmp = None
        if args.figures:
            figtmp = stack.enter_context(
                atomic_outputs(args.figures, list(FIGURES), force=args.force)
            )
        participants, roi_md = read_tables(
            args.dir, replicate=args.replicate, md_unit=args.md_unit
        )
        results = fit_models(
            participants,
            roi_md,
            covariates=tuple(args.covariates),
            robust="HC3" if args.robust else None,
            families=tuple(args.families),
        )
        write_tsv(results.table.loc[:, list(RESULT_COLUMNS)], tmp / out.name)
        if figtmp is not None:
            _write_figures(results, participants, roi_md, figtmp)
    print(results.summary())
    if args.compare:
        _print_comparison(results)
    print(f"\nwrote {out} ({len(results.table)} rows)")
    if args.figures:
        print(f"wrote {', '.join(FIGURES)} to {args.figures}")
    return 0


def _write_figures(results, participants, roi_md, folder: Path) -> None:
    # Figures are built without pyplot so the CLI needs no display backend.
    from matplotlib.figure import Figure

    from dtitool.plots import plot_forest, plot_md_sessions, plot_scatter_grid

    n_roi = results.table["roi"].nunique()
    n_out = results.table["outcome"].nunique()
    fig = Figure(figsize=(3.3 * n_out, 2.4 * n_roi))
    plot_scatter_grid(results, fig=fig)
    fig.savefig(folder / FIGURES[0], dpi=120)

    fig = Figure(figsize=(1.3 * n_roi + 1.5, 4), layout="constrained")
    plot_md_sessions(roi_md, participants, ax=fig.subplots())
    fig.savefig(folder / FIGURES[1], dpi=120)

    n_rows = int((results.table["term"] == "interaction").sum())
    fig = Figure(figsize=(6.5, 0.32 * n_rows + 1.2), layout="constrained")
    plot_forest(results, ax=fig.subplots())
    fig.savefig(folder / FIGURES[2], dpi=120)


def _print_comparison(results) -> None:
    from dtitool.reference import compare_to_reported

    c = compare_to_reported(results)
    print("\nComparison with Kopelman et al. 2023 (abstract):")
    print(
        f"{'roi':<14}{'outcome':<11}{'term':<14}{'reported':>16}"
        f"{'found est':>11}{'p':>9}  verdict"
    )
    for r in c.itertuples(index=False):
        sign = {1: "+", -1: "-", 0: "null"}[r.direction]
        prange = f"{r.p_low:g}" if r.p_low == r.p_high else f"{r.p_low:g}-{r.p_high:g}"
        rep = f"{sign} p {prange}" if r.direction else "null"
        used = r.outcome if r.outcome_used in (None, r.outcome) else (
            f"{r.outcome}:{r.outcome_used}"
        )
        print(
            f"{r.roi:<14}{used:<11}{r.term:<14}{rep:>16}"
            f"{r.estimate:>11.3f}{r.p:>9.4f}  {r.verdict}"
        )
