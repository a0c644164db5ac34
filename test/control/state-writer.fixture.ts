// Child process of state-crash.test.ts: saves state versions 1, 2, 3… in a loop and prints each
// version number only after saveState returned (an "acknowledged" change).
import { saveState } from '../../src/control/state.js';

const path = process.argv[2];
if (!path) {
  // Run by hand or picked up by `tap test/control/`: without a path it would write to the cwd.
  console.log('state-writer.fixture: a child of state-crash.test.ts; needs a state file path; nothing to do');
  process.exit(0);
}
for (let i = 1; i < 1_000_000; i++) {
  saveState(path, { securityGroups: [{ id: 'sg-crash', description: `v${i}`, ingress: [{ protocol: 'tcp', ports: 1 + (i % 60000), cidr: '10.0.0.0/8' }] }] }, { ruleTags: {}, deletedGroupIds: [] });
  process.stdout.write(`${i}\n`);
}
