/**
 * Mode pitr_block through real Bacula daemons on 10 (the oldest WAL format; pgbacula's summaries)
 * and 18 (the server's summaries), with every per-mechanism case (test/e2e/pitr-block-bacula-scenario.ts);
 * pitr-block-bacula-11-14 and -15-17 run the chain and its restores on the other majors.
 * PITR_BLOCK_BACULA_MAJORS=16,17 runs others here.
 */
import type { TestMajor } from '../harness/pg-binaries.js';
import { pitrBlockBaculaScenario } from './pitr-block-bacula-scenario.js';

const MAJORS = (process.env.PITR_BLOCK_BACULA_MAJORS ? process.env.PITR_BLOCK_BACULA_MAJORS.split(',').map(Number) : [10, 18]) as readonly TestMajor[];
for (const major of MAJORS) pitrBlockBaculaScenario(major, { mechanisms: true });
