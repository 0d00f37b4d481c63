-- Users. Ids are UUIDv7 text, so they sort by creation time and are not enumerable.
CREATE TABLE users (
    id            TEXT PRIMARY KEY NOT NULL,
    -- Usernames are ASCII (the spec's pattern), so NOCASE makes uniqueness and lookups
    -- case-insensitive: "Ada" and "ada" cannot both exist.
    username      TEXT NOT NULL UNIQUE COLLATE NOCASE,
    -- Emails are unique case-insensitively for the same reason; login looks them up
    -- through this index.
    email         TEXT NOT NULL UNIQUE COLLATE NOCASE,
    display_name  TEXT NOT NULL,
    -- An argon2id PHC string; the password itself is never stored.
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL
) STRICT;
