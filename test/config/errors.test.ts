// One case per error code (and per distinct way to reach the common ones): code, path, line, column.
import t from 'tap';
import { at, errorsOf } from './helpers.js';

interface Case {
  name: string;
  text: string;
  code: string;
  path: string;
  where: string | [string, string] | { line: number; column: number };   // needle, [needle, after] or position
}

const SG = (rules: string, extra = ''): string => `securityGroups:
  - id: sg-a
    name: a
${extra}    ingress:
${rules}`;

const cases: Case[] = [
  // --- syntax and shape
  { name: 'YAML syntax error', code: 'InvalidYaml', path: '', text: 'securityGroups:\n  - id: sg-a\n    name: [unclosed\n', where: { line: 4, column: 1 } },
  { name: 'duplicate key is a YAML error', code: 'InvalidYaml', path: '', text: 'region: us-east-1\nregion: eu-west-1\n', where: 'region: eu' },
  { name: 'top level is a list', code: 'InvalidConfig', path: '', text: '- a\n- b\n', where: '- a' },
  { name: 'top level is a scalar', code: 'InvalidConfig', path: '', text: 'hello\n', where: 'hello' },
  { name: 'unknown top-level key', code: 'UnknownField', path: 'securitygroups', text: 'securitygroups: []\n', where: 'securitygroups' },
  { name: 'unknown rule key', code: 'UnknownField', path: 'securityGroups[0].ingress[0].port', text: SG('      - { protocol: tcp, port: 22, cidr: 0.0.0.0/0 }\n'), where: 'port:' },
  { name: 'wrong type', code: 'InvalidParameterValue', path: 'securityGroups', text: 'securityGroups: 12\n', where: '12' },
  { name: 'bad region', code: 'InvalidParameterValue', path: 'region', text: 'region: mars\n', where: 'mars' },
  { name: 'bad account id', code: 'InvalidParameterValue', path: 'accountId', text: 'accountId: 1234\n', where: '1234' },

  // --- rules: protocol and ports
  { name: 'tcp without ports', code: 'MissingParameter', path: 'securityGroups[0].ingress[0].ports', text: SG('      - { protocol: tcp, cidr: 0.0.0.0/0 }\n'), where: '{ protocol' },
  { name: 'reversed range', code: 'InvalidParameterValue', path: 'securityGroups[0].ingress[0].ports', text: SG('      - { protocol: tcp, ports: "90-80", cidr: 0.0.0.0/0 }\n'), where: '"90-80"' },
  { name: 'port out of range', code: 'InvalidPermission.Malformed', path: 'securityGroups[0].ingress[0].ports', text: SG('      - { protocol: udp, ports: 70000, cidr: 0.0.0.0/0 }\n'), where: '70000' },
  { name: 'port range end out of range', code: 'InvalidPermission.Malformed', path: 'securityGroups[0].ingress[0].ports', text: SG('      - protocol: tcp\n        ports: 1-65536\n        cidr: 0.0.0.0/0\n'), where: '1-65536' },
  { name: 'ports not a port', code: 'InvalidParameterValue', path: 'securityGroups[0].ingress[0].ports', text: SG('      - { protocol: tcp, ports: http, cidr: 0.0.0.0/0 }\n'), where: 'http' },
  { name: 'bad protocol', code: 'InvalidParameterValue', path: 'securityGroups[0].ingress[0].protocol', text: SG('      - { protocol: sctpx, ports: 1, cidr: 0.0.0.0/0 }\n'), where: 'sctpx' },
  { name: 'protocol number above 255', code: 'InvalidParameterValue', path: 'securityGroups[0].ingress[0].protocol', text: SG('      - { protocol: 256, cidr: 0.0.0.0/0 }\n'), where: '256' },
  { name: 'missing protocol', code: 'MissingParameter', path: 'securityGroups[0].ingress[0].protocol', text: SG('      - { ports: 22, cidr: 0.0.0.0/0 }\n'), where: '{ ports' },
  { name: 'ports with protocol all', code: 'InvalidParameterValue', path: 'securityGroups[0].ingress[0].ports', text: SG('      - { protocol: all, ports: 22, cidr: 0.0.0.0/0 }\n'), where: '22' },
  { name: 'ports with protocol 47', code: 'InvalidParameterValue', path: 'securityGroups[0].ingress[0].ports', text: SG('      - { protocol: 47, ports: 1-2, cidr: 0.0.0.0/0 }\n'), where: '1-2' },
  { name: 'icmp without type', code: 'MissingParameter', path: 'securityGroups[0].ingress[0].icmpType', text: SG('      - { protocol: icmp, cidr: 0.0.0.0/0 }\n'), where: '{ protocol' },
  { name: 'icmp with ports', code: 'InvalidParameterValue', path: 'securityGroups[0].ingress[0].ports', text: SG('      - { protocol: icmp, ports: 8, cidr: 0.0.0.0/0 }\n'), where: ['8', 'ports'] },
  { name: 'icmp type -1 with a code', code: 'InvalidParameterValue', path: 'securityGroups[0].ingress[0].icmpCode', text: SG('      - { protocol: icmp, icmpType: -1, icmpCode: 3, cidr: 0.0.0.0/0 }\n'), where: '3,' },
  { name: 'icmp type above 255', code: 'InvalidParameterValue', path: 'securityGroups[0].ingress[0].icmpType', text: SG('      - { protocol: icmpv6, icmpType: 300, cidr: "::/0" }\n'), where: '300' },
  { name: 'icmpType on tcp', code: 'InvalidParameterValue', path: 'securityGroups[0].ingress[0].icmpType', text: SG('      - { protocol: tcp, ports: 1, icmpType: 3, cidr: 0.0.0.0/0 }\n'), where: '3,' },

  // --- rules: peers
  { name: 'no peer', code: 'MissingParameter', path: 'securityGroups[0].ingress[0]', text: SG('      - { protocol: tcp, ports: 22 }\n'), where: '{ protocol' },
  { name: 'only empty peer lists', code: 'MissingParameter', path: 'securityGroups[0].ingress[0]', text: SG('      - { protocol: tcp, ports: 22, cidr: [] }\n'), where: '{ protocol' },
  { name: 'malformed CIDR', code: 'InvalidParameterValue', path: 'securityGroups[0].ingress[0].cidr', text: SG('      - { protocol: tcp, ports: 22, cidr: 300.1.1.1/8 }\n'), where: '300.1.1.1/8' },
  { name: 'CIDR without prefix', code: 'InvalidParameterValue', path: 'securityGroups[0].ingress[0].cidr[1]', text: SG('      - { protocol: tcp, ports: 22, cidr: [0.0.0.0/0, 10.1.1.1] }\n'), where: '10.1.1.1' },
  { name: 'IPv6 prefix too long', code: 'InvalidParameterValue', path: 'securityGroups[0].ingress[0].cidr', text: SG('      - { protocol: tcp, ports: 22, cidr: "::1/129" }\n'), where: '"::1/129"' },
  { name: 'unknown group', code: 'InvalidGroup.NotFound', path: 'securityGroups[0].ingress[0].groups[0]', text: SG('      - { protocol: tcp, ports: 22, groups: [sg-nope] }\n'), where: 'sg-nope' },
  { name: 'unknown prefix list', code: 'InvalidPrefixListID.NotFound', path: 'securityGroups[0].ingress[0].prefixLists[0]', text: SG('      - { protocol: tcp, ports: 22, prefixLists: [pl-nope] }\n'), where: 'pl-nope' },
  { name: 'duplicate after host-bit normalisation', code: 'InvalidPermission.Duplicate', path: 'securityGroups[0].ingress[1].cidr',
    text: SG('      - { protocol: tcp, ports: 22, cidr: 100.68.0.0/18 }\n      - { protocol: tcp, ports: "22", cidr: 100.68.0.18/18 }\n'), where: '100.68.0.18/18' },
  { name: 'duplicate protocol number vs name', code: 'InvalidPermission.Duplicate', path: 'securityGroups[0].ingress[0].cidr[1]',
    text: SG('      - { protocol: udp, ports: 53, cidr: ["2001:db8::/32", "2001:DB8:0::/32"] }\n'), where: '"2001:DB8' },
  { name: 'description with a bad character', code: 'InvalidParameterValue', path: 'securityGroups[0].ingress[0].description',
    text: SG('      - { protocol: tcp, ports: 22, cidr: 0.0.0.0/0, description: "caf\u00e9 <ssh>" }\n'), where: '"caf' },
  { name: 'description too long', code: 'InvalidParameterValue', path: 'securityGroups[0].ingress[0].description',
    text: SG(`      - { protocol: tcp, ports: 22, cidr: 0.0.0.0/0, description: ${'x'.repeat(256)} }\n`), where: 'xxx' },
  { name: 'bad rule id', code: 'InvalidParameterValue', path: 'securityGroups[0].ingress[0].id', text: SG('      - { id: sgr-1, protocol: tcp, ports: 22, cidr: 0.0.0.0/0 }\n'), where: 'sgr-1' },

  // --- groups
  { name: 'group without id', code: 'MissingParameter', path: 'securityGroups[0].id', text: 'securityGroups:\n  - name: a\n', where: 'name: a' },
  { name: 'group id without sg-', code: 'InvalidParameterValue', path: 'securityGroups[0].id', text: 'securityGroups:\n  - id: web\n', where: 'web' },
  { name: 'duplicate group id', code: 'InvalidGroup.Duplicate', path: 'securityGroups[1].id', text: 'securityGroups:\n  - id: sg-a\n  - id: sg-a\n', where: { line: 3, column: 9 } },
  { name: 'duplicate group name, other case', code: 'InvalidGroup.Duplicate', path: 'securityGroups[1].name', text: 'securityGroups:\n  - { id: sg-a, name: Web }\n  - { id: sg-b, name: web }\n', where: 'web }' },
  { name: 'reserved name default', code: 'InvalidGroup.Reserved', path: 'securityGroups[0].name', text: 'securityGroups:\n  - { id: sg-a, name: Default }\n', where: 'Default' },
  { name: 'name starting with sg-', code: 'InvalidParameterValue', path: 'securityGroups[0].name', text: 'securityGroups:\n  - { id: sg-a, name: sg-web }\n', where: 'sg-web' },
  { name: 'unknown VPC', code: 'InvalidVpcID.NotFound', path: 'securityGroups[0].vpc', text: 'securityGroups:\n  - { id: sg-a, vpc: vpc-nope }\n', where: 'vpc-nope' },
  { name: 'group needs vpc when there are two', code: 'MissingParameter', path: 'securityGroups[0].vpc', text: 'vpcs: [{ id: vpc-a }, { id: vpc-b }]\nsecurityGroups:\n  - { id: sg-a }\n', where: '{ id: sg-a' },
  { name: 'rule references a group in another VPC', code: 'InvalidGroup.NotFound', path: 'securityGroups[1].ingress[0].groups[0]',
    text: 'vpcs: [{ id: vpc-a }, { id: vpc-b }]\nsecurityGroups:\n  - { id: sg-a, vpc: vpc-a }\n  - id: sg-b\n    vpc: vpc-b\n    ingress:\n      - { protocol: all, groups: [sg-a] }\n', where: 'sg-a] }' },
  { name: 'default group given twice', code: 'InvalidGroup.Duplicate', path: 'securityGroups[1].default', text: 'securityGroups:\n  - { default: true, ingress: [] }\n  - { default: true, egress: [] }\n', where: { line: 3, column: 5 } },
  { name: 'default group description is fixed', code: 'InvalidParameterValue', path: 'securityGroups[0].description', text: 'securityGroups:\n  - { default: true, description: mine }\n', where: 'mine' },
  { name: 'bad tag', code: 'InvalidParameterValue', path: 'securityGroups[0].tags', text: 'securityGroups:\n  - { id: sg-a, tags: [a, b] }\n', where: '[a, b]' },

  // --- prefix lists and VPCs
  { name: 'prefix list id', code: 'InvalidParameterValue', path: 'prefixLists[0].id', text: 'prefixLists:\n  - { id: office, entries: [10.0.0.0/8] }\n', where: 'office' },
  { name: 'prefix list maxEntries below entries', code: 'InvalidParameterValue', path: 'prefixLists[0].maxEntries', text: 'prefixLists:\n  - { id: pl-a, maxEntries: 1, entries: [10.0.0.0/8, 11.0.0.0/8] }\n', where: '1,' },
  { name: 'prefix list duplicate entry', code: 'InvalidParameterValue', path: 'prefixLists[0].entries[1]', text: 'prefixLists:\n  - { id: pl-a, entries: [10.0.0.0/8, 10.1.0.0/8] }\n', where: '10.1.0.0/8' },
  { name: 'VPC id', code: 'InvalidParameterValue', path: 'vpcs[0].id', text: 'vpcs: [{ id: local }]\n', where: 'local' },
  { name: 'empty vpcs', code: 'InvalidParameterValue', path: 'vpcs', text: 'vpcs: []\n', where: '[]' },

  // --- quotas
  { name: 'quota product over 1000', code: 'InvalidParameterValue', path: 'quotas', text: 'quotas:\n  groupsPerInstance: 16\n  rulesPerGroup: 100\n', where: 'groupsPerInstance' },
  { name: 'quota out of range', code: 'InvalidParameterValue', path: 'quotas.groupsPerInstance', text: 'quotas: { groupsPerInstance: 17 }\n', where: '17' },
  { name: 'too many groups on an instance', code: 'SecurityGroupsPerInstanceLimitExceeded', path: 'instances[0].securityGroups',
    text: `securityGroups:\n${[1, 2, 3, 4, 5, 6].map((i) => `  - { id: sg-${i} }\n`).join('')}instances:\n  - name: a\n    address: 127.0.0.2\n    securityGroups: [sg-1, sg-2, sg-3, sg-4, sg-5, sg-6]\n`, where: '[sg-1' },
  { name: 'group quota is configurable', code: 'SecurityGroupsPerInstanceLimitExceeded', path: 'instances[0].securityGroups',
    text: 'quotas: { groupsPerInstance: 1 }\nsecurityGroups: [{ id: sg-1 }]\ninstances:\n  - { name: a, address: 127.0.0.2, securityGroups: [sg-1, default] }\n', where: '[sg-1, default]' },
  { name: '61 IPv4 rules', code: 'RulesPerSecurityGroupLimitExceeded', path: 'securityGroups[0].ingress',
    text: SG(Array.from({ length: 61 }, (_, i) => `      - { protocol: tcp, ports: ${i + 1}, cidr: 10.0.0.0/8 }\n`).join('')), where: '- { protocol: tcp, ports: 1,' },
  { name: 'prefix list weighs its maxEntries', code: 'RulesPerSecurityGroupLimitExceeded', path: 'securityGroups[0].ingress',
    text: 'prefixLists: [{ id: pl-big, maxEntries: 60, entries: [10.0.0.0/8] }]\n' + SG('      - { protocol: tcp, ports: 1, prefixLists: [pl-big] }\n      - { protocol: tcp, ports: 2, groups: [a] }\n'), where: '- { protocol: tcp, ports: 1,' },

  // --- instances
  { name: 'instance without name', code: 'MissingParameter', path: 'instances[0].name', text: 'instances:\n  - { address: 127.0.0.2 }\n', where: '{ address' },
  { name: 'duplicate instance name', code: 'InvalidParameterValue', path: 'instances[1].name', text: 'instances:\n  - { name: a, address: 127.0.0.2 }\n  - { name: a, address: 127.0.0.3 }\n', where: ['a,', '127.0.0.2'] },
  { name: 'non-loopback address', code: 'InvalidParameterValue', path: 'instances[0].address', text: 'instances:\n  - { name: a, address: 10.0.0.2 }\n', where: '10.0.0.2' },
  { name: 'duplicate address', code: 'InvalidParameterValue', path: 'instances[1].address', text: 'instances:\n  - { name: a, address: 127.0.0.2 }\n  - { name: b, address: 127.0.0.2 }\n', where: ['127.0.0.2', 'name: b'] },
  { name: 'bad address6', code: 'InvalidParameterValue', path: 'instances[0].address6', text: 'instances:\n  - { name: a, address: 127.0.0.2, address6: "::g" }\n', where: '"::g"' },
  { name: 'bad instance id', code: 'InvalidParameterValue', path: 'instances[0].id', text: 'instances:\n  - { name: a, id: i-xyz, address: 127.0.0.2 }\n', where: 'i-xyz' },
  { name: 'unknown group on instance', code: 'InvalidGroup.NotFound', path: 'instances[0].securityGroups[0]', text: 'instances:\n  - { name: a, address: 127.0.0.2, securityGroups: [web] }\n', where: 'web' },
  { name: 'group of another VPC on instance', code: 'InvalidGroup.NotFound', path: 'instances[0].securityGroups[1]',
    text: 'vpcs: [{ id: vpc-a }, { id: vpc-b }]\nsecurityGroups:\n  - { id: sg-a, vpc: vpc-a }\n  - { id: sg-b, vpc: vpc-b }\ninstances:\n  - { name: a, address: 127.0.0.2, securityGroups: [sg-a, sg-b] }\n', where: 'sg-b]' },
  { name: 'same group twice on instance', code: 'InvalidParameterValue', path: 'instances[0].securityGroups[1]',
    text: 'securityGroups: [{ id: sg-a, name: a }]\ninstances:\n  - { name: a, address: 127.0.0.2, securityGroups: [sg-a, a] }\n', where: 'a] }' },
  { name: 'tcp timeout below 60', code: 'InvalidParameterValue', path: 'instances[0].connectionTracking.tcpEstablishedTimeout',
    text: 'instances:\n  - name: a\n    address: 127.0.0.2\n    connectionTracking: { tcpEstablishedTimeout: 59 }\n', where: '59' },
  { name: 'udp timeout above 60', code: 'InvalidParameterValue', path: 'instances[0].connectionTracking.udpTimeout',
    text: 'instances:\n  - name: a\n    address: 127.0.0.2\n    connectionTracking: { udpTimeout: 61 }\n', where: '61' },
  { name: 'udp stream timeout above 180', code: 'InvalidParameterValue', path: 'instances[0].connectionTracking.udpStreamTimeout',
    text: 'instances:\n  - name: a\n    address: 127.0.0.2\n    connectionTracking: { udpStreamTimeout: 181 }\n', where: '181' },
  { name: 'service protocol', code: 'InvalidParameterValue', path: 'instances[0].services[0].protocol',
    text: 'instances:\n  - name: a\n    address: 127.0.0.2\n    services: [{ protocol: icmp, port: 1, backend: 1 }]\n', where: 'icmp' },
  { name: 'service backend', code: 'InvalidParameterValue', path: 'instances[0].services[0].backend',
    text: 'instances:\n  - name: a\n    address: 127.0.0.2\n    services: [{ protocol: tcp, port: 1, backend: "127.0.0.1:99999" }]\n', where: '"127.0.0.1:99999"' },
  { name: 'service port 0', code: 'InvalidParameterValue', path: 'instances[0].services[0].port',
    text: 'instances:\n  - name: a\n    address: 127.0.0.2\n    services: [{ protocol: tcp, port: 0, backend: 1 }]\n', where: '0,' },
  { name: 'service collision', code: 'InvalidParameterValue', path: 'instances[0].services[1]',
    text: 'instances:\n  - name: a\n    address: 127.0.0.2\n    services:\n      - { protocol: tcp, port: 80, backend: 1 }\n      - { protocol: tcp, port: 81, listenPort: 80, backend: 2 }\n', where: '{ protocol: tcp, port: 81' },
  { name: 'outbound collides with a service', code: 'InvalidParameterValue', path: 'instances[0].outbound[0]',
    text: 'instances:\n  - name: a\n    address: 127.0.0.2\n    services: [{ protocol: udp, port: 53, backend: 1 }]\n    outbound: [{ protocol: udp, port: 53, to: 127.0.0.1:53 }]\n', where: '{ protocol: udp, port: 53, to' },
  { name: 'outbound to unknown instance', code: 'InvalidInstanceID.NotFound', path: 'instances[0].outbound[0].to',
    text: 'instances:\n  - name: a\n    address: 127.0.0.2\n    outbound: [{ protocol: tcp, port: 15432, to: "db:5432" }]\n', where: '"db:5432"' },
  { name: 'outbound to an instance without that service', code: 'InvalidParameterValue', path: 'instances[0].outbound[0].to',
    text: 'instances:\n  - name: a\n    address: 127.0.0.2\n    outbound: [{ protocol: tcp, port: 15432, to: "b:5432" }]\n  - name: b\n    address: 127.0.0.3\n    services: [{ protocol: udp, port: 5432, backend: 1 }]\n', where: '"b:5432"' },
  { name: 'outbound to malformed', code: 'InvalidParameterValue', path: 'instances[0].outbound[0].to',
    text: 'instances:\n  - name: a\n    address: 127.0.0.2\n    outbound: [{ protocol: tcp, port: 1, to: "::1:80" }]\n', where: '"::1:80"' },

  // --- addresses
  { name: 'address map family mismatch', code: 'InvalidParameterValue', path: 'addresses["127.0.0.1"]', text: 'addresses:\n  127.0.0.1: "2001:db8::1"\n', where: '"2001' },
  { name: 'address map size mismatch', code: 'InvalidParameterValue', path: 'addresses["127.0.1.0/24"]', text: 'addresses:\n  127.0.1.0/24: 203.0.113.0/25\n', where: '203' },
  { name: 'address map local overlap', code: 'InvalidParameterValue', path: 'addresses["127.0.1.7"]', text: 'addresses:\n  127.0.1.0/24: 203.0.113.0/24\n  127.0.1.7: 198.51.100.1\n', where: '127.0.1.7' },
  { name: 'address map appearance overlap', code: 'InvalidParameterValue', path: 'addresses["127.0.0.2"]', text: 'addresses:\n  127.0.0.1: 198.51.100.1\n  127.0.0.2: 198.51.100.1\n', where: ['198.51.100.1', '127.0.0.2'] },
  { name: 'address map garbage', code: 'InvalidParameterValue', path: 'addresses.nope', text: 'addresses:\n  nope: 198.51.100.1\n', where: 'nope' },
];

for (const c of cases) {
  t.test(`${c.code}: ${c.name}`, async (t) => {
    const errors = errorsOf(c.text);
    const e = errors.find((x) => x.code === c.code && x.path === c.path);
    if (!e) {
      t.fail(`expected ${c.code} at ${c.path}, got:\n${errors.map((x) => x.format()).join('\n') || '(no errors)'}`);
      return;
    }
    const want = typeof c.where === 'string' ? at(c.text, c.where) : Array.isArray(c.where) ? at(c.text, c.where[0], c.where[1]) : c.where;
    t.same({ line: e.line, column: e.column }, want, e.format());
    t.ok(e.message.length > 10, 'the message says something');
  });
}

t.test('all errors of a file come at once', async (t) => {
  const text = SG('      - { protocol: tcp, ports: "90-80", cidr: 0.0.0.0/0 }\n      - { protocol: tcp, ports: 22, cidr: 300.1.1.1/8 }\n      - { protocol: tcp, ports: 22, groups: [sg-x] }\n')
    + 'instances:\n  - { name: a, address: 10.0.0.1 }\n';
  const codes = errorsOf(text).map((e) => `${e.code} ${e.path}`);
  t.same(codes.sort(), [
    'InvalidGroup.NotFound securityGroups[0].ingress[2].groups[0]',
    'InvalidParameterValue instances[0].address',
    'InvalidParameterValue securityGroups[0].ingress[0].ports',
    'InvalidParameterValue securityGroups[0].ingress[1].cidr',
  ]);
});

t.test('SecurityGroupLimitExceeded past 2500 groups (defaults included)', async (t) => {
  const text = 'securityGroups:\n' + Array.from({ length: 2500 }, (_, i) => `  - { id: sg-${i} }\n`).join('');
  const errors = errorsOf(text);
  t.same(errors.map((e) => [e.code, e.path, e.line, e.column]), [['SecurityGroupLimitExceeded', 'securityGroups', 2, 3]]);
  t.same(errorsOf('securityGroups:\n' + Array.from({ length: 2499 }, (_, i) => `  - { id: sg-${i} }\n`).join('')), []);
});

t.test('the conformance example: bad CIDR reported on the rule line', async (t) => {
  const errors = errorsOf('securityGroups:\n  - id: sg-x\n    ingress:\n      - { protocol: tcp, ports: 22, cidr: 300.1.1.1/8 }\n');
  t.equal(errors.length, 1);
  t.equal(errors[0]?.code, 'InvalidParameterValue');
  t.equal(errors[0]?.line, 4);
  t.match(errors[0]?.format(), /^InvalidParameterValue securityGroups\[0\]\.ingress\[0\]\.cidr 4:\d+ .*300\.1\.1\.1\/8/);
});

t.test('messages name the value and what would be valid', async (t) => {
  const [e] = errorsOf(SG('      - { protocol: tcp, ports: "90-80", cidr: 0.0.0.0/0 }\n'));
  t.match(e?.message, /"90-80": start is above end; use "80-90"/);
  const [u] = errorsOf('securityGroups:\n  - { id: sg-a, Name: x }\n');
  t.match(u?.message, /did you mean "name"/);
  t.match(u?.message, /valid fields: .*description/);
  const [o] = errorsOf('vpcs: [{ id: vpc-a }, { id: vpc-b }]\nsecurityGroups:\n  - { id: sg-a, vpc: vpc-a }\ninstances:\n  - { name: a, vpc: vpc-b, address: 127.0.0.2, securityGroups: [sg-a] }\n');
  t.match(o?.message, /in another VPC/);
  const [p] = errorsOf(SG('      - { protocol: all, ports: 22, cidr: 0.0.0.0/0 }\n'));
  t.match(p?.message, /ports do not apply to protocol all/);
  const [m] = errorsOf(SG('      - { protocol: tcp, ports: 22 }\n'));
  t.match(m?.message, /^Missing source specification/);
});

t.test('issue 17: a value too large for a number is named as written, cut to a readable length', async (t) => {
  const huge = '1' + '0'.repeat(400);                  // YAML and JSON read it as Infinity
  const [p] = errorsOf(SG(`      - { protocol: tcp, ports: ${huge}, cidr: 0.0.0.0/0 }\n`));
  t.equal(p?.code, 'InvalidParameterValue');
  t.equal(p?.path, 'securityGroups[0].ingress[0].ports');
  t.notMatch(p?.message, /null|Infinity/, 'not the parsed value');
  t.match(p?.message, /^ports 1000000000\d{30}… \(401 characters\) is not valid/);
  t.ok((p?.message.length ?? 0) < 200, `message is short: ${p?.message.length} characters`);
  // The same in a JSON config, and as a string of digits (out of range, also named as written).
  const [j] = errorsOf(JSON.stringify({ securityGroups: [{ id: 'sg-a', ingress: [{ protocol: 'tcp', ports: 0, cidr: '0.0.0.0/0' }] }] })
    .replace('"ports":0', `"ports":${huge}`), 'c.json');
  t.match(j?.message, /^ports 10{39}… \(401 characters\) is not valid/);
  const [s] = errorsOf(SG(`      - { protocol: tcp, ports: "${huge}", cidr: 0.0.0.0/0 }\n`));
  t.equal(s?.code, 'InvalidPermission.Malformed');
  t.match(s?.message, /out of range in "10{38}… \(403 characters\); ports are 0\.\.65535/);
  const [i] = errorsOf(SG(`      - { protocol: icmp, icmpType: ${huge}, cidr: 0.0.0.0/0 }\n`));
  t.match(i?.message, /icmpType must be a whole number \(-1\.\.255\), found number 10{39}… \(401 characters\)/);
  const [r] = errorsOf(SG(`      - { protocol: ${huge}, cidr: 0.0.0.0/0 }\n`));
  t.match(r?.message, /^protocol 10{39}… \(401 characters\) is not valid/);
});
