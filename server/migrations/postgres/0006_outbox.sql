-- The outbox: the domain events that must never be lost (tweets posted and deleted,
-- follows and unfollows), each written in the same transaction as the change it
-- announces, so that an event exists exactly when its change committed. A consumer
-- (webhooks, realtime push) reads events from its position in outbox_positions and moves
-- the position after handling them, so it resumes where it stopped after a restart.
--
-- Concurrent transactions take ids in one order and may commit in another, so a consumer
-- that read "id > position" could step past an id whose transaction commits later. Each
-- row therefore records its transaction id, and consumers read in (tx, id) order only the
-- rows of transactions older than every transaction still running
-- (pg_snapshot_xmin(pg_current_snapshot())): no row can appear behind a position.
CREATE TABLE outbox (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tx         xid8 NOT NULL DEFAULT pg_current_xact_id(),
    event      jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX outbox_in_commit_order ON outbox (tx, id);

CREATE TABLE outbox_positions (
    consumer text PRIMARY KEY,
    tx       xid8 NOT NULL,
    id       bigint NOT NULL
);
