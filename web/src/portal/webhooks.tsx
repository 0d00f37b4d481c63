/**
 * The key's webhook subscriptions (`GET /v1/webhooks`, every page): each one's URL,
 * events, whether it is enabled, and its endpoint's circuit breaker, and, on expanding
 * it, its recent deliveries (`GET /v1/webhooks/{id}/deliveries`, the newest page):
 * status, attempts, the last answer (status code or error, latency, excerpt) and when.
 * Deliveries are read when a row is expanded, not for every subscription up front,
 * since each read counts against the partner's quota. Every URL, description, error
 * and excerpt is partner- or receiver-supplied: rendered as text only.
 */
import { type MinitterClient, paginate, unwrap } from "@minitter/client";
import { useEffect, useState } from "preact/hooks";

import { count, describe, isRefusal, type OnRefused, utc, type Webhook, type WebhookDelivery } from "./api.js";

const DELIVERIES_SHOWN = 20;

export function WebhooksSection({ client, generation, onRefused }: { client: MinitterClient; generation: number; onRefused: OnRefused }) {
  const [webhooks, setWebhooks] = useState<Webhook[] | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);

  useEffect(() => {
    let current = true;
    (async () => {
      const all: Webhook[] = [];
      for await (const webhook of paginate((page) => unwrap(client.api.GET("/v1/webhooks", { params: { query: { ...page, limit: 100 } } })))) {
        all.push(webhook);
      }
      return all;
    })().then(
      (all) => {
        if (!current) return;
        setWebhooks(all);
        setError(undefined);
      },
      (failure: unknown) => {
        if (!current) return;
        if (isRefusal(failure)) onRefused(failure);
        else setError(describe(failure));
      },
    );
    return () => {
      current = false;
    };
  }, [client, generation]);

  return (
    <section aria-labelledby="webhooks-heading">
      <h2 id="webhooks-heading">Webhooks</h2>
      {error !== undefined && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {webhooks === undefined ? (
        error === undefined && <p aria-busy="true">Loading…</p>
      ) : webhooks.length === 0 ? (
        <p>This key has no webhook subscriptions. Create one with <code>POST /v1/webhooks</code>.</p>
      ) : (
        <ul class="webhooks" id="webhooks">
          {webhooks.map((webhook) => (
            <WebhookItem key={webhook.id} webhook={webhook} client={client} onRefused={onRefused} />
          ))}
        </ul>
      )}
    </section>
  );
}

function WebhookItem({ webhook, client, onRefused }: { webhook: Webhook; client: MinitterClient; onRefused: OnRefused }) {
  const [expanded, setExpanded] = useState(false);
  const panel = `deliveries-${webhook.id}`;
  const { breaker } = webhook;
  return (
    <li class="webhook" data-webhook-id={webhook.id}>
      <p class="webhook-url">{webhook.url}</p>
      {webhook.description !== undefined && webhook.description !== "" && <p class="webhook-description">{webhook.description}</p>}
      <dl>
        <dt>Events</dt>
        <dd class="webhook-events">{webhook.event_types.join(", ")}</dd>
        <dt>Enabled</dt>
        <dd class="webhook-enabled">
          {webhook.enabled ? "yes" : "no"}
          {webhook.disabled_reason ? ` (disabled by the server: ${webhook.disabled_reason})` : ""}
        </dd>
        <dt>Breaker</dt>
        <dd class="webhook-breaker" data-state={breaker.state}>
          {breaker.state.replace("_", " ")}
          {breaker.consecutive_failures > 0 ? `, ${count(breaker.consecutive_failures)} failures in a row` : ""}
          {breaker.open_until ? `, open until ${utc(breaker.open_until)}` : ""}
        </dd>
      </dl>
      <p>
        <button type="button" class="secondary" aria-expanded={expanded} aria-controls={panel} onClick={() => setExpanded(!expanded)}>
          {expanded ? "Hide deliveries" : "Show recent deliveries"}
        </button>
      </p>
      <div id={panel} hidden={!expanded}>
        {expanded && <Deliveries webhook={webhook} client={client} onRefused={onRefused} />}
      </div>
    </li>
  );
}

function Deliveries({ webhook, client, onRefused }: { webhook: Webhook; client: MinitterClient; onRefused: OnRefused }) {
  const [deliveries, setDeliveries] = useState<WebhookDelivery[] | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);

  useEffect(() => {
    let current = true;
    unwrap(
      client.api.GET("/v1/webhooks/{webhook_id}/deliveries", {
        params: { path: { webhook_id: webhook.id }, query: { limit: DELIVERIES_SHOWN } },
      }),
    ).then(
      (page) => current && setDeliveries(page.items),
      (failure: unknown) => {
        if (!current) return;
        if (isRefusal(failure)) onRefused(failure);
        else setError(describe(failure));
      },
    );
    return () => {
      current = false;
    };
  }, [client, webhook.id]);

  if (error !== undefined)
    return (
      <p class="error" role="alert">
        {error}
      </p>
    );
  if (deliveries === undefined) return <p aria-busy="true">Loading deliveries…</p>;
  if (deliveries.length === 0) return <p class="no-deliveries">No deliveries in the last 7 days.</p>;
  return (
    <div class="table-scroll">
      <table class="deliveries">
        <caption>Recent deliveries (newest first, at most {DELIVERIES_SHOWN})</caption>
        <thead>
          <tr>
            <th scope="col">Event</th>
            <th scope="col">Status</th>
            <th scope="col">Attempts</th>
            <th scope="col">Last response</th>
            <th scope="col">Time</th>
          </tr>
        </thead>
        <tbody>
          {deliveries.map((delivery) => (
            <tr key={delivery.id} data-delivery-id={delivery.id} data-status={delivery.status}>
              <td>{delivery.event_type}</td>
              <td>{delivery.status}</td>
              <td>{count(delivery.attempts)}</td>
              <td>
                <LastResponse delivery={delivery} />
              </td>
              <td>
                {utc(delivery.last_attempt_at ?? delivery.created_at)}
                {delivery.status === "pending" && delivery.next_attempt_at ? ` (next try ${utc(delivery.next_attempt_at)})` : ""}
              </td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function LastResponse({ delivery }: { delivery: WebhookDelivery }) {
  if (delivery.attempts === 0) return <>not tried yet</>;
  const latency = delivery.last_latency_ms === null || delivery.last_latency_ms === undefined ? "" : ` in ${count(delivery.last_latency_ms)} ms`;
  return (
    <>
      <span class="last-status">{delivery.last_status_code != null ? `HTTP ${delivery.last_status_code}` : (delivery.last_error ?? "no answer")}</span>
      {latency}
      {delivery.last_response_excerpt ? <pre class="excerpt">{delivery.last_response_excerpt}</pre> : null}
    </>
  );
}
