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
analysis (Ratitch et al. 2013; van Buuren 2018, section 9.2): after the MAR
imputation every imputed primary-visit score of an arm is shifted by that arm's
``delta`` in SDs of the arm's observed score change, over a grid of the arms'
deltas (:func:`tipping_grid`), and the completed data are analysed again, with
the same imputations at every point; the table says where each test's
conclusion at alpha changes.

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
from dtitool.stats.fit_quality import has_quality, quality_columns, quality_masks

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
from dtitool.stats.inference import welch_df
from dtitool.stats.multiplicity import adjust_within_families
from dtitool.stats.omnibus import f_sf, wald_f, welch_omnibus

__all__ = [
    "CONCLUSIONS",
    "DEFAULT_DELTAS",
    "DEFAULT_IMPUTATIONS",
    "IMPUTATION_STREAM",
    "ITERATIONS",
    "MAX_DELTAS",
    "MISSING",
    "ImputationData",
    "Pooled",
    "TippingPoint",
    "batch_models_imputed",
    "check_missing",
    "impute",
    "rubin",
    "tipping_grid",
    "tipping_point",
]

DEFAULT_DELTAS = (-2.0, -1.5, -1.0, -0.5, 0.0, 0.5, 1.0, 1.5, 2.0)
"""Deltas of the tipping-point analysis, in SDs of each arm's observed score
change: up to two SDs each way, a shift as large as the whole spread of
responses in that arm (9 x 9 points over two arms)."""


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
        reason (one may have several), e.g. ``"no 24h scan 12, no 24h madrs 3"``;
        a spectrum removed for fit quality counts as ``fit quality (<rule>)``,
        not as a missing scan, and such a table also gets
        :data:`~dtitool.stats.fit_quality.QUALITY_COLUMNS`.
    line : str
        The one printed line: participants left out of at least one model, why,
        and the range of n.
    """
    from dtitool.tables import changes_names

    nm = changes_names(changes, names)
    m = changes.attrs.get("measure", "md")  # MD, or another measure's changes
    md0, md1, later = f"{m}_{nm.baseline}", f"{m}_{nm.primary}", nm.primary
    total = changes["participant_id"].nunique()
    n_of = dict(zip(zip(table["roi"], table["outcome"], strict=True), table["n"],
                    strict=True))
    outcomes = list(pd.unique(table["outcome"]))
    covs = [c for c in covariates
            if c not in ("baseline", "baseline_md") and c in changes.columns]
    ids = changes["participant_id"].to_numpy()
    # a spectrum removed for fit quality is its own reason, not a missing scan
    q0, q1, quality = quality_masks(changes, nm)
    no0 = changes[md0].isna().to_numpy() & ~q0
    base = {
        f"no {nm.baseline} scan": no0,
        f"no {later} scan": changes[md1].isna().to_numpy() & ~q1 & ~no0,
        **quality,
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
    if has_quality(changes):
        table = quality_columns(table, changes, nm)
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
                alpha, imputations, rng, familywise="holm-bh", names=None):
    """Multiple-imputation analysis of one changes table (see :func:`fit_models`).

    Returns the :class:`~dtitool.stats.models.AnalysisResults` of the pooled
    analysis.
    """
    from dtitool.stats import models

    t0 = time.perf_counter()
    mar = _mar_fits(changes, covariates=covariates, formula=formula,
                    inference=inference, families=families, alpha=alpha,
                    imputations=imputations, rng=rng, familywise=familywise,
                    names=names)
    prep, first = mar.prep, mar.fits[0]
    table = mar.pooled.assign(**_mi_counts(prep)(mar.pooled))[
        [*models.RESULT_COLUMNS, models.FMI_COLUMN]]
    line = _mi_line(prep, mar.imputations, mar.seed)
    rows = _observed_rows(changes, prep, mar.covariates)
    return models.AnalysisResults(
        table=table, changes=changes, fits={}, additive_fits={}, rows=rows,
        formula=first.formula, covariates=first.covariates, robust=first.robust,
        families=first.families, elapsed=time.perf_counter() - t0,
        inference=first.inference, seed=mar.seed, missing="mi",
        imputations=mar.imputations, missing_summary=line, names=prep.names)


@dataclass(frozen=True, slots=True, eq=False)
class _MARFits:
    """The MAR analysis of one changes table: imputations, fits, pooled table."""

    prep: _Prepared
    X: np.ndarray  # (M, N, J) completed dMD per DMD_SCALE
    Y: np.ndarray  # (M, N, J, K) completed score changes per ROI block
    fits: list  # per imputation: AnalysisResults of the completed dataset
    pooled: pd.DataFrame  # Rubin-pooled table (no missing-data columns)
    covariates: tuple
    imputations: int
    seed: int


def _mar_fits(changes: pd.DataFrame, *, covariates, formula, inference, families,
              alpha, imputations, rng, familywise="holm-bh", names=None
              ) -> _MARFits:
    """Impute under MAR, fit every completed dataset (statsmodels) and pool."""
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
    fits = []
    for m in range(imputations):
        done = _completed(changes, prep, X[m], Y[m])
        _blank_dropped(done, prep)
        fits.append(models.fit_complete_data(
            done, covariates=covariates, inference=inference, families=families,
            alpha=alpha, names=names))
    pooled = _pool_tables([r.table for r in fits], alpha, families,
                          [r.interactions for r in fits], inference)
    return _MARFits(prep=prep, X=X, Y=Y, fits=fits, pooled=pooled,
                    covariates=covariates, imputations=imputations,
                    seed=int(ss.entropy))


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

MAX_DELTAS = 41
"""Most delta values of a tipping-point grid: over two arms 41 x 41 points, each
refitted for every imputation."""

CONCLUSIONS = ("positive", "negative", "significant", "not significant",
               "not estimable")
"""What a test concludes at alpha: significant with its sign (``significant``
for the omnibus F test, which has none), not significant, or no test."""


def tipping_grid(deltas: Sequence[float], arms: Sequence[str], *,
                 arm: str | None = None) -> np.ndarray:
    """Return the points of a tipping-point grid: one delta per arm.

    Parameters
    ----------
    deltas : sequence of float
        The values a shifted arm's delta takes, in SDs of that arm's observed
        score change. 0 is added when absent (the MAR analysis, against which
        every conclusion is judged); duplicates are dropped.
    arms : sequence of str
        The trial's arms (``names.arms``, the control arm last).
    arm : str, optional
        Shift this arm only; the others stay at 0.

    Returns
    -------
    ndarray, shape (G, k)
        Column ``a`` holds the delta of ``arms[a]``; rows in lexicographic
        order. Two arms: every pair (``len(deltas) ** 2`` points). Three or
        more: the control arm against each other arm, the rest at 0 (the union
        of ``k - 1`` two-dimensional grids, one per interaction term, each of
        which compares one arm with the control). With ``arm``: that arm's
        deltas alone.

    Raises
    ------
    ValueError
        If a delta is not a finite number, there are more than
        :data:`MAX_DELTAS`, or ``arm`` is not one of ``arms``.
    TypeError
        If ``deltas`` is a string.

    Examples
    --------
    >>> tipping_grid([-1, 1], ["ketamine", "saline"])[:4].tolist()
    [[-1.0, -1.0], [-1.0, 0.0], [-1.0, 1.0], [0.0, -1.0]]
    >>> tipping_grid([1], ["ketamine", "saline"], arm="saline").tolist()
    [[0.0, 0.0], [0.0, 1.0]]
    >>> len(tipping_grid([-1, 1], ["high", "low", "placebo"]))
    15
    """
    if isinstance(deltas, str | bytes):
        raise TypeError(f"deltas must be a sequence of numbers, not the string "
                        f"{deltas!r}")
    try:
        values = np.asarray([float(d) for d in deltas])
    except (TypeError, ValueError):
        raise ValueError(f"deltas must be numbers (SDs of score change); got "
                         f"{deltas!r}") from None
    if not values.size or not np.isfinite(values).all():
        raise ValueError(f"deltas must be a non-empty list of finite numbers (SDs "
                         f"of score change); got {list(deltas)!r}")
    values = np.unique(np.r_[values, 0.0])
    if values.size > MAX_DELTAS:
        raise ValueError(f"deltas has {values.size} distinct values with 0; at "
                         f"most {MAX_DELTAS} (a grid over two arms has their "
                         "square, each point refitted for every imputation)")
    arms = list(arms)
    k = len(arms)
    if arm is not None and arm not in arms:
        raise ValueError(f"arm {arm!r} is not one of the trial's arms "
                         f"({', '.join(arms)})")
    axes = ([[arms.index(arm)]] if arm is not None
            else [[0, 1]] if k == 2 else [[a, k - 1] for a in range(k - 1)])
    parts = []
    for ax in axes:
        mesh = np.meshgrid(*[values] * len(ax), indexing="ij")
        pts = np.zeros((mesh[0].size, k))
        pts[:, ax] = np.stack([m.ravel() for m in mesh], axis=-1)
        parts.append(pts)
    return np.unique(np.concatenate(parts), axis=0)


def _arm_spread(prep: _Prepared):
    """Observed SD of score change per arm and outcome, and the counts behind it.

    Returns ``sd``, ``n_observed``, ``n_imputed``, each (k, K): over the
    participants in the analysis, the SD (``ddof=1``) of the observed
    primary-visit score changes of each arm, how many were observed and how
    many imputed.
    """
    y = prep.data.y[0]
    use = prep.data.use[0]
    k = len(prep.names.arms)
    member = (prep.arms[None, :] == np.arange(k)[:, None]) & use[None, :]
    obs = np.isfinite(y)[None] & member[..., None]  # (k, N, K)
    n_obs = obs.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(obs, y[None], 0.0).sum(axis=1) / n_obs
        dev = np.where(obs, y[None] - mean[:, None], 0.0)
        sd = np.sqrt((dev * dev).sum(axis=1) / (n_obs - 1))
    n_imp = (~np.isfinite(y)[None] & member[..., None]).sum(axis=1)
    return np.where(n_obs >= 2, sd, np.nan), n_obs, n_imp


@dataclass(frozen=True, slots=True, eq=False)
class _ModelSpec:
    """The contrasts of one outcome's models over its design columns.

    As :func:`dtitool.stats.models.fit_complete_data` builds them:
    ``contrasts`` (2k - 1, p) the interactions then the arm slopes,
    ``additive`` (p,) the additive model's columns, ``pooled`` its slope's
    contrast, ``within`` (p,) the columns of a per-arm model.
    """

    contrasts: np.ndarray
    additive: np.ndarray
    pooled: np.ndarray
    within: np.ndarray
    columns: tuple


def _model_specs(done: pd.DataFrame, outcomes, covariates, formula,
                 names) -> dict:
    """Outcome -> :class:`_ModelSpec` (the formula's design, built by patsy)."""
    import patsy

    from dtitool.stats import models

    specs = {}
    for outcome in outcomes:
        frame = models._model_frame(done, outcome, names, ("group", *covariates))
        y_df, X_df = patsy.dmatrices(formula, frame, NA_action="drop",
                                     return_type="dataframe")
        info = X_df.design_info
        L = models._slope_contrasts(info, frame.loc[y_df.index], formula, names)
        keep = ~models._interaction_columns(info)
        specs[outcome] = _ModelSpec(
            contrasts=models._arm_contrasts(L), additive=keep, pooled=L[0, keep],
            within=~models._group_columns(info), columns=tuple(info.column_names))
    return specs


def _lstsq(X, Y):
    """Least squares of every row of ``Y`` on ``X``, as statsmodels' OLS.

    ``X`` (B, n, p), ``Y`` (B, G, n). Returns the coefficients (B, G, p), the
    pseudo-inverse (B, p, n), the residuals (B, G, n) and the residual df (B,)
    (``n`` minus the rank), statsmodels' ``pinv`` solution and df.
    """
    P = np.linalg.pinv(X)
    coef = np.einsum("bpn,bgn->bgp", P, Y)
    resid = Y - np.einsum("bnp,bgp->bgn", X, coef)
    return coef, P, resid, X.shape[-2] - np.linalg.matrix_rank(X)


def _refit_ols(X, Y, spec: _ModelSpec, hc3: bool, k: int):
    """Every term of one model under ``ols`` or ``hc3``, for every row of ``Y``.

    Returns ``est``, ``var``, ``df`` (B, G, T) in ``names.terms`` order (the
    omnibus row's ``est`` its Wald F, ``var`` NaN) and the interactions'
    estimates (B, G, k - 1) and covariance (B, G, k - 1, k - 1).
    """
    def fit(Xm, L):
        coef, P, resid, df = _lstsq(Xm, Y)
        est = coef @ L.T
        A = np.einsum("tp,bpn->btn", L, P)  # contrast weights per observation
        if hc3:
            h = np.einsum("bnp,bpn->bn", Xm, P)
            with np.errstate(invalid="ignore", divide="ignore"):
                u2 = (resid / (1.0 - h)[:, None]) ** 2
            cov = np.einsum("bin,bjn,bgn->bgij", A, A, u2)
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                s2 = np.einsum("bgn,bgn->bg", resid, resid) / df[:, None]
            cov = s2[..., None, None] * np.einsum("bin,bjn->bij", A, A)[:, None]
        return est, cov, np.broadcast_to(df[:, None].astype(float), est.shape[:2])

    est, cov, df = fit(X, spec.contrasts)
    est_a, cov_a, df_a = fit(X[..., spec.additive], spec.pooled[None])
    q = k - 1
    var = np.diagonal(cov, axis1=-2, axis2=-1)
    Q, U = est[..., :q], cov[..., :q, :q]
    est = np.concatenate([est, est_a], axis=-1)
    var = np.concatenate([var, cov_a[..., 0]], axis=-1)
    dfs = np.stack([df] * (2 * k - 1) + [df_a], axis=-1)
    if k > 2:
        est = np.concatenate([est, wald_f(Q, U)[..., None]], axis=-1)
        var = np.concatenate([var, np.full((*Q.shape[:2], 1), np.nan)], axis=-1)
        dfs = np.concatenate([dfs, df[..., None]], axis=-1)
    return est, var, np.where(dfs > 0, dfs, np.nan), Q, U


def _refit_welch(X, Y, arms, spec: _ModelSpec, k: int):
    """Every term of one model under ``welch``, for every row of ``Y``.

    As :func:`dtitool.stats.models._infer`: each arm fitted on its own, the
    interactions with Welch-Satterthwaite df, the pooled slope by feasible GLS
    with per-arm variances and its Kenward-Roger variance, the omnibus row
    Welch's (1951) F. Returns what :func:`_refit_ols` does.
    """
    from dtitool.stats.permutation import satterthwaite_df

    W = X[..., spec.within]
    est, var, dfa, s2, short = [], [], [], [], np.zeros(len(X), bool)
    for a in range(k):
        rows = arms == a
        coef, P, resid, df = _lstsq(W[:, rows], Y[..., rows])
        short |= df < 1  # an arm without residual df has no variance: no weight
        la = spec.contrasts[k - 1 + a][spec.within]
        with np.errstate(invalid="ignore", divide="ignore"):
            s2a = np.einsum("bgn,bgn->bg", resid, resid) / df[:, None]
        c = np.einsum("p,bpn,q,bqn->b", la, P, la, P)  # la' (X'X)^+ la
        df = np.where(df > 0, df, np.nan).astype(float)
        est.append(coef @ la)
        var.append(np.where(np.isfinite(df)[:, None], s2a * c[:, None], np.nan))
        dfa.append(np.broadcast_to(df[:, None], s2a.shape))
        s2.append(s2a)
    c = k - 1
    inter = [(est[a] - est[c], var[a] + var[c],
              welch_df(var[a], dfa[a], var[c], dfa[c])) for a in range(c)]
    out_e = [e for e, _, _ in inter] + est
    out_v = [v for _, v, _ in inter] + var
    out_d = [d for _, _, d in inter] + dfa
    Q = np.stack([e for e, _, _ in inter], axis=-1)
    U = np.stack(var[:c], axis=-1)[..., :, None] * np.eye(c) + var[c][..., None, None]
    # Pooled slope: feasible GLS of the additive model, weights 1 / s_a^2.
    Xa = X[..., spec.additive]
    lp = spec.pooled
    S2 = np.stack(s2, axis=-1)  # (B, G, k)
    S2 = np.where(short[:, None, None] | ~np.isfinite(S2) | (S2 <= 0), 1.0, S2)
    # X'WX and X'Wy with weights 1 / s_a^2, constant within an arm
    Ga = [np.einsum("bnp,bnq->bpq", Xa[:, arms == a], Xa[:, arms == a])
          for a in range(k)]
    Gw = sum(G[:, None] / S2[..., a, None, None] for a, G in enumerate(Ga))
    gw = sum(np.einsum("bnp,bgn->bgp", Xa[:, arms == a], Y[..., arms == a])
             / S2[..., a, None] for a in range(k))
    Phi = np.linalg.pinv(Gw, hermitian=True)  # (X'WX)^-1: known weights
    beta = np.einsum("bgpq,bgq->bgp", Phi, gw)
    m = Phi @ lp
    vp = m @ lp
    v = []
    for a in range(k):
        Hm = np.einsum("bpq,bgq->bgp", Ga[a], m) / S2[..., a, None]
        va = np.einsum("bgp,bgp->bg", m, Hm)
        quad = np.einsum("bgp,bgpq,bgq->bg", Hm, Phi, Hm)
        # Kenward-Roger adjustment for the estimated weights
        with np.errstate(invalid="ignore", divide="ignore"):
            vp = vp + 4.0 * (va - quad) / dfa[a]
        v.append(va)
    with np.errstate(invalid="ignore", divide="ignore"):
        dfp = satterthwaite_df(v, dfa)
    out_e.append(np.where(short[:, None], np.nan, beta @ lp))
    out_v.append(np.where(short[:, None], np.nan, vp))
    out_d.append(np.where(short[:, None], np.nan, dfp))
    if k > 2:
        F, _, df2 = welch_omnibus(np.stack(est, -1), np.stack(var, -1),
                                  np.stack(dfa, -1))
        out_e.append(F)
        out_v.append(np.full(F.shape, np.nan))
        out_d.append(df2)
    return (np.stack(out_e, -1), np.stack(out_v, -1), np.stack(out_d, -1), Q, U)


def _pool_omnibus_grid(Q, U, F_com, df_com, inference: str):
    """:func:`_pool_omnibus` over every grid point at once.

    ``Q`` (M, G, q), ``U`` (M, G, q, q), ``F_com`` and ``df_com`` (M, G).
    Returns ``estimate`` (D1), ``df``, ``p`` and ``fmi``, each (G,).
    """
    from dtitool.stats.imputation import d1

    M, q = Q.shape[0], Q.shape[-1]
    finite = (np.isfinite(Q).all(axis=(0, -1)) & np.isfinite(U).all(axis=(0, -2, -1))
              & np.isfinite(df_com).all(axis=0))
    same = (Q == Q[0]).all(axis=(0, -1))
    k = q + 1
    safe_Q = np.where(finite[:, None], Q, 0.0)
    safe_U = np.where(finite[:, None, None], U, np.eye(q))
    safe_df = np.where(finite, df_com, 1.0)
    scale = (1.0 + 2.0 * (k - 2) / (3.0 * safe_df) if inference == "welch"
             else None)
    F, _, df2 = d1(safe_Q, safe_U, safe_df, scale=scale)
    dev = safe_Q - safe_Q.mean(axis=0)
    B = np.einsum("mgi,mgj->gij", dev, dev) / (M - 1)
    r = ((1.0 + 1.0 / M) * np.trace(np.linalg.solve(safe_U.mean(axis=0), B),
                                    axis1=-2, axis2=-1) / q)
    est = np.where(same, F_com[0], F)
    df = np.where(same, df_com[0], df2)
    p = f_sf(est, q, df)
    fmi = np.where(same, 0.0, r / (1.0 + r))
    nan = np.full(est.shape, np.nan)
    return tuple(np.where(finite, x, nan) for x in (est, df, p, fmi))


def _grid_statistics(changes, mar: _MARFits, grid: np.ndarray, shift_sd: np.ndarray,
                     inference: str):
    """Per imputation, grid point and table row: estimate, SE, df; and contrasts.

    ``shift_sd`` (N, K, k) per participant and outcome: where the primary-visit
    score was imputed, the observed SD of the arm's score change in the column
    of the participant's arm (0 elsewhere), so that ``shift_sd @ delta`` is the
    shift in score points.
    Returns ``est``, ``se``, ``df`` (M, G, R) over the rows ``R`` of the
    per-imputation tables, and ``contrasts``: table row of each model's
    omnibus test -> ``(Q, U)`` (M, G, q), (M, G, q, q).
    """
    prep, fits = mar.prep, mar.fits
    names = prep.names
    k = len(names.arms)
    M, G = len(fits), len(grid)
    base = fits[0].table
    Rn = len(base)
    est = np.full((M, G, Rn), np.nan)
    var = np.full((M, G, Rn), np.nan)
    df = np.full((M, G, Rn), np.nan)
    sm_est = np.stack([f.table["estimate"].to_numpy(float) for f in fits])
    done = _completed(changes, prep, mar.X[0], mar.Y[0])
    _blank_dropped(done, prep)
    specs = _model_specs(done, prep.outcomes, mar.covariates, fits[0].formula,
                         names)
    pid = pd.Index(prep.ids)
    contrasts = {}
    keys = base[["roi", "outcome"]].drop_duplicates().itertuples(index=False)
    for roi, outcome in keys:
        at = np.flatnonzero((base["roi"] == roi).to_numpy()
                            & (base["outcome"] == outcome).to_numpy())
        if list(base["term"].iloc[at]) != list(names.terms):
            raise RuntimeError("the per-imputation table's terms are out of order")
        spec = specs[outcome]
        kk = prep.outcomes.index(outcome)
        rows = [f.rows[(roi, outcome)] for f in fits]
        groups = ([np.arange(M)] if all(np.array_equal(rows[0], r) for r in rows)
                  else [np.array([m]) for m in range(M)])
        for ms in groups:
            res = [fits[m].fits[(roi, outcome)] for m in ms]
            if tuple(res[0].model.exog_names) != spec.columns:
                raise RuntimeError("the tipping point's design columns differ from "
                                   "the analysis'")
            X = np.stack([np.asarray(r.model.exog, float) for r in res])
            y = np.stack([np.asarray(r.model.endog, float) for r in res])
            pos = pid.get_indexer(changes.loc[rows[ms[0]], "participant_id"])
            Y = y[:, None, :] + (grid @ shift_sd[pos, kk].T)[None]
            arms = prep.arms[pos]
            if inference == "welch":
                e, v, d, Q, U = _refit_welch(X, Y, arms, spec, k)
            else:
                e, v, d, Q, U = _refit_ols(X, Y, spec, inference == "hc3", k)
            bad = ~np.isfinite(sm_est[np.ix_(ms, at)])[:, None, :]  # not estimable
            est[np.ix_(ms, np.arange(G), at)] = np.where(bad, np.nan, e)
            var[np.ix_(ms, np.arange(G), at)] = np.where(bad, np.nan, v)
            df[np.ix_(ms, np.arange(G), at)] = np.where(bad, np.nan, d)
            if k > 2:
                Qo, Uo = contrasts.setdefault(at[-1], (
                    np.full((M, G, k - 1), np.nan),
                    np.full((M, G, k - 1, k - 1), np.nan)))
                bad_i = bad[..., :k - 1].any(axis=-1)
                Qo[ms] = np.where(bad_i[..., None], np.nan, Q)
                Uo[ms] = np.where(bad_i[..., None, None], np.nan, U)
    with np.errstate(invalid="ignore"):
        return est, np.sqrt(var), df, contrasts


def _pool_grid(est, se, df, contrasts, alpha: float, inference: str) -> dict:
    """Rubin-pool every grid point (arrays (G, R)); the omnibus rows by D1."""
    from scipy import special

    r = rubin(est, se, df, axis=0)
    with np.errstate(invalid="ignore"):
        q = special.stdtrit(r.df, 1.0 - alpha / 2.0)
    out = {"estimate": r.estimate, "se": r.se, "t": r.t, "df": r.df, "p": r.p,
           "ci_low": r.estimate - q * r.se, "ci_high": r.estimate + q * r.se,
           "fmi": r.fmi}
    out = {k: np.array(v, float) for k, v in out.items()}
    for i, (Q, U) in contrasts.items():
        e, d, p, fmi = _pool_omnibus_grid(Q, U, est[..., i], df[..., i], inference)
        out["estimate"][:, i], out["df"][:, i] = e, d
        out["p"][:, i], out["fmi"][:, i] = p, fmi
        for col in ("se", "t", "ci_low", "ci_high"):
            out[col][:, i] = np.nan
    return out


def _conclusion(estimate, p, term, alpha: float) -> np.ndarray:
    """Return what each test concludes at ``alpha`` (:data:`CONCLUSIONS`)."""
    estimate, p = np.asarray(estimate, float), np.asarray(p, float)
    omnibus = np.asarray(term) == "omnibus"
    sig = np.where(omnibus, "significant",
                   np.where(estimate > 0, "positive", "negative"))
    out = np.where(p <= alpha, sig, "not significant")
    return np.where(np.isfinite(p), out, "not estimable").astype(object)


@dataclass(frozen=True, slots=True, eq=False)
class TippingPoint:
    """Delta-adjusted MNAR sensitivity analysis of one dataset.

    Parameters
    ----------
    table : DataFrame
        One row per ROI, outcome, term and grid point: ``roi, outcome, term``,
        ``delta_<arm>`` per arm (SDs of that arm's observed score change),
        ``estimate, se, t, df, p, ci_low, ci_high``, ``conclusion`` (at
        ``alpha``: positive, negative, significant for the omnibus test, not
        significant), ``conclusion_changed`` (differs from the MAR point, every
        delta 0), ``n, n_imputed_scores``, ``change_sd_<arm>`` (score points
        per delta unit) and ``fmi, inference``.
    deltas : tuple of float
        The values each arm's delta takes (0 included).
    alpha : float
    imputations : int
    seed : int
    elapsed : float
    visit : str
        The visit whose imputed scores are shifted (the primary visit).
    arms : tuple of str
        The trial's arms (the control arm last), the ``delta_<arm>`` columns.
    grid : ndarray, shape (G, k)
        The grid points (:func:`tipping_grid`).
    spread : DataFrame
        Per outcome and arm: ``change_sd`` (the observed SD of score change, one
        delta unit), ``n_observed`` and ``n_imputed`` (scores shifted).
    """

    table: pd.DataFrame
    deltas: tuple[float, ...]
    alpha: float
    imputations: int
    seed: int
    elapsed: float = field(default=0.0, compare=False)
    visit: str = "follow-up"
    arms: tuple[str, ...] = ()
    grid: np.ndarray | None = None
    spread: pd.DataFrame | None = None

    def tipping_points(self) -> pd.DataFrame:
        """Where each test's conclusion changes: one row per ROI, outcome, term.

        Returns
        -------
        DataFrame
            ``roi, outcome, term``, ``conclusion`` at the MAR point, its
            ``estimate`` and ``p``, ``points`` (grid points) and ``changed``
            (how many change the conclusion), and at the nearest changed point
            (Euclidean distance in SD units; ties in grid order)
            ``nearest_delta_<arm>`` per arm, ``nearest_estimate``,
            ``nearest_p`` and ``nearest_conclusion`` (empty where nothing
            changes in the range).
        """
        cols = [f"delta_{a}" for a in self.arms]
        records = []
        for (roi, outcome, term), g in self.table.groupby(
                ["roi", "outcome", "term"], sort=False):
            d = g[cols].to_numpy(float)
            zero = g.iloc[int(np.flatnonzero((d == 0).all(axis=1))[0])]
            flip = g["conclusion_changed"].to_numpy(bool)
            rec = {"roi": roi, "outcome": outcome, "term": term,
                   "conclusion": zero["conclusion"], "estimate": zero["estimate"],
                   "p": zero["p"], "points": len(g), "changed": int(flip.sum())}
            near = None
            if flip.any():
                dist = np.sqrt((d * d).sum(axis=1))
                near = g.iloc[int(np.flatnonzero(flip)[np.argmin(dist[flip])])]
            for c in cols:
                rec[f"nearest_{c}"] = np.nan if near is None else near[c]
            rec["nearest_estimate"] = np.nan if near is None else near["estimate"]
            rec["nearest_p"] = np.nan if near is None else near["p"]
            rec["nearest_conclusion"] = "" if near is None else near["conclusion"]
            records.append(rec)
        return pd.DataFrame.from_records(records)

    def summary(self, term: str | None = None) -> str:
        """Lines per ROI and outcome: the MAR result and where its conclusion changes.

        ``term`` defaults to the interaction (the first interaction term with
        three or more arms).
        """
        if term is None:
            term = next((x for x in pd.unique(self.table["term"])
                         if str(x).startswith("interaction")), "interaction")
        lo, hi = min(self.deltas), max(self.deltas)
        grid = np.zeros((0, len(self.arms))) if self.grid is None else self.grid
        shifted = [a for a, col in zip(self.arms, grid.T, strict=True) if col.any()]
        over = (f"the {shifted[0]} arm's delta alone" if len(shifted) == 1
                else "both arms' deltas" if len(self.arms) == 2
                else f"the {self.arms[-1]} arm's delta against each other arm's")
        lines = [f"tipping point ({term}): the imputed {self.visit} scores of each "
                 "arm shifted by delta SDs of that arm's observed score change "
                 "after imputation under MAR (positive: worse than MAR predicts); "
                 f"{over} from {lo:g} to {hi:g}, {len(grid)} grid points; "
                 f"{self.imputations} imputations, seed {self.seed}, alpha "
                 f"{self.alpha:g}"]
        if self.spread is not None:
            for outcome, s in self.spread.groupby("outcome", sort=False):
                lines.append(f"  1 SD of {outcome} change: " + ", ".join(
                    f"{r.arm} {r.change_sd:.2f} points ({r.n_imputed} imputed)"
                    for r in s.itertuples()))
        tips = self.tipping_points()
        tips = tips[tips["term"] == term]
        for r in tips.itertuples(index=False):
            g = self.table[(self.table["roi"] == r.roi)
                           & (self.table["outcome"] == r.outcome)
                           & (self.table["term"] == term)]
            if int(g["n_imputed_scores"].iloc[0]) == 0:
                lines.append(f"  {r.roi}/{r.outcome}: no {self.visit} {r.outcome} "
                             "score imputed; delta shifts nothing")
                continue
            head = (f"  {r.roi}/{r.outcome}: at MAR estimate {r.estimate:.3f}, p "
                    f"{r.p:.4f} ({r.conclusion})")
            if not r.changed:
                lines.append(f"{head}; conclusion changes nowhere in [{lo:g}, "
                             f"{hi:g}] ({r.points} points)")
                continue
            at = ", ".join(f"delta_{a} {getattr(r, f'nearest_delta_{a}'):+g}"
                           for a in self.arms)
            lines.append(
                f"{head}; conclusion changes at {r.changed} of {r.points} points, "
                f"nearest {at} ({r.nearest_conclusion}: estimate "
                f"{r.nearest_estimate:.3f}, p {r.nearest_p:.4f}); "
                + "; ".join(self._axes(g)))
        return "\n".join(lines)

    def _axes(self, g: pd.DataFrame) -> list[str]:
        """Where the conclusion changes along each arm's axis and the diagonal."""
        d = g[[f"delta_{a}" for a in self.arms]].to_numpy(float)
        flip = g["conclusion_changed"].to_numpy(bool)
        lines = []
        rays = [(f"{a} alone", np.delete(d, i, axis=1), d[:, i])
                for i, a in enumerate(self.arms)]
        if len(self.arms) == 2:
            rays.append(("both alike", (d[:, :1] - d[:, 1:]), d[:, 0]))
        for label, rest, along in rays:
            on = (rest == 0).all(axis=1) & (along != 0)
            if on.sum() == 0:
                continue
            up = along[on & flip & (along > 0)]
            down = along[on & flip & (along < 0)]
            if not up.size and not down.size:
                lines.append(f"{label}: nowhere")
                continue
            where = [f"{x:+g}" for x in (down.max() if down.size else None,
                                         up.min() if up.size else None)
                     if x is not None]
            lines.append(f"{label}: first at {' and '.join(where)}")
        return lines


def tipping_point(participants, roi_md, *, deltas: Sequence[float] = DEFAULT_DELTAS,
                  arm: str | None = None,
                  covariates: Sequence[str] = ("baseline",),
                  inference: str = "welch",
                  imputations: int = DEFAULT_IMPUTATIONS, rng=None,
                  alpha: float = 0.05, families=("term",), replicate=None,
                  md_unit: str = "mm^2/s", names=None, design=None,
                  control: str | None = None, visits=None) -> TippingPoint:
    r"""Delta-adjusted tipping-point analysis, per arm in SDs of score change.

    The missing primary-visit data are imputed under MAR (as ``fit_models(...,
    missing="mi")`` with the same ``rng``: the point where every delta is 0 is
    that analysis), then every imputed primary-visit score of arm ``a`` and
    outcome ``k`` is shifted by ``delta_a * sd_ak``, ``sd_ak`` the SD of the
    observed score changes of that arm and outcome, and the completed datasets
    are analysed and pooled again, for every point of a grid over the arms'
    deltas (:func:`tipping_grid`). The same imputations serve every point.

    Parameters
    ----------
    participants, roi_md : DataFrame or path-like
        The two input tables (:func:`dtitool.tables.check_tables`).
    deltas : sequence of float
        The values each arm's delta takes, in SDs of that arm's observed score
        change (positive: the participants whose score was imputed did worse
        than MAR predicts; delta = -1, one SD better). 0 is always included.
    arm : str, optional
        Shift this arm's imputed scores only (a one-dimensional grid); default
        a grid over the arms (two arms: every pair of deltas; three or more:
        the control arm against each other arm).
    inference : {"welch", "ols", "hc3"}
        As in :func:`dtitool.stats.analysis.fit_models` (``welch`` by default).
    covariates, imputations, rng, alpha, families, replicate, md_unit
        As in :func:`dtitool.stats.analysis.fit_models`.
    names, design, control, visits
        The trial's arms and visits, as in
        :func:`dtitool.stats.analysis.fit_models`.

    Returns
    -------
    TippingPoint

    Raises
    ------
    ValueError
        For a bad delta or arm (:func:`tipping_grid`) and whatever
        ``fit_models(..., missing="mi")`` refuses.

    Notes
    -----
    Within an imputation the shift changes only the score changes, so every
    model's design is fixed and each estimate moves linearly: a slope of arm
    ``a`` by ``delta_a sd_a g_a``, ``g_a`` the partial regression coefficient
    of the indicator of an imputed score on dMD within the arm (the covariance
    of dMD with being imputed, given the covariates), and the difference in
    mean change between arms by ``delta_a sd_a`` times the arm's share of
    imputed scores. Standard errors grow with the shift (the shifted scores
    leave the regression line, and the imputations move apart). Every grid
    point is refitted at once per model by least squares over the
    statsmodels design matrices (:func:`_refit_ols`, :func:`_refit_welch`:
    the analysis' own arithmetic, equal to statsmodels to ~1e-10, tested); the
    MAR point is the analysis itself. When no score is imputed (only scans),
    nothing is shifted and every point gives the MAR analysis.

    References
    ----------
    Ratitch B, O'Kelly M, Tosiello R (2013). Missing data in clinical trials:
    from clinical assumptions to statistical analysis using pattern mixture
    models. Pharm Stat 12:337.
    van Buuren S (2018). Flexible Imputation of Missing Data, 2nd ed., section
    9.2. CRC Press.

    Examples
    --------
    >>> import dataclasses
    >>> from dtitool.design import MissingSpec, load_preset
    >>> from dtitool.simulate import simulate_cohort
    >>> d = dataclasses.replace(load_preset("ketamine-rct"),
    ...                         missing=MissingSpec("mcar", 0.2, scores=True))
    >>> c = simulate_cohort(d, rng=1)
    >>> tp = tipping_point(c.participants, c.roi_md, deltas=[-1, 1],
    ...                    imputations=2, rng=1)
    >>> tp.grid.shape, list(tp.table.columns[3:5])
    ((9, 2), ['delta_ketamine', 'delta_saline'])
    >>> mar = tp.table[(tp.table["delta_ketamine"] == 0)
    ...                & (tp.table["delta_saline"] == 0)]
    >>> bool(mar["conclusion_changed"].any())
    False
    """
    from dtitool.stats.inference import check_inference
    from dtitool.tables import changes_names, compute_changes

    check_inference(inference)
    t0 = time.perf_counter()
    changes = compute_changes(participants, roi_md, replicate=replicate,
                              md_unit=md_unit, names=names, design=design,
                              control=control, visits=visits)
    # a bad delta or arm is refused before anything is imputed
    tipping_grid(deltas, changes_names(changes, None).arms, arm=arm)
    mar = _mar_fits(changes, covariates=covariates, formula=None,
                    inference=inference, families=families, alpha=alpha,
                    imputations=imputations, rng=rng)
    prep = mar.prep
    arms = tuple(prep.names.arms)
    grid = tipping_grid(deltas, arms, arm=arm)
    sd, n_obs, n_imp = _arm_spread(prep)
    y_mis = ~np.isfinite(prep.data.y[0]) & prep.data.use[0][:, None]  # (N, K)
    member = prep.arms[:, None] == np.arange(len(arms))[None, :]  # (N, k)
    shift_sd = np.where(y_mis[..., None] & member[:, None, :],
                        np.nan_to_num(sd.T)[None], 0.0)  # (N, K, k)
    est, se, df, contrasts = _grid_statistics(changes, mar, grid, shift_sd,
                                              inference)
    pooled = _pool_grid(est, se, df, contrasts, alpha, inference)
    zero = int(np.flatnonzero((grid == 0).all(axis=1))[0])
    for col in pooled:  # the MAR point: the analysis itself, exactly
        pooled[col][zero] = mar.pooled[col].to_numpy(float)
    table = _tipping_table(mar, grid, pooled, sd, y_mis, alpha)
    spread = pd.DataFrame({
        "outcome": np.repeat(prep.outcomes, len(arms)),
        "arm": list(arms) * len(prep.outcomes),
        "change_sd": sd.T.ravel(), "n_observed": n_obs.T.ravel(),
        "n_imputed": n_imp.T.ravel()})
    return TippingPoint(table=table, deltas=tuple(float(d) for d in np.unique(grid)),
                        alpha=float(alpha), imputations=mar.imputations,
                        seed=mar.seed, elapsed=time.perf_counter() - t0,
                        visit=prep.names.primary, arms=arms, grid=grid,
                        spread=spread)


def _tipping_table(mar: _MARFits, grid, pooled: dict, sd, y_mis,
                   alpha: float) -> pd.DataFrame:
    """Return the tidy table: ROI x outcome x term (analysis order) x grid point."""
    prep = mar.prep
    arms = prep.names.arms
    base = mar.pooled
    G, Rn = len(grid), len(base)
    zero = int(np.flatnonzero((grid == 0).all(axis=1))[0])

    def rows(col):  # (G, R) -> row order: table row, then grid point
        return np.asarray(pooled[col]).T.ravel()

    kk = pd.Index(prep.outcomes).get_indexer(base["outcome"])
    out = {c: np.repeat(base[c].to_numpy(), G) for c in ("roi", "outcome", "term")}
    for a, name in enumerate(arms):
        out[f"delta_{name}"] = np.tile(grid[:, a], Rn)
    for c in ("estimate", "se", "t", "df", "p", "ci_low", "ci_high"):
        out[c] = rows(c)
    term = np.repeat(base["term"].to_numpy(), G)
    concl = _conclusion(out["estimate"], out["p"], term, alpha)
    at_mar = np.repeat(concl.reshape(Rn, G)[:, zero], G)
    out["conclusion"] = concl
    out["conclusion_changed"] = concl != at_mar
    out["n"] = np.repeat(base["n"].to_numpy(int), G)
    out["n_imputed_scores"] = np.repeat(y_mis.sum(axis=0)[kk], G).astype(int)
    for a, name in enumerate(arms):
        out[f"change_sd_{name}"] = np.repeat(sd[a, kk], G)
    out["fmi"] = rows("fmi")
    out["inference"] = np.repeat(base["inference"].to_numpy(), G)
    return pd.DataFrame(out)
