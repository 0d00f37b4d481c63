/**
 * A signed-in page's secret (the partner's API key, the operator's admin token), kept
 * where the security rules allow: in memory, and in this tab's sessionStorage so
 * that a reload keeps the page signed in. Never localStorage (it outlives the tab and is
 * shared by every tab of the origin), never a URL (URLs end up in logs and histories).
 */
export class Session {
  constructor(private readonly storageKey: string) {}

  /** The stored secret, if this tab signed in. */
  get(): string | undefined {
    return sessionStorage.getItem(this.storageKey) ?? undefined;
  }

  set(secret: string): void {
    sessionStorage.setItem(this.storageKey, secret);
  }

  clear(): void {
    sessionStorage.removeItem(this.storageKey);
  }
}

/** The API's origin: the pages are served by the API itself. */
export const API_BASE = location.origin;
