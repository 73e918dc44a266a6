"""Analysis plans side by side: shared draws, the ANCOVA gain, and every plan's size.

Run: ``python tests/benchmarks/bench_plans.py [--replicates 10000]``.

Prints, in one run:

1. the wall and CPU time of :func:`dtitool.stats.plans_run.plans_power` on
   ``ketamine-rct`` for the plans ``reported``, ``change``, ``composite-mean``
   and ``responder`` against ``reported`` alone (same seed, same trials), and
   for the three linear plans alone, in three interleaved rounds;
2. the paired power difference between the ANCOVA (``reported``) and the
   plain change score (``change``) per ROI and outcome, in ``ketamine-rct``
   (2a) and in it with ratings of reliability 0.6 (2b: more occasion error,
   so the baseline score predicts the change better and the ANCOVA gains
   more), against its analytic
   expectation: Vickers and Altman's variance ratio ``1 - rho^2`` of the
   baseline-change correlation (here within each arm, given the imaging
   change, which is independent of the baseline score in this design, so
   both plans estimate the same slope), each plan's power from the
   noncentral t of its Welch interaction test with the arms' residual
   variances of one very large simulated trial and the expected inverse
   Gram matrix of normal regressors (``n_a - k - 1`` in the denominator);
   the difference in Monte Carlo SE units;
3. every plan's size (each test, and each plan's family row) in the ``null``
   preset with ``--inference welch`` (every plan's default), against the exact
   99 % binomial band, with Holm and max-T plans beside the unadjusted ones;
4. one pre-registered ROI against all seven ROIs with max-T (and Holm), on
   ``ketamine-rct``: each plan's ``any`` power and size per outcome, and
   max-T's critical p against Bonferroni's alpha / 7.

``--sections 1,3`` runs only those sections.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy import stats as sps

from dtitool.design import load_preset
from dtitool.stats.plans import READY, parse_plan
from dtitool.stats.plans_run import plans_power


def analytic_powers(design, j: int, k: int, alpha: float = 0.05) -> dict:
    """Noncentral-t power of the change-score and ANCOVA interaction tests."""
    import dataclasses

    from dtitool.simulate import simulate_arrays
    from dtitool.stats.plans_engine import plan_variables

    a = simulate_arrays(design, rng=99, stop=4000, lean=True)
    pool = {f: getattr(a, f).reshape(1, -1, *getattr(a, f).shape[2:])
            for f in ("arm", "md", "scores", "observed")}
    v = plan_variables(dataclasses.replace(a, **pool))
    m, arm = v["mask"][0], v["arm"][0]
    sizes = design.arm_sizes()
    out = {}
    for plan, cols in (("change", 1), ("reported", 2)):
        slopes, var, dfs = [], [], []
        for ai, na in enumerate(sizes):
            s = m & (arm == ai)
            x, b, y = v["dmd"][0, s, j], v["b"][0, s, k], v["y"][0, s, k]
            X = np.column_stack([np.ones(x.size), x] + ([b] if cols == 2 else []))
            coef, *_ = np.linalg.lstsq(X, y, rcond=None)
            s2 = np.mean((y - X @ coef) ** 2)
            # residual variance of x given the other regressors
            Z = X[:, [0, 2]] if cols == 2 else X[:, [0]]
            rx = x - Z @ np.linalg.lstsq(Z, x, rcond=None)[0]
            var.append(s2 / ((na - cols - 1) * np.mean(rx ** 2)))
            slopes.append(coef[1])
            dfs.append(na - cols - 1)
        beta = slopes[0] - slopes[1]
        v_tot = var[0] + var[1]
        nu = v_tot ** 2 / (var[0] ** 2 / dfs[0] + var[1] ** 2 / dfs[1])
        delta = beta / np.sqrt(v_tot)
        c = sps.t.ppf(1 - alpha / 2, nu)
        out[plan] = float(sps.nct.sf(c, nu, delta) + sps.nct.cdf(-c, nu, delta))
        out[f"{plan}_var"] = v_tot
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--replicates", type=int, default=10000)
    ap.add_argument("--sections", default="1,2,3,4")
    args = ap.parse_args()
    R = args.replicates
    sections = {int(x) for x in args.sections.split(",")}
    d = load_preset("ketamine-rct")
    if 1 in sections:
        cost(d, R)
    if 2 in sections:
        import dataclasses

        noisy = d.replace(outcomes=tuple(dataclasses.replace(o, reliability=0.6)
                                         for o in d.outcomes),
                          name="ketamine-rct, ratings of reliability 0.6")
        for k, design in enumerate((d, noisy)):
            ancova_vs_change(design, R, rng=2 + 10 * k, label=f"2{'ab'[k]}")
    if 3 in sections:
        null_sizes(R)
    if 4 in sections:
        maxt_vs_primary(d, R)


def cost(d, R: int, rounds: int = 3) -> None:
    """Section 1 of the module docstring: ``rounds`` interleaved runs of each set.

    Wall and CPU time per run; the ratios are each round's, side by side (the
    machine's load moves both numerator and denominator of a round alike).
    """
    sets = (("reported alone", ("reported",)),
            ("three linear plans", ("reported", "change", "composite-mean")),
            ("four plans", ("reported", "change", "composite-mean", "responder")))
    for _, names in sets:  # warm up (imports, first allocations)
        plans_power(d, [READY[n] for n in names], replicates=200, rng=0)
    wall = {label: [] for label, _ in sets}
    cpu = {label: [] for label, _ in sets}
    for _ in range(rounds):
        for label, names in sets:
            t0, c0 = time.perf_counter(), time.process_time()
            table, _ = plans_power(d, [READY[n] for n in names], replicates=R, rng=1)
            wall[label].append(time.perf_counter() - t0)
            cpu[label].append(time.process_time() - c0)
    print(f"1. ketamine-rct, {R} trials + {R} null, 2,000 pooled for the truth; "
          f"{rounds} interleaved rounds (wall s / CPU s, ratio to reported alone):")
    base_w, base_c = wall["reported alone"], cpu["reported alone"]
    for label, _ in sets:
        runs = "; ".join(f"{w:.1f}/{c:.1f} s ({w / bw:.2f}x/{c / bc:.2f}x)"
                         for w, c, bw, bc in zip(wall[label], cpu[label], base_w,
                                                 base_c, strict=True))
        med = np.median(np.array(wall[label]) / np.array(base_w))
        print(f"   {label:<19} {runs}; median wall ratio {med:.2f}x")
    resp = table[(table["plan"] == "responder") & (table["roi"] != "any")]
    print(f"   responder fits without a finite maximum (an arm without a "
          f"responder or separated): {resp['failed'].min():.0%}-"
          f"{resp['failed'].max():.0%} of trials per test")


def null_sizes(R: int) -> None:
    """Section 3 of the module docstring."""
    null = load_preset("null")
    plans = [parse_plan(n, null) for n in READY] + [
        parse_plan(f"{n}:multiplicity={m}", null)
        for n, m in (("reported", "holm"), ("reported", "maxt"),
                     ("responder", "maxt"))]
    table, _ = plans_power(null, plans, replicates=R, rng=3)
    t = table.dropna(subset=["size"])
    ok = t["size_ok"].astype(bool)
    print(f"3. the null preset, {R} null trials, --inference welch: "
          f"{int(ok.sum())} of {len(t)} sizes within their band")
    for plan, g in t.groupby("plan", sort=False):
        tests = g[g["roi"] != "any"]
        fam = g[g["roi"] == "any"]
        print(f"   {plan:<28} tests {tests['size'].min():.4f}-{tests['size'].max():.4f}"
              f" ({int(tests['size_ok'].astype(bool).sum())}/{len(tests)} in band); "
              f"any: " + ", ".join(f"{r.outcome} {r.size:.4f}"
                                   f"{'' if r.size_ok else ' [' + r.flag + ']'}"
                                   for r in fam.itertuples()))


def maxt_vs_primary(d, R: int) -> None:
    """Section 4 of the module docstring."""
    plans = [parse_plan(n, d) for n in (
        "reported:multiplicity=maxt", "reported:multiplicity=holm", "primary-roi",
        "primary-roi:roi=vACC", "composite-pc1", "responder:multiplicity=maxt")]
    table, paired = plans_power(d, plans, replicates=R, rng=7)
    fam = table[table["roi"] == "any"]
    print(f"4. one pre-registered ROI against seven with max-T, {d.name}, {R} "
          f"trials (Bonferroni alpha / 7 = {0.05 / len(d.rois):.5f}):")
    for r in fam.itertuples():
        crit = "" if np.isnan(r.critical_p) else f"  critical p {r.critical_p:.5f}"
        flag = f"  [{r.flag}]" if r.flag else ""
        print(f"   {r.plan:<28} {r.outcome:<6} power {r.power:.4f} size "
              f"{r.size:.4f}{crit}{flag}")
    a, b = plans[0].name, plans[1].name
    for r in paired[(paired.plan_a == a) & (paired.plan_b == b)].itertuples():
        lo, hi = r.power_difference_ci_low, r.power_difference_ci_high
        print(f"   max-T minus Holm, {r.outcome}: {r.power_difference:+.4f} "
              f"({lo:+.4f} to {hi:+.4f})")


def ancova_vs_change(design, R: int, *, rng: int, label: str) -> None:
    """Section 2 of the module docstring for one design."""
    table, _ = plans_power(design, [READY["reported"], READY["change"]],
                           replicates=R, rng=rng)
    print(f"{label}. ANCOVA (reported) minus change score, {design.name}, {R} "
          "trials:")
    print(f"   {'roi':<14}{'outcome':<8}{'MC diff':>9}{'MC SE':>8}{'analytic':>10}"
          f"{'z':>7}{'var ratio MC':>14}{'analytic':>10}")
    zs = []
    for (roi, outcome), g in table[table["roi"] != "any"].groupby(
            ["roi", "outcome"], sort=False):
        j, k = design.roi_names.index(roi), design.outcome_names.index(outcome)
        an = analytic_powers(design, j, k)
        rep = g.set_index("plan")
        diff = rep.loc["reported", "power"] - rep.loc["change", "power"]
        se = _paired_se(design, roi, outcome, R, rng)
        z = (diff - (an["reported"] - an["change"])) / se
        zs.append(z)
        ratio = rep.loc["reported", "rmse"] ** 2 / rep.loc["change", "rmse"] ** 2
        print(f"   {roi:<14}{outcome:<8}{diff:>9.4f}{se:>8.4f}"
              f"{an['reported'] - an['change']:>10.4f}{z:>7.2f}{ratio:>14.3f}"
              f"{an['reported_var'] / an['change_var']:>10.3f}")
    zs = np.abs(np.array(zs))
    print(f"   within 3 MC SE: {int((zs <= 3).sum())} of {zs.size}; largest |z| "
          f"{zs.max():.2f}")


def _paired_se(design, roi, outcome, R, rng) -> float:
    """MC SE of the paired difference of the two plans' rejection rates."""
    from dtitool.simulate import as_seed_sequence
    from dtitool.stats.plans_run import _run

    key = (design.name, R)
    if key not in _CACHE:
        seed = as_seed_sequence(rng).spawn(3)[0]  # plans_power's trials
        _CACHE[key] = _run(design, [READY["reported"], READY["change"]], R, seed,
                           500, 0.05, None)
    res = _CACHE[key]
    i = res["reported"]["labels"].index((roi, outcome, "interaction"))
    a = np.nan_to_num(res["reported"]["p"][:, i], nan=1.0) <= 0.05
    b = np.nan_to_num(res["change"]["p"][:, i], nan=1.0) <= 0.05
    dd = a.astype(float) - b.astype(float)
    return float(dd.std(ddof=1) / np.sqrt(R))


_CACHE: dict = {}

if __name__ == "__main__":
    main()
