/**
 * The partner portal (`/portal/`): a partner signs in with its API key and sees its plan
 * and usage (`usage.tsx`), its requests per day (`chart.tsx`), its webhooks and their
 * deliveries (`webhooks.tsx`), rotates its key (`rotate.tsx`) and gets to the API docs
 * (`docs.tsx`). Every call goes through the TypeScript SDK's typed client (`api.ts`);
 * the key is kept in memory and this tab's sessionStorage only (`../shared/session.ts`).
 * A key the API refuses (disabled by the operator, rotated away) sends the page back to
 * sign-in with the API's reason in an alert.
 */
import { type MinitterClient, type RateLimit, unwrapResponse } from "@minitter/client";
import { render } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";

import { Session } from "../shared/session.js";
import { SignIn } from "../shared/sign-in.js";
import { describe, isRefusal, type KeyUsage, partnerClient } from "./api.js";
import { HistorySection } from "./chart.js";
import { DocsSection } from "./docs.js";
import { RotateSection } from "./rotate.js";
import { PlanSection } from "./usage.js";
import { WebhooksSection } from "./webhooks.js";

const session = new Session("minitter.portal.key");

interface Account {
  readonly apiKey: string;
  readonly client: MinitterClient;
  readonly usage: KeyUsage;
  /** The rate limits `GET /v1/usage`'s response reported. */
  readonly limits: RateLimit | undefined;
}

async function loadAccount(apiKey: string, client = partnerClient(apiKey)): Promise<Account> {
  const { value, rateLimit } = await unwrapResponse(client.api.GET("/v1/usage"));
  return { apiKey, client, usage: value, limits: rateLimit };
}

function Portal({
  account,
  onSignOut,
  onRefused,
  onRotated,
  onRefresh,
}: {
  account: Account;
  onSignOut: () => void;
  onRefused: (error: unknown) => void;
  onRotated: (secret: string) => void;
  onRefresh: () => Promise<void>;
}) {
  // Bumped by "Refresh usage": the history and webhooks read again too.
  const [generation, setGeneration] = useState(0);
  const [refreshing, setRefreshing] = useState(false);
  const key = useRef(account.apiKey);
  key.current = account.apiKey;
  return (
    <>
      <header>
        <h1>Minitter partner portal</h1>
        <button type="button" class="secondary" onClick={onSignOut}>
          Sign out
        </button>
      </header>
      <main>
        <PlanSection
          usage={account.usage}
          limits={account.limits}
          refreshing={refreshing}
          onRefresh={() => {
            setRefreshing(true);
            setGeneration((value) => value + 1);
            void onRefresh().finally(() => setRefreshing(false));
          }}
        />
        <HistorySection client={account.client} generation={generation} onRefused={onRefused} />
        <WebhooksSection client={account.client} generation={generation} onRefused={onRefused} />
        <RotateSection client={account.client} onRotated={onRotated} onRefused={onRefused} />
        <DocsSection apiKey={() => key.current} />
      </main>
    </>
  );
}

type State = { kind: "loading" } | { kind: "signed-out"; error?: string } | { kind: "signed-in"; account: Account };

function App() {
  const [state, setState] = useState<State>({ kind: "loading" });

  function signOut(error?: string) {
    session.clear();
    setState(error === undefined ? { kind: "signed-out" } : { kind: "signed-out", error });
  }

  /** A call failed: a refused key signs the page out with the API's reason. */
  function refused(error: unknown) {
    signOut(describe(error));
  }

  async function signIn(key: string) {
    try {
      const account = await loadAccount(key);
      session.set(key);
      setState({ kind: "signed-in", account });
    } catch (error) {
      signOut(describe(error));
    }
  }

  async function refresh() {
    if (state.kind !== "signed-in") return;
    const { apiKey, client } = state.account;
    try {
      const account = await loadAccount(apiKey, client);
      setState((now) => (now.kind === "signed-in" && now.account.apiKey === apiKey ? { kind: "signed-in", account } : now));
    } catch (error) {
      if (isRefusal(error)) refused(error);
    }
  }

  /** The key was rotated: the old secret is already refused, so switch before anything else is sent. */
  function rotated(secret: string) {
    session.set(secret);
    const client = partnerClient(secret);
    setState((now) => (now.kind === "signed-in" ? { kind: "signed-in", account: { ...now.account, apiKey: secret, client } } : now));
    // The plan and its counts, read again with the new key.
    void loadAccount(secret, client).then(
      (account) => setState((now) => (now.kind === "signed-in" && now.account.apiKey === secret ? { kind: "signed-in", account } : now)),
      (error: unknown) => {
        if (isRefusal(error)) refused(error);
      },
    );
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
          <h1>Minitter partner portal</h1>
        </header>
        <SignIn id="api-key" label="API key" onSignIn={(key) => void signIn(key)} error={state.error} />
      </>
    );
  return <Portal account={state.account} onSignOut={() => signOut()} onRefused={refused} onRotated={rotated} onRefresh={refresh} />;
}

const root = document.getElementById("app");
if (root !== null) render(<App />, root);
