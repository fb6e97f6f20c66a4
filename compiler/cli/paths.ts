/**
 * Output-path checks of the CLI, made before a command reads, computes or writes anything, so a
 * mistyped path never destroys a user's file and never fails only after the work is done:
 *  - `refuseInputAsOutput`: an output that is one of the command's inputs (same file after
 *    resolving symbolic links and `..`), e.g. `convert --dense d.safetensors -o d.safetensors`;
 *  - `refuseNonCache`: a `tune --cache` file that exists but is no tuning cache at all (a spec, a
 *    weights file): the tuner would set it aside as `<file>.corrupt-…` and write a cache in its place.
 *    A damaged cache (a `.json` file that is not valid JSON, or a JSON object without "layers") keeps
 *    the cache's own rule: reported, set aside and rebuilt (compiler/tune/cache.ts);
 *  - `refuseFileAsDirectory`: an output directory (`tune --report`) that is an existing file.
 * Each throws DyadcError(USAGE) with one line naming the option and the fix.
 */
import { readFileSync, realpathSync, statSync } from 'node:fs';
import { basename, dirname, resolve } from 'node:path';
import { DyadcError } from '../errors.js';
import { CACHE_FORMAT } from '../tune/cache.js';

/** The real path of `p` (links and `..` resolved); for a path that does not exist yet, its deepest existing ancestor's real path joined with the rest. */
export function realPath(p: string): string {
  const abs = resolve(p);
  try { return realpathSync(abs); } catch {
    const parent = dirname(abs);
    return parent === abs ? abs : resolve(realPath(parent), basename(abs));
  }
}

/**
 * Throws when the output `out` (given with option `flag`) is one of `inputs` (`[what, path]` pairs).
 * @throws DyadcError(USAGE): `<cmd>: <flag> <out> is the <what> it reads; …`
 */
export function refuseInputAsOutput(cmd: string, flag: string, out: string, inputs: [what: string, path: string | undefined][]): void {
  const target = realPath(out);
  for (const [what, p] of inputs) {
    if (p !== undefined && realPath(p) === target) {
      throw new DyadcError('USAGE', `${cmd}: ${flag} ${out} is the ${what} ${cmd} reads; writing it would overwrite that file`, { fix: `choose another ${flag} path` });
    }
  }
}

/**
 * Throws when the `--cache` file exists and is certainly not a tuning cache: a JSON object with
 * "layers" (a spec) and no "format", or a file that is not JSON, does not name the cache format and
 * does not end in `.json` (e.g. weights.safetensors). Anything else is left to the cache's repair.
 * @throws DyadcError(USAGE)
 */
export function refuseNonCache(path: string): void {
  const st = statSync(path, { throwIfNoEntry: false });
  if (!st || !st.isFile()) return; // missing: created; a directory: the cache's own CACHE error
  let text: string;
  try { text = readFileSync(path, 'utf8'); } catch { return; } // unreadable: the cache's own CACHE error
  const fix = { fix: 'pass a tuning cache file with --cache (a new name creates one), or leave --cache out for the default' };
  let doc: unknown;
  try { doc = JSON.parse(text); } catch {
    if (!text.includes(CACHE_FORMAT) && !path.toLowerCase().endsWith('.json')) {
      throw new DyadcError('USAGE', `tune: --cache ${path} exists and is not a dyadc tuning cache (not JSON, no "format": "${CACHE_FORMAT}"); tune would replace it`, fix);
    }
    return;
  }
  if (typeof doc === 'object' && doc !== null && !Array.isArray(doc) && 'layers' in doc && !('format' in doc)) {
    throw new DyadcError('USAGE', `tune: --cache ${path} is a layer spec (it has "layers"), not a tuning cache; tune would replace it`, fix);
  }
}

/**
 * Throws when the output directory `dir` (option `flag`) cannot be made: it, or its deepest existing
 * ancestor, exists as something other than a directory. @throws DyadcError(USAGE)
 */
export function refuseFileAsDirectory(cmd: string, flag: string, dir: string): void {
  for (let p = resolve(dir); ; p = dirname(p)) {
    let st;
    try { st = statSync(p, { throwIfNoEntry: false }); } catch { st = undefined; } // ENOTDIR: look further up
    if (st) {
      if (st.isDirectory()) return;
      const what = p === resolve(dir) ? `${dir} is a file` : `${dir} is under ${p}, which is a file`;
      throw new DyadcError('USAGE', `${cmd}: ${flag} ${what}; ${cmd} writes a directory there`, { fix: `pass a directory path to ${flag} (it is created when missing)` });
    }
    if (dirname(p) === p) return;
  }
}
