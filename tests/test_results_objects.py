"""Results objects follow statsmodels' conventions.

- ``==`` never raises: a results object holding DataFrames or arrays compares
  by identity (``eq=False``), as statsmodels results do, instead of the
  dataclass ``__eq__`` that compares the fields and fails on "the truth value
  of a DataFrame is ambiguous".
- ``summary()`` is a method of every results object and returns the printable
  text (the older functions, ``format_summary`` and ``power_summary``, give
  the same text).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from _analysis_tables import make_tables

from dtitool.design import MissingSpec, load_preset
from dtitool.simulate import simulate_cohort
from dtitool.stats.analysis import fit_models, format_summary
from dtitool.stats.curves import power_curve, power_grid
from dtitool.stats.implied import implied_effect
from dtitool.stats.missing import tipping_point
from dtitool.stats.ols import ols_batch
from dtitool.stats.power import power, power_summary
from dtitool.stats.sample_size import sample_size

R = 64  # replicates: the numbers do not matter here, only the objects


@pytest.fixture(scope="module")
def design():
    return load_preset("ketamine-rct")


def _analysis():
    return fit_models(*make_tables(seed=0))


def _tipping():
    d = dataclasses.replace(load_preset("ketamine-rct"),
                            missing=MissingSpec("mcar", 0.2, scores=True))
    c = simulate_cohort(d, rng=1)
    return tipping_point(c.participants, c.roi_md, deltas=(0.0, 2.0),
                         imputations=2, rng=3)


def _ols():
    rng = np.random.default_rng(0)
    X = np.c_[np.ones(20), rng.normal(size=20)]
    return ols_batch(X, rng.normal(size=(3, 20)))


BUILDERS = {
    "AnalysisResults": lambda d: _analysis(),
    "TippingPoint": lambda d: _tipping(),
    "PowerResult": lambda d: power(d, replicates=R, rng=1, progress=False),
    "PowerCurve": lambda d: power_curve(d, parameter="n", values=[40, 80],
                                        replicates=R, rng=1, progress=False),
    "PowerGrid": lambda d: power_grid(d, axes={"n": [40, 80]}, replicates=R,
                                      rng=1, progress=False,
                                      design_analysis=False),
    "SampleSizeResult": lambda d: sample_size(
        d, tests=[("L_BA10", "madrs", "interaction")], n_min=20, n_max=60,
        replicates=R, rng=1, progress=False),
    "ImpliedEffect": lambda d: implied_effect(0.01, n=40),
    "OLSBatch": lambda d: _ols(),
    "ContrastResult": lambda d: _ols().contrast([0.0, 1.0]),
}


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_equality_never_raises(design, name):
    a, b = BUILDERS[name](design), BUILDERS[name](design)
    assert type(a).__name__ == name
    assert a == a
    if name == "ImpliedEffect":  # scalars only: equal values, equal objects
        assert a == b
    else:
        assert a != b  # identity, as statsmodels results
        assert len({a, b}) == 2  # hashable by identity too


@pytest.mark.parametrize("name", sorted(set(BUILDERS) - {"OLSBatch",
                                                         "ContrastResult"}))
def test_summary_is_a_method_returning_text(design, name):
    res = BUILDERS[name](design)
    text = res.summary()
    assert isinstance(text, str) and text
    key = {
        "AnalysisResults": lambda r: "{:.3f}".format(
            r.term("L_BA10", "madrs", "interaction")["estimate"]),
        "TippingPoint": lambda r: f"seed {r.seed}",
        "PowerResult": lambda r: f"{r.replicates} replicates, seed {r.seed}",
        "PowerCurve": lambda r: f"seed {r.seed}",
        "PowerGrid": lambda r: f"seed {r.seed}",
        "SampleSizeResult": lambda r: f"target power {r.target_power:g}"
        if r.n is None else f"n = {r.n}",
        "ImpliedEffect": lambda r: f"{r.p:g}",
    }[name](res)
    assert key in text, (key, text)


def test_the_older_summary_functions_give_the_same_text(design):
    res = _analysis()
    assert res.summary() == format_summary(res)
    pw = power(design, replicates=R, rng=1, progress=False)
    assert pw.summary() == power_summary(pw)


def test_power_curve_summary_lists_every_value(design):
    curve = BUILDERS["PowerCurve"](design)
    text = curve.summary()
    rows = curve.table[curve.table["term"] == "interaction"]
    assert text.count("\n") == len(rows) + 1  # head, column names, one per row
    first = rows.iloc[0]
    assert f"{first['power']:.4g}" in text.splitlines()[2]
    assert isinstance(curve.table, pd.DataFrame)
