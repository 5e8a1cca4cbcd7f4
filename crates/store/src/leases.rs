//! Leases: a named job held by one replica at a time until its lease runs out.

use crate::db::{query, Backend};
use crate::{LeaseStore, Result};
use async_trait::async_trait;

#[async_trait]
impl<B: Backend> LeaseStore for B {
    async fn try_lease(&self, name: &str, holder: &str, ttl: std::time::Duration) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let now = crate::to_millis(chrono::Utc::now());
        let until = now + i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2);
        // One statement: insert, or take over when it is ours or expired; a row changed means we hold it.
        let changed = query(
            "INSERT INTO leases (name, holder, until_ms) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, until_ms = excluded.until_ms \
             WHERE leases.holder = excluded.holder OR leases.until_ms < $4",
        )
        .bind(name)
        .bind(holder)
        .bind(until)
        .bind(now)
        .execute(&mut tx)
        .await?;
        tx.commit(&[]).await?;
        Ok(changed == 1)
    }
}
