// The realtime stream in a real headless Chromium (Debian's, driven by Playwright, as
// test/swagger.test.ts): examples/browser-stream/ is bundled with the SDK by esbuild at
// test time, served on the API's own origin through Playwright's request routing (the
// server has no CORS, and needs none for a page it serves), and shows a tweet posted
// through the REST API as soon as the browser's own WebSocket delivers it.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { build } from "esbuild";
import type { Browser } from "playwright-core";

import { createClient, unwrap } from "../src/index.js";
import { chromiumMissing, launchChromium } from "./support/chromium.js";
import { type RunningServer, startServer } from "./support/server.js";

const SDK = join(import.meta.dirname, "..", "..");
const EXAMPLE = join(SDK, "examples", "browser-stream");

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

/** examples/browser-stream/main.ts with the SDK, as one ES module for the browser. */
async function bundle(): Promise<string> {
  const result = await build({
    entryPoints: [join(EXAMPLE, "main.ts")],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    write: false,
    logLevel: "silent",
    // `@minitter/client` resolves to src/index.ts through tsconfig.json's `paths`.
    tsconfig: join(SDK, "tsconfig.json"),
  });
  const [output] = result.outputFiles;
  assert.ok(output !== undefined);
  return output.text;
}

test("a page bundled with the SDK shows a tweet the moment it is posted", async (t) => {
  const missing = chromiumMissing();
  if (missing !== undefined) {
    t.skip(missing);
    return;
  }
  const client = createClient({ baseUrl: server.baseUrl, apiKey: server.apiKey });
  const body = { username: "browser_streamer", email: "browser_streamer@example.com", password: "correct horse battery staple" };
  await unwrap(client.api.POST("/v1/users", { body }));
  const { access_token } = await unwrap(client.api.POST("/v1/auth/token", { body: { email: body.email, password: body.password } }));
  const ada = client.withBearerToken(access_token);

  const script = await bundle();
  const html = readFileSync(join(EXAMPLE, "index.html"), "utf8");
  const context = await browser.newContext();
  // A page fulfilled by Playwright comes from no address, so Chromium counts it as public,
  // and its Local Network Access checks would refuse its WebSocket to 127.0.0.1; the page
  // served by the API itself would be a loopback page. Grant what the user would.
  await context.grantPermissions(["local-network-access"], { origin: server.baseUrl });
  const page = await context.newPage();
  const consoleErrors: string[] = [];
  const foreignRequests: string[] = [];
  const origin = new URL(server.baseUrl).host;
  page.on("console", (message) => {
    if (message.type() === "error") consoleErrors.push(message.text());
  });
  page.on("pageerror", (error) => consoleErrors.push(error.message));
  page.on("request", (request) => {
    if (new URL(request.url()).host !== origin) foreignRequests.push(request.url());
  });
  const sockets: string[] = [];
  page.on("websocket", (socket) => sockets.push(socket.url()));
  await page.route(`${server.baseUrl}/stream-demo/**`, (route) => {
    const path = new URL(route.request().url()).pathname;
    if (path === "/stream-demo/index.html") return route.fulfill({ contentType: "text/html", body: html });
    if (path === "/stream-demo/main.js") return route.fulfill({ contentType: "text/javascript", body: script });
    return route.fulfill({ status: 404 });
  });

  const fragment = new URLSearchParams({ key: server.apiKey, token: access_token });
  await page.goto(`${server.baseUrl}/stream-demo/index.html#${fragment}`);
  const status = page.locator("#status");
  await page
    .waitForFunction(() => document.querySelector("#status")?.textContent === "live on home", undefined, { timeout: 15_000 })
    .catch(async (error: unknown) => {
      throw new Error(`the page says ${JSON.stringify(await status.textContent())}; errors: ${JSON.stringify(consoleErrors)}`, {
        cause: error,
      });
    });

  const text = `Hello from the REST API, ${crypto.randomUUID().slice(0, 8)}`;
  const tweet = await unwrap(ada.api.POST("/v1/tweets", { body: { text } }));
  const item = page.locator(`#tweets li[data-id="${tweet.id}"]`);
  await item.waitFor({ timeout: 10_000 });
  assert.equal(await item.textContent(), text);
  assert.equal(await status.textContent(), "live on home");
  assert.equal(sockets.length, 1);
  assert.match(sockets[0] ?? "", new RegExp(`^ws://${origin}/v1/stream\\?ticket=st_`));

  // Deleting it through the REST API takes it off the page too.
  await unwrap(ada.api.DELETE("/v1/tweets/{tweet_id}", { params: { path: { tweet_id: tweet.id } } }));
  await item.waitFor({ state: "detached", timeout: 10_000 });

  assert.deepEqual(consoleErrors, []);
  assert.deepEqual(foreignRequests, []);
  await context.close();
});
