// `sgemu check`: validates a config file and lists every error as `CODE path line:col message`.
// Exit 0 when valid, 2 when not (SPEC §3). Errors go to stdout: they are this command's output.
// Must not: print a stack trace for a bad file (the loader only throws ConfigErrors).

import { ConfigErrors } from '../model/errors.js';
import { loadConfigFile } from '../config/load.js';
import { COMMON_OPTIONS, EXIT_OK, EXIT_USAGE, parseCommandArgs, printJson, type Command } from './command.js';

const check: Command = {
  name: 'check',
  summary: 'validate a config; lists every error as CODE path line:col message',
  usage: `Usage: sgemu check [-c FILE] [--json]

Validates an sgemu config (YAML or JSON) the way AWS would validate the same security groups:
schema, references between groups, prefix lists, VPCs and instances, subnets and network ACLs
(rule numbers, CIDRs, associations), and AWS's quotas.
Every error is listed, one per line, as

  CODE path line:col message
  e.g. InvalidParameterValue securityGroups[0].ingress[1].ports 14:17 "90-80": start is above end; use "80-90"

CODE is the AWS error code where AWS has one (InvalidGroup.NotFound, InvalidPermission.Duplicate,
RulesPerSecurityGroupLimitExceeded, ...), path the place in the file, line:col 1-based.

Options:
  -c, --config FILE   the config to check (default ./sgemu.yaml)
      --json          print { "valid": bool, "errors": [ { code, path, line, column, message } ] }
  -h, --help          this help

Exit codes: 0 valid, 2 invalid (or bad usage).`,
  async run(argv) {
    const { values } = parseCommandArgs(argv, COMMON_OPTIONS);
    const file = values.config;
    try {
      const model = loadConfigFile(file);
      if (values.json) {
        printJson({ valid: true, errors: [] });
      } else {
        const rules = model.groups.reduce((n, g) => n + g.ingress.length + g.egress.length, 0);
        const subnets = model.subnets?.length ?? 0;
        const acls = (model.networkAcls ?? []).filter((a) => !a.isDefault).length;
        const net = subnets + acls > 0 ? `, ${subnets} subnets, ${acls} network ACLs` : '';
        process.stdout.write(`ok: ${file}: ${model.vpcs.length} VPCs, ${model.groups.length} groups, ${rules} rules, ${model.instances.length} instances${net}\n`);
      }
      return EXIT_OK;
    } catch (e) {
      if (!(e instanceof ConfigErrors)) throw e;
      if (values.json) {
        printJson({ valid: false, errors: e.errors.map((err) => err.toJSON()) });
      } else {
        for (const err of e.errors) process.stdout.write(err.format() + '\n');
      }
      return EXIT_USAGE;
    }
  },
};

export default check;
