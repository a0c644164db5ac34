// A live NACL change through the AWS CLI (issue 14): a daemon with its API and a state file; an
// established tracked flow; `aws ec2 create-network-acl-entry` denying its replies stops it at once
// and new connections time out; describe-network-acls shows the entry; replace-network-acl-entry
// lets the client back in. Skipped with the reason when `aws` is not installed.
import t from 'tap';
import net from 'node:net';
import { execFile, spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { freshAddr, freePort, echoServer, probe, startDaemon } from './helpers.js';

const cli = spawnSync('aws', ['--version'], { encoding: 'utf8', timeout: 20_000 });
const missing = cli.error ? `the aws CLI is not installed (${String((cli.error as NodeJS.ErrnoException).code)})` : false;

t.test('aws ec2 create-network-acl-entry cuts an established flow; replace lets it back', { skip: missing }, async (t) => {
  const addr = freshAddr(), client = freshAddr();
  const port = await freePort(addr);
  const echo = await echoServer(t);
  const dir = t.testdir({});
  const yaml = `
networkAcls:
  - id: acl-app
    entries:
      - { ruleNumber: 100, egress: false, protocol: tcp, ports: ${port}, cidr: 0.0.0.0/0, action: allow }
      - { ruleNumber: 110, egress: true, protocol: tcp, ports: 1024-65535, cidr: 0.0.0.0/0, action: allow }
subnets:
  - { id: subnet-app, networkAcl: acl-app }
securityGroups:
  - id: sg-web
    ingress:
      - { protocol: tcp, ports: ${port}, cidr: ${client}/32 }
instances:
  - name: web
    address: ${addr}
    subnet: subnet-app
    securityGroups: [sg-web]
    services:
      - { protocol: tcp, port: ${port}, backend: "127.0.0.1:${echo.port}" }
`;
  const { daemon } = await startDaemon(t, yaml, { api: { host: '127.0.0.1', port: 0 }, statePath: join(dir, 'state.json') });
  const env = {
    PATH: process.env.PATH ?? '', HOME: dir, AWS_ACCESS_KEY_ID: 'x', AWS_SECRET_ACCESS_KEY: 'y', AWS_DEFAULT_REGION: 'us-east-1',
    AWS_CONFIG_FILE: join(dir, 'config'), AWS_SHARED_CREDENTIALS_FILE: join(dir, 'credentials'), AWS_EC2_METADATA_DISABLED: 'true', AWS_PAGER: '',
  };
  const aws = (...args: string[]): Promise<{ code: number; out: string; err: string }> => new Promise((resolve) => {
    execFile('aws', ['--endpoint-url', `http://127.0.0.1:${daemon.api!.port}`, '--output', 'json', 'ec2', ...args], { env, timeout: 30_000 },
      (e, out, err) => resolve({ code: e ? Number((e as { code?: unknown }).code ?? 1) : 0, out, err }));
  });

  const s = net.connect({ host: addr, port, localAddress: client });
  s.on('error', () => {});
  await new Promise((r) => s.once('connect', r));
  const echoOnce = (msg: string, ms = 500) => new Promise<string>((resolve) => {
    const timer = setTimeout(() => { s.off('data', on); resolve('silence'); }, ms);
    const on = (d: Buffer) => { clearTimeout(timer); resolve(d.toString()); };
    s.once('data', on);
    s.write(msg);
  });
  t.equal(await echoOnce('a'), 'a', 'established');
  t.equal(daemon.conntrack().find((e) => e.srcPort === s.localPort)?.tracked, true, 'tracked (SG /32)');

  const add = await aws('create-network-acl-entry', '--network-acl-id', 'acl-app', '--rule-number', '90', '--protocol', '-1',
    '--rule-action', 'deny', '--egress', '--cidr-block', `${client}/32`);
  t.equal(add.code, 0, add.err);
  t.equal(await echoOnce('b'), 'silence', 'egress rule 90 denies the replies: the tracked flow stops');
  t.equal(daemon.counters.naclCut, 1);
  t.equal(await probe(client, addr, port, 600), 'timeout', 'a new connection times out');

  const d = await aws('describe-network-acls', '--network-acl-ids', 'acl-app');
  t.equal(d.code, 0, d.err);
  const acl = (JSON.parse(d.out) as { NetworkAcls: { Entries: { RuleNumber: number; Egress: boolean; RuleAction: string; CidrBlock?: string }[]; Associations: { SubnetId: string }[] }[] }).NetworkAcls[0];
  t.same(acl?.Entries.filter((e) => e.Egress && e.RuleNumber < 32767).map((e) => [e.RuleNumber, e.RuleAction, e.CidrBlock]),
    [[90, 'deny', `${client}/32`], [110, 'allow', '0.0.0.0/0']]);
  t.same(acl?.Associations.map((a) => a.SubnetId), ['subnet-app']);

  const rep = await aws('replace-network-acl-entry', '--network-acl-id', 'acl-app', '--rule-number', '90', '--protocol', '6',
    '--port-range', 'From=1,To=1023', '--rule-action', 'deny', '--egress', '--cidr-block', `${client}/32`);
  t.equal(rep.code, 0, rep.err);
  t.equal(await probe(client, addr, port), 'allowed', 'rule 90 narrowed to ports 1-1023: the client is back');
  s.destroy();
});
