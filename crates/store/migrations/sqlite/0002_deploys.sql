-- Deploys (and rollbacks), their logs, and environment locks (SQLite).
CREATE TABLE deploys (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    app         TEXT    NOT NULL,
    environment TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    revision    TEXT    NOT NULL,
    previous    TEXT,
    release     TEXT    NOT NULL,
    commits     INTEGER NOT NULL,
    message     TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    via         TEXT    NOT NULL,
    status      TEXT    NOT NULL,
    started_at  INTEGER NOT NULL,
    finished_at INTEGER,
    hosts       TEXT    NOT NULL,
    error       TEXT,
    -- Written every few seconds by the server running the deploy; a running deploy whose heartbeat stopped
    -- was cut short (its server died) and is marked interrupted.
    heartbeat   INTEGER
);
CREATE INDEX deploys_environment ON deploys (environment, id);

CREATE TABLE deploy_log (
    deploy_id INTEGER NOT NULL,
    n         INTEGER NOT NULL,
    at        INTEGER NOT NULL,
    line      TEXT    NOT NULL,
    PRIMARY KEY (deploy_id, n)
);

-- One manual lock and one deploy lock per environment at most: the primary key makes taking one atomic.
CREATE TABLE locks (
    environment TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    holder      TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    since       INTEGER NOT NULL,
    deploy_id   INTEGER,
    PRIMARY KEY (environment, kind)
);
