/**
 * The operator console (`/console/`): an operator signs in with the admin token and
 * manages usage plans (`./plans.tsx`) and API keys (`./keys.tsx`), and reads a plan's
 * usage (`./usage.tsx`, charted by `./chart.tsx`). Every call goes through the TypeScript
 * SDK's typed client (`./api.ts`), guarded so that the token reaches `/admin/…` only
 * (`./admin-client.ts`); the token is kept in memory and sessionStorage only
 * (`../shared/session.ts`). Every name an operator or a partner chose is rendered as
 * text by Preact, never as markup.
 */
import type { MinitterClient } from "@minitter/client";
import { render } from "preact";
import { useEffect, useState } from "preact/hooks";

import { Session } from "../shared/session.js";
import { SignIn } from "../shared/sign-in.js";
import { adminClient } from "./admin-client.js";
import { type ApiKey, listKeys, listPlans, type UsagePlan } from "./api.js";
import { type Confirmation, ConfirmDialog } from "./confirm.js";
import { KeysSection } from "./keys.js";
import { PlansSection } from "./plans.js";
import { refusal } from "./problem.js";
import { UsageSection } from "./usage.js";

const session = new Session("minitter.console.token");

interface Data {
  plans: UsagePlan[];
  keys: ApiKey[];
}

async function loadData(client: MinitterClient): Promise<Data> {
  const [plans, keys] = await Promise.all([listPlans(client), listKeys(client)]);
  return { plans, keys };
}

function Console({ client, initial, onSignOut }: { client: MinitterClient; initial: Data; onSignOut: () => void }) {
  const [data, setData] = useState(initial);
  const [confirmation, setConfirmation] = useState<Confirmation | undefined>(undefined);
  const [usagePlan, setUsagePlan] = useState<string | undefined>(undefined);
  const [reloadError, setReloadError] = useState<string | undefined>(undefined);

  async function reload() {
    try {
      setData(await loadData(client));
      setReloadError(undefined);
    } catch (error) {
      setReloadError(refusal(error).message);
    }
  }

  return (
    <>
      <header>
        <h1>Minitter operator console</h1>
        <nav aria-label="Sections">
          <a href="#plans-heading">Plans</a> <a href="#keys-heading">Keys</a> <a href="#usage-heading">Usage</a>
        </nav>
        <p class="header-actions">
          <button type="button" class="secondary" onClick={() => void reload()}>
            Refresh
          </button>{" "}
          <button type="button" class="secondary" onClick={onSignOut}>
            Sign out
          </button>
        </p>
      </header>
      <main>
        {reloadError !== undefined && (
          <p class="error" role="alert">
            {reloadError}
          </p>
        )}
        <PlansSection
          client={client}
          plans={data.plans}
          keys={data.keys}
          onChanged={reload}
          onConfirm={setConfirmation}
          onShowUsage={(planId) => {
            setUsagePlan(planId);
            document.getElementById("usage-heading")?.scrollIntoView();
            document.getElementById("usage-plan")?.focus();
          }}
        />
        <KeysSection client={client} keys={data.keys} plans={data.plans} onChanged={reload} onConfirm={setConfirmation} />
        <UsageSection client={client} plans={data.plans} keys={data.keys} planId={usagePlan} onPick={setUsagePlan} />
      </main>
      {confirmation !== undefined && <ConfirmDialog confirmation={confirmation} onClose={() => setConfirmation(undefined)} />}
    </>
  );
}

function App() {
  const [state, setState] = useState<
    { kind: "loading" } | { kind: "signed-out"; error?: string } | { kind: "signed-in"; client: MinitterClient; data: Data }
  >({ kind: "loading" });

  async function signIn(token: string) {
    const client = adminClient(token);
    try {
      const data = await loadData(client);
      session.set(token);
      setState({ kind: "signed-in", client, data });
    } catch (error) {
      session.clear();
      setState({ kind: "signed-out", error: refusal(error).message });
    }
  }

  useEffect(() => {
    const stored = session.get();
    if (stored === undefined) setState({ kind: "signed-out" });
    else void signIn(stored);
  }, []);

  if (state.kind === "loading") return <main aria-busy="true">Loading…</main>;
  if (state.kind === "signed-out")
    return (
      <>
        <header>
          <h1>Minitter operator console</h1>
        </header>
        <SignIn id="admin-token" label="Admin token" onSignIn={(token) => void signIn(token)} error={state.error} />
      </>
    );
  return (
    <Console
      client={state.client}
      initial={state.data}
      onSignOut={() => {
        session.clear();
        setState({ kind: "signed-out" });
      }}
    />
  );
}

const root = document.getElementById("app");
if (root !== null) render(<App />, root);
