-- The outbox: the domain events that must never be lost (tweets posted and deleted,
-- follows and unfollows), each written in the same transaction as the change it
-- announces, so that an event exists exactly when its change committed. A consumer
-- (webhooks, realtime push) reads events in id order from its position in
-- outbox_positions and moves the position after handling them, so it resumes where it
-- stopped after a restart. SQLite has one writer at a time, so ids commit in order.
CREATE TABLE outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The event as JSON, with its "type" (e.g. "tweet.created").
    event      TEXT NOT NULL,
    created_at TEXT NOT NULL
) STRICT;

CREATE TABLE outbox_positions (
    consumer TEXT PRIMARY KEY NOT NULL,
    -- The id of the last event the consumer handled.
    position INTEGER NOT NULL
) STRICT;
