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

/** An inbound service: rules see `port`; the daemon listens on instance address:listenPort. */
export interface Service {
  protocol: typeof PROTO_TCP | typeof PROTO_UDP;
  port: number;
  listenPort: number;
  backend: { host: string; port: number };
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
  pos?: SourcePos;
}

export interface Instance {
  name: string;
  id: string;                 // i-... (generated deterministically when not given)
  vpcId: string;
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
  groupsPerInstance: number;           // 5, configurable up to 16
  rulesTimesGroups: number;            // 1000
  groupsPerRegion: number;             // 2500
}

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
