import { blockChainScenario } from './pitr-block-scenario.js';

for (const major of [10, 11, 12] as const) blockChainScenario(major);
