from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _analysis_tables import make_tables

from dtitool._constants import DMD_UNIT
from dtitool._io import write_tsv
from dtitool.cli import main
from dtitool.stats.analysis import RESULT_COLUMNS, fit_models

SYNTHETIC = Path(__file__).resolve().parents[1] / "synthetic_data"


def _write(folder, p, r, *, design=True):
    """Write the tables, with the default preset's design.toml beside them."""
    from dtitool.design import design_to_toml, load_preset

    folder.mkdir(parents=True, exist_ok=True)
    write_tsv(p, folder / "participants.tsv")
    write_tsv(r, folder / "roi_md.tsv")
    if design:
        (folder / "design.toml").write_text(
            design_to_toml(load_preset("ketamine-rct")), encoding="utf-8")
    return folder


@pytest.fixture
def data_dir(tmp_path):
    return _write(tmp_path / "data", *make_tables(n_ketamine=20, n_saline=10, seed=5))


def test_analyze_writes_results_and_figures(data_dir, tmp_path, capsys):
    out = tmp_path / "res" / "results.tsv"
    figs = tmp_path / "figs"
    rc = main(["analyze", str(data_dir), "--out", str(out), "--figures", str(figs)])
    assert rc == 0
    captured = capsys.readouterr()
    assert DMD_UNIT in captured.out
    assert "L_hippocampus" in captured.out
    got = pd.read_csv(out, sep="\t")
    assert tuple(got.columns) == RESULT_COLUMNS
    assert len(got) == 56
    want = fit_models(data_dir / "participants.tsv", data_dir / "roi_md.tsv").table
    for col in RESULT_COLUMNS[3:]:
        if pd.api.types.is_numeric_dtype(want[col]):
            np.testing.assert_allclose(got[col], want[col], rtol=1e-9, err_msg=col)
        else:
            assert (got[col] == want[col]).all(), col
    # the default of the command and of the API: valid when the arms' variances
    # differ (docs/model.md, Inference)
    assert (got["inference"] == "welch").all()
    assert (got["missing"] == "complete-case").all()
    assert (got[["roi", "outcome", "term"]] == want[["roi", "outcome", "term"]]).all(
        axis=None
    )
    for name in ("scatter_grid.png", "md_sessions.png", "forest.png"):
        assert (figs / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.rglob(".dtitool-tmp-*"))


def test_refuses_to_overwrite_without_force(data_dir, tmp_path, capsys):
    out = tmp_path / "results.tsv"
    out.write_text("keep me")
    rc = main(["analyze", str(data_dir), "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2
    assert "already exists" in err
    assert out.read_text() == "keep me"
    # --force replaces only what a dtitool run wrote: never the user's file
    assert main(["analyze", str(data_dir), "--out", str(out), "--force"]) == 2
    assert "not listed in" in capsys.readouterr().err
    assert out.read_text() == "keep me"
    out.unlink()
    assert main(["analyze", str(data_dir), "--out", str(out)]) == 0
    first = out.read_bytes()
    assert main(["analyze", str(data_dir), "--out", str(out), "--robust",
                 "--force"]) == 0
    assert out.read_text().startswith("roi\toutcome") and out.read_bytes() != first


def test_options(data_dir, tmp_path, capsys):
    out = tmp_path / "r.tsv"
    args = ["analyze", str(data_dir), "--out", str(out), "--force"]
    assert main([*args, "--robust", "--covariates", "baseline", "age", "sex"]) == 0
    want = fit_models(data_dir / "participants.tsv", data_dir / "roi_md.tsv",
                      robust="HC3", covariates=("baseline", "age", "sex")).table
    got = pd.read_csv(out, sep="\t")
    np.testing.assert_allclose(got["se"], want["se"], rtol=1e-9)
    assert "HC3" in capsys.readouterr().out
    assert main([*args, "--covariates", "--inference", "ols"]) == 0
    got = pd.read_csv(out, sep="\t")
    assert (got.loc[got["term"] == "interaction", "df"] == 30 - 4).all()
    assert main([*args, "--families", "term", "outcome", "--compare"]) == 0
    text = capsys.readouterr().out
    assert "Kopelman" in text
    assert "within families by term, outcome" in text
    assert main([*args, "--families", "model"]) == 2


def test_md_unit_option(tmp_path, capsys):
    p, r = make_tables(n_ketamine=20, n_saline=10, seed=5)
    d = _write(tmp_path / "um", p, r.assign(md=r["md"] * 1e6))
    out = tmp_path / "r.tsv"
    assert main(["analyze", str(d), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "look like um^2/s" in err
    assert not out.exists()
    assert main(["analyze", str(d), "--out", str(out), "--md-unit", "um^2/s"]) == 0


def test_replicates(tmp_path, capsys):
    p1, r1 = make_tables(n_ketamine=20, n_saline=10, seed=5)
    p2, r2 = make_tables(n_ketamine=20, n_saline=10, seed=6)
    P = pd.concat([p1.assign(replicate=1), p2.assign(replicate=2)])
    R = pd.concat([r1.assign(replicate=1), r2.assign(replicate=2)])
    d = _write(tmp_path / "reps", P[["replicate", *p1.columns]],
               R[["replicate", *r1.columns]])  # fmt: skip
    out = tmp_path / "r.tsv"
    assert main(["analyze", str(d), "--out", str(out)]) == 2
    assert "--replicate K" in capsys.readouterr().err
    assert not out.exists()
    assert main(["analyze", str(d), "--out", str(out), "--replicate", "2"]) == 0
    got = pd.read_csv(out, sep="\t")
    want = fit_models(d / "participants.tsv", d / "roi_md.tsv", replicate=2).table
    np.testing.assert_allclose(got["estimate"], want["estimate"], rtol=1e-9)


def _bad_inputs():
    p, r = make_tables(n_ketamine=20, n_saline=10, seed=5)
    dup = pd.concat([r, r.iloc[[7]]], ignore_index=True)
    nan_md = r.astype({"md": float})
    nan_md.loc[4, "md"] = np.nan
    out_of_range = p.copy()
    out_of_range.loc[2, "madrs_24h"] = 75
    grp = p.copy()
    grp.loc[0, "group"] = "Ketamine"
    return {
        # (one missing score column is a warning naming it: test_names.py)
        "no outcome": (p.drop(columns=["madrs_baseline", "qids_baseline"]), r,
                       "outcome"),
        "unknown group": (grp, r, "unknown group label"),
        "duplicate rows": (p, dup, "duplicated participant/session/ROI"),
        "nan md": (p, nan_md, "md is empty"),
        "wrong unit": (p, r.assign(md=r["md"] * 1e3), "1e-3 mm^2/s"),
        "subject only in roi_md": (p.iloc[1:], r, "not in the participants table"),
        "subject only in participants": (
            p, r[r["participant_id"] != "sub-004"], "no rows in the ROI MD table"
        ),
        "score out of range": (out_of_range, r, "outside the scale's range 0-60"),
        "too few in an arm": (
            p[p["group"] == "ketamine"].pipe(
                lambda d: pd.concat([d, p[p["group"] == "saline"].iloc[:2]])
            ),
            r[r["participant_id"].isin(
                list(p.loc[p["group"] == "ketamine", "participant_id"])
                + list(p.loc[p["group"] == "saline", "participant_id"].iloc[:2])
            )],
            "saline arm has 2",
        ),
    }


@pytest.mark.parametrize("case", list(_bad_inputs()))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys, case):
    p, r, match = _bad_inputs()[case]
    d = _write(tmp_path / "bad", p, r)
    out = tmp_path / "out" / "results.tsv"
    figs = tmp_path / "figs"
    rc = main(["analyze", str(d), "--out", str(out), "--figures", str(figs)])
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dtitool analyze: error:")
    assert match in lines[0]
    assert not out.exists()
    assert not figs.exists() or not any(figs.iterdir())
    assert not list(tmp_path.rglob("*.png"))


def test_missing_input_files(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    rc = main(["analyze", str(tmp_path / "empty"), "--out", str(tmp_path / "r.tsv")])
    assert rc == 2
    assert "participants.tsv" in capsys.readouterr().err


def test_failure_while_drawing_leaves_nothing(data_dir, tmp_path, monkeypatch, capsys):
    import dtitool.report.plots

    def boom(*a, **k):
        raise ValueError("drawing failed")

    monkeypatch.setattr(dtitool.report.plots, "plot_scatter_grid", boom)
    out = tmp_path / "results.tsv"
    figs = tmp_path / "figs"
    rc = main(["analyze", str(data_dir), "--out", str(out), "--figures", str(figs)])
    assert rc == 2
    assert "drawing failed" in capsys.readouterr().err
    assert not out.exists()
    assert not list(tmp_path.rglob("*.png"))


@pytest.mark.skipif(
    not (SYNTHETIC / "roi_md.tsv").exists(), reason="synthetic_data not generated"
)
def test_synthetic_data_deterministic(tmp_path):
    a, b = tmp_path / "a.tsv", tmp_path / "b.tsv"
    assert main(["analyze", str(SYNTHETIC), "--out", str(a)]) == 0
    assert main(["analyze", str(SYNTHETIC), "--out", str(b)]) == 0
    assert a.read_bytes() == b.read_bytes()
    got = pd.read_csv(a, sep="\t")
    assert len(got) == 56
    assert (got["n"] == 98).all()
    want = fit_models(SYNTHETIC / "participants.tsv", SYNTHETIC / "roi_md.tsv")
    np.testing.assert_allclose(got["p"], want.table["p"], rtol=1e-9)


def test_inference_and_maxt_options(data_dir, tmp_path, capsys):
    out = tmp_path / "w.tsv"
    args = ["analyze", str(data_dir), "--out", str(out), "--force"]
    assert main([*args, "--inference", "welch"]) == 0
    got = pd.read_csv(out, sep="\t")
    want = fit_models(data_dir / "participants.tsv", data_dir / "roi_md.tsv",
                      inference="welch").table
    np.testing.assert_allclose(got["p"], want["p"], rtol=1e-9)
    assert (got["inference"] == "welch").all()
    assert "Welch" in capsys.readouterr().out
    assert main([*args, "--familywise", "maxt", "--permutations", "300",
                 "--seed", "5"]) == 0
    got = pd.read_csv(out, sep="\t")
    assert tuple(got.columns) == (*RESULT_COLUMNS, "p_maxt")
    want = fit_models(data_dir / "participants.tsv", data_dir / "roi_md.tsv",
                      familywise="maxt", permutations=300, rng=5).table
    np.testing.assert_allclose(got["p_maxt"], want["p_maxt"], rtol=1e-9)
    assert "seed 5" in capsys.readouterr().out
    assert main([*args, "--robust", "--inference", "welch"]) == 2
    err = capsys.readouterr().err
    assert "--robust means --inference hc3" in err
    assert len(err.strip().splitlines()) == 1


def test_analyze_without_a_design_needs_the_control_arm(tmp_path, capsys):
    folder = _write(tmp_path / "bare", *make_tables(n_ketamine=20, n_saline=10,
                                                    seed=5), design=False)
    (folder / "visits.tsv").write_text(
        "visit\thours\tdose\tprimary\nbaseline\t0\t\tfalse\n24h\t24\t\ttrue\n",
        encoding="utf-8")
    out = tmp_path / "res.tsv"
    rc = main(["analyze", str(folder), "--out", str(out)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "control arm" in err and "--control ARM" in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()
    assert main(["analyze", str(folder), "--out", str(out), "--control",
                 "saline"]) == 0
    got = pd.read_csv(out, sep="\t")
    assert set(got["term"]) == {"interaction", "slope_ketamine", "slope_saline",
                                "slope_pooled"}
