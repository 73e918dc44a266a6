# Reference values of lme4, lmerTest and pbkrtest for tests/test_lmm.py.
#
# Usage: Rscript reference.R FOLDER OUT.json NAME...
# Reads FOLDER/NAME.tsv (participant, visit, y, x0.., z0..) and FOLDER/NAME.L.tsv
# (contrast rows), fits y ~ 0 + x0 + ... + (0 + z0 + ... | participant) by REML
# and writes, per dataset: theta, beta, vcov, sigma, the REML criterion,
# isSingular, lmerTest's contest1D for each contrast row under Satterthwaite and
# Kenward-Roger, and pbkrtest's vcovAdj. Written by make_reference.py (see there).
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
res <- list()
for (nm in names) {
  d <- read.delim(file.path(folder, paste0(nm, ".tsv")))
  d$participant <- factor(d$participant)
  L <- as.matrix(read.delim(file.path(folder, paste0(nm, ".L.tsv")), header = FALSE))
  xs <- grep("^x", names(d), value = TRUE)
  zs <- grep("^z", names(d), value = TRUE)
  f <- as.formula(paste("y ~ 0 +", paste(xs, collapse = " + "), "+ (0 +",
                        paste(zs, collapse = " + "), "| participant)"))
  m <- suppressWarnings(lmer(f, data = d, REML = TRUE, control = ctrl))
  satt <- list()
  kr <- list()
  for (i in seq_len(nrow(L))) {
    s <- suppressWarnings(contest1D(m, L[i, ], ddf = "Satterthwaite"))
    k <- suppressWarnings(contest1D(m, L[i, ], ddf = "Kenward-Roger"))
    satt[[i]] <- list(estimate = s$Estimate, se = s[["Std. Error"]], df = s$df,
                      t = s[["t value"]], p = s[["Pr(>|t|)"]])
    kr[[i]] <- list(estimate = k$Estimate, se = k[["Std. Error"]], df = k$df,
                    t = k[["t value"]], p = k[["Pr(>|t|)"]])
  }
  res[[nm]] <- list(
    theta = unname(getME(m, "theta")),
    beta = unname(fixef(m)),
    vcov = unname(as.matrix(vcov(m))),
    sigma = sigma(m),
    reml_criterion = unname(REMLcrit(m)),
    singular = isSingular(m),
    n_obs = nrow(d),
    L = unname(L),
    satterthwaite = satt,
    kenward_roger = kr,
    vcov_adj = unname(as.matrix(vcovAdj(m)))
  )
}
meta <- list(R = R.version.string,
             lme4 = as.character(packageVersion("lme4")),
             lmerTest = as.character(packageVersion("lmerTest")),
             pbkrtest = as.character(packageVersion("pbkrtest")))
write_json(list(versions = meta, datasets = res), out, digits = NA,
           auto_unbox = TRUE, pretty = TRUE)
