r"""Linear mixed models of a longitudinal cohort: every visit, one dataset.

:func:`fit_mixed` fits, for each ROI and measure (MD and every
``roi_<measure>.tsv``) and for each rating scale, by REML with statsmodels'
``MixedLM``:

.. math::

    value_{it} = b_0 + b_1 \, time_t + \sum_a (c_a + d_a \, time_t) \, arm_{ia}
                 + covariates_i + u_{0i} + u_{1i} \, time_t + e_{it},

in patsy terms ``value ~ C(group, Treatment(<control>)) * time + age + C(sex)``
with ``(1 + time | participant)`` (``re_formula="~time"``); by default
(``variance="arm"``) each arm is fitted on its own, ``value ~ time + age +
C(sex)`` with its own variances and covariate effects (covariates centred at
the mean participant), and the random slope is kept in a fit only where a
REML likelihood-ratio test favours it at 0.2 (``random="select"``; both:
:mod:`dtitool.stats.mixed_select`). ``time`` is
the visits' ``dose`` (the default when every visit states one) or ``hours``
since baseline (``visits.tsv``), or the visit as a factor with the baseline as
reference (then ``(1 | participant)``). ``value`` is MD per 1e-5 mm^2/s,
another measure per its model scale (volume per 10 mm^3, FA per 0.01, ...), or
a rating scale in its own points, so that estimates are readable and the
optimiser well conditioned (:mod:`dtitool.stats.mixed_data` builds the data).

With per-arm fits the terms below are differences of the arms' coefficients,
their variances the sums of the arms' and their df Welch's combination of the
arms' (the joint model's Satterthwaite df: its REML Hessian is block diagonal).

Reported terms, in table order: the time term, named for time (``dose``,
``hours``; with a factor one per visit after baseline, ``<visit>``: the
control arm's slope, or its change from baseline to that visit); ``<arm>``
for each arm but the control (its difference from the control arm at time 0,
at baseline for a factor); and ``<arm>:<time>`` (its slope minus the control
arm's, or its change minus the control arm's change by that visit: the
treatment effect on the course). The intercept and the covariates are in the
statsmodels fits (:attr:`MixedResults.fits`).

Inference follows R's lmerTest: the covariance of the fixed effects is
``sigma^2 (X'V^{-1}X)^{-1}`` at the REML estimates (lme4's ``vcov``), and each
term is a t test with Satterthwaite's degrees of freedom (default), or with
Kenward and Roger's adjusted covariance and df (``df="kenward-roger"``), both
computed by :mod:`dtitool.stats.lmm` at statsmodels' variance parameters.
statsmodels' own ``bse_fe`` inverts the observed information of all
parameters together (fixed effects and variances), which differs from lme4's
covariance by up to about 1 % in between-participant terms; the t, df and p of
one row belong together only with lme4's, so that is what is reported.

Fitting. statsmodels' own optimisers stop early on this criterion: its
L-BFGS runs with scipy's default tolerances (``MixedLM.fit`` does not pass
``pgtol`` or ``factr`` on), its BFGS stalls on precision loss, and either
lands 1e-2 of an SE away from the optimum when the between-participant SD is
many residual SDs (volumes) or a variance is near zero. So each model is
fitted in three steps, all on statsmodels' criterion:

1. ``MixedLM.from_formula(formula, groups="participant_id",
   re_formula="~time")`` with time divided by its root mean square over the
   observations (:attr:`~dtitool.stats.mixed_data.ModelData.time_scale`: the
   same model, its optimisation well conditioned whatever the unit), and
   ``fit(reml=True, method=["lbfgs"])`` from where the random effects add
   about one residual variance (lme4's start);
2. Newton steps on statsmodels' profiled REML log-likelihood
   (``MixedLM.loglike``, with the Hessian from differences of its analytic
   ``MixedLM.score``) until the Newton decrement is below 1e-11, a diagonal
   element of the relative Cholesky factor kept at or above :data:`FLOOR`
   (statsmodels' criterion jumps below about 1e-5 there: it drops a
   direction of the random effects whose variance is under 1e-10);
3. ``fit(reml=True, method=["lbfgs"], maxiter=0, start_params=...)`` at that
   point, which gives statsmodels' results there (``fe_params``, ``cov_re``,
   ``scale``) and its own gradient check (``converged``).

The fixed effects then agree with those of the batched engine
(:func:`dtitool.stats.lmm.fit_lmm`) to about 1e-10 of their SE, and to 1e-6
for singular fits (in the three-arm and ECT cohorts this was measured on). The tested
terms are reported per unit of time, the time scale undone; the statsmodels
fits in :attr:`MixedResults.fits` keep time in units of ``time_scale``.

A fit is *singular* when a diagonal element of the relative Cholesky factor of
the random effects' covariance, for time in its own unit, is below 1e-4
(lme4's ``isSingular``), or sits at :data:`FLOOR`: a variance at its
boundary, such as no random-slope variance. Like lme4's, the rule depends on
the unit of time (a slope per hour has a small relative SD). A fit is
*converged* when the Newton steps met their criterion and, unless it is
singular, statsmodels' gradient check passes with no ConvergenceWarning other
than its note that "the MLE may be on the boundary" (which it gives for any
variance below 0.01 in absolute units). At a singular fit the gradient points
out of the parameter space, which an unconstrained check cannot pass, so
there the Newton steps' bounded criterion decides alone.

References
----------
Bates D, Mächler M, Bolker B, Walker S (2015). Fitting linear mixed-effects
models using lme4. Journal of Statistical Software 67(1).

Kenward MG, Roger JH (1997). Small sample inference for fixed effects from
restricted maximum likelihood. Biometrics 53(3), 983-997.

Kuznetsova A, Brockhoff PB, Christensen RHB (2017). lmerTest package: tests in
linear mixed effects models. Journal of Statistical Software 82(13).
"""

from __future__ import annotations

import dataclasses
import time as _time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dtitool.design import TrialNames
from dtitool.stats.mixed_data import (
    TIMES,
    Cohort,
    ModelData,
    load_cohort,
    model_data,
    wide_arrays,
)

__all__ = [
    "DF_METHODS",
    "FLOOR",
    "MIXED_COLUMNS",
    "TIMES",
    "MixedResults",
    "fit_mixed",
]

DF_METHODS = ("satterthwaite", "kenward-roger")
"""Degrees of freedom of the t tests: Satterthwaite (lmerTest's default) or
Kenward-Roger (pbkrtest's, with its adjusted covariance)."""

MIXED_COLUMNS = (
    "roi", "measure", "outcome", "term", "estimate", "se", "df", "t", "p",
    "ci_low", "ci_high", "converged", "singular", "n_obs", "n_participants",
    "random",
)  # fmt: skip
"""Columns of :attr:`MixedResults.table` and of ``analyze --model mixed``'s
table. An imaging row has ``roi`` and ``measure`` and an empty ``outcome``; a
rating-scale row has ``outcome`` and empty ``roi`` and ``measure``."""

MAXITER = 1000
"""Iterations of statsmodels' L-BFGS fit (step 1) before it gives up."""

FLOOR = 5e-5
"""Smallest diagonal element of the relative Cholesky factor the fit goes to
(below lme4's 1e-4, so such a fit is singular; above the 1e-5 or so at which
statsmodels' criterion stops being continuous)."""

_BOUNDARY = ("The MLE may be on the boundary",)


@dataclass(frozen=True, slots=True, eq=False)
class MixedResults:
    """Results of the mixed models of one cohort.

    Equality is identity, as for statsmodels results.

    Parameters
    ----------
    table : DataFrame
        One row per model and tested term, columns :data:`MIXED_COLUMNS`.
        Estimates are in the model's unit (MD per 1e-5 mm^2/s, another
        measure per its scale, a score in points) per unit of time (``dose``,
        ``hours``) or at a visit (a factor).
    fits : mapping
        ``(roi, measure, outcome) ->`` statsmodels ``MixedLMResults`` (with
        ``variance="arm"`` a mapping arm -> its ``MixedLMResults``; None
        where statsmodels failed), with time in units of that model's
        :attr:`~dtitool.stats.mixed_data.ModelData.time_scale` (the table's
        estimates are per unit of time).
    models : mapping
        ``(roi, measure, outcome) ->`` :class:`~dtitool.stats.mixed_data.ModelData`
        (the long data, formula and terms).
    time : str
        ``dose``, ``hours`` or ``visit``.
    df_method : str
        ``satterthwaite`` or ``kenward-roger``.
    covariates : tuple of str
        The covariates of every model.
    names : TrialNames
        Arms, control arm and visits.
    units : mapping
        measure -> the unit of its values (``"1e-05 mm^2/s"``); rating
        scales are in points.
    alpha : float
        Confidence intervals are ``100 * (1 - alpha)`` %.
    elapsed : float
        Seconds spent fitting.
    variance : str
        ``arm`` (each arm fitted on its own) or ``common``.
    random : str
        ``select`` (the random slope kept where the likelihood-ratio test
        favours it; the ``random`` column says which) or ``slope``.
    """

    table: pd.DataFrame
    fits: Mapping = field(repr=False)
    models: Mapping = field(repr=False)
    time: str
    df_method: str
    covariates: tuple[str, ...]
    names: TrialNames
    units: Mapping = field(default_factory=dict)
    alpha: float = 0.05
    elapsed: float = 0.0
    variance: str = "arm"
    random: str = "select"

    @property
    def formula(self) -> str:
        """The models' formula, random part included (lme4's notation).

        With ``variance="arm"``, each arm's own model (fitted on its own).
        With ``random="select"``, the random slope is the largest the
        models may have (the ``random`` column gives each fit's).
        """
        data = next(iter(self.models.values()))
        rand = "1" if data.re_formula is None else f"1 + {data.re_formula[1:]}"
        if self.variance == "common":
            return f"{data.formula} + ({rand} | participant)"
        tail = "".join(f" + {c}" for c in self.covariates)
        time = "C(visit)" if self.time == "visit" else self.time
        return f"per arm: value ~ {time}{tail} + ({rand} | participant)"

    @property
    def n_fits(self) -> int:
        """Models fitted."""
        return len(self.models)

    def _flags(self, column: str) -> int:
        per_fit = self.table.drop_duplicates(["roi", "measure", "outcome"])
        return int(per_fit[column].sum())

    @property
    def n_not_converged(self) -> int:
        """Models whose fit did not converge."""
        return self.n_fits - self._flags("converged")

    @property
    def n_singular(self) -> int:
        """Models whose fit is singular (a variance at its boundary)."""
        return self._flags("singular")

    def term(self, term: str, *, roi: str = "", measure: str = "",
             outcome: str = "") -> pd.Series:
        """Return the table row of one model's term.

        An imaging model is ``roi=`` and ``measure=`` (default ``md``), a
        rating scale ``outcome=``.
        """
        if roi and not measure:
            measure = "md"
        t = self.table
        row = t.loc[(t["roi"] == roi) & (t["measure"] == measure)
                    & (t["outcome"] == outcome) & (t["term"] == term)]
        if len(row) != 1:
            raise ValueError(f"no result for roi={roi!r}, measure={measure!r}, "
                             f"outcome={outcome!r}, term={term!r}")
        return row.iloc[0]

    def summary(self) -> str:
        """Return a readable text table of the results."""
        return format_mixed_summary(self)

    def _repr_html_(self) -> str:
        """Jupyter's display: the model, its counts and every row."""
        from dtitool.stats._html import result_html

        facts = [("model", self.formula), ("time", self.time),
                 ("df", self.df_method),
                 ("variances", "per arm" if self.variance == "arm" else "common"),
                 ("random slope", "chosen by a likelihood-ratio test"
                  if self.random == "select" else "always"),
                 ("fits", f"{self.n_fits} ({self.n_not_converged} not converged, "
                          f"{self.n_singular} singular)")]
        return result_html("MixedResults", facts, self.table,
                           columns=MIXED_COLUMNS, max_rows=120)


def fit_mixed(source, measures=None, *, time: str | None = None,
              df: str = "satterthwaite", covariates: Sequence[str] | None = None,
              alpha: float = 0.05, replicate: int | None = None,
              md_unit: str = "mm^2/s", design=None, control: str | None = None,
              visits=None, variance: str = "arm", random: str = "select"
              ) -> MixedResults:
    """Fit the linear mixed models of a cohort (module docstring).

    Parameters
    ----------
    source : path-like or DataFrame
        A cohort folder (``participants.tsv``, ``roi_md.tsv``, any
        ``roi_<measure>.tsv``, ``visits.tsv``, optionally ``design.toml``), or
        the participants table.
    measures : DataFrame or mapping, optional
        With a participants table, the ROI MD table or ``{measure: table}``
        (``md`` among them); with a folder, the measures to fit (default MD
        and every ``roi_<measure>.tsv``).
    time : {"dose", "hours", "visit"}, optional
        How time enters: the visits' dose, their hours since baseline, or the
        visit as a factor. Default ``dose`` when every visit states a dose,
        else ``hours``.
    df : {"satterthwaite", "kenward-roger"}
        Degrees of freedom (and, for Kenward-Roger, the adjusted covariance)
        of the t tests.
    covariates : sequence of str, optional
        Participants columns added to every model (text columns and ``sex``
        as factors). Default: ``age`` and ``sex``, those present. Baseline
        values are not covariates here: the baseline visit is modelled.
    alpha : float
        Confidence intervals are ``100 * (1 - alpha)`` %.
    replicate, md_unit, design, control
        As in :func:`dtitool.tables.read_tables`.
    visits : sequence of VisitSpec, path-like, or visit names, optional
        The schedule (with a participants table; a folder has its
        ``visits.tsv``). Names alone allow ``time="visit"`` only.
    variance : {"arm", "common"}
        ``"arm"``: each arm fitted on its own (its own random-effects
        covariance, residual variance and covariate effects), the arms'
        differences tested with Welch-Satterthwaite df; ``"common"``: one
        model with one covariance for every arm
        (:mod:`dtitool.stats.mixed_select`).
    random : {"select", "slope"}
        ``"select"``: the random slope kept where a REML likelihood-ratio
        test favours it at 0.2 (Matuschek et al. 2017), else ``(1 |
        participant)``; ``"slope"``: always ``(1 + time | participant)``.

    Returns
    -------
    MixedResults

    Raises
    ------
    ValueError
        Bad tables (a session that is not a visit, a participant missing from
        the participants table, a schedule whose hours are not numbers: each
        named with where it is and what was expected), an unknown ``time`` or
        ``df``, ``time="dose"`` with a visit without a dose (named), unknown
        covariates, or a model whose fixed effects are not estimable.

    Warns
    -----
    UserWarning
        When statsmodels fails on a model (its row holds NaN, flagged as not
        converged).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from dtitool.design import VisitSpec
    >>> rng = np.random.default_rng(0)
    >>> n, doses = 24, (0.0, 3.0, 6.0)
    >>> ids = [f"s{i:02d}" for i in range(n)]
    >>> arm = np.repeat(["ect", "sham"], n // 2)
    >>> p = pd.DataFrame({"participant_id": ids, "group": arm,
    ...                   "madrs_v0": 30, "madrs_v1": 25, "madrs_v2": 20})
    >>> slope = np.where(arm == "ect", -0.4, 0.0) + rng.normal(0, 0.1, n)
    >>> md = [(i, f"v{t}", "hippocampus",
    ...        (80 + u + s * d + rng.normal(0, 0.5)) * 1e-5)
    ...       for i, u, s in zip(ids, rng.normal(0, 3, n), slope)
    ...       for t, d in enumerate(doses)]
    >>> r = pd.DataFrame(md, columns=["participant_id", "session", "roi", "md"])
    >>> visits = [VisitSpec(f"v{t}", 24.0 * t, d) for t, d in enumerate(doses)]
    >>> res = fit_mixed(p, r, visits=visits, control="sham")
    >>> res.time, list(res.table["term"][:3])
    ('dose', ['dose', 'ect', 'ect:dose'])
    >>> row = res.term("ect:dose", roi="hippocampus")
    >>> bool(row["p"] < 0.05), bool(row["converged"])
    (True, True)
    """
    from dtitool.stats.mixed_select import check_choices

    t0 = _time.perf_counter()
    check_choices(variance, random)
    if df not in DF_METHODS:
        raise ValueError(f"df must be one of {', '.join(DF_METHODS)}; got {df!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1; got {alpha!r}")
    if time is not None and time not in TIMES:
        raise ValueError(f"time must be one of {', '.join(TIMES)}; got {time!r}")
    cohort = load_cohort(source, measures, replicate=replicate, md_unit=md_unit,
                         design=design, control=control, visits=visits)
    return fit_cohort(cohort, time=time, df=df, covariates=covariates, alpha=alpha,
                      started=t0, variance=variance, random=random)


def fit_cohort(cohort: Cohort, *, time: str | None = None,
               df: str = "satterthwaite", covariates=None, alpha: float = 0.05,
               started: float | None = None, variance: str = "arm",
               random: str = "select") -> MixedResults:
    """:func:`fit_mixed` on a cohort already read (:func:`load_cohort`)."""
    from dtitool.stats.mixed_select import check_choices

    check_choices(variance, random)
    t0 = _time.perf_counter() if started is None else started
    time, models = model_data(cohort, time=time, covariates=covariates)
    records, fits = [], {}
    for data in models:
        rows, fit = _fit_model(data, cohort.names, df, alpha, variance, random)
        records += rows
        fits[data.key] = fit
    table = pd.DataFrame.from_records(records, columns=list(MIXED_COLUMNS))
    for c in ("converged", "singular"):
        table[c] = table[c].astype(bool)
    for c in ("n_obs", "n_participants"):
        table[c] = table[c].astype(int)
    used = () if not models else tuple(
        c for c in models[0].frame.columns
        if c not in ("participant_id", "group", "visit", "value", time))
    units = {m: f"{s:g} {u}".strip() for m, (s, u) in cohort.scales.items()}
    return MixedResults(table=table, fits=fits,
                        models={d.key: d for d in models}, time=time,
                        df_method=df, covariates=used, names=cohort.names,
                        units=units, alpha=alpha,
                        elapsed=_time.perf_counter() - t0, variance=variance,
                        random=random)


# -------------------------------------------------------------------- a fit


def relative_cholesky(C: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of a positive semi-definite matrix, diagonal >= 0.

    A pivot that rounding makes slightly negative (a variance at its
    boundary) is set to 0 and its column below to 0, where
    ``numpy.linalg.cholesky`` would fail.

    Examples
    --------
    >>> relative_cholesky(np.array([[4.0, 2.0], [2.0, 1.0]]))
    array([[2., 0.],
           [1., 0.]])
    """
    C = np.asarray(C, dtype=float)
    q = C.shape[0]
    L = np.zeros_like(C)
    for j in range(q):
        d = C[j, j] - L[j, :j] @ L[j, :j]
        L[j, j] = np.sqrt(d) if d > 0 else 0.0
        for i in range(j + 1, q):
            v = C[i, j] - L[i, :j] @ L[j, :j]
            L[i, j] = v / L[j, j] if L[j, j] > 0 else 0.0
    return L


def lme4_theta(L: np.ndarray) -> np.ndarray:
    """Return the lower triangle of ``L`` column by column (lme4's ``theta``)."""
    cols, rows = np.triu_indices(L.shape[0])
    return L[rows, cols]


@dataclass(frozen=True, slots=True, eq=False)
class _Fitted:
    """One model's statsmodels fit and what the polish found."""

    model: object
    res: object
    caught: list
    polished: bool


def _statsmodels_model(data: ModelData):
    """Return statsmodels' ``MixedLM`` of ``data``, time divided by its RMS."""
    from statsmodels.regression.mixed_linear_model import MixedLM

    frame = data.frame
    if data.time != "visit":
        frame = frame.assign(**{data.time: frame[data.time] / data.time_scale})
    return MixedLM.from_formula(data.formula, frame, groups="participant_id",
                                re_formula=data.re_formula)


def _fit_statsmodels(model) -> _Fitted:
    """Fit a model of :func:`_statsmodels_model` (steps 1-3, module docstring)."""
    Z = np.asarray(model.exog_re, dtype=float)
    rms = np.sqrt(np.mean(Z * Z, axis=0))
    scale = 1.0 / np.where(rms > 0, rms, 1.0)
    q = Z.shape[1]
    tril = np.tril_indices(q)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the last fit's warnings are the ones
        # from where the random effects add about one residual variance (lme4's
        # start), not statsmodels' identity
        try:
            first = model.fit(reml=True, method=["lbfgs"], maxiter=MAXITER,
                              start_params=np.diag(scale)[tril])
            x0 = relative_cholesky(np.asarray(first.cov_re_unscaled))[tril]
        except np.linalg.LinAlgError:
            # L-BFGS reached a variance of 0, where statsmodels' criterion is
            # not defined (a random intercept without variance, fitted on
            # one arm); the Newton steps, which stop at FLOOR, go on from
            # the start
            x0 = np.diag(scale)[tril]
        x, polished = _newton_polish(model, x0, scale[tril[0]])
    # statsmodels' results at that point: no iteration, so its convergence
    # flag is its own gradient check there
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = model.fit(reml=True, method=["lbfgs"], maxiter=0, start_params=x)
    return _Fitted(model, res, list(caught), polished)


def _newton_polish(model, x, scale, *, max_iter: int = 50):
    """Newton steps on statsmodels' profiled REML criterion, from ``x``.

    ``x`` holds the relative Cholesky factor as statsmodels packs it (lower
    triangle row by row); ``scale`` is each entry's natural size (one over
    the RMS of its row's random-effect column). The Hessian is the central
    difference of statsmodels' analytic score, modified on its eigenvalues
    (negative curvature taken as positive); the step is backtracked until
    Armijo's condition holds. A diagonal entry is kept at or above
    :data:`FLOOR`: statsmodels treats a random-effects covariance with an
    eigenvalue below 1e-10 as singular and then drops that direction from
    the fixed effects' GLS, which is not the boundary of the criterion but
    a jump, so a variance going to zero stops at the floor. Returns the point
    (after the last Newton step, which squares the error) and whether the
    Newton decrement fell below 1e-11, or below 1e-6 where no step improves
    the criterion by more than its rounding.
    """
    q = round((np.sqrt(8 * x.size + 1) - 1) / 2)
    rows, cols = np.tril_indices(q)
    diag = rows == cols

    def f(z):
        return -float(model.loglike(z, profile_fe=True))

    def g(z):
        return -np.asarray(model.score(z, profile_fe=True), dtype=float)

    x = np.array(x, dtype=float)
    x[diag] = np.maximum(np.abs(x[diag]), FLOOR)
    fx = f(x)
    if not np.isfinite(fx):
        return x, False
    for _ in range(max_iter):
        gx = g(x)
        h = 1e-4 * np.maximum(np.abs(x), scale)
        # a difference across zero would meet the mirror image (the criterion
        # does not see a column's sign)
        h[diag] = np.minimum(h[diag], 0.1 * x[diag])
        H = np.empty((x.size, x.size))
        for k in range(x.size):
            e = np.zeros_like(x)
            e[k] = h[k]
            H[:, k] = (g(x + e) - g(x - e)) / (2.0 * h[k])
        H = 0.5 * (H + H.T)
        # a diagonal entry at the floor that the gradient pushes further down
        # stays there
        free = ~(diag & (x <= FLOOR) & (gx > 0))
        if not free.any():
            return x, True
        w, V = np.linalg.eigh(H[np.ix_(free, free)])
        w = np.maximum(np.abs(w), 1e-8 * max(np.abs(w).max(), 1e-300))
        gf = gx[free]
        step = np.zeros_like(x)
        step[free] = -V @ ((V.T @ gf) / w)
        dec = float(-gf @ step[free])
        if dec < 1e-11:
            # take the last (tiny) step too, which squares the error, unless
            # rounding makes the criterion worse there
            cand = x + step
            cand[diag] = np.maximum(cand[diag], FLOOR)
            fc = f(cand)
            return (cand if fc <= fx + 1e-13 * max(1.0, abs(fx)) else x), True
        alpha, gain = 1.0, None
        for _ in range(40):
            cand = x + alpha * step
            cand[diag] = np.maximum(cand[diag], FLOOR)
            fc = f(cand)
            if np.isfinite(fc) and fc <= fx - 1e-4 * alpha * dec:
                x, fx, gain = cand, fc, fx - fc
                break
            alpha *= 0.5
        # no step, or one whose gain the criterion cannot resolve: as good as
        # floating point allows, if the decrement says it is close
        if gain is None or gain <= 1e-13 * max(1.0, abs(fx)):
            return x, dec < 1e-6
    return x, False


def _flags(fitted: _Fitted, data: ModelData) -> tuple[bool, bool]:
    """``(converged, singular)`` of a fit (module docstring)."""
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    from dtitool.stats.lmm import SINGULAR_TOL

    L = relative_cholesky(np.asarray(fitted.res.cov_re_unscaled))
    at_floor = bool(np.any(np.diag(L) <= FLOOR * (1.0 + 1e-9)))
    singular = at_floor or bool(np.any(np.diag(_user_units(L, data)) < SINGULAR_TOL))
    if singular:  # the gradient points out of the parameter space there
        return fitted.polished, True
    converged = fitted.polished and bool(fitted.res.converged)
    for w in fitted.caught:
        if (issubclass(w.category, ConvergenceWarning)
                and not str(w.message).startswith(_BOUNDARY)):
            converged = False
    return converged, singular


def _user_units(L: np.ndarray, data: ModelData) -> np.ndarray:
    """Return the relative Cholesky factor for time in its own unit."""
    if data.time == "visit":
        return L
    D = np.ones(L.shape[0])
    D[1:] = 1.0 / data.time_scale  # rows of [1, time]
    return D[:, None] * L


def _fit_model(data: ModelData, names: TrialNames, df_method: str, alpha: float,
               variance: str = "arm", random: str = "select"
               ) -> tuple[list, object]:
    """Rows of one model's terms, and its statsmodels fit(s) (None if failed).

    With ``variance="common"`` the fit is statsmodels' result; with ``"arm"``
    a mapping arm -> result (:mod:`dtitool.stats.mixed_select`).
    """
    from scipy import special

    from dtitool.stats.inference import welch_df
    from dtitool.stats.mixed_select import random_label

    frame = data.frame
    n_obs, n_part = len(frame), int(frame["participant_id"].nunique())
    model = _statsmodels_model(data)
    exog_names = list(model.exog_names)
    X = np.asarray(model.exog)
    rank = np.linalg.matrix_rank(X)
    if rank < X.shape[1]:
        raise ValueError(f"the fixed effects of the {data.label} model are not all "
                         f"estimable (its design has rank {rank} for {X.shape[1]} "
                         f"columns: {', '.join(exog_names)}): an arm or visit "
                         "without data, or a covariate that does not vary?")
    visits = [v for v in names.visits if v in set(frame["visit"])]
    cols = [exog_names.index(c) for c in data.terms.values()]
    A = len(names.arms)
    k = (len(cols) + 1) // A - 1  # time columns: terms = A k + A - 1
    try:
        if variance == "common":
            L = np.zeros((len(cols), X.shape[1]))
            L[np.arange(len(cols)), cols] = 1.0
            part = _fit_part(model, data, data, L, df_method, random, visits)
            est, var, d = part["estimate"], part["var"], part["df"]
            converged, singular = part["converged"], part["singular"]
            label = random_label(data.time, part["slope"])
            fits = part["res"]
        else:
            flat = _flat_arm(data, names)
            if flat is not None:
                warnings.warn(
                    f"the {data.label} model: arm {flat!r} has no variation within "
                    "participants (each participant's values equal at every "
                    "visit), so its variances cannot be fitted on their own; this "
                    "model is fitted with one covariance for all arms (as "
                    "--variance common)", stacklevel=4)
                return _fit_model(data, names, df_method, alpha, "common", random)
            parts = _fit_arms(model, data, names, cols[:k], df_method, random, visits)
            c = parts[names.control]
            est, var, d = [c["estimate"][1:]], [c["var"][1:]], [c["df"][1:]]
            others = [a for a in names.arms if a != names.control]
            for sel in ([0], list(range(1, 1 + k))):  # intercepts, then time
                for a in others:
                    r = parts[a]
                    est.append(r["estimate"][sel] - c["estimate"][sel])
                    var.append(r["var"][sel] + c["var"][sel])
                    d.append(welch_df(r["var"][sel], r["df"][sel],
                                      c["var"][sel], c["df"][sel]))
            est, var, d = (np.concatenate(x) for x in (est, var, d))
            converged = all(r["converged"] for r in parts.values())
            singular = any(r["singular"] for r in parts.values())
            label = "; ".join(f"{a}: {random_label(data.time, r['slope'])}"
                              for a, r in parts.items())
            fits = {a: r["res"] for a, r in parts.items()}
    except (np.linalg.LinAlgError, ValueError) as e:
        if isinstance(e, _Inestimable):
            raise ValueError(str(e)) from None
        warnings.warn(f"statsmodels could not fit the {data.label} model ({e}); "
                      "its rows are NaN", stacklevel=4)
        nan = (np.nan,) * 7
        return [(*data.key, term, *nan, False, False, n_obs, n_part, "")
                for term in data.terms], None
    d = np.where(np.isfinite(d) & (d > 0), d, np.nan)
    # back from time / time_scale to time: terms in time are per its unit
    per = np.array([1.0 / data.time_scale if _in_time(c, data) else 1.0
                    for c in data.terms.values()])
    est, se = est * per, np.sqrt(var) * per
    ok = np.isfinite(d)
    d1 = np.where(ok, d, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = est / se
        p = np.where(ok, 2.0 * special.stdtr(d1, -np.abs(t)), np.nan)
        half = np.where(ok, special.stdtrit(d1, 1.0 - alpha / 2.0), np.nan) * se
    rows = [(*data.key, term, float(est[i]), float(se[i]), float(d[i]), float(t[i]),
             float(p[i]), float(est[i] - half[i]), float(est[i] + half[i]),
             converged, singular, n_obs, n_part, label)
            for i, term in enumerate(data.terms)]
    return rows, fits


def _flat_arm(data: ModelData, names: TrialNames) -> str | None:
    """Return the first arm whose values do not vary within participants, or None."""
    f = data.frame
    dev = f["value"] - f.groupby("participant_id")["value"].transform("mean")
    spread = dev.abs().groupby(f["group"]).max()
    scale = max(float(f["value"].abs().max()), 1e-300)
    for a in names.arms:
        if spread.get(a, 0.0) <= 1e-12 * scale:
            return a
    return None


class _Inestimable(ValueError):
    """An arm's model whose fixed effects cannot be estimated (not a fit failure)."""


def _fit_arms(model, data: ModelData, names: TrialNames, tcols: list, df_method,
              random, visits) -> dict:
    """Fit each arm on its own: intercept, time columns, centred covariates."""
    from statsmodels.regression.mixed_linear_model import MixedLM

    X = np.asarray(model.exog)
    names_x = list(model.exog_names)
    cov = [j for j, n in enumerate(names_x)
           if n != "Intercept" and j not in tcols and not n.startswith("C(group")]
    # the arms' intercepts compared at the average participant (each counted
    # once, as the power runs centre them)
    first = ~data.frame["participant_id"].duplicated().to_numpy()
    Xc = X[:, cov] - X[first][:, cov].mean(axis=0)
    y = np.asarray(model.endog)
    Zr = np.asarray(model.exog_re)
    group = data.frame["group"].to_numpy()
    out = {}
    for a in names.arms:
        m = group == a
        Xa = np.column_stack([np.ones(int(m.sum())), X[m][:, tcols], Xc[m]])
        rank = np.linalg.matrix_rank(Xa)
        if rank < Xa.shape[1]:
            raise _Inestimable(
                f"the fixed effects of the {data.label} model are not all estimable "
                f"in arm {a!r}, fitted on its own (rank {rank} for "
                f"{Xa.shape[1]} columns: intercept, time and "
                f"{', '.join(names_x[j] for j in cov) or 'no covariates'}): a "
                "covariate that does not vary within the arm? Leave it out "
                "(--covariates) or give --variance common")
        sub = dataclasses.replace(data, frame=data.frame.loc[m].reset_index(drop=True))
        ma = MixedLM(y[m], Xa, groups=sub.frame["participant_id"].to_numpy(),
                     exog_re=Zr[m])
        La = np.zeros((1 + len(tcols), Xa.shape[1]))
        La[np.arange(1 + len(tcols)), np.arange(1 + len(tcols))] = 1.0
        out[a] = _fit_part(ma, sub, data, La, df_method, random, visits)
    return out


def _fit_part(model, sub: ModelData, data: ModelData, L, df_method, random,
              visits) -> dict:
    """Fit ``model`` (the random slope chosen by ``random``) and test ``L``.

    ``sub`` holds the model's rows (one arm's, or all); ``data`` the whole
    model, whose time scale the flags use.
    """
    from statsmodels.regression.mixed_linear_model import MixedLM

    from dtitool.stats import lmm
    from dtitool.stats.mixed_select import keep_slope

    fitted = _fit_statsmodels(model)
    slope = model.exog_re.shape[1] > 1
    if slope and random == "select":
        small = MixedLM(model.endog, model.exog, groups=model.groups,
                        exog_re=np.asarray(model.exog_re)[:, :1])
        f0 = _fit_statsmodels(small)
        if not keep_slope(fitted.res.llf, f0.res.llf):
            model, fitted, slope = small, f0, False
    converged, singular = _flags(fitted, data)
    y, Xw, Zw = wide_arrays(sub, np.asarray(model.exog), np.asarray(model.exog_re),
                            visits)
    fit = _engine_fit(fitted.res, y, Xw, Zw)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        if df_method == "kenward-roger":
            cov, dfs = lmm.kenward_roger(fit, y, Xw, Zw, None, L)
        else:
            cov, dfs = None, lmm.satterthwaite(fit, y, Xw, Zw, None, L)
    tests = lmm.contrast_tests(fit, L, np.inf, cov=cov)
    return {"estimate": tests["estimate"][0], "var": tests["se"][0] ** 2,
            "df": dfs[0], "converged": converged, "singular": singular,
            "slope": slope, "res": fitted.res}


def _in_time(column: str, data: ModelData) -> bool:
    """Whether a fixed-effect column is time or an arm's time (its slope)."""
    return data.time != "visit" and (column == data.time
                                     or column.endswith(f":{data.time}"))


def _engine_fit(res, y: np.ndarray, X: np.ndarray, Z: np.ndarray):
    """Return an :class:`~dtitool.stats.lmm.LMMFit` at statsmodels' estimates.

    ``beta`` is statsmodels' ``fe_params``, ``theta`` the relative Cholesky
    factor of its ``cov_re / scale`` and ``cov`` lme4's ``sigma^2
    (X'V^{-1}X)^{-1}`` there, so that the engine's degrees of freedom are
    those of statsmodels' variance parameters.
    """
    from dtitool.stats.lmm import SINGULAR_TOL, LMMFit

    L = relative_cholesky(np.asarray(res.cov_re_unscaled))
    theta = lme4_theta(L)
    s2 = float(res.scale)
    cov = s2 * np.linalg.inv(_xtvx(X, Z, L))
    return LMMFit(beta=np.asarray(res.fe_params, dtype=float)[None],
                  cov=cov[None], sigma2=np.array([s2]),
                  G=(s2 * L @ L.T)[None], theta=theta[None],
                  reml_loglik=np.array([float(res.llf)]),
                  converged=np.array([bool(res.converged)]),
                  singular=np.array([bool(np.any(np.diag(L) < SINGULAR_TOL))]),
                  iterations=np.zeros(1, dtype=int),
                  n_obs=np.array([int(np.isfinite(y).sum())]))


def _xtvx(X: np.ndarray, Z: np.ndarray, L: np.ndarray) -> np.ndarray:
    """``X'V^{-1}X`` with ``V_i = I + Z_i L L' Z_i'`` (relative units).

    Unobserved visits have zero rows in ``X`` and ``Z``: an identity row of
    ``V_i`` that adds nothing.
    """
    ZL = Z @ L  # (N, T, q)
    V = np.eye(Z.shape[1]) + ZL @ np.swapaxes(ZL, 1, 2)
    return np.einsum("ntp,ntr->pr", X, np.linalg.solve(V, X))


# ------------------------------------------------------------------ summary


def format_mixed_summary(results: MixedResults) -> str:
    """Format ``results`` as a readable text table (one line per term)."""
    nm = results.names
    t = results.table
    ref = f"the {nm.control} arm"
    if results.time == "visit":
        what = (f"at each visit: <visit> is {ref}'s change from {nm.baseline} to "
                f"it, <arm> an arm's difference from {ref} at {nm.baseline}, "
                f"<arm>:<visit> its change by that visit minus {ref}'s")
    else:
        per = {"dose": "per unit of dose", "hours": "per hour"}[results.time]
        what = (f"{per}: {results.time} is {ref}'s slope, <arm> an arm's "
                f"difference from {ref} at {results.time} 0, "
                f"<arm>:{results.time} its slope minus {ref}'s")
    units = "; ".join(f"{m} in {_unit(u)}" for m, u in results.units.items())
    df_text = {"satterthwaite": "Satterthwaite df (as lmerTest)",
               "kenward-roger": "Kenward-Roger covariance and df (as pbkrtest)"}
    lines = [
        f"Mixed models (REML, statsmodels MixedLM): {results.formula}",
        f"Estimates {what}. Values: {units}; rating scales in points. t tests "
        f"with {df_text[results.df_method]}.",
        f"Fits: {results.n_fits}; not converged: {results.n_not_converged}; "
        f"singular (a variance at its boundary): {results.n_singular}.",
        *_choices_text(results),
        "",
    ]
    tw = max(8, 1 + max((len(x) for x in t["term"]), default=0))
    rw = max(8, 1 + max((len(x) for x in t["roi"]), default=0))
    mw = max(8, 1 + max((len(x) for x in (*t["measure"], *t["outcome"])),
                        default=0))
    header = (f"{'roi':<{rw}}{'model':<{mw}}{'term':<{tw}}{'estimate':>10}"
              f"{'95% CI':>24}{'df':>8}{'p':>9}{'n':>5}  flags")
    lines += [header, "-" * len(header)]
    for r in t.itertuples(index=False):
        ci = f"[{r.ci_low:.4g}, {r.ci_high:.4g}]"
        flags = ", ".join(x for x, on in (("not converged", not r.converged),
                                           ("singular", r.singular)) if on)
        lines.append(f"{r.roi:<{rw}}{(r.measure or r.outcome):<{mw}}{r.term:<{tw}}"
                     f"{r.estimate:>10.4g}{ci:>24}{r.df:>8.1f}{_fmt_p(r.p):>9}"
                     f"{r.n_participants:>5d}  {flags}".rstrip())
    return "\n".join(lines)


def _choices_text(results: MixedResults) -> list[str]:
    """Return the summary's lines on per-arm variances and the random slope."""
    lines = []
    if results.variance == "arm":
        lines.append(f"Each arm fitted on its own (its own variances and covariate "
                     f"effects, covariates centred at the pooled mean); arm "
                     f"differences with Welch-Satterthwaite df ({_WELCH}).")
    if results.random == "select" and results.time != "visit":
        per_fit = results.table.drop_duplicates(["roi", "measure", "outcome"])
        fits = per_fit["random"].str.split("; ").explode()
        fits = fits[fits != ""]
        kept = int(fits.str.contains(" + ", regex=False).sum())
        lines.append(f"Random slope kept where a REML likelihood-ratio test "
                     f"favours it at 0.2 (Matuschek et al. 2017): {kept} of "
                     f"{len(fits)} fits kept it (column random).")
    return lines


_WELCH = "--variance common fits one covariance for all arms"


def _unit(text: str) -> str:
    """``1e-05 mm^2/s`` as ``1e-5 mm^2/s``."""
    return text.replace("e-0", "e-").replace("e+0", "e+")


def _fmt_p(p: float) -> str:
    if not np.isfinite(p):
        return "nan"
    return f"{p:.4f}" if p >= 1e-4 else f"{p:.1e}"
