// Fails when the committed generated file differs from a fresh generation.
import { readFileSync } from "node:fs";

// The third argument names the document it is generated from (openapi.yaml by default).
const [committed, fresh, document = "openapi.yaml"] = process.argv.slice(2);
if (readFileSync(committed, "utf8") !== readFileSync(fresh, "utf8")) {
  console.error(`${committed} is out of date with ${document}: run \`npm run generate\` and commit the result`);
  process.exit(1);
}
