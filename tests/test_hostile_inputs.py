"""Hostile inputs that must be read within bounds, and the promises as written.

Bounded reading: a gzip bomb, nesting deeper than a parser's stack, a
worker killed mid-run, a Dask scheduler with no workers, a full disk; IDs that
look like missing values, nibabel's own messages, a wrong MD unit in
``extract``, an empty ``--out`` and numbers printed as ``np.int64(...)``.
Every case is answered with exit code 2 (or 0 where the input is valid) and
exactly one line on stderr, never a traceback.
"""

from __future__ import annotations

import importlib.util
import re
import time
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _adversarial_world import (
    AFFINE,
    DWI_SHAPE,
    child_pids,
    dwi_data,
    extract_args,
    fit_args,
    md_map,
    nifti_bytes,
    quiet_main,
    save_nifti,
)

from dtitool import _gzip


def one_error(code: int, err: str) -> str:
    """Assert exit 2 with exactly one stderr line, no traceback; return it."""
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1, err
    assert "Traceback" not in err and "np.int64(" not in err and "np.float64(" \
        not in err, err
    return lines[0]


# ------------------------------------------------------------------ gzip bombs

BACKENDS = ("zlib", "zlib-ng", "isal")


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    """Inflate with one gzip library (the others hidden), or skip if absent."""
    name = request.param
    module = {"zlib-ng": "zlib_ng", "isal": "isal"}.get(name)
    if module and importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")
    if name != "zlib-ng":
        monkeypatch.setattr(_gzip, "_zlib_ng", lambda: None)
    if name != "isal":
        monkeypatch.setattr(_gzip, "_isal", lambda: None)
    expected = {"zlib": "zlib", "zlib-ng": "zlib_ng.zlib_ng",
                "isal": "isal.isal_zlib"}[name]
    assert _gzip._inflater().__name__ == expected
    return name


def _zero_member(size: int) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    return c.compress(bytes(size)) + c.flush()


_MB = 1 << 20


def bomb(path: Path, raw: bytes, *, inflated: int = 200 * _MB,
         members: int = 25) -> Path:
    """``raw`` (a valid NIfTI), then zeros in ``members`` more gzip members up to
    ``inflated`` bytes: a few hundred kB on disk."""
    head = zlib.compressobj(6, zlib.DEFLATED, 31)
    tail = _zero_member(inflated // members) * members if members else b""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(head.compress(raw) + head.flush() + tail)
    return path


def single_member_bomb(path: Path, raw: bytes, extra: int) -> Path:
    """``raw`` followed by ``extra`` zeros, all in one gzip member."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(c.compress(raw) + c.compress(bytes(extra)) + c.flush())
    return path


def _bomb_case(w: Path, where: str) -> tuple[list, Path]:
    if where == "dwi":
        p = bomb(w / "bomb" / "dwi.nii.gz", nifti_bytes(dwi_data()))
        return fit_args(w, dwi=p), p
    if where == "mask":
        mask = np.zeros(DWI_SHAPE, np.uint8)
        mask[1:3, 1:4, :] = 1
        p = bomb(w / "bomb" / "mask.nii.gz", nifti_bytes(mask))
        args = fit_args(w, mask=False)
        args[-2:-2] = ["--mask", p]
        return args, p
    if where == "map":
        p = bomb(w / "bomb" / "sub-01_ses-baseline_MD.nii.gz", nifti_bytes(md_map(0)))
        return extract_args(w, p, w / "img" / "sub-01_ses-24h_MD.nii.gz"), p
    from _adversarial_world import atlas_array

    p = bomb(w / "bomb" / "atlas.nii.gz", nifti_bytes(atlas_array()))
    return extract_args(w, labels=p), p


def _traced_peak(argv) -> tuple[int, tuple]:
    """Peak of the allocations traced by tracemalloc (NumPy's included)."""
    tracemalloc.start()
    try:
        result = quiet_main(argv)
        return tracemalloc.get_traced_memory()[1], result
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("where", ["dwi", "mask", "map", "atlas"])
def test_gzip_bomb_is_refused_quickly_naming_the_file(world, backend, where):
    # 200 MB of zeros after a valid image of a few kB: read no further than
    # the header implies (plus a small slack), whichever library inflates.
    argv, path = _bomb_case(world, where)
    assert path.stat().st_size < 1 * _MB
    # the same command on a missing file: what the command takes anyway
    missing = [str(a).replace(str(path), str(path) + ".missing") for a in argv]
    peak_missing, _ = _traced_peak(missing)
    t = time.perf_counter()
    peak, (code, _, err) = _traced_peak(argv)
    took = time.perf_counter() - t
    line = one_error(code, err)
    assert str(path) in line and "inflates past" in line, line
    assert "gzip bomb" in line
    assert took < 5, f"{took:.1f} s"
    # Allocations stayed far below the 200 MB the file inflates to: within
    # the header's few kB, the chunks of the stream and the 1 MB slack.
    over = peak - peak_missing
    assert over < 16 * _MB, f"traced peak {over / _MB:.0f} MB above a missing file"
    assert not (world / "fit").exists() and not (world / "ex").exists()


def test_single_member_bomb_and_extension_bomb(tmp_path, backend):
    from dtitool.imaging.nifti import load_nifti, read_data

    raw = nifti_bytes(md_map(0))
    one = single_member_bomb(tmp_path / "one.nii.gz", raw, 50 * _MB)
    img = load_nifti(one, "MD map")
    with pytest.raises(ValueError, match=r"MD map '.*one\.nii\.gz' inflates past"):
        read_data(img, str(one), "MD map")
    # An extension whose size says 2 GB, in a header whose data start 16 bytes
    # after it (vox_offset 368): nibabel would read the 2 GB; the header bounds.
    ext = bytearray(raw[:348]) + b"\x01\0\0\0"
    ext[108:112] = np.float32(368).tobytes()
    ext += np.array([2**31 - 16, 0], "<i4").tobytes()
    bad = single_member_bomb(tmp_path / "ext.nii.gz", bytes(ext), 40 * _MB)
    with pytest.raises(ValueError, match=r"ext\.nii\.gz' inflates past"):
        load_nifti(bad, "atlas")


def test_bounded_reader_reads_what_gzip_reads(tmp_path, backend):
    # Several members, zero padding after the last, backward and forward seeks.
    import gzip

    rng = np.random.default_rng(3)
    data = rng.integers(0, 4, 3 * _MB, dtype=np.uint8).tobytes()
    blob = (gzip.compress(data[:1000], mtime=0) + gzip.compress(data[1000:], mtime=0)
            + bytes(7))
    assert _gzip.decompress(blob, max_size=len(data)) == gzip.decompress(blob[:-7])
    with pytest.raises(_gzip.InflateLimitError):
        _gzip.decompress(blob, max_size=len(data) - 1)
    with pytest.raises(EOFError):
        _gzip.decompress(blob[:len(blob) // 2], max_size=len(data))
    (tmp_path / "x.gz").write_bytes(blob)
    with _gzip.BoundedGzipFile(tmp_path / "x.gz", len(data)) as f:
        f.seek(2 * _MB)
        assert f.read(10) == data[2 * _MB:2 * _MB + 10]
        f.seek(5)
        buf = bytearray(2000)
        assert f.readinto(buf) == 2000 and bytes(buf) == data[5:2005]
        assert f.finish() == len(data)


def test_valid_gzip_images_read_as_before(tmp_path, backend):
    # Multi-member and zero-padded .nii.gz (as pigz or a concatenation makes
    # them) read exactly as nibabel reads them.
    import gzip

    import nibabel as nib

    from dtitool.imaging.nifti import load_nifti, read_data

    raw = nifti_bytes(md_map(4))
    p = tmp_path / "m.nii.gz"
    p.write_bytes(gzip.compress(raw[:500], mtime=0) + gzip.compress(raw[500:], mtime=0)
                  + bytes(3))
    img = load_nifti(p, "MD map")
    got = read_data(img, str(p), "MD map")
    assert np.array_equal(got, md_map(4))
    assert np.array_equal(read_data(img, str(p), "MD map"), got)  # read twice
    assert np.allclose(img.affine, nib.Nifti1Image(md_map(4), AFFINE).affine)


# ----------------------------------------------------------- nesting too deep


@pytest.mark.parametrize("kind", ["array", "inline-table"])
def test_deeply_nested_design_toml_exits_2(world, kind):
    deep = 100_000
    body = ("[" * deep + "1" + "]" * deep if kind == "array"
            else "{a = " * deep + "1" + "}" * deep)
    f = world / "bad" / "deep.toml"
    f.write_text(f"x = {body}\n")
    code, _, err = quiet_main(["simulate", "--design", f, "--out", world / "o"])
    line = one_error(code, err)
    assert str(f) in line and "too deep" in line, line
    assert not (world / "o").exists()


def test_deeply_nested_manifest_exits_2(world):
    # A planted dtitool-run.json nested deeper than Python's parser can go.
    # (Answered by the manifest reader in dtitool/_io.py.)
    out = world / "existing"
    (out / "dtitool-run.json").write_text("[" * 100_000 + "]" * 100_000)
    code, _, err = quiet_main(["simulate", "--seed", "3", "--n", "20", "--out", out,
                               "--force"])
    line = one_error(code, err)
    assert "dtitool-run.json" in line, line


# --------------------------------------------------------- IDs that look missing

LOOKS_MISSING = ["NA", "nan", "NULL", "None", "n/a", "#N/A", "N/A", "null", "NaN",
                 "<NA>", "-nan", "1.#IND"]


def test_ids_that_look_missing_are_text(world):
    from dtitool.tables import read_tables

    p = pd.read_csv(world / "cohort" / "participants.tsv", sep="\t", dtype=str,
                    keep_default_na=False)
    r = pd.read_csv(world / "cohort" / "roi_md.tsv", sep="\t", dtype=str,
                    keep_default_na=False)
    rename = dict(zip(p["participant_id"], LOOKS_MISSING, strict=False))
    p["participant_id"] = p["participant_id"].replace(rename)
    r["participant_id"] = r["participant_id"].replace(rename)
    d = world / "bad" / "ids"
    d.mkdir()
    p.to_csv(d / "participants.tsv", sep="\t", index=False)
    r.to_csv(d / "roi_md.tsv", sep="\t", index=False)
    (d / "design.toml").write_bytes((world / "cohort" / "design.toml").read_bytes())
    parts, roi = read_tables(d)
    assert set(LOOKS_MISSING) <= set(parts["participant_id"])
    assert set(LOOKS_MISSING) <= set(roi["participant_id"])
    code, _, err = quiet_main(["analyze", d, "--out", world / "res" / "r.tsv"])
    assert code == 0, err
    res = pd.read_csv(world / "res" / "r.tsv", sep="\t")
    assert (res["n"] == len(p)).all()  # nobody dropped as "missing"


@pytest.mark.parametrize("empty", ["", "   "])
def test_empty_id_is_still_an_error(world, empty):
    p = pd.read_csv(world / "cohort" / "participants.tsv", sep="\t", dtype=str,
                    keep_default_na=False)
    p.loc[2, "participant_id"] = empty
    d = world / "bad" / "empty-id"
    d.mkdir()
    p.to_csv(d / "participants.tsv", sep="\t", index=False)
    (d / "roi_md.tsv").write_bytes((world / "cohort" / "roi_md.tsv").read_bytes())
    (d / "design.toml").write_bytes((world / "cohort" / "design.toml").read_bytes())
    code, _, err = quiet_main(["analyze", d, "--out", world / "res" / "r.tsv"])
    line = one_error(code, err)
    assert "empty participant_id (row 3)" in line, line


def test_mapping_table_ids_that_look_missing_are_text(world):
    i = world / "img"
    m = world / "bad" / "map.tsv"
    m.write_text("path\tparticipant_id\tsession\n"
                 f"{i / 'sub-01_ses-baseline_MD.nii.gz'}\tNA\tbaseline\n"
                 f"{i / 'sub-01_ses-24h_MD.nii.gz'}\tNA\t24h\n")
    out = world / "ex" / "roi_md.tsv"
    code, _, err = quiet_main(["extract", "--labels", i / "atlas.nii.gz", "--lut",
                               i / "lut.tsv", "--mapping", m, "--out", out])
    assert code == 0, err
    got = pd.read_csv(out, sep="\t", dtype=str, keep_default_na=False)
    assert set(got["participant_id"]) == {"NA"}


# ------------------------------------------------------------ promises as written


@pytest.mark.parametrize("scale", [1e6, 1e3, 1e-6])
def test_extract_wrong_md_unit_is_an_error(world, scale):
    # README: "MD values that look like another unit (um^2/s, 1e-3 mm^2/s) are
    # an error that says which unit was assumed".
    i = world / "bad" / "units"
    maps = [save_nifti(i / f"sub-01_ses-{s}_MD.nii.gz", md_map(k) * scale)
            for k, s in enumerate(("baseline", "24h"))]
    code, _, err = quiet_main(extract_args(world, *maps))
    line = one_error(code, err)
    assert "assumes mm^2/s" in line and "sub-01_ses-baseline_MD" in line, line
    assert not (world / "ex").exists()


@pytest.mark.parametrize("command", ["simulate", "analyze", "power", "reproduce",
                                     "extract", "fit-tensor", "demo"])
@pytest.mark.parametrize("empty", ["", " "])
def test_empty_out_is_refused(world, command, empty, monkeypatch):
    monkeypatch.chdir(world / "bad")
    before = sorted(p.name for p in (world / "bad").iterdir())
    argv = {
        "simulate": ["simulate", "--n", "20"],
        "analyze": ["analyze", world / "cohort"],
        "power": ["power", "--replicates", "10"],
        "reproduce": ["reproduce", "--replicates", "10"],
        "extract": extract_args(world)[:-5] + extract_args(world)[-2:],
        "fit-tensor": fit_args(world)[:-2],
        "demo": ["demo"],
    }[command]
    code, _, err = quiet_main([*argv, "--out", empty])
    line = one_error(code, err)
    assert "--out must name where to write" in line, line
    assert sorted(p.name for p in (world / "bad").iterdir()) == before


@pytest.mark.parametrize("option", ["--figures", "--tipping-point"])
def test_empty_analyze_output_paths_are_refused(world, option, monkeypatch):
    monkeypatch.chdir(world / "bad")
    code, _, err = quiet_main(["analyze", world / "cohort", "--out",
                               world / "res" / "r.tsv", option, ""])
    assert f"{option} must name where to write" in one_error(code, err)


def test_duplicate_lut_index_prints_a_plain_number(world):
    lut = world / "bad" / "lut.tsv"
    lut.write_text("index\tname\n1\tL_BA10\n1\tR_BA10\n")
    code, _, err = quiet_main(extract_args(world, lut=lut))
    line = one_error(code, err)
    assert line.endswith("repeats index 1"), line


# ------------------------------------------------------ workers that never answer


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(),
                    reason="reads /proc for worker processes")
def test_killed_worker_exits_2_and_writes_nothing(tmp_path):
    import os
    import signal
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH") or str(root)}
    out = tmp_path / "power"
    err = tmp_path / "stderr"
    with err.open("w") as fh:
        p = subprocess.Popen(
            # enough trials that the kill lands mid-run on a loaded machine
            # (20,000 took about 3 s under welch: a busy suite could finish first)
            [sys.executable, "-m", "dtitool", "power", "--replicates", "200000",
             "--seed", "1", "--n-jobs", "2", "--out", str(out), "--quiet"],
            env=env, stdout=subprocess.DEVNULL, stderr=fh)
        try:
            t = time.monotonic()
            while len(child_pids(p.pid)) < 2 and time.monotonic() - t < 60:
                time.sleep(0.02)
            time.sleep(0.3)  # inside their first tasks
            kids = sorted(child_pids(p.pid))
            assert len(kids) >= 2, "the pool's workers never started"
            os.kill(kids[-1], signal.SIGKILL)
            p.wait(timeout=60)
        finally:
            if p.poll() is None:
                p.kill()
    line = one_error(p.returncode, err.read_text())
    # the killed worker's SIGKILL is named when the pool still knows it; on a
    # loaded machine the pool has sometimes already replaced its record and
    # only a survivor it ended with SIGTERM is left to report (seen once in
    # each of two full-suite runs): the death and the advice must be there
    assert "a worker process died" in line, line
    assert re.search(r"killed by SIG(KILL|TERM)", line), line
    assert "out of memory" in line
    assert not out.exists()
    assert [q.name for q in tmp_path.iterdir()] == ["stderr"]  # no staging left


@pytest.fixture
def idle_scheduler():
    """A Dask scheduler with no workers (in this process, no worker processes)."""
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(
        n_workers=0, processes=False, dashboard_address=None,
        scheduler_kwargs={"dashboard_address": ":0"}, silence_logs=50)
    try:
        yield cluster.scheduler_address
    finally:
        cluster.close()


def test_scheduler_without_workers_times_out_with_a_message(
        tmp_path, idle_scheduler, monkeypatch):
    monkeypatch.setenv("DTITOOL_DASK_WORKER_TIMEOUT", "1")
    out = tmp_path / "out"
    t = time.monotonic()
    code, _, err = quiet_main(["power", "--replicates", "64", "--seed", "1",
                               "--dask", idle_scheduler, "--out", out])
    took = time.monotonic() - t
    line = one_error(code, err)
    assert "has no workers (waited 1 s)" in line, line
    assert "DTITOOL_DASK_WORKER_TIMEOUT" in line
    assert took < 1 + 8
    assert not out.exists()


@pytest.mark.parametrize("value", ["soon", "-1", "0", "inf"])
def test_bad_worker_timeout_is_named(tmp_path, idle_scheduler, monkeypatch, value):
    monkeypatch.setenv("DTITOOL_DASK_WORKER_TIMEOUT", value)
    code, _, err = quiet_main(["power", "--replicates", "64", "--seed", "1",
                               "--dask", idle_scheduler, "--out", tmp_path / "o"])
    line = one_error(code, err)
    assert "DTITOOL_DASK_WORKER_TIMEOUT must be a positive number" in line, line


# ------------------------------------------------------------ nibabel's messages


class _Seen(__import__("logging").Handler):
    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        self.records.append(record)


@pytest.fixture
def nibabel_log():
    """Records that reach nibabel's own handlers (its stderr line), if any."""
    import logging

    seen = _Seen()
    logger = logging.getLogger("nibabel.global")
    logger.addHandler(seen)
    try:
        yield seen.records
    finally:
        logger.removeHandler(seen)


def _with_sizeof_hdr(path: Path, value: int) -> Path:
    import gzip
    import struct

    gz = path.name.endswith(".gz")
    raw = bytearray(gzip.decompress(path.read_bytes()) if gz else path.read_bytes())
    struct.pack_into("<i", raw, 0, value)
    path.write_bytes(gzip.compress(bytes(raw), mtime=0) if gz else bytes(raw))
    return path


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
@pytest.mark.parametrize(("fields", "expect"), [
    ({"datatype": 9999}, "data code 9999 not recognized"),
    ({"vox_offset": -1000.0}, "vox offset -1000 too low"),
])
@pytest.mark.parametrize("command", ["extract", "fit-tensor"])
def test_nibabel_errors_are_one_dtitool_line(world, nibabel_log, suffix, fields,
                                             expect, command):
    if command == "extract":
        p = save_nifti(world / "h" / f"sub-01_ses-baseline_MD{suffix}", md_map(0),
                       **fields)
        argv = extract_args(world, p, world / "img" / "sub-01_ses-24h_MD.nii.gz")
    else:
        p = save_nifti(world / "h" / f"dwi{suffix}", dwi_data(), **fields)
        argv = fit_args(world, dwi=p)
    code, _, err = quiet_main(argv)
    line = one_error(code, err)
    assert str(p) in line and expect in line, line
    assert nibabel_log == []


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_nibabel_header_fix_is_one_warning_naming_the_file(world, nibabel_log,
                                                           suffix):
    p = _with_sizeof_hdr(save_nifti(world / "h" / f"sub-01_ses-baseline_MD{suffix}",
                                    md_map(0)), 12345)
    code, _, err = quiet_main(extract_args(
        world, p, world / "img" / "sub-01_ses-24h_MD.nii.gz"))
    assert code == 0, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dtitool: warning: MD map ") and str(p) in lines[0]
    assert "sizeof_hdr should be 348" in lines[0]
    assert nibabel_log == []


# ----------------------------------------------------------------- a full disk


@pytest.fixture
def tiny_disk(tmp_path):
    """A 200 kB tmpfs (needs root and mount); skipped where it cannot be made."""
    import os
    import subprocess

    d = tmp_path / "tiny"
    d.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=200k", "tmpfs", str(d)],
                       capture_output=True, check=False)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.decode().strip()}")
    try:
        yield d
    finally:
        subprocess.run(["umount", str(d)], check=False)


def test_full_disk_names_the_output(tiny_disk):
    out = tiny_disk / "sim"
    code, _, err = quiet_main(["simulate", "--seed", "1", "--n", "20",
                               "--replicates", "50", "--out", out])
    line = one_error(code, err)
    assert "No space left on device" in line
    assert str(out) in line, line
    assert not out.exists()
