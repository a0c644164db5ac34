// Runs a Command in-process with stdout and stderr captured (restored even on failure).
import type { Test } from 'tap';
import type { Command } from '../../src/cli/command.js';

export async function runCommand(t: Test, cmd: Command, argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const ow = process.stdout.write.bind(process.stdout);
  const ew = process.stderr.write.bind(process.stderr);
  let out = '';
  let err = '';
  const restore = (): void => { process.stdout.write = ow; process.stderr.write = ew; };
  t.teardown(restore);
  const cap = (add: (s: string) => void) => ((chunk: string | Uint8Array): boolean => {
    add(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8'));
    return true;
  }) as typeof process.stdout.write;
  process.stdout.write = cap((s) => { out += s; });
  process.stderr.write = cap((s) => { err += s; });
  try {
    const code = await cmd.run(argv);
    return { code, out, err };
  } finally {
    restore();
  }
}
