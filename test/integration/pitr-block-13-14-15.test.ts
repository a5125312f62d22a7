import { blockChainScenario } from './pitr-block-scenario.js';

for (const major of [13, 14, 15] as const) blockChainScenario(major);
