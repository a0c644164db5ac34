// Backends given by name (`backend: localhost:3000`, `db:5432`): resolved when the config is
// loaded (start, reload), never per connection. The native relays connect to addresses and the
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

type Lookup = (name: string) => Promise<string[]>;

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

  /**
   * Resolves every name `model` uses, all at once, and logs each one whose addresses are new or
   * changed (and each that does not resolve). Names the model no longer uses are forgotten.
   */
  async resolve(model: Model): Promise<void> {
    const names = backendNames(model);
    const results = await Promise.all(names.map((n) => this.lookupOne(n)));
    const used = new Set(names);
    for (const n of [...this.table.keys()]) if (!used.has(n)) this.table.delete(n);
    names.forEach((name, i) => {
      const r = results[i]!;
      const addrs = 'error' in r ? [] : r.addrs;
      const old = this.table.get(name);
      this.table.set(name, old !== undefined && sameList(old, addrs) ? old : addrs);
      if (old !== undefined && sameList(old, addrs)) return;
      if ('error' in r) {
        this.log(`backend name ${name} does not resolve (${r.error}): connections to its services are refused; ` +
          'reload (SIGHUP, or --watch) once it does, or give an address');
      } else {
        this.log(`backend name ${name}: ${addrs.join(', ')} (resolved at load; a flow goes to the first that listens)`);
      }
    });
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
