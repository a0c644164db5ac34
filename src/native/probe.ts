// What this machine allows, found by trying (STYLE: `probeX` touches the OS). Each probe is
// bounded, cleans up after itself and never throws: missing privilege is a mode, not a crash.
// `sgemu doctor` prints these; the daemon logs the chosen fallback once (native-notes/fallbacks.md).

import { readFileSync } from 'node:fs';
import { closeFd, createTcpListener, createUdpSocket, nativeStatus } from './sock-filter.js';
import { compileAcceptAll, encodeProgram } from '../policy/bpf.js';
import { PacketWatch } from './pcap.js';
import { RawSender } from './raw.js';

const CAP_NET_RAW = 13;

function msg(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** CAP_NET_RAW in the effective set (CapEff in /proc/self/status, bit 13). */
export function probeCapNetRaw(): boolean {
  try {
    const m = /^CapEff:\s*([0-9a-fA-F]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'));
    return m !== null && ((BigInt('0x' + m[1]) >> BigInt(CAP_NET_RAW)) & 1n) === 1n;
  } catch {
    return false;
  }
}

/** Creates a filtered listener on 127.0.0.1:0 through the addon, then closes it. */
export function probeSocketFilter(): { ok: boolean; reason: string } {
  const st = nativeStatus();
  if (!st.loaded) return { ok: false, reason: `native addon not loaded: ${st.error}` };
  try {
    const fd = createTcpListener({ family: 4, address: '127.0.0.1', port: 0, program: encodeProgram(compileAcceptAll()) });
    closeFd(fd);
    return { ok: true, reason: 'SO_ATTACH_FILTER on a TCP listener works' };
  } catch (e) {
    return { ok: false, reason: msg(e) };
  }
}

/** Which sample 127.x addresses bind (UDP, port 0) and whether ::1 binds. Synchronous via the addon
 * when loaded; otherwise reports every sample as bindable on Linux (all of 127/8 is local, §6). */
export function probeLoopback(): { v4: string[]; v6: boolean } {
  const samples = ['127.0.0.1', '127.0.0.2', '127.0.1.1', '127.1.2.3', '127.255.255.254'];
  if (!nativeStatus().loaded) {
    return { v4: process.platform === 'linux' ? samples : ['127.0.0.1'], v6: process.platform === 'linux' };
  }
  const binds = (family: 4 | 6, address: string): boolean => {
    try { closeFd(createUdpSocket({ family, address, port: 0, program: null })); return true; } catch { return false; }
  };
  return { v4: samples.filter((a) => binds(4, a)), v6: binds(6, '::1') };
}

/** `cap` loads and `lo` opens for capture. */
export function probePcap(): { ok: boolean; reason: string } {
  try {
    const w = new PacketWatch(() => {});
    w.close();
    return { ok: true, reason: "libpcap opens 'lo'" };
  } catch (e) {
    return { ok: false, reason: msg(e) };
  }
}

/** `raw-socket` loads and an IPv4 raw TCP socket opens. */
export function probeRaw(): { ok: boolean; reason: string } {
  try {
    const r = new RawSender();
    r.close();
    return { ok: true, reason: 'raw IPv4 socket opens' };
  } catch (e) {
    return { ok: false, reason: msg(e) };
  }
}

