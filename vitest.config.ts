import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Real servers take seconds to start; a suite of nine majors needs room.
    testTimeout: 120_000,
    hookTimeout: 180_000,
    // Two cores: each file may start servers; keep files from fighting for them.
    fileParallelism: true,
    maxWorkers: 2,
    globalSetup: ['test/harness/global-setup.ts'],
  },
});
