// The parameters each EC2 action takes, and the UnknownParameter check EC2 makes before anything
// else: a parameter an action does not take is HTTP 400
//   <Code>UnknownParameter</Code><Message>The parameter Foo is not recognized</Message>
// (as EC2 answers, e.g. aws/aws-sdk-cpp#327 "The parameter Description is not recognized").
// Owns: the parameter shapes, from the EC2 API reference / botocore (reference §4.2), including
// parameters EC2 knows that sgemu does not act on (so those get UnsupportedOperation or are
// ignored by the handler, not UnknownParameter).
// Must not: check values (the handlers do).
//
// A shape is written as EC2 names parameters on the wire; `Name.N` is a flat list whose entries
// (indexes 1, 2, …) have the shape given:
//   IpPermissions.N ─ IpProtocol | FromPort | ToPort | IpRanges.N ─ CidrIp | Description | …

import { AwsError } from '../../../model/errors.js';
import { clip, type QNode } from './query.js';
import { NACL_PARAMETERS } from './nacl.js';

/** true = a plain value; ANY = anything below (parameters EC2 takes that sgemu never reads). */
type Shape = { readonly [name: string]: Shape | true | typeof ANY };
const ANY = 'any' as const;

/** Accepted on every action: the protocol's own parameters and query-string auth (SigV2, SigV4). */
const COMMON: Shape = {
  Action: true, Version: true, DryRun: true,
  AWSAccessKeyId: true, SignatureMethod: true, SignatureVersion: true, Signature: true, Timestamp: true, Expires: true, SecurityToken: true,
};
/** SigV4 presigned-query parameters: `X-Amz-Algorithm`, `X-Amz-Credential`, `X-Amz-Date`, … */
const SIGV4_QUERY = /^X-Amz-[A-Za-z0-9-]+$/;

const TAG: Shape = { Key: true, Value: true };
const TAG_SPEC: Shape = { ResourceType: true, 'Tag.N': TAG };
const FILTER: Shape = { Name: true, 'Value.N': true };
const PAGING: Shape = { MaxResults: true, NextToken: true, 'Filter.N': FILTER };
const IP_PERMISSION: Shape = {
  IpProtocol: true, FromPort: true, ToPort: true,
  'IpRanges.N': { CidrIp: true, Description: true },
  'Ipv6Ranges.N': { CidrIpv6: true, Description: true },
  'PrefixListIds.N': { PrefixListId: true, Description: true },
  'Groups.N': { GroupId: true, GroupName: true, UserId: true, VpcId: true, VpcPeeringConnectionId: true, PeeringStatus: true, Description: true },
};
/** The flat pre-IpPermissions form (EC2 marks it "not supported" for Egress but still takes it). */
const FLAT_PERMISSION: Shape = {
  IpProtocol: true, FromPort: true, ToPort: true, CidrIp: true, SourceSecurityGroupName: true, SourceSecurityGroupOwnerId: true,
};
const AUTHORIZE: Shape = { GroupId: true, GroupName: true, 'IpPermissions.N': IP_PERMISSION, 'TagSpecification.N': TAG_SPEC, ...FLAT_PERMISSION };
const REVOKE: Shape = { GroupId: true, GroupName: true, 'IpPermissions.N': IP_PERMISSION, 'SecurityGroupRuleId.N': true, ...FLAT_PERMISSION };
const UPDATE_DESCRIPTIONS: Shape = {
  GroupId: true, GroupName: true, 'IpPermissions.N': IP_PERMISSION,
  'SecurityGroupRuleDescription.N': { SecurityGroupRuleId: true, Description: true },
};
const TAGS: Shape = { 'ResourceId.N': true, 'Tag.N': TAG };
/** AttributeBooleanValue / AttributeValue structures: `SourceDestCheck.Value=false`. */
const VALUE: Shape = { Value: true };

export const ACTION_PARAMETERS: Readonly<Record<string, Shape>> = {
  CreateSecurityGroup: { GroupName: true, GroupDescription: true, VpcId: true, 'TagSpecification.N': TAG_SPEC },
  DeleteSecurityGroup: { GroupId: true, GroupName: true },
  DescribeSecurityGroups: { 'GroupId.N': true, 'GroupName.N': true, ...PAGING },
  DescribeSecurityGroupRules: { 'SecurityGroupRuleId.N': true, ...PAGING },
  AuthorizeSecurityGroupIngress: AUTHORIZE,
  AuthorizeSecurityGroupEgress: AUTHORIZE,
  RevokeSecurityGroupIngress: REVOKE,
  RevokeSecurityGroupEgress: REVOKE,
  ModifySecurityGroupRules: {
    GroupId: true,
    'SecurityGroupRule.N': {
      SecurityGroupRuleId: true,
      SecurityGroupRule: {
        IpProtocol: true, FromPort: true, ToPort: true, CidrIpv4: true, CidrIpv6: true, PrefixListId: true, ReferencedGroupId: true, Description: true,
      },
    },
  },
  UpdateSecurityGroupRuleDescriptionsIngress: UPDATE_DESCRIPTIONS,
  UpdateSecurityGroupRuleDescriptionsEgress: UPDATE_DESCRIPTIONS,
  // sgemu acts on GroupId.N only; the rest is EC2's and answered UnsupportedOperation.
  ModifyInstanceAttribute: {
    InstanceId: true, 'GroupId.N': true, Attribute: true, Value: true, 'BlockDeviceMapping.N': ANY,
    DisableApiStop: VALUE, DisableApiTermination: VALUE, EbsOptimized: VALUE, EnaSupport: VALUE,
    InstanceInitiatedShutdownBehavior: VALUE, InstanceType: VALUE, Kernel: VALUE, Ramdisk: VALUE,
    SourceDestCheck: VALUE, SriovNetSupport: VALUE, UserData: VALUE,
  },
  DescribeInstances: { 'InstanceId.N': true, ...PAGING },
  CreateTags: TAGS,
  DeleteTags: TAGS,
  DescribeTags: PAGING,
  ...NACL_PARAMETERS,
};

/** Shapes compiled to the QNode tree's form: named kids, numbered kids (list entries), leaf. */
interface Node {
  readonly leaf: boolean;          // may carry a value
  readonly any: boolean;           // anything below is accepted
  readonly kids: Map<string, Node>;
  item: Node | null;               // shape of `1`, `2`, … below this node
}

function compile(shape: Shape): Node {
  const node: Node = { leaf: false, any: false, kids: new Map(), item: null };
  for (const [key, sub] of Object.entries(shape)) {
    const list = key.endsWith('.N');
    const name = list ? key.slice(0, -2) : key;
    const target = sub === true ? LEAF : sub === ANY ? ANYTHING : compile(sub);
    if (list) {
      const holder: Node = { leaf: false, any: false, kids: new Map(), item: target };
      node.kids.set(name, holder);
    } else {
      node.kids.set(name, target);
    }
  }
  return node;
}

const LEAF: Node = { leaf: true, any: false, kids: new Map(), item: null };
const ANYTHING: Node = { leaf: true, any: true, kids: new Map(), item: null };

const COMPILED = new Map<string, Node>(
  Object.entries(ACTION_PARAMETERS).map(([action, shape]) => [action, compile({ ...COMMON, ...shape })]),
);

/** Action, Version, DryRun and query-string auth: parameters every action takes. */
export function isCommonParameter(name: string): boolean {
  return Object.hasOwn(COMMON, name) || SIGV4_QUERY.test(name);
}

/** The action names this module knows (all that the service serves). */
export function knownActions(): string[] {
  return [...COMPILED.keys()];
}

/**
 * Throws AwsError UnknownParameter (400) for the first parameter of `q` (in request order of the
 * tree, depth first) that `action` does not take. `action` must be one of knownActions().
 */
export function checkParameters(action: string, q: QNode): void {
  const root = COMPILED.get(action);
  if (!root) throw new Error(`no parameter shape for action ${action}`);
  walk(action, root, q, '', '');
}

/** `prefix` is the path as sent (`IpPermissions.2.`), `pattern` the same with N (`IpPermissions.N.`). */
function walk(action: string, shape: Node, q: QNode, prefix: string, pattern: string): void {
  if (shape.any) return;
  if (q.value !== undefined && !shape.leaf && prefix !== '') unknown(action, prefix.slice(0, -1), shape, pattern);
  for (const [seg, kid] of q.kids) {
    const path = prefix + seg;
    const numbered = /^\d+$/.test(seg);
    const sub = numbered ? shape.item ?? undefined : shape.kids.get(seg);
    if (!sub && prefix === '' && SIGV4_QUERY.test(seg) && kid.kids.size === 0) continue;
    if (!sub) unknown(action, firstLeaf(path, kid), shape, pattern);
    walk(action, sub, kid, path + '.', pattern + (numbered ? 'N' : seg) + '.');
  }
}

/** The full name of one parameter under `node` (what the client actually sent). */
function firstLeaf(path: string, node: QNode): string {
  let p = path;
  let n = node;
  while (n.value === undefined) {
    const first = n.kids.entries().next();
    if (first.done) break;
    p += '.' + first.value[0];
    n = first.value[1];
  }
  return p;
}

/** UnknownParameter, with what the action takes at that level (EC2's text, then sgemu's hint). */
function unknown(action: string, name: string, at: Node, pattern: string): never {
  const names = [...at.kids.entries()].filter(([k]) => pattern !== '' || !Object.hasOwn(COMMON, k)).map(([k, v]) => (v.item ? `${k}.N` : k));
  const hint = at.item ? `${pattern}N (a list: ${pattern}1, ${pattern}2, …)`
    : names.length === 0 ? `no parameter below ${pattern.slice(0, -1)}`
    : pattern === '' ? names.join(', ') : `${pattern}{${names.join(', ')}}`;
  throw new AwsError('UnknownParameter', `The parameter ${clip(name)} is not recognized (${action} takes ${clip(hint, 400)})`);
}
