"""Analysis plans side by side: the same simulated trials through every plan.

:func:`plans_power` simulates a design's trials once (and as many of its null
counterpart, :func:`dtitool.stats.design_variants.null_counterpart`), runs
every plan on each (:func:`dtitool.stats.plans_engine.plan_tests`) and reports,
per plan and test:

- power with its Wilson interval, and size (the same test in the null
  counterpart) with its interval and whether it lies in the exact 99 %
  binomial band around alpha;
- the true value (the plan's estimand: its estimate in :data:`TRUTH_TRIALS`
  simulated trials pooled into one, whose Monte Carlo SE is given), the
  mean estimate, bias and root mean squared error, the coverage of the 95 %
  confidence intervals, type S and exaggeration among significant trials;

and per plan and outcome an ``any`` row: whether any of the plan's tests of
that outcome rejects after its multiplicity rule (its size is then the
family-wise error rate). Under ``maxt`` (single-step max-T) a test rejects
when its p is below the alpha quantile of the family's minimum p over the
null counterpart's trials (``critical_p``; the rule of the change-score power
engine, :func:`dtitool.stats.power_run._maxt_critical`). Its power uses the
critical p of every null trial; its size is measured out of sample, as the
power engine's: the critical p of the even-numbered null trials applied to the
odd ones and the other way round (in-sample, the size would be alpha by
construction). ``paired`` compares the plans' ``any`` rows two by
two on the same draws: the difference in power with a confidence interval
from the paired differences of the rejection indicators (Morris, White and
Crowther 2019, section 5.2), and the same for size. Plans are ranked by power
per outcome among those whose size is not above its band; a plan that gains
power by exceeding alpha is flagged and not ranked.

References
----------
Morris TP, White IR, Crowther MJ (2019). Using simulation studies to evaluate
statistical methods. Statistics in Medicine 38(11), 2074-2102.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats as sps

from dtitool.design import StudyDesign

__all__ = ["PAIRED_COLUMNS", "PLAN_COLUMNS", "TRUTH_TRIALS", "plans_power",
           "true_values"]

TRUTH_TRIALS = 2000
"""Trials pooled into the one large trial that gives each plan's true value
(about 200,000 participants for a trial of 98)."""

PLAN_COLUMNS = [
    "plan", "roi", "outcome", "term", "power", "power_ci_low", "power_ci_high",
    "size", "size_ci_low", "size_ci_high", "size_ok", "true_value", "true_value_mcse",
    "mean_estimate", "bias", "rmse", "coverage", "type_s", "exaggeration",
    "n_significant", "failed", "rank", "flag", "multiplicity", "critical_p",
    "estimand", "replicates",
]

PAIRED_COLUMNS = [
    "outcome", "plan_a", "plan_b", "power_a", "power_b", "power_difference",
    "power_difference_ci_low", "power_difference_ci_high", "size_a", "size_b",
    "size_difference", "size_difference_ci_low", "size_difference_ci_high",
    "replicates",
]


def true_values(design: StudyDesign, plans, *, rng=0) -> dict:
    """Each plan's estimand: its estimates in one very large trial.

    :data:`TRUTH_TRIALS` simulated trials of the design pooled into one (the
    arms keep their proportions). Returns plan name -> ``(estimate, se)``
    arrays over the plan's tests; the SE is that trial's own, the Monte Carlo
    error of the true value.
    """
    import dataclasses

    from dtitool.simulate import simulate_arrays
    from dtitool.stats.plans_engine import plan_tests

    a = simulate_arrays(design, rng=rng, stop=TRUTH_TRIALS, lean=True)

    def pool(x):
        return None if x is None else x.reshape(1, -1, *x.shape[2:])

    big = dataclasses.replace(a, arm=pool(a.arm), md=pool(a.md), scores=pool(a.scores),
                              observed=pool(a.observed), scored=pool(a.scored),
                              extra=pool(a.extra))
    res = plan_tests(big, plans)
    return {k: (v["estimate"][0], v["se"][0]) for k, v in res.items()}


def _any_rejects(p: np.ndarray, multiplicity: str, alpha: float) -> np.ndarray:
    """Whether any test of each row of ``p`` (R, m) rejects under the rule."""
    from dtitool.stats.multiplicity import rejections

    return rejections(p, multiplicity, alpha).any(axis=1)


def _min_p(p: np.ndarray) -> np.ndarray:
    """Each trial's smallest p of a family (R, m); a failed test's p counts as 1."""
    return np.nan_to_num(p, nan=1.0).min(axis=1)


def _maxt_any(p: np.ndarray, null_min: np.ndarray, alpha: float):
    """Max-T ``any`` rejections of the trials and (out of sample) of the null trials.

    ``null_min`` (R, 1 + draws): each null trial's smallest p of the family,
    then its permutations'. Returns the trials' rejections (R,) with the
    critical p of every null draw, that critical p, and the simulated null
    trials' rejections (R,), each half's (even and odd trial numbers) with
    the critical p of the other half's draws.
    """
    from dtitool.stats.power_run import _maxt_critical

    crit = float(_maxt_critical(null_min.ravel(), alpha))
    nrej = np.zeros(null_min.shape[0], dtype=bool)
    even, odd = slice(0, None, 2), slice(1, None, 2)
    for fit, use in ((even, odd), (odd, even)):
        if null_min[fit].size:
            nrej[use] = null_min[use, 0] < _maxt_critical(null_min[fit].ravel(),
                                                          alpha)
    return _min_p(p) < crit, crit, nrej


def _permuted(arrays, keys):
    """Permute each arm's imaging rows among its used participants, trial by trial.

    ``keys`` (R, arms, N): uniform keys; the used participants of an arm (every
    scan and rating at the primary visit) take the MD rows (every ROI and
    visit: dMD and baseline MD move together) of the same arm's used
    participants in the order of their keys. In a null counterpart the imaging
    rows are exchangeable within an arm and independent of the scores, so the
    permuted trials are further draws of the same null distribution.
    """
    import dataclasses

    from dtitool.stats.plans_engine import plan_variables

    v = plan_variables(arrays)
    arm, used = v["arm"], v["mask"]
    R, N = arm.shape
    md = arrays.md.copy()
    rows = np.broadcast_to(np.arange(R)[:, None], (R, N))
    for a in range(keys.shape[1]):
        sel = (arm == a) & used
        dest = np.argsort(~sel, axis=1, kind="stable")  # the slots, in order
        src = np.argsort(np.where(sel, keys[:, a], 2.0), axis=1)  # rows by key
        take = np.arange(N) < sel.sum(axis=1)[:, None]
        md[rows[take], dest[take]] = arrays.md[rows[take], src[take]]
    return dataclasses.replace(arrays, md=md)


def _family_min_p(res: dict, plan, outcomes) -> np.ndarray:
    """Each trial's smallest p per outcome family (R, outcomes) of one plan."""
    labels = res[plan.name]["labels"]
    return np.stack([_min_p(res[plan.name]["p"][:, [i for i, lab in
                                                    enumerate(labels)
                                                    if lab[1] == o]])
                     for o in outcomes], axis=1)


def _run(design, plans, replicates, seed, chunk, alpha, progress, draws=0):
    """Every plan on the trials; with ``draws``, the max-T plans' permutations.

    ``draws`` (a null counterpart's run): per trial that many within-arm
    permutations of the imaging rows (:func:`_permuted`), analysed by the
    plans whose multiplicity is ``maxt``; their families' smallest p are
    returned under ``"_maxt"`` (plan name -> (R, draws, outcomes)).
    """
    from dtitool.simulate import simulate_arrays
    from dtitool.stats.plans_engine import plan_tests
    from dtitool.stats.power_engine import _permutation_keys

    maxt = [p for p in plans if p.multiplicity == "maxt"] if draws else []
    parts, extra = [], []
    for start in range(0, replicates, chunk):
        stop = min(start + chunk, replicates)
        arrays = simulate_arrays(design, rng=seed, start=start, stop=stop, lean=True)
        parts.append(plan_tests(arrays, plans, alpha=alpha))
        if maxt:
            keys = _permutation_keys(seed, start, stop, draws, arrays.md.shape[1],
                                     arms=len(design.arms))
            got = [plan_tests(_permuted(arrays, keys[:, c]), maxt, alpha=alpha)
                   for c in range(draws)]
            extra.append({p.name: np.stack([_family_min_p(g, p, design.outcome_names)
                                            for g in got], axis=1) for p in maxt})
        if progress is not None:
            progress.update(stop - start)
    out = {}
    for name in parts[0]:
        out[name] = {k: (parts[0][name][k] if k == "labels" else
                         np.concatenate([p[name][k] for p in parts], axis=0))
                     for k in parts[0][name]}
    if maxt:
        out["_maxt"] = {p.name: np.concatenate([e[p.name] for e in extra])
                        for p in maxt}
    return out


def plans_power(design: StudyDesign, plans, *, replicates: int = 1000, rng=None,
                alpha: float = 0.05, chunk_size: int = 500, null: bool = True,
                progress=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Power, size, bias and coverage of every plan on the same simulated trials.

    Parameters
    ----------
    design : StudyDesign
        A two-visit design (its primary visit against baseline).
    plans : sequence of Plan
        :func:`dtitool.stats.plans.parse_plan` or :data:`~dtitool.stats.plans.READY`.
    replicates : int
        Simulated trials (and as many of the null counterpart).
    rng : int, SeedSequence or None
        Seed; the same seed gives the same tables.
    alpha : float
        Two-sided level of every test.
    chunk_size : int
        Trials simulated and analysed at once (bounds memory).
    null : bool
        Also simulate the null counterpart (the size columns).
    progress : object with ``update(k)``, optional

    Returns
    -------
    table : DataFrame
        :data:`PLAN_COLUMNS`, one row per plan and test, then per plan and
        outcome the ``any`` row (``roi`` = ``any``).
    paired : DataFrame
        :data:`PAIRED_COLUMNS`, every pair of plans per outcome (``any`` rows).
    """
    from dtitool.simulate import as_seed_sequence
    from dtitool.stats.binomial import size_band, wilson_interval
    from dtitool.stats.design_variants import null_counterpart
    from dtitool.stats.power_run import MAXT_EXTRA_DRAWS

    if (isinstance(replicates, bool) or not isinstance(replicates, int)
            or replicates < 1):
        raise ValueError(f"replicates must be a positive integer; got {replicates!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1); got {alpha!r}")
    if (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)
            or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer; got {chunk_size!r}")
    plans = list(plans)
    if not plans:
        raise ValueError("give at least one plan")
    maxt = [p.name for p in plans if p.multiplicity == "maxt"]
    if maxt and not null:
        raise ValueError(f"plan {maxt[0]!r}: multiplicity=maxt takes its critical "
                         "p from the null counterpart's trials; null=False "
                         "simulates none")
    names = [p.name for p in plans]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ValueError(f"plan {dup!r} is given twice")
    ss = as_seed_sequence(rng)
    seed_alt, seed_null, seed_truth = ss.spawn(3)
    res = _run(design, plans, replicates, seed_alt, chunk_size, alpha, progress)
    nres = (_run(null_counterpart(design), plans, replicates, seed_null, chunk_size,
                 alpha, progress, draws=MAXT_EXTRA_DRAWS) if null else None)
    truth = true_values(design, plans, rng=seed_truth)
    band = size_band(replicates, alpha, 1)
    z = sps.norm.ppf(0.975)
    rows, anys = [], {}
    for plan in plans:
        r = res[plan.name]
        tv, tse = truth[plan.name]
        for i, (roi, outcome, term) in enumerate(r["labels"]):
            est, p = r["estimate"][:, i], r["p"][:, i]
            sig = np.nan_to_num(p, nan=1.0) <= alpha
            k = int(sig.sum())
            lo, hi = wilson_interval(k, replicates)
            t = float(tv[i])
            ok = np.isfinite(est)
            with np.errstate(invalid="ignore"):
                cover = (r["ci_low"][:, i] <= t) & (t <= r["ci_high"][:, i])
            rec = {"plan": plan.name, "roi": roi, "outcome": outcome, "term": term,
                   "power": k / replicates, "power_ci_low": lo, "power_ci_high": hi,
                   "true_value": t, "true_value_mcse": float(tse[i]),
                   "mean_estimate": float(np.mean(est[ok])) if ok.any() else np.nan,
                   "n_significant": k, "failed": float(1 - ok.mean()),
                   "multiplicity": "", "estimand": plan.estimand,
                   "replicates": replicates}
            rec["bias"] = rec["mean_estimate"] - t
            rec["rmse"] = float(np.sqrt(np.mean((est[ok] - t) ** 2))) if ok.any() \
                else np.nan
            rec["coverage"] = float(cover[ok].mean()) if ok.any() else np.nan
            if k and t != 0:
                rec["type_s"] = float(np.mean(np.sign(est[sig]) != np.sign(t)))
                rec["exaggeration"] = float(np.mean(np.abs(est[sig])) / abs(t))
            else:
                rec["type_s"] = rec["exaggeration"] = np.nan
            rec.update(_size(nres, plan.name, i, alpha, replicates, band))
            rows.append(rec)
        for outcome in design.outcome_names:
            idx = [i for i, lab in enumerate(r["labels"]) if lab[1] == outcome]
            crit = np.nan
            if plan.multiplicity == "maxt":
                o = design.outcome_names.index(outcome)
                null_min = np.concatenate(
                    [_min_p(nres[plan.name]["p"][:, idx])[:, None],
                     nres["_maxt"][plan.name][:, :, o]], axis=1)
                rej, crit, nrej = _maxt_any(r["p"][:, idx], null_min, alpha)
            else:
                rej = _any_rejects(r["p"][:, idx], plan.multiplicity, alpha)
                nrej = (_any_rejects(nres[plan.name]["p"][:, idx],
                                     plan.multiplicity, alpha)
                        if nres is not None else None)
            anys[plan.name, outcome] = (rej, nrej)
            k = int(rej.sum())
            lo, hi = wilson_interval(k, replicates)
            rec = {"plan": plan.name, "roi": "any", "outcome": outcome,
                   "term": "any", "power": k / replicates, "power_ci_low": lo,
                   "power_ci_high": hi, "n_significant": k,
                   "failed": float(np.mean(~np.isfinite(r["p"][:, idx]).all(axis=1))),
                   "multiplicity": plan.multiplicity, "critical_p": crit,
                   "estimand": (
                       f"any of the plan's {len(idx)} test(s) of {outcome} "
                       f"rejects ({plan.multiplicity} multiplicity)"),
                   "replicates": replicates}
            if nrej is not None:
                ks = int(nrej.sum())
                slo, shi = wilson_interval(ks, replicates)
                rec.update(size=ks / replicates, size_ci_low=slo, size_ci_high=shi,
                           size_ok=bool(band[0] <= ks <= band[1]))
            rows.append(rec)
    table = pd.DataFrame(rows).reindex(columns=PLAN_COLUMNS)
    table = _rank(table, band, replicates)
    paired = _paired(plans, design.outcome_names, anys, replicates, z)
    return table, paired


def _size(nres, name, i, alpha, R, band) -> dict:
    from dtitool.stats.binomial import wilson_interval

    if nres is None:
        return {}
    p = nres[name]["p"][:, i]
    k = int((np.nan_to_num(p, nan=1.0) <= alpha).sum())
    lo, hi = wilson_interval(k, R)
    return {"size": k / R, "size_ci_low": lo, "size_ci_high": hi,
            "size_ok": bool(band[0] <= k <= band[1])}


def _rank(table: pd.DataFrame, band, R: int) -> pd.DataFrame:
    """Rank the ``any`` rows by power per outcome; flag sizes above the band."""
    table = table.copy()
    table["rank"] = pd.array([pd.NA] * len(table), dtype="Int64")
    table["flag"] = ""
    is_any = table["roi"] == "any"
    above = table["size"].notna() & (table["size"] * R > band[1])
    below = table["size"].notna() & (table["size"] * R < band[0])
    table.loc[above, "flag"] = "size above its band: power not comparable"
    table.loc[below & ~above, "flag"] = "size below its band (conservative)"
    for _, g in table[is_any & ~above].groupby("outcome", sort=False):
        order = g["power"].rank(ascending=False, method="min").astype(int)
        table.loc[g.index, "rank"] = order.to_numpy()
    return table


def _paired(plans, outcomes, anys, R: int, z: float) -> pd.DataFrame:
    rows = []
    for outcome in outcomes:
        for i, a in enumerate(plans):
            for b in plans[i + 1:]:
                ra, na = anys[a.name, outcome]
                rb, nb = anys[b.name, outcome]
                rec = {"outcome": outcome, "plan_a": a.name, "plan_b": b.name,
                       "power_a": ra.mean(), "power_b": rb.mean(), "replicates": R}
                rec.update(_diff("power", ra, rb, R, z))
                if na is not None:
                    rec.update(size_a=na.mean(), size_b=nb.mean(),
                               **_diff("size", na, nb, R, z))
                rows.append(rec)
    return pd.DataFrame(rows).reindex(columns=PAIRED_COLUMNS)


def _diff(what: str, a: np.ndarray, b: np.ndarray, R: int, z: float) -> dict:
    """Paired difference of two rejection rates and its normal interval."""
    d = a.astype(float) - b.astype(float)
    m = float(d.mean())
    se = float(d.std(ddof=1) / np.sqrt(R)) if R > 1 else np.nan
    return {f"{what}_difference": m, f"{what}_difference_ci_low": m - z * se,
            f"{what}_difference_ci_high": m + z * se}
