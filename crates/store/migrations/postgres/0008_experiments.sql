-- Experiments: exposures of split flags and conversions (tracking events). Times are Unix milliseconds.
-- An experiment is a flag and a phase: the sequence number of the flag.changed event that made the definition.
CREATE TABLE experiment_exposures (
    flag        TEXT    NOT NULL,
    phase       BIGINT  NOT NULL,
    user_key    TEXT    NOT NULL,
    variant     TEXT    NOT NULL,
    exposed_ms  BIGINT  NOT NULL,
    PRIMARY KEY (flag, phase, user_key)
);
-- Users per experiment, kept with the exposures so the cap is checked without a count.
CREATE TABLE experiment_sizes (
    flag   TEXT   NOT NULL,
    phase  BIGINT NOT NULL,
    users  BIGINT NOT NULL,
    PRIMARY KEY (flag, phase)
);
-- A user's conversions on a metric: the first and the last, how many and the sum of their values.
CREATE TABLE experiment_conversions (
    metric     TEXT             NOT NULL,
    user_key   TEXT             NOT NULL,
    first_ms   BIGINT           NOT NULL,
    last_ms    BIGINT           NOT NULL,
    count      BIGINT           NOT NULL,
    value_sum  DOUBLE PRECISION NOT NULL,
    PRIMARY KEY (metric, user_key)
);
