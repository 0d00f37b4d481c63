/**
 * A labelled form field wired to the API's refusal: the violations whose JSON pointer
 * is this field's are shown under it, referenced by `aria-describedby`, and the input is
 * marked `aria-invalid`, so a screen reader reads the API's reason on the field itself;
 * the form's `role="alert"` summary (`ProblemSummary`) lists them all.
 */
import type { ComponentChildren } from "preact";

import { type Refusal, violationsAt } from "./problem.js";

export function Field({
  id,
  label,
  pointer,
  refused,
  hint,
  children,
}: {
  id: string;
  label: string;
  pointer: string;
  refused: Refusal | undefined;
  hint?: string;
  /** Renders the control with the attributes it is given (its id, `aria-invalid`, `aria-describedby`). */
  children: (props: { id: string; "aria-invalid"?: "true"; "aria-describedby"?: string }) => ComponentChildren;
}) {
  const violations = violationsAt(refused, pointer);
  const described = [hint === undefined ? undefined : `${id}-hint`, violations.length > 0 ? `${id}-error` : undefined].filter(
    (part): part is string => part !== undefined,
  );
  return (
    <div class="field">
      <label for={id}>{label}</label>
      {children({
        id,
        ...(violations.length > 0 ? { "aria-invalid": "true" as const } : {}),
        ...(described.length > 0 ? { "aria-describedby": described.join(" ") } : {}),
      })}
      {hint !== undefined && (
        <p class="hint" id={`${id}-hint`}>
          {hint}
        </p>
      )}
      {violations.length > 0 && (
        <p class="error field-error" id={`${id}-error`}>
          {violations.map((violation) => violation.message).join("; ")}
        </p>
      )}
    </div>
  );
}

/** The API's refusal of a form, announced: its detail and every violation with its pointer. */
export function ProblemSummary({ refused, id }: { refused: Refusal | undefined; id: string }) {
  if (refused === undefined) return null;
  return (
    <div class="error problem" role="alert" id={id}>
      <p>{refused.message}</p>
      {refused.violations.length > 0 && (
        <ul>
          {refused.violations.map((violation) => (
            <li key={`${violation.in}${violation.pointer}`} data-pointer={violation.pointer}>
              <code>{violation.pointer === "" ? "(body)" : violation.pointer}</code>: {violation.message}
            </li>
          ))}
        </ul>
      )}
    </div>
  );
}
