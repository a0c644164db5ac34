// The package entry: `import { start, expectFlow } from 'sgemu'` (SPEC §10).
// Owns: what the package exports and nothing else; the CLI is dist/cli/main.js (bin).
// Everything exported here is public API (typed by dist/index.d.ts): keep it small and stable.

export { start, Sgemu, type StartOptions, type Direction, type RuleInfo, type FlowQuery, type FlowIterator, type Fault, type FaultSpec } from './node/sgemu.js';
export { expectFlow, type ExpectFlowOptions, type FlowOutcome } from './node/expect-flow.js';
export { SgemuError, AwsError, ConfigError, ConfigErrors, UsageError, NativeError } from './model/errors.js';
export { FaultError } from './config/faults.js';
export type { ConfigFile, ConfigRule, ConfigSecurityGroup, ConfigInstance, ConfigService } from './config/schema.js';
export type { FlowEvent } from './observe/events.js';
export type { ConntrackJson } from './dataplane/conntrack/view.js';
export type { ExplainResult, ExplainCheck, ExplainMatch, ExplainNearMiss } from './policy/explain.js';
