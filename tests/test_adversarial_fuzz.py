"""Property tests of hostile input: malformed tables, TOML, NIfTI headers, options.

Whatever hypothesis throws at a command, the answer is success (exit 0) or one
line on stderr with exit code 2: never a traceback or an internal error, and a
failed run changes nothing anywhere.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
from _adversarial_world import (
    FIELDS,
    extract_args,
    md_map,
    quiet_main,
    save_nifti,
)
from _trees import tree
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# Fixed examples in CI; DTITOOL_FUZZ_EXAMPLES=2000 explores (randomly) at length.
_EXPLORE = int(os.environ.get("DTITOOL_FUZZ_EXAMPLES", "0"))
SETTINGS = settings(max_examples=_EXPLORE or 30, deadline=None,
                    derandomize=not _EXPLORE,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


class World:
    """A fresh copy of the world per example (hypothesis reuses fixtures)."""

    def __init__(self, template: Path):
        self.root = Path(tempfile.mkdtemp(prefix="dtitool-fuzz-"))
        self.w = self.root / "w"
        shutil.copytree(template, self.w)

    def __enter__(self):
        return self.w

    def __exit__(self, *exc):
        shutil.rmtree(self.root, ignore_errors=True)


def answered(argv, root: Path, outputs: tuple[str, ...] = ()) -> int:
    """Run; check the answer is exit 0, or exit 2 with one line and no change.

    ``outputs`` (relative to ``root``) are left out of the comparison when the
    run succeeds.
    """
    before = tree(root)
    code, _, err = quiet_main(argv)
    assert code in (0, 2), (code, err)
    assert "Traceback" not in err
    if code == 2:
        assert err.count("\n") == 1 and err.startswith("dtitool"), err
        assert tree(root) == before
    else:
        after = {k: v for k, v in tree(root).items()
                 if not any(k == o or k.startswith(o + "/") for o in outputs)}
        assert after == {k: v for k, v in before.items()
                         if not any(k == o or k.startswith(o + "/") for o in outputs)}
    return code


# ------------------------------------------------------------------------- tables

CELL = st.one_of(
    st.just(""), st.just("NA"), st.just("n/a"), st.just("nan"), st.just("inf"),
    st.just("-inf"), st.just("1e308"), st.just("1e-320"), st.just("-0"),
    st.integers(-10**20, 10**20).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(alphabet=st.characters(blacklist_characters="\t\n\r\x00"),
            max_size=12),
)
COLUMN = st.one_of(st.sampled_from([
    "participant_id", "group", "madrs_baseline", "madrs_24h", "qids_baseline",
    "qids_24h", "age", "sex", "roi", "session", "md", "replicate", "C", "lambda",
    "d_md", "md_24h", "Q", "np", "", "group ", "Group"]),
    st.text(max_size=8).filter(lambda s: "\t" not in s and "\n" not in s
                               and "\r" not in s))
EDIT = st.one_of(
    st.tuples(st.just("cell"), st.sampled_from(["participants", "roi_md"]),
              st.integers(0, 300), st.integers(0, 9), CELL),
    st.tuples(st.just("rename"), st.sampled_from(["participants", "roi_md"]),
              st.integers(0, 9), COLUMN),
    st.tuples(st.just("drop_row"), st.sampled_from(["participants", "roi_md"]),
              st.integers(0, 300)),
)


@SETTINGS
@given(edits=st.lists(EDIT, min_size=1, max_size=4))
def test_malformed_tables(world_template, edits):
    with World(world_template) as w:
        d = w / "cohort"
        frames = {name: pd.read_csv(d / f"{name}.tsv", sep="\t", dtype=str,
                                    keep_default_na=False)
                  for name in ("participants", "roi_md")}
        for e in edits:
            df = frames[e[1]]
            if e[0] == "cell":
                row, col = e[2] % len(df), e[3] % df.shape[1]
                df.iloc[row, col] = e[4]
            elif e[0] == "rename":
                cols = list(df.columns)
                cols[e[2] % len(cols)] = e[3]
                df.columns = cols
            elif len(df) > 1:
                frames[e[1]] = df.drop(df.index[e[2] % len(df)])
        for name, df in frames.items():
            df.to_csv(d / f"{name}.tsv", sep="\t", index=False)
        answered(["analyze", d, "--out", w / "res" / "r.tsv", "--covariates",
                  "baseline", "age"], w.parent, outputs=("w/res",))


# --------------------------------------------------------------------------- TOML

TOML_VALUE = st.one_of(
    st.integers(-5, 300).map(str),
    st.sampled_from(["0", "-1", str(2**62), str(2**63 - 1), "1e300", "nan", "inf",
                     "-inf", "0.0", "1.5", "true", "false", '""', '"x"', "[]",
                     "[1, 2]", '["a"]', "{}", "{ketamine = 1}", "[[1, 0], [0, 1]]",
                     "{ ketamine = 0.5, saline = -0.5 }"]),
    st.floats(-5, 5).map(repr),
)
TOML_EDIT = st.one_of(
    st.tuples(st.just("value"), st.integers(0, 400), TOML_VALUE),
    st.tuples(st.just("key"), st.integers(0, 400),
              st.from_regex(r"[a-z_]{1,10}", fullmatch=True), TOML_VALUE),
    st.tuples(st.just("delete"), st.integers(0, 400)),
)


@SETTINGS
@given(edits=st.lists(TOML_EDIT, min_size=1, max_size=3))
def test_malformed_design_toml(world_template, edits):
    with World(world_template) as w:
        lines = (w / "design.toml").read_text().splitlines()
        for e in edits:
            i = e[1] % len(lines)
            if e[0] == "value" and " = " in lines[i]:
                lines[i] = lines[i].split(" = ", 1)[0] + " = " + e[2]
            elif e[0] == "key":
                lines.insert(i, f"{e[2]} = {e[3]}")
            elif e[0] == "delete":
                del lines[i]
        f = w / "bad" / "d.toml"
        f.write_text("\n".join(lines) + "\n")
        answered(["simulate", "--design", f, "--out", w / "sim"], w.parent,
                 outputs=("w/sim",))


# ------------------------------------------------------------------- NIfTI headers

def _field_value(name):
    _, fmt = FIELDS[name]
    n = int(fmt[1:-1] or 1) if fmt[1:-1] else 1
    if fmt.endswith("h"):
        item = st.integers(-32768, 32767)
    else:
        item = st.one_of(st.floats(width=32, allow_nan=True, allow_infinity=True),
                         st.sampled_from([0.0, -1.0, 1e30, 352.0]))
    return st.lists(item, min_size=n, max_size=n)


HEADER_EDIT = st.sampled_from(sorted(FIELDS)).flatmap(
    lambda name: st.tuples(st.just(name), _field_value(name)))


@SETTINGS
@given(edits=st.lists(HEADER_EDIT, min_size=1, max_size=3),
       gz=st.booleans())
def test_malformed_nifti_headers(world_template, edits, gz):
    with World(world_template) as w:
        fields = dict(edits)
        name = "sub-02_ses-24h_MD.nii" + (".gz" if gz else "")
        try:
            m = save_nifti(w / "bad" / name, md_map(5), **fields)
        except Exception:  # a header nibabel itself cannot write: skip
            return
        answered(extract_args(w, m), w.parent, outputs=("w/ex",))


# ----------------------------------------------------------------- option values

NUMBER_TEXT = st.one_of(
    st.sampled_from(["nan", "inf", "-inf", "1e300", "-1e300", "0", "-0", "1",
                     "40.7", "1e-300", "", " ", "0x10", "1_000", "٣"]),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=6),
)
CURVE = st.one_of(
    st.tuples(st.sampled_from(["n", "ratio", "effect", "reliability", "cv", "x"]),
              st.lists(NUMBER_TEXT, min_size=1, max_size=3),
              st.sampled_from([",", ":"])).map(
        lambda t: f"{t[0]}={t[2].join(t[1])}"),
    st.text(max_size=15),
)


@SETTINGS
@given(curve=CURVE, alpha=NUMBER_TEXT, target=st.one_of(st.none(), NUMBER_TEXT),
       replicates=st.one_of(st.integers(max_value=0), st.integers(min_value=10**11),
                            st.just(64)))
def test_hostile_option_values(world_template, curve, alpha, target, replicates):
    with World(world_template) as w:
        argv = ["power", "--quiet", "--replicates", str(replicates), "--n", "40",
                "--curve", curve, "--alpha", alpha, "--n-max", "60",
                "--out", w / "pw"]
        if target is not None:
            argv += ["--target-power", target]
        # keep successful runs short: few points at small n
        try:
            name, values = curve.split("=", 1)
            vals = [float(v) for v in values.replace(":", ",").split(",")]
            if name == "n" and any(math.isfinite(v) and v > 400 for v in vals):
                return
        except ValueError:
            pass
        answered(argv, w.parent, outputs=("w/pw",))


def test_fuzz_world_is_sane(world_template):
    # the untouched world analyses fine (so failures above are the edits')
    with World(world_template) as w:
        assert answered(["analyze", w / "cohort", "--out", w / "r.tsv"], w.parent,
                        outputs=("w/r.tsv", "w/r.json", "w/dtitool-run.json")) == 0
        assert np.isfinite(pd.read_csv(w / "r.tsv", sep="\t")["p"]).all()
