import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { kernelModeFromEnv, loadKernels } from '../format/kernels.js';
import { wasmKernelAvailability } from '../format/page-checksum-wasm.js';
import { packageVersion } from '../version.js';

/** What packaging/build.sh records next to a packaged install's package.json (docs/packaging.md). */
interface BuildInfo {
  readonly baculaVersion?: string;
  readonly shimSmartalloc?: boolean;
  readonly glibcFloor?: string;
}

const BUILD_INFO_FILE = 'pgbacula-build.json';

/** The packaged build's record, found by walking up from this module; undefined in a checkout. */
function buildInfo(): BuildInfo | undefined {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    try {
      return JSON.parse(readFileSync(join(dir, BUILD_INFO_FILE), 'utf8')) as BuildInfo;
    } catch {
      dir = dirname(dir);
    }
  }
  return undefined;
}

/**
 * `pgbacula --version`: the version on the first line (scripts read it), then the runtime, the
 * kernels this process would use and the Bacula version the FD shim was built for.
 */
export function versionText(): string {
  const lines = [`pgbacula ${packageVersion()}`, `node: ${process.version} (${process.execPath})`];
  try {
    const k = loadKernels(kernelModeFromEnv());
    lines.push(k.kind === 'native' ? `kernels: native (${k.source})` : `kernels: fallback, ${k.source} (${k.fallbackReason ?? 'chosen'})`);
  } catch (e) {
    lines.push(`kernels: unavailable (${e instanceof Error ? e.message : String(e)})`);
  }
  const wasm = wasmKernelAvailability();
  lines.push(wasm.available ? `page checksums: wasm (${fileURLToPath(wasm.url)})` : `page checksums: js (${wasm.reason})`);
  const info = buildInfo();
  lines.push(
    info?.baculaVersion
      ? `bacula shim: built for Bacula ${info.baculaVersion}${info.shimSmartalloc ? ' (smartalloc)' : ''}, glibc >= ${info.glibcFloor ?? '?'}`
      : 'bacula shim: not part of this installation (a checkout: native/build.sh builds it)',
  );
  return lines.join('\n') + '\n';
}
