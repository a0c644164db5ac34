// Address helpers shared by the policy compiler, the data plane and the filter generator: text ↔
// numbers for IPv4 (uint32) and IPv6 (four uint32 words, most significant first, or one bigint),
// and CIDR → inclusive range.
//
// Owns: parsing and formatting only. Pure; no I/O, no ipaddr.js (our own strict parsers, so the
// hot-ish callers — one parse per accepted connection — pay no object allocation beyond the result).
// Must not: accept ambiguous forms. IPv4 is four decimal octets without leading zeros ("010" would
// be octal to inet_aton); IPv6 follows RFC 4291 §2.2 (hex groups, one "::", optional trailing
// dotted quad, as in the v4-mapped ::ffff:192.0.2.1), no zone index.
// Invariants: every number returned is unsigned (`>>> 0`); formatIpv6 prints the RFC 5952 form
// exactly as ipaddr.js `toRFC5952String` does (v4-mapped in hex: ::ffff:c000:201), so strings
// canonicalised by src/config compare equal to ours.

import { SgemuError } from '../model/errors.js';

const BAD = 'InvalidParameterValue';

function bad4(text: string, why: string): never {
  throw new SgemuError(BAD, `invalid IPv4 address ${JSON.stringify(text)}: ${why}; expected four decimal octets 0-255 without leading zeros, e.g. 192.0.2.1`);
}

function bad6(text: string, why: string): never {
  throw new SgemuError(BAD, `invalid IPv6 address ${JSON.stringify(text)}: ${why}; expected e.g. 2001:db8::1 or ::ffff:192.0.2.1`);
}

/** Dotted quad → uint32. Throws SgemuError(InvalidParameterValue) on anything else. */
export function parseIpv4(text: string): number {
  if (typeof text !== 'string') bad4(String(text), 'not a string');
  let value = 0;
  let octet = 0;
  let digits = 0;
  let parts = 0;
  const n = text.length;
  for (let i = 0; i <= n; i++) {
    const c = i < n ? text.charCodeAt(i) : 46;           // a virtual '.' closes the last octet
    if (c >= 48 && c <= 57) {
      if (digits === 1 && octet === 0) bad4(text, 'leading zero in an octet');
      octet = octet * 10 + (c - 48);
      if (++digits > 3 || octet > 255) bad4(text, 'octet above 255');
    } else if (c === 46) {
      if (digits === 0) bad4(text, 'empty octet');
      if (++parts > 4) bad4(text, 'more than four octets');
      value = value * 256 + octet;
      octet = 0;
      digits = 0;
    } else {
      bad4(text, `unexpected character ${JSON.stringify(text[i])}`);
    }
  }
  if (parts !== 4) bad4(text, 'fewer than four octets');
  return value >>> 0;
}

/** uint32 → dotted quad. */
export function formatIpv4(n: number): string {
  n >>>= 0;
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

function hexGroup(text: string, g: string): number {
  if (g.length < 1 || g.length > 4 || !/^[0-9a-fA-F]+$/.test(g)) {
    bad6(text, g === '' ? 'empty group (a single ":" where "::" or a group is needed)' : `bad group ${JSON.stringify(g)}`);
  }
  return parseInt(g, 16);
}

/** IPv6 text (v4-mapped and other embedded dotted quads accepted) → four uint32 words. */
export function parseIpv6Words(text: string): Uint32Array {
  if (typeof text !== 'string') bad6(String(text), 'not a string');
  if (text.includes('%')) bad6(text, 'zone index not allowed');
  const lastColon = text.lastIndexOf(':');
  if (lastColon < 0) bad6(text, 'no ":"');
  let head = text;
  const tail: number[] = [];
  const last = text.slice(lastColon + 1);
  if (last.includes('.')) {
    let v4: number;
    try { v4 = parseIpv4(last); } catch { bad6(text, `bad embedded IPv4 ${JSON.stringify(last)}`); }
    tail.push(v4 >>> 16, v4 & 0xffff);
    head = text[lastColon - 1] === ':' ? text.slice(0, lastColon + 1) : text.slice(0, lastColon);
  }
  const halves = head.split('::');
  if (halves.length > 2) bad6(text, 'more than one "::"');
  const groups: number[] = [];
  if (halves.length === 2) {
    const left = halves[0] === '' ? [] : halves[0]!.split(':').map((g) => hexGroup(text, g));
    const right = halves[1] === '' ? [] : halves[1]!.split(':').map((g) => hexGroup(text, g));
    const fill = 8 - left.length - right.length - tail.length;
    if (fill < 1) bad6(text, 'too many groups around "::"');
    groups.push(...left);
    for (let i = 0; i < fill; i++) groups.push(0);
    groups.push(...right, ...tail);
  } else {
    groups.push(...(head === '' ? [] : head.split(':').map((g) => hexGroup(text, g))), ...tail);
    if (groups.length !== 8) bad6(text, `${groups.length} groups, need 8 (or "::")`);
  }
  const w = new Uint32Array(4);
  for (let i = 0; i < 4; i++) w[i] = ((groups[2 * i]! << 16) | groups[2 * i + 1]!) >>> 0;
  return w;
}

/** Four words → RFC 5952 text (lowercase, longest run of ≥ 2 zero groups as "::", first on a tie). */
export function formatIpv6(words: ArrayLike<number>): string {
  const g: number[] = [];
  for (let i = 0; i < 4; i++) g.push((words[i]! >>> 16) & 0xffff, words[i]! & 0xffff);
  let bestAt = -1, bestLen = 1;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) { bestAt = i; bestLen = j - i; }
    i = j;
  }
  const hex = (a: number[]): string => a.map((x) => x.toString(16)).join(':');
  if (bestAt < 0) return hex(g);
  return `${hex(g.slice(0, bestAt))}::${hex(g.slice(bestAt + bestLen))}`;
}

export function ipv6ToBigInt(words: ArrayLike<number>): bigint {
  return (BigInt(words[0]! >>> 0) << 96n) | (BigInt(words[1]! >>> 0) << 64n) |
    (BigInt(words[2]! >>> 0) << 32n) | BigInt(words[3]! >>> 0);
}

export function bigIntToIpv6(b: bigint): Uint32Array {
  const w = new Uint32Array(4);
  w[0] = Number((b >> 96n) & 0xffffffffn);
  w[1] = Number((b >> 64n) & 0xffffffffn);
  w[2] = Number((b >> 32n) & 0xffffffffn);
  w[3] = Number(b & 0xffffffffn);
  return w;
}

export const IPV6_MAX = (1n << 128n) - 1n;

function splitCidr(cidr: string, max: number, family: string): [string, number] {
  if (typeof cidr !== 'string') throw new SgemuError(BAD, `invalid ${family} CIDR ${String(cidr)}: not a string`);
  const slash = cidr.indexOf('/');
  if (slash < 0) return [cidr, max];
  const p = cidr.slice(slash + 1);
  if (!/^(0|[1-9][0-9]{0,2})$/.test(p) || Number(p) > max) {
    throw new SgemuError(BAD, `invalid ${family} CIDR ${JSON.stringify(cidr)}: prefix length ${JSON.stringify(p)} is not 0-${max}`);
  }
  return [cidr.slice(0, slash), Number(p)];
}

/** IPv4 netmask for a prefix length 0..32, as uint32. */
export function maskOf4(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

/** "a.b.c.d/n" (or a bare address = /32) → inclusive [lo, hi] uint32. Host bits are ignored, as AWS
 * canonicalises them away (aws-security-groups.md §1.3). */
export function cidrToRange4(cidr: string): [number, number] {
  const [addr, prefix] = splitCidr(cidr, 32, 'IPv4');
  const a = parseIpv4(addr);
  const mask = maskOf4(prefix);
  const lo = (a & mask) >>> 0;
  return [lo, (lo | ~mask) >>> 0];
}

/** IPv6 CIDR (or a bare address = /128) → inclusive [lo, hi] as 128-bit bigints. */
export function cidrToRange6(cidr: string): [bigint, bigint] {
  const [addr, prefix] = splitCidr(cidr, 128, 'IPv6');
  const a = ipv6ToBigInt(parseIpv6Words(addr));
  const host = (1n << BigInt(128 - prefix)) - 1n;
  const lo = a & ~host & IPV6_MAX;
  return [lo, lo | host];
}

/** Prefix length of a CIDR text (the address's full length when there is no "/"). */
export function cidrPrefix(cidr: string): number {
  const v6 = cidr.includes(':');
  return splitCidr(cidr, v6 ? 128 : 32, v6 ? 'IPv6' : 'IPv4')[1];
}

export interface ParsedAddress {
  family: 4 | 6;
  v4?: number;
  v6?: Uint32Array;
}

/** Either family, told apart by ":". */
export function parseAddress(text: string): ParsedAddress {
  if (typeof text === 'string' && text.includes(':')) return { family: 6, v6: parseIpv6Words(text) };
  return { family: 4, v4: parseIpv4(text) };
}
