"""Reference values of R's lme4, lmerTest and pbkrtest for tests/test_lmm.py.

Run from the repository root (needs R with lme4, lmerTest, pbkrtest and
jsonlite; Debian: ``apt-get install r-cran-lmertest r-cran-pbkrtest
r-cran-jsonlite``)::

    python tests/data/lmm/make_reference.py

It writes small simulated datasets to ``tests/data/lmm/datasets/*.tsv`` (one
row per observation: participant, visit, y, the fixed-effect columns x0.. and
the random-effect columns z0..; a missing observation has no row), runs
``reference.R`` beside this file on them, and writes what R reports to
``tests/data/lmm/reference.json``: for each dataset the REML fit (theta,
beta, vcov, sigma, REML criterion) and, for each contrast row, lmerTest's
``contest1D`` with ``ddf = "Satterthwaite"`` and ``"Kenward-Roger"``
(estimate, SE, df, t, p) and pbkrtest's ``vcovAdj``. R's optimiser is bobyqa
with ``rhoend = 1e-12`` so that its optimum is accurate to far below the
tolerances of the tests.

The datasets cover q = 1 and q = 2 (and one q = 3), balanced and unbalanced
(missing visits, a participant with no observation at all, which has no row
in the file but a row of NaN in the arrays the tests build), time in sessions
and in hours, and a fit on the boundary (no slope variance).

The default tests read the JSON and need no R; ``test_lmm.py::test_r_live``
reruns :func:`run_r` into a temporary folder when R and the packages are there.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "reference.R"
R_PACKAGES = ("lme4", "lmerTest", "pbkrtest", "jsonlite")

# name: (participants per arm, visit times, q, missing fraction, drop
# participant, slope SD, time scale, seed[, intercept SD, 1 if not given])
DATASETS = {
    "q2_unbalanced": (8, (0, 1, 6, 12, 12), 2, 0.10, None, 0.08, 1.0, 2),
    "q2_balanced": (10, (0, 1, 6, 12, 12), 2, 0.0, None, 0.10, 1.0, 3),
    "q1_balanced": (6, (0, 1, 6, 12, 12), 1, 0.0, None, 0.0, 1.0, 4),
    "q1_unbalanced": (8, (0, 1, 6, 12, 12), 1, 0.15, 3, 0.0, 1.0, 5),
    "q2_hours": (10, (0, 2, 336, 672, 2856), 2, 0.05, 7, 0.08, 1 / 240, 6),
    "q2_boundary": (10, (0, 1, 6, 12, 12), 2, 0.05, None, 0.0, 1.0, 7),
    "q3_quadratic": (10, (0, 1, 2, 4, 6, 8), 3, 0.05, None, 0.08, 1.0, 8),
    "q1_boundary": (8, (0, 1, 6, 12, 12), 1, 0.05, None, 0.0, 1.0, 9, 0.0),
}


def dataset(name: str) -> dict:
    """The arrays of one reference dataset, as the tests build them.

    Returns
    -------
    dict
        ``y`` (1, N, T) with NaN where missing, ``X`` (N, T, p), ``Z`` (N, T, q)
        and ``L`` (k, p), the contrast rows tested.
    """
    n_arm, times, q, miss, drop, slope_sd, scale, seed, *rest = DATASETS[name]
    intercept_sd = rest[0] if rest else 1.0
    rng = np.random.default_rng(seed)
    N = 2 * n_arm
    t = np.asarray(times, dtype=float)
    T = t.size
    arm = np.repeat([0.0, 1.0], n_arm)
    age = (rng.normal(45, 12, N) - 45) / 12
    sex = rng.integers(0, 2, N).astype(float)
    tt = np.broadcast_to(t, (N, T))
    X = np.stack([np.ones((N, T)), np.repeat(arm[:, None], T, 1), tt,
                  arm[:, None] * tt, np.repeat(age[:, None], T, 1),
                  np.repeat(sex[:, None], T, 1)], axis=-1)
    cols = [np.ones((N, T)), tt, (tt / t.max()) ** 2][:q]
    Z = np.stack(cols, axis=-1)
    sds = np.array([intercept_sd, slope_sd * scale, 0.3][:q])
    u = rng.normal(size=(N, q)) * sds
    if q >= 2:  # a correlation of -0.3 between intercept and slope
        u[:, 1] = sds[1] * (-0.3 * u[:, 0] / sds[0] + np.sqrt(1 - 0.09)
                            * rng.normal(size=N))
    beta = np.array([0.5, 0.2, 0.02 * scale, -0.03 * scale, 0.1, 0.05])
    y = X @ beta + np.einsum("ntq,nq->nt", Z, u) + 0.6 * rng.normal(size=(N, T))
    missing = rng.random((N, T)) < miss
    missing[:, 0] = False  # every participant has a baseline
    y[missing] = np.nan
    if drop is not None:
        y[drop] = np.nan
    p = X.shape[-1]
    L = np.vstack([np.eye(p), np.eye(p)[1] + t.max() * np.eye(p)[3]])
    return {"y": y[None], "X": X, "Z": Z, "L": L}


def write_datasets(folder: Path) -> list[str]:
    """Write every dataset as TSV to ``folder``; the names written."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in DATASETS:
        d = dataset(name)
        y, X, Z, L = d["y"][0], d["X"], d["Z"], d["L"]
        N, T, p = X.shape
        q = Z.shape[-1]
        head = ["participant", "visit", "y", *(f"x{j}" for j in range(p)),
                *(f"z{j}" for j in range(q))]
        lines = ["\t".join(head)]
        for i in range(N):
            for t in range(T):
                if np.isnan(y[i, t]):
                    continue
                vals = [float(y[i, t]), *map(float, X[i, t]), *map(float, Z[i, t])]
                lines.append("\t".join([str(i), str(t), *map(repr, vals)]))
        (folder / f"{name}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        np.savetxt(folder / f"{name}.L.tsv", L, delimiter="\t", fmt="%.17g")
    return list(DATASETS)


def read_dataset(folder: Path, name: str) -> dict:
    """The arrays of a dataset written by :func:`write_datasets` (what R saw).

    Returns
    -------
    dict
        ``y`` (1, N, T), NaN where the file has no row; ``X`` (N, T, p) and
        ``Z`` (N, T, q), NaN there too; ``L`` (k, p).
    """
    rows = np.genfromtxt(folder / f"{name}.tsv", delimiter="\t", names=True)
    cols = rows.dtype.names
    xs = [c for c in cols if c.startswith("x")]
    zs = [c for c in cols if c.startswith("z")]
    n_arm, times = DATASETS[name][:2]
    N, T = 2 * n_arm, len(times)
    i = rows["participant"].astype(int)
    t = rows["visit"].astype(int)
    y = np.full((N, T), np.nan)
    X = np.full((N, T, len(xs)), np.nan)
    Z = np.full((N, T, len(zs)), np.nan)
    y[i, t] = rows["y"]
    X[i, t] = np.column_stack([rows[c] for c in xs])
    Z[i, t] = np.column_stack([rows[c] for c in zs])
    L = np.loadtxt(folder / f"{name}.L.tsv", delimiter="\t", ndmin=2)
    return {"y": y[None], "X": X, "Z": Z, "L": L}


def r_available() -> bool:
    """Whether Rscript and the R packages the reference needs are installed."""
    if shutil.which("Rscript") is None:
        return False
    expr = "q(status = !all(sapply(c({}), requireNamespace, quietly = TRUE)))".format(
        ", ".join(f'"{p}"' for p in R_PACKAGES))
    res = subprocess.run(["Rscript", "-e", expr], capture_output=True, check=False)
    return res.returncode == 0


def run_r(folder: Path) -> dict:
    """Write the datasets to ``folder``, run ``reference.R`` there, read its JSON."""
    names = write_datasets(folder)
    out = folder / "reference.json"
    subprocess.run(["Rscript", str(SCRIPT), str(folder), str(out), *names],
                   check=True, capture_output=True, text=True)
    return json.loads(out.read_text(encoding="utf-8"))


def main() -> int:
    if not r_available():
        print("needs Rscript with " + ", ".join(R_PACKAGES), file=sys.stderr)
        return 1
    ref = run_r(HERE / "datasets")
    (HERE / "reference.json").write_text(
        json.dumps(ref, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    (HERE / "datasets" / "reference.json").unlink()
    print(f"wrote {HERE / 'reference.json'} ({len(ref['datasets'])} datasets)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
