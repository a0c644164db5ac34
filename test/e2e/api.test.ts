// The EC2 Query API changes live traffic (issue #6): through @aws-sdk/client-ec2 against a real
// daemon, a group is created and attached, a rule authorized, and a real connection goes from
// timeout to allowed; a revoke makes new connections time out while a tracked one lives on; the
// change survives a restart through the state file.

import t from 'tap';
import net from 'node:net';
import { join } from 'node:path';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import {
  AuthorizeSecurityGroupIngressCommand, CreateSecurityGroupCommand, EC2Client, ModifyInstanceAttributeCommand,
  RevokeSecurityGroupIngressCommand,
} from '@aws-sdk/client-ec2';
import { freshAddr, freePort, echoServer, probe, startDaemon } from './helpers.js';

t.test('authorize → allowed, revoke → new flows time out, tracked flow lives, state survives a restart', async (t) => {
  const addr = freshAddr(), src = freshAddr();
  const port = await freePort(addr);
  const echo = await echoServer(t);
  // Not in t.testdir: startDaemon recreates that per call, and the state must outlive a restart.
  const stateDir = mkdtempSync(join(tmpdir(), 'sgemu-api-'));
  t.teardown(() => rmSync(stateDir, { recursive: true, force: true }));
  const statePath = join(stateDir, 'state.json');
  const yaml = `
securityGroups:
  - id: sg-base
    description: nothing inbound
instances:
  - name: app
    address: ${addr}
    securityGroups: [sg-base]
    services:
      - { protocol: tcp, port: ${port}, backend: "127.0.0.1:${echo.port}" }
`;
  const { daemon } = await startDaemon(t, yaml, { api: { host: '127.0.0.1', port: 0 }, statePath });
  const ec2 = new EC2Client({ endpoint: `http://127.0.0.1:${daemon.api!.port}`, region: 'us-east-1',
    credentials: { accessKeyId: 'x', secretAccessKey: 'y' }, maxAttempts: 1 });
  t.teardown(() => ec2.destroy());

  t.equal(await probe(src, addr, port, 500), 'timeout', 'no rule yet: timeout');
  const { GroupId } = await ec2.send(new CreateSecurityGroupCommand({ GroupName: 'app-in', Description: 'made by the sdk' }));
  t.match(GroupId, /^sg-/);
  const instanceId = daemon.model.instances[0]!.id;
  await ec2.send(new ModifyInstanceAttributeCommand({ InstanceId: instanceId, Groups: ['sg-base', GroupId!] }));
  const perm = { IpProtocol: 'tcp', FromPort: port, ToPort: port, IpRanges: [{ CidrIp: `${src}/32` }] };
  await ec2.send(new AuthorizeSecurityGroupIngressCommand({ GroupId, IpPermissions: [perm] }));
  t.equal(await probe(src, addr, port), 'allowed', 'after authorize: allowed');

  const held = net.connect({ host: addr, port, localAddress: src });
  held.on('error', () => {});
  await new Promise((r) => held.once('connect', r));
  await ec2.send(new RevokeSecurityGroupIngressCommand({ GroupId, IpPermissions: [perm] }));
  t.equal(await probe(src, addr, port, 500), 'timeout', 'after revoke: new connections time out');
  const echoed = await new Promise<string>((resolve) => {
    const timer = setTimeout(() => resolve('silence'), 500);
    held.once('data', (d) => { clearTimeout(timer); resolve(d.toString()); });
    held.write('still here');
  });
  t.equal(echoed, 'still here', 'the tracked connection lives on');
  held.destroy();

  // Authorize again, restart from the same config and state: the rule is still there.
  await ec2.send(new AuthorizeSecurityGroupIngressCommand({ GroupId, IpPermissions: [perm] }));
  await daemon.stop(0);
  const again = await startDaemon(t, yaml, { statePath });
  t.equal(await probe(src, addr, port), 'allowed', 'after a restart the API change is still in force');
  t.ok(again.daemon.model.groups.some((g) => g.id === GroupId), 'the group came back from the state file');
});

t.test('GET /v1/events streams flow decisions as server-sent events', async (t) => {
  const addr = freshAddr(), src = freshAddr(), bad = freshAddr();
  const port = await freePort(addr);
  const echo = await echoServer(t);
  const { daemon } = await startDaemon(t, `
securityGroups:
  - id: sg-ev
    ingress: [ { protocol: tcp, ports: ${port}, cidr: ${src}/32 } ]
instances:
  - name: ev
    address: ${addr}
    securityGroups: [sg-ev]
    services: [ { protocol: tcp, port: ${port}, backend: "127.0.0.1:${echo.port}" } ]
`, { api: { host: '127.0.0.1', port: 0 } });
  const ac = new AbortController();
  const res = await fetch(`http://127.0.0.1:${daemon.api!.port}/v1/events`, { signal: ac.signal });
  t.equal(res.headers.get('content-type'), 'text/event-stream');
  const events: { type: string; src: string }[] = [];
  const reading = (async () => {
    let buf = '';
    try {
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        buf += Buffer.from(chunk).toString();
        for (const m of buf.matchAll(/^data: (.*)$/gm)) events.push(JSON.parse(m[1]!));
        buf = buf.slice(buf.lastIndexOf('\n\n') + 2);
      }
    } catch { /* aborted */ }
  })();
  await new Promise((r) => setTimeout(r, 50));
  t.equal(await probe(src, addr, port), 'allowed');
  await probe(bad, addr, port, 300);
  await new Promise((r) => setTimeout(r, 100));
  ac.abort();
  await reading;
  t.ok(events.some((e) => e.type === 'open' && e.src === src), 'open event');
  t.ok(events.some((e) => e.type === 'close' && e.src === src), 'close event');
  t.notOk(events.some((e) => e.src === bad && e.type === 'open'), 'the denied source never opened a flow');
});
