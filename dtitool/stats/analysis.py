"""The analysis of one dataset: group x dMD models of every ROI and outcome.

The entry points. :func:`fit_models` (from the two tables) and
:func:`fit_changes` (from a changes table) run the complete-data analysis of
:mod:`dtitool.stats.models` on the complete cases, or, with ``missing="mi"``,
the multiple imputation of :mod:`dtitool.stats.missing`, which runs it on every
completed dataset and pools the results. The model, its terms and inference
options are described in :mod:`dtitool.stats.models`; its results class, columns
and formula builder are re-exported here, where they have always been imported
from.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence

import pandas as pd

from dtitool.stats.imputation import check_missing
from dtitool.stats.missing import complete_case_columns, fit_imputed
from dtitool.stats.models import (
    COVARIATES,
    DEFAULT_PERMUTATIONS,
    FAMILYWISE,
    FMI_COLUMN,
    MAXT_COLUMN,
    RESULT_COLUMNS,
    AnalysisResults,
    _check_changes,
    _check_inference_options,
    _check_options,
    default_formula,
    fit_complete_data,
    format_summary,
)
from dtitool.tables import _changes, check_tables

__all__ = [
    "COVARIATES",
    "DEFAULT_PERMUTATIONS",
    "FAMILYWISE",
    "FMI_COLUMN",
    "MAXT_COLUMN",
    "RESULT_COLUMNS",
    "AnalysisResults",
    "default_formula",
    "fit_changes",
    "fit_models",
    "format_summary",
]


def fit_models(
    participants,
    roi_md,
    *,
    covariates: Sequence[str] = ("baseline",),
    formula: str | None = None,
    robust: str | None = None,
    inference: str | None = None,
    families: Sequence[str] | str | None = ("term",),
    familywise: str = "holm-bh",
    permutations: int = DEFAULT_PERMUTATIONS,
    rng=None,
    alpha: float = 0.05,
    replicate: int | None = None,
    md_unit: str = "mm^2/s",
    missing: str = "complete-case",
    imputations: int | None = None,
    names=None,
    design=None,
    control: str | None = None,
    visits=None,
    measure: str = "md",
) -> AnalysisResults:
    """Fit the group x dMD interaction model for every ROI and outcome.

    Any number of arms (two or more): the terms are those of
    :attr:`dtitool.design.TrialNames.terms`, and with three or more arms each
    ROI and outcome also gets an ``omnibus`` row, the F test that every arm
    has the control arm's dMD slope (its F in ``estimate``, its denominator df
    in ``df``; see :mod:`dtitool.stats.models`).

    Parameters
    ----------
    participants, roi_md : DataFrame or path-like
        The two input tables (see :mod:`dtitool.tables`), checked with
        :func:`dtitool.tables.check_tables`. Outcomes are those with a score
        column at the baseline and at the primary visit
        (``<outcome>_<visit>``); ROIs are whatever ``roi_md`` holds.
    covariates : sequence of str
        Covariates added to ``group * d_md``: ``"baseline"`` (the outcome's
        baseline score), ``"baseline_md"`` (baseline MD of that ROI), ``"age"``,
        ``"sex"``, or any other participants column (text columns enter as
        categorical). Ignored when ``formula`` is given.
    formula : str, optional
        A patsy formula replacing the default (see :func:`default_formula`). It
        sees the columns ``d_score`` (outcome change), ``d_md`` (MD change per
        1e-5 mm^2/s), ``group``, ``baseline_score``, ``baseline_md`` (per 1e-5
        mm^2/s), ``d_md_pct`` and every participants column. It must contain the
        main effects of ``group`` and ``d_md`` and their interaction, and be
        linear in ``d_md``; the additive model drops the interaction term.
        **The formula is Python code**: patsy evaluates every term with
        ``eval`` (that is how ``np.log(age)`` works), so a formula runs
        whatever Python it contains. Pass only formulas you wrote or checked,
        never one taken from an untrusted file or web form. The default
        formula (``covariates=``) is built by dtitool and quotes every name.
    robust : {None, "HC3"}
        Same as ``inference="hc3"`` (kept for existing code).
    inference : {"welch", "ols", "hc3"}, optional
        ``welch`` (the default; also what None means, unless ``robust="HC3"``):
        each arm fitted on its own (the formula without its group terms); a
        simple slope is that arm's dMD slope, an interaction the difference of
        an arm's slope and the control arm's with SE
        ``sqrt(se_a^2 + se_control^2)`` and Welch-Satterthwaite df, the omnibus
        Welch's (1951) test of equal arm slopes; the pooled slope is the
        feasible-GLS slope of the additive model with per-arm residual
        variances, its variance adjusted for the estimated weights
        (Kenward-Roger) and Satterthwaite df over the arms. It keeps its level
        when the arms' score changes differ in variance, as they do in every
        shipped design (where the ``ols`` interaction tests reject 1.4-2.8 %
        and the arm slopes 0.3-8.5 % at alpha 0.05). ``ols``: classical
        pooled-variance tests (the analysis the reference study reported).
        ``hc3``: HC3 standard errors, t reference with the residual df
        (statsmodels ``cov_type="HC3", use_t=True``; the omnibus F test with
        the same covariance). See ``docs/model.md`` ("Inference") for when
        each is valid.
    families : sequence of str, str or None
        Columns among ``roi``, ``outcome``, ``term`` that define the
        multiplicity families: Holm and Benjamini-Hochberg adjustment is done
        within each combination. Default ``("term",)``: each term across all
        ROI x outcome models (14 tests per family for the reference study).
        ``("term", "outcome")`` adjusts within each outcome; None or ``()``
        makes one family of every row.
    familywise : {"holm-bh", "maxt"}
        ``maxt`` adds ``p_maxt``: Westfall-Young step-down max-T within each
        family, by Freedman-Lane permutation of the reduced model's residuals
        within arms, the same permutation for every model of a family
        (:mod:`dtitool.stats.permutation`), under the chosen ``inference`` (the
        omnibus test by its p, its reduced model imposing every interaction).
    permutations : int
        Permutations for ``maxt``.
    rng : None, int, SeedSequence or Generator
        Seed of the permutations or the imputations (recorded in
        :attr:`AnalysisResults.seed`).
    alpha : float
        Confidence intervals are ``100 * (1 - alpha)`` %.
    replicate, md_unit
        As in :func:`dtitool.tables.check_tables`.
    missing : {"complete-case", "mi"}
        ``complete-case``: a participant enters a model only with all of its
        variables observed. ``mi``: missing 24 h scans and scores are imputed
        ``imputations`` times within each arm from the group, the baseline
        scores and MD and the observed 24 h data (chained Bayesian normal
        regressions, :mod:`dtitool.stats.imputation`), every completed dataset is
        analysed under ``inference`` and the results pooled by Rubin's rules
        with Barnard-Rubin df (adds the ``fmi`` column; the omnibus test by
        the D1 statistic of the interaction contrasts, Li, Raghunathan and
        Rubin 1991, with Reiter's 2007 df). ``mi`` takes its
        covariates from ``covariates`` (no ``formula``), does not support
        ``familywise="maxt"``, and leaves out participants without a baseline
        scan or a covariate. Either way the table says per model how many
        participants were left out or imputed, and why.
    imputations : int, optional
        Imputations for ``mi`` (default
        :data:`dtitool.stats.imputation.DEFAULT_IMPUTATIONS`, 20).
    names, design, control, visits : optional
        The trial's arms, control arm and visits, as
        :func:`dtitool.tables.resolve_names` takes them: ``design`` (or its
        ``names``) gives all of them; otherwise the arms are the ``group``
        levels, ``control`` names the control arm and ``visits`` the visits,
        baseline first. Tables read from a folder find them in its
        ``design.toml`` or ``visits.tsv``.
    measure : str
        The imaging measure ``roi_md`` holds: ``md`` (default), or another
        measure of the ROIs (a ``roi_<measure>.tsv`` table, column
        ``<measure>``): the models then regress on ``d_<measure>`` per the
        design's scale for it (``MeasureSpec.scale``; without a design, that
        of :data:`dtitool.design.measures.KNOWN_MEASURES`, else 1), complete
        cases only.

    Returns
    -------
    AnalysisResults

    Raises
    ------
    ValueError
        On bad input tables, an unknown covariate, an unusable formula, a
        participants column that hides a function the formula calls (such as
        a column named ``C``), no subject with complete data, or a model with
        too few subjects in an arm.

    Warns
    -----
    UserWarning
        When a term is not estimable in a model (e.g. dMD does not vary, or
        a covariate is collinear with it): its row holds NaN, never SE 0 and
        p 1, and :attr:`AnalysisResults.not_estimable` gives the reason.

    Notes
    -----
    Subjects enter a model only with complete data for it (both scans of that
    ROI, both scores of that outcome, every covariate), so a missing 24 h scan
    removes the subject from that ROI's models only; ``n`` gives each model's
    count. Under ``ols`` and ``hc3``, ``df`` is the residual degrees of freedom
    ``n - rank(X)``; under ``welch`` an arm slope has its arm's residual df and
    an interaction or the pooled slope the Satterthwaite df (not a whole
    number), as the example shows.

    The simple slopes are the contrasts ``L b`` of the one fitted model, with
    ``L`` the derivative of a design row with respect to ``d_md`` for a subject
    in that arm; for the default formula that is ``b_2`` (the control arm) and
    ``b_2 + b_3`` (the treatment arm; with more arms, ``b_2`` plus that arm's
    group x dMD coefficient).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> n = 30
    >>> p = pd.DataFrame({"participant_id": [f"s{i}" for i in range(n)],
    ...                   "group": ["ketamine"] * 20 + ["saline"] * 10,
    ...                   "madrs_baseline": rng.integers(25, 40, n)})
    >>> p["madrs_24h"] = p["madrs_baseline"] - rng.integers(0, 15, n)
    >>> md0 = rng.normal(0.8e-3, 0.04e-3, n)
    >>> r = pd.DataFrame({"participant_id": list(p["participant_id"]) * 2,
    ...                   "session": ["baseline"] * n + ["24h"] * n,
    ...                   "roi": "L_BA10",
    ...                   "md": np.r_[md0, md0 + rng.normal(0, 2e-5, n)]})
    >>> res = fit_models(p, r, control="saline", visits=("baseline", "24h"),
    ...                  inference="ols")
    >>> row = res.term("L_BA10", "madrs", "interaction")
    >>> row["n"], row["df"]
    (np.int64(30), np.float64(25.0))
    >>> res = fit_models(p, r, control="saline", visits=("baseline", "24h"))
    >>> res.inference, bool(res.term("L_BA10", "madrs", "interaction")["df"] < 25)
    ('welch', True)
    """
    participants, roi_md = check_tables(
        participants, roi_md, replicate=replicate, md_unit=md_unit, names=names,
        design=design, control=control, visits=visits, measure=measure,
    )
    changes = _changes(participants, roi_md)
    return fit_changes(
        changes,
        covariates=covariates,
        formula=formula,
        robust=robust,
        inference=inference,
        families=families,
        familywise=familywise,
        permutations=permutations,
        rng=rng,
        alpha=alpha,
        missing=missing,
        imputations=imputations,
    )



def fit_changes(
    changes: pd.DataFrame,
    *,
    covariates: Sequence[str] = ("baseline",),
    formula: str | None = None,
    robust: str | None = None,
    inference: str | None = None,
    families: Sequence[str] | str | None = ("term",),
    familywise: str = "holm-bh",
    permutations: int = DEFAULT_PERMUTATIONS,
    rng=None,
    alpha: float = 0.05,
    missing: str = "complete-case",
    imputations: int | None = None,
    names=None,
) -> AnalysisResults:
    """Fit the models to a per-subject changes table.

    Same as :func:`fit_models` but starting from the output of
    :func:`dtitool.tables.compute_changes` (already checked, and carrying the
    trial's names; ``names`` gives them for a changes table built otherwise).
    """
    missing, imputations = check_missing(missing, imputations)
    _, names = _check_changes(changes, names)
    measure = changes.attrs.get("measure", "md")
    if missing == "mi" and measure != "md":
        raise ValueError(f"missing='mi' imputes MD and scores; the {measure} "
                         "models are fitted to complete cases only so far (give "
                         "missing='complete-case')")
    if missing == "mi":
        inference = _check_inference_options(robust, inference, familywise,
                                             permutations)
        covariates, _, families = _check_options(covariates, None, robust, families,
                                                 alpha, changes, names)
        return fit_imputed(changes, covariates=covariates, formula=formula,
                           inference=inference, families=families, alpha=alpha,
                           imputations=imputations, rng=rng, familywise=familywise,
                           names=names)
    res = fit_complete_data(changes, covariates=covariates, formula=formula,
                            robust=robust, inference=inference, families=families,
                            familywise=familywise, permutations=permutations,
                            rng=rng, alpha=alpha, names=names)
    t0 = time.perf_counter()
    table, missing_summary = complete_case_columns(res.table, changes,
                                                   res.covariates, names=names)
    return dataclasses.replace(
        res, table=table, missing_summary=missing_summary,
        elapsed=res.elapsed + time.perf_counter() - t0)
