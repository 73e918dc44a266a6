"""Benchmark: the full analysis of one 98-subject dataset (14 models, all terms).

Prints, measured in this run:
- fit_models on DataFrames (checks + changes + 14 interaction and 14 additive
  OLS fits + contrasts + Holm/BH), best and median of repeats;
- the same starting from the TSV files of synthetic_data/ (when present);
- a naive reference (statsmodels formula API, one smf.ols per model plus
  t_test per term, statsmodels' multipletests) and the ratio.

Must reach: under 1 s in-process. Run: python tests/benchmarks/bench_analysis.py
"""

import sys
import time
from pathlib import Path

import numpy as np
import statsmodels.formula.api as smf
from statsmodels.stats.multitest import multipletests

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from _analysis_tables import make_tables  # noqa: E402

from dtitool.stats.analysis import fit_models  # noqa: E402
from dtitool.tables import compute_changes  # noqa: E402

SYNTHETIC = HERE.parents[1] / "synthetic_data"
G = "C(group, Treatment('saline'))"


def timed(fn, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times), float(np.median(times))


def naive(participants, roi_md):
    ch = compute_changes(participants, roi_md)
    ps = {}
    for _roi, d in ch.groupby("roi"):
        for k in ("madrs", "qids"):
            df = d.assign(x=d["d_md"] / 1e-5, y=d[f"d_{k}"], b=d[f"{k}_baseline"])
            full = smf.ols(f"y ~ {G} * x + b", df).fit()
            add = smf.ols(f"y ~ {G} + x + b", df).fit()
            i = f"{G}[T.ketamine]:x"
            for term, res, c in [("interaction", full, f"{i} = 0"),
                                 ("slope_ketamine", full, f"x + {i} = 0"),
                                 ("slope_saline", full, "x = 0"),
                                 ("slope_pooled", add, "x = 0")]:  # fmt: skip
                ps.setdefault(term, []).append(float(res.t_test(c).pvalue))
    for p in ps.values():
        multipletests(p, method="holm")
        multipletests(p, method="fdr_bh")


def main():
    p, r = make_tables(seed=0)
    fit_models(p, r)  # warm imports
    best, med = timed(lambda: fit_models(p, r), 20)
    res = fit_models(p, r)
    print(f"dataset: 98 subjects, {res.table['roi'].nunique()} ROIs x "
          f"{res.table['outcome'].nunique()} outcomes = {len(res.fits)} models, "
          f"{len(res.table)} result rows")  # fmt: skip
    print(f"fit_models (DataFrames in):     best {best * 1e3:7.1f} ms   "
          f"median {med * 1e3:7.1f} ms")  # fmt: skip
    print(f"  of which model fitting:       {res.elapsed * 1e3:7.1f} ms")
    if (SYNTHETIC / "roi_md.tsv").exists():
        fp, fr = SYNTHETIC / "participants.tsv", SYNTHETIC / "roi_md.tsv"
        b2, m2 = timed(lambda: fit_models(fp, fr), 10)
        print(f"fit_models (synthetic_data/ TSV): best {b2 * 1e3:5.1f} ms   "
              f"median {m2 * 1e3:7.1f} ms")  # fmt: skip
    nb, nm = timed(lambda: naive(p, r), 3)
    print(f"naive smf.ols per model:        best {nb * 1e3:7.1f} ms   "
          f"median {nm * 1e3:7.1f} ms")  # fmt: skip
    print(f"speed-up over naive (medians):  {nm / med:.1f}x")
    print(f"must reach < 1 s: {'yes' if med < 1.0 else 'NO'}")


if __name__ == "__main__":
    main()
