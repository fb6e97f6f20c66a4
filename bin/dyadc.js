#!/usr/bin/env node
// dyadc CLI entry (`npx dyadc`): runs the TypeScript CLI, compiler/cli/main.ts, in this process (no
// second Node process is spawned). Normally from its precompiled bundle (bin/precompiled.js: one
// ESM file, rebuilt whenever any source it was built from changes, so never stale), which skips
// tsx's per-file work at start-up; when that bundle can be neither used nor built, or with
// DYADC_CLI=tsx, from the sources through tsx's ESM loader.
import { pathToFileURL } from 'node:url';

process.env.XDG_RUNTIME_DIR ??= '/tmp'; // Mesa/Dawn warn without it on headless machines
const debug = process.argv.includes('--debug');

/** @returns {Promise<{ main(argv: string[]): Promise<never> }>} */
async function loadCli() {
  if (process.env.DYADC_CLI !== 'tsx') {
    try {
      const { precompiledCli } = await import('./precompiled.js');
      const file = await precompiledCli(undefined, { maps: debug });  // --debug: stacks read the source maps
      if (debug) process.setSourceMapsEnabled(true); // stacks name the .ts sources
      return await import(pathToFileURL(file).href);
    } catch (e) {
      if (debug) process.stderr.write(`dyadc: running the sources through tsx: no precompiled CLI (${e?.message ?? e})\n`);
    }
  }
  const { register } = await import('tsx/esm/api');
  // zod's ESM build is ~100 modules: loaded before tsx's (off-thread) hooks are registered it skips a
  // round trip to them per module (~0.15 s of start-up); the TS sources that import it get this copy.
  await import('zod');
  register();
  return import('../compiler/cli/main.ts');
}

const { main } = await loadCli();
await main(process.argv);
