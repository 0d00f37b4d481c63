/**
 * The confirmation asked before anything that cannot be undone (deleting a plan or a key,
 * rotating a secret): a native modal `<dialog>`, which the browser makes accessible for
 * free (focus moves into it and back, Escape cancels, the page behind is inert), with
 * the cancelling button first so that Enter on the opened dialog is the safe choice.
 */
import type { ComponentChildren } from "preact";
import { useEffect, useRef, useState } from "preact/hooks";

export interface Confirmation {
  readonly title: string;
  readonly body: ComponentChildren;
  /** The confirming button's text, such as "Delete plan". */
  readonly action: string;
  /** Done on confirmation; the dialog closes when it settles. */
  readonly run: () => Promise<void>;
}

export function ConfirmDialog({ confirmation, onClose }: { confirmation: Confirmation; onClose: () => void }) {
  const dialog = useRef<HTMLDialogElement>(null);
  const [busy, setBusy] = useState(false);

  useEffect(() => {
    const element = dialog.current;
    if (element !== null && !element.open) element.showModal();
    return () => element?.close();
  }, []);

  return (
    <dialog
      ref={dialog}
      class="confirm"
      aria-labelledby="confirm-title"
      aria-describedby="confirm-body"
      onClose={onClose}
      onCancel={(event) => {
        if (busy) event.preventDefault();
      }}
    >
      <h2 id="confirm-title">{confirmation.title}</h2>
      <div id="confirm-body">{confirmation.body}</div>
      <p class="actions">
        <button type="button" class="secondary" disabled={busy} onClick={() => dialog.current?.close()} autofocus>
          Cancel
        </button>
        <button
          type="button"
          class="danger"
          disabled={busy}
          onClick={async () => {
            setBusy(true);
            try {
              await confirmation.run();
            } finally {
              setBusy(false);
              dialog.current?.close();
            }
          }}
        >
          {confirmation.action}
        </button>
      </p>
    </dialog>
  );
}
