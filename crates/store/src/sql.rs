//! The timeline query as SQL, built once for both engines so their filters cannot drift apart.
//!
//! The query is driven by the most selective index that the filter allows: the full-text index when there are
//! search words, the kind-prefix table when there is a kind, else the events' own order. Each is walked by
//! sequence number, so "newest N" reads N rows, not every match.

use crew_core::EventFilter;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    Sqlite,
    Postgres,
}

/// A bound value, in order of appearance.
pub(crate) enum Param {
    Text(String),
    Int(i64),
}

/// Which way to walk the timeline.
pub(crate) enum Order {
    /// Newest first, strictly before this sequence number if given.
    NewestBefore(Option<i64>),
    /// Oldest first, strictly after this sequence number.
    OldestAfter(i64),
}

pub(crate) struct Select {
    pub sql: String,
    pub params: Vec<Param>,
}

/// Columns every event query returns, in the order `row_to_event` reads them.
pub(crate) fn columns(d: Dialect) -> &'static str {
    match d {
        Dialect::Sqlite => "e.seq, e.id, e.at, e.actor, e.via, e.kind, e.subject, e.summary, e.data, e.links",
        Dialect::Postgres => {
            "e.seq, e.id, e.at, e.actor, e.via, e.kind, e.subject, e.summary, e.data::text, e.links::text"
        }
    }
}

pub(crate) fn select(filter: &EventFilter, d: Dialect, order: Order, limit: i64) -> Select {
    let mut params = Vec::new();
    let ph = |p: Param, params: &mut Vec<Param>| -> String {
        params.push(p);
        match d {
            Dialect::Sqlite => "?".to_string(),
            Dialect::Postgres => format!("${}", params.len()),
        }
    };
    let mut wheres: Vec<String> = Vec::new();
    let cols = columns(d);

    // Choose the driving table.
    let (from, seq_col) = if !filter.words.is_empty() && d == Dialect::Sqlite {
        let expr = filter.words.iter().map(|w| format!("\"{w}\"*")).collect::<Vec<_>>().join(" ");
        wheres.push(format!("events_fts MATCH {}", ph(Param::Text(expr), &mut params)));
        ("events_fts f JOIN events e ON e.seq = f.rowid".to_string(), "f.rowid")
    } else if let (Some(kind), true) = (&filter.kind, filter.words.is_empty()) {
        wheres.push(format!("k.prefix = {}", ph(Param::Text(kind.clone()), &mut params)));
        ("event_kinds k JOIN events e ON e.seq = k.seq".to_string(), "k.seq")
    } else {
        ("events e".to_string(), "e.seq")
    };

    if !filter.words.is_empty() {
        if d == Dialect::Postgres {
            let expr = filter.words.iter().map(|w| format!("{w}:*")).collect::<Vec<_>>().join(" & ");
            wheres.push(format!("e.search @@ to_tsquery('simple', {})", ph(Param::Text(expr), &mut params)));
        }
        if let Some(kind) = &filter.kind {
            wheres.push(format!(
                "EXISTS (SELECT 1 FROM event_kinds k WHERE k.seq = e.seq AND k.prefix = {})",
                ph(Param::Text(kind.clone()), &mut params)
            ));
        }
    }
    if let Some(s) = &filter.subject {
        wheres.push(format!("e.subject = {}", ph(Param::Text(s.clone()), &mut params)));
    }
    if let Some(a) = &filter.actor {
        wheres.push(format!("e.actor = {}", ph(Param::Text(a.clone()), &mut params)));
    }
    if let Some(t) = filter.since {
        wheres.push(format!("e.at >= {}", ph(Param::Int(t.timestamp_millis()), &mut params)));
    }
    if let Some(t) = filter.until {
        wheres.push(format!("e.at < {}", ph(Param::Int(t.timestamp_millis()), &mut params)));
    }
    let dir = match order {
        Order::NewestBefore(Some(before)) => {
            wheres.push(format!("{seq_col} < {}", ph(Param::Int(before), &mut params)));
            "DESC"
        }
        Order::NewestBefore(None) => "DESC",
        Order::OldestAfter(after) => {
            wheres.push(format!("{seq_col} > {}", ph(Param::Int(after), &mut params)));
            "ASC"
        }
    };
    let lim = ph(Param::Int(limit), &mut params);
    let where_sql = if wheres.is_empty() { String::new() } else { format!(" WHERE {}", wheres.join(" AND ")) };
    Select { sql: format!("SELECT {cols} FROM {from}{where_sql} ORDER BY {seq_col} {dir} LIMIT {lim}"), params }
}

/// Reads an event from a row of [`columns`].
pub(crate) fn row_to_event<'r, R>(row: &'r R) -> crate::Result<crew_core::Event>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    use crate::StoreError::Corrupt;
    let via: String = row.try_get(4)?;
    let data: String = row.try_get(8)?;
    let links: String = row.try_get(9)?;
    Ok(crew_core::Event {
        seq: row.try_get(0)?,
        id: row.try_get(1)?,
        at: crate::from_millis(row.try_get(2)?)?,
        actor: crew_core::Actor { name: row.try_get(3)?, via: via.parse().map_err(Corrupt)? },
        kind: row.try_get(5)?,
        subject: row.try_get(6)?,
        summary: row.try_get(7)?,
        data: serde_json::from_str(&data).map_err(|e| Corrupt(format!("event data: {e}")))?,
        links: serde_json::from_str(&links).map_err(|e| Corrupt(format!("event links: {e}")))?,
    })
}

/// Reads a token from columns `name, role, created_at, created_by` starting at `at`.
pub(crate) fn row_to_token<'r, R>(row: &'r R) -> crate::Result<crate::TokenInfo>
where
    R: sqlx::Row,
    usize: sqlx::ColumnIndex<R>,
    i64: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
    String: sqlx::Decode<'r, R::Database> + sqlx::Type<R::Database>,
{
    let role: String = row.try_get(1)?;
    Ok(crate::TokenInfo {
        name: row.try_get(0)?,
        role: role.parse().map_err(crate::StoreError::Corrupt)?,
        created_at: crate::from_millis(row.try_get(2)?)?,
        created_by: row.try_get(3)?,
    })
}

/// The SQL of the token and session statements, the same text for both engines (`$n` placeholders, which
/// SQLite also accepts).
pub(crate) mod stmt {
    pub const INSERT_TOKEN: &str =
        "INSERT INTO tokens (name, role, hash, created_at, created_by) VALUES ($1, $2, $3, $4, $5)";
    pub const TOKEN_EXISTS: &str = "SELECT 1 FROM tokens WHERE name = $1";
    pub const DELETE_TOKEN: &str = "DELETE FROM tokens WHERE name = $1";
    pub const DELETE_TOKEN_SESSIONS: &str = "DELETE FROM sessions WHERE token_name = $1";
    pub const TOKEN_BY_HASH: &str = "SELECT name, role, created_at, created_by FROM tokens WHERE hash = $1";
    pub const TOKENS: &str = "SELECT name, role, created_at, created_by FROM tokens ORDER BY name";
    pub const INSERT_SESSION: &str =
        "INSERT INTO sessions (hash, token_name, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)";
    pub const SESSION: &str = "SELECT t.name, t.role, t.created_at, t.created_by, s.csrf, s.expires_at \
         FROM sessions s JOIN tokens t ON t.name = s.token_name WHERE s.hash = $1 AND s.expires_at > $2";
    pub const DELETE_SESSION: &str = "DELETE FROM sessions WHERE hash = $1";
    pub const DELETE_EXPIRED_SESSIONS: &str = "DELETE FROM sessions WHERE expires_at <= $1";
    pub const EVENT_BY_ID: &str = "WHERE e.id = $1";
    pub const COUNT_EVENTS: &str = "SELECT COUNT(*) FROM events";
    pub const COUNT_TOKENS: &str = "SELECT COUNT(*) FROM tokens";
}
