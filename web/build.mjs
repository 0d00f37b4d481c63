// Builds the pages into dist/ (committed, embedded in minitter-server by
// server/src/http/pages.rs): for each page in PAGES, src/<page>/index.html copied as is,
// and src/<page>/main.tsx bundled with the SDK and Preact into one minified main.js;
// each page's style.css is src/shared/style.css, then what main.tsx imports (uPlot's),
// then src/<page>/page.css if there is one. esbuild's output depends only on its
// input and its version (pinned by package-lock.json), so `--check` rebuilds in memory
// and fails when dist/ differs: CI's proof that the committed files are these sources'.
// `--tests` bundles test/*.test.ts for Node into build/test/ (the tests import the SDK and
// its test support, outside this package, which a bundle reaches and tsc's outDir does not).
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { build } from "esbuild";

const ROOT = import.meta.dirname;
const PAGES = ["portal", "console"];
const mode = process.argv[2];

if (mode === "--tests") {
  rmSync(join(ROOT, "build"), { recursive: true, force: true });
  const tests = readdirSync(join(ROOT, "test")).filter((name) => name.endsWith(".test.ts"));
  await build({
    entryPoints: tests.map((name) => join(ROOT, "test", name)),
    outdir: join(ROOT, "build", "test"),
    outExtension: { ".js": ".mjs" },
    bundle: true,
    platform: "node",
    format: "esm",
    target: "node20",
    // The SDK and its dependencies (found in client-sdk/typescript/node_modules) are
    // bundled; what this package installs for Node stays external.
    external: ["esbuild", "playwright-core", "axe-core"],
    tsconfig: join(ROOT, "tsconfig.json"),
    logLevel: "warning",
  });
  process.exit(0);
}

/** Every file of dist/, as path → contents. */
async function pages() {
  const files = new Map();
  const shared = readFileSync(join(ROOT, "src", "shared", "style.css"));
  for (const page of PAGES) {
    files.set(`${page}/index.html`, readFileSync(join(ROOT, "src", page, "index.html")));
    const result = await build({
      entryPoints: [join(ROOT, "src", page, "main.tsx")],
      outdir: join(ROOT, "dist", page),
      bundle: true,
      minify: true,
      format: "esm",
      platform: "browser",
      target: "es2022",
      legalComments: "none",
      charset: "utf8",
      write: false,
      tsconfig: join(ROOT, "tsconfig.json"),
      logLevel: "warning",
    });
    const output = (name) => result.outputFiles.find((file) => file.path.endsWith(`/${name}`))?.contents;
    files.set(`${page}/main.js`, Buffer.from(output("main.js")));
    // A style sheet the script imports (such as uPlot's) comes after the shared one and
    // before the page's own.
    const own = join(ROOT, "src", page, "page.css");
    const sheets = [shared, output("main.css"), existsSync(own) ? readFileSync(own) : undefined];
    files.set(`${page}/style.css`, Buffer.concat(sheets.filter((sheet) => sheet !== undefined)));
  }
  return files;
}

/** Every file under `dir`, as paths relative to it. */
function listed(dir, prefix = "") {
  let names;
  try {
    names = readdirSync(join(dir, prefix), { withFileTypes: true });
  } catch {
    return [];
  }
  return names.flatMap((entry) =>
    entry.isDirectory() ? listed(dir, join(prefix, entry.name)) : [join(prefix, entry.name)],
  );
}

const DIST = join(ROOT, "dist");
const built = await pages();
if (mode === "--check") {
  const stale = [];
  for (const [path, contents] of built) {
    let committed;
    try {
      committed = readFileSync(join(DIST, path));
    } catch {
      committed = undefined;
    }
    if (committed === undefined || !committed.equals(contents)) stale.push(path);
  }
  for (const path of listed(DIST)) if (!built.has(path)) stale.push(`${path} (not built from src/)`);
  if (stale.length > 0) {
    console.error(`web/dist/ is not what web/src/ builds; run \`npm run build\` in web/:\n  ${stale.join("\n  ")}`);
    process.exit(1);
  }
} else {
  rmSync(DIST, { recursive: true, force: true });
  for (const [path, contents] of built) {
    mkdirSync(dirname(join(DIST, path)), { recursive: true });
    writeFileSync(join(DIST, path), contents);
  }
}
