"""Analysis plans fitted to one dataset with statsmodels (``analyze --plan``).

:func:`fit_plans` fits each plan of :mod:`dtitool.stats.plans` to one cohort's
tables, as the power runs fit it to every simulated trial
(:mod:`dtitool.stats.plans_engine`): the same participants (those with both
ratings and every ROI's scan at the primary visit), the same variables (dMD and
baseline MD per 1e-5 mm^2/s, the baseline score, the score change, a 50 %
reduction), the same interaction and the same tests. The fits are statsmodels':
per-arm ``ols`` with the Welch-Satterthwaite combination (``welch``), one pooled
``ols`` with ``t_test`` (``ols``), and ``Logit`` for the responder plan (Wald z
from its ``cov_params``). ``tests/test_plans.py`` checks that the two agree.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy import stats as sps

from dtitool._constants import DMD_SCALE
from dtitool.stats.plans import Plan
from dtitool.stats.plans_engine import RESPONSE_FRACTION

__all__ = ["PLAN_FIT_COLUMNS", "fit_plans"]

PLAN_FIT_COLUMNS = ["plan", "roi", "outcome", "term", "estimate", "se", "df", "t",
                    "p", "ci_low", "ci_high", "n", "estimand"]


def _outcomes(changes: pd.DataFrame, names) -> list[str]:
    """Return the rating scales of a changes table (not its measure's columns)."""
    measure = changes.attrs.get("measure", "md")
    return [k for k in names.outcomes_in(changes.columns) if k != measure]


def _wide(changes: pd.DataFrame, names, rois) -> pd.DataFrame:
    """One row per participant with every ROI's dMD and baseline MD."""
    b, p = names.baseline, names.primary
    keep = ["participant_id", "group"]
    outs = _outcomes(changes, names)
    per = changes[keep + [f"{k}_{b}" for k in outs] + [f"{k}_{p}" for k in outs]
                  ].drop_duplicates("participant_id").set_index("participant_id")
    piv = changes.pivot(index="participant_id", columns="roi",
                        values=["d_md", f"md_{b}"])
    wide = per.copy()
    for r in rois:
        wide[f"x:{r}"] = piv[("d_md", r)] / DMD_SCALE
        wide[f"mb:{r}"] = piv[(f"md_{b}", r)] / DMD_SCALE
    for k in outs:
        base, post = wide[f"{k}_{b}"], wide[f"{k}_{p}"]
        wide[f"y:{k}"] = post - base
        wide[f"b:{k}"] = base
        wide[f"resp:{k}"] = (post <= RESPONSE_FRACTION * base).astype(float)
    cols = [c for c in wide.columns if c.startswith(("x:", "mb:", "y:", "b:"))]
    return wide.loc[wide[cols].notna().all(axis=1)].reset_index()


def _pc1(X: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Scores on the first principal component of the pooled within-arm covariance."""
    C = np.vstack([X[group == a] - X[group == a].mean(axis=0)
                   for a in np.unique(group)])
    w = np.linalg.eigh(C.T @ C)[1][:, -1]
    return X @ (w if w.sum() >= 0 else -w)


def _imaging(plan: Plan, w: pd.DataFrame, rois, roi):
    """Return the imaging variable and extra covariates of one model."""
    if plan.imaging == "composite-mean":
        return w[[f"x:{r}" for r in rois]].mean(axis=1).to_numpy(), []
    if plan.imaging == "composite-pc1":
        X = w[[f"x:{r}" for r in rois]].to_numpy()
        return _pc1(X, w["group"].to_numpy()), []
    if plan.model == "ancova-md":
        return (w[f"x:{roi}"] + w[f"mb:{roi}"]).to_numpy(), [w[f"mb:{roi}"].to_numpy()]
    return w[f"x:{roi}"].to_numpy(), []


def _one(plan: Plan, w: pd.DataFrame, names, rois, roi, k):
    """Estimate, SE, df of each interaction of one model (arms but the control)."""
    import statsmodels.api as sm

    x, extra = _imaging(plan, w, rois, roi)
    b = w[f"b:{k}"].to_numpy()
    covs = extra + ([b] if plan.baseline else [])
    group = w["group"].to_numpy()
    arms, c = list(names.arms), names.control
    others = [a for a in arms if a != c]
    if plan.model == "responder":
        ind = [(group == a).astype(float) for a in arms]
        X = np.column_stack(ind + [i * x for i in ind] + ([b] if plan.baseline else []))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                f = sm.Logit(w[f"resp:{k}"].to_numpy(), X).fit(
                    disp=0, method="newton", tol=1e-12, maxiter=100)
                params, cov = np.asarray(f.params), np.asarray(f.cov_params())
                ok = bool(f.mle_retvals["converged"]) and np.all(np.abs(params) < 30)
            except (np.linalg.LinAlgError, ValueError, OverflowError):
                ok = False
        out = []
        A = len(arms)
        for a in others:
            i, j = A + arms.index(a), A + arms.index(c)
            if not ok:
                out.append((np.nan, np.nan, np.inf))
                continue
            cvec = np.zeros(X.shape[1])
            cvec[i], cvec[j] = 1.0, -1.0
            out.append((float(cvec @ params), float(np.sqrt(cvec @ cov @ cvec)),
                        np.inf))
        return out
    if plan.model == "mixed":
        from dtitool.stats.plans_mixed import fit_mixed_plan

        return fit_mixed_plan(w, roi, k, arms, c, plan.inference)
    y = w[f"y:{k}"].to_numpy()
    if plan.inference == "welch":
        per = {}
        for a in arms:
            m = group == a
            X = np.column_stack([np.ones(int(m.sum())), x[m], *(v[m] for v in covs)])
            f = sm.OLS(y[m], X).fit()
            per[a] = (float(f.params[1]), float(f.bse[1]) ** 2, float(f.df_resid))
        out = []
        for a in others:
            (ea, va, da), (ec, vc, dc) = per[a], per[c]
            v = va + vc
            out.append((ea - ec, float(np.sqrt(v)),
                        v * v / (va * va / da + vc * vc / dc)))
        return out
    ind = [(group == a).astype(float) for a in arms]
    X = np.column_stack(ind + [i * x for i in ind] + covs)
    f = sm.OLS(y, X).fit()
    A = len(arms)
    out = []
    for a in others:
        cvec = np.zeros(X.shape[1])
        cvec[A + arms.index(a)], cvec[A + arms.index(c)] = 1.0, -1.0
        t = f.t_test(cvec)
        out.append((float(np.squeeze(t.effect)), float(np.squeeze(t.sd)),
                    float(f.df_resid)))
    return out


def fit_plans(changes: pd.DataFrame, plans, names, *, alpha: float = 0.05
              ) -> pd.DataFrame:
    """Fit every plan to one cohort (module docstring).

    Parameters
    ----------
    changes : DataFrame
        :func:`dtitool.tables.compute_changes` of the cohort.
    plans : sequence of Plan
    names : TrialNames
        The trial's arms, visits, outcomes and ROIs.
    alpha : float
        Confidence intervals are ``100 (1 - alpha)`` %.

    Returns
    -------
    DataFrame
        :data:`PLAN_FIT_COLUMNS`, one row per plan, imaging variable, outcome
        and interaction.
    """
    rois = list(dict.fromkeys(changes["roi"]))
    w = _wide(changes, names, rois)
    rows = []
    terms = names.interactions
    for plan in plans:
        if plan.imaging == "roi":
            wanted = plan.rois if plan.rois is not None else rois
            unknown = [r for r in wanted if r not in rois]
            if unknown:
                raise ValueError(f"plan {plan.name!r}: ROI {unknown[0]!r} is not in "
                                 f"the tables ({', '.join(rois)})")
            labels = [(r, r) for r in (wanted[:1] if plan.single else wanted)]
        else:
            labels = [(None, plan.imaging)]
        for k in _outcomes(changes, names):
            for roi, label in labels:
                for term, (est, se, df) in zip(
                        terms, _one(plan, w, names, rois, roi, k), strict=True):
                    with np.errstate(invalid="ignore", divide="ignore"):
                        t = est / se
                    dist = sps.norm if not np.isfinite(df) else sps.t(df)
                    p = float(2 * dist.sf(abs(t))) if np.isfinite(t) else np.nan
                    q = float(dist.ppf(1 - alpha / 2))
                    rows.append({"plan": plan.name, "roi": label, "outcome": k,
                                 "term": term, "estimate": est, "se": se, "df": df,
                                 "t": t, "p": p, "ci_low": est - q * se,
                                 "ci_high": est + q * se, "n": len(w),
                                 "estimand": plan.estimand})
    return pd.DataFrame(rows, columns=PLAN_FIT_COLUMNS)
