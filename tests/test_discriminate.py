"""dtitool discriminate: telling two scenarios apart by contrasts between visits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from dtitool.cli import main
from dtitool.design import load_preset
from dtitool.stats.discriminate import _welch_p, best_designs, discriminate

A = load_preset("ect-plasticity")
B = load_preset("ect-inflammation")


def test_welch_p_equals_scipy():
    rng = np.random.default_rng(0)
    d = rng.normal(size=(3, 30))
    d[0, 4] = np.nan  # a missing scan drops that participant
    arm = np.tile(np.r_[np.zeros(15, int), np.ones(15, int)], (3, 1))
    p = _welch_p(d, arm, 0, 1, 0.3)
    for r in range(3):
        x, y = d[r, :15], d[r, 15:]
        want = stats.ttest_ind(x[np.isfinite(x)] - 0.3, y, equal_var=False).pvalue
        assert p[r] == pytest.approx(want, rel=1e-10)


def test_true_contrasts_and_size():
    t = discriminate(A, B, replicates=2000, rng=4, visits=["baseline", "session1",
                                                           "followup"])
    row = t[(t.roi == "hippocampus") & (t.measure == "md")
            & (t.contrast == "session1-baseline")].iloc[0]
    # plasticity: Emax -1.7e-5 x 1/(1+4); inflammation: 1.7e-5 x 2^(-2/24); per 1e-5
    assert row.true_a == pytest.approx(-1.7 / 5)
    assert row.true_b == pytest.approx(1.7 * 2 ** (-2 / 24))
    # each scenario's own value is rejected at the test's level (4 binomial SE)
    band = 4 * np.sqrt(0.05 * 0.95 / 2000)
    assert np.all(np.abs(t[["size_a", "size_b"]].to_numpy() - 0.05) < band)
    both = t[["power_a_rejects_b", "power_b_rejects_a"]]
    assert (t["power"] == both.min(axis=1)).all()
    assert set(t["contrast"]) == {"session1-baseline", "followup-baseline",
                                  "followup-session1"}


def test_best_design_and_reproducible():
    t1 = discriminate(A, B, n=[20, 40], replicates=300, rng=9)
    t2 = discriminate(A, B, n=[20, 40], replicates=300, rng=9)
    pd.testing.assert_frame_equal(t1, t2)
    best = best_designs(t1, 0.8).set_index(["roi", "measure"])
    hv = best.loc[("hippocampus", "volume")]
    g = t1[(t1.roi == "hippocampus") & (t1.measure == "volume")]
    assert hv.reached and hv.power >= 0.8
    assert hv.n == g[g.power >= 0.8].n.min()


def test_cli_writes_and_refuses(tmp_path, capsys):
    out = tmp_path / "d"
    assert main(["discriminate", "--design", "ect-plasticity", "--design",
                 "ect-inflammation", "--n", "20,40", "--replicates", "200",
                 "--seed", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "hippocampus volume:" in text and "reaches power" in text
    for f in ("discriminate.tsv", "discriminate_best.tsv", "discriminate.png",
              "discriminate.html", "design_a.toml", "design_b.toml"):
        assert (out / f).is_file()
    page = (out / "discriminate.html").read_text(encoding="utf-8")
    assert "Telling ect-plasticity from ect-inflammation" in page
    assert "data:image/png;base64," in page and "seed 1." in page
    assert main(["discriminate", "--design", "ect-plasticity", "--out",
                 str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert "exactly twice" in err and len(err.strip().splitlines()) == 1
    assert main(["discriminate", "--design", "ect-plasticity", "--design",
                 "ketamine-rct", "--out", str(tmp_path / "f")]) == 2
    assert "differ in their visits" in capsys.readouterr().err
    assert not (tmp_path / "e").exists() and not (tmp_path / "f").exists()
