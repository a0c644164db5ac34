// `sgemu lint`: risky rule sets with stable ids (SPEC §3), from the config alone.
// Exit 1 when any finding other than info remains after --ignore, 0 otherwise, 2 bad input.

import { loadConfigFile } from '../config/load.js';
import { UsageError } from '../model/errors.js';
import { formatFinding, lintModel, LINT_CHECKS } from '../policy/lint.js';
import { COMMON_OPTIONS, EXIT_NEGATIVE, EXIT_OK, parseCommandArgs, printJson, type Command } from './command.js';

const OPTIONS = { ...COMMON_OPTIONS, ignore: { type: 'string', multiple: true } } as const;

const catalogue = Object.entries(LINT_CHECKS).map(([id, c]) => `  ${id}  ${c.severity.padEnd(6)}  ${c.title}`).join('\n');

const lint: Command = {
  name: 'lint',
  summary: 'risky rule sets: world-open admin ports and databases, shadowed rules, ...',
  usage: `Usage: sgemu lint [-c FILE] [--json] [--ignore ID,ID...]

Looks for risky or untidy security groups. Each finding has a stable id:

${catalogue}

"The world" is 0.0.0.0/0 or ::/0. A port range that contains the port counts, and protocol all
contains every port. SG001: 22, 3389. SG002: 3306, 5432, 1433, 1521, 6379, 9200, 27017, 11211
(all-port rules are reported as SG003 instead). SG004: same group and direction, the broader
rule's protocol, ports and peer (CIDR containment, same group or prefix list) cover the other.
SG007 skips the VPCs' implicit default groups; SG005 and SG008 skip implicit rules (default egress, the default group's self rule).

Output: one finding per line, "SEVERITY ID where message" (where = path line:col in the file);
--json prints { "findings": [ { id, severity, groupId, ruleId, instance, path, line, column, message } ] }.

Options:
  -c, --config FILE   the config (default ./sgemu.yaml)
      --json          JSON output
      --ignore IDS    comma-separated ids to leave out, e.g. --ignore SG007,SG008 (repeatable)
  -h, --help          this help

Exit codes: 0 no findings (or only info ones), 1 any high/medium/low finding, 2 bad input.`,
  async run(argv) {
    const { values } = parseCommandArgs(argv, OPTIONS);
    const ignore = new Set<string>();
    for (const list of values.ignore ?? []) {
      for (const raw of list.split(',')) {
        const id = raw.trim().toUpperCase();
        if (id === '') continue;
        if (!(id in LINT_CHECKS)) throw new UsageError(`--ignore "${raw.trim()}" is not a lint id; ids: ${Object.keys(LINT_CHECKS).join(', ')}`);
        ignore.add(id);
      }
    }
    const model = loadConfigFile(values.config);
    const findings = lintModel(model).filter((f) => !ignore.has(f.id));
    if (values.json) printJson({ findings });
    else if (findings.length === 0) process.stdout.write(`ok: ${values.config}: no findings\n`);
    else for (const f of findings) process.stdout.write(formatFinding(f) + '\n');
    return findings.some((f) => f.severity !== 'info') ? EXIT_NEGATIVE : EXIT_OK;
  },
};

export default lint;
