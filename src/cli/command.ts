// The shape every `sgemu <command>` module has, and the shared argument handling.
// Owns: parsing argv into typed options (node:util parseArgs, strict), `--help`, exit codes.
// Exit codes everywhere (SPEC §3): 0 success, 1 a negative answer, 2 bad input or usage.

import { parseArgs, type ParseArgsConfig } from 'node:util';
import { UsageError } from '../model/errors.js';

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
