/**
 * A plan's requests per day drawn by uPlot (a small canvas chart: no inline style sheet,
 * no external request, so it lives under the pages' strict policy; uPlot's own CSS is
 * imported here and appended to style.css by the build). The chart is a picture for
 * sighted operators: the numbers are also in the table `./usage.tsx` renders from the
 * very same arrays, which is what assistive technology reads and what the tests check.
 * Days are UTC (the API's days), so the x axis is drawn in UTC too.
 */
import "uplot/dist/uPlot.min.css";

import { useEffect, useRef } from "preact/hooks";
import uPlot from "uplot";

/** `[unix seconds of each UTC day, admitted in all, of which client errors (4xx), throttled (429)]` (the portal's words). */
export type DailySeries = [number[], number[], number[], number[]];

export const SERIES = [
  { label: "Admitted in all", stroke: "#0b5cad" },
  { label: "Of which client errors (4xx)", stroke: "#9a6700" },
  { label: "Throttled (429)", stroke: "#b42318" },
] as const;

const HEIGHT = 260;
/** The y axis's steps: whole requests (1, 2, 5, 10, 20, 50…), never 0.2 of one. */
const WHOLE_STEPS = Array.from({ length: 13 }, (_, power) => [1, 2, 5].map((step) => step * 10 ** power)).flat();

export function UsageChart({ data, label }: { data: DailySeries; label: string }) {
  const container = useRef<HTMLDivElement>(null);

  useEffect(() => {
    const element = container.current;
    if (element === null) return;
    const width = () => Math.max(240, Math.floor(element.clientWidth));
    const chart = new uPlot(
      {
        width: width(),
        height: HEIGHT,
        tzDate: (seconds) => uPlot.tzDate(new Date(seconds * 1000), "Etc/UTC"),
        scales: { x: { time: true }, y: { range: (_self, _min, max) => [0, Math.max(1, max)] } },
        axes: [{}, { label: "Requests", incrs: WHOLE_STEPS }],
        series: [
          { label: "Day (UTC)", value: "{YYYY}-{MM}-{DD}" },
          ...SERIES.map((series) => ({ label: series.label, stroke: series.stroke, width: 2, points: { show: true, size: 5 } })),
        ],
      },
      data,
      element,
    );
    // Follows the container's width (a narrow window, a rotated phone).
    const observer = new ResizeObserver(() => {
      if (chart.width !== width()) chart.setSize({ width: width(), height: HEIGHT });
    });
    observer.observe(element);
    return () => {
      observer.disconnect();
      chart.destroy();
    };
  }, [data]);

  return <div class="chart usage-chart" ref={container} role="img" aria-label={label} />;
}
