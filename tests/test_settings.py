"""MonteCarlo: one settings object for every Monte Carlo function.

Checked once when made (TypeError for a wrong type, ValueError for a wrong
value, each message naming the field); ``settings=`` gives the same result as
the loose keywords, bit for bit; a keyword that contradicts the settings is a
TypeError naming both.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

import dtitool
from dtitool.design import load_preset
from dtitool.stats.power import (
    MonteCarlo,
    power,
    power_curve,
    power_grid,
    sample_size,
)
from dtitool.stats.power_run import _chunk_replicates

# small runs: the few replicates of a chunk, no null counterpart, no truth
SMALL = {"replicates": 64, "rng": 5, "alpha": 0.1, "inference": "welch",
         "chunk_size": 64}
QUICK = {"size": False, "design_analysis": False, "progress": False}


@pytest.fixture(scope="module")
def design():
    return load_preset("ketamine-rct")


def test_defaults_and_normalised_values():
    mc = MonteCarlo()
    assert (mc.replicates, mc.alpha, mc.inference, mc.rng, mc.n_jobs,
            mc.chunk_size, mc.missing, mc.imputations) == (
        2000, 0.05, "welch", None, 1, None, "complete-case", None)
    mc = MonteCarlo(replicates=np.int64(10), alpha=np.float32(0.25),
                    chunk_size=np.int32(5), missing="mi")
    assert type(mc.replicates) is int and mc.replicates == 10
    assert type(mc.alpha) is float and mc.alpha == 0.25
    assert type(mc.chunk_size) is int
    assert mc.imputations == 20  # the default count, stated
    assert MonteCarlo(missing="mi") == MonteCarlo(missing="mi", imputations=20)
    assert MonteCarlo(n_jobs=-1).n_jobs == -1  # kept: every CPU where it runs


def test_frozen_with_slots():
    mc = MonteCarlo(replicates=10)
    with pytest.raises(dataclasses.FrozenInstanceError):
        mc.replicates = 20
    assert not hasattr(mc, "__dict__")
    assert dataclasses.replace(mc, alpha=0.01).alpha == 0.01
    with pytest.raises(ValueError, match=r"alpha must be > 0 and < 1; got 2"):
        dataclasses.replace(mc, alpha=2)  # replace checks again


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"replicates": 0}, ValueError, r"replicates must be >= 1; got 0"),
        ({"replicates": 2.5}, TypeError, r"replicates must be an integer; got float"),
        ({"replicates": True}, TypeError, r"replicates must be an integer; got bool"),
        ({"alpha": 0}, ValueError, r"alpha must be > 0 and < 1; got 0"),
        ({"alpha": 1.5}, ValueError, r"alpha must be > 0 and < 1; got 1\.5"),
        ({"alpha": float("nan")}, ValueError, r"alpha must be finite"),
        ({"alpha": "0.05"}, TypeError, r"alpha must be a number; got str"),
        ({"inference": "gls"}, ValueError,
         r"inference must be one of ols, hc3, welch; got 'gls'"),
        ({"inference": None}, TypeError, r"inference must be a string; got NoneType"),
        ({"rng": -1}, ValueError, r"rng seed must be a non-negative integer; got -1"),
        ({"rng": 1.5}, TypeError, r"rng must be None, an integer seed"),
        ({"n_jobs": 0}, ValueError, r"n_jobs must be a positive integer or -1"),
        ({"n_jobs": -2}, ValueError, r"n_jobs must be a positive integer or -1"),
        ({"n_jobs": 2.0}, TypeError, r"n_jobs must be an integer; got float"),
        ({"chunk_size": 0}, ValueError, r"chunk_size must be >= 1; got 0"),
        ({"chunk_size": "64"}, TypeError, r"chunk_size must be an integer; got str"),
        ({"missing": "listwise"}, ValueError,
         r"missing must be one of complete-case, mi; got 'listwise'"),
        ({"missing": 0}, TypeError, r"missing must be a string; got int"),
        ({"missing": "mi", "imputations": 1}, ValueError,
         r"imputations must be an integer >= 2"),
        ({"imputations": 2.5}, TypeError, r"imputations must be an integer; got float"),
    ],
)
def test_bad_settings(kwargs, error, match):
    with pytest.raises(error, match=match):
        MonteCarlo(**kwargs)


def test_loose_keywords_are_checked_the_same_way(design):
    with pytest.raises(TypeError, match=r"replicates must be an integer; got float"):
        power(design, replicates=2.5)
    with pytest.raises(ValueError, match=r"alpha must be > 0 and < 1"):
        power_curve(design, parameter="n", values=[40], alpha=0)
    with pytest.raises(ValueError, match=r"inference must be one of"):
        power_grid(design, axes={"n": [40]}, inference="gls")
    with pytest.raises(ValueError, match=r"n_jobs must be"):
        sample_size(design, n_jobs=0)


def test_settings_must_be_a_montecarlo(design):
    with pytest.raises(TypeError, match=r"settings must be a MonteCarlo; got dict"):
        power(design, settings={"replicates": 10})


def test_power_same_result_with_settings_or_keywords(design):
    a = power(design, **SMALL, **QUICK)
    b = power(design, settings=MonteCarlo(**SMALL), **QUICK)
    pd.testing.assert_frame_equal(a.table, b.table, check_exact=True)
    pd.testing.assert_frame_equal(a.familywise, b.familywise, check_exact=True)
    assert (a.seed, a.replicates, a.alpha, a.inference) == (
        b.seed, b.replicates, b.alpha, b.inference) == (5, 64, 0.1, "welch")
    # a keyword repeating the settings' own value is no conflict
    c = power(design, settings=MonteCarlo(**SMALL), replicates=64, rng=5, **QUICK)
    pd.testing.assert_frame_equal(a.table, c.table, check_exact=True)


def test_curve_grid_and_sample_size_same_with_settings(design):
    mc = MonteCarlo(**SMALL)
    a = power_curve(design, parameter="n", values=[60, 90], **SMALL, **QUICK)
    b = power_curve(design, parameter="n", values=[60, 90], settings=mc, **QUICK)
    pd.testing.assert_frame_equal(a.table, b.table, check_exact=True)
    assert (a.seed, a.replicates) == (b.seed, b.replicates)
    a = power_grid(design, axes={"n": [60]}, **SMALL, **QUICK)
    b = power_grid(design, axes={"n": [60]}, settings=mc, **QUICK)
    pd.testing.assert_frame_equal(a.table, b.table, check_exact=True)
    assert (a.seed, a.replicates, a.alpha, a.inference) == (
        b.seed, b.replicates, b.alpha, b.inference)
    kw = {"n_min": 40, "n_max": 80, "progress": False,
          "tests": [("L_BA10", "madrs", "interaction")]}
    a = sample_size(design, **SMALL, **kw)
    b = sample_size(design, settings=mc, **kw)
    pd.testing.assert_frame_equal(a.evaluated, b.evaluated, check_exact=True)
    assert (a.n, a.seed, a.replicates) == (b.n, b.seed, b.replicates)


def test_curve_with_settings_equals_power_at_each_point(design):
    mc = MonteCarlo(**SMALL)
    pc = power_curve(design, parameter="n", values=[60, 90], settings=mc, **QUICK)
    one = power(design.with_n(90), settings=mc, **QUICK)
    got = pc.table[pc.table["value"] == 90].drop(columns=["parameter", "value"])
    pd.testing.assert_frame_equal(got.reset_index(drop=True), one.table,
                                  check_exact=True)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda d, mc: power(d, settings=mc, replicates=100),
         r"power\(\) got replicates=100 and settings with replicates=64"),
        (lambda d, mc: power(d, settings=mc, rng=7),
         r"power\(\) got rng=7 and settings with rng=5"),
        (lambda d, mc: power(d, settings=mc, missing="mi"),
         r"got missing='mi' and settings with missing='complete-case'"),
        (lambda d, mc: power_curve(d, parameter="n", values=[40], settings=mc,
                                   alpha=0.01),
         r"power_curve\(\) got alpha=0\.01 and settings with alpha=0\.1"),
        (lambda d, mc: power_grid(d, axes={"n": [40]}, settings=mc, n_jobs=2),
         r"power_grid\(\) got n_jobs=2 and settings with n_jobs=1"),
        (lambda d, mc: sample_size(d, settings=mc, inference="hc3"),
         r"sample_size\(\) got inference='hc3' and settings with inference='welch'"),
    ],
)
def test_conflicting_keyword_names_both(design, call, match):
    with pytest.raises(TypeError, match=match):
        call(design, MonteCarlo(**SMALL))


def test_keyword_at_its_default_defers_to_settings(design):
    # a keyword equal to the function's default cannot be told from one left
    # out (the signature keeps its plain defaults), so the settings apply
    mc = MonteCarlo(**{**SMALL, "inference": "ols"})
    a = power(design, settings=mc, inference="welch", **QUICK)
    assert a.inference == "ols"


def test_sample_size_refuses_multiple_imputation(design):
    with pytest.raises(ValueError, match=r"complete-case analyses only; got "
                       r"settings with missing='mi'"):
        sample_size(design, settings=MonteCarlo(missing="mi"))


def test_chunks_follow_the_settings(design):
    assert _chunk_replicates(design, MonteCarlo(chunk_size=100)) == 128
    cc = _chunk_replicates(design, MonteCarlo())
    mi = _chunk_replicates(design, MonteCarlo(missing="mi", imputations=4))
    assert mi < cc  # each replicate of mi is that many datasets


def test_exported():
    assert dtitool.MonteCarlo is MonteCarlo
    assert "MonteCarlo" in dtitool.__all__
