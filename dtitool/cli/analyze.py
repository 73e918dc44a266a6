"""``dtitool analyze``: fit the group x dMD models to a folder of tables.

Reads ``DIR/participants.tsv`` and ``DIR/roi_md.tsv`` (simulated or real),
with the trial's names (arms, control arm, visits) from ``--design``, else
``DIR/design.toml``, else the tables' ``group`` levels, ``--control`` and
``DIR/visits.tsv`` (:func:`dtitool.tables.resolve_names`);
writes the tidy results table and optionally PNG figures, all through
:func:`dtitool._io.output_transaction` (nothing is written when anything fails), and
prints a readable summary with the dMD unit.

Each ``roi_<measure>.tsv`` beside ``roi_md.tsv`` is fitted too; an MRS table
of ``dtitool mrs-import`` first loses its spectra above the fit-quality limits
(``--max-crlb``, ``--max-fit-error``; :mod:`dtitool.cli._measures`).

Tables holding several replicates (a ``replicate`` column with more than one
value) are an error unless ``--replicate K`` picks one: silently analysing one
replicate of a Monte Carlo set would look like a result about all of them.

``--model mixed`` (the default when ``roi_md.tsv`` holds more than two
sessions) fits instead the linear mixed models of every visit
(:func:`dtitool.stats.mixed.fit_mixed`): per ROI and measure and per rating
scale, ``value ~ arm * time + covariates + (1 + time | participant)``, by
default each arm fitted on its own (``--variance``) with the random slope
kept where a likelihood-ratio test favours it (``--random``), with
Satterthwaite or Kenward-Roger df. Options of the change-score models only
(``--inference``, max-T, multiple imputation, ``--figures``, ...) are then an
error naming the option.

``--model imaging`` asks whether the imaging measure itself changes
(:func:`dtitool.stats.imaging_fit.fit_imaging`): per ROI and measure and
follow-up visit, the control arm's mean change from baseline (one-sample t)
and each arm's mean change minus it (Welch t), after the same quality rule;
the options of both other models are then an error.
"""

from __future__ import annotations

import argparse
import math
import os
import warnings
from pathlib import Path

from dtitool._io import output_transaction, read_tsv, write_tsv
from dtitool.cli._common import add_mixed_choices
from dtitool.cli._measures import (
    add_quality_options,
    describe_measures,
    fit_measures,
    measures_table,
)
from dtitool.tables import COVARIATES, MD_UNITS, read_tables, resolve_names

MODELS = ("change", "mixed", "imaging")
"""``--model``: the change-score models, the mixed models of every visit, or
the imaging change tests (:mod:`dtitool.stats.imaging_fit`)."""

TIMES = ("dose", "hours", "visit")
"""``--time`` of the mixed models (:data:`dtitool.stats.mixed_data.TIMES`)."""

DF_METHODS = ("satterthwaite", "kenward-roger")
"""``--df`` of the mixed models (:data:`dtitool.stats.mixed.DF_METHODS`)."""

CHANGE_ONLY = ("inference", "robust", "familywise", "permutations", "seed",
               "missing", "imputations", "tipping_point", "delta", "delta_arm",
               "families", "figures", "compare", "plan")
"""Options of the change-score models only: an error with ``--model mixed``."""

MIXED_ONLY = ("time", "df", "variance", "random")
"""Options of the mixed models only: an error with ``--model change``."""


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``dtitool analyze``."""
    p = subparsers.add_parser(
        "analyze",
        help="fit the group x MD-change models (or, with more than two "
        "sessions, mixed models of every visit) to participants.tsv and "
        "roi_md.tsv",
        description="For every ROI and outcome (each <outcome>_<visit> pair of "
        "participants columns) fit d_score ~ C(group, "
        "Treatment(CONTROL)) * d_md + covariates (by default each arm's slope "
        "from its own fit, --inference welch), and write the interaction, "
        "the dMD slope in each arm (slope_ARM, contrasts of that fit) and the "
        "pooled slope of the additive model, with SE, t, df, p, 95% CI, n and "
        "Holm / Benjamini-Hochberg adjusted p. Estimates are score points per "
        "1e-5 mm^2/s of MD change (primary visit minus baseline). The arms, "
        "the control arm and the visits come from --design, else DIR/design.toml; "
        "without a design the arms are the group levels, --control names the "
        "control arm and DIR/visits.tsv the visits. Tables holding several "
        "replicates need --replicate K. A cohort with more than two sessions "
        "gets linear mixed models of every visit instead (--model mixed: per "
        "ROI and measure and per rating scale, value ~ C(group) * time + "
        "covariates + (1 + time | participant)); --model change fits the models "
        "above. Every roi_<measure>.tsv beside roi_md.tsv gets the same models; "
        "an MRS table of mrs-import in its unit, with the spectra above "
        "--max-crlb / --max-fit-error excluded as missing data and counted per "
        "arm (docs/mrs.md).",
    )
    p.add_argument(
        "dir", metavar="DIR", help="folder with participants.tsv and roi_md.tsv"
    )
    p.add_argument(
        "--out", required=True, metavar="FILE.tsv", help="results table to write"
    )
    p.add_argument(
        "--design",
        metavar="FILE.toml",
        help="the trial's design (arms, control arm, visits, outcomes' scales); "
        "default DIR/design.toml when there is one",
    )
    p.add_argument(
        "--control",
        metavar="ARM",
        help="the control (reference) arm, a group level, when no design names "
        "it (no --design and no DIR/design.toml)",
    )
    p.add_argument(
        "--model",
        choices=list(MODELS),
        default=None,
        help="change: the change-score models above (primary visit minus "
        "baseline); mixed: linear mixed models of every visit, per ROI and "
        "measure and per rating scale, value ~ C(group) * time + age + C(sex) + "
        "(1 + time | participant) by REML (statsmodels MixedLM; by default each "
        "arm fitted on its own, see --variance and --random), with terms "
        "time, ARM and ARM:time, Satterthwaite df, and per fit whether it "
        "converged and whether it is singular; imaging: does the imaging "
        "measure itself change? Per ROI and measure and follow-up visit, the "
        "control arm's mean change from baseline (term VISIT, one-sample t) and "
        "each arm's mean change minus it (ARM:VISIT, Welch t), on the "
        "participants with both visits (after the MRS quality rule), writing "
        "estimate, se, df, t, p, 95%% CI and n per arm in the row's unit "
        "(default: mixed when roi_md.tsv has more than two sessions, else "
        "change)",
    )
    p.add_argument(
        "--time",
        choices=list(TIMES),
        default=None,
        help="with --model mixed: time is the visits' dose (visits.tsv; the "
        "default when every visit states one), their hours since baseline (the "
        "default otherwise), or the visit as a factor (baseline the reference; "
        "then (1 | participant))",
    )
    p.add_argument(
        "--df",
        choices=list(DF_METHODS),
        default=None,
        help="with --model mixed: degrees of freedom of the t tests, "
        "satterthwaite (default, as R's lmerTest) or kenward-roger (with its "
        "adjusted covariance, as pbkrtest)",
    )
    add_mixed_choices(p)
    p.add_argument(
        "--figures",
        metavar="FIGDIR",
        help="also write PNG figures (score change against dMD per ROI and arm, "
        "MD per session, forest plot of the interactions) into FIGDIR",
    )
    p.add_argument(
        "--inference",
        choices=["welch", "ols", "hc3"],
        default=None,
        help="welch (default): each arm fitted on its own, interaction with "
        "Welch-Satterthwaite df, pooled slope by feasible GLS with per-arm "
        "variances (at its nominal level when the arms' score-change SDs "
        "differ, as in every shipped design); ols: classical pooled-variance "
        "tests, the reported analysis (off its level when the arms' variances "
        "differ; analyze then warns with the estimated level); hc3: HC3 robust "
        "SEs with the residual df (see docs/model.md, Inference)",
    )
    p.add_argument(
        "--robust", action="store_true", help="same as --inference hc3"
    )
    p.add_argument(
        "--plan",
        action="append",
        default=None,
        metavar="NAME[:k=v,...]",
        help="fit analysis plans instead of the reported models (repeatable): "
        "reported, change, ancova-md, composite-mean, composite-pc1, "
        "primary-roi[:roi=NAME], responder, mixed, with options multiplicity=, "
        "inference=, roi= (docs/model.md, Analysis plans side by side); writes "
        "one row per plan, imaging variable, outcome and interaction",
    )
    p.add_argument(
        "--familywise",
        choices=["holm-bh", "maxt"],
        default="holm-bh",
        help="holm-bh: Holm and Benjamini-Hochberg adjusted p (default); maxt: "
        "also p_maxt, Westfall-Young step-down max-T by Freedman-Lane "
        "permutation within arms",
    )
    p.add_argument(
        "--permutations",
        type=int,
        default=10_000,
        metavar="B",
        help="permutations for --familywise maxt (default 10000)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=None,
        help="seed of the max-T permutations or of the imputations (default: "
        "fresh entropy, printed)",
    )
    p.add_argument(
        "--missing",
        choices=["complete-case", "mi"],
        default="complete-case",
        help="complete-case: a participant enters a model only with all its "
        "variables observed (default; the reported analysis); mi: multiple "
        "imputation of missing follow-up scans and scores within each arm from "
        "the baseline and observed follow-up data, pooled by Rubin's rules with "
        "Barnard-Rubin df (see docs/model.md, Missing data)",
    )
    p.add_argument(
        "--imputations",
        type=int,
        default=None,
        metavar="M",
        help="imputations for --missing mi (default 20)",
    )
    p.add_argument(
        "--tipping-point",
        metavar="FILE.tsv",
        help="with --missing mi: also write the delta-adjusted MNAR sensitivity "
        "analysis (the imputed primary-visit scores of each arm shifted by "
        "delta SDs of that arm's observed score change, over a grid of the "
        "arms' deltas): per ROI, outcome, term and grid point the pooled "
        "estimate, p and whether the conclusion at alpha changes",
    )
    p.add_argument(
        "--delta",
        default=None,
        metavar="D1,D2,...",
        help="the deltas each arm takes for --tipping-point, in SDs of that "
        "arm's observed score change (positive: worse than MAR predicts; 0 is "
        "always included). Two arms: every pair; more: the control arm against "
        "each other arm (default -2,-1.5,-1,-0.5,0,0.5,1,1.5,2; write "
        "--delta=-2,0,2 when the list starts with a minus)",
    )
    p.add_argument(
        "--delta-arm",
        default=None,
        metavar="ARM",
        help="with --tipping-point: shift only this arm's imputed scores (the "
        "other arms stay at MAR)",
    )
    p.add_argument(
        "--covariates",
        nargs="*",
        default=["baseline"],
        metavar="NAME",
        help="covariates besides group * d_md: "
        + ", ".join(COVARIATES)
        + " or any participants column (default: baseline; give none for no "
        "covariates); with --model mixed any participants column (default: age "
        "and sex, those present)",
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
    add_quality_options(p)
    p.add_argument(
        "--compare",
        action="store_true",
        help="also print the comparison with the findings reported by Kopelman "
        "et al. 2023",
    )
    p.add_argument("--force", action="store_true",
                   help="replace the outputs of an earlier dtitool run (only files "
                   "listed in its dtitool-run.json and unchanged since)")
    return p


def parse_deltas(text: str) -> list[float]:
    """Parse ``--delta`` (a comma list of numbers: SDs of score change)."""
    from dtitool.stats.missing import MAX_DELTAS

    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"--delta must be a comma list of numbers (SDs of each "
                         f"arm's score change), e.g. -2,-1,0,1,2; got "
                         f"{text!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"--delta values must be finite; got {text!r}")
    distinct = len({*values, 0.0})
    if distinct > MAX_DELTAS:
        raise ValueError(f"--delta has {distinct} distinct values with 0; at most "
                         f"{MAX_DELTAS} (a grid over two arms has their square)")
    return values


POST_RANDOMISATION = (
    "Note: dMD is measured after randomisation (it changes with treatment), so "
    "the slopes and their interaction are associations within arms, not effects "
    "of the randomised treatment: anything that drives both MD change and score "
    "change (dose received, adverse effects, expectancy, head motion) can "
    "produce or hide them.")
"""What ``analyze`` prints under every analysis (docs/model.md, section 3)."""


def other_measures(directory, design=None) -> list[str]:
    """Return the measures besides MD a folder holds (``roi_<measure>.tsv``).

    :func:`dtitool.stats.mixed_data.measures_in`: in the design's order where it
    names them, then by name; a design measure without its table is not
    analysed, with a warning naming it.
    """
    from dtitool.stats.mixed_data import measures_in

    return measures_in(directory, design, stacklevel=3)


def default_model(directory) -> str:
    """Return ``--model``'s default for a folder: mixed with more than two sessions.

    ``mixed`` when ``DIR/roi_md.tsv`` holds more than two sessions, else
    ``change`` (also when the table cannot be read: the analysis then names
    what is wrong with it).
    """
    try:
        t = read_tsv(Path(directory) / "roi_md.tsv", what="ROI MD table",
                     dtype={"session": str})
        sessions = t["session"].dropna().astype(str).str.strip()
    except (ValueError, KeyError, OSError):
        return "change"
    return "mixed" if sessions[sessions != ""].nunique() > 2 else "change"


def _given(args, dest: str) -> bool:
    """Whether an option was given (on the command line, when that is known)."""
    explicit = getattr(args, "_explicit", None)
    if explicit is not None:
        return dest in explicit
    parser = getattr(args, "_parser", None)
    default = parser.get_default(dest) if parser is not None else None
    return getattr(args, dest, default) != default


def _check_model_options(args, model: str) -> None:
    """Refuse the options of the other models, naming the first one given."""
    other = {"mixed": CHANGE_ONLY, "change": MIXED_ONLY,
             "imaging": (*CHANGE_ONLY, *MIXED_ONLY, "covariates")}[model]
    for dest in other:
        if _given(args, dest):
            option = "--" + dest.replace("_", "-")
            what = ("the change-score models" if dest in CHANGE_ONLY
                    else "the mixed models" if dest in MIXED_ONLY
                    else "the change-score and mixed models (the change tests "
                    "have no covariates)")
            raise ValueError(
                f"{option} is an option of {what}, not of --model {model}"
                + (" (the default for a cohort with more than two sessions; "
                   "give --model change for the change-score models)"
                   if model == "mixed" and args.model is None else ""))


def read_visits_folder(args):
    """Return what the models of every visit read from ``args.dir``.

    ``(design, folder, inputs, source, tables, reports)``: the design (from
    ``--design``, or the folder's ``design.toml`` when the tables are read
    here), the input files (for the run record), and
    :func:`mixed_source`'s source, tables and quality reports.
    """
    from dtitool.design import read_design

    design = read_design(args.design)[0] if args.design else None
    folder = Path(args.dir)
    inputs = [folder / "participants.tsv",
              *sorted({folder / "roi_md.tsv", *folder.glob("roi_*.tsv")}),
              *(p for p in (folder / "visits.tsv", folder / "design.toml")
                if p.is_file()),
              *([args.design] if args.design else [])]
    source, tables, reports = mixed_source(folder, args)
    if tables is not None and design is None and (folder / "design.toml").is_file():
        design, _ = read_design(folder / "design.toml")
    return design, folder, inputs, source, tables, reports


def print_quality(folder: Path, reports) -> None:
    """Print each quality report's line (what the MRS fit-quality rule removed)."""
    if not reports:
        return
    import pandas as pd

    participants = pd.read_csv(folder / "participants.tsv", sep="\t", dtype=str,
                               keep_default_na=False)
    arms = tuple(pd.unique(participants["group"]))
    for report in reports.values():
        print(report.summary(participants, arms))


def run_mixed(args, out: Path, *, chosen: bool = False) -> int:
    """``dtitool analyze --model mixed``: the mixed models of every visit."""
    import json

    from dtitool.stats.mixed import MIXED_COLUMNS, fit_mixed

    covariates = args.covariates if _given(args, "covariates") else None
    design, folder, inputs, source, tables, reports = read_visits_folder(args)
    with output_transaction(force=args.force, inputs=inputs) as tx:
        tmp = tx.destination(out.parent, [out.name], label="--out")
        results = fit_mixed(source, tables, time=args.time,
                            df=args.df or "satterthwaite",
                            covariates=covariates, replicate=args.replicate,
                            md_unit=args.md_unit, design=design,
                            control=args.control,
                            visits=None if tables is None else _visits_of(folder),
                            variance=args.variance or "arm",
                            random=args.random or "select")
        table = results.table.loc[:, list(MIXED_COLUMNS)]
        # an empty label (the ROI of a rating scale) is an empty cell
        for col in ("roi", "measure", "outcome"):
            table[col] = table[col].mask(table[col] == "")
        write_tsv(table, tmp / out.name, table="mixed")
        # the sidecar says how many fits did not converge or are singular
        side = (tmp / out.name).with_suffix(".json")
        meta = json.loads(side.read_text(encoding="utf-8"))
        meta["converged"]["Description"] += (
            f"; in this table {results.n_not_converged} of {results.n_fits} fits "
            "did not converge")
        meta["singular"]["Description"] += (
            f"; in this table {results.n_singular} of {results.n_fits} fits are "
            "singular")
        side.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n",
                        encoding="utf-8")
    if chosen:
        print(f"--model mixed: {folder / 'roi_md.tsv'} has more than two sessions "
              "(--model change fits the change-score models instead)\n")
    print(results.summary())
    print_quality(folder, reports)
    print(f"\nwrote {out} ({len(table)} rows)")
    return 0


def run_imaging(args, out: Path) -> int:
    """``dtitool analyze --model imaging``: the imaging change tests."""
    from dtitool.stats.imaging_fit import IMAGING_COLUMNS, fit_imaging

    design, folder, inputs, source, tables, reports = read_visits_folder(args)
    with output_transaction(force=args.force, inputs=inputs) as tx:
        tmp = tx.destination(out.parent, [out.name], label="--out")
        results = fit_imaging(source, tables, replicate=args.replicate,
                              md_unit=args.md_unit, design=design,
                              control=args.control,
                              visits=None if tables is None else _visits_of(folder))
        table = results.table.loc[:, list(IMAGING_COLUMNS)]
        write_tsv(table, tmp / out.name, table="imaging")
    print(results.summary())
    print_quality(folder, reports)
    print(f"\nwrote {out} ({len(table)} rows)")
    return 0


def _visits_of(folder: Path):
    """Return the folder's ``visits.tsv`` (None when it has none)."""
    path = folder / "visits.tsv"
    return path if path.is_file() else None


def read_participants(folder: Path, replicate):
    """Read ``participants.tsv`` of a folder without ROI MD (one replicate's)."""
    t = read_tsv(folder / "participants.tsv", what="participants table",
                 dtype={"participant_id": str, "group": str, "replicate": str})
    if replicate is not None and "replicate" in t:
        t = t[t["replicate"] == str(replicate)].reset_index(drop=True)
    return t


def mixed_source(folder: Path, args):
    """Return what :func:`~dtitool.stats.mixed.fit_mixed` reads, quality rule applied.

    A folder whose MRS tables have a quality column (``crlb``, ``fit_error``)
    gets its spectra above the limits removed first, as the change-score
    models do (:func:`dtitool.mrs.apply_quality`): then the participants table
    and ``{measure: table}`` are returned with the quality reports; otherwise
    the folder itself, None and no reports.
    """
    from dtitool.cli._measures import quality_limits
    from dtitool.mrs import apply_quality

    measures = [p.stem[4:] for p in sorted(folder.glob("roi_*.tsv"))
                if p.stem != "roi_md"]
    limits = quality_limits(folder, measures, args)
    has_md = (folder / "roi_md.tsv").exists() or not measures
    if has_md and not any(v is not None for v in limits.values()):
        return folder, None, {}
    tables, reports = ({"md": folder / "roi_md.tsv"} if has_md else {}), {}
    for m in measures:
        tables[m] = folder / f"roi_{m}.tsv"
        if limits[m] is not None:
            tables[m], reports[m] = apply_quality(tables[m], measure=m, **limits[m])
    import pandas as pd

    from dtitool._io import read_tsv
    from dtitool.tables import read_tables

    if has_md:
        participants, tables["md"] = read_tables(
            folder, replicate=args.replicate, md_unit=args.md_unit,
            control=args.control)
    else:  # an MRS cohort without DTI
        participants = read_participants(folder, args.replicate)
    tables = {m: (read_tsv(t, what=f"ROI {m} table") if not isinstance(
        t, pd.DataFrame) else t) for m, t in tables.items()}
    return participants, tables, reports


def run(args) -> int:
    """Run ``dtitool analyze``."""
    # statsmodels loads only when a model is fitted: keeps other commands fast
    from dtitool.stats.analysis import (
        FMI_COLUMN,
        MAXT_COLUMN,
        RESULT_COLUMNS,
        fit_models,
    )
    from dtitool.stats.missing import DEFAULT_DELTAS, tipping_point
    from dtitool.stats.reference import compare_to_reported, format_comparison

    out = Path(args.out)
    if out.name in ("", ".", "..") or args.out.endswith(("/", os.sep)) or out.is_dir():
        raise ValueError(f"--out must name a file (results.tsv), not the folder "
                         f"{args.out!r}")
    model = args.model or default_model(args.dir)
    _check_model_options(args, model)
    if model == "mixed":
        return run_mixed(args, out, chosen=args.model is None)
    if model == "imaging":
        return run_imaging(args, out)
    if args.plan:
        from dtitool.cli.analyze_plans import run_plans

        return run_plans(args, out, _given)
    if args.tipping_point and args.missing != "mi":
        raise ValueError("--tipping-point shifts imputed follow-up scores; it needs "
                         "--missing mi")
    deltas = None
    if args.tipping_point:
        deltas = parse_deltas(args.delta) if args.delta else list(DEFAULT_DELTAS)
    elif args.delta:
        raise ValueError("--delta is used with --tipping-point")
    if args.delta_arm is not None and not args.tipping_point:
        raise ValueError("--delta-arm is used with --tipping-point")
    tip = Path(args.tipping_point) if args.tipping_point else None
    if tip is not None and (tip.name in ("", ".", "..")
                            or args.tipping_point.endswith(("/", os.sep))
                            or tip.is_dir()):
        raise ValueError(f"--tipping-point must name a file (tip.tsv), not the "
                         f"folder {args.tipping_point!r}")
    design = None
    if args.design:
        from dtitool.design import read_design

        design, _ = read_design(args.design)
    # an MRS cohort without DTI: its first measure's results lead the table
    mrs_only = not (Path(args.dir) / "roi_md.tsv").exists() and any(
        p.stem != "roi_md" for p in Path(args.dir).glob("roi_*.tsv"))
    if mrs_only:
        for opt in ("figures", "tipping_point", "compare"):
            if getattr(args, opt):
                raise ValueError(f"--{opt.replace('_', '-')} needs ROI MD "
                                 f"({Path(args.dir) / 'roi_md.tsv'}); this folder "
                                 "has other measures only")
    inputs = [Path(args.dir) / "participants.tsv",
              *([] if mrs_only else [Path(args.dir) / "roi_md.tsv"]),
              *sorted(Path(args.dir).glob("roi_*.tsv")),
              *([args.design] if args.design else [])]
    # One transaction: the table and the figures are committed together.
    with output_transaction(force=args.force, inputs=inputs) as tx:
        tmp = tx.destination(out.parent, [out.name], label="--out")
        figtmp = None
        if args.figures:
            from dtitool.report.plots import ANALYSIS_FIGURES, save_analysis_figures

            figtmp = tx.destination(args.figures, list(ANALYSIS_FIGURES),
                                    label="--figures")
        if mrs_only:
            participants = read_participants(Path(args.dir), args.replicate)
        else:
            participants, roi_md = read_tables(
                args.dir, replicate=args.replicate, md_unit=args.md_unit,
                design=design, control=args.control,
            )
        names, design = resolve_names(participants, design=design,
                                      control=args.control, directory=args.dir)
        if args.delta_arm is not None and args.delta_arm not in names.arms:
            raise ValueError(f"--delta-arm {args.delta_arm!r} is not one of the "
                             f"trial's arms ({', '.join(names.arms)})")
        if args.robust and args.inference not in (None, "hc3"):
            raise ValueError(f"--robust means --inference hc3; it cannot be used "
                             f"with --inference {args.inference}")
        inference = "hc3" if args.robust else (args.inference or "welch")

        def fit(p, t, m, inference):
            return fit_models(
                p, t, replicate=args.replicate, names=names, design=design,
                measure=m, covariates=tuple(args.covariates),
                inference=inference, families=tuple(args.families),
                familywise=args.familywise, permutations=args.permutations,
                rng=args.seed, missing=args.missing, imputations=args.imputations)

        measures = other_measures(args.dir, design)
        if mrs_only:  # the first measure leads the table
            (results, *more), quality = fit_measures(
                args.dir, measures, args,
                fit=lambda p, t, m: fit(p, t, m, inference))
        else:
            results = fit_models(
                participants,
                roi_md,
                names=names,
                covariates=tuple(args.covariates),
                inference=inference,
                families=tuple(args.families),
                familywise=args.familywise,
                permutations=args.permutations,
                rng=args.seed,
                missing=args.missing,
                imputations=args.imputations,
            )
            # the ROIs' other measures (roi_<measure>.tsv beside roi_md.tsv); MRS
            # tables lose their spectra above the fit-quality limits first
            more, quality = fit_measures(
                args.dir, measures, args,
                fit=lambda p, t, m: fit(p, t, m, results.inference))
        tx.seed = results.seed  # of the max-T permutations, for the manifest
        columns = list(RESULT_COLUMNS)
        for extra in (MAXT_COLUMN, FMI_COLUMN):
            if extra in results.table.columns:
                columns.append(extra)
        table = results.table.loc[:, columns]
        if more or mrs_only:
            table = measures_table((results, *more), columns)
        write_tsv(table, tmp / out.name)
        if more or mrs_only:
            describe_measures((tmp / out.name).with_suffix(".json"),
                              (results, *more), quality, participants, names.arms)
        if figtmp is not None:
            labels = None
            if design is not None:
                from dtitool.report.plots import outcome_label

                labels = {o.name: outcome_label(o.name, o.scale)
                          for o in design.outcomes}
            save_analysis_figures(results, participants, roi_md, figtmp,
                                  outcome_labels=labels)
        tp = None
        if tip is not None:
            tiptmp = tx.destination(tip.parent, [tip.name], label="--tipping-point")
            # the same seed: the same imputations, so delta 0 is the analysis above
            tp = tipping_point(participants, roi_md, names=names, deltas=deltas,
                               arm=args.delta_arm,
                               covariates=tuple(args.covariates),
                               inference=results.inference,
                               imputations=results.imputations, rng=results.seed,
                               families=tuple(args.families))
            write_tsv(tp.table, tiptmp / tip.name)
    if not mrs_only:
        print(results.summary())
    for r in (results, *more) if mrs_only else more:
        print(f"\n{r.measure}:")
        if r.measure in quality:
            print(quality[r.measure].summary(participants, names.arms))
        print(r.summary())
    print("\n" + POST_RANDOMISATION)
    if results.inference == "ols" and results.missing == "complete-case":
        from dtitool.stats.level_check import level_warning

        warning = level_warning(results)
        if warning:
            warnings.warn(warning, stacklevel=1)
    if args.compare:
        print(format_comparison(compare_to_reported(results)))
    if tp is not None:
        print("\n" + tp.summary())
    print(f"\nwrote {out} ({len(table)} rows)")
    if tp is not None:
        print(f"wrote {tip} ({len(tp.table)} rows)")
    if args.figures:
        print(f"wrote {', '.join(ANALYSIS_FIGURES)} to {args.figures}")
    return 0
