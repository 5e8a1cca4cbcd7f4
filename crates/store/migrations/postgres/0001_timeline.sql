-- The timeline, tokens and web sessions (PostgreSQL).
-- Times are integer milliseconds since the Unix epoch (UTC) in both engines.
CREATE TABLE events (
    seq     BIGSERIAL PRIMARY KEY,
    id      TEXT   NOT NULL UNIQUE,
    at      BIGINT NOT NULL,
    actor   TEXT   NOT NULL,
    via     TEXT   NOT NULL,
    kind    TEXT   NOT NULL,
    subject TEXT   NOT NULL,
    summary TEXT   NOT NULL,
    data    JSONB  NOT NULL,
    links   JSONB  NOT NULL,
    -- The lowercase words of summary and subject, split by crew (crew_core::search_words) rather than by the
    -- database, so that search does not depend on the database's locale and agrees with SQLite's FTS5.
    words   TEXT   NOT NULL,
    search  TSVECTOR GENERATED ALWAYS AS (array_to_tsvector(string_to_array(words, ' '))) STORED
);
CREATE INDEX events_subject ON events (subject, seq);
CREATE INDEX events_actor ON events (actor, seq);
CREATE INDEX events_at ON events (at);
CREATE INDEX events_search ON events USING GIN (search);

-- Every dotted prefix of each event's kind, so `kind=deploy` is one index range walked newest first.
CREATE TABLE event_kinds (
    prefix TEXT   NOT NULL,
    seq    BIGINT NOT NULL,
    PRIMARY KEY (prefix, seq)
);

CREATE TABLE tokens (
    name       TEXT   PRIMARY KEY,
    role       TEXT   NOT NULL,
    hash       TEXT   NOT NULL UNIQUE,
    created_at BIGINT NOT NULL,
    created_by TEXT   NOT NULL
);

CREATE TABLE sessions (
    hash       TEXT   PRIMARY KEY,
    token_name TEXT   NOT NULL REFERENCES tokens (name) ON DELETE CASCADE,
    csrf       TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
