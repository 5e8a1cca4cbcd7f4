-- Flags' launch plans and ramps (postgres). Times are Unix milliseconds.

-- A flag's launch plan (owner, risks, contingency, runbook, the series to watch), as JSON.
CREATE TABLE flag_plans (
    flag       TEXT   PRIMARY KEY,
    plan       TEXT   NOT NULL,
    updated_ms BIGINT NOT NULL,
    updated_by TEXT   NOT NULL
);

-- A flag's ramp: its steps (a JSON array of percents), the step live now and when it went live, and when the
-- judge is next due. A worker claims due ramps (pushing due_ms on by a lease and counting the claim) and
-- commits the next step, deadline and events only while its claim is still the ramp's latest.
CREATE TABLE flag_ramps (
    id          BIGSERIAL PRIMARY KEY,
    flag        TEXT    NOT NULL,
    steps       TEXT    NOT NULL,
    every_ms    BIGINT  NOT NULL,
    step        BIGINT NOT NULL,
    -- running | done | failed | cancelled
    status      TEXT    NOT NULL,
    reason      TEXT    NOT NULL,
    started_by  TEXT    NOT NULL,
    started_ms  BIGINT  NOT NULL,
    step_ms     BIGINT  NOT NULL,
    due_ms      BIGINT,
    claim       BIGINT  NOT NULL DEFAULT 0,
    -- The last verdict in short (JSON: verdict, why, action, at), for the flag's page and the API.
    last        TEXT,
    ended_ms    BIGINT
);
-- At most one running ramp per flag, across replicas.
CREATE UNIQUE INDEX flag_ramps_running ON flag_ramps (flag) WHERE status = 'running';
CREATE INDEX flag_ramps_due ON flag_ramps (due_ms);
CREATE INDEX flag_ramps_flag ON flag_ramps (flag, id);
