// The durable state file of the control plane: the world as the EC2 API left it, as a config object
// (SPEC §2 schema) plus what the config schema cannot hold (rule tags, groups deleted via the API).
//
// Owns: the file format, atomic replacement, and merging the saved world over the config file.
// Must not: keep anything in memory; decide policy (loadConfigText validates every load).
// Invariants:
//   - saveState returns only once the new content is durable (temp file fsync'd, renamed over the
//     old one, directory fsync'd), so kill -9 at any instant leaves either the old or the new file;
//   - before the rename the previous file is hard-linked to `<file>.bak`, the last good copy, read
//     only when the main file is missing or unreadable (never when it merely fails validation);
//   - a loaded state always passed loadConfigText on top of the current config;
//   - the temp file is `<file>.tmp-<pid>`: kill -9 between its open and the rename leaves it behind
//     (possibly truncated); removeStaleTemps, run when the writer starts, deletes those whose
//     process is gone and leaves any other (a live writer's, another file's) alone.
//
// File (JSON): { "sgemuState": 1, "savedAt": ISO time, "config": {config object},
//                "ruleTags": { "sgr-…": { key: value } }, "deletedGroupIds": ["sg-…"] }

import { closeSync, copyFileSync, fsyncSync, linkSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { loadConfigText, modelToConfigObject } from '../config/load.js';
import { ConfigError, ConfigErrors } from '../model/errors.js';
import type { Model } from '../model/types.js';

export const STATE_FORMAT = 1;
/** A state file larger than this is refused as corrupt (a config file may be 8 MiB). */
export const MAX_STATE_BYTES = 16 * 1024 * 1024;

export interface StateExtras {
  ruleTags: Record<string, Record<string, string>>;   // sgr- id → tags (the config schema has no rule tags)
  deletedGroupIds: string[];                          // groups deleted via the API: not re-added from the config
}

export interface StateFile {
  config: Record<string, unknown>;
  extras: StateExtras;
}

export function emptyExtras(): StateExtras {
  return { ruleTags: {}, deletedGroupIds: [] };
}

/** Atomically replaces the state file: write temp + fsync + link old to .bak + rename + fsync dir. */
export function saveState(statePath: string, configObject: unknown, extras: StateExtras = emptyExtras()): void {
  const dir = dirname(statePath);
  mkdirSync(dir, { recursive: true });
  const text = JSON.stringify({
    sgemuState: STATE_FORMAT,
    savedAt: new Date().toISOString(),
    config: configObject,
    ruleTags: extras.ruleTags,
    deletedGroupIds: extras.deletedGroupIds,
  }, null, 1) + '\n';
  const tmp = `${statePath}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w', 0o600);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  const bak = `${statePath}.bak`;
  try { unlinkSync(bak); } catch (e) { if (errno(e) !== 'ENOENT') throw e; }
  try {
    linkSync(statePath, bak);
  } catch (e) {
    const code = errno(e);
    if (code !== 'ENOENT') {
      // A file system without hard links: a plain copy still gives a last good copy.
      try { copyFileSync(statePath, bak); } catch { /* the main file stays authoritative */ }
    }
  }
  renameSync(tmp, statePath);
  const dfd = openSync(dir, 'r');
  try { fsyncSync(dfd); } finally { closeSync(dfd); }
}

/**
 * Deletes the temp files saveState left when its process was killed mid-write (issue 17: kill -9
 * during API writes left `state.json.tmp-PID` files that nothing removed). Only names of exactly
 * this state file's form, and only of a pid that no longer runs (kill(pid, 0) answers ESRCH) or of
 * this process (which has not written yet: the writer calls this before its first save). A pid
 * that runs again, reused by another process, keeps its file: a leak, never a live writer's temp
 * removed. Returns the names removed; never throws (a missing directory has nothing to clean).
 */
export function removeStaleTemps(statePath: string): string[] {
  const dir = dirname(statePath);
  const prefix = `${basename(statePath)}.tmp-`;
  let names: string[];
  try { names = readdirSync(dir); } catch { return []; }
  const removed: string[] = [];
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const digits = name.slice(prefix.length);
    if (!/^[1-9]\d{0,9}$/.test(digits)) continue;
    const pid = Number(digits);
    if (pid !== process.pid && processExists(pid)) continue;
    try { unlinkSync(join(dir, name)); removed.push(name); } catch { /* gone already, or not ours to remove */ }
  }
  return removed;
}

/** Whether a process with this pid exists (signal 0: permission is checked, nothing is sent). */
function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return errno(e) !== 'ESRCH';            // EPERM: it exists, under another user
  }
}

/**
 * Reads the state file (or its .bak when the main file is missing or unreadable). Null when
 * neither exists; ConfigErrors (code StateCorrupt) when files exist but none can be read.
 */
export function readStateFile(statePath: string): StateFile | null {
  const first = readOne(statePath);
  if (first.kind === 'ok') return first.state;
  const second = readOne(`${statePath}.bak`);
  if (second.kind === 'ok') return second.state;
  if (first.kind === 'missing' && second.kind === 'missing') return null;
  const why = first.kind === 'bad' ? first.why : second.kind === 'bad' ? second.why : 'unreadable';
  throw new ConfigErrors([new ConfigError('StateCorrupt', '', 0, 0,
    `state file ${statePath} cannot be read (${why}) and has no good .bak copy; start with --reset-state to use the config alone`)]);
}

/**
 * The persisted world on top of `base` (the config file's model), validated by loadConfigText.
 * Groups and network ACLs come from the state; those only in the config are added unless the API
 * deleted them; subnets come from the config with the state's NACL associations;
 * instances, services, prefix lists, VPCs and addresses come from the config, except each
 * instance's security groups, which the state keeps (ModifyInstanceAttribute).
 * Null when there is no state file; ConfigErrors when it is corrupt or does not fit the config.
 */
export function loadState(statePath: string, base: Model): Model | null {
  const st = readStateFile(statePath);
  if (!st) return null;
  const merged = mergeState(base, st);
  return loadConfigText(JSON.stringify(merged), statePath);
}

/** The config object of `base` with the state's groups and instance group lists laid over it. */
export function mergeState(base: Model, st: StateFile): Record<string, unknown> {
  const obj = asRecord(modelToConfigObject(base)) ?? {};
  const stGroups = asArray(st.config.securityGroups).map(asRecord).filter((g): g is Record<string, unknown> => g !== null);
  const deleted = new Set(st.extras.deletedGroupIds);
  const key = (g: Record<string, unknown>): string => (g.default === true ? `default:${String(g.vpc)}` : `id:${String(g.id)}`);
  const inState = new Set(stGroups.map(key));
  const baseGroups = asArray(obj.securityGroups).map(asRecord).filter((g): g is Record<string, unknown> => g !== null);
  const kept = baseGroups.filter((g) => !inState.has(key(g)) && !(typeof g.id === 'string' && deleted.has(g.id)));
  const groups = [...stGroups, ...kept];
  if (groups.length > 0) obj.securityGroups = groups;
  else delete obj.securityGroups;

  // Network ACLs as groups (the API's deletions of acl- ids are kept in deletedGroupIds), and the
  // subnets' NACL associations (ReplaceNetworkAclAssociation) over the config's subnets.
  const stAcls = asArray(st.config.networkAcls).map(asRecord).filter((g): g is Record<string, unknown> => g !== null);
  const aclInState = new Set(stAcls.map(key));
  const baseAcls = asArray(obj.networkAcls).map(asRecord).filter((g): g is Record<string, unknown> => g !== null);
  const acls = [...stAcls, ...baseAcls.filter((g) => !aclInState.has(key(g)) && !(typeof g.id === 'string' && deleted.has(g.id)))];
  if (acls.length > 0) obj.networkAcls = acls;
  else delete obj.networkAcls;
  const stSubnets = new Map<string, Record<string, unknown>>();
  for (const sn of asArray(st.config.subnets)) {
    const r = asRecord(sn);
    if (r && typeof r.id === 'string') stSubnets.set(r.id, r);
  }
  for (const sn of asArray(obj.subnets)) {
    const r = asRecord(sn);
    const s = r && typeof r.id === 'string' ? stSubnets.get(r.id) : undefined;
    if (r && s && typeof s.networkAcl === 'string') r.networkAcl = s.networkAcl;
  }

  const stInstances = new Map<string, Record<string, unknown>>();
  for (const i of asArray(st.config.instances)) {
    const r = asRecord(i);
    if (r && typeof r.name === 'string') stInstances.set(r.name, r);
  }
  for (const i of asArray(obj.instances)) {
    const r = asRecord(i);
    if (!r || typeof r.name !== 'string') continue;
    const s = stInstances.get(r.name);
    if (!s) continue;
    if (s.securityGroups !== undefined) r.securityGroups = s.securityGroups;
    else delete r.securityGroups;
  }
  return obj;
}

type ReadResult = { kind: 'ok'; state: StateFile } | { kind: 'missing' } | { kind: 'bad'; why: string };

function readOne(path: string): ReadResult {
  let text: string;
  try {
    const buf = readFileSync(path);
    if (buf.length > MAX_STATE_BYTES) return { kind: 'bad', why: `${buf.length} bytes, over ${MAX_STATE_BYTES}` };
    text = new TextDecoder('utf-8', { fatal: true }).decode(buf);
  } catch (e) {
    if (errno(e) === 'ENOENT') return { kind: 'missing' };
    return { kind: 'bad', why: errno(e) ?? 'not UTF-8 text' };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { kind: 'bad', why: 'not JSON' };
  }
  const top = asRecord(parsed);
  if (!top || top.sgemuState !== STATE_FORMAT) return { kind: 'bad', why: `not an sgemu state file of format ${STATE_FORMAT}` };
  const config = asRecord(top.config);
  if (!config) return { kind: 'bad', why: 'no config object' };
  const ruleTags: StateExtras['ruleTags'] = {};
  const rt = asRecord(top.ruleTags);
  if (rt) {
    for (const [id, tags] of Object.entries(rt)) {
      const t = asRecord(tags);
      if (!t) continue;
      const clean: Record<string, string> = {};
      for (const [k, v] of Object.entries(t)) if (typeof v === 'string') clean[k] = v;
      ruleTags[id] = clean;
    }
  }
  const deletedGroupIds = asArray(top.deletedGroupIds).filter((x): x is string => typeof x === 'string');
  return { kind: 'ok', state: { config, extras: { ruleTags, deletedGroupIds } } };
}

function asRecord(v: unknown): Record<string, unknown> | null {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
}

function asArray(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

function errno(e: unknown): string | undefined {
  return typeof e === 'object' && e !== null && 'code' in e && typeof e.code === 'string' ? e.code : undefined;
}
