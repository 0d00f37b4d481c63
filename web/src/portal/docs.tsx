/**
 * The way to the interactive API docs (`/docs/`, Swagger UI) with the partner's key.
 * Swagger UI's "Authorize" only reads what is typed into it (and its own localStorage);
 * the portal may put the key in neither localStorage nor a URL, so it cannot hand the key
 * over. Instead, "Copy API key" puts it on the clipboard, ready to paste into Authorize.
 */
import { CopyButton } from "./copy.js";

export function DocsSection({ apiKey }: { apiKey: () => string }) {
  return (
    <section aria-labelledby="docs-heading">
      <h2 id="docs-heading">Try the API</h2>
      <p>
        <a href="/docs/">Open the API documentation (Swagger UI)</a>
      </p>
      <p>
        To use "Try it out" there, copy your key and paste it into Swagger UI's <strong>Authorize</strong> dialog
        (<code>apiKey</code>). The portal never puts your key in a link or in the browser's long-lived storage.
      </p>
      <p>
        {/* The clipboard is the only hand-over: no URL, no localStorage (see the doc above). */}
        <CopyButton text={apiKey} label="Copy API key" refused="copy your key from where you keep it." />
      </p>
    </section>
  );
}
