/**
 * The portal's one way to the API: a client of the SDK with the partner's key, and how a
 * failed call is told to the partner. Kept apart from the components so that every
 * section makes its calls the same way (typed `client.api`, no retries: the rotation must
 * never be sent twice, and a page should show a refusal rather than wait it out) and
 * turns a refused key (401/403: disabled by the operator, rotated away) into the same
 * "back to sign-in" instead of each section showing its own dead end.
 */
import { createClient, type MinitterClient, MinitterError, type components } from "@minitter/client";

import { API_BASE } from "../shared/session.js";

export type KeyUsage = components["schemas"]["KeyUsage"];
export type UsageDay = components["schemas"]["UsageDay"];
export type Webhook = components["schemas"]["Webhook"];
export type WebhookDelivery = components["schemas"]["WebhookDelivery"];

export function partnerClient(apiKey: string): MinitterClient {
  return createClient({ baseUrl: API_BASE, apiKey, retry: { maxRetries: 0 } });
}

/** Whether `error` says the key itself is refused (so the page must sign out). */
export function isRefusal(error: unknown): error is MinitterError {
  return error instanceof MinitterError && (error.status === 401 || error.status === 403);
}

/** What to tell the partner about a failed call: the API's problem detail when it sent one. */
export function describe(error: unknown): string {
  if (error instanceof MinitterError) return error.problem?.detail ?? error.problem?.title ?? error.message;
  return "The API did not answer.";
}

/** Called by a section whose call failed because the key is refused. */
export type OnRefused = (error: MinitterError) => void;

/** Formats a count with English digit grouping (1,000), the same in every browser (tests read it). */
export const count = (value: number): string => value.toLocaleString("en");

/** Formats an RFC 3339 time as UTC, the API's time zone, to the minute. */
export function utc(time: string | null | undefined): string {
  if (time === null || time === undefined) return "—";
  const date = new Date(time);
  return Number.isNaN(date.getTime()) ? time : `${date.toISOString().slice(0, 16).replace("T", " ")} UTC`;
}
