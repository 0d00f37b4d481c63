/**
 * The plan section: what the key's plan allows (throttle, quota) and how much of the
 * current quota period is used, from `GET /v1/usage`, and the rate-limit state the
 * gateway reported on that very response (its `RateLimit`/`RateLimit-Policy` headers,
 * read by the SDK's `rateLimit`). The two can differ by a request or so: the body counts
 * admitted requests of the period, the headers what is left right now.
 */
import { type RateLimitPolicy, type RateLimit } from "@minitter/client";

import { count, type KeyUsage, utc } from "./api.js";

const PERIOD: Record<string, string> = { DAY: "day (UTC)", WEEK: "week (ISO, from Monday, UTC)", MONTH: "calendar month (UTC)" };

export function PlanSection({ usage, limits, onRefresh, refreshing }: { usage: KeyUsage; limits: RateLimit | undefined; onRefresh: () => void; refreshing: boolean }) {
  const { plan } = usage;
  return (
    <section aria-labelledby="plan-heading">
      <h2 id="plan-heading">Your plan</h2>
      <dl>
        <dt>Plan</dt>
        <dd id="plan-name">{plan.name}</dd>
        {plan.description !== undefined && plan.description !== "" && (
          <>
            <dt>Description</dt>
            <dd>{plan.description}</dd>
          </>
        )}
        <dt>Throttle</dt>
        <dd id="plan-throttle">
          {plan.throttle
            ? `${count(plan.throttle.rate_limit)} requests a second, bursts of ${count(plan.throttle.burst_limit)}`
            : "none"}
        </dd>
        <dt>Quota</dt>
        <dd id="plan-quota">{plan.quota ? `${count(plan.quota.limit)} requests a ${PERIOD[plan.quota.period] ?? plan.quota.period}` : "none"}</dd>
        <dt>Webhooks</dt>
        <dd>up to {count(plan.webhook_limit)} subscriptions</dd>
      </dl>
      <h3>This period</h3>
      <Meter usage={usage} />
      <h3>Rate limits now</h3>
      <RateLimits limits={limits} />
      <p>
        <button type="button" class="secondary" onClick={onRefresh} disabled={refreshing}>
          {refreshing ? "Refreshing…" : "Refresh usage"}
        </button>
      </p>
    </section>
  );
}

function Meter({ usage }: { usage: KeyUsage }) {
  const quota = usage.plan.quota;
  const window = `${utc(usage.period_start)} to ${utc(usage.period_end)}`;
  if (quota === undefined) {
    return (
      <p id="usage-text">
        <span id="usage-used">{count(usage.used)}</span> requests admitted from {window}; the plan has no quota.
      </p>
    );
  }
  const share = Math.min(1, usage.used / quota.limit);
  return (
    <div class="meter">
      <label for="usage-meter">Quota used</label>
      <meter id="usage-meter" min={0} max={quota.limit} value={Math.min(usage.used, quota.limit)} high={quota.limit * 0.8} optimum={0} aria-describedby="usage-text" />
      <p id="usage-text">
        <span id="usage-used">{count(usage.used)}</span> of <span id="usage-limit">{count(quota.limit)}</span> requests used (
        {Math.round(share * 100)}%), {count(usage.remaining ?? Math.max(0, quota.limit - usage.used))} left, from {window}.
      </p>
    </div>
  );
}

function RateLimits({ limits }: { limits: RateLimit | undefined }) {
  if (limits === undefined || limits.policies.length === 0) return <p>The API reported no rate limits for this key.</p>;
  return (
    <ul id="rate-limits">
      {limits.policies.map((policy) => (
        <li key={policy.name} data-policy={policy.name}>
          {describePolicy(policy)}
        </li>
      ))}
    </ul>
  );
}

function describePolicy(policy: RateLimitPolicy): string {
  const name = policy.name === "quota" ? "Quota" : policy.name === "burst" ? "Throttle (burst)" : policy.name === "" ? "Limit" : policy.name;
  const parts = [
    policy.remaining !== undefined && policy.limit !== undefined
      ? `${count(policy.remaining)} of ${count(policy.limit)} left`
      : policy.remaining !== undefined
        ? `${count(policy.remaining)} left`
        : undefined,
    policy.windowSeconds !== undefined ? `per ${count(policy.windowSeconds)} s window` : undefined,
    policy.resetSeconds !== undefined ? `resets in ${count(policy.resetSeconds)} s` : undefined,
  ].filter((part) => part !== undefined);
  return `${name}: ${parts.length > 0 ? parts.join(", ") : "reported without figures"}`;
}
