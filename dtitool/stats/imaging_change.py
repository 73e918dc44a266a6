r"""Imaging change tests: does the measure itself change, and differently by arm.

The primary question of an MRS trial (GABA and Glx during a ketamine infusion)
and of many imaging trials: not whether a participant's imaging change goes
with their clinical change (the change-score models of section 3 of
docs/model.md), but whether the measure moves. For every imaging row (MD per
ROI, then every other measure, each on its model scale) and every follow-up
visit ``v``, with ``d_i = y_i(v) - y_i(baseline)`` a participant's change:

- term ``<v>``: the control arm's mean change (in a single-arm design the
  arm's), a one-sample t test with ``n_c - 1`` df (the paired t test of
  baseline against ``v``);
- term ``<arm>:<v>`` for every other arm: its mean change minus the control
  arm's, a Welch t test,

.. math::

    t = \frac{\bar d_a - \bar d_c}{\sqrt{s_a^2 / n_a + s_c^2 / n_c}},
    \qquad
    df = \frac{(s_a^2 / n_a + s_c^2 / n_c)^2}
              {(s_a^2 / n_a)^2 / (n_a - 1) + (s_c^2 / n_c)^2 / (n_c - 1)}

(Welch-Satterthwaite, :func:`dtitool.stats.inference.welch_df`). The term names
are those of the mixed models with time as a visit factor (``analyze --model
mixed --time visit``), so the two tables line up. A participant enters a row's
test at visit ``v`` only with both values observed (complete case per row and
visit): NaN in the values, or False in the optional ``keep`` mask (a spectrum a
quality rule excluded), is missing.

:func:`change_tests` computes every test of every replicate, row and visit at
once; :func:`imaging_power` runs it on simulated trials of a design and of its
null counterpart (size), and :func:`analytic_imaging_power` gives each test's
power from the design alone (the noncentral t), a cross-check of the Monte
Carlo.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dtitool.design import StudyDesign
from dtitool.design.voxels import check_quality_limits

__all__ = [
    "IMAGING_POWER_COLUMNS",
    "analytic_imaging_power",
    "change_tests",
    "imaging_power",
    "imaging_rows",
    "imaging_terms",
    "imaging_values",
]

IMAGING_POWER_COLUMNS = [
    "roi", "measure", "outcome", "term", "power", "power_ci_low", "power_ci_high",
    "analytic_power", "size", "size_ci_low", "size_ci_high", "size_ok",
    "true_value", "mean_estimate", "bias", "type_s", "exaggeration",
    "n_significant", "mean_n", "replicates",
]  # fmt: skip
"""Columns of :func:`imaging_power`'s table (``dtitool power --model imaging``)."""


def imaging_terms(arms, control: str, visits) -> list[str]:
    """Return the tested terms, in table order.

    Each follow-up visit ``<v>`` (the control arm's change), then each other
    arm's ``<arm>:<v>`` (its change minus the control arm's), arm by arm.

    Examples
    --------
    >>> imaging_terms(("ketamine", "saline"), "saline", ("baseline", "24h"))
    ['24h', 'ketamine:24h']
    """
    follow = list(visits)[1:]
    others = [a for a in arms if a != control]
    return [*follow, *(f"{a}:{v}" for a in others for v in follow)]


def _check_inputs(values, arm, control, n_arms, keep):
    """Return checked ``values``, ``arm`` and ``keep`` (errors name the argument)."""
    values = np.asarray(values)
    if values.ndim != 4 or values.shape[-1] < 2:
        raise ValueError(f"values must have shape (replicates, participants, rows, "
                         f"visits) with at least two visits; got shape "
                         f"{values.shape}")
    if not np.issubdtype(values.dtype, np.floating):
        raise TypeError(f"values must be floating point (NaN where missing); got "
                        f"dtype {values.dtype}")
    arm = np.asarray(arm)
    if arm.shape != values.shape[:2]:
        raise ValueError(f"arm has shape {arm.shape} but values has shape "
                         f"{values.shape}: arm must be (replicates, participants)")
    if not np.issubdtype(arm.dtype, np.integer):
        raise TypeError(f"arm must hold integer arm indices; got dtype {arm.dtype}")
    if isinstance(n_arms, bool) or not isinstance(n_arms, int | np.integer) or (
            n_arms < 1):
        raise ValueError(f"n_arms must be a positive integer; got {n_arms!r}")
    if arm.size and (arm.min() < 0 or arm.max() >= n_arms):
        raise ValueError(f"arm holds indices from {arm.min()} to {arm.max()}; "
                         f"expected 0 to {n_arms - 1} (n_arms = {n_arms})")
    if isinstance(control, bool) or not isinstance(control, int | np.integer) or (
            not 0 <= control < n_arms):
        raise ValueError(f"control must be an arm index from 0 to {n_arms - 1}; "
                         f"got {control!r}")
    if keep is not None:
        keep = np.asarray(keep)
        if keep.shape != values.shape:
            raise ValueError(f"keep has shape {keep.shape} but values has shape "
                             f"{values.shape}; they must be the same")
        if keep.dtype != bool:
            raise TypeError(f"keep must be boolean (False: excluded); got dtype "
                            f"{keep.dtype}")
    return values, arm, keep


def change_tests(values, arm, *, control: int, n_arms: int, keep=None) -> dict:
    """Test every row's change from baseline to every follow-up visit.

    Parameters
    ----------
    values : ndarray, shape (R, N, rows, V)
        Each participant's value of each imaging row at each visit (baseline
        first), NaN where missing; ``R`` replicate trials of ``N``
        participants.
    arm : ndarray of int, shape (R, N)
        Each participant's arm, an index from 0 to ``n_arms - 1``.
    control : int
        The control arm's index (with one arm, 0).
    n_arms : int
        Number of arms.
    keep : ndarray of bool, shape (R, N, rows, V), optional
        False where a value is excluded (a spectrum above a fit-quality
        limit): treated as missing.

    Returns
    -------
    dict of ndarray, each shape (R, rows, terms)
        ``estimate``, ``se``, ``df``, ``t``, ``p`` (two-sided), ``n``
        (participants in the test), ``n_arm`` (of the term's arm; for ``<v>``
        the control arm's) and ``n_control``. Terms in the order of
        :func:`imaging_terms`: each follow-up visit, then each other arm
        (ascending index) with each follow-up visit. NaN where an arm has
        fewer than two participants with both values.

    Raises
    ------
    ValueError, TypeError
        Inputs of the wrong shape or kind (naming the argument).

    Notes
    -----
    Everything is computed at once over replicates, participants, rows and
    visits (two-pass means and variances over masked arrays); the loop is over
    arms only.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = rng.normal(size=(3, 20, 1, 2))
    >>> y[..., 1] += 0.5
    >>> arm = np.tile(np.repeat([0, 1], 10), (3, 1))
    >>> out = change_tests(y, arm, control=1, n_arms=2)
    >>> out["p"].shape, float(out["df"][0, 0, 0])
    ((3, 1, 2), 9.0)
    """
    from scipy import special

    from dtitool.stats.inference import welch_df

    values, arm, keep = _check_inputs(values, arm, control, n_arms, keep)
    d = values[..., 1:] - values[..., :1]  # (R, N, rows, V - 1)
    ok = np.isfinite(d)
    if keep is not None:
        ok &= keep[..., 1:] & keep[..., :1]
    n, mean, var = [], [], []
    with np.errstate(invalid="ignore", divide="ignore"):
        for k in range(n_arms):
            m = ok & (arm == k)[:, :, None, None]
            nk = m.sum(axis=1)
            mk = np.where(m, d, 0.0).sum(axis=1) / nk
            dev = np.where(m, d - mk[:, None], 0.0)
            vk = np.einsum("rnjv,rnjv->rjv", dev, dev) / (nk - 1)
            n.append(nk)
            mean.append(mk)
            var.append(np.where(nk > 1, vk, np.nan))
        others = [k for k in range(n_arms) if k != control]
        nc, mc, vc = n[control], mean[control], var[control] / n[control]
        est = [mc, *(mean[k] - mc for k in others)]
        v = [vc, *(var[k] / n[k] + vc for k in others)]
        df = [nc - 1.0, *(welch_df(var[k] / n[k], n[k] - 1.0, vc, nc - 1.0)
                          for k in others)]
        n_arm = [nc, *(n[k] for k in others)]
        n_tot = [nc, *(n[k] + nc for k in others)]
        out = {"estimate": np.concatenate(est, axis=-1),
               "se": np.sqrt(np.concatenate(v, axis=-1)),
               "df": np.concatenate(df, axis=-1).astype(float),
               "n": np.concatenate(n_tot, axis=-1),
               "n_arm": np.concatenate(n_arm, axis=-1),
               "n_control": np.concatenate([nc] * len(est), axis=-1)}
        out["t"] = out["estimate"] / out["se"]
        bad = ~(out["df"] > 0) | ~np.isfinite(out["t"])
        out["p"] = np.where(bad, np.nan, 2.0 * special.stdtr(
            np.where(bad, 1.0, out["df"]), -np.abs(np.where(bad, 0.0, out["t"]))))
    return out


def imaging_rows(design: StudyDesign) -> list[dict]:
    """Return the imaging rows of a design: MD per ROI, then the other measures.

    Each a dict with ``roi``, ``measure``, ``outcome`` (empty), ``kind``
    (``md`` or ``extra``), ``index`` and ``scale`` (the model's unit: MD per
    1e-5 mm^2/s, a measure per its ``scale``): the imaging rows of
    :func:`dtitool.stats.mixed_power.model_rows`.
    """
    from dtitool.stats.mixed_power import model_rows

    return [r for r in model_rows(design) if r["kind"] != "score"]


def imaging_values(arrays, rows=None) -> np.ndarray:
    """Return the simulated values (R, N, rows, V) on the rows' model scales.

    ``arrays`` is a :class:`dtitool.simulate.CohortArrays`; ``rows`` default
    :func:`imaging_rows` of its design.
    """
    rows = imaging_rows(arrays.design) if rows is None else rows
    parts = []
    for r in rows:
        src = arrays.md if r["kind"] == "md" else arrays.extra
        parts.append(src[:, :, r["index"], :] / r["scale"])
    return np.stack(parts, axis=2)


def true_changes(design: StudyDesign, row) -> np.ndarray:
    """Return each term's population value for one row (terms,).

    The expected change of the control arm from baseline to each follow-up
    visit, then each other arm's expected change minus the control arm's, on
    the row's model scale (courses included).
    """
    from dtitool.stats.mixed_power import expected_means

    mu = expected_means(design, row)  # (arms, V)
    chg = mu[:, 1:] - mu[:, :1]
    c = design.arms.index(design.control)
    others = [i for i in range(len(design.arms)) if i != c]
    out = np.concatenate([chg[c], *(chg[k] - chg[c] for k in others)])
    # rounding leaves ~1e-16 where a change is exactly 0
    out[np.abs(out) <= 1e-12 * max(1.0, float(np.abs(mu).max()))] = 0.0
    return out


def change_moments(design: StudyDesign, row) -> tuple[np.ndarray, np.ndarray]:
    """Return each arm's expected change and its variance, (arms, V - 1) each.

    The variance of one participant's observed change from baseline to a
    visit: the true change's (the first course component's SD, or the row's
    ``change_sd``, times its shape's rise from baseline; plus each further
    component's) and two scans' noise, ``2 (cv mean)^2``, on the row's model
    scale.
    """
    from dtitool.design.course import course_arrays
    from dtitool.stats.mixed_power import expected_means

    ca = course_arrays(design)
    rows = imaging_rows(design)
    j = next(i for i, r in enumerate(rows)
             if r["kind"] == row["kind"] and r["index"] == row["index"])
    if row["kind"] == "md":
        spec = design.rois[row["index"]]
    else:
        spec = design.measures[row["index"]]
    rise = ca.shape[:, j, 1:] - ca.shape[:, j, :1]  # (arms, V - 1)
    if np.isnan(ca.first_sd[0, j]):
        sd = np.array([spec.change_sd[a] for a in design.arms])
    else:
        sd = ca.first_sd[:, j]
    var = (sd[:, None] * rise) ** 2
    for k in np.flatnonzero(ca.extra_row == j):
        g = ca.extra_shape[k, 1:] - ca.extra_shape[k, 0]
        var = var + (ca.extra_sd[:, k][:, None] * g[None, :]) ** 2
    var = (var + 2.0 * spec.noise_sd**2) / row["scale"] ** 2
    mu = expected_means(design, row)
    return mu[:, 1:] - mu[:, :1], var


def analytic_imaging_power(design: StudyDesign, *, alpha: float = 0.05
                           ) -> pd.DataFrame:
    r"""Power of every imaging change test from the design alone.

    Parameters
    ----------
    design : StudyDesign
    alpha : float
        Two-sided level.

    Returns
    -------
    pandas.DataFrame
        One row per imaging row and term (:func:`imaging_terms` order):
        ``roi, measure, term, true_value, se, df, noncentrality, power``.

    Notes
    -----
    A participant's observed change is normal with the mean and variance of
    :func:`change_moments`. The one-sample t of the control arm's change has
    ``n_c - 1`` df and noncentrality :math:`\delta = \mu_c / \sqrt{\sigma_c^2 /
    n_c}`: its power :math:`P(|T| > t_{1 - \alpha/2})` under the noncentral t
    is exact. For an arm's difference the noncentrality is
    :math:`(\mu_a - \mu_c) / \sqrt{\sigma_a^2 / n_a + \sigma_c^2 / n_c}` and
    the df Welch-Satterthwaite's at the population variances (an
    approximation: the test's df vary from trial to trial). With missing
    primary-visit scans completely at random the primary visit's tests use the
    expected number observed, ``n (1 - rate)`` (an approximation); with
    missingness not at random the power is NaN (the observed changes are then
    not a random sample), and so it is for an MRS measure reported as a ratio
    to creatine (the design's moments are the concentration's). Every MRS
    spectrum counts: the fit-quality rule's exclusions are not in it.
    """
    from scipy import special

    from dtitool.stats.inference import welch_df

    if not isinstance(design, StudyDesign):
        raise TypeError(f"design must be a StudyDesign; got {type(design).__name__}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1); got {alpha!r}")
    arms = design.arms
    c = arms.index(design.control)
    others = [i for i in range(len(arms)) if i != c]
    sizes = np.array(design.arm_sizes(), dtype=float)[:, None] * np.ones(
        len(design.visits) - 1)
    p = design.visit_names.index(design.primary_visit) - 1
    miss = design.missing
    if miss.mechanism == "mcar":
        sizes[:, p] *= 1.0 - miss.rate
    terms = imaging_terms(arms, design.control, design.visit_names)
    out = []
    for row in imaging_rows(design):
        mean, var = change_moments(design, row)
        v = var / sizes
        est = [mean[c], *(mean[k] - mean[c] for k in others)]
        se2 = [v[c], *(v[k] + v[c] for k in others)]
        df = [sizes[c] - 1.0, *(welch_df(v[k], sizes[k] - 1.0, v[c], sizes[c] - 1.0)
                                for k in others)]
        est, se, df = (np.concatenate(est), np.sqrt(np.concatenate(se2)),
                       np.concatenate(df))
        nc = est / se
        tc = special.stdtrit(df, 1.0 - alpha / 2.0)
        power = special.nctdtr(df, nc, -tc) + 1.0 - special.nctdtr(df, nc, tc)
        # scipy's noncentral t is NaN far in the tail (|nc| of 40 and more):
        # there the normal approximation, power 1 to double precision
        far = ~np.isfinite(power) & np.isfinite(nc)
        power[far] = special.ndtr(np.abs(nc[far]) - tc[far])
        if miss.mechanism == "mnar" or (
                row["kind"] == "extra" and design.measures[row["index"]].ratio_to):
            # MNAR, or a ratio to creatine (the moments are the concentration's)
            power = np.full_like(power, np.nan)
        truth = true_changes(design, row)
        for i, term in enumerate(terms):
            out.append({"roi": row["roi"], "measure": row["measure"], "term": term,
                        "true_value": truth[i], "se": se[i], "df": df[i],
                        "noncentrality": nc[i], "power": power[i]})
    return pd.DataFrame(out, columns=["roi", "measure", "term", "true_value", "se",
                                      "df", "noncentrality", "power"])


def _kept(arrays, rows, limits) -> np.ndarray | None:
    """Return which of the rows' values the fit-quality rule keeps (R, N, rows, V)."""
    kept = arrays.kept_spectra(limits)
    if kept is None:
        return None
    every = np.ones(kept.shape[:2] + kept.shape[3:], dtype=bool)
    return np.stack([kept[:, :, r["index"], :] if r["kind"] == "extra" else every
                     for r in rows], axis=2)


def _run(design, rows, replicates, seed, chunk, progress, quality_limits=None):
    """Simulate ``replicates`` trials in chunks; return each test's p, estimate, n."""
    from dtitool.simulate import simulate_arrays

    c = design.arms.index(design.control)
    parts = []
    for start in range(0, replicates, chunk):
        stop = min(start + chunk, replicates)
        arrays = simulate_arrays(design, rng=seed, start=start, stop=stop, lean=True)
        res = change_tests(imaging_values(arrays, rows), arrays.arm, control=c,
                           n_arms=len(design.arms),
                           keep=_kept(arrays, rows, quality_limits))
        parts.append({k: res[k] for k in ("p", "estimate", "n")})
        if progress is not None:
            progress.update(stop - start)
    return {k: np.concatenate([p[k] for p in parts], axis=0) for k in parts[0]}


def imaging_power(design: StudyDesign, *, replicates: int = 1000, rng=None,
                  alpha: float = 0.05, chunk_size: int = 500, null: bool = True,
                  progress=None, quality_limits=None, modalities: bool = False
                  ) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Monte Carlo power of every imaging change test of a design.

    Parameters
    ----------
    design : StudyDesign
        Any design: two visits or more, one arm or more.
    replicates : int
        Simulated trials (and as many of the null counterpart).
    rng : int or numpy.random.SeedSequence or numpy.random.Generator or None
        Seed; the same seed gives the same table, whatever ``chunk_size``.
    alpha : float
        Two-sided level.
    chunk_size : int
        Replicates simulated and tested at once (bounds memory).
    null : bool
        Also simulate the null counterpart for size
        (:func:`dtitool.stats.mixed_power.null_course_design`: every change
        mean 0, every SD kept).
    progress : object with ``update(k)`` or None
    quality_limits : mapping, optional
        ``{"crlb": %, "fit_error": %}``: an MRS spectrum above its limit is
        missing, as ``dtitool analyze`` excludes it (default
        :data:`dtitool._constants.MRS_QUALITY_LIMITS`). The analytic power
        counts every spectrum.
    modalities : bool
        Also return the power of each imaging modality's family of tests, of
        all modalities in the same trial and of any
        (:func:`dtitool.stats.modalities.modality_power`), on the same trials.

    Returns
    -------
    pandas.DataFrame
        One row per imaging row and term, :data:`IMAGING_POWER_COLUMNS`:
        power with its 95 % Wilson interval, ``analytic_power``
        (:func:`analytic_imaging_power`), size in the null counterpart with its
        interval and ``size_ok`` (within the 99 % binomial band), the true
        value, the mean estimate and its bias, type S and exaggeration among
        significant trials (Gelman & Carlin 2014), and the mean number of
        participants per test. With ``modalities=True``, a pair: that table
        and the modalities' (:data:`dtitool.stats.modalities.MODALITY_COLUMNS`).

    Raises
    ------
    ValueError
        A ``replicates``, ``alpha`` or ``chunk_size`` out of range (naming it).
    """
    from dtitool.simulate import as_seed_sequence
    from dtitool.stats.mixed_power import (
        null_course_design,
        power_record,
        size_record,
    )

    if not isinstance(design, StudyDesign):
        raise TypeError(f"design must be a StudyDesign; got {type(design).__name__}")
    for name, value in (("replicates", replicates), ("chunk_size", chunk_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1); got {alpha!r}")
    seed_alt, seed_null = as_seed_sequence(rng).spawn(2)
    rows = imaging_rows(design)
    limits = check_quality_limits(quality_limits)
    res = _run(design, rows, replicates, seed_alt, chunk_size, progress, limits)
    nres = None
    if null:
        nres = _run(null_course_design(design), rows, replicates, seed_null,
                    chunk_size, progress, limits)
    analytic = analytic_imaging_power(design, alpha=alpha)["power"].to_numpy()
    terms = imaging_terms(design.arms, design.control, design.visit_names)
    nan_size = {"size": np.nan, "size_ci_low": np.nan, "size_ci_high": np.nan,
                "size_ok": None}
    out = []
    for i, row in enumerate(rows):
        truth = true_changes(design, row)
        for j, term in enumerate(terms):
            out.append({
                "roi": row["roi"], "measure": row["measure"], "outcome": "",
                "term": term,
                **power_record(res["estimate"][:, i, j], res["p"][:, i, j],
                               float(truth[j]), alpha),
                "analytic_power": float(analytic[i * len(terms) + j]),
                "mean_n": float(res["n"][:, i, j].mean()),
                "replicates": replicates,
                **(nan_size if nres is None else size_record(nres["p"][:, i, j],
                                                             alpha))})
    table = pd.DataFrame(out, columns=IMAGING_POWER_COLUMNS)
    if not modalities:
        return table
    from dtitool.stats.modalities import modality_power

    return table, modality_power(design, rows, terms, res["p"],
                                 None if nres is None else nres["p"], alpha=alpha)

