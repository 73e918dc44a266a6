"""The demo pipeline: the whole rehearsal of a design, run step by step.

:func:`run_demo_pipeline` simulates a cohort of a design (the default
``ketamine-rct`` preset, another preset or a design file), pushes it through the
imaging path (MD maps for every scan, DWI and a tensor fit for a few, ROI
extraction from the images), fits the group x dMD models, runs a Monte Carlo
power analysis and, when the design has the reference study's ROIs and outcomes,
the reported-versus-simulated comparison. It returns one results object,
:class:`DemoResults`, from which :func:`dtitool.report.demo.render_demo_report`
draws the figures and writes the self-contained HTML report, labelled by the
design's own name: this module orchestrates, ``report/`` renders. Everything is
written at once at the end (nothing half-written), through
:func:`dtitool._io.atomic_outputs`, with a manifest ``dtitool-run.json``.

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
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from dtitool import __version__
from dtitool._executor import open_executor
from dtitool._io import atomic_outputs, write_tsv
from dtitool._memory import format_bytes
from dtitool._progress import Progress
from dtitool._workers import process_pool
from dtitool.design import StudyDesign, load_preset
from dtitool.simulate import BLOCK_SIZE, simulate_cohort
from dtitool.stats.power import POWER_COLUMNS, power, power_curve, sample_size
from dtitool.stats.reference import compare_to_reported, reported_families
from dtitool.stats.reproduce import (
    add_needed,
    compare_worlds,
    other_world,
    reproduce_table,
)

__all__ = ["DemoResults", "DemoSettings", "run_demo", "run_demo_pipeline"]

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


@dataclass(frozen=True, slots=True, eq=False)
class DemoResults:
    """Everything a demo run computed: what its report is rendered from.

    Parameters
    ----------
    design : StudyDesign
        The design rehearsed.
    origin : str
        Where the design came from (``"preset ketamine-rct"``).
    settings : DemoSettings
        Seed, replicates and sizes of the run.
    cohort : SimulatedCohort
        The simulated cohort (participants, ROI MD, true MD).
    scans : pandas.DataFrame
        One row per scan: the MD map (and DWI) written, relative to
        ``out / "images"``.
    roi_md_images : pandas.DataFrame
        ROI MD extracted from the MD maps (``tables/roi_md_images.tsv``).
    image_agreement : pandas.DataFrame
        Image-path ROI MD beside the table's (``tables/image_agreement.tsv``).
    tensor_agreement : pandas.DataFrame
        ROI MD of the tensor fits beside the simulated maps' (empty without DWI).
    analysis : AnalysisResults
        The group x dMD models fitted to the image-path table.
    comparison : pandas.DataFrame or None
        The dataset beside the reported findings (None when the design lacks
        the reference study's ROIs or outcomes).
    power : PowerResult
        Monte Carlo power and size of the design.
    other : StudyDesign or None
        The world beside the design (None without reported findings).
    reproduce : pandas.DataFrame or None
        The reported findings in both worlds (None without reported findings).
    sample_size : SampleSizeResult
        The n for 80% power.
    power_curve, reliability_curve : PowerCurve
        Power over the total n and over dMD reliability.
    figure_data : mapping of str to tuple
        Each figure's name and the data it is drawn from (the arguments of
        :func:`dtitool.report.demo.draw_demo_figure` after the name).
    timings : mapping of str to float
        Wall time in seconds of each lane (``imaging``, ``monte_carlo``).
    out : pathlib.Path
        The output folder.

    Notes
    -----
    Equality is identity (``eq=False``): the tables are DataFrames, whose
    ``==`` is elementwise (statsmodels' results objects do the same).
    """

    design: StudyDesign
    origin: str
    settings: DemoSettings
    cohort: Any
    scans: pd.DataFrame
    roi_md_images: pd.DataFrame
    image_agreement: pd.DataFrame
    tensor_agreement: pd.DataFrame
    analysis: Any
    comparison: pd.DataFrame | None
    power: Any
    other: StudyDesign | None
    reproduce: pd.DataFrame | None
    sample_size: Any
    power_curve: Any
    reliability_curve: Any
    figure_data: Mapping[str, tuple]
    timings: Mapping[str, float]
    out: Path

    @property
    def report_path(self) -> Path:
        """Path of the run's ``report.html``."""
        return self.out / "report.html"


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


def run_demo(out, *, design: StudyDesign | str | None = None,
             settings: DemoSettings | None = None, force: bool = False,
             progress: Progress | None = None, origin: str | None = None,
             inputs: tuple = (), n_jobs: int = -1) -> Path:
    """Run the whole rehearsal on a design, ending in a self-contained report.

    :func:`run_demo_pipeline`, returning the path of the report.

    Parameters
    ----------
    out, design, settings, force, progress, origin, inputs, n_jobs
        As in :func:`run_demo_pipeline`.

    Returns
    -------
    pathlib.Path
        Path of ``report.html``.
    """
    return run_demo_pipeline(out, design=design, settings=settings, force=force,
                             progress=progress, origin=origin, inputs=inputs,
                             n_jobs=n_jobs).report_path


def run_demo_pipeline(out, *, design: StudyDesign | str | None = None,
                      settings: DemoSettings | None = None, force: bool = False,
                      progress: Progress | None = None, origin: str | None = None,
                      inputs: tuple = (), n_jobs: int = -1) -> DemoResults:
    """Run the whole rehearsal on a design; write its outputs and report.

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
    DemoResults
        Everything the run computed; its report was rendered from it by
        :func:`dtitool.report.demo.render_demo_report` before the outputs
        were committed.

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
        tables = tmp / "tables"
        tables.mkdir()
        pngs: dict[str, bytes] = {}

        # The second lane: Monte Carlo in a process of its own (with workers
        # of its own), while this process works through the imaging path.
        mc_step = prog.step(
            f"Monte Carlo power ({s.replicates} trials of the design and of its "
            f"null counterpart), the n for 80% power and the curves "
            f"({s.curve_replicates} trials per n), in the background",
            background=True)
        lane = lane_pool.submit(_monte_carlo, design, s, n_jobs)
        t_imaging = time.perf_counter()
        # The imaging, statsmodels and matplotlib side (the renderer), imported
        # only now: the lane's process (forked above) does not need them.
        import nibabel as nib

        from dtitool.imaging.extract import extract_roi_md
        from dtitool.imaging.phantom import make_phantom
        from dtitool.imaging.synthetic import write_cohort_images
        from dtitool.report.demo import draw_demo_figure, render_demo_report
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
            k = s.dwi_subjects
            dwi = {0: "no DWI", 1: "DWI for 1 participant"}.get(
                k, f"DWI for {k} participants")
            with prog.step(f"writing MD maps for {len(design.visits) * design.n} "
                           f"scans and {dwi}", unit="scan") as bar:
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
            with prog.step(f"fitting the {n_models} group x dMD models (statsmodels, "
                           "welch inference: each arm on its own) and drawing the "
                           "figures"):
                # Figures are drawn by worker processes (the renderer's drawing
                # function, run with the data), while this process goes on.
                first = scans.iloc[0]
                md_map = np.asarray(nib.load(images / first["md_path"]).dataobj)
                figure_data = {"slices": (md_map, phantom.labels,
                                          list(phantom.lut["name"]), phantom.affine)}
                drawn = {"slices": fig_pool.submit(draw_demo_figure, "slices",
                                                   *figure_data["slices"])}
                results = fit_models(cohort.participants, md_rows, design=design)
                write_tsv(results.table, tables / "results.tsv")
                comparison = None
                if reported_families(design):
                    comparison = compare_to_reported(results)
                    write_tsv(comparison, tables / "comparison.tsv")
                figure_data["scatter"] = (results, design)
                figure_data["sessions"] = (md_rows, cohort.participants,
                                           design.names)
                figure_data["forest"] = (results, design)
                for name in ("scatter", "sessions", "forest"):
                    drawn[name] = fig_pool.submit(draw_demo_figure, name,
                                                  *figure_data[name])
                for name, fut in drawn.items():
                    pngs[name] = fut.result()
            t_imaging = time.perf_counter() - t_imaging
        finally:
            mc = lane.result()  # waits (and re-raises the lane's error, if any)
        mc_step.report(mc["seconds"])

        with prog.step("writing the power tables, the curve figure and the "
                       "report"):
            pw, repro, ss, pc = mc["pw"], mc["repro"], mc["ss"], mc["pc"]
            write_tsv(pw.table[list(POWER_COLUMNS)], tables / "power.tsv")
            write_tsv(pw.familywise, tables / "familywise.tsv")
            if repro is not None:
                write_tsv(repro, tables / "reproduce.tsv")
            write_tsv(ss.table, tables / "sample_size.tsv")
            write_tsv(ss.evaluated, tables / "sample_size_trace.tsv")
            write_tsv(pc.table, tables / "power_curve.tsv")
            write_tsv(mc["rc"].table, tables / "reliability_curve.tsv")
            figure_data["curve"] = (pc, design, ss)
            demo = DemoResults(
                design=design, origin=origin, settings=s, cohort=cohort,
                scans=scans, roi_md_images=roi_img, image_agreement=agree,
                tensor_agreement=tensor_agreement, analysis=results,
                comparison=comparison, power=pw, other=mc["other"],
                reproduce=repro, sample_size=ss, power_curve=pc,
                reliability_curve=mc["rc"], figure_data=figure_data,
                timings={"imaging": t_imaging, "monte_carlo": mc["seconds"]},
                out=out)
            render_demo_report(demo, tmp, figures=pngs)
    used = _disk_use(out, OUTPUTS)
    prog.note(f"done in {prog.elapsed():.1f} s; {format_bytes(used)} on disk in "
              f"{out}: open {demo.report_path}")
    return demo


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
