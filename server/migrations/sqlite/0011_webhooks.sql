-- Webhooks (issue 19): partners' subscriptions to the outbox's events, and the deliveries
-- the outbox consumer queues for them (src/infra/store/webhooks.rs). Two new tables and a
-- defaulted column: additive, the previous release never reads them.
--
-- Every machine time here (when a delivery is due, when a lease or a breaker ends, ...) is
-- an INTEGER of milliseconds since the Unix epoch, as in PostgreSQL's tables, so that the
-- worker's comparisons ("due at or before now") are the same SQL on both databases and
-- compare numbers, never text whose fractional seconds vary in length.

-- How many subscriptions each of a plan's keys may hold; existing plans get the default.
-- Bounded so that a typo cannot hand one partner an unbounded fan-out.
ALTER TABLE usage_plans
    ADD COLUMN webhook_limit INTEGER NOT NULL DEFAULT 10
        CHECK (webhook_limit BETWEEN 0 AND 1000);

CREATE TABLE webhooks (
    id                         BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    -- A subscription is its partner's: it goes when the key goes.
    api_key_id                 BLOB NOT NULL REFERENCES api_keys (id) ON DELETE CASCADE,
    url                        TEXT NOT NULL,
    -- The event types' wire names joined by ',' (none contains a comma), matched as
    -- ',' || event_types || ',' so that one name never matches part of another. Text
    -- rather than a table of its own: a subscription is read whole, and there are four
    -- types.
    event_types                TEXT NOT NULL,
    -- Only the events of these users, their ids joined by ','; NULL for every user (the
    -- event is matched against it in the process, not in SQL).
    user_ids                   TEXT,
    description                TEXT,
    enabled                    INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    -- Why the server disabled it ('gone': the endpoint answered 410 Gone); NULL when the
    -- partner did, or when it is enabled.
    disabled_reason            TEXT,
    -- The signing secret, kept in plaintext: unlike an API key's secret it is not checked
    -- against what a client sends but is the HMAC key every message is signed with, so the
    -- server must be able to read it back (a hash would be useless).
    secret                     TEXT NOT NULL,
    -- The secret a rotation replaced, which keeps signing (beside the new one) until
    -- previous_secret_expires_at, so that the partner can switch without losing messages.
    previous_secret            TEXT,
    previous_secret_expires_at INTEGER,
    -- The circuit breaker: failures in a row, and while it is open, until when nothing is
    -- sent (the worker does not lease the subscription before then).
    consecutive_failures       INTEGER NOT NULL DEFAULT 0 CHECK (consecutive_failures >= 0),
    open_until                 INTEGER,
    -- A worker's lease on the subscription: it alone sends the subscription's deliveries,
    -- one at a time and in order, until lease_until. A time and a random token rather than
    -- a lock held by a connection, so that a lease outlives no crash by more than its
    -- length, and a worker whose lease was taken over cannot renew or release it.
    lease_token                BLOB CHECK (length(lease_token) = 16),
    lease_until                INTEGER,
    created_at                 TEXT NOT NULL
) STRICT;
-- A key's subscriptions newest first (the API's list, and the count against the limit).
CREATE INDEX webhooks_by_key ON webhooks (api_key_id, id);

CREATE TABLE webhook_deliveries (
    -- UUIDv7 from the caller: the message's `webhook-id` on every attempt, and the keyset
    -- of the list, newest first.
    id                    BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    webhook_id            BLOB NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
    event_type            TEXT NOT NULL,
    -- The JSON body exactly as it is signed and sent, so that a retry sends the same bytes.
    payload               TEXT NOT NULL,
    -- The outbox event it announces; NULL for a ping.
    outbox_id             INTEGER,
    status                TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts              INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- When it is due, while it is pending.
    next_attempt_at       INTEGER,
    -- Only the last attempt is kept: what the partner's console shows.
    last_attempt_at       INTEGER,
    last_status_code      INTEGER,
    last_error            TEXT,
    last_latency_ms       INTEGER,
    last_response_excerpt TEXT,
    created_at            INTEGER NOT NULL,
    delivered_at          INTEGER,
    -- The outbox is read at least once: an event read again after a crash queues nothing
    -- new (INSERT ... ON CONFLICT DO NOTHING). Pings (NULL) never collide.
    UNIQUE (webhook_id, outbox_id)
) STRICT;
-- A subscription's deliveries newest first.
CREATE INDEX webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, id);
-- What the worker looks for: a subscription's due deliveries in the order it sends them.
-- Partial, so that the delivered and failed ones (nearly all of them) do not weigh on it.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (webhook_id, next_attempt_at, id)
    WHERE status = 'pending';
-- Pruning takes the oldest first.
CREATE INDEX webhook_deliveries_by_age ON webhook_deliveries (created_at);
