"""The findings reported by the reference study, and a side-by-side comparison.

Kopelman J, Keller TA, Panny B, et al. Rapid neuroplasticity changes and
response to intravenous ketamine: a randomized controlled trial in
treatment-resistant depression. Transl Psychiatry 13, 159 (2023).
doi:10.1038/s41398-023-02451-0

Only the abstract is public to us, so each finding is a sign and a p range, not
a beta. The table lives in ``dtitool/data/reported_findings.tsv`` (package data)
with one row per test:

``roi``, ``outcome``, ``term``
    As in the analysis results (``design.names.terms``). ``outcome`` is
    ``"any"`` where the abstract does not say which outcome (R BA10: "at least
    one"); the comparison then uses the outcome with the smaller p.
``direction``
    Expected sign of the term's estimate: +1 (MD decrease goes with
    improvement, stronger in the ketamine arm for an interaction), -1 (the
    opposite), 0 (nothing reported: expected null).
``p_low``, ``p_high``
    Reported p range; for null rows 0.05 and 1 (expected not significant).
``description``
    What the abstract says.

The interaction rows compare ``interaction`` (ketamine slope minus saline
slope); "driven by the ketamine arm" is visible in the treatment arm's slope
columns of :func:`compare_to_reported`.
"""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd
from scipy import special

__all__ = [
    "ANY",
    "REFERENCE",
    "compare_to_reported",
    "finding_family_name",
    "format_comparison",
    "reported_families",
    "reported_family",
    "reported_findings",
]

REFERENCE = (
    "Kopelman J, Keller TA, Panny B, et al. Rapid neuroplasticity changes and "
    "response to intravenous ketamine: a randomized controlled trial in "
    "treatment-resistant depression. Transl Psychiatry (2023). "
    "doi:10.1038/s41398-023-02451-0"
)
"""Citation of the reference study."""

_COLUMNS = ("roi", "outcome", "term", "direction", "p_low", "p_high", "description")

REFERENCE_N = 98
"""Participants in the reference study's models (65 ketamine, 33 saline)."""


def reported_findings() -> pd.DataFrame:
    """Return the reference study's reported (and unreported, null) tests.

    Returns
    -------
    DataFrame
        Columns ``roi, outcome, term, direction, p_low, p_high, description``
        (see the module docstring); 7 reported tests and 10 expected nulls.

    Examples
    --------
    >>> f = reported_findings()
    >>> len(f), int((f["direction"] != 0).sum())
    (17, 7)
    >>> f.loc[f["roi"] == "R_BA10", ["outcome", "term"]].iloc[0].tolist()
    ['any', 'slope_pooled']
    """
    path = resources.files("dtitool.stats") / "data" / "reported_findings.tsv"
    with path.open("r", encoding="utf-8") as fh:
        df = pd.read_csv(fh, sep="\t", dtype={"direction": int})
    return df.loc[:, list(_COLUMNS)]


ANY = "any"
"""Outcome of a finding whose outcome the report does not name (R BA10)."""


def reported_family(design) -> list[tuple]:
    """Return the reference study's reported findings as tests with their signs.

    One ``(roi, outcome, term, direction)`` per finding; the R BA10 finding keeps
    the outcome ``"any"`` (found when its test is significant with the reported
    sign on at least one outcome: the rule in ``docs/model.md``). Empty when
    ``design`` lacks a ROI or an outcome the findings need.
    """
    f = reported_findings()
    f = f[f["direction"] != 0]
    tests = []
    for r in f.itertuples(index=False):
        if r.roi not in design.roi_names or (
                r.outcome != ANY and r.outcome not in design.outcome_names):
            return []
        tests.append((r.roi, r.outcome, r.term,
                      "positive" if r.direction > 0 else "negative"))
    return tests


def reference_mismatch(design) -> str | None:
    """Say why the reported findings do not belong to ``design``, or None.

    The reported tests name the reference study's ROIs and outcomes and compare
    a treatment arm with a control arm; a design that lacks one of those ROIs or
    outcomes, or has another number of arms, is another study.
    """
    f = reported_findings()
    rois = list(dict.fromkeys(f["roi"]))
    outs = [o for o in dict.fromkeys(f["outcome"]) if o != ANY]
    lack_r = [r for r in rois if r not in design.roi_names]
    lack_o = [o for o in outs if o not in design.outcome_names]
    if not (lack_r or lack_o or len(design.arms) != 2):
        return None
    return (f"the reported findings (the reference study: ROIs {', '.join(rois)}; "
            f"outcomes {', '.join(outs)}; a treatment and a control arm) belong to "
            f"another design than {design.name!r} (ROIs "
            f"{', '.join(design.roi_names)}; outcomes "
            f"{', '.join(design.outcome_names)}; arms {', '.join(design.arms)}): "
            "reproduce rehearses the reference study only; use power or demo for "
            "this design")


def finding_family_name(test) -> str:
    """Name of the one-finding family of an ``"any"``-outcome finding."""
    return f"finding {test[0]} {test[1]} {test[2]}"


def reported_families(design) -> dict[str, list[tuple]]:
    """Families a power run needs for the reported findings.

    ``{"reported": reported_family(design)}`` plus, for each finding with outcome
    ``"any"``, a family holding that finding alone, whose family-wise "any"
    power and size are the finding's power and size (:func:`finding_family_name`).
    Empty when the design lacks what the findings need.
    """
    tests = reported_family(design)
    if not tests:
        return {}
    out = {"reported": tests}
    for t in tests:
        if t[1] == ANY:
            out[finding_family_name(t)] = [t]
    return out


def _results_table(results) -> pd.DataFrame:
    table = getattr(results, "table", results)
    if not isinstance(table, pd.DataFrame):
        raise TypeError(
            "results must be AnalysisResults or a results table (DataFrame), "
            f"got {type(results).__name__}"
        )
    missing = [
        c for c in ("roi", "outcome", "term", "estimate", "p") if c not in table
    ]
    if missing:
        raise ValueError(f"results table is missing column(s) {missing}")
    return table


def compare_to_reported(
    results, *, alpha: float = 0.05, findings: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Compare a dataset's results with the reported findings, test by test.

    Parameters
    ----------
    results : AnalysisResults or DataFrame
        Output of :func:`dtitool.stats.analysis.fit_models`, or its ``table`` (e.g.
        read back from ``results.tsv``).
    alpha : float
        Significance level for the null rows and the ``significant`` column.
    findings : DataFrame, optional
        Findings to compare with; default :func:`reported_findings`.

    Returns
    -------
    DataFrame
        One row per finding: its columns (``outcome`` stays ``"any"`` for the
        finding whose outcome the report does not name), then ``outcome_used``
        (the outcome whose test decided: for ``"any"`` the significant one with
        the reported sign if there is one, else the one with the smaller p),
        ``estimate``, ``p``, ``found_direction`` (sign of the estimate),
        ``significant`` (``p <= alpha``), ``in_reported_range`` (``p_low <= p
        <= p_high``), ``slope_treatment`` and ``p_slope_treatment`` (the
        treatment arm's dMD slope on the same ROI and outcome, for context),
        ``ci_low``, ``ci_high`` (the estimate's confidence interval, when the
        results hold it), ``implied_estimate`` (the smallest effect the reported
        p implies on this analysis's scale, see Notes) and
        ``ci_excludes_implied``, ``agrees`` (bool: True only for a replicated
        finding) and ``verdict``, by the one rule of ``docs/model.md`` (a
        finding is replicated when its test is significant at ``alpha`` with the
        reported sign; an ``"any"`` finding on at least one outcome):

        - reported tests: ``"replicated"``, ``"not significant"``,
          ``"significant, opposite sign"``;
        - expected nulls: ``"not significant (expected null)"`` or
          ``"significant (expected null)"``: neither is a match, a
          non-significant test being absence of evidence, not agreement;
        - ``"not analysed"`` when the results lack that ROI, outcome or term.

    Notes
    -----
    The implied estimate: the reported p (the upper end of its range, so the
    smallest effect it implies) is the two-sided p of a t statistic ``t_rep``
    with the reference model's residual df (``REFERENCE_N`` minus 5, or minus
    4 for the pooled slope). Had the reference study this analysis's standard
    error per participant, its estimate would have been ``sign x t_rep x se x
    sqrt(n / REFERENCE_N)`` (``se`` and ``n`` this analysis's). A confidence
    interval that excludes it says the data are unlikely under the reported
    effect, which a non-significant p alone does not say.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"roi": ["L_BA10"], "outcome": ["madrs"],
    ...                   "term": ["interaction"], "estimate": [1.2], "p": [0.01]})
    >>> c = compare_to_reported(t)
    >>> c.loc[0, ["roi", "outcome", "verdict"]].tolist()
    ['L_BA10', 'madrs', 'replicated']
    """
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be between 0 and 1, got {alpha}")
    table = _results_table(results)
    findings = reported_findings() if findings is None else findings.copy()
    keyed = table.set_index(["roi", "outcome", "term"])
    keyed = keyed[~keyed.index.duplicated()]
    # the treatment arm's slope: the first arm slope in the results' term order
    # (interaction, slope_<treatment>, slope_<control>, slope_pooled)
    treated_slope = next((t for t in dict.fromkeys(table["term"])
                          if t.startswith("slope_") and t != "slope_pooled"), None)
    out = []
    for f in findings.itertuples(index=False):
        outcomes = (
            sorted(set(table["outcome"])) if f.outcome == ANY else [f.outcome]
        )
        keys = [(f.roi, k, f.term) for k in outcomes]
        cands = [key for key in keys if key in keyed.index]
        rec = f._asdict()
        if not cands:
            rec.update(
                outcome_used=None, estimate=np.nan, p=np.nan, found_direction=0,
                significant=False, in_reported_range=False, slope_treatment=np.nan,
                p_slope_treatment=np.nan, **_NO_CI, agrees=False,
                verdict="not analysed",
            )  # fmt: skip
            out.append(rec)
            continue
        # the deciding test: significant with the reported sign, if any is; a
        # term that is not estimable (NaN) never counts as the best match
        hits = [key for key in cands if keyed.loc[key, "p"] <= alpha
                and np.sign(keyed.loc[key, "estimate"]) == f.direction != 0]
        best = min(hits or cands, key=lambda key: np.nan_to_num(
            keyed.loc[key, "p"], nan=np.inf))
        row = keyed.loc[best]
        est, p = float(row["estimate"]), float(row["p"])
        if not (np.isfinite(est) and np.isfinite(p)):
            rec.update(
                outcome_used=best[1], estimate=np.nan, p=np.nan, found_direction=0,
                significant=False, in_reported_range=False, slope_treatment=np.nan,
                p_slope_treatment=np.nan, **_NO_CI, agrees=False,
                verdict="not estimable",
            )  # fmt: skip
            out.append(rec)
            continue
        found = int(np.sign(est))
        ket_key = (best[0], best[1], treated_slope)
        ket = keyed.loc[ket_key] if ket_key in keyed.index else None
        agrees = bool(f.direction != 0 and found == f.direction and p <= alpha)
        if f.direction == 0:
            verdict = ("significant (expected null)" if p <= alpha
                       else "not significant (expected null)")
        elif p > alpha:
            verdict = "not significant"
        else:
            verdict = "replicated" if agrees else "significant, opposite sign"
        rec.update(
            outcome_used=best[1],
            estimate=est,
            p=p,
            found_direction=found,
            significant=p <= alpha,
            in_reported_range=bool(f.direction != 0 and f.p_low <= p <= f.p_high),
            slope_treatment=np.nan if ket is None else float(ket["estimate"]),
            p_slope_treatment=np.nan if ket is None else float(ket["p"]),
            **_interval(row, f),
            agrees=agrees,
            verdict=verdict,
        )
        out.append(rec)
    return pd.DataFrame(out)


_NO_CI = {"ci_low": np.nan, "ci_high": np.nan, "implied_estimate": np.nan,
          "ci_excludes_implied": False}


def _interval(row: pd.Series, finding) -> dict:
    """Return the estimate's CI and whether it excludes the reported effect."""
    get = lambda c: float(row[c]) if c in row.index else np.nan  # noqa: E731
    lo, hi, se, n = get("ci_low"), get("ci_high"), get("se"), get("n")
    implied = np.nan
    if finding.direction != 0 and np.isfinite(se) and np.isfinite(n):
        df = REFERENCE_N - (4 if finding.term == "slope_pooled" else 5)
        t_rep = float(special.stdtrit(df, 1.0 - finding.p_high / 2.0))
        implied = finding.direction * t_rep * se * np.sqrt(n / REFERENCE_N)
    excludes = bool(np.isfinite(implied) and np.isfinite(lo) and np.isfinite(hi)
                    and not lo <= implied <= hi)
    return {"ci_low": lo, "ci_high": hi, "implied_estimate": implied,
            "ci_excludes_implied": excludes}


def format_comparison(comparison: pd.DataFrame) -> str:
    """Return a comparison from :func:`compare_to_reported` as printable text."""
    lines = [
        "",
        "Comparison with Kopelman et al. 2023 (abstract):",
        f"{'roi':<14}{'outcome':<11}{'term':<14}{'reported':>16}"
        f"{'found est':>11}{'95% CI':>18}{'p':>9}  verdict",
    ]
    for r in comparison.itertuples(index=False):
        sign = {1: "+", -1: "-", 0: "null"}[r.direction]
        prange = f"{r.p_low:g}" if r.p_low == r.p_high else f"{r.p_low:g}-{r.p_high:g}"
        rep = f"{sign} p {prange}" if r.direction else "null"
        used = r.outcome if r.outcome_used in (None, r.outcome) else (
            f"{r.outcome}:{r.outcome_used}"
        )
        ci = (f"[{r.ci_low:.2f}, {r.ci_high:.2f}]" if np.isfinite(r.ci_low)
              else "-")
        note = ""
        if r.verdict == "not significant" and np.isfinite(r.implied_estimate):
            note = (f"; CI {'excludes' if r.ci_excludes_implied else 'holds'} "
                    f"the reported effect ({r.implied_estimate:.2f})")
        lines.append(
            f"{r.roi:<14}{used:<11}{r.term:<14}{rep:>16}"
            f"{r.estimate:>11.3f}{ci:>18}{r.p:>9.4f}  {r.verdict}{note}"
        )
    rep_rows = comparison[comparison["direction"] != 0]
    nulls = comparison[comparison["direction"] == 0]
    lines.append(
        f"{int(rep_rows['agrees'].sum())} of {len(rep_rows)} reported findings "
        "replicated (significant with the reported sign); "
        f"{int((nulls['verdict'] == 'significant (expected null)').sum())} of "
        f"{len(nulls)} expected nulls significant. A test that is not significant "
        "neither confirms nor refutes a finding: its CI says which effects the "
        "data still allow.")
    return "\n".join(lines)
