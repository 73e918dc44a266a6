import pandas as pd
import pytest

from dtitool.cli import main
from dtitool.stats.power import POWER_COLUMNS


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_power_writes_tables(tmp_path, capsys):
    out = tmp_path / "pw"
    code, stdout, err = _run(capsys, "power", "--replicates", "200", "--seed", "1",
                             "--out", str(out), "--quiet")
    assert code == 0, err
    assert stdout == ""
    t = pd.read_csv(out / "power.tsv", sep="\t")
    assert tuple(t.columns) == POWER_COLUMNS
    assert len(t) == 56
    assert t["power"].between(0, 1).all()
    assert t["size"].between(0, 1).all()
    assert (t["inference"] == "welch").all()  # valid by default
    fw = pd.read_csv(out / "familywise.tsv", sep="\t")
    assert {"interaction", "reported"} <= set(fw["family"])
    assert set(fw["method"]) == {"none", "holm", "bh", "maxt"}
    assert "seed = 1" in (out / "design.toml").read_text()


def test_power_same_files_for_any_chunk_size_and_n_jobs(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    assert _run(capsys, "power", "--replicates", "300", "--seed", "4", "--out",
                str(a), "--quiet")[0] == 0
    assert _run(capsys, "power", "--replicates", "300", "--seed", "4", "--out",
                str(b), "--quiet", "--chunk-size", "64", "--n-jobs", "2")[0] == 0
    for name in ("power.tsv", "familywise.tsv"):
        assert (a / name).read_bytes() == (b / name).read_bytes()


@pytest.mark.slow  # 2.5-4 s: the default suite stays under 5 minutes
def test_power_curve_and_sample_size(tmp_path, capsys):
    out = tmp_path / "c"
    code, stdout, err = _run(
        capsys, "power", "--replicates", "150", "--seed", "2", "--out", str(out),
        "--curve", "n=60:140:40", "--target-power", "0.8",
        "--test", "L_BA10:madrs:slope_ketamine", "--n-max", "300",
        "--family", "mine=L_BA10:madrs:interaction:+,R_BA10:qids:slope_pooled",
    )
    assert code == 0, err
    curve = pd.read_csv(out / "power_curve.tsv", sep="\t")
    assert sorted(set(curve["value"])) == [60, 100, 140]
    assert (out / "power_curve.png").stat().st_size > 1000
    ss = pd.read_csv(out / "sample_size.tsv", sep="\t")
    assert {"n", "power", "power_ci_low", "power_ci_high"} <= set(ss.columns)
    assert "reaches power" in stdout
    fw = pd.read_csv(out / "familywise.tsv", sep="\t")
    assert "mine" in set(fw["family"])


def test_refuses_to_overwrite_without_force(tmp_path, capsys):
    out = tmp_path / "o"
    args = ["power", "--replicates", "64", "--seed", "1", "--out", str(out),
            "--quiet"]
    assert _run(capsys, *args)[0] == 0
    code, _, err = _run(capsys, *args)
    assert code == 2
    assert "already exists" in err
    assert len(err.strip().splitlines()) == 1
    assert _run(capsys, *args, "--force")[0] == 0


@pytest.mark.parametrize(
    ("extra", "match"),
    [
        (["--replicates", "0"], "--replicates"),
        (["--seed", "-3"], "seed"),
        (["--curve", "size=1:2:1"], "--curve"),
        (["--curve", "n=200:40:20"], "--curve"),
        (["--n-jobs", "0"], "--n-jobs"),
        (["--alpha", "2"], "alpha"),
        (["--preset", "nope"], "unknown preset"),
        (["--test", "L_BA10:madrs:interaction"], "--target-power"),
        (["--target-power", "1.5"], "--target-power"),
        (["--target-power", "0.8", "--test", "L_BA10:madrs"], "ROI:OUTCOME:TERM"),
        (["--family", "x=L_BA10:madrs:bogus"], "unknown term"),
        (["--replicates", "many"], "invalid int"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(tmp_path, capsys, extra, match):
    code, _, err = _run(capsys, "power", "--out", str(tmp_path / "x"),
                        "--replicates", "10", *extra)
    assert code == 2
    assert match in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x" / "power.tsv").exists()


def test_reproduce(tmp_path, capsys):
    out = tmp_path / "r"
    code, stdout, err = _run(capsys, "reproduce", "--replicates", "300", "--seed",
                             "1", "--out", str(out))
    assert code == 0, err
    t = pd.read_csv(out / "reproduce.tsv", sep="\t")
    assert list(t.columns[:6]) == ["roi", "outcome", "term", "reported_p",
                                   "median_p", "power"]
    assert len(t) == 17
    r = t[(t["roi"] == "R_BA10")].iloc[0]
    assert r["term"] == "slope_pooled"
    assert r["outcome"] == "any"  # one label for every seed (docs/model.md)
    assert r["reported_outcome"] == "any"
    assert "reported" in stdout
    assert "L_hippocampus" in stdout
    assert "0.016-0.082" in stdout


def test_reproduce_bad_arguments(tmp_path, capsys):
    code, _, err = _run(capsys, "reproduce", "--replicates", "-1", "--out",
                        str(tmp_path / "r"))
    assert code == 2
    assert len(err.strip().splitlines()) == 1


@pytest.mark.slow  # 2.5-4 s: the default suite stays under 5 minutes
def test_power_inference_size_warning_and_design_analysis_curve(tmp_path, capsys):
    out = tmp_path / "w"
    code, stdout, err = _run(capsys, "power", "--preset", "null", "--replicates",
                             "3000", "--seed", "3", "--out", str(out),
                             "--inference", "ols")
    assert code == 0
    # the reported analysis is off its level in the null preset: one line says
    # which tests and which option fixes them
    warn = [ln for ln in err.splitlines() if ln.startswith("dtitool: warning:")]
    assert len(warn) == 1
    assert "slope_saline" in warn[0] and "--inference welch" in warn[0]
    assert "size" in stdout
    t = pd.read_csv(out / "power.tsv", sep="\t")
    assert (~t.loc[t["term"] == "slope_saline", "size_ok"]).all()
    out2 = tmp_path / "c"
    code, stdout, err = _run(capsys, "power", "--replicates", "200", "--seed", "2",
                             "--out", str(out2), "--inference", "welch", "--curve",
                             "effect=0.5,1", "--quiet")
    assert code == 0, err
    t = pd.read_csv(out2 / "power.tsv", sep="\t")
    assert (t["inference"] == "welch").all()
    curve = pd.read_csv(out2 / "power_curve.tsv", sep="\t")
    assert {"true_value", "type_s", "exaggeration", "size"} <= set(curve.columns)
    lb = curve[(curve["roi"] == "L_BA10") & (curve["outcome"] == "madrs")
               & (curve["term"] == "interaction")].set_index("value")
    # half the effect: half the true value (correlations scale linearly)
    assert lb.loc[0.5, "true_value"] == pytest.approx(0.5 * lb.loc[1.0,
                                                                   "true_value"],
                                                      rel=0.05)
    # the same null counterpart for both points: the same size
    assert lb.loc[0.5, "size"] == lb.loc[1.0, "size"]
    assert "inference = \"welch\"" in (out2 / "design.toml").read_text()


def test_reproduce_inference_option(tmp_path, capsys):
    out = tmp_path / "r"
    code, stdout, err = _run(capsys, "reproduce", "--replicates", "200", "--seed",
                             "1", "--out", str(out), "--inference", "welch")
    assert code == 0, err
    t = pd.read_csv(out / "reproduce.tsv", sep="\t")
    assert (t["inference"] == "welch").all()
    assert {"size", "half_effect_exaggeration", "type_s"} <= set(t.columns)
    assert "exag_if_half" in stdout
    code, _, err = _run(capsys, "reproduce", "--replicates", "10", "--out",
                        str(tmp_path / "x"), "--inference", "gls")
    assert code == 2
    assert "invalid choice" in err
