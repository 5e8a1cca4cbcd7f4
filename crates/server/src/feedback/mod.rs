//! Adaptive feedback's one reading of the series: a watch (an environment's `[environments.NAME.watch]` or a
//! flag's launch plan) turned into the judge's metrics — each interval's point of the canary side against the
//! baseline side, sides chosen by a tag (`host`, `flag_KEY`) and a time range — and judged by `crew-judge`.
//! Deploys (canaries) and flags (ramps) both call [`Feedback::judge`]; neither reads the series itself. It
//! writes nothing: each domain records its own verdict event.

use crate::error::ApiError;
use crate::metrics::{split_key, Metrics};
use crew_judge::{Counts, JudgeConfig, Judgement, Metric, Samples, WatchSeries};
use crew_metrics::Kind;

/// One side of a comparison: the series whose tag `tag` has one of `values` (any series when `tag` is
/// `None`), in `[from, to]` (Unix ms).
#[derive(Debug, Clone)]
pub struct Side {
    pub tag: Option<(String, Vec<String>)>,
    pub from: i64,
    pub to: i64,
}

impl Side {
    fn matches(&self, labels: &[(&str, &str)]) -> bool {
        match &self.tag {
            None => true,
            Some((k, values)) => labels.iter().any(|(lk, lv)| lk == k && values.iter().any(|v| v == lv)),
        }
    }
}

/// What the judge said, with the series it could not find.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Verdict {
    #[serde(flatten)]
    pub judgement: Judgement,
    /// Watched series crew has never received (a typo, or an application not sending it yet): no data.
    pub unseen: Vec<String>,
    /// Whether the baseline side had any data at all (a first deploy has none: it is not judged).
    pub baseline_seen: bool,
}

/// The usual stat of a kind, as graphs choose it.
fn usual(kind: Kind) -> &'static str {
    match kind {
        Kind::Counter => "rate",
        Kind::Timer => "mean",
        Kind::Gauge => "value",
        Kind::Set => "distinct",
    }
}

#[derive(Clone)]
pub struct Feedback {
    metrics: Metrics,
}

impl Feedback {
    pub fn new(metrics: Metrics) -> Self {
        Feedback { metrics }
    }

    /// The watched series crew has never received, by name: warnings for plans and crew.toml.
    pub fn unseen(&self, watch: &[WatchSeries]) -> Vec<String> {
        let names = self.metrics.names();
        let mut out = vec![];
        for s in watch {
            for n in std::iter::once(&s.name).chain(s.over.as_ref()) {
                if !names.iter().any(|k| k == n) && !out.contains(n) {
                    out.push(n.clone());
                }
            }
        }
        out
    }

    /// Every value of `stat` of the series named `name` on `side`, one per stored interval point; the kind's
    /// usual stat when `stat` is `None`. A stat that does not apply to the series' kind is an error for the
    /// judge's `why`.
    async fn values(&self, name: &str, stat: Option<&str>, side: &Side) -> Result<Vec<f64>, String> {
        let step = self.metrics.live.config.flush.as_secs_f64();
        let mut out = vec![];
        for (key, kind) in self.metrics.series() {
            let (n, labels) = split_key(&key);
            if n != name || !side.matches(&labels) {
                continue;
            }
            let stat = stat.unwrap_or(usual(kind));
            if !kind.stats().contains(&stat) {
                return Err(format!("`{stat}` does not apply to {name}, a {}", kind.as_str()));
            }
            let points = self.metrics.points(&key, kind, 0, side.from, side.to).await.map_err(|e| e.to_string())?;
            out.extend(points.iter().filter_map(|(_, p)| p.stat(kind, stat, step)).filter(|v| v.is_finite()));
        }
        Ok(out)
    }

    /// The total count of a counter (or a timer's samples) on `side`.
    async fn count(&self, name: &str, side: &Side) -> Result<u64, String> {
        let mut total = 0.0;
        for (key, kind) in self.metrics.series() {
            let (n, labels) = split_key(&key);
            if n != name || !side.matches(&labels) {
                continue;
            }
            let stat = match kind {
                Kind::Counter => "sum",
                Kind::Timer => "count",
                _ => return Err(format!("{name} is a {}: a ratio needs counters", kind.as_str())),
            };
            let points = self.metrics.points(&key, kind, 0, side.from, side.to).await.map_err(|e| e.to_string())?;
            total += points.iter().filter_map(|(_, p)| p.stat(kind, stat, 1.0)).filter(|v| v.is_finite()).sum::<f64>();
        }
        Ok(total.max(0.0).round() as u64)
    }

    /// One watched series read on one side without judging it, for a guardrail beside an experiment's
    /// conversions: the mean of its interval points (an error ratio: its count over its trials' count), and how
    /// many points (trials for a ratio) it stands on. `None` without data.
    pub async fn reading(&self, w: &WatchSeries, side: &Side) -> Result<Option<(f64, u64)>, String> {
        match &w.over {
            Some(over) => {
                let trials = self.count(over, side).await?;
                let bad = self.count(&w.name, side).await?;
                Ok((trials > 0).then(|| (bad as f64 / trials as f64, trials)))
            }
            None => {
                let v = self.values(&w.name, w.stat.as_deref(), side).await?;
                Ok((!v.is_empty()).then(|| (v.iter().sum::<f64>() / v.len() as f64, v.len() as u64)))
            }
        }
    }

    /// Judges `canary` against `baseline` on every watched series.
    pub async fn judge(
        &self,
        watch: &[WatchSeries],
        canary: &Side,
        baseline: &Side,
        config: &JudgeConfig,
    ) -> Result<Verdict, ApiError> {
        let mut metrics = Vec::with_capacity(watch.len());
        let mut problems: Vec<(usize, String)> = vec![];
        let mut baseline_seen = false;
        for (i, s) in watch.iter().enumerate() {
            let samples = match &s.over {
                None => {
                    match (
                        self.values(&s.name, s.stat.as_deref(), baseline).await,
                        self.values(&s.name, s.stat.as_deref(), canary).await,
                    ) {
                        (Ok(b), Ok(c)) => {
                            baseline_seen |= !b.is_empty();
                            Samples::Values { baseline: b, canary: c }
                        }
                        (Err(e), _) | (_, Err(e)) => {
                            problems.push((i, e));
                            Samples::Values { baseline: vec![], canary: vec![] }
                        }
                    }
                }
                Some(over) => {
                    let counts = async |side: &Side| -> Result<Counts, String> {
                        Ok(Counts { events: self.count(&s.name, side).await?, total: self.count(over, side).await? })
                    };
                    match (counts(baseline).await, counts(canary).await) {
                        (Ok(b), Ok(c)) => {
                            baseline_seen |= b.total > 0;
                            // More errors than requests (two unrelated counters) is not a ratio.
                            let (b, c) = (
                                Counts { events: b.events.min(b.total), total: b.total },
                                Counts { events: c.events.min(c.total), total: c.total },
                            );
                            Samples::Ratio { baseline: b, canary: c }
                        }
                        (Err(e), _) | (_, Err(e)) => {
                            problems.push((i, e));
                            Samples::Ratio { baseline: Counts::default(), canary: Counts::default() }
                        }
                    }
                }
            };
            metrics.push(Metric { name: s.label(), rule: s.rule(), samples });
        }
        let mut judgement = crew_judge::judge(config, &metrics).map_err(|e| ApiError::BadRequest(e.to_string()))?;
        let unseen = self.unseen(watch);
        for (i, m) in judgement.metrics.iter_mut().enumerate() {
            if let Some((_, p)) = problems.iter().find(|(j, _)| *j == i) {
                m.why = format!("{p}: no data");
            } else if unseen.iter().any(|u| *u == watch[i].name || Some(u) == watch[i].over.as_ref()) {
                m.why = format!("crew has never received this series: no data ({})", m.why);
            }
        }
        Ok(Verdict { judgement, unseen, baseline_seen })
    }
}
