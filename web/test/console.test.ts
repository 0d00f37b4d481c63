// The operator console (issue 22) in headless Chromium against the real server: plans
// and keys made, edited, disabled, rotated and deleted in the page, each checked through
// the SDK (the page's word is not taken for it); a partner's portal refused once its key
// is disabled; a plan's usage drawn from the API's numbers; hostile names shown as text;
// the admin token sent to /admin/ only.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import * as sdk from "@minitter/client";
import type { Page } from "playwright-core";

import { assertAccessible, launch, openPage, type RunningServer, screenshot, startServer, type WatchedPage } from "./support/browser.js";

let server: RunningServer;
/** The operator API through the SDK, to check what the page did. */
let admin: sdk.MinitterClient;

before(async () => {
  server = await startServer();
  admin = sdk.createClient({ baseUrl: server.baseUrl, bearerToken: server.adminToken, retry: { maxRetries: 0 } });
});

after(async () => {
  await server?.stop();
});

const unique = () => crypto.randomUUID().slice(0, 8);

/** A partner's client: the SDK with `apiKey`, sending each request once (a 429 is a result here). */
function partner(apiKey: string) {
  return sdk.createClient({ baseUrl: server.baseUrl, apiKey, retry: { maxRetries: 0 } });
}

/** The status the API answers `GET /v1/usage` with for `apiKey`. */
async function usageStatus(apiKey: string): Promise<number> {
  const { response } = await partner(apiKey).api.GET("/v1/usage");
  return response.status;
}

type PlanInput = sdk.components["schemas"]["UsagePlanInput"];

/** Makes a plan through the SDK (its type makes the defaulted `allow_cache_refresh` required). */
async function newPlan(body: Omit<PlanInput, "allow_cache_refresh">) {
  return sdk.unwrap(admin.api.POST("/admin/v1/usage-plans", { body: { allow_cache_refresh: false, ...body } }));
}

async function newKey(name: string, planId: string) {
  return sdk.unwrap(admin.api.POST("/admin/v1/api-keys", { body: { name, plan_id: planId } }));
}

async function openConsole(browser: Parameters<typeof openPage>[0], viewport?: { width: number; height: number }): Promise<WatchedPage> {
  const watched = await openPage(browser, server.baseUrl, "/console/", viewport);
  await watched.page.getByLabel("Admin token").fill(server.adminToken);
  await watched.page.getByRole("button", { name: "Sign in" }).click();
  await watched.page.locator("#plans").waitFor();
  return watched;
}

/**
 * The end of every console test: the admin token went in an `authorization` header to
 * `/admin/` paths only, never in a path, never as an `x-api-key`; nothing else went wrong
 * but the refusals the test caused on purpose (Chromium logs a failed request's status).
 */
function assertCleanConsole(watched: WatchedPage, expectedStatuses: number[] = []): void {
  const withToken = watched.requests.filter((request) => request.authorization !== undefined);
  assert.ok(withToken.length > 0, "the console made no operator request");
  for (const request of withToken) {
    assert.match(request.path, /^\/admin\//, `${request.method} ${request.path} carried the admin token`);
    assert.equal(request.authorization, `Bearer ${server.adminToken}`);
  }
  for (const request of watched.requests) {
    assert.ok(!request.path.includes(server.adminToken), `${request.path} has the token in it`);
    assert.equal(request.apiKey, undefined, `${request.method} ${request.path} carried an x-api-key`);
  }
  if (expectedStatuses.length > 0) {
    const expected = new RegExp(`status of (${expectedStatuses.join("|")})\\b`);
    watched.errors.splice(0, watched.errors.length, ...watched.errors.filter((error) => !expected.test(error)));
  }
  watched.assertClean();
}

const planRow = (page: Page, planId: string) => page.locator(`#plans tr[data-plan-id="${planId}"]`);
const keyRow = (page: Page, keyId: string) => page.locator(`#keys tr[data-key-id="${keyId}"]`);

test("the operator creates and edits a plan, a bad value shows the API's problem, and a key made in it works", async (t) => {
  const browser = await launch(t);
  if (browser === undefined) return;
  try {
    const watched = await openConsole(browser);
    const { page } = watched;
    await assertAccessible(page, "the console's plans");

    // Create.
    const name = `gold ${unique()}`;
    await page.getByLabel("Plan name").fill(name);
    await page.getByLabel("Description (optional)").fill("For the console's test.");
    await page.getByLabel("Rate (requests per second)").fill("5");
    await page.getByLabel("Burst (requests)").fill("10");
    await page.getByLabel("Quota limit (requests)").fill("1000");
    await page.getByLabel("Quota period").selectOption("WEEK");
    await page.getByLabel("Webhook subscriptions per key").fill("3");
    await page.getByLabel("Stream connections per key").fill("7");
    await page.getByRole("button", { name: "Create plan" }).click();
    const row = page.locator("#plans tbody tr", { hasText: name });
    await row.waitFor();
    const planId = await row.getAttribute("data-plan-id");
    assert.ok(planId !== null);
    const created = await sdk.unwrap(admin.api.GET("/admin/v1/usage-plans/{plan_id}", { params: { path: { plan_id: planId } } }));
    assert.equal(created.name, name);
    assert.equal(created.description, "For the console's test.");
    assert.deepEqual(created.throttle, { rate_limit: 5, burst_limit: 10 });
    assert.deepEqual(created.quota, { limit: 1000, period: "WEEK" });
    assert.equal(created.webhook_limit, 3);
    assert.equal(created.stream_connection_limit, 7);

    // Edit: the form is filled from the plan; what is not changed stays.
    await planRow(page, planId).getByRole("button", { name: /^Edit/ }).click();
    await page.getByRole("heading", { name: `Edit plan ${name}` }).waitFor();
    assert.equal(await page.getByLabel("Burst (requests)").inputValue(), "10");
    await page.getByLabel("Rate (requests per second)").fill("2.5");
    await page.getByLabel("Quota limit (requests)").fill("2000");
    await page.getByRole("button", { name: "Save plan" }).click();
    await planRow(page, planId).locator(".throttle", { hasText: "2.5/s" }).waitFor();
    const edited = await sdk.unwrap(admin.api.GET("/admin/v1/usage-plans/{plan_id}", { params: { path: { plan_id: planId } } }));
    assert.deepEqual(edited.throttle, { rate_limit: 2.5, burst_limit: 10 });
    assert.deepEqual(edited.quota, { limit: 2000, period: "WEEK" });
    assert.equal(edited.webhook_limit, 3);
    assert.equal(edited.stream_connection_limit, 7);
    assert.equal(edited.description, "For the console's test.");

    // A bad value: the API's problem beside the form, its pointers the API's own.
    await page.getByLabel("Plan name").fill(`bad ${unique()}`);
    await page.getByLabel("Rate (requests per second)").fill("0");
    await page.getByLabel("Burst (requests)").fill("0");
    await page.getByRole("button", { name: "Create plan" }).click();
    const problem = page.locator("#plan-form-problem[role=alert]");
    await problem.waitFor();
    const refused = await admin.api.POST("/admin/v1/usage-plans", {
      body: { name: "bad", allow_cache_refresh: false, throttle: { rate_limit: 0, burst_limit: 0 } },
    });
    assert.equal(refused.response.status, 400);
    const expected = (refused.error as { errors?: { pointer: string }[] }).errors?.map((violation) => violation.pointer) ?? [];
    assert.ok(expected.includes("/throttle/rate_limit"), JSON.stringify(refused.error));
    const shown = await problem.locator("li[data-pointer]").evaluateAll((items) => items.map((item) => item.getAttribute("data-pointer")));
    assert.deepEqual(shown.sort(), [...expected].sort());
    assert.equal(await page.getByLabel("Rate (requests per second)").getAttribute("aria-invalid"), "true");
    await assertAccessible(page, "the plan form with the API's problem");

    // A key in the plan: its secret shown once, and it works against /v1.
    const keyName = `acme ${unique()}`;
    await page.getByLabel("Key name").fill(keyName);
    await page.getByLabel("Plan of the key").selectOption({ label: name });
    await page.getByRole("button", { name: "Create key" }).click();
    const secret = (await page.locator("#new-secret").textContent())?.trim() ?? "";
    assert.match(secret, /^mk_/);
    await assertAccessible(page, "a key created, its secret shown");
    const keyId = await page.locator("#keys tbody tr", { hasText: keyName }).getAttribute("data-key-id");
    assert.ok(keyId !== null);
    const listed = keyRow(page, keyId);
    assert.equal((await listed.locator(".plan-name").textContent())?.trim(), name);
    assert.equal(await listed.getAttribute("data-enabled"), "true");
    assert.ok(!(await listed.textContent())?.includes(secret), "the list shows the secret");
    const usage = await sdk.unwrap(partner(secret).api.GET("/v1/usage"));
    assert.equal(usage.plan.id, planId);
    assert.equal(usage.key_id, keyId);

    // Shown once: gone when dismissed, and not kept anywhere for a reload.
    await page.getByRole("button", { name: "Done" }).click();
    assert.ok(!(await page.content()).includes(secret), "the secret is still in the page");
    const stored = await page.evaluate(() => JSON.stringify(sessionStorage) + JSON.stringify(localStorage));
    assert.ok(!stored.includes(secret), "the secret is stored");
    await page.reload();
    await keyRow(page, keyId).waitFor();
    assert.ok(!(await page.content()).includes(secret));

    assertCleanConsole(watched, [400]);
  } finally {
    await browser.close();
  }
});

test("the operator disables a key and the partner's page then shows it refused", async (t) => {
  const browser = await launch(t);
  if (browser === undefined) return;
  try {
    const plan = await newPlan({ name: `partner plan ${unique()}` });
    const key = await newKey(`partner ${unique()}`, plan.id);

    const portal = await openPage(browser, server.baseUrl, "/portal/");
    await portal.page.getByLabel("API key").fill(key.secret);
    await portal.page.getByRole("button", { name: "Sign in" }).click();
    await portal.page.locator("#plan-name").waitFor();
    assert.equal((await portal.page.locator("#plan-name").textContent())?.trim(), plan.name);

    const watched = await openConsole(browser);
    const { page } = watched;
    await keyRow(page, key.id).getByRole("button", { name: /^Disable/ }).click();
    await page.locator(`#keys tr[data-key-id="${key.id}"][data-enabled="false"]`).waitFor();
    assert.equal((await keyRow(page, key.id).locator(".state-disabled").textContent())?.trim(), "Disabled");
    const disabled = await sdk.unwrap(admin.api.GET("/admin/v1/api-keys/{key_id}", { params: { path: { key_id: key.id } } }));
    assert.equal(disabled.enabled, false);

    // The partner's page, reloaded, is refused: the API's reason and the sign-in form.
    await portal.page.reload();
    const alert = portal.page.getByRole("alert");
    await alert.waitFor();
    assert.ok(((await alert.textContent()) ?? "").trim().length > 0, "the refusal says nothing");
    await portal.page.getByLabel("API key").waitFor();
    assert.equal(await portal.page.locator("#plan-name").count(), 0);
    // … and so is the key itself.
    assert.ok([401, 403].includes(await usageStatus(key.secret)));

    // Enabling it again lets it in.
    await keyRow(page, key.id).getByRole("button", { name: /^Enable/ }).click();
    await page.locator(`#keys tr[data-key-id="${key.id}"][data-enabled="true"]`).waitFor();
    assert.equal(await usageStatus(key.secret), 200);

    portal.errors.splice(0, portal.errors.length, ...portal.errors.filter((error) => !/status of 40[13]/.test(error)));
    portal.assertClean();
    assertCleanConsole(watched);
  } finally {
    await browser.close();
  }
});

test("rotating a key in the console refuses the old secret and lets the new one in", async (t) => {
  const browser = await launch(t);
  if (browser === undefined) return;
  try {
    const plan = await newPlan({ name: `rotation ${unique()}` });
    const key = await newKey(`rotated ${unique()}`, plan.id);
    assert.equal(await usageStatus(key.secret), 200);

    const watched = await openConsole(browser);
    const { page } = watched;
    await keyRow(page, key.id).getByRole("button", { name: /^Rotate/ }).click();
    const dialog = page.getByRole("dialog", { name: "Rotate this key's secret?" });
    await dialog.waitFor();
    await assertAccessible(page, "a confirmation open");
    // Focus is in the dialog, on the safe choice; cancelling (a click, or Escape) does nothing.
    assert.equal(await page.evaluate(() => document.activeElement?.textContent), "Cancel");
    await dialog.getByRole("button", { name: "Cancel" }).click();
    await dialog.waitFor({ state: "detached" });
    await keyRow(page, key.id).getByRole("button", { name: /^Rotate/ }).click();
    await dialog.waitFor();
    await page.keyboard.press("Escape");
    await dialog.waitFor({ state: "detached" });
    assert.equal(await usageStatus(key.secret), 200);

    await keyRow(page, key.id).getByRole("button", { name: /^Rotate/ }).click();
    await page.getByRole("dialog").getByRole("button", { name: "Rotate secret" }).click();
    const secret = (await page.locator("#new-secret").textContent())?.trim() ?? "";
    assert.match(secret, /^mk_/);
    assert.notEqual(secret, key.secret);
    assert.ok([401, 403].includes(await usageStatus(key.secret)), "the old secret still works");
    assert.equal(await usageStatus(secret), 200);

    assertCleanConsole(watched);
  } finally {
    await browser.close();
  }
});

test("deleting: a plan with keys is refused with the API's problem; a key, then its plan, are deleted after confirmation", async (t) => {
  const browser = await launch(t);
  if (browser === undefined) return;
  try {
    const plan = await newPlan({ name: `doomed ${unique()}` });
    const key = await newKey(`doomed ${unique()}`, plan.id);

    const watched = await openConsole(browser);
    const { page } = watched;
    await planRow(page, plan.id).getByRole("button", { name: /^Delete/ }).click();
    await page.getByRole("dialog").getByRole("button", { name: "Delete plan" }).click();
    const problem = page.locator("#plans-problem[role=alert]");
    await problem.waitFor();
    const refused = await admin.api.DELETE("/admin/v1/usage-plans/{plan_id}", { params: { path: { plan_id: plan.id } } });
    assert.equal(refused.response.status, 409);
    const detail = (refused.error as { detail?: string }).detail;
    assert.ok(detail !== undefined && (await problem.textContent())?.includes(detail), `the page does not show "${detail}"`);
    assert.equal(await planRow(page, plan.id).count(), 1);

    await keyRow(page, key.id).getByRole("button", { name: /^Delete/ }).click();
    await page.getByRole("dialog").getByRole("button", { name: "Delete key" }).click();
    await keyRow(page, key.id).waitFor({ state: "detached" });
    assert.ok([401, 403].includes(await usageStatus(key.secret)));

    await planRow(page, plan.id).getByRole("button", { name: /^Delete/ }).click();
    await page.getByRole("dialog").getByRole("button", { name: "Delete plan" }).click();
    await planRow(page, plan.id).waitFor({ state: "detached" });
    const gone = await admin.api.GET("/admin/v1/usage-plans/{plan_id}", { params: { path: { plan_id: plan.id } } });
    assert.equal(gone.response.status, 404);

    assertCleanConsole(watched, [409]);
  } finally {
    await browser.close();
  }
});

test("a plan's usage: the chart's table and top keys are the API's numbers, and the chart is drawn", async (t) => {
  const browser = await launch(t);
  if (browser === undefined) return;
  try {
    const plan = await newPlan({ name: `metered ${unique()}`, throttle: { rate_limit: 0.2, burst_limit: 4 }, quota: { limit: 500, period: "DAY" } });
    const busy = await newKey(`busy ${unique()}`, plan.id);
    const quiet = await newKey(`quiet ${unique()}`, plan.id);

    // 2xx, 4xx (a user that does not exist) and, past the burst, 429s.
    const statuses: number[] = [];
    const missing = "01936c50-0000-7000-8000-00000000dead";
    for (const path of ["usage", "user", "usage", "user", "usage", "usage", "usage"] as const) {
      const call =
        path === "usage"
          ? partner(busy.secret).api.GET("/v1/usage")
          : partner(busy.secret).api.GET("/v1/users/{user_id}", { params: { path: { user_id: missing } } });
      statuses.push((await call).response.status);
    }
    statuses.push((await partner(quiet.secret).api.GET("/v1/usage")).response.status);
    assert.ok(statuses.includes(200) && statuses.includes(404) && statuses.includes(429), statuses.join(" "));

    const history = async () => {
      const today = new Date().toISOString().slice(0, 10);
      const start = new Date(Date.now() - 29 * 86_400_000).toISOString().slice(0, 10);
      return sdk.unwrap(
        admin.api.GET("/admin/v1/usage-plans/{plan_id}/history", {
          params: { path: { plan_id: plan.id }, query: { start_date: start, end_date: today } },
        }),
      );
    };
    const before = await history();
    const today = before.days.at(-1);
    assert.ok(today !== undefined && today.used > 0 && today.client_errors > 0 && today.throttled > 0, JSON.stringify(today));

    const watched = await openConsole(browser);
    const { page } = watched;
    await planRow(page, plan.id).getByRole("button", { name: /^Usage/ }).click();
    await page.locator(`#usage[data-plan-id="${plan.id}"]`).waitFor();
    await page.locator(".usage-chart canvas").first().waitFor();
    const api = await history();
    assert.deepEqual(api, before, "the usage changed while the test read it");

    // The data table: one row per day, the chart's arrays, equal to the API's days.
    const rows = await page.locator("#usage-days tbody tr").evaluateAll((trs) =>
      trs.map((tr) => ({
        date: tr.getAttribute("data-day"),
        used: Number(tr.querySelector('[data-series="used"]')?.textContent),
        client_errors: Number(tr.querySelector('[data-series="client_errors"]')?.textContent),
        throttled: Number(tr.querySelector('[data-series="throttled"]')?.textContent),
      })),
    );
    assert.equal(rows.length, 30);
    assert.deepEqual(rows, api.days);
    const todayRow = page.locator(`#usage-days tr[data-day="${today.date}"]`);
    assert.equal(await todayRow.locator('[data-series="throttled"]').textContent(), String(today.throttled));

    // The top keys, in the API's order, named.
    const top = await page
      .locator("#top-keys tbody tr")
      .evaluateAll((trs) => trs.map((tr) => ({ key_id: tr.getAttribute("data-key-id"), used: Number(tr.getAttribute("data-used")) })));
    assert.deepEqual(top, api.top_keys);
    assert.equal(api.top_keys[0]?.key_id, busy.id);
    assert.ok((await page.locator(`#top-keys tr[data-key-id="${busy.id}"]`).textContent())?.includes(busy.name));

    // The current period: each key's admitted requests today.
    const perKey = await page.locator(`#usage-keys tr[data-key-id="${busy.id}"] [data-field="used"]`).textContent();
    assert.equal(Number(perKey?.replace(/,/g, "")), today.used - 1);

    // uPlot drew its canvas: sized, and not blank.
    const drawn = await page.locator(".usage-chart canvas").first().evaluate((canvas: HTMLCanvasElement) => {
      const context = canvas.getContext("2d");
      if (context === null || canvas.width === 0 || canvas.height === 0) return 0;
      const pixels = context.getImageData(0, 0, canvas.width, canvas.height).data;
      let painted = 0;
      for (let index = 3; index < pixels.length; index += 4) if ((pixels[index] ?? 0) > 0) painted++;
      return painted;
    });
    assert.ok(drawn > 1000, `the chart's canvas has ${drawn} painted pixels`);

    await page.locator(".usage-data summary").click();
    await assertAccessible(page, "a plan's usage shown");
    await screenshot(page, "console");

    // At 375 px: no horizontal scroll of the page (the tables scroll in their wrappers).
    await page.setViewportSize({ width: 375, height: 740 });
    await page.waitForFunction(() => document.documentElement.scrollWidth <= 375);
    await assertAccessible(page, "a plan's usage at 375 px");
    await screenshot(page, "console-375");

    assertCleanConsole(watched);
  } finally {
    await browser.close();
  }
});

test("hostile plan and key names are shown as text, never run", async (t) => {
  const browser = await launch(t);
  if (browser === undefined) return;
  try {
    const names = [
      `<img src=x onerror="window.__pwned=1"> ${unique()}`,
      `<script>window.__pwned=2</script> ${unique()}`,
      `"><svg onload="window.__pwned=3"> ${unique()}`,
    ] as const;
    const plan = await newPlan({ name: names[0], description: `<b onmouseover="window.__pwned=4">${unique()}</b>` });
    const keys = [await newKey(names[1], plan.id), await newKey(names[2], plan.id)];
    for (const key of keys) assert.equal(await usageStatus(key.secret), 200);

    const watched = await openConsole(browser);
    const { page } = watched;
    assert.equal((await planRow(page, plan.id).locator(".plan-name").first().evaluate((th) => th.firstChild?.textContent))?.trim(), names[0]);
    for (const [index, key] of keys.entries()) {
      assert.equal((await keyRow(page, key.id).locator(".key-name").textContent())?.trim(), names[index + 1]);
      assert.equal((await keyRow(page, key.id).locator(".plan-name").textContent())?.trim(), names[0]);
    }
    // Everywhere else they are shown: the usage, the forms' lists, a confirmation.
    await planRow(page, plan.id).getByRole("button", { name: /^Usage/ }).click();
    await page.locator(`#usage[data-plan-id="${plan.id}"]`).waitFor();
    assert.ok((await page.locator("#usage h3").textContent())?.includes(names[0]));
    for (const key of keys) assert.ok((await page.locator(`#top-keys tr[data-key-id="${key.id}"]`).textContent())?.includes(key.name));
    await planRow(page, plan.id).getByRole("button", { name: /^Delete/ }).click();
    assert.ok((await page.getByRole("dialog").textContent())?.includes(names[0]));
    await page.getByRole("dialog").getByRole("button", { name: "Cancel" }).click();

    const found = await page.evaluate(() => ({
      pwned: (window as unknown as { __pwned?: number }).__pwned,
      elements: document.querySelectorAll("#app img, #app script, #app svg, #app b").length,
    }));
    assert.deepEqual(found, { pwned: undefined, elements: 0 });
    assertCleanConsole(watched);
  } finally {
    await browser.close();
  }
});

test("the admin token goes to /admin/ only, whatever the operator does", async (t) => {
  const browser = await launch(t);
  if (browser === undefined) return;
  try {
    const plan = await newPlan({ name: `token ${unique()}`, quota: { limit: 10, period: "MONTH" } });
    const watched = await openConsole(browser);
    const { page } = watched;
    // Every kind of call: lists, usage, create, update, rotate, delete.
    await planRow(page, plan.id).getByRole("button", { name: /^Usage/ }).click();
    await page.locator(`#usage[data-plan-id="${plan.id}"]`).waitFor();
    await page.getByLabel("Key name").fill(`token ${unique()}`);
    await page.getByLabel("Plan of the key").selectOption(plan.id);
    await page.getByRole("button", { name: "Create key" }).click();
    await page.locator("#new-secret").waitFor();
    const keyId = await page.locator(`#keys tbody tr`, { hasText: "token " }).first().getAttribute("data-key-id");
    assert.ok(keyId !== null);
    await keyRow(page, keyId).getByRole("button", { name: /^Disable/ }).click();
    await page.locator(`#keys tr[data-key-id="${keyId}"][data-enabled="false"]`).waitFor();
    await keyRow(page, keyId).getByRole("button", { name: /^Rotate/ }).click();
    await page.getByRole("dialog").getByRole("button", { name: "Rotate secret" }).click();
    await page.getByRole("heading", { name: /^New secret of key/ }).waitFor();
    await keyRow(page, keyId).getByRole("button", { name: /^Delete/ }).click();
    await page.getByRole("dialog").getByRole("button", { name: "Delete key" }).click();
    await keyRow(page, keyId).waitFor({ state: "detached" });
    await planRow(page, plan.id).getByRole("button", { name: /^Edit/ }).click();
    await page.getByRole("button", { name: "Save plan" }).click();
    await page.getByRole("status").filter({ hasText: "saved" }).waitFor();

    const methods = new Set(watched.requests.filter((request) => request.authorization !== undefined).map((request) => request.method));
    assert.deepEqual([...methods].sort(), ["DELETE", "GET", "PATCH", "POST", "PUT"]);
    assertCleanConsole(watched);
  } finally {
    await browser.close();
  }
});
