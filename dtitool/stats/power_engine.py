"""The power engine: what one chunk of simulated trials computes.

A chunk (a range of replicate indices, run in this process, a worker process or
on Dask) simulates its trials of a design (:func:`dtitool.simulate.simulate_arrays`),
fits every model of every trial at once (:mod:`dtitool.stats.inference`) and
reduces them to what the run keeps: per-test rejection counts, signed p per
replicate (float32), block sums of the estimates, family-wise counts unadjusted,
Holm and BH (:mod:`dtitool.stats.multiplicity`); in the null counterpart also
each family's smallest p per trial and per within-arm permutation of dMD, the
null draws of max-T. Under ``missing="mi"`` each trial is imputed and pooled
first (:func:`dtitool.stats.imputation.batch_models_imputed`).

Reproducibility: per-replicate values depend only on the seed and the replicate
index (the simulator's blocks, and :data:`PERMUTATION_STREAM` blocks for the
permutations), counts are integers and float sums are kept per fixed block of
:data:`~dtitool.simulate.BLOCK_SIZE` replicates, so a run folds its chunks into
the same bytes whatever their size, number or order
(:mod:`dtitool.stats.power_run`).

The families a chunk counts are given as flat test indices
(:func:`_normalise_families`): the index of ROI ``j``, outcome ``k`` and term
``t`` is ``(j * K + k) * T + t``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from dtitool.design import StudyDesign
from dtitool.simulate import BLOCK_SIZE, as_seed_sequence, simulate_arrays
from dtitool.stats.inference import (
    BatchModels,
    TermLayout,
    _series_df,
    _term_p,
    batch_models,
    cohort_statistics,
    fit_terms,
    models_from_statistics,
    permute_within_arms,
    term_layout,
)
from dtitool.stats.multiplicity import rejections_by_method
from dtitool.stats.power_results import ANY_OUTCOME, METHODS

PERMUTATION_STREAM = 0x7065726D
"""Spawn key, under the null counterpart's, of the within-arm permutations that
add max-T null draws ("perm" in ASCII); block ``b`` uses ``(..., PERM, b)``."""


@dataclass(frozen=True, slots=True)
class _Spec:
    """What a chunk computes (picklable, sent to worker processes)."""

    alpha: float
    # name, flat test indices, direction per test, finding (group) per test
    families: tuple[tuple[str, np.ndarray, np.ndarray, np.ndarray], ...]
    inference: str
    null: bool = False  # a chunk of the null counterpart
    alternatives: tuple[str, ...] = ()  # other options whose size the null counts
    extra_draws: int = 0  # within-arm dMD permutations per null trial (max-T)
    missing: str = "complete-case"
    imputations: int = 0


def _chunk(design: StudyDesign, seed, start: int, stop: int, spec: _Spec) -> dict:
    arrays = simulate_arrays(design, rng=seed, start=start, stop=stop,
                             chunk_size=stop - start, lean=True)
    if spec.missing == "mi":
        return _chunk_imputed(arrays, seed, spec)
    if not spec.null:
        return _summarise(batch_models(arrays, spec.inference), spec)
    st = cohort_statistics(arrays, keep_values=True)
    bms = {inf: models_from_statistics(st, inf)
           for inf in (spec.inference, *spec.alternatives)}
    out = _summarise_null(bms, spec)
    if spec.extra_draws:
        k = st.n_arms
        keys = _permutation_keys(seed, start, stop, spec.extra_draws,
                                 arrays.md.shape[1], arms=k)
        extra = [_family_minp_of_t(*fit_terms(
                     permute_within_arms(st, tuple(keys[:, c, a] for a in range(k)),
                                         keep_values=spec.inference == "hc3"),
                     spec.inference), spec, n_arms=k)
                 for c in range(spec.extra_draws)]
        out["minp_extra"] = np.stack(extra, axis=1)  # (R, draws, F)
    return out


def _chunk_imputed(arrays, seed, spec: _Spec) -> dict:
    """Compute a chunk under ``missing="mi"``.

    Each replicate is imputed ``spec.imputations`` times, every (replicate x
    imputation) model fitted by the batched engine at once and pooled by Rubin's
    rules (:func:`dtitool.stats.imputation.batch_models_imputed`). The imputation
    draws come from the chunk's stream (``seed``: the run's, or the null
    counterpart's), block by block.
    """
    from dtitool.stats.imputation import batch_models_imputed

    infs = (spec.inference, *spec.alternatives) if spec.null else (spec.inference,)
    bms, imputed = batch_models_imputed(arrays, infs, imputations=spec.imputations,
                                        rng=seed)
    if spec.null:
        return _summarise_null(bms, spec)
    out = _summarise(bms[spec.inference], spec)
    out["imputed"] = int(imputed.sum())
    return out


def _permutation_keys(seed, start: int, stop: int, copies: int, n: int, *,
                      arms: int = 2):
    """Uniform keys (R, copies, arms, n) for the null counterpart's permutations.

    Drawn per block of ``BLOCK_SIZE`` replicates from the stream
    ``(..., PERMUTATION_STREAM, b)`` under the null counterpart's seed, so they
    depend only on the seed and the replicate index (and the number of arms,
    which sets how many keys a block draws).
    """
    ss = as_seed_sequence(seed)
    b0, b1 = start // BLOCK_SIZE, -(-stop // BLOCK_SIZE)
    u = np.empty(((b1 - b0) * BLOCK_SIZE, copies, arms, n))
    for i, b in enumerate(range(b0, b1)):
        child = np.random.SeedSequence(
            ss.entropy, spawn_key=(*ss.spawn_key, PERMUTATION_STREAM, b))
        np.random.Generator(np.random.PCG64(child)).random(
            out=u[i * BLOCK_SIZE:(i + 1) * BLOCK_SIZE])
    return u[start - b0 * BLOCK_SIZE: stop - b0 * BLOCK_SIZE]


def _block_sums(values: np.ndarray) -> np.ndarray:
    """Sum over fixed blocks of BLOCK_SIZE replicates (chunk-invariant floats)."""
    R = values.shape[0]
    nb = -(-R // BLOCK_SIZE)
    pad = np.zeros((nb * BLOCK_SIZE, values.shape[1]))
    pad[:R] = values
    return pad.reshape(nb, BLOCK_SIZE, -1).sum(axis=1)


def _by_finding(rej: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Rejections per finding (R, G): a finding is rejected when any of its tests is.

    A finding is one reported result; it has several tests when the report did
    not say which outcome it came from (outcome ``"any"``).
    """
    G = int(group.max()) + 1 if group.size else 0
    if G == len(group):  # one test per finding (the usual case): no reduction
        out = np.zeros((rej.shape[0], G), dtype=bool)
        out[:, group] = rej
        return out
    onehot = np.zeros((len(group), G))
    onehot[np.arange(len(group)), group] = 1.0
    return (rej.astype(float) @ onehot) > 0


def _family_counts(p, pos, spec: _Spec) -> np.ndarray:
    """(families, methods none/holm/bh, [any, all, rejections]) counts by finding."""
    fam = []
    for _, idx, direction, group in spec.families:
        dir_ok = (direction == 0) | (np.where(pos[:, idx], 1, -1) == direction)
        by_method = rejections_by_method(p[:, idx], METHODS[:3], spec.alpha)
        row = []
        for method in METHODS[:3]:
            rej = _by_finding(by_method[method] & dir_ok, group)
            row.append([rej.any(axis=1).sum(), rej.all(axis=1).sum(), rej.sum()])
        fam.append(row)
    return np.array(fam, dtype=np.int64).reshape(len(spec.families), 3, 3)


def _summarise(bm: BatchModels, spec: _Spec) -> dict:
    R = bm.p.shape[0]
    p = bm.p.reshape(R, -1)
    est = bm.estimate.reshape(R, -1)
    pos = est > 0
    valid = ~np.isnan(p)
    sig = p <= spec.alpha
    finite = np.where(np.isnan(est), 0.0, est)
    return {
        "signed_p": np.copysign(p, est).astype(np.float32),
        "reject": sig.sum(axis=0),
        "reject_pos": (sig & pos).sum(axis=0),
        "reject_neg": (sig & ~pos & valid).sum(axis=0),
        "valid": valid.sum(axis=0),
        "block_sums": _block_sums(finite),
        "abs_sig_sums": _block_sums(np.where(sig, np.abs(finite), 0.0)),
        "est_valid": (~np.isnan(est)).sum(axis=0),
        "family": _family_counts(p, pos, spec),
        "subjects": int(np.sum(bm.n)),
        "imputed": 0,
    }


def _family_minp(bm: BatchModels, spec: _Spec):
    """Return per replicate and family the smallest p and the smallest directed p.

    As float32, the precision of the main run's stored p; the directed minimum
    counts only tests whose estimate has the family's stated sign.
    """
    R = bm.p.shape[0]
    p32 = bm.p.reshape(R, -1).astype(np.float32)
    p32 = np.where(np.isnan(p32), np.float32(np.inf), p32)
    pos = bm.estimate.reshape(R, -1) > 0
    minp, minp_dir = [], []
    for _, idx, direction, _group in spec.families:
        pf = p32[:, idx]
        minp.append(pf.min(axis=1))
        dir_ok = (direction == 0) | (np.where(pos[:, idx], 1, -1) == direction)
        minp_dir.append(np.where(dir_ok, pf, np.float32(np.inf)).min(axis=1))
    return np.stack(minp, axis=1), np.stack(minp_dir, axis=1)


def _family_minp_of_t(est, se, df, spec: _Spec, *, n_arms: int | None = None
                      ) -> np.ndarray:  # fmt: skip
    """Return :func:`_family_minp`'s smallest p per replicate and family, from t.

    The smallest p of tests that share one df is the p of the largest |t| (of
    the largest F, for the omnibus term); so each family takes the largest
    statistic of each of its terms and computes one p per replicate and term,
    by the same function that
    :func:`~dtitool.stats.inference.term_statistics` uses for that term,
    instead of one p per test. Where a term's df differs between the family's
    tests (Welch), its tests' p are all computed.

    ``n_arms`` (the number of arms) says where the omnibus term is; by default
    it is read from the number of terms (:meth:`TermLayout.of_size`).
    """
    R, T = est.shape[0], est.shape[-1]  # replicates, terms (last axis)
    lay = TermLayout.of_size(T) if n_arms is None else term_layout(n_arms)
    if lay.size != T:
        raise ValueError(f"est has {T} terms but a trial of {lay.n_arms} arms has "
                         f"{lay.size}")
    with np.errstate(invalid="ignore", divide="ignore"):
        stat = np.abs(est / se).reshape(R, -1)
    if lay.omnibus is not None:  # its statistic is F itself
        stat[:, lay.omnibus::T] = est.reshape(R, -1)[:, lay.omnibus::T]
    df = df.reshape(R, -1)
    common = [_series_df(df[:, i::T]) for i in range(T)]  # as term_statistics does
    out = np.full((R, len(spec.families)), np.inf, dtype=np.float32)
    for f, (_, idx, _direction, _group) in enumerate(spec.families):
        for i in range(T):
            cols = idx[idx % T == i]
            if not cols.size:
                continue
            q = lay.n_arms - 1 if i == lay.omnibus else None
            dcols = df[:, cols]
            if common[i] is not None:
                p = _term_p(np.fmax.reduce(stat[:, cols], axis=1), common[i], q)
            elif np.all(dcols == dcols[:, :1]):
                p = _term_p(np.fmax.reduce(stat[:, cols], axis=1), dcols[:, 0], q)
            else:
                p = np.fmin.reduce(_term_p(stat[:, cols], dcols, q), axis=1)
            p32 = p.astype(np.float32)
            np.minimum(out[:, f], np.where(np.isnan(p32), np.float32(np.inf), p32),
                       out=out[:, f])
    return out


def _summarise_null(bms: dict, spec: _Spec) -> dict:
    bm = bms[spec.inference]
    R = bm.p.shape[0]
    p = bm.p.reshape(R, -1)
    pos = bm.estimate.reshape(R, -1) > 0
    # max-T on the p scale: the p-values as stored (float32), so that the
    # critical values compare exactly with the stored p of the main run.
    minp, minp_dir = _family_minp(bm, spec)
    out = {
        "reject": (p <= spec.alpha).sum(axis=0),
        "valid": (~np.isnan(p)).sum(axis=0),
        "family": _family_counts(p, pos, spec),
        "minp": minp,
        "minp_dir": minp_dir,
    }
    for alt in spec.alternatives:
        pa = bms[alt].p.reshape(R, -1)
        out[f"reject_{alt}"] = (pa <= spec.alpha).sum(axis=0)
        out[f"valid_{alt}"] = (~np.isnan(pa)).sum(axis=0)
    return out


# ------------------------------------------------------------------ families


def _direction_code(d, where: str) -> int:
    if d in (None, 0, "any"):
        return 0
    if d in (1, "+", "positive"):
        return 1
    if d in (-1, "-", "negative"):
        return -1
    raise ValueError(f"{where}: direction must be 'positive', 'negative' or None; "
                     f"got {d!r}")


def _normalise_families(
    design: StudyDesign, families: Mapping[str, Iterable] | None
) -> tuple[tuple[str, np.ndarray, np.ndarray, np.ndarray], ...]:
    terms = design.names.terms
    J, K, T = len(design.model_rows), len(design.outcomes), len(terms)
    out = []
    for t, term in enumerate(terms):
        idx = (np.arange(J)[:, None] * K + np.arange(K)[None, :]) * T + t
        out.append((term, idx.ravel(), np.zeros(J * K, int), np.arange(J * K)))
    for name, tests in (families or {}).items():
        if not isinstance(name, str) or name in terms:
            raise ValueError(
                f"family name {name!r} must be a string other than the built-in "
                f"term families {list(terms)}"
            )
        idx, dirs, groups = [], [], []
        for g, test in enumerate(tests):
            if len(tuple(test)) not in (3, 4):
                raise ValueError(
                    f"family {name!r}: each test must be (roi, outcome, term[, "
                    f"direction]); got {test!r}"
                )
            roi, outcome, term, *rest = tuple(test) + (None,) * (4 - len(tuple(test)))
            outcomes = (design.outcome_names if outcome == ANY_OUTCOME
                        else (outcome,))
            _check_test(design, roi, outcomes[0], term, where=f"family {name!r}")
            d = _direction_code(rest[0], f"family {name!r}")
            j = design.roi_names.index(roi)
            for o in outcomes:
                k = design.outcome_names.index(o)
                idx.append((j * K + k) * T + terms.index(term))
                dirs.append(d)
                groups.append(g)
        if not idx:
            raise ValueError(f"family {name!r} has no tests")
        out.append((name, np.array(idx), np.array(dirs), np.array(groups)))
    return tuple(out)


def _check_test(design, roi, outcome, term, *, where="test"):
    if roi not in design.roi_names:
        raise ValueError(f"{where}: unknown ROI {roi!r}; expected one of "
                         f"{list(design.roi_names)}")
    if outcome not in design.outcome_names:
        raise ValueError(f"{where}: unknown outcome {outcome!r}; expected one of "
                         f"{list(design.outcome_names)}")
    terms = design.names.terms
    if term not in terms:
        raise ValueError(f"{where}: unknown term {term!r}; expected one of "
                         f"{list(terms)}")
