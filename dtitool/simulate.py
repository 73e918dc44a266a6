"""Cohort simulator: synthetic trials of a :class:`~dtitool.design.StudyDesign`.

The generative model (``docs/model.md``), per replicate trial:

1. **Randomisation** by permuted blocks that keep the allocation exactly
   (65 / 33 for n = 98 at 2:1, as in the ``ketamine-rct`` preset); a final
   partial block holds the remainder, so the arm sizes are always
   :meth:`StudyDesign.arm_sizes`.
2. **Change**: per subject, a multivariate normal vector of (true MD change per
   ROI, latent score change per outcome) with the arm's means, SDs and joint
   correlation matrix :meth:`StudyDesign.change_correlation`.
3. **Baseline MD**: multivariate normal per ROI (``md_mean``, ``md_sd``, common
   ROI-ROI correlation ``roi_baseline``); true follow-up MD = baseline + true
   change.
4. **Measurement**: each scan adds independent normal noise with SD
   ``cv * md_mean`` (the test-retest CV: measurement and day-to-day physiology),
   so observed dMD = true dMD + (e_follow-up - e_baseline) and its reliability is
   ``var(true dMD) / (var(true dMD) + 2 cv^2 md_mean^2)``
   (:meth:`StudyDesign.md_summary` states it per ROI and arm).
5. **Scores** (:class:`~dtitool.design.OutcomeSpec`): baselines joined by a
   Gaussian copula (``outcome_baseline``), admitted on the observed, noisy
   baseline rating. The ``"logit"`` model draws everything on a latent scale that
   maps into the score range, so integer scores never pile up at either end;
   ``"additive"`` is baseline + change, rounded and clipped. A ``reliability``
   below 1 adds occasion error to both ratings, so both arms regress to the mean
   (:func:`score_summary` states the result per outcome and arm).
6. **Missing follow-up scans** (MCAR or MNAR, see :class:`~dtitool.design.MissingSpec`)
   and covariates (age, sex), when the design asks for them.

Reproducibility: replicates are drawn in fixed blocks of :data:`BLOCK_SIZE`, block
``b`` from its own stream ``SeedSequence(entropy, spawn_key=(..., b))``. A
replicate's values depend only on the seed and its index, never on how many
replicates were asked for or how they were chunked. Within a block the draws
come in a fixed order (:func:`_draw_blocks`); new draws are appended at its end,
so existing streams stay put where the model is unchanged.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special

from dtitool._memory import check_memory
from dtitool._validation import _NOT_GIVEN, rng_argument
from dtitool.design import StudyDesign, load_preset
from dtitool.design.course import course_arrays
from dtitool.design.voxels import SpectrumModel
from dtitool.simulate_scores import ScoreModel as _ScoreModel
from dtitool.simulate_scores import draw_scores as _draw_scores

__all__ = [
    "BLOCK_SIZE",
    "COHORT_FILES",
    "Cohort",
    "CohortArrays",
    "as_seed_sequence",
    "cohort_files",
    "describe_design",
    "md_summary_wide",
    "score_summary",
    "simulate_arrays",
    "simulate_cohort",
    "simulation_bytes",
]

BLOCK_SIZE = 64
"""Replicates drawn from one random stream; the unit of reproducibility."""

COHORT_FILES = ("participants.tsv", "roi_md.tsv", "true_md.tsv", "visits.tsv",
                "design.toml")
"""Files :meth:`Cohort.write` writes (``dtitool simulate``, the demo's cohort)."""

_DEFAULT_CHUNK = 4096  # replicates per chunk: ~0.4 GB of working arrays at n = 98


def simulation_bytes(design: StudyDesign, replicates: int) -> float:
    """Estimated peak memory (bytes) of simulating ``replicates`` trials at once.

    About 8 bytes per random draw and derived value per subject, ROI and
    outcome (random draws, true and observed MD, scores), with room for the
    temporaries; a float, so that absurd requests do not overflow.
    """
    nr, no = len(design.rois), len(design.outcomes)
    nv = len(design.visits) - 2  # visits besides the baseline and the primary
    nm = len(design.measures)
    return 8.0 * float(replicates) * float(design.n) * (
        16 + 12 * nr + 8 * no + nv * (4 * nr + 3 * no) + nm * (6 + 3 * nv))


def as_seed_sequence(rng=None) -> np.random.SeedSequence:
    """Normalise ``rng`` (None, int, SeedSequence or Generator) to a SeedSequence.

    A Generator is consumed once to draw the entropy of a new SeedSequence, so a
    seeded Generator gives a reproducible result.
    """
    if isinstance(rng, np.random.SeedSequence):
        return rng
    if isinstance(rng, np.random.Generator):
        return np.random.SeedSequence(int(rng.integers(0, 2**63)))
    if rng is None:
        return np.random.SeedSequence()
    if isinstance(rng, bool) or not isinstance(rng, int | np.integer):
        raise TypeError(
            "rng must be None, an integer seed, a numpy SeedSequence or a numpy "
            f"Generator; got {type(rng).__name__} {rng!r}"
        )
    if rng < 0:
        raise ValueError(f"rng seed must be a non-negative integer; got {rng}")
    return np.random.SeedSequence(int(rng))


@dataclass(frozen=True, slots=True, eq=False)
class CohortArrays:
    """Simulated replicate trials as arrays (the power engine's input).

    Axis conventions: ``R`` replicates, ``N`` subjects, ``J`` ROIs (design order),
    ``K`` outcomes (design order), ``V`` visits (:attr:`StudyDesign.visit_names`,
    baseline first; :attr:`primary` indexes the primary visit).

    Attributes
    ----------
    design : StudyDesign
    seed : numpy.random.SeedSequence
        Root of the streams; replicate ``i`` depends only on it and ``i``.
    start : int
        Index of the first replicate held.
    arm : ndarray of int8, shape (R, N)
        Each subject's arm, as an index into :attr:`StudyDesign.arms` (the
        control arm, last, is ``len(arms) - 1``).
    md : ndarray, shape (R, N, J, V)
        Observed MD, mm^2/s; NaN at the primary visit where the scan is
        missing.
    md_true : ndarray, shape (R, N, J, V)
        Latent true MD (no measurement noise), mm^2/s.
    scores : ndarray, shape (R, N, K, V)
        Integer-valued scores at every visit.
    observed : ndarray of bool, shape (R, N)
        False where the primary visit's scan is missing.
    age : ndarray of float, shape (R, N), or None
    female : ndarray of bool, shape (R, N), or None
    scored : ndarray of bool, shape (R, N), or None
        False where the primary visit's ratings are missing (``missing.scores``:
        with the scan); None when every rating is observed. ``scores`` always
        holds the values, observed or not (as ``md_true`` does for MD).
    extra, extra_true : ndarray, shape (R, N, M, V), or None
        The ROIs' other measures (:attr:`StudyDesign.measures`, ``M`` of them),
        observed (NaN where the primary visit's scan is missing) and true; None
        when the design has none (``extra_true`` also in a lean run). A
        measure of an MRS voxel reported as a ratio to creatine holds the ratio.
    quality : ndarray, shape (R, N, M, V), or None
        Each MRS spectrum's fit quality (CRLB or fit error, %; NaN for a
        measure without one, or a missing value); None for a design without
        voxels (:mod:`dtitool.design.voxels`).
    """

    design: StudyDesign
    seed: np.random.SeedSequence
    start: int
    arm: np.ndarray
    md: np.ndarray
    md_true: np.ndarray
    scores: np.ndarray
    observed: np.ndarray
    age: np.ndarray | None
    female: np.ndarray | None
    scored: np.ndarray | None = None
    extra: np.ndarray | None = None
    extra_true: np.ndarray | None = None
    quality: np.ndarray | None = None

    def kept_spectra(self, limits=None) -> np.ndarray | None:
        """Return which measure values pass the MRS fit-quality rule, (R, N, M, V).

        Parameters
        ----------
        limits : mapping, optional
            ``{"crlb": %, "fit_error": %}``: a spectrum above its measure's limit
            is excluded, as ``dtitool analyze`` excludes it
            (:func:`dtitool.mrs.apply_quality`); default
            :data:`dtitool._constants.MRS_QUALITY_LIMITS`.

        Returns
        -------
        ndarray of bool or None
            False where excluded; None for a design without fit qualities.
        """
        from dtitool._constants import MRS_QUALITY_LIMITS
        from dtitool.design.voxels import check_quality_limits

        limits = {**MRS_QUALITY_LIMITS, **(check_quality_limits(limits) or {})}
        if self.quality is None:
            return None
        level = np.array([limits.get(m.quality, np.inf)
                          for m in self.design.measures])
        with np.errstate(invalid="ignore"):
            return ~(self.quality > level[:, None])

    @property
    def replicates(self) -> int:
        """Number of replicates held."""
        return self.arm.shape[0]

    @property
    def primary(self) -> int:
        """Index of the primary visit on the visit axis."""
        return self.design.visit_names.index(self.design.primary_visit)

    @property
    def treated(self) -> np.ndarray:
        """True outside the control arm, shape (R, N)."""
        return self.arm != len(self.design.arms) - 1

    @property
    def observed_24h(self) -> np.ndarray:
        """Older name of :attr:`observed`."""
        return self.observed

    @property
    def scored_24h(self) -> np.ndarray | None:
        """Older name of :attr:`scored`."""
        return self.scored

    @property
    def roi_names(self) -> tuple[str, ...]:
        """ROI names along the J axis."""
        return self.design.roi_names

    @property
    def outcome_names(self) -> tuple[str, ...]:
        """Outcome names along the K axis."""
        return self.design.outcome_names

    @property
    def d_md(self) -> np.ndarray:
        """Observed MD change (primary visit minus baseline), shape (R, N, J)."""
        return self.md[..., self.primary] - self.md[..., 0]

    @property
    def d_score(self) -> np.ndarray:
        """Score change (primary visit minus baseline), shape (R, N, K)."""
        return self.scores[..., self.primary] - self.scores[..., 0]


def _compound(k: int, rho: float) -> np.ndarray:
    m = np.full((k, k), rho)
    np.fill_diagonal(m, 1.0)
    return m


class _Model:
    """Arrays derived once from a design for fast repeated simulation."""

    def __init__(self, design: StudyDesign):
        d = design
        self.n = d.n
        self.nr = len(d.rois)
        self.no = len(d.outcomes)
        # Randomisation slots (arm codes): full blocks of the exact ratio, then
        # the remainder.
        a = np.array(d.allocation.as_tuple(d.arms))  # control last
        codes = np.arange(len(a), dtype=np.int8)
        per_block = d.block_size // int(a.sum())
        block = np.repeat(codes, a * per_block)
        n_full = d.n // d.block_size
        rem = np.array(d.arm_sizes()) - n_full * a * per_block
        self.slots = np.concatenate([np.tile(block, n_full), np.repeat(codes, rem)])
        # Visits: follow-ups other than the primary, and each arm's share of the
        # primary change reached by every visit.
        self.nv = len(d.visits)
        self.primary = d.visit_names.index(d.primary_visit)
        self.others = [v for v in range(1, self.nv) if v != self.primary]
        self.fractions = d.visit_fractions()
        self.segment = np.minimum(np.arange(d.n) // d.block_size, n_full).astype(float)
        # Time courses (design.course): the imaging rows' trajectories; a row
        # with a course draws its first component's amplitude as its change.
        self.course = course_arrays(d) if d.courses else None
        nm = len(d.measures)
        self.img_cols = np.r_[0:self.nr, self.nr + self.no:self.nr + self.no + nm]
        # Change: mean and Cholesky factor per arm, control last.
        self.chg_mean = []
        self.chg_chol_t = []
        for a_i, arm in enumerate(d.arms):
            # outcome change on its generative scale (latent for logit scales)
            latent = [o.change_parameters(arm) for o in d.outcomes]
            mean = ([r.change_mean[arm] for r in d.rois] + [x[0] for x in latent]
                    + [m.change_mean[arm] for m in d.measures])
            sd = np.array(
                [r.change_sd[arm] for r in d.rois] + [x[1] for x in latent]
                + [m.change_sd[arm] for m in d.measures]
            )
            if self.course is not None:
                mean = np.array(mean)
                first = ~np.isnan(self.course.first_mean[a_i])
                mean[self.img_cols[first]] = self.course.first_mean[a_i][first]
                sd[self.img_cols[first]] = self.course.first_sd[a_i][first]
            chol = np.linalg.cholesky(d.change_correlation(arm)) * sd[:, None]
            self.chg_mean.append(np.array(mean))
            self.chg_chol_t.append(np.ascontiguousarray(chol.T))
        self.md_mean = np.array([r.md_mean for r in d.rois])
        md_sd = np.array([r.md_sd for r in d.rois])
        self.md0_chol_t = (
            np.linalg.cholesky(_compound(self.nr, d.correlations.roi_baseline))
            * md_sd[:, None]
        ).T.copy()
        self.noise_sd = np.array([r.noise_sd for r in d.rois])
        self.base_chol_t = np.linalg.cholesky(
            _compound(self.no, d.correlations.outcome_baseline)
        ).T.copy()
        self.scores = _ScoreModel(d.outcomes, d.arms)
        self.score_rtm = self.scores.rtm
        self.missing = d.missing
        if d.missing.mechanism == "mnar":
            k = d.outcome_names.index(d.missing.outcome)
            self.mnar_k = self.nr + k
        self.covariates = d.covariates
        # the ROIs' other measures (their change is at the end of chg_mean)
        ms = d.measures
        self.nm = len(ms)
        self.m_mean = np.array([m.mean for m in ms])
        self.m_sd = np.array([m.sd for m in ms])
        self.m_noise = np.array([m.noise_sd for m in ms])
        self.spectra = SpectrumModel.of(d)


def _draw_blocks(
    ss: np.random.SeedSequence, b0: int, b1: int, n: int, nr: int, no: int,
    *, score_error: bool = False, extra_visits: int = 0, measures: int = 0,
    components: int = 0, spectra: int = 0,
) -> dict[str, np.ndarray]:
    """Draw the raw random numbers of blocks ``b0 .. b1 - 1`` in a fixed order.

    ``extra_visits``: follow-up visits besides the primary one; their scan
    noise (and rating errors) are drawn last, so a two-visit design's draws
    are what they always were; ``measures`` (the ROIs' other measures: their
    change, baseline and scan noise) after them, then the time courses'
    further components' amplitudes (``components``), then the noise factor
    of each MRS voxel's spectrum at each visit (``spectra``).
    """
    r = (b1 - b0) * BLOCK_SIZE
    out = {
        "u_rand": np.empty((r, n)),
        "z_chg": np.empty((r, n, nr + no)),
        "z_md0": np.empty((r, n, nr)),
        "z_base": np.empty((r, n, no)),
        "e": np.empty((r, n, nr, 2)),
        "u_miss": np.empty((r, n)),
        "u_age": np.empty((r, n)),
        "u_sex": np.empty((r, n)),
    }
    if score_error:  # drawn last: switching it on changes no other value
        out["z_e1"] = np.empty((r, n, no))
        out["z_e2"] = np.empty((r, n, no))
    if extra_visits:
        out["e_ev"] = np.empty((r, n, nr, extra_visits))
        if score_error:
            out["z_ev"] = np.empty((r, n, no, extra_visits))
    if measures:
        out["z_chg_m"] = np.empty((r, n, measures))
        out["z_m0"] = np.empty((r, n, measures))
        out["e_m"] = np.empty((r, n, measures, 2 + extra_visits))
    if components:
        out["z_course"] = np.empty((r, n, components))
    if spectra:
        out["z_spec"] = np.empty((r, n, spectra, 2 + extra_visits))
    for i, b in enumerate(range(b0, b1)):
        child = np.random.SeedSequence(ss.entropy, spawn_key=(*ss.spawn_key, b))
        g = np.random.Generator(np.random.PCG64(child))
        s = slice(i * BLOCK_SIZE, (i + 1) * BLOCK_SIZE)
        g.random(out=out["u_rand"][s])
        g.standard_normal(out=out["z_chg"][s])
        g.standard_normal(out=out["z_md0"][s])
        g.standard_normal(out=out["z_base"][s])
        g.standard_normal(out=out["e"][s])
        g.random(out=out["u_miss"][s])
        g.random(out=out["u_age"][s])
        g.random(out=out["u_sex"][s])
        if score_error:
            g.standard_normal(out=out["z_e1"][s])
            g.standard_normal(out=out["z_e2"][s])
        if extra_visits:
            g.standard_normal(out=out["e_ev"][s])
            if score_error:
                g.standard_normal(out=out["z_ev"][s])
        if measures:
            g.standard_normal(out=out["z_chg_m"][s])
            g.standard_normal(out=out["z_m0"][s])
            g.standard_normal(out=out["e_m"][s])
        if components:
            g.standard_normal(out=out["z_course"][s])
        if spectra:
            g.standard_normal(out=out["z_spec"][s])
    return out


def _simulate_range(
    m: _Model, design: StudyDesign, ss: np.random.SeedSequence, start: int, stop: int,
    lean: bool = False,
) -> dict[str, np.ndarray]:
    b0 = start // BLOCK_SIZE
    b1 = -(-stop // BLOCK_SIZE)
    raw = _draw_blocks(ss, b0, b1, m.n, m.nr, m.no, score_error=m.score_rtm,
                       extra_visits=len(m.others), measures=m.nm,
                       components=0 if m.course is None else len(m.course.extra_row),
                       spectra=0 if m.spectra is None else m.spectra.voxels)
    keep = slice(start - b0 * BLOCK_SIZE, stop - b0 * BLOCK_SIZE)
    raw = {k: v[keep] for k, v in raw.items()}
    k_spec = None
    if m.spectra is not None:  # a noisier spectrum: every metabolite noisier
        k_spec = m.spectra.factor(raw["z_spec"])
        m.spectra.scale_noise(raw["e_m"], k_spec)

    # 1. permuted blocks: sort uniform keys within each block segment
    order = np.argsort(raw["u_rand"] + m.segment, axis=1, kind="stable")
    arm = m.slots[order]

    # 2. joint change per arm, selected by arm (in place: the same arithmetic
    # as forming every arm's values and choosing, without the temporaries)
    z = raw["z_chg"]
    if m.nm:  # the other measures' change draws come last in the vector
        z = np.concatenate([z, raw["z_chg_m"]], axis=-1)
    chg = np.matmul(z, m.chg_chol_t[0])
    chg += m.chg_mean[0]
    for a in range(1, len(m.chg_mean)):
        other = np.matmul(z, m.chg_chol_t[a])
        other += m.chg_mean[a]
        np.copyto(chg, other, where=(arm == a)[..., None])
        del other
    d_md_true = chg[..., : m.nr]
    d_score = chg[..., m.nr : m.nr + m.no]
    # each subject's share of the primary change at the other follow-ups
    fr = m.fractions[:, m.others][arm] if m.others else None  # (R, N, others)

    # 3-4. MD: true baseline, true follow-ups, observed with scan noise
    base = np.matmul(raw["z_md0"], m.md0_chol_t)
    base += m.md_mean
    e = raw["e"]  # the raw noise draws are not needed after this
    e *= m.noise_sd[:, None]
    p = m.primary
    if m.course is not None:
        md_true, md, extra_true, extra = _course_values(m, raw, arm, chg, base, e,
                                                        lean=lean)
    elif m.others:
        md_true = np.empty((*arm.shape, m.nr, m.nv))
        md_true[..., 0] = base
        np.add(base, d_md_true, out=md_true[..., p])
        noise = np.empty_like(md_true)
        noise[..., 0], noise[..., p] = e[..., 0], e[..., 1]
        for i, v in enumerate(m.others):
            md_true[..., v] = base + d_md_true * fr[..., i, None]
            noise[..., v] = raw["e_ev"][..., i] * m.noise_sd
        md = np.add(md_true, noise)
        del noise
        if lean:
            md_true = None
    elif lean:  # observed MD only, in the noise array: the same sums, one pass less
        md_true = None
        md = e
        md[..., 0] += base
        base += d_md_true
        md[..., 1] += base
    else:
        md_true = np.empty((*arm.shape, m.nr, 2))
        md_true[..., 0] = base
        np.add(base, d_md_true, out=md_true[..., 1])
        md = np.add(md_true, e)
    del base
    if m.course is None:
        extra = extra_true = None

    # 5. scores: baselines through a Gaussian copula, admitted at the threshold
    scores = _draw_scores(m.scores, raw, raw["z_base"] @ m.base_chol_t, d_score,
                          (m.nv, p, m.others, fr), arm)

    # 6. missing primary-visit scans
    miss = m.missing
    if miss.mechanism == "none":
        observed = np.ones(arm.shape, dtype=bool)
    else:
        logit = math.log(miss.rate / (1 - miss.rate))
        if miss.mechanism == "mnar":
            k = m.mnar_k
            mean = np.array([mu[k] for mu in m.chg_mean])[arm]
            sd = np.array([c[:, k] @ c[:, k] for c in m.chg_chol_t])[arm] ** 0.5
            logit = logit + miss.strength * (chg[..., k] - mean) / sd
        observed = raw["u_miss"] >= special.expit(logit)
    if miss.mechanism != "none":
        md[..., p] = np.where(observed[..., None], md[..., p], np.nan)
    if m.course is not None:
        if extra is not None:
            extra[..., p] = np.where(observed[..., None], extra[..., p], np.nan)
    elif m.nm:
        extra_true, extra = _measures(m, raw, chg[..., m.nr + m.no :], fr, observed)
        if lean:
            extra_true = None

    age = female = None
    cov = m.covariates
    if cov is not None and not lean:
        a_lo = special.ndtr((cov.age_min - 0.5 - cov.age_mean) / cov.age_sd)
        a_hi = special.ndtr((cov.age_max + 0.5 - cov.age_mean) / cov.age_sd)
        age = cov.age_mean + cov.age_sd * special.ndtri(
            a_lo + raw["u_age"] * (a_hi - a_lo)
        )
        age = np.clip(np.rint(age), cov.age_min, cov.age_max)
        female = raw["u_sex"] < cov.female
    quality = None
    if m.spectra is not None:
        extra_true, extra, quality = m.spectra.finish(k_spec, extra_true, extra)
    return {
        "arm": arm,
        "md": md,
        "md_true": md_true,
        "scores": scores,
        "observed": observed,
        "age": age,
        "female": female,
        # a missed visit loses the ratings with the scan (no extra draws)
        "scored": observed if miss.scores else None,
        "extra": extra,
        "extra_true": extra_true,
        "quality": quality,
    }


def _course_values(m: _Model, raw, arm, chg, base, e, *, lean=False):
    """Return true and observed MD and measures, (R, N, rows, V), along the courses.

    Each imaging row's trajectory is its change (the first component's
    amplitude) times the first shape, plus every further component's amplitude
    times its shape; the scans add the noise a design without courses adds.
    ``lean``: the true values are None, and the observed ones are formed in
    the trajectories' array (the same sums in the same order: the same bytes).
    """
    c = m.course
    x = chg[..., m.img_cols][..., None]
    traj = x * c.shape[0]  # every arm's shape, where they agree: no gather
    for a in range(1, c.shape.shape[0]):
        if not np.array_equal(c.shape[a], c.shape[0]):
            sel = arm == a
            traj[sel] = x[sel] * c.shape[a]
    z = raw["z_course"] if len(c.extra_row) else None
    for k, j in enumerate(c.extra_row):
        amp = c.extra_mean[arm, k] + c.extra_sd[arm, k] * z[..., k]
        traj[..., j, :] += amp[..., None] * c.extra_shape[k]
    md_true = traj[..., : m.nr, :]
    md_true += base[..., None]
    if lean:  # observed = true + noise, visit by visit, in place
        md = md_true
        md[..., 0] += e[..., 0]
        md[..., m.primary] += e[..., 1]
        for i, v in enumerate(m.others):
            md[..., v] += raw["e_ev"][..., i] * m.noise_sd
        md_true = None
    else:
        noise = np.empty((*arm.shape, m.nr, m.nv))
        noise[..., 0], noise[..., m.primary] = e[..., 0], e[..., 1]
        for i, v in enumerate(m.others):
            noise[..., v] = raw["e_ev"][..., i] * m.noise_sd
        md = md_true + noise
    if not m.nm:
        return md_true, md, None, None
    true = traj[..., m.nr :, :]
    true += (m.m_mean + m.m_sd * raw["z_m0"])[..., None]
    noise = raw["e_m"]
    noise *= m.m_noise[:, None]  # the raw draws are not needed after this
    if lean:
        true += noise
        return None, md, None, true
    return md_true, md, true, true + noise


def _measures(m: _Model, raw, change, fr, observed):
    """Return the true and observed values of the other measures, (R, N, M, V)."""
    base = m.m_mean + m.m_sd * raw["z_m0"]
    true = np.empty((*base.shape, m.nv))
    true[..., 0] = base
    true[..., m.primary] = base + change
    for i, v in enumerate(m.others):
        true[..., v] = base + change * fr[..., i, None]
    obs = true + m.m_noise[:, None] * raw["e_m"]
    obs[..., m.primary] = np.where(observed[..., None], obs[..., m.primary], np.nan)
    return true, obs


def cohort_files(design: StudyDesign) -> tuple[str, ...]:
    """Return the files a cohort of ``design`` writes.

    :data:`COHORT_FILES`, with ``roi_<measure>.tsv`` and ``true_<measure>.tsv``
    per measure of the ROIs (and MRS voxels) besides MD; without MD tables for
    a design without ROIs (MRS voxels only).
    """
    extra = [f"{kind}_{m}.tsv" for m in design.measure_names[1:]
             for kind in ("roi", "true")]
    md = COHORT_FILES[1:3] if design.rois else ()
    return (COHORT_FILES[0], *md, *extra, *COHORT_FILES[3:])


def _check_design(design) -> StudyDesign:
    if design is None:
        return load_preset("ketamine-rct")
    if isinstance(design, str):
        return load_preset(design)
    if not isinstance(design, StudyDesign):
        raise TypeError(
            "design must be a StudyDesign or a preset name; got "
            f"{type(design).__name__}"
        )
    return design


def simulate_arrays(
    design: StudyDesign | str | None = None,
    *,
    rng=None,
    start: int = 0,
    stop: int | None = None,
    chunk_size: int | None = None,
    lean: bool = False,
    seed=_NOT_GIVEN,
) -> CohortArrays:
    """Simulate replicate trials ``start`` to ``stop - 1`` as arrays.

    Parameters
    ----------
    design : StudyDesign or str, optional
        Design or preset name; default the ``ketamine-rct`` preset.
    rng : None, int, SeedSequence or Generator
        Root of the random streams (see :func:`as_seed_sequence`).
    start, stop : int
        Replicate range; ``stop`` defaults to ``start + 1``.
    chunk_size : int, optional
        Replicates simulated at once (bounds working memory); never changes values.
    lean : bool
        Only what the models use: ``md_true``, ``age`` and ``female`` are None
        (the power engine's setting); every other value is the same.
    seed
        Older name of ``rng`` (deprecated).

    Returns
    -------
    CohortArrays
    """
    rng = rng_argument(rng, seed, where="simulate_arrays")
    design = _check_design(design)
    ss = as_seed_sequence(rng)
    if isinstance(start, bool) or not isinstance(start, int | np.integer) or start < 0:
        raise ValueError(f"start must be a non-negative integer; got {start!r}")
    stop = start + 1 if stop is None else stop
    if (
        isinstance(stop, bool)
        or not isinstance(stop, int | np.integer)
        or stop <= start
    ):
        raise ValueError(f"stop must be an integer > start ({start}); got {stop!r}")
    chunk = _DEFAULT_CHUNK if chunk_size is None else chunk_size
    if isinstance(chunk, bool) or not isinstance(chunk, int | np.integer) or chunk < 1:
        raise ValueError(f"chunk_size must be a positive integer; got {chunk_size!r}")
    check_memory(
        simulation_bytes(design, stop - start),
        f"simulating {stop - start} trial(s) of n = {design.n}",
        hint="use a smaller n or fewer replicates",
    )
    m = _Model(design)
    parts = [
        _simulate_range(m, design, ss, s, min(s + chunk, stop), lean=bool(lean))
        for s in range(start, stop, chunk)
    ]
    if len(parts) == 1:
        res = parts[0]
    else:
        res = {
            k: None if parts[0][k] is None else np.concatenate([p[k] for p in parts])
            for k in parts[0]
        }
    return CohortArrays(design=design, seed=ss, start=int(start), **res)


def score_summary(
    design: StudyDesign | str | None = None, *, participants: int = 20_000, rng=0
) -> pd.DataFrame:
    """Summarise what the design's score model gives, per outcome and arm.

    Parameters
    ----------
    design : StudyDesign or str, optional
        Design or preset name; default the ``ketamine-rct`` preset.
    participants : int
        At least this many simulated participants (whole replicate trials).
    rng : None, int, SeedSequence or Generator
        Seed (default 0: the same summary every time).

    Returns
    -------
    pandas.DataFrame
        One row per outcome and arm: ``outcome, arm, n, reliability,
        baseline_mean, baseline_sd`` (observed, admitted), ``true_change_mean,
        true_change_sd`` (the design's), ``observed_change_mean,
        observed_change_sd``, ``regression_to_mean`` (expected change of an
        untreated participant, closed form), ``response`` (primary-visit score
        at most half the baseline), ``remission`` (primary-visit score <=
        ``remission_max``; NaN when the outcome has none), ``at_floor``
        (primary-visit score at the scale minimum), ``at_ceiling``. Arms are
        the design's (:attr:`StudyDesign.arms`, control last).
    """
    design = _check_design(design)
    if isinstance(participants, bool) or not isinstance(
            participants, int | np.integer) or participants < 1:
        raise ValueError(f"participants must be a positive integer; got "
                         f"{participants!r}")
    reps = -(-int(participants) // design.n)
    a = simulate_arrays(design, rng=rng, stop=reps)
    rows = []
    for k, o in enumerate(design.outcomes):
        b, post = a.scores[..., k, 0], a.scores[..., k, a.primary]
        for code, arm in enumerate(design.arms):
            mask = a.arm == code
            bk, pk = b[mask], post[mask]
            d = pk - bk
            rows.append({
                "outcome": o.name, "arm": arm, "n": int(mask.sum()),
                "reliability": o.reliability,
                "baseline_mean": bk.mean(), "baseline_sd": bk.std(ddof=1),
                "true_change_mean": o.change_mean[arm],
                "true_change_sd": o.change_sd[arm],
                "observed_change_mean": d.mean(),
                "observed_change_sd": d.std(ddof=1),
                "regression_to_mean": o.regression_to_mean(arm),
                "response": np.mean(pk <= 0.5 * bk),
                "remission": (np.nan if o.remission_max is None
                              else np.mean(pk <= o.remission_max)),
                "at_floor": np.mean(pk == o.scale_min),
                "at_ceiling": np.mean(pk == o.scale_max),
            })
    return pd.DataFrame(rows)


def md_summary_wide(design: StudyDesign) -> pd.DataFrame:
    """:meth:`StudyDesign.md_summary` with one row per ROI, arms side by side.

    Columns: ``roi``, ``MD (1e-3 mm^2/s)``, ``between-subject SD (%)`` and
    ``test-retest CV (%)`` (both as % of MD), then per arm ``true change SD (% MD)``,
    ``session r`` (observed MD at the baseline and the primary visit) and ``dMD
    reliability``, per arm of the design (:attr:`StudyDesign.arms`).
    """
    m = design.md_summary()
    first = m[m["arm"] == design.treatment].set_index("roi")
    out = pd.DataFrame({
        "MD (1e-3 mm^2/s)": first["md_mean"] * 1e3,
        "between-subject SD (%)": 100 * first["md_sd"] / first["md_mean"],
        "test-retest CV (%)": 100 * first["cv"],
    })
    for col, name in (("change_sd_pct_md", "true change SD (% MD)"),
                      ("session_correlation", "session r"),
                      ("dmd_reliability", "dMD reliability")):
        for arm in design.arms:
            out[f"{name} {arm}"] = m[m["arm"] == arm].set_index("roi")[col]
    return out.reset_index()


def _short_names(arms) -> list[str]:
    """Arm names cut to three characters for column headers, unless that clashes."""
    short = [a[:3] for a in arms]
    return short if len(set(short)) == len(short) else list(arms)


def describe_design(design: StudyDesign, *, participants: int = 20_000,
                    rng=0) -> str:
    """Describe a design in words and numbers: MD model per ROI, scores per arm.

    The MD part is exact (:meth:`StudyDesign.md_summary`); the score part comes
    from :func:`score_summary` (``participants`` simulated with seed ``rng``).
    Parameters outside the design's ranges are listed last.
    """
    base, primary = design.baseline_visit, design.primary_visit
    lines = [f"MD model of {design.name!r} per ROI and arm (MD in 1e-3 mm^2/s; SD, "
             "CV and true change SD in % of MD; r: correlation of observed "
             f"MD at visits {base} and {primary}; rel: reliability of observed dMD, "
             "the share of its variance that is true change):"]
    if design.rois:
        wide = md_summary_wide(design)
        short = ["roi", "MD", "between SD", "CV"] + [
            f"{a} {arm}" for a in ("change SD", "r", "rel")
            for arm in _short_names(design.arms)]
        wide.columns = short
        with pd.option_context("display.width", 160, "display.max_columns", 20):
            lines.append(wide.to_string(index=False, float_format="%.3g"))
    else:
        lines = [f"{design.name!r} has no MD ROIs: MRS voxels "
                 f"{', '.join(design.voxel_names)} only."]
    s = score_summary(design, participants=participants, rng=rng)
    cols = {"observed_change_mean": "change", "observed_change_sd": "SD",
            "regression_to_mean": "RTM", "response": "response",
            "remission": "remission", "at_floor": "at floor"}
    t = s[["outcome", "arm", "reliability", *cols]].rename(columns=cols)
    n_sim = int(s["n"].sum() // len(design.outcomes))
    trials = n_sim // design.n  # whole replicate trials (score_summary)
    lines.append(f"Scores at visit {primary} as the design's score model gives "
                 f"them (a summary over {trials:,} simulated trials of "
                 f"{design.n} participants each, {n_sim:,} in all, not over the "
                 f"cohort simulated here; change = {primary} minus {base}, "
                 "observed; RTM = expected change "
                 "without treatment, from regression to the mean; response = "
                 f"{primary} score at most half the {base} score):")
    with pd.option_context("display.width", 160):
        lines.append(t.to_string(index=False, float_format="%.3g"))
    v = design.range_violations()
    if v:
        lines.append("Outside the design's ranges:")
        lines += [f"  - {x}" for x in v]
    return "\n".join(lines)


class Cohort:
    """A simulated cohort (one or several replicate trials) as tidy tables.

    Use :func:`simulate_cohort` to make one. Tables are built on first access.

    Attributes
    ----------
    arrays : CohortArrays
        The simulated values as arrays.
    participants : pandas.DataFrame
        ``participant_id, group`` (the design's arm names), one
        ``<outcome>_<visit>`` column per outcome and visit, ``[age, sex]``
        (a leading ``replicate`` column when there are several replicates).
    roi_md : pandas.DataFrame
        Observed MD in long form: ``participant_id, session, roi, md`` (mm^2/s;
        ``session`` holds the design's visit names, ``roi`` its ROI names); a
        missing follow-up scan is a missing row.
    true_md : pandas.DataFrame
        Latent true MD, ``participant_id, session, roi, md_true``, every row.
    visits : pandas.DataFrame
        The schedule: ``visit, hours, dose, primary`` (``dose`` empty where the
        design states none; ``primary`` ``"true"`` or ``"false"``).
    files : tuple of str
        What :meth:`write` writes: :data:`COHORT_FILES`, and per measure of the
        ROIs besides MD ``roi_<measure>.tsv`` and ``true_<measure>.tsv``
        (:meth:`measure_table`).
    """

    def __init__(self, arrays: CohortArrays):
        self.arrays = arrays
        self._cache: dict[str, pd.DataFrame] = {}

    def __repr__(self) -> str:
        a = self.arrays
        d = a.design
        arms = ", ".join(f"{k} {arm}" for k, arm in
                         zip(d.arm_sizes(), d.arms, strict=True))
        return (
            f"<Cohort design={d.name!r} replicates={a.replicates} "
            f"n={d.n} ({arms}) seed={a.seed.entropy}>"
        )

    @property
    def design(self) -> StudyDesign:
        """The design simulated."""
        return self.arrays.design

    @property
    def seed(self) -> int:
        """Entropy of the root SeedSequence: pass it as ``rng`` to repeat the run."""
        return int(self.arrays.seed.entropy)

    def _ids(self) -> np.ndarray:
        n = self.design.n
        width = max(3, len(str(n)))
        return np.array([f"sub-{i:0{width}d}" for i in range(1, n + 1)], dtype=object)

    def _lead(self, per_row: int) -> dict[str, np.ndarray]:
        """Return replicate and participant columns, ``per_row`` rows per subject."""
        a = self.arrays
        r, n = a.arm.shape
        cols = {}
        if r > 1:
            cols["replicate"] = np.repeat(
                np.arange(a.start + 1, a.start + r + 1), n * per_row
            )
        cols["participant_id"] = np.tile(np.repeat(self._ids(), per_row), r)
        return cols

    @property
    def participants(self) -> pd.DataFrame:
        """Participants table (see class docstring)."""
        if "participants" not in self._cache:
            a = self.arrays
            d = a.design
            names = d.names
            cols = self._lead(1)
            arm = np.array(d.arms, dtype=object)
            cols["group"] = arm[a.arm.ravel().astype(np.intp)]
            for k, name in enumerate(a.outcome_names):
                for s, visit in enumerate(d.visit_names):
                    values = a.scores[..., k, s].ravel().astype(np.int64)
                    if s == a.primary and a.scored is not None:
                        # a missed primary-visit rating is an empty cell
                        values = pd.array(values, dtype="Int64")
                        values[~a.scored.ravel()] = pd.NA
                    cols[names.score_column(name, visit)] = values
            if a.age is not None:
                cols["age"] = a.age.ravel().astype(np.int64)
                cols["sex"] = np.where(a.female.ravel(), "F", "M")
            df = pd.DataFrame(cols)
            # the table carries the design's names: analyses of it in memory
            # need no design= (dtitool.tables.resolve_names)
            df.attrs["trial_names"] = names
            self._cache["participants"] = df
        return self._cache["participants"]

    def _long(self, values: np.ndarray, column: str, rois=None) -> pd.DataFrame:
        a = self.arrays
        rois = a.roi_names if rois is None else tuple(rois)
        nr, nv = len(rois), len(a.design.visits)
        cols = self._lead(nv * nr)
        cols["session"] = np.tile(
            np.repeat(np.array(a.design.visit_names, dtype=object), nr),
            values.shape[0] * values.shape[1],
        )
        cols["roi"] = np.tile(
            np.array(rois, dtype=object), values.shape[0] * values.shape[1] * nv
        )
        # (R, N, J, V) -> (R, N, V, J): rows ordered subject, session, ROI
        cols[column] = np.swapaxes(values, -1, -2).ravel()
        return pd.DataFrame(cols)

    @property
    def files(self) -> tuple[str, ...]:
        """The files :meth:`write` writes (see class docstring)."""
        return cohort_files(self.design)

    def measure_table(self, measure: str, *, true: bool = False) -> pd.DataFrame:
        """Return a measure's long table: ``participant_id, session, roi, <measure>``.

        One row per participant, visit and ROI that has the measure (a missing
        scan is a missing row); ``true=True`` gives the latent true values in
        ``<measure>_true``, every row. ``measure="md"`` is :attr:`roi_md`.
        """
        if measure == "md":
            return self.true_md if true else self.roi_md
        key = f"{'true' if true else 'roi'}_{measure}"
        if key not in self._cache:
            a, d = self.arrays, self.design
            idx = [i for i, m in enumerate(d.measures) if m.name == measure]
            if not idx:
                raise ValueError(f"measure {measure!r} is not one of the design's "
                                 f"({', '.join(d.measure_names)})")
            values = (a.extra_true if true else a.extra)[:, :, idx]
            rois = [d.measures[i].roi for i in idx]
            col = f"{measure}_true" if true else measure
            df = self._long(values, col, rois)
            spec = [d.measures[i] for i in idx]
            if any(x.voxel for x in spec):  # as dtitool mrs-import writes them
                df["unit"] = np.tile(np.array([x.unit for x in spec],
                                              dtype=object), len(df) // len(spec))
                kinds = {x.quality for x in spec} - {""} if not true else ()
                for kind in sorted(kinds):
                    df[kind] = self._long(a.quality[:, :, idx], kind, rois)[kind]
            if not true:
                df = df[df[col].notna()].reset_index(drop=True)
            self._cache[key] = df
        return self._cache[key]

    @property
    def roi_md(self) -> pd.DataFrame:
        """Observed ROI MD table (see class docstring)."""
        if "roi_md" not in self._cache:
            df = self._long(self.arrays.md, "md")
            self._cache["roi_md"] = df[df["md"].notna()].reset_index(drop=True)
        return self._cache["roi_md"]

    @property
    def true_md(self) -> pd.DataFrame:
        """Latent true ROI MD table (see class docstring)."""
        if "true_md" not in self._cache:
            self._cache["true_md"] = self._long(self.arrays.md_true, "md_true")
        return self._cache["true_md"]

    @property
    def visits(self) -> pd.DataFrame:
        """The design's schedule (see class docstring)."""
        if "visits" not in self._cache:
            v = self.design.visits
            self._cache["visits"] = pd.DataFrame({
                "visit": [x.name for x in v],
                "hours": np.array([x.hours for x in v], dtype=float),
                "dose": np.array([np.nan if x.dose is None else x.dose for x in v],
                                 dtype=float),
                "primary": ["true" if x.primary else "false" for x in v],
            })
        return self._cache["visits"]

    def write(self, folder, *, run=None, header: str = "") -> tuple[str, ...]:
        """Write the tables and the design into ``folder`` (:data:`COHORT_FILES`).

        Each table gets its JSON sidecar, with the design's arms, visits,
        outcomes and ROIs as levels (:func:`dtitool.columns.sidecar`).

        Parameters
        ----------
        folder : path-like
            Existing folder (typically the staging folder of an atomic output).
        run : mapping, optional
            The ``[run]`` table of ``design.toml`` (seed, replicates, options), so
            that ``--design design.toml`` repeats the run.
        header : str
            Comment lines at the top of ``design.toml``.

        Returns
        -------
        tuple of str
            The names written.
        """
        from pathlib import Path

        from dtitool._io import write_tsv
        from dtitool.columns import sidecar_text
        from dtitool.design import design_to_toml

        folder = Path(folder)
        for name in self.files:
            if name.endswith(".tsv"):
                path = folder / name
                kind, _, measure = path.stem.partition("_")
                df = (getattr(self, path.stem) if name in COHORT_FILES else
                      self.measure_table(measure, true=kind == "true"))
                # the sidecar documents the design's own names (arms, visits,
                # outcomes, ROIs), so it is written here with the design
                write_tsv(df, path, sidecar=False)
                path.with_suffix(".json").write_text(
                    sidecar_text(df, path.stem, design=self.design), encoding="utf-8")
        (folder / "design.toml").write_text(
            design_to_toml(self.design, run=run, header=header), encoding="utf-8"
        )
        return self.files


def simulate_cohort(
    design: StudyDesign | str | None = None,
    *,
    rng=None,
    replicates: int = 1,
    chunk_size: int | None = None,
) -> Cohort:
    """Simulate a cohort of ``design``: tidy participant and ROI MD tables.

    Parameters
    ----------
    design : StudyDesign or str, optional
        Design or preset name; default the ``ketamine-rct`` preset.
    rng : None, int, SeedSequence or Generator
        Seed; the same seed gives the same cohort, whatever ``chunk_size``.
    replicates : int
        Number of replicate trials (tables gain a ``replicate`` column when > 1).
    chunk_size : int, optional
        Replicates simulated at once, to bound memory.

    Returns
    -------
    Cohort

    Examples
    --------
    >>> from dtitool import simulate_cohort
    >>> cohort = simulate_cohort("ketamine-rct", rng=7)
    >>> cohort.participants["group"].value_counts().to_dict()
    {'ketamine': 65, 'saline': 33}
    >>> len(cohort.roi_md)  # 98 subjects x 2 sessions x 7 ROIs
    1372
    """
    if (
        isinstance(replicates, bool)
        or not isinstance(replicates, int | np.integer)
        or (replicates < 1)
    ):
        raise ValueError(f"replicates must be a positive integer; got {replicates!r}")
    arrays = simulate_arrays(
        design, rng=rng, start=0, stop=int(replicates), chunk_size=chunk_size
    )
    return Cohort(arrays)
