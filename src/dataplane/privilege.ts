// Where this process's privilege comes from, decided once at start-up by trying (SPEC.md §1, §8).
//
// Exact behaviour needs two privileged things: a socket filter on TCP listeners (CAP_NET_ADMIN on
// kernels with Linux commit 5d39580f68e6: denied = timeout) and raw + packet sockets (CAP_NET_RAW:
// refused = RST / ICMP). The route, in order of preference:
//   root       this process holds both (root, or capabilities it was given): it does the calls
//   namespace  the same, inside a user + network namespace it owns (`sgemu exec`)
//   helper     the capability helper sgemu-netd (`sudo sgemu setup`) does them for us
//   fallback   --fallback: degraded, and every affected outcome is said (accept-then-reset)
//   unavailable  none of the above and no --fallback: the daemon says so and exits 2
// Owns: the probe, the helper process while the daemon runs, and the words that explain a mode.
// Must not: open listeners or decide flows. Invariant: a mode other than 'fallback' and
// 'unavailable' means every listener gets an exact kernel filter and every refusal is exact.

import { readFileSync } from 'node:fs';
import { release } from 'node:os';
import { resolve } from 'node:path';
import { Netd, helperPath, type NetdProbe } from '../native/netd.js';
import { packageRoot, useSocketHelper, nativeStatus } from '../native/sock-filter.js';
import { probeCapNetRaw, probeSocketFilter } from '../native/probe.js';
import { pcapLoadable } from '../native/pcap.js';
import { rawLoadable } from '../native/raw.js';
import { SgemuError } from '../model/errors.js';

export type PrivilegeMode = 'root' | 'namespace' | 'helper' | 'fallback' | 'unavailable';
export type Route = 'process' | 'helper' | null;

export interface Privilege {
  mode: PrivilegeMode;
  /** Who attaches TCP listeners' filters: null means none can be attached (accept-then-reset). */
  tcpFilter: Route;
  /** Who sends RST / ICMP and watches SYNs: null means refusals are resets and UDP is silent. */
  refusal: Route;
  netd: Netd | null;
  /** What is missing for exact behaviour, one line each (empty when exact). */
  missing: string[];
  /** The helper's state, for doctor: its path and what it can do (null: not tried or not runnable). */
  helper: { path: string; probe: NetdProbe | null; error: string | null };
}

/** Exit 2: exact behaviour is not available and --fallback was not given. */
export class PrivilegeError extends SgemuError {
  constructor(message: string) { super('PrivilegeRequired', message); }
}

/** The command that gives the helper its capabilities, as the user can paste it. */
export function setupCommand(): string {
  const cli = resolve(packageRoot(), 'dist', 'cli', 'main.js');
  const q = (s: string) => /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
  return `sudo ${q(process.execPath)} ${q(cli)} setup`;
}

/** Whether this process lives in a user namespace other than the initial one. */
function inUserNamespace(): boolean {
  try {
    return !/^\s*0\s+0\s+4294967295\s*$/.test(readFileSync('/proc/self/uid_map', 'utf8'));
  } catch { return false; }
}

/** Helpers started by acquirePrivilege and not released yet, oldest first: sockets go through the
 * newest (the socket route is per process); when it is released the next newest takes over. */
const liveHelpers: Netd[] = [];

/**
 * Gives back what acquirePrivilege / acquireNamespace took: closes the daemon's helper and routes
 * new sockets through another live one, or through this process again. A stopped daemon must
 * not leave the next one in the same process (the Node API, tests) talking to a closed helper.
 */
export function releasePrivilege(p: Privilege | null): void {
  const netd = p?.netd;
  if (!netd) return;
  netd.close();
  const i = liveHelpers.indexOf(netd);
  if (i >= 0) liveHelpers.splice(i, 1);
  useSocketHelper(liveHelpers[liveHelpers.length - 1] ?? null);
}

function tryHelper(path: string): { netd: Netd | null; probe: NetdProbe | null; error: string | null } {
  let netd: Netd | null = null;
  try {
    netd = Netd.start(path);
    const probe = netd.probe();
    if (probe.tcpFilter && probe.raw && probe.packet) return { netd, probe, error: null };
    netd.close();
    return { netd: null, probe, error: 'the helper has no capabilities (not set up, or set up before it was rebuilt)' };
  } catch (e) {
    netd?.close();
    return { netd: null, probe: null, error: e instanceof Error ? e.message : String(e) };
  }
}

/**
 * Finds the route. `SGEMU_PRIVILEGE=helper` skips this process's own privilege (tests, benches);
 * `=process` never starts the helper. Never throws: 'unavailable' says what is missing.
 */
export function acquirePrivilege(opts: { fallback: boolean }): Privilege {
  const prefer = process.env.SGEMU_PRIVILEGE;
  const path = helperPath();
  const helper: Privilege['helper'] = { path, probe: null, error: null };
  const addon = nativeStatus();
  const ownFilter = prefer !== 'helper' && addon.loaded && probeSocketFilter().ok;
  // Cheap checks only (the refuser opens the real handles once, at start): CAP_NET_RAW in the
  // effective set and both modules loadable. A kernel that still refuses shows in the refuser's
  // mode and reason ('reset'), which the start-up log prints.
  const ownRefusal = prefer !== 'helper' && probeCapNetRaw() && pcapLoadable() && rawLoadable();
  if (ownFilter && ownRefusal) {
    useSocketHelper(null);      // this process opens its own sockets (a helper an earlier daemon used may be gone)
    return { mode: inUserNamespace() ? 'namespace' : 'root',
      tcpFilter: 'process', refusal: 'process', netd: null, missing: [], helper };
  }
  if (addon.loaded && prefer !== 'process') {
    const h = tryHelper(path);
    helper.probe = h.probe;
    helper.error = h.error;
    if (h.netd) {
      liveHelpers.push(h.netd);
      useSocketHelper(h.netd);
      return { mode: process.getuid?.() === 0 ? 'root' : 'helper', tcpFilter: 'helper', refusal: 'helper', netd: h.netd, missing: [], helper };
    }
  } else if (!addon.loaded) helper.error = `needs the native addon: ${addon.error}`;
  const missing: string[] = [];
  if (!ownFilter) missing.push(addon.loaded
    ? `kernel socket filters on TCP listeners need CAP_NET_ADMIN on this kernel (${release()}; since Linux commit 5d39580f68e6): a denied connect would be accepted then reset instead of timing out`
    : `the native addon is not built (${addon.error}): no kernel socket filters`);
  if (!ownRefusal) missing.push('exact refusals need CAP_NET_RAW, libpcap and raw sockets: an allowed connect to a stopped backend would be accepted then reset instead of refused, and UDP to it would get no ICMP (silence)');
  return { mode: opts.fallback ? 'fallback' : 'unavailable', tcpFilter: ownFilter ? 'process' : null, refusal: ownRefusal ? 'process' : null,
    netd: null, missing, helper };
}

/** Why this kernel will not give us a user namespace, naming the setting (and the way around it). */
function namespaceBlocked(errno: number): string {
  const read = (p: string): string | null => { try { return readFileSync(p, 'utf8').trim(); } catch { return null; } };
  const why = read('/proc/sys/user/max_user_namespaces') === '0' ? 'user namespaces are disabled (sysctl user.max_user_namespaces = 0)'
    : read('/proc/sys/kernel/unprivileged_userns_clone') === '0' ? 'unprivileged user namespaces are disabled (sysctl kernel.unprivileged_userns_clone = 0)'
    : read('/proc/sys/kernel/apparmor_restrict_unprivileged_userns') === '1' ? 'AppArmor restricts unprivileged user namespaces (sysctl kernel.apparmor_restrict_unprivileged_userns = 1)'
    : `unshare(CLONE_NEWUSER|CLONE_NEWNET|CLONE_NEWPID) failed with errno ${errno}`;
  return `no private network namespace: ${why}; either allow it, or use the capability helper instead: ${setupCommand()}, then \`sgemu run\``;
}

/**
 * `sgemu exec`: the helper in --namespace mode makes a user + network + PID namespace in which this
 * user holds every capability, and does there what it does on the host for a set-up helper.
 */
export function acquireNamespace(): Privilege {
  const path = helperPath();
  const helper: Privilege['helper'] = { path, probe: null, error: null };
  let netd: Netd | null = null;
  try {
    netd = Netd.start(path, { namespace: true });
    const probe = helper.probe = netd.probe();
    if (probe.namespace && probe.tcpFilter && probe.raw && probe.packet) {
      liveHelpers.push(netd);
      useSocketHelper(netd);
      return { mode: 'namespace', tcpFilter: 'helper', refusal: 'helper', netd, missing: [], helper };
    }
    helper.error = namespaceBlocked(probe.errno);
  } catch (e) {
    helper.error = e instanceof Error ? e.message : String(e);
  }
  netd?.close();
  return { mode: 'unavailable', tcpFilter: null, refusal: null, netd: null, missing: [helper.error ?? 'the namespace helper did not start'], helper };
}

/** How each behaviour looks to a client in this mode (start-up log, demo tour, doctor). */
export function outcomes(p: Pick<Privilege, 'tcpFilter' | 'refusal'>): { behaviour: string; exact: boolean; seen: string }[] {
  return [
    { behaviour: 'denied TCP', exact: p.tcpFilter !== null,
      seen: p.tcpFilter !== null ? 'connect() times out (SYN dropped in the kernel), as in AWS' : 'connect() succeeds, then ECONNRESET (accepted then reset)' },
    { behaviour: 'denied UDP', exact: true, seen: 'no answer (datagram dropped in the kernel), as in AWS' },
    { behaviour: 'allowed TCP, backend down', exact: p.refusal !== null,
      seen: p.refusal !== null ? 'ECONNREFUSED (RST|ACK), as in AWS' : 'connect() succeeds, then ECONNRESET (reset instead of refused)' },
    { behaviour: 'allowed UDP, backend down', exact: p.refusal !== null,
      seen: p.refusal !== null ? 'ECONNREFUSED (ICMP port unreachable), as in AWS' : 'no answer (silence instead of ICMP port unreachable)' },
  ];
}

/** The block printed when exact behaviour is unavailable: what fails, why, the one fix. */
export function unavailableMessage(p: Privilege): string {
  return [
    'exact AWS behaviour is not available to this process:',
    ...p.missing.map((m) => `  - ${m}`),
    `  capability helper ${p.helper.path}: ${p.helper.error ?? 'not usable'}`,
    'fix (once, gives only the helper cap_net_admin,cap_net_raw; node gets nothing):',
    `  ${setupCommand()}`,
    'or, without sudo, for a test command: sgemu exec -c FILE -- CMD runs CMD in a private network namespace where every behaviour is exact (needs unprivileged user namespaces)',
    'or run degraded and say so: add --fallback (see `sgemu doctor`)',
  ].join('\n');
}
