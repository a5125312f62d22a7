#!/usr/bin/env node
// Launcher: the compiled CLI lives in dist/ (npm run build). Anything on stderr is a job
// error under the Bacula FD, so Node's own warnings are silenced here.
process.removeAllListeners('warning');
const { main } = await import('../dist/src/cli/main.js');
const code = await main(process.argv.slice(2), {
  stdout: (t) => process.stdout.write(t),
  stderr: (t) => process.stderr.write(t),
  env: process.env,
  isTty: process.stderr.isTTY === true,
});
process.exitCode = code;
