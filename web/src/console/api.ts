/**
 * The operator API calls the console makes, in one place, all through the SDK's typed
 * client (the guarded one of `./admin-client.ts`): `tsc` checks every path and body
 * against `openapi.yaml`, and no page module writes a URL. The lists are read to their
 * last page with the SDK's `paginate`, so a console with more than one page of plans or
 * keys shows them all.
 */
import { type components, type MinitterClient, paginate, unwrap } from "@minitter/client";

export type UsagePlan = components["schemas"]["UsagePlan"];
export type UsagePlanInput = components["schemas"]["UsagePlanInput"];
export type ApiKey = components["schemas"]["ApiKey"];
export type CreatedApiKey = components["schemas"]["CreatedApiKey"];
export type PlanUsageHistory = components["schemas"]["PlanUsageHistory"];
export type UsageReport = components["schemas"]["UsageReport"];

async function all<T>(pages: AsyncGenerator<T>): Promise<T[]> {
  const items: T[] = [];
  for await (const item of pages) items.push(item);
  return items;
}

export function listPlans(client: MinitterClient): Promise<UsagePlan[]> {
  return all(paginate((page) => unwrap(client.api.GET("/admin/v1/usage-plans", { params: { query: { ...page, limit: 100 } } }))));
}

export function listKeys(client: MinitterClient): Promise<ApiKey[]> {
  return all(paginate((page) => unwrap(client.api.GET("/admin/v1/api-keys", { params: { query: { ...page, limit: 100 } } }))));
}

export function createPlan(client: MinitterClient, body: UsagePlanInput): Promise<UsagePlan> {
  return unwrap(client.api.POST("/admin/v1/usage-plans", { body }));
}

/** The API replaces a plan's settings as a whole (`PUT`, update_usage_plan): the form sends them all. */
export function updatePlan(client: MinitterClient, planId: string, body: UsagePlanInput): Promise<UsagePlan> {
  return unwrap(client.api.PUT("/admin/v1/usage-plans/{plan_id}", { params: { path: { plan_id: planId } }, body }));
}

export async function deletePlan(client: MinitterClient, planId: string): Promise<void> {
  await unwrap(client.api.DELETE("/admin/v1/usage-plans/{plan_id}", { params: { path: { plan_id: planId } } }));
}

export function createKey(client: MinitterClient, name: string, planId: string): Promise<CreatedApiKey> {
  return unwrap(client.api.POST("/admin/v1/api-keys", { body: { name, plan_id: planId } }));
}

export function setKeyEnabled(client: MinitterClient, keyId: string, enabled: boolean): Promise<ApiKey> {
  return unwrap(client.api.PATCH("/admin/v1/api-keys/{key_id}", { params: { path: { key_id: keyId } }, body: { enabled } }));
}

export function rotateKey(client: MinitterClient, keyId: string): Promise<CreatedApiKey> {
  return unwrap(client.api.POST("/admin/v1/api-keys/{key_id}/rotate", { params: { path: { key_id: keyId } } }));
}

export async function deleteKey(client: MinitterClient, keyId: string): Promise<void> {
  await unwrap(client.api.DELETE("/admin/v1/api-keys/{key_id}", { params: { path: { key_id: keyId } } }));
}

/** Requests per day by outcome, summed over the plan's keys, and its busiest keys. */
export function planHistory(client: MinitterClient, planId: string, startDate: string, endDate: string): Promise<PlanUsageHistory> {
  return unwrap(
    client.api.GET("/admin/v1/usage-plans/{plan_id}/history", {
      params: { path: { plan_id: planId }, query: { start_date: startDate, end_date: endDate } },
    }),
  );
}

/** Per key of the plan, `[used, remaining]` (or `[used]`) per day. */
export function planUsage(client: MinitterClient, planId: string, startDate: string, endDate: string): Promise<UsageReport> {
  return unwrap(
    client.api.GET("/admin/v1/usage-plans/{plan_id}/usage", {
      params: { path: { plan_id: planId }, query: { start_date: startDate, end_date: endDate } },
    }),
  );
}
