// kill -9 never loses an acknowledged API change (issue #6): a daemon takes a stream of
// AuthorizeSecurityGroupIngress calls and is killed with SIGKILL at a random moment, 50 times;
// after each restart every acknowledged rule is present and the state file loads, and no
// `state.json.tmp-PID` file is left (issue 17: a kill inside saveState left its temp file, and
// nothing removed it; the first round also plants one of a pid that is gone).
// Bounded: 50 rounds (SGEMU_CRASH_ROUNDS overrides the count), each at most start-up + 10 s, and
// no new round after 100 s once 20 were done (a loaded machine: the count is printed).

import t from 'tap';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, watch, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freshAddr, freePort } from './helpers.js';

const CLI = new URL('../../dist/cli/main.js', import.meta.url).pathname;
const ROUNDS = Number(process.env.SGEMU_CRASH_ROUNDS ?? 50);
const MIN_ROUNDS = Math.min(20, ROUNDS);
const BOX_MS = 100_000;

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
  let leftBehind = 0, tempsAfterStart = 0;
  const temps = () => readdirSync(dir).filter((f) => /^state\.json\.tmp-/.test(f));
  writeFileSync(join(dir, `state.json.tmp-${spawnSync(process.execPath, ['-e', '0']).pid}`), '{"sgemuState": 1, "con');
  const rand = () => ((seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const started = Date.now();
  let kills = 0;
  for (let round = 0; ; round++) {   // the last round only checks
    const port = await freePort();
    const api = `http://127.0.0.1:${port}/`;
    const p = spawn(process.execPath, [CLI, 'run', '-c', cfg, '--api', `127.0.0.1:${port}`, '--state', state], { stdio: ['ignore', 'ignore', 'pipe'] });
    if (temps().length > 0) leftBehind++;
    await ready(p);
    tempsAfterStart += temps().length;
    // Everything acknowledged so far must be there.
    const groups = await (await fetch(api + 'v1/security-groups')).json() as { groupId: string; ingress: { cidr?: string }[] }[];
    const have = new Set(groups.find((g) => g.groupId === 'sg-c')!.ingress.map((r) => r.cidr));
    for (const c of acked) if (!have.has(c)) lost++;
    if (round === ROUNDS || (round >= MIN_ROUNDS && Date.now() - started > BOX_MS)) { p.kill('SIGKILL'); await new Promise((r) => p.once('exit', r)); break; }
    kills++;
    // A stream of changes, killed at a random moment (0..300 ms after the first acknowledged
    // one, however slow the disk); in odd rounds as soon as the temp file of the 1st..4th save
    // appears (inotify), so that half the kills land inside saveState.
    let killed = false;
    const kill = () => { killed = true; p.kill('SIGKILL'); };
    const deadline = Date.now() + 10_000;
    let killer: NodeJS.Timeout | undefined;
    let saves = 1 + Math.floor(rand() * 4);
    const delayMs = rand() * 300;
    const watcher = round % 2 === 1
      ? watch(dir, (_e, name) => { if (name?.startsWith('state.json.tmp-') && existsSync(join(dir, name)) && --saves === 0) kill(); })
      : null;
    while (!killed && Date.now() < deadline) {
      const cidr = `127.${(n >> 8) & 255}.${n & 255}.1/32`;   // rule data only: no traffic goes anywhere
      n++;
      const body = `Action=AuthorizeSecurityGroupIngress&Version=2016-11-15&GroupId=sg-c&IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=22&IpPermissions.1.ToPort=22&IpPermissions.1.IpRanges.1.CidrIp=${encodeURIComponent(cidr)}`;
      try {
        const r = await fetch(api, { method: 'POST', body, headers: { 'content-type': 'application/x-www-form-urlencoded' } });
        if (r.status === 200) {
          acked.push(cidr);                          // acknowledged: must survive
          if (!watcher) killer ??= setTimeout(kill, delayMs);
        } else await r.text();
      } catch { break; }                            // killed mid-request: not acknowledged
    }
    clearTimeout(killer);
    watcher?.close();
    p.kill('SIGKILL');
    await new Promise((r) => (p.exitCode !== null || p.signalCode !== null ? r(null) : p.once('exit', r)));
  }
  t.ok(kills >= MIN_ROUNDS, `${kills} kills in ${Date.now() - started} ms`);
  t.ok(acked.length >= kills / 2, `${acked.length} changes acknowledged over the rounds`);
  t.equal(lost, 0, 'no acknowledged change was ever missing after a restart');
  t.ok(leftBehind >= Math.min(5, kills / 4), `${leftBehind} of ${kills} kills left a temp file (the first one planted)`);
  t.equal(tempsAfterStart, 0, 'no temp file is left after a start');
});
