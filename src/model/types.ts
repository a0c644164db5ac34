// The validated model of an sgemu world: VPCs, security groups and their rules, prefix lists,
// instances with their services and outbound entries, and the address map.
//
// Owns: plain data types and the numeric constants the rest of the code indexes by.
// Must not: do I/O, import anything, or hold derived indexes (the policy compiler builds those).
// Invariants (established by src/config, relied on everywhere else):
//   - every CIDR is canonical (host bits cleared, IPv6 in RFC 5952 form), family matches the text;
//   - every groupId / prefixListId / vpcId a rule or instance names exists, in the same VPC;
//   - one Rule has exactly one peer (AWS: each source of an IpPermission becomes its own rule);
//   - rule ids are `sgr-` + 17 hex and stable for the same group + rule content.

/** IANA protocol numbers; -1 is AWS's "all protocols". */
export const PROTO_ALL = -1;
export const PROTO_ICMP = 1;
export const PROTO_TCP = 6;
export const PROTO_UDP = 17;
export const PROTO_ICMPV6 = 58;

export const INGRESS = 0;
export const EGRESS = 1;
export type Direction = typeof INGRESS | typeof EGRESS;
export const DIRECTION_NAMES = ['ingress', 'egress'] as const;

/** Where a node came from in the config file (1-based line and column), for error messages. */
export interface SourcePos {
  path: string;   // e.g. "securityGroups[0].ingress[1].ports"
  line: number;
  column: number;
}

export type Peer =
  | { kind: 'cidr'; cidr: string; family: 4 | 6 }         // canonical CIDR text
  | { kind: 'group'; groupId: string }                    // AWS UserIdGroupPair (same VPC)
  | { kind: 'prefixList'; prefixListId: string };

/**
 * One security group rule, one peer. Ports:
 *   tcp/udp: fromPort..toPort inclusive, 0..65535;
 *   icmp/icmpv6: fromPort = ICMP type, toPort = ICMP code, -1 = any (type -1 implies code -1);
 *   all (-1) and other protocol numbers: fromPort = toPort = -1 (all ports, as AWS).
 */
export interface Rule {
  id: string;                 // sgr-xxxxxxxxxxxxxxxxx
  groupId: string;
  direction: Direction;
  protocol: number;           // -1 or 0..255
  fromPort: number;
  toPort: number;
  peer: Peer;
  description: string;        // '' when none
  pos?: SourcePos;            // the rule's node in the config, when it came from a file
}

export interface SecurityGroup {
  id: string;                 // sg-...
  name: string;               // GroupName, unique (case-insensitively) per VPC
  vpcId: string;
  description: string;
  ingress: Rule[];
  egress: Rule[];
  isDefault: boolean;         // the VPC's implicit `default` group
  tags: Record<string, string>;
  pos?: SourcePos;
}

export interface Vpc {
  id: string;
  pos?: SourcePos;
}

export interface PrefixList {
  id: string;                 // pl-...
  name: string;
  entries: { cidr: string; family: 4 | 6; description: string }[];
  maxEntries: number;         // counts toward the rule quota (AWS: customer-managed list weighs its max entries)
  pos?: SourcePos;
}

export interface ConnectionTracking {
  tcpEstablishedTimeoutS: number;   // AWS default 432000, range 60..432000
  udpTimeoutS: number;              // AWS default 30, range 30..60
  udpStreamTimeoutS: number;        // AWS default 180, range 60..180
}

export const DEFAULT_CONNECTION_TRACKING: Readonly<ConnectionTracking> = Object.freeze({
  tcpEstablishedTimeoutS: 432000,
  udpTimeoutS: 30,
  udpStreamTimeoutS: 180,
});

/**
 * A fault ("toxic") on the allowed flows of a service or outbound entry (SPEC.md §9), with
 * Toxiproxy's names, attributes and semantics for TCP; latency, loss, duplicate, reorder for UDP.
 * `stream`: upstream = client → backend, downstream = backend → client. `toxicity`: the
 * probability (0..1) that a new flow gets it. Attributes are numbers (times in ms, except the
 * slicer's delay in µs, as Toxiproxy's).
 */
export interface Fault {
  name: string;
  type: string;
  stream: 'upstream' | 'downstream';
  toxicity: number;
  attributes: Record<string, number>;
  pos?: SourcePos;
}

/** An inbound service: rules see `port`; the daemon listens on instance address:listenPort. */
export interface Service {
  protocol: typeof PROTO_TCP | typeof PROTO_UDP;
  port: number;
  listenPort: number;
  backend: { host: string; port: number };
  /** Faults on its allowed flows, in order (a chain per direction, as Toxiproxy's). */
  faults?: Fault[];
  pos?: SourcePos;
}

/**
 * An outbound entry: the app on the instance connects to instance address:port and the daemon
 * forwards it. Target is another instance's service (`toInstance` + `toPort`, both rule sets apply)
 * or an outside stand-in (`toHost:toPort` reached for real, while the rules see `asAddress:asPort`).
 */
export interface Outbound {
  protocol: typeof PROTO_TCP | typeof PROTO_UDP;
  port: number;
  toInstance: string | null;  // instance name, or null for an outside target
  toHost: string;             // where the daemon really connects (for an instance: its address)
  toPort: number;             // for an instance: the service's rule port
  asAddress: string;          // the destination address the rules see
  asPort: number;             // the destination port the rules see
  faults?: Fault[];
  pos?: SourcePos;
}

export interface Instance {
  name: string;
  id: string;                 // i-... (generated deterministically when not given)
  vpcId: string;
  /** Explicit subnet (subnet-...); absent or null: the VPC's implicit subnet (default NACL). */
  subnetId?: string | null;
  address: string;            // IPv4, canonical
  address6: string | null;    // IPv6, canonical, optional
  groupIds: string[];         // resolved ids, in the order given
  connectionTracking: ConnectionTracking;
  services: Service[];
  outbound: Outbound[];
  pos?: SourcePos;
}

/** `addresses:` entry: local (loopback) addresses that stand for other addresses in the rules. */
export interface AddressMapping {
  local: string;              // canonical CIDR of local addresses
  appearsAs: string;          // canonical CIDR of the same size
  family: 4 | 6;
  pos?: SourcePos;
}

export interface Quotas {
  rulesPerGroupPerDirection: number;   // 60 (per address family)
  /** Network ACL entries per NACL per direction per address family: 20, adjustable to 40
   * (amazon-vpc-limits, "Rules per network ACL"). Absent = DEFAULT_NACL_ENTRIES. */
  naclEntriesPerDirection?: number;
  groupsPerInstance: number;           // 5, configurable up to 16
  rulesTimesGroups: number;            // 1000
  groupsPerRegion: number;             // 2500
}

/** NACL entries per direction and family unless quotas.networkAclEntries says otherwise. */
export const DEFAULT_NACL_ENTRIES = 20;

export const DEFAULT_QUOTAS: Readonly<Quotas> = Object.freeze({
  rulesPerGroupPerDirection: 60,
  groupsPerInstance: 5,
  rulesTimesGroups: 1000,
  groupsPerRegion: 2500,
});

export interface Model {
  region: string;
  accountId: string;          // 12 digits, used in ARNs and flow logs
  vpcs: Vpc[];
  prefixLists: PrefixList[];
  groups: SecurityGroup[];    // includes each VPC's implicit default group
  instances: Instance[];
  addresses: AddressMapping[];
  quotas: Quotas;
  /** Explicit subnets (SPEC §7). Absent = none: every instance in its VPC's implicit subnet. */
  subnets?: Subnet[];
  /** Network ACLs, each VPC's default one included when loaded from a config. Absent = only the
   * defaults (allow all), which the policy compiler supplies. */
  networkAcls?: NetworkAcl[];
}

// ---- Network ACLs (SPEC §7) ------------------------------------------------------------------
// Stateless and ordered: entries of one direction are evaluated by ascending ruleNumber, the
// first whose protocol, ports and CIDR match decides; none matching = the final `*` deny.
// Ports are the packet's DESTINATION port (a reply's is the client's ephemeral port).

export const NACL_RULE_MIN = 1;
export const NACL_RULE_MAX = 32766;
/** The rule number AWS shows for the final `*` entry. */
export const NACL_RULE_STAR = 32767;

/**
 * One NACL entry. Ports as Rule: tcp/udp fromPort..toPort; icmp/icmpv6 type/code (-1 = any);
 * all (-1) and other protocol numbers: -1/-1 (every port, as AWS).
 */
export interface NaclEntry {
  ruleNumber: number;         // 1..32766, unique per (NACL, direction)
  egress: boolean;
  protocol: number;           // -1 or 0..255
  fromPort: number;
  toPort: number;
  cidr: string;               // canonical, v4 or v6
  family: 4 | 6;
  allow: boolean;             // RuleAction allow | deny
  pos?: SourcePos;
}

export interface NetworkAcl {
  id: string;                 // acl-...
  vpcId: string;
  isDefault: boolean;         // the VPC's default NACL (acl-default-<vpc>)
  /** Sorted by (egress, ruleNumber): ingress entries first. */
  entries: NaclEntry[];
  tags: Record<string, string>;
  pos?: SourcePos;
}

export interface Subnet {
  id: string;                 // subnet-...
  vpcId: string;
  cidr: string | null;        // informational (instances live on loopback); canonical IPv4 CIDR
  networkAclId: string;       // resolved: the VPC's default NACL when the config names none
  pos?: SourcePos;
}

/** The id of a VPC's default network ACL. */
export function defaultNetworkAclId(vpcId: string): string {
  return `acl-default-${vpcId}`;
}

/** AWS's default NACL entries: rule 100 allows all traffic (101 for IPv6), both directions. */
export function defaultNaclEntries(): NaclEntry[] {
  const out: NaclEntry[] = [];
  for (const egress of [false, true]) {
    out.push({ ruleNumber: 100, egress, protocol: PROTO_ALL, fromPort: -1, toPort: -1, cidr: '0.0.0.0/0', family: 4, allow: true });
    out.push({ ruleNumber: 101, egress, protocol: PROTO_ALL, fromPort: -1, toPort: -1, cidr: '::/0', family: 6, allow: true });
  }
  return out;
}

export function defaultNetworkAcl(vpcId: string): NetworkAcl {
  return { id: defaultNetworkAclId(vpcId), vpcId, isDefault: true, entries: defaultNaclEntries(), tags: {} };
}

/** Entries sorted as the model keeps them: ingress then egress, each by ascending ruleNumber. */
export function sortNaclEntries(entries: NaclEntry[]): NaclEntry[] {
  return entries.sort((a, b) => (a.egress === b.egress ? a.ruleNumber - b.ruleNumber : a.egress ? 1 : -1));
}

/** The model's NACLs with each VPC's default supplied when missing (models built by hand). */
export function networkAclsOf(model: Model): NetworkAcl[] {
  const acls = model.networkAcls ?? [];
  const out = [...acls];
  for (const v of model.vpcs) {
    const id = defaultNetworkAclId(v.id);
    if (!acls.some((a) => a.id === id)) out.push(defaultNetworkAcl(v.id));
  }
  return out;
}

/** Whether a model uses network ACLs beyond the untouched defaults (explain shows NACL checks then). */
export function usesNetworkAcls(model: Model): boolean {
  if ((model.subnets ?? []).length > 0) return true;
  const std = defaultNaclEntries().map(naclEntryKey).join(',');
  return (model.networkAcls ?? []).some((a) => !a.isDefault || a.entries.map(naclEntryKey).join(',') !== std);
}

/** What makes two entries the same (position aside). */
export function naclEntryKey(e: NaclEntry): string {
  return `${e.egress ? 'e' : 'i'}${e.ruleNumber}|${e.protocol}|${e.fromPort}|${e.toPort}|${e.cidr}|${e.allow ? 'allow' : 'deny'}`;
}

/** `host:port`, an IPv6 host in brackets (`[::1]:53`). */
export function hostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

export function protocolName(p: number): string {
  switch (p) {
    case PROTO_ALL: return 'all';
    case PROTO_TCP: return 'tcp';
    case PROTO_UDP: return 'udp';
    case PROTO_ICMP: return 'icmp';
    case PROTO_ICMPV6: return 'icmpv6';
    default: return String(p);
  }
}

/** `tcp`, `udp`, `icmp`, `icmpv6`, `all`, `-1` or a number 0..255 (any case, trimmed) → protocol
 * number; undefined when it is none of them. The one parser behind config, API and CLI. */
export function protocolNumber(text: string | number): number | undefined {
  const v = typeof text === 'string' ? text.trim().toLowerCase() : text;
  switch (v) {
    case 'tcp': return PROTO_TCP;
    case 'udp': return PROTO_UDP;
    case 'icmp': return PROTO_ICMP;
    case 'icmpv6': return PROTO_ICMPV6;
    case 'all': return PROTO_ALL;
  }
  const n = typeof v === 'number' ? v : /^-?\d{1,3}$/.test(v) ? Number(v) : NaN;
  return Number.isInteger(n) && n >= -1 && n <= 255 ? n : undefined;
}
