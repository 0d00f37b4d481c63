// The README's TypeScript example is examples/quickstart.ts, which tsc checks: the two
// must not drift apart.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

const ROOT = join(import.meta.dirname, "..", "..", "..", "..");

test("the README shows the type-checked quickstart verbatim", () => {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const example = readFileSync(join(ROOT, "client-sdk", "typescript", "examples", "quickstart.ts"), "utf8");
  assert.ok(readme.includes("```ts\n" + example + "```"), "README.md's TypeScript example differs from examples/quickstart.ts");
});
