"""Scale-out: the same bytes here, in worker processes and on Dask; progress lines.

One local Dask cluster (two worker processes) serves the whole module: library
calls get its ``distributed.Client``, command lines its scheduler address or a
scheduler file, so only one test pays for a cluster of its own (``--dask
local``, the headline guarantee, run as a real command in a subprocess).
"""

import contextlib
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dtitool.cli import main
from dtitool.design import load_preset

ROI_NAMES = load_preset("ketamine-rct").roi_names  # the default preset's ROIs

distributed = pytest.importorskip("distributed")

MANIFEST = "dtitool-run.json"  # records the command line: differs by design
STEP_RE = re.compile(r"^step (\d+)/(\d+) (.+) \.\.\. done in (\d+\.\d) s$")
ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def scheduler_file(tmp_path_factory):
    """Where the module's scheduler writes its file (as ``dask scheduler
    --scheduler-file`` does on a cluster)."""
    return tmp_path_factory.mktemp("sched") / "scheduler.json"


@pytest.fixture(scope="module")
def client(scheduler_file):
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
        scheduler_kwargs={"dashboard_address": ":0",
                          "scheduler_file": str(scheduler_file)},
        silence_logs=50)
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


@pytest.fixture(scope="module")
def design():
    return load_preset("ketamine-rct")


def _files(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (but the run manifest): relative path -> bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != MANIFEST}


def _same_files(a: Path, b: Path) -> None:
    fa, fb = _files(a), _files(b)
    assert sorted(fa) == sorted(fb)
    differ = [k for k in fa if fa[k] != fb[k]]
    assert not differ, f"files differ between {a.name} and {b.name}: {differ}"


def _env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.update(extra)
    return env


def _dtitool(*argv, env=None, timeout=120, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dtitool", *map(str, argv)],
                          capture_output=True, text=True, env=env or _env(),
                          timeout=timeout, **kw)


def _step_lines(text: str) -> list[re.Match]:
    lines = [ln for ln in text.splitlines() if ln.startswith("step ")]
    matches = [STEP_RE.match(ln) for ln in lines]
    assert all(matches), f"malformed step line(s): {lines}"
    return matches


def _check_steps(text: str, n: int) -> None:
    """Exactly ``n`` step lines, numbered 1..n of n, each with its time."""
    steps = _step_lines(text)
    assert [(int(m[1]), int(m[2])) for m in steps] == [(i, n) for i in
                                                       range(1, n + 1)], text


# ---------------------------------------------- power: library and command line


def _tables(res) -> list[pd.DataFrame]:
    return [res.table, res.familywise]


def _assert_same_tables(a, b) -> None:
    for x, y in zip(_tables(a), _tables(b), strict=True):
        # exact: DataFrame.equals compares floats bit for bit (NaN == NaN)
        assert x.equals(y), pd.concat([x, y]).drop_duplicates(keep=False)


@pytest.mark.slow  # 2.5-4 s: the default suite stays under 5 minutes
def test_power_same_tables_serial_processes_and_dask(design, client):
    from dtitool.stats.power import power

    kw = {"replicates": 256, "rng": 11, "chunk_size": 64, "size": True,
          "design_analysis": True}
    one = power(design, n_jobs=1, **kw)
    assert one.table["size"].notna().all() and "type_s" in one.table
    _assert_same_tables(one, power(design, n_jobs=2, **kw))
    _assert_same_tables(one, power(design, dask=client, **kw))
    # not the same as another seed: the comparison can fail
    assert not one.table.equals(power(design, n_jobs=1, **{**kw, "rng": 12}).table)


@pytest.mark.slow  # over 6 s: the default suite stays under 5 minutes
def test_power_curve_and_grid_same_on_dask(design, client):
    from dtitool.stats.power import power_curve, power_grid

    kw = {"replicates": 128, "rng": 5, "chunk_size": 64}
    a = power_curve(design, parameter="n", values=[40, 80], n_jobs=1, **kw)
    b = power_curve(design, parameter="n", values=[40, 80], dask=client, **kw)
    c = power_curve(design, parameter="n", values=[40, 80], n_jobs=2, **kw)
    assert a.table.equals(b.table) and a.table.equals(c.table)
    assert a.familywise.equals(b.familywise)
    axes = {"n": [40, 80], "effect": [0.5, 1.0]}
    g1 = power_grid(design, axes=axes, n_jobs=1, **kw)
    g2 = power_grid(design, axes=axes, dask=client, **kw)
    g3 = power_grid(design, axes=axes, n_jobs=2, **kw)
    assert len(g1.table) == 4 * len(g1.table.drop_duplicates(["roi", "outcome",
                                                               "term"]))
    assert g1.table.equals(g2.table) and g1.table.equals(g3.table)


def test_power_on_a_scheduler_file(design, client, scheduler_file):
    from dtitool.stats.power import power

    kw = {"replicates": 128, "rng": 3, "chunk_size": 64}
    _assert_same_tables(power(design, **kw), power(design, dask=str(scheduler_file),
                                                   **kw))


def _marked_pids(mark: str) -> list[int]:
    """Processes whose environment holds ``mark`` (children of a run included)."""
    found = []
    needle = mark.encode()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if needle in (d / "environ").read_bytes():
                found.append(int(d.name))
        except OSError:  # gone, or not ours
            continue
    return found


@pytest.mark.slow  # 2.5-4 s: the default suite stays under 5 minutes
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
def test_cli_power_local_cluster_same_bytes_and_no_workers_left(tmp_path):
    """The headline: --dask local gives power.tsv byte-identical to --n-jobs 1,
    and the cluster's worker processes end with the run."""
    args = ["power", "--replicates", "256", "--seed", "9", "--chunk-size", "64",
            "--quiet"]
    assert main([*args, "--n-jobs", "1", "--out", str(tmp_path / "one")]) == 0
    mark = f"DTITOOL_SCALE_TEST={uuid.uuid4().hex}"
    # Dask's default HTTP port taken (another cluster, a notebook's): no warning
    with socket.socket() as taken:
        with contextlib.suppress(OSError):  # already taken: the same case
            taken.bind(("127.0.0.1", 8787))
            taken.listen()
        r = _dtitool(*args, "--dask", "local", "--n-jobs", "2", "--out",
                     tmp_path / "dask", env=_env(**dict([mark.split("=")])))
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    # stderr: at most the size warning of this design, never a worker's log
    assert "Traceback" not in r.stderr and "distributed" not in r.stderr, r.stderr
    assert len(r.stderr.splitlines()) <= 1, r.stderr
    _same_files(tmp_path / "one", tmp_path / "dask")
    # nanny and worker processes of the run's cluster exit with it
    deadline = time.monotonic() + 10
    while (left := _marked_pids(mark)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"processes of the run still alive: {left}"


# ---------------------------------------------------- images, extraction, fits


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory, client):
    """``simulate --images`` of a small cohort: one process, two workers, Dask."""
    root = tmp_path_factory.mktemp("cohorts")
    args = ["simulate", "--images", "--n", "6", "--seed", "21"]
    out = {}
    for name, extra in (("one", ["--n-jobs", "1"]), ("two", ["--n-jobs", "2"]),
                        ("dask", ["--dask", client.scheduler_info()["address"]])):
        r = _dtitool(*args, *extra, "--out", root / name)
        assert r.returncode == 0, r.stderr
        out[name] = (root / name, r.stdout)
    return out


def test_simulate_images_same_bytes(cohorts):
    one = cohorts["one"][0]
    maps = sorted(one.rglob("*_param-MD_dwimap.nii.gz"))
    assert len(maps) == 6 * 2
    for name in ("two", "dask"):
        _same_files(one, cohorts[name][0])


def test_simulate_images_progress_lines(cohorts):
    for _, stdout in cohorts.values():
        _check_steps(stdout, 2)
        assert "writing MD maps of 12 scans" in stdout


def test_extract_same_bytes(cohorts, tmp_path, scheduler_file, client):
    deriv = cohorts["one"][0] / "derivatives" / "dtitool"
    maps = sorted(str(p) for p in deriv.rglob("*_param-MD_dwimap.nii.gz"))
    atlas = str(deriv / "atlas-dtitool_dseg.nii.gz")
    runs = {"one": ["--n-jobs", "1"], "two": ["--n-jobs", "2"],
            "addr": ["--dask", client.scheduler_info()["address"]],
            "file": ["--dask", str(scheduler_file)]}
    for name, extra in runs.items():
        (tmp_path / name).mkdir()
        code = main(["extract", *maps, "--labels", atlas, "--quiet", *extra,
                     "--out", str(tmp_path / name / "roi_md.tsv")])
        assert code == 0
    t = pd.read_csv(tmp_path / "one" / "roi_md.tsv", sep="\t")
    assert len(t) == 12 * len(ROI_NAMES)
    # the maps hold the simulated ROI means (float32 storage)
    truth = pd.read_csv(cohorts["one"][0] / "roi_md.tsv", sep="\t")
    m = t.merge(truth, on=["participant_id", "session", "roi"])
    assert len(m) == len(t)
    np.testing.assert_allclose(m["md_x"], m["md_y"], rtol=1e-5)
    for name in ("two", "addr", "file"):
        _same_files(tmp_path / "one", tmp_path / name)


@pytest.fixture(scope="module")
def bids(tmp_path_factory):
    """A BIDS-like folder: 2 subjects x 2 sessions of simulated DWI (4 mm grid)."""
    from dtitool.imaging.phantom import make_phantom
    from dtitool.imaging.synthetic import write_cohort_images

    rng = np.random.default_rng(0)
    table = pd.DataFrame(
        [(f"sub-{i:02d}", ses, roi, 0.8e-3 + rng.normal(0, 4e-5))
         for i in (1, 2) for ses in ("baseline", "24h") for roi in ROI_NAMES],
        columns=["participant_id", "session", "roi", "md"])
    src = tmp_path_factory.mktemp("bids") / "src"
    write_cohort_images(None, table, src, rng=4,
                        phantom=make_phantom(roi_names=ROI_NAMES, resolution=4.0),
                        dwi_subjects=2)
    root = src.parent / "study"
    for dwi in sorted(src.rglob("*_dwi.nii")):
        folder = root / dwi.parent.relative_to(src)
        folder.mkdir(parents=True)
        for f in dwi.parent.glob("*_dwi.*"):
            f.rename(folder / f.name)
    return root


@pytest.mark.slow  # over 4 s: the default suite stays under 5 minutes
def test_fit_tensor_bids_same_bytes_and_layout(bids, tmp_path, client,
                                               scheduler_file):
    import nibabel as nib

    runs = {"one": ["--n-jobs", "1"], "two": ["--n-jobs", "2"],
            "dask": ["--dask", client.scheduler_info()["address"]]}
    for name, extra in runs.items():
        assert main(["fit-tensor", "--bids", str(bids), "--out",
                     str(tmp_path / name), "--quiet", *extra]) == 0
    one = tmp_path / "one"
    for name in ("two", "dask"):
        _same_files(one, tmp_path / name)
    prefixes = [f"sub-{s}/ses-{ses}/dwi/sub-{s}_ses-{ses}" for s in ("01", "02")
                for ses in ("24h", "baseline")]
    maps = ("MD", "FA", "AD", "RD", "L1", "L2", "L3", "V1", "V2", "V3", "S0",
            "SSE")
    expected = {"dataset_description.json", "tensor_fits.tsv",
                "tensor_fits.json"} | {
        p + suffix + ext for p in prefixes for ext in (".nii.gz", ".json")
        for suffix in (*(f"_model-DTI_param-{m}_dwimap" for m in maps),
                       "_desc-brain_mask")}
    assert set(_files(one)) == expected
    table = pd.read_csv(one / "tensor_fits.tsv", sep="\t", dtype={"session": str})
    assert list(zip(table["participant_id"], table["session"], strict=True)) == [
        ("sub-01", "24h"), ("sub-01", "baseline"), ("sub-02", "24h"),
        ("sub-02", "baseline")]
    assert (table["voxels_fitted"] > 0).all()
    # each subject-session equals a fit of that DWI alone
    for p in prefixes:
        stem = bids / (p + "_dwi")
        single = tmp_path / "single" / Path(p).name
        assert main(["fit-tensor", f"{stem}.nii", "--bval", f"{stem}.bval",
                     "--bvec", f"{stem}.bvec", "--out", str(single), "--quiet"]) == 0
        pairs = [(f"_{'sse' if m == 'SSE' else m}.nii.gz",
                  f"_model-DTI_param-{m}_dwimap.nii.gz") for m in maps]
        for mine, theirs in (*pairs, ("_mask.nii.gz", "_desc-brain_mask.nii.gz")):
            a = nib.load(f"{single}{mine}")
            b = nib.load(one / (p + theirs))
            np.testing.assert_array_equal(np.asarray(a.dataobj), np.asarray(b.dataobj))
            np.testing.assert_array_equal(a.affine, b.affine)


# ----------------------------------------------------------- Dask not there


def _no_dask_env(tmp_path) -> dict:
    """An environment in which ``import dask`` / ``import distributed`` fail."""
    site = tmp_path / "nodask"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent("""
        import sys

        class _NoDask:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("dask", "distributed"):
                    raise ModuleNotFoundError(f"No module named {name!r}",
                                              name=name)
                return None

        sys.meta_path.insert(0, _NoDask())
    """))
    return _env(PYTHONPATH=os.pathsep.join([str(ROOT), str(site)]))


@pytest.mark.parametrize("command", [
    ["power", "--replicates", "64"],
    ["simulate", "--images", "--n", "6"],
])
def test_dask_not_installed_exits_2_with_the_install_line(tmp_path, command):
    env = _no_dask_env(tmp_path)
    check = subprocess.run([sys.executable, "-c", "import distributed"], env=env,
                           capture_output=True, text=True)
    assert check.returncode != 0  # the simulation works
    out = tmp_path / "out"
    r = _dtitool(*command, "--seed", "1", "--dask", "local", "--out", out, env=env)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert 'pip install "dtitool[dask]"' in lines[0]
    assert "--dask" in lines[0]
    assert not out.exists() or not any(out.iterdir())


def test_default_path_never_imports_dask(tmp_path):
    code = textwrap.dedent(f"""
        import sys
        from dtitool.cli import main
        assert main(["power", "--replicates", "128", "--seed", "1", "--n-jobs",
                     "2", "--quiet", "--out", {str(tmp_path / "p")!r}]) == 0
        print(sorted(m for m in sys.modules
                     if m.split(".")[0] in ("dask", "distributed")))
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=_env(), timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


# ------------------------------------------------ schedulers that are not there


def test_unreachable_scheduler_exits_2_within_the_timeout(tmp_path, capsys,
                                                          monkeypatch):
    from dtitool import _dask

    monkeypatch.setattr(_dask, "CONNECT_TIMEOUT_S", 2)
    out = tmp_path / "out"
    t0 = time.monotonic()
    code = main(["power", "--replicates", "64", "--seed", "1", "--dask",
                 "tcp://127.0.0.1:9", "--out", str(out)])
    took = time.monotonic() - t0
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert "cannot reach the Dask scheduler" in err and "127.0.0.1:9" in err
    assert took < 2 + 8
    assert not out.exists()


def test_refused_scheduler_address_fails_at_once(tmp_path, capsys):
    """Nothing listening at the port: an error now, not after Dask's timeout."""
    import socket

    with socket.socket() as s:  # a port that was free a moment ago
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "out"
    t0 = time.monotonic()
    code = main(["power", "--replicates", "64", "--seed", "1", "--dask",
                 f"tcp://127.0.0.1:{port}", "--out", str(out)])
    took = time.monotonic() - t0
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert f"nothing listens at 127.0.0.1:{port}" in err
    assert took < 5  # the connection timeout is 20 s
    assert not out.exists()


@pytest.mark.parametrize(("content", "match"), [
    (None, "does not exist"),
    ("{}", "no scheduler address"),
    ("not json", "no scheduler address"),
])
def test_bad_scheduler_file_exits_2(tmp_path, capsys, monkeypatch, content, match):
    from dtitool import _dask

    monkeypatch.setattr(_dask, "CONNECT_TIMEOUT_S", 1)
    path = tmp_path / "scheduler.json"
    if content is not None:
        path.write_text(content)
    out = tmp_path / "out"
    t0 = time.monotonic()
    code = main(["power", "--replicates", "64", "--seed", "1", "--dask", str(path),
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert time.monotonic() - t0 < 1 + 8
    assert code == 2, err
    assert len(err.splitlines()) == 1, err
    assert match in err and str(path) in err
    assert not out.exists()


# ------------------------------------------------------------------ bad values


@pytest.mark.parametrize(("extra", "option"), [
    (["--n-jobs", "0"], "--n-jobs"),
    (["--n-jobs", "-5"], "--n-jobs"),
    (["--n-jobs", "x"], "--n-jobs"),
    (["--dask", ""], "--dask"),
    (["--dask", "  "], "--dask"),
])
@pytest.mark.parametrize("command", [
    ["power", "--replicates", "64", "--seed", "1"],
    ["simulate", "--images", "--n", "6", "--seed", "1"],
    ["fit-tensor", "--bids", "."],
])
def test_bad_execution_options_exit_2_naming_the_option(tmp_path, capsys, extra,
                                                        option, command):
    out = tmp_path / "out"
    code = main([*command, *extra, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert option in err, err
    assert not out.exists()


def test_demo_bad_n_jobs(tmp_path, capsys):
    code = main(["demo", "--n-jobs", "0", "--out", str(tmp_path / "d")])
    err = capsys.readouterr().err
    assert code == 2 and "--n-jobs" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "d").exists()


# -------------------------------------------------------------------- progress


@pytest.mark.slow  # over 3 s: the default suite stays under 5 minutes
def test_power_progress_lines_and_quiet(tmp_path, capsys):
    args = ["power", "--replicates", "256", "--seed", "2", "--curve", "n=40,80",
            "--grid", "n=40,80"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    out, _ = capsys.readouterr()
    # power, curve, grid, and writing the figure and the explorer
    _check_steps(out, 4)
    assert out.startswith("step 1/4 power of 'ketamine-rct': 256 trials")
    assert main(["power", "--replicates", "64", "--seed", "2", "--curve", "n=40,80",
                 "--out", str(tmp_path / "q"), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert "step" not in err and " done in " not in err


def test_library_progress_false_is_silent(design, capsys):
    from dtitool.stats.power import power

    power(design, replicates=64, rng=1, progress=False)
    assert capsys.readouterr() == ("", "")


def test_slow_step_announced_before_it_ends(monkeypatch):
    """Off a terminal a long step's name is written when it passes the bar delay,
    its time when it ends: one line in all."""
    import io

    from dtitool import _progress

    monkeypatch.setattr(_progress, "BAR_DELAY_S", 0.05)
    buf = io.StringIO()
    p = _progress.Progress(2, stream=buf)
    with p.step("waiting"):
        time.sleep(0.3)
        assert buf.getvalue() == "step 1/2 waiting ..."
    with p.step("quick"):
        pass
    _check_steps(buf.getvalue(), 2)


@pytest.mark.slow  # 2-4 s: the default suite stays under 5 minutes
@pytest.mark.skipif(sys.platform != "linux", reason="pty semantics")
def test_bar_on_a_terminal(tmp_path):
    """On a terminal a step shows a tqdm bar (erased) and ends with its line."""
    import fcntl
    import pty
    import struct
    import termios

    code = textwrap.dedent(f"""
        import sys
        import dtitool._progress as p
        p.BAR_DELAY_S = 0.0  # the bar at once (a real run waits 2 s)
        from dtitool.cli import main
        sys.exit(main(["power", "--replicates", "512", "--chunk-size", "64",
                       "--seed", "1", "--n-jobs", "1",
                       "--out", {str(tmp_path / "p")!r}]))
    """)
    master, slave = pty.openpty()
    # a terminal 100 columns wide (a new pty has 0: tqdm would draw nothing)
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=slave, stdout=slave,
                            stderr=slave, env=_env(), close_fds=True)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=120) == 0
    text = b"".join(chunks).decode(errors="replace")
    assert "rep" in text and "%|" in text, text  # a tqdm bar was drawn
    lines = [ln.split("\r")[-1] for ln in text.replace("\r\n", "\n").split("\n")]
    _check_steps("\n".join(lines), 1)


def test_relative_paths_on_dask_workers(cohorts, client, tmp_path, monkeypatch):
    """Workers started elsewhere (their own working folder) still find the
    files a run names relative to its own."""
    one = cohorts["one"][0]
    deriv = one / "derivatives" / "dtitool"
    monkeypatch.chdir(deriv)
    maps = sorted(p.relative_to(deriv).as_posix()
                  for p in deriv.rglob("*_param-MD_dwimap.nii.gz"))
    for name, extra in (("here", ["--n-jobs", "1"]),
                        ("dask", ["--dask", client.scheduler_info()["address"]])):
        (tmp_path / name).mkdir()
        assert main(["extract", *maps, "--labels", "atlas-dtitool_dseg.nii.gz",
                     "--quiet", *extra, "--out",
                     str(tmp_path / name / "roi_md.tsv")]) == 0
    _same_files(tmp_path / "here", tmp_path / "dask")


@pytest.mark.slow  # 2.5-4 s: the default suite stays under 5 minutes
def test_relative_bids_folder_on_dask_workers(bids, client, tmp_path, monkeypatch):
    monkeypatch.chdir(bids.parent)
    for name, extra in (("here", ["--n-jobs", "1"]),
                        ("dask", ["--dask", client.scheduler_info()["address"]])):
        assert main(["fit-tensor", "--bids", bids.name, "--out", str(tmp_path / name),
                     "--quiet", *extra]) == 0
    _same_files(tmp_path / "here", tmp_path / "dask")


@pytest.mark.slow  # 2.5-4 s: the default suite stays under 5 minutes
def test_task_error_on_a_worker_is_one_line(cohorts, client, tmp_path):
    """A task that fails on a worker fails the run as it would here: exit 2,
    one line naming the file, nothing written."""
    deriv = cohorts["one"][0] / "derivatives" / "dtitool"
    maps = sorted(deriv.rglob("*_param-MD_dwimap.nii.gz"))
    bad = tmp_path / "sub-099_ses-baseline_model-DTI_param-MD_dwimap.nii.gz"
    bad.write_bytes(maps[0].read_bytes()[:300])  # truncated
    errors = {}
    for name, extra in (("here", ["--n-jobs", "1"]), ("two", ["--n-jobs", "2"]),
                        ("dask", ["--dask", client.scheduler_info()["address"]])):
        out = tmp_path / name / "roi_md.tsv"
        r = _dtitool("extract", *maps, bad, "--labels",
                     deriv / "atlas-dtitool_dseg.nii.gz", *extra, "--out", out)
        assert r.returncode == 2, r.stderr
        assert len(r.stderr.splitlines()) == 1, r.stderr
        assert bad.name in r.stderr
        assert not out.exists()
        errors[name] = r.stderr
    assert errors["here"] == errors["two"] == errors["dask"]


def test_worker_with_another_environment_is_refused():
    from dtitool._executor import _call_checked, environment

    here = environment()
    assert _call_checked(int, here, "7") == 7
    other = tuple((k, "0.0" if k == "NumPy" else v) for k, v in here)
    with pytest.raises(ValueError, match=r"different software environment: NumPy "
                       r"\S+ \(this run: 0\.0\)"):
        _call_checked(int, other, "7")


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
@pytest.mark.parametrize(("signame", "code", "line"), [
    pytest.param("SIGTERM", 143, "dtitool power: terminated (SIGTERM)",
                 marks=pytest.mark.slow),
    pytest.param("SIGINT", 130, "dtitool power: interrupted (SIGINT)",
                 marks=pytest.mark.slow),
    pytest.param("SIGKILL", -9, None, marks=pytest.mark.slow),
])
@pytest.mark.usefixtures("sigint_reaches_children")
def test_stopped_run_takes_its_local_cluster_along(tmp_path, signame, code, line):
    """A --dask local run stopped by a signal: its exit code, outputs rolled
    back (not after SIGKILL: nothing can run then), and none of its processes
    (the cluster's workers) left behind."""
    import signal

    mark = f"DTITOOL_SCALE_TEST={uuid.uuid4().hex}"
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dtitool", "power", "--replicates", "1000000",
         "--seed", "1", "--dask", "local", "--n-jobs", "2", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=_env(**dict([mark.split("=")])))
    try:
        # the step's name is written once it has run 2 s: the cluster works
        assert proc.stdout.read(len("step 1/1")) == "step 1/1"
        assert len(_marked_pids(mark)) >= 3  # the run and its two workers
        proc.send_signal(getattr(signal, signame))
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == code, err
    if line is not None:
        assert err.splitlines() == [line], err
        assert not out.exists() or not any(out.iterdir())
    deadline = time.monotonic() + 10
    while (left := _marked_pids(mark)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, f"processes of the run still alive: {left}"


@pytest.mark.slow  # 2-4 s: the default suite stays under 5 minutes
def test_reproduce_same_bytes_on_dask(client, tmp_path):
    args = ["reproduce", "--replicates", "128", "--seed", "4", "--chunk-size", "64",
            "--quiet"]
    for name, extra in (("one", ["--n-jobs", "1"]),
                        ("dask", ["--dask", client.scheduler_info()["address"]])):
        assert main([*args, *extra, "--out", str(tmp_path / name)]) == 0
    assert (tmp_path / "one" / "reproduce.tsv").stat().st_size > 0
    _same_files(tmp_path / "one", tmp_path / "dask")


_BLAS_PROBE = textwrap.dedent("""
    import json, sys
    from dtitool.cli import main
    main(["power", "--preset", "null", "--replicates", "64", "--n-jobs", "2",
          "--quiet", "--out", sys.argv[1]])
    import scipy.special, scipy.linalg  # SciPy's own OpenBLAS, loaded late
    from threadpoolctl import threadpool_info
    from dtitool._workers import process_pool

    def threads():
        from threadpoolctl import threadpool_info
        return sorted(i["num_threads"] for i in threadpool_info()
                      if i["user_api"] == "blas")

    with process_pool(2) as ex:
        worker = ex.submit(threads).result()
    print(json.dumps({"main": threads(), "worker": worker}))
""")


@pytest.mark.slow  # 2-4 s: the default suite stays under 5 minutes
@pytest.mark.parametrize("user_setting", [None, "2"])
def test_command_line_keeps_blas_on_one_thread_unless_the_user_says(
        tmp_path, user_setting):
    """The command line's process and its workers run BLAS on one thread (every
    BLAS library, also SciPy's, loaded after the command started): processes
    are dtitool's parallelism, and idle OpenBLAS threads spin, taking CPU from
    the workers. A user's own OPENBLAS_NUM_THREADS is left as it is."""
    import json

    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                        "BLIS_NUM_THREADS", "OMP_NUM_THREADS")}
    if user_setting:
        env["OPENBLAS_NUM_THREADS"] = user_setting
    out = subprocess.run([sys.executable, "-c", _BLAS_PROBE, str(tmp_path / "o")],
                         env=env, capture_output=True, text=True, check=True)
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["main"] and seen["worker"]  # the BLAS libraries were found
    expected = 1 if user_setting is None else int(user_setting)
    assert set(seen["main"]) == {expected}
    assert set(seen["worker"]) == {expected}
