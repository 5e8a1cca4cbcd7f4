-- Experiments' figures kept as they are written, so results read a few rows per minute whatever the size.
-- Users first exposed, per experiment (flag, phase), variant and minute (Unix ms / 60000).
CREATE TABLE experiment_tally (
    flag     TEXT   NOT NULL,
    phase    BIGINT NOT NULL,
    variant  TEXT   NOT NULL,
    minute   BIGINT NOT NULL,
    users    BIGINT NOT NULL,
    PRIMARY KEY (flag, phase, variant, minute)
);
-- Exposed users converted on a metric, per minute of their first conversion after exposure.
CREATE TABLE experiment_converted (
    flag     TEXT   NOT NULL,
    phase    BIGINT NOT NULL,
    metric   TEXT   NOT NULL,
    variant  TEXT   NOT NULL,
    minute   BIGINT NOT NULL,
    users    BIGINT NOT NULL,
    PRIMARY KEY (flag, phase, metric, variant, minute)
);
-- Which exposed users are counted as converted on a metric: each once.
CREATE TABLE experiment_attributed (
    flag      TEXT   NOT NULL,
    phase     BIGINT NOT NULL,
    metric    TEXT   NOT NULL,
    user_key  TEXT   NOT NULL,
    PRIMARY KEY (flag, phase, metric, user_key)
);
CREATE INDEX experiment_exposures_by_user ON experiment_exposures (user_key);
CREATE INDEX experiment_conversions_by_user ON experiment_conversions (user_key);
