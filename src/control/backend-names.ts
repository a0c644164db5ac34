// Backends given by name (`backend: localhost:3000`, `db:5432`): resolved when the config is
// loaded (start, reload) and every REFRESH_MS after (a container's address changes when it is
// recreated), never per connection. The native relays connect to addresses and the
// liveness monitor reads the kernel's socket table by address, so a name is carried as its list of
// addresses (ListenerSpec.backendAddrs); which of them a flow goes to is the first one that
// listens (BackendMonitor.liveAddress), as a client that tries each address of a name in turn
// would reach it. `localhost` is both 127.0.0.1 and ::1 on most systems, and dev servers listen on
// either one.
//
// Owns: the name → addresses table of the config in force.
// Must not: resolve on the hot path; fail a start or reload because a name does not resolve (its
// services refuse until a reload finds it, and the log says so).

import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import type { Model } from '../model/types.js';

/** How long one name may take: getaddrinfo on a host without its DNS server waits out its retries. */
const LOOKUP_MS = 3000;
/** How often the daemon asks again (Daemon.refreshNames). */
export const REFRESH_MS = 30_000;

export type Lookup = (name: string) => Promise<string[]>;

const systemLookup: Lookup = async (name) =>
  (await lookup(name, { all: true, verbatim: true })).map((a) => a.address);

/** The service backends of `model` given as names, not addresses (an outbound entry's `to` is an
 * instance or an address; one to an instance relays to that instance's service backend). */
export function backendNames(model: Model): string[] {
  const out = new Set<string>();
  for (const inst of model.instances) for (const s of inst.services) if (isIP(s.backend.host) === 0) out.add(s.backend.host);
  return [...out].sort();
}

export class BackendNames {
  private readonly table = new Map<string, readonly string[]>();

  constructor(private readonly log: (line: string) => void, private readonly lookupFn: Lookup = systemLookup,
    private readonly timeoutMs = LOOKUP_MS) {}

  /** The addresses of `name` (empty: it did not resolve); undefined when `name` was never asked. */
  get(name: string): readonly string[] | undefined { return this.table.get(name); }

  /** How many names the table holds. */
  get size(): number { return this.table.size; }

  /**
   * Resolves every name `model` uses, all at once, and logs each one whose addresses are new or
   * changed (and each that does not resolve). At a load (start, reload) names the model no longer
   * uses are forgotten and a name that does not resolve has no address; a `refresh` keeps the
   * table's addresses of a name whose lookup failed (a resolver's hiccup must not cut a backend
   * that works) and forgets nothing (a reload may be loading another model meanwhile).
   * true when some name's addresses changed.
   */
  async resolve(model: Model, opts: { refresh?: boolean } = {}): Promise<boolean> {
    const names = backendNames(model);
    const results = await Promise.all(names.map((n) => this.lookupOne(n)));
    if (!opts.refresh) {
      const used = new Set(names);
      for (const n of [...this.table.keys()]) if (!used.has(n)) this.table.delete(n);
    }
    let changed = false;
    names.forEach((name, i) => {
      const r = results[i]!;
      const old = this.table.get(name);
      if ('error' in r && opts.refresh && old !== undefined) return;
      const addrs = 'error' in r ? [] : r.addrs;
      this.table.set(name, old !== undefined && sameList(old, addrs) ? old : addrs);
      if (old !== undefined && sameList(old, addrs)) return;
      changed = true;
      if ('error' in r) {
        this.log(`backend name ${name} does not resolve (${r.error}): connections to its services are refused until it does ` +
          `(asked again every ${REFRESH_MS / 1000} s and on reload), or give an address`);
      } else {
        this.log(`backend name ${name}: ${addrs.join(', ')} (a flow goes to the first that listens)`);
      }
    });
    return changed;
  }

  private async lookupOne(name: string): Promise<{ addrs: string[] } | { error: string }> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(Object.assign(new Error('timed out'), { code: `no answer in ${this.timeoutMs / 1000} s` })), this.timeoutMs);
    });
    try {
      const addrs = [...new Set(await Promise.race([this.lookupFn(name), timeout]))];
      return addrs.length > 0 ? { addrs } : { error: 'no address' };
    } catch (e) {
      return { error: (e as NodeJS.ErrnoException).code ?? (e instanceof Error ? e.message : String(e)) };
    } finally {
      clearTimeout(timer);
    }
  }
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
