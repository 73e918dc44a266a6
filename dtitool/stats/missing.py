r"""Missing 24 h data in one dataset: complete case, multiple imputation, tipping point.

A trial loses 24 h data: a scan (all its ROIs, or one), a rating, or the whole
24 h visit. Every analysis in dtitool says how many participants that cost and
why, and offers two ways to handle it (``missing=``, ``--missing``):

``complete-case``
    A participant enters a model only with every variable of that model observed
    (the reported analysis). Unbiased when the data are missing completely at
    random; biased when missingness depends on the outcome (``docs/model.md``,
    "Missing data").
``mi``
    Multiple imputation (Rubin 1987) of the missing 24 h scans and scores under
    missing at random (MAR), within each arm (any number of arms), each
    completed dataset analysed as if complete and the results pooled by Rubin's
    rules with the Barnard-Rubin degrees of freedom. The ``omnibus`` test of a
    trial with three or more arms is pooled by the D1 statistic (Li,
    Raghunathan and Rubin 1991) of the ``k - 1`` interaction contrasts, with
    Reiter's (2007) small-sample df (:func:`dtitool.stats.imputation.d1`): its
    row holds D1 as ``estimate``, its denominator df as ``df``, and as
    ``fmi`` the average fraction of missing information ``r / (1 + r)``.

This module turns a changes table into the imputation engine's arrays and the
completed datasets back into tables, fits and pools them, and counts who is
missing and why. The imputation model, Rubin's rules and their random streams
are in :mod:`dtitool.stats.imputation` (re-exported here: ``impute``, ``rubin``,
``ImputationData``, ``Pooled``, ``batch_models_imputed``, ``check_missing`` and
the constants).

**Tipping point** (:func:`tipping_point`): the delta-adjusted MNAR sensitivity
analysis (Ratitch et al. 2013; van Buuren 2018, section 9.2): every imputed 24 h
score is shifted by ``delta`` score points after the MAR imputation and the
completed data are analysed again, with the same imputations for every delta.

References
----------
Rubin DB (1987). Multiple Imputation for Nonresponse in Surveys. Wiley.
Li KH, Raghunathan TE, Rubin DB (1991). Large-sample significance levels from
multiply imputed data using moment-based statistics and an F reference
distribution. J Am Stat Assoc 86:1065.
Reiter JP (2007). Small-sample degrees of freedom for multi-component
significance tests with multiple imputation for missing data. Biometrika 94:502.
van Buuren S (2018). Flexible Imputation of Missing Data, 2nd ed. CRC Press.
Ratitch B, O'Kelly M, Tosiello R (2013). Missing data in clinical trials: from
clinical assumptions to statistical analysis using pattern mixture models.
Pharm Stat 12:337.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from dtitool._constants import DMD_SCALE
from dtitool.simulate import as_seed_sequence

# The imputation engine's names, re-exported: the analysis, the power engine
# and the tests have always imported them from here.
from dtitool.stats.imputation import (
    DEFAULT_IMPUTATIONS,
    IMPUTATION_STREAM,
    ITERATIONS,
    MISSING,
    ImputationData,
    Pooled,
    _arm_centred,  # noqa: F401
    _blocks,
    _draw,  # noqa: F401
    _plan,  # noqa: F401
    batch_models_imputed,
    check_missing,
    impute,
    rubin,
)
from dtitool.stats.multiplicity import adjust_within_families

__all__ = [
    "DEFAULT_DELTAS",
    "DEFAULT_IMPUTATIONS",
    "IMPUTATION_STREAM",
    "ITERATIONS",
    "MISSING",
    "ImputationData",
    "Pooled",
    "TippingPoint",
    "batch_models_imputed",
    "check_missing",
    "impute",
    "rubin",
    "tipping_point",
]

DEFAULT_DELTAS = (-6.0, -4.0, -2.0, 0.0, 2.0, 4.0, 6.0)
"""Score-point shifts of the tipping-point analysis (about half the MADRS change
SD of the ketamine arm each way)."""


# -------------------------------------------------------- one dataset: accounting


def _reason_text(counts: dict, empty: str = "") -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items() if v) or empty


def complete_case_columns(table: pd.DataFrame, changes: pd.DataFrame,
                          covariates, *, names=None) -> tuple[pd.DataFrame, str]:
    """Add ``missing``, ``n_dropped``, ``n_imputed``, ``missing_reasons`` columns.

    Parameters
    ----------
    table : DataFrame
        Results of a complete-case analysis (``roi``, ``outcome``, ``n``).
    changes : DataFrame
        The changes table the models were fitted to.
    covariates : sequence of str
        The analysis' covariates (their missing values are a reason).
    names : TrialNames, optional
        The arms and visits (default: those the changes table carries).

    Returns
    -------
    table : DataFrame
        With the four columns; ``missing_reasons`` counts the participants per
        reason (one may have several), e.g. ``"no 24h scan 12, no 24h madrs 3"``.
    line : str
        The one printed line: participants left out of at least one model, why,
        and the range of n.
    """
    from dtitool.tables import changes_names

    nm = changes_names(changes, names)
    md0, md1, later = f"md_{nm.baseline}", f"md_{nm.primary}", nm.primary
    total = changes["participant_id"].nunique()
    n_of = dict(zip(zip(table["roi"], table["outcome"], strict=True), table["n"],
                    strict=True))
    outcomes = list(pd.unique(table["outcome"]))
    covs = [c for c in covariates
            if c not in ("baseline", "baseline_md") and c in changes.columns]
    ids = changes["participant_id"].to_numpy()
    base = {
        f"no {nm.baseline} scan": changes[md0].isna().to_numpy(),
        f"no {later} scan": (changes[md1].isna() & changes[md0].notna()
                             ).to_numpy(),
        **{f"no {c}": changes[c].isna().to_numpy() for c in covs},
    }
    score = {k: changes[nm.score_column(k, later)].isna().to_numpy()
             for k in outcomes}
    roi_of = changes["roi"].to_numpy()
    info, anyone, overall = {}, set(), {}
    for roi in pd.unique(table["roi"]):
        at = roi_of == roi
        for k in outcomes:
            if (roi, k) not in n_of:
                continue
            reasons = {r: m[at] for r, m in base.items()}
            reasons[f"no {later} {k}"] = score[k][at]
            counts = {r: int(m.sum()) for r, m in reasons.items()}
            known = np.logical_or.reduce(list(reasons.values()))
            dropped = total - int(n_of[(roi, k)])
            if dropped > int(known.sum()):  # a custom formula's own variables
                counts["other model variable missing"] = dropped - int(known.sum())
            info[(roi, k)] = (dropped, _reason_text(counts, "none"))
            anyone.update(ids[at][known])
            for r, m in reasons.items():
                overall.setdefault(r, set()).update(ids[at][m])
    key = list(zip(table["roi"], table["outcome"], strict=True))
    table = table.assign(
        missing="complete-case",
        n_dropped=[info[k][0] for k in key],
        n_imputed=0,
        missing_reasons=[info[k][1] for k in key],
    )
    lo, hi = int(table["n"].min()), int(table["n"].max())
    if hi == lo == total:
        line = (f"missing data: complete case; no participant left out (every model "
                f"has all {total})")
    else:
        why = _reason_text({k: len(v) for k, v in overall.items()})
        line = (f"missing data: complete case; {max(len(anyone), total - lo)} of "
                f"{total} participants left out of at least one model"
                + (f" ({why})" if why else "") + "; n per model "
                + (f"{lo}" if lo == hi else f"{lo}-{hi}"))
    return table, line


# ------------------------------------------------------------ one dataset: MI


@dataclass(frozen=True, slots=True, eq=False)
class _Prepared:
    """One dataset (the changes table) as engine arrays, with its bookkeeping."""

    data: ImputationData
    ids: np.ndarray
    rois: list
    outcomes: list
    dropped: dict  # reason -> participant ids left out of every model
    imputed: dict  # reason -> count of participants with that value imputed
    row_index: np.ndarray  # (N, J) index label of changes per participant x ROI
    names: object = None  # the trial's TrialNames
    arms: np.ndarray | None = None  # (N,) arm code per participant (names.arms)


def _prepare(changes: pd.DataFrame, rois, outcomes, covariates,
             names) -> _Prepared:
    from dtitool.tables import _roi_order

    rois = list(rois) if rois is not None else _roi_order(changes["roi"])
    ids = pd.unique(changes["participant_id"])
    N, J = len(ids), len(rois)
    pos = pd.Index(ids)
    r_pos = pd.Index(rois)
    i = pos.get_indexer(changes["participant_id"])
    j = r_pos.get_indexer(changes["roi"])
    keep = j >= 0
    row_index = np.full((N, J), -1)
    row_index[i[keep], j[keep]] = changes.index.to_numpy()[keep]
    md0 = np.full((N, J), np.nan)
    md1 = np.full((N, J), np.nan)
    md0[i[keep], j[keep]] = changes[f"md_{names.baseline}"].to_numpy(float)[keep]
    md1[i[keep], j[keep]] = changes[f"md_{names.primary}"].to_numpy(float)[keep]
    person = changes.drop_duplicates("participant_id").set_index(
        "participant_id").loc[ids]
    b = np.stack([person[names.score_column(k, names.baseline)].to_numpy(float)
                  for k in outcomes], -1)
    y = np.stack([person[f"d_{k}"].to_numpy(float) for k in outcomes], -1)
    codes = pd.Index(names.arms).get_indexer(person["group"]).astype(np.intp)
    if (codes < 0).any():
        other = sorted({str(g) for g in person["group"].to_numpy()[codes < 0]})
        raise ValueError(f"group {other[0]!r} is not one of the trial's arms "
                         f"({', '.join(names.arms)}); pass names= with every arm")
    # two arms: the engine's treatment indicator (as before); more: arm codes
    treated = codes == 0 if len(names.arms) == 2 else codes
    dropped = {}
    no_base = np.isnan(md0).any(axis=1)
    dropped[f"no {names.baseline} scan"] = set(ids[no_base])
    cov_cols = []
    for c in covariates:
        if c in ("baseline", "baseline_md"):
            continue
        col = person[c]
        miss = col.isna().to_numpy()
        dropped[f"no {c}"] = set(ids[miss])
        if pd.api.types.is_numeric_dtype(col):
            cov_cols.append(col.to_numpy(float)[:, None])
        else:  # categories as 0/1 columns (the first level is the reference)
            levels = sorted(pd.unique(col.dropna().astype(str)))
            cov_cols.append(np.stack([(col.astype(str) == lv).to_numpy(float)
                                      for lv in levels[1:]], -1)
                            if len(levels) > 1 else np.zeros((N, 0)))
    use = np.ones(N, bool)
    for s in dropped.values():
        use &= ~pos.isin(list(s))
    cov = np.concatenate(cov_cols, axis=-1) if cov_cols else None
    if cov is not None:
        cov = np.where(use[:, None], np.nan_to_num(cov), 0.0)
    x = (md1 - md0) / DMD_SCALE
    later = names.primary
    imputed = {f"{later} scan": int((np.isnan(md1).any(axis=1) & use).sum())}
    for kk, k in enumerate(outcomes):
        imputed[f"{later} {k}"] = int((np.isnan(y[:, kk]) & use).sum())
    data = ImputationData(
        x=x[None], y=y[None], b=b[None], md0=np.where(use[:, None], md0, 0.0)[None] /
        DMD_SCALE, treated=treated[None], use=use[None],
        cov=None if cov is None else cov[None],
        **({} if len(names.arms) == 2 else {"n_arms": len(names.arms)}))
    return _Prepared(data=data, ids=ids, rois=rois, outcomes=list(outcomes),
                     dropped={k: v for k, v in dropped.items() if v},
                     imputed=imputed, row_index=row_index, names=names,
                     arms=codes)


def _completed(changes: pd.DataFrame, prep: _Prepared, X, Y, shift=None):
    """Return the changes table with one imputation filled in.

    ``X`` (N, J) dMD and ``Y`` (N, J, K) score changes of the ROI blocks (a
    row of the changes table is one participant x ROI, so it takes its ROI's
    imputed scores); ``shift`` (N, K) is added to the score changes (the
    tipping point's delta, non-zero where a score was imputed).
    """
    out = changes.copy()
    ri = prep.row_index
    have = ri >= 0
    pos = out.index.get_indexer(ri[have])
    d_md = out["d_md"].to_numpy(float).copy()
    fill = np.isnan(d_md[pos])  # observed values stay exactly as they were
    d_md[pos[fill]] = (X * DMD_SCALE)[have][fill]
    nm = prep.names
    md0 = f"md_{nm.baseline}"
    out["d_md"] = d_md
    out[f"md_{nm.primary}"] = out[md0] + out["d_md"]
    out["d_md_pct"] = 100.0 * out["d_md"] / out[md0]
    for kk, k in enumerate(prep.outcomes):
        yk = Y[..., kk] if shift is None else Y[..., kk] + shift[:, kk, None]
        col = out[f"d_{k}"].to_numpy(float).copy()
        fill = np.isnan(col[pos]) | (shift is not None)
        col[pos[fill]] = yk[have][fill]
        out[f"d_{k}"] = col
        out[nm.score_column(k, nm.primary)] = (
            out[nm.score_column(k, nm.baseline)] + out[f"d_{k}"])
    return out


def fit_imputed(changes: pd.DataFrame, *, covariates, formula, inference, families,
                alpha, imputations, rng, familywise="holm-bh", shifts=None,
                names=None):
    """Multiple-imputation analysis of one changes table (see :func:`fit_models`).

    Returns the :class:`~dtitool.stats.models.AnalysisResults` of the pooled
    analysis; with ``shifts`` (a sequence of deltas) a list of pooled tables,
    one per delta, from the same imputations.
    """
    # imported here: statsmodels only when an analysis runs, not with power
    from dtitool.stats import models

    if formula is not None:
        raise ValueError("missing='mi' builds its imputation model from "
                         "covariates=, so that it holds every analysis variable; "
                         "a custom formula is not supported with it")
    if familywise != "holm-bh":
        raise ValueError(
            "familywise='maxt' is not supported with missing='mi': a Freedman-Lane "
            "permutation of completed data would keep the imputations made under "
            "the observed association, and re-imputing every permutation is not "
            "implemented; use the Holm / BH columns of the pooled p, or max-T on "
            "complete cases")
    _, imputations = check_missing("mi", imputations)
    t0 = time.perf_counter()
    outcomes, names = models._check_changes(changes, names)
    covariates = (covariates,) if isinstance(covariates, str) else tuple(covariates)
    prep = _prepare(changes, None, outcomes, covariates, names)
    _check_imputable(prep)
    ss = as_seed_sequence(rng)
    X, Y, ok = impute(prep.data, imputations=imputations, rng=ss)
    if not ok[0]:
        raise ValueError("cannot impute: an arm has collinear predictors in the "
                         "imputation model (e.g. a covariate constant within an arm)")
    X, Y = X[0], Y[0]
    y_missing = ~np.isfinite(prep.data.y[0]) & prep.data.use[0][:, None]  # (N, K)
    deltas = [0.0] if shifts is None else list(shifts)
    tables_by_delta = []
    first = None
    for delta in deltas:
        shift = np.where(y_missing, float(delta), 0.0)
        tables, contrasts = [], []
        for m in range(imputations):
            done = _completed(changes, prep, X[m], Y[m], shift)
            _blank_dropped(done, prep)
            res = models.fit_complete_data(
                done, covariates=covariates, inference=inference,
                families=families, alpha=alpha, names=names)
            tables.append(res.table)
            contrasts.append(res.interactions)
            if first is None:
                first = res
        tables_by_delta.append(_pool_tables(tables, alpha, families, contrasts,
                                            inference))
    counts = _mi_counts(prep)
    if shifts is not None:
        return [t.assign(**counts(t)) for t in tables_by_delta], prep, ss
    table = tables_by_delta[0]
    table = table.assign(**counts(table))[
        [*models.RESULT_COLUMNS, models.FMI_COLUMN]]
    line = _mi_line(prep, imputations, int(ss.entropy))
    rows = _observed_rows(changes, prep, covariates)
    return models.AnalysisResults(
        table=table, changes=changes, fits={}, additive_fits={}, rows=rows,
        formula=first.formula, covariates=first.covariates, robust=first.robust,
        families=first.families, elapsed=time.perf_counter() - t0,
        inference=first.inference, seed=int(ss.entropy), missing="mi",
        imputations=imputations, missing_summary=line, names=names)


def _check_imputable(prep: _Prepared) -> None:
    """Raise when an arm has too few observed values for its regression."""
    d = prep.data
    V, P = _blocks(d)
    V, pc = V[0], P.shape[-1]
    p = pc + V.shape[-1] - 1
    use = d.use[0]
    for j, roi in enumerate(prep.rois):
        names = [f"dMD of {roi}"] + [f"{k} change" for k in prep.outcomes]
        for v, name in enumerate(names):
            miss = ~np.isfinite(V[j, :, v]) & use
            for a, arm in enumerate(prep.names.arms):
                member = prep.arms == a
                if not (miss & member).any():
                    continue
                n = int((np.isfinite(V[j, :, v]) & use & member).sum())
                if n < p + 1:
                    raise ValueError(
                        f"cannot impute {name} in the {arm} arm: {n} participants "
                        f"observed it, and its imputation model has {p} "
                        f"coefficients (need at least {p + 1})")


def _blank_dropped(done: pd.DataFrame, prep: _Prepared) -> None:
    if not prep.dropped:
        return
    gone = set().union(*prep.dropped.values())
    rows = done["participant_id"].isin(gone).to_numpy()
    done.loc[rows, "d_md"] = np.nan


def _pool_tables(tables, alpha, families, contrasts=None,
                 inference="ols") -> pd.DataFrame:
    """Rubin-pool per-imputation result tables (same rows, same order).

    ``contrasts``: per imputation, :attr:`AnalysisResults.interactions` (the
    interaction contrasts and their covariance per ROI and outcome), from
    which an ``omnibus`` row is pooled by D1 (:func:`_pool_omnibus`).
    """
    from scipy import special

    base = tables[0]
    est = np.stack([t["estimate"].to_numpy(float) for t in tables])
    se = np.stack([t["se"].to_numpy(float) for t in tables])
    df = np.stack([t["df"].to_numpy(float) for t in tables])
    r = rubin(est, se, df, axis=0)
    with np.errstate(invalid="ignore"):
        q = special.stdtrit(r.df, 1.0 - alpha / 2.0)
    out = base[["roi", "outcome", "term"]].copy()
    out["estimate"] = r.estimate
    out["se"] = r.se
    out["t"] = r.t
    out["df"] = r.df
    out["p"] = r.p
    out["ci_low"] = r.estimate - q * r.se
    out["ci_high"] = r.estimate + q * r.se
    out["n"] = base["n"].to_numpy()
    out["fmi"] = r.fmi
    for i in np.flatnonzero(base["term"].to_numpy() == "omnibus"):
        key = (base["roi"].iat[i], base["outcome"].iat[i])
        row = _pool_omnibus([c[key] for c in contrasts], est[:, i], df[:, i],
                            inference)
        for col, value in row.items():
            out.iloc[i, out.columns.get_loc(col)] = value
    fam = tuple(families) if families else ()
    out["p_holm"], out["p_fdr"] = adjust_within_families(out, fam)
    out["inference"] = base["inference"].to_numpy()
    return out[[*out.columns.drop("fmi"), "fmi"]]


def _pool_omnibus(contrasts, F_com, df_com, inference: str) -> dict:
    """Return the omnibus row of a pooled table: D1 of the interaction contrasts.

    Parameters
    ----------
    contrasts : list of (ndarray (q,), ndarray (q, q))
        Per imputation the ``q = k - 1`` interaction estimates and covariance.
    F_com, df_com : ndarray, shape (M,)
        Per imputation the complete-data omnibus F and its denominator df.
    inference : str
        Under ``welch`` the complete-data F is Welch's, the Wald F divided by
        ``1 + 2 (k - 2) / (3 f)``; D1 is divided by that factor's mean
        (:func:`dtitool.stats.imputation.d1`).

    Returns
    -------
    dict
        ``estimate`` (D1), ``se``, ``t``, ``ci_low``, ``ci_high`` (NaN), ``df``,
        ``p`` and ``fmi`` (``r / (1 + r)``, ``r`` the average relative increase
        in variance). Where nothing was imputed the complete-data test itself.
    """
    from dtitool.stats.imputation import d1
    from dtitool.stats.omnibus import f_sf

    Q = np.stack([c[0] for c in contrasts])
    U = np.stack([c[1] for c in contrasts])
    M, q = Q.shape
    nan = np.nan
    out = {"se": nan, "t": nan, "ci_low": nan, "ci_high": nan}
    if not (np.isfinite(Q).all() and np.isfinite(U).all()
            and np.isfinite(df_com).all()):
        return {**out, "estimate": nan, "df": nan, "p": nan, "fmi": nan}
    if (Q == Q[0]).all():  # nothing imputed moved the contrasts: B = 0
        return {**out, "estimate": float(F_com[0]), "df": float(df_com[0]),
                "p": float(f_sf(F_com[0], q, df_com[0])), "fmi": 0.0}
    k = q + 1
    scale = (1.0 + 2.0 * (k - 2) / (3.0 * df_com) if inference == "welch"
             else None)
    F, df1, df2 = d1(Q, U, df_com, scale=scale)
    dev = Q - Q.mean(axis=0)
    B = dev.T @ dev / (M - 1)
    r = (1.0 + 1.0 / M) * np.trace(np.linalg.solve(U.mean(axis=0), B)) / q
    return {**out, "estimate": float(F), "df": float(df2),
            "p": float(f_sf(F, df1, df2)), "fmi": float(r / (1.0 + r))}


def _mi_counts(prep: _Prepared):
    """Return a function giving a pooled table's missing-data columns."""
    N = len(prep.ids)
    use = prep.data.use[0]
    x_mis = ~np.isfinite(prep.data.x[0]) & use[:, None]
    y_mis = ~np.isfinite(prep.data.y[0]) & use[:, None]
    per = {}
    for j, roi in enumerate(prep.rois):
        for kk, k in enumerate(prep.outcomes):
            later = prep.names.primary
            counts = {f"{later} scan imputed": int(x_mis[:, j].sum()),
                      f"{later} {k} imputed": int(y_mis[:, kk].sum())}
            counts.update({f"left out: {r}": len(s) for r, s in prep.dropped.items()})
            per[(roi, k)] = (int((x_mis[:, j] | y_mis[:, kk]).sum()),
                             _reason_text(counts, "none"))

    def columns(t: pd.DataFrame) -> dict:
        key = list(zip(t["roi"], t["outcome"], strict=True))
        return {"missing": "mi", "n_dropped": [N - int(n) for n in t["n"]],
                "n_imputed": [per[k][0] for k in key],
                "missing_reasons": [per[k][1] for k in key]}

    return columns


def _mi_line(prep: _Prepared, imputations: int, seed: int) -> str:
    use = prep.data.use[0]
    V = np.concatenate([prep.data.x[0], prep.data.y[0]], axis=-1)
    n_imp = int(((~np.isfinite(V)).any(axis=1) & use).sum())
    what = _reason_text(prep.imputed) or "nothing missing"
    line = (f"missing data: multiple imputation, {imputations} imputations (seed "
            f"{seed}), Bayesian normal regressions within each arm and ROI, Rubin's "
            f"rules with Barnard-Rubin df; {prep.names.primary} data of {n_imp} of "
            f"{len(prep.ids)} "
            f"participants imputed ({what})")
    if prep.dropped:
        gone = set().union(*prep.dropped.values())
        line += (f"; {len(gone)} left out of every model ("
                 + _reason_text({k: len(v) for k, v in prep.dropped.items()}) + ")")
    return line


def _observed_rows(changes, prep: _Prepared, covariates) -> dict:
    """``(roi, outcome) ->`` index labels of the participants observed in full."""
    rows = {}
    use = pd.Series(prep.data.use[0], index=prep.ids)
    for roi in prep.rois:
        sub = changes[changes["roi"] == roi]
        ok = sub["d_md"].notna() & sub["participant_id"].map(use).to_numpy()
        for k in prep.outcomes:
            rows[(roi, k)] = sub.index[(ok & sub[f"d_{k}"].notna()).to_numpy()]
    return rows


# ------------------------------------------------------------------ tipping point


@dataclass(frozen=True, slots=True, eq=False)
class TippingPoint:
    """Delta-adjusted MNAR sensitivity analysis of one dataset.

    Parameters
    ----------
    table : DataFrame
        One row per ROI, outcome, term and delta: ``roi, outcome, term, delta,
        estimate, se, t, df, p, ci_low, ci_high, n, n_imputed_scores, fmi,
        inference``. ``n_imputed_scores`` counts the participants whose 24 h
        score of that outcome was imputed (and shifted by ``delta``).
    deltas : tuple of float
    alpha : float
    imputations : int
    seed : int
    visit : str
        The visit whose imputed scores are shifted (the primary visit).
    """

    table: pd.DataFrame
    deltas: tuple[float, ...]
    alpha: float
    imputations: int
    seed: int
    elapsed: float = field(default=0.0, compare=False)
    visit: str = "follow-up"

    def summary(self, term: str | None = None) -> str:
        """Lines per ROI and outcome: p at delta 0 and where the conclusion flips.

        ``term`` defaults to the interaction (the first interaction term with
        three or more arms).
        """
        if term is None:
            term = next((x for x in pd.unique(self.table["term"])
                         if str(x).startswith("interaction")), "interaction")
        t = self.table[self.table["term"] == term]
        lines = [f"tipping point ({term}): imputed {self.visit} scores shifted by "
                 "delta "
                 f"score points after imputation under MAR; {self.imputations} "
                 f"imputations, seed {self.seed}, alpha {self.alpha:g}"]
        for (roi, outcome), g in t.groupby(["roi", "outcome"], sort=False):
            g = g.sort_values("delta")
            n_imp = int(g["n_imputed_scores"].iloc[0])
            if n_imp == 0:
                lines.append(f"  {roi}/{outcome}: no {self.visit} {outcome} score "
                             "imputed; "
                             "delta shifts nothing")
                continue
            zero = g.loc[(g["delta"] - 0).abs().idxmin()]
            sig0 = zero["p"] <= self.alpha
            flips = g[(g["p"] <= self.alpha) != sig0]
            where = ("none in " f"[{g['delta'].min():g}, {g['delta'].max():g}]"
                     if flips.empty else "delta " + ", ".join(
                         f"{d:+g}" for d in flips["delta"]))
            lo, hi = g.iloc[0], g.iloc[-1]
            lines.append(
                f"  {roi}/{outcome}: estimate {zero['estimate']:.3f}, p "
                f"{zero['p']:.4f} at delta {zero['delta']:g} "
                f"({'significant' if sig0 else 'not significant'}; {n_imp} scores "
                f"imputed); {lo['estimate']:.3f} (p {lo['p']:.4f}) at "
                f"{lo['delta']:+g}, {hi['estimate']:.3f} (p {hi['p']:.4f}) at "
                f"{hi['delta']:+g}; conclusion changes at {where}")
        return "\n".join(lines)


def tipping_point(participants, roi_md, *, deltas: Sequence[float] = DEFAULT_DELTAS,
                  covariates: Sequence[str] = ("baseline",), inference: str = "ols",
                  imputations: int = DEFAULT_IMPUTATIONS, rng=None,
                  alpha: float = 0.05, families=("term",), replicate=None,
                  md_unit: str = "mm^2/s", names=None, design=None,
                  control: str | None = None, visits=None) -> TippingPoint:
    """Delta-adjusted tipping-point analysis of the interaction models.

    The missing 24 h data are imputed under MAR (as ``fit_models(...,
    missing="mi")`` with the same ``rng``: delta 0 is that analysis), then every
    imputed 24 h score is shifted by ``delta`` score points (the same shift in
    both arms) and the completed datasets are analysed and pooled again. The
    same imputations serve every delta, so the table changes only through the
    shift: each estimate is linear in ``delta``.

    Parameters
    ----------
    participants, roi_md : DataFrame or path-like
        The two input tables (:func:`dtitool.tables.check_tables`).
    deltas : sequence of float
        Shifts in score points (positive: the participants with a missing 24 h
        score did worse than MAR predicts).
    covariates, inference, imputations, rng, alpha, families, replicate, md_unit
        As in :func:`dtitool.stats.analysis.fit_models`.
    names, design, control, visits
        The trial's arms and visits, as in
        :func:`dtitool.stats.analysis.fit_models`.

    Returns
    -------
    TippingPoint

    Notes
    -----
    A shift of the imputed scores moves a slope only as far as the participants
    whose score was imputed differ in dMD from their arm's mean; the group
    difference in score change moves by about ``delta`` times their share of
    the arm. When no 24 h score is missing (only scans), nothing is shifted and
    every delta gives the MAR analysis.
    """
    from dtitool.stats.inference import check_inference
    from dtitool.tables import compute_changes

    check_inference(inference)
    try:
        deltas = tuple(float(d) for d in deltas)
    except (TypeError, ValueError):
        raise ValueError(f"deltas must be numbers; got {deltas!r}") from None
    if not deltas or not all(np.isfinite(deltas)):
        raise ValueError(f"deltas must be a non-empty list of finite numbers; got "
                         f"{deltas!r}")
    t0 = time.perf_counter()
    changes = compute_changes(participants, roi_md, replicate=replicate,
                              md_unit=md_unit, names=names, design=design,
                              control=control, visits=visits)
    tables, prep, ss = fit_imputed(changes, covariates=covariates, formula=None,
                                   inference=inference, families=families,
                                   alpha=alpha, imputations=imputations, rng=rng,
                                   shifts=deltas)
    y_mis = ~np.isfinite(prep.data.y[0]) & prep.data.use[0][:, None]
    n_scores = dict(zip(prep.outcomes, y_mis.sum(axis=0).astype(int), strict=True))
    parts = []
    for d, t in zip(deltas, tables, strict=True):
        t = t.assign(delta=d, n_imputed_scores=t["outcome"].map(n_scores))
        parts.append(t)
    out = pd.concat(parts, ignore_index=True)
    cols = ["roi", "outcome", "term", "delta", "estimate", "se", "t", "df", "p",
            "ci_low", "ci_high", "n", "n_imputed_scores", "fmi", "inference"]
    order = np.lexsort((out["delta"].to_numpy(),
                        out.groupby(["roi", "outcome", "term"], sort=False).ngroup()))
    out = out.iloc[order].reset_index(drop=True)[cols]
    return TippingPoint(table=out, deltas=deltas, alpha=float(alpha),
                        imputations=int(imputations), seed=int(ss.entropy),
                        elapsed=time.perf_counter() - t0, visit=prep.names.primary)
