/**
 * The persistent tuning cache: one JSON file (default `<user cache dir>/dyadc/tune-cache.json`,
 * env-paths) holding the measured schedules of every (adapter, layer shape, block count, variant,
 * epilogue, batch bucket, dtype) — see key.ts for the key and the stale stamp.
 *
 * File format (`dyadc-tune-cache/1`): a JSON object whose `entries` map has one entry per line,
 * sorted by key, so a damaged file can be salvaged line by line.
 *
 * Robustness rules:
 *   - writes are atomic (write-file-atomic: temp file in the same directory, fsync, rename), so a
 *     crash or SIGKILL mid-write leaves the previous file intact;
 *   - a save takes a lock file (`<file>.lock`, O_EXCL, holding the pid; stale after 30 s or when its
 *     process is gone; after 10 s of waiting the save proceeds without it), re-reads the file and
 *     merges (entries this process wrote win; others' entries are kept), so concurrent tuners do
 *     not lose each other's work;
 *   - a corrupt file (not JSON, truncated, invalid entries) or a foreign one (another format) is
 *     reported, never fatal: with `repair` it is renamed to `<file>.corrupt-<timestamp>` and
 *     rebuilt from the entries that are still valid (salvaged line by line when the JSON is broken);
 *     without `repair` (read-only use, e.g. `dyadc compile --tuned`) it is only reported.
 */
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import writeFileAtomic from 'write-file-atomic';
import { z } from 'zod';
import envPaths from 'env-paths';
import type { Schedule } from '../ir/graph.js';
import { scheduleRuleProblem, scheduleShapeProblem } from '../passes/schedule.js';
import { DyadcError } from '../errors.js';
import { type CacheKey, type Stamp, currentStamp, keyString, sameStamp } from './key.js';

export const CACHE_FORMAT = 'dyadc-tune-cache/1';
const FORMAT_RE = /^dyadc-tune-cache\/(\d+)$/;

/** One measured schedule of a group. */
export interface CachedCandidate {
  schedule: Schedule;
  /** ok: verified and timed; rejected: its output disagreed; failed: it did not compile/run */
  status: 'ok' | 'rejected' | 'failed';
  /** median of the timed runs, ms (null unless ok) */
  medianMs: number | null;
  /** every timed run, ms */
  timesMs: number[];
  note?: string;
}

/** Everything known about one key. */
export interface CacheEntry {
  key: CacheKey;
  stamp: Stamp;
  /** the fastest verified schedule, and its median (ms; from the interleaved confirmation runs when `confirmed`) */
  best: { schedule: Schedule; medianMs: number; confirmed: boolean } | null;
  candidates: CachedCandidate[];
  /** 'timestamp': GPU timestamp queries; 'wall': wall clock around onSubmittedWorkDone */
  timer: 'timestamp' | 'wall';
  /** projection error ‖W − D‖_F / ‖W‖_F of a dense weight onto this block count (DYAD.md), with where W came from */
  relError?: { value: number; source: string };
  /** the batch actually measured (the key holds its bucket) */
  batch: number;
  /** ISO time of the last measurement */
  measuredAt: string;
  /** os.loadavg() when measured: the machine's load, for judging the noise */
  loadavg: number[];
  /** true when every schedule planned for this group (up to maxSchedules) was measured; false after a budget cut */
  complete: boolean;
  maxSchedules: number;
}

// a schedule the compiler would accept: the shape and the rules between fields that checkSchedule applies to
// overrides (passes/schedule.ts); limits are the device's, checked at compile
const ScheduleSchema = z.unknown().superRefine((s, ctx) => {
  const shape = scheduleShapeProblem(s);
  if (shape) { ctx.addIssue({ code: 'custom', path: shape.field ? shape.field.split('.') : [], message: shape.problem }); return; }
  const rule = scheduleRuleProblem(s as Schedule);
  if (rule) ctx.addIssue({ code: 'custom', message: rule.problem });
});
const str = z.string();
const EntrySchema = z.object({
  key: z.object({
    adapter: z.object({ vendor: str, architecture: str, device: str, description: str }),
    layer: z.object({ in: z.number().int().positive(), out: z.number().int().positive(), blocks: z.number().int().positive(),
      variant: z.enum(['dense', 'it', 'ot', 'dt']), epilogue: str }),
    batchBucket: z.number().int().positive(),
    dtype: z.enum(['f32', 'f16']),
  }),
  stamp: z.object({ templates: str, dyadc: str }),
  best: z.object({ schedule: ScheduleSchema, medianMs: z.number().nonnegative(), confirmed: z.boolean() }).nullable(),
  candidates: z.array(z.object({
    schedule: ScheduleSchema, status: z.enum(['ok', 'rejected', 'failed']), medianMs: z.number().nonnegative().nullable(),
    timesMs: z.array(z.number()), note: str.optional(),
  })),
  timer: z.enum(['timestamp', 'wall']),
  relError: z.object({ value: z.number().nonnegative(), source: str }).optional(),
  batch: z.number().int().positive(),
  measuredAt: str,
  loadavg: z.array(z.number()),
  complete: z.boolean(),
  maxSchedules: z.number().int().nonnegative(),
});

/** Validates one entry read from a file and that it sits under its own key. @returns the problem, or null. */
function entryProblem(k: string, v: unknown): string | null {
  const r = EntrySchema.safeParse(v);
  if (!r.success) {
    const i = r.error.issues[0];
    return `entry ${JSON.stringify(k)}: ${i.path.join('.') || '(entry)'}: ${i.message}`;
  }
  const want = keyString((v as CacheEntry).key);
  if (want !== k) return `entry ${JSON.stringify(k)}: its key fields belong under ${JSON.stringify(want)}`;
  return null;
}

/** The default cache file: `<user cache dir>/dyadc/tune-cache.json` (env-paths; e.g. ~/.cache/dyadc on Linux). */
export function defaultCachePath(): string {
  return join(envPaths('dyadc', { suffix: '' }).cache, 'tune-cache.json');
}

interface FileRead {
  entries: Map<string, CacheEntry>;
  /** what was wrong (empty when the file is healthy or absent) */
  problems: string[];
  /** the file should be set aside (it is corrupt or foreign, or lost entries) */
  damaged: boolean;
  exists: boolean;
}

/**
 * Reads a cache file tolerantly. Never throws for bad content; throws DyadcError(CACHE) only when
 * the path exists but cannot be read (permissions, a directory).
 */
export function readCacheFile(path: string): FileRead {
  let text: string;
  try { text = readFileSync(path, 'utf8'); } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return { entries: new Map(), problems: [], damaged: false, exists: false };
    throw new DyadcError('CACHE', `cannot read tuning cache ${path}: ${(e as Error).message}`, { fix: 'fix its permissions, or pass another file with --cache', cause: e });
  }
  const entries = new Map<string, CacheEntry>();
  const problems: string[] = [];
  let doc: unknown;
  try { doc = JSON.parse(text); } catch (e) {
    problems.push(text.trim() === '' ? 'the file is empty' : `not valid JSON (${(e as Error).message})`);
    const salvaged = salvageLines(text, entries, problems);
    if (salvaged) problems.push(`salvaged ${salvaged} valid entr${salvaged === 1 ? 'y' : 'ies'} line by line`);
    return { entries, problems, damaged: true, exists: true };
  }
  const obj = doc as { format?: unknown; entries?: unknown };
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc) || typeof obj.format !== 'string' || !FORMAT_RE.test(obj.format)) {
    problems.push('not a dyadc tuning cache (no "format": "dyadc-tune-cache/1")');
    return { entries, problems, damaged: true, exists: true };
  }
  if (obj.format !== CACHE_FORMAT) {
    problems.push(`format ${JSON.stringify(obj.format)} is not ${CACHE_FORMAT} (written by another dyadc version)`);
    return { entries, problems, damaged: true, exists: true };
  }
  if (typeof obj.entries !== 'object' || obj.entries === null || Array.isArray(obj.entries)) {
    problems.push('"entries" is not an object');
    return { entries, problems, damaged: true, exists: true };
  }
  for (const [k, v] of Object.entries(obj.entries as Record<string, unknown>)) {
    const p = entryProblem(k, v);
    if (p) problems.push(`dropped ${p}`);
    else entries.set(k, v as CacheEntry);
  }
  return { entries, problems, damaged: problems.length > 0, exists: true };
}

/** Recovers the entries of a broken file from its lines (one entry per line, see serialize). @returns how many. */
function salvageLines(text: string, into: Map<string, CacheEntry>, problems: string[]): number {
  let n = 0, bad = 0;
  for (const line of text.split('\n')) {
    const m = /^\s*("(?:[^"\\]|\\.)*")\s*:\s*(\{.*\})\s*,?\s*$/.exec(line);
    if (!m) continue;
    let k: string, v: unknown;
    try { k = JSON.parse(m[1]) as string; v = JSON.parse(m[2]); } catch { bad++; continue; }
    if (entryProblem(k, v)) { bad++; continue; }
    into.set(k, v as CacheEntry);
    n++;
  }
  if (bad) problems.push(`${bad} damaged entr${bad === 1 ? 'y' : 'ies'} could not be recovered`);
  return n;
}

/** The file text: one entry per line, keys sorted (stable diffs, line-wise salvage). */
export function serializeCache(entries: Map<string, CacheEntry>): string {
  const keys = [...entries.keys()].sort();
  const lines = keys.map((k) => `    ${JSON.stringify(k)}: ${JSON.stringify(entries.get(k))}`);
  return `{\n  "format": ${JSON.stringify(CACHE_FORMAT)},\n`
    + `  "about": "dyadc tune cache: one entry per line, keyed adapter|in x out|blocks|variant|epilogue|batch bucket|dtype (compiler/tune/key.ts); entries whose stamp differs from the compiler's are stale",\n`
    + `  "entries": {\n${lines.join(',\n')}${lines.length ? '\n' : ''}  }\n}\n`;
}

/** `<file>.corrupt-<timestamp>` (unique). */
function setAsideName(path: string): string {
  const ts = new Date().toISOString().replace(/[:.]/g, '-');
  let name = `${path}.corrupt-${ts}`;
  for (let i = 1; existsSync(name); i++) name = `${path}.corrupt-${ts}-${i}`;
  return name;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const LOCK_STALE_MS = 30_000;
const LOCK_WAIT_MS = 10_000;

/** A lock is stale when older than LOCK_STALE_MS or its owner (pid inside, same host) is gone (a killed tuner). */
function lockIsStale(lockPath: string): boolean {
  try {
    if (Date.now() - statSync(lockPath).mtimeMs > LOCK_STALE_MS) return true;
    const pid = Number(readFileSync(lockPath, 'utf8').trim());
    if (!Number.isInteger(pid) || pid <= 0) return false; // being written right now
    try { process.kill(pid, 0); return false; } catch (e) { return (e as NodeJS.ErrnoException).code === 'ESRCH'; }
  } catch {
    return false; // vanished: the next open decides
  }
}

/** Takes `<file>.lock` (O_EXCL). @returns a release function, or null when it could not be taken in time. */
async function lock(path: string): Promise<(() => void) | null> {
  const lockPath = `${path}.lock`;
  const t0 = Date.now();
  for (;;) {
    try {
      const fd = openSync(lockPath, 'wx');
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return () => { try { unlinkSync(lockPath); } catch { /* already gone */ } };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') return null;
      if (lockIsStale(lockPath)) { try { unlinkSync(lockPath); } catch { /* raced */ } continue; }
      if (Date.now() - t0 > LOCK_WAIT_MS) return null;
      await sleep(25 + Math.random() * 50);
    }
  }
}

/** Removes write-file-atomic temp files (`<file>.<digits>`) older than 10 minutes: leftovers of killed writers. */
function removeOldTemps(path: string): void {
  const dir = dirname(path), base = basename(path);
  let names: string[];
  try { names = readdirSync(dir); } catch { return; }
  const re = new RegExp(`^${base.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\.\\d+$`);
  for (const n of names) {
    if (!re.test(n)) continue;
    try { if (Date.now() - statSync(join(dir, n)).mtimeMs > 600_000) unlinkSync(join(dir, n)); } catch { /* raced */ }
  }
}

export type Lookup =
  | { status: 'fresh'; entry: CacheEntry }
  | { status: 'stale'; entry: CacheEntry }
  | { status: 'missing' };

export interface LoadOptions {
  /** Set a damaged file aside and rebuild it now (tune); false: only report (read-only users). Default false. */
  repair?: boolean;
}

/**
 * The in-memory view of a cache file. `path` null: an in-memory cache that is never written.
 * `notes` collects every problem found (corrupt file, dropped entries, set-aside names, lock timeouts).
 */
export class TuneCache {
  readonly path: string | null;
  readonly notes: string[] = [];
  private entries = new Map<string, CacheEntry>();
  private dirty = new Set<string>();
  /** write even with nothing dirty (a repaired file must be rebuilt, possibly empty) */
  private mustWrite = false;

  private constructor(path: string | null) { this.path = path === null ? null : resolve(path); }

  /**
   * Loads `path` (missing → empty). A corrupt or foreign file never throws: see the file header.
   * @throws DyadcError(CACHE) when the file exists but cannot be read, or (repair) cannot be set aside.
   */
  static async load(path: string | null, opts: LoadOptions = {}): Promise<TuneCache> {
    const c = new TuneCache(path);
    if (c.path === null) return c;
    const r = readCacheFile(c.path);
    c.entries = r.entries;
    if (r.problems.length) c.notes.push(`tuning cache ${c.path}: ${r.problems.join('; ')}`);
    if (r.damaged && r.exists && opts.repair) {
      const aside = setAsideName(c.path);
      try { renameSync(c.path, aside); } catch (e) {
        throw new DyadcError('CACHE', `cannot set the damaged tuning cache ${c.path} aside: ${(e as Error).message}`, { fix: 'move it away by hand, or pass another file with --cache', cause: e });
      }
      c.notes.push(`set the damaged file aside as ${aside}; rebuilt ${c.path} with ${r.entries.size} valid entr${r.entries.size === 1 ? 'y' : 'ies'}`);
      for (const k of r.entries.keys()) c.dirty.add(k);
      c.mustWrite = true;
      await c.save();
    }
    return c;
  }

  /** Every entry (fresh and stale). */
  all(): CacheEntry[] { return [...this.entries.values()]; }
  get size(): number { return this.entries.size; }

  /** Looks a key up: fresh (stamp matches `stamp`), stale (it does not: never use it) or missing. */
  lookup(key: CacheKey, stamp: Stamp = currentStamp()): Lookup {
    const e = this.entries.get(keyString(key));
    if (!e) return { status: 'missing' };
    return sameStamp(e.stamp, stamp) ? { status: 'fresh', entry: e } : { status: 'stale', entry: e };
  }

  /** Adds or replaces an entry (written by the next save). */
  put(entry: CacheEntry): void {
    const k = keyString(entry.key);
    this.entries.set(k, entry);
    this.dirty.add(k);
  }

  /**
   * Writes the entries put since the last save: lock, re-read the file, merge (ours win per key,
   * others' are kept), write atomically, unlock. A damaged file found at this point is set aside.
   * No-op for an in-memory cache or when nothing changed.
   * @throws DyadcError(CACHE) when the directory cannot be created or the file cannot be written.
   */
  async save(): Promise<void> {
    if (this.path === null || (this.dirty.size === 0 && !this.mustWrite)) return;
    const path = this.path;
    try { mkdirSync(dirname(path), { recursive: true }); } catch (e) {
      throw new DyadcError('CACHE', `cannot create the directory of the tuning cache ${path}: ${(e as Error).message}`, { fix: 'pass a writable --cache file', cause: e });
    }
    const release = await lock(path);
    if (!release) this.notes.push(`tuning cache ${path}: could not take ${path}.lock within ${LOCK_WAIT_MS / 1000} s; writing without it`);
    try {
      const disk = readCacheFile(path);
      if (disk.damaged && disk.exists) {
        const aside = setAsideName(path);
        try { renameSync(path, aside); this.notes.push(`tuning cache ${path}: ${disk.problems.join('; ')}; set aside as ${aside}`); } catch { /* rewritten below anyway */ }
      }
      const merged = new Map(disk.entries);
      for (const k of this.dirty) { const e = this.entries.get(k); if (e) merged.set(k, e); }
      try {
        await writeFileAtomic(path, serializeCache(merged), { fsync: true });
      } catch (e) {
        throw new DyadcError('CACHE', `cannot write the tuning cache ${path}: ${(e as Error).message}`, { fix: 'pass a writable --cache file', cause: e });
      }
      this.entries = merged;
      this.dirty.clear();
      this.mustWrite = false;
      removeOldTemps(path);
    } finally {
      release?.();
    }
  }
}
