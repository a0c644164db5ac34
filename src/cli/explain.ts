// `sgemu explain`: the decision for one flow and why (SPEC §3). Loads the config, hands the query
// to src/policy/explain.ts and prints the result. Exit 0 allow, 1 deny, 2 bad input.
// Must not: talk to a daemon (it answers from the config file alone).

import { loadConfigFile } from '../config/load.js';
import { UsageError } from '../model/errors.js';
import { explainFlow, type ExplainResult } from '../policy/explain.js';
import { COMMON_OPTIONS, EXIT_NEGATIVE, EXIT_OK, intOption, parseCommandArgs, printJson, type Command } from './command.js';

const OPTIONS = {
  ...COMMON_OPTIONS,
  from: { type: 'string' },
  to: { type: 'string' },
  protocol: { type: 'string', short: 'p' },
  port: { type: 'string' },
  'icmp-type': { type: 'string' },
  'icmp-code': { type: 'string' },
  'source-port': { type: 'string' },
} as const;

export function formatExplain(r: ExplainResult): string {
  const lines: string[] = [];
  const what = r.port !== null ? `${r.protocol}/${r.port}` : r.icmpType !== undefined ? `${r.protocol} type ${r.icmpType} code ${r.icmpCode}` : r.protocol;
  const src = r.source + (r.sourceInstance ? ` (${r.sourceInstance})` : '') + (r.sourceAppearsAs ? ` appears as ${r.sourceAppearsAs}` : '');
  const dst = r.destination + (r.destinationInstance ? ` (${r.destinationInstance})` : '') + (r.destinationAppearsAs ? ` appears as ${r.destinationAppearsAs}` : '');
  lines.push(`${r.decision.toUpperCase()} ${what} from ${src} to ${dst}`);
  for (const c of r.checks) {
    if (c.layer === 'nacl') {
      const pkt = c.path === 'reply' ? `reply to ${c.packetPort}` : `request to ${c.packetPort}`;
      lines.push(`  nacl ${c.path} ${c.networkAclId} (${c.subnet}, ${c.instance}) ${c.direction}: ${c.decision} by rule ${c.ruleNumber} (${pkt})`);
      for (const n of c.nearMisses) lines.push(`    near miss (${n.respect}): ${n.rule}`);
      continue;
    }
    lines.push(`  ${c.instance} ${c.direction}: ${c.decision}${c.decision === 'allow' ? (c.tracked ? ' (tracked)' : ' (untracked)') : ''}`);
    for (const m of c.matched) lines.push(`    matched ${m.groupId} ${m.ruleId} via ${m.via}`);
    for (const n of c.nearMisses) lines.push(`    near miss (${n.respect}): ${n.rule} [${n.ruleId}]`);
  }
  lines.push(`  reason: ${r.reason}`);
  return lines.join('\n') + '\n';
}

const explain: Command = {
  name: 'explain',
  summary: 'the decision for one flow and why (--from --to --protocol [--port])',
  usage: `Usage: sgemu explain --from SRC --to DST --protocol P [--port N] [--json] [-c FILE]

Tells whether a flow is allowed and why, from the config alone (no daemon needed). It evaluates
the source instance's egress rules and the destination instance's ingress rules, as they apply;
the flow is allowed only when every check allows (AWS: the union of the instance's groups).

SRC, DST   an address (127.0.0.1, ::1), addr:port or [v6]:port (DST's port is the port when
           --port is absent), or an instance name (web, web:8080). A local address that is an
           instance's address is that instance. Other local addresses appear to the rules as the
           config's addresses: map says. At least one end must be an instance.

Options:
  -p, --protocol P     tcp, udp, icmp, icmpv6, all or a protocol number 0..255 (required)
      --port N         destination port, required for tcp and udp (or give DST as addr:port)
      --icmp-type T    icmp/icmpv6 type (default 8, echo request; icmpv6 128)
      --icmp-code C    icmp/icmpv6 code (default 0)
      --source-port N  the client's port, where replies go (network ACLs check it; or give SRC as
                       addr:port). Default: every port of 32768-60999, the first denied reported
  -c, --config FILE    the config (default ./sgemu.yaml)
      --json           print one object: { decision, protocol, port, source, destination,
                       checks: [ { instance, direction, decision, tracked, matched, nearMisses } ], reason }
  -h, --help           this help

With subnets or network ACLs in the config, checks also list the NACLs both paths cross (SPEC §7):
the request (source subnet egress, destination ingress) and the replies (destination egress,
source ingress, to the client's port), each with the deciding rule number or * and its action.

A denied check lists near misses: rules that match in all but one respect (port, protocol, source
for ingress, destination for egress). "untracked" marks flows AWS does not track (CT §3.2): allowed
from 0.0.0.0/0 or ::/0 while the other direction is all open; revoking the rule cuts them at once.

Exit codes: 0 allowed, 1 denied, 2 bad input (bad address, unknown instance, bad protocol,
missing --port for tcp/udp, invalid config).

Example: sgemu explain --from 127.0.0.1 --to web --protocol tcp --port 22`,
  async run(argv) {
    const { values } = parseCommandArgs(argv, OPTIONS);
    if (values.from === undefined) throw new UsageError('--from SRC is required (an address, addr:port or instance name)');
    if (values.to === undefined) throw new UsageError('--to DST is required (an address, addr:port or instance name)');
    if (values.protocol === undefined) throw new UsageError('--protocol P is required (tcp, udp, icmp, icmpv6, all or 0..255)');
    const port = values.port === undefined ? undefined : intOption('port', values.port, 0, 65535, 0);
    const icmpType = values['icmp-type'] === undefined ? undefined : intOption('icmp-type', values['icmp-type'], 0, 255, 8);
    const icmpCode = values['icmp-code'] === undefined ? undefined : intOption('icmp-code', values['icmp-code'], 0, 255, 0);
    const sourcePort = values['source-port'] === undefined ? undefined : intOption('source-port', values['source-port'], 0, 65535, 0);
    const model = loadConfigFile(values.config);
    const result = explainFlow(model, {
      from: values.from, to: values.to, protocol: values.protocol,
      ...(port !== undefined ? { port } : {}),
      ...(icmpType !== undefined ? { icmpType } : {}),
      ...(icmpCode !== undefined ? { icmpCode } : {}),
      ...(sourcePort !== undefined ? { sourcePort } : {}),
    });
    if (values.json) printJson(result);
    else process.stdout.write(formatExplain(result));
    return result.decision === 'allow' ? EXIT_OK : EXIT_NEGATIVE;
  },
};

export default explain;
