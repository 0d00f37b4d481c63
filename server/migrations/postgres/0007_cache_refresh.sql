-- Whether a plan's keys may refresh the response cache with `Cache-Control: max-age=0`
-- (API Gateway's "require authorization" for cache invalidation). Off for existing plans.
ALTER TABLE usage_plans ADD COLUMN allow_cache_refresh BOOLEAN NOT NULL DEFAULT FALSE;
