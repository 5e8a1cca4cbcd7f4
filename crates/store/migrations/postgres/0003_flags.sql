-- Feature flags: one flagd definition per key (JSON text), who changed it last and when.
CREATE TABLE flags (
    key        TEXT   PRIMARY KEY,
    definition TEXT   NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT   NOT NULL
);
