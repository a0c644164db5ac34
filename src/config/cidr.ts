// Address and CIDR parsing for the config loader: strict text forms, canonical output.
// Owns: IPv4 (dotted quad only, no `127.1` or hex shorthands) and IPv6 (RFC 5952 output) parsing,
// host-bit normalisation (AWS stores 100.68.0.18/18 as 100.68.0.0/18) and overlap tests.
// Must not: throw; every function returns null for bad input so the caller can locate the error.

import ipaddr from 'ipaddr.js';

export interface ParsedCidr {
  family: 4 | 6;
  bytes: number[];        // network address, host bits cleared (4 or 16 bytes)
  prefix: number;         // 0..32 or 0..128
  text: string;           // canonical `addr/prefix`
}

/** One address (no prefix) → family and canonical text, or null. */
export function parseIp(text: string): { family: 4 | 6; text: string; bytes: number[] } | null {
  const s = text.trim();
  if (s.includes(':')) {
    if (!ipaddr.IPv6.isValid(s) || s.includes('%')) return null;
    const a = ipaddr.IPv6.parse(s);
    return { family: 6, text: a.toRFC5952String(), bytes: a.toByteArray() };
  }
  if (!ipaddr.IPv4.isValidFourPartDecimal(s)) return null;
  const a = ipaddr.IPv4.parse(s);
  return { family: 4, text: a.toString(), bytes: a.toByteArray() };
}

function bytesToText(family: 4 | 6, bytes: number[]): string {
  const a = ipaddr.fromByteArray(bytes);
  return family === 6 ? (a as ipaddr.IPv6).toRFC5952String() : a.toString();
}

/**
 * `addr/prefix` → canonical CIDR with host bits cleared; a bare address when `allowBare`
 * (→ /32 or /128). Null when malformed (bad address, missing or out-of-range prefix).
 */
export function parseCidr(text: string, allowBare = false): ParsedCidr | null {
  const s = text.trim();
  const slash = s.indexOf('/');
  const addrText = slash < 0 ? s : s.slice(0, slash);
  const prefixText = slash < 0 ? null : s.slice(slash + 1);
  if (prefixText === null && !allowBare) return null;
  const ip = parseIp(addrText);
  if (!ip) return null;
  const max = ip.family === 4 ? 32 : 128;
  let prefix = max;
  if (prefixText !== null) {
    if (!/^\d{1,3}$/.test(prefixText)) return null;
    prefix = Number(prefixText);
    if (prefix > max) return null;
  }
  const bytes = ip.bytes.slice();
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, prefix - i * 8));
    bytes[i] = (bytes[i] ?? 0) & ((0xff00 >> keep) & 0xff);
  }
  return { family: ip.family, bytes, prefix, text: `${bytesToText(ip.family, bytes)}/${prefix}` };
}

/** Whether two canonical CIDRs share any address (same family only). */
export function cidrsOverlap(a: ParsedCidr, b: ParsedCidr): boolean {
  if (a.family !== b.family) return false;
  const bits = Math.min(a.prefix, b.prefix);
  for (let i = 0; i * 8 < bits; i++) {
    const keep = Math.min(8, bits - i * 8);
    const mask = (0xff00 >> keep) & 0xff;
    if (((a.bytes[i] ?? 0) & mask) !== ((b.bytes[i] ?? 0) & mask)) return false;
  }
  return true;
}

/** Whether a canonical CIDR lies inside another. */
export function cidrContains(outer: ParsedCidr, inner: ParsedCidr): boolean {
  return outer.family === inner.family && outer.prefix <= inner.prefix && cidrsOverlap(outer, inner);
}
