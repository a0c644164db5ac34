#!/usr/bin/env node
// `sgemu` entry point: dispatches to one module per command, maps errors to exit codes.
// Must not: print stack traces for expected errors (SgemuError); every other error is a bug and
// is printed with its stack so it can be reported.

import { SgemuError, UsageError, ConfigErrors } from '../model/errors.js';
import { EXIT_USAGE, type Command } from './command.js';

const COMMANDS: Record<string, () => Promise<{ default: Command }>> = {
  run: () => import('./run.js'),
  demo: () => import('./demo.js'),
  check: () => import('./check.js'),
  explain: () => import('./explain.js'),
  lint: () => import('./lint.js'),
  import: () => import('./import.js'),
  conntrack: () => import('./conntrack.js'),
  loadtest: () => import('./loadtest.js'),
  doctor: () => import('./doctor.js'),
  setup: () => import('./setup.js'),
  exec: () => import('./exec.js'),
  fault: () => import('./fault.js'),
};

const SUMMARIES: Record<string, string> = {
  run: 'run the daemon in the foreground (proxies services, applies the rules)',
  demo: 'run the embedded demo: bundled config, demo backends and a tour',
  check: 'validate a config; lists every error as CODE path line:col message',
  explain: 'the decision for one flow and why (--from --to --protocol [--port])',
  lint: 'risky rule sets: world-open admin ports and databases, shadowed rules, ...',
  import: 'convert AWS / CloudFormation / Terraform security groups to an sgemu config',
  conntrack: "the running daemon's connection-tracking table",
  loadtest: 'drive real traffic through a running daemon and check every outcome',
  doctor: 'the privilege mode and what each behaviour looks like here, with the fix',
  setup: 'once, with sudo: give the capability helper sgemu-netd its capabilities',
  exec: 'run a command in a private network where the rules apply (no privilege needed)',
  fault: 'add, list or remove faults (latency, bandwidth, resets, loss...) on allowed flows',
};

function mainHelp(): string {
  const width = Math.max(...Object.keys(SUMMARIES).map((k) => k.length));
  return [
    'sgemu: AWS security-group semantics in front of local services, on real sockets.',
    'Denied traffic times out, allowed traffic to a stopped backend is refused, replies are stateful.',
    '',
    'Usage: sgemu <command> [options]',
    '',
    'Commands:',
    ...Object.entries(SUMMARIES).map(([k, v]) => `  ${k.padEnd(width)}  ${v}`),
    '',
    'Every command takes -c, --config FILE (default ./sgemu.yaml); data commands take --json.',
    'Exit codes: 0 success, 1 a negative answer (denied, findings, mismatches), 2 bad input.',
    "Run 'sgemu <command> --help' for a command's options.",
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    if (name === 'help' && rest[0] && COMMANDS[rest[0]]) return main([rest[0], '--help']);
    process.stdout.write(mainHelp() + '\n');
    return name === undefined ? EXIT_USAGE : 0;
  }
  if (name === '--version' || name === '-V') {
    const { readFileSync } = await import('node:fs');
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    process.stdout.write(pkg.version + '\n');
    return 0;
  }
  const load = COMMANDS[name];
  if (!load) {
    process.stderr.write(`sgemu: unknown command "${name}"\n\n${mainHelp()}\n`);
    return EXIT_USAGE;
  }
  const cmd = (await load()).default;
  const own = rest.includes('--') ? rest.slice(0, rest.indexOf('--')) : rest;   // after --: exec's command
  if (own.includes('--help') || own.includes('-h')) {
    process.stdout.write(cmd.usage.trimEnd() + '\n');
    return 0;
  }
  try {
    return await cmd.run(rest);
  } catch (e) {
    return reportError(name, e);
  }
}

export function reportError(name: string, e: unknown): number {
  if (e instanceof ConfigErrors) {
    for (const err of e.errors) process.stderr.write(err.format() + '\n');
    return EXIT_USAGE;
  }
  if (e instanceof UsageError) {
    process.stderr.write(`sgemu ${name}: ${e.message}\nRun 'sgemu ${name} --help' for usage.\n`);
    return EXIT_USAGE;
  }
  if (e instanceof SgemuError) {
    process.stderr.write(`sgemu ${name}: ${e.code}: ${e.message}\n`);
    return EXIT_USAGE;
  }
  process.stderr.write(`sgemu ${name}: internal error (please report): ${e instanceof Error ? e.stack : String(e)}\n`);
  return 70;
}

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (e) => { process.exitCode = reportError('', e); },
);
