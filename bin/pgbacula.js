#!/usr/bin/env node
// Launcher: the compiled CLI lives in dist/ (npm run build). Anything on stderr is a job
// error under the Bacula FD, so Node's own warnings are silenced here.
process.removeAllListeners('warning');

// node-postgres tells a Cloudflare Worker from Node by navigator.userAgent, which Node has from
// 21 on; on Node 20 it falls back to building a fetch Response, and that loads Node's whole fetch
// implementation (50–80 ms of every command's start, wal-push's included). Node 21's value:
globalThis.navigator ??= { userAgent: `Node.js/${process.versions.node.split('.')[0]}` };
const v8 = await import('node:v8');
// A small young generation: per-file objects die young, and V8's default (48 MiB of semi-spaces)
// is memory the process holds for nothing (bench/e2e/memory.ts measures the whole tree).
v8.setFlagsFromString('--max-semi-space-size=4');
// The old generation may grow by 20 % over what survived the last full collection (V8 lets a small
// heap grow several times over): the per-file objects of a million-file backup die old, and without
// this the main thread held ≈ 130 MiB of them between collections (bench:memory; no time cost seen
// on bench:e2e).
v8.setFlagsFromString('--heap-growing-percent=20');
const { main } = await import('../dist/src/cli/main.js');
const code = await main(process.argv.slice(2), {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
  env: process.env,
  isTty: process.stderr.isTTY === true,
});
process.exitCode = code;
