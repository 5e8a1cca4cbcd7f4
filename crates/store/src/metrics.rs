//! Metrics: each replica's write-ahead rows and the chunks of every series (crew-metrics' encoding; the store
//! keeps the bytes).

use crate::db::{query, Backend};
use crate::{MetricStore, Result};
use async_trait::async_trait;

/// A stored chunk of a metric series (the bytes are crew-metrics' Gorilla encoding).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricChunk {
    /// The series key: `name` or `name{k=v,...}`.
    pub series: String,
    /// The replica that received its points.
    pub source: String,
    /// counter, gauge, timer or set.
    pub kind: String,
    /// 0 = the flush interval, then each rollup.
    pub tier: i32,
    pub start_ms: i64,
    pub end_ms: i64,
    pub points: i32,
    pub data: Vec<u8>,
}

/// One write-ahead row of metric points: a flush's new points of one tier.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricWal {
    /// The replica that wrote it (and alone replays it).
    pub source: String,
    pub tier: i32,
    pub t_ms: i64,
    pub data: Vec<u8>,
}

#[async_trait]
impl<B: Backend> MetricStore for B {
    async fn write_metrics(
        &self,
        source: &str,
        wal: &[MetricWal],
        chunks: &[MetricChunk],
        floors: &[i64],
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for w in wal {
            // A flush retried after a commit that did reach the database writes its rows again: kept once.
            query(
                "INSERT INTO metric_wal (source, tier, t_ms, data) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (source, tier, t_ms) DO NOTHING",
            )
            .bind(&w.source)
            .bind(w.tier)
            .bind(w.t_ms)
            .bind(&w.data)
            .execute(&mut tx)
            .await?;
        }
        for c in chunks {
            query(
                "INSERT INTO metric_chunks (series, source, kind, tier, start_ms, end_ms, points, data) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (series, tier, source, start_ms) DO UPDATE SET \
                 kind = excluded.kind, end_ms = excluded.end_ms, points = excluded.points, data = excluded.data",
            )
            .bind(&c.series)
            .bind(&c.source)
            .bind(&c.kind)
            .bind(c.tier)
            .bind(c.start_ms)
            .bind(c.end_ms)
            .bind(c.points)
            .bind(&c.data)
            .execute(&mut tx)
            .await?;
        }
        for (tier, floor) in floors.iter().enumerate() {
            query("DELETE FROM metric_wal WHERE source = $1 AND tier = $2 AND t_ms < $3")
                .bind(source)
                .bind(tier as i32)
                .bind(*floor)
                .execute(&mut tx)
                .await?;
        }
        tx.commit(&[]).await?;
        Ok(())
    }

    async fn metric_chunks(&self, series: &str, tier: i32, from_ms: i64, to_ms: i64) -> Result<Vec<MetricChunk>> {
        let rows = query(
            "SELECT series, kind, tier, start_ms, end_ms, points, data, source FROM metric_chunks \
             WHERE series = $1 AND tier = $2 AND end_ms >= $3 AND start_ms <= $4 ORDER BY start_ms, source",
        )
        .bind(series)
        .bind(tier)
        .bind(from_ms)
        .bind(to_ms)
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(MetricChunk {
                    series: r.try_get(0)?,
                    kind: r.try_get(1)?,
                    tier: r.try_get::<i32>(2)?,
                    start_ms: r.try_get(3)?,
                    end_ms: r.try_get(4)?,
                    points: r.try_get::<i32>(5)?,
                    data: r.try_get(6)?,
                    source: r.try_get(7)?,
                })
            })
            .collect()
    }

    async fn metric_series(&self) -> Result<Vec<(String, String, i32, String, i64)>> {
        let rows = query(
            "SELECT series, MIN(kind), tier, source, MAX(end_ms) FROM metric_chunks \
             GROUP BY series, tier, source ORDER BY series, tier, source",
        )
        .fetch_all(self.reader())
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get::<i32>(2)?, r.try_get(3)?, r.try_get(4)?)))
            .collect()
    }

    async fn metric_wal(&self, source: &str) -> Result<Vec<MetricWal>> {
        let rows = query("SELECT tier, t_ms, data FROM metric_wal WHERE source = $1 ORDER BY t_ms, tier")
            .bind(source)
            .fetch_all(self.reader())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(MetricWal {
                    source: source.to_string(),
                    tier: r.try_get::<i32>(0)?,
                    t_ms: r.try_get(1)?,
                    data: r.try_get(2)?,
                })
            })
            .collect()
    }

    async fn expire_metric_chunks(&self, tier: i32, before_ms: i64) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let n = query("DELETE FROM metric_chunks WHERE tier = $1 AND end_ms < $2")
            .bind(tier)
            .bind(before_ms)
            .execute(&mut tx)
            .await?;
        tx.commit(&[]).await?;
        Ok(n)
    }
}
