-- Usage plans and the API keys that belong to them (the operator API).
CREATE TABLE usage_plans (
    id             uuid PRIMARY KEY,
    name           text NOT NULL,
    description    text,
    -- Token bucket, requests per second and bucket size. Positive, since a zero rate or
    -- an empty bucket would refuse everything (no throttle is both NULL instead).
    throttle_rate  double precision CHECK (throttle_rate > 0),
    throttle_burst bigint CHECK (throttle_burst > 0),
    -- Quota, requests per period. Positive for the same reason; the periods are the ones
    -- the gateway knows how to count.
    quota_limit    bigint CHECK (quota_limit > 0),
    quota_period   text CHECK (quota_period IN ('DAY', 'WEEK', 'MONTH')),
    created_at     timestamptz NOT NULL,
    -- A throttle needs both its rate and its size: both set, or both NULL (no throttle).
    CHECK ((throttle_rate IS NULL) = (throttle_burst IS NULL)),
    -- A quota needs both its limit and its period: both set, or both NULL (no quota).
    CHECK ((quota_limit IS NULL) = (quota_period IS NULL))
);

CREATE TABLE api_keys (
    id           uuid PRIMARY KEY,
    name         text NOT NULL,
    -- The first characters of the secret, shown so that operators can tell keys apart.
    prefix       text NOT NULL,
    -- SHA-256 of the secret. Secrets are 256 random bits, so a fast hash is enough: there
    -- is nothing to brute-force. The plaintext is never stored. Unique, so that a hash
    -- names one key; the gateway finds a request's key through this index.
    secret_hash  text NOT NULL UNIQUE,
    -- A key needs its plan (23503 on insert or update: an unknown plan), and a plan in
    -- use cannot be deleted: the delete itself fails (23503), which the store reports as
    -- "in use". Race-free, unlike a check before the delete.
    plan_id      uuid NOT NULL REFERENCES usage_plans (id) ON DELETE RESTRICT,
    enabled      boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL,
    last_used_at timestamptz
);
-- The keys in a plan, and the foreign-key check of a plan delete, which would otherwise
-- scan every key.
CREATE INDEX api_keys_by_plan ON api_keys (plan_id);
