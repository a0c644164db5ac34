// Faults as the native relays take them: one Float64Array, FAULT_REC numbers per fault, in chain
// order: [type code, stream (0 upstream, 1 downstream), toxicity, a0, a1, a2, id], the attributes in
// the catalogue's order (src/config/faults.ts); id: a 32-bit hash of the whole fault, so that a
// change to one fault leaves the others' per-flow roll and state alone in the relay. The codes are shared by tcp_relay.c and
// udp_relay.c (addon/faults.h); change both together.

import type { Fault } from '../model/types.js';
import { faultCatalogue } from '../config/faults.js';

export const FAULT_REC = 7;
export const FAULT_MAX = 16;       // per listener; more is refused where faults are added

export const FAULT_CODES: Readonly<Record<string, number>> = {
  latency: 1, bandwidth: 2, slow_close: 3, timeout: 4, reset_peer: 5, slicer: 6, limit_data: 7,
  loss: 8, duplicate: 9, reorder: 10,
};

export function encodeFaults(faults: readonly Fault[], protocol: 6 | 17): Float64Array {
  const cat = faultCatalogue(protocol);
  const out = new Float64Array(Math.min(faults.length, FAULT_MAX) * FAULT_REC);
  faults.slice(0, FAULT_MAX).forEach((f, i) => {
    const o = i * FAULT_REC;
    out[o] = FAULT_CODES[f.type] ?? 0;
    out[o + 1] = f.stream === 'upstream' ? 0 : 1;
    out[o + 2] = f.toxicity;
    Object.keys(cat[f.type] ?? {}).forEach((k, j) => { out[o + 3 + j] = f.attributes[k] ?? 0; });
    out[o + 6] = faultId(f);
  });
  return out;
}

/** FNV-1a (32 bits) of everything that makes a fault what it is. */
export function faultId(f: Fault): number {
  const text = `${f.name}|${f.type}|${f.stream}|${f.toxicity}|${Object.entries(f.attributes).sort().map(([k, v]) => `${k}=${v}`).join(',')}`;
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) { h ^= text.charCodeAt(i); h = Math.imul(h, 0x01000193) >>> 0; }
  return h;
}
