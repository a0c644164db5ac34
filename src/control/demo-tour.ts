// The demo tour, played rather than printed: `sgemu demo` for a user without privilege runs this
// script inside `sgemu exec`'s namespace (issue #12), where every outcome is exact, and it prints
// each step's command and the real outcome it got (allowed, timed out after N s, refused in N ms).
// Exit 0 when every step came out as the tour says, 1 otherwise.
//
//   node dist/control/demo-tour.js        (started by `sgemu demo`, inside the namespace)

import http from 'node:http';
import net from 'node:net';

const TIMEOUT_MS = 3000;

type Got = { outcome: 'allowed' | 'timeout' | 'refused' | 'reset' | 'error'; ms: number; text: string };

function connect(host: string, port: number, from: string, send: string | null): Promise<Got> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const s = net.connect({ host, port, localAddress: from });
    const done = (outcome: Got['outcome'], text: string) => { clearTimeout(timer); s.destroy(); resolve({ outcome, ms: performance.now() - t0, text }); };
    const timer = setTimeout(() => done('timeout', ''), TIMEOUT_MS);
    s.on('connect', () => {
      if (send === null) { done('allowed', ''); return; }
      s.write(send);
      s.once('data', (d) => done('allowed', d.toString().trim()));
    });
    s.on('error', (e: NodeJS.ErrnoException) => done(e.code === 'ECONNREFUSED' ? 'refused' : e.code === 'ECONNRESET' ? 'reset' : 'error', e.code ?? ''));
  });
}

function get(url: string): Promise<Got> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const req = http.get(url, { timeout: TIMEOUT_MS }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ outcome: 'allowed', ms: performance.now() - t0, text: body.trim() }));
    });
    req.on('timeout', () => { req.destroy(); resolve({ outcome: 'timeout', ms: performance.now() - t0, text: '' }); });
    req.on('error', (e: NodeJS.ErrnoException) => resolve({ outcome: e.code === 'ECONNREFUSED' ? 'refused' : 'error', ms: performance.now() - t0, text: e.code ?? '' }));
  });
}

function describe(g: Got): string {
  if (g.outcome === 'timeout') return `timed out after ${(g.ms / 1000).toFixed(1)} s (no SYN-ACK: the SYN was dropped in the kernel)`;
  if (g.outcome === 'refused') return `refused in ${g.ms.toFixed(1)} ms (ECONNREFUSED: got through, nothing listens)`;
  if (g.outcome === 'allowed') return `answered in ${g.ms.toFixed(1)} ms${g.text ? `: ${g.text.split('\n')[0]}` : ''}`;
  return `${g.outcome} ${g.text}`;
}

const steps: { title: string; command: string; want: Got['outcome']; run: () => Promise<Got> }[] = [
  { title: 'ALLOWED  your laptop (127.0.0.1) may reach the web tier', command: 'curl -s http://127.0.0.10:8080/', want: 'allowed',
    run: () => get('http://127.0.0.10:8080/') },
  { title: 'TIMEOUT  a stranger on the internet (127.0.0.5, which the rules see as 203.0.113.5) may not',
    command: 'curl --interface 127.0.0.5 --connect-timeout 3 http://127.0.0.10:8080/', want: 'timeout',
    run: () => connect('127.0.0.10', 8080, '127.0.0.5', null) },
  { title: 'REFUSED  SSH is allowed from your laptop, but nothing listens behind it', command: 'nc -vz 127.0.0.10 2222', want: 'refused',
    run: () => connect('127.0.0.10', 2222, '127.0.0.1', null) },
  { title: 'TIMEOUT  the database takes connections only from the web tier (group reference)',
    command: 'curl --connect-timeout 3 telnet://127.0.0.20:15432', want: 'timeout', run: () => connect('127.0.0.20', 15432, '127.0.0.1', null) },
  { title: "ALLOWED  the web instance's own outbound connection to db:5432 (egress + db's ingress)",
    command: "bash -c 'exec 3<>/dev/tcp/127.0.0.10/25432; echo hello >&3; head -1 <&3'", want: 'allowed',
    run: () => connect('127.0.0.10', 25432, '127.0.0.1', 'hello\n') },
];

async function main(): Promise<number> {
  process.stdout.write('\nsgemu demo, played inside a private network namespace (no privilege needed here):\n\n');
  let bad = 0;
  for (const [i, s] of steps.entries()) {
    process.stdout.write(` ${i + 1}. ${s.title}\n      $ ${s.command}\n`);
    const got = await s.run();
    const ok = got.outcome === s.want;
    if (!ok) bad++;
    process.stdout.write(`      -> ${describe(got)}${ok ? '' : `   [expected ${s.want}]`}\n\n`);
  }
  process.stdout.write(bad === 0 ? 'Every outcome as in AWS.\n' : `${bad} step(s) did not come out as expected.\n`);
  return bad === 0 ? 0 : 1;
}

main().then((code) => process.exit(code), (e: unknown) => { process.stderr.write(`demo tour: ${String(e)}\n`); process.exit(1); });
