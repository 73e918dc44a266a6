"""Spectra excluded for fit quality, counted per model of a changes table.

A measure table whose spectra went through a fit-quality rule
(:func:`dtitool.mrs.apply_quality`) carries the removed spectra in ``attrs``
(``quality_excluded``: ``(participant_id, session, roi, reason)`` tuples;
and ``quality_rules``), and so does its changes table
(:func:`dtitool.tables.compute_changes`). A participant with a removed spectrum
at the baseline or the primary visit has no change for that ROI: the
complete-case accounting (:func:`dtitool.stats.missing.complete_case_columns`)
gives the reason ``fit quality (<rule>)`` instead of a missing scan, and
:func:`quality_columns` adds, per model, :data:`QUALITY_COLUMNS`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

__all__ = ["QUALITY_COLUMNS", "has_quality", "quality_columns", "quality_masks"]

QUALITY_COLUMNS = ("quality_rule", "n_dropped_quality", "dropped_quality_by_arm")
"""Columns of a results table whose measure went through a fit-quality rule:
the rule(s), the participants left out of the model because a spectrum of
theirs (baseline or primary visit) failed it, and those per arm."""

EXCLUDED = "quality_excluded"
RULES = "quality_rules"


def has_quality(changes: pd.DataFrame) -> bool:
    """Whether a changes table's measure went through a fit-quality rule."""
    return RULES in changes.attrs


def quality_masks(changes: pd.DataFrame,
                  names) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Rows of ``changes`` whose spectra a fit-quality rule removed.

    Returns
    -------
    baseline, primary : ndarray of bool
        Per row (participant x ROI): its baseline, its primary-visit spectrum
        was removed.
    reasons : dict
        ``reason -> rows`` with a removed spectrum at either visit for that
        reason (``fit quality (crlb > 20%)``); empty without a rule.
    """
    gone = changes.attrs.get(EXCLUDED, ())
    if not gone:
        return np.zeros(len(changes), bool), np.zeros(len(changes), bool), {}
    key = pd.MultiIndex.from_arrays([changes["participant_id"].astype(str),
                                     changes["roi"].astype(str)])

    def rows(spectra) -> np.ndarray:
        if not spectra:
            return np.zeros(len(key), bool)
        return np.asarray(key.isin(list(spectra)))

    at = {v: {(p, r) for p, s, r, _ in gone if s == v}
          for v in (names.baseline, names.primary)}
    reasons = {}
    for reason in sorted({why for *_, why in gone}):
        mask = rows({(p, r) for p, s, r, why in gone if why == reason
                     and s in (names.baseline, names.primary)})
        if mask.any():
            reasons[reason] = mask
    return rows(at[names.baseline]), rows(at[names.primary]), reasons


def quality_columns(table: pd.DataFrame, changes: pd.DataFrame, names
                    ) -> pd.DataFrame:  # fmt: skip
    """Add :data:`QUALITY_COLUMNS` to a complete-case results table.

    Parameters
    ----------
    table : DataFrame
        Results with ``roi`` and ``outcome`` (one model per pair).
    changes : DataFrame
        The changes table the models were fitted to (carrying the rules).
    names : TrialNames
        The arms and visits.

    Returns
    -------
    DataFrame
        ``quality_rule`` (the rules, ``; ``-separated), ``n_dropped_quality``
        (participants of the model's ROI with a removed spectrum at the
        baseline or primary visit: they have no change, so they are out of
        the model) and ``dropped_quality_by_arm`` (those per arm, every arm
        named: ``drug 3, placebo 1``).
    """
    q0, q1, _ = quality_masks(changes, names)
    hit = q0 | q1
    roi = changes["roi"].to_numpy()
    group = changes["group"].to_numpy()
    per_roi = {}
    for r in pd.unique(table["roi"]):
        at = hit & (roi == r)
        per_roi[r] = (int(at.sum()), ", ".join(
            f"{a} {int((group[at] == a).sum())}" for a in names.arms))
    rules = "; ".join(changes.attrs.get(RULES, ()))
    return table.assign(
        quality_rule=rules,
        n_dropped_quality=[per_roi[r][0] for r in table["roi"]],
        dropped_quality_by_arm=[per_roi[r][1] for r in table["roi"]],
    )
