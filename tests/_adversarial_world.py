"""A small world of inputs and outputs for the adversarial tests.

Built with the command line itself and with nibabel, so that the same tests run
against any checkout of dtitool (``PYTHONPATH=... pytest tests/test_adversarial.py``).
Not a conftest: imported by the adversarial test modules.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import struct
from pathlib import Path

import nibabel as nib
import numpy as np

from dtitool.cli import main

ROIS = ("L_BA10", "R_BA10", "L_amygdala", "R_amygdala", "L_hippocampus",
        "R_hippocampus", "vACC")
AFFINE = np.diag([-3.0, 3.0, 3.0, 1.0])
AFFINE[:3, 3] = [10, -20, -10]
SHAPE = (8, 7, 6)
DWI_SHAPE = (4, 5, 3)

# NIfTI-1 header fields: (byte offset, struct format)
FIELDS = {
    "dim": (40, "<8h"),
    "datatype": (70, "<h"),
    "bitpix": (72, "<h"),
    "pixdim": (76, "<8f"),
    "vox_offset": (108, "<f"),
    "scl_slope": (112, "<f"),
    "scl_inter": (116, "<f"),
    "qform_code": (252, "<h"),
    "sform_code": (254, "<h"),
    "quatern": (256, "<6f"),
    "srow_x": (280, "<4f"),
    "srow_y": (296, "<4f"),
    "srow_z": (312, "<4f"),
}


def child_pids(pid: int) -> set[int]:
    """Process ids of the children of ``pid`` (Linux: /proc/PID/task/*/children)."""
    out = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out |= {int(x) for x in (task / "children").read_text().split()}
        except OSError:
            pass
    return out


def quiet_main(argv) -> tuple[int, str, str]:
    """Run the command line; return (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def atlas_array() -> np.ndarray:
    lab = np.zeros(SHAPE, dtype=np.int16)
    for n in range(7):
        lab[n, 1 + n % 3: 4 + n % 3, 1: 3 + n % 4] = n + 1
    return lab


def md_map(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.uniform(0.6e-3, 1.0e-3, SHAPE).astype(np.float32)


def nifti_bytes(data, affine=AFFINE, **fields) -> bytes:
    """Uncompressed NIfTI-1 bytes of ``data``, header fields patched as given."""
    data = np.asarray(data)
    raw = bytearray(nib.Nifti1Image(data, affine, dtype=data.dtype).to_bytes())
    for name, value in fields.items():
        off, fmt = FIELDS[name]
        vals = value if isinstance(value, list | tuple) else [value]
        struct.pack_into(fmt, raw, off, *vals)
    return bytes(raw)


def save_nifti(path: Path, data, affine=AFFINE, *, gz=None, cut=None,
               **fields) -> Path:
    """Write ``data`` as NIfTI (gzip if the name ends .gz), optionally patched
    header fields and/or cut to ``cut`` bytes (a truncated download)."""
    raw = nifti_bytes(data, affine, **fields)
    gz = str(path).endswith(".gz") if gz is None else gz
    blob = gzip.compress(raw, mtime=0) if gz else raw
    if cut is not None:
        blob = blob[:cut] if cut >= 0 else blob[:len(blob) + cut]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(blob)
    return path


def protocol():
    """A 70-volume single-shell protocol (6 b0 + 64 directions)."""
    k = 70
    b0 = np.zeros(k, bool)
    b0[np.round(np.arange(6) * k / 6).astype(int)] = True
    i = np.arange(64, dtype=float)
    z = 1.0 - (i + 0.5) / 64
    r = np.sqrt(1 - z * z)
    phi = i * np.pi * (3.0 - np.sqrt(5.0))
    g = np.zeros((k, 3))
    g[~b0] = np.column_stack([r * np.cos(phi), r * np.sin(phi), z])
    return np.where(b0, 0.0, 1000.0), g


def write_gradients(folder: Path, bvals, bvecs, stem="dwi"):
    (folder / f"{stem}.bval").write_text(" ".join(f"{b:.10g}" for b in bvals) + "\n")
    (folder / f"{stem}.bvec").write_text(
        "\n".join(" ".join(f"{v:.10g}" for v in row) for row in np.asarray(bvecs).T)
        + "\n")


def dwi_data(seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    bvals, bvecs = protocol()
    n = int(np.prod(DWI_SHAPE))
    md = rng.uniform(0.6e-3, 0.9e-3, n)
    g = np.where((bvals > 0)[:, None], bvecs, 0)
    # a slightly anisotropic tensor per voxel: D = md * I + small xx excess
    adc = md[:, None] + 0.2e-3 * (g[None, :, 0] ** 2 - 1 / 3)
    s = 1000.0 * np.exp(-bvals[None, :] * adc)
    return s.reshape(*DWI_SHAPE, -1).astype(np.float32)


def build_world(w: Path) -> None:
    """Create every input the cases start from, and an existing output folder."""
    w.mkdir(parents=True, exist_ok=True)
    for seed, name in ((1, "cohort"), (2, "existing")):
        code, _, err = quiet_main(["simulate", "--seed", str(seed), "--n", "20",
                                   "--out", str(w / name)])
        assert code == 0, err
    (w / "existing" / "notes.txt").write_text("the user's own notes\n")
    (w / "existing" / "figures").mkdir()
    (w / "existing" / "figures" / "mine.png").write_bytes(b"\x89PNG user figure")
    (w / "design.toml").write_text((w / "cohort" / "design.toml").read_text())
    # images: atlas, lookup table, two MD maps
    save_nifti(w / "img" / "atlas.nii.gz", atlas_array())
    (w / "img" / "lut.tsv").write_text(
        "index\tname\n" + "".join(f"{i + 1}\t{r}\n" for i, r in enumerate(ROIS)))
    for s, ses in enumerate(("baseline", "24h")):
        save_nifti(w / "img" / f"sub-01_ses-{ses}_MD.nii.gz", md_map(s))
    # a DWI with its gradient table and mask
    save_nifti(w / "dwi" / "dwi.nii.gz", dwi_data())
    write_gradients(w / "dwi", *protocol())
    mask = np.zeros(DWI_SHAPE, np.uint8)
    mask[1:3, 1:4, :] = 1
    save_nifti(w / "dwi" / "mask.nii.gz", mask, AFFINE)
    (w / "bad").mkdir()


def fit_args(w: Path, *, dwi=None, bval=None, bvec=None, out=None, extra=(),
             mask=True):
    d = w / "dwi"
    return ["fit-tensor", dwi or d / "dwi.nii.gz", "--bval", bval or d / "dwi.bval",
            "--bvec", bvec or d / "dwi.bvec",
            *(["--mask", d / "mask.nii.gz"] if mask else []),
            "--out", out or w / "fit" / "sub-01", *extra]


def extract_args(w: Path, *maps, labels=None, lut=None, out=None, extra=()):
    i = w / "img"
    maps = maps or (i / "sub-01_ses-baseline_MD.nii.gz", i / "sub-01_ses-24h_MD.nii.gz")
    return ["extract", "--labels", labels or i / "atlas.nii.gz", "--lut",
            lut or i / "lut.tsv", "--out", out or w / "ex" / "roi_md.tsv", *extra,
            *maps]

