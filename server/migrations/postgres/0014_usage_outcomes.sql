-- The partner portal and operator console (issue 22) chart requests by outcome: of the
-- admitted requests (`used`), those answered with a 4xx, and the requests refused with
-- 429 by the throttle or the quota (never counted in `used`, which quotas sum). Two
-- defaulted columns: additive, the previous release's upserts leave them at zero.
ALTER TABLE usage ADD COLUMN client_errors bigint NOT NULL DEFAULT 0 CHECK (client_errors >= 0);
ALTER TABLE usage ADD COLUMN throttled bigint NOT NULL DEFAULT 0 CHECK (throttled >= 0);
