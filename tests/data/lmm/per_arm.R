# Reference values of lme4 and lmerTest for the mixed models fitted per arm
# (dtitool analyze --variance arm), read by tests/test_mixed_analyze.py.
#
# Usage, from the repository root (needs R with lme4, lmerTest, pbkrtest and
# jsonlite; Debian: apt-get install r-cran-lmertest r-cran-pbkrtest
# r-cran-jsonlite):
#
#   Rscript tests/data/lmm/per_arm.R tests/data/lmm/datasets \
#       tests/data/lmm/per_arm.json q2_balanced q2_unbalanced q2_hours q2_boundary
#
# Reads the datasets of make_reference.py (participant, visit, y, x0..x5: x1 the
# arm, x2 time, x4 and x5 covariates) and fits, in each arm on its own (x1 == 0,
# then 1), by REML
#   y ~ time + a + s + (1 + time | participant)  and  y ~ time + a + s + (1 | participant)
# where a and s are x4 and x5 centred at their mean over all participants (each
# counted once) and time is x2 divided by its root mean square (so that bobyqa
# meets a well-scaled slope variance when time is in hours; the slope's
# estimate and SE are scaled back to x2). For each fit it writes lmerTest's
# contest1D of the intercept and of the slope under Satterthwaite and
# Kenward-Roger (estimate, SE, df), isSingular and the REML log-likelihood (of
# the scaled time), and per arm anova()'s likelihood-ratio p of the two fits
# (refit = FALSE: REML, 2 df).
suppressMessages({
  library(lmerTest)
  library(pbkrtest)
  library(jsonlite)
})
args <- commandArgs(trailingOnly = TRUE)
folder <- args[1]
out <- args[2]
names <- args[-(1:2)]
ctrl <- lmerControl(optimizer = "bobyqa",
                    optCtrl = list(rhoend = 1e-12, maxfun = 1e6),
                    check.conv.singular = "ignore", calc.derivs = FALSE)
tests <- function(m, sc) {
  one <- function(L, ddf, f) {
    r <- suppressWarnings(contest1D(m, L, ddf = ddf))
    list(estimate = r$Estimate / f, se = r[["Std. Error"]] / f, df = r$df)
  }
  list(satterthwaite = list(one(c(1, 0, 0, 0), "Satterthwaite", 1),
                            one(c(0, 1, 0, 0), "Satterthwaite", sc)),
       kenward_roger = list(one(c(1, 0, 0, 0), "Kenward-Roger", 1),
                            one(c(0, 1, 0, 0), "Kenward-Roger", sc)),
       reml_loglik_scaled_time = as.numeric(logLik(m, REML = TRUE)),
       singular = isSingular(m))
}
res <- list()
for (nm in names) {
  d <- read.delim(file.path(folder, paste0(nm, ".tsv")))
  first <- !duplicated(d$participant)
  d$a <- d$x4 - mean(d$x4[first])
  d$s <- d$x5 - mean(d$x5[first])
  sc <- sqrt(mean(d$x2^2))
  d$time <- d$x2 / sc
  d$participant <- factor(d$participant)
  arms <- list()
  for (arm in c(0, 1)) {
    da <- d[d$x1 == arm, ]
    m1 <- suppressWarnings(lmer(y ~ time + a + s + (1 + time | participant),
                                data = da, REML = TRUE, control = ctrl))
    m0 <- suppressWarnings(lmer(y ~ time + a + s + (1 | participant),
                                data = da, REML = TRUE, control = ctrl))
    lrt <- suppressMessages(anova(m1, m0, refit = FALSE))
    arms[[as.character(arm)]] <- list(slope = tests(m1, sc), intercept = tests(m0, sc),
                                      lrt_p = lrt[["Pr(>Chisq)"]][2])
  }
  res[[nm]] <- arms
}
meta <- list(R = R.version.string,
             lme4 = as.character(packageVersion("lme4")),
             lmerTest = as.character(packageVersion("lmerTest")),
             pbkrtest = as.character(packageVersion("pbkrtest")))
write_json(list(versions = meta, datasets = res), out, digits = NA,
           auto_unbox = TRUE, pretty = TRUE)
