// Starts the real minitter-server binary on a free port with a fresh data directory.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

export interface RunningServer {
  baseUrl: string;
  /** A key of a usage plan without limits, made through the operator API. */
  apiKey: string;
  /** The operator API's bearer token. */
  adminToken: string;
  /**
   * Stops the server (SIGTERM: it closes its stream sockets with 1001) and starts it again
   * on the same port and data directory, so that clients reconnect to the same address
   * and find their data.
   */
  restart(): Promise<void>;
  stop(): Promise<void>;
}

/** Creates a usage plan (unlimited unless `limits` says otherwise) and a key in it with the admin token. */
export async function planKey(
  baseUrl: string,
  adminToken: string,
  limits: {
    throttle?: { rate_limit: number; burst_limit: number };
    quota?: { limit: number; period: "DAY" | "WEEK" | "MONTH" };
  } = {},
): Promise<string> {
  const admin = { authorization: `Bearer ${adminToken}`, "content-type": "application/json" };
  const plan = await fetch(`${baseUrl}/admin/v1/usage-plans`, {
    method: "POST",
    headers: admin,
    body: JSON.stringify({ name: "typescript tests", ...limits }),
  }).then((r) => r.json() as Promise<{ id: string }>);
  const key = await fetch(`${baseUrl}/admin/v1/api-keys`, {
    method: "POST",
    headers: admin,
    body: JSON.stringify({ name: "typescript tests", plan_id: plan.id }),
  }).then((r) => r.json() as Promise<{ secret: string }>);
  return key.secret;
}

/** The server binary: `MINITTER_SERVER_BIN`, or the workspace's debug build. */
function serverBinary(): string {
  if (process.env["MINITTER_SERVER_BIN"]) return process.env["MINITTER_SERVER_BIN"];
  const target = process.env["CARGO_TARGET_DIR"] ?? join(import.meta.dirname, "..", "..", "..", "..", "..", "target");
  return join(target, "debug", "minitter-server");
}

/** Runs the binary on `bind` with `dataDir`; resolves once it listens, with its port. */
async function spawnServer(dataDir: string, bind: string): Promise<{ child: ChildProcess; port: number }> {
  const child: ChildProcess = spawn(serverBinary(), [], {
    env: {
      ...process.env,
      MINITTER_DATA_DIR: dataDir,
      MINITTER_BIND: bind,
      MINITTER_LOG: "info",
      // Stop at once when the tests are done (no load balancer to drain for).
      MINITTER_DRAIN_SECONDS: "0",
      MINITTER_LOG_JSON: "true",
    },
    // stderr shows the development demo key once; the tests make their own.
    stdio: ["ignore", "pipe", "ignore"],
  });
  const port = await new Promise<number>((resolve, reject) => {
    child.once("error", reject);
    child.once("exit", (code) => reject(new Error(`the server exited with ${code}`)));
    const lines = createInterface({ input: child.stdout! });
    lines.on("line", (line) => {
      try {
        const port = JSON.parse(line)?.fields?.port;
        if (typeof port === "number") resolve(port);
      } catch {
        // not a JSON log line
      }
    });
  });
  return { child, port };
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  await exited;
}

export async function startServer(): Promise<RunningServer> {
  const dataDir = mkdtempSync(join(tmpdir(), "minitter-ts-"));
  const started = await spawnServer(dataDir, "127.0.0.1:0");
  const port = started.port;
  let child = started.child;
  const baseUrl = `http://127.0.0.1:${port}`;
  const adminToken = readFileSync(join(dataDir, "admin-token"), "utf8").trim();
  const apiKey = await planKey(baseUrl, adminToken);
  return {
    baseUrl,
    apiKey,
    adminToken,
    async restart() {
      await stopChild(child);
      ({ child } = await spawnServer(dataDir, `127.0.0.1:${port}`));
    },
    async stop() {
      await stopChild(child);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
