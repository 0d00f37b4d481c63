/**
 * What the console shows when the API refuses something. The API is the one validator
 * of plans and keys (the forms send what the operator typed, unchecked), so its RFC 9457
 * problem is what the operator reads: its `detail`, and each violation of `errors` with
 * the JSON pointer of the field it is about, which the forms map back to their inputs.
 */
import { MinitterError, type Violation } from "@minitter/client";

import { NotAnOperatorRoute } from "./admin-client.js";

export interface Refusal {
  /** One sentence: the problem's detail, or why there is no problem document. */
  readonly message: string;
  /** The API's violations, each with its pointer (`/throttle/rate_limit`). */
  readonly violations: readonly Violation[];
  /** The HTTP status, when the API answered. */
  readonly status: number | undefined;
}

export function refusal(error: unknown): Refusal {
  if (error instanceof MinitterError) {
    const problem = error.problem;
    return {
      message: problem === undefined ? `The API answered ${error.status}.` : (problem.detail ?? problem.title),
      violations: problem?.errors ?? [],
      status: error.status,
    };
  }
  if (error instanceof NotAnOperatorRoute) return { message: error.message, violations: [], status: undefined };
  return { message: "The API did not answer.", violations: [], status: undefined };
}

/** The violations about the field at `pointer` (or inside it: `/throttle` covers `/throttle/burst_limit`). */
export function violationsAt(refused: Refusal | undefined, pointer: string): Violation[] {
  if (refused === undefined) return [];
  return refused.violations.filter((violation) => violation.pointer === pointer || violation.pointer.startsWith(`${pointer}/`));
}
