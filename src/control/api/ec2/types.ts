// The EC2 service's internal shapes, shared by the transaction engine (service.ts), the mutations
// (mutations.ts) and the describes (describes.ts). Types only.

import type { Model } from '../../../model/types.js';
import type { QNode } from './query.js';

export type Obj = Record<string, unknown>;

/** What readers may ask of the service beyond the model: the tags of a rule (kept beside the config). */
export interface RuleTagSource {
  tagsOfRule(id: string): Record<string, string>;
}

/** What a mutation reads: the live model, a fresh config object of it, and copies of the extras. */
export interface Ctx {
  model: Model;
  obj: Obj;
  ruleTags: Map<string, Record<string, string>>;
  deleted: Set<string>;
}

/** What a mutation produced: a validated config object and model (null when only extras changed). */
export interface Plan {
  obj: Obj | null;
  model: Model | null;
  xml: string;
}

export type Mutation = (s: RuleTagSource, c: Ctx, q: QNode) => Plan;
export type Reader = (s: RuleTagSource, model: Model, q: QNode) => string;
