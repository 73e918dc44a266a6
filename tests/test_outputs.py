"""The output protocol (docs/outputs.md): staged, committed together, a manifest,
--force only over dtitool's own unchanged files, locks, journals, run records."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _trees import manifest_consistent, tree, without

from dtitool.cli import main

MANIFEST_NAME = "dtitool-run.json"
# The API of the output protocol is imported inside the tests that use it, so
# that the command-line tests here also run against other checkouts.

ROOT = Path(__file__).resolve().parents[1]
# PYTHONPATH=/another/checkout runs the subprocess tests against that code
ENV = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH") or str(ROOT)}


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


# ------------------------------------------------------------ API: all or nothing


def test_new_folder_appears_complete_with_manifest(tmp_path):
    from dtitool._io import atomic_outputs

    out = tmp_path / "a" / "b" / "c"
    with atomic_outputs(out, ["x.txt", "sub/y.txt"], seed=5, command="test") as tmp:
        (tmp / "x.txt").write_text("x")
        (tmp / "sub").mkdir()
        (tmp / "sub" / "y.txt").write_text("y")
        (tmp / "extra.json").write_text("{}")  # undeclared files are outputs too
        assert not (tmp_path / "a").exists()  # nothing visible before commit
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"]
    m = json.loads((out / MANIFEST_NAME).read_text())
    (rec,) = m["runs"]
    assert rec["command"] == "test" and rec["seed"] == 5
    assert sorted(rec["files"]) == ["extra.json", "sub/y.txt", "x.txt"]
    assert manifest_consistent(out)


def _write_then_fail(out, names, **kwargs):
    """Write the first output, then fail (before the others are written)."""
    from dtitool._io import atomic_outputs

    with atomic_outputs(out, names, **kwargs) as tmp:
        (tmp / names[0]).write_text("new " + names[0])
        raise RuntimeError("boom")


def _write_all(out, names, **kwargs):
    from dtitool._io import atomic_outputs

    with atomic_outputs(out, names, **kwargs) as tmp:
        for n in names:
            (tmp / n).write_text("new " + n)


def test_failure_changes_nothing_and_leaves_no_folder(tmp_path):
    (tmp_path / "keep").mkdir()
    before = tree(tmp_path)
    with pytest.raises(RuntimeError, match="boom"):
        _write_then_fail(tmp_path / "new" / "deep", ["x.txt"])
    assert tree(tmp_path) == before


def test_failure_keeps_complete_old_outputs(tmp_path):
    from dtitool._io import atomic_outputs

    out = tmp_path / "o"
    with atomic_outputs(out, ["a.txt", "b.txt"]) as tmp:
        (tmp / "a.txt").write_text("old a")
        (tmp / "b.txt").write_text("old b")
    before = tree(tmp_path)
    with pytest.raises(RuntimeError, match="boom"):
        _write_then_fail(out, ["a.txt", "b.txt"], force=True)
    assert tree(tmp_path) == before


def test_commit_error_half_way_rolls_back(tmp_path, monkeypatch):
    from dtitool import _io
    from dtitool._io import atomic_outputs

    out = tmp_path / "o"
    names = [f"f{i}.txt" for i in range(6)]
    with atomic_outputs(out, names) as tmp:
        for n in names:
            (tmp / n).write_text("old " + n)
    before = tree(tmp_path)
    real, calls = _io._do_op, []

    def flaky(stage, anchor, op, rel):
        calls.append(op)
        if op == "place" and calls.count("place") == 4:
            raise OSError(28, "No space left on device")
        return real(stage, anchor, op, rel)

    monkeypatch.setattr(_io, "_do_op", flaky)
    with pytest.raises(OSError, match="No space left"):
        _write_all(out, names, force=True)
    assert tree(tmp_path) == before


def test_killed_in_commit_is_completed_by_the_next_run(tmp_path):
    from dtitool._io import atomic_outputs

    # A run killed (os._exit) after 3 of its moves: the destination is a mix
    # until the next run into the folder finds the journal and completes it.
    out = tmp_path / "o"
    names = [f"f{i}.txt" for i in range(6)]
    with atomic_outputs(out, names) as tmp:
        for n in names:
            (tmp / n).write_text("old")
    code = f"""
import os, sys
sys.path.insert(0, {str(ROOT)!r})
from dtitool import _io
real, n = _io._do_op, [0]
def dying(*a):
    if a[2] == "place":
        n[0] += 1
        if n[0] == 4:
            os._exit(9)
    return real(*a)
_io._do_op = dying
with _io.atomic_outputs({str(out)!r}, {names!r}, force=True) as tmp:
    for name in {names!r}:
        (tmp / name).write_text("new")
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True)
    assert proc.returncode == 9
    contents = {(out / n).read_text() for n in names}
    assert contents == {"old", "new"}  # a mix (every file there), and a journal
    assert list(tmp_path.glob(".dtitool-tmp-*/journal.json"))
    with atomic_outputs(tmp_path / "other", ["z.txt"]) as tmp:  # any next run
        (tmp / "z.txt").write_text("z")
    assert {(out / n).read_text() for n in names} == {"new"}
    assert manifest_consistent(out)
    assert not list(tmp_path.glob(".dtitool-*"))


def _dead_stage(anchor: Path, key: str) -> Path:
    """A staging folder as a killed dtitool run leaves it: marked, lock free."""
    from dtitool import _staging

    token = _staging.new_token()
    dead = anchor / _staging.stage_name(key)
    (dead / "new").mkdir(parents=True)
    _staging.write_marker(dead, anchor=anchor, key=key, token=token,
                          run=_staging.new_token(), command="simulate",
                          destination=anchor / key)
    (dead / "lock").write_text(json.dumps({"pid": 1, "token": token}))
    return dead


def test_stale_staging_folders_are_removed(tmp_path, capsys):
    dead = _dead_stage(tmp_path, "x")
    (dead / "new" / "big.bin").write_bytes(b"0" * 1000)
    legacy = tmp_path / ".dtitool-tmp-ab12cd34"  # no marker: not provably ours
    legacy.mkdir()
    (legacy / "x").write_text("x")
    old = time.time() - 3600
    os.utime(legacy, (old, old))
    young = tmp_path / ".dtitool-new-abc"  # being set up right now: kept
    young.mkdir()
    died_at_once = tmp_path / ".dtitool-new-def"  # empty and an hour old: gone
    died_at_once.mkdir()
    os.utime(died_at_once, (old, old))
    assert main(["simulate", "--seed", "1", "--n", "20", "--out",
                 str(tmp_path / "c")]) == 0
    assert not dead.exists() and not died_at_once.exists()
    assert young.exists() and (legacy / "x").read_text() == "x"
    err = capsys.readouterr().err
    assert f"left {str(legacy)!r} alone" in err
    assert "has no dtitool marker" in err


def test_concurrent_run_is_refused_with_one_line(tmp_path, capsys):
    from dtitool._io import output_transaction

    out = tmp_path / "c"
    with output_transaction() as tx:
        tx.destination(out, ["x.txt"])
        (tmp := tx.stages[next(iter(tx.stages))].new / "c")
        (tmp / "x.txt").write_text("x")
        code, _, err = run(capsys, "simulate", "--seed", "1", "--n", "20",
                           "--out", out)
        assert code == 2
        assert "another dtitool run" in one_line(err) and "is writing to" in err
    assert (out / "x.txt").read_text() == "x"
    assert not (out / "participants.tsv").exists()


@pytest.mark.slow
def test_two_processes_at_once_one_wins(tmp_path):
    out = tmp_path / "c"
    base = [sys.executable, "-m", "dtitool", "simulate", "--seed", "1", "--n", "20"]
    # a slow run (images, DWI of one participant) and, while it writes, a quick
    # one into the same folder
    a = subprocess.Popen([*base, "--images", "--dwi-subjects", "1", "--out",
                          str(out)], env=ENV, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while not list(tmp_path.glob(".dtitool-tmp-*/*")) and time.time() < deadline:
        time.sleep(0.02)
    b = subprocess.run([*base, "--out", str(out)], env=ENV,
                       capture_output=True, text=True)
    a_err = a.communicate()[1]
    assert (a.returncode, b.returncode) == (0, 2), (a_err, b.stderr)
    assert "another dtitool run" in b.stderr and b.stderr.count("\n") == 1
    assert manifest_consistent(out)
    runs = json.loads((out / MANIFEST_NAME).read_text())["runs"]
    assert len(runs) == 1 and "--images" in runs[0]["arguments"]


# ------------------------------------------------------------- --force, via the CLI


@pytest.mark.slow
def test_force_keeps_user_files_and_replaces_only_listed_ones(tmp_path, capsys):
    out = tmp_path / "c"
    assert run(capsys, "simulate", "--seed", "1", "--n", "20", "--images",
               "--out", out)[0] == 0
    mine = out / "derivatives" / "dtitool" / "notes.txt"
    mine.write_text("my notes")
    (out / "figures").mkdir()
    (out / "figures" / "my_plot.png").write_bytes(b"png")
    assert run(capsys, "simulate", "--seed", "2", "--n", "20", "--images",
               "--out", out, "--force")[0] == 0
    assert mine.read_text() == "my notes"
    assert (out / "figures" / "my_plot.png").read_bytes() == b"png"
    assert manifest_consistent(out)
    runs = json.loads((out / MANIFEST_NAME).read_text())["runs"]
    assert len(runs) == 1 and runs[0]["seed"] == 2
    assert "derivatives/dtitool/notes.txt" not in runs[0]["files"]
    # a new run without images retires the old one whole: its images go too,
    # and the folders they leave empty; the user's file (and folder) stay
    assert run(capsys, "simulate", "--seed", "3", "--n", "20", "--out", out,
               "--force")[0] == 0
    left = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    assert left == ["derivatives", "derivatives/dtitool",
                    "derivatives/dtitool/notes.txt", "design.toml",
                    MANIFEST_NAME, "figures", "figures/my_plot.png",
                    "participants.json", "participants.tsv", "roi_md.json",
                    "roi_md.tsv", "true_md.json", "true_md.tsv", "visits.json",
                    "visits.tsv"]


@pytest.mark.parametrize("kind", ["user_file", "changed", "fifo", "symlink",
                                  "folder", "input"])
def test_force_never_replaces(tmp_path, capsys, kind):
    out = tmp_path / "c"
    assert run(capsys, "simulate", "--seed", "1", "--n", "20", "--out", out)[0] == 0
    target = out / "roi_md.tsv"
    extra = []
    if kind == "user_file":
        (out / MANIFEST_NAME).unlink()
        match = "not listed in"
    elif kind == "changed":
        target.write_text(target.read_text() + "# my edit\n")
        match = "was changed after dtitool wrote it"
    elif kind == "fifo":
        target.unlink()
        os.mkfifo(target)
        match = "not a regular file"
    elif kind == "symlink":
        target.unlink()
        (tmp_path / "elsewhere.tsv").write_text("precious")
        target.symlink_to(tmp_path / "elsewhere.tsv")
        match = "symbolic link"
    elif kind == "folder":
        target.unlink()
        target.mkdir()
        (target / "x").write_text("x")
        match = "is a folder|not a folder"
    else:
        extra = ["--design", str(out / "design.toml")]
        match = "would replace .*design.toml.*an input of this run"
    before = tree(tmp_path)
    code, _, err = run(capsys, "simulate", "--seed", "2", "--n", "20", "--out",
                       out, "--force", *extra)
    assert code == 2
    import re

    assert re.search(match, one_line(err)), err
    assert tree(tmp_path) == before


def test_device_file_is_never_replaced(tmp_path, capsys):
    # /dev/null itself: refused before anything is written (even as root)
    before = os.stat("/dev/null")
    code, _, err = run(capsys, "extract", "--labels", tmp_path / "nope.nii.gz",
                       "--out", "/dev/null", "--force", tmp_path / "m.nii.gz")
    assert code == 2 and "Traceback" not in err
    after = os.stat("/dev/null")
    assert (after.st_ino, after.st_mode) == (before.st_ino, before.st_mode)


def test_leftovers_of_a_retired_run_go_user_files_stay(tmp_path, capsys):
    out = tmp_path / "p"
    common = ["power", "--replicates", "200", "--seed", "1", "--quiet", "--out", out]
    assert run(capsys, *common, "--curve", "n=60,98")[0] == 0
    (out / "mine.txt").write_text("mine")
    assert (out / "power_curve.png").exists()
    assert run(capsys, *common, "--force")[0] == 0
    assert not (out / "power_curve.png").exists()
    assert not (out / "power_curve.tsv").exists()
    assert (out / "mine.txt").read_text() == "mine"
    assert manifest_consistent(out)


@pytest.mark.slow  # over 3 s: the default suite stays under 5 minutes
def test_other_commands_in_one_folder_keep_their_entries(tmp_path, capsys):
    c = tmp_path / "c"
    assert run(capsys, "simulate", "--seed", "1", "--out", c)[0] == 0
    args = ["analyze", c, "--out", c / "results.tsv", "--figures", c / "figures"]
    assert run(capsys, *args)[0] == 0
    assert run(capsys, *args, "--robust", "--force")[0] == 0
    runs = json.loads((c / MANIFEST_NAME).read_text())["runs"]
    assert [r["command"] for r in runs] == ["simulate", "analyze"]
    assert list(runs[1]["files"]) == ["results.json", "results.tsv"]
    figs = json.loads((c / "figures" / MANIFEST_NAME).read_text())["runs"]
    assert figs[0]["command"] == "analyze" and "--robust" in figs[0]["arguments"]
    assert manifest_consistent(c) and manifest_consistent(c / "figures")


def test_colliding_outputs_are_refused(tmp_path, capsys):
    c = tmp_path / "c"
    assert run(capsys, "simulate", "--seed", "1", "--out", c)[0] == 0
    before = tree(tmp_path)
    code, _, err = run(capsys, "analyze", c, "--out", tmp_path / "coll" / "forest.png",
                       "--figures", tmp_path / "coll")
    assert code == 2 and "outputs collide" in one_line(err)
    assert "--out" in err and "--figures" in err
    assert tree(tmp_path) == before


def test_symlinked_destination_is_followed_symlinked_subfolder_refused(tmp_path,
                                                                     capsys):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real)
    assert run(capsys, "simulate", "--seed", "1", "--n", "20", "--out",
               tmp_path / "link")[0] == 0
    assert (real / "participants.tsv").is_file()
    d = tmp_path / "d"
    d.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (d / "derivatives").symlink_to(tmp_path / "elsewhere")
    before = tree(tmp_path)
    code, _, err = run(capsys, "simulate", "--seed", "1", "--n", "20", "--images",
                       "--out", d)
    assert code == 2 and "not a folder" in one_line(err)
    assert tree(tmp_path) == before


# --------------------------------------------------------------- records that repeat


@pytest.mark.slow  # over 6 s: the default suite stays under 5 minutes
def test_power_design_record_repeats_every_option(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    argv = ["power", "--replicates", "300", "--seed", "4", "--alpha", "0.1",
            "--curve", "ratio=1,2", "--target-power", "0.5", "--n-max", "200",
            "--quiet", "--out", a]
    assert run(capsys, *argv)[0] == 0
    text = (a / "design.toml").read_text()
    for key in ("replicates = 300", "alpha = 0.1", 'curve = "ratio=1,2"',
                "target_power = 0.5", "n_max = 200", 'command = "power"'):
        assert key in text
    assert run(capsys, "power", "--design", a / "design.toml", "--quiet", "--out",
               b)[0] == 0
    for name in ("power.tsv", "familywise.tsv", "design.toml", "power_curve.tsv",
                 "sample_size.tsv"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    # an option given on the command line wins over the record
    c = tmp_path / "c"
    assert run(capsys, "power", "--design", a / "design.toml", "--replicates",
               "200", "--quiet", "--out", c)[0] == 0
    assert "replicates = 200" in (c / "design.toml").read_text()


@pytest.mark.slow
def test_simulate_record_repeats_images(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert run(capsys, "simulate", "--seed", "2", "--n", "20", "--images",
               "--out", a)[0] == 0
    assert run(capsys, "simulate", "--design", a / "design.toml", "--out", b)[0] == 0
    ta, tb = tree(a), tree(b)
    assert without(ta, MANIFEST_NAME) == without(tb, MANIFEST_NAME)
    assert any(k.endswith("_dwimap.nii.gz") for k in tb)


@pytest.mark.parametrize(("run_lines", "match"), [
    ("seed = 1\ncommand = \"simulate\"\nreplicate = 2\n",
     "unknown key run.replicate; valid keys in \\[run\\]: .*replicates"),
    ("seed = 1\nreplicates = 1\nfoo = 3\n",
     "unknown key run.foo; valid keys in \\[run\\]: dtitool_version, replicates, seed"),
    ("seed = 1\ncommand = \"analyze\"\n", "run.command must be one of"),
    ("seed = -1\n", "run.seed must be a non-negative integer"),
    ("seed = 1\ncommand = \"simulate\"\nreplicates = \"many\"\n",
     "run.replicates must be a valid int"),
    ("seed = 1\ncommand = \"simulate\"\nimages = 1\n", "run.images must be true or"),
    ("seed = 1\n[run.sub]\nx = 1\n", "run.sub must be a number, string"),
])
def test_unknown_or_bad_run_keys_are_named(tmp_path, capsys, run_lines, match):
    assert run(capsys, "simulate", "--seed", "1", "--n", "20", "--out",
               tmp_path / "a")[0] == 0
    text = (tmp_path / "a" / "design.toml").read_text()
    text = text[: text.index("[run]")] + "[run]\n" + run_lines
    (tmp_path / "d.toml").write_text(text)
    before = tree(tmp_path)
    code, _, err = run(capsys, "simulate", "--design", tmp_path / "d.toml", "--out",
                       tmp_path / "b")
    assert code == 2
    import re

    assert re.search(match, one_line(err)), err
    assert tree(tmp_path) == before


def test_record_of_another_command_gives_design_and_seed(tmp_path, capsys):
    a = tmp_path / "a"
    assert run(capsys, "power", "--replicates", "100", "--seed", "9", "--quiet",
               "--out", a)[0] == 0
    code, out, err = run(capsys, "simulate", "--design", a / "design.toml", "--out",
                         tmp_path / "b")
    assert code == 0 and "seed 9" in out
    assert "records a dtitool power run; simulate uses only its design and seed" in err
    assert "replicate" not in (tmp_path / "b" / "participants.tsv").read_text()[:20]


# ------------------------------------------------------------------- signal rules


def test_deferred_signals_hold_sigterm_until_the_section_ends():
    from dtitool._workers import Terminated, deferred_signals, termination_signals

    reached = []

    def section():
        with termination_signals():
            with deferred_signals():
                os.kill(os.getpid(), signal.SIGTERM)
                time.sleep(0.05)
                reached.append("end of critical section")
            time.sleep(1)  # the held signal arrives here
            reached.append("never")

    with pytest.raises(Terminated):
        section()
    assert reached == ["end of critical section"]


@pytest.mark.parametrize(("sig", "code", "word"), [
    (signal.SIGTERM, 143, "terminated (SIGTERM)"),
    (signal.SIGINT, 130, "interrupted (SIGINT)"),
])
@pytest.mark.usefixtures("sigint_reaches_children")
def test_signal_rolls_back_and_exits_128_plus_signal(tmp_path, sig, code, word):
    out = tmp_path / "c"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dtitool", "simulate", "--seed", "1", "--n", "20",
         "--images", "--out", str(out)],
        env=ENV, stderr=subprocess.PIPE, text=True)
    for _ in range(500):  # until the run has started writing
        try:
            if list(tmp_path.glob(".dtitool-*/*")):
                break
        except FileNotFoundError:  # a staging folder renamed while listed
            pass
        time.sleep(0.01)
    time.sleep(0.2)
    proc.send_signal(sig)
    err = proc.communicate(timeout=30)[1]
    assert proc.returncode == code, err
    assert err == f"dtitool simulate: {word}\n"
    assert list(tmp_path.iterdir()) == []


def test_stage_inside_the_destination_when_its_parent_is_read_only(
        tmp_path, monkeypatch):
    from dtitool import _io

    out = tmp_path / "o"
    _write_all(out, ["a.txt", "b.txt"])
    real = os.access
    monkeypatch.setattr(_io.os, "access",
                        lambda p, mode: False if Path(p) == tmp_path else real(p, mode))
    seen = []

    def write(out):
        with _io.atomic_outputs(out, ["a.txt", "b.txt"], force=True) as tmp:
            seen.append(tmp)
            for n in ("a.txt", "b.txt"):
                (tmp / n).write_text("newer " + n)

    write(out)
    assert seen[0].is_relative_to(out)  # staged inside the destination
    assert (out / "a.txt").read_text() == "newer a.txt"
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "b.txt", MANIFEST_NAME]
    assert manifest_consistent(out)


def test_corrupt_manifest_is_never_guessed_at(tmp_path, capsys):
    out = tmp_path / "c"
    assert run(capsys, "simulate", "--seed", "1", "--n", "20", "--out", out)[0] == 0
    (out / MANIFEST_NAME).write_text("{not json")
    before = tree(tmp_path)
    code, _, err = run(capsys, "simulate", "--seed", "2", "--n", "20", "--out", out,
                       "--force")
    assert code == 2 and "not a readable dtitool manifest" in one_line(err)
    assert tree(tmp_path) == before


def test_manifest_records_command_arguments_and_seed(tmp_path, capsys):
    out = tmp_path / "c"
    assert run(capsys, "simulate", "--n", "20", "--out", out)[0] == 0
    (rec,) = json.loads((out / MANIFEST_NAME).read_text())["runs"]
    assert rec["command"] == "simulate"
    assert rec["arguments"] == ["simulate", "--n", "20", "--out", str(out)]
    assert isinstance(rec["seed"], int) and rec["options"]["n"] == 20
    assert f"seed = {rec['seed']}" in (out / "design.toml").read_text()


def test_memory_refusal_names_the_size(capsys, tmp_path):
    code, _, err = run(capsys, "simulate", "--n", "1000000000000", "--out",
                       tmp_path / "x")
    assert code == 2
    assert "needs about" in one_line(err) and "TB" in err
    assert list(tmp_path.iterdir()) == []


def test_ids_stay_text(tmp_path, capsys):
    c = tmp_path / "c"
    assert run(capsys, "simulate", "--seed", "1", "--out", c)[0] == 0
    import pandas as pd

    p = pd.read_csv(c / "participants.tsv", sep="\t", dtype=str)
    r = pd.read_csv(c / "roi_md.tsv", sep="\t", dtype=str)
    # "001" and "1", "1.1" and "1.10" are four different people
    ids = p["participant_id"].unique()
    new = {ids[0]: "001", ids[1]: "1", ids[2]: "1.1", ids[3]: "1.10"}
    p["participant_id"] = p["participant_id"].replace(new)
    r["participant_id"] = r["participant_id"].replace(new)
    p.to_csv(c / "participants.tsv", sep="\t", index=False)
    r.to_csv(c / "roi_md.tsv", sep="\t", index=False)
    from dtitool.tables import read_tables

    parts, _ = read_tables(c)
    assert {"001", "1", "1.1", "1.10"} <= set(parts["participant_id"])
    assert all(isinstance(x, str) for x in parts["participant_id"])
