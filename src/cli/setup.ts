// `sgemu setup [--undo]`: run once with sudo. Gives the capability helper sgemu-netd (and nothing
// else) the file capabilities cap_net_admin,cap_net_raw+ep, so the daemon can run as the user
// with exact behaviour (SPEC.md §8, native-notes/capability-helper.md). `--undo` removes them.
// The helper is made root-owned and not writable by others first: a file with capabilities that
// its user could rewrite would hand those capabilities to whatever they wrote (and the kernel
// drops file capabilities on a write anyway, so a rebuilt helper needs setup again).

import { spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, statSync } from 'node:fs';
import { helperPath } from '../native/netd.js';
import { setupCommand } from '../dataplane/privilege.js';
import { SgemuError, UsageError } from '../model/errors.js';
import { COMMON_OPTIONS, EXIT_OK, parseCommandArgs, printJson, type Command } from './command.js';

const CAPS = 'cap_net_admin,cap_net_raw+ep';

function tool(name: string): string {
  for (const dir of ['/usr/sbin', '/sbin', '/usr/bin', '/bin', ...(process.env.PATH ?? '').split(':')]) {
    if (dir && existsSync(`${dir}/${name}`)) return `${dir}/${name}`;
  }
  throw new SgemuError('SetcapMissing', `${name} not found: install it (Debian/Ubuntu: apt-get install -y libcap2-bin; Fedora: dnf install libcap)`);
}

/** The helper's file capabilities as getcap prints them ('' when none). */
export function helperCapabilities(path = helperPath()): string {
  const r = spawnSync(tool('getcap'), [path], { encoding: 'utf8' });
  return (r.stdout ?? '').trim().replace(/^\S+\s+/, '');
}

const setup: Command = {
  name: 'setup',
  summary: 'once, with sudo: give the capability helper its capabilities',
  usage: `Usage: sudo sgemu setup [--undo] [--json]

Gives the capability helper sgemu-netd, shipped with sgemu, the file capabilities
${CAPS}, and makes it owned by root and not writable by others. Nothing else on
the system changes: node gets no capability, no service is installed. After it, 'sgemu run' as
your own user has exact behaviour (denied connections time out, stopped backends refuse).
The helper does one thing per request and only on loopback (see native-notes/capability-helper.md).
A rebuilt or reinstalled helper loses its capabilities: run setup again ('sgemu doctor' says so).

Options:
  --undo    remove the capabilities again
  --json    print what was done as JSON`,
  async run(argv) {
    const { values } = parseCommandArgs(argv, { ...COMMON_OPTIONS, undo: { type: 'boolean', default: false } });
    const path = helperPath();
    if (process.getuid?.() !== 0) throw new UsageError(`setup changes file capabilities and needs root: ${setupCommand()}${values.undo ? ' --undo' : ''}`);
    if (!existsSync(path)) throw new SgemuError('HelperMissing', `capability helper ${path} not found: build it with \`node scripts/build-addon.mjs\` (needs a C compiler)`);
    const setcap = tool('setcap');
    const done: string[] = [];
    if (values.undo) {
      const r = spawnSync(setcap, ['-r', path], { encoding: 'utf8' });
      if (r.status !== 0 && !/No data available|no capabilities/i.test(r.stderr ?? '')) throw new SgemuError('SetcapFailed', `setcap -r ${path}: ${(r.stderr ?? '').trim()}`);
      done.push(`removed the file capabilities of ${path}`);
    } else {
      const st = statSync(path);
      if (st.uid !== 0 || st.gid !== 0) { chownSync(path, 0, 0); done.push(`owner of ${path}: root:root (was ${st.uid}:${st.gid})`); }
      if ((st.mode & 0o7777) !== 0o755) { chmodSync(path, 0o755); done.push(`mode of ${path}: 0755 (was 0${(st.mode & 0o7777).toString(8)})`); }
      const r = spawnSync(setcap, [CAPS, path], { encoding: 'utf8' });
      if (r.status !== 0) throw new SgemuError('SetcapFailed', `setcap ${CAPS} ${path}: ${(r.stderr ?? '').trim()} (a filesystem without extended attributes, or mounted nosuid, cannot carry file capabilities)`);
      done.push(`gave ${path} the file capabilities ${CAPS}`);
    }
    const now = helperCapabilities(path);
    if (values.json) printJson({ helper: path, capabilities: now, undo: values.undo, done });
    else {
      for (const d of done) process.stdout.write(`${d}\n`);
      process.stdout.write(`now: ${now || 'no capabilities'}; nothing else was changed\n`);
      process.stdout.write(values.undo ? "sgemu run as a normal user now exits 2 (or runs degraded with --fallback)\n" : "check with 'sgemu doctor' as your own user (mode: helper)\n");
    }
    return EXIT_OK;
  },
};
export default setup;
