import { blockChainScenario } from './pitr-block-scenario.js';

for (const major of [Number(process.env.PB_MAJOR ?? 16)] as const) blockChainScenario(major as 16);
