-- A metrics flush is written once per replica, tier and time: a flush retried after a commit that did reach the
-- database (the answer lost on the way) must not write its write-ahead rows twice, or a replay would count
-- their points twice into the rollups.
DELETE FROM metric_wal WHERE id NOT IN (SELECT MIN(id) FROM metric_wal GROUP BY source, tier, t_ms);
CREATE UNIQUE INDEX metric_wal_once ON metric_wal (source, tier, t_ms);
