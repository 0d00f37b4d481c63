/**
 * Usage plans: the list, one form to create a plan or edit one, and deletion after a
 * confirmation. The form sends what the operator typed without judging it: the API is
 * the one validator, and its problem (400 with `errors` and their pointers) is shown
 * beside the form and on each field. Editing replaces every setting of the plan
 * (`PUT`, the API's update_usage_plan), so the form carries them all, IP policy included,
 * filled from the plan. Deleting a plan that still has keys is refused by the API (409):
 * the refusal is shown as the API words it.
 */
import type { MinitterClient } from "@minitter/client";
import { useEffect, useRef, useState } from "preact/hooks";

import { type ApiKey, createPlan, deletePlan, updatePlan, type UsagePlan, type UsagePlanInput } from "./api.js";
import type { Confirmation } from "./confirm.js";
import { Field, ProblemSummary } from "./fields.js";
import { count, timestamp } from "./format.js";
import { type Refusal, refusal } from "./problem.js";

type Period = "DAY" | "WEEK" | "MONTH";
const PERIODS: { value: Period; label: string }[] = [
  { value: "DAY", label: "per UTC day" },
  { value: "WEEK", label: "per ISO week" },
  { value: "MONTH", label: "per calendar month" },
];

export function throttleText(plan: UsagePlan): string {
  return plan.throttle === undefined ? "none" : `${plan.throttle.rate_limit}/s, burst ${count(plan.throttle.burst_limit)}`;
}

export function quotaText(plan: UsagePlan): string {
  if (plan.quota === undefined) return "none";
  return `${count(plan.quota.limit)} ${PERIODS.find((period) => period.value === plan.quota?.period)?.label ?? plan.quota.period}`;
}

/** The form's fields, as typed. */
interface Draft {
  name: string;
  description: string;
  rate: string;
  burst: string;
  quotaLimit: string;
  quotaPeriod: Period;
  webhookLimit: string;
  streamLimit: string;
  allowCacheRefresh: boolean;
  ipAllow: string;
  ipDeny: string;
}

function draftOf(plan: UsagePlan | undefined): Draft {
  return {
    name: plan?.name ?? "",
    description: plan?.description ?? "",
    rate: plan?.throttle === undefined ? "" : String(plan.throttle.rate_limit),
    burst: plan?.throttle === undefined ? "" : String(plan.throttle.burst_limit),
    quotaLimit: plan?.quota === undefined ? "" : String(plan.quota.limit),
    quotaPeriod: plan?.quota?.period ?? "DAY",
    webhookLimit: plan === undefined ? "" : String(plan.webhook_limit),
    streamLimit: plan === undefined ? "" : String(plan.stream_connection_limit),
    allowCacheRefresh: plan?.allow_cache_refresh ?? false,
    ipAllow: (plan?.ip_policy.allow ?? []).join("\n"),
    ipDeny: (plan?.ip_policy.deny ?? []).join("\n"),
  };
}

/** A number field as typed: absent when empty, else its value (`NaN` for what is not one, which the API refuses). */
function numberOf(text: string): number | undefined {
  return text.trim() === "" ? undefined : Number(text);
}

function lines(text: string): string[] {
  return text
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "");
}

/**
 * The request body for a draft, or the pairs the operator left half filled (a throttle
 * needs both its numbers, a quota its limit), as violations in the API's own shape.
 */
function bodyOf(draft: Draft): { body: UsagePlanInput } | { refused: Refusal } {
  const body: UsagePlanInput = { name: draft.name, allow_cache_refresh: draft.allowCacheRefresh };
  if (draft.description !== "") body.description = draft.description;
  const rate = numberOf(draft.rate);
  const burst = numberOf(draft.burst);
  if (rate !== undefined || burst !== undefined) {
    if (rate === undefined || burst === undefined) {
      const pointer = rate === undefined ? "/throttle/rate_limit" : "/throttle/burst_limit";
      return {
        refused: {
          message: "A throttle needs both a rate and a burst (or neither, for no throttle).",
          violations: [{ in: "body", pointer, message: "is required with the other throttle field" }],
          status: undefined,
        },
      };
    }
    body.throttle = { rate_limit: rate, burst_limit: burst };
  }
  const quota = numberOf(draft.quotaLimit);
  if (quota !== undefined) body.quota = { limit: quota, period: draft.quotaPeriod };
  const webhooks = numberOf(draft.webhookLimit);
  if (webhooks !== undefined) body.webhook_limit = webhooks;
  const streams = numberOf(draft.streamLimit);
  if (streams !== undefined) body.stream_connection_limit = streams;
  const allow = lines(draft.ipAllow);
  const deny = lines(draft.ipDeny);
  if (allow.length > 0 || deny.length > 0) body.ip_policy = { allow, deny };
  return { body };
}

function PlanForm({
  client,
  editing,
  onSaved,
  onCancel,
}: {
  client: MinitterClient;
  editing: UsagePlan | undefined;
  onSaved: (plan: UsagePlan, created: boolean) => void;
  onCancel: () => void;
}) {
  const [draft, setDraft] = useState<Draft>(() => draftOf(editing));
  const [refused, setRefused] = useState<Refusal | undefined>(undefined);
  const [busy, setBusy] = useState(false);
  const nameInput = useRef<HTMLInputElement>(null);
  const prefix = editing === undefined ? "new-plan" : "edit-plan";

  useEffect(() => {
    if (editing !== undefined) nameInput.current?.focus();
  }, []);

  const set =
    <K extends keyof Draft>(field: K) =>
    (value: Draft[K]) =>
      setDraft((previous) => ({ ...previous, [field]: value }));
  const text = (field: keyof Draft) => (event: Event) => set(field)((event.currentTarget as HTMLInputElement).value as never);

  async function submit(event: Event) {
    event.preventDefault();
    const built = bodyOf(draft);
    if ("refused" in built) {
      setRefused(built.refused);
      return;
    }
    setBusy(true);
    try {
      const plan = editing === undefined ? await createPlan(client, built.body) : await updatePlan(client, editing.id, built.body);
      setRefused(undefined);
      if (editing === undefined) setDraft(draftOf(undefined));
      onSaved(plan, editing === undefined);
    } catch (error) {
      setRefused(refusal(error));
    } finally {
      setBusy(false);
    }
  }

  return (
    <form id="plan-form" class="plan-form" noValidate onSubmit={submit} aria-labelledby="plan-form-heading">
      <h3 id="plan-form-heading">
        {editing === undefined ? (
          "New plan"
        ) : (
          <>
            Edit plan <span class="plan-name">{editing.name}</span>
          </>
        )}
      </h3>
      <ProblemSummary refused={refused} id="plan-form-problem" />
      <div class="form-grid">
        <fieldset>
          <legend>Plan</legend>
          <Field id={`${prefix}-name`} label="Plan name" pointer="/name" refused={refused}>
          {(props) => <input {...props} ref={nameInput} type="text" autocomplete="off" value={draft.name} onInput={text("name")} />}
        </Field>
        <Field id={`${prefix}-description`} label="Description (optional)" pointer="/description" refused={refused}>
          {(props) => <input {...props} type="text" autocomplete="off" value={draft.description} onInput={text("description")} />}
        </Field>
        </fieldset>
        <fieldset>
          <legend>Throttle (leave both empty for none)</legend>
          <Field id={`${prefix}-rate`} label="Rate (requests per second)" pointer="/throttle/rate_limit" refused={refused}>
            {(props) => <input {...props} type="number" step="any" inputMode="decimal" value={draft.rate} onInput={text("rate")} />}
          </Field>
          <Field id={`${prefix}-burst`} label="Burst (requests)" pointer="/throttle/burst_limit" refused={refused}>
            {(props) => <input {...props} type="number" step="1" inputMode="numeric" value={draft.burst} onInput={text("burst")} />}
          </Field>
        </fieldset>
        <fieldset>
          <legend>Quota per key (leave the limit empty for none)</legend>
          <Field id={`${prefix}-quota-limit`} label="Quota limit (requests)" pointer="/quota/limit" refused={refused}>
            {(props) => <input {...props} type="number" step="1" inputMode="numeric" value={draft.quotaLimit} onInput={text("quotaLimit")} />}
          </Field>
          <Field id={`${prefix}-quota-period`} label="Quota period" pointer="/quota/period" refused={refused}>
            {(props) => (
              <select {...props} value={draft.quotaPeriod} onChange={(event) => set("quotaPeriod")(event.currentTarget.value as Period)}>
                {PERIODS.map((period) => (
                  <option key={period.value} value={period.value}>
                    {period.label}
                  </option>
                ))}
              </select>
            )}
          </Field>
        </fieldset>
        <fieldset>
          <legend>Other limits (empty: the API's default)</legend>
          <Field id={`${prefix}-webhook-limit`} label="Webhook subscriptions per key" pointer="/webhook_limit" refused={refused}>
            {(props) => <input {...props} type="number" step="1" inputMode="numeric" value={draft.webhookLimit} onInput={text("webhookLimit")} />}
          </Field>
          <Field id={`${prefix}-stream-limit`} label="Stream connections per key" pointer="/stream_connection_limit" refused={refused}>
            {(props) => <input {...props} type="number" step="1" inputMode="numeric" value={draft.streamLimit} onInput={text("streamLimit")} />}
          </Field>
          <div class="field checkbox">
            <input
              id={`${prefix}-cache-refresh`}
              type="checkbox"
              checked={draft.allowCacheRefresh}
              onChange={(event) => set("allowCacheRefresh")(event.currentTarget.checked)}
            />
            <label for={`${prefix}-cache-refresh`}>Keys may refresh the response cache</label>
          </div>
        </fieldset>
        <fieldset>
          <legend>IP policy (one network a line, such as 203.0.113.0/24)</legend>
          <Field id={`${prefix}-ip-allow`} label="Allow only" pointer="/ip_policy/allow" refused={refused}>
            {(props) => <textarea {...props} rows={2} value={draft.ipAllow} onInput={text("ipAllow")} />}
          </Field>
          <Field id={`${prefix}-ip-deny`} label="Deny" pointer="/ip_policy/deny" refused={refused}>
            {(props) => <textarea {...props} rows={2} value={draft.ipDeny} onInput={text("ipDeny")} />}
          </Field>
        </fieldset>
      </div>
      <p class="actions">
        <button type="submit" disabled={busy}>
          {editing === undefined ? "Create plan" : "Save plan"}
        </button>
        {editing !== undefined && (
          <button type="button" class="secondary" onClick={onCancel}>
            Cancel
          </button>
        )}
      </p>
    </form>
  );
}

export function PlansSection({
  client,
  plans,
  keys,
  onChanged,
  onConfirm,
  onShowUsage,
}: {
  client: MinitterClient;
  plans: UsagePlan[];
  keys: ApiKey[];
  onChanged: () => Promise<void>;
  onConfirm: (confirmation: Confirmation) => void;
  onShowUsage: (planId: string) => void;
}) {
  const [editing, setEditing] = useState<UsagePlan | undefined>(undefined);
  const [status, setStatus] = useState("");
  const [refused, setRefused] = useState<Refusal | undefined>(undefined);

  const keyCount = (planId: string) => keys.filter((key) => key.plan_id === planId).length;

  function askDelete(plan: UsagePlan) {
    const inUse = keyCount(plan.id);
    onConfirm({
      title: "Delete this plan?",
      body: (
        <>
          <p>
            The plan <strong class="plan-name">{plan.name}</strong> will be deleted. This cannot be undone.
          </p>
          {inUse > 0 && <p>It still has {count(inUse)} key(s): the API refuses to delete a plan in use.</p>}
        </>
      ),
      action: "Delete plan",
      run: async () => {
        try {
          await deletePlan(client, plan.id);
          setRefused(undefined);
          setStatus(`Plan ${plan.name} deleted.`);
          if (editing?.id === plan.id) setEditing(undefined);
          await onChanged();
        } catch (error) {
          setRefused(refusal(error));
        }
      },
    });
  }

  return (
    <section aria-labelledby="plans-heading">
      <h2 id="plans-heading">Usage plans</h2>
      <p role="status" class="status">
        {status}
      </p>
      <ProblemSummary refused={refused} id="plans-problem" />
      <div class="table-scroll">
        <table id="plans">
          <caption class="visually-hidden">Usage plans, newest first</caption>
          <thead>
            <tr>
              <th scope="col">Name</th>
              <th scope="col">Throttle</th>
              <th scope="col">Quota per key</th>
              <th scope="col">Webhooks / streams</th>
              <th scope="col">Keys</th>
              <th scope="col">Created</th>
              <th scope="col">Actions</th>
            </tr>
          </thead>
          <tbody>
            {plans.map((plan) => (
              <tr key={plan.id} data-plan-id={plan.id}>
                <th scope="row" class="plan-name">
                  {plan.name}
                  {plan.description !== undefined && plan.description !== "" && <span class="description">{plan.description}</span>}
                </th>
                <td class="throttle">{throttleText(plan)}</td>
                <td class="quota">{quotaText(plan)}</td>
                <td>
                  {count(plan.webhook_limit)} / {count(plan.stream_connection_limit)}
                </td>
                <td>{count(keyCount(plan.id))}</td>
                <td>
                  <time datetime={plan.created_at}>{timestamp(plan.created_at)}</time>
                </td>
                <td class="row-actions">
                  <button
                    type="button"
                    class="secondary"
                    onClick={() => {
                      setStatus("");
                      setEditing(plan);
                    }}
                  >
                    Edit<span class="visually-hidden"> plan {plan.name}</span>
                  </button>
                  <button type="button" class="secondary" onClick={() => onShowUsage(plan.id)}>
                    Usage<span class="visually-hidden"> of plan {plan.name}</span>
                  </button>
                  <button type="button" class="danger" onClick={() => askDelete(plan)}>
                    Delete<span class="visually-hidden"> plan {plan.name}</span>
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      </div>
      {plans.length === 0 && <p>No plan yet: create one below.</p>}
      <PlanForm
        key={editing?.id ?? "new"}
        client={client}
        editing={editing}
        onCancel={() => setEditing(undefined)}
        onSaved={(plan, created) => {
          setEditing(undefined);
          setRefused(undefined);
          setStatus(created ? `Plan ${plan.name} created.` : `Plan ${plan.name} saved.`);
          void onChanged();
        }}
      />
    </section>
  );
}
