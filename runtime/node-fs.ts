/**
 * Node-only file-system helpers shared by the runtime (runtime/weights/node.ts writes safetensors)
 * and the CLI (compiler/cli/main.ts): making an output directory, and turning Node's fs errors into
 * one line with a fix. One table of fixes, so a failure reads the same from every command.
 * (The runtime never imports compiler/: this module lives here for both.)
 */
import { mkdirSync, statSync } from 'node:fs';
import * as path from 'node:path';

/** What to do about a file-system error, by errno code. */
const FS_FIX: Readonly<Record<string, string>> = {
  ENOENT: 'check the path', ENOTDIR: 'a part of the path is a file, not a directory: choose another path',
  EISDIR: 'give a file path, not a directory', EEXIST: 'it already exists: remove it or choose another path',
  EACCES: 'check the permissions', EPERM: 'check the permissions', EROFS: 'write somewhere writable',
  ENAMETOOLONG: 'use a shorter file name or path', ENOSPC: 'free disk space', EMFILE: 'close other programs and retry',
};

/** The fix for a Node fs error (by its `code`), or undefined when there is none to give. */
export function fsFix(e: unknown): string | undefined {
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  return typeof code === 'string' && Object.prototype.hasOwnProperty.call(FS_FIX, code) ? FS_FIX[code] : undefined;
}

/** The OS reason of a Node fs error without its code prefix and path suffix: `ENOTDIR: not a directory, mkdir 'a/b'` → `not a directory`. */
export function fsReason(e: unknown): string {
  const err = e as NodeJS.ErrnoException;
  return (err?.message ?? String(e)).replace(/^[A-Z]+: /, '').replace(/, \w+ '[^']*'( -> '[^']*')?$/, '');
}

/**
 * Whether `e` is an error Node's fs raised (it carries an errno `code` like `ENOTDIR` and a `syscall`).
 */
export function isFsError(e: unknown): e is NodeJS.ErrnoException & { code: string; syscall: string } {
  const err = e as NodeJS.ErrnoException;
  return err instanceof Error && typeof err.code === 'string' && /^E[A-Z]+$/.test(err.code) && typeof err.syscall === 'string';
}

/**
 * One line for an error Node's fs raised: `cannot mkdir <path>: not a directory (fix: …)` (long paths
 * shortened in the middle); undefined for any other error.
 */
export function fsErrorLine(e: unknown): string | undefined {
  if (!isFsError(e)) return undefined;
  const p = e.path;
  const where = p ? ` ${p.length > 120 ? `${p.slice(0, 60)}…${p.slice(-40)}` : p}` : '';
  const fix = fsFix(e);
  return `cannot ${e.syscall}${where}: ${fsReason(e)}${fix ? ` (fix: ${fix})` : ''}`;
}

/**
 * mkdir -p, one level at a time from the deepest existing ancestor: Node's recursive mkdir retries
 * forever where mkdir fails with ENOENT under a directory that exists (`-o /proc/x` hung); here that
 * is one error. A component that exists as something other than a directory is an ENOTDIR error
 * naming that component (as mkdir below a file reports), so every caller gives the same message.
 * Synchronous: a few stat/mkdir calls, made once before an output is written.
 * @throws Node's fs error (ENOENT, ENOTDIR, EACCES, …) with `path` the directory that could not be made
 */
export function makeDirectory(dir: string): void {
  const st = statSync(dir, { throwIfNoEntry: false });
  if (st?.isDirectory()) return;
  if (st) throw Object.assign(new Error(`ENOTDIR: not a directory, mkdir '${dir}'`), { code: 'ENOTDIR', errno: -20, syscall: 'mkdir', path: dir });
  const parent = path.dirname(dir);
  if (parent !== dir) makeDirectory(parent);
  mkdirSync(dir);
}
