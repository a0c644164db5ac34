// `sgemu doctor`: what this machine allows, and what to do about each missing piece.
// The mode (SPEC.md §8: root, namespace, helper, or unavailable — `run` exits 2 there unless
// --fallback), per behaviour what a client sees and the one command that makes it exact.
// Exit 0 when every behaviour is exact, 1 otherwise.

import { nativeStatus } from '../native/sock-filter.js';
import { tcpRelayStatus } from '../native/tcp-relay.js';
import { udpRelayAvailable } from '../native/udp-relay.js';
import { probeCapNetRaw, probeLoopback, probePcap, probeRaw, probeSocketFilter } from '../native/probe.js';
import { Netd, helperPath, type NetdProbe } from '../native/netd.js';
import { acquirePrivilege, outcomes, releasePrivilege, setupCommand, type PrivilegeMode } from '../dataplane/privilege.js';
import { COMMON_OPTIONS, EXIT_NEGATIVE, EXIT_OK, parseCommandArgs, printJson, type Command } from './command.js';

interface Check { name: string; ok: boolean; detail: string; fix: string }

type RelayMode = 'native' | 'node';

export interface DoctorReport {
  /** What `sgemu run` gets here: root / namespace / helper, or unavailable (it exits 2 unless --fallback). */
  mode: PrivilegeMode;
  exact: boolean;
  /** Per behaviour: what a client sees in this mode, and the command that makes it exact. */
  behaviours: { behaviour: string; exact: boolean; outcome: string; upgrade: string | null }[];
  helper: { path: string; capabilities: boolean; probe: NetdProbe | null; error: string | null };
  checks: Check[];
  /** Which addon was loaded: 'prebuilt' (prebuilds/linux-x64, shipped in the package) or 'source build'. */
  addon: { origin: string | null; path: string | null };
  refusalMode: 'raw' | 'reset';
  timeoutMode: 'kernel' | 'userland-reset';
  relay: { tcp: RelayMode; udp: RelayMode };
}

/** The helper's own view, whatever route this process would take. */
function probeHelper(): DoctorReport['helper'] {
  const path = helperPath();
  try {
    const d = Netd.start(path);
    try {
      const probe = d.probe();
      return { path, capabilities: probe.tcpFilter && probe.raw && probe.packet, probe, error: null };
    } finally { d.close(); }
  } catch (e) {
    return { path, capabilities: false, probe: null, error: e instanceof Error ? e.message : String(e) };
  }
}

export function runChecks(): DoctorReport {
  const checks: Check[] = [];
  const native = nativeStatus();
  const setup = setupCommand();
  // Which copy: a source build (build/Release) wins over the prebuilt one the package ships.
  checks.push({ name: 'native addon', ok: native.loaded,
    detail: native.loaded ? `${native.origin ?? 'source build'} loaded: ${native.path ?? 'sgemu_native.node'}` : (native.error ?? 'not built'),
    fix: `no prebuilt addon for ${process.platform}-${process.arch} (the package ships linux-x64 glibc): install a C compiler and Node headers (apt-get install -y g++ make python3), then \`npm rebuild sgemu\`` });
  const filter = native.loaded ? probeSocketFilter() : { ok: false, reason: 'needs the native addon' };
  checks.push({ name: 'socket filter on TCP in this process', ok: filter.ok, detail: filter.reason,
    fix: `needs CAP_NET_ADMIN on this kernel; not needed when the capability helper is set up: ${setup}` });
  const cap = probeCapNetRaw();
  checks.push({ name: 'CAP_NET_RAW in this process', ok: cap, detail: cap ? 'effective' : 'not in the effective set',
    fix: `not needed when the capability helper is set up: ${setup} (never put capabilities on node)` });
  const pcap = probePcap();
  checks.push({ name: 'libpcap (cap) on lo', ok: pcap.ok, detail: pcap.reason,
    fix: 'only used when this process holds CAP_NET_RAW (root); apt-get install -y libpcap-dev, then `npm rebuild cap`' });
  const raw = probeRaw();
  checks.push({ name: 'raw socket (raw-socket)', ok: raw.ok, detail: raw.reason,
    fix: 'only used when this process holds CAP_NET_RAW (root); `npm rebuild raw-socket`' });
  const helper = native.loaded ? probeHelper() : { path: helperPath(), capabilities: false, probe: null, error: 'needs the native addon' };
  checks.push({ name: 'capability helper (sgemu-netd)', ok: helper.capabilities,
    detail: helper.capabilities ? `${helper.path}: cap_net_admin and cap_net_raw work`
      : `${helper.path}: ${helper.error ?? `no capabilities (TCP filter ${helper.probe?.tcpFilter ? 'ok' : 'EPERM'}, raw ${helper.probe?.raw ? 'ok' : 'EPERM'}, packet ${helper.probe?.packet ? 'ok' : 'EPERM'})`}`,
    fix: setup });
  const lo = probeLoopback();
  checks.push({ name: 'loopback IPv4 (127.0.0.0/8)', ok: lo.v4.length > 0, detail: lo.v4.length ? `binds: ${lo.v4.join(', ')}` : 'no 127.x address binds',
    fix: 'Linux binds all of 127.0.0.0/8 without set-up; check `ip addr show lo`' });
  checks.push({ name: 'loopback IPv6 (::1)', ok: lo.v6, detail: lo.v6 ? '::1 binds' : '::1 does not bind (IPv6 disabled?)',
    fix: 'sysctl -w net.ipv6.conf.lo.disable_ipv6=0' });

  const priv = acquirePrivilege({ fallback: false });
  releasePrivilege(priv);
  const exact = priv.mode !== 'unavailable';
  const degraded = exact ? priv : { tcpFilter: filter.ok ? 'process' as const : null, refusal: cap && pcap.ok && raw.ok ? 'process' as const : null };
  const behaviours = outcomes(degraded).map((o) => ({ behaviour: o.behaviour, exact: o.exact, outcome: o.seen, upgrade: o.exact ? null : setup }));
  const refusalMode = degraded.refusal !== null ? 'raw' : 'reset';
  const timeoutMode = degraded.tcpFilter !== null ? 'kernel' : 'userland-reset';
  // Speed, not semantics: without the native relays flows go through Node streams / node:dgram.
  const relay = { tcp: tcpRelayStatus().available ? 'native' as const : 'node' as const, udp: udpRelayAvailable() ? 'native' as const : 'node' as const };
  return { mode: priv.mode, exact, behaviours, helper, checks, addon: { origin: native.origin, path: native.path }, refusalMode, timeoutMode, relay };
}

const MODE_TEXT: Record<PrivilegeMode, string> = {
  root: 'root: this process holds CAP_NET_ADMIN and CAP_NET_RAW; every behaviour is exact',
  namespace: 'namespace: inside a user + network namespace sgemu owns; every behaviour is exact',
  helper: 'helper: the daemon runs as you, the capability helper sgemu-netd does the privileged calls; every behaviour is exact',
  fallback: 'fallback: degraded (--fallback)',
  unavailable: "unavailable: exact behaviour needs privilege this user lacks. 'sgemu run' exits 2 and says why;\n" +
    "      'sgemu run --fallback' runs degraded as listed below",
};

const doctor: Command = {
  name: 'doctor',
  summary: 'what this machine allows',
  usage: `Usage: sgemu doctor [--json]

Says which privilege mode sgemu runs in here and what each behaviour looks like to a client:
  root       this process holds CAP_NET_ADMIN and CAP_NET_RAW (root)
  namespace  inside a user + network namespace sgemu owns
  helper     the daemon runs as you; the capability helper sgemu-netd (given its capabilities
             once by 'sudo sgemu setup') attaches TCP filters and sends refusals
  unavailable  none of these: 'sgemu run' exits 2 with the fix; 'sgemu run --fallback' runs
             degraded (denied TCP accepted then reset, refusals as resets, UDP refusals silent)
Then the checks behind it (native addon, socket filters, CAP_NET_RAW, libpcap, raw sockets,
the helper, loopback addresses, IPv6) with what to do about each, and which relay carries
established flows (native threads, or Node when the addon is missing; SGEMU_RELAY=node).
Exit 0 when every behaviour is exact, 1 otherwise.`,
  async run(argv) {
    const { values } = parseCommandArgs(argv, COMMON_OPTIONS);
    const r = runChecks();
    if (values.json) {
      printJson({ ok: r.exact, mode: r.mode, exact: r.exact, behaviours: r.behaviours, helper: r.helper, addon: r.addon, timeoutMode: r.timeoutMode,
        refusalMode: r.refusalMode, relay: r.relay, node: process.version, platform: process.platform, checks: r.checks });
      return r.exact ? EXIT_OK : EXIT_NEGATIVE;
    }
    process.stdout.write(`mode: ${MODE_TEXT[r.mode]}\n\n`);
    for (const b of r.behaviours) {
      process.stdout.write(`${b.exact ? 'exact   ' : 'DEGRADED'}  ${b.behaviour.padEnd(26)} ${b.outcome}\n`);
    }
    const up = r.behaviours.find((b) => b.upgrade !== null);
    if (up) process.stdout.write(`\nto make every behaviour exact, once: ${up.upgrade}\n(it gives only the helper ${r.helper.path} cap_net_admin,cap_net_raw; undo with 'setup --undo')\n`);
    process.stdout.write('\nchecks:\n');
    for (const c of r.checks) {
      process.stdout.write(`${c.ok ? 'ok  ' : 'MISS'}  ${c.name}: ${c.detail}\n`);
      if (!c.ok) process.stdout.write(`      fix: ${c.fix}\n`);
    }
    const relayText = (m: RelayMode, native: string) => m === 'native' ? native : 'Node (slower: no native addon, or SGEMU_RELAY=node)';
    process.stdout.write(`\ntcp relay:               ${relayText(r.relay.tcp, 'native thread (accept, splice)')}\n`);
    process.stdout.write(`udp relay:               ${relayText(r.relay.udp, 'native thread per listener (recvmmsg/sendmmsg)')}\n`);
    return r.exact ? EXIT_OK : EXIT_NEGATIVE;
  },
};
export default doctor;
