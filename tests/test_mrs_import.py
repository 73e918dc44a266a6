"""dtitool mrs-import and dtitool.mrs: real Osprey and LCModel output read as
printed, round trips through each tool's format, and one-line refusals.

tests/data/mrs/README.md says where the real files come from. Every other
results file here is written by the test itself (by dtitool.mrs's writers or by
hand, for a broken input) and is no tool's output.
"""

import math
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dtitool.cli import main
from dtitool.mrs import (
    measure_name,
    mrs_tables,
    read_gannet,
    read_lcmodel,
    read_mrs,
    read_osprey,
    sniff_format,
    write_gannet,
    write_lcmodel_table,
    write_osprey,
)
from dtitool.mrs.writers import format_lcmodel_number

DATA = Path(__file__).parent / "data" / "mrs"
SVS_97 = DATA / "lcmodel" / "svs_97.TABLE"
OSPREY = DATA / "osprey"
# The datasets of that Osprey run in its job's order (its job_G1.m lists
# S01, S03, S04, S05, S07, S09 and S11 of Big GABA site G1).
G1 = ["S01", "S03", "S04", "S05", "S07", "S09", "S11"]


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _cell(frame, **where):
    sel = np.ones(len(frame), bool)
    for k, v in where.items():
        sel &= (frame[k] == v).to_numpy()
    assert sel.sum() == 1, (where, sel.sum())
    return frame[sel].iloc[0]


def _cli(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------ real LCModel


def test_real_lcmodel_table_reads_as_printed():
    with pytest.warns(UserWarning, match=r"-CrCH2 as neg_crch2.*MM20\+Lip20"):
        df = read_lcmodel(SVS_97)
    assert len(df) == 2 * 37  # $$CONC 38 lines = 37 metabolites + header
    # LCModel ran without water scaling (no DOWS in $$INPU): a.u. and /Cr+PCr
    assert set(df["unit"]) == {"a.u.", "ratio to tCr"}
    expect = {  # metabolite: (measure, Conc., %SD, /Cr+PCr) as printed
        "GABA": ("gaba", 4.05e-02, 32, 0.162),
        "Glu+Gln": ("glx", 6.22e-02, 40, 0.248),
        "Glu": ("glu", 3.27e-02, 55, 0.131),
        "Gln": ("gln", 2.95e-02, 53, 0.118),
        "NAA": ("naa", 7.97e-02, 11, 0.318),
        "NAA+NAAG": ("tnaa", 0.148, 6, 0.591),
        "Cr+PCr": ("tcr", 0.251, 3, 1.000),
        "Ins": ("mi", 0.297, 5, 1.186),
        "Glth": ("gsh", 1.46e-02, 49, 5.8e-02),
        "GPC+PCh": ("tcho", 0.115, 2, 0.457),
        "Cr": ("cr", 0.0, 999, 0.0),
    }
    for metab, (measure, conc, sd, ratio) in expect.items():
        raw = _cell(df, metabolite=metab, scale="raw")
        rel = _cell(df, metabolite=metab, scale="tcr")
        assert raw["measure"] == rel["measure"] == measure
        assert raw["value"] == conc and rel["value"] == ratio
        assert raw["quality"] == rel["quality"] == sd
        assert raw["quality_kind"] == "crlb"
    assert _cell(df, metabolite="GABA", scale="raw")["line"] == 12


def test_real_lcmodel_table_through_the_command_line(tmp_path, capsys):
    src = tmp_path / "sub-01_ses-pre_voxel-acc_svs.table"
    shutil.copy(SVS_97, src)
    code, out, err = _cli(["mrs-import", "--format", "lcmodel", "--metabolites",
                           "gaba,glx,tnaa,tcr", "--out", str(tmp_path / "o"),
                           str(src)], capsys)
    assert code == 0, err
    gaba = pd.read_csv(tmp_path / "o" / "roi_gaba.tsv", sep="\t",
                       dtype={"session": str})
    assert gaba.to_dict("records") == [{
        "participant_id": "sub-01", "session": "pre", "roi": "acc",
        "gaba": 0.162, "unit": "ratio to tCr", "crlb": 32}]
    assert sorted(p.name for p in (tmp_path / "o").glob("roi_*")) == [
        f"roi_{m}.{e}" for m in ("gaba", "glx", "tcr", "tnaa")
        for e in ("json", "tsv")]
    assert "ratio to tCr (also in the files: raw): gaba, glx, tcr, tnaa" in out


# ------------------------------------------------------------- real Osprey


def test_real_osprey_tables_read_as_printed():
    paths = [OSPREY / f for f in ("diff1_tCr_Voxel_1_Basis_1.tsv",
                                  "A_tCr_Voxel_1_Basis_1.tsv",
                                  "diff1_rawWaterScaled_Voxel_1_Basis_1.tsv")]
    with pytest.warns(UserWarning, match="MM09 as mm09"):
        df = read_osprey(*paths, subjects=G1)
    assert list(dict.fromkeys(df["file"])) == G1
    # GABA+ of the first dataset: ratio and water-scaled, as printed
    assert _cell(df, file="S01", metabolite="GABAplus", scale="tcr",
                 spectrum="diff1")["value"] == 0.390480596240997
    water = _cell(df, file="S01", metabolite="GABAplus", scale="water")
    assert (water["value"], water["unit"], water["measure"]) == (
        4.73933778468217, "i.u.", "gaba")
    assert _cell(df, file="S04", metabolite="tNAA", spectrum="A")["value"] == \
        2.19050076088165
    assert _cell(df, file="S11", metabolite="Glx", spectrum="diff1",
                 scale="tcr")["value"] == 1.81341517242917
    # GABA beside GABAplus is Osprey's GABA without the co-edited MM
    assert _cell(df, file="S01", metabolite="GABA", spectrum="diff1",
                 scale="tcr")["measure"] == "gaba_nomm"
    assert df["quality"].isna().all()  # Osprey's own fit writes no CRLB table


def test_real_osprey_totals_are_the_sums_of_their_parts():
    """The vendored tables are whole: every tCr, tNAA, Glx, tCho = its parts."""
    for name in ("A_tCr_Voxel_1_Basis_1.tsv", "diff1_tCr_Voxel_1_Basis_1.tsv"):
        t = pd.read_csv(OSPREY / name, sep="\t")
        assert len(t) == 7
        for total, parts in [("tCr", ("Cr", "PCr")), ("tNAA", ("NAA", "NAAG")),
                             ("Glx", ("Glu", "Gln")), ("tCho", ("GPC", "PCh"))]:
            np.testing.assert_allclose(t[total], t[list(parts)].sum(axis=1),
                                       rtol=1e-12, atol=1e-15)
        if name.startswith("A_"):
            assert (t["tCr"] == 1).all()


def test_real_osprey_run_in_long_tables(tmp_path, capsys):
    """MEGA: GABA+ and Glx from the edited difference, NAA and tCr from A."""
    run = tmp_path / "G1"
    (run / "QuantifyResults").mkdir(parents=True)
    for f in OSPREY.glob("*.tsv"):
        shutil.copy(f, run / "QuantifyResults" / f.name)
    # Osprey's subject_names_and_excluded.tsv, written here: an eighth dataset
    # excluded (not in the tables), names as BIDS subjects of session 1
    rows = [f"1\tsub-{s}_ses-1\t0" for s in G1]
    rows.insert(3, "1\tsub-X99_ses-1\t1")
    (run / "subject_names_and_excluded.tsv").write_text(
        "group\tsubject\texclude\n" + "\n".join(rows) + "\n")
    code, out, err = _cli(["mrs-import", "--format", "osprey", "--voxel",
                           "parietal", "--metabolites", "gaba,glx,tnaa,tcr",
                           "--out", str(tmp_path / "o"),
                           *map(str, (run / "QuantifyResults").glob("*.tsv"))],
                          capsys)
    assert code == 0, err
    read = {m: pd.read_csv(tmp_path / "o" / f"roi_{m}.tsv", sep="\t",
                           dtype={"session": str})
            for m in ("gaba", "glx", "tnaa", "tcr")}
    assert read["gaba"]["participant_id"].tolist() == [f"sub-{s}" for s in G1]
    assert set(read["gaba"]["session"]) == {"1"}
    assert set(read["gaba"]["roi"]) == {"parietal"}
    assert read["gaba"]["gaba"].iloc[0] == 4.739337785  # 10 significant digits
    assert set(read["gaba"]["unit"]) == set(read["glx"]["unit"]) == {"i.u."}
    assert read["tnaa"]["tnaa"].iloc[2] == 2.190500761
    assert set(read["tnaa"]["unit"]) == {"ratio to tCr"}
    assert "from spectrum diff1 (the difference spectrum edited for them), not " \
           "A: gaba, glx" in out
    assert "i.u. (also in the files: tcr): gaba, glx" in out


def test_osprey_dataset_list_must_match_the_table(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "QuantifyResults").mkdir(parents=True)
    table = run / "QuantifyResults" / "A_tCr_Voxel_1_Basis_1.tsv"
    shutil.copy(OSPREY / table.name, table)
    code, _, err = _cli(["mrs-import", "--format", "osprey", "--out",
                         str(tmp_path / "o"), str(table)], capsys)
    assert code == 2
    assert "does not name its datasets" in err and "subject_names" in err
    (run / "subject_names_and_excluded.tsv").write_text(
        "group\tsubject\n" + "".join(f"1\tsub-{i}_ses-1\n" for i in range(5)))
    code, _, err = _cli(["mrs-import", "--format", "osprey", "--voxel", "v",
                         "--out", str(tmp_path / "o"), str(table)], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "has 7 dataset rows but the dataset list names 5" in err
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- round trips


def _known(files, metabolites, scales, rng):
    rows = [{"file": f, "metabolite": m, "scale": s,
             "value": float(rng.uniform(0.05, 12)),
             "quality": float(rng.integers(2, 40))}
            for f in files for m in metabolites for s in scales]
    return pd.DataFrame(rows)


def test_gannet_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    files = ["sub-01_ses-pre_acq-acc_MEGA.7", "sub-02_ses-pre_acq-acc_MEGA.7"]
    known = _known(files, ["GABA", "Glx", "NAA"], ["water", "tcr"], rng)
    path = tmp_path / "Gannet_output.csv"
    write_gannet(path, known)
    assert sniff_format(path) == "gannet"
    head = path.read_text().splitlines()[0].split(",")
    assert head[:5] == ["MATLAB_version", "Gannet_version", "date_of_analysis",
                        "filename", "avg_delta_F0"]
    assert {"GABA_conc_iu", "GABA_conc_Cr", "GABA_fit_error_w",
            "GABA_fit_error_Cr", "Glx_conc_iu", "NAA_conc_Cr"} <= set(head)
    df = read_gannet(path)
    for r in known.itertuples():
        got = _cell(df, file=r.file, metabolite=r.metabolite, scale=r.scale)
        assert got["value"] == round(r.value, 3)  # Gannet's printed precision
        assert got["quality"] == round(r.quality, 3)
        assert got["unit"] == ("i.u." if r.scale == "water" else "ratio to tCr")
    assert set(df["measure"]) == {"gaba", "glx", "tnaa"}  # Gannet's NAA: tNAA
    result = mrs_tables(df)
    gaba = result.tables["gaba"]
    assert gaba.columns.tolist() == ["participant_id", "session", "roi", "gaba",
                                     "unit", "fit_error"]
    assert gaba[["participant_id", "session", "roi", "unit"]].values.tolist() == [
        ["sub-01", "pre", "acc", "i.u."], ["sub-02", "pre", "acc", "i.u."]]
    tcr = mrs_tables(df, unit="tcr").tables["gaba"]
    assert set(tcr["unit"]) == {"ratio to tCr"}


def test_osprey_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    files = ["sub-01_ses-1", "sub-02_ses-1", "sub-03_ses-1"]
    known = _known(files, ["GABAplus", "Glx", "tNAA", "tCr"],
                   ["tcr", "water", "water-tissue"], rng)
    written = write_osprey(tmp_path / "out", known, spectrum="A")
    names = sorted(p.name for p in written)
    assert "A_TissCorrWaterScaled_Voxel_1_Basis_1.tsv" in names
    assert "A_CRLB_Voxel_1_Basis_1.tsv" in names
    tables = [p for p in written if p.parent.name == "QuantifyResults"]
    df = read_osprey(*tables)  # finds subject_names_and_excluded.tsv above
    for r in known.itertuples():
        got = _cell(df, file=r.file, metabolite=r.metabolite, scale=r.scale)
        assert got["value"] == float(f"{r.value:.15g}")
    # the CRLB table gives every value of its spectrum its quality
    crlb = known.drop_duplicates(["file", "metabolite"])
    for r in crlb.itertuples():
        got = df[(df["file"] == r.file) & (df["metabolite"] == r.metabolite)]
        assert (got["quality"] == r.quality).all()
    assert set(_cell(df, file=files[0], metabolite="tCr",
                     scale="water-tissue")[["unit"]]) == {"mM"}


def test_lcmodel_round_trip(tmp_path):
    conc = {"GABA": 1.234567, "Glu": 9.87654, "Gln": 0.0567, "Glu+Gln": 9.93324,
            "NAA+NAAG": 11.5, "Cr+PCr": 7.9, "Ins": 0.0, "MM20": 1234.5}
    crlb = {"GABA": 17.4, "Glu": 4, "Gln": 45, "Glu+Gln": 3.6, "NAA+NAAG": 2,
            "Cr+PCr": 2, "Ins": 999, "MM20": 8}
    path = tmp_path / "sub-07_ses-24h_voxel-acc_svs.table"
    write_lcmodel_table(path, conc, crlb=crlb)
    assert sniff_format(path) == "lcmodel"
    with pytest.warns(UserWarning, match="MM20 as mm20"):
        df = read_lcmodel(path)
    for name, c in conc.items():
        water = _cell(df, metabolite=name, scale="water")
        ratio = _cell(df, metabolite=name, scale="tcr")
        assert water["value"] == float(format_lcmodel_number(c, 8))
        assert ratio["value"] == float(format_lcmodel_number(c / 7.9, 7))
        assert water["unit"] == "mM" and ratio["unit"] == "ratio to tCr"
        assert water["quality"] == min(999, round(crlb[name]))
    assert math.isclose(_cell(df, metabolite="GABA", scale="water")["value"],
                        1.235)
    # not water-scaled, and a reference other than tCr
    write_lcmodel_table(path, conc, reference="Glu", water_scaled=False)
    df = _quiet(read_lcmodel, path)
    assert set(df["unit"]) == {"a.u.", "ratio to Glu"}
    assert set(df["scale"]) == {"raw", "ratio"}


@pytest.mark.parametrize(("x", "width", "text"), [
    (0.0405, 8, "4.05E-02"), (0.297, 8, "   0.297"), (0.0, 8, "   0.000"),
    (0.162, 7, "  0.162"), (0.055, 7, "5.5E-02"), (7.4e7, 7, "7.4E+07"),
    (1.426, 7, "  1.426"),
])  # fmt: skip
def test_lcmodel_numbers_print_as_lcmodel_prints_them(x, width, text):
    # every pair is in the real svs_97.TABLE or the 9.4 T macromolecule tables
    assert format_lcmodel_number(x, width) == text


# ---------------------------------------------------- mapping, voxel, unit


def _two_tables(tmp_path, names):
    paths = []
    for i, name in enumerate(names):
        p = tmp_path / name
        write_lcmodel_table(p, {"GABA": 1.0 + i, "Cr+PCr": 8.0})
        paths.append(p)
    return paths


def test_mapping_gives_participant_session_and_voxel(tmp_path, capsys):
    a, b = _two_tables(tmp_path, ["scan_a.table", "scan_b.table"])
    (tmp_path / "map.tsv").write_text(
        "file\tparticipant_id\tsession\troi\n"
        "scan_a.table\tsub-01\tbaseline\tacc\n"
        f"{b}\tsub-01\t24h\tacc\n")
    code, out, err = _cli(["mrs-import", "--format", "lcmodel", "--mapping",
                           str(tmp_path / "map.tsv"), "--out",
                           str(tmp_path / "o"), str(a), str(b)], capsys)
    assert code == 0, err
    t = pd.read_csv(tmp_path / "o" / "roi_gaba.tsv", sep="\t")
    assert t[["participant_id", "session", "roi", "gaba", "unit"]].values.tolist() \
        == [["sub-01", "baseline", "acc", 1.0, "mM"],
            ["sub-01", "24h", "acc", 2.0, "mM"]]
    assert "mM (also in the files: tcr): gaba, tcr" in out


def test_voxel_option_and_names(tmp_path, capsys):
    a, b = _two_tables(tmp_path, ["sub-01_ses-1_svs.table",
                                  "sub-02_ses-1_voxel-pcc_svs.table"])
    code, _, err = _cli(["mrs-import", "--format", "lcmodel", "--out",
                         str(tmp_path / "o"), str(a)], capsys)
    assert code == 2 and "cannot tell the voxel" in err and a.name in err
    code, _, err = _cli(["mrs-import", "--format", "lcmodel", "--voxel", "acc",
                         "--unit", "tcr", "--out", str(tmp_path / "o"),
                         str(a), str(b)], capsys)
    assert code == 0
    assert "--voxel acc left aside for 1 dataset(s)" in err  # b names pcc
    t = pd.read_csv(tmp_path / "o" / "roi_gaba.tsv", sep="\t")
    assert t["roi"].tolist() == ["acc", "pcc"]
    assert t["unit"].tolist() == ["ratio to tCr"] * 2
    assert t["gaba"].tolist() == [0.125, 0.25]


# ------------------------------------------------------------ bad input


def _gannet_text(rows):
    head = "MATLAB_version,Gannet_version,date_of_analysis,filename,GABA_fit_error_w," \
           "GABA_conc_iu\n"
    return head + "".join(rows)


@pytest.mark.parametrize(("fmt", "name", "text", "expect"), [
    ("gannet", "g.csv", "", r"'.*g\.csv' is empty"),
    ("gannet", "g.csv", "filename,GABA_fit_error\nsub-01_ses-1_acq-a.7,3\n",
     r"has no concentration column"),
    ("gannet", "g.csv", "Gannet_version,GABA_conc_iu\n3.3,1.2\n",
     r"has no column 'filename'"),
    ("gannet", "g.csv", _gannet_text(["R2021a,3.3,2024-01-01,sub-01_ses-1_acq-a.7,"
                                      "4.1,abc\n"]),
     r"line 2, column GABA_conc_iu: 'abc' is not a number; expected a "
     r"concentration"),
    ("gannet", "g.csv", _gannet_text(["R2021a,3.3,2024-01-01,sub-01_ses-1_acq-a.7,"
                                      "4.1\n"]),
     r"line 2: 5 fields but the header has 6"),
    ("gannet", "g.csv", _gannet_text(["R,3.3,d,sub-01_ses-1_acq-a.7,4,1.5\n",
                                      "R,3.3,d,sub-01_ses-1_acq-a.7,4,1.6\n"]),
     r"sub-01 session 1 voxel a has gaba twice: '.*g\.csv' line 2 \(GABA\) "
     r"and '.*g\.csv' line 3"),
    ("gannet", "g.csv", _gannet_text(["R,3.3,d,S01_MEGA.7,4,1.5\n"]),
     r"cannot tell participant and session of dataset 'S01_MEGA\.7' \('.*g\.csv"
     r"', line 2\): no sub-<label>"),
    ("osprey", "sub-01_ses-1_svs.table", "$$CONC  2 lines in following x\n",
     r"it looks like LCModel output \(--format lcmodel\)"),
    ("lcmodel", "g.table", "MATLAB_version,filename,GABA_conc_iu\nR,a.7,1\n",
     r"has no '\$\$CONC' block; .*it looks like Gannet output \(--format gannet\)"),
    ("lcmodel", "sub-01_ses-1_voxel-a.table",
     "$$CONC  3 lines in following concentration table = NCONC+1\n"
     "    Conc.  %SD /Cr+PCr  Metabolite\n 4.05E-02  32%   0.162 GABA\n\n",
     r"announces 2 metabolite line\(s\) but the block has 1"),
    ("lcmodel", "sub-01_ses-1_voxel-a.table",
     "$$CONC  2 lines in following concentration table = NCONC+1\n"
     "    Conc.  %SD /Cr+PCr  Metabolite\n  ****  32%   0.162 GABA\n",
     r"line 3, column Conc\.: '\*\*\*\*' is not a number"),
    ("lcmodel", "sub-01_ses-1_voxel-a.table",
     "$$CONC  2 lines in following concentration table = NCONC+1\n"
     "    Conc.  %SD /Cr+PCr  Metabolite\n 4.05E-02 GABA\n",
     r"line 3: '4\.05E-02 GABA' does not have the columns concentration, %SD"),
])  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, fmt, name, text,
                                          expect):
    """Each file is written by the test: a deliberately broken input."""
    path = tmp_path / name
    path.write_text(text)
    code, _, err = _cli(["mrs-import", "--format", fmt, "--out",
                         str(tmp_path / "out"), str(path)], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dtitool mrs-import: error: ")
    assert re.search(expect, lines[0]), lines[0]
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_duplicate_datasets_across_files_name_both(tmp_path, capsys):
    a = tmp_path / "a" / "sub-01_ses-1_voxel-acc_svs.table"
    b = tmp_path / "b" / "sub-01_ses-1_voxel-acc_svs.table"
    for p in (a, b):
        p.parent.mkdir()
        write_lcmodel_table(p, {"GABA": 1.0, "Cr+PCr": 8.0})
    code, _, err = _cli(["mrs-import", "--format", "lcmodel", "--out",
                         str(tmp_path / "o"), str(a), str(b)], capsys)
    assert code == 2
    assert "has gaba twice" in err and str(a) in err and str(b) in err


def test_mapping_errors(tmp_path, capsys):
    (a,) = _two_tables(tmp_path, ["scan_a.table"])
    bad = tmp_path / "map.tsv"
    bad.write_text("path\tparticipant_id\tsession\nscan_a.table\tsub-1\tpre\n")
    code, _, err = _cli(["mrs-import", "--format", "lcmodel", "--mapping",
                         str(bad), "--out", str(tmp_path / "o"), str(a)], capsys)
    assert code == 2 and "lacks column(s) file" in err
    bad.write_text("file\tparticipant_id\tsession\na\tsub-1\tpre\na\tsub-2\tpre\n")
    code, _, err = _cli(["mrs-import", "--format", "lcmodel", "--mapping",
                         str(bad), "--out", str(tmp_path / "o"), str(a)], capsys)
    assert code == 2 and "lists file 'a' twice" in err


def test_api_refusals():
    with pytest.raises(ValueError, match="format must be one of gannet, osprey, "
                       "lcmodel; got 'tarquin'"):
        read_mrs([SVS_97], format="tarquin")
    df = _quiet(read_lcmodel, SVS_97)
    with pytest.raises(ValueError, match="unit must be 'auto' or one of water"):
        mrs_tables(df, unit="molal")
    with pytest.raises(ValueError, match="no gabba in the files"):
        mrs_tables(df, measures=["gabba"], voxel="acc")
    with pytest.raises(ValueError, match="cannot tell participant and session"):
        mrs_tables(df, voxel="acc")


@pytest.mark.parametrize(("name", "fmt", "measure", "known"), [
    ("GABA+", None, "gaba", True), ("GABAplus", "osprey", "gaba", True),
    ("Glu+Gln", "lcmodel", "glx", True), ("NAA+NAAG", None, "tnaa", True),
    ("NAA", "gannet", "tnaa", True), ("NAA", "lcmodel", "naa", True),
    ("Cr", "gannet", "tcr", True), ("Cr", "osprey", "cr", True),
    ("PCh+GPC", None, "tcho", True), ("Ins", None, "mi", True),
    ("Glth", None, "gsh", True), ("2HG", None, "m_2hg", False),
    ("unit", None, "unit_metabolite", False),
])  # fmt: skip
def test_metabolite_names(name, fmt, measure, known):
    assert measure_name(name, fmt=fmt) == (measure, known)
