"""A power surface on a Dask cluster: local, SLURM or PBS (dask-jobqueue).
=======================================================================

The question: over sample sizes 40-400, interaction effects 0.25-1.5 times the
design's and scan-rescan reliabilities 0.2-0.9, where does each test of the
ketamine trial reach 80 % power? That is 912 design points of 10,000 simulated
trials each: hours of one core, minutes of a cluster. The script starts the
cluster, hands the grid to it (``dask=client``), and writes ``power_grid.tsv``
and the interactive ``power_explorer.html``. The same seed gives the same
bytes on any cluster and on a laptop (``docs/scale-out.md``).

Run (needs ``pip install "dtitool[dask]"``)::

    python examples/cluster_power_grid.py --out grid                 # LocalCluster
    python examples/cluster_power_grid.py --cluster slurm --jobs 4 \\
        --cores 32 --memory 64GB --walltime 02:00:00 --account myproject --out grid
    python examples/cluster_power_grid.py --cluster pbs ... --out grid
    python examples/cluster_power_grid.py --quick --out grid         # a small grid

On SLURM/PBS, run it where batch jobs can be submitted (a login node), from
the Python environment the workers will use (a shared file system or
container): workers must run the same versions as this process.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import dtitool
from dtitool.report.explorer import explorer_html

FULL = {"n": list(range(40, 401, 20)),
        "effect": [0.25, 0.5, 0.75, 1.0, 1.25, 1.5],
        "reliability": [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]}
QUICK = {"n": [40, 98, 200], "effect": [0.5, 1.0], "reliability": [0.5, 0.9]}


def start_cluster(args):
    """Return a running Dask cluster of the kind asked for."""
    if args.cluster == "local":
        from distributed import LocalCluster

        return LocalCluster(n_workers=args.cores, threads_per_worker=1,
                            dashboard_address=None)
    import dask_jobqueue

    kind = {"slurm": dask_jobqueue.SLURMCluster, "pbs": dask_jobqueue.PBSCluster}
    extra = {"account": args.account} if args.account else {}
    cluster = kind[args.cluster](
        cores=args.cores, processes=args.cores,  # single-threaded workers
        job_script_prologue=["export OPENBLAS_NUM_THREADS=1"],  # and BLAS
        memory=args.memory, walltime=args.walltime, **extra)
    cluster.scale(jobs=args.jobs)
    return cluster


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--cluster", choices=["local", "slurm", "pbs"], default="local")
    ap.add_argument("--jobs", type=int, default=4, help="batch jobs (slurm, pbs)")
    ap.add_argument("--cores", type=int, default=2,
                    help="cores per job (slurm, pbs) or local workers")
    ap.add_argument("--memory", default="64GB", help="memory per job")
    ap.add_argument("--walltime", default="02:00:00")
    ap.add_argument("--account", default=None)
    ap.add_argument("--replicates", type=int, default=None,
                    help="trials per point (default 10,000; --quick: 200)")
    ap.add_argument("--quick", action="store_true",
                    help="a 12-point grid, for trying the set-up")
    args = ap.parse_args()

    from distributed import Client

    axes = QUICK if args.quick else FULL
    replicates = args.replicates or (200 if args.quick else 10_000)
    design = dtitool.load_preset("ketamine-rct")
    t0 = time.perf_counter()
    cluster = start_cluster(args)
    with cluster, Client(cluster) as client:
        grid = dtitool.power_grid(design, axes=axes, replicates=replicates, rng=1,
                                  dask=client, progress=False)
    wall = time.perf_counter() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    grid.table.to_csv(args.out / "power_grid.tsv", sep="\t", index=False)
    (args.out / "power_explorer.html").write_text(explorer_html(grid),
                                                  encoding="utf-8")
    points = len(grid.table) // len(grid.table[["roi", "outcome", "term"]]
                                    .drop_duplicates())
    print(f"{points} points x {replicates} trials on a {args.cluster} cluster in "
          f"{wall:.1f} s")
    # Where does the pre-registered left BA10 x MADRS interaction reach 80 %
    # power at the design's own effect and a reliability of 0.9?
    t = grid.table
    row = t[(t.roi == "L_BA10") & (t.outcome == "madrs") & (t.term == "interaction")
            & (t.effect == 1.0) & (t.reliability == 0.9) & (t.power >= 0.8)]
    first = int(row.n.min()) if len(row) else None
    print("L_BA10 x MADRS interaction, effect as designed, reliability 0.9: "
          + (f"80 % power from n = {first}" if first else
             f"80 % power not reached by n = {max(axes['n'])}"))
    print(f"wrote {args.out / 'power_grid.tsv'} and "
          f"{args.out / 'power_explorer.html'}")


if __name__ == "__main__":
    main()
