//! Queries of series: the parsed query (name, labels, range, step, stat), the tier chosen by range, every
//! replica's chunks and this replica's open head merged, bucketed by step. `crew graph`, the Metrics page,
//! `!graph` and `GET /api/v1/metrics/query` all ask [`Metrics::query`].

use super::{split_key, Metrics};
use crate::error::ApiError;
use crew_metrics::query::{bucket, choose_tier};
use crew_metrics::tsdb::points_of;
use crew_metrics::{Kind, Point};
use std::collections::BTreeMap;

type ApiResult<T> = Result<T, ApiError>;

/// The largest step a query may ask for (ten years): anything larger is a typing mistake, and would overflow.
const MAX_STEP_MS: i64 = 10 * 366 * 86_400_000;

/// A parsed query.
pub struct Query {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub from: i64,
    pub to: i64,
    pub step: Option<i64>,
    pub stat: Option<String>,
}

pub fn parse_query(pairs: &[(String, String)]) -> ApiResult<Query> {
    let now = chrono::Utc::now();
    let time = |k: &str, v: &str| {
        crew_core::time::parse_time(v, now)
            .map(|t| t.timestamp_millis())
            .map_err(|e| ApiError::BadRequest(format!("`{k}`: {e}")))
    };
    let mut q = Query {
        name: String::new(),
        labels: vec![],
        from: now.timestamp_millis() - 3_600_000,
        to: now.timestamp_millis(),
        step: None,
        stat: None,
    };
    for (k, v) in pairs {
        match k.as_str() {
            "name" => q.name = v.clone(),
            "labels" => {
                for kv in v.split(',').filter(|s| !s.is_empty()) {
                    let (k, v) = kv.split_once('=').ok_or_else(|| {
                        ApiError::BadRequest(format!("`labels`: `{kv}` is not key=value (labels=env=prod,route=/)"))
                    })?;
                    q.labels.push((k.to_string(), v.to_string()));
                }
            }
            "from" => q.from = time(k, v)?,
            "to" => q.to = time(k, v)?,
            "step" => {
                let ms = if v.bytes().all(|b| b.is_ascii_digit()) && !v.is_empty() {
                    v.parse::<i64>().ok().and_then(|s| s.checked_mul(1000))
                } else {
                    crew_core::time::parse_span(v).ok().map(|d| d.num_milliseconds())
                };
                match ms {
                    Some(ms) if (1000..=MAX_STEP_MS).contains(&ms) => q.step = Some(ms),
                    _ => {
                        return Err(ApiError::BadRequest(format!(
                            "`step`: `{v}` is not a span from 1s to 10 years (10s, 5m, 1h, or seconds)"
                        )))
                    }
                }
            }
            "stat" => q.stat = Some(v.clone()),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "unknown parameter `{other}`: expected name, labels, from, to, step, stat"
                )))
            }
        }
    }
    if q.name.is_empty() {
        return Err(ApiError::BadRequest("`name` is required: GET /api/v1/metrics lists the series".into()));
    }
    if q.from > q.to {
        return Err(ApiError::BadRequest("`from` is after `to`".into()));
    }
    Ok(q)
}

/// A series' points of one tier within [from, to]: every replica's stored chunks and this replica's open head,
/// merged where replicas received the same series at the same time (their figures add up as intervals do).
async fn points(m: &Metrics, key: &str, kind: Kind, tier: u8, from: i64, to: i64) -> ApiResult<Vec<(i64, Point)>> {
    let head = m.live.db.lock().expect("not poisoned").head_points(key, tier, from, to);
    let mut all = Vec::new();
    for c in m.store.metric_chunks(key, tier as i32, from, to).await? {
        let pts = points_of(kind, &c.data, c.points as u32)
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("chunk {key}@{}: {e}", c.start_ms)))?;
        all.extend(pts.into_iter().filter(|(t, _)| *t >= from && *t <= to));
    }
    all.extend(head);
    all.sort_by_key(|p| p.0);
    let mut out: Vec<(i64, Point)> = Vec::with_capacity(all.len());
    for (t, p) in all {
        match out.last_mut() {
            Some((lt, lp)) if *lt == t => lp.merge(kind, &p),
            _ => out.push((t, p)),
        }
    }
    Ok(out)
}

/// One series of a query's answer; points serialise as `[[t, v], ...]` (Unix seconds).
#[derive(serde::Serialize)]
pub struct SeriesOut {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub kind: &'static str,
    pub stat: String,
    pub points: Vec<(i64, f64)>,
}

/// A query's answer: typed, so 8,640 points serialise straight to JSON without a tree of values.
#[derive(serde::Serialize)]
pub struct QueryOut {
    pub series: Vec<SeriesOut>,
    pub step: i64,
    pub tier_step: i64,
    pub from: i64,
    pub to: i64,
}

impl Metrics {
    /// One series' points of one tier within [from, to] (Unix ms), every replica's merged: what the judge
    /// compares (`feedback`).
    pub(crate) async fn points(
        &self,
        key: &str,
        kind: Kind,
        tier: u8,
        from: i64,
        to: i64,
    ) -> ApiResult<Vec<(i64, Point)>> {
        points(self, key, kind, tier, from, to).await
    }

    /// The answer to a query: every matching series' points of the stat.
    pub async fn query(&self, q: &Query) -> ApiResult<QueryOut> {
        let series = self.series();
        let matching: Vec<(String, Kind)> = series
            .into_iter()
            .filter(|(key, _)| {
                let (name, labels) = split_key(key);
                name == q.name && q.labels.iter().all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .collect();
        let tiers = &self.live.config.tiers;
        let now = chrono::Utc::now().timestamp_millis();
        let tier = choose_tier(tiers, now, q.from, q.step);
        let res = tiers[tier].step_ms;
        // A step is a whole number of the tier's resolution; without one, at most about 1,000 points.
        let step = match q.step {
            Some(s) => (s.max(res) / res) * res,
            None => {
                let span = q.to - q.from;
                ((span / 1000).max(res) + res - 1) / res * res
            }
        };
        let mut out = vec![];
        for (key, kind) in matching {
            let stat =
                q.stat.clone().unwrap_or_else(|| kind.stats()[if kind == Kind::Counter { 1 } else { 0 }].to_string());
            let stat = if kind == Kind::Timer && q.stat.is_none() { "mean".to_string() } else { stat };
            if !kind.stats().contains(&stat.as_str()) {
                return Err(ApiError::BadRequest(format!(
                    "`stat`: `{stat}` does not apply to {key}, a {}: use {}",
                    kind.as_str(),
                    kind.stats().join(", ")
                )));
            }
            let pts = points(self, &key, kind, tier as u8, q.from, q.to).await?;
            let values: Vec<(i64, f64)> =
                bucket(kind, &pts, step, &stat).into_iter().map(|(t, v)| (t / 1000, v)).collect();
            let (name, labels) = split_key(&key);
            out.push(SeriesOut {
                name: name.to_string(),
                labels: labels.into_iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                kind: kind.as_str(),
                stat,
                points: values,
            });
        }
        Ok(QueryOut { series: out, step: step / 1000, tier_step: res / 1000, from: q.from / 1000, to: q.to / 1000 })
    }
}
