import pandas as pd
import pytest

from dtitool import __version__
from dtitool.cli import main


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_simulate_writes_tables(tmp_path, capsys):
    out = tmp_path / "cohort"
    code, stdout, err = _run(["simulate", "--preset", "ketamine-rct", "--seed", "7",
                              "--out", str(out)], capsys)
    assert code == 0, err
    assert "seed 7" in stdout
    p = pd.read_csv(out / "participants.tsv", sep="\t")
    r = pd.read_csv(out / "roi_md.tsv", sep="\t")
    assert len(p) == 98 and len(r) == 1372
    assert (p.group == "ketamine").sum() == 65
    text = (out / "design.toml").read_text()
    assert "[run]\nseed = 7\n" in text
    assert not list(out.glob(".dtitool-tmp*"))


def test_design_file_repeats_run(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    code = _run(["simulate", "--seed", "3", "--n", "40", "--out", str(a)], capsys)[0]
    assert code == 0
    assert _run(["simulate", "--design", str(a / "design.toml"), "--out", str(b)],
                capsys)[0] == 0
    for name in ("participants.tsv", "roi_md.tsv", "true_md.tsv", "design.toml"):
        assert (a / name).read_bytes() == (b / name).read_bytes()


def test_replicates_flag(tmp_path, capsys):
    out = tmp_path / "rep"
    assert _run(["simulate", "--seed", "1", "--replicates", "3", "--out", str(out)],
                capsys)[0] == 0
    p = pd.read_csv(out / "participants.tsv", sep="\t")
    assert p.columns[0] == "replicate" and p.replicate.max() == 3


def test_refuses_overwrite_unless_force(tmp_path, capsys):
    out = tmp_path / "c"
    assert _run(["simulate", "--seed", "1", "--out", str(out)], capsys)[0] == 0
    before = (out / "roi_md.tsv").read_bytes()
    code, _, err = _run(["simulate", "--seed", "2", "--out", str(out)], capsys)
    assert code == 2
    assert "already exists" in err and "--force" in err
    assert (out / "roi_md.tsv").read_bytes() == before
    assert _run(["simulate", "--seed", "2", "--out", str(out), "--force"],
                capsys)[0] == 0
    assert (out / "roi_md.tsv").read_bytes() != before


def _bad_toml(tmp_path, text):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    return str(f)


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (["--preset", "nope"], "unknown preset 'nope'; known presets: ect-course, "),
        (["--n", "2"], "too small for the arms"),
        (["--seed", "x"], "argument --seed: invalid int value: 'x'"),
        (["--seed", "-4"], "non-negative"),
        (["--replicates", "0"], "--replicates must be a positive integer"),
        (["--design", "{tmp}/missing.toml"], "does not exist or is not a file"),
        (["--design", "TOML:name = [1,"], "is not valid TOML"),
        (["--design", "TOML:base = 'ketamine-rct'\n[trial]\nn = 'many'\n"],
         "trial.n must be an integer; got str 'many'"),
        (["--design", "TOML:base = 'ketamine-rct'\n[trial]\nsize = 3\n"],
         "unknown key trial.size"),
        (["--design", "TOML:base = 'ketamine-rct'\n[trial]\nblock_size = 4\n"],
         "block_size must be a multiple"),
    ],
)
def test_bad_input_one_line_exit_2(tmp_path, capsys, args, match):
    out = tmp_path / "out"
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    args = [_bad_toml(tmp_path, a[5:]) if a.startswith("TOML:") else a for a in args]
    code, _, err = _run(["simulate", *args, "--out", str(out)], capsys)
    assert code == 2
    assert match in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_version_and_help(capsys):
    assert main(["--version"]) == 0
    assert __version__ in capsys.readouterr().out
    assert main(["simulate", "--help"]) == 0
    assert "--replicates" in capsys.readouterr().out


def test_every_subcommand_has_help(capsys):
    from dtitool.cli import _COMMANDS

    for name in _COMMANDS:
        assert main([name, "--help"]) == 0, name
        assert "usage:" in capsys.readouterr().out


def test_no_command_is_usage_error(capsys):
    assert main([]) == 2


def test_simulate_prints_the_design_summary(tmp_path, capsys):
    assert main(["simulate", "--seed", "3", "--out", str(tmp_path / "a")]) == 0
    out = capsys.readouterr().out
    for word in ("MD model of 'ketamine-rct'", "rel sal", "r ket", "change SD sal",
                 "regression to the mean", "at floor"):
        assert word in out
    assert "Outside the design's ranges" not in out
    # the score summary is over many simulated trials, not the 98 written, and
    # says so: 205 whole trials of 98 reach the summary's 20,000 participants
    assert ("a summary over 205 simulated trials of 98 participants each, 20,090 "
            "in all, not over the cohort simulated here") in out
    assert "20090 simulated participants" not in out
    assert main(["simulate", "--preset", "ketamine-rct-face-value", "--seed", "3",
                 "--out", str(tmp_path / "b")]) == 0
    assert "Outside the design's ranges" in capsys.readouterr().out
    assert main(["simulate", "--seed", "3", "--quiet", "--out",
                 str(tmp_path / "c")]) == 0
    assert "MD model" not in capsys.readouterr().out
