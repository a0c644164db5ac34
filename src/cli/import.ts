// `sgemu import --from aws|cloudformation|terraform FILE`: converts security groups described
// elsewhere into an sgemu config (SPEC §2) on stdout; warnings go to stderr and into the header.
// Exit 0 on success, 2 on bad input. Must not: write any file (redirect stdout to keep it).

import { readFileSync } from 'node:fs';
import { UsageError } from '../model/errors.js';
import { importAws } from '../import/aws.js';
import { importCloudFormation, parseTemplate } from '../import/cloudformation.js';
import { renderText, type ImportResult, type ImportSource } from '../import/common.js';
import { importTerraform } from '../import/terraform.js';
import { COMMON_OPTIONS, EXIT_OK, parseCommandArgs, printJson, type Command } from './command.js';
import { schemaLine } from './schema-line.js';

const OPTIONS = { ...COMMON_OPTIONS, from: { type: 'string' }, instances: { type: 'string' }, 'network-acls': { type: 'string' }, subnets: { type: 'string' } } as const;
const SOURCES: readonly ImportSource[] = ['aws', 'cloudformation', 'terraform'];
const MAX_INPUT_BYTES = 64 * 1024 * 1024;

function readText(file: string, what: string): string {
  try {
    const text = readFileSync(file === '-' ? 0 : file, 'utf8');
    if (text.length > MAX_INPUT_BYTES) throw new UsageError(`${what} ${file} is over ${MAX_INPUT_BYTES} bytes`);
    return text;
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`cannot read ${what} ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
  }
}

function readJson(file: string, what: string): unknown {
  const text = readText(file, what);
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new UsageError(`${what} ${file} is not JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/** Runs one importer on a file (and the optional describe-instances file). */
export function importFile(source: ImportSource, file: string, instancesFile?: string, naclsFile?: string, subnetsFile?: string): ImportResult {
  const instances = instancesFile === undefined ? undefined : readJson(instancesFile, '--instances file');
  if (instances !== undefined && source !== 'aws') throw new UsageError('--instances (describe-instances JSON) goes with --from aws');
  if ((naclsFile !== undefined || subnetsFile !== undefined) && source !== 'aws') throw new UsageError('--network-acls and --subnets (describe-network-acls / describe-subnets JSON) go with --from aws');
  const nacls = naclsFile === undefined ? undefined : readJson(naclsFile, '--network-acls file');
  const subnets = subnetsFile === undefined ? undefined : readJson(subnetsFile, '--subnets file');
  switch (source) {
    case 'aws': return importAws(readJson(file, 'describe-security-groups output'), instances, nacls, subnets);
    case 'cloudformation': return importCloudFormation(parseTemplate(readText(file, 'template'), file));
    case 'terraform': return importTerraform(readJson(file, 'terraform show -json output'));
  }
}

const importCmd: Command = {
  name: 'import',
  summary: 'convert AWS / CloudFormation / Terraform security groups to an sgemu config',
  usage: `Usage: sgemu import --from aws|cloudformation|terraform FILE [--instances FILE] [--json]

Prints an sgemu config (YAML, with a header comment saying where it came from) on stdout, ready for
'sgemu check'. Group ids, names, descriptions, tags and rule descriptions are kept.

  --from aws             FILE is 'aws ec2 describe-security-groups' JSON. Each source of an
                         IpPermission is one rule; rules are joined back per description.
                         The VPC's "default" group becomes "default: true" (references: default).
  --from cloudformation  FILE is a template (JSON or YAML; short tags such as !Ref are read):
                         AWS::EC2::SecurityGroup and standalone SecurityGroupIngress/Egress.
                         Groups get the id sg-<logical id in lower case>; Ref / Fn::GetAtt GroupId
                         resolve to it; Ref to a parameter uses its Default.
  --from terraform       FILE is 'terraform show -json' (state or plan): aws_security_group,
                         aws_vpc_security_group_ingress_rule/_egress_rule, aws_security_group_rule,
                         in the root module and child modules.
  --instances FILE       (with aws) 'aws ec2 describe-instances' JSON: adds the instances on loopback
                         addresses 127.0.0.10, .11, ...; the header maps them to their private IPs.
  --network-acls FILE    (with aws) 'aws ec2 describe-network-acls' JSON: network ACLs and the
                         subnets they are associated with (FILE itself may be this output too)
  --subnets FILE         (with aws) 'aws ec2 describe-subnets' JSON: subnet CIDRs and VPCs
  CloudFormation also reads AWS::EC2::NetworkAcl, NetworkAclEntry, SubnetNetworkAclAssociation and
  Subnet; Terraform aws_network_acl, aws_network_acl_rule, aws_network_acl_association, aws_subnet.
      --json             print the config as JSON instead of YAML (no header)
  FILE may be - for stdin.

Things the config cannot hold are left out with a warning (stderr and the header): peers naming
groups not in the input, values CloudFormation resolves only at deploy time (Fn::ImportValue, ...).
Prefix lists used but not defined get an entry with no entries: fill them in.
Groups in several VPCs produce a vpcs: list and a vpc: on each group.

Exit codes: 0 converted, 2 bad input (unreadable file, wrong format).`,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(argv, OPTIONS, true);
    const source = values.from;
    if (source === undefined || !(SOURCES as readonly string[]).includes(source)) {
      throw new UsageError(`--from ${source === undefined ? 'is required' : `"${source}" is not a source`}: use --from aws, cloudformation or terraform`);
    }
    if (positionals.length !== 1 || positionals[0] === undefined) {
      throw new UsageError(`give exactly one input FILE (got ${positionals.length}), e.g. sgemu import --from ${source} groups.json`);
    }
    const file = positionals[0];
    const res = importFile(source as ImportSource, file, values.instances, values['network-acls'], values.subnets);
    for (const w of res.warnings) process.stderr.write(`sgemu import: warning: ${w}\n`);
    if (values.json) printJson(res.config);
    else process.stdout.write(schemaLine() + '\n' + renderText(res, source as ImportSource, file));
    return EXIT_OK;
  },
};

export default importCmd;
