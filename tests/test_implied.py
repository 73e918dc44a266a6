import numpy as np
import pytest

from dtitool.stats.implied import implied_effect, n_for_power
from dtitool.stats.ols import ols_batch
from dtitool.stats.power import analytic_power


def test_design_feasibility_note():
    # docs/model.md feasibility check: interaction p ~0.03 in 65 vs 33 needs
    # r_obs ~0.44.
    e = implied_effect(0.03, n=98, allocation=(2, 1), reliability=0.8)
    assert e.n_arms == (65, 33) and e.arms == ("treatment", "control")
    assert e.r_observed == pytest.approx(0.44, abs=0.01)
    assert e.r_true == pytest.approx(e.r_observed / np.sqrt(0.8))
    assert e.possible


def test_interaction_formula_recovers_simulated_correlation():
    """Median p of simulated trials with ketamine-arm correlation rho implies rho."""
    rng = np.random.default_rng(5)
    R, nk, ns, rho = 4000, 65, 33, 0.4
    g = np.r_[np.ones(nk), np.zeros(ns)]
    x = rng.standard_normal((R, nk + ns))
    e = rng.standard_normal((R, nk + ns))
    y = np.where(g == 1, rho * x + np.sqrt(1 - rho**2) * e, e)
    b = rng.standard_normal((R, nk + ns))  # a baseline covariate unrelated to y
    X = np.stack([np.ones_like(x), np.broadcast_to(g, x.shape), x, g * x, b], -1)
    p = ols_batch(X, y).contrast([0, 0, 0, 1, 0]).p
    got = implied_effect(float(np.median(p)), n=nk + ns, term="interaction")
    assert got.r_observed == pytest.approx(rho, abs=0.03)


def test_pooled_slope_partial_correlation_is_exact():
    rng = np.random.default_rng(1)
    n = 60
    g = (np.arange(n) < 40).astype(float)
    x, b = rng.standard_normal(n), rng.standard_normal(n)
    y = 0.4 * x + g + rng.standard_normal(n)
    X = np.column_stack([np.ones(n), g, x, b])
    p = float(ols_batch(X, y[None]).pvalues[0, 2])
    Z = np.column_stack([np.ones(n), g, b])
    res = lambda v: v - Z @ np.linalg.lstsq(Z, v, rcond=None)[0]  # noqa: E731
    partial = np.corrcoef(res(x), res(y))[0, 1]
    e = implied_effect(p, n=n, allocation=(2, 1), term="slope_pooled")
    assert e.r_observed == pytest.approx(abs(partial), rel=1e-6)


def test_impossible_effect_is_flagged():
    e = implied_effect(1e-6, n=98, reliability=0.3)
    assert not e.possible
    assert e.r_true > 1
    assert "impossible" in e.message
    assert e.min_reliability == pytest.approx(e.r_observed**2)


def test_replication_power_at_alpha_is_about_half():
    e = implied_effect(0.05, n=98, term="slope_pooled")
    assert e.replication_power == pytest.approx(0.5, abs=0.03)
    assert e.replication_n80 > 98
    n80 = n_for_power(f2=e.f2, n_predictors=3)
    assert analytic_power(f2=e.f2, n=n80, n_predictors=3) >= 0.8
    assert analytic_power(f2=e.f2, n=n80 - 1, n_predictors=3) < 0.8


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"p": 0.0}, "p must be"),
        ({"p": 0.03, "n": 5}, "n must be"),
        ({"p": 0.03, "reliability": 0.0}, "reliability must be"),
        ({"p": 0.03, "term": "slope"}, "unknown term"),
        ({"p": 0.03, "allocation": (2, 0)}, "allocation"),
    ],
)
def test_bad_arguments(kwargs, match):
    kw = {"n": 98, **kwargs}
    p = kw.pop("p")
    with pytest.raises(ValueError, match=match):
        implied_effect(p, **kw)
