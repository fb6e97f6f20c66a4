/**
 * dyadc's on-disk caches (node_modules/.cache/dyadc/, the find-cache-dir convention): the module
 * generator's runtime types, printed skeleton and V8 code caches (compiler/codegen/module.ts) and the
 * precompiled WGSL templates (compiler/codegen/templates.ts). Every cache is an optimisation only: a
 * directory that cannot be created or written means no cache, never an error.
 *
 * Integrity: a cache file is one header line `dyadc-cache sha256=<hex of the rest>` and the data.
 * `readCacheFile` returns the data only when the digest matches, so a truncated, corrupted or edited
 * cache file is ignored (and rebuilt by its writer), never used: a wrong cache could otherwise give
 * wrong generated code, or crash V8 (code caches are not checksummed in release builds).
 */
import { sha256 } from './hash.js';
import { mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { packagePath } from './package-root.js';

const HEADER = 'dyadc-cache sha256=';
const digest = (b: Uint8Array) => sha256(b);

/** node_modules/.cache/dyadc/ of this package, or undefined if it cannot be created. */
export function cacheDir(): string | undefined {
  const dir = packagePath('node_modules', '.cache', 'dyadc');
  try { mkdirSync(dir, { recursive: true }); return dir; } catch { return undefined; }
}

/**
 * The data of a cache file written by `writeCacheFile`, or undefined when it is missing, unreadable,
 * or its digest does not match (then it is removed). Never throws.
 */
export function readCacheFile(path: string): Buffer | undefined {
  let all: Buffer;
  try { all = readFileSync(path); } catch { return undefined; }
  const nl = all.indexOf(0x0a);
  const head = nl > 0 ? all.subarray(0, nl).toString('latin1') : '';
  const data = all.subarray(nl + 1);
  if (head.startsWith(HEADER) && head.slice(HEADER.length) === digest(data)) return data;
  try { rmSync(path, { force: true }); } catch { /* read-only: ignored all the same */ }
  return undefined;
}

/**
 * Writes a cache file atomically (temp file + rename), with its digest, and removes the files it
 * supersedes: for a path named `<prefix>-<16 hex key><ext>`, every other `<prefix>-<16 hex><ext>` next
 * to it. Never throws (a read-only install or a concurrent writer: no cache this time); the temp file
 * never outlives a failed write.
 */
export function writeCacheFile(path: string, data: string | Uint8Array): void {
  const tmp = `${path}.${process.pid}.tmp`;
  try {
    const bytes = typeof data === 'string' ? Buffer.from(data, 'utf8') : data;
    writeFileSync(tmp, Buffer.concat([Buffer.from(`${HEADER}${digest(bytes)}\n`, 'latin1'), bytes]));
    renameSync(tmp, path);
  } catch {
    try { rmSync(tmp, { force: true, recursive: true }); } catch { /* nothing to clean */ }
    return;
  }
  try {
    const name = basename(path), m = /^(.*)-[0-9a-f]{16}(\.[a-z0-9]+)$/.exec(name);
    if (!m) return;
    for (const f of readdirSync(dirname(path))) {
      if (f === name || !f.startsWith(`${m[1]}-`)) continue;
      const rest = f.slice(m[1].length + 1);
      // superseded versions, and temp files left by killed writers (`<name>.<pid>.tmp`)
      if ((rest.endsWith(m[2]) && /^[0-9a-f]{16}$/.test(rest.slice(0, -m[2].length))) || new RegExp(`^[0-9a-f]{16}\\${m[2]}\\.\\d+\\.tmp$`).test(rest))
        rmSync(join(dirname(path), f), { force: true });
    }
  } catch { /* cleanup is best effort */ }
}
