// examples/tour.ts (the SDK README's snippets) runs against the real server, as a partner
// would run it: compiled, importing the package by its name, configured by environment.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";

import { type RunningServer, startServer } from "./support/server.js";

let server: RunningServer;

before(async () => {
  server = await startServer();
});

after(async () => {
  await server.stop();
});

test("the README's tour runs against a live server", async () => {
  const tour = join(import.meta.dirname, "..", "examples", "tour.js");
  const { stdout } = await promisify(execFile)(process.execPath, [tour], {
    env: { ...process.env, MINITTER_BASE_URL: server.baseUrl, MINITTER_API_KEY: server.apiKey },
    timeout: 60_000,
  });
  assert.match(stdout, /^signed in as ada_/m);
  assert.match(stdout, /Hello, Minitter!/);
  assert.match(stdout, /^unchanged$/m, "the conditional re-read was a 304");
  assert.match(stdout, /^home: Live!$/m, "the stream delivered the tweet posted once it was live");
  assert.match(stdout, /^done: /m);
});
