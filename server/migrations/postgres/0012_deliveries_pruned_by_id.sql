-- Pruning takes the oldest deliveries by id (UUIDv7, whose first 48 bits are the
-- millisecond it was queued) through the primary key, so the index by age is one write
-- per queued delivery for nothing. Queueing is on the write path of every post with a
-- subscriber (issue 19's benchmark); dropping an index is safe for the previous release,
-- whose pruning only gets slower.
DROP INDEX webhook_deliveries_by_age;
