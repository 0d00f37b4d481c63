// The READMEs' TypeScript examples are files that tsc checks: the repository README's is
// examples/quickstart.ts, and every snippet of the SDK's README is a region of
// examples/tour.ts (which test/examples.test.ts runs). They must not drift apart.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

const ROOT = join(import.meta.dirname, "..", "..", "..", "..");
const SDK = join(ROOT, "client-sdk", "typescript");

test("the README shows the type-checked quickstart verbatim", () => {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const example = readFileSync(join(SDK, "examples", "quickstart.ts"), "utf8");
  assert.ok(readme.includes("```ts\n" + example + "```"), "README.md's TypeScript example differs from examples/quickstart.ts");
});

test("the SDK's README shows each region of examples/tour.ts verbatim, in order", () => {
  const readme = readFileSync(join(SDK, "README.md"), "utf8");
  const tour = readFileSync(join(SDK, "examples", "tour.ts"), "utf8");
  const snippets = [...readme.matchAll(/```ts\n(.*?)```/gs)].map((m) => m[1]);
  const regions = [...tour.matchAll(/\/\/ #region \S+\n(.*?)\/\/ #endregion\n/gs)].map((m) => m[1]);
  assert.ok(regions.length >= 8, `${regions.length} regions`);
  assert.deepEqual(snippets, regions, "client-sdk/typescript/README.md's snippets differ from examples/tour.ts");
});
