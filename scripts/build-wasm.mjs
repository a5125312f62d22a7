#!/usr/bin/env node
// Assembles every src/format/wasm/*.wat into dist/wasm/*.wasm with the npm package `wabt`
// (a devDependency: the .wasm files are build outputs, the .wat files are the sources).
//
//   node scripts/build-wasm.mjs [--src-dir DIR] [--out-dir DIR]
//
// Each module is validated by wabt with the SIMD feature enabled and then by this Node's own
// WebAssembly engine, so a module that would not load at run time fails the build.

import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import wabt from 'wabt';

const repoRoot = resolve(fileURLToPath(new URL('..', import.meta.url)));

/** WebAssembly features our kernels use; anything else must fail to assemble. */
const FEATURES = { simd: true };

/**
 * Assembles every `.wat` of `srcDir` into `outDir`. Returns `[{ source, output, bytes }]`.
 * Throws on the first module that does not assemble or validate.
 */
export async function buildWasm({
  srcDir = join(repoRoot, 'src/format/wasm'),
  outDir = join(repoRoot, 'dist/wasm'),
} = {}) {
  const toolkit = await wabt();
  const sources = readdirSync(srcDir)
    .filter((name) => name.endsWith('.wat'))
    .sort();
  mkdirSync(outDir, { recursive: true });
  const built = [];
  for (const name of sources) {
    const source = join(srcDir, name);
    const output = join(outDir, `${basename(name, '.wat')}.wasm`);
    let module;
    try {
      module = toolkit.parseWat(name, readFileSync(source, 'utf8'), FEATURES);
      module.resolveNames();
      module.validate();
      const { buffer } = module.toBinary({ log: false, write_debug_names: true });
      if (!WebAssembly.validate(buffer)) {
        throw new Error('assembled module is rejected by this Node WebAssembly engine');
      }
      writeFileSync(output, buffer);
      built.push({ source, output, bytes: buffer.length });
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new Error(`cannot assemble ${source}: ${reason}`, { cause: error });
    } finally {
      module?.destroy();
    }
  }
  return built;
}

function parseArgs(argv) {
  const options = {};
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const value = argv[i + 1];
    if ((arg === '--src-dir' || arg === '--out-dir') && value !== undefined) {
      options[arg === '--src-dir' ? 'srcDir' : 'outDir'] = resolve(value);
      i++;
    } else {
      throw new Error(`unknown argument ${arg}. Usage: build-wasm.mjs [--src-dir DIR] [--out-dir DIR]`);
    }
  }
  return options;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  try {
    const built = await buildWasm(parseArgs(process.argv.slice(2)));
    for (const { output, bytes } of built) console.log(`build-wasm: ${output} (${bytes} bytes)`);
  } catch (error) {
    console.error(`build-wasm: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  }
}
