// The partner portal (/portal/, issue 22) in headless Chromium against the real server:
// the plan and the requests per day equal what the API says (read through the SDK), the
// chart is drawn from those very numbers, a rotation shows the new key once and the old
// one is refused at once, the webhooks and their deliveries are listed, hostile strings
// stay text, and every state passes axe-core.
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";

import * as sdk from "@minitter/client";
import type { Page } from "playwright-core";

import {
  assertAccessible,
  launch,
  openPage,
  planKey,
  type RunningServer,
  screenshot,
  startServer,
  type WatchedPage,
} from "./support/browser.js";

type UsageDay = sdk.components["schemas"]["UsageDay"];

// The webhook receiver below listens on loopback, which the server refuses as a webhook
// URL unless the operator allows it (as the server's own tests do). startServer passes
// this process's environment to the binary.
process.env["MINITTER_WEBHOOK_ALLOWED_NETWORKS"] = "127.0.0.1/32";

let server: RunningServer;
let receiver: Server;
let receiverUrl: string;

before(async () => {
  server = await startServer();
  // A webhook receiver: /ok answers 204; /gone answers 410 (the server disables the
  // subscription), with a body that would run if the page rendered it as HTML.
  receiver = createServer((request, response) => {
    request.resume();
    if (request.url?.startsWith("/gone")) {
      response.writeHead(410, { "content-type": "text/html" });
      response.end(`<img src=x onerror="window.__pwned=3"><script>window.__pwned=4</script>gone`);
    } else {
      response.writeHead(204);
      response.end();
    }
  });
  await new Promise<void>((resolve) => receiver.listen(0, "127.0.0.1", resolve));
  receiverUrl = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}`;
});

after(async () => {
  await server?.stop();
  await new Promise((resolve) => (receiver ? receiver.close(resolve) : resolve(undefined)));
});

/** A client of the SDK with `apiKey`, sending each request once. */
function client(apiKey: string) {
  return sdk.createClient({ baseUrl: server.baseUrl, apiKey, retry: { maxRetries: 0 } });
}

const today = () => new Date().toISOString().slice(0, 10);
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Today's row of the key's history, through the SDK. */
async function todayOf(apiKey: string): Promise<UsageDay> {
  const history = await sdk.unwrap(client(apiKey).api.GET("/v1/usage/history", { params: { query: { start_date: today(), end_date: today() } } }));
  const day = history.days.find((entry) => entry.date === today());
  assert.ok(day, "the history has today");
  return day;
}

/** Signs `page` in with `apiKey` and waits for the plan. */
async function signIn(page: Page, apiKey: string): Promise<void> {
  await page.getByLabel("API key").fill(apiKey);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#plan-name").waitFor();
  // Every section has loaded: a call still in flight could meet a change the test makes next.
  await page.waitForFunction(() => document.querySelector('[aria-busy="true"]') === null);
}

/** Drops the 401/403 that Chromium logs for a refusal the test causes on purpose. */
function forgiveRefusals(watched: WatchedPage): void {
  watched.errors.splice(0, watched.errors.length, ...watched.errors.filter((error) => !/status of 40[13]/.test(error)));
}

/** A plan named `name` (with `description`) and a key in it, made with the admin token as planKey does. */
async function namedPlanKey(name: string, description: string): Promise<string> {
  const admin = { authorization: `Bearer ${server.adminToken}`, "content-type": "application/json" };
  const plan = await fetch(`${server.baseUrl}/admin/v1/usage-plans`, { method: "POST", headers: admin, body: JSON.stringify({ name, description }) });
  assert.equal(plan.status, 201, await plan.clone().text());
  const { id } = (await plan.json()) as { id: string };
  const key = await fetch(`${server.baseUrl}/admin/v1/api-keys`, { method: "POST", headers: admin, body: JSON.stringify({ name: "portal tests", plan_id: id }) });
  assert.equal(key.status, 201, await key.clone().text());
  return ((await key.json()) as { secret: string }).secret;
}

test("the portal shows the plan, the quota used and the requests per day the API reports", async (t) => {
  const browser = await launch(t);
  if (browser === undefined) return;
  // A small throttle (bursts of 6, 2 a second) to be exceeded, and a daily quota.
  const key = await planKey(server.baseUrl, server.adminToken, { throttle: { rate_limit: 2, burst_limit: 6 }, quota: { limit: 1000, period: "DAY" } });
  const partner = client(key);

  // Traffic: answered requests, client errors (a user that does not exist), then a rush
  // that the throttle refuses in part.
  for (let i = 0; i < 2; i++) await sdk.unwrap(partner.api.GET("/v1/usage"));
  for (let i = 0; i < 2; i++) {
    const missing = await partner.api.GET("/v1/users/{user_id}", { params: { path: { user_id: crypto.randomUUID() } } });
    assert.equal(missing.response.status, 404);
  }
  const rush = await Promise.all(Array.from({ length: 16 }, () => partner.api.GET("/v1/usage")));
  const throttled = rush.filter((result) => result.response.status === 429).length;
  assert.ok(throttled > 0, "the rush was throttled");
  // Let the bucket fill up again (3 s) and the counts settle (at most a second old).
  await sleep(3500);
  const before = await todayOf(key);
  assert.equal(before.client_errors, 2);
  assert.equal(before.throttled, throttled);
  await sleep(1200);

  try {
    const watched = await openPage(browser, server.baseUrl, "/portal/");
    const { page } = watched;
    const historyResponse = page.waitForResponse((response) => new URL(response.url()).pathname === "/v1/usage/history");
    await signIn(page, key);
    const shownHistory = (await (await historyResponse).json()) as { days: UsageDay[] };
    await page.locator("#history-table tbody tr").first().waitFor({ state: "attached" });
    await page.locator("#webhooks-heading ~ p:not([aria-busy])").waitFor();
    await sleep(1200);
    const usage = await sdk.unwrap(partner.api.GET("/v1/usage"));
    const afterwards = await todayOf(key);

    // The plan, as GET /v1/usage gives it.
    assert.equal(await page.locator("#plan-name").textContent(), usage.plan.name);
    assert.equal(await page.locator("#plan-throttle").textContent(), "2 requests a second, bursts of 6");
    assert.match((await page.locator("#plan-quota").textContent()) ?? "", /^1,000 requests a day/);
    assert.equal(await page.locator("#usage-limit").textContent(), "1,000");
    assert.equal(await page.locator("#usage-meter").getAttribute("max"), String(usage.plan.quota?.limit));
    const used = Number((await page.locator("#usage-used").textContent())?.replace(/,/g, ""));
    assert.ok(used > before.used && used < usage.used, `the page shows ${used} used, between ${before.used} and ${usage.used}`);
    assert.equal(Number(await page.locator("#usage-meter").getAttribute("value")), used);
    // Today's rate limits, from the response's headers: the plan's quota.
    assert.match((await page.locator('#rate-limits [data-policy="quota"]').textContent()) ?? "", /^Quota: \d+ of 1,000 left/);

    // The table: one row per day of the last 30, the very numbers the API sent the page…
    const rows = await page.locator("#history-table tbody tr").evaluateAll((trs) =>
      trs.map((tr) => ({
        date: tr.getAttribute("data-day"),
        used: Number(tr.getAttribute("data-used")),
        client_errors: Number(tr.getAttribute("data-client-errors")),
        throttled: Number(tr.getAttribute("data-throttled")),
        answered: Number(tr.getAttribute("data-answered")),
      })),
    );
    assert.equal(rows.length, 30);
    assert.equal(rows.at(-1)?.date, today());
    assert.deepEqual(
      rows.map(({ answered: _answered, ...day }) => day),
      shownHistory.days,
    );
    for (const row of rows) assert.equal(row.answered, row.used - row.client_errors);
    // … which, for today, are those the SDK read before and after: the page's own
    // requests are all answered, so only `used` moved in between.
    const shownToday = rows.at(-1)!;
    assert.equal(shownToday.client_errors, before.client_errors);
    assert.equal(shownToday.throttled, before.throttled);
    assert.equal(afterwards.client_errors, before.client_errors);
    assert.equal(afterwards.throttled, before.throttled);
    assert.ok(shownToday.used > before.used && shownToday.used < afterwards.used, `today ${shownToday.used} between ${before.used} and ${afterwards.used}`);
    // The days before today had no requests, as the SDK reads them too.
    const past = await sdk.unwrap(partner.api.GET("/v1/usage/history", { params: { query: { start_date: rows[0]!.date!, end_date: rows.at(-2)!.date! } } }));
    assert.deepEqual(
      rows.slice(0, -1).map(({ answered: _answered, ...day }) => day),
      past.days,
    );

    // uPlot drew those arrays, on a canvas of some size with something on it.
    const drawn = await page.evaluate(() => {
      const chart = document.getElementById("usage-chart") as (HTMLElement & { uplot?: { data: number[][] } }) | null;
      const canvas = chart?.querySelector("canvas");
      const context = canvas?.getContext("2d");
      const pixels = canvas && context ? context.getImageData(0, 0, canvas.width, canvas.height).data : undefined;
      let inked = 0;
      if (pixels) for (let i = 3; i < pixels.length; i += 4) if (pixels[i]! > 0) inked++;
      return { data: chart?.uplot?.data, width: canvas?.width ?? 0, height: canvas?.height ?? 0, inked };
    });
    assert.ok(drawn.width > 0 && drawn.height > 0, "the canvas has a size");
    assert.ok(drawn.inked > 0, "the canvas is drawn on");
    assert.deepEqual(drawn.data, [
      shownHistory.days.map((day) => Date.parse(`${day.date}T00:00:00Z`) / 1000),
      shownHistory.days.map((day) => day.used - day.client_errors),
      shownHistory.days.map((day) => day.client_errors),
      shownHistory.days.map((day) => day.throttled),
    ]);

    await assertAccessible(page, "the portal signed in");
    await page.getByText("Show the numbers").click();
    await assertAccessible(page, "the portal with the day table open");
    await screenshot(page, "portal");
    watched.assertClean();
    await watched.context.close();

    // At 375 px: no horizontal scroll of the page, the chart as wide as its box.
    const phone = await openPage(browser, server.baseUrl, "/portal/", { width: 375, height: 740 });
    await signIn(phone.page, key);
    await phone.page.locator("#usage-chart canvas").waitFor();
    const widths = await phone.page.evaluate(() => ({
      page: document.documentElement.scrollWidth,
      chart: document.querySelector("#usage-chart canvas")?.getBoundingClientRect().right ?? Infinity,
    }));
    assert.ok(widths.page <= 375, `the page is ${widths.page} px wide at 375 px`);
    assert.ok(widths.chart <= 375, `the chart reaches ${widths.chart} px at 375 px`);
    await assertAccessible(phone.page, "the portal at 375 px");
    await screenshot(phone.page, "portal-375");
    phone.assertClean();
  } finally {
    await browser.close();
  }
});

test("rotating the key shows the new secret once, the old one is refused at once, and the page goes on with the new one", async (t) => {
  const browser = await launch(t);
  if (browser === undefined) return;
  const oldKey = await planKey(server.baseUrl, server.adminToken, { throttle: { rate_limit: 50, burst_limit: 100 } });
  try {
    const watched = await openPage(browser, server.baseUrl, "/portal/");
    const { page, context } = watched;
    await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: server.baseUrl });
    await signIn(page, oldKey);
    // A second tab, signed in with the same key before the rotation.
    const stale = await openPage(browser, server.baseUrl, "/portal/");
    await signIn(stale.page, oldKey);

    // The confirmation step: a modal dialog, which Cancel closes without rotating.
    await page.getByRole("button", { name: "Rotate key…" }).click();
    const dialog = page.getByRole("dialog", { name: "Rotate the API key?" });
    await dialog.waitFor();
    await assertAccessible(page, "the rotation dialog open");
    await dialog.getByRole("button", { name: "Cancel" }).click();
    await dialog.waitFor({ state: "hidden" });
    await sdk.unwrap(client(oldKey).api.GET("/v1/usage"));

    await page.getByRole("button", { name: "Rotate key…" }).click();
    const rotation = page.waitForResponse((response) => new URL(response.url()).pathname === "/v1/api-key/rotate");
    await dialog.getByRole("button", { name: "Rotate now" }).click();
    assert.equal((await rotation).status(), 200);
    const newKey = ((await page.locator("#new-secret").textContent()) ?? "").trim();
    assert.ok(newKey.length > 20 && newKey !== oldKey, "a new secret is shown");
    assert.match((await page.locator("#old-key-stopped").textContent()) ?? "", /old key has stopped working/);
    await assertAccessible(page, "the new key shown");
    await screenshot(page, "portal-rotated");
    const rotatedAt = watched.requests.length;

    // The API refuses the old key at once, and takes the new one.
    const refused = await client(oldKey).api.GET("/v1/usage");
    assert.ok([401, 403].includes(refused.response.status), `the old key got ${refused.response.status}`);
    const usage = await sdk.unwrap(client(newKey).api.GET("/v1/usage"));
    assert.equal(await page.locator("#plan-name").textContent(), usage.plan.name);

    // The copy button puts the new key on the clipboard; the tab keeps the new key only.
    await page.getByRole("button", { name: "Copy new key" }).click();
    await page.getByText("Copied to the clipboard.").waitFor();
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), newKey);
    const stored = await page.evaluate(() => ({ local: JSON.stringify(localStorage), session: JSON.stringify(sessionStorage) }));
    assert.ok(stored.session.includes(newKey) && !stored.session.includes(oldKey), "sessionStorage holds the new key");
    assert.ok(!stored.local.includes(newKey), "the new key is in localStorage");

    // The page keeps working, with the new key on every request after the rotation.
    const reread = page.waitForResponse((response) => new URL(response.url()).pathname === "/v1/usage/history");
    await page.getByRole("button", { name: "Refresh usage" }).click();
    assert.equal((await reread).status(), 200);
    await page.getByRole("button", { name: "Refresh usage" }).waitFor();
    const since = watched.requests.slice(rotatedAt).filter((request) => request.path.startsWith("/v1/"));
    assert.ok(since.some((request) => request.path === "/v1/usage/history"), "the page read its history again");
    for (const request of since) assert.equal(request.apiKey, newKey, `${request.method} ${request.path} after the rotation`);
    for (const request of watched.requests) assert.ok(!request.path.includes(newKey) && !request.path.includes(oldKey), request.path);

    // "Copy API key" for Swagger UI copies the key in use: the new one.
    await page.evaluate(() => navigator.clipboard.writeText(""));
    await page.getByRole("button", { name: "Copy API key" }).click();
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), newKey);
    assert.equal(await page.getByRole("link", { name: /API documentation/ }).getAttribute("href"), "/docs/");

    // Shown once: hidden for good once dismissed, and not after a reload (signed in still).
    await page.getByRole("button", { name: /hide the key/ }).click();
    assert.equal(await page.locator("#new-secret").count(), 0);
    await page.reload();
    await page.locator("#plan-name").waitFor();
    assert.equal(await page.locator("#new-secret").count(), 0);
    assert.equal(await page.getByText(newKey).count(), 0);
    watched.assertClean();

    // The other tab's key was rotated away: its next call is refused, and it is back at
    // sign-in with the API's reason.
    await stale.page.getByRole("button", { name: "Refresh usage" }).click();
    await stale.page.getByRole("alert").waitFor();
    const reason = (await stale.page.getByRole("alert").textContent()) ?? "";
    assert.ok(reason.length > 0);
    assert.equal(reason, (refused.error as { detail?: string } | undefined)?.detail, "the alert is the API's problem detail");
    await stale.page.getByLabel("API key").waitFor();
    assert.equal(await stale.page.evaluate(() => sessionStorage.length), 0);
    forgiveRefusals(stale);
    stale.assertClean();
  } finally {
    await browser.close();
  }
});

test("the portal lists the key's webhooks with their breaker and, expanded, their deliveries", async (t) => {
  const browser = await launch(t);
  if (browser === undefined) return;
  const key = await planKey(server.baseUrl, server.adminToken, { throttle: { rate_limit: 50, burst_limit: 100 } });
  const partner = client(key);
  const ok = await sdk.unwrap(
    partner.api.POST("/v1/webhooks", { body: { url: `${receiverUrl}/ok`, event_types: ["tweet.created", "user.followed"], description: "Production receiver" } }),
  );
  const gone = await sdk.unwrap(partner.api.POST("/v1/webhooks", { body: { url: `${receiverUrl}/gone`, event_types: ["tweet.deleted"] } }));
  for (const { id } of [ok, gone]) {
    const ping = await partner.api.POST("/v1/webhooks/{webhook_id}/test", { params: { path: { webhook_id: id } } });
    assert.equal(ping.response.status, 202);
  }
  // Wait until both pings were answered: /ok with 204, /gone with 410 (which disables it).
  const deliveries = async (webhook_id: string) =>
    (await sdk.unwrap(partner.api.GET("/v1/webhooks/{webhook_id}/deliveries", { params: { path: { webhook_id } } }))).items;
  for (let i = 0; ; i++) {
    const [okDeliveries, goneDeliveries] = await Promise.all([deliveries(ok.id), deliveries(gone.id)]);
    if (okDeliveries[0]?.status === "delivered" && goneDeliveries[0]?.status === "failed") break;
    assert.ok(i < 100, "the pings were not delivered in 10 s");
    await sleep(100);
  }
  const listed = (await sdk.unwrap(partner.api.GET("/v1/webhooks"))).items;
  assert.equal(listed.length, 2);

  try {
    const watched = await openPage(browser, server.baseUrl, "/portal/");
    const { page } = watched;
    await signIn(page, key);
    await page.locator("#webhooks").waitFor();
    for (const webhook of listed) {
      const item = page.locator(`li[data-webhook-id="${webhook.id}"]`);
      assert.equal(await item.locator(".webhook-url").textContent(), webhook.url);
      assert.equal(await item.locator(".webhook-events").textContent(), webhook.event_types.join(", "));
      assert.equal(await item.locator(".webhook-breaker").getAttribute("data-state"), webhook.breaker.state);
      assert.match((await item.locator(".webhook-breaker").textContent()) ?? "", new RegExp(`^${webhook.breaker.state.replace("_", " ")}`));
      assert.match((await item.locator(".webhook-enabled").textContent()) ?? "", webhook.enabled ? /^yes/ : new RegExp(`^no \\(disabled by the server: ${webhook.disabled_reason}\\)`));
    }
    assert.equal(listed.find((webhook) => webhook.id === gone.id)?.enabled, false, "a 410 disabled the subscription");

    // Expanded, each lists its deliveries as the API does.
    for (const webhook of listed) {
      const item = page.locator(`li[data-webhook-id="${webhook.id}"]`);
      const toggle = item.getByRole("button", { name: "Show recent deliveries" });
      assert.equal(await toggle.getAttribute("aria-expanded"), "false");
      await toggle.click();
      await item.locator("table.deliveries tbody tr").first().waitFor();
      assert.equal(await item.getByRole("button", { name: "Hide deliveries" }).getAttribute("aria-expanded"), "true");
      const expected = await deliveries(webhook.id);
      const shown = await item.locator("table.deliveries tbody tr").evaluateAll((trs) =>
        trs.map((tr) => ({ id: tr.getAttribute("data-delivery-id"), status: tr.getAttribute("data-status"), cells: [...(tr as HTMLTableRowElement).cells].map((cell) => cell.textContent ?? "") })),
      );
      assert.deepEqual(
        shown.map(({ id, status, cells }) => ({ id, status, event: cells[0], attempts: cells[2] })),
        expected.map((delivery) => ({ id: delivery.id, status: delivery.status, event: delivery.event_type, attempts: String(delivery.attempts) })),
      );
      for (const [index, delivery] of expected.entries()) {
        assert.ok(shown[index]!.cells[3]!.startsWith(`HTTP ${delivery.last_status_code}`), shown[index]!.cells[3]);
        if (delivery.last_response_excerpt) assert.ok(shown[index]!.cells[3]!.includes(delivery.last_response_excerpt), "the excerpt is shown as text");
      }
    }
    assert.equal(await page.locator("#webhooks img, #webhooks script").count(), 0);
    assert.equal(await page.evaluate(() => (window as unknown as { __pwned?: unknown }).__pwned), undefined);
    await assertAccessible(page, "the webhooks expanded");
    await screenshot(page, "portal-webhooks");
    watched.assertClean();
  } finally {
    await browser.close();
  }
});

test("hostile plan names and webhook descriptions are shown as text, never run", async (t) => {
  const browser = await launch(t);
  if (browser === undefined) return;
  const name = `<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>`;
  const description = `</dd><svg onload="window.__pwned=5"><b>bold?</b>`;
  const key = await namedPlanKey(name, description);
  const hook = `"><img src=x onerror="window.__pwned=6"><script>window.__pwned=7</script>`;
  await sdk.unwrap(client(key).api.POST("/v1/webhooks", { body: { url: `${receiverUrl}/ok?q=%3Cscript%3E`, event_types: ["tweet.created"], description: hook } }));
  try {
    const watched = await openPage(browser, server.baseUrl, "/portal/");
    const { page } = watched;
    await signIn(page, key);
    await page.locator("#webhooks").waitFor();
    assert.equal(await page.locator("#plan-name").textContent(), name);
    assert.ok(((await page.locator("#plan-heading ~ dl").textContent()) ?? "").includes(description));
    assert.equal(await page.locator(".webhook-description").textContent(), hook);
    assert.equal(await page.locator("#app img, #app script, #app svg").count(), 0);
    await sleep(200);
    assert.equal(await page.evaluate(() => (window as unknown as { __pwned?: unknown }).__pwned), undefined);
    await assertAccessible(page, "the portal with hostile strings");
    watched.assertClean();
  } finally {
    await browser.close();
  }
});

test("a key the operator disables sends the page back to sign-in with the API's reason", async (t) => {
  const browser = await launch(t);
  if (browser === undefined) return;
  const key = await planKey(server.baseUrl, server.adminToken);
  const { key_id } = await sdk.unwrap(client(key).api.GET("/v1/usage"));
  try {
    const watched = await openPage(browser, server.baseUrl, "/portal/");
    const { page } = watched;
    await signIn(page, key);
    const disabled = await fetch(`${server.baseUrl}/admin/v1/api-keys/${key_id}`, {
      method: "PATCH",
      headers: { authorization: `Bearer ${server.adminToken}`, "content-type": "application/json" },
      body: JSON.stringify({ enabled: false }),
    });
    assert.equal(disabled.status, 200, await disabled.text());
    const refused = await client(key).api.GET("/v1/usage");
    assert.ok([401, 403].includes(refused.response.status), `a disabled key got ${refused.response.status}`);

    await page.getByRole("button", { name: "Refresh usage" }).click();
    const alert = page.getByRole("alert");
    await alert.waitFor();
    assert.equal(await alert.textContent(), (refused.error as { detail?: string } | undefined)?.detail);
    await page.getByLabel("API key").waitFor();
    assert.equal(await page.locator("#plan-name").count(), 0);
    assert.equal(await page.evaluate(() => sessionStorage.length), 0);
    await assertAccessible(page, "the portal after a refusal");
    forgiveRefusals(watched);
    watched.assertClean();
  } finally {
    await browser.close();
  }
});
