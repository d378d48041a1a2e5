/**
 * Guest-error and unimplemented-feature logs, after QEMU's LOG_GUEST_ERROR and LOG_UNIMP.
 *
 * A model never throws at the guest: bad guest input is recorded here, counted, and handled
 * the way the hardware would. Entries are structured so tests can assert on them.
 */

/** Log categories, as QEMU's `-d guest_errors,unimp`. */
export type LogKind = 'guest_error' | 'unimp';

/** One logged event. */
export interface LogEntry {
  readonly kind: LogKind;
  /** The model that logged it, e.g. `tegra241-cmdqv` or `memory`. */
  readonly source: string;
  readonly message: string;
  /** Model time (ns) when logged, if a clock is attached. */
  readonly time: number;
  /** The process the entry concerns (a host log attributes to the VM's process); 0 when none. */
  readonly pid: number;
}

/**
 * A bounded, countable log. The newest `capacity` entries are kept; counts are exact.
 */
export class ModelLog {
  private readonly ring: LogEntry[] = [];
  private readonly counts = new Map<string, number>();
  private totalGuestErrors = 0;
  private totalUnimp = 0;
  private readonly subscribers: ((entry: LogEntry) => void)[] = [];
  /** Optional live sink (e.g. stderr when the user asked for `-d guest_errors`). */
  sink: ((entry: LogEntry) => void) | undefined;
  /** Time source for entries. */
  now: () => number = () => 0;
  /** Which process an entry concerns when logged (the host's `current`); 0 when none. */
  pid: () => number = () => 0;

  constructor(readonly capacity = 1024) {}

  /** Record a guest error (the guest did something the hardware does not allow). */
  guestError(source: string, message: string): void {
    this.totalGuestErrors++;
    this.add({ kind: 'guest_error', source, message, time: this.now(), pid: this.pid() });
  }

  /** Record use of something the model does not implement. */
  unimp(source: string, message: string): void {
    this.totalUnimp++;
    this.add({ kind: 'unimp', source, message, time: this.now(), pid: this.pid() });
  }

  private add(entry: LogEntry): void {
    const key = `${entry.kind}:${entry.source}`;
    this.counts.set(key, (this.counts.get(key) ?? 0) + 1);
    if (this.ring.length >= this.capacity) this.ring.shift();
    this.ring.push(entry);
    this.sink?.(entry);
    for (const f of this.subscribers) f(entry);
  }

  /**
   * Receive every later entry (e.g. a VM taking the host's entries about its own process);
   * returns the function that stops it.
   */
  subscribe(f: (entry: LogEntry) => void): () => void {
    this.subscribers.push(f);
    return () => {
      const i = this.subscribers.indexOf(f);
      if (i >= 0) this.subscribers.splice(i, 1);
    };
  }

  /** Record an entry logged elsewhere (its source, time and pid kept), counted as if logged here. */
  append(entry: LogEntry): void {
    if (entry.kind === 'guest_error') this.totalGuestErrors++;
    else this.totalUnimp++;
    this.add(entry);
  }

  /** How many entries of `kind` were logged, optionally only from `source`. */
  count(kind: LogKind, source?: string): number {
    if (source !== undefined) return this.counts.get(`${kind}:${source}`) ?? 0;
    return kind === 'guest_error' ? this.totalGuestErrors : this.totalUnimp;
  }

  /** The retained entries, oldest first. */
  entries(): readonly LogEntry[] {
    return this.ring;
  }

  /** The most recent entry, if any. */
  last(): LogEntry | undefined {
    return this.ring[this.ring.length - 1];
  }

  /** Forget every entry and count. */
  clear(): void {
    this.ring.length = 0;
    this.counts.clear();
    this.totalGuestErrors = 0;
    this.totalUnimp = 0;
  }
}
