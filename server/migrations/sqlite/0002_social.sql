-- Follows, tweets, and the counters on users that profiles show.

-- Counters are kept in the same transaction as the rows they count, so they are exact
-- however many follows and tweets happen at once (SQLite serialises writers).
ALTER TABLE users ADD COLUMN follower_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN following_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN tweet_count INTEGER NOT NULL DEFAULT 0;

CREATE TABLE follows (
    -- The rowid orders edges by when they were made: lists show the newest follow first
    -- and page by it.
    id          INTEGER PRIMARY KEY,
    follower_id TEXT NOT NULL REFERENCES users (id),
    followee_id TEXT NOT NULL REFERENCES users (id),
    created_at  TEXT NOT NULL,
    -- One edge per pair makes following idempotent; this index also lists whom a user
    -- follows, which the timeline reads.
    UNIQUE (follower_id, followee_id),
    CHECK (follower_id <> followee_id)
) STRICT;
CREATE INDEX follows_by_followee ON follows (followee_id, id);
CREATE INDEX follows_by_follower ON follows (follower_id, id);

CREATE TABLE tweets (
    -- UUIDv7 text sorts by creation time, so it is also the keyset for every list.
    id         TEXT PRIMARY KEY NOT NULL,
    author_id  TEXT NOT NULL REFERENCES users (id),
    text       TEXT NOT NULL,
    created_at TEXT NOT NULL
) STRICT;
-- A user's tweets newest first, and the per-followee seek of the timeline.
CREATE INDEX tweets_by_author ON tweets (author_id, id);

-- Idempotency-Key records for POST /v1/tweets (draft-ietf-httpapi-idempotency-key-header).
CREATE TABLE idempotency_keys (
    user_id           TEXT NOT NULL,
    key               TEXT NOT NULL,
    -- SHA-256 of the request body: the same key with another body is refused.
    request_hash      TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    -- NULL while the first request is in flight; then the response to replay.
    response_status   INTEGER,
    response_location TEXT,
    response_body     TEXT,
    -- The tweet the request created. Deleting the tweet forgets the key, so that a replay
    -- never answers 201 for a tweet that no longer exists.
    resource_id       TEXT,
    PRIMARY KEY (user_id, key)
) STRICT;
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
CREATE INDEX idempotency_keys_by_resource ON idempotency_keys (resource_id);
