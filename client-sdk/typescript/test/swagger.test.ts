// Swagger UI at /docs/, in a real headless Chromium driven by Playwright: it loads with no
// console error and no request to any other host, lists every tag, accepts a bearer token
// in "Authorize", and "Try it out" on sign-up gets a 201 in the page.
import assert from "node:assert/strict";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";

import type { Browser } from "playwright-core";

import { createClient, unwrap } from "../src/index.js";
import { chromiumMissing, launchChromium } from "./support/chromium.js";
import { type RunningServer, startServer } from "./support/server.js";

const ROOT = join(import.meta.dirname, "..", "..", "..", "..");
const SCREENSHOT = join(ROOT, "docs", "img", "swagger-ui.png");

let server: RunningServer;
let browser: Browser;

before(async () => {
  if (chromiumMissing() !== undefined) return;
  server = await startServer();
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await server?.stop();
});

test("Swagger UI shows the API and Try it out works", async (t) => {
  const missing = chromiumMissing();
  if (missing !== undefined) {
    t.skip(missing);
    return;
  }
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  const consoleErrors: string[] = [];
  const foreignRequests: string[] = [];
  const origin = new URL(server.baseUrl).host;
  page.on("console", (message) => {
    if (message.type() === "error") consoleErrors.push(message.text());
  });
  page.on("request", (request) => {
    const url = new URL(request.url());
    if (url.protocol.startsWith("http") && url.host !== origin) foreignRequests.push(request.url());
  });

  await page.goto(`${server.baseUrl}/docs/`);
  await page.locator(".opblock-tag").first().waitFor();

  const spec = readFileSync(join(ROOT, "openapi.yaml"), "utf8");
  const tags = [...spec.matchAll(/^  - name: (\S+)$/gm)].map((m) => m[1]);
  const shown = await page.locator(".opblock-tag").evaluateAll((els) => els.map((el) => el.getAttribute("data-tag")));
  assert.deepEqual(shown, tags);

  // Authorize with the API key and a real bearer token.
  const client = createClient({ baseUrl: server.baseUrl, apiKey: server.apiKey });
  const body = { username: "swagger", email: "swagger@example.com", password: "correct horse battery staple" };
  await unwrap(client.api.POST("/v1/users", { body }));
  const { access_token } = await unwrap(
    client.api.POST("/v1/auth/token", { body: { email: body.email, password: body.password } }),
  );
  await page.locator("button.authorize").first().click();
  const apiKey = page.locator(".auth-container", { hasText: "x-api-key" });
  await apiKey.locator("input").fill(server.apiKey);
  await apiKey.locator("button.authorize").click();
  await apiKey.locator("button", { hasText: "Logout" }).waitFor();
  const bearer = page.locator(".auth-container", { hasText: "bearerAuth" });
  await bearer.locator("input").fill(access_token);
  await bearer.locator("button.authorize").click();
  await bearer.locator("button", { hasText: "Logout" }).waitFor();
  await bearer.locator("button", { hasText: "Close" }).click();

  // Try it out on sign-up (operations open ready to execute).
  const signUp = page.locator("#operations-users-sign_up");
  await signUp.locator(".opblock-summary-control").click();
  const editor = signUp.locator("textarea.body-param__text");
  await editor.waitFor();
  await editor.fill(JSON.stringify({ username: "from_browser", email: "browser@example.com", password: body.password }));
  await signUp.locator("button.execute").click();
  const status = signUp.locator(".live-responses-table tbody .response-col_status").first();
  await status.waitFor();
  assert.equal((await status.textContent())?.trim(), "201");

  mkdirSync(join(ROOT, "docs", "img"), { recursive: true });
  await signUp.locator(".live-responses-table").scrollIntoViewIfNeeded();
  await page.screenshot({ path: SCREENSHOT, fullPage: false });
  assert.deepEqual(consoleErrors, []);
  assert.deepEqual(foreignRequests, []);
  await context.close();
});
