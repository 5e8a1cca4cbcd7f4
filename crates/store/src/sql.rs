//! The timeline query as SQL, built once for both engines so their filters cannot drift apart.
//!
//! The query is driven by the most selective index that the filter allows: the full-text index when there are
//! search words, the kind-prefix table when there is a kind, else the events' own order. Each is walked by
//! sequence number, so "newest N" reads N rows, not every match.

use crate::db::{query, Conn, Row};
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

/// The database's current time in milliseconds since the epoch, as SQL.
pub(crate) fn now_ms(d: Dialect) -> &'static str {
    match d {
        Dialect::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
        Dialect::Postgres => "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::bigint",
    }
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

/// Placeholders and their values, in order.
struct Binds {
    d: Dialect,
    params: Vec<Param>,
}

impl Binds {
    fn new(d: Dialect) -> Self {
        Binds { d, params: Vec::new() }
    }

    fn ph(&mut self, p: Param) -> String {
        self.params.push(p);
        match self.d {
            Dialect::Sqlite => "?".to_string(),
            Dialect::Postgres => format!("${}", self.params.len()),
        }
    }

    fn text(&mut self, s: &str) -> String {
        self.ph(Param::Text(s.to_string()))
    }

    fn int(&mut self, i: i64) -> String {
        self.ph(Param::Int(i))
    }
}

/// The conditions on `e` other than search words and order: kind (when not driving), subject, actor, time.
fn conditions(filter: &EventFilter, b: &mut Binds, kind_drives: bool) -> Vec<String> {
    let mut w = Vec::new();
    if let (Some(kind), false) = (&filter.kind, kind_drives) {
        w.push(format!("EXISTS (SELECT 1 FROM event_kinds k WHERE k.seq = e.seq AND k.prefix = {})", b.text(kind)));
    }
    if let Some(s) = &filter.subject {
        w.push(format!("e.subject = {}", b.text(s)));
    }
    if let Some(a) = &filter.actor {
        w.push(format!("e.actor = {}", b.text(a)));
    }
    if let Some(t) = filter.since {
        w.push(format!("e.at >= {}", b.int(t.timestamp_millis())));
    }
    if let Some(t) = filter.until {
        w.push(format!("e.at < {}", b.int(t.timestamp_millis())));
    }
    w
}

fn where_sql(w: &[String]) -> String {
    if w.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", w.join(" AND "))
    }
}

/// How many of the newest candidates a PostgreSQL search checks one by one before it asks the GIN index. Big
/// enough that a common word fills a page from the window alone (the GIN path costs about 1 µs per match, so
/// it must only run for words that are rare); small enough to stay a few milliseconds.
pub(crate) const SEARCH_WINDOW: i64 = 5_000;

/// The statements that answer a timeline query: run them in order, concatenate, stop once `limit` rows are in
/// hand. Most queries are one statement; a PostgreSQL search is two (see below).
pub(crate) fn plan(filter: &EventFilter, d: Dialect, order: Order, limit: i64) -> Vec<Select> {
    if d == Dialect::Postgres && !filter.words.is_empty() {
        if let Order::NewestBefore(before) = order {
            return postgres_search(filter, before, limit);
        }
    }
    vec![select(filter, d, order, limit)]
}

/// A newest-first search on PostgreSQL. Left to itself the planner walks the primary key backwards and filters,
/// which is fast for common words and reads the whole table for a word that is rare or absent (0.4 s at a
/// million events). So: first the newest [`SEARCH_WINDOW`] candidates (of the filtered kind, if any), checked in
/// order (bounded work, enough for any common word); then, only if the page is not full, the GIN index for the
/// older matches (few, since the word was rare among the newest).
fn postgres_search(filter: &EventFilter, before: Option<i64>, limit: i64) -> Vec<Select> {
    let tsquery = tsquery(&filter.words);
    let cols = columns(Dialect::Postgres);
    // The newest candidates: `seq` (and `search` when it comes from `events` itself).
    let window = |b: &mut Binds| -> (String, bool) {
        match &filter.kind {
            Some(kind) => {
                let mut w = vec![format!("k.prefix = {}", b.text(kind))];
                if let Some(s) = before {
                    w.push(format!("k.seq < {}", b.int(s)));
                }
                (
                    format!(
                        "SELECT k.seq FROM event_kinds k{} ORDER BY k.seq DESC LIMIT {SEARCH_WINDOW}",
                        where_sql(&w)
                    ),
                    false,
                )
            }
            None => {
                let w: Vec<String> = before.map(|s| format!("seq < {}", b.int(s))).into_iter().collect();
                (
                    format!("SELECT seq, search FROM events{} ORDER BY seq DESC LIMIT {SEARCH_WINDOW}", where_sql(&w)),
                    true,
                )
            }
        }
    };

    let mut b = Binds::new(Dialect::Postgres);
    let (recent, has_search) = window(&mut b);
    let col = if has_search { "r.search" } else { "e.search" };
    let mut w = vec![format!("{col} @@ {}::tsquery", b.text(&tsquery))];
    // The kind is already the window's own filter.
    w.extend(conditions(filter, &mut b, true));
    let lim = b.int(limit);
    let first = Select {
        sql: format!(
            "WITH recent AS MATERIALIZED ({recent}) \
             SELECT {cols} FROM recent r JOIN events e ON e.seq = r.seq{} ORDER BY e.seq DESC LIMIT {lim}",
            where_sql(&w)
        ),
        params: b.params,
    };

    let mut b = Binds::new(Dialect::Postgres);
    let q = b.text(&tsquery);
    let (recent, _) = window(&mut b);
    let w = conditions(filter, &mut b, false);
    let lim = b.int(limit);
    let older = Select {
        sql: format!(
            "WITH matched AS MATERIALIZED (SELECT seq FROM events WHERE search @@ {q}::tsquery \
                 AND seq < (SELECT COALESCE(MIN(seq), 0) FROM ({recent}) w)) \
             SELECT {cols} FROM matched m JOIN events e ON e.seq = m.seq{} ORDER BY e.seq DESC LIMIT {lim}",
            where_sql(&w)
        ),
        params: b.params,
    };
    vec![first, older]
}

/// A PostgreSQL tsquery matching every word as a lexeme or a lexeme's beginning. Written as tsquery text, not
/// through `to_tsquery`, so the database's parser and locale play no part; words are letters and digits only, so
/// quoting them cannot be escaped from.
fn tsquery(words: &[String]) -> String {
    words.iter().map(|w| format!("'{w}':*")).collect::<Vec<_>>().join(" & ")
}

/// One statement, driven by the most selective index the filter allows.
fn select(filter: &EventFilter, d: Dialect, order: Order, limit: i64) -> Select {
    let mut b = Binds::new(d);
    let cols = columns(d);
    let mut w: Vec<String> = Vec::new();
    let kind_drives = filter.kind.is_some() && filter.words.is_empty();
    let (from, seq_col) = if !filter.words.is_empty() && d == Dialect::Sqlite {
        let expr = filter.words.iter().map(|w| format!("\"{w}\"*")).collect::<Vec<_>>().join(" ");
        w.push(format!("events_fts MATCH {}", b.text(&expr)));
        ("events_fts f JOIN events e ON e.seq = f.rowid", "f.rowid")
    } else if let (Some(kind), true) = (&filter.kind, kind_drives) {
        w.push(format!("k.prefix = {}", b.text(kind)));
        ("event_kinds k JOIN events e ON e.seq = k.seq", "k.seq")
    } else {
        ("events e", "e.seq")
    };
    if !filter.words.is_empty() && d == Dialect::Postgres {
        w.push(format!("e.search @@ {}::tsquery", b.text(&tsquery(&filter.words))));
    }
    w.extend(conditions(filter, &mut b, kind_drives));
    let dir = match order {
        Order::NewestBefore(Some(before)) => {
            w.push(format!("{seq_col} < {}", b.int(before)));
            "DESC"
        }
        Order::NewestBefore(None) => "DESC",
        Order::OldestAfter(after) => {
            w.push(format!("{seq_col} > {}", b.int(after)));
            "ASC"
        }
    };
    let lim = b.int(limit);
    Select {
        sql: format!("SELECT {cols} FROM {from}{} ORDER BY {seq_col} {dir} LIMIT {lim}", where_sql(&w)),
        params: b.params,
    }
}

/// Runs a timeline statement.
pub(crate) async fn fetch(on: Conn<'_>, select: Select) -> crate::Result<Vec<crew_core::Event>> {
    let mut q = query(select.sql);
    for p in select.params {
        q = match p {
            Param::Text(s) => q.bind(s),
            Param::Int(i) => q.bind(i),
        };
    }
    let rows = q.fetch_all(on).await?;
    rows.iter().map(row_to_event).collect()
}

/// Reads an event from a row of [`columns`].
pub(crate) fn row_to_event(row: &Row) -> crate::Result<crew_core::Event> {
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
