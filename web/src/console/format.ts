/**
 * Dates and numbers as the console shows them. The API counts usage per UTC day, so the
 * console speaks UTC throughout (a local time zone would move a day's requests to the
 * neighbouring day on the chart); timestamps are shown to the minute, with "UTC".
 */

const DAY_MS = 86_400_000;

/** `2026-12-06` for the UTC day of `date`. */
export function isoDay(date: Date): string {
  return date.toISOString().slice(0, 10);
}

/** The UTC day `days` after `day` (`days` may be negative). */
export function addDays(day: string, days: number): string {
  return isoDay(new Date(Date.parse(`${day}T00:00:00Z`) + days * DAY_MS));
}

/** Unix seconds at the start of a UTC day: uPlot's x values. */
export function dayToUnix(day: string): number {
  return Date.parse(`${day}T00:00:00Z`) / 1000;
}

/** The UTC day at unix seconds `seconds`. */
export function unixToDay(seconds: number): string {
  return isoDay(new Date(seconds * 1000));
}

/** The first day of the quota period that contains `today` (UTC; ISO weeks start on Monday). */
export function periodStart(today: string, period: "DAY" | "WEEK" | "MONTH" | undefined): string {
  if (period === "MONTH") return `${today.slice(0, 8)}01`;
  if (period === "WEEK") {
    const weekday = new Date(`${today}T00:00:00Z`).getUTCDay(); // 0 is Sunday
    return addDays(today, -((weekday + 6) % 7));
  }
  return today;
}

/** `2026-12-06 14:03 UTC`. */
export function timestamp(iso: string): string {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? iso : `${date.toISOString().slice(0, 16).replace("T", " ")} UTC`;
}

const numbers = new Intl.NumberFormat("en");

export function count(value: number): string {
  return numbers.format(value);
}
