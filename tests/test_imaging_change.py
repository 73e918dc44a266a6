"""The imaging change tests: engine, power, size and the analytic cross-check."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from dtitool.design import load_preset
from dtitool.stats.imaging_change import (
    analytic_imaging_power,
    change_tests,
    imaging_power,
    imaging_terms,
)

KETAMINE = load_preset("ketamine-rct")
ECT = load_preset("ect-course")


def _random_trials(rng, R=4, N=30, J=2, V=3, arms=3):
    y = rng.normal(size=(R, N, J, V)) + np.arange(V) * 0.3
    y[rng.random(y.shape) < 0.1] = np.nan
    arm = rng.integers(0, arms, size=(R, N)).astype(np.int8)
    return y, arm


def test_engine_equals_scipy_with_missing_values_and_exclusions():
    """Every statistic equals scipy's t tests on the complete cases."""
    rng = np.random.default_rng(3)
    y, arm = _random_trials(rng)
    keep = rng.random(y.shape) > 0.05
    out = change_tests(y, arm, control=1, n_arms=3, keep=keep)
    y = np.where(keep, y, np.nan)
    others = [0, 2]
    for r in range(y.shape[0]):
        for j in range(y.shape[2]):
            for v in range(1, y.shape[3]):
                d = y[r, :, j, v] - y[r, :, j, 0]
                dc = d[(arm[r] == 1) & np.isfinite(d)]
                one = stats.ttest_1samp(dc, 0.0)
                i = v - 1
                np.testing.assert_allclose(
                    [out[k][r, j, i] for k in ("estimate", "t", "df", "p")],
                    [dc.mean(), one.statistic, one.df, one.pvalue], rtol=1e-10)
                assert out["n"][r, j, i] == dc.size
                for a, k in enumerate(others):
                    da = d[(arm[r] == k) & np.isfinite(d)]
                    w = stats.ttest_ind(da, dc, equal_var=False)
                    i = (1 + a) * (y.shape[3] - 1) + v - 1
                    np.testing.assert_allclose(
                        [out[c][r, j, i] for c in ("estimate", "t", "df", "p")],
                        [da.mean() - dc.mean(), w.statistic, w.df, w.pvalue],
                        rtol=1e-10)
                    assert (out["n_arm"][r, j, i], out["n_control"][r, j, i]) == (
                        da.size, dc.size)


def test_an_excluded_value_is_a_missing_one():
    rng = np.random.default_rng(4)
    y, arm = _random_trials(rng)
    keep = rng.random(y.shape) > 0.2
    a = change_tests(y, arm, control=0, n_arms=3, keep=keep)
    b = change_tests(np.where(keep, y, np.nan), arm, control=0, n_arms=3)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_single_arm_is_the_paired_t_test():
    rng = np.random.default_rng(5)
    y = rng.normal(size=(2, 12, 1, 2))
    y[..., 1] += 0.4
    out = change_tests(y, np.zeros((2, 12), dtype=int), control=0, n_arms=1)
    assert out["p"].shape == (2, 1, 1)
    ref = stats.ttest_rel(y[1, :, 0, 1], y[1, :, 0, 0])
    np.testing.assert_allclose([out["t"][1, 0, 0], out["p"][1, 0, 0]],
                               [ref.statistic, ref.pvalue], rtol=1e-10)


def test_an_arm_with_fewer_than_two_gives_nan():
    y = np.arange(12, dtype=float).reshape(1, 6, 1, 2) ** 1.5
    arm = np.array([[0, 1, 1, 1, 1, 1]])
    out = change_tests(y, arm, control=1, n_arms=2)
    assert np.isfinite(out["p"][0, 0, 0]) and np.isnan(out["p"][0, 0, 1])


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"values": np.zeros((2, 3, 2))}, "values must have shape"),
    ({"values": np.zeros((1, 3, 1, 2), dtype=int)}, "floating point"),
    ({"arm": np.zeros((1, 4), dtype=int)}, "arm has shape"),
    ({"arm": np.zeros((1, 3))}, "integer arm indices"),
    ({"arm": np.array([[0, 1, 2]])}, "expected 0 to 1"),
    ({"control": 2}, "control must be an arm index"),
    ({"n_arms": 0}, "n_arms must be a positive integer"),
    ({"keep": np.ones((1, 3, 1, 3), dtype=bool)}, "keep has shape"),
    ({"keep": np.ones((1, 3, 1, 2))}, "keep must be boolean"),
])
def test_change_tests_refuses_bad_inputs(kwargs, match):
    args = {"values": np.zeros((1, 3, 1, 2)), "arm": np.array([[0, 1, 1]]),
            "control": 1, "n_arms": 2, **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        change_tests(**args)


def test_terms_line_up_with_the_mixed_models_visit_factor():
    from dtitool.stats.mixed_power import mixed_layout

    layout = mixed_layout(ECT, "visit")
    mine = imaging_terms(ECT.arms, ECT.control, ECT.visit_names)
    assert [t for t in layout.terms if t not in ECT.arms] == mine


def test_same_seed_same_table_whatever_the_chunks():
    a = imaging_power(KETAMINE, replicates=60, rng=9, chunk_size=25)
    b = imaging_power(KETAMINE, replicates=60, rng=9, chunk_size=60)
    assert a.equals(b)
    assert not a.equals(imaging_power(KETAMINE, replicates=60, rng=10))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"replicates": 0}, "replicates must be a positive integer"),
    ({"chunk_size": 1.5}, "chunk_size must be a positive integer"),
    ({"alpha": 1.0}, "alpha must be in"),
])
def test_imaging_power_refuses_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        imaging_power(KETAMINE, **kwargs)


def _z(table, replicates):
    p = table["analytic_power"].to_numpy()
    return (table["power"].to_numpy() - p) / np.sqrt(p * (1 - p) / replicates)


def _band(tests, level=0.99):
    """z bound of ``tests`` checks together (Bonferroni, as size_band's)."""
    from scipy.special import ndtri

    return max(3.0, float(ndtri(1 - (1 - level) / (2 * tests))))


@pytest.mark.parametrize("design", [KETAMINE, ECT], ids=["ketamine-rct", "ect-course"])
def test_monte_carlo_meets_the_noncentral_t_and_size_is_exact(design):
    """Power within 3 MC SE of the analytic one; every size within its band.

    3 SE per test, widened to the 99 % Bonferroni bound of the table's tests
    (3.60 SE for ect-course's 32): one test in 370 leaves 3 SE by chance.
    """
    R = 2000
    t = imaging_power(design, replicates=R, rng=2026)
    assert np.abs(_z(t, R)).max() < _band(len(t))
    assert t["size_ok"].all(), t.loc[~t["size_ok"].astype(bool), ["roi", "term",
                                                                  "size"]]
    assert (t["mean_n"] > 0).all()


def test_analytic_power_of_a_null_term_is_alpha():
    a = analytic_imaging_power(KETAMINE, alpha=0.05)
    null = a[a["true_value"] == 0]
    assert len(null) and np.allclose(null["power"], 0.05, atol=1e-12)
    one = a.iloc[1]  # L_BA10 ketamine:24h by hand
    r = KETAMINE.rois[0]
    na, nc = KETAMINE.arm_sizes()
    va = (r.change_sd["ketamine"] ** 2 + 2 * r.noise_sd**2) / 1e-10 / na
    vc = (r.change_sd["saline"] ** 2 + 2 * r.noise_sd**2) / 1e-10 / nc
    df = (va + vc) ** 2 / (va**2 / (na - 1) + vc**2 / (nc - 1))
    nct = stats.nct(df, -1.0 / np.sqrt(va + vc))
    tc = stats.t.ppf(0.975, df)
    assert one["df"] == pytest.approx(df, rel=1e-12)
    assert one["power"] == pytest.approx(nct.cdf(-tc) + nct.sf(tc), rel=1e-9)


@pytest.mark.slow  # about 6 s
def test_monte_carlo_meets_the_noncentral_t_at_40000_trials():
    """With 40,000 trials every test is within 3 MC SE (0.1 to 0.2 % of power)."""
    R = 40_000
    t = imaging_power(ECT, replicates=R, rng=7, null=False, chunk_size=2000)
    assert np.abs(_z(t, R)).max() < 3


def test_power_cli_imaging_writes_the_table_and_refuses_other_options(tmp_path,
                                                                       capsys):
    import pandas as pd

    from dtitool.cli import main
    from dtitool.stats.imaging_change import IMAGING_POWER_COLUMNS

    out = tmp_path / "p"
    assert main(["power", "--preset", "ketamine-rct", "--model", "imaging",
                 "--replicates", "80", "--seed", "4", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "imaging change power of ketamine-rct" in text
    t = pd.read_csv(out / "power.tsv", sep="\t", keep_default_na=False)
    assert list(t.columns) == IMAGING_POWER_COLUMNS
    assert list(t["term"][:2]) == ["24h", "ketamine:24h"]
    ref = imaging_power(KETAMINE, replicates=80, rng=4)
    np.testing.assert_allclose(t["power"], ref["power"])
    assert (out / "power.json").is_file() and (out / "design.toml").is_file()
    for bad, word in ((["--inference", "ols"], "--inference"),
                      (["--grid", "n=40:80:20"], "--grid"),
                      (["--time", "visit"], "--time"),
                      (["--curve", "n=40,60"], "--curve"),
                      (["--missing", "mi"], "--missing")):
        assert main(["power", "--preset", "ketamine-rct", "--model", "imaging",
                     "--replicates", "10", "--out", str(tmp_path / "x"), *bad]) == 2
        assert word in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_power_cli_imaging_warns_of_a_size_outside_its_band(tmp_path, capsys,
                                                             monkeypatch):
    import dtitool.stats.imaging_change as ic
    from dtitool.cli import main

    real = ic.imaging_power

    def off(*args, **kwargs):
        t, m = real(*args, **kwargs)
        t.loc[0, ["size", "size_ok"]] = [0.2, False]
        return t, m

    monkeypatch.setattr(ic, "imaging_power", off)
    assert main(["power", "--preset", "ketamine-rct", "--model", "imaging",
                 "--replicates", "20", "--seed", "1", "--quiet", "--out",
                 str(tmp_path / "p")]) == 0
    assert "size outside its 99% binomial band: L_BA10:24h (0.200)" in (
        capsys.readouterr().err)


def test_a_single_arm_design_tests_the_arms_change_only():
    from _designs import drug_placebo_dict

    from dtitool.design import design_from_dict

    d = drug_placebo_dict()
    d["trial"].update(allocation={"drug": 1}, control="drug", block_size=1)
    for spec in (*d["rois"].values(), *d["outcomes"].values()):
        spec["change_mean"] = {"drug": spec["change_mean"]["drug"]}
        spec["change_sd"] = {"drug": spec["change_sd"]["drug"]}
    corr = d["correlations"]
    corr["roi_outcome"] = {"drug": corr["roi_outcome"]["drug"]}
    design = design_from_dict(d)
    R = 1000
    t = imaging_power(design, replicates=R, rng=3)
    assert set(t["term"]) == {design.visit_names[1]}
    assert (t["mean_n"] == design.n).all()
    assert np.abs(_z(t, R)).max() < _band(len(t))
    with pytest.raises(TypeError, match="design must be a StudyDesign; got str"):
        analytic_imaging_power("ketamine-rct")
