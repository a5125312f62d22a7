/**
 * Mode pitr_block through real Bacula daemons on PostgreSQL 15, 16, 17: Full, Incrementals and a
 * Differential while the change workload runs, and restores at the chain's end and between two
 * Incrementals compared with the source (test/e2e/pitr-block-bacula-scenario.ts; the
 * per-mechanism cases run on 10 and 18 in pitr-block-bacula.test.ts).
 */
import { pitrBlockBaculaScenario } from './pitr-block-bacula-scenario.js';

for (const major of [15, 16, 17] as const) pitrBlockBaculaScenario(major, { mechanisms: false });
