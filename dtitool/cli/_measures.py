"""``dtitool analyze``: the ROIs' other measures, MRS tables and their fit quality.

Every ``roi_<measure>.tsv`` beside ``roi_md.tsv`` gets the change-score models
MD gets. A table of ``dtitool mrs-import`` also has a ``unit`` (the models'
unit, in the printed summary and the sidecar) and a fit-quality column
(``crlb`` or ``fit_error``): its spectra above the limit (``--max-crlb``,
``--max-fit-error``, else :data:`dtitool.mrs.DEFAULT_LIMITS`) are removed as
missing data first (:func:`dtitool.mrs.apply_quality`), and the results say how
many, per table, model and arm.
"""

from __future__ import annotations

import json
from pathlib import Path

from dtitool._io import read_tsv

QUALITY_OPTIONS = {"crlb": ("--max-crlb", "max_crlb"),
                   "fit_error": ("--max-fit-error", "max_fit_error")}
"""Quality column -> (option, its dest and :func:`dtitool.mrs.apply_quality`'s
keyword)."""


def add_quality_options(p) -> None:
    """Register ``--max-crlb`` and ``--max-fit-error``."""
    p.add_argument(
        "--max-crlb", type=float, default=None, metavar="PCT",
        help="--model change, MRS tables (roi_<metabolite>.tsv of mrs-import) "
        "with a crlb column: "
        "a spectrum whose Cramer-Rao lower bound (LCModel %%SD, Osprey CRLB) is "
        "above PCT %% is missing data, removed before the change is computed and "
        "counted per model and arm (default 20, the LCModel manual's criterion; "
        "docs/mrs.md)")
    p.add_argument(
        "--max-fit-error", type=float, default=None, metavar="PCT",
        help="the same for Gannet's fit error (a fit_error column; default 12, "
        "an estimate: Gannet documents no limit; docs/mrs.md)")


def quality_limits(folder: Path, measures, args) -> dict[str, dict | None]:
    """Per measure, the limits to apply (None: the table has no quality column).

    Raises
    ------
    ValueError
        A limit that is not a percentage above 0, or a limit for a quality
        column no table of the folder has (naming the columns they have).
    """
    from dtitool.mrs.names import QUALITY

    columns = {}
    for m in measures:
        head = read_tsv(folder / f"roi_{m}.tsv", what=f"ROI {m} table").columns
        columns[m] = [c for c in QUALITY if c in head]
    present = sorted({c for cols in columns.values() for c in cols})
    for col, (option, dest) in QUALITY_OPTIONS.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        if not value > 0:
            raise ValueError(f"{option} must be a percentage above 0 (e.g. "
                             f"{20 if col == 'crlb' else 12}); got {value:g}")
        if col not in present:
            has = ("no table has a fit-quality column" if not present else
                   "the tables have " + ", ".join(present) + ": "
                   + ", ".join(QUALITY_OPTIONS[c][0] for c in present)
                   + " sets its limit")
            raise ValueError(f"{option} {value:g} was given but no roi_<measure>.tsv "
                             f"in {str(folder)!r} has a {col} column ({has})")
    return {m: ({QUALITY_OPTIONS[c][1]: getattr(args, QUALITY_OPTIONS[c][1], None)
                 for c in cols} if cols else None) for m, cols in columns.items()}


def fit_measures(folder, measures, args, *, fit):
    """Fit every other measure; return its results and quality reports.

    ``fit(participants, table, measure)`` fits one measure's models (the
    arguments of :func:`dtitool.stats.analysis.fit_models` bound). A table with
    a quality column goes through :func:`dtitool.mrs.apply_quality` first.

    Returns
    -------
    results : list of AnalysisResults
    reports : dict
        ``measure -> QualityReport`` of the tables with a quality column.
    """
    from dtitool.mrs import apply_quality

    folder = Path(folder)
    limits = quality_limits(folder, measures, args)
    results, reports = [], {}
    for m in measures:
        table = folder / f"roi_{m}.tsv"
        if limits[m] is not None:
            table, reports[m] = apply_quality(table, measure=m, **limits[m])
        try:
            results.append(fit(folder / "participants.tsv", table, m))
        except ValueError as e:  # too few left: say how many the rule removed
            if (m in reports and reports[m].n_excluded
                    and "complete data" in str(e)):
                raise ValueError(f"{e} ({reports[m].summary()})") from None
            raise
    return results, reports


def measures_table(results, columns):
    """Return the results of every measure as one table, ``measure`` second.

    ``columns`` are those of the MD results; the quality columns
    (:data:`dtitool.stats.fit_quality.QUALITY_COLUMNS`) follow when a measure
    has them (empty for the measures without a rule).
    """
    import pandas as pd

    from dtitool.stats.fit_quality import QUALITY_COLUMNS

    quality = [c for c in QUALITY_COLUMNS if any(c in r.table for r in results)]
    table = pd.concat(
        [r.table.loc[:, [*columns, *(c for c in quality if c in r.table)]]
         .assign(measure=r.measure) for r in results], ignore_index=True)
    return table.loc[:, ["roi", "measure", *columns[1:], *quality]]


def describe_measures(sidecar: Path, results, reports, participants, arms) -> None:
    """Say in the results' sidecar each measure's unit and what fit quality removed."""
    meta = json.loads(sidecar.read_text(encoding="utf-8"))
    levels = {}
    for r in results:
        unit = r.changes.attrs.get("measure_unit")
        source = ("mean diffusivity (roi_md.tsv)" if r.measure == "md" else
                  f"{r.measure} (roi_{r.measure}.tsv" + (f", in {unit})" if unit
                                                         else ")"))
        levels[r.measure] = f"{source}; estimates in score points {r.dmd_unit}"
    meta["measure"]["Levels"] = levels
    for col in ("estimate", "se", "ci_low", "ci_high"):
        if "Units" in meta.get(col, {}):
            meta[col]["Units"] = ("score points per the change of the row's "
                                  "measure, in that measure's unit (the Levels of "
                                  "measure)")
    if reports:
        said = "; ".join(rep.summary(participants, arms) for rep in reports.values())
        for col in ("quality_rule", "n_dropped_quality", "dropped_quality_by_arm"):
            if col in meta:
                meta[col]["Description"] += f". In this analysis: {said}"
    sidecar.write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n",
                       encoding="utf-8")
