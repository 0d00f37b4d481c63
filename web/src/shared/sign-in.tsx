/**
 * The sign-in form of both pages: one secret (the partner's API key, the operator's admin
 * token) in a password field, so that it is not shown on screen or offered for autofill,
 * and the API's reason for a refusal in an alert that screen readers announce.
 */
import { useState } from "preact/hooks";

export function SignIn({
  id,
  label,
  onSignIn,
  error,
}: {
  /** The field's id. */
  id: string;
  /** What the secret is called: "API key", "Admin token". */
  label: string;
  onSignIn: (secret: string) => void;
  error: string | undefined;
}) {
  const [secret, setSecret] = useState("");
  return (
    <main>
      <h2>Sign in</h2>
      <form
        onSubmit={(event) => {
          event.preventDefault();
          onSignIn(secret.trim());
        }}
      >
        <label for={id}>{label}</label>
        <input id={id} type="password" autocomplete="off" required value={secret} onInput={(event) => setSecret(event.currentTarget.value)} />
        <p>
          <button type="submit">Sign in</button>
        </p>
        {error !== undefined && (
          <p class="error" role="alert">
            {error}
          </p>
        )}
      </form>
    </main>
  );
}
