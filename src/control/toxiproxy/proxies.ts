// The Toxiproxy-compatible API's proxies and their toxics, in memory (as Toxiproxy keeps them:
// never in the --state file), and the semantics of Toxiproxy 2.x's ProxyCollection, Proxy and
// ToxicCollection (Shopify/toxiproxy: proxy_collection.go, proxy.go, toxic_collection.go):
// create (409 on a taken name), update (a new listen or upstream restarts the proxy), populate
// (create or replace; the same listen and upstream keep the proxy and its toxics), reset (every
// proxy enabled, every toxic removed), toxics as a chain per stream.
//
// Owns: the proxy table, the checks of listen/upstream/toxic input (toxics through
// config/faults.ts parseFault, the one fault validation), and the commit order of a change:
// build the next table → the daemon swaps to the overlay of it → keep it; a failed swap (a port
// taken) keeps the previous table, and the daemon's listeners stay as they were.
// Must not: touch listeners or the model itself (the host re-lays overlay.ts over the base model).
// Invariants: changes run one at a time (a promise chain); the table is replaced, never edited in
// place; a reader (GET) sees the committed table, the overlay the one being installed.

import net from 'node:net';
import { lookup } from 'node:dns/promises';
import { SgemuError } from '../../model/errors.js';
import type { Fault, Model } from '../../model/types.js';
import { FAULT_LIST_MAX, FaultError, TCP_FAULTS, parseFault } from '../../config/faults.js';
import { overlayModel, type OverlayProxy } from './overlay.js';

/** An error as Toxiproxy answers it: message and HTTP status (api.go ApiError). */
export class ToxiproxyError extends SgemuError {
  constructor(readonly status: number, message: string, code = 'Toxiproxy') {
    super(code, message);
  }
}

// Toxiproxy's messages (api.go), matched by its clients and users' tests.
export const ERR = {
  badBody: (why: string) => new ToxiproxyError(400, `bad request body: ${why}`, 'BadRequestBody'),
  missing: (field: string) => new ToxiproxyError(400, `missing required field: ${field}`, 'MissingField'),
  proxyNotFound: () => new ToxiproxyError(404, 'proxy not found', 'ProxyNotFound'),
  proxyExists: () => new ToxiproxyError(409, 'proxy already exists', 'ProxyAlreadyExists'),
  invalidStream: () => new ToxiproxyError(400, 'stream was invalid, can be either upstream or downstream', 'InvalidStream'),
  invalidType: () => new ToxiproxyError(400, 'invalid toxic type', 'InvalidToxicType'),
  toxicExists: () => new ToxiproxyError(409, 'toxic already exists', 'ToxicAlreadyExists'),
  toxicNotFound: () => new ToxiproxyError(404, 'toxic not found', 'ToxicNotFound'),
};

/** The extension (`"sgemu": {...}` in a proxy body): where the proxy lives, and what disabled means. */
export interface ProxyExtension {
  /** A config instance: the proxy is its service (listen port from `listen`), its groups apply. */
  instance: string | null;
  /** enabled: false → "refuse" (listener closed, Toxiproxy's behaviour) or "timeout" (SYNs dropped). */
  disabled: 'refuse' | 'timeout';
}

export interface ProxyRecord {
  name: string;
  /** As shown: the real host:port once listening, the text given while never started. */
  listen: string;
  upstream: string;
  enabled: boolean;
  ext: ProxyExtension;
  /** Whether the body carried `sgemu` (the JSON answer shows it back only then). */
  extGiven: boolean;
  /** Resolved at start: IPv4 listen address and real port; null while never started. */
  bound: { address: string; port: number } | null;
  backend: { host: string; port: number };
  /** Insertion order; listed upstream chain first, then downstream (Toxiproxy's GetToxicArray). */
  toxics: Fault[];
}

/** What the table needs of the daemon: a narrow interface (tests drive it with a fake). */
export interface ToxiproxyHost {
  baseModel(): Model;
  /** Swaps to overlay(base model of that moment); rejects with nothing changed when a listener cannot open. */
  reapply(): Promise<void>;
  /** Inside `sgemu exec`: listen addresses need not be loopback. */
  readonly anyAddress: boolean;
  log(line: string): void;
}

export interface ProxyInput {
  name: string;
  listen: string;
  upstream: string;
  enabled: boolean;
  ext: ProxyExtension | undefined;
}

export class ProxyTable {
  /** The committed table: what GET answers. */
  private proxies = new Map<string, ProxyRecord>();
  /** The table being installed (the overlay lays it while its swap runs); null between changes. */
  private pending: Map<string, ProxyRecord> | null = null;
  private chain: Promise<unknown> = Promise.resolve();
  private lastSkipped = '';
  /** Proxies passing through "no listener" (commitClosingFirst), whatever their record says. */
  private transientOff = new Set<string>();

  constructor(private readonly host: ToxiproxyHost) {}

  /** The live model: `base` with the proxies laid over it (the daemon's overlay hook). */
  overlay(base: Model): Model {
    const r = this.overlayOf(base, this.pending ?? this.proxies);
    const text = r.skipped.map((s) => `${s.name} (${s.why})`).join(', ');
    if (text !== this.lastSkipped) {
      this.lastSkipped = text;
      if (text) this.host.log(`toxiproxy: proxies left without a listener: ${text}`);
    }
    return r.model;
  }

  private overlayOf(base: Model, proxies: Map<string, ProxyRecord>): ReturnType<typeof overlayModel> {
    const list: OverlayProxy[] = [];
    for (const p of proxies.values()) {
      if (!p.bound) continue;
      const state = this.transientOff.has(p.name) ? 'off' : p.enabled ? 'open' : p.ext.disabled === 'timeout' ? 'closed' : 'off';
      list.push({ name: p.name, state, address: p.bound.address, port: p.bound.port, instance: p.ext.instance, backend: p.backend, faults: p.toxics });
    }
    return overlayModel(base, list, { namespace: this.host.anyAddress });
  }

  list(): ProxyRecord[] { return [...this.proxies.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)); }

  get(name: string): ProxyRecord {
    const p = this.proxies.get(name);
    if (!p) throw ERR.proxyNotFound();
    return p;
  }

  /** POST /proxies: 409 when the name is taken; starts it when enabled. */
  create(input: ProxyInput): Promise<ProxyRecord> {
    return this.serial(async () => {
      if (this.proxies.has(input.name)) throw ERR.proxyExists();
      const p = await this.prepare(input, null);
      const next = new Map(this.proxies).set(p.name, p);
      await this.commit(next);
      return p;
    });
  }

  /** POST /populate: every input checked first, then each created or replaced (proxy_collection.go
   * PopulateJson, AddOrReplace: the same listen and upstream keep the existing proxy as it is). */
  populate(inputs: ProxyInput[]): Promise<ProxyRecord[]> {
    return this.serial(async () => {
      const names = new Set<string>();
      for (const i of inputs) {
        if (names.has(i.name)) throw new ToxiproxyError(500, `duplicate proxy name ${JSON.stringify(i.name)}`, 'DuplicateProxyName');
        names.add(i.name);
      }
      const next = new Map(this.proxies);
      const out: ProxyRecord[] = [];
      const replaced: string[] = [];
      for (const i of inputs) {
        const old = next.get(i.name);
        if (old && old.listen === i.listen && old.upstream === i.upstream) { out.push(old); continue; }
        if (old) { next.delete(i.name); replaced.push(i.name); }   // stopped first: its port is free for the new one
        const p = await this.prepare(i, null, next);
        next.set(p.name, p);
        out.push(p);
      }
      await this.commitClosingFirst(replaced, next);
      return out;
    });
  }

  /** POST/PATCH /proxies/{name}: fields default to the current ones (proxy.go Update). */
  update(name: string, patch: { listen?: string; upstream?: string; enabled?: boolean; ext?: Partial<ProxyExtension> }): Promise<ProxyRecord> {
    return this.serial(async () => {
      const cur = this.get(name);
      const listen = patch.listen ?? cur.listen, upstream = patch.upstream ?? cur.upstream;
      const enabled = patch.enabled ?? cur.enabled;
      const ext: ProxyExtension = { ...cur.ext, ...patch.ext };
      const moved = listen !== cur.listen || upstream !== cur.upstream || ext.instance !== cur.ext.instance;
      let p: ProxyRecord;
      if (moved) {
        const others = new Map(this.proxies);
        others.delete(name);
        p = { ...(await this.prepare({ name, listen, upstream, enabled, ext }, cur, others)), toxics: cur.toxics, extGiven: cur.extGiven || patch.ext !== undefined };
      } else {
        p = { ...cur, enabled, ext, extGiven: cur.extGiven || patch.ext !== undefined };
        if (!p.bound && (enabled || ext.disabled === 'timeout')) p = { ...(await this.prepare({ name, listen, upstream, enabled, ext }, cur)), extGiven: p.extGiven };
      }
      // Toxiproxy stops a proxy (closing its connections) when it disables it or changes its
      // listen or upstream. "refuse" closes the listener anyway; a kept listener (the same
      // address:port, or "timeout" which drops SYNs) must pass through "no listener" first.
      const closeFirst = moved || (cur.enabled && !p.enabled);
      await this.commitClosingFirst(closeFirst ? [name] : [], new Map(this.proxies).set(name, p));
      return p;
    });
  }

  remove(name: string): Promise<void> {
    return this.serial(async () => {
      this.get(name);
      const next = new Map(this.proxies);
      next.delete(name);
      await this.commit(next);
    });
  }

  /** POST /reset: every proxy enabled (started), every toxic removed. */
  reset(): Promise<void> {
    return this.serial(async () => {
      const next = new Map<string, ProxyRecord>();
      for (const p of this.proxies.values()) {
        const started = p.enabled && p.bound ? p : await this.prepare({ name: p.name, listen: p.listen, upstream: p.upstream, enabled: true, ext: p.ext }, p);
        next.set(p.name, { ...started, enabled: true, toxics: [] });
      }
      await this.commit(next);
    });
  }

  // ---- toxics

  toxics(proxy: string): Fault[] { return orderToxics(this.get(proxy).toxics); }

  toxic(proxy: string, name: string): Fault {
    const f = this.get(proxy).toxics.find((x) => x.name === name);
    if (!f) throw ERR.toxicNotFound();
    return f;
  }

  /** POST /proxies/{p}/toxics (toxic_collection.go AddToxicJson: stream, then name, then type,
   * then a taken name, then the attributes). */
  addToxic(proxy: string, body: unknown): Promise<Fault> {
    return this.serial(async () => {
      const p = this.get(proxy);
      const o = asObject(body);
      const stream = o.stream === undefined || o.stream === null || o.stream === '' ? 'downstream' : o.stream;
      if (stream !== 'upstream' && stream !== 'downstream') throw ERR.invalidStream();
      if (o.type !== undefined && typeof o.type !== 'string') throw ERR.badBody(`json: cannot unmarshal ${jsonKind(o.type)} into Go struct field ToxicWrapper.type of type string`);
      if (o.name !== undefined && o.name !== null && typeof o.name !== 'string') throw ERR.badBody(`json: cannot unmarshal ${jsonKind(o.name)} into Go struct field ToxicWrapper.name of type string`);
      const type = typeof o.type === 'string' ? o.type : '';
      const name = typeof o.name === 'string' && o.name !== '' ? o.name : `${type}_${stream}`;
      if (!Object.hasOwn(TCP_FAULTS, type)) throw ERR.invalidType();
      if (p.toxics.some((t) => t.name === name)) throw ERR.toxicExists();
      const fault = checkFault({ ...o, name, type, stream, attributes: knownAttributes(type, o.attributes) });
      // The relay applies FAULT_LIST_MAX faults per listener; one more would be listed and ignored.
      if (p.toxics.length >= FAULT_LIST_MAX) throw ERR.badBody(`proxy ${proxy} has ${p.toxics.length} toxics, the most one proxy takes is ${FAULT_LIST_MAX}; remove one first`);
      await this.commit(new Map(this.proxies).set(proxy, { ...p, toxics: [...p.toxics, fault] }));
      return fault;
    });
  }

  /** POST/PATCH /proxies/{p}/toxics/{t}: attributes merged over the current ones, toxicity
   * defaults to the current one; name, type and stream stay (UpdateToxicJson). */
  updateToxic(proxy: string, name: string, body: unknown): Promise<Fault> {
    return this.serial(async () => {
      const p = this.get(proxy);
      const k = p.toxics.findIndex((t) => t.name === name);
      if (k < 0) throw ERR.toxicNotFound();
      const cur = p.toxics[k]!;
      const o = asObject(body);
      const given = o.attributes === undefined || o.attributes === null ? {} : o.attributes;
      if (typeof given !== 'object' || Array.isArray(given)) throw ERR.badBody(`json: cannot unmarshal ${jsonKind(given)} into Go struct field .attributes of type toxics.${cur.type}`);
      const fault = checkFault({
        name: cur.name, type: cur.type, stream: cur.stream,
        toxicity: o.toxicity === undefined || o.toxicity === null ? cur.toxicity : o.toxicity,
        attributes: { ...cur.attributes, ...pickKnown(cur.type, given) },
      });
      const toxics = p.toxics.slice();
      toxics[k] = fault;
      await this.commit(new Map(this.proxies).set(proxy, { ...p, toxics }));
      return fault;
    });
  }

  removeToxic(proxy: string, name: string): Promise<void> {
    return this.serial(async () => {
      const p = this.get(proxy);
      if (!p.toxics.some((t) => t.name === name)) throw ERR.toxicNotFound();
      await this.commit(new Map(this.proxies).set(proxy, { ...p, toxics: p.toxics.filter((t) => t.name !== name) }));
    });
  }

  // ---- internals

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  /**
   * Installs `next` after a swap in which the listening proxies among `names` have no listener,
   * which closes their open connections (as Toxiproxy's stop()). On failure the previous table
   * is installed again.
   */
  private async commitClosingFirst(names: string[], next: Map<string, ProxyRecord>): Promise<void> {
    const before = this.proxies;
    const closing = names.filter((n) => { const p = before.get(n); return p?.bound && (p.enabled || p.ext.disabled === 'timeout'); });
    if (closing.length === 0) return this.commit(next);
    for (const n of closing) this.transientOff.add(n);
    try { await this.commit(before); } finally { for (const n of closing) this.transientOff.delete(n); }
    try {
      await this.commit(next);
    } catch (e) {
      await this.commit(before).catch(() => {});
      throw e;
    }
  }

  /** Installs `next`: the daemon swaps to the overlay of it; on failure the previous table stays. */
  private async commit(next: Map<string, ProxyRecord>): Promise<void> {
    const prev = this.proxies;
    // A changed proxy whose address:port a config listener (or another proxy) holds would be left
    // out of the overlay: refuse it as Toxiproxy's failed listen (500, Go's error text).
    const clash = this.overlayOf(this.host.baseModel(), next).skipped.find((s) => next.get(s.name) !== prev.get(s.name));
    if (clash) {
      const p = next.get(clash.name)!;
      throw new ToxiproxyError(500, `listen tcp ${p.bound?.address}:${p.bound?.port}: bind: address already in use (${clash.why})`, 'ListenFailed');
    }
    this.pending = next;
    try {
      await this.host.reapply();
      this.proxies = next;
    } catch (e) {
      // Toxiproxy answers a failed listen with 500 and Go's error text.
      throw new ToxiproxyError(500, e instanceof Error ? e.message.split('\n').filter((l) => l.trim() && !l.startsWith('fix:')).map((l) => l.trim()).join('; ') : String(e), 'ListenFailed');
    } finally {
      this.pending = null;
    }
  }

  /**
   * A record for `input`, checked, with its listen address resolved and (when it will listen) a
   * real port: `cur` is the proxy it replaces (its port is reused when the listen text is the
   * one shown), `others` the proxies it must not collide with.
   */
  private async prepare(input: ProxyInput, cur: ProxyRecord | null, others: Map<string, ProxyRecord> = this.proxies): Promise<ProxyRecord> {
    const ext = input.ext ?? { instance: null, disabled: 'refuse' as const };
    const up = splitHostPort(input.upstream);
    if (!up || up.port === 0) throw ERR.badBody(`upstream ${JSON.stringify(input.upstream)} is not host:port (e.g. 127.0.0.1:6379 or localhost:6379)`);
    const backend = { host: await resolveHost(up.host), port: up.port };
    const rec: ProxyRecord = {
      name: input.name, listen: input.listen, upstream: input.upstream, enabled: input.enabled, ext, extGiven: input.ext !== undefined,
      bound: null, backend, toxics: cur?.toxics ?? [],
    };
    const listens = input.enabled || ext.disabled === 'timeout';
    let address: string;
    let port: number;
    if (ext.instance !== null) {
      const inst = this.host.baseModel().instances.find((i) => i.name === ext.instance);
      if (!inst) {
        const names = this.host.baseModel().instances.map((i) => i.name);
        throw ERR.badBody(`sgemu.instance ${JSON.stringify(ext.instance)} is not an instance of the config; instances: ${names.join(', ') || 'none'}`);
      }
      const l = splitHostPort(input.listen === '' ? '0' : input.listen) ?? splitHostPort(`${inst.address}:${input.listen}`);
      if (!l) throw ERR.badBody(`listen ${JSON.stringify(input.listen)} is not host:port or a port (on instance ${inst.name}, only the port is used)`);
      address = inst.address;
      port = l.port;
    } else {
      const l = splitHostPort(input.listen === '' ? '127.0.0.1:0' : input.listen);
      if (!l) throw ERR.badBody(`listen ${JSON.stringify(input.listen)} is not host:port (e.g. 127.0.0.1:0 or localhost:26379)`);
      address = checkListenHost(l.host, input.listen, this.host.anyAddress);
      port = l.port;
    }
    if (!listens) return rec;
    if (port === 0 && cur?.bound && cur.bound.address === address && cur.listen === input.listen) port = cur.bound.port;
    if (port === 0) port = await pickPort(address, others);
    rec.bound = { address, port };
    rec.listen = `${address}:${port}`;
    return rec;
  }
}

/** Toxiproxy ignores attributes its toxic type does not have (Go's JSON decoding). */
function knownAttributes(type: string, raw: unknown): unknown {
  return raw === null || typeof raw !== 'object' || Array.isArray(raw) ? raw : pickKnown(type, raw);
}

function pickKnown(type: string, raw: object): Record<string, unknown> {
  const spec = TCP_FAULTS[type] ?? {};
  return Object.fromEntries(Object.entries(raw).filter(([k]) => Object.hasOwn(spec, k)));
}

function checkFault(raw: Record<string, unknown>): Fault {
  try {
    return parseFault(raw, 6);
  } catch (e) {
    if (e instanceof FaultError) {
      if (e.code === 'InvalidFaultType') throw ERR.invalidType();
      if (e.code === 'InvalidFaultStream') throw ERR.invalidStream();
      throw ERR.badBody(e.message);
    }
    throw e;
  }
}

/** Upstream chain first, then downstream, each in the order added (ToxicCollection.GetToxicArray). */
export function orderToxics(toxics: readonly Fault[]): Fault[] {
  return [...toxics.filter((t) => t.stream === 'upstream'), ...toxics.filter((t) => t.stream === 'downstream')];
}

function asObject(body: unknown): Record<string, unknown> {
  if (body === null || typeof body !== 'object' || Array.isArray(body)) throw ERR.badBody(`json: cannot unmarshal ${jsonKind(body)} into Go value of type toxics.ToxicWrapper`);
  return body as Record<string, unknown>;
}

/** The JSON kind Go's decoder names in its errors. */
export function jsonKind(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v === 'object' ? 'object' : typeof v;
}

/** `host:port`, `[v6]:port`, `:port` (empty host); null when it is none of them. */
export function splitHostPort(text: string): { host: string; port: number } | null {
  const m = /^\[([^\]]*)\]:(\d{1,5})$/.exec(text) ?? /^([^:[\]]*):(\d{1,5})$/.exec(text);
  if (!m) return null;
  const port = Number(m[2]);
  return port <= 65535 ? { host: m[1] ?? '', port } : null;
}

/** The IPv4 address a proxy listens on. sgemu's instances live on loopback (SPEC §1) unless inside
 * `sgemu exec`; IPv6 listen addresses are not served (an instance needs an IPv4 address). */
function checkListenHost(host: string, listen: string, anyAddress: boolean): string {
  if (host === 'localhost' || host === '') return '127.0.0.1';
  const family = net.isIP(host);
  if (family === 6) {
    throw ERR.badBody(`listen ${listen}: IPv6 listen addresses are not served by sgemu's Toxiproxy API; use an IPv4 loopback address such as 127.0.0.1`);
  }
  if (family === 4 && (anyAddress || host.startsWith('127.')) && host !== '0.0.0.0') return host;
  throw ERR.badBody(`listen ${listen}: sgemu listens on loopback addresses only (127.0.0.0/8; any address inside \`sgemu exec\`); ` +
    `use e.g. 127.0.0.1:${splitHostPort(listen)?.port ?? 0}, or {"sgemu": {"instance": NAME}} to put the proxy on a config instance`);
}

async function resolveHost(host: string): Promise<string> {
  if (host === '' || host === 'localhost') return '127.0.0.1';
  if (net.isIP(host) !== 0) return host;
  // The native relay connects to addresses: resolve once, now. A name that does not resolve is
  // kept: connects to it fail, as Toxiproxy's do.
  try { return (await lookup(host, { family: 4 })).address; } catch { /* try any family */ }
  try { return (await lookup(host)).address; } catch { return host; }
}

/** A port free on `address` now (bind 0, read, close), and not one another proxy holds. As
 * Toxiproxy's `listen: "…:0"`; the daemon opens it right after (a race with other processes only). */
async function pickPort(address: string, others: Map<string, ProxyRecord>): Promise<number> {
  const held = new Set([...others.values()].filter((p) => p.bound?.address === address).map((p) => p.bound!.port));
  for (let i = 0; i < 20; i++) {
    const port = await new Promise<number>((resolve, reject) => {
      const s = net.createServer();
      s.once('error', reject);
      s.listen(0, address, () => {
        const a = s.address();
        s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
      });
    }).catch((e: NodeJS.ErrnoException) => {
      throw new ToxiproxyError(500, `listen tcp ${address}:0: ${e.code === 'EADDRNOTAVAIL' ? 'bind: cannot assign requested address' : e.message}`, 'ListenFailed');
    });
    if (!held.has(port)) return port;
  }
  throw new ToxiproxyError(500, `listen tcp ${address}:0: no free port`, 'ListenFailed');
}
