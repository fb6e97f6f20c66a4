/**
 * dyadc's on-disk caches (node_modules/.cache/dyadc/, the find-cache-dir convention): the module
 * generator's printed skeleton and code caches (compiler/codegen/module.ts) and the precompiled
 * WGSL templates (compiler/codegen/templates.ts). Every cache is an optimisation only: a directory
 * that cannot be created or written means no cache, never an error.
 */
import { mkdirSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** node_modules/.cache/dyadc/ of this package, or undefined if it cannot be created. */
export function cacheDir(): string | undefined {
  const dir = fileURLToPath(new URL('../../node_modules/.cache/dyadc/', import.meta.url));
  try { mkdirSync(dir, { recursive: true }); return dir; } catch { return undefined; }
}

/**
 * Writes a cache file atomically (temp file + rename) and removes the files it supersedes: for a
 * path named `<prefix>-<16 hex key><ext>`, every other `<prefix>-<16 hex><ext>` next to it.
 * Never throws (a read-only install or a concurrent writer: no cache this time).
 */
export function writeCacheFile(path: string, data: string | Uint8Array): void {
  try {
    const tmp = `${path}.${process.pid}.tmp`;
    writeFileSync(tmp, data);
    renameSync(tmp, path);
    const name = basename(path), m = /^(.*)-[0-9a-f]{16}(\.[a-z0-9]+)$/.exec(name);
    if (!m) return;
    for (const f of readdirSync(dirname(path))) {
      if (f !== name && f.startsWith(`${m[1]}-`) && f.endsWith(m[2]) && /^[0-9a-f]{16}$/.test(f.slice(m[1].length + 1, -m[2].length))) rmSync(join(dirname(path), f), { force: true });
    }
  } catch { /* no cache this time */ }
}
