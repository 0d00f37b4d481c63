/**
 * API keys: the list (name, prefix, plan, state, last use, creation), a form to create
 * one in a plan, and per key: disable or enable (`PATCH` `enabled`, reversible, so
 * without confirmation), rotate and delete (after a confirmation: the old secret, or
 * the key, stops working at once). A created or rotated key's secret is shown once
 * (`./secret.tsx`); the list never has secrets, only prefixes.
 */
import type { MinitterClient } from "@minitter/client";
import { useState } from "preact/hooks";

import { type ApiKey, createKey, type CreatedApiKey, deleteKey, rotateKey, setKeyEnabled, type UsagePlan } from "./api.js";
import type { Confirmation } from "./confirm.js";
import { Field, ProblemSummary } from "./fields.js";
import { timestamp } from "./format.js";
import { type Refusal, refusal } from "./problem.js";
import { OneTimeSecret } from "./secret.js";

function NewKeyForm({
  client,
  plans,
  onCreated,
}: {
  client: MinitterClient;
  plans: UsagePlan[];
  onCreated: (created: CreatedApiKey) => void;
}) {
  const [name, setName] = useState("");
  const [planId, setPlanId] = useState("");
  const [refused, setRefused] = useState<Refusal | undefined>(undefined);
  const [busy, setBusy] = useState(false);
  // The chosen plan, else the newest one (the list's first).
  const chosen = plans.some((plan) => plan.id === planId) ? planId : (plans[0]?.id ?? "");

  return (
    <form
      id="key-form"
      noValidate
      aria-labelledby="key-form-heading"
      onSubmit={async (event) => {
        event.preventDefault();
        setBusy(true);
        try {
          const created = await createKey(client, name, chosen);
          setRefused(undefined);
          setName("");
          onCreated(created);
        } catch (error) {
          setRefused(refusal(error));
        } finally {
          setBusy(false);
        }
      }}
    >
      <h3 id="key-form-heading">New key</h3>
      <ProblemSummary refused={refused} id="key-form-problem" />
      <div class="form-grid">
        <Field id="new-key-name" label="Key name" pointer="/name" refused={refused}>
          {(props) => <input {...props} type="text" autocomplete="off" value={name} onInput={(event) => setName(event.currentTarget.value)} />}
        </Field>
        <Field id="new-key-plan" label="Plan of the key" pointer="/plan_id" refused={refused}>
          {(props) => (
            <select {...props} value={chosen} onChange={(event) => setPlanId(event.currentTarget.value)}>
              {plans.map((plan) => (
                <option key={plan.id} value={plan.id}>
                  {plan.name}
                </option>
              ))}
            </select>
          )}
        </Field>
      </div>
      <p class="actions">
        <button type="submit" disabled={busy || plans.length === 0}>
          Create key
        </button>
      </p>
    </form>
  );
}

export function KeysSection({
  client,
  keys,
  plans,
  onChanged,
  onConfirm,
}: {
  client: MinitterClient;
  keys: ApiKey[];
  plans: UsagePlan[];
  onChanged: () => Promise<void>;
  onConfirm: (confirmation: Confirmation) => void;
}) {
  const [shown, setShown] = useState<{ key: CreatedApiKey; rotated: boolean } | undefined>(undefined);
  const [status, setStatus] = useState("");
  const [refused, setRefused] = useState<Refusal | undefined>(undefined);
  const [busy, setBusy] = useState<string | undefined>(undefined);
  const planName = (planId: string) => plans.find((plan) => plan.id === planId)?.name ?? planId;

  async function toggle(key: ApiKey) {
    setBusy(key.id);
    try {
      const updated = await setKeyEnabled(client, key.id, !key.enabled);
      setRefused(undefined);
      setStatus(`Key ${updated.name} ${updated.enabled ? "enabled" : "disabled"}.`);
      await onChanged();
    } catch (error) {
      setRefused(refusal(error));
    } finally {
      setBusy(undefined);
    }
  }

  function askRotate(key: ApiKey) {
    onConfirm({
      title: "Rotate this key's secret?",
      body: (
        <p>
          The current secret of <strong class="key-name">{key.name}</strong> (<code>{key.prefix}…</code>) stops working at once; the
          partner needs the new one.
        </p>
      ),
      action: "Rotate secret",
      run: async () => {
        try {
          const rotated = await rotateKey(client, key.id);
          setRefused(undefined);
          setStatus("");
          setShown({ key: rotated, rotated: true });
          await onChanged();
        } catch (error) {
          setRefused(refusal(error));
        }
      },
    });
  }

  function askDelete(key: ApiKey) {
    onConfirm({
      title: "Delete this key?",
      body: (
        <p>
          The key <strong class="key-name">{key.name}</strong> (<code>{key.prefix}…</code>) will be deleted and refused at once. This
          cannot be undone.
        </p>
      ),
      action: "Delete key",
      run: async () => {
        try {
          await deleteKey(client, key.id);
          setRefused(undefined);
          setStatus(`Key ${key.name} deleted.`);
          if (shown?.key.id === key.id) setShown(undefined);
          await onChanged();
        } catch (error) {
          setRefused(refusal(error));
        }
      },
    });
  }

  return (
    <section aria-labelledby="keys-heading">
      <h2 id="keys-heading">API keys</h2>
      <p role="status" class="status">
        {status}
      </p>
      {shown !== undefined && <OneTimeSecret created={shown.key} rotated={shown.rotated} onDismiss={() => setShown(undefined)} />}
      <ProblemSummary refused={refused} id="keys-problem" />
      <div class="table-scroll">
        <table id="keys">
          <caption class="visually-hidden">API keys, newest first</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Prefix</th>
              <th scope="col">Plan</th>
              <th scope="col">State</th>
              <th scope="col">Last used</th>
              <th scope="col">Created</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {keys.map((key) => (
              <tr key={key.id} data-key-id={key.id} data-enabled={String(key.enabled)}>
                <th scope="row" class="key-name">
                  {key.name}
                </th>
                <td>
                  <code>{key.prefix}</code>
                </td>
                <td class="plan-name">{planName(key.plan_id)}</td>
                <td class={key.enabled ? "state-enabled" : "state-disabled"}>{key.enabled ? "Enabled" : "Disabled"}</td>
                <td>
                  {key.last_used_at === null || key.last_used_at === undefined ? (
                    "never"
                  ) : (
                    <time datetime={key.last_used_at}>{timestamp(key.last_used_at)}</time>
                  )}
                </td>
                <td>
                  <time datetime={key.created_at}>{timestamp(key.created_at)}</time>
                </td>
                <td class="row-actions">
                  <button type="button" class="secondary" disabled={busy === key.id} onClick={() => void toggle(key)}>
                    {key.enabled ? "Disable" : "Enable"}
                    <span class="visually-hidden"> key {key.name}</span>
                  </button>
                  <button type="button" class="secondary" onClick={() => askRotate(key)}>
                    Rotate<span class="visually-hidden"> key {key.name}</span>
                  </button>
                  <button type="button" class="danger" onClick={() => askDelete(key)}>
                    Delete<span class="visually-hidden"> key {key.name}</span>
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {keys.length === 0 && <p>No key yet.</p>}
      <NewKeyForm
        client={client}
        plans={plans}
        onCreated={(created) => {
          setStatus("");
          setRefused(undefined);
          setShown({ key: created, rotated: false });
          void onChanged();
        }}
      />
    </section>
  );
}
