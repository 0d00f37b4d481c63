-- Realtime stream (issue 20): how many stream sockets each of a plan's keys may hold open
-- at once, across every instance. A defaulted column: additive, the previous release
-- never reads it. Bounded so that a typo cannot hand one partner unbounded sockets.
ALTER TABLE usage_plans
    ADD COLUMN stream_connection_limit INTEGER NOT NULL DEFAULT 100
        CHECK (stream_connection_limit BETWEEN 0 AND 100000);
