# Reference figures for crew-judge from R (r-base-core): wilcox.test's W, p-values, Hodges-Lehmann estimate and
# 98% interval, and prop.test(correct = FALSE). Reads inputs.txt (written by make.py), writes r.json.
#
#     /usr/bin/python3 make.py && Rscript make.R
#
# Base R only: the JSON is written by hand, every number with 17 significant digits (null for NA, NaN, +-Inf).

num <- function(v) {
  if (is.null(v) || length(v) == 0 || !is.finite(v)) "null" else sprintf("%.17g", v)
}
nums <- function(v) paste0("[", paste(vapply(v, num, ""), collapse = ","), "]")
str <- function(s) paste0("\"", s, "\"")
obj <- function(...) {
  kv <- list(...)
  paste0("{", paste(sprintf("\"%s\":%s", names(kv), unlist(kv)), collapse = ","), "}")
}
# A test's figures, or NULL where R refuses (e.g. an interval when every difference is the same).
quiet <- function(expr) tryCatch(suppressWarnings(expr), error = function(e) NULL)

lines <- readLines("inputs.txt")
mw <- character(0)
props <- character(0)
for (line in lines) {
  f <- strsplit(line, "\t", fixed = TRUE)[[1]]
  if (f[1] == "mw") {
    x <- as.numeric(strsplit(f[3], ",", fixed = TRUE)[[1]])
    y <- as.numeric(strsplit(f[4], ",", fixed = TRUE)[[1]])
    alts <- c("two.sided", "less", "greater")
    # The default method (exact when both under 50 values and no ties), and the normal approximation.
    auto <- lapply(alts, function(a) quiet(wilcox.test(x, y, alternative = a, correct = TRUE)))
    asym <- lapply(alts, function(a) quiet(wilcox.test(x, y, alternative = a, exact = FALSE, correct = TRUE)))
    ci <- quiet(wilcox.test(x, y, conf.int = TRUE, conf.level = 0.98))
    ci_asym <- quiet(wilcox.test(x, y, conf.int = TRUE, conf.level = 0.98, exact = FALSE))
    pv <- function(r) if (is.null(r)) NULL else r$p.value
    interval <- function(r) {
      if (is.null(r)) "null" else obj(estimate = num(unname(r$estimate)), lower = num(r$conf.int[1]),
                                      upper = num(r$conf.int[2]), method = str(r$method),
                                      conf_level = num(attr(r$conf.int, "conf.level")))
    }
    mw <- c(mw, obj(
      name = str(f[2]), x = nums(x), y = nums(y),
      w = num(if (is.null(auto[[1]])) NULL else unname(auto[[1]]$statistic)),
      method = if (is.null(auto[[1]])) "null" else str(auto[[1]]$method),
      p_auto = obj(two_sided = num(pv(auto[[1]])), less = num(pv(auto[[2]])), greater = num(pv(auto[[3]]))),
      p_asymptotic = obj(two_sided = num(pv(asym[[1]])), less = num(pv(asym[[2]])), greater = num(pv(asym[[3]]))),
      conf_int = interval(ci),
      conf_int_asymptotic = interval(ci_asym)
    ))
  } else if (f[1] == "prop") {
    k <- as.numeric(f[3:6])
    alts <- c("two.sided", "less", "greater")
    r <- lapply(alts, function(a) quiet(prop.test(c(k[1], k[3]), c(k[2], k[4]), alternative = a,
                                                  conf.level = 0.98, correct = FALSE)))
    fig <- function(t) {
      if (is.null(t)) "null" else obj(statistic = num(unname(t$statistic)), p_value = num(t$p.value),
                                      lower = num(t$conf.int[1]), upper = num(t$conf.int[2]),
                                      estimate1 = num(unname(t$estimate[1])), estimate2 = num(unname(t$estimate[2])))
    }
    props <- c(props, obj(name = str(f[2]), x1 = num(k[1]), n1 = num(k[2]), x2 = num(k[3]), n2 = num(k[4]),
                          two_sided = fig(r[[1]]), less = fig(r[[2]]), greater = fig(r[[3]])))
  }
}
out <- paste0("{\n\"r\":", str(R.version.string), ",\n\"mann_whitney\":[\n", paste(mw, collapse = ",\n"),
              "\n],\n\"proportions\":[\n", paste(props, collapse = ",\n"), "\n]\n}\n")
writeLines(out, "r.json", sep = "")
cat(sprintf("%s: %d rank-sum cases, %d proportion cases\n", R.version.string, length(mw), length(props)))
