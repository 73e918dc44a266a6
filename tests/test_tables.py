import numpy as np
import pandas as pd
import pytest
from _analysis_tables import make_tables

from dtitool._io import write_tsv
from dtitool.design import load_preset, write_design
from dtitool.tables import check_tables as _check_tables
from dtitool.tables import compute_changes as _compute_changes
from dtitool.tables import outcomes_in, read_tables

# make_tables builds tables of the ketamine-rct preset; the design names them.
KET = load_preset("ketamine-rct")


def check_tables(p, r, **kw):
    return _check_tables(p, r, design=KET, **kw)


def compute_changes(p, r, **kw):
    return _compute_changes(p, r, design=KET, **kw)


@pytest.fixture
def tables():
    return make_tables(n_ketamine=8, n_saline=5, seed=1)


def test_check_returns_clean_copies(tables):
    p, r = tables
    p2, r2 = check_tables(p, r)
    assert list(r2.columns) == ["participant_id", "session", "roi", "md"]
    assert len(p2) == 13
    assert len(r2) == 13 * 7 * 2
    pd.testing.assert_series_equal(r2["md"], r["md"], check_names=False)
    assert outcomes_in(p2) == ("madrs", "qids")
    # inputs untouched
    assert p["madrs_baseline"].dtype.kind == "i"


def test_compute_changes_values(tables):
    p, r = tables
    ch = compute_changes(p, r)
    assert len(ch) == 13 * 7
    assert list(ch["roi"].unique()) == list(r["roi"].unique())
    row = ch.loc[(ch["participant_id"] == "sub-003") & (ch["roi"] == "vACC")].iloc[0]
    sel = r.loc[(r["participant_id"] == "sub-003") & (r["roi"] == "vACC")]
    md = sel.set_index("session")["md"]
    assert row["md_baseline"] == md["baseline"]
    assert row["d_md"] == pytest.approx(md["24h"] - md["baseline"], rel=1e-12)
    assert row["d_md_pct"] == pytest.approx(
        100 * (md["24h"] - md["baseline"]) / md["baseline"], rel=1e-12
    )
    prow = p.set_index("participant_id").loc["sub-003"]
    assert row["d_madrs"] == prow["madrs_24h"] - prow["madrs_baseline"]
    assert row["d_qids"] == prow["qids_24h"] - prow["qids_baseline"]
    assert {"age", "sex", "group"} <= set(ch.columns)


def test_missing_24h_scan_gives_nan_change():
    p, r = make_tables(n_ketamine=8, n_saline=5, missing_24h=[(2, "L_BA10")])
    ch = compute_changes(p, r)
    miss = ch.loc[(ch["participant_id"] == "sub-003")]
    assert miss.loc[miss["roi"] == "L_BA10", "d_md"].isna().all()
    assert miss.loc[miss["roi"] != "L_BA10", "d_md"].notna().all()


def test_read_tables_from_folder(tmp_path, tables):
    p, r = tables
    write_tsv(p, tmp_path / "participants.tsv")
    write_tsv(r, tmp_path / "roi_md.tsv")
    # without a design, a visits.tsv or control=, the names are unknown
    with pytest.raises(ValueError, match=r"control arm of these tables cannot be "
                       r"determined: give control=ARM \(--control ARM"):
        read_tables(tmp_path)
    with pytest.raises(ValueError, match=r"the visits .*cannot be determined: give "
                       r"visits=.*visits.tsv beside the tables"):
        read_tables(tmp_path, control="saline")
    p2, r2 = read_tables(tmp_path, control="saline", visits=("baseline", "24h"))
    assert p2.attrs["trial_names"] == KET.names
    write_design(KET, tmp_path / "design.toml")
    p2, r2 = read_tables(tmp_path)
    assert len(p2) == len(p)
    np.testing.assert_allclose(r2["md"], r["md"], rtol=1e-9)
    ch = compute_changes(tmp_path / "participants.tsv", tmp_path / "roi_md.tsv")
    assert len(ch) == 13 * 7


def test_read_tables_missing_file(tmp_path):
    with pytest.raises(ValueError, match=r"does not exist"):
        read_tables(tmp_path)
    with pytest.raises(ValueError, match=r"input folder"):
        read_tables(tmp_path / "nope")


def test_wrong_type():
    with pytest.raises(TypeError, match=r"participants table must be a pandas"):
        check_tables(3, pd.DataFrame())


# --- bad inputs, each with the message a user needs -------------------------


def test_missing_columns(tables):
    p, r = tables
    with pytest.raises(ValueError, match=r"participants table is missing .*'group'"):
        check_tables(p.drop(columns="group"), r)
    with pytest.raises(ValueError, match=r"ROI MD table is missing .*'md'"):
        check_tables(p, r.drop(columns="md"))
    with pytest.warns(UserWarning, match=r"has 'qids_baseline' but not 'qids_24h'; "
                      r"outcome 'qids' needs both and is not analysed"):
        p2, _ = check_tables(p.drop(columns="qids_24h"), r)
    assert outcomes_in(p2) == ("madrs",)
    no_scores = p.drop(columns=["madrs_baseline", "madrs_24h", "qids_baseline",
                                "qids_24h"])  # fmt: skip
    with (pytest.warns(UserWarning, match=r"no score columns for the design's "
                       r"outcome\(s\) madrs, qids"),
          pytest.raises(ValueError, match=r"no outcome scores")):
        check_tables(no_scores, r)


def test_unknown_group_label(tables):
    p, r = tables
    p = p.copy()
    p.loc[0, "group"] = "placebo"
    with pytest.raises(ValueError, match=r"unknown group label.*'placebo'.*'ketamine'"):
        check_tables(p, r)


def test_unknown_session_label(tables):
    p, r = tables
    r = r.copy()
    r.loc[0, "session"] = "post"
    with pytest.raises(ValueError, match=r"unknown session label.*'post'.*'24h'"):
        check_tables(p, r)


def test_duplicated_rows_named(tables):
    p, r = tables
    r2 = pd.concat([r, r.iloc[[5]]], ignore_index=True)
    sid, ses, roi = r.iloc[5][["participant_id", "session", "roi"]]
    with pytest.raises(ValueError, match=rf"duplicated .*{sid} {ses} {roi}"):
        check_tables(p, r2)
    p2 = pd.concat([p, p.iloc[[2]]], ignore_index=True)
    with pytest.raises(ValueError, match=r"more than once: sub-003"):
        check_tables(p2, r)


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (np.nan, r"md is empty \(NaN\) for sub-001"),
        ("abc", r"md is non-numeric \('abc'\)"),
        (-1e-3, "md must be positive"),
        (np.inf, "infinite"),
    ],
)
def test_bad_md_values(tables, value, match):
    p, r = tables
    r = r.astype({"md": object})
    r.loc[0, "md"] = value
    with pytest.raises(ValueError, match=match):
        check_tables(p, r)


@pytest.mark.parametrize(
    ("factor", "unit"),
    [(1e3, "1e-3 mm\\^2/s"), (1e6, "um\\^2/s"), (1e-6, "m\\^2/s")],
)
def test_md_wrong_unit_is_an_error_naming_the_unit(tables, factor, unit):
    p, r = tables
    r = r.assign(md=r["md"] * factor)
    with pytest.raises(ValueError, match=rf"plausible brain MD.*look like {unit}"):
        check_tables(p, r)


def test_md_declared_unit_is_converted(tables):
    p, r = tables
    _, r_um = check_tables(p, r.assign(md=r["md"] * 1e6), md_unit="um^2/s")
    np.testing.assert_allclose(r_um["md"], r["md"], rtol=1e-12)
    _, r_k = check_tables(p, r.assign(md=r["md"] * 1e3), md_unit="1e-3 mm^2/s")
    np.testing.assert_allclose(r_k["md"], r["md"], rtol=1e-12)
    with pytest.raises(ValueError, match=r"md_unit must be one of"):
        check_tables(p, r, md_unit="mm2/s")


def test_md_fa_like_values_hint(tables):
    p, r = tables
    with pytest.raises(ValueError, match=r"FA map"):
        check_tables(p, r.assign(md=r["md"] * 1e3 * 0.5))


def test_md_unusual_but_tolerated_warns(tables):
    p, r = tables
    with pytest.warns(UserWarning, match=r"unusual for brain tissue"):
        check_tables(p, r.assign(md=r["md"] * 8))


def test_md_mixed_units(tables):
    p, r = tables
    r = r.copy()
    r.loc[3, "md"] = r.loc[3, "md"] * 1000
    with pytest.raises(ValueError, match=r"times the median.*mixed units"):
        check_tables(p, r)


def test_subjects_in_one_table_only(tables):
    p, r = tables
    with pytest.raises(ValueError, match=r"not in the participants table: sub-013"):
        check_tables(p.iloc[:-1], r)
    r2 = r.loc[r["participant_id"] != "sub-002"]
    with pytest.raises(ValueError, match=r"no rows in the ROI MD table: sub-002"):
        check_tables(p, r2)


@pytest.mark.parametrize(
    ("col", "value", "match"),
    [
        ("madrs_24h", 61, "score 61 .* outside the scale's range 0-60"),
        ("qids_baseline", 28, "score 28 .* outside the scale's range 0-27"),
        ("qids_24h", -1, "outside the scale's range 0-27"),
        ("madrs_24h", 12.5, "non-integer score 12.5"),
        ("madrs_24h", "x", "non-numeric value 'x'"),
    ],
)
def test_bad_scores(tables, col, value, match):
    p, r = tables
    p = p.astype({col: object})
    p.loc[0, col] = value
    with pytest.raises(ValueError, match=match):
        check_tables(p, r)


def test_missing_baseline_score_is_an_error_missing_24h_is_not(tables):
    p, r = tables
    p = p.astype({"madrs_24h": float, "madrs_baseline": float})
    p.loc[1, "madrs_24h"] = np.nan
    check_tables(p, r)
    p.loc[1, "madrs_baseline"] = np.nan
    with pytest.raises(ValueError, match=r"no madrs_baseline score for sub-002"):
        check_tables(p, r)


def test_too_few_in_an_arm():
    p, r = make_tables(n_ketamine=6, n_saline=2)
    with pytest.raises(ValueError, match=r"saline arm has 2 participant.*at least 3"):
        check_tables(p, r)


def test_bad_sex_label(tables):
    p, r = tables
    p = p.copy()
    p.loc[0, "sex"] = "female"
    with pytest.raises(ValueError, match=r"unknown sex label.*'female'"):
        check_tables(p, r)


def test_orphan_24h_scan_warns(tables):
    p, r = tables
    drop = (r["participant_id"] == "sub-001") & (r["roi"] == "vACC")
    drop &= r["session"] == "baseline"
    with pytest.warns(UserWarning, match=r"without a baseline scan.*sub-001 vACC"):
        check_tables(p, r.loc[~drop])


def test_replicates(tables):
    p, r = tables
    p2, r2 = make_tables(n_ketamine=8, n_saline=5, seed=2)
    P = pd.concat([p.assign(replicate=1), p2.assign(replicate=2)])
    R = pd.concat([r.assign(replicate=1), r2.assign(replicate=2)])
    P = P[["replicate", *p.columns]]
    with pytest.raises(ValueError, match=r"hold 2 replicates.*--replicate"):
        check_tables(P, R)
    a, b = check_tables(P, R, replicate=2)
    assert "replicate" not in a.columns
    assert "replicate" not in b.columns
    np.testing.assert_allclose(b["md"], r2["md"])
    with pytest.raises(ValueError, match=r"replicate 3 is not in the tables"):
        check_tables(P, R, replicate=3)
    with pytest.raises(ValueError, match=r"only the participants table"):
        check_tables(P, r)
    # a single replicate needs no choice
    a, _ = check_tables(p.assign(replicate=1), r.assign(replicate=1))
    assert "replicate" not in a.columns
    with pytest.raises(ValueError, match=r"neither table has a 'replicate'"):
        check_tables(p, r, replicate=1)
