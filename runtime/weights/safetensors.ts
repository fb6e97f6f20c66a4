/**
 * A small, strict safetensors reader and writer. Runs in browsers and Node alike (no Node imports).
 *
 * Format (https://github.com/huggingface/safetensors): an 8-byte little-endian u64 `N`, then `N`
 * bytes of UTF-8 JSON `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {k: v}}`,
 * then the data region. Offsets are relative to the start of the data region; all tensors are
 * little-endian and row-major.
 *
 * The reader parses only the header up front and validates it completely (every tensor's byte
 * range lies inside the data region, ranges tile it exactly with no holes, overlaps or trailing
 * bytes, shapes agree with byte lengths, no duplicate keys), so later `get()` / `getRaw()` calls
 * can never read out of bounds. Every problem with the file raises `DyadcError('SAFETENSORS')`
 * naming the tensor and field.
 *
 * Where the format leaves room, this reader follows the official one (huggingface/safetensors,
 * Rust, `SafeTensors::read_metadata`, checked at its May 2026 head): JSON whitespace (space, tab,
 * LF, CR) before the header's `{` and after its `}` is accepted (writers may pad the header to align
 * the data; safetensors#686 made leading padding explicit), and `"__metadata__": null` means no
 * metadata (serde reads it as `Option::None`); metadata values must be strings.
 *
 * Also exported: exact float32 <-> float16 / bfloat16 conversions (round to nearest, ties to
 * even), reused by the half-precision kernels.
 */
import { DyadcError } from '../core/errors.js';

// ---------------------------------------------------------------------------------------------
// dtypes

/** The safetensors dtypes this reader knows. `get()` converts only the floating ones below. */
export type SafetensorsDType =
  | 'BOOL' | 'U8' | 'I8' | 'F8_E5M2' | 'F8_E4M3'
  | 'I16' | 'U16' | 'F16' | 'BF16'
  | 'I32' | 'U32' | 'F32'
  | 'I64' | 'U64' | 'F64';

/** Bytes per element of each known dtype. */
export const DTYPE_SIZE: Readonly<Record<SafetensorsDType, number>> = Object.freeze({
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1,
  I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4,
  I64: 8, U64: 8, F64: 8,
});

/** The dtypes `get()` can convert to float32 and `writeSafetensors` can write. */
export type FloatDType = 'F32' | 'F16' | 'BF16' | 'F64';

/** Header lengths above this are rejected as absurd (the official reader uses the same 100 MB bound). */
export const MAX_HEADER_BYTES = 100 * 1024 * 1024;
/** Nesting deeper than this in the header is rejected (a valid header nests 3 levels). */
const MAX_HEADER_DEPTH = 64;

const HOST_LE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

// ---------------------------------------------------------------------------------------------
// half-precision conversions

function floorLog2(a: number): number {
  // a > 0, finite. Math.log2 may be off by one next to powers of two: correct it exactly.
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  else if (2 ** (e + 1) <= a) e++;
  return e;
}

/**
 * Round a number to IEEE binary16 bits, round-to-nearest-even, in a single rounding (exact for any
 * float32 or float64 input). Overflow gives ±Inf, NaN gives the quiet NaN 0x7e00, -0 keeps its sign.
 * Trick: adding then subtracting `2^(e+42)` makes the float64 adder round `x` to a multiple of the
 * binary16 ulp `2^(e-10)` with ties to even.
 */
export function f32ToF16Bits(x: number): number {
  if (x !== x) return 0x7e00;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a === Infinity) return sign | 0x7c00;
  if (a < 2 ** -14) {
    // subnormal grid: multiples of 2^-24 (the ulp of 2^28 in float64). 1024 * 2^-24 is the
    // smallest normal, whose bits are 0x0400 — so the integer count is already the encoding.
    const r = (a + 2 ** 28) - 2 ** 28;
    return sign | (r * 2 ** 24);
  }
  const e = floorLog2(a);
  if (e > 15) return sign | 0x7c00;
  const c = 2 ** (e + 42);
  const r = (a + c) - c;
  const e2 = r >= 2 ** (e + 1) ? e + 1 : e;
  if (e2 > 15) return sign | 0x7c00;
  const mant = (r / 2 ** e2) * 1024 - 1024;
  return sign | ((e2 + 15) << 10) | mant;
}

/** Decode IEEE binary16 bits (low 16 bits of `h`) to a number (exact). */
export function f16BitsToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1024 + m) * 2 ** (e - 25);
}

/**
 * Round a number to bfloat16 bits (the top half of a float32), round-to-nearest-even in a single
 * rounding. Overflow gives ±Inf, NaN gives the quiet NaN 0x7fc0, -0 keeps its sign. For float32
 * inputs this equals PyTorch's `x.to(torch.bfloat16)`.
 */
export function f32ToBf16Bits(x: number): number {
  if (x !== x) return 0x7fc0;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a === Infinity) return sign | 0x7f80;
  if (a < 2 ** -126) {
    const r = (a + 2 ** -81) - 2 ** -81; // multiples of 2^-133
    return sign | (r * 2 ** 133);
  }
  const e = floorLog2(a);
  if (e > 127) return sign | 0x7f80;
  const c = 2 ** (e + 45);
  const r = (a + c) - c;
  const e2 = r >= 2 ** (e + 1) ? e + 1 : e;
  if (e2 > 127) return sign | 0x7f80;
  const mant = (r / 2 ** e2) * 128 - 128;
  return sign | ((e2 + 127) << 7) | mant;
}

const bf16Scratch = new Uint32Array(1);
const bf16ScratchF = new Float32Array(bf16Scratch.buffer);
/** Decode bfloat16 bits (low 16 bits of `h`) to a number (exact). */
export function bf16BitsToF32(h: number): number {
  bf16Scratch[0] = (h & 0xffff) << 16;
  return bf16ScratchF[0];
}

let f16Table: Uint32Array | undefined;
/** float32 bit patterns of all 65536 binary16 values (NaN payloads kept), built on first use. */
function f16ToF32BitsTable(): Uint32Array {
  if (f16Table) return f16Table;
  const t = new Uint32Array(65536);
  const f = new Float32Array(t.buffer);
  for (let h = 0; h < 65536; h++) {
    const e = (h >>> 10) & 0x1f;
    if (e === 31) t[h] = ((h & 0x8000) << 16) | 0x7f800000 | ((h & 0x3ff) << 13);
    else f[h] = f16BitsToF32(h);
  }
  return (f16Table = t);
}

/**
 * Encode an array of numbers as binary16 bits (round-to-nearest-even). Returns `[n]`. A Float32Array
 * is converted from its bits (f32BitsToF16: the same result as f32ToF16Bits for every float32, ~20×
 * faster: a 168 MB f16 model's weights are 84 M values).
 */
export function f32ArrayToF16(src: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(src.length);
  if (src instanceof Float32Array) {
    const bits = new Uint32Array(src.buffer, src.byteOffset, src.length);
    for (let i = 0; i < bits.length; i++) out[i] = f32BitsToF16(bits[i]);
    return out;
  }
  for (let i = 0; i < src.length; i++) out[i] = f32ToF16Bits(src[i]);
  return out;
}

/**
 * binary32 bits → binary16 bits, round to nearest even (IEEE 754 §4.3.1); NaN → 0x7e00 (sign
 * dropped, as f32ToF16Bits). Normal results keep the top 10 mantissa bits and round on the 13 dropped
 * ones (a carry may raise the exponent, up to Inf); subnormal results (|x| < 2^-14) are the
 * mantissa with its implicit 1, shifted to units of 2^-24, rounded on the bits shifted out.
 */
export function f32BitsToF16(b: number): number {
  const sign = (b >>> 16) & 0x8000;
  const e32 = (b >>> 23) & 0xff, mant = b & 0x7fffff;
  if (e32 === 0xff) return mant ? 0x7e00 : sign | 0x7c00;
  const e = e32 - 127;
  if (e > 15) return sign | 0x7c00;
  if (e >= -14) {
    let h = ((e + 15) << 10) | (mant >>> 13);
    const rest = mant & 0x1fff;
    if (rest > 0x1000 || (rest === 0x1000 && (h & 1))) h++;
    return sign | h;
  }
  if (e32 === 0) return sign;  // f32 zero or subnormal: below 2^-126, rounds to ±0
  const shift = -e - 1;  // 14 … 126
  if (shift > 24) return sign;  // below 2^-25: rounds to ±0
  const m = mant | 0x800000;
  let h = m >>> shift;
  const rest = m & ((1 << shift) - 1), half = 1 << (shift - 1);
  if (rest > half || (rest === half && (h & 1))) h++;
  return sign | h;
}

/**
 * f32 → f16 bits padded to an even count, so the bytes are a multiple of 4 (what GPUQueue.writeBuffer
 * accepts): the upload form of f16 activations.
 */
export function f32ArrayToF16Padded(src: ArrayLike<number>): Uint16Array<ArrayBuffer> {
  const out = new Uint16Array(Math.ceil(src.length / 2) * 2);
  out.set(f32ArrayToF16(src));
  return out;
}

/** Decode binary16 bits to float32 (exact; NaN payloads kept). Writes into `out` when given. */
export function f16ArrayToF32(bits: ArrayLike<number>, out = new Float32Array(bits.length)): Float32Array {
  const t = f16ToF32BitsTable();
  const o = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < bits.length; i++) o[i] = t[bits[i] & 0xffff];
  return out;
}

/** Encode an array of numbers as bfloat16 bits (round-to-nearest-even). Returns `[n]`. */
export function f32ArrayToBf16(src: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) out[i] = f32ToBf16Bits(src[i]);
  return out;
}

/** Decode bfloat16 bits to float32 (exact; NaN payloads kept). Writes into `out` when given. */
export function bf16ArrayToF32(bits: ArrayLike<number>, out = new Float32Array(bits.length)): Float32Array {
  const o = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < bits.length; i++) o[i] = (bits[i] & 0xffff) << 16;
  return out;
}

// ---------------------------------------------------------------------------------------------
// reading

/** What the header says about one tensor. `dataOffsets` are relative to the data region. */
export interface TensorInfo {
  dtype: SafetensorsDType;
  shape: number[];
  byteLength: number;
  dataOffsets: [number, number];
}

/** A parsed, fully validated header. */
export interface SafetensorsHeader {
  /** `N`, the JSON header's length in bytes. */
  headerLength: number;
  /** Byte offset of the data region in the file: `8 + N`. */
  dataStart: number;
  /** Length of the data region: file length − dataStart. */
  dataLength: number;
  metadata: Record<string, string>;
  /** Tensor names in data-offset order. */
  names: string[];
  tensors: Map<string, TensorInfo>;
}

/** A safetensors file whose header has been parsed and validated; tensors decode on demand. */
export interface SafetensorsFile {
  /** `__metadata__` (empty object when absent). */
  readonly metadata: Record<string, string>;
  /** Tensor names in data-offset order. */
  readonly names: readonly string[];
  has(name: string): boolean;
  /** @throws DyadcError(WEIGHTS) when there is no such tensor. */
  info(name: string): TensorInfo;
  /**
   * The tensor as float32, converted from F32 / F16 / BF16 / F64. For an aligned F32 tensor on a
   * little-endian host this is a zero-copy view sharing memory with the file bytes: `.slice()` it
   * before mutating.
   * @throws DyadcError(WEIGHTS) no such tensor; DyadcError(SAFETENSORS) dtype is not floating.
   */
  get(name: string): Float32Array;
  /** The tensor's bytes, a view into the file bytes (no copy). @throws DyadcError(WEIGHTS) no such tensor. */
  getRaw(name: string): Uint8Array;
}

function bad(message: string, path?: string, fix?: string): DyadcError {
  return new DyadcError('SAFETENSORS', message, { path, fix });
}

const jsonKey = (k: string) => JSON.stringify(k);

/**
 * One linear pass over the header text that finds duplicate keys in any object (JSON.parse keeps
 * the last silently) and nesting deeper than MAX_HEADER_DEPTH. Tolerates invalid JSON (JSON.parse
 * reports that afterwards); always advances, so it cannot hang.
 */
function scanHeaderKeys(text: string): void {
  interface Frame { obj: boolean; keys: Set<string>; expectKey: boolean; owner: string | undefined; lastKey: string | undefined }
  const stack: Frame[] = [];
  const n = text.length;
  let i = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let j = i + 1;
      while (j < n) {
        const d = text.charCodeAt(j);
        if (d === 0x5c /* \ */) j += 2;
        else if (d === 0x22) break;
        else j++;
      }
      if (j >= n) return; // unterminated string: JSON.parse will say so
      const top = stack[stack.length - 1];
      if (top && top.obj && top.expectKey) {
        let key: string;
        try { key = JSON.parse(text.slice(i, j + 1)) as string; } catch { return; }
        if (top.keys.has(key)) {
          if (stack.length === 1) {
            throw bad(`duplicate key ${jsonKey(key)} in the header (a reader would silently keep only the last)`, `header[${jsonKey(key)}]`);
          }
          throw bad(`duplicate field ${jsonKey(key)} inside header entry ${jsonKey(top.owner ?? '?')}`,
            `header[${jsonKey(top.owner ?? '?')}].${key}`);
        }
        top.keys.add(key);
        top.lastKey = key;
        top.expectKey = false;
      }
      i = j + 1;
      continue;
    }
    if (c === 0x7b /* { */ || c === 0x5b /* [ */) {
      if (stack.length >= MAX_HEADER_DEPTH) throw bad(`header nests deeper than ${MAX_HEADER_DEPTH} levels`, 'header');
      const top = stack[stack.length - 1];
      stack.push({ obj: c === 0x7b, keys: new Set(), expectKey: c === 0x7b, owner: top?.obj ? top.lastKey : top?.owner, lastKey: undefined });
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
    } else if (c === 0x2c /* , */) {
      const top = stack[stack.length - 1];
      if (top && top.obj) top.expectKey = true;
    }
    i++;
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'string') return `the string ${JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v)}`;
  if (typeof v === 'object') return 'an object';
  return `${typeof v} ${String(v)}`;
}

/**
 * Parse and validate the header of a safetensors file.
 * @param prefix the file's first bytes: at least `8 + N` of them (more is fine, e.g. the whole file).
 * @param fileLength the full file length in bytes (defaults to `prefix.length`).
 * @throws DyadcError(SAFETENSORS) for every malformed-file condition (see the module comment).
 */
export function readSafetensorsHeader(prefix: Uint8Array, fileLength = prefix.length): SafetensorsHeader {
  if (fileLength < 8 || prefix.length < 8) {
    throw bad(`file is ${fileLength} bytes, shorter than the 8-byte header length field`, 'file', 'is this a safetensors file? it may be truncated');
  }
  const dv = new DataView(prefix.buffer, prefix.byteOffset, 8);
  const lo = dv.getUint32(0, true);
  const hi = dv.getUint32(4, true);
  const n = hi * 2 ** 32 + lo;
  if (hi !== 0 || n > MAX_HEADER_BYTES) {
    throw bad(`header length ${n} is absurd (limit ${MAX_HEADER_BYTES} bytes)`, 'header length', 'is this a safetensors file?');
  }
  if (8 + n > fileLength) {
    throw bad(`header length ${n} runs past the end of the ${fileLength}-byte file`, 'header length', 'the file is truncated or not safetensors');
  }
  if (8 + n > prefix.length) {
    throw new DyadcError('USAGE', `readSafetensorsHeader needs the first ${8 + n} bytes, got ${prefix.length}`);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(prefix.subarray(8, 8 + n));
  } catch {
    throw bad('header is not valid UTF-8', 'header');
  }
  scanHeaderKeys(text);
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw bad(`header is not valid JSON (${(e as Error).message})`, 'header');
  }
  if (!isPlainObject(parsed)) throw bad(`header must be a JSON object, got ${describe(parsed)}`, 'header');

  const dataStart = 8 + n;
  const dataLength = fileLength - dataStart;
  const metadata: Record<string, string> = {};
  const tensors = new Map<string, TensorInfo>();

  for (const name of Object.keys(parsed)) {
    const v = parsed[name];
    if (name === '__metadata__') {
      if (v === null) continue;  // as the official reader: `Option<HashMap<String, String>>`, null = no metadata
      if (!isPlainObject(v)) throw bad(`__metadata__ must be an object of strings, got ${describe(v)}`, 'header.__metadata__');
      for (const k of Object.keys(v)) {
        if (typeof v[k] !== 'string') {
          throw bad(`metadata value must be a string, got ${describe(v[k])}`, `header.__metadata__[${jsonKey(k)}]`);
        }
        Object.defineProperty(metadata, k, { value: v[k], enumerable: true, writable: true, configurable: true });
      }
      continue;
    }
    const path = `header[${jsonKey(name)}]`;
    if (!isPlainObject(v)) throw bad(`tensor entry must be an object {dtype, shape, data_offsets}, got ${describe(v)}`, path);
    const { dtype, shape, data_offsets: offs } = v;
    if (dtype === undefined) throw bad('missing field "dtype"', path);
    if (shape === undefined) throw bad('missing field "shape"', path);
    if (offs === undefined) throw bad('missing field "data_offsets"', path);
    if (typeof dtype !== 'string') throw bad(`dtype must be a string, got ${describe(dtype)}`, `${path}.dtype`);
    if (!Object.prototype.hasOwnProperty.call(DTYPE_SIZE, dtype)) {
      throw bad(`unknown dtype ${JSON.stringify(dtype)}`, `${path}.dtype`, `expected one of ${Object.keys(DTYPE_SIZE).join(', ')}`);
    }
    if (!Array.isArray(shape)) throw bad(`shape must be an array of integers, got ${describe(shape)}`, `${path}.shape`);
    let elems = 1;
    let zero = false;
    shape.forEach((d: unknown, k: number) => {
      if (typeof d !== 'number' || !Number.isSafeInteger(d) || d < 0) {
        throw bad(`shape dimension must be a non-negative integer, got ${describe(d)}`, `${path}.shape[${k}]`);
      }
      if (d === 0) zero = true;
      elems = Math.min(elems * d, Number.MAX_SAFE_INTEGER); // beyond 2^53 it cannot match any byte length
    });
    if (zero) elems = 0;
    if (!Array.isArray(offs) || offs.length !== 2) {
      throw bad(`data_offsets must be [begin, end], got ${describe(offs)}${Array.isArray(offs) ? ` of length ${offs.length}` : ''}`, `${path}.data_offsets`);
    }
    offs.forEach((o: unknown, k: number) => {
      if (typeof o !== 'number' || !Number.isSafeInteger(o) || o < 0) {
        throw bad(`offset must be a non-negative integer, got ${describe(o)}`, `${path}.data_offsets[${k}]`);
      }
    });
    const [begin, end] = offs as [number, number];
    if (end < begin) throw bad(`data_offsets [${begin}, ${end}] end before they begin`, `${path}.data_offsets`);
    if (end > dataLength) {
      throw bad(`data_offsets [${begin}, ${end}] lie outside the ${dataLength}-byte data region`, `${path}.data_offsets`,
        'the file is truncated or its header is corrupt');
    }
    const size = DTYPE_SIZE[dtype as SafetensorsDType];
    const byteLength = end - begin;
    if (elems * size !== byteLength) {
      throw bad(`shape [${shape.join(', ')}] of ${dtype} needs ${elems * size} bytes but data_offsets [${begin}, ${end}] hold ${byteLength}`, path);
    }
    tensors.set(name, { dtype: dtype as SafetensorsDType, shape: shape.slice() as number[], byteLength, dataOffsets: [begin, end] });
  }

  // The byte ranges must tile the data region exactly: sorted by begin, each starts where the
  // previous ended, the first at 0 and the last at dataLength.
  const names = [...tensors.keys()].sort((a, b) => {
    const ia = tensors.get(a)!.dataOffsets, ib = tensors.get(b)!.dataOffsets;
    return ia[0] - ib[0] || ia[1] - ib[1];
  });
  let pos = 0;
  let prev: string | undefined;
  for (const name of names) {
    const [begin, end] = tensors.get(name)!.dataOffsets;
    if (begin < pos) {
      throw bad(`data_offsets [${begin}, ${end}] overlap tensor ${jsonKey(prev!)}, which ends at ${pos}`, `header[${jsonKey(name)}].data_offsets`);
    }
    if (begin > pos) {
      throw bad(`data_offsets [${begin}, ${end}] leave a hole: bytes [${pos}, ${begin}) belong to no tensor` +
        (prev === undefined ? ' (the first tensor must start at 0)' : ` (previous tensor ${jsonKey(prev)} ends at ${pos})`),
        `header[${jsonKey(name)}].data_offsets`);
    }
    pos = end;
    prev = name;
  }
  if (pos < dataLength) {
    throw bad(`${dataLength - pos} trailing bytes after the last tensor (data region is ${dataLength} bytes, tensors end at ${pos})`, 'data');
  }
  return { headerLength: n, dataStart, dataLength, metadata, names, tensors };
}

/** A typed view of `count` little-endian elements at `start` of `bytes`, copying when unaligned / big-endian. */
function leView<T extends Float32Array | Float64Array | Uint16Array>(
  ctor: { new(buf: ArrayBufferLike, off: number, len: number): T; new(len: number): T; BYTES_PER_ELEMENT: number },
  bytes: Uint8Array, start: number, count: number,
): T {
  const size = ctor.BYTES_PER_ELEMENT;
  if (HOST_LE) {
    if ((bytes.byteOffset + start) % size === 0) return new ctor(bytes.buffer, bytes.byteOffset + start, count);
    const copy = bytes.slice(start, start + count * size);
    return new ctor(copy.buffer, 0, count);
  }
  const out = new ctor(count);
  const dv = new DataView(bytes.buffer, bytes.byteOffset + start, count * size);
  for (let i = 0; i < count; i++) {
    out[i] = size === 2 ? dv.getUint16(i * 2, true) : size === 4 ? dv.getFloat32(i * 4, true) : dv.getFloat64(i * 8, true);
  }
  return out;
}

/** Wrap validated header + bytes (the whole file) as a `SafetensorsFile`. */
export function safetensorsFromHeader(header: SafetensorsHeader, bytes: Uint8Array): SafetensorsFile {
  if (bytes.length !== header.dataStart + header.dataLength) {
    throw new DyadcError('USAGE', `file bytes are ${bytes.length} long but the header was parsed for ${header.dataStart + header.dataLength}`);
  }
  const lookup = (name: string): TensorInfo => {
    const t = header.tensors.get(name);
    if (!t) {
      throw new DyadcError('WEIGHTS', `no tensor ${jsonKey(name)} in the file`, {
        path: name, fix: header.names.length ? `the file holds ${header.names.slice(0, 8).map(jsonKey).join(', ')}${header.names.length > 8 ? ', …' : ''}` : 'the file holds no tensors' });
    }
    return t;
  };
  return {
    metadata: header.metadata,
    names: header.names,
    has: (name) => header.tensors.has(name),
    info: (name) => {
      const t = lookup(name);
      return { dtype: t.dtype, shape: t.shape.slice(), byteLength: t.byteLength, dataOffsets: [t.dataOffsets[0], t.dataOffsets[1]] };
    },
    getRaw: (name) => {
      const t = lookup(name);
      return bytes.subarray(header.dataStart + t.dataOffsets[0], header.dataStart + t.dataOffsets[1]);
    },
    get: (name) => {
      const t = lookup(name);
      const start = header.dataStart + t.dataOffsets[0];
      const count = t.byteLength / DTYPE_SIZE[t.dtype];
      switch (t.dtype) {
        case 'F32': return leView(Float32Array, bytes, start, count);
        case 'F64': return new Float32Array(leView(Float64Array, bytes, start, count));
        case 'F16': return f16ArrayToF32(leView(Uint16Array, bytes, start, count));
        case 'BF16': return bf16ArrayToF32(leView(Uint16Array, bytes, start, count));
        default:
          throw bad(`dtype ${t.dtype} cannot be read as float32 (F32, F16, BF16, F64 can)`, `header[${jsonKey(name)}].dtype`, 'save it as F32, F16 or BF16 (in PyTorch: tensor.float()), or read its bytes with getRaw()');
      }
    },
  };
}

/** The forms file bytes are accepted in (by readSafetensors and by `create({ weights })`). */
export type SafetensorsBytes = ArrayBuffer | SharedArrayBuffer | Uint8Array | Int8Array | Uint8ClampedArray | DataView;

/**
 * A Uint8Array over the bytes of `v` (no copy) when it is file bytes: an ArrayBuffer or
 * SharedArrayBuffer, or a byte view (Uint8Array incl. Node's Buffer, Int8Array, Uint8ClampedArray,
 * DataView) at any offset; undefined for anything else (wider typed arrays are values, not bytes).
 */
export function bytesOf(v: unknown): Uint8Array | undefined {
  if (v instanceof ArrayBuffer || (typeof SharedArrayBuffer !== 'undefined' && v instanceof SharedArrayBuffer)) return new Uint8Array(v);
  if (v instanceof Uint8Array || v instanceof Int8Array || v instanceof Uint8ClampedArray || v instanceof DataView) {
    return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  }
  return undefined;
}

/**
 * Read a safetensors file from memory. Parses and validates only the header; tensors decode on
 * `get()`. The returned object keeps a reference to the bytes (not a copy).
 * @param bytes the file: an ArrayBuffer (`await (await fetch(url)).arrayBuffer()`), a Uint8Array at
 *   any offset, a Node Buffer or a DataView (see `bytesOf`) — the forms `create({ weights })` takes.
 * @throws DyadcError(USAGE) when `bytes` is none of those, naming what it is;
 *   DyadcError(SAFETENSORS) when the file is malformed (never reads out of bounds).
 */
export function readSafetensors(bytes: SafetensorsBytes): SafetensorsFile {
  const u8 = bytesOf(bytes);
  if (!u8) {
    throw new DyadcError('USAGE', `readSafetensors(): bytes must be the bytes of a safetensors file, got ${describeBytes(bytes)}`,
      { fix: 'pass an ArrayBuffer (fetch(url).then((r) => r.arrayBuffer())), a Uint8Array/Buffer (readFileSync(path)) or a DataView' });
  }
  return safetensorsFromHeader(readSafetensorsHeader(u8), u8);
}

/** `a Float32Array of 3 values`, `a string "…"`, `undefined`: what was passed instead of bytes. */
function describeBytes(v: unknown): string {
  if (ArrayBuffer.isView(v)) return `a ${v.constructor.name} of ${(v as unknown as ArrayLike<number>).length} values (values, not file bytes)`;
  if (v === null || v === undefined) return String(v);
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'object') {
    const name = (v as object).constructor?.name;
    return name && name !== 'Object' ? `a ${name}` : 'an object';
  }
  return `a ${typeof v} ${typeof v === 'string' ? JSON.stringify(v.length > 40 ? v.slice(0, 40) + '…' : v) : String(v)}`;
}

// ---------------------------------------------------------------------------------------------
// writing

/**
 * One tensor to write. `data` holds `prod(shape)` elements, row-major. A Float32Array or
 * Float64Array is converted to `dtype` (default F32; F16/BF16 round to nearest even in a single
 * rounding); a Uint16Array is taken as already-encoded half bits and needs dtype F16 or BF16.
 */
export interface TensorToWrite {
  data: Float32Array | Float64Array | Uint16Array;
  shape: number[];
  dtype?: FloatDType;
}

function encodeUtf8(s: string): Uint8Array { return new TextEncoder().encode(s); }

/**
 * Serialise tensors to safetensors bytes: header keys and data in sorted-name order, contiguous
 * offsets, header padded with spaces so the data region starts at a multiple of 8.
 * @throws DyadcError(WEIGHTS) when `data.length` ≠ prod(shape); DyadcError(USAGE) for a bad
 *   shape, dtype, name (`__metadata__`) or non-string metadata value.
 */
export function writeSafetensors(tensors: Record<string, TensorToWrite>, metadata?: Record<string, string>): Uint8Array {
  const names = Object.keys(tensors).sort();
  const parts: string[] = [];
  if (metadata && Object.keys(metadata).length) {
    const kv = Object.keys(metadata).map((k) => {
      if (typeof metadata[k] !== 'string') throw new DyadcError('USAGE', `metadata value must be a string, got ${describe(metadata[k])}`, { path: `metadata[${jsonKey(k)}]` });
      return `${jsonKey(k)}:${JSON.stringify(metadata[k])}`;
    });
    parts.push(`"__metadata__":{${kv.join(',')}}`);
  }
  let offset = 0;
  const plan: { t: TensorToWrite; dtype: FloatDType; begin: number; count: number }[] = [];
  for (const name of names) {
    if (name === '__metadata__') throw new DyadcError('USAGE', 'a tensor cannot be named "__metadata__"', { path: name });
    const t = tensors[name];
    const dtype = t.dtype ?? (t.data instanceof Uint16Array ? undefined : 'F32');
    if (dtype === undefined) throw new DyadcError('USAGE', 'Uint16Array data holds half bits: give dtype "F16" or "BF16"', { path: name });
    if (!(['F32', 'F16', 'BF16', 'F64'] as const).includes(dtype)) {
      throw new DyadcError('USAGE', `cannot write dtype ${JSON.stringify(dtype)} (F32, F16, BF16, F64 can be written)`, { path: name });
    }
    if (t.data instanceof Uint16Array && dtype !== 'F16' && dtype !== 'BF16') {
      throw new DyadcError('USAGE', `Uint16Array data holds half bits and cannot be written as ${dtype}`, { path: name });
    }
    if (!Array.isArray(t.shape) || t.shape.some((d) => !Number.isSafeInteger(d) || d < 0)) {
      throw new DyadcError('USAGE', `shape must be non-negative integers, got ${JSON.stringify(t.shape)}`, { path: name });
    }
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count !== t.data.length) {
      throw new DyadcError('WEIGHTS', `shape [${t.shape.join(', ')}] needs ${count} elements but data has ${t.data.length}`, { path: name });
    }
    const bytes = count * DTYPE_SIZE[dtype];
    parts.push(`${jsonKey(name)}:{"dtype":"${dtype}","shape":[${t.shape.join(',')}],"data_offsets":[${offset},${offset + bytes}]}`);
    plan.push({ t, dtype, begin: offset, count });
    offset += bytes;
  }
  const header = encodeUtf8(`{${parts.join(',')}}`);
  const padded = Math.ceil(header.length / 8) * 8;
  const out = new Uint8Array(8 + padded + offset);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, padded, true);
  dv.setUint32(4, 0, true);
  out.set(header, 8);
  out.fill(0x20, 8 + header.length, 8 + padded);
  const base = 8 + padded;
  for (const { t, dtype, begin, count } of plan) {
    const at = base + begin;
    const d = t.data;
    if (dtype === 'F32' || dtype === 'F64') {
      if (HOST_LE) {
        const arr = dtype === 'F32' ? (d instanceof Float32Array ? d : new Float32Array(d)) : (d instanceof Float64Array ? d : new Float64Array(d));
        out.set(new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength), at);
      } else {
        for (let i = 0; i < count; i++) {
          if (dtype === 'F32') dv.setFloat32(at + 4 * i, d[i], true);
          else dv.setFloat64(at + 8 * i, d[i], true);
        }
      }
    } else {
      const enc = dtype === 'F16' ? f32ToF16Bits : f32ToBf16Bits;
      const raw = d instanceof Uint16Array;
      for (let i = 0; i < count; i++) dv.setUint16(at + 2 * i, raw ? d[i] : enc(d[i]), true);
    }
  }
  return out;
}
