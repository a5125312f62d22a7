import { blockChainScenario } from './pitr-block-scenario.js';

for (const major of [16, 17, 18] as const) blockChainScenario(major);
