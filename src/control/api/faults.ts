// The JSON API of faults (SPEC.md §9): GET /v1/faults, POST /v1/faults, DELETE /v1/faults.
//   GET                         { "faults": [ { target, origin, name, type, stream, toxicity, attributes } ] }
//   POST {target, name?, type, stream?, toxicity?, attributes?}   201, the fault as in force
//   DELETE ?target=T[&name=N]   200 { "removed": n }: one fault, or every fault on T
// Errors: 400 (InvalidJson, InvalidFault*, MissingParameter), 404 (FaultTargetNotFound,
// FaultNotFound), 409 (FaultExists, FaultLimitExceeded).

import { faultToJson } from '../../config/faults.js';
import { SgemuError } from '../../model/errors.js';
import type { FaultRow } from '../faults.js';

/** What the fault routes need of the daemon. */
export interface FaultsHost {
  listFaults(): FaultRow[];
  addFault(target: string, raw: unknown): FaultRow;
  removeFault(target: string, name: string | null): number;
}

export const FAULT_ROUTES = ['GET /v1/faults', 'POST /v1/faults', 'DELETE /v1/faults'] as const;

const STATUS: Readonly<Record<string, number>> = {
  FaultTargetNotFound: 404, FaultNotFound: 404, FaultExists: 409, FaultLimitExceeded: 409,
};

export function faultRowJson(r: FaultRow): Record<string, unknown> {
  return { target: r.target, origin: r.origin, ...faultToJson(r.fault), ...(r.applied ? {} : { applied: false }) };
}

/** Answers one fault route → [status, body]. */
export function faultsRoute(host: FaultsHost, route: string, params: URLSearchParams, body: Buffer): [number, unknown] {
  try {
    if (route === 'GET /v1/faults') {
      const target = params.get('target');
      return [200, { faults: host.listFaults().filter((r) => target === null || r.target === target).map(faultRowJson) }];
    }
    if (route === 'POST /v1/faults') {
      let o: unknown;
      try { o = JSON.parse(body.toString('utf8')); } catch { return [400, { error: 'InvalidJson', message: 'body must be JSON: {"target","type","stream","toxicity","attributes"}' }]; }
      if (typeof o !== 'object' || o === null || Array.isArray(o)) return [400, { error: 'InvalidJson', message: 'body must be a JSON object' }];
      const { target, ...fault } = o as Record<string, unknown>;
      if (typeof target !== 'string') return [400, { error: 'MissingParameter', message: 'target is required: INSTANCE:tcp/PORT, INSTANCE:udp/PORT or INSTANCE:out:tcp/PORT' }];
      return [201, faultRowJson(host.addFault(target, fault))];
    }
    const target = params.get('target');
    if (target === null) return [400, { error: 'MissingParameter', message: 'DELETE /v1/faults?target=INSTANCE:tcp/PORT[&name=NAME]' }];
    return [200, { removed: host.removeFault(target, params.get('name')) }];
  } catch (e) {
    if (!(e instanceof SgemuError)) throw e;
    return [STATUS[e.code] ?? 400, { error: e.code, message: e.message }];
  }
}
