"""Power surfaces: ``power_grid``, ``dtitool power --grid`` and the explorer page.

Every grid point must be the very same numbers as a :func:`power` run of its
design with the same seed (common random numbers), the table and its sidecar
must describe every column, bad axes must be refused before any work, and the
explorer page must plot exactly the numbers of ``power_grid.tsv`` (checked in
headless Chromium when one is installed).
"""

import itertools
import json
import re

import numpy as np
import pandas as pd
import pytest

from dtitool.cli import main
from dtitool.design import load_preset
from dtitool.stats.power import (
    GRID_COLUMNS,
    power,
    power_grid,
    vary_design,
)

R = 128
SEED = 11
N_VALUES = (40, 80, 120)
EFFECTS = (0.5, 1.0, 3.0)  # 3 x the correlations is not a possible design
TESTS = 56  # 7 ROIs x 2 outcomes x 4 terms


@pytest.fixture(scope="module")
def design():
    return load_preset("ketamine-rct")


@pytest.fixture(scope="module")
def grid(design):
    with pytest.warns(UserWarning, match=r"3 of 9 grid points are not possible"):
        return power_grid(design, axes={"n": N_VALUES, "effect": EFFECTS},
                          replicates=R, rng=SEED, progress=False)


def _point(table, **where):
    sel = np.ones(len(table), dtype=bool)
    for k, v in where.items():
        sel &= (table[k] == v).to_numpy()
    return table[sel].reset_index(drop=True)


# --- the numbers: each point is a power() run of its design -------------------


@pytest.mark.parametrize(("n", "effect"), [(40, 0.5), (80, 1.0), (120, 0.5)])
def test_each_point_is_a_power_run_of_its_design(design, grid, n, effect):
    d = vary_design(vary_design(design, "n", n), "effect", effect)
    ref = power(d, replicates=R, rng=SEED, progress=False).table
    got = _point(grid.table, n=n, effect=effect)
    assert len(got) == TESTS
    pd.testing.assert_frame_equal(
        got[list(GRID_COLUMNS)], ref[list(GRID_COLUMNS)].reset_index(drop=True),
        check_exact=True, check_dtype=False)


def test_axes_are_applied_in_axis_order(design):
    # ratio first, then n: the design of a point is vary_design applied per axis
    # in the order the axes are given (the allocation's block size depends on
    # the ratio, so the order is not immaterial in general).
    axes = [("ratio", (1.0, 3.0)), ("n", (60,))]
    g = power_grid(design, axes=axes, replicates=64, rng=5, progress=False,
                   design_analysis=False)
    for ratio in (1.0, 3.0):
        d = vary_design(vary_design(design, "ratio", ratio), "n", 60)
        ref = power(d, replicates=64, rng=5, progress=False,
                    design_analysis=False).table
        got = _point(g.table, ratio=ratio, n=60)
        for col in ("power", "power_ci_low", "power_ci_high", "size", "median_p"):
            np.testing.assert_array_equal(got[col].to_numpy(), ref[col].to_numpy())
    assert list(g.table.columns[:2]) == ["ratio", "n"]


def test_effect_axis_shares_the_null_counterpart(grid):
    # Common random numbers: the null counterpart does not depend on the
    # effect, so size is identical across effect values at the same n ...
    t = grid.table
    for n in N_VALUES:
        a, b = _point(t, n=n, effect=0.5), _point(t, n=n, effect=1.0)
        np.testing.assert_array_equal(a["size"].to_numpy(), b["size"].to_numpy())
        assert not np.array_equal(a["power"].to_numpy(), b["power"].to_numpy())
    # ... but the null of a different n is a different trial.
    s40 = _point(t, n=40, effect=1.0)["size"].to_numpy()
    s120 = _point(t, n=120, effect=1.0)["size"].to_numpy()
    assert not np.array_equal(s40, s120)


def test_same_seed_same_grid_for_any_n_jobs(design, grid):
    # n_jobs=2 streams the same chunks to two worker processes
    with pytest.warns(UserWarning, match="not possible"):
        again = power_grid(design, axes={"n": N_VALUES, "effect": EFFECTS},
                           replicates=R, rng=SEED, progress=False, n_jobs=2,
                           chunk_size=64)
    pd.testing.assert_frame_equal(again.table, grid.table, check_exact=True)
    assert again.seed == grid.seed == SEED


# --- the table -----------------------------------------------------------------


def test_table_shape_columns_and_dtypes(grid):
    t = grid.table
    assert len(t) == len(N_VALUES) * len(EFFECTS) * TESTS
    assert list(t.columns) == ["n", "effect", *GRID_COLUMNS]
    assert pd.api.types.is_integer_dtype(t["n"])
    assert pd.api.types.is_float_dtype(t["effect"])
    # row-major over the axes, the last axis fastest, tests in a fixed order
    points = list(itertools.product(N_VALUES, EFFECTS))
    got = list(t[["n", "effect"]].drop_duplicates().itertuples(index=False))
    assert [tuple(p) for p in got] == points
    first = t.loc[:TESTS - 1, ["roi", "outcome", "term"]].to_numpy()
    for k in range(len(points)):
        block = t.loc[k * TESTS:(k + 1) * TESTS - 1, ["roi", "outcome", "term"]]
        np.testing.assert_array_equal(block.to_numpy(), first)
    assert grid.axes == (("n", N_VALUES), ("effect", EFFECTS))
    assert grid.base == {"n": 98.0, "effect": 1.0}


def test_impossible_points_are_blank_rows_counted(grid):
    t = grid.table
    blank = t["effect"] == 3.0
    assert blank.sum() == len(N_VALUES) * TESTS
    numbers = [c for c in GRID_COLUMNS[4:] if c != "size_ok"]
    assert t.loc[blank, numbers].isna().all().all()
    assert t.loc[blank, "size_ok"].isna().all()
    assert t.loc[~blank, "power"].notna().all()
    assert t.loc[blank, ["roi", "outcome", "term", "inference"]].notna().all().all()
    assert len(grid.impossible) == 3
    assert all("effect = 3" in m and "(-1, 1)" in m for m in grid.impossible)


def test_impossible_reliability_is_a_blank_point(design):
    with pytest.warns(UserWarning, match=r"1 of 2 grid points .* reliability = 1\.5"):
        g = power_grid(design, axes={"reliability": [0.6, 1.5]}, replicates=64,
                       rng=1, progress=False)
    assert g.table.loc[g.table["reliability"] == 1.5, "power"].isna().all()
    assert g.table.loc[g.table["reliability"] == 0.6, "power"].notna().all()


def test_all_points_impossible_is_an_error(design):
    with pytest.raises(ValueError, match=r"no point of the grid is a possible "
                       r"design; first: effect = 3"):
        power_grid(design, axes={"effect": [3.0, 4.0]}, replicates=64, rng=1,
                   progress=False)


@pytest.mark.parametrize(("axes", "match"), [
    ({}, "at least one axis"),
    ({"foo": [1]}, r"unknown grid parameter 'foo'; expected one of"),
    ({"n": []}, "grid axis 'n' has no values"),
    ({"n": [40, 40]}, "grid axis 'n' repeats a value"),
    ({"n": [40.5]}, "whole numbers"),
    ({"effect": [float("nan")]}, "finite numbers"),
    ({"effect": ["1"]}, "finite numbers"),
    ({"cv": [0.02], "reliability": [0.5]}, "both cv and reliability"),
    ({"n": range(2, 100_003)}, r"100001 points; at most 100000"),
    ([("n", [40]), ("n", [60])], "'n' is given twice"),
])  # fmt: skip
def test_bad_axes(design, axes, match):
    with pytest.raises(ValueError, match=match):
        power_grid(design, axes=axes, replicates=64, progress=False)


def test_max_grid_points_counts_the_product(design):
    axes = {"n": range(40, 140), "effect": np.linspace(0.1, 1, 100),
            "ratio": np.linspace(0.5, 3, 11)}  # 110,000 points
    with pytest.raises(ValueError, match=r"110000 points"):
        power_grid(design, axes=axes, replicates=64, progress=False)


# --- the command line ------------------------------------------------------------


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("spec", "values"), [
    ("n=40:400:20", list(range(40, 401, 20))),
    ("n=40:55:20", [40]),  # stop included, never exceeded
    ("n=40:60:20", [40, 60]),
    ("effect=0.25:1.5:0.25", [0.25, 0.5, 0.75, 1.0, 1.25, 1.5]),
    ("reliability=0.2:0.9:0.1", [0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]),
    ("effect=0.25,0.5,1", [0.25, 0.5, 1.0]),
    ("ratio=2", [2.0]),
])  # fmt: skip
def test_parse_grid_values(spec, values):
    from dtitool.cli.power import parse_grid

    [(name, got)] = parse_grid([spec])
    assert name == spec.partition("=")[0]
    assert got == values
    if name == "n":
        assert all(type(v) is int for v in got)


@pytest.mark.parametrize(("specs", "match"), [
    (["n"], r"--grid must be PARAM=VALUES .*; got 'n'"),
    (["foo=1:2:1"], r"--grid must be PARAM=VALUES with PARAM one of n, .*'foo=1:2:1'"),
    (["n=40:10:5"], r"step > 0 and stop >= start; got '40:10:5'"),
    (["n=40:400:0"], r"step > 0"),
    (["n=40:400"], r"start:stop:step"),
    (["n=40,x"], r"numbers; got 'x'"),
    (["n=40.5,60"], r"whole numbers; got 40\.5"),
    (["n=40:80:20", "n=100"], r"parameter 'n' twice"),
    (["cv=0.02", "reliability=0.5"], r"both cv and reliability"),
    (["n=40:239:1", "effect=0.01:2:0.01", "ratio=1:3:0.5"],
     r"--grid: the grid has 200000 points; at most 100000"),
    (["effect=3,4"], r"no point of the grid is a possible design"),
])  # fmt: skip
def test_bad_grid_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys,
                                                           monkeypatch, specs,
                                                           match):
    import dtitool.stats.power

    if "possible" not in match:  # the axes alone are wrong: refused before work
        def no_work(*args, **kwargs):
            raise AssertionError("simulated trials before the grid was checked")

        monkeypatch.setattr(dtitool.stats.power, "power", no_work)
    out = tmp_path / "o"
    argv = ["power", "--replicates", "64", "--seed", "1", "--out", str(out),
            "--quiet"]
    for s in specs:
        argv += ["--grid", s]
    code, _, err = _run(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dtitool power: error: ")
    assert re.search(match, lines[0]), lines[0]
    assert not out.exists() or not any(out.iterdir())


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("grid") / "run"
    code = main(["power", "--replicates", str(R), "--seed", str(SEED), "--out",
                 str(out), "--quiet", "--target-power", "0.5", "--n-max", "200",
                 "--grid", "n=40:120:40", "--grid", "effect=0.5,1,3"])
    assert code == 0
    return out


def test_cli_writes_the_grid_of_the_library(design, cli_run, grid):
    t = pd.read_csv(cli_run / "power_grid.tsv", sep="\t")
    assert list(t.columns) == ["n", "effect", *GRID_COLUMNS]
    assert len(t) == 9 * TESTS
    assert pd.api.types.is_integer_dtype(t["n"])
    # same seed, same replicates: the written numbers are the library's
    ok = t["power"].notna()
    np.testing.assert_allclose(t.loc[ok, "power"], grid.table.loc[ok, "power"],
                               rtol=1e-5, atol=0)
    np.testing.assert_allclose(t.loc[ok, "size"], grid.table.loc[ok, "size"],
                               rtol=1e-5, atol=0)
    assert t.loc[t["effect"] == 3, "power"].isna().all()
    manifest = json.loads((cli_run / "dtitool-run.json").read_text())
    assert "power_grid.tsv" in json.dumps(manifest)


def test_cli_warns_once_counting_impossible_points(tmp_path, capsys):
    code, _, err = _run(capsys, "power", "--replicates", "64", "--seed", "1",
                        "--out", str(tmp_path / "w"), "--quiet", "--grid",
                        "effect=1,3", "--grid", "n=60")
    assert code == 0, err
    warn = [w for w in err.splitlines() if "grid point" in w]
    assert len(warn) == 1, err
    assert warn[0].startswith("dtitool: warning: 1 of 2 grid points are not "
                              "possible designs")


def test_grid_sidecar_describes_every_column(cli_run):
    t = pd.read_csv(cli_run / "power_grid.tsv", sep="\t")
    side = json.loads((cli_run / "power_grid.json").read_text())
    assert list(side) == list(t.columns)
    for col, entry in side.items():
        assert entry["Description"], col
    assert side["n"]["Units"] == "participants"
    assert "grid point" in side["effect"]["Description"]
    assert "Levels" in side["term"]


@pytest.mark.parametrize("axis", ["ratio", "reliability", "cv"])
def test_every_axis_has_a_sidecar_entry(design, axis):
    from dtitool.columns import sidecar

    value = {"ratio": 1.0, "reliability": 0.6, "cv": 0.02}[axis]
    g = power_grid(design, axes={axis: [value]}, replicates=64, rng=1,
                   progress=False, size=False, design_analysis=False)
    side = sidecar(g.table, "power_grid")
    assert "grid point" in side[axis]["Description"]


# --- the explorer page -------------------------------------------------------------


def _page_data(page: str) -> dict:
    m = re.search(r'<script type="application/json" id="grid-data">(.*?)</script>',
                  page, re.S)
    assert m
    return json.loads(m.group(1))


def test_explorer_is_self_contained_with_the_data(cli_run):
    page = (cli_run / "power_explorer.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "http://" not in page and "https://" not in page
    assert not re.search(r"<script[^>]*\bsrc\b", page)
    assert "<link" not in page and "@import" not in page
    data = _page_data(page)
    t = pd.read_csv(cli_run / "power_grid.tsv", sep="\t")
    assert [a["name"] for a in data["axes"]] == ["n", "effect"]
    assert data["axes"][0]["values"] == [40, 80, 120]
    assert data["target"] == 0.5
    assert len(data["tests"]) == TESTS
    # the embedded numbers are those of the TSV, test by test, point by point
    for col in ("power", "power_ci_low", "power_ci_high", "size"):
        want = t[col].to_numpy().reshape(9, TESTS).T
        got = np.array([[np.nan if v is None else v for v in row]
                        for row in data[col]])
        np.testing.assert_array_equal(got, want)
    labels = t[["roi", "outcome", "term"]].head(TESTS).apply(" / ".join, axis=1)
    assert data["tests"] == list(labels)


# --- headless Chromium: move a control, read what is plotted -----------------------

_READ = """(() => {
  const pw = Array.from(document.querySelectorAll('#plot circle.pt-power'));
  const sz = Array.from(document.querySelectorAll('#plot circle.pt-size'));
  const reach = document.getElementById('reach');
  return {
    ranges: Array.from(document.querySelectorAll('input[type=range]')).map(
        s => s.id),
    test_options: document.querySelectorAll('#test option').length,
    xaxis: document.getElementById('xaxis').selectedOptions[0].textContent,
    test: document.getElementById('test').selectedOptions[0].textContent,
    power: pw.map(c => [Number(c.dataset.x), Number(c.dataset.power)]),
    size: sz.map(c => [Number(c.dataset.x), Number(c.dataset.size)]),
    target_line: document.querySelectorAll('#plot > line.target').length,
    reach: reach ? Number(reach.dataset.n) : null,
    answer: document.getElementById('answer').dataset.n,
    answer_text: document.getElementById('answer').textContent,
  };
})()"""


def _set(selector: str, value, event: str) -> str:
    return (f"(() => {{ const el = document.querySelector({json.dumps(selector)});"
            f" el.value = {json.dumps(str(value))};"
            f" el.dispatchEvent(new Event({json.dumps(event)})); return el.value;"
            " })()")


def _select_test(label: str) -> str:
    return ("(() => { const s = document.getElementById('test');"
            " const o = Array.from(s.options).find(o => o.textContent === "
            f"{json.dumps(label)}); s.value = o.value;"
            " s.dispatchEvent(new Event('change')); return s.value; })()")


def _slice(t, test, **where):
    roi, outcome, term = test.split(" / ")
    s = _point(t, roi=roi, outcome=outcome, term=term, **where)
    return s


def _reach(s, target):
    ok = s[s["power"] >= target]
    return None if ok.empty else int(ok["n"].min())


def test_explorer_in_headless_chromium(cli_run, tmp_path):
    from _browser import find_chromium, run_in_page

    exe = find_chromium()
    if exe is None:
        pytest.skip("no Chromium installed (.ci/run installs Debian's chromium)")
    t = pd.read_csv(cli_run / "power_grid.tsv", sep="\t")
    test = "L_BA10 / madrs / slope_ketamine"
    res = run_in_page(exe, cli_run / "power_explorer.html", [
        _READ,
        _select_test(test),
        _set("#target", 0.3, "input"),
        _READ,
        _set("#axis-effect", 0, "input"),  # effect 0.5
        _READ,
        _set("#xaxis", 1, "change"),  # plot against effect, at n = 80
        _set("#axis-n", 1, "input"),
        _READ,
    ], screenshot=tmp_path / "explorer.png")
    assert res["errors"] == []
    first, _, _, at1, _, at05, _, _, by_effect = res["values"]

    # one control per axis, a test selector, a target line; n plotted first
    assert first["ranges"] == ["axis-n", "axis-effect"]
    assert first["test_options"] == TESTS
    assert first["xaxis"] == "n"
    assert first["target_line"] == 1

    # effect 1 (the design's own value, the initial slider), the chosen test
    assert at1["test"] == test
    s1 = _slice(t, test, effect=1.0)
    assert at1["power"] == [[n, p] for n, p in zip(s1["n"], s1["power"],
                                                    strict=True)]
    assert at1["size"] == [[n, p] for n, p in zip(s1["n"], s1["size"],
                                                   strict=True)]
    # moving the effect control plots the effect-0.5 slice of the TSV
    s05 = _slice(t, test, effect=0.5)
    assert at05["power"] == [[n, p] for n, p in zip(s05["n"], s05["power"],
                                                     strict=True)]
    assert at05["size"] == [[n, p] for n, p in zip(s05["n"], s05["size"],
                                                    strict=True)]
    assert at05["power"] != at1["power"]
    # size is the null counterpart's: the same at both effects
    assert at05["size"] == at1["size"]

    # the n reaching the target: the first grid n whose power >= target (no
    # interpolation between grid values)
    for state, s in ((at1, s1), (at05, s05)):
        want = _reach(s, 0.3)
        assert state["reach"] == want
        assert state["answer"] == ("" if want is None else str(want))
    assert _reach(s1, 0.3) is not None  # the check bites on at least one slice

    # plotted against effect at n = 80: impossible effect 3 is left out
    s80 = _slice(t, test, n=80).dropna(subset=["power"])
    assert by_effect["xaxis"] == "effect"
    assert by_effect["power"] == [[e, p] for e, p in zip(s80["effect"],
                                                         s80["power"],
                                                         strict=True)]
    assert by_effect["reach"] is None  # no vertical n line against effect
