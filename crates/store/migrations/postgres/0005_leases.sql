-- Leases that keep a scheduled job to one replica at a time (the infra drift check, later alert evaluation):
-- the holder (a server process's id) and until when, in Unix milliseconds. A holder renews before it expires;
-- when it dies, another replica takes the lease once it has expired.
CREATE TABLE leases (
    name     TEXT    PRIMARY KEY,
    holder   TEXT    NOT NULL,
    until_ms BIGINT NOT NULL
);
