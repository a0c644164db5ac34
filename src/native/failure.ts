// The one native failure type on the TS side: every addon call returns its value or a
// `{ errno, syscall }` object (the C side does the syscall and returns errno, nothing else), and
// this module turns the latter into a NativeError (src/model/errors.ts) with a stable code (the
// errno's name: EADDRINUSE, EPERM…) and a message naming what was being done.
// Must not: log, retry or decide policy; callers choose what a failure means.

import { constants as osConstants } from 'node:os';
import { NativeError } from '../model/errors.js';

/** What the addon returns instead of a value when a syscall failed. */
export type Failure = { errno: number; syscall: string };

const errnoNames = new Map<number, string>();
for (const [name, n] of Object.entries(osConstants.errno)) if (!errnoNames.has(n)) errnoNames.set(n, name);

/** errno number → name (ECONNREFUSED…), for codes and messages. */
export function errnoName(n: number): string {
  return errnoNames.get(n) ?? `E${n}`;
}

export function isFailure(r: unknown): r is Failure {
  return typeof r === 'object' && r !== null && 'errno' in r && 'syscall' in r;
}

/** The NativeError for a failure: code = errno name, message `what: syscall failed with CODE (errno N)`. */
export function nativeError(r: Failure, what: string): NativeError {
  const code = errnoName(r.errno);
  return new NativeError(r.syscall, r.errno, code, `${what}: ${r.syscall} failed with ${code} (errno ${r.errno})`);
}

/** Throws the failure as a NativeError. */
export function fail(r: Failure, what: string): never {
  throw nativeError(r, what);
}

/** A call's number, or its failure thrown as a NativeError. */
export function check(r: number | Failure, what: string): number {
  if (typeof r === 'number') return r;
  throw nativeError(r, what);
}

/** The addon (or the part of it a wrapper needs) is not loaded: code NativeUnavailable. */
export function nativeUnavailable(message: string): NativeError {
  return new NativeError('dlopen', 0, 'NativeUnavailable', message);
}
