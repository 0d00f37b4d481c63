/**
 * A key's secret, shown once: right after the key is created or rotated (the API stores
 * it hashed and never returns it again). It lives only in this component's props, never
 * in storage; dismissing it forgets it. "Copy" uses the asynchronous clipboard, and
 * says so when the browser refuses it (then the operator selects the text).
 */
import { useState } from "preact/hooks";

import type { CreatedApiKey } from "./api.js";

export function OneTimeSecret({ created, rotated, onDismiss }: { created: CreatedApiKey; rotated: boolean; onDismiss: () => void }) {
  const [copied, setCopied] = useState<"copied" | "refused" | undefined>(undefined);
  return (
    <div class="notice one-time-secret" role="status" aria-labelledby="secret-heading">
      <h3 id="secret-heading">
        {rotated ? "New secret of key " : "Secret of key "}
        <span class="key-name">{created.name}</span>
      </h3>
      <p>It is shown this once: copy it now and give it to the partner. The console cannot show it again.</p>
      <p>
        <code id="new-secret" class="secret">
          {created.secret}
        </code>
      </p>
      <p class="actions">
        <button
          type="button"
          onClick={async () => {
            try {
              await navigator.clipboard.writeText(created.secret);
              setCopied("copied");
            } catch {
              setCopied("refused");
            }
          }}
        >
          Copy secret
        </button>
        <button type="button" class="secondary" onClick={onDismiss}>
          Done
        </button>
        {copied === "copied" && <span> Copied.</span>}
        {copied === "refused" && <span class="error"> The browser refused the clipboard: select the secret and copy it.</span>}
      </p>
    </div>
  );
}
