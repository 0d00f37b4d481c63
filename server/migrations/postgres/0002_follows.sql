-- Follow edges. The follower/following counters on users move in the same transaction.
CREATE TABLE follows (
    -- An identity orders edges by when they were made: lists show the newest follow first
    -- and page by it (the cursor is this number). GENERATED ALWAYS so that no insert can
    -- write an id that the sequence would later hand out again.
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Both ends must exist: following an unknown user fails here (23503), race-free, and
    -- the store reports it as an unknown user.
    follower_id uuid NOT NULL REFERENCES users (id),
    followee_id uuid NOT NULL REFERENCES users (id),
    created_at  timestamptz NOT NULL,
    -- One edge per pair makes following idempotent (INSERT ... ON CONFLICT DO NOTHING,
    -- also between instances); its index also lists whom a user follows, which the
    -- timeline reads.
    CONSTRAINT follows_pair_key UNIQUE (follower_id, followee_id),
    -- Nobody follows themselves: the timeline already holds one's own tweets, and the
    -- counters would count the user on both sides.
    CONSTRAINT follows_not_self CHECK (follower_id <> followee_id)
);

-- A user's followers, newest follow first, paged by edge id without a sort.
CREATE INDEX follows_by_followee ON follows (followee_id, id);
-- Whom a user follows, newest follow first, paged by edge id without a sort.
CREATE INDEX follows_by_follower ON follows (follower_id, id);
