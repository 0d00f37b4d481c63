-- Requests admitted per API key per UTC day: quotas survive restarts, and usage reports
-- (AWS GetUsage's shape) read it. Written in batches about once a second.
CREATE TABLE usage (
    key_id TEXT NOT NULL,
    -- YYYY-MM-DD, UTC.
    day    TEXT NOT NULL,
    used   INTEGER NOT NULL CHECK (used >= 0),
    PRIMARY KEY (key_id, day)
) STRICT, WITHOUT ROWID;
