-- Usage plans and the API keys that belong to them (the operator API).

CREATE TABLE usage_plans (
    id             TEXT PRIMARY KEY NOT NULL,
    name           TEXT NOT NULL,
    description    TEXT,
    -- Token bucket: both set or both NULL (no throttle).
    throttle_rate  REAL CHECK (throttle_rate > 0),
    throttle_burst INTEGER CHECK (throttle_burst > 0),
    -- Quota: both set or both NULL (no quota).
    quota_limit    INTEGER CHECK (quota_limit > 0),
    quota_period   TEXT CHECK (quota_period IN ('DAY', 'WEEK', 'MONTH')),
    created_at     TEXT NOT NULL,
    CHECK ((throttle_rate IS NULL) = (throttle_burst IS NULL)),
    CHECK ((quota_limit IS NULL) = (quota_period IS NULL))
) STRICT;

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY NOT NULL,
    name         TEXT NOT NULL,
    -- The first characters of the secret, shown so that operators can tell keys apart.
    prefix       TEXT NOT NULL,
    -- SHA-256 of the secret. Secrets are 256 random bits, so a fast hash is enough: there
    -- is nothing to brute-force. The plaintext is never stored.
    secret_hash  TEXT NOT NULL UNIQUE,
    -- A plan in use cannot be deleted.
    plan_id      TEXT NOT NULL REFERENCES usage_plans (id) ON DELETE RESTRICT,
    enabled      INTEGER NOT NULL DEFAULT 1 CHECK (enabled IN (0, 1)),
    created_at   TEXT NOT NULL,
    last_used_at TEXT
) STRICT;
CREATE INDEX api_keys_by_plan ON api_keys (plan_id);
