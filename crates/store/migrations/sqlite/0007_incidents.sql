-- Incidents and on-call (sqlite). Times are Unix milliseconds.
CREATE TABLE incidents (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    -- Deduplication: alerts with the same key join the open incident (or reopen one resolved within the hour).
    key           TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    severity      TEXT    NOT NULL,
    summary       TEXT    NOT NULL,
    -- alert | alertmanager | pagerduty | person | drill
    source        TEXT    NOT NULL,
    escalation    TEXT,
    -- The escalation policy as it was when the incident triggered: a config change never alters a running one.
    policy        TEXT,
    -- The next step of the policy (its index in steps × (repeat + 1)), and when it is due. An acknowledged
    -- incident's due time is when its acknowledgement times out. NULL: nothing is due.
    step          INTEGER NOT NULL DEFAULT 0,
    due_ms        INTEGER,
    runbook       TEXT,
    details       TEXT    NOT NULL,
    opened_by     TEXT    NOT NULL,
    triggered_ms  INTEGER NOT NULL,
    acked_ms      INTEGER,
    acked_by      TEXT,
    resolved_ms   INTEGER,
    resolved_by   TEXT,
    alerts        INTEGER NOT NULL DEFAULT 1,
    drill         INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX incidents_key ON incidents (key, id);
CREATE INDEX incidents_due ON incidents (due_ms);
CREATE INDEX incidents_status ON incidents (status, id);
CREATE INDEX incidents_opened_by ON incidents (opened_by, status);

-- Which source event (an alert.fired, an Alertmanager notification) already reached which incident, so that a
-- replica that hears it too, or a sender that retries, does not add it twice.
CREATE TABLE incident_sources (
    source_id   TEXT PRIMARY KEY,
    incident_id INTEGER NOT NULL
);

-- Overrides of on-call schedules: someone else is on call in [from, until).
CREATE TABLE oncall_overrides (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    schedule    TEXT    NOT NULL,
    user_name   TEXT    NOT NULL,
    from_ms     INTEGER NOT NULL,
    until_ms    INTEGER NOT NULL,
    created_by  TEXT    NOT NULL,
    created_ms  INTEGER NOT NULL
);
CREATE INDEX oncall_overrides_schedule ON oncall_overrides (schedule, until_ms);

-- The secret of each iCal feed (a schedule's or a person's), by the SHA-256 of the key; rotating replaces it.
CREATE TABLE oncall_feeds (
    name     TEXT PRIMARY KEY,
    key_hash TEXT NOT NULL
);

-- Secrets the server keeps for itself and shares across replicas (the key that signs acknowledgement links).
CREATE TABLE server_secrets (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Each incident's blameless postmortem: drafted from the timeline at resolve, edited by people (Markdown).
CREATE TABLE postmortems (
    incident_id INTEGER PRIMARY KEY,
    -- draft | in_review | published
    state       TEXT    NOT NULL,
    markdown    TEXT    NOT NULL,
    updated_by  TEXT    NOT NULL,
    updated_ms  INTEGER NOT NULL
);
