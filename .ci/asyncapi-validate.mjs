// Validates asyncapi.yaml with the AsyncAPI project's own parser (@asyncapi/parser, the
// library behind `asyncapi validate`): the document against the AsyncAPI 3.0 schema, its
// references (openapi.yaml's schemas included, resolved from the file beside it) and the
// project's recommended rules. Any error fails; warnings are printed.
//
// Usage: node .ci/asyncapi-validate.mjs asyncapi.yaml   (NODE_PATH names the parser)
import { createRequire } from "node:module";
import path from "node:path";
import { readFileSync } from "node:fs";

const require = createRequire(path.join(process.env.NODE_PATH ?? process.cwd(), "noop.js"));
const { Parser, fromFile } = require("@asyncapi/parser");

const file = process.argv[2] ?? "asyncapi.yaml";
readFileSync(file); // a missing file fails here, plainly
const { document, diagnostics } = await fromFile(new Parser(), file).parse();
const severities = ["error", "warning", "info", "hint"];
let errors = 0;
for (const d of diagnostics) {
  const severity = severities[d.severity] ?? String(d.severity);
  if (d.severity === 0) errors += 1;
  if (d.severity <= 1) {
    console.log(`${severity}: ${d.code}: ${d.message} at ${d.path.join(".")}`);
  }
}
if (errors > 0 || document === undefined) {
  console.error(`${file}: ${errors} error(s)`);
  process.exit(1);
}
console.log(`${file}: valid AsyncAPI ${document.version()}`);
