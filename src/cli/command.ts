// The shape every `sgemu <command>` module has, and the shared argument handling.
// Owns: parsing argv into typed options (node:util parseArgs, strict), `--help`, exit codes.
// Exit codes everywhere (SPEC §3): 0 success, 1 a negative answer, 2 bad input or usage.

import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from '../model/errors.js';
import { parseCredentials, signSigV4 } from '../control/api/sigv4.js';

export const EXIT_OK = 0;
export const EXIT_NEGATIVE = 1;
export const EXIT_USAGE = 2;

export interface Command {
  name: string;
  summary: string;          // one line for `sgemu --help`
  usage: string;            // full help text for `sgemu <name> --help`
  run(argv: string[]): Promise<number>;
}

type Options = NonNullable<ParseArgsConfig['options']>;

/** Options every command takes. */
export const COMMON_OPTIONS = {
  config: { type: 'string', short: 'c', default: './sgemu.yaml' },
  json: { type: 'boolean', default: false },
  help: { type: 'boolean', short: 'h', default: false },
} as const satisfies Options;

/**
 * Parses argv strictly. Unknown flags and missing values become a UsageError (exit 2) naming
 * the flag; `--help` is reported as `help: true` for the caller to print its usage.
 */
export function parseCommandArgs<O extends Options>(argv: string[], options: O, allowPositionals = false) {
  try {
    return parseArgs({ args: argv, options, strict: true, allowPositionals });
  } catch (e) {
    const msg = e instanceof Error ? e.message : String(e);
    throw new UsageError(msg.replace(/\. To specify a positional argument.*$/s, ''));
  }
}

/** Parses a whole number option; throws UsageError naming the flag and the valid range. */
export function intOption(name: string, value: string | undefined, min: number, max: number, dflt: number): number {
  if (value === undefined) return dflt;
  if (!/^-?\d+$/.test(value)) throw new UsageError(`--${name} "${value}" is not a whole number (${min}..${max})`);
  const n = Number(value);
  if (n < min || n > max) throw new UsageError(`--${name} ${n} is out of range (${min}..${max})`);
  return n;
}

/** Parses a number (fractions allowed) option. */
export function numberOption(name: string, value: string | undefined, min: number, max: number, dflt: number): number {
  if (value === undefined) return dflt;
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) throw new UsageError(`--${name} "${value}" is not a number (${min}..${max})`);
  if (n < min || n > max) throw new UsageError(`--${name} ${n} is out of range (${min}..${max})`);
  return n;
}

export function printJson(value: unknown): void {
  process.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

/** `127.0.0.1:4510`, `[::1]:4510`, `:4510` or `4510` → host and port; UsageError otherwise. */
export function parseHostPort(flag: string, text: string, defaultHost = '127.0.0.1'): { host: string; port: number } {
  // The host part only before a colon: `4510` alone is a port (the optional host used to take
  // `451` of it, leaving port 0).
  const m = /^(?:(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]*)):)?(\d{1,5})$/.exec(text.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || !(port >= 0 && port <= 65535)) {
    throw new UsageError(`--${flag} "${text}" is not an address: use host:port, [v6]:port or a port (e.g. 127.0.0.1:4510)`);
  }
  return { host: m[1] ?? (m[2] || defaultHost), port };
}

export const DEFAULT_API = '127.0.0.1:4510';

/** GET/POST a JSON endpoint of a running daemon; a UsageError naming --api when none answers. */
/**
 * Opens `path` on the daemon's API (GET, or POST of JSON `body`): a fetch Response. When
 * SGEMU_API_CREDENTIALS (KEY:SECRET) is set the request is SigV4-signed with them, as a daemon
 * whose API listens beyond loopback requires on every route.
 */
export async function apiFetch(api: string, path: string, body?: unknown, signal?: AbortSignal, methodOverride?: 'DELETE'): Promise<Response> {
  const { host, port } = parseHostPort('api', api);
  const hostPort = `${host.includes(':') ? `[${host}]` : host}:${port}`;
  const method = methodOverride ?? (body === undefined ? 'GET' : 'POST');
  const text = body === undefined ? undefined : JSON.stringify(body);
  const headers: Record<string, string> = text === undefined ? {} : { 'content-type': 'application/json' };
  const credText = process.env.SGEMU_API_CREDENTIALS;
  if (credText) {
    const creds = parseCredentials(credText);
    if (!creds) throw new UsageError('SGEMU_API_CREDENTIALS must be ACCESS_KEY_ID:SECRET_ACCESS_KEY', 'BadCredentials');
    Object.assign(headers, signSigV4({ method, url: path, host: hostPort, body: text }, creds));
  }
  try {
    return await fetch(`http://${hostPort}${path}`, { method, headers, ...(text === undefined ? {} : { body: text }), ...(signal ? { signal } : {}) });
  } catch (e) {
    const cause = (e as { cause?: { code?: string } }).cause?.code ?? (e instanceof Error ? e.message : String(e));
    throw new UsageError(`no sgemu daemon answers at ${host}:${port} (${cause}); start one with 'sgemu run' or pass --api ADDR`, 'DaemonUnreachable');
  }
}

/** GET (or POST `body` to) the daemon's JSON API; the parsed answer, or a UsageError naming the status. */
export async function apiRequest(api: string, path: string, body?: unknown): Promise<unknown> {
  const res = await apiFetch(api, path, body);
  const text = await res.text();
  if (!res.ok) {
    const { host, port } = parseHostPort('api', api);
    const hint = res.status === 401 || res.status === 403 ? ' (an API beyond loopback needs SGEMU_API_CREDENTIALS=KEY:SECRET)' : '';
    throw new UsageError(`daemon at ${host}:${port} answered ${res.status}: ${text.slice(0, 300)}${hint}`, 'DaemonError');
  }
  return JSON.parse(text) as unknown;
}
