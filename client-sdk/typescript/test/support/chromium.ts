// Debian's Chromium, driven by Playwright, for the tests that run pages in a real browser
// (Swagger UI, the stream's browser page, and web/'s portal and console).
import { existsSync } from "node:fs";

import { type Browser, chromium } from "playwright-core";

/** Where Chromium is: `CHROMIUM_PATH`, or Debian's package's. */
export const CHROMIUM = process.env["CHROMIUM_PATH"] ?? "/usr/bin/chromium";

/** Why a browser test cannot run here, or `undefined` when Chromium is installed. */
export function chromiumMissing(): string | undefined {
  return existsSync(CHROMIUM) ? undefined : `no Chromium at ${CHROMIUM} (apt-get install chromium, or set CHROMIUM_PATH)`;
}

/** Headless and quiet: no background network, no component updates, no sync. */
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
];

/** Chromium, launched with {@link CHROMIUM_ARGS}. */
export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
}
