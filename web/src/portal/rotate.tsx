/**
 * Rotating the key (`POST /v1/api-key/rotate`). The server gives the new secret in that
 * one answer and refuses the old one at once, on every instance, with no grace period
 * (a partner rotates because a secret may have leaked). So the step is confirmed in a
 * modal dialog first, the call is made once (the portal's client never retries), the new
 * secret is shown once with a copy button, and the page switches to it right away
 * (`onRotated`: its client and this tab's sessionStorage) before anything else is sent.
 */
import { type MinitterClient, unwrap } from "@minitter/client";
import { useEffect, useRef, useState } from "preact/hooks";

import { describe, isRefusal, type OnRefused } from "./api.js";
import { CopyButton } from "./copy.js";

export function RotateSection({ client, onRotated, onRefused }: { client: MinitterClient; onRotated: (secret: string) => void; onRefused: OnRefused }) {
  const dialog = useRef<HTMLDialogElement>(null);
  const shown = useRef<HTMLHeadingElement>(null);
  const [open, setOpen] = useState(false);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | undefined>(undefined);
  const [secret, setSecret] = useState<string | undefined>(undefined);

  useEffect(() => {
    const element = dialog.current;
    if (element === null) return;
    if (open && !element.open) element.showModal();
    if (!open && element.open) element.close();
  }, [open]);

  useEffect(() => {
    if (secret !== undefined) shown.current?.focus();
  }, [secret]);

  async function rotate() {
    setBusy(true);
    setError(undefined);
    try {
      const rotated = await unwrap(client.api.POST("/v1/api-key/rotate"));
      onRotated(rotated.secret);
      setSecret(rotated.secret);
      setOpen(false);
    } catch (failure) {
      if (isRefusal(failure)) onRefused(failure);
      else setError(describe(failure));
    } finally {
      setBusy(false);
    }
  }

  return (
    <section aria-labelledby="rotate-heading">
      <h2 id="rotate-heading">Rotate your API key</h2>
      <p>
        Rotating gives your key a new secret. The current secret stops working at once, everywhere: update your
        applications right after.
      </p>
      <p>
        <button type="button" class="danger" onClick={() => setOpen(true)}>
          Rotate key…
        </button>
      </p>
      {secret !== undefined && (
        <div class="notice" id="new-secret-notice">
          <h3 ref={shown} tabIndex={-1}>
            Your new API key
          </h3>
          <p>This is the only time it is shown. Copy it now and keep it somewhere safe.</p>
          <p class="secret" id="new-secret">
            {secret}
          </p>
          <p>
            <CopyButton text={() => secret} label="Copy new key" refused="select the key above and copy it by hand." />
          </p>
          <p id="old-key-stopped">
            <strong>The old key has stopped working.</strong> The server refuses it from now on, with no grace period; this page
            already uses the new one.
          </p>
          <p>
            <button type="button" class="secondary" onClick={() => setSecret(undefined)}>
              I have saved it: hide the key
            </button>
          </p>
        </div>
      )}
      <dialog ref={dialog} aria-labelledby="rotate-dialog-heading" aria-describedby="rotate-dialog-text" onClose={() => setOpen(false)}>
        <h2 id="rotate-dialog-heading">Rotate the API key?</h2>
        <p id="rotate-dialog-text">
          The current key stops working the moment the new one is made: every application using it is refused until it has
          the new key. The new key is shown once.
        </p>
        {error !== undefined && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
        <p class="actions">
          <button type="button" class="danger" disabled={busy} onClick={() => void rotate()}>
            {busy ? "Rotating…" : "Rotate now"}
          </button>
          <button type="button" class="secondary" autofocus disabled={busy} onClick={() => setOpen(false)}>
            Cancel
          </button>
        </p>
      </dialog>
    </section>
  );
}
