/**
 * The console's client: the SDK's, with the admin token as its bearer token and a guard
 * that refuses, before anything is sent, any request that is not to the operator API
 * (`/admin/…`). The admin token unlocks every key and plan; a `/v1` route never needs it,
 * so a bug that would send it there fails loudly in the page instead.
 */
import { createClient, type MinitterClient } from "@minitter/client";

import { API_BASE } from "../shared/session.js";

/** Thrown for a request the guard refused. */
export class NotAnOperatorRoute extends Error {}

export function adminClient(adminToken: string): MinitterClient {
  const operatorOnly: typeof fetch = (input, init) => {
    const url = new URL(input instanceof Request ? input.url : String(input), API_BASE);
    if (url.origin !== new URL(API_BASE).origin || !url.pathname.startsWith("/admin/")) {
      return Promise.reject(new NotAnOperatorRoute(`the console sends its token to /admin/ only, not to ${url.pathname}`));
    }
    return fetch(input, init);
  };
  return createClient({ baseUrl: API_BASE, bearerToken: adminToken, fetch: operatorOnly, retry: { maxRetries: 0 } });
}
