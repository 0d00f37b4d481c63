-- IP allow and deny lists of plans and keys (src/domain/ip_policy.rs): the networks
-- comma-separated in CIDR notation, empty for none, so existing plans and keys stay open
-- to every address. Additive: the previous release reads and writes these tables as before.
ALTER TABLE usage_plans ADD COLUMN ip_allow TEXT NOT NULL DEFAULT '';
ALTER TABLE usage_plans ADD COLUMN ip_deny TEXT NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN ip_allow TEXT NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN ip_deny TEXT NOT NULL DEFAULT '';
