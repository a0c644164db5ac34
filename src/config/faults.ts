// The fault catalogue (SPEC.md §9) and the one validation every edge uses: the config loader, the
// JSON API (/v1/faults), `sgemu fault add` and the Toxiproxy-compatible API.
//
// TCP faults are Toxiproxy's toxics with its names, attributes and defaults (Shopify/toxiproxy,
// toxics/*.go): times in ms, except the slicer's delay in µs; bandwidth in KB/s of 1000 bytes.
// UDP faults are ours (Toxiproxy has no UDP): latency, loss, duplicate, reorder.

import { SgemuError } from '../model/errors.js';
import type { Fault } from '../model/types.js';
import type { Pos, TNode } from './yaml-tree.js';

/** A fault that is not valid: unknown type, stream, attribute or a value out of range. */
export class FaultError extends SgemuError {
  constructor(message: string, code = 'InvalidFault') {
    super(code, message);
  }
}

interface AttrSpec { readonly def: number; readonly min: number; readonly max: number; readonly doc: string }

const MS_MAX = 3_600_000;          // an hour: longer is a typo, not a test
const int = (doc: string, def = 0, max = MS_MAX, min = 0): AttrSpec => ({ def, min, max, doc });
const prob = (doc: string, def = 0): AttrSpec => ({ def, min: 0, max: 1, doc });

export const TCP_FAULTS: Readonly<Record<string, Readonly<Record<string, AttrSpec>>>> = {
  latency: { latency: int('ms added to each chunk'), jitter: int('ms, ± around latency') },
  bandwidth: { rate: int('KB/s (1 KB = 1000 bytes); 0 stops the data', 0, 10_000_000) },
  slow_close: { delay: int('ms the close (FIN) is held back') },
  timeout: { timeout: int('ms until the connection is closed while all data is dropped; 0: never closed') },
  reset_peer: { timeout: int('ms until the connection is reset (RST)') },
  slicer: {
    average_size: int('bytes per slice on average', 0, 1 << 20),
    size_variation: int('bytes ± around average_size', 0, 1 << 20),
    delay: int('µs between slices', 0, 60_000_000),
  },
  limit_data: { bytes: int('bytes let through before the connection is closed', 0, Number.MAX_SAFE_INTEGER) },
};

export const UDP_FAULTS: Readonly<Record<string, Readonly<Record<string, AttrSpec>>>> = {
  latency: { latency: int('ms added to each datagram'), jitter: int('ms, ± around latency') },
  loss: { probability: prob('probability that a datagram is dropped') },
  duplicate: { probability: prob('probability that a datagram is sent twice') },
  reorder: { probability: prob('probability that a datagram is held back behind the next one'), gap: int('ms a held datagram waits at most for a next one', 10) },
};

export const FAULT_STREAMS = ['upstream', 'downstream'] as const;

export function faultCatalogue(protocol: 6 | 17): Readonly<Record<string, Readonly<Record<string, AttrSpec>>>> {
  return protocol === 6 ? TCP_FAULTS : UDP_FAULTS;
}

const NAME_RE = /^[A-Za-z0-9_.:-]{1,64}$/;

/**
 * A fault from untrusted input (config object, JSON body, CLI), checked and with Toxiproxy's
 * defaults filled in: stream downstream, toxicity 1, every attribute present, name
 * `<type>_<stream>` when not given. Throws FaultError naming the field, the value and what is valid.
 */
export function parseFault(raw: unknown, protocol: 6 | 17): Fault {
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new FaultError('a fault is an object with type, stream, toxicity and attributes');
  const o = raw as Record<string, unknown>;
  const cat = faultCatalogue(protocol);
  const proto = protocol === 6 ? 'tcp' : 'udp';
  if (typeof o.type !== 'string' || !Object.hasOwn(cat, o.type)) {
    throw new FaultError(`fault type ${JSON.stringify(o.type ?? null)} is not valid for ${proto}; valid: ${Object.keys(cat).join(', ')}`, 'InvalidFaultType');
  }
  const type = o.type;
  const stream = o.stream === undefined || o.stream === null || o.stream === '' ? 'downstream' : o.stream;
  if (stream !== 'upstream' && stream !== 'downstream') {
    throw new FaultError(`fault stream ${JSON.stringify(stream)} is not valid; valid: upstream (client to backend), downstream (backend to client)`, 'InvalidFaultStream');
  }
  let toxicity = 1;
  if (o.toxicity !== undefined && o.toxicity !== null) {
    if (typeof o.toxicity !== 'number' || !(o.toxicity >= 0 && o.toxicity <= 1)) {
      throw new FaultError(`fault toxicity ${JSON.stringify(o.toxicity)} is not valid; valid: a number from 0 to 1 (the probability that a new flow gets the fault)`);
    }
    toxicity = o.toxicity;
  }
  const specs = cat[type]!;
  const attributes: Record<string, number> = {};
  const given = o.attributes ?? {};
  if (given === null || typeof given !== 'object' || Array.isArray(given)) throw new FaultError('fault attributes must be an object of numbers');
  for (const [k, v] of Object.entries(given as Record<string, unknown>)) {
    const spec = specs[k];
    if (!spec) throw new FaultError(`${type} has no attribute ${JSON.stringify(k)}; valid: ${Object.keys(specs).join(', ')}`);
    if (typeof v !== 'number' || !Number.isFinite(v) || v < spec.min || v > spec.max || (spec.max > 1 && !Number.isInteger(v))) {
      throw new FaultError(`${type}.${k} ${JSON.stringify(v)} is not valid; valid: ${spec.max > 1 ? 'an integer' : 'a number'} from ${spec.min} to ${spec.max} (${spec.doc})`);
    }
    attributes[k] = v;
  }
  for (const [k, spec] of Object.entries(specs)) if (!(k in attributes)) attributes[k] = spec.def;
  let name = `${type}_${stream}`;
  if (o.name !== undefined && o.name !== null && o.name !== '') {
    if (typeof o.name !== 'string' || !NAME_RE.test(o.name)) throw new FaultError(`fault name ${JSON.stringify(o.name)} is not valid; valid: 1-64 of A-Z a-z 0-9 _ . : -`);
    name = o.name;
  }
  return { name, type, stream, toxicity, attributes };
}

/** The JSON shape of a fault (Toxiproxy's toxic): what the APIs print and take. */
export function faultToJson(f: Fault): { name: string; type: string; stream: string; toxicity: number; attributes: Record<string, number> } {
  return { name: f.name, type: f.type, stream: f.stream, toxicity: f.toxicity, attributes: { ...f.attributes } };
}

/** The plain value of a YAML/JSON tree node (for the small objects faults are). */
function plain(n: TNode): unknown {
  if (n.kind === 'scalar') return n.value;
  if (n.kind === 'seq') return n.items.map(plain);
  const o: Record<string, unknown> = {};
  for (const [k, e] of n.entries) o[k] = plain(e.node);
  return o;
}

/**
 * A service's or outbound entry's `faults:` from the config tree: each checked by parseFault,
 * errors reported at the fault's line:col; names unique per list (default `<type>_<stream>`).
 */
export function readFaults(node: TNode | undefined, path: string, protocol: 6 | 17,
  err: (path: string, pos: Pos, message: string) => void): Fault[] {
  if (!node) return [];
  if (node.kind !== 'seq') { err(path, node.pos, 'faults must be a list of faults'); return []; }
  if (node.items.length > FAULT_LIST_MAX) err(path, node.pos, `faults lists ${node.items.length} faults, the most one service takes is ${FAULT_LIST_MAX}`);
  const out: Fault[] = [];
  node.items.slice(0, FAULT_LIST_MAX).forEach((item, i) => {
    const at = `${path}[${i}]`;
    try {
      const f = parseFault(plain(item), protocol);
      if (out.some((g) => g.name === f.name)) { err(at, item.pos, `fault name ${f.name} is used twice in this list; give one a name`); return; }
      out.push({ ...f, pos: { path: at, line: item.pos.line, column: item.pos.column } });
    } catch (e) {
      if (!(e instanceof FaultError)) throw e;
      err(at, item.pos, e.message);
    }
  });
  return out;
}

/** The most faults one service or outbound entry takes (the relays' FAULT_MAX). */
export const FAULT_LIST_MAX = 16;
