/**
 * Requests per day for the last 30 UTC days (`GET /v1/usage/history`), split into
 * answered (admitted, not a 4xx), client errors (admitted, answered 4xx) and throttled
 * (refused with 429, not counted), drawn with uPlot. A canvas says nothing to a screen
 * reader, so the same numbers are in a table beside it, rendered from the very arrays
 * handed to uPlot (one row per day, `data-day`); the chart's element also carries the
 * uPlot instance as `uplot`, so a test can check that what is drawn is what the API said.
 */
import type { MinitterClient } from "@minitter/client";
import { unwrap } from "@minitter/client";
import { useEffect, useRef, useState } from "preact/hooks";
import uPlot from "uplot";
import "uplot/dist/uPlot.min.css";

import { count, describe, isRefusal, type OnRefused, type UsageDay } from "./api.js";

/** How many days the chart covers, today (UTC) included. */
export const DAYS = 30;
const HEIGHT = 260;

/** The history's query: the last {@link DAYS} UTC days, today included. */
export function lastDays(now = new Date()): { start_date: string; end_date: string } {
  const end = now.toISOString().slice(0, 10);
  const start = new Date(Date.parse(`${end}T00:00:00Z`) - (DAYS - 1) * 86_400_000).toISOString().slice(0, 10);
  return { start_date: start, end_date: end };
}

/** The chart's series, as uPlot takes them: x (the days' midnights, in seconds), then one array per series. */
export interface Series {
  readonly days: string[];
  readonly data: [x: number[], answered: number[], clientErrors: number[], throttled: number[]];
}

export function toSeries(days: UsageDay[]): Series {
  return {
    days: days.map((day) => day.date),
    data: [
      days.map((day) => Date.parse(`${day.date}T00:00:00Z`) / 1000),
      days.map((day) => day.used - day.client_errors),
      days.map((day) => day.client_errors),
      days.map((day) => day.throttled),
    ],
  };
}

export function HistorySection({ client, generation, onRefused }: { client: MinitterClient; generation: number; onRefused: OnRefused }) {
  const [series, setSeries] = useState<Series | undefined>(undefined);
  const [error, setError] = useState<string | undefined>(undefined);

  useEffect(() => {
    let current = true;
    unwrap(client.api.GET("/v1/usage/history", { params: { query: lastDays() } })).then(
      (history) => {
        if (!current) return;
        setSeries(toSeries(history.days));
        setError(undefined);
      },
      (failure: unknown) => {
        if (!current) return;
        if (isRefusal(failure)) onRefused(failure);
        else setError(describe(failure));
      },
    );
    return () => {
      current = false;
    };
  }, [client, generation]);

  return (
    <section aria-labelledby="history-heading">
      <h2 id="history-heading">Requests per day, last {DAYS} days (UTC)</h2>
      {error !== undefined && (
        <p class="error" role="alert">
          {error}
        </p>
      )}
      {series === undefined ? error === undefined && <p aria-busy="true">Loading…</p> : <Chart series={series} />}
    </section>
  );
}

const COLOURS = { answered: "#0b5cad", clientErrors: "#b35900", throttled: "#b42318" };

function Chart({ series }: { series: Series }) {
  const box = useRef<HTMLDivElement>(null);

  useEffect(() => {
    const element = box.current;
    if (element === null) return;
    const options: uPlot.Options = {
      width: Math.max(200, element.clientWidth),
      height: HEIGHT,
      // The API's days are UTC days: label them so, whatever the browser's time zone.
      tzDate: (seconds) => uPlot.tzDate(new Date(seconds * 1000), "Etc/UTC"),
      scales: { y: { range: (_plot, _min, max) => [0, Math.max(4, Math.ceil(max * 1.1))] } },
      axes: [{}, { values: (_plot, ticks) => ticks.map((tick) => (Number.isInteger(tick) ? count(tick) : "")) }],
      series: [
        { label: "Day", value: "{YYYY}-{MM}-{DD}" },
        { label: "Answered", stroke: COLOURS.answered, width: 2, points: { show: true } },
        { label: "Client errors (4xx)", stroke: COLOURS.clientErrors, width: 2, dash: [6, 3], points: { show: true } },
        { label: "Throttled (429)", stroke: COLOURS.throttled, width: 2, dash: [2, 2], points: { show: true } },
      ],
    };
    const plot = new uPlot(options, series.data, element);
    (element as ChartElement).uplot = plot;
    // Follow the container's width (a phone's 375 px included) instead of overflowing it.
    const resize = new ResizeObserver(() => {
      const width = Math.max(200, element.clientWidth);
      if (width !== plot.width) plot.setSize({ width, height: HEIGHT });
    });
    resize.observe(element);
    return () => {
      resize.disconnect();
      delete (element as ChartElement).uplot;
      plot.destroy();
    };
  }, [series]);

  const [x, answered, clientErrors, throttled] = series.data;
  return (
    <figure class="history">
      <div id="usage-chart" class="chart" ref={box} aria-hidden="true" />
      <figcaption id="history-caption">
        Answered (admitted, not a 4xx), client errors (admitted, answered 4xx) and throttled requests (refused with 429, not
        counted against the quota) per UTC day. The numbers are in the table below.
      </figcaption>
      <details>
        <summary>Show the numbers</summary>
        <div class="table-scroll">
          <table id="history-table" aria-describedby="history-caption">
            <caption class="visually-hidden">Requests per day</caption>
            <thead>
              <tr>
                <th scope="col">Day (UTC)</th>
                <th scope="col">Answered</th>
                <th scope="col">Client errors (4xx)</th>
                <th scope="col">Throttled (429)</th>
                <th scope="col">Admitted in all</th>
              </tr>
            </thead>
            <tbody>
              {x.map((_, index) => {
                const day = series.days[index] ?? "";
                const [ok, errors, refused] = [answered[index] ?? 0, clientErrors[index] ?? 0, throttled[index] ?? 0];
                return (
                  <tr key={day} data-day={day} data-answered={ok} data-client-errors={errors} data-throttled={refused} data-used={ok + errors}>
                    <th scope="row">{day}</th>
                    <td>{count(ok)}</td>
                    <td>{count(errors)}</td>
                    <td>{count(refused)}</td>
                    <td>{count(ok + errors)}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
        </div>
      </details>
    </figure>
  );
}

/** The chart's element, with the uPlot drawn in it (for tests and the curious). */
export type ChartElement = HTMLDivElement & { uplot?: uPlot };
