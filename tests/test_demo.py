"""The main job: ``dtitool demo`` end to end, and its report in a real browser."""

import re

import pandas as pd
import pytest
from _browser import find_chromium, render_page

from dtitool.cli import main
from dtitool.pipeline import OUTPUTS, DemoSettings


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One demo run: its folder, what it printed (progress lines) and the
    results object its report was rendered from."""
    import contextlib
    import io

    import dtitool.report.demo as renderer

    render, seen = renderer.render_demo_report, []

    def keep(results, out, **kwargs):
        seen.append(results)
        return render(results, out, **kwargs)

    out = tmp_path_factory.mktemp("demo") / "out"
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(printed):
        mp.setattr(renderer, "render_demo_report", keep)
        code = main(["demo", "--out", str(out), "--replicates", "400",
                     "--curve-replicates", "200"])
    assert code == 0 and len(seen) == 1
    return out, printed.getvalue(), seen[0]


@pytest.fixture(scope="module")
def demo_dir(demo_run):
    return demo_run[0]


def test_progress_lines_and_closing_line(demo_run):
    """One line per step (7, numbered in the order they are printed; the Monte
    Carlo lane's numbered when it ends), then the total time and the disk space
    the outputs take."""
    out, printed, _ = demo_run
    lines = printed.splitlines()
    steps = [re.fullmatch(r"step (\d+)/7 .+ \.\.\. done in \d+\.\d s", ln)
             for ln in lines if ln.startswith("step ")]
    assert all(steps) and [int(m[1]) for m in steps] == list(range(1, 8)), printed
    # counted nouns agree with their number: no "participant(s)"
    assert "(s)" not in printed
    assert "and DWI for 1 participant" in printed
    m = re.fullmatch(r"done in (\d+\.\d) s; ([\d.]+) (MB|GB) on disk in (.+): "
                     r"open (.+)", lines[-1])
    assert m, lines[-1]
    assert m[4] == str(out) and m[5] == str(out / "report.html")
    used = sum(p.stat().st_blocks * 512 for p in out.rglob("*") if p.is_file())
    scale = {"MB": 1e6, "GB": 1e9}[m[3]]
    assert float(m[2]) * scale == pytest.approx(used, rel=0.01)


def test_outputs_complete(demo_dir):
    for name in OUTPUTS:
        assert (demo_dir / name).exists(), name
    assert not list(demo_dir.parent.glob(".dtitool-tmp*"))
    for name in ("results.tsv", "comparison.tsv", "power.tsv", "reproduce.tsv",
                 "roi_md_images.tsv", "image_agreement.tsv", "tensor_agreement.tsv",
                 "power_curve.tsv", "sample_size.tsv", "familywise.tsv"):
        assert (demo_dir / "tables" / name).stat().st_size > 0, name
    n_maps = len(list((demo_dir / "images").rglob("*_param-MD_dwimap.nii.gz")))
    assert n_maps == 196
    assert len(list((demo_dir / "tensor").glob("*_MD.nii.gz"))) == 2


def test_image_path_agrees_with_tables(demo_dir):
    agree = pd.read_csv(demo_dir / "tables" / "image_agreement.tsv", sep="\t")
    assert len(agree) == 98 * 2 * 7
    # MD maps are stored as float32: ROI means agree to the stated 1e-6 tolerance
    assert agree["relative_difference"].abs().max() < 1e-6
    tens = pd.read_csv(demo_dir / "tables" / "tensor_agreement.tsv", sep="\t")
    assert len(tens) == 2 * 7
    # WLS fit of SNR-30 DWI recovers ROI mean MD within a few percent
    assert tens["relative_difference"].abs().max() < 0.02


def test_results_match_analysis_of_the_tables(demo_dir):
    from dtitool import fit_models

    res = pd.read_csv(demo_dir / "tables" / "results.tsv", sep="\t")
    cohort = demo_dir / "cohort"
    direct = fit_models(cohort / "participants.tsv", cohort / "roi_md.tsv").table
    merged = res.merge(direct, on=["roi", "outcome", "term"])
    assert len(merged) == 56
    # image-derived MD differs from the table only by float32 storage
    assert (merged["p_x"] - merged["p_y"]).abs().max() < 1e-4


def test_report_content(demo_dir):
    html = (demo_dir / "report.html").read_text()
    for heading in ("The design and its sources", "Cohort summary", "Imaging path",
                    "Results: group x dMD interaction models",
                    "Power, and the reported findings against many simulated trials",
                    "What dMD reliability does to the effects"):
        assert f">{heading}</h2>" in html
    assert len(re.findall(r'<img src="data:image/png;base64,', html)) == 5
    assert "n for 80% power on" in html or "is not reached by n" in html
    assert "Kopelman" in html and "reliability" in html
    assert not re.search(r'(src|href)="https?://', html)


def test_report_prints_a_range_only_when_its_ends_differ(demo_dir):
    """A span like "0.5-0.5" is printed as one number (the realistic world's
    saline true change SD is 0.5 % of MD in every ROI)."""
    html = (demo_dir / "report.html").read_text()
    text = re.sub(r'src="data:[^"]*"', "", html)
    same = [m.group(0) for m in re.finditer(r"(?<![\w.-])(\d+(?:\.\d+)?)-\1(?![\w.])",
                                            text)]
    assert same == []
    assert "<td>0.5</td>" in text or ">0.5<" in text


def test_report_sets_both_worlds_and_notes(demo_dir):
    html = (demo_dir / "report.html").read_text()
    for text in ("means about 50 % power", "ketamine-rct-face-value",
                 "What the reported p-values need", "Reading the results",
                 "Gelman and Stern 2006", "not a randomised factor",
                 "regression to the mean", "session r"):
        assert text in html, text
    t = pd.read_csv(demo_dir / "tables" / "reproduce.tsv", sep="\t",
                    keep_default_na=False)
    assert {"other_world", "other_power", "needed", "leaves_range"} <= set(t.columns)


def test_report_in_headless_browser(demo_dir, tmp_path):
    exe = find_chromium()
    if exe is None:
        pytest.skip("no Chromium installed (.ci/run installs Debian's chromium)")
    info = render_page(exe, demo_dir / "report.html", tmp_path / "report.png")
    assert info["errors"] == []
    assert len(info["images"]) == 5
    for complete, width, height in info["images"]:
        assert complete and width > 100 and height > 100
    assert all(len(alt) > 20 for alt in info["alts"])  # every figure described
    assert info["scroll_width"] <= 1280  # no page-wide horizontal overflow
    assert info["overflow"] == []  # nothing sticks out or is clipped
    png = info["screenshot"].read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 50_000
    # a phone: wide tables scroll inside their own box, nothing else overflows
    narrow = render_page(exe, demo_dir / "report.html", tmp_path / "narrow.png",
                         width=390)
    assert narrow["errors"] == []
    assert narrow["scroll_width"] <= 390
    assert narrow["overflow"] == []


def test_demo_refuses_existing_output(demo_dir, capsys):
    before = (demo_dir / "report.html").stat().st_mtime_ns
    assert main(["demo", "--out", str(demo_dir), "--quiet"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (demo_dir / "report.html").stat().st_mtime_ns == before


@pytest.mark.parametrize(("args", "match"), [
    (["--replicates", "5"], "replicates must be an integer >= 100"),
    (["--dwi-subjects", "50"], "dwi_subjects must be an integer from 0 to 10"),
    (["--seed", "-1"], "seed must be a non-negative integer"),
])
def test_demo_bad_arguments(tmp_path, capsys, args, match):
    out = tmp_path / "x"
    assert main(["demo", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert match in err and err.count("\n") == 1
    assert not out.exists()


def test_report_renders_from_the_results_object(demo_run, tmp_path):
    """report/ renders, the pipeline orchestrates: the one results object the
    pipeline returned gives the demo's page and figures again, byte for byte
    (figures drawn anew here, in this process)."""
    from dtitool.pipeline import DemoResults
    from dtitool.report.demo import DEMO_FIGURES, render_demo_report

    out, _, results = demo_run
    assert isinstance(results, DemoResults)
    assert results.report_path == out / "report.html"
    assert set(results.figure_data) == set(DEMO_FIGURES)
    assert set(results.timings) == {"imaging", "monte_carlo"}
    path = render_demo_report(results, tmp_path)
    assert path.read_bytes() == (out / "report.html").read_bytes()
    for file in DEMO_FIGURES.values():
        assert (tmp_path / "figures" / file).read_bytes() == (
            out / "figures" / file).read_bytes(), file


def test_draw_demo_figure_names_the_figures():
    from dtitool.report.demo import draw_demo_figure

    with pytest.raises(ValueError, match=r"name must be one of slices, .*; got 'pie'"):
        draw_demo_figure("pie")


def test_settings_validate():
    with pytest.raises(ValueError, match="curve_replicates"):
        DemoSettings(curve_replicates=10)


def test_demo_manifest_and_cohort_record_repeat(demo_dir, tmp_path, capsys):
    import json

    (run,) = json.loads((demo_dir / "dtitool-run.json").read_text())["runs"]
    assert run["command"] == "demo" and run["seed"] == 7
    assert "report.html" in run["files"] and "images/atlas-dtitool_dseg.nii.gz" in (
        run["files"])
    again = tmp_path / "again"
    assert main(["simulate", "--design", str(demo_dir / "cohort" / "design.toml"),
                 "--out", str(again)]) == 0
    for name in ("participants.tsv", "roi_md.tsv", "true_md.tsv"):
        assert (again / name).read_bytes() == (demo_dir / "cohort" / name).read_bytes()
