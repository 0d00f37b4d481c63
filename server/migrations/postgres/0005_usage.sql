-- Requests admitted per API key per UTC day: quotas survive restarts and are shared by
-- every instance, and usage reports (AWS GetUsage's shape) read it. Each instance adds
-- its counts in batches, about once a second.
CREATE TABLE usage (
    -- No foreign key, as in SQLite: counts are written a moment after the requests they
    -- count, and a key deleted in between must not make the whole batch fail.
    key_id uuid NOT NULL,
    -- The UTC day.
    day    date NOT NULL,
    -- A count of requests; a negative one would be a bug.
    used   bigint NOT NULL CHECK (used >= 0),
    -- One row per key and day, which batches add to (INSERT ... ON CONFLICT DO UPDATE);
    -- a quota sums a key's recent days through this index.
    PRIMARY KEY (key_id, day)
);
