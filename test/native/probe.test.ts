// Probes never throw, report the same thing twice, and report missing privilege as a mode.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { probeCapNetRaw, probeLoopback, probePcap, probeRaw, probeSocketFilter } from '../../src/native/probe.js';
import { nativeStatus } from '../../src/native/sock-filter.js';

const fixture = join(process.cwd(), 'test', 'native', 'fixtures', 'print-probes.ts');
const loader = join(process.cwd(), 'node_modules', '@tapjs', 'typescript', 'dist', 'esm', 'import.mjs');

t.test('in-process probes', async (t) => {
  const cap = probeCapNetRaw();
  t.type(cap, 'boolean');
  t.equal(probeCapNetRaw(), cap, 'stable');
  const sf = probeSocketFilter();
  t.equal(sf.ok, nativeStatus().loaded, sf.reason);
  const lo = probeLoopback();
  t.ok(lo.v4.includes('127.0.0.1'));
  if (cap) {
    t.equal(probePcap().ok, true, probePcap().reason);
    t.equal(probeRaw().ok, true, probeRaw().reason);
  }
});

const setpriv = ['/usr/bin/setpriv', '/bin/setpriv'].find((p) => existsSync(p));
const skipDrop = !probeCapNetRaw() ? 'already without CAP_NET_RAW' : !setpriv ? 'setpriv(1) not installed' : !existsSync(loader) ? 'tap TypeScript loader not found' : false;

t.test('without CAP_NET_RAW: pcap and raw report the reason, socket filters still work', { skip: skipDrop }, async (t) => {
  const r = spawnSync(setpriv!, ['--inh-caps=-net_raw', '--bounding-set=-net_raw', '--', process.execPath, `--import=file://${loader}`, fixture], { encoding: 'utf8', timeout: 30_000 });
  t.equal(r.status, 0, r.stderr);
  const p = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as Record<string, { ok?: boolean; reason?: string } | boolean>;
  t.equal(p.capNetRaw, false);
  t.match(p.pcap, { ok: false, reason: /CAP_NET_RAW|permission|Operation not permitted/i });
  t.match(p.raw, { ok: false, reason: /CAP_NET_RAW|permitted/i });
  t.match(p.socketFilter, { ok: nativeStatus().loaded }, 'SO_ATTACH_FILTER needs no privilege');
});
