// Config file (SPEC §2, YAML or JSON) → the validated Model of src/model/types.ts.
// Owns: the schema, defaults (VPC, default groups, default egress, quotas, conntrack timeouts),
// reference resolution (group names/ids per VPC, prefix lists, instances), AWS's error codes and
// quotas, and a source position on every model node that came from the file.
// Must not: stop at the first error (all errors of a file are collected, then thrown together as
// ConfigErrors), throw anything but ConfigErrors, or do I/O other than reading the one file.
// Invariants of the result: those listed at the top of src/model/types.ts.

import { readFileSync, statSync } from 'node:fs';
import { ConfigError, ConfigErrors } from '../model/errors.js';
import type { Model } from '../model/types.js';
import { MAX_CONFIG_BYTES, parseTree, type TNode } from './yaml-tree.js';
import { fieldsOf } from './schema.js';
import { DEFAULT_ACCOUNT_ID, DEFAULT_REGION, DEFAULT_VPC_ID } from './load-rules.js';
import { InstancesLoader } from './load-instances.js';

// The passes live in load-rules.ts (VPCs, groups, rules, prefix lists, NACLs) and
// load-instances.ts (subnets, instances, services, outbound, addresses); this file reads the
// file, orders the passes and assembles the Model.

export { ruleId, defaultGroupId, instanceId } from './ids.js';
export { modelToConfigObject } from './to-object.js';
export { setAddressScope } from './load-instances.js';
export { parseProtocol } from './load-rules.js';
export { DEFAULT_ACCOUNT_ID, DEFAULT_REGION, DEFAULT_VPC_ID };

const TOP_KEYS = fieldsOf('top');

/** Loads and validates a config text; throws ConfigErrors listing every problem. */
export function loadConfigText(text: string, fileName: string): Model {
  let result: { model: Model | null; errors: ConfigError[] };
  try {
    result = build(text, fileName);
  } catch (e) {
    if (e instanceof ConfigErrors) throw e;
    if (e instanceof RangeError) {
      throw new ConfigErrors([new ConfigError('ConfigTooDeep', '', 0, 0, `${fileName}: the config is nested too deeply to read`)]);
    }
    // A bug in the loader: still a ConfigError (never a stack trace at the user), but say so.
    throw new ConfigErrors([new ConfigError('InternalError', '', 0, 0,
      `${fileName}: the config loader failed (please report): ${e instanceof Error ? e.message : String(e)}`)]);
  }
  if (result.errors.length > 0 || !result.model) throw new ConfigErrors(result.errors);
  return result.model;
}

/** Reads a file (size-checked before reading) and loads it. */
export function loadConfigFile(path: string): Model {
  let size: number;
  try {
    const st = statSync(path);
    if (st.isDirectory()) {
      throw new ConfigErrors([new ConfigError('FileUnreadable', '', 0, 0, `${path} is a directory; give a config file (-c FILE)`)]);
    }
    size = st.size;
  } catch (e) {
    if (e instanceof ConfigErrors) throw e;
    const code = (e as { code?: string }).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') {
      throw new ConfigErrors([new ConfigError('FileNotFound', '', 0, 0, `config file ${path} does not exist; create it or pass -c FILE`)]);
    }
    throw new ConfigErrors([new ConfigError('FileUnreadable', '', 0, 0, `cannot read config file ${path}: ${code ?? String(e)}`)]);
  }
  if (size > MAX_CONFIG_BYTES) {
    throw new ConfigErrors([new ConfigError('ConfigTooLarge', '', 0, 0, `${path} is ${size} bytes; a config file may be at most 8 MiB`)]);
  }
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (e) {
    const code = (e as { code?: string }).code;
    throw new ConfigErrors([new ConfigError(code === 'ENOENT' ? 'FileNotFound' : 'FileUnreadable', '', 0, 0,
      `cannot read config file ${path}: ${code ?? String(e)}`)]);
  }
  if (buf.length > MAX_CONFIG_BYTES) {
    throw new ConfigErrors([new ConfigError('ConfigTooLarge', '', 0, 0, `${path} is ${buf.length} bytes; a config file may be at most 8 MiB`)]);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(buf);
  } catch {
    throw new ConfigErrors([new ConfigError('ConfigNotText', '', 0, 0, `${path} is not UTF-8 text; expected a YAML or JSON config`)]);
  }
  return loadConfigText(text, path);
}

// ---------------------------------------------------------------------------------------------

class Loader extends InstancesLoader {
  run(tree: TNode | null): Model | null {
    const r = this.r;
    const top: TNode = tree ?? { kind: 'map', pos: { line: 1, column: 1 }, entries: new Map() };
    if (top.kind !== 'map') {
      r.err('InvalidConfig', '', top.pos,
        `the top level of ${r.fileName} must be a mapping (region:, securityGroups:, instances:, ...), found ${top.kind === 'seq' ? 'a list' : 'a single value'}`);
      return null;
    }
    r.map(top, '', TOP_KEYS, '');
    this.readRegion(top);
    this.readQuotas(top);
    this.readVpcs(top);
    this.readPrefixLists(top);
    this.readNetworkAcls(top);
    this.readSubnets(top);
    this.readGroups(top);
    this.readInstances(top);
    this.readAddresses(top);
    if (this.groups.length > this.quotas.groupsPerRegion) {
      const n = r.child(top, 'securityGroups');
      r.err('SecurityGroupLimitExceeded', 'securityGroups', n?.pos ?? top.pos,
        `${this.groups.length} security groups (default groups included) is over the quota of ${this.quotas.groupsPerRegion} per region`);
    }
    return {
      region: this.region,
      accountId: this.accountId,
      vpcs: this.vpcs,
      prefixLists: [...this.prefixLists.values()],
      groups: this.groups.map((g) => g.group),
      instances: this.instances,
      addresses: this.addresses,
      quotas: this.quotas,
      subnets: [...this.subnets.values()],
      networkAcls: [...this.networkAcls.values()],
    };
  }
}

function build(text: string, fileName: string): { model: Model | null; errors: ConfigError[] } {
  const parsed = parseTree(text, fileName);
  if (parsed.errors.length > 0) return { model: null, errors: parsed.errors };
  const loader = new Loader(fileName);
  const model = loader.run(parsed.tree);
  return { model, errors: loader.r.errors };
}
