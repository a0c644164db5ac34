// The EC2 Query API for security groups (SPEC §4, Version 2016-11-15): request → XML response.
// Owns: the operations, their parameters (reference §4.2), responses (§4.3) and errors (§4.4),
// and the commit order of a change: validate → save the state file → apply to live traffic.
// Must not: validate rules itself. The API's state is a config object (SPEC §2 schema); every
// mutation edits a copy and validates it with loadConfigText, so the API and the config file share
// one validation path, one CIDR normalisation and one rule-id scheme (content-derived, stable).
// Invariants:
//   - handle() never throws; every failure is EC2 error XML (4xx client, 5xx only for our bugs
//     or a failed disk/apply, documented as InternalError);
//   - mutations run one at a time (a promise chain), each on the live model of that moment;
//   - an accepted change is durable (saveState) before applyModel and before the response;
//     a rejected request (or DryRun) changes nothing, in memory or on disk.

import { randomUUID } from 'node:crypto';
import { modelToConfigObject } from '../../../config/load.js';
import { AwsError } from '../../../model/errors.js';
import { type Model } from '../../../model/types.js';
import { readStateFile, removeStaleTemps, saveState, type StateExtras } from '../../state.js';
import { checkParameters } from './params.js';
import { clip, parseQuery, type QNode } from './query.js';
import { errorXml, successXml } from './xml.js';
import { MUTATIONS } from './mutations.js';
import { READERS } from './describes.js';
import type { Ctx, Mutation, Obj } from './types.js';

// The engine: dispatch, one-at-a-time transactions (serial) and the commit order (mutate). The
// operations themselves are in mutations.ts and describes.ts.

export interface Ec2Host {
  getModel(): Model;                          // the live model
  applyModel(model: Model): Promise<void>;    // swaps the live policy (the daemon's)
}

export interface Ec2Response {
  status: number;
  contentType: string;
  body: string;
  /** The action when it is one sgemu serves (a bounded set, for metrics labels); else undefined. */
  action?: string | undefined;
}

const CONTENT_TYPE = 'text/xml;charset=UTF-8';

export class Ec2Service {
  private readonly host: Ec2Host;
  private readonly statePath: string | null;
  private ruleTags = new Map<string, Record<string, string>>();
  private deleted = new Set<string>();
  private chain: Promise<unknown> = Promise.resolve();
  /** Temp files of writers killed mid-save, removed at construction (`state.json.tmp-PID`). */
  readonly removedTemps: string[] = [];

  constructor(host: Ec2Host, opts: { statePath: string | null }) {
    this.host = host;
    this.statePath = opts.statePath;
    if (this.statePath) {
      // The only writer of the file clears what writers killed mid-save left (issue 17).
      this.removedTemps = removeStaleTemps(this.statePath);
      // The rule tags and deletions of the last run; the groups themselves came in through the
      // daemon's loadState. An unreadable file was already reported there.
      try {
        const st = readStateFile(this.statePath);
        if (st) {
          // Only what fits the live model: after --reset-state (the file left in place) a group
          // "deleted" in the old state is live again, and must not be dropped at the next restart.
          const live = host.getModel();
          const ruleIds = new Set(live.groups.flatMap((g) => [...g.ingress, ...g.egress].map((r) => r.id)));
          for (const [id, tags] of Object.entries(st.extras.ruleTags)) if (ruleIds.has(id)) this.ruleTags.set(id, { ...tags });
          for (const id of st.extras.deletedGroupIds) if (!live.groups.some((g) => g.id === id)) this.deleted.add(id);
        }
      } catch { /* start without extras */ }
    }
  }

  /**
   * One request given as parameters (`{ Action, GroupId, 'IpPermissions.1.IpProtocol', … }`) →
   * the result XML (inside the response element). Throws AwsError exactly where handle() answers
   * with error XML: the Node API (src/node/) goes through here, so it shares every check and code.
   */
  async call(params: Record<string, string>): Promise<string> {
    const q = parseQuery(new URLSearchParams(params).toString());
    return this.dispatch(q, q.str('Action') ?? '');
  }

  private async dispatch(q: QNode, action: string): Promise<string> {
    if (action === '') throw new AwsError('MissingParameter', 'The request must contain the parameter Action');
    const mutation = Object.hasOwn(MUTATIONS, action) ? MUTATIONS[action] : undefined;
    const reader = Object.hasOwn(READERS, action) ? READERS[action] : undefined;
    if (!mutation && !reader) {
      throw new AwsError('InvalidAction', `The action ${clip(action)} is not valid for this web service; sgemu serves ${[...Object.keys(MUTATIONS), ...Object.keys(READERS)].sort().join(', ')}`);
    }
    checkParameters(action, q);        // EC2 rejects a parameter the action does not take first
    const dryRun = q.bool('DryRun');
    if (mutation) return this.serial(() => this.mutate(mutation, q, dryRun));
    if (!reader) throw new Error(`no handler for ${action}`);   // unreachable: checked above
    const xml = reader(this, this.host.getModel(), q);
    if (dryRun) throw dryRunError();
    return xml;
  }

  /** Body = the x-www-form-urlencoded POST body. Never throws: errors become EC2 error XML. */
  async handle(body: string): Promise<Ec2Response> {
    const requestId = randomUUID();
    let action = '';
    let known: string | undefined;
    try {
      const q = parseQuery(typeof body === 'string' ? body : '');
      action = q.str('Action') ?? '';
      if (Object.hasOwn(MUTATIONS, action) || Object.hasOwn(READERS, action)) known = action;
      const xml = await this.dispatch(q, action);
      return { status: 200, contentType: CONTENT_TYPE, body: successXml(action, requestId, xml), action: known };
    } catch (e) {
      if (e instanceof AwsError) return { status: e.status, contentType: CONTENT_TYPE, body: errorXml(e.code, e.message, requestId), action: known };
      const msg = e instanceof Error ? e.message : String(e);
      return {
        status: 500, contentType: CONTENT_TYPE, action: known,
        body: errorXml('InternalError', `sgemu failed on ${clip(action) || 'the request'} (please report): ${clip(msg, 300)}`, requestId),
      };
    }
  }

  /** Tags of a rule (the config schema has none; kept here and in the state file). */
  tagsOfRule(id: string): Record<string, string> {
    return this.ruleTags.get(id) ?? {};
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.chain.then(fn, fn);
    this.chain = run.catch(() => undefined);
    return run;
  }

  private async mutate(m: Mutation, q: QNode, dryRun: boolean): Promise<string> {
    const model = this.host.getModel();
    const ctx: Ctx = {
      model,
      obj: asObj(modelToConfigObject(model)),
      ruleTags: new Map([...this.ruleTags].map(([k, v]) => [k, { ...v }])),
      deleted: new Set(this.deleted),
    };
    const plan = m(this, ctx, q);
    if (dryRun) throw dryRunError();
    const extras = (c: Ctx): StateExtras => ({ ruleTags: Object.fromEntries(c.ruleTags), deletedGroupIds: [...c.deleted] });
    if (this.statePath) {
      try {
        saveState(this.statePath, plan.obj ?? ctx.obj, extras(ctx));
      } catch (e) {
        throw new AwsError('InternalError', `could not save the state file ${this.statePath}: ${errText(e)}; nothing was changed`, 500);
      }
    }
    if (plan.model) {
      try {
        await this.host.applyModel(plan.model);
      } catch (e) {
        if (this.statePath) {
          try {
            saveState(this.statePath, asObj(modelToConfigObject(model)), { ruleTags: Object.fromEntries(this.ruleTags), deletedGroupIds: [...this.deleted] });
          } catch { /* the next accepted change rewrites it */ }
        }
        throw new AwsError('InternalError', `could not apply the change to live traffic: ${errText(e)}; nothing was changed`, 500);
      }
    }
    this.ruleTags = ctx.ruleTags;
    this.deleted = ctx.deleted;
    return plan.xml;
  }
}

function dryRunError(): AwsError {
  return new AwsError('DryRunOperation', 'Request would have succeeded, but DryRun flag is set.', 412);
}

function errText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function asObj(v: unknown): Obj {
  if (typeof v === 'object' && v !== null && !Array.isArray(v)) return v as Obj;
  throw new Error('modelToConfigObject did not return an object');
}
