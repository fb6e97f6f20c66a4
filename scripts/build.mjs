// The package build (`npm run build`; `prepack` runs it, so `npm pack`/`npm publish` ship a fresh one;
// scripts/setup runs it with --if-stale): compiler/ and runtime/ compiled by tsc (tsconfig.build.json)
// into dist/ as ESM .js with .d.ts and source maps (stack traces name the .ts file and line), plus
// the AOT module generator's skeleton (dist/compiler/codegen/module-skeleton.json, printed by ts-morph
// from the sources, so the package never loads ts-morph). Built into a temporary directory that then
// replaces dist/ whole: a failed build leaves the previous one in place.
//
//   node scripts/build.mjs             build
//   node scripts/build.mjs --if-stale  build only when a source is newer than the last build
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
/** Written last by a build: its time is the build's. */
export const STAMP = 'dist/build-stamp.json';

/** Newest modification time (ms) of the build's inputs: the TypeScript under compiler/ and runtime/, the tsconfigs and this script. */
function newestInput(root) {
  let newest = 0;
  const visit = (dir) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      if (e.isDirectory()) visit(p);
      else if (e.name.endsWith('.ts')) newest = Math.max(newest, statSync(p).mtimeMs);
    }
  };
  visit(join(root, 'compiler'));
  visit(join(root, 'runtime'));
  for (const f of ['tsconfig.json', 'tsconfig.build.json', 'scripts/build.mjs']) newest = Math.max(newest, statSync(join(root, f)).mtimeMs);
  return newest;
}

/**
 * Whether dist/ is missing or older than a source it is built from (modification times: an edit,
 * a checkout or a pull makes it stale). bin/dyadc.js asks before running dist/ in a checkout.
 * @param {string} [root] the repository
 */
export function distIsStale(root = ROOT) {
  let built;
  try { built = statSync(join(root, STAMP)).mtimeMs; } catch { return true; }
  return newestInput(root) > built;
}

/** Builds dist/ (see the file header). @throws when tsc reports an error or the skeleton cannot be printed. */
export async function build(root = ROOT) {
  const t0 = performance.now();
  const tmp = join(root, `dist.tmp-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  try {
    const tsc = createRequire(join(root, 'package.json')).resolve('typescript/bin/tsc');
    execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json'), '--outDir', tmp], { cwd: root, stdio: 'inherit' });
    // the skeleton is printed from the sources (ts-morph, through tsx): the built module reads it
    const { register } = await import('tsx/esm/api');
    const unregister = register();
    try {
      const { writeSkeletonFile } = await import(pathToFileURL(join(root, 'compiler', 'codegen', 'module.ts')).href);
      writeSkeletonFile(join(tmp, 'compiler', 'codegen', 'module-skeleton.json'));
    } finally { await unregister(); }
    writeFileSync(join(tmp, 'build-stamp.json'), JSON.stringify({ builtBy: 'scripts/build.mjs' }) + '\n');
    rmSync(join(root, 'dist'), { recursive: true, force: true });
    renameSync(tmp, join(root, 'dist'));
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  return (performance.now() - t0) / 1000;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  if (process.argv.includes('--if-stale') && existsSync(join(ROOT, STAMP)) && !distIsStale()) process.exit(0);
  const secs = await build();
  process.stderr.write(`dyadc: built dist/ (${secs.toFixed(1)} s)\n`);
}
