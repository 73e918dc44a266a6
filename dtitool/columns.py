"""The data dictionary: what every column of every table dtitool writes means.

Every TSV dtitool writes gets a BIDS-style JSON sidecar (same stem, ``.json``)
built from this dictionary: per column a ``Description``, the ``Units`` where the
column has units, and ``Levels`` for categories. A column the dictionary does not
know is an error when the table is written, so no table goes out undocumented.

Numbers are written with the digits their precision supports (:data:`FORMATS`):
one-dataset statistics and MD with 10 significant digits (float64 numerics; the
table path reproduces an analysis exactly), Monte Carlo summaries (medians,
means, interval bounds) with 4, Monte Carlo proportions exactly as the fraction
of replicates they are, integers as integers; interval bounds that are 0 or 1 by
construction are written as such.

Examples
--------
>>> import pandas as pd
>>> sc = sidecar(pd.DataFrame({"roi": ["L_BA10"], "md": [0.8e-3]}), "roi_md")
>>> sc["md"]["Units"]
'mm^2/s'
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

__all__ = ["COLUMNS", "FORMATS", "TABLE_COLUMNS", "column_format", "sidecar",
           "sidecar_text", "trial_columns"]

FORMATS = {
    "text": None,  # strings, booleans and integers are written as they are
    "exact": "%.10g",  # design inputs: as given
    "stat": "%.10g",  # one-dataset statistics: float64 numerics support 10 digits
    "md": "%.10g",  # MD, mm^2/s: simulated in float64 (the table path is exact)
    "prop": "%.6g",  # Monte Carlo proportions k / R: exact for R up to 10^6
    "mc": "%.4g",  # Monte Carlo medians, means, interval bounds; derived values
}
"""printf formats by kind of number."""

_P = "two-sided p-value"
_UNIT_EST = "score points per 1e-5 mm^2/s of MD change"
_ANY = ("either outcome: the finding is found when its test is significant with "
        "the reported sign on at least one outcome (docs/model.md)")
_RATERS = {"clinician": "clinician-rated", "self-report": "self-report"}
# Words that stand for the design's names in the generic entries below: each
# becomes the design's name when a sidecar is written with the design, and
# stays a generic word otherwise.
_GENERIC = {"treatment": "treatment", "control": "control",
            "baseline": "baseline", "primary": "follow-up"}
_INFERENCE = {"Description": "how standard errors and degrees of freedom were "
                             "computed (docs/model.md, Inference)",
              "Levels": {"ols": "classical pooled-variance OLS (as reported)",
                         "hc3": "HC3 heteroscedasticity-consistent standard errors",
                         "welch": "arms fitted separately, Welch-Satterthwaite df"},
              "kind": "text"}


def _c(description: str, kind: str = "stat", units: str | None = None,
       levels: Mapping[str, str] | None = None) -> dict:
    d = {"Description": description, "kind": kind}
    if units:
        d["Units"] = units
    if levels:
        d["Levels"] = dict(levels)
    return d


COLUMNS: dict[str, dict] = {
    # identifiers and labels
    "participant_id": _c("participant label (BIDS sub-<label>)", "text"),
    "replicate": _c("index of the simulated trial (1-based)", "text"),
    # group, session, visit, roi, outcome and term: levels from the design or
    # from the values of the table (see sidecar)
    "group": _c("randomised arm", "text"),
    "session": _c("scan session: the visit at which the scan was made", "text"),
    "visit": _c("visit name (the session label of its scans)", "text"),
    "roi": _c("region of interest (see the atlas lookup table)", "text"),
    "measure": _c("the ROI's imaging measure whose change the model regresses "
                  "on: md, or another measure of the ROI (fa, volume, ...)",
                  "text"),
    "outcome": _c("depression outcome scale", "text"),
    "term": _c("model term (docs/model.md, Analysis models)", "text"),
    "inference": _INFERENCE,
    "sex": _c("sex", "text", levels={"F": "female", "M": "male"}),
    "age": _c("age", "text", "years"),
    # visits (the schedule); <outcome>_<visit> score columns come from the design
    "hours": _c("time since the baseline visit", "exact", "hours"),
    "dose": _c("treatment received by this visit, as the design states it (empty: "
               "none stated)", "exact"),
    "primary": _c("whether this visit is the primary endpoint", "text", levels={
        "true": "the primary endpoint", "false": "not the primary endpoint"}),
    # ROI MD
    "md": _c("mean diffusivity of the ROI: the mean over its voxels (a simulated "
             "cohort: the observed value, with scan noise)", "md", "mm^2/s"),
    "md_true": _c("latent true mean diffusivity (no measurement noise; simulated "
                  "cohorts only, for teaching)", "md", "mm^2/s"),
    "n_voxels": _c("voxels averaged", "text", "voxels"),
    "n_excluded": _c("ROI voxels excluded as not finite, zero or negative", "text",
                     "voxels"),
    "md_image": _c("ROI mean MD extracted from the simulated MD map", "md",
                   "mm^2/s"),
    "md_table": _c("ROI MD of the simulated table the map was made from", "md",
                   "mm^2/s"),
    "md_simulated_map": _c("ROI mean MD of the simulated MD map", "md", "mm^2/s"),
    "md_tensor_fit": _c("ROI mean MD of the tensor fitted to the simulated DWI",
                        "md", "mm^2/s"),
    "relative_difference": _c("first MD over the second, minus 1", "stat"),
    # MRS tables (dtitool mrs-import): the value column is named after the
    # metabolite (docs/mrs.md)
    "unit": _c("unit of the row's value, as the quantification tool gives it: "
               "i.u. (water-scaled institutional units), mM (water-scaled, "
               "LCModel or tissue-corrected), ratio to tCr, a.u.", "text"),
    "crlb": _c("Cramer-Rao lower bound of the fit: the estimate's standard "
               "deviation as a percentage of it (LCModel %SD, Osprey's CRLB "
               "table; empty: not reported)", "exact", "%"),
    "fit_error": _c("Gannet's fit error: the fit residual's standard deviation "
                    "relative to the peak, combined with the reference peak's "
                    "(water for water-scaled values, Cr for ratios)", "exact",
                    "%"),
    # atlas lookup table
    "index": _c("label value in the atlas image", "text"),
    "name": _c("ROI name of that label", "text"),
    # one-dataset results
    "estimate": _c("estimate of the term", "stat", _UNIT_EST),
    "se": _c("standard error of the estimate", "stat", _UNIT_EST),
    "t": _c("t statistic (estimate / se)", "stat"),
    "df": _c("degrees of freedom of the t reference (residual df; Welch-"
             "Satterthwaite or Kenward-Roger under welch)", "stat"),
    "p": _c(_P, "stat"),
    "ci_low": _c("lower bound of the 95 % confidence interval", "stat", _UNIT_EST),
    "ci_high": _c("upper bound of the 95 % confidence interval", "stat", _UNIT_EST),
    "n": _c("participants in the model (complete cases) or total sample size",
            "text", "participants"),
    "n_dropped": _c("participants dropped from the model", "text", "participants"),
    # missing data (docs/model.md, Missing data)
    "missing": _c("how missing follow-up data were handled", "text", levels={
        "complete-case": "a participant enters a model only with all its "
                         "variables observed",
        "mi": "multiple imputation within each arm, pooled by Rubin's rules with "
              "Barnard-Rubin df"}),
    "n_imputed": _c("participants in the model with imputed follow-up data", "text",
                    "participants"),
    "missing_reasons": _c("participants per reason for a missing value (one may "
                          "have several): left out, or imputed", "text"),
    "fmi": _c("fraction of missing information of the pooled estimate", "stat"),
    # fit quality of MRS tables (dtitool.mrs.apply_quality; docs/mrs.md)
    "quality_rule": _c("the fit-quality rule applied to the measure's spectra: "
                       "a spectrum above the limit is missing data (crlb: "
                       "Cramer-Rao lower bound, fit_error: Gannet's fit error, "
                       "in %); empty: no rule (a measure without a quality "
                       "column)", "text"),
    "n_dropped_quality": _c("participants left out of the model because a "
                            "spectrum of theirs (baseline or primary visit, the "
                            "model's ROI) failed the fit-quality rule (counted "
                            "in n_dropped too); empty: no rule", "text",
                            "participants"),
    "dropped_quality_by_arm": _c("n_dropped_quality per arm (every arm named): "
                                 "spectra excluded more often in one arm bias "
                                 "the comparison", "text"),
    "n_imputed_scores": _c("participants whose follow-up score of the outcome was "
                           "imputed (and shifted by their arm's delta)", "text",
                           "participants"),
    "conclusion": _c("tipping point: what the test concludes at alpha (unadjusted "
                     "p) at this grid point", "text", levels={
                         "positive": "significant, estimate above 0",
                         "negative": "significant, estimate below 0",
                         "significant": "significant (the omnibus F test, no sign)",
                         "not significant": "p above alpha",
                         "not estimable": "no test (the term is not estimable)"}),
    "conclusion_changed": _c("tipping point: whether the conclusion differs from "
                             "the one at missing at random (every delta 0)",
                             "text", levels={"True": "it differs",
                                             "False": "the same"}),
    "mean_n": _c("participants per simulated trial in the models, on average "
                 "(multiple imputation: imputed ones included)", "mc",
                 "participants"),
    "mean_imputed": _c("participants per simulated trial with imputed follow-up data, "
                       "on average", "mc", "participants"),
    "p_holm": _c("Holm-adjusted p within the term's family", "stat"),
    "p_fdr": _c("Benjamini-Hochberg adjusted p within the term's family", "stat"),
    "p_maxt": _c("Westfall-Young max-T adjusted p (Freedman-Lane permutations) "
                 "within the term's family", "stat"),
    # comparison with the reported findings
    "direction": _c("reported sign of the estimate", "text", levels={
        "1": "positive (MD decrease goes with improvement)",
        "-1": "negative (MD increase goes with improvement)",
        "0": "nothing reported: expected null"}),
    "p_low": _c("lowest reported p (expected nulls: alpha)", "exact"),
    "p_high": _c("highest reported p (expected nulls: 1)", "exact"),
    "description": _c("what the reference study reports", "text"),
    "outcome_used": _c("outcome whose test decided (for outcome any: the "
                       "significant one with the reported sign, else the one "
                       "with the smaller p)", "text"),
    "found_direction": _c("sign of the estimate in this dataset", "text"),
    "significant": _c("p <= alpha", "text"),
    "in_reported_range": _c("p within the reported range", "text"),
    "agrees": _c("the reported finding is replicated: significant with the "
                 "reported sign (never true for an expected null)", "text"),
    "implied_estimate": _c("smallest effect the reported p implies, on this "
                           "analysis's scale (the reported p's t at the reference "
                           "study's n, times this estimate's SE rescaled to that "
                           "n; docs/model.md)", "stat", "score points per 1e-5 "
                           "mm^2/s"),
    "ci_excludes_implied": _c("the estimate's 95 % CI excludes implied_estimate",
                              "text"),
    "verdict": _c("how the result compares with the report (docs/model.md, the "
                  "reported findings)", "text"),
    # power
    "power": _c("share of simulated trials in which the test is significant "
                "(reported findings: with the reported sign)", "prop"),
    "power_ci_low": _c("lower bound of the 95 % Wilson interval of power", "mc"),
    "power_ci_high": _c("upper bound of the 95 % Wilson interval of power", "mc"),
    "median_p": _c(f"median over simulated trials of the {_P}", "mc"),
    "mean_estimate": _c("mean over simulated trials of the estimate", "mc",
                        _UNIT_EST),
    "power_positive": _c("share of trials significant with a positive estimate",
                         "prop"),
    "power_negative": _c("share of trials significant with a negative estimate",
                         "prop"),
    "valid": _c("simulated trials in which the test had a finite p (the "
                "denominator of power)", "text", "trials"),
    "size": _c("rejection rate of the same test in the design's null counterpart "
               "(every MD-outcome correlation 0): its actual level", "prop"),
    "size_ci_low": _c("lower bound of the 95 % Wilson interval of size", "mc"),
    "size_ci_high": _c("upper bound of the 95 % Wilson interval of size", "mc"),
    "size_ok": _c("size within its binomial band around alpha (99 %, Bonferroni "
                  "over the run's tests); empty where not checked", "text"),
    "true_value": _c("population value of the term in the simulated design "
                     "(fitted on one very large simulated sample)", "mc", _UNIT_EST),
    "true_value_se": _c("Monte Carlo standard error of true_value", "mc",
                        _UNIT_EST),
    "n_significant": _c("simulated trials in which the test is significant: the "
                        "trials behind type_s and exaggeration, which are left "
                        "empty below 100 (or where the true value is not "
                        "distinguishable from 0)", "text"),
    "type_s": _c("type S error: share of significant estimates with the wrong "
                 "sign (Gelman and Carlin 2014)", "prop"),
    "exaggeration": _c("type M error: mean |estimate| of significant trials over "
                       "|true_value| (Gelman and Carlin 2014)", "mc"),
    "parameter": _c("design parameter varied along the curve", "text", levels={
        "n": "total sample size", "ratio": "allocation ratio {treatment}:{control}",
        "effect": "multiplier of every ROI-outcome correlation",
        "reliability": "dMD reliability in the {treatment} arm (via the CV)",
        "cv": "test-retest coefficient of variation of MD"}),
    "value": _c("value of the varied parameter", "exact"),
    # family-wise
    "family": _c("family of tests adjusted together: a term across all ROI x "
                 "outcome models, 'reported' (the reported findings), 'finding "
                 "...' (one any-outcome finding) or a user family", "text"),
    "method": _c("multiplicity handling", "text", levels={
        "none": "unadjusted (p <= alpha)", "holm": "Holm",
        "bh": "Benjamini-Hochberg", "maxt": "single-step max-T from the null "
        "counterpart"}),
    "tests": _c("findings in the family (a finding on 'any' outcome counts once)",
                "text"),
    "hypotheses": _c("tests in the family (an any-outcome finding brings one per "
                     "outcome)", "text"),
    "directional": _c("rejections count only with the stated sign", "text"),
    "power_any": _c("share of trials with at least one finding found", "prop"),
    "power_any_ci_low": _c("lower 95 % Wilson bound of power_any", "mc"),
    "power_any_ci_high": _c("upper 95 % Wilson bound of power_any", "mc"),
    "power_all": _c("share of trials with every finding found", "prop"),
    "power_all_ci_low": _c("lower 95 % Wilson bound of power_all", "mc"),
    "power_all_ci_high": _c("upper 95 % Wilson bound of power_all", "mc"),
    "mean_rejections": _c("mean number of findings found per trial", "mc"),
    # reproduce
    "reported_p": _c("p reported by the reference study ('n.s.': not reported)",
                     "text"),
    "reported_outcome": _c("outcome as the report gives it", "text"),
    "implied_r_observed": _c("observed dMD-score correlation the reported p "
                             "implies at face value", "mc"),
    "implied_r_true": _c("true correlation behind it (corrected for dMD "
                         "reliability)", "mc"),
    "implied_possible": _c("the implied true correlation is below 1", "text"),
    "replication_power": _c("power of a same-size replication if the face-value "
                            "effect were true (noncentral F)", "mc"),
    "half_effect_power": _c("power if the true effect were half the face-value "
                            "one", "mc"),
    "half_effect_type_s": _c("type S error if the true effect were half the "
                             "face-value one", "mc"),
    "half_effect_exaggeration": _c("exaggeration of a significant estimate if the "
                                   "true effect were half the face-value one", "mc"),
    "decisive_outcome": _c("outcome on which what a miss needs is worked out (for "
                           "outcome any: the one with the smaller median p)", "text"),
    "decisive_median_p": _c("median p on the decisive outcome", "mc"),
    "alt_inference": _c("the analysis set beside the reported one in the same "
                        "simulated trials (welch beside ols, ols beside welch)",
                        "text"),
    "alt_median_p": _c(f"median over the same simulated trials of the {_P} under "
                       "alt_inference", "mc"),
    "alt_power": _c("power under alt_inference (reported findings: with the "
                    "reported sign)", "prop"),
    "alt_size": _c("size under alt_inference, in the same null counterpart",
                   "prop"),
    "alt_size_ok": _c("alt_size within its binomial band around alpha", "text"),
    "other_world": _c("the preset simulated beside the design", "text"),
    "other_median_p": _c("median p in the other world", "mc"),
    "other_power": _c("power in the other world", "prop"),
    "target_p": _c("p at the top of the reported range (the target of "
                   "'needed'; a point p: p x sqrt(3))", "mc"),
    "needed_factor": _c("factor by which the test's t must grow", "mc"),
    "needed_r_true": _c("true ROI-outcome correlation that alone would reach the "
                        "target", "mc"),
    "needed_change_sd_pct": _c("{treatment}-arm true MD-change SD that alone would "
                               "reach the target", "mc", "% of MD"),
    "needed_reliability": _c("dMD reliability ({treatment} arm) at that SD", "mc"),
    "needed_cv_pct": _c("test-retest CV that alone would reach the target", "mc",
                        "% of MD"),
    "leaves_range": _c("parameters that would leave their sourced range, and by "
                       "how much", "text"),
    "needed": _c("what the reported p needs, in words", "text"),
    # sample size
    "target_power": _c("power to reach", "exact"),
    "n_ci_low": _c("smallest n whose power interval's upper bound reaches the "
                   "target (Monte Carlo interval of n, low end)", "text",
                   "participants"),
    "n_ci_high": _c("smallest n whose power interval's lower bound reaches the "
                    "target (Monte Carlo interval of n, high end; empty: beyond "
                    "n_max)", "text", "participants"),
    "limiting_test": _c("the test with the lowest power at that n", "text"),
    "n_max": _c("largest n searched", "text", "participants"),
    "replicates": _c("simulated trials per n", "text", "trials"),
    "seed": _c("seed of the run (repeat it with this seed)", "text"),
}
"""Column name -> sidecar entry (``Description``, ``Units``, ``Levels``) and the
``kind`` of number it holds (:data:`FORMATS`)."""

TABLE_COLUMNS: dict[str, dict[str, dict]] = {
    "sample_size": {
        "n": _c("the chosen n: smallest total sample size at which every target "
                "test reaches the target power (empty: not within n_max)", "text",
                "participants"),
        "power": _c("the criterion at n: smallest power over the target tests",
                    "prop"),
        "power_ci_low": _c("smallest lower 95 % Wilson bound over the target "
                           "tests at n", "mc"),
        "power_ci_high": _c("smallest upper 95 % Wilson bound over the target "
                            "tests at n", "mc"),
        "tests": _c("the target tests (roi/outcome/term/sign)", "text"),
    },
    "sample_size_trace": {
        "n": _c("total sample size evaluated by the search", "text",
                "participants"),
        "power": _c("the criterion: smallest power over the target tests", "prop"),
        "power_ci_low": _c("smallest lower 95 % Wilson bound over the tests", "mc"),
        "power_ci_high": _c("smallest upper 95 % Wilson bound over the tests",
                            "mc"),
    },
    "power_grid": {
        "n": _c("total sample size at the grid point", "text", "participants"),
        "ratio": _c("allocation ratio {treatment}:{control} at the grid point (2 = "
                    "2:1)",
                    "exact"),
        "effect": _c("multiplier of every ROI-outcome correlation of true change "
                     "at the grid point (1 = the design)", "exact"),
        "reliability": _c("dMD reliability in the {treatment} arm at the grid point "
                          "(set through each ROI's test-retest CV)", "exact"),
        "cv": _c("test-retest coefficient of variation of MD at the grid point "
                 "(every ROI)", "exact"),
    },
    "tensor_fits": {
        "session": _c("session label of the DWI (ses-<label>; empty without "
                      "sessions)", "text"),
        "dwi": _c("the DWI, relative to the --bids folder", "text"),
        "mask": _c("brain mask of the fit", "text", levels={
            "given": "the *_desc-brain_mask.nii.gz beside the DWI",
            "median-otsu": "computed from the b0 volumes (median filter and "
                           "Otsu threshold), written beside the maps"}),
        "voxels_fitted": _c("voxels of the mask fitted", "text", "voxels"),
        "nonfinite_voxels": _c("voxels of the mask left out: NaN or infinite "
                               "signal", "text", "voxels"),
        "no_signal_voxels": _c("voxels of the mask left out: signal <= 0 in "
                               "every volume", "text", "voxels"),
        "floored_eigenvalue_voxels": _c("fitted voxels with an eigenvalue raised "
                                        "to the minimum diffusivity (a tensor "
                                        "that is not positive definite), as "
                                        "DIPY does", "text", "voxels"),
        "fa_clipped_voxels": _c("fitted voxels whose FA was clipped to 1 (a "
                                "negative eigenvalue kept with "
                                "--min-diffusivity none)", "text", "voxels"),
        "negative_md_voxels": _c("fitted voxels with negative MD (kept as "
                                 "fitted with --min-diffusivity none)", "text",
                                 "voxels"),
    },
    "power_mixed": {
        "measure": _c("the ROI's imaging measure modelled (md: MD per 1e-5 "
                      "mm^2/s; another measure per its scale); empty for a "
                      "rating scale", "text"),
        "outcome": _c("rating scale modelled (empty for an imaging row)", "text"),
        "term": _c("fixed-effect term of the mixed model: the time variable "
                   "(dose or hours: the reference arm's slope; a visit: its "
                   "difference from baseline), an arm (its difference from the "
                   "reference arm at time 0) or arm:time (its slope minus the "
                   "reference arm's; docs/model.md, Mixed models)", "text"),
        "true_value": _c("population projection of the term: the model fitted by "
                         "least squares to the expected value of each arm at each "
                         "visit (docs/model.md, Mixed models)", "mc"),
        "mean_estimate": _c("mean estimate over the replicates", "mc"),
        "bias": _c("mean estimate minus true_value", "mc"),
        "nonconverged": _c("share of replicates whose REML fit did not converge",
                           "prop"),
        "singular": _c("share of replicates whose REML fit is singular (a "
                       "variance at 0 or a correlation at +/-1; lme4's rule)",
                       "prop"),
        "slope_kept": _c("share of fits (each arm's, with per-arm variances) that "
                         "kept the random slope: the likelihood-ratio test's "
                         "choice with --random select, 1 with --random slope, 0 "
                         "for time as a visit factor", "prop"),
        "size": _c("rejection rate in the null counterpart (every change mean 0, "
                   "every SD kept), Satterthwaite df", "prop"),
        "size_z": _c("rejection rate in the null counterpart with z-tests (normal "
                     "reference instead of Satterthwaite df)", "prop"),
        "size_ok": _c("size within the 99 % binomial band around alpha", "text"),
        "parameter": _c("what the power curve varies: n, visits (the visits "
                        "scanned) or slope_sd (a factor on every random-slope "
                        "SD)", "text"),
        "value": _c("the curve point: total n, the visits scanned joined by +, "
                    "or the factor", "text"),
    },
    "power_imaging": {  # power --model imaging
        "roi": _c("region of interest (or MRS voxel) of the imaging row", "text"),
        "measure": _c("the ROI's imaging measure tested (md: MD per 1e-5 mm^2/s; "
                      "another measure per its scale)", "text"),
        "outcome": _c("empty: the imaging change tests have no rating scale",
                      "text"),
        "term": _c("tested term: a follow-up visit (the control arm's mean change "
                   "from baseline to it, one-sample t) or arm:visit (that arm's "
                   "mean change minus the control arm's, Welch t); the names of "
                   "the mixed model with time as a visit factor (docs/model.md, "
                   "Imaging change)", "text"),
        "analytic_power": _c("power from the design alone: the noncentral t with "
                             "the expected change, its variance (true change and "
                             "two scans' noise) and the expected Welch df "
                             "(docs/model.md, Imaging change)", "mc"),
        "true_value": _c("expected change (or difference of the arms' expected "
                         "changes) from baseline to the visit, in the row's unit",
                         "mc"),
        "mean_estimate": _c("mean estimate over the replicates", "mc"),
        "bias": _c("mean estimate minus true_value", "mc"),
        "size": _c("rejection rate in the null counterpart (every change mean 0, "
                   "every SD kept)", "prop"),
        "size_ok": _c("size within the 99 % binomial band around alpha", "text"),
        "mean_n": _c("participants per simulated trial in the test (both visits "
                     "observed), on average", "mc", "participants"),
    },
    "modalities": {  # power --model imaging
        "modality": _c("imaging modality (MD; MRS: the voxels' metabolites; "
                       "another measure by its name), all (every modality "
                       "detects in the same trial) or any (Holm over every "
                       "modality's tests)", "text"),
        "tests": _c("tests in the family: the arm comparisons at every "
                    "follow-up visit (one arm: the change at every follow-up "
                    "visit) of the modality's rows", "text"),
        "method": _c("multiple-testing rule within the family", "text"),
        "power": _c("share of simulated trials in which the family rejects "
                    "at least once", "prop"),
        "size": _c("the same share in the null counterpart (every change "
                   "mean 0, every SD kept)", "prop"),
        "size_ok": _c("size at most the 99 % binomial band's top (empty for "
                      "all, which is not a test at level alpha)", "text"),
    },
    "imaging": {  # analyze --model imaging
        "roi": _c("region of interest (or MRS voxel) of the imaging row", "text"),
        "measure": _c("the ROI's imaging measure tested (md: MD per 1e-5 mm^2/s; "
                      "another measure per its scale)", "text"),
        "term": _c("tested term: a follow-up visit (the control arm's mean change "
                   "from baseline to it) or arm:visit (that arm's mean change "
                   "minus the control arm's); docs/model.md, Imaging change",
                   "text"),
        "estimate": _c("mean change from baseline (or difference of two arms' "
                       "mean changes), in the row's unit (MD per 1e-5 mm^2/s, "
                       "another measure per its scale)", "stat"),
        "se": _c("standard error of the estimate: s / sqrt(n), or the Welch SE "
                 "sqrt(s_a^2 / n_a + s_c^2 / n_c)", "stat"),
        "df": _c("degrees of freedom: n - 1 (one-sample t) or Welch-"
                 "Satterthwaite's", "stat"),
        "ci_low": _c("lower bound of the 95 % confidence interval (t with df)",
                     "stat"),
        "ci_high": _c("upper bound of the 95 % confidence interval (t with df)",
                      "stat"),
        "n": _c("participants in the test: with both the baseline and the visit "
                "observed (and not excluded by a fit-quality rule)", "text",
                "participants"),
        "n_arm": _c("participants of the term's arm in the test (for a visit "
                    "term, the control arm's)", "text", "participants"),
        "n_control": _c("participants of the control arm in the test", "text",
                        "participants"),
    },
    "mixed": {  # analyze --model mixed
        "roi": _c("region of interest of an imaging model (empty for a rating "
                  "scale)", "text"),
        "measure": _c("the ROI's imaging measure modelled (md: MD per 1e-5 "
                      "mm^2/s; another measure per its scale); empty for a "
                      "rating scale", "text"),
        "outcome": _c("rating scale modelled, in its points (empty for an imaging "
                      "row)", "text"),
        "term": _c("fixed-effect term of the mixed model: the time variable "
                   "(dose or hours: the control arm's slope; a visit: the "
                   "control arm's change from baseline to it), an arm (its "
                   "difference from the control arm at time 0, or at baseline) "
                   "or arm:time (its slope or change minus the control arm's; "
                   "docs/model.md, Mixed models)", "text"),
        "estimate": _c("REML estimate of the term, in the model's unit (MD per "
                       "1e-5 mm^2/s, another measure per its scale, a score in "
                       "points) per unit of time (dose, hours) or at the visit",
                       "stat"),
        "se": _c("standard error of the estimate, from the covariance sigma^2 "
                 "(X'V^-1 X)^-1 as lme4's (Kenward-Roger's adjusted one with "
                 "--df kenward-roger); with per-arm variances a difference of "
                 "arms has the sum of the arms' variances", "stat"),
        "ci_low": _c("lower bound of the 95 % confidence interval (t with df)",
                     "stat"),
        "ci_high": _c("upper bound of the 95 % confidence interval (t with df)",
                      "stat"),
        "df": _c("denominator degrees of freedom: Satterthwaite (as lmerTest) or "
                 "Kenward-Roger (as pbkrtest); with per-arm variances a "
                 "difference of arms combines the arms' df by Welch's formula",
                 "stat"),
        "converged": _c("whether the model's REML fit converged (the same for "
                        "every term of a model)", "text", levels={
                            "True": "converged", "False": "did not converge"}),
        "singular": _c("whether the fit is singular: a variance at its boundary "
                       "(lme4's rule: a relative Cholesky diagonal element below "
                       "1e-4)", "text", levels={"True": "singular",
                                                "False": "not singular"}),
        "n_obs": _c("observations in the model (participant visits)", "text",
                    "observations"),
        "n_participants": _c("participants in the model", "text", "participants"),
        "random": _c("the random effects of the fit, in lme4's notation, per arm "
                     "with per-arm variances (--variance arm): (1 + time | "
                     "participant) where the random slope was kept, (1 | "
                     "participant) where the likelihood-ratio test dropped it "
                     "(--random select) or time is a visit factor", "text"),
    },
    "plans": {  # dtitool plans
        "plan": _c("analysis plan (docs/model.md, Analysis plans side by side)",
                   "text"),
        "roi": _c("the ROI tested, the composite (composite-mean, composite-pc1), "
                  "or 'any' for the plan's family row per outcome", "text"),
        "term": _c("interaction: the arm's slope minus the control arm's (what "
                   "the slope is of: estimand); 'any' on a family row", "text"),
        "power": _c("share of simulated trials in which the test rejects (a "
                    "family row: any of the plan's tests of the outcome, after "
                    "its multiplicity rule)", "prop"),
        "size": _c("the same rejection rate in the design's null counterpart "
                   "(every MD-outcome correlation 0): the test's actual level, or "
                   "a family row's family-wise error", "prop"),
        "size_ok": _c("size within the exact 99 % binomial band around alpha",
                      "text"),
        "true_value": _c("the plan's estimand: its estimate in 2,000 simulated "
                         "trials pooled into one", "mc"),
        "true_value_mcse": _c("Monte Carlo standard error of true_value", "mc"),
        "mean_estimate": _c("mean estimate over the trials with a finite one",
                            "mc"),
        "bias": _c("mean_estimate minus true_value", "mc"),
        "rmse": _c("root mean squared error of the estimate around true_value",
                   "mc"),
        "coverage": _c("share of 95 % confidence intervals containing true_value",
                       "prop"),
        "failed": _c("share of trials whose fit had no finite estimate (a "
                     "logistic fit without a finite maximum: an arm without "
                     "responders)", "prop"),
        "rank": _c("rank of the family row's power per outcome among the plans "
                   "whose size is not above its band (empty: not ranked)", "text"),
        "flag": _c("a size outside its band: above (its power is not comparable "
                   "and it is not ranked) or below (conservative)", "text"),
        "multiplicity": _c("the plan's multiplicity rule over its tests of one "
                           "outcome (family rows): none, holm, bh or maxt "
                           "(single-step max-T)", "text"),
        "critical_p": _c("max-T family rows: a test rejects when its p is below "
                         "this, the alpha quantile of the family's smallest p "
                         "over the null counterpart's trials and their "
                         "within-arm permutations; empty otherwise", "mc"),
        "estimand": _c("what the plan's estimate is, in words", "text"),
        "replicates": _c("simulated trials (and as many of the null counterpart)",
                         "text", "trials"),
    },
    "plan_fits": {  # analyze --plan
        "plan": _c("analysis plan (docs/model.md, Analysis plans side by side)",
                   "text"),
        "roi": _c("the ROI tested, or the composite (composite-mean, "
                  "composite-pc1)", "text"),
        "term": _c("interaction: the arm's slope minus the control arm's (what "
                   "the slope is of: estimand)", "text"),
        "estimate": _c("the interaction's estimate (per-arm OLS fits with "
                       "inference welch, one pooled OLS with ols, Logit for the "
                       "responder plan: a log odds ratio)", "stat"),
        "se": _c("its standard error", "stat"),
        "df": _c("degrees of freedom of the test: Welch-Satterthwaite (welch), "
                 "residual (ols), infinite for a Wald z test (responder)", "stat"),
        "n": _c("participants with every ROI's scan and the ratings at the "
                "primary visit (the plans' common sample)", "text",
                "participants"),
        "estimand": _c("what the plan's estimate is, in words", "text"),
    },
    "plans_paired": {  # dtitool plans
        "plan_a": _c("first plan of the pair", "text"),
        "plan_b": _c("second plan of the pair", "text"),
        "power_a": _c("plan_a's family power (any of its tests rejects)", "prop"),
        "power_b": _c("plan_b's family power", "prop"),
        "power_difference": _c("power_a minus power_b, on the same simulated "
                               "trials", "mc"),
        "power_difference_ci_low": _c("lower bound of its 95 % interval from "
                                      "the paired differences of the rejection "
                                      "indicators", "mc"),
        "power_difference_ci_high": _c("upper bound of that interval", "mc"),
        "size_a": _c("plan_a's family-wise error in the null counterpart",
                     "prop"),
        "size_b": _c("plan_b's family-wise error", "prop"),
        "size_difference": _c("size_a minus size_b on the same null trials",
                              "mc"),
        "size_difference_ci_low": _c("lower bound of its 95 % paired interval",
                                     "mc"),
        "size_difference_ci_high": _c("upper bound of that interval", "mc"),
        "replicates": _c("simulated trials", "text", "trials"),
    },
    "discriminate": {
        "measure": _c("the ROI's imaging measure (md: MD per 1e-5 mm^2/s; another "
                      "measure per its scale)", "text"),
        "arm": _c("the treated arm compared with the control arm", "text"),
        "contrast": _c("the two visits contrasted (later-earlier)", "text"),
        "from_visit": _c("earlier visit of the contrast", "text"),
        "to_visit": _c("later visit of the contrast", "text"),
        "n": _c("total sample size simulated", "text", "participants"),
        "true_a": _c("true contrast under the first scenario: the arm's mean "
                     "change between the visits minus the control arm's, on the "
                     "measure's model scale", "mc"),
        "true_b": _c("true contrast under the second scenario", "mc"),
        "power_a_rejects_b": _c("share of trials simulated under the first "
                                "scenario whose Welch test rejects the second "
                                "scenario's value", "prop"),
        "power_b_rejects_a": _c("share of trials simulated under the second "
                                "scenario whose Welch test rejects the first "
                                "scenario's value", "prop"),
        "power": _c("power to tell the scenarios apart: the smaller of the two "
                    "rejection rates", "prop"),
        "power_ci_low": _c("lower 95 % Wilson bound of power", "mc"),
        "power_ci_high": _c("upper 95 % Wilson bound of power", "mc"),
        "size_a": _c("share of first-scenario trials rejecting the first "
                     "scenario's own value (the test's actual level)", "prop"),
        "size_b": _c("share of second-scenario trials rejecting their own value",
                     "prop"),
    },
    "discriminate_best": {
        "measure": _c("the ROI's imaging measure", "text"),
        "arm": _c("the treated arm compared with the control arm", "text"),
        "contrast": _c("the contrast reaching the target power at the smallest n "
                       "(or the most powerful one when none does)", "text"),
        "n": _c("the smallest total n at which the contrast reaches the target "
                "power (or where the best power was seen)", "text",
                "participants"),
        "power": _c("power to tell the scenarios apart there", "prop"),
        "reached": _c("whether the target power was reached within the n tried",
                      "text"),
    },
    "familywise": {
        "size": _c("family-wise error in the null counterpart (at least one "
                   "finding found; max-T: out-of-sample)", "prop"),
        "size_ok": _c("family-wise error at most its upper binomial band around "
                      "alpha (adjusted methods only; empty for none)", "text"),
    },
}
"""Table name -> columns whose meaning differs in that table."""


_SCORE = re.compile(r"(\w+)_([A-Za-z0-9]+)")
_PATTERNS = (
    # columns named after an arm; group 1 is the arm
    (re.compile(r"p_slope_(\w+)"), lambda arm: _c(
        f"{_P} of the {arm}-arm slope", "stat")),
    (re.compile(r"slope_(\w+)"), lambda arm: _c(
        f"{arm}-arm dMD slope of the same model, for context", "stat", _UNIT_EST)),
    (re.compile(r"needed_(\w+)_change_sd_pct"), lambda arm: _c(
        f"{arm}-arm true MD-change SD that alone would reach the target", "mc",
        "% of MD")),
    (re.compile(r"delta_(\w+)"), lambda arm: _c(
        f"tipping point: shift of the {arm} arm's imputed follow-up scores of the "
        "outcome, in SDs of that arm's observed score change (positive: worse "
        "than missing at random predicts; 0: as imputed)", "exact", "SD")),
    (re.compile(r"change_sd_(\w+)"), lambda arm: _c(
        f"observed SD of the {arm} arm's score change in the outcome: the "
        "score points one delta unit shifts", "stat", "score points")),
)


def _words(names) -> dict[str, str]:
    if names is None:
        return dict(_GENERIC)
    return {"treatment": names.treatment, "control": names.control,
            "baseline": names.baseline, "primary": names.primary}


def _fill(spec: dict, words: Mapping[str, str]) -> dict:
    """``spec`` with the design's names in place of ``{treatment}`` etc."""
    def sub(text):
        for k, v in words.items():
            text = text.replace("{" + k + "}", v)
        return text

    out = {k: sub(v) if isinstance(v, str) else v for k, v in spec.items()}
    if "Levels" in out:
        out["Levels"] = {k: sub(v) for k, v in out["Levels"].items()}
    return out


def _as_names(design):
    """``(design or None, TrialNames or None)`` from a design, names or None."""
    from dtitool.design import StudyDesign, TrialNames

    if design is None:
        return None, None
    if isinstance(design, StudyDesign):
        return design, design.names
    if isinstance(design, TrialNames):
        return None, design
    raise TypeError("design must be a StudyDesign, a TrialNames or None; got "
                    f"{type(design).__name__}")


def _scale_label(o) -> str:
    """``"MADRS (clinician-rated, 0-60)"`` for an outcome of a known scale."""
    from dtitool.design.ratings import RATING_SCALES

    rng = f"{o.scale_min}-{o.scale_max}"
    known = RATING_SCALES.get(o.scale)
    if known is None:
        return f"{o.name} (a scale of the design's own, {rng})"
    return f"{known.name} ({_RATERS.get(known.rater, known.rater)}, {rng})"


def _visit_text(v, baseline: str) -> str:
    if v.name == baseline:
        text = "the baseline visit"
    else:
        text = f"{v.hours:g} hours after the baseline visit"
    if v.dose is not None:
        text += f", treatment received by then: {v.dose:g}"
    if v.primary:
        text += ", the primary endpoint"
    return text


def trial_columns(design) -> dict[str, dict]:
    """Data-dictionary entries a trial's own names give.

    Parameters
    ----------
    design : StudyDesign or TrialNames
        The trial. A design gives every entry; names alone give the arm, visit
        and term levels (no scale names, ranges or ROIs).

    Returns
    -------
    dict
        Column name -> entry: ``group`` (the arms), ``session`` and ``visit``
        (the visits), ``term`` (``names.terms``), ``roi`` and ``outcome`` (a
        design's ROIs and outcomes), one ``<outcome>_<visit>`` score column per
        outcome and visit with the scale's name and range, ``d_<outcome>``,
        ``md_<visit>``.

    Examples
    --------
    >>> from dtitool.design import load_preset
    >>> cols = trial_columns(load_preset("ketamine-rct"))
    >>> cols["madrs_24h"]["Description"]
    'MADRS total score at visit 24h, 24 hours after the baseline visit, the primary endpoint (0-60; empty if missing)'
    >>> cols["group"]["Levels"]["saline"]
    'control arm (the reference of the group x dMD interaction)'
    """  # noqa: E501
    design, names = _as_names(design)
    if names is None:
        raise TypeError("design must be a StudyDesign or a TrialNames; got None")
    w = _words(names)
    out = {}
    levels = dict.fromkeys(names.arms, "treatment arm")
    levels[names.control] = "control arm (the reference of the group x dMD " \
        "interaction)"
    out["group"] = {**COLUMNS["group"], "Levels": levels}
    if design is not None:
        visits = {v.name: _visit_text(v, names.baseline) for v in design.visits}
    else:
        visits = {v: ("the baseline visit" if v == names.baseline else
                      "a follow-up visit" + (" (the primary endpoint)"
                                             if v == names.primary else ""))
                  for v in names.visits}
    out["session"] = {**COLUMNS["session"], "Levels": visits}
    out["visit"] = {**COLUMNS["visit"], "Levels": visits}
    terms = {t: f"group x dMD interaction: {a} slope minus {w['control']} slope"
             for t, a in zip(names.interactions, names.arms, strict=False)}
    terms.update({f"slope_{a}": f"dMD slope in the {a} arm" for a in names.arms})
    terms["slope_pooled"] = ("dMD slope common to all arms (model without the "
                             "interaction)")
    if "omnibus" in names.terms:
        terms["omnibus"] = (f"F test that every arm has the {w['control']} arm's "
                            f"dMD slope ({len(names.arms) - 1} numerator df; its "
                            "estimate is the F statistic)")
    out["term"] = {**COLUMNS["term"], "Levels": terms}
    out[f"md_{names.baseline}"] = _c(f"ROI MD at the baseline visit "
                                     f"({names.baseline})", "md", "mm^2/s")
    out[f"md_{names.primary}"] = _c(f"ROI MD at the primary visit "
                                    f"({names.primary})", "md", "mm^2/s")
    if design is None:
        return out
    from dtitool.design.measures import KNOWN_MEASURES

    for m in design.measures:
        what = KNOWN_MEASURES.get(m.name, (None, None, m.name))[2]
        if m.voxel:  # a metabolite, on a quantification scale
            unit = m.unit
            out[m.name] = _c(f"{what} in the MRS voxel, in {unit} (a missing or "
                             "unusable spectrum is a missing row)", "md", unit)
            out[f"{m.name}_true"] = _c(f"latent true {what} in the voxel (no "
                                       "measurement noise; simulated data only)",
                                       "md", unit)
            continue
        unit = m.unit or "1 (a ratio)"
        out[m.name] = _c(f"{what} of the ROI, in {m.unit or 'ratio units'} (a "
                         "missing scan is a missing row)", "md", unit)
        out[f"{m.name}_true"] = _c(f"latent true {what} of the ROI (no "
                                   "measurement noise; simulated data only)",
                                   "md", unit)
    rois = design.roi_names
    out["roi"] = {**COLUMNS["roi"], "Levels": {
        **{r: f"region of interest {i} of the design's {len(rois)}"
           for i, r in enumerate(rois, 1)},
        **dict.fromkeys(design.voxel_names, "MRS voxel")}}
    out["outcome"] = {**COLUMNS["outcome"], "Levels": {
        **{o.name: _scale_label(o) for o in design.outcomes}, "any": _ANY}}
    for o in design.outcomes:
        label = o.scale or f"{o.name} ({o.scale_min}-{o.scale_max})"
        for v in design.visits:
            when = _visit_text(v, names.baseline)
            tail = "" if v.name == names.baseline else "; empty if missing"
            at = (f"at the baseline visit ({v.name})" if v.name == names.baseline
                  else f"at visit {v.name}, {when}")
            out[names.score_column(o.name, v.name)] = _c(
                f"{label} total score {at} "
                f"({o.scale_min}-{o.scale_max}{tail})", "text", "score points")
        out[f"d_{o.name}"] = _c(f"{label} change from the baseline visit to the "
                                f"primary visit ({names.primary} minus "
                                f"{names.baseline}; negative: improvement)",
                                "stat", "score points")
    return out


def _levels_of(df, column: str, describe) -> dict[str, str]:
    import pandas as pd

    values = pd.unique(df[column].dropna().astype(str))
    return {v: describe(v) for v in values}


def _value_levels(df, column: str) -> dict[str, str] | None:
    """Levels of a label column taken from its values (no design given)."""
    if column not in {"group", "session", "visit", "roi", "outcome", "term"}:
        return None
    generic = {
        "group": lambda v: f"arm {v}",
        "session": lambda v: f"visit {v}",
        "visit": lambda v: f"visit {v}",
        "roi": lambda v: f"region of interest {v}",
        "outcome": lambda v: _ANY if v == "any" else f"outcome {v}",
        "term": lambda v: (
            "dMD slope common to all arms (model without the interaction)"
            if v == "slope_pooled" else
            f"dMD slope in the {v[len('slope_'):]} arm" if v.startswith("slope_")
            else "group x dMD interaction: treatment slope minus control slope"
            if v == "interaction" else
            f"group x dMD interaction: {v[len('interaction_'):]} slope minus "
            "control slope" if v.startswith("interaction_") else
            "F test that every arm has the control arm's dMD slope (estimate: "
            "the F statistic)" if v == "omnibus" else f"model term {v}"),
    }[column]
    return _levels_of(df, column, generic)


def _entry(column: str, table: str | None, trial: Mapping[str, dict] | None = None,
           words: Mapping[str, str] | None = None) -> dict:
    spec = (TABLE_COLUMNS.get(table or "", {}).get(column)
            or (trial or {}).get(column) or COLUMNS.get(column))
    if spec is None and table == "participants":
        # <outcome>_<visit>: visit names are letters and digits only, so the
        # last underscore splits the two
        m = _SCORE.fullmatch(column)
        if m:
            spec = _c(f"score of outcome {m.group(1)} at visit {m.group(2)} (empty "
                      "if missing)", "text", "score points")
    if spec is None:
        for pattern, make in _PATTERNS:
            m = pattern.fullmatch(column)
            if m:
                spec = make(m.group(1))
                break
    if spec is None:
        raise ValueError(
            f"column {column!r} of table {table!r} has no entry in dtitool's data "
            "dictionary (dtitool/columns.py); every written column needs one")
    return _fill(spec, words or _GENERIC)


def column_format(column: str, table: str | None = None, *,
                  design=None) -> str | None:
    """Return the printf format of a column (None: write it as it is).

    ``design`` (a StudyDesign or TrialNames, optional) documents the columns
    named after the trial's outcomes and visits.
    """
    trial = trial_columns(design) if design is not None else None
    return FORMATS[_entry(column, table, trial)["kind"]]


def sidecar(df, table: str | None = None, *, design=None) -> dict:
    """Return the BIDS-style JSON sidecar of a table: one entry per column.

    Parameters
    ----------
    df : DataFrame
        The table.
    table : str, optional
        Its name, for columns whose meaning differs between tables.
    design : StudyDesign or TrialNames, optional
        The trial: its arms, visits, ROIs and outcomes give the ``Levels`` of
        ``group``, ``session``, ``roi``, ``outcome`` and ``term`` and the
        entries of ``<outcome>_<visit>`` score columns (:func:`trial_columns`).
        Without it, those levels are the values in ``df``.

    Raises
    ------
    ValueError
        If a column has no dictionary entry (the message names it).
    """
    design, names = _as_names(design)
    trial = trial_columns(design or names) if names is not None else {}
    words = _words(names)
    out = {}
    for col in df.columns:
        col = str(col)
        spec = _entry(col, table, trial, words)
        if "Levels" not in spec and col not in trial:
            levels = _value_levels(df, col)
            if levels:
                spec = {**spec, "Levels": levels}
        out[col] = {k: v for k, v in spec.items() if k != "kind"}
    return out


def sidecar_text(df, table: str | None = None, *, design=None) -> str:
    """Return the sidecar of :func:`sidecar` as the JSON text dtitool writes."""
    return json.dumps(sidecar(df, table, design=design), indent=2,
                      ensure_ascii=False) + "\n"
