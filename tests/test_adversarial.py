"""Adversarial inputs, as a careless or unlucky user would try them.

Every case must be answered with exit code 2 and exactly one line on stderr (no
traceback), and must leave every byte of the world unchanged: the inputs, an
existing output folder with the user's own files in it, and everything around
(no folder created, no staging folder left behind).

The world is built with the command line and nibabel only, so the same cases run
against any checkout (``PYTHONPATH=/other/checkout pytest tests/test_adversarial.py``).
"""

from __future__ import annotations

import functools
import math
import os
import re
import shutil
import signal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _adversarial_world import (
    DWI_SHAPE,
    SHAPE,
    atlas_array,
    dwi_data,
    extract_args,
    fit_args,
    md_map,
    protocol,
    quiet_main,
    save_nifti,
    write_gradients,
)
from _trees import tree

# ----------------------------------------------------------------- building blocks


def tables(w: Path, edit, name="t") -> Path:
    """A copy of the cohort tables, edited by ``edit(participants, roi_md)``."""
    p = pd.read_csv(w / "cohort" / "participants.tsv", sep="\t", dtype={
        "participant_id": str})
    r = pd.read_csv(w / "cohort" / "roi_md.tsv", sep="\t", dtype={
        "participant_id": str})
    res = edit(p, r)
    if res is not None:
        p, r = res
    d = w / "bad" / name
    d.mkdir(parents=True, exist_ok=True)
    p.to_csv(d / "participants.tsv", sep="\t", index=False)
    r.to_csv(d / "roi_md.tsv", sep="\t", index=False)
    for f in ("design.toml", "visits.tsv"):  # the trial's names travel along
        (d / f).write_bytes((w / "cohort" / f).read_bytes())
    return d


def analyze(w, d, *extra):
    return ["analyze", d, "--out", w / "res" / "results.tsv", *extra]


def set_col(col, value, rows=slice(None)):
    def edit(p, r):
        if col in p:
            p[col] = p[col].astype(object)
        p.loc[p.index[rows], col] = value
    return edit


def set_md(value, rows=slice(0, 1)):
    def edit(p, r):
        r["md"] = r["md"].astype(object)
        r.loc[r.index[rows], "md"] = value
    return edit


def design(w: Path, old: str, new: str, name="d.toml") -> Path:
    """The world's design file with the first ``old`` (a regex) replaced."""
    text = (w / "design.toml").read_text()
    new_text, n = re.subn(old, new, text, count=1, flags=re.M)
    assert n == 1, old
    path = w / "bad" / name
    path.write_text(new_text)
    return path


def text_file(w: Path, name: str, content: str | bytes) -> Path:
    path = w / "bad" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def gradients(w: Path, bvals, bvecs, stem="g") -> tuple[Path, Path]:
    write_gradients(w / "bad", bvals, bvecs, stem)
    return w / "bad" / f"{stem}.bval", w / "bad" / f"{stem}.bvec"


def fifo(w: Path, name: str) -> Path:
    path = w / "bad" / name
    os.mkfifo(path)
    return path


POWER = ["power", "--replicates", "64", "--quiet"]


def power(w, *extra):
    return [*POWER, "--out", w / "pw", *extra]


# ------------------------------------------------------------------------ the cases

CASES = {}


def case(name):
    def register(f):
        assert name not in CASES, name
        CASES[name] = f
        return f
    return register


def cases(prefix, builder, values):
    for k, v in values.items():
        assert f"{prefix}-{k}" not in CASES
        CASES[f"{prefix}-{k}"] = functools.partial(_apply, builder, v)


def _apply(builder, value, w):
    return builder(w, value)


# --- general
cases("general", lambda w, argv: argv, {
    "no-command": [],
    "unknown-command": ["frobnicate"],
    "unknown-option": ["simulate", "--out", "x", "--frob"],
    "missing-out": ["simulate", "--seed", "1"],
})

# --- simulate: options
SIM = ["simulate", "--seed", "1"]
cases("simulate", lambda w, a: [*SIM, "--out", w / "sim", *a], {
    "n-zero": ["--n", "0"],
    "n-negative": ["--n", "-5"],
    "n-too-small": ["--n", "2"],
    "n-text": ["--n", "many"],
    "n-huge": ["--n", str(10**12)],
    "n-astronomic": ["--n", str(10**300)],
    "seed-negative": ["--seed", "-1"],
    "seed-float": ["--seed", "1.5"],
    "replicates-zero": ["--replicates", "0"],
    "replicates-negative": ["--replicates", "-3"],
    "replicates-huge": ["--replicates", str(10**12)],
    "preset-unknown": ["--preset", "nope"],
    "images-with-replicates": ["--images", "--replicates", "2"],
    "dwi-without-images": ["--dwi"],
    "dwi-subjects-negative": ["--images", "--dwi-subjects", "-1"],
    "snr-zero": ["--images", "--snr", "0"],
    "snr-negative": ["--images", "--snr", "-3"],
    "snr-nan": ["--images", "--snr", "nan"],
    "snr-inf": ["--images", "--snr", "inf"],
})
cases("simulate-design", lambda w, f: [*SIM, "--design", f(w), "--out", w / "sim"], {
    "missing": lambda w: w / "nope.toml",
    "folder": lambda w: w / "bad",
    "fifo": lambda w: fifo(w, "d.toml"),
    "empty": lambda w: text_file(w, "e.toml", ""),
    "binary": lambda w: text_file(w, "b.toml", b"\x00\xff\xfe" * 50),
    "not-toml": lambda w: text_file(w, "x.toml", "name = [unclosed\n"),
    "unknown-top-key": lambda w: design(w, '^name = ', 'nmae = "x"\nname = '),
    "unknown-trial-key": lambda w: design(w, r"^\[trial\]$", "[trial]\nsize = 3"),
    "n-text": lambda w: design(w, "^n = 20$", 'n = "twenty"'),
    "n-float": lambda w: design(w, "^n = 20$", "n = 20.5"),
    "n-zero": lambda w: design(w, "^n = 20$", "n = 0"),
    "n-huge": lambda w: design(w, "^n = 20$", f"n = {2**62}"),
    "cv-negative": lambda w: design(w, "^cv = .*$", "cv = -1.0"),
    "cv-nan": lambda w: design(w, "^cv = .*$", "cv = nan"),
    "md-mean-inf": lambda w: design(w, "^md_mean = .*$", "md_mean = inf"),
    "allocation-zero": lambda w: design(w, "^ketamine = 2$", "ketamine = 0"),
    "unknown-roi-key": lambda w: design(w, "^md_sd = ", "md_sdd = 1\nmd_sd = "),
    "run-unknown-key": lambda w: design(w, r"^\[run\]$", "[run]\nrplicates = 2"),
    "run-seed-negative": lambda w: design(w, "^seed = 1$", "seed = -1"),
    "run-seed-text": lambda w: design(w, "^seed = 1$", 'seed = "one"'),
    "run-replicates-text": lambda w: design(w, "^replicates = 1$",
                                            'replicates = "lots"'),
    "run-snr-text": lambda w: design(w, "^snr = .*$", 'snr = "high"'),
    "run-command-unknown": lambda w: design(w, '^command = "simulate"$',
                                            'command = "frobnicate"'),
    "run-table": lambda w: design(w, r"^\[run\]$", "[run.x]\ny = 1\n[run]"),
    "correlation-not-pd": lambda w: design(w, "^roi_baseline = .*$",
                                           "roi_baseline = -0.9"),
    "correlation-above-one": lambda w: design(w, "^outcome_baseline = .*$",
                                              "outcome_baseline = 1.5"),
})


@case("simulate-out-is-a-file")
def _(w):
    return [*SIM, "--n", "20", "--out", w / "design.toml"]


@case("simulate-out-parent-is-a-file")
def _(w):
    return [*SIM, "--n", "20", "--out", w / "design.toml" / "sub"]


@case("simulate-out-exists-no-force")
def _(w):
    return [*SIM, "--n", "20", "--out", w / "existing"]


@case("simulate-force-over-users-file")
def _(w):
    (w / "existing" / "dtitool-run.json").unlink(missing_ok=True)
    return [*SIM, "--n", "20", "--out", w / "existing", "--force"]


@case("simulate-force-output-is-the-design-input")
def _(w):
    return ["simulate", "--design", w / "existing" / "design.toml", "--out",
            w / "existing", "--force"]


@case("simulate-force-over-fifo")
def _(w):
    target = w / "existing" / "roi_md.tsv"
    target.unlink()
    os.mkfifo(target)
    return [*SIM, "--n", "20", "--out", w / "existing", "--force"]


@case("simulate-force-over-symlink")
def _(w):
    target = w / "existing" / "true_md.tsv"
    target.unlink()
    target.symlink_to(w / "design.toml")
    return [*SIM, "--n", "20", "--out", w / "existing", "--force"]


@case("simulate-force-over-changed-output")
def _(w):
    t = w / "existing" / "roi_md.tsv"
    t.write_text(t.read_text().replace("\t", "\t ", 1))
    return [*SIM, "--n", "20", "--out", w / "existing", "--force"]


# --- analyze: tables
cases("analyze", lambda w, spec: analyze(w, tables(w, spec[0]), *spec[1]), {
    "missing-group-column": (lambda p, r: (p.drop(columns="group"), r), ()),
    "missing-md-column": (lambda p, r: (p, r.drop(columns="md")), ()),
    "unknown-group": (set_col("group", "placebo", slice(0, 1)), ()),
    "empty-group": (set_col("group", np.nan, slice(0, 1)), ()),
    "duplicate-id": (lambda p, r: (pd.concat([p, p.iloc[:1]]), r), ()),
    "empty-id": (set_col("participant_id", np.nan, slice(0, 1)), ()),
    "score-fraction": (set_col("madrs_baseline", 30.5, slice(0, 1)), ()),
    "score-out-of-range": (set_col("madrs_baseline", 99, slice(0, 1)), ()),
    "score-text": (set_col("qids_24h", "ten", slice(0, 1)), ()),
    "score-inf": (set_col("qids_24h", "inf", slice(0, 1)), ()),
    "baseline-missing": (set_col("madrs_baseline", np.nan, slice(0, 1)), ()),
    # (an outcome with one of its two columns is a warning naming it, and the
    # other outcomes are analysed: tests/test_names.py)
    "no-outcome": (lambda p, r: (p.drop(columns=["qids_24h", "qids_baseline",
                                                 "madrs_24h", "madrs_baseline"]),
                                 r), ()),
    "no-complete-case": (set_col("madrs_24h", np.nan), ()),
    "arm-too-small": (lambda p, r: (p, r[~r.participant_id.isin(
        p.participant_id[p.group == "saline"].iloc[2:])]), ()),
    "md-text": (set_md("big"), ()),
    "md-empty": (set_md(np.nan), ()),
    "md-inf": (set_md(np.inf), ()),
    "md-negative": (set_md(-8e-4), ()),
    "md-zero": (set_md(0.0), ()),
    "md-mixed-units": (set_md(800.0), ()),
    "md-in-um2": (lambda p, r: r.__setitem__("md", r["md"] * 1e6), ()),
    "unknown-session": (lambda p, r: r.__setitem__("session", r["session"].replace(
        "24h", "day1")), ()),
    "duplicate-scan": (lambda p, r: (p, pd.concat([r, r.iloc[:1]])), ()),
    "subject-only-in-roi-md": (lambda p, r: (p.iloc[1:], r), ()),
    "subject-only-in-participants": (lambda p, r: (p, r[r.participant_id !=
                                                        p.participant_id[0]]), ()),
    "column-roi": (set_col("roi", "x"), ()),
    "column-md_baseline": (set_col("md_baseline", 1.0), ()),
    "column-md_24h": (set_col("md_24h", 1.0), ()),
    "column-d_md_pct": (set_col("d_md_pct", 1.0), ()),
    "column-d_madrs": (set_col("d_madrs", 1.0), ()),
    "covariate-unknown": (lambda p, r: None, ("--covariates", "weight")),
    "covariate-C-hides-patsy": (set_col("C", 1.0), ("--covariates", "C")),
    "covariate-repeated": (lambda p, r: None, ("--covariates", "age", "age")),
    "replicate-missing": (lambda p, r: None, ("--replicate", "3")),
    "replicate-one-table": (lambda p, r: (p.assign(replicate=1), r), ()),
    "md-unit-unknown": (lambda p, r: None, ("--md-unit", "furlongs")),
    "families-unknown": (lambda p, r: None, ("--families", "site")),
})


@case("analyze-missing-folder")
def _(w):
    return analyze(w, w / "nope")


@case("analyze-missing-roi-md")
def _(w):
    d = tables(w, lambda p, r: None)
    (d / "roi_md.tsv").unlink()
    return analyze(w, d)


@case("analyze-empty-participants")
def _(w):
    d = tables(w, lambda p, r: None)
    (d / "participants.tsv").write_text("")
    return analyze(w, d)


@case("analyze-comma-separated")
def _(w):
    d = tables(w, lambda p, r: None)
    p = pd.read_csv(d / "participants.tsv", sep="\t")
    p.to_csv(d / "participants.tsv", index=False)
    return analyze(w, d)


@case("analyze-binary-table")
def _(w):
    d = tables(w, lambda p, r: None)
    (d / "roi_md.tsv").write_bytes(bytes(range(256)) * 4)
    return analyze(w, d)


@case("analyze-participants-is-fifo")
def _(w):
    d = tables(w, lambda p, r: None)
    (d / "participants.tsv").unlink()
    os.mkfifo(d / "participants.tsv")
    return analyze(w, d)


@case("analyze-out-is-folder")
def _(w):
    return ["analyze", w / "cohort", "--out", w / "existing"]


@case("analyze-out-collides-with-figures")
def _(w):
    return ["analyze", w / "cohort", "--out", w / "coll" / "forest.png",
            "--figures", w / "coll"]


@case("analyze-figures-is-a-file")
def _(w):
    return ["analyze", w / "cohort", "--out", w / "res" / "r.tsv", "--figures",
            w / "design.toml"]


@case("analyze-out-exists")
def _(w):
    return ["analyze", w / "cohort", "--out", w / "existing" / "notes.txt"]


@case("analyze-force-over-users-file")
def _(w):
    return ["analyze", w / "cohort", "--out", w / "existing" / "notes.txt",
            "--force"]


@case("analyze-force-figures-over-users-folder-file")
def _(w):
    (w / "existing" / "figures" / "forest.png").write_bytes(b"user's own forest")
    return ["analyze", w / "cohort", "--out", w / "res" / "r.tsv", "--figures",
            w / "existing" / "figures", "--force"]


@case("analyze-force-out-is-input")
def _(w):
    return ["analyze", w / "existing", "--out", w / "existing" / "roi_md.tsv",
            "--force"]


@case("analyze-force-out-is-fifo")
def _(w):
    return ["analyze", w / "cohort", "--out", fifo(w, "r.tsv"), "--force"]


# --- power and reproduce
cases("power", lambda w, a: power(w, *a), {
    "replicates-zero": ["--replicates", "0"],
    "replicates-negative": ["--replicates", "-1"],
    "replicates-text": ["--replicates", "lots"],
    "replicates-huge": ["--replicates", str(10**13)],
    "n-huge": ["--n", str(10**13)],
    "alpha-zero": ["--alpha", "0"],
    "alpha-one": ["--alpha", "1"],
    "alpha-nan": ["--alpha", "nan"],
    "alpha-negative": ["--alpha", "-0.05"],
    "n-jobs-zero": ["--n-jobs", "0"],
    "n-jobs-negative": ["--n-jobs", "-2"],
    "chunk-size-zero": ["--chunk-size", "0"],
    "curve-n-inf": ["--curve", "n=inf"],
    "curve-n-1e300": ["--curve", "n=1e300"],
    "curve-n-fraction": ["--curve", "n=40.7"],
    "curve-n-nan": ["--curve", "n=nan"],
    "curve-n-huge": ["--curve", f"n={10**12}"],
    "curve-n-negative": ["--curve", "n=-40"],
    "curve-range-inf": ["--curve", "n=40:inf:20"],
    "curve-range-backwards": ["--curve", "n=200:40:20"],
    "curve-range-zero-step": ["--curve", "n=40:200:0"],
    "curve-range-too-many": ["--curve", "n=1:1e9:1"],
    "curve-range-two-parts": ["--curve", "n=40:200"],
    "curve-empty": ["--curve", "n="],
    "curve-unknown-parameter": ["--curve", "size=40,60"],
    "curve-no-equals": ["--curve", "n"],
    "curve-text": ["--curve", "n=forty"],
    "curve-ratio-inf": ["--curve", "ratio=inf"],
    "curve-ratio-zero": ["--curve", "ratio=0"],
    "curve-effect-nan": ["--curve", "effect=nan"],
    "curve-reliability-two": ["--curve", "reliability=2"],
    "curve-cv-negative": ["--curve", "cv=-0.01"],
    "target-power-zero": ["--target-power", "0"],
    "target-power-one": ["--target-power", "1"],
    "target-power-nan": ["--target-power", "nan"],
    "target-power-text": ["--target-power", "high"],
    "test-without-target": ["--test", "L_BA10:madrs:interaction"],
    "test-malformed": ["--target-power", "0.8", "--test", "L_BA10-madrs"],
    "test-unknown-roi": ["--target-power", "0.8", "--test", "L_BA11:madrs:interaction"],
    "test-unknown-term": ["--target-power", "0.8", "--test", "L_BA10:madrs:slope"],
    "n-max-zero": ["--target-power", "0.8", "--n-max", "0"],
    "n-max-huge": ["--target-power", "0.8", "--n-max", str(10**13)],
    "family-malformed": ["--family", "L_BA10:madrs:interaction"],
    "family-unknown-outcome": ["--family", "f=L_BA10:hamd:interaction"],
})
cases("reproduce", lambda w, a: ["reproduce", "--replicates", "64", "--quiet",
                                 "--out", w / "rp", *a], {
    "replicates-zero": ["--replicates", "0"],
    "alpha-two": ["--alpha", "2"],
    "n-jobs-abbreviated-as-n": ["--n", str(10**14)],
    "seed-text": ["--seed", "x"],
})


@case("reproduce-design-not-toml")
def _(w):
    return ["reproduce", "--quiet", "--design", text_file(w, "r.toml", "[[["),
            "--out", w / "rp"]


@case("power-out-exists")
def _(w):
    return [*POWER, "--seed", "1", "--out", w / "existing"]


@case("power-force-design-is-output")
def _(w):
    return [*POWER, "--design", w / "existing" / "design.toml", "--out",
            w / "existing", "--force"]


# --- fit-tensor
BVALS, BVECS = protocol()
cases("fit-tensor", lambda w, f: f(w), {
    "dwi-missing": lambda w: fit_args(w, dwi=w / "nope.nii.gz"),
    "dwi-folder": lambda w: fit_args(w, dwi=w / "dwi"),
    "dwi-text": lambda w: fit_args(w, dwi=text_file(w, "t.nii.gz", "hello")),
    "dwi-empty": lambda w: fit_args(w, dwi=text_file(w, "e.nii.gz", b"")),
    "dwi-fifo": lambda w: fit_args(w, dwi=fifo(w, "f.nii.gz")),
    "dwi-truncated-gz": lambda w: fit_args(w, dwi=save_nifti(
        w / "bad" / "t.nii.gz", dwi_data(), cut=-300)),
    "dwi-truncated-gz-header": lambda w: fit_args(w, dwi=save_nifti(
        w / "bad" / "t.nii.gz", dwi_data(), cut=200)),
    "dwi-corrupt-gz": lambda w: fit_args(w, dwi=text_file(
        w, "c.nii.gz", (w / "dwi" / "dwi.nii.gz").read_bytes()[:400]
        + b"\x00garbage" * 100)),
    "dwi-truncated-nii": lambda w: fit_args(w, dwi=save_nifti(
        w / "bad" / "t.nii", dwi_data(), cut=2000)),
    "dwi-header-lies-shape": lambda w: fit_args(w, dwi=save_nifti(
        w / "bad" / "l.nii.gz", dwi_data(), dim=[4, 30000, 30000, 30000, 70, 1, 1,
                                                  1])),
    "dwi-header-lies-shape-nii": lambda w: fit_args(w, dwi=save_nifti(
        w / "bad" / "l.nii", dwi_data(), dim=[4, 200, 200, 200, 70, 1, 1, 1])),
    "dwi-nan-affine": lambda w: fit_args(w, dwi=save_nifti(
        w / "bad" / "n.nii.gz", dwi_data(), sform_code=1, qform_code=0,
        srow_x=[math.nan, 0, 0, 0])),
    "dwi-nan-affine-no-mask": lambda w: fit_args(w, mask=False, dwi=save_nifti(
        w / "bad" / "n.nii.gz", dwi_data(), sform_code=1, qform_code=0,
        srow_x=[math.nan, 0, 0, 0])),
    "dwi-nan-quaternion-no-mask": lambda w: fit_args(w, mask=False, dwi=save_nifti(
        w / "bad" / "n.nii.gz", dwi_data(), sform_code=0, qform_code=1,
        quatern=[math.nan, 0, 0, 0, 0, 0])),
    "dwi-nan-pixdim": lambda w: fit_args(w, dwi=save_nifti(
        w / "bad" / "n.nii.gz", dwi_data(), sform_code=0, qform_code=0,
        pixdim=[1, math.nan, 3, 3, 1, 1, 1, 1])),
    "dwi-3d": lambda w: fit_args(w, dwi=save_nifti(w / "bad" / "3.nii.gz",
                                                  dwi_data()[..., 0])),
    "dwi-all-nan": lambda w: fit_args(w, dwi=save_nifti(
        w / "bad" / "n.nii.gz", np.full((*DWI_SHAPE, 70), np.nan, np.float32))),
    "bval-missing": lambda w: fit_args(w, bval=w / "nope.bval"),
    "bval-text": lambda w: fit_args(w, bval=text_file(w, "x.bval", "zero 1000\n")),
    "bval-empty": lambda w: fit_args(w, bval=text_file(w, "x.bval", "")),
    "bval-binary": lambda w: fit_args(w, bval=text_file(w, "x.bval", b"\xff\xfe")),
    "bval-table": lambda w: fit_args(w, bval=text_file(
        w, "x.bval", "0 1000\n1000 0\n")),
    "bval-negative": lambda w: fit_args(w, bval=gradients(
        w, np.where(BVALS > 0, -1000, 0), BVECS)[0]),
    "bval-nan": lambda w: fit_args(w, bval=gradients(
        w, np.where(BVALS > 0, np.nan, 0), BVECS)[0]),
    "bval-si-units": lambda w: fit_args(w, bval=gradients(w, BVALS * 1e6,
                                                          BVECS)[0]),
    "bval-absurd": lambda w: fit_args(w, bval=gradients(w, BVALS * 1e12,
                                                        BVECS)[0]),
    "bval-count": lambda w: fit_args(w, bval=gradients(w, BVALS[:-1],
                                                       BVECS[:-1])[0]),
    "bvec-nan-dw": lambda w: fit_args(w, bvec=gradients(
        w, BVALS, np.where((BVALS > 0)[:, None], np.nan, BVECS))[1]),
    "bvec-zero-dw": lambda w: fit_args(w, bvec=gradients(
        w, BVALS, np.zeros_like(BVECS))[1]),
    "bvec-shape": lambda w: fit_args(w, bvec=text_file(w, "x.bvec", "1 0\n0 1\n")),
    "bvec-collinear": lambda w: fit_args(w, bvec=gradients(
        w, BVALS, np.where((BVALS > 0)[:, None], [1.0, 0, 0], 0.0))[1]),
    "single-shell-no-b0": lambda w: fit_args(w, bval=gradients(
        w, np.full(70, 1000.0), np.where((BVALS > 0)[:, None], BVECS,
                                         [0, 0, 1.0]))[0],
        bvec=w / "bad" / "g.bvec"),
    "b0-threshold-negative": lambda w: fit_args(w, extra=["--b0-threshold", "-1"]),
    "b0-threshold-nan": lambda w: fit_args(w, extra=["--b0-threshold", "nan"]),
    "method-unknown": lambda w: fit_args(w, extra=["--method", "nls"]),
    "out-is-folder": lambda w: fit_args(w, out=str(w / "existing") + "/"),
    "out-exists": lambda w: fit_args(w, out=text_file(
        w, "sub_MD.nii.gz", "the user's file").with_name("sub")),
    "out-exists-force": lambda w: fit_args(w, out=text_file(
        w, "sub_MD.nii.gz", "the user's file").with_name("sub"), extra=["--force"]),
})


def _fit_with_mask(w, mask_path):
    args = fit_args(w)
    args[args.index("--mask") + 1] = mask_path
    return args


cases("fit-tensor-mask", lambda w, f: _fit_with_mask(w, f(w)), {
    "missing": lambda w: w / "nope.nii.gz",
    "shape": lambda w: save_nifti(w / "bad" / "m.nii.gz",
                                  np.ones((4, 5, 4), np.uint8)),
    "affine": lambda w: save_nifti(w / "bad" / "m.nii.gz",
                                   np.ones(DWI_SHAPE, np.uint8), np.eye(4)),
    "empty": lambda w: save_nifti(w / "bad" / "m.nii.gz",
                                  np.zeros(DWI_SHAPE, np.uint8)),
    "nan": lambda w: save_nifti(w / "bad" / "m.nii.gz",
                                np.full(DWI_SHAPE, np.nan, np.float32)),
    "truncated": lambda w: save_nifti(w / "bad" / "m.nii.gz",
                                      np.ones(DWI_SHAPE, np.uint8), cut=-20),
    "nan-affine": lambda w: save_nifti(
        w / "bad" / "m.nii.gz", np.ones(DWI_SHAPE, np.uint8), sform_code=1,
        qform_code=0, srow_y=[0, math.inf, 0, 0]),
})


@case("fit-tensor-force-output-is-input")
def _(w):
    # the mask is called x_MD.nii.gz and the prefix x: the MD map would replace it
    src = w / "dwi" / "mask.nii.gz"
    m = w / "bad" / "x_MD.nii.gz"
    shutil.copy(src, m)
    args = _fit_with_mask(w, m)
    args[args.index("--out") + 1] = w / "bad" / "x"
    return [*args, "--force"]


# --- extract
cases("extract", lambda w, f: f(w), {
    # (--out may name a folder: roi_md.tsv is written into it)
    "out-existing-folder": lambda w: extract_args(w, out=w / "existing"),
    "out-fifo-force": lambda w: extract_args(w, out=fifo(w, "o.tsv"),
                                             extra=["--force"]),
    "out-is-a-map-force": lambda w: extract_args(
        w, out=w / "img" / "sub-01_ses-24h_MD.nii.gz", extra=["--force"]),
    "out-is-the-lut-force": lambda w: extract_args(w, out=w / "img" / "lut.tsv",
                                                   extra=["--force"]),
    "out-users-file-force": lambda w: extract_args(
        w, out=w / "existing" / "notes.txt", extra=["--force"]),
    "no-maps": lambda w: ["extract", "--labels", w / "img" / "atlas.nii.gz",
                          "--out", w / "ex" / "r.tsv"],
    "labels-missing": lambda w: extract_args(w, labels=w / "nope.nii.gz"),
    "labels-text": lambda w: extract_args(w, labels=text_file(w, "a.nii.gz", "x")),
    "labels-4d": lambda w: extract_args(w, labels=save_nifti(
        w / "bad" / "a.nii.gz", np.ones((*SHAPE, 2), np.int16))),
    "labels-fraction": lambda w: extract_args(w, labels=save_nifti(
        w / "bad" / "a.nii.gz", atlas_array().astype(np.float32) + 0.5)),
    "labels-nan": lambda w: extract_args(w, labels=save_nifti(
        w / "bad" / "a.nii.gz", np.where(atlas_array() == 1, np.nan,
                                         atlas_array()).astype(np.float32))),
    "labels-negative": lambda w: extract_args(w, labels=save_nifti(
        w / "bad" / "a.nii.gz", -atlas_array())),
    "labels-huge-not-in-lut": lambda w: extract_args(w, labels=save_nifti(
        w / "bad" / "a.nii.gz", np.where(atlas_array() == 7, 2**40,
                                         atlas_array()).astype(np.int64))),
    "labels-huge-float": lambda w: extract_args(w, labels=save_nifti(
        w / "bad" / "a.nii.gz", np.where(atlas_array() == 7, 1e30,
                                         atlas_array()).astype(np.float32))),
    "labels-truncated": lambda w: extract_args(w, labels=save_nifti(
        w / "bad" / "a.nii.gz", atlas_array(), cut=-10)),
    "labels-nan-affine": lambda w: extract_args(w, labels=save_nifti(
        w / "bad" / "a.nii.gz", atlas_array(), sform_code=1, qform_code=0,
        srow_z=[0, 0, math.nan, 0])),
    "labels-header-lies": lambda w: extract_args(w, labels=save_nifti(
        w / "bad" / "a.nii.gz", atlas_array(), dim=[3, 30000, 30000, 30000, 1, 1,
                                                    1, 1])),
    "labels-not-in-lut": lambda w: extract_args(w, labels=save_nifti(
        w / "bad" / "a.nii.gz", np.where(atlas_array() == 7, 9, atlas_array()))),
    "lut-missing-column": lambda w: extract_args(w, lut=text_file(
        w, "l.tsv", "label\tname\n1\tL_BA10\n")),
    "lut-name-padded": lambda w: extract_args(w, lut=text_file(
        w, "l.tsv", "index\tname\n" + "".join(
            f"{i}\t roi{i} \n" for i in range(1, 8)))),
    "lut-duplicate-index": lambda w: extract_args(w, lut=text_file(
        w, "l.tsv", "index\tname\n1\tL_BA10\n1\tR_BA10\n")),
    "lut-fraction-index": lambda w: extract_args(w, lut=text_file(
        w, "l.tsv", "index\tname\n1.5\tL_BA10\n")),
    "map-missing": lambda w: extract_args(w, w / "img" / "sub-02_ses-24h_MD.nii.gz"),
    "map-text": lambda w: extract_args(w, text_file(
        w, "sub-02_ses-24h_MD.nii.gz", "not an image")),
    "map-truncated": lambda w: extract_args(w, save_nifti(
        w / "bad" / "sub-02_ses-24h_MD.nii.gz", md_map(3), cut=-40)),
    "map-truncated-nii": lambda w: extract_args(w, save_nifti(
        w / "bad" / "sub-02_ses-24h_MD.nii", md_map(3), cut=600)),
    "map-header-lies": lambda w: extract_args(w, save_nifti(
        w / "bad" / "sub-02_ses-24h_MD.nii.gz", md_map(3),
        dim=[3, 30000, 30000, 30000, 1, 1, 1, 1])),
    "map-nan-affine": lambda w: extract_args(w, save_nifti(
        w / "bad" / "sub-02_ses-24h_MD.nii.gz", md_map(3), sform_code=1,
        qform_code=0, srow_x=[math.nan] * 4)),
    "map-zero-pixdim": lambda w: extract_args(w, save_nifti(
        w / "bad" / "sub-02_ses-24h_MD.nii.gz", md_map(3), sform_code=0,
        qform_code=0, pixdim=[1, 0, 0, 0, 1, 1, 1, 1])),
    "map-4d": lambda w: extract_args(w, save_nifti(
        w / "bad" / "sub-02_ses-24h_MD.nii.gz", np.ones((*SHAPE, 3), np.float32))),
    "map-grid": lambda w: extract_args(w, save_nifti(
        w / "bad" / "sub-02_ses-24h_MD.nii.gz", md_map(3)[:, :, :5])),
    "map-affine": lambda w: extract_args(w, save_nifti(
        w / "bad" / "sub-02_ses-24h_MD.nii.gz", md_map(3), np.eye(4))),
    "map-all-nan-roi": lambda w: extract_args(w, save_nifti(
        w / "bad" / "sub-02_ses-24h_MD.nii.gz", np.where(
            atlas_array() == 2, np.nan, md_map(3)).astype(np.float32))),
    "map-all-inf-roi": lambda w: extract_args(w, save_nifti(
        w / "bad" / "sub-02_ses-24h_MD.nii.gz", np.where(
            atlas_array() == 2, np.inf, md_map(3)).astype(np.float32))),
    "map-no-ids": lambda w: extract_args(w, save_nifti(w / "bad" / "md.nii.gz",
                                                      md_map(3))),
    "map-session-off-schedule": lambda w: extract_args(w, save_nifti(
        w / "bad" / "sub-02_ses-week1_MD.nii.gz", md_map(3)),
        extra=["--visits", w / "cohort" / "visits.tsv"]),
    "map-duplicate": lambda w: extract_args(
        w, w / "img" / "sub-01_ses-24h_MD.nii.gz", save_nifti(
            w / "bad" / "sub-01" / "sub-01_ses-24h_MD.nii.gz", md_map(3))),
    "mapping-missing-column": lambda w: ["extract", "--labels",
                                         w / "img" / "atlas.nii.gz", "--mapping",
                                         text_file(w, "m.tsv", "file\tid\n"),
                                         "--out", w / "ex" / "r.tsv"],
    "mapping-unlisted-map": lambda w: extract_args(w, extra=["--mapping", text_file(
        w, "m.tsv", "path\tparticipant_id\tsession\nother.nii.gz\t1\tbaseline\n")]),
})

# --- demo
cases("demo", lambda w, a: ["demo", "--quiet", *a], {
    "replicates-small": ["--replicates", "50", "--out", "/nonexistent-demo"],
    "seed-negative": ["--seed", "-1", "--out", "/nonexistent-demo"],
    "dwi-subjects-many": ["--dwi-subjects", "11", "--out", "/nonexistent-demo"],
    "curve-replicates-zero": ["--curve-replicates", "0", "--out",
                              "/nonexistent-demo"],
})


@case("demo-out-is-a-file")
def _(w):
    return ["demo", "--quiet", "--replicates", "100", "--curve-replicates", "100",
            "--out", w / "design.toml"]


@case("demo-force-over-users-report")
def _(w):
    (w / "existing" / "report.html").write_text("<p>my own report</p>")
    return ["demo", "--quiet", "--replicates", "100", "--curve-replicates", "100",
            "--out", w / "existing", "--force"]


# ------------------------------------------------------------------------ the test


@pytest.fixture(autouse=True)
def _no_hang():
    """A case that blocks (reading a FIFO, say) fails instead of hanging."""
    def hung(signum, frame):
        raise TimeoutError("the command hung for 120 s")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def test_enough_cases():
    assert len(CASES) >= 150, len(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_one_line_exit_2_nothing_changed(world, name):
    argv = CASES[name](world)
    root = world.parent
    before = tree(root)
    code, _, err = quiet_main(argv)
    assert code == 2, (code, err)
    assert err.count("\n") == 1, err
    assert "Traceback" not in err and err.startswith("dtitool"), err
    assert tree(root) == before
    assert not os.path.exists("/nonexistent-demo")
