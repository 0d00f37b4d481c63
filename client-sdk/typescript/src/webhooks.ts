/**
 * Receiving Minitter's webhooks: checking that a delivery is genuine, then reading it.
 *
 * Minitter signs every delivery as Standard Webhooks (https://www.standardwebhooks.com/)
 * do: a `POST` of a JSON body `{"type": "tweet.created", "timestamp": "<RFC 3339>",
 * "data": {…}}` with the headers `webhook-id` (the same on every retry of the event),
 * `webhook-timestamp` (Unix seconds) and `webhook-signature`: `v1,<base64 of
 * HMAC-SHA256("{id}.{timestamp}.{body}")>` keyed with the subscription's secret
 * (`whsec_<base64>`); while a secret is being rotated, two signatures separated by a space
 * (`v1,<old> v1,<new>`), so that a receiver with either secret accepts the delivery.
 *
 * The cryptography is the maintained `standardwebhooks` package's (the standard's
 * reference implementation): it strips the `whsec_` prefix and decodes the rest as base64,
 * refuses an empty secret, checks that the timestamp is within 5 minutes of this machine's
 * clock either way, splits the signature header on spaces and accepts when any entry
 * equals the expected `v1,…` signature (compared in constant time). This module adds
 * several secrets at once (a receiver's side of a rotation), headers as a fetch `Headers`
 * or Node's `IncomingHttpHeaders`, one error class whose `reason` says what was wrong
 * (the package's error says it only in its message), and parsing the verified body.
 */
import { Webhook, WebhookVerificationError as PackageError } from "standardwebhooks";

/** The event types Minitter delivers (the spec may add more: handle unknown ones). */
export type KnownWebhookEventType = "tweet.created" | "tweet.deleted" | "user.followed" | "user.unfollowed" | "webhook.ping";

/**
 * The envelope of every delivery. `data` depends on `type`; give {@link verifyWebhook} a
 * type of your own to name it. Nothing checks the body against a type: a genuine body is what Minitter sent.
 */
export interface WebhookEvent<Data = unknown> {
  type: KnownWebhookEventType | (string & {});
  /** When the event happened (RFC 3339). */
  timestamp: string;
  data: Data;
}

/** A request's headers: a fetch `Headers`, or Node's `IncomingHttpHeaders` (names in any case). */
export type WebhookHeaders = Headers | Readonly<Record<string, string | readonly string[] | undefined>>;

/** The request's body exactly as received: bytes (a `Buffer` is a `Uint8Array`), or its text. */
export type WebhookBody = string | Uint8Array | ArrayBuffer;

/** Why a delivery was refused. */
export type WebhookErrorReason =
  /** A `webhook-*` header is absent (see `header`). */
  | "missing_header"
  /** A `webhook-*` header cannot be read: a timestamp that is not an integer (see `header`). */
  | "invalid_header"
  /** The timestamp is more than 5 minutes old: a replay, a delayed delivery, or a wrong clock. */
  | "timestamp_too_old"
  /** The timestamp is more than 5 minutes ahead: most likely a wrong clock. */
  | "timestamp_in_future"
  /** No signature matches under any secret: an altered body, the wrong secret, or a forgery (indistinguishable by design). */
  | "invalid_signature"
  /** The delivery is genuine, but its body is not UTF-8 JSON. */
  | "invalid_json";

/** A delivery that {@link verifyWebhook} refused: answer it with a `4xx` and act on nothing. */
export class WebhookError extends Error {
  constructor(
    readonly reason: WebhookErrorReason,
    message: string,
    /** The header at fault, for `missing_header` and `invalid_header`. */
    readonly header?: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = "WebhookError";
  }
}

/** How far a delivery's timestamp may be from this machine's clock, either way (the standard's). */
export const WEBHOOK_TOLERANCE_SECONDS = 5 * 60;

const ID = "webhook-id";
const TIMESTAMP = "webhook-timestamp";
const SIGNATURE = "webhook-signature";

/**
 * Checks that a delivery was signed by Minitter with the secret (or one of the secrets:
 * give the old and the new one while you switch over to a rotated secret) and is recent,
 * then parses its body. `body` must be the raw body, before any JSON parsing.
 *
 * Throws a {@link WebhookError} for a delivery to refuse, and a `TypeError` for a secret
 * that is not `whsec_<base64>` (the prefix may be left out; surrounding whitespace is
 * ignored) or an empty list of secrets: a mistake of the receiver's, not of the request.
 */
export function verifyWebhook<T = WebhookEvent>(
  secretOrSecrets: string | readonly string[],
  headers: WebhookHeaders,
  body: WebhookBody,
): T {
  const keys = webhooks(typeof secretOrSecrets === "string" ? [secretOrSecrets] : secretOrSecrets);
  const normalized = lowerCased(headers);
  const bytes = typeof body === "string" ? new TextEncoder().encode(body) : body instanceof ArrayBuffer ? new Uint8Array(body) : body;

  // The package says which check failed only in its message, and not which header is
  // missing: the headers and the timestamp are checked here first, the same way.
  for (const name of [ID, TIMESTAMP, SIGNATURE]) {
    if (!normalized[name]) throw new WebhookError("missing_header", `webhook header \`${name}\` is missing`, name);
  }
  const timestamp = normalized[TIMESTAMP] ?? "";
  if (!/^\d+$/.test(timestamp)) throw new WebhookError("invalid_header", `webhook header \`${TIMESTAMP}\` is invalid`, TIMESTAMP);
  const age = Math.floor(Date.now() / 1000) - Number(timestamp);
  if (age > WEBHOOK_TOLERANCE_SECONDS) throw new WebhookError("timestamp_too_old", "webhook timestamp is too old");
  if (-age > WEBHOOK_TOLERANCE_SECONDS) throw new WebhookError("timestamp_in_future", "webhook timestamp is in the future");

  if (!keys.some((key) => signedWith(key, bytes, normalized))) {
    throw new WebhookError("invalid_signature", "no webhook signature matches");
  }
  try {
    return JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes)) as T;
  } catch (cause) {
    throw new WebhookError("invalid_json", "webhook body is not JSON", undefined, { cause });
  }
}

function webhooks(secrets: readonly string[]): Webhook[] {
  if (secrets.length === 0) throw new TypeError("no webhook secret given");
  return secrets.map((secret, index) => {
    try {
      return new Webhook(secret.trim());
    } catch (cause) {
      throw new TypeError(`webhook secret #${index} is not \`whsec_\` and base64`, { cause });
    }
  });
}

/** Whether a signature of the header matches under this key; throws for anything else. */
function signedWith(key: Webhook, body: Uint8Array, headers: Record<string, string>): boolean {
  try {
    key.verify(body, headers, { jsonParse: false });
    return true;
  } catch (error) {
    if (!(error instanceof PackageError)) throw error;
    // The timestamp was found recent above; the second may have turned since.
    if (/too old/i.test(error.message)) throw new WebhookError("timestamp_too_old", "webhook timestamp is too old");
    if (/too new/i.test(error.message)) throw new WebhookError("timestamp_in_future", "webhook timestamp is in the future");
    return false;
  }
}

function lowerCased(headers: WebhookHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  if (headers instanceof Headers) {
    headers.forEach((value, name) => {
      out[name] = value;
    });
    return out;
  }
  for (const [name, value] of Object.entries(headers)) {
    // A header sent twice: the first, as the Rust SDK's `HeaderMap::get` does.
    const first = typeof value === "string" ? value : value?.[0];
    if (first !== undefined) out[name.toLowerCase()] = first;
  }
  return out;
}
