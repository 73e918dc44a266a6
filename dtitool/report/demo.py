"""The whole rehearsal in one call: ``dtitool demo`` and :func:`run_demo`.

Simulates a cohort of a design (the default ``ketamine-rct`` preset, another
preset or a design file), pushes it through the imaging path (MD maps for every
scan, DWI and a tensor fit for a few, ROI extraction from the images), fits the
group x dMD models, runs a Monte Carlo power analysis and, when the design has the
reference study's ROIs and outcomes, the reported-versus-simulated comparison, and
writes a self-contained HTML report with the tables and figures it shows, labelled
by the design's own name. Everything is written at once at the end (nothing
half-written), through :func:`dtitool._io.atomic_outputs`, with a manifest
``dtitool-run.json``.

Output layout::

    OUT/report.html
    OUT/cohort/       participants.tsv, roi_md.tsv, true_md.tsv, design.toml
    OUT/images/       BIDS-derivatives-like tree of MD maps (+ DWI for a few), atlas
    OUT/tensor/       PREFIX_MD.nii.gz, PREFIX_FA.nii.gz fitted from the DWI
    OUT/tables/       roi_md_images.tsv, image_agreement.tsv, tensor_agreement.tsv,
                      results.tsv, comparison.tsv, power.tsv, familywise.tsv,
                      reproduce.tsv, power_curve.tsv, reliability_curve.tsv,
                      sample_size.tsv (the chosen n), sample_size_trace.tsv
    OUT/figures/      *.png
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dtitool import __version__
from dtitool._constants import DMD_UNIT
from dtitool._executor import open_executor
from dtitool._io import atomic_outputs, write_tsv
from dtitool._memory import format_bytes
from dtitool._progress import Progress
from dtitool._workers import process_pool
from dtitool.design import StudyDesign, load_preset
from dtitool.report.plots import outcome_label, visit_label
from dtitool.simulate import (
    BLOCK_SIZE,
    md_summary_wide,
    score_summary,
    simulate_cohort,
)
from dtitool.stats.power import POWER_COLUMNS, power, power_curve, sample_size
from dtitool.stats.reference import compare_to_reported, reported_families
from dtitool.stats.reproduce import (
    add_needed,
    compare_worlds,
    interpretation_notes,
    other_world,
    reproduce_table,
    world_summary,
)

__all__ = ["DemoSettings", "run_demo"]

OUTPUTS = ("report.html", "cohort", "images", "tensor", "tables", "figures")

LANE_NICENESS = 2
"""Niceness of the Monte Carlo lane's processes: a little below the imaging
lane, whose steps (one after the other, in the main process) are the demo's
critical path, when both want the same core."""


@dataclass(frozen=True, slots=True)
class DemoSettings:
    """Settings of a demo run.

    Parameters
    ----------
    seed : int
        Seed of the cohort, the images and the power analysis.
    replicates : int
        Monte Carlo replicates of the power analysis and reported-vs-simulated
        comparison.
    curve_replicates : int
        Replicates per point of the power curves and the sample-size search.
    dwi_subjects : int
        Participants (both sessions) that also get simulated DWI and a tensor fit.
    curve_n : tuple of int
        Sample sizes of the power curve.
    """

    seed: int = 7
    replicates: int = 2000
    curve_replicates: int = 300
    dwi_subjects: int = 1
    curve_n: tuple[int, ...] = (40, 60, 80, 98, 120, 150, 200, 250)

    def as_record(self) -> dict:
        """Return the settings as a plain dict (recorded in the manifest)."""
        return {"seed": self.seed, "replicates": self.replicates,
                "curve_replicates": self.curve_replicates,
                "dwi_subjects": self.dwi_subjects, "curve_n": list(self.curve_n)}

    def __post_init__(self):
        for name in ("replicates", "curve_replicates"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 100:
                raise ValueError(f"{name} must be an integer >= 100; got {v!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or (
            self.seed < 0
        ):
            raise ValueError(f"seed must be a non-negative integer; got {self.seed!r}")
        if not isinstance(self.dwi_subjects, int) or not 0 <= self.dwi_subjects <= 10:
            raise ValueError("dwi_subjects must be an integer from 0 to 10; got "
                             f"{self.dwi_subjects!r}")


_COUNTS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight",
           "nine", "ten", "eleven", "twelve")


def _count(k: int) -> str:
    """Return a count as prose: seven, or 15."""
    return _COUNTS[k] if 0 <= k < len(_COUNTS) else str(k)


def _visit_text(visit) -> str:
    """Return a visit as prose: its time since baseline (``24 h``), else its name."""
    if visit.hours == 0:
        return visit.name
    if visit.hours < 72:
        return f"{visit.hours:g} h"
    return f"{visit_label(visit.name)} ({visit.hours / 24:g} days)"


def _visits(design: StudyDesign) -> tuple:
    """Return the baseline and primary visit (:class:`VisitSpec`) of a design."""
    by = {v.name: v for v in design.visits}
    return by[design.baseline_visit], by[design.primary_visit]


def _outcome_text(spec) -> str:
    """Return an outcome as prose: its name in capitals, with its scale if any."""
    name = spec.name.upper()
    return name if spec.scale in ("", name) else f"{name} ({spec.scale})"


def _and_list(items) -> str:
    items = list(items)
    return items[0] if len(items) == 1 else (
        ", ".join(items[:-1]) + " and " + items[-1])


def _ratio(design: StudyDesign) -> str:
    """Return the allocation ratio in the design's arm order (``2:1``)."""
    return ":".join(f"{design.allocation[a]}" for a in design.arms)


def _save(fig, path: Path) -> bytes:
    png = _figure_bytes(fig)
    path.write_bytes(png)
    return png


def _cohort_summary(cohort) -> tuple[pd.DataFrame, pd.DataFrame]:
    p = cohort.participants
    d = cohort.design
    v0, v1 = _visits(d)
    rows = []
    for arm in d.arms:
        q = p[p["group"] == arm]
        row = {"arm": arm, "n": len(q)}
        for o in d.outcome_names:
            b, post = q[f"{o}_{v0.name}"], q[f"{o}_{v1.name}"]
            row[f"{o} {v0.name}"] = f"{b.mean():.1f} ({b.std():.1f})"
            row[f"{o} change"] = f"{(post - b).mean():+.1f} ({(post - b).std():.1f})"
        if "age" in q:
            row["age"] = f"{q['age'].mean():.0f} ({q['age'].std():.0f})"
            row["female"] = f"{(q['sex'] == 'F').mean():.0%}"
        rows.append(row)
    arms = pd.DataFrame(rows)
    md = cohort.roi_md.merge(p[["participant_id", "group"]], on="participant_id")
    wide = md.pivot_table(index=["roi", "group"], columns="session", values="md")
    wide = wide[[v0.name, v1.name]].reset_index()
    wide["dMD (1e-5 mm^2/s)"] = (wide[v1.name] - wide[v0.name]) / 1e-5
    wide[v0.name] *= 1e3
    wide[v1.name] *= 1e3
    wide = wide.rename(columns={v0.name: f"{_visit_text(v0)} MD (1e-3 mm^2/s)",
                                v1.name: f"{_visit_text(v1)} MD (1e-3 mm^2/s)",
                                "group": "arm"})
    order = {r: i for i, r in enumerate(cohort.design.roi_names)}
    wide = wide.sort_values(["roi", "arm"], key=lambda s: s.map(order) if (
        s.name == "roi") else s).reset_index(drop=True)
    return arms, wide


def _design_tables(design: StudyDesign) -> tuple[pd.DataFrame, pd.DataFrame]:
    rois = md_summary_wide(design)
    first = design.outcomes[0]
    for arm in design.arms:
        rois[f"corr(true dMD, d{outcome_label(first.name, first.scale)}) {arm}"] = (
            design.correlations.roi_outcome_array(arm)[:, 0])
    sources = pd.DataFrame(sorted(design.sources.items()),
                           columns=["parameter", "source"])
    return rois, sources


def _score_table(design: StudyDesign) -> pd.DataFrame:
    s = score_summary(design)
    cols = {"outcome": "outcome", "arm": "arm", "reliability": "reliability",
            "true_change_mean": "true change",
            "observed_change_mean": "observed change",
            "observed_change_sd": "observed SD", "regression_to_mean": "RTM",
            "response": "response", "remission": "remission",
            "at_floor": "at floor", "at_ceiling": "at maximum"}
    return s[list(cols)].rename(columns=cols)


def _worlds_table(*designs: StudyDesign) -> pd.DataFrame:
    rows = []
    for d in designs:
        w = world_summary(d)
        rows.append({
            "world": w["world"],
            **{f"dMD reliability, {arm}": "{:.2f}-{:.2f}".format(
                *w[f"reliability_{arm}"]) for arm in d.arms},
            f"true change SD % MD, {d.control}": "{:.2g}-{:.2g}".format(
                *w[f"change_sd_pct_{d.control}"]),
            **{f"R^2 {o}": w[f"r_squared_{o}"] for o in d.outcome_names},
            "parameters outside their ranges": len(w["violations"]),
        })
    return pd.DataFrame(rows)


def _tensor_step(scans: pd.DataFrame, images: Path, tensor_dir: Path, phantom):
    """Fit tensors to the simulated DWI; return ROI MD of fitted vs simulated maps."""
    import nibabel as nib

    from dtitool.imaging.extract import extract_roi_md
    from dtitool.imaging.gradients import read_bvals_bvecs
    from dtitool.imaging.nifti import read_data, write_fit_maps
    from dtitool.imaging.tensor import fit_tensor

    tensor_dir.mkdir(parents=True, exist_ok=True)
    dwi = scans[scans["dwi_path"].astype(str) != ""]
    mask = phantom.tissue > 0
    fitted, ids = [], []
    for row in dwi.itertuples(index=False):
        path = images / row.dwi_path
        stem = re.sub(r"\.nii(\.gz)?$", "", str(path))
        bvals, bvecs = read_bvals_bvecs(stem + ".bval", stem + ".bvec")
        img = nib.load(path)
        # As stored (int16): the fit reads only the mask's voxels
        fit = fit_tensor(read_data(img, str(path), "DWI"), bvals, bvecs,
                         method="wls", mask=mask)
        prefix = tensor_dir / f"{row.participant_id}_ses-{row.session}"
        write_fit_maps(fit, img, [f"{prefix}_MD.nii.gz", f"{prefix}_FA.nii.gz"])
        fitted.append(f"{prefix}_MD.nii.gz")
        ids.append((row.participant_id, row.session))
    if not fitted:
        return pd.DataFrame()
    atlas = images / "atlas-dtitool_dseg.nii.gz"
    got = extract_roi_md(fitted, atlas, ids=ids)
    sim = extract_roi_md([images / p for p in dwi["md_path"]], atlas, ids=ids)
    t = sim[["participant_id", "session", "roi", "md"]].rename(
        columns={"md": "md_simulated_map"})
    t["md_tensor_fit"] = got["md"].to_numpy()
    t["relative_difference"] = t["md_tensor_fit"] / t["md_simulated_map"] - 1
    return t


def _reliability_note(design: StudyDesign) -> str:
    t, c = design.treatment, design.control
    rel = design.reliability(t)
    ro = design.correlations.roi_outcome_array(t)
    j = 0  # the design's first ROI
    r_true = ro[j, 0]
    r_obs = r_true * np.sqrt(rel[design.roi_names[j]])
    roi = design.rois[j]
    sd_t, sd_c = roi.change_sd[t], roi.change_sd[c]
    when = _visit_text(_visits(design)[1])
    lines = [
        f"Every MD-change effect in this rehearsal is seen through test-retest noise. "
        f"In {roi.name} the true {when} MD change in the {t} arm has SD "
        f"{sd_t:.2g} mm^2/s, and each scan adds noise with SD "
        f"{roi.noise_sd:.2g} mm^2/s (a test-retest CV of {roi.cv:.1%}, which holds "
        "day-to-day physiology as well as measurement). MD change is the difference "
        "of two "
        f"noisy scans, so its noise variance doubles: the reliability of observed dMD "
        f"is {sd_t**2:.3g} / ({sd_t**2:.3g} + 2 x "
        f"{roi.noise_sd**2:.3g}) = {rel[roi.name]:.2f}.",
        f"A correlation with depression change is attenuated by the square root of "
        f"that reliability: the true correlation of {r_true:.2f} in the {t} arm "
        f"is observed as about {r_obs:.2f}. Reliability is what power depends on "
        "most; the table below shows the power of the reported tests as the "
        f"reliability changes (by changing the test-retest CV). In the {c} arm "
        f"the true change SD is {sd_c:.2g} mm^2/s (reliability "
        f"{roi.reliability(c):.2f}): its observed dMD is nearly all noise, "
        "and the group x dMD interaction inherits that noise through the "
        f"{c} arm's slope.",
    ]
    return "\n\n".join(lines)


def run_demo(out, *, design: StudyDesign | str | None = None,
             settings: DemoSettings | None = None, force: bool = False,
             progress: Progress | None = None, origin: str | None = None,
             inputs: tuple = (), n_jobs: int = -1) -> Path:
    """Run the whole rehearsal on a design, ending in a self-contained report.

    Parameters
    ----------
    out : str or path-like
        Output folder (layout in the module docstring).
    design : StudyDesign or str, optional
        The design, or a preset name; default the ``ketamine-rct`` preset.
    settings : DemoSettings, optional
        Seed, replicates and sizes; defaults as in :class:`DemoSettings`.
    force : bool
        Replace the outputs of an earlier demo run in ``out`` (files listed in
        its ``dtitool-run.json``, unchanged since); files of the user's are
        never touched.
    progress : Progress, optional
        Reports each step (:class:`dtitool._progress.Progress`); default none.
    origin : str, optional
        Where the design came from, for the report (e.g. ``"design file
        my.toml"``); default ``"preset NAME"`` for a preset name, else
        ``"design"``.
    inputs : tuple of path
        Files the run read (a design file): never replaced by its outputs.
    n_jobs : int
        Worker processes of each of the two lanes (-1: one per CPU). The
        outputs do not depend on it.

    Returns
    -------
    pathlib.Path
        Path of ``report.html``.

    Notes
    -----
    Two lanes run at once: the Monte Carlo work (power of the design and of
    the world beside it, the sample-size search, the curves) needs only the
    design and the seed, so it runs in worker processes of its own while this
    process simulates the cohort and makes, fits and reads its images; the
    report waits for both. Every result is what the same call would give
    alone (each lane's tasks are seeded as always).
    """
    s = settings or DemoSettings()
    if design is None:
        design = "ketamine-rct"
    if isinstance(design, str):
        origin = origin or f"preset {design}"
        design = load_preset(design)
    elif not isinstance(design, StudyDesign):
        raise TypeError("design must be a StudyDesign or a preset name; got "
                        f"{type(design).__name__}")
    origin = origin or "design"
    prog = progress or Progress(quiet=True)
    prog.steps = 7
    out = Path(out)
    with (atomic_outputs(out, OUTPUTS, force=force, seed=s.seed, inputs=inputs,
                         command="demo", options={**s.as_record(),
                                                  "design": design.name,
                                                  "origin": origin}) as tmp,
          process_pool(1) as lane_pool,
          open_executor(n_jobs) as images_ex,
          contextlib.ExitStack() as stack):
        tables, figs = tmp / "tables", tmp / "figures"
        tables.mkdir()
        figs.mkdir()
        pngs: dict[str, bytes] = {}

        # The second lane: Monte Carlo in a process of its own (with workers
        # of its own), while this process works through the imaging path.
        mc_step = prog.step(
            f"Monte Carlo power ({s.replicates} trials of the design and of its "
            f"null counterpart), the n for 80% power and the curves "
            f"({s.curve_replicates} trials per n), in the background",
            background=True)
        lane = lane_pool.submit(_monte_carlo, design, s, n_jobs)
        # The imaging, statsmodels and matplotlib side, imported only now: the
        # lane's process (forked above) does not need them.
        import nibabel as nib

        from dtitool.imaging.extract import extract_roi_md
        from dtitool.imaging.phantom import make_phantom
        from dtitool.imaging.synthetic import write_cohort_images
        from dtitool.report.plots import curve_marks, plot_power_curves
        from dtitool.stats.analysis import fit_models

        fig_pool = stack.enter_context(process_pool(2))

        with prog.step(f"simulating the {design.name} cohort (n = {design.n}, "
                       f"seed {s.seed})"):
            cohort = simulate_cohort(design, rng=s.seed)
            (tmp / "cohort").mkdir()
            # The cohort's record repeats it: dtitool simulate --design cohort/...
            cohort.write(tmp / "cohort", run={
                "seed": s.seed, "command": "simulate", "replicates": 1,
                "images": False, "dtitool_version": __version__},
                header="Design and seed of the demo's cohort; repeat it with\n"
                "  dtitool simulate --design design.toml --out DIR")

        try:
            phantom = make_phantom(roi_names=design.roi_names)
            images = tmp / "images"
            with prog.step(f"writing MD maps for {len(design.visits) * design.n} "
                           f"scans and DWI for "
                           f"{s.dwi_subjects} participant(s)", unit="scan") as bar:
                scans = write_cohort_images(cohort.participants, cohort.roi_md,
                                            images, rng=s.seed, phantom=phantom,
                                            dwi_subjects=s.dwi_subjects,
                                            dask=images_ex, progress=bar)

            with prog.step("fitting tensors (WLS) to the simulated DWI, in the "
                           "phantom's brain mask"):
                tensor_agreement = _tensor_step(scans, images, tmp / "tensor",
                                                phantom)
                if len(tensor_agreement):
                    write_tsv(tensor_agreement, tables / "tensor_agreement.tsv")

            with prog.step("extracting ROI MD from every MD map", unit="map") as bar:
                roi_img = extract_roi_md([images / p for p in scans["md_path"]],
                                         images / "atlas-dtitool_dseg.nii.gz",
                                         dask=images_ex, progress=bar)
                write_tsv(roi_img, tables / "roi_md_images.tsv")
                agree = roi_img.merge(cohort.roi_md,
                                      on=["participant_id", "session", "roi"],
                                      suffixes=("_image", "_table"))
                agree["relative_difference"] = (agree["md_image"]
                                                / agree["md_table"] - 1)
                write_tsv(agree, tables / "image_agreement.tsv")
                md_rows = roi_img[["participant_id", "session", "roi", "md"]]

            n_models = len(design.rois) * len(design.outcomes)
            with prog.step(f"fitting the {n_models} group x dMD models (statsmodels "
                           "OLS) and drawing the figures"):
                # Figures are drawn by worker processes (the same drawing
                # functions, run with the data), while this process goes on.
                first = scans.iloc[0]
                md_map = np.asarray(nib.load(images / first["md_path"]).dataobj)
                drawn = {"slices": fig_pool.submit(
                    _png, "slices", md_map, phantom.labels,
                    list(phantom.lut["name"]), phantom.affine)}
                results = fit_models(cohort.participants, md_rows, design=design)
                write_tsv(results.table, tables / "results.tsv")
                comparison = None
                if reported_families(design):
                    comparison = compare_to_reported(results)
                    write_tsv(comparison, tables / "comparison.tsv")
                labels = {o.name: outcome_label(o.name, o.scale)
                          for o in design.outcomes}
                drawn["scatter"] = fig_pool.submit(_png, "scatter", results, labels)
                drawn["sessions"] = fig_pool.submit(
                    _png, "sessions", md_rows, cohort.participants, design.names)
                drawn["forest"] = fig_pool.submit(_png, "forest", results, labels)
                for name, fut in drawn.items():
                    pngs[name] = fut.result()
                    (figs / _FIGURE_FILES[name]).write_bytes(pngs[name])
        finally:
            mc = lane.result()  # waits (and re-raises the lane's error, if any)
        mc_step.report(mc["seconds"])

        with prog.step("writing the power tables, the curve figure and the "
                       "report"):
            pw, other, repro, ss, pc, rc = (mc["pw"], mc["other"], mc["repro"],
                                            mc["ss"], mc["pc"], mc["rc"])
            write_tsv(pw.table[list(POWER_COLUMNS)], tables / "power.tsv")
            write_tsv(pw.familywise, tables / "familywise.tsv")
            if repro is not None:
                write_tsv(repro, tables / "reproduce.tsv")
            write_tsv(ss.table, tables / "sample_size.tsv")
            write_tsv(ss.evaluated, tables / "sample_size_trace.tsv")
            write_tsv(pc.table, tables / "power_curve.tsv")
            write_tsv(rc.table, tables / "reliability_curve.tsv")
            reported = reported_families(design).get("reported", [])
            fig = plot_power_curves(pc, reported or None, target_power=0.8,
                                    marks=curve_marks(pc, design, ss))
            pngs["curve"] = _save(fig, figs / "power_curve.png")
            html = _report(design, cohort, s, results, comparison, pw, repro, pc,
                           rc, ss, agree, tensor_agreement, pngs, other, origin)
            (tmp / "report.html").write_text(html, encoding="utf-8")
    used = _disk_use(out, OUTPUTS)
    prog.note(f"done in {prog.elapsed():.1f} s; {format_bytes(used)} on disk in "
              f"{out}: open {out / 'report.html'}")
    return out / "report.html"


_FIGURE_FILES = {"slices": "roi_slices.png", "scatter": "scatter_grid.png",
                 "sessions": "md_sessions.png", "forest": "forest.png"}


def _png(kind: str, *data) -> bytes:
    """Draw one of the demo's figures from its data; return the PNG bytes."""
    from matplotlib.figure import Figure

    from dtitool.report.plots import (
        plot_forest,
        plot_md_sessions,
        plot_roi_slices,
        plot_scatter_grid,
    )

    if kind == "slices":
        md_map, labels, names, affine = data
        fig = plot_roi_slices(md_map, labels, roi_names=names, affine=affine)
    elif kind == "scatter":
        fig = plot_scatter_grid(data[0], outcome_labels=data[1])
    elif kind == "sessions":
        fig = Figure(figsize=(10, 4.5), layout="constrained")
        plot_md_sessions(data[0], data[1], names=data[2], ax=fig.subplots())
    elif kind == "forest":
        fig = Figure(figsize=(7, 6), layout="constrained")
        plot_forest(data[0], outcome_labels=data[1], ax=fig.subplots())
    else:  # pragma: no cover - internal
        raise ValueError(f"unknown figure {kind!r}")
    return _figure_bytes(fig)


def _figure_bytes(fig) -> bytes:
    import matplotlib.pyplot as plt

    from dtitool.report.html import figure_png

    png = figure_png(fig)
    plt.close(fig)  # figures made through pyplot stay registered until closed
    return png


def _disk_use(out: Path, names) -> int:
    """Bytes of disk the demo's outputs take (allocated blocks, as du counts)."""
    total = 0
    for name in (*names, "dtitool-run.json"):
        p = out / name
        paths = [p] if p.is_file() else (p.rglob("*") if p.is_dir() else [])
        for f in paths:
            with contextlib.suppress(OSError):
                st = f.lstat()
                total += getattr(st, "st_blocks", st.st_size // 512 + 1) * 512
    return total


def _monte_carlo(design, s: DemoSettings, n_jobs: int) -> dict:
    """Run the demo's Monte Carlo lane: all that needs only the design and seed.

    Run in a process of its own (with ``n_jobs`` workers of its own) while the
    demo's main process works through the imaging path; every result is what
    the same call would give alone.
    """
    import os
    import time

    # Below the imaging lane's priority: that lane is the demo's critical path
    # (its steps run one after the other in the main process); this one soaks
    # up the cycles it leaves (its workers inherit the niceness).
    with contextlib.suppress(OSError, AttributeError):
        os.nice(LANE_NICENESS)
    t0 = time.perf_counter()
    out: dict = {"other": None, "repro": None}
    with open_executor(n_jobs) as ex:
        # Chunks of 2 per worker, so that each (sequential) step of the search
        # keeps every worker busy to its end; results never depend on them.
        def chunk(reps: int) -> int:
            return max(BLOCK_SIZE, -(-reps // (2 * ex.workers * BLOCK_SIZE))
                       * BLOCK_SIZE)

        common = {"rng": s.seed, "progress": False, "dask": ex}
        fams = reported_families(design)
        reported = fams.get("reported", [])
        out["pw"] = power(design, replicates=s.replicates, families=fams or None,
                          chunk_size=chunk(s.replicates), **common)
        if reported:  # the reference study's findings apply to this design
            other = out["other"] = load_preset(other_world(design))
            pw_other = power(other, replicates=s.replicates,
                             families=reported_families(other) or None,
                             size=False, design_analysis=False,
                             chunk_size=chunk(s.replicates), **common)
            out["repro"] = add_needed(compare_worlds(
                reproduce_table(out["pw"]), reproduce_table(pw_other),
                other.name), design)
        ss = out["ss"] = sample_size(design, target_power=0.8,
                                     tests=reported or None,
                                     replicates=s.curve_replicates,
                                     chunk_size=chunk(s.curve_replicates),
                                     **common)
        curve_n = {*s.curve_n, design.n}
        if ss.n is not None and ss.n > max(curve_n):  # the curve reaches it
            curve_n |= {int(v) for v in np.linspace(max(curve_n), ss.n, 5)}
        # The curves show power (size and design analysis are in power.tsv,
        # at the design itself): no null counterpart or reference sample per
        # point.
        out["pc"] = power_curve(design, parameter="n", values=sorted(curve_n),
                                replicates=s.curve_replicates,
                                families=fams or None, size=False,
                                design_analysis=False, **common)
        out["rc"] = power_curve(design, parameter="reliability",
                                values=[0.3, 0.45, 0.6, 0.75, 0.9],
                                replicates=s.curve_replicates, size=False,
                                design_analysis=False, **common)
    out["seconds"] = time.perf_counter() - t0
    return out


def _report(design, cohort, s, results, comparison, pw, repro, pc, rc, ss, agree,
            tensor_agreement, pngs, other, origin) -> str:
    from dtitool.report.html import HTMLReport

    sizes = design.arm_sizes()
    v0, v1 = (_visit_text(v) for v in _visits(design))
    treated, control = design.treatment, design.control
    label = f"{design.name!r} ({origin})"
    rep = HTMLReport(
        title=f"dtitool rehearsal of the {design.name!r} design",
        subtitle=f"Simulated cohort of the {label} design, seed {s.seed}, "
        f"dtitool {__version__}. Simulated data, not patient data.",
    )
    rois_t, sources = _design_tables(design)
    reference = (f"\n\nReference study: {design.reference}" if design.reference
                 else "")
    rep.add_section(
        "The design and its sources",
        text=f"Design {label}: {design.description or 'no description.'}"
        f"{reference}\n\n"
        f"{design.n} participants randomised {_ratio(design)} in permuted blocks "
        f"of {design.block_size} ("
        + ", ".join(f"{k} {a}" for k, a in zip(sizes, design.arms, strict=True))
        + f"); DTI at {v0} and {v1}; MD in "
        f"{len(design.rois)} gray-matter ROIs; outcomes "
        f"{', '.join(_outcome_text(o) for o in design.outcomes)} (change = {v1} "
        f"minus {v0}, negative = improvement). Each subject's true MD change and "
        "score change are drawn jointly (multivariate normal per arm); each scan "
        "adds noise with the ROI's test-retest CV. Per ROI and arm the table states "
        f"the true {v1} MD-change SD (% of MD), the correlation of the observed "
        f"{v0} and {v1} MD (session r) and the reliability of observed dMD (rel).",
        table=rois_t,
    )
    rep.add_table(_score_table(design), float_format="{:.3g}",
                  caption="Scores per outcome and arm (20,000 simulated "
                  f"participants): the true and the observed {v1} change (observed "
                  f"= true + regression to the mean + rating error), response ({v1} "
                  f"score at most half the {v0}), remission and the share at the "
                  "scale's floor and maximum.")
    violations = design.range_violations()
    if violations:
        rep.add_note("Parameters outside the design's ranges: "
                     + "; ".join(violations))
    rep.add_heading("Where each value comes from")
    rep.add_table(sources)

    arms, md_table = _cohort_summary(cohort)
    rep.add_section("Cohort summary",
                    text="Mean (SD) per arm. Scores are integers on their scales; "
                    "baselines are above the inclusion thresholds.", table=arms)
    rep.add_table(md_table, float_format="{:.3f}", caption="MD per ROI and arm")
    rep.add_figure(pngs["sessions"], caption=f"{v0[:1].upper()}{v0[1:]} and {v1} "
                   "MD per ROI and arm; thin lines are subjects, thick lines arm "
                   "means.",
                   alt=f"Paired {v0} and {v1} MD per ROI and arm, one thin "
                   "line per subject and a thick line for each arm's mean.")

    max_rel = float(agree["relative_difference"].abs().max())
    text = (f"Every scan was written as an MD map on a 2 mm MNI-like grid (91 x 109 "
            f"x 91) whose ROI means equal the simulated values, with spatially "
            f"smooth voxel noise. ROI MD was then extracted from the {len(agree)} "
            f"ROI x scan combinations of the images, exactly as a real study's FSL "
            f"or DIPY MD maps would be: the largest relative difference from the "
            f"ROI-level table is {max_rel:.1e}, so the image path and the table "
            "path give the same analysis.")
    rep.add_section("Imaging path", text=text)
    n_rois = _count(len(design.rois))
    rep.add_figure(pngs["slices"], caption=f"A simulated MD map with the {n_rois} "
                   "atlas ROIs (radiological view: the subject's left on the right, "
                   "marked R and L; grey scale in 1e-3 mm^2/s with CSF saturated).",
                   alt=f"Axial slices of a simulated MD map with the {n_rois} atlas "
                   "ROIs as coloured overlays, a colour bar of MD and R/L markers.")
    if len(tensor_agreement):
        rep.add_text(
            "For the DWI subset, 4D diffusion-weighted images (6 b=0 and 64 "
            "directions at b=1000 s/mm^2, Rician noise) were simulated from the MD "
            "maps and fitted with dtitool's vectorised WLS tensor fit; ROI means of "
            "the fitted MD against the simulated MD map:")
        ta = tensor_agreement.assign(
            md_simulated_map=tensor_agreement["md_simulated_map"] * 1e3,
            md_tensor_fit=tensor_agreement["md_tensor_fit"] * 1e3,
            relative_difference=tensor_agreement["relative_difference"] * 100,
        ).rename(columns={"md_simulated_map": "simulated map MD (1e-3 mm^2/s)",
                          "md_tensor_fit": "tensor-fit MD (1e-3 mm^2/s)",
                          "relative_difference": "difference (%)"})
        rep.add_table(ta, float_format="{:.3f}")

    t = results.table
    show = _results_wide(t)
    rep.add_section(
        "Results: group x dMD interaction models",
        text=f"Per ROI and outcome: score change ~ group * dMD + baseline score "
        f"(statsmodels OLS, n = {int(t['n'].max())}). Each cell is the estimate, "
        f"in score points {DMD_UNIT}, with its p; a positive slope means MD "
        f"decrease goes with improvement. Interaction = {treated} slope minus "
        f"{control} "
        "slope; the pooled slope comes from the model without the interaction. "
        "SEs, CIs, and Holm and BH adjusted p are in tables/results.tsv.\n\n"
        f"{results.missing_summary[:1].upper()}{results.missing_summary[1:]}.",
        table=show,
    )
    if comparison is not None:
        comp = comparison[["roi", "outcome", "term", "description", "estimate", "p",
                           "verdict"]].copy()
        rep.add_table(comp, caption="This dataset beside the reported findings "
                      "(Kopelman et al. 2023). A finding is replicated when its "
                      "test is significant at alpha = 0.05 with the reported sign; "
                      f"{_any_rois(design)} (outcome 'any': the report does not say "
                      f"which) on {_any_outcomes(design)}.")
    rep.add_figure(pngs["forest"], caption="Interaction estimates with 95% CIs.",
                   alt="Forest plot of the group x dMD interaction estimate with its "
                   "95% confidence interval for every ROI and outcome.")
    rep.add_figure(pngs["scatter"], caption="Score change against MD change per arm, "
                   "with each arm's fitted slope, for every ROI and outcome.",
                   alt="Grid of scatter plots of score change against MD change, "
                   "coloured by arm, with each arm's fitted slope.")

    if repro is not None:
        _reported_sections(rep, design, pw, repro, other)
    else:
        rep.add_section(
            "Power",
            text=f"{pw.replicates} replicate trials of the design (seed {pw.seed}). "
            "The design lacks the reference study's ROIs or outcomes, so there is "
            "no reported-versus-simulated comparison; power of every interaction:",
            table=pw.table.loc[pw.table["term"] == "interaction",
                               ["roi", "outcome", "power", "median_p", "size"]])
    rep.add_figure(pngs["curve"], caption=f"Power over the total sample size "
                   f"({pc.replicates} replicates per point; "
                   f"{_ratio(design)} "
                   f"allocation), with the design's n = {design.n}"
                   + (f" and the n = {ss.n} for 80% power marked." if ss.n
                      is not None else " marked."),
                   alt="Small multiples of power against total sample size, one "
                   "panel per test, with 95% bands, the 80% target line and "
                   "vertical marks at the design's n and the n for 80% power.")
    rep.add_note(_sample_size_sentence(ss, design, bool(repro is not None)))

    rep.add_section("What dMD reliability does to the effects",
                    text=_reliability_note(design))
    tests = [tuple(r[:3]) for r in reported_families(design).get("reported", [])
             if r[1] != "any"]
    rt = rc.table
    if tests:
        keys = pd.DataFrame(tests, columns=["roi", "outcome", "term"])
        rt = rt.merge(keys, on=["roi", "outcome", "term"])
    rwide = rt.pivot_table(index=["roi", "outcome", "term"], columns="value",
                           values="power", sort=False).reset_index()
    rwide.columns = [c if isinstance(c, str) else f"power at rel. {c:g}"
                     for c in rwide.columns]
    rep.add_table(rwide, float_format="{:.2f}")
    cite = (f" Cite the reference study: {design.reference}" if design.reference
            else "")
    return rep.render(footer=f"dtitool {__version__}; design {label}; seed {s.seed}; "
                      f"{pw.replicates} power replicates.{cite}")


def _any_rois(design) -> str:
    """Return the reported findings' ROIs whose outcome the report leaves open."""
    from dtitool.stats.reference import ANY

    rois = [r[0] for r in reported_families(design).get("reported", [])
            if r[1] == ANY]
    return _and_list([r.replace("_", " ") for r in dict.fromkeys(rois)] or ["none"])


def _any_outcomes(design) -> str:
    """Return ``the MADRS or the QIDS-SR16``: any one of the design's outcomes."""
    return " or ".join(f"the {outcome_label(o.name, o.scale)}"
                       for o in design.outcomes)


def _term_header(term: str) -> str:
    """Column header of a model term: ``slope_<arm>`` -> ``slope, <arm>``."""
    return term.replace("_", ", ", 1) if term.startswith("slope_") else term


def _results_wide(t: pd.DataFrame) -> pd.DataFrame:
    """One row per ROI and outcome, one 'estimate (p)' cell per term."""
    from dtitool.report.html import format_p

    cell = t.assign(text=[
        "not estimable" if e != e else f"{e:.3g} (p {format_p(p)})"
        for e, p in zip(t["estimate"], t["p"], strict=True)])
    wide = cell.pivot_table(index=["roi", "outcome"], columns="term", values="text",
                            aggfunc="first", sort=False)
    wide = wide[list(pd.unique(t["term"]))]  # the results' own term order
    return wide.rename(columns=_term_header).reset_index()


def _sample_size_sentence(ss, design, reported: bool) -> str:
    """Return the one statement of the n for the target (as in sample_size.tsv)."""
    what = ("every reported finding (each with its reported sign; "
            f"{_any_rois(design)} on either outcome)" if reported
            else "every interaction")
    if ss.n is None:
        return (f"{ss.target_power:.0%} power on {what} is not reached by n = "
                f"{ss.n_max} ({ss.replicates} replicates per n; weakest: "
                f"{ss.limiting_test}).")
    lo, hi = ss.n_plausible
    hi_s = f">{ss.n_max}" if hi is None else str(hi)
    return (f"n for {ss.target_power:.0%} power on {what}: n = {ss.n} in total "
            f"(Monte Carlo interval {lo}-{hi_s}; power {ss.power:.2f} at that n, "
            f"{ss.replicates} replicates per n), against {design.n} in the design. "
            "The same number is in tables/sample_size.tsv and marked on the power "
            "curve.")


def _reported_sections(rep, design, pw, repro, other) -> None:
    rtab = repro[["roi", "outcome", "term", "reported_p", "median_p", "power",
                  "size", "other_median_p", "other_power", "verdict"]].rename(
        columns={"other_median_p": f"median p, {other.name}",
                 "other_power": f"power, {other.name}", "median_p": "median p",
                 "reported_p": "reported p"})
    rep_rows = repro[repro["direction"] != 0]
    rep.add_section(
        "Power, and the reported findings against many simulated trials",
        text=f"{pw.replicates} replicate trials of the design (seed {pw.seed}) and "
        f"of the {other.name!r} world beside it, every model fitted by dtitool's "
        "batched least-squares engine (the same estimates and p-values as "
        "statsmodels). Median p is the typical p-value a trial of a world gives; "
        "power is the chance that a finding is found, i.e. its test is significant "
        f"at alpha = 0.05 with the reported sign ({_any_rois(design)}, whose "
        f"outcome the report does not name: on {_any_outcomes(design)}, its p the "
        "smaller of the "
        "two); size is the same test's rejection rate in the design's null "
        "counterpart (every MD-outcome correlation 0), its actual level under "
        f"{pw.inference} inference.\n\nA median p inside a reported range means "
        "about 50 % power: half of that world's trials give a larger p. That is "
        "the face-value reading of a published result, which the significance "
        "filter inflates. "
        f"Here the reported findings have power {rep_rows['power'].min():.2f}-"
        f"{rep_rows['power'].max():.2f} in {design.name!r} and "
        f"{rep_rows['other_power'].min():.2f}-{rep_rows['other_power'].max():.2f} "
        f"in {other.name!r}.",
        table=rtab,
    )
    rep.add_table(_worlds_table(design, other), float_format="{:.2f}",
                  caption="What each world needs: dMD reliability and true "
                  f"{_visit_text(_visits(design)[1])} "
                  "MD-change SD per arm, the share of each score change explained "
                  f"by the true MD change of all ROIs (R^2, {design.treatment} arm), "
                  "and how many parameters leave their ranges.")
    need = [x for x in repro["needed"] if x]
    if need:
        rep.add_heading("What the reported p-values need")
        rep.add_text("Each reported test the design misses, one parameter at a "
                     "time, at the top of its reported range (from the arms' "
                     "moments, anchored to the power engine's median p):\n\n"
                     + "\n\n".join(need))
    rep.add_heading("Reading the results")
    rep.add_text("\n\n".join(interpretation_notes(repro, pw)))
    fw = pw.familywise
    fw = fw[fw["family"] == "reported"]
    if len(fw):
        row = fw.set_index("method")
        rep.add_note(
            f"Chance that one trial reproduces all {int(row.loc['none', 'tests'])} "
            f"reported findings at once: {row.loc['none', 'power_all']:.1%} "
            f"(with Holm adjustment {row.loc['holm', 'power_all']:.1%}); chance of at "
            f"least one: {row.loc['none', 'power_any']:.1%}.")
