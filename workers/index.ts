// The one piscina task module: each export is a task, called by name (pool.run(args, { name })).
// Workers stay thin: they do I/O and call pure kernels; scheduling lives in src/pipeline.
export { walkDir } from './walk-dir.js';
export { backupBatch, backupRange } from './backup-range.js';
export { restoreBatch, restoreFile } from './restore-file.js';
export { combineFile } from './combine-file.js';
