//! Experiments: exposures (first per user per experiment, capped per experiment) and conversions (per metric
//! and user), and the units the statistics read.

use crate::db::{query, Backend};
use crate::{ExperimentStore, Result};
use async_trait::async_trait;

/// One user seen on one variant of a split flag's phase.
#[derive(Debug, Clone, PartialEq)]
pub struct Exposure {
    pub flag: String,
    pub phase: i64,
    pub user: String,
    pub variant: String,
    pub at_ms: i64,
}

/// A user's tracking event (OpenFeature `track`) on a metric, with its value (1 when none was given).
#[derive(Debug, Clone, PartialEq)]
pub struct Conversion {
    pub metric: String,
    pub user: String,
    pub at_ms: i64,
    pub value: f64,
}

/// What a batch of exposures did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recorded {
    /// First exposures, stored.
    pub new: u64,
    /// Users already exposed in that experiment: ignored.
    pub duplicates: u64,
    /// Past the experiment's cap of users: not stored.
    pub dropped: u64,
}

/// An exposed user as the results read it: variant, exposure time, and the time its conversion is attributed
/// at (the later of the first conversion and the exposure), if it converted after its exposure.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredUnit {
    pub variant: String,
    pub exposed_ms: i64,
    pub converted_ms: Option<i64>,
}

/// Counts `user` (exposed on `variant`) as converted on `metric` at `at_ms`, once.
async fn attribute(
    tx: &mut crate::db::Tx<'_>,
    flag: &str,
    phase: i64,
    metric: &str,
    user: &str,
    variant: &str,
    at_ms: i64,
) -> Result<()> {
    let n = query(
        "INSERT INTO experiment_attributed (flag, phase, metric, user_key) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (flag, phase, metric, user_key) DO NOTHING",
    )
    .bind(flag)
    .bind(phase)
    .bind(metric)
    .bind(user)
    .execute(&mut *tx)
    .await?;
    if n > 0 {
        query(
            "INSERT INTO experiment_converted (flag, phase, metric, variant, minute, users) \
             VALUES ($1, $2, $3, $4, $5, 1) ON CONFLICT (flag, phase, metric, variant, minute) \
             DO UPDATE SET users = experiment_converted.users + 1",
        )
        .bind(flag)
        .bind(phase)
        .bind(metric)
        .bind(variant)
        .bind(at_ms.div_euclid(60_000))
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}

/// An experiment's figures by minute: users first exposed, and users converted on a metric, per variant.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tallies {
    /// (variant, minute start in Unix ms, users).
    pub exposed: Vec<(String, i64, u64)>,
    pub converted: Vec<(String, i64, u64)>,
}

#[async_trait]
impl<B: Backend> ExperimentStore for B {
    async fn record_exposures(&self, exposures: &[Exposure], max_users: u64) -> Result<Recorded> {
        let mut r = Recorded::default();
        if exposures.is_empty() {
            return Ok(r);
        }
        // One experiment at a time: its size is read and written once, whatever the batch holds of it.
        let mut order: Vec<&Exposure> = exposures.iter().collect();
        order.sort_by(|a, b| (a.flag.as_str(), a.phase).cmp(&(b.flag.as_str(), b.phase)));
        let mut tx = self.begin_write().await?;
        for group in order.chunk_by(|a, b| a.flag == b.flag && a.phase == b.phase) {
            let (flag, phase) = (group[0].flag.as_str(), group[0].phase);
            tx.serialize_on(&format!("experiment:{flag}:{phase}")).await?;
            let users: Option<i64> = query("SELECT users FROM experiment_sizes WHERE flag = $1 AND phase = $2")
                .bind(flag)
                .bind(phase)
                .fetch_optional_scalar(&mut tx)
                .await?;
            let mut room = (max_users as i64).saturating_sub(users.unwrap_or(0)).max(0);
            let mut added = 0i64;
            let mut tally: std::collections::BTreeMap<(&str, i64), i64> = Default::default();
            for e in group {
                if room == 0 {
                    let seen: Option<i64> = query(
                        "SELECT phase FROM experiment_exposures WHERE flag = $1 AND phase = $2 AND user_key = $3",
                    )
                    .bind(flag)
                    .bind(phase)
                    .bind(e.user.as_str())
                    .fetch_optional_scalar(&mut tx)
                    .await?;
                    if seen.is_some() {
                        r.duplicates += 1
                    } else {
                        r.dropped += 1
                    }
                    continue;
                }
                let n = query(
                    "INSERT INTO experiment_exposures (flag, phase, user_key, variant, exposed_ms) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (flag, phase, user_key) DO NOTHING",
                )
                .bind(flag)
                .bind(phase)
                .bind(e.user.as_str())
                .bind(e.variant.as_str())
                .bind(e.at_ms)
                .execute(&mut tx)
                .await?;
                if n == 0 {
                    r.duplicates += 1;
                } else {
                    r.new += 1;
                    added += 1;
                    room -= 1;
                    *tally.entry((e.variant.as_str(), e.at_ms.div_euclid(60_000))).or_default() += 1;
                    // Conversions that reached the store before this (late) exposure but happened after it.
                    let rows = query(
                        "SELECT metric, first_ms FROM experiment_conversions WHERE user_key = $1 AND last_ms >= $2",
                    )
                    .bind(e.user.as_str())
                    .bind(e.at_ms)
                    .fetch_all(&mut tx)
                    .await?;
                    for row in rows {
                        let (metric, first): (String, i64) = (row.try_get(0)?, row.try_get(1)?);
                        let at = first.max(e.at_ms);
                        attribute(&mut tx, flag, phase, &metric, &e.user, &e.variant, at).await?;
                    }
                }
            }
            for ((variant, minute), n) in tally {
                query(
                    "INSERT INTO experiment_tally (flag, phase, variant, minute, users) VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (flag, phase, variant, minute) DO UPDATE SET users = experiment_tally.users + excluded.users",
                )
                .bind(flag)
                .bind(phase)
                .bind(variant)
                .bind(minute)
                .bind(n)
                .execute(&mut tx)
                .await?;
            }
            if added > 0 {
                query(
                    "INSERT INTO experiment_sizes (flag, phase, users) VALUES ($1, $2, $3) \
                     ON CONFLICT (flag, phase) DO UPDATE SET users = experiment_sizes.users + excluded.users",
                )
                .bind(flag)
                .bind(phase)
                .bind(added)
                .execute(&mut tx)
                .await?;
            }
        }
        tx.commit(&[]).await?;
        Ok(r)
    }

    async fn experiment_counts(&self, flag: &str, phase: i64) -> Result<Vec<(String, u64)>> {
        let rows = query(
            "SELECT variant, CAST(SUM(users) AS BIGINT) FROM experiment_tally WHERE flag = $1 AND phase = $2 \
             GROUP BY variant ORDER BY variant",
        )
        .bind(flag)
        .bind(phase)
        .fetch_all(self.reader())
        .await?;
        rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get::<i64>(1)?.max(0) as u64))).collect()
    }

    async fn record_conversion(&self, metric: &str, user: &str, at_ms: i64, value: f64) -> Result<()> {
        let c = Conversion { metric: metric.to_string(), user: user.to_string(), at_ms, value };
        self.record_conversions(std::slice::from_ref(&c)).await
    }

    async fn record_conversions(&self, conversions: &[Conversion]) -> Result<()> {
        if conversions.is_empty() {
            return Ok(());
        }
        let mut tx = self.begin_write().await?;
        for c in conversions {
            query(
                "INSERT INTO experiment_conversions (metric, user_key, first_ms, last_ms, count, value_sum) \
                 VALUES ($1, $2, $3, $3, 1, $4) ON CONFLICT (metric, user_key) DO UPDATE SET \
                 first_ms = CASE WHEN excluded.first_ms < experiment_conversions.first_ms THEN excluded.first_ms \
                            ELSE experiment_conversions.first_ms END, \
                 last_ms = CASE WHEN excluded.last_ms > experiment_conversions.last_ms THEN excluded.last_ms \
                           ELSE experiment_conversions.last_ms END, \
                 count = experiment_conversions.count + 1, \
                 value_sum = experiment_conversions.value_sum + excluded.value_sum",
            )
            .bind(c.metric.as_str())
            .bind(c.user.as_str())
            .bind(c.at_ms)
            .bind(c.value)
            .execute(&mut tx)
            .await?;
            let rows =
                query("SELECT flag, phase, variant FROM experiment_exposures WHERE user_key = $1 AND exposed_ms <= $2")
                    .bind(c.user.as_str())
                    .bind(c.at_ms)
                    .fetch_all(&mut tx)
                    .await?;
            for row in rows {
                let (flag, phase, variant): (String, i64, String) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
                attribute(&mut tx, &flag, phase, &c.metric, &c.user, &variant, c.at_ms).await?;
            }
        }
        tx.commit(&[]).await?;
        Ok(())
    }

    async fn experiment_tallies(&self, flag: &str, phase: i64, metric: &str) -> Result<Tallies> {
        let read = |rows: Vec<crate::db::Row>| -> Result<Vec<(String, i64, u64)>> {
            rows.iter()
                .map(|r| Ok((r.try_get(0)?, r.try_get::<i64>(1)? * 60_000, r.try_get::<i64>(2)?.max(0) as u64)))
                .collect()
        };
        let exposed =
            query("SELECT variant, minute, users FROM experiment_tally WHERE flag = $1 AND phase = $2 ORDER BY minute")
                .bind(flag)
                .bind(phase)
                .fetch_all(self.reader())
                .await?;
        let converted = query(
            "SELECT variant, minute, users FROM experiment_converted WHERE flag = $1 AND phase = $2 AND metric = $3 \
             ORDER BY minute",
        )
        .bind(flag)
        .bind(phase)
        .bind(metric)
        .fetch_all(self.reader())
        .await?;
        Ok(Tallies { exposed: read(exposed)?, converted: read(converted)? })
    }

    async fn experiment_users(&self, flag: &str, phase: i64) -> Result<u64> {
        let n: Option<i64> = query("SELECT users FROM experiment_sizes WHERE flag = $1 AND phase = $2")
            .bind(flag)
            .bind(phase)
            .fetch_optional_scalar(self.reader())
            .await?;
        Ok(n.unwrap_or(0).max(0) as u64)
    }

    async fn experiment_units(&self, flag: &str, phase: i64, metric: &str) -> Result<Vec<StoredUnit>> {
        let rows = query(
            "SELECT e.variant, e.exposed_ms, \
             CASE WHEN c.last_ms >= e.exposed_ms THEN \
               CASE WHEN c.first_ms > e.exposed_ms THEN c.first_ms ELSE e.exposed_ms END END \
             FROM experiment_exposures e LEFT JOIN experiment_conversions c \
               ON c.metric = $3 AND c.user_key = e.user_key \
             WHERE e.flag = $1 AND e.phase = $2",
        )
        .bind(flag)
        .bind(phase)
        .bind(metric)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| Ok(StoredUnit { variant: r.try_get(0)?, exposed_ms: r.try_get(1)?, converted_ms: r.try_get(2)? }))
            .collect()
    }
}
