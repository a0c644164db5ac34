// `sgemu doctor`: what this machine allows, and what to do about each missing piece.
// Exit 0 when every technique is available, 1 when sgemu runs in a fallback mode.

import { nativeStatus } from '../native/sock-filter.js';
import { tcpRelayStatus } from '../native/tcp-relay.js';
import { udpRelayAvailable } from '../native/udp-relay.js';
import { probeCapNetRaw, probeLoopback, probePcap, probeRaw, probeSocketFilter } from '../native/probe.js';
import { COMMON_OPTIONS, EXIT_NEGATIVE, EXIT_OK, parseCommandArgs, printJson, type Command } from './command.js';

interface Check { name: string; ok: boolean; detail: string; fix: string }

type RelayMode = 'native' | 'node';

export function runChecks(): { checks: Check[]; addon: { origin: string | null; path: string | null }; refusalMode: 'raw' | 'reset'; timeoutMode: 'kernel' | 'userland-reset'; relay: { tcp: RelayMode; udp: RelayMode } } {
  const checks: Check[] = [];
  const native = nativeStatus();
  // Which copy: a source build (build/Release) wins over the prebuilt one the package ships.
  checks.push({ name: 'native addon', ok: native.loaded,
    detail: native.loaded ? `${native.origin ?? 'source build'} loaded: ${native.path ?? 'sgemu_native.node'}` : (native.error ?? 'not built'),
    fix: `no prebuilt addon for ${process.platform}-${process.arch} (the package ships linux-x64 glibc): install a C compiler and Node headers (apt-get install -y g++ make python3), then \`npm rebuild sgemu\`` });
  const filter = native.loaded ? probeSocketFilter() : { ok: false, reason: 'needs the native addon' };
  checks.push({ name: 'socket filter (SO_ATTACH_FILTER)', ok: filter.ok, detail: filter.reason,
    fix: 'without it denied connections are accepted then reset instead of timing out' });
  const cap = probeCapNetRaw();
  checks.push({ name: 'CAP_NET_RAW', ok: cap, detail: cap ? 'effective' : 'not in the effective set',
    fix: 'run as root, or `sudo setcap cap_net_raw+ep "$(readlink -f "$(which node)")"`' });
  const pcap = probePcap();
  checks.push({ name: 'libpcap (cap) on lo', ok: pcap.ok, detail: pcap.reason,
    fix: 'apt-get install -y libpcap-dev, then `npm rebuild cap`; needs CAP_NET_RAW to open lo' });
  const raw = probeRaw();
  checks.push({ name: 'raw socket (raw-socket)', ok: raw.ok, detail: raw.reason,
    fix: 'needs CAP_NET_RAW and the raw-socket package built (`npm rebuild raw-socket`)' });
  const lo = probeLoopback();
  checks.push({ name: 'loopback IPv4 (127.0.0.0/8)', ok: lo.v4.length > 0, detail: lo.v4.length ? `binds: ${lo.v4.join(', ')}` : 'no 127.x address binds',
    fix: 'Linux binds all of 127.0.0.0/8 without set-up; check `ip addr show lo`' });
  checks.push({ name: 'loopback IPv6 (::1)', ok: lo.v6, detail: lo.v6 ? '::1 binds' : '::1 does not bind (IPv6 disabled?)',
    fix: 'sysctl -w net.ipv6.conf.lo.disable_ipv6=0' });
  const refusalMode = cap && pcap.ok && raw.ok ? 'raw' : 'reset';
  const timeoutMode = filter.ok ? 'kernel' : 'userland-reset';
  // Speed, not semantics: without the native relays flows go through Node streams / node:dgram.
  const relay = { tcp: tcpRelayStatus().available ? 'native' as const : 'node' as const, udp: udpRelayAvailable() ? 'native' as const : 'node' as const };
  return { checks, addon: { origin: native.origin, path: native.path }, refusalMode, timeoutMode, relay };
}

const doctor: Command = {
  name: 'doctor',
  summary: 'what this machine allows',
  usage: `Usage: sgemu doctor [--json]

Checks what sgemu can do here: the native addon and kernel socket filters (denied = timeout),
CAP_NET_RAW, libpcap and raw sockets (allowed + backend down = ECONNREFUSED), loopback
addresses, IPv6. Prints what to do about each missing piece, and which relay carries established
flows (native threads, or Node when the addon is missing; SGEMU_RELAY=node forces Node).
Exit 0 when everything is available, 1 when sgemu would run in a fallback mode.`,
  async run(argv) {
    const { values } = parseCommandArgs(argv, COMMON_OPTIONS);
    const r = runChecks();
    const allOk = r.checks.every((c) => c.ok);
    if (values.json) {
      printJson({ ok: allOk, addon: r.addon, timeoutMode: r.timeoutMode, refusalMode: r.refusalMode, relay: r.relay, node: process.version, platform: process.platform, checks: r.checks });
      return allOk ? EXIT_OK : EXIT_NEGATIVE;
    }
    for (const c of r.checks) {
      process.stdout.write(`${c.ok ? 'ok  ' : 'MISS'}  ${c.name}: ${c.detail}\n`);
      if (!c.ok) process.stdout.write(`      fix: ${c.fix}\n`);
    }
    process.stdout.write(`\ndenied flows:            ${r.timeoutMode === 'kernel' ? 'dropped in the kernel (clients time out, as in AWS)' : 'FALLBACK: accepted then reset (clients see ECONNRESET, not a timeout)'}\n`);
    process.stdout.write(`allowed, backend down:   ${r.refusalMode === 'raw' ? 'RST|ACK / ICMP port unreachable (clients see ECONNREFUSED)' : 'FALLBACK: accept-then-reset for TCP, silence for UDP'}\n`);
    const relayText = (m: RelayMode, native: string) => m === 'native' ? native : 'Node (slower: no native addon, or SGEMU_RELAY=node)';
    process.stdout.write(`tcp relay:               ${relayText(r.relay.tcp, 'native thread (accept, splice)')}\n`);
    process.stdout.write(`udp relay:               ${relayText(r.relay.udp, 'native thread per listener (recvmmsg/sendmmsg)')}\n`);
    return allOk ? EXIT_OK : EXIT_NEGATIVE;
  },
};
export default doctor;
