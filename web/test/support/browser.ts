// The pages in a real headless Chromium (Debian's, driven by Playwright, as the SDK's
// Swagger UI test), against the real server binary (the SDK's test support starts it).
// A page is opened on the server's own origin, as a user would open it, and every
// console error (a refusal by the content security policy shows as one), uncaught
// exception and request to another host is collected for the test to assert none.
import assert from "node:assert/strict";
import { mkdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import type { TestContext } from "node:test";

import { type Browser, type BrowserContext, chromium, type Page } from "playwright-core";

import { CHROMIUM, CHROMIUM_ARGS, chromiumMissing } from "../../../client-sdk/typescript/test/support/chromium.js";

export { planKey, type RunningServer, startServer } from "../../../client-sdk/typescript/test/support/server.js";

/** Where each page's screenshot goes (CI keeps the folder as an artifact). */
export const SCREENSHOTS = process.env["MINITTER_SCREENSHOTS"] ?? join(process.cwd(), "build", "screenshots");

/**
 * Chromium, or `undefined` after marking the test skipped when there is none. With
 * `CI=true` a missing Chromium fails instead: CI installs it.
 */
export async function launch(t: TestContext): Promise<Browser | undefined> {
  const missing = chromiumMissing();
  if (missing !== undefined) {
    if (process.env["CI"] === "true") assert.fail(missing);
    t.skip(missing);
    return undefined;
  }
  // With this package's Playwright (the SDK's launchChromium gives its own copy's types).
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
}

/** A page of `browser`, and what went wrong in it. */
export interface WatchedPage {
  readonly context: BrowserContext;
  readonly page: Page;
  /** Console errors and uncaught exceptions, in order. */
  readonly errors: string[];
  /** Requests to any host but the server's. */
  readonly foreignRequests: string[];
  /** Every request the page made, as `METHOD path` with its `authorization` header if any. */
  readonly requests: { method: string; path: string; authorization: string | undefined; apiKey: string | undefined }[];
  /** Fails the test if anything above went wrong. */
  assertClean(): void;
}

export async function openPage(browser: Browser, baseUrl: string, path: string, viewport = { width: 1280, height: 900 }): Promise<WatchedPage> {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const origin = new URL(baseUrl).host;
  const errors: string[] = [];
  const foreignRequests: string[] = [];
  const requests: WatchedPage["requests"] = [];
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(message.text());
  });
  page.on("pageerror", (error) => errors.push(error.message));
  page.on("request", (request) => {
    const url = new URL(request.url());
    if (url.protocol.startsWith("http") && url.host !== origin) foreignRequests.push(request.url());
    const headers = request.headers();
    requests.push({ method: request.method(), path: url.pathname, authorization: headers["authorization"], apiKey: headers["x-api-key"] });
  });
  await page.goto(`${baseUrl}${path}`);
  return {
    context,
    page,
    errors,
    foreignRequests,
    requests,
    assertClean() {
      assert.deepEqual(errors, [], "console errors");
      assert.deepEqual(foreignRequests, [], "requests to other hosts");
    },
  };
}

const AXE_SOURCE = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");

/**
 * Runs axe-core in the page (injected through the DevTools protocol, which the page's
 * policy does not govern) and fails on any serious or critical violation.
 */
export async function assertAccessible(page: Page, what: string): Promise<void> {
  await page.evaluate(AXE_SOURCE);
  const violations = await page.evaluate(async () => {
    const axe = (globalThis as unknown as { axe: { run(): Promise<{ violations: { id: string; impact: string | null; help: string; nodes: { target: unknown }[] }[] }> } }).axe;
    const result = await axe.run();
    return result.violations.map((violation) => ({
      id: violation.id,
      impact: violation.impact,
      help: violation.help,
      targets: violation.nodes.map((node) => JSON.stringify(node.target)),
    }));
  });
  const grave = violations.filter((violation) => violation.impact === "serious" || violation.impact === "critical");
  assert.deepEqual(grave, [], `${what}: axe-core found serious or critical violations`);
}

/** Saves a full-page screenshot as `<name>.png` in {@link SCREENSHOTS}. */
export async function screenshot(page: Page, name: string): Promise<void> {
  mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({ path: join(SCREENSHOTS, `${name}.png`), fullPage: true });
}
