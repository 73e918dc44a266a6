"""Nothing outside ``--out``, ever: hostile trees, manifests, journals and signals.

Every case builds a sentinel tree around the output folder (files beside it,
above it, in folders a symbolic link points to), hashes it, runs dtitool, and
checks the tree is byte for byte what it was: the output protocol may change
``--out`` and nothing else, whatever a manifest, a journal, a symbolic link or
a leftover folder says (docs/outputs.md). Command-line cases also check the
exit code (0 or 2) and that stderr is one line without a traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _adversarial_world import quiet_main

from dtitool import _io, _staging
from dtitool._io import MANIFEST_NAME, atomic_outputs, file_sha256

HOUR_AGO = time.time() - 3600


# ------------------------------------------------------------------ sentinels


def snapshot(root: Path, *, skip: Path | None = None) -> dict[str, object]:
    """Every entry under ``root`` (not following links) -> its content's hash.

    ``skip`` (the output folder) is left out; so are dtitool's own transient
    staging folders, which must be gone anyway (checked apart).
    """
    out: dict[str, object] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dp = Path(dirpath)
        if skip is not None and (dp == skip or skip in dp.parents):
            dirnames[:] = []
            continue
        for name in [*dirnames, *filenames]:
            p = dp / name
            rel = p.relative_to(root).as_posix()
            if skip is not None and p == skip:
                continue
            if p.is_symlink():
                out[rel] = ("link", os.readlink(p))
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def sentinel_tree(root: Path) -> Path:
    """Files around an output folder ``root/work/out``; returns the output folder."""
    for rel in ("victim.txt", "work/victim.txt", "work/notes/a.txt",
                "elsewhere/keep.txt", "elsewhere/deep/er/x.txt", "x/a.txt",
                "work/x/a.txt"):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"sentinel {rel}\n")
    return root / "work" / "out"


def one_line(err: str) -> None:
    assert err.count("\n") <= 1, err
    assert "Traceback" not in err, err


def write_run(out: Path, files: dict[str, str], *, force: bool = False,
              command: str = "simulate") -> None:
    with atomic_outputs(out, sorted(files), force=force, command=command) as tmp:
        for rel, text in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_text(text)


def no_stages(root: Path) -> bool:
    return not [p for p in root.rglob(".dtitool-*")
                if p.name != ".dtitool-tmp-notes"]


# ------------------------------------------------------ 1. links in a retired run


def test_force_does_not_follow_a_symlinked_subfolder_cli(tmp_path):
    """The reproduction from the issue, through the command line."""
    out = sentinel_tree(tmp_path)
    code, _, err = quiet_main(["simulate", "--seed", "1", "--n", "6", "--images",
                               "--out", out])
    assert code == 0, err
    moved = tmp_path / "elsewhere" / "derivatives"
    maps = len(list((out / "derivatives").rglob("*.nii.gz")))
    assert maps >= 12  # 6 participants x 2 sessions, and the atlas
    (out / "derivatives").rename(moved)
    (out / "derivatives").symlink_to(moved)
    before = snapshot(tmp_path, skip=out)
    code, _, err = quiet_main(["simulate", "--seed", "2", "--n", "6", "--out", out,
                               "--force"])
    assert code == 0, err
    assert snapshot(tmp_path, skip=out) == before
    assert len(list(moved.rglob("*.nii.gz"))) == maps
    one_line(err)
    assert "never follows" in err
    assert (out / "derivatives").is_symlink()
    assert no_stages(tmp_path)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_retiring_never_follows_a_link_at_any_depth(tmp_path, depth):
    out = sentinel_tree(tmp_path)
    write_run(out, {"top.txt": "1", "a/b/c/f.txt": "deep", "a/b/g.txt": "mid"})
    link = out.joinpath(*["a", "b", "c"][:depth])
    target = tmp_path / "elsewhere" / f"moved{depth}"
    link.rename(target)
    link.symlink_to(target)
    before = snapshot(tmp_path, skip=out)
    with pytest.warns(UserWarning, match="never follows"):
        write_run(out, {"top.txt": "2"}, force=True)
    assert snapshot(tmp_path, skip=out) == before
    assert link.is_symlink() and (out / "top.txt").read_text() == "2"
    assert no_stages(tmp_path)


def test_link_planted_between_checks_and_commit_rolls_back(tmp_path, monkeypatch):
    out = sentinel_tree(tmp_path)
    write_run(out, {"top.txt": "1", "a/f.txt": "old"})
    real = _io.OutputTransaction._prepare

    def then_plant(self, stage, written):
        real(self, stage, written)
        (out / "a").rename(tmp_path / "elsewhere" / "a")
        (out / "a").symlink_to(tmp_path / "elsewhere" / "a")

    monkeypatch.setattr(_io.OutputTransaction, "_prepare", then_plant)
    before = snapshot(tmp_path, skip=out)
    before["elsewhere/a"] = "dir"
    before["elsewhere/a/f.txt"] = hashlib.sha256(b"old").hexdigest()
    with pytest.raises(ValueError, match="symbolic link"):
        write_run(out, {"top.txt": "2"}, force=True)
    assert snapshot(tmp_path, skip=out) == before
    assert (out / "top.txt").read_text() == "1"  # rolled back
    assert no_stages(tmp_path)


# ------------------------------------------------------- 2. manifests that escape


@pytest.mark.parametrize("entry", [
    "../victim.txt", "sub/../../victim.txt", "../../x/a.txt",
    "../../../elsewhere/keep.txt", "./top.txt", "a//b.txt", "/abs/victim.txt",
])
def test_manifest_entry_outside_the_folder_is_an_error(tmp_path, entry, capsys):
    out = sentinel_tree(tmp_path)
    code, _, err = quiet_main(["simulate", "--seed", "1", "--n", "6", "--out", out])
    assert code == 0, err
    m = json.loads((out / MANIFEST_NAME).read_text())
    victim = (out / entry).resolve() if not entry.startswith("/") else Path(entry)
    rec = ({"bytes": victim.stat().st_size, "sha256": file_sha256(victim)}
           if victim.is_file() else {"bytes": 1, "sha256": "0" * 64})
    m["runs"][0]["files"][entry] = rec
    (out / MANIFEST_NAME).write_text(json.dumps(m))
    before = snapshot(tmp_path)
    code, _, err = quiet_main(["simulate", "--seed", "2", "--n", "6", "--out", out,
                               "--force"])
    assert code == 2
    one_line(err)
    assert repr(entry) in err and MANIFEST_NAME in err
    assert snapshot(tmp_path) == before  # nothing touched, inside or out


def test_deeply_nested_manifest_is_one_line(tmp_path):
    out = sentinel_tree(tmp_path)
    out.mkdir(parents=True)
    (out / MANIFEST_NAME).write_text("[" * 100_000 + "]" * 100_000)
    code, _, err = quiet_main(["simulate", "--seed", "1", "--n", "6", "--out", out])
    assert code == 2
    one_line(err)
    assert "nested too deep" in err


# ------------------------------------------ 3./4. folders that only have the name


def planted_journal(stage: Path, anchor: Path, victim: Path) -> None:
    """A journal whose operations reach outside: the attack of the issue."""
    (stage / "new").mkdir(parents=True, exist_ok=True)
    (stage / "new" / "payload.txt").write_text("planted")
    rel_victim = os.path.relpath(victim, anchor)
    (stage / "journal.json").write_text(json.dumps({
        "anchor": str(anchor),
        "ops": [["remove", rel_victim], ["remove", str(victim)],
                ["place", "../payload.txt"], ["prune", "../elsewhere"]],
        "siblings": [str(anchor.parent / "elsewhere")],
    }))
    (stage / "lock").write_text("{}")


@pytest.mark.parametrize("how", ["ok", "bad-input"])
def test_planted_staging_folder_is_never_replayed(tmp_path, how):
    out = sentinel_tree(tmp_path)
    anchor = out.parent
    planted = anchor / ".dtitool-tmp-out"
    planted_journal(planted, anchor, tmp_path / "victim.txt")
    other = anchor / ".dtitool-tmp-other"  # no lock, an hour old
    planted_journal(other, anchor, tmp_path / "work" / "victim.txt")
    (other / "lock").unlink()
    os.utime(other, (HOUR_AGO, HOUR_AGO))
    os.utime(tmp_path / "elsewhere", (HOUR_AGO, HOUR_AGO))
    before = snapshot(tmp_path)
    run = anchor / "run"  # staged beside the planted folders
    args = ["simulate", "--seed", "1", "--n", "6", "--out", run]
    if how == "bad-input":
        args += ["--alpha", "7"]
    code, _, err = quiet_main(args)
    assert snapshot(tmp_path, skip=run) == before
    if how == "ok":
        assert code == 0, err
        assert "left" in err and "alone" in err
        assert (run / "participants.tsv").is_file()
    else:
        assert code == 2
        one_line(err)


def test_staging_name_taken_by_a_foreign_folder_is_an_error(tmp_path):
    out = sentinel_tree(tmp_path)
    foreign = out.parent / ".dtitool-tmp-out"
    planted_journal(foreign, out.parent, tmp_path / "victim.txt")
    before = snapshot(tmp_path)
    code, _, err = quiet_main(["simulate", "--seed", "1", "--n", "6", "--out", out])
    assert code == 2
    one_line(err)
    assert "is not a staging folder of dtitool's" in err
    assert snapshot(tmp_path) == before


def test_users_own_dtitool_tmp_folder_is_kept(tmp_path):
    out = sentinel_tree(tmp_path)
    notes = out.parent / ".dtitool-tmp-notes"
    notes.mkdir()
    (notes / "mine.txt").write_text("my notes")
    os.utime(notes, (HOUR_AGO, HOUR_AGO))
    before = snapshot(tmp_path)
    for seed in ("1", "2"):
        code, _, err = quiet_main(["simulate", "--seed", seed, "--n", "6", "--out",
                                   out, "--force"])
        assert code == 0, err
    assert snapshot(tmp_path, skip=out) == {
        k: v for k, v in before.items() if not k.startswith("work/out")}
    assert (notes / "mine.txt").read_text() == "my notes"


# --------------------------------- forged markers: confined to their destination


def forged_stage(anchor: Path, key: str, ops, *, siblings=(), run=None) -> Path:
    """A staging folder with a valid marker and lock (a killed run's, or a
    careful forgery) and the given journal operations."""
    token = _staging.new_token()
    run = run or _staging.new_token()
    stage = anchor / _staging.stage_name(key)
    (stage / "new").mkdir(parents=True)
    _staging.write_marker(stage, anchor=anchor, key=key, token=token, run=run,
                          command="simulate", destination=anchor / key)
    (stage / "lock").write_text(json.dumps({"token": token}))
    marker = json.loads((stage / "stage.json").read_text())
    (stage / "journal.json").write_text(json.dumps({
        "format": _staging.JOURNAL_FORMAT, "token": token, "run": run,
        "anchor": marker["anchor"], "key": key, "ops": ops,
        "siblings": [str(s) for s in siblings]}))
    return stage


@pytest.mark.parametrize("ops", [
    [["remove", "out/../victim.txt"]],
    [["remove", "../victim.txt"]],
    [["remove", "notes/a.txt"]],  # inside the anchor, outside the destination
    [["place", "out/../../x/a.txt"]],
    [["keep", "/etc/hostname"]],
    [["rmtree", "out"]],
])
def test_journal_breaking_the_rules_is_an_error_naming_it(tmp_path, ops):
    out = sentinel_tree(tmp_path)
    write_run(out, {"a.txt": "1"})
    stage = forged_stage(out.parent, "out", ops)
    before = snapshot(tmp_path)
    code, _, err = quiet_main(["simulate", "--seed", "1", "--n", "6", "--out",
                               out.parent / "second"])
    assert code == 2
    one_line(err)
    assert "journal.json" in err and "nothing was done" in err
    assert snapshot(tmp_path) == before
    assert stage.is_dir()


def test_stage_side_links_are_not_followed(tmp_path):
    """A marked folder whose ``old`` is a link outside: the move is refused."""
    out = sentinel_tree(tmp_path)
    write_run(out, {"a.txt": "1"})
    stage = forged_stage(out.parent, "out", [["remove", "out/a.txt"]])
    (stage / "old").symlink_to(tmp_path / "elsewhere")
    before = {k: v for k, v in snapshot(tmp_path, skip=out).items()
              if not k.startswith("work/.dtitool-tmp-out")}  # a dead run's: goes
    with pytest.warns(UserWarning, match="left 1 path"):
        _staging.sweep(out.parent)
    assert snapshot(tmp_path, skip=out) == before
    assert (out / "a.txt").read_text() == "1" and not stage.exists()


def test_killed_commit_is_completed_inside_its_destination_only(tmp_path):
    """A genuine dead run (valid marker, journal inside its destination) is
    still completed; its sibling of another run is left alone."""
    out = sentinel_tree(tmp_path)
    write_run(out, {"a.txt": "old"})
    other_run_stage = forged_stage(tmp_path / "elsewhere", "zzz", [])
    stage = forged_stage(out.parent, "out", [["keep", "out/a.txt"],
                                             ["place", "out/a.txt"]],
                         siblings=[other_run_stage])
    (stage / "new" / "out").mkdir()
    (stage / "new" / "out" / "a.txt").write_text("new")
    with pytest.warns(UserWarning, match="another dtitool run"):
        _staging.sweep(out.parent)
    assert (out / "a.txt").read_text() == "new"
    assert not stage.exists() and other_run_stage.is_dir()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="needs root to give a folder to another user")
def test_staging_folder_of_another_user_is_left_alone(tmp_path):
    out = sentinel_tree(tmp_path)
    write_run(out, {"a.txt": "1"})
    stage = forged_stage(out.parent, "out", [["remove", "out/a.txt"]])
    os.chown(stage, 12345, 12345)
    with pytest.warns(UserWarning, match="another user"):
        _staging.sweep(out.parent)
    assert stage.is_dir() and (out / "a.txt").read_text() == "1"


# --------------------------------------------------------------- the --out itself


def test_symlinked_out_parent_is_followed_and_nothing_else_changes(tmp_path):
    sentinel_tree(tmp_path)
    (tmp_path / "work" / "link").symlink_to(tmp_path / "elsewhere")
    out = tmp_path / "work" / "link" / "run"
    before = snapshot(tmp_path)
    code, _, err = quiet_main(["simulate", "--seed", "1", "--n", "6", "--out", out])
    assert code == 0, err
    real = tmp_path / "elsewhere" / "run"
    assert snapshot(tmp_path, skip=real) == before
    assert (real / "participants.tsv").is_file() and no_stages(tmp_path)


@pytest.mark.parametrize("depth", [1, 2])
def test_new_outputs_never_go_through_a_link(tmp_path, depth):
    out = sentinel_tree(tmp_path)
    write_run(out, {"top.txt": "1", "a/b/f.txt": "x"})
    link = out.joinpath(*["a", "b"][:depth])
    link.rename(tmp_path / "elsewhere" / "moved")
    link.symlink_to(tmp_path / "elsewhere" / "moved")
    before = snapshot(tmp_path, skip=out)
    with pytest.raises(ValueError, match="symbolic link"):
        write_run(out, {"top.txt": "2", "a/b/f.txt": "y"}, force=True)
    assert snapshot(tmp_path, skip=out) == before


# ------------------------------------------------------ 5. the commit point


ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


@pytest.mark.parametrize(("stop", "code", "committed"), [
    ("staged:SIGTERM", 143, False),
    ("staged:SIGINT", 130, False),
    ("commit:SIGTERM", 0, True),
    ("commit:SIGINT", 0, True),
    ("committed:SIGTERM", 0, True),
    ("committed:SIGINT", 0, True),
])
@pytest.mark.usefixtures("sigint_reaches_children")
def test_signal_on_each_side_of_the_commit_point(tmp_path, stop, code, committed):
    out = sentinel_tree(tmp_path)
    write_run(out, {"participants.tsv": "old"})  # an earlier run to replace
    before = snapshot(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "dtitool", "simulate", "--seed", "1", "--n", "6",
         "--out", str(out), "--force", "--quiet"],
        env={**ENV, "DTITOOL_TEST_STOP": stop}, capture_output=True, text=True,
        timeout=120)
    assert proc.returncode == code, proc.stderr
    one_line(proc.stderr)
    sig = stop.partition(":")[2]
    if committed:
        assert proc.stderr == (f"dtitool simulate: {sig} came too late to stop the "
                               "run: its outputs were already committed and are "
                               "complete\n")
        assert (out / "participants.tsv").read_text() != "old"
        assert (out / "roi_md.tsv").is_file()
    else:
        assert snapshot(tmp_path) == before
    assert no_stages(tmp_path)
