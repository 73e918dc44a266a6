"""Which design tells two mechanisms apart: contrasts between visits, both ways.

Two scenario designs share a schedule, arms, ROIs and measures and differ in
their time courses (``ect-plasticity``, a lasting change that grows with the
sessions, against ``ect-inflammation``, a rise after each session that decays).
A contrast between two visits ``u`` and ``v`` (say, 2 h after the first session
against baseline, or follow-up against end of course) has a true value in each
scenario: the treated arm's mean change from ``u`` to ``v`` minus the control
arm's (:func:`dtitool.stats.mixed_power.expected_means`). Scanning at ``u`` and
``v`` tells the scenarios apart when a trial simulated under one rejects the
other's value: data from A reject ``H0: contrast = c_B`` and data from B reject
``H0: contrast = c_A``. Each test is Welch's t-test on the participants' own
changes from ``u`` to ``v`` (valid with unequal arm variances, as both scenarios
have), two-sided at ``alpha``.

The power to tell them apart is the smaller of the two rejection rates; its
size is the rate at which data from A reject A's own value (and B B's), which
is the test's level when the model is right. Every contrast, ROI, measure and
n is reported; the schedule and n that first reach the target power name the
cheapest design that separates the mechanisms.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from dtitool.design import StudyDesign

__all__ = ["DISCRIMINATE_COLUMNS", "best_designs", "check_comparable", "discriminate"]

DISCRIMINATE_COLUMNS = [
    "roi", "measure", "arm", "contrast", "from_visit", "to_visit", "n", "true_a",
    "true_b", "power_a_rejects_b", "power_b_rejects_a", "power", "power_ci_low",
    "power_ci_high", "size_a", "size_b", "replicates",
]


def check_comparable(a: StudyDesign, b: StudyDesign) -> None:
    """Raise ValueError unless ``a`` and ``b`` share what a comparison needs."""
    for what, fa, fb in (
        ("visits", a.visit_names, b.visit_names),
        ("arms", a.arms, b.arms),
        ("control arm", a.control, b.control),
        ("ROIs", a.roi_names, b.roi_names),
        ("measures", a.measure_names, b.measure_names),
        ("sample size", a.n, b.n),
    ):
        if fa != fb:
            raise ValueError(f"designs {a.name!r} and {b.name!r} differ in their "
                             f"{what} ({fa} and {fb}): discriminate compares two "
                             "scenarios of one design")


def _rows(design: StudyDesign) -> list[dict]:
    from dtitool.stats.mixed_power import model_rows

    return [r for r in model_rows(design) if r["kind"] != "score"]


def _welch_p(d: np.ndarray, arm: np.ndarray, treated: int, control: int,
             shift: float) -> np.ndarray:
    """Two-sided Welch p of ``mean_t(d) - mean_c(d) = shift``, per replicate."""
    from dtitool.stats.inference import welch_df
    from dtitool.stats.ols import two_sided_p

    parts = []
    for code in (treated, control):
        m = (arm == code) & np.isfinite(d)
        k = m.sum(axis=1)
        mean = np.where(m, d, 0.0).sum(axis=1) / k
        var = (np.where(m, d - mean[:, None], 0.0) ** 2).sum(axis=1) / (k - 1)
        parts.append((mean, var / k, k - 1))
    (m1, v1, df1), (m0, v0, df0) = parts
    t = (m1 - m0 - shift) / np.sqrt(v1 + v0)
    return two_sided_p(t, welch_df(v1, df1, v0, df0))


def _contrasts(design: StudyDesign, visits: Sequence[str] | None):
    names = design.visit_names
    keep = list(names) if visits is None else list(visits)
    for v in keep:
        if v not in names:
            raise ValueError(f"visit {v!r} is not one of the design's "
                             f"({', '.join(names)})")
    idx = sorted(names.index(v) for v in keep)
    return [(u, v) for i, u in enumerate(idx) for v in idx[i + 1:]]


def discriminate(a: StudyDesign, b: StudyDesign, *, n: Sequence[int] | None = None,
                 visits: Sequence[str] | None = None, replicates: int = 1000,
                 rng=None, alpha: float = 0.05, progress=None) -> pd.DataFrame:
    """Power of every visit contrast to tell scenario ``a`` from ``b`` (module doc).

    Parameters
    ----------
    a, b : StudyDesign
        Two scenarios of one design (:func:`check_comparable`).
    n : sequence of int, optional
        Total sample sizes to try (default the designs' n).
    visits : sequence of str, optional
        The candidate visits whose pairs are contrasted (default all).
    replicates : int
        Simulated trials per scenario and n.
    rng : int, Generator or None
        Seed: the same seed gives the same table.
    alpha : float
        Two-sided level of each test.
    progress : object with ``update(k)`` or None

    Returns
    -------
    pandas.DataFrame
        :data:`DISCRIMINATE_COLUMNS`, one row per ROI, measure, treated arm,
        contrast and n.
    """
    from dtitool.simulate import as_seed_sequence, simulate_arrays
    from dtitool.stats.binomial import wilson_interval
    from dtitool.stats.mixed_power import expected_means

    check_comparable(a, b)
    if (isinstance(replicates, bool) or not isinstance(replicates, int)
            or replicates < 2):
        raise ValueError(f"replicates must be an integer >= 2; got {replicates!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1); got {alpha!r}")
    sizes = [a.n] if n is None else [int(x) for x in n]
    if not sizes or min(sizes) < 4:
        raise ValueError(f"n must list sample sizes >= 4; got {n!r}")
    pairs = _contrasts(a, visits)
    if not pairs:
        raise ValueError("discriminate needs at least two visits to contrast")
    ss = as_seed_sequence(rng)
    rows = _rows(a)
    control = a.arms.index(a.control)
    treated = [i for i in range(len(a.arms)) if i != control]
    truth = {}
    for key, d in (("a", a), ("b", b)):
        for r in rows:
            truth[key, r["roi"], r["measure"]] = expected_means(d, r)
    out = []
    seeds = ss.spawn(len(sizes))
    for n_i, seed in zip(sizes, seeds, strict=True):
        sa, sb = seed.spawn(2)
        sims = {"a": simulate_arrays(a.with_n(n_i), rng=sa, stop=replicates),
                "b": simulate_arrays(b.with_n(n_i), rng=sb, stop=replicates)}
        for r in rows:
            vals = {k: (s.md[:, :, r["index"], :] if r["kind"] == "md"
                        else s.extra[:, :, r["index"], :]) / r["scale"]
                    for k, s in sims.items()}
            ta = truth["a", r["roi"], r["measure"]]
            tb = truth["b", r["roi"], r["measure"]]
            for t in treated:
                for u, v in pairs:
                    ca = (ta[t, v] - ta[t, u]) - (ta[control, v] - ta[control, u])
                    cb = (tb[t, v] - tb[t, u]) - (tb[control, v] - tb[control, u])
                    da = vals["a"][..., v] - vals["a"][..., u]
                    db = vals["b"][..., v] - vals["b"][..., u]
                    pa_b = _welch_p(da, sims["a"].arm, t, control, cb)
                    pb_a = _welch_p(db, sims["b"].arm, t, control, ca)
                    size_a = _welch_p(da, sims["a"].arm, t, control, ca)
                    size_b = _welch_p(db, sims["b"].arm, t, control, cb)
                    ra = float(np.mean(pa_b < alpha))
                    rb = float(np.mean(pb_a < alpha))
                    k = int(np.sum(pa_b < alpha) if ra <= rb else np.sum(pb_a < alpha))
                    lo, hi = wilson_interval(k, replicates)
                    un, vn = a.visit_names[u], a.visit_names[v]
                    out.append({
                        "roi": r["roi"], "measure": r["measure"], "arm": a.arms[t],
                        "contrast": f"{vn}-{un}", "from_visit": un, "to_visit": vn,
                        "n": n_i, "true_a": ca, "true_b": cb,
                        "power_a_rejects_b": ra, "power_b_rejects_a": rb,
                        "power": min(ra, rb), "power_ci_low": lo,
                        "power_ci_high": hi,
                        "size_a": float(np.mean(size_a < alpha)),
                        "size_b": float(np.mean(size_b < alpha)),
                        "replicates": replicates})
        if progress is not None:
            progress.update(1)
    return pd.DataFrame(out, columns=DISCRIMINATE_COLUMNS)


def best_designs(table: pd.DataFrame, target: float = 0.8) -> pd.DataFrame:
    """Per ROI, measure and arm: the contrast and smallest n reaching ``target``.

    Ties at the smallest n go to the higher power. Rows where no contrast
    reaches the target within the n tried have an empty contrast and the best
    power seen.
    """
    out = []
    for key, g in table.groupby(["roi", "measure", "arm"], sort=False):
        hit = g[g["power"] >= target]
        if len(hit):
            best = hit.sort_values(["n", "power"], ascending=[True, False]).iloc[0]
            out.append({**dict(zip(("roi", "measure", "arm"), key, strict=True)),
                        "contrast": best["contrast"], "n": int(best["n"]),
                        "power": best["power"], "reached": True})
        else:
            best = g.sort_values("power", ascending=False).iloc[0]
            out.append({**dict(zip(("roi", "measure", "arm"), key, strict=True)),
                        "contrast": best["contrast"], "n": int(best["n"]),
                        "power": best["power"], "reached": False})
    return pd.DataFrame(out)
