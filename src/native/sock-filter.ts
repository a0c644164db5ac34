// Kernel socket filters from TypeScript: loads our N-API addon once (a source build in
// build/Release, else the prebuilt one the package ships in prebuilds/linux-x64: see
// src/native/artifacts.ts) and wraps its syscalls (linux-techniques.md §1, native-notes/socket-filter.md).
//
// Owns: the addon handle (its failures become NativeError through ./failure.ts).
// Must not: build or inspect programs (src/policy/bpf.ts does), or decide anything about policy.
// Invariants: nativeStatus() never throws; a listener's filter is attached before bind+listen, so
// no SYN is ever accepted unfiltered; every fd returned here is O_NONBLOCK|O_CLOEXEC and owned by
// the caller (hand it to net/dgram, or closeFd it).

import { createRequire } from 'node:module';
import { constants as osConstants } from 'node:os';
import { NativeError } from '../model/errors.js';
import { check, nativeUnavailable, type Failure } from './failure.js';
import { addonLocation, type AddonLocation, type ArtifactOrigin } from './artifacts.js';

export { nativeArtifactPath, packageRoot } from './artifacts.js';

interface Addon {
  tcpListener(family: number, address: string, port: number, backlog: number, program: Buffer | null): number | Failure;
  udpSocket(family: number, address: string, port: number, backlog: number, program: Buffer | null): number | Failure;
  attachFilter(fd: number, program: Buffer): number | Failure;
  detachFilter(fd: number): number | Failure;
  filterLength(fd: number): number | Failure;
  closeFd(fd: number): number | Failure;
  listening?(family: number, protocol: number): string[] | Failure;
}

let addon: Addon | null = null;
let loadError: string | null = null;
let tried = false;

let location: AddonLocation | null = null;

function load(): Addon | null {
  if (tried) return addon;
  tried = true;
  try {
    if (process.platform !== 'linux') throw new Error(`platform ${process.platform} has no SO_ATTACH_FILTER`);
    location = addonLocation();        // build/Release first, then prebuilds/linux-x64 (node-gyp-build)
    if (!location.path) throw new Error(location.error ?? 'no native build found');
    addon = createRequire(import.meta.url)(location.path) as Addon;
  } catch (e) {
    addon = null;
    loadError = e instanceof Error ? e.message : String(e);
  }
  return addon;
}

/** Loads the addon once; never throws. */
export function nativeStatus(): { loaded: boolean; error: string | null; path: string | null; origin: ArtifactOrigin | null } {
  const a = load();
  return { loaded: a !== null, error: a ? null : loadError, path: a ? location?.path ?? null : null, origin: a ? location?.origin ?? null : null };
}

/**
 * The loaded addon object, for the other native wrappers (src/native/tcp-relay.ts,
 * src/native/udp-relay.ts) to type with their own interfaces; null when not loaded.
 */
export function addonHandle(): Record<string, unknown> | null {
  return load() as Record<string, unknown> | null;
}

export { errnoName } from './failure.js';

const EPERM = osConstants.errno.EPERM;

function need(): Addon {
  const a = load();
  if (!a) throw nativeUnavailable(`sgemu native addon not loaded: ${loadError}; kernel socket filters are disabled (see \`sgemu doctor\`)`);
  return a;
}


function checkProgram(program: Buffer | null, what: string): void {
  if (program === null) return;
  if (!Buffer.isBuffer(program) || program.length === 0 || program.length % 8 !== 0 || program.length > 4096 * 8) {
    throw new NativeError('setsockopt', 22, 'EINVAL', `${what}: program of ${Buffer.isBuffer(program) ? program.length : typeof program} bytes; must be 1..4096 struct sock_filter (8 bytes each) from encodeProgram`);
  }
}

function where(o: { family: 4 | 6; address: string; port: number }): string {
  return o.family === 6 ? `[${o.address}]:${o.port}` : `${o.address}:${o.port}`;
}

/**
 * Where listening sockets come from when this process may not attach a TCP filter itself: the
 * capability helper (src/native/netd.ts), or null (this process does it). Set once at start-up by
 * src/dataplane/privilege.ts; a process holds one privilege route.
 */
export interface SocketHelper {
  open(o: { protocol: 6 | 17; family: 4 | 6; address: string; port: number; backlog?: number; program: Buffer | null }): number;
  attach(fd: number, program: Buffer): void;
  forget(protocol: 6 | 17, family: 4 | 6, address: string, port: number): void;
}
let helper: SocketHelper | null = null;
export function useSocketHelper(h: SocketHelper | null): void { helper = h; }

/**
 * socket(SOCK_STREAM|SOCK_NONBLOCK|SOCK_CLOEXEC), SO_REUSEADDR, IPV6_V6ONLY on v6,
 * SO_ATTACH_FILTER (when program is non-null), bind, listen → fd.
 * Serve it with `net.createServer().listen({ fd })`. Throws NativeError (code e.g. 'EADDRINUSE').
 */
export function createTcpListener(o: { family: 4 | 6; address: string; port: number; backlog?: number; program: Buffer | null }): number {
  const what = `TCP listener ${where(o)}`;
  checkProgram(o.program, what);
  if (helper) return helper.open({ protocol: 6, ...o });
  return check(need().tcpListener(o.family, o.address, o.port, o.backlog ?? 511, o.program), what);
}

/** A bound UDP socket (SOCK_DGRAM, same options and order as above, no listen) → fd, for `dgram` bind({ fd }). */
export function createUdpSocket(o: { family: 4 | 6; address: string; port: number; program: Buffer | null }): number {
  const what = `UDP socket ${where(o)}`;
  checkProgram(o.program, what);
  if (helper) return helper.open({ protocol: 17, ...o });
  return check(need().udpSocket(o.family, o.address, o.port, 0, o.program), what);
}

/** SO_ATTACH_FILTER: replaces the socket's program atomically. Tried here first (UDP sockets
 * and privileged processes); a TCP socket refused with EPERM goes through the helper. */
export function attachFilter(fd: number, program: Buffer): void {
  checkProgram(program, `attach filter to fd ${fd}`);
  const r = need().attachFilter(fd, program);
  if (typeof r !== 'number' && r.errno === EPERM && helper) { helper.attach(fd, program); return; }
  check(r, `attach filter to fd ${fd}`);
}

/** A listener's socket is closed: the helper (if any) forgets it. */
export function releaseSocket(protocol: 6 | 17, family: 4 | 6, address: string, port: number): void {
  helper?.forget(protocol, family, address, port);
}

/** SO_DETACH_FILTER: ENOENT when none is attached. */
export function detachFilter(fd: number): void {
  check(need().detachFilter(fd), `detach filter from fd ${fd}`);
}

/** Instructions currently attached (SO_GET_FILTER), 0 when none. For tests and `doctor`. */
export function filterLength(fd: number): number {
  return check(need().filterLength(fd), `read filter of fd ${fd}`);
}

export function closeFd(fd: number): void {
  check(need().closeFd(fd), `close fd ${fd}`);
}

/**
 * Local "ADDRHEX:port" pairs (the /proc/net/tcp format) that have a listening TCP socket or a bound
 * UDP socket, from sock_diag (src/native/addon/sock_diag.c). null when the addon (or this call) is
 * unavailable; the caller then reads /proc.
 */
export function listeningSockets(family: 4 | 6, protocol: 6 | 17): Set<string> | null {
  const a = load();
  if (!a || typeof a.listening !== 'function') return null;
  const r = a.listening(family, protocol);
  return Array.isArray(r) ? new Set(r) : null;
}
