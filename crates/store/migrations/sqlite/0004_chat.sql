-- Chat identities linked to crew users by `crew chat link` (beside [[chat.users]] in crew.toml): a hostmask
-- pattern or account:NAME, and the crew user (a token's name) who speaks through it.
CREATE TABLE chat_links (
    identity   TEXT   PRIMARY KEY,
    user_name  TEXT   NOT NULL,
    created_at INTEGER NOT NULL,
    created_by TEXT   NOT NULL
);
