r"""The complete-data analysis: group x MD-change models of depression change.

One statsmodels OLS fit per ROI and outcome, its reported terms, its inference
options and the printed summary. The entry points
:func:`~dtitool.stats.analysis.fit_models` and
:func:`~dtitool.stats.analysis.fit_changes` run it once (complete case) or on
every completed dataset of a multiple imputation (:mod:`dtitool.stats.missing`).
It knows nothing of missing data: ``analysis`` and ``missing`` import it, it
imports neither.

Per ROI ``r`` and outcome ``k`` (14 models for the default preset's 7 ROIs x 2
outcomes) the default model of a two-arm trial is

.. math::

    \Delta score_k = b_0 + b_1 \, trt + b_2 \, x + b_3 \, trt \cdot x
                     + b_4 \, score_{k,baseline} + e,

with ``x = dMD_r / DMD_SCALE`` (primary visit minus baseline, per 1e-5 mm^2/s)
and ``trt`` the indicator of the treatment arm against the control arm (the
design's ``control``). In patsy terms, for the default preset:
``d_score ~ C(group, Treatment('saline')) * d_md + baseline_score``. With
``k >= 3`` arms the same formula has ``k - 1`` group indicators and ``k - 1``
group x dMD terms. Arms, visits and outcomes are the table's
(:class:`~dtitool.design.TrialNames`, carried by the changes table).

Reported terms (:attr:`TrialNames.terms`, in that order), all from the one
fitted model except the pooled slope. Two arms:

``interaction``
    ``b_3``, the difference of the two arms' dMD slopes.
``slope_<treatment arm>``
    ``b_2 + b_3``, the dMD slope in the treatment arm (a contrast, ``t_test``).
``slope_<control arm>``
    ``b_2``, the dMD slope in the control arm.
``slope_pooled``
    The dMD coefficient of the additive model (the same formula without the
    group x dMD interaction), a slope common to every arm.

Three or more arms: ``interaction_<arm>`` for each arm but the control (that
arm's dMD slope minus the control arm's), ``slope_<arm>`` for every arm (control
last), ``slope_pooled``, and

``omnibus``
    The F test that every arm has the control arm's dMD slope (all ``k - 1``
    interactions zero; :mod:`dtitool.stats.omnibus`). Its row holds a test, not
    an estimate: ``estimate`` is the F statistic, ``df`` its denominator df
    (the numerator df is ``k - 1``), ``p`` its p; ``se``, ``t``, ``ci_low`` and
    ``ci_high`` are NaN. Under ``ols`` and ``hc3`` it is statsmodels'
    ``f_test`` of the interaction contrasts (with the HC3 covariance for
    ``hc3``), on ``(k - 1, n - rank(X))`` df; under ``welch`` Welch's (1951)
    heteroscedastic test of equal arm slopes; under multiple imputation the
    ``D1`` statistic of the pooled interactions (:mod:`dtitool.stats.missing`).
    It is NaN when an interaction is not estimable.

Inference (``inference=``; ``docs/model.md``, "Inference"): ``welch`` (the
default: each arm fitted on its own; an interaction as the difference of two
arm slopes with Welch-Satterthwaite df; the pooled slope by feasible GLS with
per-arm residual variances, its variance adjusted for the estimated weights
(Kenward-Roger) and its df by Satterthwaite over the arms), ``ols`` (classical
pooled-variance tests, as reported) or ``hc3`` (HC3 standard errors, t
reference with the residual df). ``familywise="maxt"`` adds Westfall-Young
max-T adjusted p by Freedman-Lane permutation within arms
(:mod:`dtitool.stats.permutation`).

Sign convention: improvement is a negative score change, so "a larger MD
decrease goes with more improvement" is a positive slope.
"""

from __future__ import annotations

import keyword
import re
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import patsy
from scipy import special

# linear_model alone: statsmodels.api imports all of statsmodels (0.68 s, against
# 0.43 s with multitest)
from statsmodels.regression.linear_model import OLS, WLS

from dtitool._constants import DMD_SCALE, DMD_UNIT
from dtitool.design.layout import TrialNames
from dtitool.simulate import as_seed_sequence
from dtitool.stats.inference import check_inference, welch_df
from dtitool.stats.measure import Measure as _Measure
from dtitool.stats.measure import measure_of as _measure_of
from dtitool.stats.multiplicity import adjust_within_families
from dtitool.stats.omnibus import f_sf, welch_omnibus
from dtitool.stats.permutation import (
    PermutationModel,
    maxt_adjust,
    permutation_p,
    satterthwaite_df,
)
from dtitool.tables import COVARIATES, MIN_PER_ARM, _roi_order, changes_names

__all__ = [
    "COVARIATES",
    "DEFAULT_PERMUTATIONS",
    "FAMILYWISE",
    "FMI_COLUMN",
    "MAXT_COLUMN",
    "RESULT_COLUMNS",
    "AnalysisResults",
    "default_formula",
    "fit_complete_data",
    "format_summary",
]


RESULT_COLUMNS = (
    "roi", "outcome", "term", "estimate", "se", "t", "df", "p", "ci_low",
    "ci_high", "n", "p_holm", "p_fdr", "inference", "missing", "n_dropped",
    "n_imputed", "missing_reasons",
)  # fmt: skip
"""Columns of :attr:`AnalysisResults.table` and of ``results.tsv`` (plus
:data:`MAXT_COLUMN` with ``familywise="maxt"`` and :data:`FMI_COLUMN` with
``missing="mi"``). ``n_dropped``: participants not in the model;
``n_imputed``: participants in it with imputed values (``mi``);
``missing_reasons``: counts per reason."""

FMI_COLUMN = "fmi"
"""Fraction of missing information of a pooled estimate, added by ``missing="mi"``."""

MAXT_COLUMN = "p_maxt"
"""Max-T (Westfall-Young, Freedman-Lane) adjusted p, added by ``familywise="maxt"``."""

FAMILYWISE = ("holm-bh", "maxt")
"""``holm-bh``: Holm and Benjamini-Hochberg adjusted p; ``maxt``: those and max-T."""

DEFAULT_PERMUTATIONS = 10_000
"""Permutations for max-T: the Monte Carlo SE of a p_maxt near 0.05 is 0.002."""


_FAMILY_KEYS = ("roi", "outcome", "term")
_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DMD_RE = re.compile(r"\bd_md\b")
_GROUP_RE = re.compile(r"\bgroup\b")


@dataclass(frozen=True, slots=True, eq=False)
class AnalysisResults:
    """Results of the per-ROI x outcome models.

    Equality is identity, as for statsmodels results: the fields hold
    DataFrames and fitted models, whose ``==`` is not one truth value.

    Parameters
    ----------
    table : DataFrame
        Tidy results, columns :data:`RESULT_COLUMNS`, one row per ROI x outcome
        x term. Estimates are score points per ``dmd_scale`` mm^2/s of MD change.
    changes : DataFrame
        The per-subject x ROI changes the models were fitted to (see
        :func:`dtitool.tables.compute_changes`).
    fits : mapping
        ``(roi, outcome) -> statsmodels RegressionResults`` of the interaction
        model, for inspection (``fits[("L_BA10", "madrs")].summary()``).
    additive_fits : mapping
        ``(roi, outcome) ->`` results of the additive (no interaction) model
        (for ``welch`` the feasible-GLS WLS fit).
    rows : mapping
        ``(roi, outcome) ->`` index labels of ``changes`` used by that model
        (complete cases).
    formula : str
        The interaction model's patsy formula.
    covariates : tuple of str
        Covariates in the model (empty when ``formula`` was given).
    robust : str or None
        ``"HC3"`` when ``inference`` is ``hc3``, else None.
    families : tuple of str
        Columns whose combinations define the multiplicity families for
        ``p_holm`` and ``p_fdr`` (empty: one family of all rows).
    dmd_scale : float
        MD change unit of the estimates, mm^2/s.
    dmd_unit : str
        Human-readable statement of ``dmd_scale``.
    elapsed : float
        Seconds spent fitting.
    inference : str
        ``ols``, ``hc3`` or ``welch`` (also a column of :attr:`table`).
    arm_fits : mapping
        ``welch`` only: ``(roi, outcome) -> {arm: res}``, the per-arm
        statsmodels fits.
    permutations : int
        Permutations behind ``p_maxt`` (0 without max-T).
    seed : int or None
        Seed of the max-T permutations or of the imputations (repeats them
        exactly).
    not_estimable : mapping
        ``(roi, outcome) -> reason`` for models in which a reported term is
        not estimable (its row holds NaN): dMD without variation, or columns
        that are collinear.
    missing : str
        ``complete-case`` or ``mi`` (also a column of :attr:`table`).
    imputations : int
        Imputations behind a ``mi`` analysis (0 for complete case).
    missing_summary : str
        One line: how many participants were left out or imputed, and why.
    names : TrialNames or None
        The arms, control arm and visits of the data (and so the terms).
    interactions : mapping
        ``(roi, outcome) -> (estimate, covariance)`` of the interaction
        contrasts under the inference option, shapes ``(k - 1,)`` and
        ``(k - 1, k - 1)`` (NaN where not estimable): what the omnibus test
        and its multiple-imputation pooling use (empty for the pooled
        results of a multiple imputation).
    measure : str
        The imaging measure whose change the models regress on: ``md``, or
        another measure of the ROIs (then ``dmd_scale`` and ``dmd_unit`` are
        that measure's, and the regressor is ``d_<measure>``).
    """

    table: pd.DataFrame
    changes: pd.DataFrame = field(repr=False)
    fits: Mapping = field(repr=False)
    additive_fits: Mapping = field(repr=False)
    rows: Mapping = field(repr=False)
    formula: str
    covariates: tuple[str, ...]
    robust: str | None
    families: tuple[str, ...]
    dmd_scale: float = DMD_SCALE
    dmd_unit: str = DMD_UNIT
    elapsed: float = 0.0
    inference: str = "welch"
    arm_fits: Mapping = field(default_factory=dict, repr=False)
    permutations: int = 0
    seed: int | None = None
    not_estimable: Mapping = field(default_factory=dict, repr=False)
    missing: str = "complete-case"
    imputations: int = 0
    missing_summary: str = ""
    names: TrialNames | None = None
    measure: str = "md"
    interactions: Mapping = field(default_factory=dict, repr=False)

    def term(self, roi: str, outcome: str, term: str) -> pd.Series:
        """Return the table row of one ROI, outcome and term."""
        t = self.table
        row = t.loc[(t["roi"] == roi) & (t["outcome"] == outcome) & (t["term"] == term)]
        if len(row) != 1:
            raise ValueError(
                f"no result for roi={roi!r}, outcome={outcome!r}, term={term!r}"
            )
        return row.iloc[0]

    def summary(self, *, terms: Sequence[str] | None = None) -> str:
        """Return a readable text table of the results (every term by default)."""
        return format_summary(self, terms=terms)

    def _repr_html_(self) -> str:
        """Jupyter's display: the model and every term's estimate, SE and p."""
        from dtitool.stats._html import result_html

        facts = [("formula", self.formula), ("inference", self.inference),
                 ("estimates in", self.dmd_unit), ("missing", self.missing_summary
                                                    or self.missing),
                 ("seed", self.seed)]
        return result_html(
            "AnalysisResults", facts, self.table,
            columns=("measure", "roi", "outcome", "term", "estimate", "se", "t",
                     "df", "p", "ci_low", "ci_high", "n", "p_holm", "p_fdr"),
            max_rows=120)


def default_formula(covariates: Sequence[str] = ("baseline",), *, control: str,
                    types=None, regressor: str = "d_md") -> str:
    """Return the interaction model's patsy formula for the given covariates.

    Parameters
    ----------
    covariates : sequence of str
        Names from :data:`COVARIATES` or participants columns.
    control : str
        The control arm (the reference level of ``group``).
    types : mapping, optional
        ``name -> "numeric" | "categorical"``; names not given are numeric
        except ``sex``.
    regressor : str
        The imaging change: ``d_md``, or ``d_<measure>`` for another measure.

    Examples
    --------
    >>> default_formula(("baseline", "age", "sex"), control="saline")
    "d_score ~ C(group, Treatment('saline')) * d_md + baseline_score + age + C(sex)"
    """
    if not isinstance(control, str) or not control:
        raise TypeError(f"control must be an arm name; got {control!r}")
    types = dict(types or {})
    rhs = [f"C(group, Treatment({control!r})) * {regressor}"]
    for c in covariates:
        name = ("baseline_score" if c == "baseline" else
                f"baseline_{regressor[2:]}" if c == "baseline_md" else c)
        plain = _NAME_RE.match(name) and not keyword.iskeyword(name)
        ref = name if plain else f"Q({name!r})"
        kind = types.get(c, "categorical" if c == "sex" else "numeric")
        rhs.append(f"C({ref})" if kind == "categorical" else ref)
    return "d_score ~ " + " + ".join(rhs)


def _check_options(covariates, formula, robust, families, alpha, changes,
                   names: TrialNames):
    if robust not in (None, "HC3"):
        raise ValueError(f"robust must be None or 'HC3', got {robust!r}")
    if families is None:
        families = ()
    elif isinstance(families, str):
        families = (families,)
    families = tuple(families)
    bad = [f for f in families if f not in _FAMILY_KEYS]
    if bad:
        raise ValueError(
            f"families must be column names among {', '.join(_FAMILY_KEYS)}, "
            f"got {bad[0]!r}"
        )
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    if isinstance(covariates, str):
        covariates = (covariates,)
    covariates = tuple(covariates)
    if formula is not None:
        if not isinstance(formula, str) or "~" not in formula:
            raise ValueError(
                f"formula must be a patsy formula string 'd_score ~ ...', got "
                f"{formula!r}"
            )
        return (), formula, families
    ms = _measure_of(changes)
    known = set(COVARIATES) | set(changes.columns)
    taken = {"participant_id", "group", "roi", ms.x, "d_score"}
    types = {}
    for c in covariates:
        if c not in known or c in taken:
            others = sorted(
                set(changes.columns)
                - taken
                - {f"{ms.name}_{v}" for v in names.visits} - {f"{ms.x}_pct"}
                - {c for c in changes.columns if c.startswith("d_")}
            )
            raise ValueError(
                f"unknown covariate {c!r}; expected one of "
                f"{', '.join(COVARIATES)} or a participants column "
                f"({', '.join(others) or 'none'})"
            )
        if c in changes.columns and not pd.api.types.is_numeric_dtype(changes[c]):
            types[c] = "categorical"
    if len(set(covariates)) != len(covariates):
        raise ValueError(f"covariates are repeated: {covariates}")
    return (covariates,
            default_formula(covariates, control=names.control, types=types,
                            regressor=ms.x),
            families)


_FRAME_COLUMNS = ("participant_id", "group", "roi")


def _model_frame(changes: pd.DataFrame, outcome: str, names: TrialNames,
                 columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Return the data a formula sees: every changes column, or only ``columns``.

    The default formula gets only what it names, so that an unrelated
    participants column (say one called ``C``) cannot hide a patsy function.
    """
    ms = _measure_of(changes)
    frame = changes.copy() if columns is None else changes.loc[
        :, [c for c in dict.fromkeys([*_FRAME_COLUMNS, f"{ms.x}_pct", *columns])
            if c in changes.columns]].copy()
    frame["d_score"] = changes[f"d_{outcome}"]
    frame["baseline_score"] = changes[names.score_column(outcome, names.baseline)]
    frame[ms.x] = changes[ms.x] / ms.scale
    frame[f"baseline_{ms.name}"] = changes[f"{ms.name}_{names.baseline}"] / ms.scale
    return frame


def _term_factor_codes(term) -> list[str]:
    return [f.name() for f in term.factors]


def _slope_contrasts(design_info, frame: pd.DataFrame, formula: str,
                     names: TrialNames, ms: _Measure | None = None) -> np.ndarray:
    """Rows d(design row)/d(d_md) for a subject of each arm.

    Returns an array (k, p), one row per arm in ``names.arms`` order (control
    last; for two arms [treatment, control]). Raises if the model is not linear
    in d_md, lacks the required terms, or lets the slope depend on another
    variable.
    """
    ms = _Measure() if ms is None else ms
    x_re, x = ms.pattern, ms.x
    terms = design_info.terms
    codes = [_term_factor_codes(t) for t in terms]
    has_group_main = any(len(c) == 1 and _GROUP_RE.search(c[0]) for c in codes)
    has_dmd_main = any(len(c) == 1 and x_re.search(c[0]) for c in codes)
    has_inter = any(
        len(c) == 2
        and any(_GROUP_RE.search(v) for v in c)
        and any(x_re.search(v) for v in c)
        for c in codes
    )
    if not (has_group_main and has_dmd_main and has_inter):
        raise ValueError(
            f"formula {formula!r} must contain the main effects of group and "
            f"{x} and their interaction (e.g. 'd_score ~ C(group, "
            f"Treatment({names.control!r})) * {x} + baseline_score')"
        )
    k = len(names.arms)
    row = frame.iloc[[0] * (3 * k)].copy()
    row["group"] = [a for a in names.arms for _ in range(3)]
    row[x] = [0.0, 1.0, 2.0] * k
    (X,) = patsy.build_design_matrices([design_info], row, NA_action="raise")
    X = np.asarray(X)
    d1 = X[1::3] - X[0::3]
    d2 = X[2::3] - X[1::3]
    if not np.allclose(d1, d2, rtol=1e-9, atol=1e-12):
        raise ValueError(f"formula {formula!r} must be linear in {x}")
    for term, sl in design_info.term_slices.items():
        if not np.any(d1[:, sl]):
            continue
        others = [
            c for c in _term_factor_codes(term)
            if not (_GROUP_RE.search(c) or x_re.search(c))
        ]  # fmt: skip
        if others:
            raise ValueError(
                f"formula {formula!r} lets the {x} slope depend on "
                f"{', '.join(others)}; per-arm slopes would not be single "
                "numbers"
            )
    return d1


def _arm_contrasts(L: np.ndarray) -> np.ndarray:
    """Return the interactions (arm slope minus control slope), then the slopes.

    ``L`` (k, p) from :func:`_slope_contrasts`; returns (2k - 1, p), for two
    arms ``[L0 - L1, L0, L1]``.
    """
    return np.vstack([L[:-1] - L[-1], L])


def _interaction_columns(design_info, pattern: re.Pattern = _DMD_RE) -> np.ndarray:
    """Boolean mask of design columns belonging to group x d_md terms."""
    mask = np.zeros(len(design_info.column_names), dtype=bool)
    for term, sl in design_info.term_slices.items():
        c = _term_factor_codes(term)
        if any(_GROUP_RE.search(x) for x in c) and any(pattern.search(x) for x in c):
            mask[sl] = True
    return mask


def _check_shadowed_names(formula: str, frame: pd.DataFrame) -> None:
    """Refuse a data column that hides a function the formula calls.

    patsy looks names up in the data first, so a participants column called
    ``C`` would replace patsy's ``C()`` and break the model in obscure ways.
    """
    called = set(re.findall(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(", formula))
    hidden = sorted(called & set(map(str, frame.columns)))
    if hidden:
        raise ValueError(
            f"participants column {hidden[0]!r} hides the function {hidden[0]}() "
            f"that the model formula calls ({formula!r}); rename the column"
        )


def _estimable(X: np.ndarray, L: np.ndarray) -> np.ndarray:
    """Which rows of ``L`` are estimable contrasts of a model with design ``X``.

    ``L b`` is estimable when ``L`` lies in the row space of ``X`` (orthogonal
    to its null space). With a rank-deficient ``X`` (e.g. dMD that does not
    vary) the pseudo-inverse statsmodels uses would report a non-estimable
    contrast as an estimate of 0 with SE 0 and p 1.
    """
    L = np.atleast_2d(L)
    if X.shape[0] == 0:
        return np.zeros(len(L), dtype=bool)
    _, sv, vt = np.linalg.svd(X, full_matrices=False)
    tol = sv.max(initial=0.0) * max(X.shape) * np.finfo(float).eps
    rank = int((sv > tol).sum())
    if rank == X.shape[1]:
        return np.ones(len(L), dtype=bool)
    null = vt[rank:].T
    norm = np.linalg.norm(L, axis=1)
    return np.linalg.norm(L @ null, axis=1) <= 1e-8 * np.maximum(norm, 1.0)


def _estimable_terms(X, arms, Lc, keep, l_add, within, inference) -> np.ndarray:
    """Estimability of the reported terms (``names.terms`` order).

    ``arms`` (n,) arm codes, ``Lc`` (2k - 1, p) from :func:`_arm_contrasts`.
    The omnibus test (three or more arms) needs every interaction.
    """
    k = (len(Lc) + 1) // 2
    pooled = _estimable(X[:, keep], l_add)[0]
    if inference != "welch":
        ok = _estimable(X, Lc)
    else:
        slope = np.array([_estimable(X[arms == a][:, within],
                                     Lc[k - 1 + a][within])[0] for a in range(k)])
        ok = np.r_[slope[:-1] & slope[-1], slope]
    out = np.r_[ok, pooled]
    return out if k <= 2 else np.r_[out, ok[:k - 1].all()]


def _why_not_estimable(used: pd.DataFrame, names: TrialNames,
                       x: str = "d_md") -> str:
    d = used[x].to_numpy()
    if d.size and np.ptp(d) == 0:
        return f"{x} does not vary: every subject has {d[0]:g}"
    for g in names.arms:
        dg = d[used["group"].to_numpy() == g]
        if dg.size and np.ptp(dg) == 0:
            return f"{x} does not vary within the {g} arm"
    return "the model's columns are collinear (a covariate duplicates another term)"


def _check_changes(changes, names=None) -> tuple[list[str], TrialNames]:
    """Raise unless ``changes`` is a changes table; return its outcomes and names."""
    if not isinstance(changes, pd.DataFrame):
        raise TypeError(
            f"changes must be a DataFrame from compute_changes, got "
            f"{type(changes).__name__}"
        )
    names = changes_names(changes, names)
    m = _measure_of(changes).name
    need = ["participant_id", "group", "roi", f"d_{m}", f"{m}_{names.baseline}"]
    missing = [c for c in need if c not in changes.columns]
    if missing:
        raise ValueError(
            f"changes table is missing column(s) {missing}; build it with "
            "compute_changes"
        )
    # md_<visit> (or the measure's) are the changes table's own, not an outcome
    outcomes = [k for k in names.outcomes_in(changes.columns)
                if k != m and f"d_{k}" in changes.columns]
    if not outcomes:
        raise ValueError(
            "changes table has no outcome change columns: an outcome needs "
            f"<outcome>_{names.baseline}, <outcome>_{names.primary} and d_<outcome>")
    return outcomes, names



def _arm_codes(group: np.ndarray, names: TrialNames) -> np.ndarray:
    """Arm code ``0 .. k - 1`` (``names.arms`` order) of every row's group."""
    codes = pd.Index(names.arms).get_indexer(group)
    if (codes < 0).any():
        other = sorted({str(g) for g in np.asarray(group)[codes < 0]})
        raise ValueError(
            f"group {other[0]!r} is not one of the trial's arms "
            f"({', '.join(names.arms)}); pass names= with every arm")
    return codes.astype(np.intp)


def fit_complete_data(
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
    names: TrialNames | None = None,
) -> AnalysisResults:
    """Fit every ROI x outcome model to a changes table: the complete-data analysis.

    The arguments are those of :func:`dtitool.stats.analysis.fit_changes`
    without ``missing`` and ``imputations``. A participant enters a model only
    with every variable of that model observed. This is what ``fit_changes``
    runs for a complete-case analysis, and what the multiple-imputation
    analysis (:func:`dtitool.stats.missing.fit_imputed`) runs on every
    completed dataset before pooling.

    Returns
    -------
    AnalysisResults
        Its table has the columns of :data:`RESULT_COLUMNS` up to
        ``inference`` (and :data:`MAXT_COLUMN` with ``familywise="maxt"``):
        saying how many participants were left out, and why, is the caller's
        (``fit_changes`` adds those columns and ``missing_summary``).
    """
    outcomes, names = _check_changes(changes, names)
    ms = _measure_of(changes)
    terms = names.terms
    user_formula = formula is not None
    covariates, formula, families = _check_options(
        covariates, formula, robust, families, alpha, changes, names
    )
    inference = _check_inference_options(robust, inference, familywise, permutations)
    not_estimable: dict[tuple[str, str], str] = {}
    t0 = time.perf_counter()
    rois = _roi_order(changes["roi"])
    records = []
    fits, additive_fits, used_rows, arm_fits, perm_models = {}, {}, {}, {}, []
    interactions = {}
    subject_index = {s: i for i, s in enumerate(pd.unique(changes["participant_id"]))}
    for outcome in outcomes:
        frame = _model_frame(changes, outcome, names,
                             None if user_formula else ("group", *covariates))
        _check_shadowed_names(formula, frame)
        try:
            y_df, X_df = patsy.dmatrices(
                formula, frame, NA_action="drop", return_type="dataframe"
            )
        except patsy.PatsyError as e:
            msg = str(e).splitlines()[0]
            raise ValueError(f"cannot use formula {formula!r}: {msg}") from None
        if y_df.shape[1] != 1:
            raise ValueError(f"formula {formula!r} must have one response")
        if len(y_df) == 0:
            raise ValueError(
                f"no participant has complete data for the {outcome} models (both "
                f"{outcome} scores, both scans of an ROI and every covariate)"
            )
        info = X_df.design_info
        present = set(frame.loc[y_df.index, "group"])
        absent = [a for a in names.arms if a not in present]
        if absent:
            raise ValueError(
                f"no participant of the {', '.join(absent)} arm has complete data "
                f"for the {outcome} models (need at least {MIN_PER_ARM} per arm)")
        L = _slope_contrasts(info, frame.loc[y_df.index], formula, names, ms)
        Lc = _arm_contrasts(L)
        keep = ~_interaction_columns(info, ms.pattern)
        L_add = L[0, keep][None, :]
        if not np.any(L_add):
            raise ValueError(f"formula {formula!r} has no {ms.x} main effect")
        columns = np.asarray(info.column_names)
        within = ~_group_columns(info)
        used = frame.loc[y_df.index]
        y_all = y_df.to_numpy()[:, 0]
        X_all = X_df.to_numpy()
        roi_used = used["roi"].to_numpy()
        index_used = used.index.to_numpy()
        group_used = used["group"].to_numpy()
        code_used = _arm_codes(group_used, names)
        for roi in rois:
            rows = roi_used == roi
            n = int(rows.sum())
            counts = {g: int((group_used[rows] == g).sum()) for g in names.arms}
            if min(counts.values()) < MIN_PER_ARM or n - X_all.shape[1] < 1:
                raise ValueError(
                    f"too few subjects to fit {roi} / {outcome}: "
                    + ", ".join(f"{v} {g}" for g, v in counts.items())
                    + f" with complete data (need at least {MIN_PER_ARM} per arm "
                    f"and more than {X_all.shape[1]} in all)"
                )
            y, X = y_all[rows], X_all[rows]
            arms = code_used[rows]
            inf = _infer(y, X, columns, arms, Lc, keep, L_add[0], within,
                         inference, alpha, names)
            fits[(roi, outcome)] = inf.full
            additive_fits[(roi, outcome)] = inf.additive
            if inf.arms:
                arm_fits[(roi, outcome)] = inf.arms
            used_rows[(roi, outcome)] = index_used[rows]
            ok = _estimable_terms(X, arms, Lc, keep, L_add[0], within, inference)
            if not ok.all():
                not_estimable[(roi, outcome)] = _why_not_estimable(used[rows], names,
                                                                   ms.x)
            est_i, cov_i = inf.interactions
            if not ok[:len(names.arms) - 1].all():
                est_i, cov_i = np.full_like(est_i, np.nan), np.full_like(cov_i, np.nan)
            interactions[(roi, outcome)] = (est_i, cov_i)
            for term, row, fine in zip(terms, inf.rows, ok, strict=True):
                if not fine:  # NaN with a reason, never SE 0 and p 1
                    row = (np.nan, np.nan, np.nan, row[3], np.nan, np.nan, np.nan)
                records.append((roi, outcome, term, *row, n))
            if familywise == "maxt":
                ids = used["participant_id"].to_numpy()[rows]
                perm_models.append(PermutationModel(
                    y=y, X=X, arms=arms,
                    subjects=np.array([subject_index[i] for i in ids]),
                    contrasts=Lc, additive=keep, pooled=L_add[0], within_arm=within))
    table = pd.DataFrame.from_records(records, columns=list(RESULT_COLUMNS[:11]))
    table["df"] = table["df"].astype(float)
    table["n"] = table["n"].astype(int)
    table["p_holm"], table["p_fdr"] = adjust_within_families(table, families)
    table["inference"] = inference
    seed = None
    if familywise == "maxt":
        seed, table[MAXT_COLUMN] = _maxt_column(table, families, perm_models,
                                                inference, permutations, rng)
    table = _sort(table, rois, outcomes, terms)
    if not_estimable:
        by_reason: dict[str, list[str]] = {}
        for (r, o), why in not_estimable.items():
            by_reason.setdefault(why, []).append(f"{r}/{o}")
        warnings.warn(
            "terms not estimable, reported as NaN: " + "; ".join(
                f"{why} in {len(m)} model(s) ({', '.join(m)})"
                for why, m in by_reason.items()),
            stacklevel=4,  # the line that called fit_models
        )
    elapsed = time.perf_counter() - t0
    return AnalysisResults(
        table=table,
        changes=changes,
        fits=fits,
        additive_fits=additive_fits,
        rows=used_rows,
        formula=formula,
        covariates=covariates,
        robust="HC3" if inference == "hc3" else None,
        families=families,
        elapsed=elapsed,
        inference=inference,
        arm_fits=arm_fits,
        permutations=permutations if familywise == "maxt" else 0,
        seed=seed,
        not_estimable=not_estimable,
        names=names,
        interactions=interactions,
        dmd_scale=ms.scale,
        dmd_unit=ms.unit,
        measure=ms.name,
    )

# ------------------------------------------------------------ inference options


def _check_inference_options(robust, inference, familywise, permutations) -> str:
    if robust is not None and robust != "HC3":
        raise ValueError(f"robust must be None or 'HC3', got {robust!r}")
    if inference is None:  # the default: welch, unless robust asks for hc3
        inference = "hc3" if robust == "HC3" else "welch"
    check_inference(inference)
    if robust == "HC3":
        if inference not in ("ols", "hc3"):
            raise ValueError(f"robust='HC3' asks for inference 'hc3' but inference "
                             f"is {inference!r}; give one of them")
        inference = "hc3"
    if familywise not in FAMILYWISE:
        raise ValueError(f"familywise must be one of {', '.join(FAMILYWISE)}; got "
                         f"{familywise!r}")
    if isinstance(permutations, bool) or not isinstance(
            permutations, int | np.integer) or permutations < 1:
        raise ValueError(f"permutations must be a positive integer; got "
                         f"{permutations!r}")
    return inference


def _group_columns(design_info) -> np.ndarray:
    """Boolean mask of design columns of terms that involve group."""
    mask = np.zeros(len(design_info.column_names), dtype=bool)
    for term, sl in design_info.term_slices.items():
        if any(_GROUP_RE.search(x) for x in _term_factor_codes(term)):
            mask[sl] = True
    return mask


@dataclass(frozen=True, slots=True)
class _Inferred:
    rows: list  # per term: estimate, se, t, df, p, ci_low, ci_high
    full: object
    additive: object
    arms: dict
    interactions: tuple  # estimates (k - 1,) and covariance (k - 1, k - 1)


def _ols(y, X, names, **fit_kw):
    model = OLS(y, X)
    model.data.xnames = list(names)
    model.data.ynames = "d_score"
    return model.fit(**fit_kw)


def _row(est, se, df, alpha):
    """Return estimate, se, t, df, p, ci_low, ci_high of a t test with ``df``."""
    with np.errstate(invalid="ignore", divide="ignore"):
        t = est / se
        p = 2.0 * special.stdtr(df, -abs(t))
        q = special.stdtrit(df, 1.0 - alpha / 2.0) if df > 0 else np.nan
    return (float(est), float(se), float(t), float(df), float(p),
            float(est - q * se), float(est + q * se))


def _contrast_rows(res, L, alpha):
    ct = res.t_test(L)
    ci = np.asarray(ct.conf_int(alpha=alpha)).reshape(-1, 2)
    cols = (np.atleast_1d(np.asarray(ct.effect, float)),
            np.atleast_1d(np.asarray(ct.sd, float)).ravel(),
            np.atleast_1d(np.asarray(ct.tvalue, float)).ravel(),
            np.atleast_1d(np.asarray(ct.pvalue, float)).ravel())
    return [(e, s, t, float(res.df_resid), p, lo, hi)
            for e, s, t, p, (lo, hi) in zip(*cols, ci, strict=True)]


def _f_row(F, df2, p) -> tuple:
    """Return an omnibus row: the F statistic as ``estimate``, its denominator df."""
    nan = np.nan
    return (float(F), nan, nan, float(df2), float(p), nan, nan)


def _f_test_row(res, L) -> tuple:
    """Omnibus row of statsmodels' F test of ``L b = 0`` (the model's covariance)."""
    try:
        with warnings.catch_warnings():
            # a non-estimable contrast is reported as NaN (and warned about) later
            warnings.simplefilter("ignore")
            ft = res.f_test(L)
    except (ValueError, np.linalg.LinAlgError):
        return _f_row(np.nan, np.nan, np.nan)
    return _f_row(np.squeeze(ft.fvalue), ft.df_denom, np.squeeze(ft.pvalue))


def _infer(y, X, names, arms, Lc, keep, l_add, within, inference, alpha,
           trial: TrialNames) -> _Inferred:
    """Return the terms of one model (``trial.terms``) under one inference option.

    ``names``: the design matrix's column names; ``arms``: each row's arm code
    (``trial.arms`` order); ``Lc``: :func:`_arm_contrasts`; ``trial``: the arms.
    """
    k = len(trial.arms)
    Li = Lc[:k - 1]
    if inference != "welch":
        kw = {"cov_type": "HC3", "use_t": True} if inference == "hc3" else {}
        res = _ols(y, X, names, **kw)
        res_add = _ols(y, X[:, keep], names[keep], **kw)
        rows = _contrast_rows(res, Lc, alpha) + _contrast_rows(res_add, l_add[None],
                                                               alpha)
        if k > 2:
            rows.append(_f_test_row(res, Li))
        cov = np.asarray(res.cov_params())
        inter = (Li @ np.asarray(res.params), Li @ cov @ Li.T)
        return _Inferred(rows, res, res_add, {}, inter)
    # Welch: each arm on its own, the formula without its group terms.
    fits, est, var, dfs = {}, [], [], []
    for a, arm in enumerate(trial.arms):
        rows_a = arms == a
        res_a = _ols(y[rows_a], X[rows_a][:, within], names[within])
        fits[arm] = res_a
        la = Lc[k - 1 + a][within]
        df_a = res_a.df_resid
        est.append(float(la @ res_a.params))
        var.append(float(la @ res_a.cov_params() @ la) if df_a > 0 else np.nan)
        dfs.append(df_a)
    c = k - 1
    out = [_row(est[a] - est[c], np.sqrt(var[a] + var[c]),
                welch_df(var[a], dfs[a], var[c], dfs[c]), alpha) for a in range(c)]
    out += [_row(est[a], np.sqrt(var[a]), dfs[a], alpha) for a in range(k)]
    inter = (np.array(est[:c]) - est[c], np.diag(var[:c]) + var[c])
    if k > 2:
        F, _, df2 = welch_omnibus(est, var, dfs)
        omnibus = [_f_row(F, df2, f_sf(F, k - 1, df2))]
    else:
        omnibus = []
    # Pooled slope: feasible GLS of the additive model, weights 1 / s_a^2.
    Xa = X[:, keep]
    if min(res_a.df_resid for res_a in fits.values()) < 1:
        # an arm without residual df has no variance estimate, so no weight
        nan = (np.nan,) * 7
        return _Inferred([*out, nan, *omnibus], _ols(y, X, names), None, fits,
                         inter)
    s2 = np.array([float(fits[arm].scale) for arm in trial.arms])
    w = (1.0 / s2)[arms]
    model = WLS(y, Xa, weights=w)
    model.data.xnames = list(names[keep])
    model.data.ynames = "d_score"
    res_w = model.fit(cov_type="fixed scale")  # Var = (X'WX)^{-1}: known weights
    Phi = np.asarray(res_w.normalized_cov_params)
    m = Phi @ l_add
    var_p, v, df_v = float(l_add @ m), [], []
    for a, arm in enumerate(trial.arms):
        rows_a = arms == a
        Hm = (Xa[rows_a].T @ (Xa[rows_a] @ m)) / s2[a]
        va = float(m @ Hm)
        # Kenward-Roger adjustment for the estimated weights.
        var_p += 4.0 * (va - float(Hm @ Phi @ Hm)) / fits[arm].df_resid
        v.append(va)
        df_v.append(fits[arm].df_resid)
    df_p = satterthwaite_df(v, df_v)
    out.append(_row(float(l_add @ res_w.params), np.sqrt(var_p), float(df_p), alpha))
    return _Inferred([*out, *omnibus], _ols(y, X, names), res_w, fits, inter)


def _maxt_column(table, families, models, inference, permutations, rng):
    """Seed and ``p_maxt`` of every row of the (unsorted) table."""
    ss = as_seed_sequence(rng)
    n_subjects = 1 + max(int(m.subjects.max()) for m in models)
    keys = np.random.default_rng(ss).random((permutations, n_subjects))
    observed, permuted = permutation_p(models, inference=inference, keys=keys)
    out = np.full(len(table), np.nan)
    if families:
        groups = table.groupby(list(families), sort=False).indices.values()
    else:
        groups = [np.arange(len(table))]
    p = table["p"].to_numpy()
    for idx in groups:
        idx = np.asarray(idx)
        obs = np.where(np.isnan(p[idx]), np.nan, observed[idx])
        out[idx] = maxt_adjust(obs, permuted[:, idx])
    return int(ss.entropy), out


def _sort(table, rois, outcomes, terms):
    order = (
        table["roi"].map({r: i for i, r in enumerate(rois)}) * 1000
        + table["outcome"].map({k: i for i, k in enumerate(outcomes)}) * 10
        + table["term"].map({t: i for i, t in enumerate(terms)})
    )
    return table.iloc[np.argsort(order.to_numpy(), kind="stable")].reset_index(
        drop=True
    )


def format_summary(results: AnalysisResults, *,
                   terms: Sequence[str] | None = None) -> str:
    """Format ``results`` as a readable text table.

    Parameters
    ----------
    results : AnalysisResults
    terms : sequence of str, optional
        Terms to show (default: every term of the results).

    Returns
    -------
    str
    """
    if terms is None:
        terms = list(dict.fromkeys(results.table["term"]))
    t = results.table.loc[results.table["term"].isin(list(terms))]
    nm = results.names
    span = (f"{nm.primary} minus {nm.baseline}" if nm is not None
            else "follow-up minus baseline")
    maxt = MAXT_COLUMN in t.columns
    lines = [
        f"Model: {results.formula}; inference {results.inference}"
        + (f" ({_INFERENCE_TEXT[results.inference]})"),
        f"Estimates: score points {results.dmd_unit} ({span}); "
        "negative score change = improvement, so a positive slope means "
        f"{'MD' if results.measure == 'md' else results.measure} decrease goes "
        "with improvement.",
        "Adjusted p (Holm, BH-FDR"
        + (", max-T" if maxt else "")
        + ") within families by "
        + (", ".join(results.families) or "all rows together")
        + ".",
        "",
    ]
    if maxt:
        lines.insert(3, f"max-T: Westfall-Young step-down, {results.permutations} "
                     "Freedman-Lane permutations within arms, seed "
                     f"{results.seed}.")
    if results.missing_summary:
        lines.insert(len(lines) - 1, results.missing_summary + ".")
    if (t["term"] == "omnibus").any() and nm is not None:
        lines.insert(len(lines) - 1, (
            f"omnibus: F test that every arm's dMD slope equals the {nm.control} "
            f"arm's; its estimate is the F statistic, on {len(nm.arms) - 1} and "
            "the row's df degrees of freedom."))
    # wide enough for interaction_<arm>; 15 (the two-arm layout) at least
    tw = max(15, 1 + max((len(x) for x in t["term"]), default=0))
    header = (
        f"{'roi':<14}{'outcome':<8}{'term':<{tw}}{'estimate':>9}"
        f"{'95% CI':>20}{'p':>9}{'p_holm':>9}{'p_fdr':>9}"
        + (f"{'p_maxt':>9}" if maxt else "") + f"{'n':>5}"
    )
    lines += [header, "-" * len(header)]
    for r in t.itertuples(index=False):
        # the omnibus row holds an F statistic, without an interval
        ci = ("" if r.term == "omnibus"
              else f"[{r.ci_low:.3f}, {r.ci_high:.3f}]")
        lines.append(
            f"{r.roi:<14}{r.outcome:<8}{r.term:<{tw}}{r.estimate:>9.3f}{ci:>20}"
            f"{_fmt_p(r.p):>9}{_fmt_p(r.p_holm):>9}{_fmt_p(r.p_fdr):>9}"
            + (f"{_fmt_p(r.p_maxt):>9}" if maxt else "") + f"{r.n:>5d}"
        )
    return "\n".join(lines)


_INFERENCE_TEXT = {
    "ols": "classical pooled-variance OLS",
    "hc3": "HC3 robust SEs",
    "welch": "arms fitted separately, Welch-Satterthwaite df",
}


def _fmt_p(p: float) -> str:
    if not np.isfinite(p):
        return "nan"
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"
