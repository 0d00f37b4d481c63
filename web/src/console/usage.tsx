/**
 * A plan's usage: its current quota period per key (`GET …/usage`, the API's report of
 * `[used, remaining]` per key per day), its requests per day over the last 30 UTC days
 * by outcome and its busiest keys (`GET …/history`). The days become one set of arrays
 * (`DailySeries`), given to uPlot (`./chart.tsx`) and rendered, unchanged, as the data
 * table beside the chart: one row per day with `data-day`, so what is drawn and what is
 * read out are the same numbers, the API's.
 */
import type { MinitterClient } from "@minitter/client";
import { useEffect, useState } from "preact/hooks";

import { type ApiKey, planHistory, planUsage, type PlanUsageHistory, type UsagePlan, type UsageReport } from "./api.js";
import { type DailySeries, SERIES, UsageChart } from "./chart.js";
import { ProblemSummary } from "./fields.js";
import { addDays, count, dayToUnix, isoDay, periodStart, unixToDay } from "./format.js";
import { quotaText, throttleText } from "./plans.js";
import { type Refusal, refusal } from "./problem.js";

/** The days shown: the last 30, today (UTC) included. */
const DAYS = 30;

interface Loaded {
  planId: string;
  today: string;
  periodStart: string;
  history: PlanUsageHistory;
  report: UsageReport;
  series: DailySeries;
}

/** The history's days as the chart's arrays (the table reads these same arrays). */
export function dailySeries(history: PlanUsageHistory): DailySeries {
  return [
    history.days.map((day) => dayToUnix(day.date)),
    history.days.map((day) => day.used),
    history.days.map((day) => day.client_errors),
    history.days.map((day) => day.throttled),
  ];
}

async function load(client: MinitterClient, plan: UsagePlan): Promise<Loaded> {
  const today = isoDay(new Date());
  const start = periodStart(today, plan.quota?.period);
  const [history, report] = await Promise.all([
    planHistory(client, plan.id, addDays(today, -(DAYS - 1)), today),
    planUsage(client, plan.id, start, today),
  ]);
  return { planId: plan.id, today, periodStart: start, history, report, series: dailySeries(history) };
}

function DataTable({ series }: { series: DailySeries }) {
  const [days, admitted, clientErrors, throttled] = series;
  return (
    <div class="table-scroll">
      <table id="usage-days">
        <caption>Requests per UTC day (the chart's data)</caption>
        <thead>
          <tr>
            <th scope="col">Day</th>
            {SERIES.map((column) => (
              <th scope="col" key={column.label}>
                {column.label}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {days.map((seconds, index) => {
            const day = unixToDay(seconds);
            return (
              <tr key={day} data-day={day}>
                <th scope="row">{day}</th>
                <td data-series="used">{admitted[index]}</td>
                <td data-series="client_errors">{clientErrors[index]}</td>
                <td data-series="throttled">{throttled[index]}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

function KeyCell({ keyId, keys }: { keyId: string; keys: ApiKey[] }) {
  const key = keys.find((candidate) => candidate.id === keyId);
  if (key === undefined) return <span class="key-id">{keyId}</span>;
  return (
    <>
      <span class="key-name">{key.name}</span> <code>{key.prefix}</code>
    </>
  );
}

function Report({ loaded, plan, keys }: { loaded: Loaded; plan: UsagePlan; keys: ApiKey[] }) {
  const perKey = Object.entries(loaded.report.items).map(([keyId, days]) => ({
    keyId,
    used: days.reduce((sum, day) => sum + (day[0] ?? 0), 0),
    remaining: days.at(-1)?.[1],
  }));
  const periodUsed = perKey.reduce((sum, key) => sum + key.used, 0);
  const range = `${loaded.history.start_date} to ${loaded.history.end_date}`;
  return (
    <div id="usage" data-plan-id={loaded.planId}>
      <h3>
        Plan <span class="plan-name">{plan.name}</span>
      </h3>
      <dl>
        <dt>Throttle</dt>
        <dd>{throttleText(plan)}</dd>
        <dt>Quota per key</dt>
        <dd>{quotaText(plan)}</dd>
        <dt>Current period</dt>
        <dd id="usage-period">
          {loaded.periodStart === loaded.today ? loaded.today : `${loaded.periodStart} to ${loaded.today}`} (UTC)
        </dd>
        <dt>Admitted this period</dt>
        <dd id="usage-period-used">{count(periodUsed)}</dd>
      </dl>

      <h4>Each key this period</h4>
      {perKey.length === 0 ? (
        <p>The plan has no key.</p>
      ) : (
        <div class="table-scroll">
          <table id="usage-keys">
            <thead>
              <tr>
                <th scope="col">Key</th>
                <th scope="col">Admitted</th>
                <th scope="col">Quota left</th>
              </tr>
            </thead>
            <tbody>
              {perKey.map((key) => (
                <tr key={key.keyId} data-key-id={key.keyId}>
                  <th scope="row">
                    <KeyCell keyId={key.keyId} keys={keys} />
                  </th>
                  <td data-field="used">{count(key.used)}</td>
                  <td data-field="remaining">{key.remaining === undefined ? "no quota" : count(key.remaining)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}

      <h4 id="usage-chart-heading">Requests per day, {range}</h4>
      <UsageChart data={loaded.series} label={`Chart of the plan's requests per UTC day from ${range}: admitted in all, of which client errors (4xx), and throttled (refused with 429). The table below has the same numbers.`} />
      <details class="usage-data">
        <summary>The chart's numbers, as a table</summary>
        <DataTable series={loaded.series} />
      </details>

      <h4>Top keys, {range}</h4>
      {loaded.history.top_keys.length === 0 ? (
        <p>No key of the plan made a request.</p>
      ) : (
        <div class="table-scroll">
          <table id="top-keys">
            <thead>
              <tr>
                <th scope="col">Key</th>
                <th scope="col">Admitted</th>
              </tr>
            </thead>
            <tbody>
              {loaded.history.top_keys.map((top) => (
                <tr key={top.key_id} data-key-id={top.key_id} data-used={top.used}>
                  <th scope="row">
                    <KeyCell keyId={top.key_id} keys={keys} />
                  </th>
                  <td>{count(top.used)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </div>
  );
}

export function UsageSection({
  client,
  plans,
  keys,
  planId,
  onPick,
}: {
  client: MinitterClient;
  plans: UsagePlan[];
  keys: ApiKey[];
  planId: string | undefined;
  onPick: (planId: string | undefined) => void;
}) {
  const [loaded, setLoaded] = useState<Loaded | undefined>(undefined);
  const [refused, setRefused] = useState<Refusal | undefined>(undefined);
  const [busy, setBusy] = useState(false);
  const [reloads, setReloads] = useState(0);
  const plan = plans.find((candidate) => candidate.id === planId);

  useEffect(() => {
    if (plan === undefined) {
      setLoaded(undefined);
      return;
    }
    let current = true;
    setBusy(true);
    load(client, plan)
      .then((result) => {
        if (!current) return;
        setLoaded(result);
        setRefused(undefined);
      })
      .catch((error: unknown) => {
        if (current) setRefused(refusal(error));
      })
      .finally(() => {
        if (current) setBusy(false);
      });
    return () => {
      current = false;
    };
  }, [plan?.id, reloads]);

  return (
    <section aria-labelledby="usage-heading" aria-busy={busy}>
      <h2 id="usage-heading">Usage per plan</h2>
      <div class="usage-pick">
        <div class="field">
          <label for="usage-plan">Plan to show</label>
          <select id="usage-plan" value={planId ?? ""} onChange={(event) => onPick(event.currentTarget.value || undefined)}>
            <option value="">Choose a plan</option>
            {plans.map((candidate) => (
              <option key={candidate.id} value={candidate.id}>
                {candidate.name}
              </option>
            ))}
          </select>
        </div>
        {plan !== undefined && (
          <button type="button" class="secondary" disabled={busy} onClick={() => setReloads((n) => n + 1)}>
            Refresh usage
          </button>
        )}
      </div>
      <ProblemSummary refused={refused} id="usage-problem" />
      {plan !== undefined && loaded !== undefined && loaded.planId === plan.id && <Report loaded={loaded} plan={plan} keys={keys} />}
    </section>
  );
}
