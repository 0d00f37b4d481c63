// Fails when the committed generated file differs from a fresh generation.
import { readFileSync } from "node:fs";

const [committed, fresh] = process.argv.slice(2);
if (readFileSync(committed, "utf8") !== readFileSync(fresh, "utf8")) {
  console.error(`${committed} is out of date with openapi.yaml: run \`npm run generate\` and commit the result`);
  process.exit(1);
}
