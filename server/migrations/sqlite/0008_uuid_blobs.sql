-- Ids become 16-byte BLOBs instead of hyphenated text: sqlx reads a BLOB as a `Uuid`
-- just as it reads PostgreSQL's `uuid`, so one row type serves both backends. A BLOB
-- compares bytewise, and a UUIDv7 starts with its big-endian timestamp, so id order is
-- still time order.
--
-- SQLite cannot change a column's type, so each table with an id is rebuilt, in the
-- migration's one transaction: a new table is created (referencing the other new
-- tables), the rows are copied with unhex(), the old tables are dropped, children
-- first, so that no foreign key ever points at a missing row, and each new table takes
-- the old one's name (renaming a table rewrites the references to it, so "users_new"
-- below ends up as "users").
CREATE TABLE users_new (
    id              BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    username        TEXT NOT NULL UNIQUE COLLATE NOCASE,
    email           TEXT NOT NULL UNIQUE COLLATE NOCASE,
    display_name    TEXT NOT NULL,
    password_hash   TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    follower_count  INTEGER NOT NULL DEFAULT 0,
    following_count INTEGER NOT NULL DEFAULT 0,
    tweet_count     INTEGER NOT NULL DEFAULT 0,
    picture_key     TEXT,
    picture_type    TEXT,
    picture_etag    TEXT,
    picture_width   INTEGER,
    picture_height  INTEGER,
    picture_size    INTEGER
) STRICT;
INSERT INTO users_new
SELECT unhex(id, '-'), username, email, display_name, password_hash, created_at,
       follower_count, following_count, tweet_count, picture_key, picture_type,
       picture_etag, picture_width, picture_height, picture_size
FROM users;

CREATE TABLE follows_new (
    id          INTEGER PRIMARY KEY,
    follower_id BLOB NOT NULL REFERENCES users_new (id),
    followee_id BLOB NOT NULL REFERENCES users_new (id),
    created_at  TEXT NOT NULL,
    UNIQUE (follower_id, followee_id),
    CHECK (follower_id <> followee_id)
) STRICT;
INSERT INTO follows_new
SELECT id, unhex(follower_id, '-'), unhex(followee_id, '-'), created_at FROM follows;

CREATE TABLE tweets_new (
    id         BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    author_id  BLOB NOT NULL REFERENCES users_new (id),
    text       TEXT NOT NULL,
    created_at TEXT NOT NULL
) STRICT;
INSERT INTO tweets_new
SELECT unhex(id, '-'), unhex(author_id, '-'), text, created_at FROM tweets;

CREATE TABLE idempotency_keys_new (
    user_id           BLOB NOT NULL,
    key               TEXT NOT NULL,
    request_hash      TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    response_status   INTEGER,
    response_location TEXT,
    response_body     TEXT,
    resource_id       BLOB,
    PRIMARY KEY (user_id, key)
) STRICT;
INSERT INTO idempotency_keys_new
SELECT unhex(user_id, '-'), key, request_hash, created_at, response_status,
       response_location, response_body, unhex(resource_id, '-')
FROM idempotency_keys;

CREATE TABLE usage_plans_new (
    id                  BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    name                TEXT NOT NULL,
    description         TEXT,
    throttle_rate       REAL CHECK (throttle_rate > 0),
    throttle_burst      INTEGER CHECK (throttle_burst > 0),
    quota_limit         INTEGER CHECK (quota_limit > 0),
    quota_period        TEXT CHECK (quota_period IN ('DAY', 'WEEK', 'MONTH')),
    created_at          TEXT NOT NULL,
    allow_cache_refresh INTEGER NOT NULL DEFAULT 0 CHECK (allow_cache_refresh IN (0, 1)),
    CHECK ((throttle_rate IS NULL) = (throttle_burst IS NULL)),
    CHECK ((quota_limit IS NULL) = (quota_period IS NULL))
) STRICT;
INSERT INTO usage_plans_new
SELECT unhex(id, '-'), name, description, throttle_rate, throttle_burst, quota_limit,
       quota_period, created_at, allow_cache_refresh
FROM usage_plans;

CREATE TABLE api_keys_new (
    id           BLOB PRIMARY KEY NOT NULL CHECK (length(id) = 16),
    name         TEXT NOT NULL,
    prefix       TEXT NOT NULL,
    secret_hash  TEXT NOT NULL UNIQUE,
    plan_id      BLOB NOT NULL REFERENCES usage_plans_new (id) ON DELETE RESTRICT,
    enabled      INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    created_at   TEXT NOT NULL,
    last_used_at TEXT
) STRICT;
INSERT INTO api_keys_new
SELECT unhex(id, '-'), name, prefix, secret_hash, unhex(plan_id, '-'), enabled, created_at,
       last_used_at
FROM api_keys;

CREATE TABLE usage_new (
    key_id BLOB NOT NULL,
    day    TEXT NOT NULL,
    used   INTEGER NOT NULL CHECK (used >= 0),
    PRIMARY KEY (key_id, day)
) STRICT, WITHOUT ROWID;
INSERT INTO usage_new SELECT unhex(key_id, '-'), day, used FROM usage;

DROP TABLE follows;
DROP TABLE tweets;
DROP TABLE idempotency_keys;
DROP TABLE api_keys;
DROP TABLE usage;
DROP TABLE users;
DROP TABLE usage_plans;
ALTER TABLE users_new RENAME TO users;
ALTER TABLE follows_new RENAME TO follows;
ALTER TABLE tweets_new RENAME TO tweets;
ALTER TABLE idempotency_keys_new RENAME TO idempotency_keys;
ALTER TABLE usage_plans_new RENAME TO usage_plans;
ALTER TABLE api_keys_new RENAME TO api_keys;
ALTER TABLE usage_new RENAME TO usage;

-- The indexes went with the old tables.
CREATE INDEX follows_by_followee ON follows (followee_id, id);
CREATE INDEX follows_by_follower ON follows (follower_id, id);
CREATE INDEX tweets_by_author ON tweets (author_id, id);
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
CREATE INDEX idempotency_keys_by_resource ON idempotency_keys (resource_id);
CREATE INDEX api_keys_by_plan ON api_keys (plan_id);
