-- Users, with the counters profiles show and their profile picture.
--
-- The PostgreSQL schema starts where the SQLite one stands after all of its migrations,
-- so it needs fewer files; it has every constraint of the SQLite schema, in native types.
CREATE TABLE users (
    -- UUIDv7: ids sort by creation time and are not enumerable.
    id              uuid PRIMARY KEY,
    username        text NOT NULL,
    email           text NOT NULL,
    display_name    text NOT NULL,
    -- An argon2id PHC string; the password itself is never stored.
    password_hash   text NOT NULL,
    created_at      timestamptz NOT NULL,
    -- Counters are kept in the same transaction as the rows they count (follows, tweets),
    -- so they are exact however many writes happen at once, on however many instances.
    follower_count  bigint NOT NULL DEFAULT 0,
    following_count bigint NOT NULL DEFAULT 0,
    tweet_count     bigint NOT NULL DEFAULT 0,
    -- A user's profile picture: the object that holds it, and what the API says about it.
    -- All NULL when there is none. The object is written before this row points at it and
    -- the old object deleted after, so the row never names an object that is not there.
    picture_key     text,
    picture_type    text,
    picture_etag    text,
    picture_width   bigint,
    picture_height  bigint,
    picture_size    bigint
);

-- Usernames are unique case-insensitively: "Ada" and "ada" cannot both exist (SQLite
-- does this with COLLATE NOCASE). An expression index rather than the citext extension,
-- because an operator's role may not be allowed to create extensions. Usernames are ASCII
-- (the spec's pattern), so lower() folds what NOCASE folds. The store tells which field a
-- sign-up collided on from the violated index's name: keep "username" in this one.
CREATE UNIQUE INDEX users_username_lower_key ON users (lower(username));

-- Emails are unique case-insensitively for the same reason, and login looks them up
-- through this index (WHERE lower(email) = lower($1)). Keep "email" in its name, which
-- is how the store tells an email conflict from a username one.
CREATE UNIQUE INDEX users_email_lower_key ON users (lower(email));
