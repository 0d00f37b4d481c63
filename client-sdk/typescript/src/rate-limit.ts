/**
 * The rate limits a response reports, typed: what the gateway allows the key, what is
 * left, and when it resets (the Rust SDK's `rate_limit()`).
 *
 * Every keyed response (a `429` included) carries `RateLimit-Policy` and `RateLimit`
 * (draft-ietf-httpapi-ratelimit-headers): lists of named policies, such as
 * `"quota";q=10000;w=86400` and `"quota";r=9999;t=3600`. They are RFC 9651 structured
 * fields, read with `structured-headers` (as the Rust SDK reads them with `sfv`), and
 * joined by name. Minitter names its plan's quota `"quota"` and its throttle's bucket
 * `"burst"`; a response reports the quota when the plan has one, else the throttle. When a response has no `RateLimit` fields but the older
 * `X-RateLimit-Limit`/`-Remaining`/`-Reset` trio, that is read instead, as an unnamed
 * policy ({@link RateLimit.current} finds it).
 */

import {
  type BareItem as StructuredBareItem,
  type DisplayString,
  type List,
  type Parameters,
  parseList as parseStructuredList,
  Token,
} from "structured-headers";

/** One policy: a limit per window, and what is left of it. */
export interface RateLimitPolicy {
  /** The policy's name: `quota` or `burst` from Minitter (`""` from `X-RateLimit-*`). */
  readonly name: string;
  /** Requests allowed per window (`q`). */
  readonly limit: number | undefined;
  /** The window's length in seconds (`w`). */
  readonly windowSeconds: number | undefined;
  /** Requests left in this window (`r`). */
  readonly remaining: number | undefined;
  /** Seconds until the window resets (`t`). */
  readonly resetSeconds: number | undefined;
}

/** The rate-limit policies a response reports. */
export class RateLimit {
  constructor(
    /** Every policy reported, in the order the server listed them. */
    readonly policies: readonly RateLimitPolicy[],
  ) {}

  /** The policies in these headers, or `undefined` when they name none. */
  static fromHeaders(headers: Headers): RateLimit | undefined {
    const policies = new Map<string, Mutable<RateLimitPolicy>>();
    const policy = (name: string) => {
      let found = policies.get(name);
      if (found === undefined) {
        found = { name, limit: undefined, windowSeconds: undefined, remaining: undefined, resetSeconds: undefined };
        policies.set(name, found);
      }
      return found;
    };
    for (const [name, [limit, window]] of entries(headers.get("ratelimit-policy"), "q", "w")) {
      Object.assign(policy(name), { limit, windowSeconds: window });
    }
    for (const [name, [remaining, reset]] of entries(headers.get("ratelimit"), "r", "t")) {
      Object.assign(policy(name), { remaining, resetSeconds: reset });
    }
    if (policies.size === 0) {
      const [limit, remaining, reset] = ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"].map((header) =>
        count(headers.get(header)),
      );
      if (limit === undefined && remaining === undefined && reset === undefined) return undefined;
      Object.assign(policy(""), { limit, remaining, resetSeconds: reset });
    }
    return new RateLimit([...policies.values()]);
  }

  /** The policy with this name. */
  policy(name: string): RateLimitPolicy | undefined {
    return this.policies.find((policy) => policy.name === name);
  }

  /** The plan's quota (requests per day, week or month), when reported. */
  get quota(): RateLimitPolicy | undefined {
    return this.policy("quota");
  }

  /** The plan's throttle (its token bucket), when reported. */
  get throttle(): RateLimitPolicy | undefined {
    return this.policy("burst");
  }

  /** The first policy reported: the one that binds (the quota when there is one, else the throttle). */
  get current(): RateLimitPolicy | undefined {
    return this.policies[0];
  }
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** A header's non-negative integer, or `undefined`. */
function count(value: string | null): number | undefined {
  if (value === null || !/^\s*\d{1,15}\s*$/.test(value)) return undefined;
  return Number(value);
}

/**
 * The policies of one header (its lines joined, as one list): each name with the two
 * non-negative integer parameters asked for. A header that does not parse is ignored.
 */
function entries(value: string | null, first: string, second: string): [string, [number | undefined, number | undefined]][] {
  if (value === null) return [];
  const list = parseList(value);
  if (list === undefined) return [];
  const found: [string, [number | undefined, number | undefined]][] = [];
  for (const { item, params } of list) {
    if (typeof item !== "string") continue; // a name is a string or a token
    const parameter = (key: string) => {
      const value = params.get(key);
      return typeof value === "number" && Number.isInteger(value) && value >= 0 ? value : undefined;
    };
    found.push([item, [parameter(first), parameter(second)]]);
  }
  return found;
}

/**
 * A bare item: strings and tokens as strings, integers and decimals as numbers, byte
 * sequences as bytes; RFC 9651's dates and display strings as `structured-headers` gives them.
 */
type BareItem = string | number | boolean | Uint8Array | Date | DisplayString | { inner: true };

interface Member {
  item: BareItem;
  params: Map<string, BareItem>;
}

/** An RFC 9651 list (read by `structured-headers`), or `undefined` when the text is not one. */
export function parseList(text: string): Member[] | undefined {
  let list: List;
  try {
    list = parseStructuredList(text);
  } catch {
    return undefined; // a malformed header is ignored, never thrown
  }
  const params = (parameters: Parameters) => new Map([...parameters].map(([key, value]) => [key, bare(value)] as const));
  return list.map(([item, parameters]) => ({
    item: Array.isArray(item) ? { inner: true } : bare(item),
    params: params(parameters),
  }));
}

/** The library's bare item as {@link BareItem}: a token as its text, bytes as a `Uint8Array`. */
function bare(item: StructuredBareItem): BareItem {
  if (item instanceof Token) return item.toString();
  if (item instanceof ArrayBuffer) return new Uint8Array(item);
  if (ArrayBuffer.isView(item)) return new Uint8Array(item.buffer, item.byteOffset, item.byteLength);
  return item;
}
