#!/usr/bin/env node
// dyadc CLI entry (`npx dyadc`): runs the built CLI, dist/compiler/cli/main.js (plain ESM made by
// scripts/build.mjs at `npm pack` / `npm run build`), in this process. In a checkout of the
// repository whose dist/ is missing or older than a source (scripts/build.mjs distIsStale), or with
// DYADC_CLI=tsx, it runs the TypeScript sources through tsx instead (a devDependency), so an edit is
// never run stale; `npm test` and `npm run demo` rebuild dist/ first (scripts/setup).
import { existsSync } from 'node:fs';

process.env.XDG_RUNTIME_DIR ??= '/tmp'; // Mesa/Dawn warn without it on headless machines
const debug = process.argv.includes('--debug');
if (debug) process.setSourceMapsEnabled(true); // stack traces name the .ts sources (maps are in dist/)

/** @returns {Promise<{ main(argv: string[]): Promise<never> }>} */
async function loadCli() {
  const buildScript = new URL('../scripts/build.mjs', import.meta.url);
  let fromSources = process.env.DYADC_CLI === 'tsx';
  if (!fromSources && existsSync(buildScript)) {  // a checkout: dist/ may be stale (a published package has no scripts/)
    const { distIsStale } = await import(buildScript.href);
    fromSources = distIsStale();
    if (fromSources && debug) process.stderr.write('dyadc: dist/ is missing or stale: running the sources through tsx (npm run build makes it)\n');
  }
  if (!fromSources) return import('../dist/compiler/cli/main.js');
  const { register } = await import('tsx/esm/api');
  register();
  return import('../compiler/cli/main.ts');
}

const { main } = await loadCli();
await main(process.argv);
