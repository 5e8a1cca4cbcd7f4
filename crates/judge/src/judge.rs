//! The judge: each metric classified as pass, high, low or no data, then a weighted score and a verdict, in the
//! manner of Kayenta's NetflixACAJudge (learnt from, not copied).
//!
//! A metric of values (latency, a gauge) is judged by the Mann-Whitney U test of the canary against the
//! baseline after cleaning (`clean`); a ratio metric (errors over requests) by the two-proportion test of their
//! pooled counts. The canary is **high** when the two-sided test at `confidence` (0.98) says it differs
//! (p < 1 − confidence), it lies above the baseline, an increase is bad for the metric (`direction`), and the
//! change is beyond the tolerance: for values, the effect (the canary's mean, or median, over the baseline's)
//! is at least `allowed_increase`, as in Kayenta (an effect that cannot be computed, a baseline of 0, does not
//! stop it); for a ratio, the whole 98% interval of the rate difference lies above the allowed rise,
//! (`allowed_increase` − 1) × the baseline's rate, so that the tolerance also holds at the confidence level.
//! **Low** the same way down. A side with fewer than `min_points` values (none at all by default) is **no
//! data**.
//!
//! Kayenta's other bound (the interval must clear 25% of the Hodges-Lehmann estimate) is left out: it lets a
//! 70-fold regression pass (spinnaker#6278); the effect tolerance plays its part, explicitly.
//!
//! The verdict: a critical metric that is high or low fails it outright; a critical metric without data, or no
//! data for at least `nodata_share` of the weight, holds it (`NoData`: never a failure); otherwise the score is
//! 100 × the weight of passing metrics over the weight of metrics with data, rounded to 2 decimals, and
//! `score ≥ pass` passes, `score ≥ marginal` is marginal, below fails.

use crate::clean::{clean, NanStrategy};
use crate::{hodges_lehmann, mann_whitney_u, median_sorted, sorted, two_proportions, Alternative, Method, StatError};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The direction in which a change is bad.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Higher is worse (latency, errors).
    Increase,
    /// Lower is worse (throughput, conversions).
    Decrease,
    /// Any change is bad.
    #[default]
    Either,
}

impl Direction {
    fn increase_is_bad(self) -> bool {
        matches!(self, Direction::Increase | Direction::Either)
    }
    fn decrease_is_bad(self) -> bool {
        matches!(self, Direction::Decrease | Direction::Either)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Increase => "increase",
            Direction::Decrease => "decrease",
            Direction::Either => "either",
        }
    }
}

impl fmt::Display for Direction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Direction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "increase" => Ok(Direction::Increase),
            "decrease" => Ok(Direction::Decrease),
            "either" => Ok(Direction::Either),
            _ => Err(format!("unknown direction `{s}`: expected increase, decrease or either")),
        }
    }
}

/// The effect size of a metric of values: a ratio, canary over baseline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EffectMeasure {
    /// The canary's mean over the baseline's (Kayenta's `meanRatio`).
    #[default]
    MeanRatio,
    /// The canary's median over the baseline's: robust to a few wild values.
    MedianRatio,
}

/// How one metric is judged.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricRule {
    /// The bad direction.
    pub direction: Direction,
    /// A critical metric that is high or low fails the verdict whatever the score.
    pub critical: bool,
    /// Its weight in the score (> 0).
    pub weight: f64,
    pub nan: NanStrategy,
    /// Remove outliers by Kayenta's IQR rule with this factor (Kayenta uses 3); `None` keeps them (Kayenta's
    /// default).
    pub outlier_factor: Option<f64>,
    pub effect: EffectMeasure,
    /// A higher canary is high only when the effect is at least this (1.1: a 10% increase is tolerated).
    pub allowed_increase: f64,
    /// A lower canary is low only when the effect is at most this.
    pub allowed_decrease: f64,
    /// Fewer values than this on either side (after cleaning) is no data. For a ratio metric: fewer trials.
    pub min_points: usize,
}

impl Default for MetricRule {
    fn default() -> Self {
        MetricRule {
            direction: Direction::Either,
            critical: false,
            weight: 1.0,
            nan: NanStrategy::Remove,
            outlier_factor: None,
            effect: EffectMeasure::MeanRatio,
            allowed_increase: 1.1,
            allowed_decrease: 0.9,
            min_points: 1,
        }
    }
}

/// Event counts of a ratio metric: `events` (errors) out of `total` (requests).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub events: u64,
    pub total: u64,
}

impl Counts {
    /// The counts of several intervals pooled.
    pub fn sum(intervals: impl IntoIterator<Item = (u64, u64)>) -> Counts {
        intervals.into_iter().fold(Counts::default(), |c, (e, t)| Counts { events: c.events + e, total: c.total + t })
    }
    /// events / total; `None` for no trials.
    pub fn rate(&self) -> Option<f64> {
        (self.total > 0).then(|| self.events as f64 / self.total as f64)
    }
}

/// A metric's data for both sides.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Samples {
    /// A value per interval (or per request) on each side.
    Values { baseline: Vec<f64>, canary: Vec<f64> },
    /// Pooled counts on each side.
    Ratio { baseline: Counts, canary: Counts },
}

/// One metric to judge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Metric {
    pub name: String,
    pub rule: MetricRule,
    pub samples: Samples,
}

/// The judge's own settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JudgeConfig {
    /// Of the two-sided tests and the shift's interval (Kayenta's 0.98).
    pub confidence: f64,
    /// A score at least this passes.
    pub pass: f64,
    /// A score at least this (and under `pass`) is marginal; under it fails.
    pub marginal: f64,
    /// No data for at least this share of the weight holds the verdict.
    pub nodata_share: f64,
}

impl Default for JudgeConfig {
    fn default() -> Self {
        JudgeConfig { confidence: 0.98, pass: 95.0, marginal: 75.0, nodata_share: 0.5 }
    }
}

/// A setting the judge cannot work with, naming its key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

fn bad(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError { key: key.into(), message: message.into() }
}

impl JudgeConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(self.confidence > 0.5 && self.confidence < 1.0) {
            return Err(bad("confidence", format!("{} is not between 0.5 and 1", self.confidence)));
        }
        if !(0.0..=100.0).contains(&self.pass) {
            return Err(bad("pass", format!("{} is not a score from 0 to 100", self.pass)));
        }
        if !(0.0..=self.pass).contains(&self.marginal) {
            return Err(bad("marginal", format!("{} is not a score from 0 to pass ({})", self.marginal, self.pass)));
        }
        if !(self.nodata_share > 0.0 && self.nodata_share <= 1.0) {
            return Err(bad("nodata_share", format!("{} is not a share in (0, 1]", self.nodata_share)));
        }
        Ok(())
    }
}

impl MetricRule {
    /// Checks the rule; keys are named under `prefix` (the metric's name).
    pub fn validate(&self, prefix: &str) -> Result<(), ConfigError> {
        let key = |k: &str| format!("{prefix}.{k}");
        if !(self.weight.is_finite() && self.weight > 0.0) {
            return Err(bad(key("weight"), format!("{} is not a positive number", self.weight)));
        }
        if let Some(k) = self.outlier_factor {
            if !(k.is_finite() && k > 0.0) {
                return Err(bad(key("outlier_factor"), format!("{k} is not a positive number")));
            }
        }
        if !(self.allowed_increase.is_finite() && self.allowed_increase >= 0.0) {
            return Err(bad(key("allowed_increase"), format!("{} is not a ratio", self.allowed_increase)));
        }
        if !(self.allowed_decrease.is_finite() && self.allowed_decrease >= 0.0) {
            return Err(bad(key("allowed_decrease"), format!("{} is not a ratio", self.allowed_decrease)));
        }
        if self.allowed_decrease > self.allowed_increase {
            return Err(bad(
                key("allowed_decrease"),
                format!("{} is above allowed_increase ({})", self.allowed_decrease, self.allowed_increase),
            ));
        }
        Ok(())
    }
}

/// A metric's classification.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Classification {
    Pass,
    High,
    Low,
    #[serde(rename = "nodata")]
    NoData,
}

impl Classification {
    pub fn as_str(self) -> &'static str {
        match self {
            Classification::Pass => "pass",
            Classification::High => "high",
            Classification::Low => "low",
            Classification::NoData => "nodata",
        }
    }
}

/// The verdict over every metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Marginal,
    Fail,
    /// Not enough data to judge: hold, never fail.
    #[serde(rename = "nodata")]
    NoData,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Marginal => "marginal",
            Verdict::Fail => "fail",
            Verdict::NoData => "nodata",
        }
    }
}

/// What a side held, after cleaning.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Side {
    /// Values judged (a metric of values) or trials (a ratio metric).
    pub count: u64,
    /// Values that were not finite numbers (removed or counted as 0).
    #[serde(skip_serializing_if = "is_zero")]
    pub not_finite: usize,
    #[serde(skip_serializing_if = "is_zero")]
    pub outliers_removed: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub median: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// A ratio metric's events (errors).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<u64>,
    /// A ratio metric's events over trials.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The test behind a classification, canary first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "test", rename_all = "snake_case")]
pub enum Test {
    /// Mann-Whitney U (two-sided) and the Hodges-Lehmann shift canary − baseline with its interval.
    RankSum {
        u: f64,
        p_value: f64,
        method: Method,
        #[serde(skip_serializing_if = "Option::is_none")]
        z: Option<f64>,
        estimate: f64,
        lower: f64,
        upper: f64,
        conf_level: f64,
    },
    /// The two-proportion z test (two-sided) and the Wald interval of the rate difference canary − baseline.
    Proportions { statistic: f64, z: f64, p_value: f64, difference: f64, lower: f64, upper: f64, conf_level: f64 },
}

impl Test {
    pub fn p_value(&self) -> f64 {
        match self {
            Test::RankSum { p_value, .. } | Test::Proportions { p_value, .. } => *p_value,
        }
    }
}

/// One metric's classification, explained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MetricResult {
    pub name: String,
    pub classification: Classification,
    pub critical: bool,
    pub weight: f64,
    pub direction: Direction,
    /// Why, in words, with the figures that decided it.
    pub why: String,
    pub baseline: Side,
    pub canary: Side,
    /// The effect, canary over baseline (mean, median or rate ratio); `None` when the baseline's is 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effect: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test: Option<Test>,
}

/// The verdict over every metric, explained.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    pub verdict: Verdict,
    /// The weighted score (0 to 100) of the metrics with data; `None` when none has data.
    pub score: Option<f64>,
    pub why: String,
    pub metrics: Vec<MetricResult>,
}

/// Judge every metric and give the verdict. Errors only for settings it cannot work with.
pub fn judge(config: &JudgeConfig, metrics: &[Metric]) -> Result<Judgement, ConfigError> {
    config.validate()?;
    for m in metrics {
        m.rule.validate(&m.name)?;
    }
    let results = classify_all(metrics, config.confidence);
    let (verdict, score, why) = verdict(config, &results);
    Ok(Judgement { verdict, score, why, metrics: results })
}

/// Every metric classified, in order. Metrics are independent, so a verdict over many is spread over the
/// processor's cores (scoped threads, at most 4; the figures do not depend on it).
fn classify_all(metrics: &[Metric], confidence: f64) -> Vec<MetricResult> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
    if metrics.len() < 8 || cores < 2 {
        return metrics.iter().map(|m| classify(m, confidence)).collect();
    }
    let chunk = metrics.len().div_ceil(cores);
    std::thread::scope(|s| {
        let parts: Vec<_> = metrics
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(|m| classify(m, confidence)).collect::<Vec<_>>()))
            .collect();
        parts.into_iter().flat_map(|p| p.join().expect("classify does not panic")).collect()
    })
}

fn verdict(config: &JudgeConfig, results: &[MetricResult]) -> (Verdict, Option<f64>, String) {
    let with_data: Vec<&MetricResult> = results.iter().filter(|r| r.classification != Classification::NoData).collect();
    // Folded from +0 (an empty float sum is −0).
    let total = results.iter().fold(0.0, |a, r| a + r.weight);
    let data_weight = with_data.iter().fold(0.0, |a, r| a + r.weight);
    let passing = with_data.iter().filter(|r| r.classification == Classification::Pass).fold(0.0, |a, r| a + r.weight);
    let score = (data_weight > 0.0).then(|| (100.0 * passing / data_weight * 100.0).round() / 100.0);
    if let Some(r) =
        results.iter().find(|r| r.critical && matches!(r.classification, Classification::High | Classification::Low))
    {
        return (
            Verdict::Fail,
            score,
            format!("critical metric {} is {}: {}", r.name, r.classification.as_str(), r.why),
        );
    }
    if results.is_empty() {
        return (Verdict::NoData, None, "no metrics to judge".into());
    }
    if let Some(r) = results.iter().find(|r| r.critical && r.classification == Classification::NoData) {
        return (Verdict::NoData, score, format!("critical metric {} has no data ({}): hold", r.name, r.why));
    }
    let nodata = total - data_weight;
    if nodata / total >= config.nodata_share {
        let names: Vec<&str> =
            results.iter().filter(|r| r.classification == Classification::NoData).map(|r| r.name.as_str()).collect();
        let share = 100.0 * nodata / total;
        return (Verdict::NoData, score, format!("no data for {share:.0}% of the weight ({}): hold", names.join(", ")));
    }
    let score_value = score.unwrap_or(0.0);
    let failing: Vec<String> = with_data
        .iter()
        .filter(|r| r.classification != Classification::Pass)
        .map(|r| format!("{} is {}", r.name, r.classification.as_str()))
        .collect();
    let detail = if failing.is_empty() { "every metric passes".to_string() } else { failing.join(", ") };
    if score_value >= config.pass {
        (Verdict::Pass, score, format!("score {score_value:.2} ≥ {} ({detail})", config.pass))
    } else if score_value >= config.marginal {
        (Verdict::Marginal, score, format!("score {score_value:.2} < {} ({detail})", config.pass))
    } else {
        (Verdict::Fail, score, format!("score {score_value:.2} < {} ({detail})", config.marginal))
    }
}

/// Classify one metric at `confidence` (the rule is assumed valid: see `MetricRule::validate`).
pub fn classify(metric: &Metric, confidence: f64) -> MetricResult {
    let rule = &metric.rule;
    let mut result = MetricResult {
        name: metric.name.clone(),
        classification: Classification::NoData,
        critical: rule.critical,
        weight: rule.weight,
        direction: rule.direction,
        why: String::new(),
        baseline: Side::default(),
        canary: Side::default(),
        effect: None,
        test: None,
    };
    match &metric.samples {
        Samples::Values { baseline, canary } => classify_values(&mut result, rule, confidence, baseline, canary),
        Samples::Ratio { baseline, canary } => classify_ratio(&mut result, rule, confidence, *baseline, *canary),
    }
    result
}

fn side_of(values: &[f64], not_finite: usize, outliers_removed: usize) -> Side {
    let s = sorted(values);
    let nonempty = !s.is_empty();
    Side {
        count: s.len() as u64,
        not_finite,
        outliers_removed,
        mean: nonempty.then(|| s.iter().sum::<f64>() / s.len() as f64),
        median: nonempty.then(|| median_sorted(&s)),
        min: s.first().copied(),
        max: s.last().copied(),
        events: None,
        rate: None,
    }
}

/// The ratio of the canary's figure to the baseline's, when the baseline's is not 0.
fn ratio(canary: Option<f64>, baseline: Option<f64>) -> Option<f64> {
    match (canary, baseline) {
        (Some(c), Some(b)) if b != 0.0 && (c / b).is_finite() => Some(c / b),
        _ => None,
    }
}

fn too_few(result: &mut MetricResult, min: u64) -> bool {
    let min = min.max(1);
    let short: Vec<String> = [("baseline", result.baseline.count), ("canary", result.canary.count)]
        .iter()
        .filter(|(_, n)| *n < min)
        .map(|(side, n)| if *n == 0 { format!("no {side} data") } else { format!("{n} {side} points") })
        .collect();
    if short.is_empty() {
        return false;
    }
    result.classification = Classification::NoData;
    result.why = if min > 1 { format!("{} (at least {min} needed)", short.join(", ")) } else { short.join(", ") };
    true
}

fn classify_values(result: &mut MetricResult, rule: &MetricRule, confidence: f64, baseline: &[f64], canary: &[f64]) {
    let b = clean(baseline, rule.nan, rule.outlier_factor);
    let c = clean(canary, rule.nan, rule.outlier_factor);
    result.baseline = side_of(&b.values, b.not_finite, b.outliers);
    result.canary = side_of(&c.values, c.not_finite, c.outliers);
    if too_few(result, rule.min_points as u64) {
        return;
    }
    result.effect = match rule.effect {
        EffectMeasure::MeanRatio => ratio(result.canary.mean, result.baseline.mean),
        EffectMeasure::MedianRatio => ratio(result.canary.median, result.baseline.median),
    };
    let measure = match rule.effect {
        EffectMeasure::MeanRatio => "mean",
        EffectMeasure::MedianRatio => "median",
    };
    // Sorted once here: the rank test and the shift each take a sorted copy, which is then only checked.
    let (x, y) = (sorted(&c.values), sorted(&b.values));
    let (x, y) = (&x, &y);
    let tests = mann_whitney_u(x, y, Alternative::TwoSided).and_then(|u| Ok((u, hodges_lehmann(x, y, confidence)?)));
    let (u, shift) = match tests {
        Ok(t) => t,
        Err(e) => {
            // Cannot happen with cleaned, non-empty sides; say so rather than panic.
            result.why = format!("cannot test: {e}");
            return;
        }
    };
    let figures = format!(
        "U = {}, p = {}, shift {} [{}, {}]",
        num(u.u),
        num(u.p_value),
        signed(shift.estimate),
        num(shift.lower),
        num(shift.upper)
    );
    result.test = Some(Test::RankSum {
        u: u.u,
        p_value: u.p_value,
        method: u.method,
        z: u.z,
        estimate: shift.estimate,
        lower: shift.lower,
        upper: shift.upper,
        conf_level: confidence,
    });
    if result.baseline.min == result.baseline.max
        && result.canary.min == result.canary.max
        && result.baseline.min == result.canary.min
    {
        result.classification = Classification::Pass;
        result.why = format!("every value is {} on both sides", num(result.canary.min.unwrap_or_default()));
        return;
    }
    let higher = u.u > (x.len() * y.len()) as f64 / 2.0;
    let effect =
        result.effect.map(|e| format!("{measure} ×{}", num(e))).unwrap_or_else(|| format!("{measure} ratio undefined"));
    let within = match (higher, result.effect) {
        (true, Some(e)) if e < rule.allowed_increase => {
            Some(format!("within the allowed ×{}", num(rule.allowed_increase)))
        }
        (false, Some(e)) if e > rule.allowed_decrease => {
            Some(format!("within the allowed ×{}", num(rule.allowed_decrease)))
        }
        _ => None,
    };
    decide(result, rule, confidence, u.p_value, higher, within, &effect, &figures);
}

fn classify_ratio(result: &mut MetricResult, rule: &MetricRule, confidence: f64, baseline: Counts, canary: Counts) {
    let side = |c: Counts| Side { count: c.total, events: Some(c.events), rate: c.rate(), ..Side::default() };
    result.baseline = side(baseline);
    result.canary = side(canary);
    if too_few(result, rule.min_points as u64) {
        return;
    }
    result.effect = ratio(result.canary.rate, result.baseline.rate);
    let test = two_proportions(
        canary.events,
        canary.total,
        baseline.events,
        baseline.total,
        Alternative::TwoSided,
        confidence,
    );
    let t = match test {
        Ok(t) => t,
        Err(StatError::NoVariance) => {
            result.classification = Classification::Pass;
            result.why = if canary.events == 0 {
                "no events on either side".into()
            } else {
                "every trial an event on both sides".into()
            };
            return;
        }
        Err(e) => {
            result.why = format!("cannot test: {e}");
            return;
        }
    };
    let figures = format!(
        "{}/{} against {}/{}, X² = {}, p = {}, difference {} [{}, {}]",
        canary.events,
        canary.total,
        baseline.events,
        baseline.total,
        num(t.statistic),
        num(t.p_value),
        signed(t.difference),
        num(t.lower),
        num(t.upper)
    );
    result.test = Some(Test::Proportions {
        statistic: t.statistic,
        z: t.z,
        p_value: t.p_value,
        difference: t.difference,
        lower: t.lower,
        upper: t.upper,
        conf_level: confidence,
    });
    let effect = result.effect.map(|e| format!("rate ×{}", num(e))).unwrap_or_else(|| "the baseline has none".into());
    // The tolerance holds at the confidence level: the interval of the difference must clear the allowed change
    // of the baseline's rate, not only the estimate.
    let higher = t.difference > 0.0;
    let base_rate = t.estimate2;
    let within = if higher {
        let allowed = (rule.allowed_increase - 1.0).max(0.0) * base_rate;
        (t.lower <= allowed).then(|| {
            format!("but its interval reaches the allowed rise (×{}: {})", num(rule.allowed_increase), signed(allowed))
        })
    } else {
        let allowed = (rule.allowed_decrease - 1.0).min(0.0) * base_rate;
        (t.upper >= allowed).then(|| {
            format!("but its interval reaches the allowed fall (×{}: {})", num(rule.allowed_decrease), signed(allowed))
        })
    };
    decide(result, rule, confidence, t.p_value, higher, within, &effect, &figures);
}

/// The shared rule: significance, then the bad direction, then the effect tolerance (`within`: why the change,
/// significant and in the bad direction, is still tolerated, if it is).
#[allow(clippy::too_many_arguments)]
fn decide(
    result: &mut MetricResult,
    rule: &MetricRule,
    confidence: f64,
    p_value: f64,
    higher: bool,
    within: Option<String>,
    effect: &str,
    figures: &str,
) {
    let alpha = 1.0 - confidence;
    let word = if higher { "higher" } else { "lower" };
    let (class, why) = if p_value >= alpha {
        (Classification::Pass, format!("no significant difference (p ≥ {}; {effect}; {figures})", num(alpha)))
    } else if higher && !rule.direction.increase_is_bad() || !higher && !rule.direction.decrease_is_bad() {
        let bad = if rule.direction == Direction::Increase { "an increase" } else { "a decrease" };
        (Classification::Pass, format!("{word}, but only {bad} is bad ({effect}; {figures})"))
    } else if let Some(within) = within {
        (Classification::Pass, format!("{word}, {within} ({effect}; {figures})"))
    } else {
        let class = if higher { Classification::High } else { Classification::Low };
        (class, format!("{word} than the baseline (p < {}; {effect}; {figures})", num(alpha)))
    };
    result.classification = class;
    result.why = why;
}

/// A figure in few characters: 4 significant digits, no trailing zeros.
pub(crate) fn num(v: f64) -> String {
    figure(v, 4, 6, 3)
}

/// A figure with `digits` significant digits and no trailing zeros; scientific notation (with `sci_decimals`)
/// below 1e-4 and from 10^`sci_from` up. The judge's explanations and `crew judge` print their figures with it.
pub fn figure(v: f64, digits: i32, sci_from: i32, sci_decimals: usize) -> String {
    if v == 0.0 {
        return "0".into();
    }
    if !v.is_finite() {
        return v.to_string();
    }
    let magnitude = v.abs().log10().floor() as i32;
    if !(-4..sci_from).contains(&magnitude) {
        return format!("{v:.sci_decimals$e}");
    }
    let decimals = (digits - 1 - magnitude).max(0) as usize;
    let s = format!("{v:.decimals$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// [`figure`] with a `+` before a positive one: a change.
pub fn signed_figure(v: f64, digits: i32, sci_from: i32, sci_decimals: usize) -> String {
    if v > 0.0 {
        format!("+{}", figure(v, digits, sci_from, sci_decimals))
    } else {
        figure(v, digits, sci_from, sci_decimals)
    }
}

fn signed(v: f64) -> String {
    signed_figure(v, 4, 6, 3)
}
