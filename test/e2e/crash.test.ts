// kill -9 never loses an acknowledged API change (issue #6): a daemon takes a stream of
// AuthorizeSecurityGroupIngress calls and is killed with SIGKILL at a random moment, 50 times;
// after each restart every acknowledged rule is present and the state file loads.
// Bounded: 50 rounds, each at most ~1.5 s (SGEMU_CRASH_ROUNDS overrides the count).

import t from 'tap';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freshAddr, freePort } from './helpers.js';

const CLI = new URL('../../dist/cli/main.js', import.meta.url).pathname;
const ROUNDS = Number(process.env.SGEMU_CRASH_ROUNDS ?? 50);

function ready(p: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error('daemon did not start: ' + out)), 10000);
    p.stderr!.on('data', (d) => { out += d; if (/ready:/.test(out)) { clearTimeout(timer); resolve(); } });
    p.on('exit', (c) => { clearTimeout(timer); reject(new Error(`daemon exited ${c}: ${out}`)); });
  });
}

t.test(`SIGKILL at random points, ${ROUNDS} times: every acknowledged change survives`, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sgemu-crash-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const cfg = join(dir, 'sgemu.yaml'), state = join(dir, 'state.json');
  writeFileSync(cfg, `securityGroups:\n  - id: sg-c\n    description: crash\ninstances:\n  - { name: c, address: ${freshAddr()}, securityGroups: [sg-c] }\nquotas: { rulesPerGroup: 1000, groupsPerInstance: 1 }\n`);
  const acked: string[] = [];
  let n = 0, lost = 0, seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  for (let round = 0; round <= ROUNDS; round++) {   // the last round only checks
    const port = await freePort();
    const api = `http://127.0.0.1:${port}/`;
    const p = spawn(process.execPath, [CLI, 'run', '-c', cfg, '--api', `127.0.0.1:${port}`, '--state', state], { stdio: ['ignore', 'ignore', 'pipe'] });
    await ready(p);
    // Everything acknowledged so far must be there.
    const groups = await (await fetch(api + 'v1/security-groups')).json() as { groupId: string; ingress: { cidr?: string }[] }[];
    const have = new Set(groups.find((g) => g.groupId === 'sg-c')!.ingress.map((r) => r.cidr));
    for (const c of acked) if (!have.has(c)) lost++;
    if (round === ROUNDS) { p.kill('SIGKILL'); await new Promise((r) => p.once('exit', r)); break; }
    // A stream of changes, killed at a random moment.
    const killAt = Date.now() + 20 + rand() * 300;
    const killer = setTimeout(() => p.kill('SIGKILL'), killAt - Date.now());
    while (Date.now() < killAt) {
      const cidr = `127.${(n >> 8) & 255}.${n & 255}.1/32`;   // rule data only: no traffic goes anywhere
      n++;
      const body = `Action=AuthorizeSecurityGroupIngress&Version=2016-11-15&GroupId=sg-c&IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=22&IpPermissions.1.ToPort=22&IpPermissions.1.IpRanges.1.CidrIp=${encodeURIComponent(cidr)}`;
      try {
        const r = await fetch(api, { method: 'POST', body, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
        if (r.status === 200) acked.push(cidr);      // acknowledged: must survive
        else await r.text();
      } catch { break; }                            // killed mid-request: not acknowledged
    }
    clearTimeout(killer);
    p.kill('SIGKILL');
    await new Promise((r) => (p.exitCode !== null || p.signalCode !== null ? r(null) : p.once('exit', r)));
  }
  t.ok(acked.length > ROUNDS, `${acked.length} changes acknowledged over the rounds`);
  t.equal(lost, 0, 'no acknowledged change was ever missing after a restart');
});
