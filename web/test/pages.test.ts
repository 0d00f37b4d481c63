// The shell of both pages: served by the binary under its policy, signing in and out
// with a secret kept in sessionStorage only, accessible, usable at 375 px.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";

import { assertAccessible, launch, openPage, type RunningServer, startServer } from "./support/browser.js";

let server: RunningServer;

before(async () => {
  server = await startServer();
});

after(async () => {
  await server?.stop();
});

for (const { path, label, secret, shows } of [
  { path: "/portal/", label: "API key", secret: () => server.apiKey, shows: "#plan-name" },
  { path: "/console/", label: "Admin token", secret: () => server.adminToken, shows: "#plans" },
]) {
  test(`${path} signs in, keeps the secret out of localStorage and URLs, and signs out`, async (t) => {
    const browser = await launch(t);
    if (browser === undefined) return;
    try {
      for (const viewport of [{ width: 1280, height: 900 }, { width: 375, height: 740 }]) {
        const watched = await openPage(browser, server.baseUrl, path, viewport);
        const { page } = watched;
        await assertAccessible(page, `${path} signed out at ${viewport.width} px`);

        // A wrong secret is refused in the page, with the API's reason.
        await page.getByLabel(label).fill("wrong");
        await page.getByRole("button", { name: "Sign in" }).click();
        await page.getByRole("alert").waitFor();

        await page.getByLabel(label).fill(secret());
        await page.keyboard.press("Enter");
        await page.locator(shows).waitFor();
        await assertAccessible(page, `${path} signed in at ${viewport.width} px`);
        const width = await page.evaluate(() => document.documentElement.scrollWidth);
        assert.ok(width <= viewport.width, `${path} is ${width} px wide in a ${viewport.width} px window`);

        const stored = await page.evaluate(() => ({ local: JSON.stringify(localStorage), session: JSON.stringify(sessionStorage) }));
        assert.ok(!stored.local.includes(secret()), "the secret is in localStorage");
        assert.ok(stored.session.includes(secret()), "the secret is not kept for a reload");
        assert.ok(!page.url().includes(secret()), "the secret is in the URL");
        for (const request of watched.requests) assert.ok(!request.path.includes(secret()) && !request.path.includes("wrong"), request.path);

        // A reload keeps the tab signed in; signing out forgets the secret.
        await page.reload();
        await page.locator(shows).waitFor();
        await page.getByRole("button", { name: "Sign out" }).click();
        await page.getByLabel(label).waitFor();
        assert.equal(await page.evaluate(() => sessionStorage.length), 0);

        // The wrong secret's refusal shows as the API's 401/403, which Chromium logs.
        watched.errors.splice(0, watched.errors.length, ...watched.errors.filter((error) => !/status of 40[13]/.test(error)));
        watched.assertClean();
        await watched.context.close();
      }
    } finally {
      await browser.close();
    }
  });
}

test("the console's token goes to the operator API only", async (t) => {
  const browser = await launch(t);
  if (browser === undefined) return;
  try {
    const watched = await openPage(browser, server.baseUrl, "/console/");
    await watched.page.getByLabel("Admin token").fill(server.adminToken);
    await watched.page.keyboard.press("Enter");
    await watched.page.locator("#plans").waitFor();
    const api = watched.requests.filter((request) => request.authorization !== undefined);
    assert.ok(api.length > 0);
    for (const request of api) assert.match(request.path, /^\/admin\//, `${request.method} ${request.path} carried the admin token`);
    watched.assertClean();
  } finally {
    await browser.close();
  }
});
