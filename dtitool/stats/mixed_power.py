"""Monte Carlo power of the linear mixed models of a longitudinal design.

Every simulated trial of a design with more than two visits is analysed as
``dtitool analyze --model mixed`` analyses one cohort: per ROI and measure (MD
on its 1e-5 mm^2/s scale, another measure on its own scale) and per rating
scale, the model

    value ~ arm * time + age + sex + (1 + time | participant)

fitted by REML, with time the visits' dose (treatment sessions received) or
hours, or the visit as a factor (then ``(1 | participant)``); by default each
arm on its own (its own variances) with the random slope kept where a
likelihood-ratio test favours it (:mod:`dtitool.stats.mixed_select`). All
replicates and model rows are fitted at once by the batched REML engine
(:mod:`dtitool.stats.lmm`; each arm's participants gathered into arrays of
their own), and each fixed-effect test (``time``, ``<arm>`` and
``<arm>:time`` for every arm but the reference) uses Satterthwaite degrees of
freedom, as R's lmerTest does (Welch's combination of the arms' for a
difference of arms).

Per test the result gives power, size (the same tests in the design's null
counterpart: every change mean 0, every SD kept), the true value the estimate
aims at, type S and exaggeration among significant replicates (Gelman & Carlin
2014), and the share of fits that did not converge or were singular.

The true value of a term is the population projection: the same fixed-effect
model fitted by ordinary least squares to the expected value of each arm at
each visit (the courses' mean amplitudes times their shapes). When the model's
time trend is the course's shape (a ``linear`` course and ``time = dose``) it is
the course's own parameter (the ``<arm>:dose`` term is the difference in change
per session); when it is not (an Emax or a transient course fitted linearly)
it is the best straight line through the expected means, and the mixed
model's weights may aim a little elsewhere: the bias column shows how far.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dtitool._constants import DMD_SCALE
from dtitool.design import StudyDesign
from dtitool.design.voxels import check_quality_limits

__all__ = [
    "MIXED_POWER_COLUMNS",
    "TIMES",
    "MixedLayout",
    "mixed_layout",
    "mixed_power",
    "null_course_design",
    "time_values",
]

TIMES = ("dose", "hours", "visit")
"""How the mixed models code time: the visits' dose, their hours, or a factor."""


MIXED_POWER_COLUMNS = [
    "roi", "measure", "outcome", "term", "power", "power_ci_low", "power_ci_high",
    "size", "size_ci_low", "size_ci_high", "size_ok", "true_value",
    "mean_estimate", "bias", "type_s", "exaggeration", "n_significant",
    "nonconverged", "singular", "slope_kept", "size_z", "replicates",
]


def time_values(design: StudyDesign, time: str | None = None) -> tuple[str, np.ndarray]:
    """Return the time variable's name and its value at each visit.

    ``time`` None: ``"dose"`` when every visit states a dose, else ``"hours"``
    (:func:`dtitool.stats.mixed_data.default_time`, the rule of ``analyze``).
    """
    from dtitool.design.course import visit_doses
    from dtitool.stats.mixed_data import default_time

    if time is None:
        time = default_time(design.visits)
    if time not in TIMES:
        raise ValueError(f"time must be one of {', '.join(TIMES)}; got {time!r}")
    if time == "dose":
        lacking = [v.name for v in design.visits if v.dose is None]
        if lacking and not design.sessions:
            raise ValueError(f"time 'dose' needs each visit's dose, but visit "
                             f"{lacking[0]!r} of {design.name!r} states none and "
                             "the design has no treatment sessions ([treatment]); "
                             "use time 'hours' or 'visit'")
        return time, visit_doses(design.visits, design.sessions)
    if time == "hours":
        return time, np.array([v.hours for v in design.visits], dtype=float)
    return time, np.arange(len(design.visits), dtype=float)


@dataclass(frozen=True)
class MixedLayout:
    """The fixed and random effects of a design's mixed models.

    Attributes
    ----------
    columns : list of str
        Fixed-effect column names (``Intercept``, arms, time, interactions,
        ``age``, ``female``).
    terms : list of str
        The tested terms, each a column.
    X_base : ndarray, shape (arms, visits, p_base)
        Fixed-effect rows of a participant of each arm at each visit, before
        covariates.
    Z : ndarray, shape (visits, q)
        Random-effect rows (intercept, and time unless time is a factor).
    covariates : bool
        Whether age and sex follow the base columns.
    """

    time: str
    columns: list
    terms: list
    X_base: np.ndarray
    Z: np.ndarray
    covariates: bool

    @property
    def L(self) -> np.ndarray:
        """One contrast row per tested term, shape (terms, p)."""
        L = np.zeros((len(self.terms), len(self.columns)))
        for i, t in enumerate(self.terms):
            L[i, self.columns.index(t)] = 1.0
        return L


def mixed_layout(design: StudyDesign, time: str | None = None) -> MixedLayout:
    """Return the :class:`MixedLayout` of ``design`` (module docstring)."""
    time, t = time_values(design, time)
    if time != "visit" and len(design.visits) < 3:
        raise ValueError(
            f"the mixed model (1 + {time} | participant) needs at least three "
            f"visits (a random intercept and slope per participant, and a "
            f"residual, from each participant's visits); {design.name!r} has "
            f"{len(design.visits)}: use time = 'visit' or the change-score model")
    if time != "visit" and len(set(t)) < 2:
        raise ValueError(f"every visit of {design.name!r} has the same {time}: "
                         "time cannot be a slope; use time = 'visit'")
    arms = design.arms
    others = [a for a in arms if a != design.control]
    nv = len(design.visits)
    if time == "visit":
        vnames = list(design.visit_names[1:])
        tcols = np.zeros((nv, nv - 1))
        tcols[1:] = np.eye(nv - 1)
        Z = np.ones((nv, 1))
    else:
        vnames = [time]
        tcols = t[:, None]
        Z = np.stack([np.ones(nv), t], axis=1)
    columns = ["Intercept", *others, *vnames,
               *(f"{a}:{v}" for a in others for v in vnames)]
    X = np.zeros((len(arms), nv, len(columns)))
    X[..., 0] = 1.0
    k = len(vnames)
    for ai, a in enumerate(arms):
        X[ai, :, 1 + len(others):1 + len(others) + k] = tcols
        if a in others:
            j = others.index(a)
            X[ai, :, 1 + j] = 1.0
            s = 1 + len(others) + k + j * k
            X[ai, :, s:s + k] = tcols
    terms = [*vnames, *others, *(f"{a}:{v}" for a in others for v in vnames)]
    cov = design.covariates is not None
    if cov:
        columns = [*columns, "age", "female"]
    return MixedLayout(time, columns, terms, X, Z, cov)


def _design_matrix(layout: MixedLayout, arm, age, female, age_mean) -> np.ndarray:
    """Fixed-effect design (R, N, V, p) of simulated participants."""
    X = layout.X_base[arm]  # (R, N, V, p_base)
    if not layout.covariates:
        return X
    nv = X.shape[2]
    a = np.broadcast_to(((age - age_mean) / 10.0)[..., None, None], (*arm.shape, nv, 1))
    f = np.broadcast_to(female[..., None, None].astype(float), (*arm.shape, nv, 1))
    return np.concatenate([X, a, f], axis=-1)


def model_rows(design: StudyDesign) -> list[dict]:
    """Return the mixed models of a design: per ROI and measure, then per outcome.

    Each row: ``roi, measure, outcome`` labels, where its values are
    (``kind``: ``md``, ``extra`` or ``score`` and the index) and its scale.
    """
    rows = [{"roi": r.name, "measure": "md", "outcome": "", "kind": "md", "index": i,
             "scale": DMD_SCALE} for i, r in enumerate(design.rois)]
    for i, m in enumerate(design.measures):
        rows.append({"roi": m.roi, "measure": m.name, "outcome": "", "kind": "extra",
                     "index": i, "scale": m.scale})
    rows += [{"roi": "", "measure": "", "outcome": o.name, "kind": "score",
              "index": k, "scale": 1.0} for k, o in enumerate(design.outcomes)]
    return rows


def _values(arrays, row, kept=None) -> np.ndarray:
    """Return the row's observed values (R, N, V) on its model scale, NaN if missing.

    ``kept`` (:meth:`~dtitool.simulate.CohortArrays.kept_spectra`): an MRS
    spectrum the fit-quality rule excludes is missing.
    """
    if row["kind"] == "md":
        y = arrays.md[:, :, row["index"], :] / row["scale"]
    elif row["kind"] == "extra":
        y = arrays.extra[:, :, row["index"], :] / row["scale"]
        if kept is not None:
            y = np.where(kept[:, :, row["index"], :], y, np.nan)
    else:
        y = arrays.scores[:, :, row["index"], :].astype(float)
        if arrays.scored is not None:
            y[..., arrays.primary] = np.where(arrays.scored, y[..., arrays.primary],
                                              np.nan)
    return y


def expected_means(design: StudyDesign, row) -> np.ndarray:
    """Return the expected value of a row at each visit per arm, (arms, V)."""
    from dtitool.design.course import course_matrix

    arms = design.arms
    fr = design.visit_fractions()
    if row["kind"] == "score":
        o = design.outcomes[row["index"]]
        base = np.array([o.baseline(a)[0] for a in arms])
        chg = np.array([o.change_mean[a] for a in arms])
        return base[:, None] + chg[:, None] * fr
    if row["kind"] == "md":
        r = design.rois[row["index"]]
        base, key, change = r.md_mean, (r.name, "md"), r.change_mean
    else:
        m = design.measures[row["index"]]
        base, key, change = m.mean, (m.roi, m.name), m.change_mean
    course = design.courses.get(key)
    if course is None:
        traj = np.array([change[a] for a in arms])[:, None] * fr
    else:
        g = course_matrix(course, design.visits, design.sessions)
        traj = np.array([[c.mean[a] for c in course] for a in arms]) @ g
    return (base + traj) / row["scale"]


def true_values(design: StudyDesign, layout: MixedLayout, row) -> np.ndarray:
    """Return the population projection of each tested term (module docstring)."""
    mu = expected_means(design, row)  # (arms, V)
    sizes = np.array(design.arm_sizes(), dtype=float)
    X = layout.X_base.reshape(-1, layout.X_base.shape[-1])
    w = np.repeat(sizes, layout.X_base.shape[1])
    beta = np.linalg.lstsq(X * np.sqrt(w)[:, None], mu.reshape(-1) * np.sqrt(w),
                           rcond=None)[0]
    p = layout.X_base.shape[-1]
    out = layout.L[:, :p] @ beta
    # rounding leaves ~1e-16 where the projection is exactly 0
    out[np.abs(out) <= 1e-9 * max(1.0, float(np.abs(mu).max()))] = 0.0
    return out


def null_course_design(design: StudyDesign, *, spread: str = "kept"
                       ) -> StudyDesign:
    """Return the null counterpart for the mixed models: no change in any arm.

    Every course component's mean, every ROI's, measure's and outcome's change
    mean is 0. ``spread="kept"`` (the power tables' null counterpart) keeps
    every SD (the participants' random slopes: a treatment without a mean
    effect may still vary between patients); ``spread="control"`` gives every
    arm the control arm's SDs (the treatment does nothing at all).
    """
    import dataclasses

    from dtitool.design import PerArm

    if spread not in ("kept", "control"):
        raise ValueError(f"spread must be 'kept' or 'control'; got {spread!r}")
    zero = PerArm(dict.fromkeys(design.arms, 0.0))
    ctrl = design.control

    def sd(p):
        return p if spread == "kept" else PerArm(dict.fromkeys(design.arms, p[ctrl]))

    courses = {k: tuple(dataclasses.replace(c, mean=zero, sd=sd(c.sd)) for c in v)
               for k, v in design.courses.items()}
    rois = tuple(dataclasses.replace(
        r, change_mean=zero, change_sd=sd(r.change_sd),
        measures=tuple(dataclasses.replace(m, change_mean=zero,
                                           change_sd=sd(m.change_sd))
                       for m in r.measures))
        for r in design.rois)
    outcomes = tuple(dataclasses.replace(o, change_mean=zero, change_sd=sd(o.change_sd))
                     for o in design.outcomes)
    return design.replace(rois=rois, outcomes=outcomes, courses=courses,
                          name=f"{design.name} (null)")


def _fit_tests(y, X, Z, observed, L, df, random):
    """Fit, choose the random part and test ``L`` in every batch.

    Returns ``estimate, var, df`` (B, k) and ``converged, singular, slope,
    loglik`` (B,). The degrees of freedom are computed for the chosen fit only.
    """
    import dataclasses

    from dtitool.stats import lmm
    from dtitool.stats.mixed_select import keep_slope

    B = y.shape[0]
    # a trial with too few observations left (missing visits, spectra the
    # quality rule excluded) has no fit: filled to be fitted, then NaN
    mask = np.isfinite(y) if observed is None else observed & np.isfinite(y)
    n_obs = mask.sum(axis=(1, 2))
    short = (n_obs <= X.shape[-1]) | (n_obs <= Z.shape[-1] * mask.any(axis=2).sum(1))
    if short.any():
        y = np.where(short[:, None, None] & ~mask, 0.0, y)
        if observed is not None:
            observed = observed | short[:, None, None]
    with np.errstate(**({"all": "ignore"} if short.any() else {})):
        fits = {True: lmm.fit_lmm(y, X, Z, observed)}
        q = Z.shape[-1]
        if random == "slope" or q == 1:
            keep = np.full(B, True)
        else:
            fits[False] = lmm.fit_lmm(y, X, Z[..., :1], observed)
            keep = keep_slope(fits[True].reml_loglik, fits[False].reml_loglik)
    out = {"estimate": np.empty((B, L.shape[0])), "var": np.empty((B, L.shape[0])),
           "df": np.full((B, L.shape[0]), np.inf)}
    for k in ("converged", "singular"):
        out[k] = np.empty(B, dtype=bool)
    out["loglik"] = np.empty(B)
    for slope, fit in fits.items():
        idx = np.flatnonzero(keep == slope)
        if idx.size == 0:
            continue
        Zm = Z if slope else Z[..., :1]
        sub = dataclasses.replace(fit, **{f.name: getattr(fit, f.name)[idx]
                                          for f in dataclasses.fields(fit)})
        ys = y[idx]
        Xs = X if X.ndim == 3 or X.shape[0] == 1 else X[idx]
        obs = None if observed is None else observed[idx]
        t = lmm.contrast_tests(sub, L, np.inf)
        out["estimate"][idx], out["var"][idx] = t["estimate"], t["se"] ** 2
        if df != "z":
            out["df"][idx] = lmm.satterthwaite(sub, ys, Xs, Zm, obs, L)
        out["converged"][idx] = sub.converged
        out["singular"][idx] = sub.singular
        out["loglik"][idx] = sub.reml_loglik
    out["slope"] = keep & (q > 1)
    if short.any():
        for k in ("estimate", "var", "df"):
            out[k][short] = np.nan
        out["converged"][short] = False
    return out


def _per_arm_design(layout: MixedLayout, arrays, design) -> np.ndarray:
    """One arm's fixed effects (R, N, V, 1 + k [+ 2]): intercept, time, covariates.

    Covariates are centred at each trial's pooled mean, so the intercepts of
    the arms' separate fits compare them at the same (average) participant.
    """
    R, N = arrays.arm.shape
    first = layout.columns.index(layout.terms[0])
    tcols = layout.X_base[0][:, first:first + _n_time(layout)]
    nv = tcols.shape[0]
    parts = [np.ones((R, N, nv, 1)), np.broadcast_to(tcols, (R, N, *tcols.shape))]
    if layout.covariates:
        for c in ((arrays.age - design.covariates.age_mean) / 10.0,
                  arrays.female.astype(float)):
            c = c - c.mean(axis=1, keepdims=True)
            parts.append(np.broadcast_to(c[..., None, None], (R, N, nv, 1)))
    return np.concatenate(parts, axis=-1)


def _n_time(layout: MixedLayout) -> int:
    """Return the number of time columns (1, or visits - 1 for a factor)."""
    return layout.Z.shape[0] - 1 if layout.time == "visit" else 1


def _fit_chunk(design, layout, rows, arrays, df, variance="arm", random="select",
               quality_limits=None):
    """Fit every row's model on every replicate of ``arrays``."""
    from dtitool.stats.inference import welch_df

    R, N = arrays.arm.shape
    kept = arrays.kept_spectra(quality_limits)
    Z = np.broadcast_to(layout.Z, (N, *layout.Z.shape))
    L = layout.L
    if variance == "common":
        age = arrays.age if layout.covariates else None
        female = arrays.female if layout.covariates else None
        age_mean = design.covariates.age_mean if layout.covariates else 0.0
        X = _design_matrix(layout, arrays.arm, age, female, age_mean)
        y = np.concatenate([_values(arrays, r, kept) for r in rows], axis=0)
        Xb = np.concatenate([X] * len(rows), axis=0)
        res = _fit_tests(y, Xb, Z, None, L, df, random)
        slope = res["slope"][:, None].astype(float)
        loglik = res["loglik"]
    else:
        k = _n_time(layout)
        Xa = _per_arm_design(layout, arrays, design)
        Xb = np.concatenate([Xa] * len(rows), axis=0)
        y = np.concatenate([_values(arrays, r, kept) for r in rows], axis=0)
        La = np.zeros((1 + k, Xa.shape[-1]))
        La[np.arange(1 + k), np.arange(1 + k)] = 1.0
        per = {}
        counts = np.stack([(arrays.arm == ai).sum(axis=1)
                           for ai in range(len(design.arms))], axis=1)
        if np.all(counts == counts[:1]):
            # every trial has the same arm sizes (blocked allocation): each
            # arm's participants gathered into arrays of their own
            order = np.argsort(arrays.arm, axis=1, kind="stable")
            starts = np.concatenate([[0], np.cumsum(counts[0])])
            for ai in range(len(design.arms)):
                sel = order[:, starts[ai]:starts[ai + 1]]  # (R, n_a)
                ys = np.take_along_axis(y.reshape(len(rows), R, N, -1),
                                        sel[None, :, :, None], axis=2)
                Xs = np.take_along_axis(Xa, sel[:, :, None, None], axis=1)
                per[ai] = _fit_tests(ys.reshape(len(rows) * R, sel.shape[1], -1),
                                     np.concatenate([Xs] * len(rows), axis=0),
                                     Z[:sel.shape[1]], None, La, df, random)
        else:
            for ai in range(len(design.arms)):
                obs = np.broadcast_to((arrays.arm == ai)[..., None],
                                      (R, N, y.shape[-1]))
                per[ai] = _fit_tests(y, Xb, Z, np.concatenate([obs] * len(rows)), La,
                                     df, random)
        c = design.arms.index(design.control)
        others = [i for i in range(len(design.arms)) if i != c]
        est, var, dd = [], [], []
        rc = per[c]
        est.append(rc["estimate"][:, 1:])  # the control arm's time terms
        var.append(rc["var"][:, 1:])
        dd.append(rc["df"][:, 1:])
        for cols in ([0], list(range(1, 1 + k))):  # intercepts, then time terms
            for ai in others:
                ra = per[ai]
                est.append(ra["estimate"][:, cols] - rc["estimate"][:, cols])
                var.append(ra["var"][:, cols] + rc["var"][:, cols])
                dd.append(welch_df(ra["var"][:, cols], ra["df"][:, cols],
                                   rc["var"][:, cols], rc["df"][:, cols]))
        # layout.terms: time terms, arms, then each arm's time terms
        res = {"estimate": np.concatenate(est, axis=1),
               "var": np.concatenate(var, axis=1), "df": np.concatenate(dd, axis=1),
               "converged": np.logical_and.reduce([per[i]["converged"] for i in per]),
               "singular": np.logical_or.reduce([per[i]["singular"] for i in per])}
        slope = np.stack([per[i]["slope"] for i in per], axis=1).astype(float)
        # the arms' REML criteria add up to the joint model's
        loglik = np.sum([per[i]["loglik"] for i in per], axis=0)
    from scipy import special

    se = np.sqrt(res["var"])
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.abs(res["estimate"] / se)
        finite = np.isfinite(res["df"])
        pz = 2.0 * special.ndtr(-t)
        p = np.where(finite, 2.0 * special.stdtr(np.where(finite, res["df"], 1.0), -t),
                     pz)
    shape = (len(rows), R, L.shape[0])
    return {
        "estimate": res["estimate"].reshape(shape),
        "p": p.reshape(shape),
        "p_z": pz.reshape(shape),
        "converged": res["converged"].reshape(len(rows), R),
        "singular": res["singular"].reshape(len(rows), R),
        "slope": slope.mean(axis=1).reshape(len(rows), R),
        "reml_loglik": loglik.reshape(len(rows), R),
    }


def _run(design, layout, rows, replicates, seed, chunk, df, progress, variance,
         random, quality_limits=None):
    from dtitool.simulate import simulate_arrays

    parts = []
    for start in range(0, replicates, chunk):
        stop = min(start + chunk, replicates)
        arrays = simulate_arrays(design, rng=seed, start=start, stop=stop)
        parts.append(_fit_chunk(design, layout, rows, arrays, df, variance,
                                random, quality_limits))
        if progress is not None:
            progress.update(stop - start)
    return {k: np.concatenate([p[k] for p in parts], axis=1) for k in parts[0]}


def mixed_power(design: StudyDesign, *, replicates: int = 1000, rng=None,
                time: str | None = None, alpha: float = 0.05,
                df: str = "satterthwaite", chunk_size: int = 250,
                null: bool = True, progress=None, variance: str = "arm",
                random: str = "select", quality_limits=None) -> pd.DataFrame:
    """Monte Carlo power of every fixed-effect test of the design's mixed models.

    Parameters
    ----------
    design : StudyDesign
        A design with at least three visits (two work too: the model is then
        the change between them).
    replicates : int
        Simulated trials (and as many of the null counterpart).
    rng : int or numpy.random.Generator or None
        Seed; the same seed gives the same table.
    time : {"dose", "hours", "visit"} or None
        How time is coded (:func:`time_values`).
    alpha : float
        Two-sided level.
    df : {"satterthwaite", "z"}
        Degrees of freedom of the t-tests (``"z"``: normal reference).
    chunk_size : int
        Replicates simulated and fitted at once (bounds memory).
    null : bool
        Also simulate the null counterpart (:func:`null_course_design`) for size.
    progress : object with ``update(k)`` or None
    variance : {"arm", "common"}
        Each arm fitted on its own (its own variances; the arm comparisons
        with Welch-Satterthwaite df), or one covariance for all arms
        (:mod:`dtitool.stats.mixed_select`).
    random : {"select", "slope"}
        The random slope kept where a likelihood-ratio test at 0.2 favours
        it, or always (:mod:`dtitool.stats.mixed_select`).
    quality_limits : mapping, optional
        ``{"crlb": %, "fit_error": %}``: an MRS spectrum above its limit is a
        missing observation, as in ``dtitool analyze`` (default
        :data:`dtitool._constants.MRS_QUALITY_LIMITS`).

    Returns
    -------
    pandas.DataFrame
        One row per model row and term, :data:`MIXED_POWER_COLUMNS`.
        ``slope_kept`` is the share of fits (of each arm's, with
        ``variance="arm"``) that kept the random slope.
    """
    from dtitool.stats.mixed_select import check_choices

    check_choices(variance, random)
    from dtitool.simulate import as_seed_sequence

    if (isinstance(replicates, bool) or not isinstance(replicates, int)
            or replicates < 1):
        raise ValueError(f"replicates must be a positive integer; got {replicates!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1); got {alpha!r}")
    if df not in ("satterthwaite", "z"):
        raise ValueError(f"df must be 'satterthwaite' or 'z'; got {df!r}")
    if (isinstance(chunk_size, bool) or not isinstance(chunk_size, int)
            or chunk_size < 1):
        raise ValueError(f"chunk_size must be a positive integer; got {chunk_size!r}")
    ss = as_seed_sequence(rng)
    seed_alt, seed_null = ss.spawn(2)
    layout = mixed_layout(design, time)
    rows = model_rows(design)
    limits = check_quality_limits(quality_limits)
    res = _run(design, layout, rows, replicates, seed_alt, chunk_size, df, progress,
               variance, random, limits)
    nres = None
    if null:
        nres = _run(null_course_design(design), layout, rows, replicates, seed_null,
                    chunk_size, df, progress, variance, random, limits)
    out = []
    null_design = null_course_design(design)
    for i, row in enumerate(rows):
        truth = true_values(design, layout, row)
        # a term whose null counterpart is not 0 (a non-randomised group's
        # baseline difference) has no size
        has_null = true_values(null_design, layout, row) == 0
        conv = res["converged"][i]
        sing = res["singular"][i]
        for j, term in enumerate(layout.terms):
            rec = {"roi": row["roi"], "measure": row["measure"],
                   "outcome": row["outcome"], "term": term,
                   **power_record(res["estimate"][i, :, j], res["p"][i, :, j],
                                  float(truth[j]), alpha),
                   "nonconverged": float(1 - conv.mean()),
                   "singular": float(sing.mean()),
                   "slope_kept": float(res["slope"][i].mean()),
                   "replicates": replicates}
            if nres is not None and has_null[j]:
                q = nres["p"][i, :, j]
                okq = np.isfinite(q)
                rec.update(size_record(q, alpha),
                           size_z=float(np.mean(nres["p_z"][i, :, j][okq] < alpha)))
            else:
                rec.update(size=np.nan, size_ci_low=np.nan, size_ci_high=np.nan,
                           size_ok=None, size_z=np.nan)
            out.append(rec)
    return pd.DataFrame(out, columns=MIXED_POWER_COLUMNS)


def power_record(est: np.ndarray, p: np.ndarray, truth: float, alpha: float
                 ) -> dict:
    """Summarise one test over the replicates: power and the errors of its sign.

    ``est`` and ``p`` are the test's estimates and p-values, one per replicate
    (NaN p: no test); returns ``power`` with its 95 % Wilson interval,
    ``true_value``, ``mean_estimate``, ``bias``, ``type_s`` and
    ``exaggeration`` among significant replicates (Gelman & Carlin 2014; NaN
    when none is significant or the truth is 0) and ``n_significant``.
    """
    from dtitool.stats.binomial import wilson_interval

    ok = np.isfinite(p)
    sig = ok & (p < alpha)
    k, n = int(sig.sum()), int(ok.sum())
    lo, hi = wilson_interval(k, n)
    if k >= 1 and truth != 0:
        type_s = float(np.mean(np.sign(est[sig]) != np.sign(truth)))
        exag = float(np.mean(np.abs(est[sig])) / abs(truth))
    else:
        type_s = exag = np.nan
    mean = float(np.nanmean(est)) if np.isfinite(est).any() else np.nan
    # wilson_interval gives 0-d arrays: as floats, so that the column is a
    # float column and is written with its format (4 digits)
    return {"power": k / n if n else np.nan, "power_ci_low": float(lo),
            "power_ci_high": float(hi), "true_value": truth, "mean_estimate": mean,
            "bias": mean - truth, "type_s": type_s, "exaggeration": exag,
            "n_significant": k}


def size_record(q: np.ndarray, alpha: float) -> dict:
    """Summarise one test's p-values ``q`` in the null counterpart: its size.

    ``size`` with its 95 % Wilson interval and ``size_ok``: the count of
    rejections within the 99 % binomial band around ``alpha``
    (:func:`dtitool.stats.binomial.size_band`).
    """
    from dtitool.stats.binomial import size_band, wilson_interval

    okq = np.isfinite(q)
    kq, nq = int((okq & (q < alpha)).sum()), int(okq.sum())
    if nq == 0:
        return {"size": np.nan, "size_ci_low": np.nan, "size_ci_high": np.nan,
                "size_ok": None}
    slo, shi = wilson_interval(kq, nq)
    band_lo, band_hi = size_band(nq, alpha, 1)
    return {"size": kq / nq, "size_ci_low": float(slo), "size_ci_high": float(shi),
            "size_ok": bool(band_lo <= kq <= band_hi)}


def design_variant(design: StudyDesign, *, visits: Sequence[str] | None = None,
                   slope_sd: float | None = None, n: int | None = None
                   ) -> StudyDesign:
    """Return ``design`` with fewer visits, scaled random slopes or another n.

    ``visits``: the visits kept (baseline and the primary visit among them);
    ``slope_sd``: a factor on every course component's SD (and on the change SD
    of rows without a course).
    """
    import dataclasses

    from dtitool.design import PerArm

    d = design
    if n is not None:
        d = d.with_n(int(n))
    if visits is not None:
        keep = list(visits)
        unknown = [v for v in keep if v not in d.visit_names]
        if unknown:
            raise ValueError(f"visit {unknown[0]!r} is not one of the design's "
                             f"({', '.join(d.visit_names)})")
        for need in (d.visit_names[0], d.primary_visit):
            if need not in keep:
                raise ValueError(f"a schedule must keep visit {need!r} (the "
                                 "baseline and the primary visit)")
        d = d.replace(visits=tuple(v for v in d.visits if v.name in keep))
    if slope_sd is not None:
        f = float(slope_sd)
        if not f >= 0:
            raise ValueError(f"slope_sd must be a factor >= 0; got {slope_sd!r}")
        scale = lambda p: PerArm({a: p[a] * f for a in d.arms})  # noqa: E731
        courses = {k: tuple(dataclasses.replace(c, sd=scale(c.sd)) for c in v)
                   for k, v in d.courses.items()}
        rois = tuple(dataclasses.replace(
            r, change_sd=scale(r.change_sd),
            measures=tuple(dataclasses.replace(m, change_sd=scale(m.change_sd))
                           for m in r.measures)) for r in d.rois)
        d = d.replace(rois=rois, courses=courses)
    return d
