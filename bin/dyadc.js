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

/**
 * Dawn prints two notices from native code straight to file descriptor 2 whenever it enumerates an
 * adapter whose Vulkan driver reports more dynamic buffers than Dawn supports (lavapipe: 1000000):
 * "Warning: maxDynamic{Uniform,Storage}BuffersPerPipelineLayout artificially reduced from N to 16 to fit
 * dynamic offset allocation limit." (Dawn src/dawn/native/Limits.cpp, unconditional; it happens inside
 * requestAdapter, before any limit is requested, so no requestAdapter/requestDevice argument avoids it,
 * and Node cannot redirect a native write). They say nothing the user can act on, so the commands that
 * open the adapter (doctor, tune, --limits adapter) run the CLI in a child process whose stderr passes
 * through here minus exactly those lines; everything else (dyadc's errors, other Dawn/Mesa messages)
 * passes unchanged. Other commands never touch WebGPU and run in this process.
 */
const DAWN_LIMIT_NOTICE = /^Warning: maxDynamic(?:Uniform|Storage)BuffersPerPipelineLayout artificially reduced from \d+ to \d+ to fit dynamic offset allocation limit\.$/;

/** @param {string[]} args the CLI arguments @returns {boolean} whether the command opens the WebGPU adapter */
function opensAdapter(args) {
  if (args[0] === 'doctor' || args[0] === 'tune') return true;
  return args.some((a, i) => a === '--limits=adapter' || (a === '--limits' && args[i + 1]?.trim() === 'adapter'));
}

if (!process.env.DYADC_CLI_CHILD && opensAdapter(process.argv.slice(2))) {
  const { spawn } = await import('node:child_process');
  const { fileURLToPath } = await import('node:url');
  const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)],
    { stdio: ['inherit', 'inherit', 'pipe'], env: { ...process.env, DYADC_CLI_CHILD: '1' } });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => child.kill(sig));  // the child decides how to end
  let rest = '';  // a line not ended yet
  const pass = (lines) => { const kept = lines.filter((l) => !DAWN_LIMIT_NOTICE.test(l)); if (kept.length) process.stderr.write(kept.map((l) => `${l}\n`).join('')); };
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk) => { const lines = (rest + chunk).split('\n'); rest = lines.pop(); pass(lines); });
  child.on('close', (code, signal) => {
    if (rest && !DAWN_LIMIT_NOTICE.test(rest)) process.stderr.write(rest);
    if (signal) { process.removeAllListeners(signal); process.kill(process.pid, signal); }
    process.exitCode = code ?? 1;
  });
} else {
  const { main } = await loadCli();
  await main(process.argv);
}
