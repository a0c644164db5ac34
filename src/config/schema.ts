// The shape of sgemu.yaml (SPEC §2), written once: a JSON Schema literal from which come
//   - the loader's field lists and id patterns (src/config/load.ts reads them from here),
//   - the TypeScript type of a config object (`ConfigFile`, used by the Node API's start()),
//   - the JSON Schema file shipped in the package (dist/sgemu.schema.json, written by
//     scripts/post-build.mjs through configJsonSchema()), which editors use through
//     `# yaml-language-server: $schema=…`.
// Must not: hold semantics the schema cannot express (references, quotas, CIDR arithmetic,
// uniqueness); the loader checks those and stays the authority: every config the loader accepts
// validates against the schema (test/config/schema.test.ts), not necessarily the reverse.
// The literal uses a subset of JSON Schema that FromSchema below turns into types: type, properties,
// required, additionalProperties, items, anyOf, enum, const, and annotations (description,
// pattern, minimum, maximum) that types ignore.

/** Ids as the loader checks them: a prefix and 1..63 of letters, digits, . _ - */
const ID_TAIL = '[A-Za-z0-9][A-Za-z0-9._-]{0,62}';
export const PATTERNS = {
  vpcId: `^vpc-${ID_TAIL}$`,
  groupId: `^sg-${ID_TAIL}$`,
  prefixListId: `^pl-${ID_TAIL}$`,
  instanceId: '^i-[0-9a-f]{1,32}$',
  instanceName: '^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$',
  ruleId: '^sgr-[0-9a-f]{17}$',
  networkAclId: `^acl-${ID_TAIL}$`,
  subnetId: `^subnet-${ID_TAIL}$`,
} as const;

const str = { type: 'string' } as const;
/** A list, or (where the loader allows it) one value standing for a one-item list. */
const oneOrMany = <T extends object>(item: T) => ({ anyOf: [item, { type: 'array', items: item }] }) as const;
const port = { type: 'integer', minimum: 1, maximum: 65535 } as const;

const protocol = {
  description: 'tcp | udp | icmp | icmpv6 | all | -1 | an IP protocol number 0..255',
  anyOf: [
    { enum: ['tcp', 'udp', 'icmp', 'icmpv6', 'all', '-1'] },
    { type: 'integer', minimum: -1, maximum: 255 },
    { type: 'string', pattern: '^-?[0-9]{1,3}$' },
  ],
} as const;

const l4 = { description: 'tcp or udp', enum: ['tcp', 'udp', 6, 17, '6', '17'] } as const;

const rule = {
  type: 'object',
  additionalProperties: false,
  required: ['protocol'],
  properties: {
    protocol,
    ports: {
      description: 'tcp/udp: a port (8080), a range ("8000-8100") or all',
      anyOf: [{ type: 'integer', minimum: 0, maximum: 65535 }, { type: 'string', pattern: '^\\s*([Aa][Ll][Ll]|[0-9]{1,5}(\\s*-\\s*[0-9]{1,5})?)\\s*$' }],
    },
    icmpType: { description: 'icmp/icmpv6 type, -1 = any', type: 'integer', minimum: -1, maximum: 255 },
    icmpCode: { description: 'icmp/icmpv6 code, -1 = any', type: 'integer', minimum: -1, maximum: 255 },
    cidr: { description: 'IPv4 or IPv6 CIDR(s) the rule allows', ...oneOrMany(str) },
    groups: { description: 'security groups (id or name, same VPC; self) whose instances the rule allows', ...oneOrMany(str) },
    prefixLists: { description: 'managed prefix list ids', ...oneOrMany(str) },
    description: str,
    id: { description: 'a fixed rule id (state files); default: derived from the content', type: 'string', pattern: PATTERNS.ruleId },
  },
} as const;

const securityGroup = {
  type: 'object',
  additionalProperties: false,
  properties: {
    id: { description: 'sg-…, unique', type: 'string', pattern: PATTERNS.groupId },
    name: { description: 'GroupName, unique per VPC; rules and instances may use it instead of the id', type: 'string' },
    vpc: { description: 'needed when there are several VPCs', type: 'string', pattern: PATTERNS.vpcId },
    description: str,
    tags: { type: 'object', additionalProperties: str },
    ingress: { description: 'default: none (all inbound denied)', type: 'array', items: rule },
    egress: { description: 'omitted: all traffic to 0.0.0.0/0 and ::/0 (the AWS default); [] denies all', type: 'array', items: rule },
    default: { description: "true: these are the rules of the VPC's implicit default group (no id or name)", type: 'boolean' },
  },
  // A group needs an id, except the VPC's default group given with `default: true`.
  if: { properties: { default: { const: true } }, required: ['default'] },
  then: {},
  else: { required: ['id'] },
} as const;

const fault = {
  description: "a fault on allowed flows (SPEC.md §9): Toxiproxy's toxics for TCP (latency, bandwidth, slow_close, timeout, reset_peer, slicer, limit_data); latency, loss, duplicate, reorder for UDP",
  type: 'object',
  additionalProperties: false,
  required: ['type'],
  properties: {
    name: { description: 'unique per service; default <type>_<stream>', type: 'string', pattern: '^[A-Za-z0-9_.:-]{1,64}$' },
    type: { type: 'string', enum: ['latency', 'bandwidth', 'slow_close', 'timeout', 'reset_peer', 'slicer', 'limit_data', 'loss', 'duplicate', 'reorder'] },
    stream: { description: 'upstream: client to backend; downstream (default): backend to client', type: 'string', enum: ['upstream', 'downstream'] },
    toxicity: { description: 'probability (0..1, default 1) that a new flow gets the fault', type: 'number', minimum: 0, maximum: 1 },
    attributes: { description: 'numbers; times in ms (the slicer delay in µs), bandwidth rate in KB/s', type: 'object', additionalProperties: { type: 'number' } },
  },
} as const;
const faults = { description: 'faults on the allowed flows, a chain per direction in this order', type: 'array', maxItems: 16, items: fault } as const;

const service = {
  type: 'object',
  additionalProperties: false,
  required: ['protocol', 'port', 'backend'],
  properties: {
    protocol: l4,
    port: { description: 'the port the rules see', ...port },
    listenPort: { description: 'the socket port when it differs from port (e.g. 2222 for 22)', ...port },
    backend: { description: 'host:port, [ipv6]:port or a port on 127.0.0.1', anyOf: [str, port] },
    faults,
  },
} as const;

const outbound = {
  type: 'object',
  additionalProperties: false,
  required: ['protocol', 'port', 'to'],
  properties: {
    protocol: l4,
    port: { description: 'the app connects to the instance address on this port', ...port },
    to: { description: 'instanceName:port, ipv4:port or [ipv6]:port', type: 'string' },
    as: { description: 'for an outside target: the address:port the rules see', type: 'string' },
    faults,
  },
} as const;

const connectionTracking = {
  type: 'object',
  additionalProperties: false,
  properties: {
    tcpEstablishedTimeout: { description: 'seconds', type: 'integer', minimum: 60, maximum: 432000 },
    udpTimeout: { description: 'seconds', type: 'integer', minimum: 30, maximum: 60 },
    udpStreamTimeout: { description: 'seconds', type: 'integer', minimum: 60, maximum: 180 },
  },
} as const;

const networkAclEntry = {
  type: 'object',
  additionalProperties: false,
  required: ['ruleNumber', 'egress', 'protocol', 'cidr', 'action'],
  properties: {
    ruleNumber: { description: '1..32766, unique per direction; lowest first, first match decides', type: 'integer', minimum: 1, maximum: 32766 },
    egress: { description: 'true: outbound, false: inbound', type: 'boolean' },
    protocol,
    ports: { description: 'tcp/udp: 443 | "1024-65535" | all', anyOf: [port, str] },
    icmpType: { type: 'integer', minimum: -1, maximum: 255 },
    icmpCode: { type: 'integer', minimum: -1, maximum: 255 },
    cidr: { description: 'IPv4 or IPv6 CIDR', type: 'string' },
    action: { enum: ['allow', 'deny'] },
  },
} as const;

const networkAcl = {
  type: 'object',
  additionalProperties: false,
  required: ['id'],
  properties: {
    id: { description: 'acl-…; a NACL defined here starts with only the final * deny', type: 'string', pattern: PATTERNS.networkAclId },
    vpc: { type: 'string', pattern: PATTERNS.vpcId },
    default: { description: "true: the VPC's default NACL (used by subnets that name none)", type: 'boolean' },
    tags: { type: 'object', additionalProperties: str },
    entries: { type: 'array', items: networkAclEntry },
  },
} as const;

const subnet = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'cidr'],
  properties: {
    id: { type: 'string', pattern: PATTERNS.subnetId },
    vpc: { type: 'string', pattern: PATTERNS.vpcId },
    cidr: { description: 'IPv4 CIDR of the subnet', type: 'string' },
    networkAcl: { description: "acl-…; default: the VPC's default NACL", type: 'string', pattern: PATTERNS.networkAclId },
  },
} as const;

const instance = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'address'],
  properties: {
    name: { type: 'string', pattern: PATTERNS.instanceName },
    id: { type: 'string', pattern: PATTERNS.instanceId },
    vpc: { type: 'string', pattern: PATTERNS.vpcId },
    subnet: { description: "subnet-…; default: the VPC's implicit subnet (crosses no NACL)", type: 'string', pattern: PATTERNS.subnetId },
    address: { description: 'the private IPv4 address, on loopback (127.0.0.0/8)', type: 'string' },
    address6: { description: 'an IPv6 address (e.g. ::1)', type: 'string' },
    securityGroups: { description: "ids or names; default: the VPC's default group", ...oneOrMany(str) },
    connectionTracking,
    services: { description: 'inbound: what runs on the instance', type: 'array', items: service },
    outbound: { description: 'connections the instance makes', type: 'array', items: outbound },
  },
} as const;

const prefixList = {
  type: 'object',
  additionalProperties: false,
  required: ['id', 'entries'],
  properties: {
    id: { type: 'string', pattern: PATTERNS.prefixListId },
    name: str,
    maxEntries: { type: 'integer', minimum: 1, maximum: 1000 },
    entries: {
      type: 'array',
      items: {
        anyOf: [
          str,
          { type: 'object', additionalProperties: false, required: ['cidr'], properties: { cidr: str, description: str } },
        ],
      },
    },
  },
} as const;

export const CONFIG_SCHEMA = {
  title: 'sgemu config (sgemu.yaml)',
  description: 'AWS security groups in front of local services: VPCs, groups and rules, instances and their services',
  type: 'object',
  additionalProperties: false,
  properties: {
    region: { description: 'default us-east-1', type: 'string', pattern: '^[a-z]{2}(-[a-z]+)+-[0-9]{1,2}$' },
    accountId: { description: '12 digits, quoted', anyOf: [{ type: 'string', pattern: '^[0-9]{12}$' }, { type: 'integer', minimum: 0 }] },
    vpcs: {
      description: 'default: one VPC, vpc-local',
      type: 'array',
      items: {
        anyOf: [
          { type: 'string', pattern: PATTERNS.vpcId },
          { type: 'object', additionalProperties: false, required: ['id'], properties: { id: { type: 'string', pattern: PATTERNS.vpcId } } },
        ],
      },
    },
    prefixLists: { type: 'array', items: prefixList },
    networkAcls: { type: 'array', items: networkAcl },
    subnets: { type: 'array', items: subnet },
    securityGroups: { type: 'array', items: securityGroup },
    instances: { type: 'array', items: instance },
    addresses: {
      description: 'local address or CIDR → the address or CIDR the rules see it as',
      type: 'object',
      additionalProperties: str,
    },
    quotas: {
      type: 'object',
      additionalProperties: false,
      properties: {
        groupsPerInstance: { type: 'integer', minimum: 1, maximum: 16 },
        rulesPerGroup: { type: 'integer', minimum: 1, maximum: 1000 },
        networkAclEntries: { description: 'per direction (AWS: 20, up to 40)', type: 'integer', minimum: 1, maximum: 40 },
      },
    },
  },
} as const;

/** The object schemas the loader reads field lists from. */
export const CONFIG_OBJECTS = {
  top: CONFIG_SCHEMA,
  vpc: CONFIG_SCHEMA.properties.vpcs.items.anyOf[1],
  quotas: CONFIG_SCHEMA.properties.quotas,
  prefixList,
  prefixListEntry: prefixList.properties.entries.items.anyOf[1],
  securityGroup,
  rule,
  instance,
  connectionTracking,
  service,
  outbound,
  networkAcl,
  networkAclEntry,
  subnet,
} as const;

/** The field names of one object schema, in schema order. */
export function fieldsOf<K extends keyof typeof CONFIG_OBJECTS>(k: K): readonly (keyof (typeof CONFIG_OBJECTS)[K]['properties'] & string)[] {
  return Object.keys(CONFIG_OBJECTS[k].properties) as (keyof (typeof CONFIG_OBJECTS)[K]['properties'] & string)[];
}

// ------------------------------------------------------------------------------------ types

type Writable<T> = { -readonly [K in keyof T]: T[K] };
type Simplify<T> = { [K in keyof T]: T[K] } & {};
type ObjectOf<P, R> = Simplify<
  Writable<{ [K in keyof P as K extends R ? K : never]: FromSchema<P[K]> }>
  & { -readonly [K in keyof P as K extends R ? never : K]?: FromSchema<P[K]> }
>;

/** The TypeScript type a (subset) JSON Schema literal describes. */
export type FromSchema<T> =
  T extends { readonly anyOf: readonly (infer U)[] } ? FromSchema<U>
  : T extends { readonly enum: readonly (infer E)[] } ? E
  : T extends { readonly const: infer C } ? C
  : T extends { readonly type: 'object'; readonly properties: infer P } ? ObjectOf<P, T extends { readonly required: readonly (infer R)[] } ? R : never>
  : T extends { readonly type: 'object'; readonly additionalProperties: infer A } ? Record<string, FromSchema<A>>
  : T extends { readonly type: 'array'; readonly items: infer I } ? FromSchema<I>[]
  : T extends { readonly type: 'string' } ? string
  : T extends { readonly type: 'integer' | 'number' } ? number
  : T extends { readonly type: 'boolean' } ? boolean
  : unknown;

/** A config object as start({ config }) takes it: the shape of sgemu.yaml. */
export type ConfigFile = FromSchema<typeof CONFIG_SCHEMA>;
export type ConfigRule = FromSchema<typeof rule>;
export type ConfigSecurityGroup = FromSchema<typeof securityGroup>;
export type ConfigInstance = FromSchema<typeof instance>;
export type ConfigService = FromSchema<typeof service>;

// ------------------------------------------------------------------------------ JSON Schema

/**
 * The schema as a JSON document (draft-07), for editors and validators. Two widenings the loader
 * makes are added here rather than written into every field: an optional field may be null (the
 * loader treats `key:` with no value as absent), and a whole number may be written as a digit
 * string (YAML users quote ports: "8080").
 */
export function configJsonSchema(version: string): Record<string, unknown> {
  const widen = (s: unknown, optional: boolean): unknown => {
    if (Array.isArray(s)) return s.map((x) => widen(x, false));
    if (typeof s !== 'object' || s === null) return s;
    const o: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(s)) {
      if (k === 'properties' && typeof v === 'object' && v !== null) {
        const req = new Set(Array.isArray((s as { required?: unknown }).required) ? (s as { required: string[] }).required : []);
        o[k] = Object.fromEntries(Object.entries(v).map(([pk, pv]) => [pk, widen(pv, !req.has(pk))]));
      } else if (k === 'if') {
        o[k] = v;
      } else {
        o[k] = widen(v, false);
      }
    }
    let out: Record<string, unknown> = o;
    if (o.type === 'integer') {
      const { description, ...rest } = o;
      out = { ...(description !== undefined ? { description } : {}), anyOf: [rest, { type: 'string', pattern: '^\\s*-?[0-9]{1,12}\\s*$' }] };
    }
    if (optional) {
      const { description, ...rest } = out;
      out = { ...(description !== undefined ? { description } : {}), anyOf: [rest, { type: 'null' }] };
    }
    return out;
  };
  return {
    $schema: 'http://json-schema.org/draft-07/schema#',
    $comment: `generated from src/config/schema.ts of sgemu ${version}; do not edit`,
    ...(widen(CONFIG_SCHEMA, false) as Record<string, unknown>),
  };
}
