-- Tweets, and the Idempotency-Key records of the requests that create them.
CREATE TABLE tweets (
    -- UUIDv7, so it is also the keyset for every list: PostgreSQL compares uuid values
    -- bytewise, and a v7 id starts with its big-endian millisecond timestamp, so id order
    -- is time order (and an id range is a time range, which the timeline uses).
    id         uuid PRIMARY KEY,
    -- A tweet needs its author; the author's tweet_count moves in the same transaction.
    author_id  uuid NOT NULL REFERENCES users (id),
    text       text NOT NULL,
    created_at timestamptz NOT NULL
);
-- A user's tweets newest first, and the per-followee seek of the timeline.
CREATE INDEX tweets_by_author ON tweets (author_id, id);

-- Idempotency-Key records for POST /v1/tweets (draft-ietf-httpapi-idempotency-key-header).
CREATE TABLE idempotency_keys (
    -- No foreign key, as in SQLite: a record only remembers a response, and it expires.
    user_id           uuid NOT NULL,
    key               text NOT NULL,
    -- SHA-256 of the request body: the same key with another body is refused.
    request_hash      text NOT NULL,
    -- When the key was claimed, by the database's clock, so that every instance agrees
    -- on when a claim is abandoned and when a key expires.
    created_at        timestamptz NOT NULL,
    -- NULL while the first request is in flight; then the response to replay.
    response_status   integer,
    response_location text,
    response_body     text,
    -- The tweet the request created. Deleting the tweet forgets the key, so that a replay
    -- never answers 201 for a tweet that no longer exists.
    resource_id       uuid,
    -- One record per user and key: a concurrent claim of the same key waits for the
    -- first to commit and then conflicts (INSERT ... ON CONFLICT DO NOTHING), so only one
    -- of the requests runs.
    PRIMARY KEY (user_id, key)
);
-- Every claim deletes the keys older than a day; this keeps that delete a range scan.
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
-- Deleting a tweet deletes the key that created it, found through this index.
CREATE INDEX idempotency_keys_by_resource ON idempotency_keys (resource_id);
