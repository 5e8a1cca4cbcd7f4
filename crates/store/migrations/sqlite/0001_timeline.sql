-- The timeline, tokens and web sessions (SQLite).
-- Times are integer milliseconds since the Unix epoch (UTC) in both engines.
CREATE TABLE events (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    id      TEXT    NOT NULL UNIQUE,
    at      INTEGER NOT NULL,
    actor   TEXT    NOT NULL,
    via     TEXT    NOT NULL,
    kind    TEXT    NOT NULL,
    subject TEXT    NOT NULL,
    summary TEXT    NOT NULL,
    data    TEXT    NOT NULL,
    links   TEXT    NOT NULL
);
CREATE INDEX events_subject ON events (subject, seq);
CREATE INDEX events_actor ON events (actor, seq);
CREATE INDEX events_at ON events (at);

-- Every dotted prefix of each event's kind, so `kind=deploy` is one index range walked newest first.
CREATE TABLE event_kinds (
    prefix TEXT    NOT NULL,
    seq    INTEGER NOT NULL,
    PRIMARY KEY (prefix, seq)
) WITHOUT ROWID;

-- Full-text search over summary and subject; the content lives in `events`.
CREATE VIRTUAL TABLE events_fts USING fts5 (
    summary, subject,
    content = 'events', content_rowid = 'seq',
    tokenize = 'unicode61 remove_diacritics 0'
);
-- Kept in step by SQLite itself, whatever inserts the event. Events are never updated; retention deletes.
CREATE TRIGGER events_fts_insert AFTER INSERT ON events BEGIN
    INSERT INTO events_fts (rowid, summary, subject) VALUES (new.seq, new.summary, new.subject);
END;
CREATE TRIGGER events_fts_delete AFTER DELETE ON events BEGIN
    INSERT INTO events_fts (events_fts, rowid, summary, subject) VALUES ('delete', old.seq, old.summary, old.subject);
END;

CREATE TABLE tokens (
    name       TEXT    PRIMARY KEY,
    role       TEXT    NOT NULL,
    hash       TEXT    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    created_by TEXT    NOT NULL
);

CREATE TABLE sessions (
    hash       TEXT    PRIMARY KEY,
    token_name TEXT    NOT NULL REFERENCES tokens (name) ON DELETE CASCADE,
    csrf       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
