// Faults changed at run time (`sgemu fault`, POST /v1/faults) over the ones the config gives
// (SPEC.md §9). Per target (`web:tcp/8080`, `app:out:tcp/5432`): the faults added through the API,
// and the names of config faults removed through it. In force = config faults minus removed, then
// added, in that order (a chain, as Toxiproxy's). Kept across reloads, not across restarts (as
// Toxiproxy keeps toxics in memory); a config reload brings its own faults up to date underneath.

import type { Fault } from '../model/types.js';
import { FAULT_LIST_MAX, FaultError } from '../config/faults.js';

export type FaultOrigin = 'config' | 'api';

export interface FaultRow {
  target: string;
  origin: FaultOrigin;
  fault: Fault;
  /** false: past the FAULT_LIST_MAX a listener takes; listed, not in force. */
  applied: boolean;
}

export class FaultStore {
  private readonly added = new Map<string, Fault[]>();
  private readonly removed = new Map<string, Set<string>>();

  /** The faults on `target` whose config gives `config`, with their origin, in chain order. The
   * relay applies FAULT_LIST_MAX per listener: past that (a reload gave the config more faults
   * than before), the rest are listed with applied: false until some go. */
  rows(target: string, config: readonly Fault[]): FaultRow[] {
    const gone = this.removed.get(target);
    const out: FaultRow[] = [];
    for (const f of config) if (!gone?.has(f.name)) out.push({ target, origin: 'config', fault: f, applied: true });
    for (const f of this.added.get(target) ?? []) out.push({ target, origin: 'api', fault: f, applied: true });
    for (let i = FAULT_LIST_MAX; i < out.length; i++) out[i]!.applied = false;
    return out;
  }

  effective(target: string, config: readonly Fault[]): Fault[] {
    if (!this.added.has(target) && !this.removed.has(target)) return config as Fault[];
    return this.rows(target, config).filter((r) => r.applied).map((r) => r.fault);
  }

  /** Adds `fault` to `target`; FaultExists (409) when a fault of that name is in force there. */
  add(target: string, fault: Fault, config: readonly Fault[], max: number): void {
    const now = this.rows(target, config);
    if (now.some((r) => r.fault.name === fault.name)) {
      throw new FaultError(`fault ${fault.name} already exists on ${target}; remove it first or give another name`, 'FaultExists');
    }
    if (now.length >= max) throw new FaultError(`${target} has ${now.length} faults, the most one target takes is ${max}`, 'FaultLimitExceeded');
    const list = this.added.get(target) ?? [];
    list.push(fault);
    this.added.set(target, list);
  }

  /** Removes the fault `name` from `target` (null: all of them) → how many went. FaultNotFound
   * when a named fault is not in force there. */
  remove(target: string, name: string | null, config: readonly Fault[]): number {
    const now = this.rows(target, config);
    const hit = name === null ? now : now.filter((r) => r.fault.name === name);
    if (name !== null && hit.length === 0) throw new FaultError(`${target} has no fault named ${name}`, 'FaultNotFound');
    for (const r of hit) {
      if (r.origin === 'api') {
        const rest = (this.added.get(target) ?? []).filter((f) => f !== r.fault);
        if (rest.length) this.added.set(target, rest); else this.added.delete(target);
      } else {
        const set = this.removed.get(target) ?? new Set<string>();
        set.add(r.fault.name);
        this.removed.set(target, set);
      }
    }
    return hit.length;
  }

  /** Forgets every run-time change: the config's faults are in force again. */
  clear(): void {
    this.added.clear();
    this.removed.clear();
  }
}


/** `web:tcp/8080` → its parts; null when the text is not a target. */
export function parseFaultTarget(text: string): { instance: string; kind: 'service' | 'outbound'; protocol: 'tcp' | 'udp'; port: number } | null {
  const m = /^([^:\s]+):(?:(out):)?(tcp|udp)\/(\d{1,5})$/.exec(text);
  if (!m || Number(m[4]) > 65535 || Number(m[4]) < 1) return null;
  return { instance: m[1]!, kind: m[2] ? 'outbound' : 'service', protocol: m[3] as 'tcp' | 'udp', port: Number(m[4]) };
}
