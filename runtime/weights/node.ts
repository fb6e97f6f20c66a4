/**
 * Node-only file access for safetensors (the format code itself, `safetensors.ts`, stays
 * browser-safe). Reading validates the header before touching the data, so a corrupt multi-GB
 * file fails in microseconds; writing is atomic (temp file in the same directory + rename).
 */
import { promises as fsp, openSync, readSync, closeSync, fstatSync } from 'node:fs';
import * as path from 'node:path';
import { DyadcError } from '../core/errors.js';
import { fsFix, fsReason, makeDirectory } from '../node-fs.js';
import {
  MAX_HEADER_BYTES, readSafetensorsHeader, safetensorsFromHeader, writeSafetensors,
  type SafetensorsFile, type TensorToWrite,
} from './safetensors.js';

/** fs.read moves at most ~2 GiB per call; read in chunks well below that. */
const CHUNK = 64 * 1024 * 1024;

/** One clean line: what failed, the OS reason (no temp-file names), and a fix (runtime/node-fs.ts). */
function ioError(file: string, what: string, e: unknown): DyadcError {
  return new DyadcError('SAFETENSORS', `cannot ${what}: ${fsReason(e)}`, { path: file, fix: fsFix(e), cause: e });
}

function header8Length(b: Uint8Array): number {
  const dv = new DataView(b.buffer, b.byteOffset, 8);
  return dv.getUint32(4, true) * 2 ** 32 + dv.getUint32(0, true);
}

/** One read for the caller to do (synchronously or not): `length` bytes at file `position` into `buf` at `offset`. */
interface ReadRequest { buf: Uint8Array; offset: number; length: number; position: number }

/**
 * A safetensors file load as a sequence of reads, shared by the async and the sync reader: yields
 * each read to do and takes back the bytes it read. The 8-byte length and the JSON header are read
 * and checked first; only then is the whole file read (chunked, into one buffer) so `get()` can
 * return zero-copy views. Returns the parsed file.
 */
function* loadSteps(file: string, size: number): Generator<ReadRequest, SafetensorsFile, number> {
  function* fill(buf: Uint8Array, position: number): Generator<ReadRequest, void, number> {
    for (let done = 0; done < buf.length;) {
      const r = yield { buf, offset: done, length: Math.min(CHUNK, buf.length - done), position: position + done };
      if (r === 0) throw new DyadcError('SAFETENSORS', `file shrank while reading (got ${position + done} of ${size} bytes)`, { path: file });
      done += r;
    }
  }
  const head = new Uint8Array(Math.min(8, size));
  yield* fill(head, 0);
  let prefix = head;
  if (size >= 8) {
    const n = header8Length(head);
    if (n <= MAX_HEADER_BYTES && 8 + n <= size) {
      prefix = new Uint8Array(8 + n);
      prefix.set(head);
      yield* fill(prefix.subarray(8), 8);
    }
  }
  const header = withFile(file, () => readSafetensorsHeader(prefix, size));
  const bytes = new Uint8Array(size);
  bytes.set(prefix);
  yield* fill(bytes.subarray(prefix.length), prefix.length);
  return safetensorsFromHeader(header, bytes);
}

/**
 * Read and validate a safetensors file (see `loadSteps`: the header is checked before the data is read).
 * @throws DyadcError(SAFETENSORS) when the file cannot be opened/read or is malformed; the
 *   error's `path` is the file path.
 */
export async function readSafetensorsFile(file: string): Promise<SafetensorsFile> {
  let fh: fsp.FileHandle;
  try { fh = await fsp.open(file, 'r'); } catch (e) { throw ioError(file, 'open file', e); }
  try {
    let size: number;
    try { size = (await fh.stat()).size; } catch (e) { throw ioError(file, 'stat file', e); }
    const steps = loadSteps(file, size);
    for (let s = steps.next(); ;) {
      if (s.done) return s.value;
      const q = s.value;
      let r: number;
      try { r = (await fh.read(q.buf, q.offset, q.length, q.position)).bytesRead; } catch (e) { throw ioError(file, 'read file', e); }
      s = steps.next(r);
    }
  } finally {
    await fh.close().catch(() => undefined);
  }
}

/** Synchronous `readSafetensorsFile` (the same steps, checks and errors). */
export function readSafetensorsFileSync(file: string): SafetensorsFile {
  let fd: number;
  try { fd = openSync(file, 'r'); } catch (e) { throw ioError(file, 'open file', e); }
  try {
    const steps = loadSteps(file, fstatSync(fd).size);
    for (let s = steps.next(); ;) {
      if (s.done) return s.value;
      const q = s.value;
      let r: number;
      try { r = readSync(fd, q.buf, q.offset, q.length, q.position); } catch (e) { throw ioError(file, 'read file', e); }
      s = steps.next(r);
    }
  } finally {
    closeSync(fd);
  }
}

/** Re-throw a format error with the file name in front of its message. */
function withFile<T>(file: string, f: () => T): T {
  try { return f(); } catch (e) {
    if (e instanceof DyadcError && e.code === 'SAFETENSORS') throw e.within(file);
    throw e;
  }
}

/**
 * Write tensors to `file` atomically: the bytes go to a temp file in the same directory, are
 * fsync'ed, then renamed over `file`, so readers never see a half-written file.
 * @throws what `writeSafetensors` throws; DyadcError(SAFETENSORS) on I/O failure (temp file removed) or when
 *   `file` exists and is no regular file (a directory, device, pipe: the rename would replace it); DyadcError(USAGE) for an empty name.
 */
export async function writeSafetensorsFile(file: string, tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>): Promise<void> {
  if (typeof file !== 'string' || file.trim() === '') throw new DyadcError('USAGE', `the output file name is empty`, { fix: 'give a file path, e.g. weights.safetensors' });
  // the rename below would replace whatever is there: refuse anything but a regular file (`-o /dev/full` replaced the device node)
  const existing = await fsp.stat(file).catch(() => undefined);
  if (existing && !existing.isFile()) {
    throw new DyadcError('SAFETENSORS', `cannot write file: it exists and is ${existing.isDirectory() ? 'a directory' : 'not a regular file (a device, pipe or socket)'}`,
      { path: file, fix: 'give the path of a regular file (it is replaced atomically)' });
  }
  const bytes = writeSafetensors(tensors, metadata);
  const dir = path.dirname(path.resolve(file));
  try { makeDirectory(path.dirname(file)); } catch (e) { throw ioError(file, `create the directory ${(e as NodeJS.ErrnoException).path ?? path.dirname(file)}`, e); }
  const tmp = path.join(dir, `.${path.basename(file)}.${process.pid}.${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}.tmp`);
  try {
    const fh = await fsp.open(tmp, 'wx');
    try {
      let done = 0;
      while (done < bytes.length) {
        const { bytesWritten } = await fh.write(bytes, done, Math.min(CHUNK, bytes.length - done), done);
        done += bytesWritten;
      }
      await fh.sync();
    } finally {
      await fh.close();
    }
    await fsp.rename(tmp, file);
  } catch (e) {
    await fsp.unlink(tmp).catch(() => undefined);
    throw ioError(file, 'write file', e);
  }
}
