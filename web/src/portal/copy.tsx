/**
 * A "Copy" button for a secret (the new key after a rotation, the key for Swagger UI).
 * Copying is the only way a secret leaves the page: the portal never writes one to
 * localStorage or a URL. The outcome is announced in a live region, and a browser that
 * refuses the clipboard gets a sentence (select the text by hand) rather than an error.
 */
import { useState } from "preact/hooks";

export function CopyButton({ text, label, refused }: { text: () => string; label: string; refused: string }) {
  const [status, setStatus] = useState("");
  return (
    <span class="copy">
      <button
        type="button"
        class="secondary"
        onClick={async () => {
          try {
            await navigator.clipboard.writeText(text());
            setStatus("Copied to the clipboard.");
          } catch {
            setStatus(`The browser refused the clipboard: ${refused}`);
          }
        }}
      >
        {label}
      </button>{" "}
      <span class="copy-status" role="status">
        {status}
      </span>
    </span>
  );
}
