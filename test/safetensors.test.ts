import test, { type ExecutionContext } from 'ava';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DyadcError } from '../compiler/errors.js';
import { Rng } from '../compiler/util/rng.js';
import {
  bf16ArrayToF32, bf16BitsToF32, f16ArrayToF32, f16BitsToF32, f32ArrayToBf16, f32ArrayToF16, f32ToBf16Bits, f32ToF16Bits,
  readSafetensors, writeSafetensors,
} from '../runtime/weights/safetensors.js';
import { readSafetensorsFile, readSafetensorsFileSync, writeSafetensorsFile } from '../runtime/weights/node.js';

const SHARED = '/work/shared/cases/dyad-layer.safetensors';

const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
const bitsf32 = (u: number) => new Float32Array(new Uint32Array([u]).buffer)[0];

/** A file from a header text and a data region (or its length, zero-filled). */
function mk(header: string | object, data: number | Uint8Array = 0): Uint8Array {
  const h = new TextEncoder().encode(typeof header === 'string' ? header : JSON.stringify(header));
  const d = typeof data === 'number' ? new Uint8Array(data) : data;
  const out = new Uint8Array(8 + h.length + d.length);
  new DataView(out.buffer).setUint32(0, h.length, true);
  out.set(h, 8);
  out.set(d, 8 + h.length);
  return out;
}

function rejects(t: ExecutionContext, bytes: Uint8Array, re: RegExp): DyadcError {
  const e = t.throws(() => readSafetensors(bytes), { instanceOf: DyadcError, message: re }) as DyadcError;
  t.is(e.code, 'SAFETENSORS');
  return e;
}

const entry = (dtype: string, shape: unknown, offs: unknown) => ({ dtype, shape, data_offsets: offs });

// ---------------------------------------------------------------------------------------------
// converters

/** Independent reference: nearest finite-or-inf half value by search, ties to even bits. */
function refRound(table: Float64Array, infBits: number, x: number): number {
  if (Number.isNaN(x)) return -1;
  const sign = x < 0 || Object.is(x, -0) ? 0x8000 : 0;
  const a = Math.abs(x);
  if (a === Infinity) return sign | infBits;
  // table[b] = value of positive bits b for b in [0, infBits], table[infBits] = max + ulp.
  let lo = 0, hi = infBits;
  if (a >= table[infBits]) return sign | infBits;
  while (hi - lo > 1) { const mid = (lo + hi) >> 1; if (table[mid] <= a) lo = mid; else hi = mid; }
  const dl = a - table[lo], dh = table[hi] - a;
  const pick = dl < dh ? lo : dh < dl ? hi : (lo % 2 === 0 ? lo : hi);
  return sign | pick;
}
function halfTable(infBits: number, decode: (b: number) => number, maxPlusUlp: number): Float64Array {
  const t = new Float64Array(infBits + 1);
  for (let b = 0; b < infBits; b++) t[b] = decode(b);
  t[infBits] = maxPlusUlp;
  return t;
}
const F16_TABLE = halfTable(0x7c00, f16BitsToF32, 65536);
const BF16_TABLE = halfTable(0x7f80, bf16BitsToF32, 2 ** 128);

test('f16: every non-NaN bit pattern survives decode → encode', (t) => {
  let bad = 0;
  for (let h = 0; h < 65536; h++) {
    const v = f16BitsToF32(h);
    if (Number.isNaN(v)) { t.is(((h >> 10) & 31), 31); t.true(Number.isNaN(f16BitsToF32(f32ToF16Bits(v)))); continue; }
    if (f32ToF16Bits(v) !== h) bad++;
  }
  t.is(bad, 0);
});

test('bf16: every non-NaN bit pattern survives decode → encode', (t) => {
  let bad = 0;
  for (let h = 0; h < 65536; h++) {
    const v = bf16BitsToF32(h);
    if (Number.isNaN(v)) { t.true(Number.isNaN(bf16BitsToF32(f32ToBf16Bits(v)))); continue; }
    if (f32ToBf16Bits(v) !== h) bad++;
    t.is(v, bitsf32(h << 16));
  }
  t.is(bad, 0);
});

test('f16/bf16 round to nearest even: ties, subnormals, overflow, signed zero', (t) => {
  t.is(f32ToF16Bits(1 + 2 ** -11), 0x3c00);          // tie → even (down)
  t.is(f32ToF16Bits(1 + 3 * 2 ** -11), 0x3c02);      // tie → even (up)
  t.is(f32ToF16Bits(1 + 2 ** -11 + 2 ** -20), 0x3c01); // above the tie
  t.is(f32ToF16Bits(65504), 0x7bff);
  t.is(f32ToF16Bits(65519), 0x7bff);
  t.is(f32ToF16Bits(65520), 0x7c00);                 // tie with max → Inf (even)
  t.is(f32ToF16Bits(-1e9), 0xfc00);
  t.is(f32ToF16Bits(2 ** -24), 0x0001);
  t.is(f32ToF16Bits(2 ** -25), 0x0000);              // tie → 0
  t.is(f32ToF16Bits(3 * 2 ** -25), 0x0002);          // tie → even
  t.is(f32ToF16Bits(2 ** -14 - 2 ** -26), 0x0400);   // rounds up into the smallest normal
  t.is(f32ToF16Bits(-0), 0x8000);
  t.is(f32ToF16Bits(0), 0x0000);
  t.is(f32ToF16Bits(NaN), 0x7e00);
  t.is(f16BitsToF32(0x0001), 2 ** -24);
  t.true(Object.is(f16BitsToF32(0x8000), -0));
  t.is(f16BitsToF32(0xfc00), -Infinity);
  t.is(f32ToBf16Bits(1 + 2 ** -8), 0x3f80);
  t.is(f32ToBf16Bits(1 + 3 * 2 ** -8), 0x3f82);
  t.is(f32ToBf16Bits(bitsf32(0x7f7fffff)), 0x7f80); // FLT_MAX → Inf
  t.is(f32ToBf16Bits(bitsf32(0x00000001)), 0x0000); // smallest f32 subnormal → 0
  t.is(f32ToBf16Bits(bitsf32(0x00018000)), 0x0002); // subnormal tie → even
  t.is(f32ToBf16Bits(-0), 0x8000);
  t.is(f32ToBf16Bits(NaN), 0x7fc0);
});

test('f16/bf16 encoders agree with a search-based reference on 300k random floats (seed 4242)', (t) => {
  const rng = new Rng(4242);
  let bad16 = 0, badbf = 0;
  for (let k = 0; k < 300000; k++) {
    let x: number;
    const mode = k % 3;
    if (mode === 0) x = bitsf32((rng.next() * 2 ** 32) >>> 0);                       // any f32
    else if (mode === 1) x = Math.fround((rng.next() < 0.5 ? -1 : 1) * (1 + rng.next()) * 2 ** rng.int(-27, 17)); // f16 range
    else { // exact ties between neighbouring halves
      const h = rng.int(0, 0x7bfe);
      x = (f16BitsToF32(h) + f16BitsToF32(h + 1)) / 2;
    }
    const r16 = refRound(F16_TABLE, 0x7c00, x);
    const rbf = refRound(BF16_TABLE, 0x7f80, x);
    if (r16 === -1) { if (!Number.isNaN(f16BitsToF32(f32ToF16Bits(x)))) bad16++; }
    else if (f32ToF16Bits(x) !== r16) bad16++;
    if (rbf === -1) { if (!Number.isNaN(bf16BitsToF32(f32ToBf16Bits(x)))) badbf++; }
    else if (f32ToBf16Bits(x) !== rbf) badbf++;
  }
  t.is(bad16, 0);
  t.is(badbf, 0);
});

test('array converters: f16/bf16 decoders keep NaN payloads, encoders match scalars', (t) => {
  const all = new Uint16Array(65536).map((_, i) => i);
  const f = f16ArrayToF32(all);
  const u = new Uint32Array(f.buffer);
  for (const h of [0x7c01, 0xfe00, 0x7fff, 0x7d23]) t.is(u[h], ((h & 0x8000) << 16 | 0x7f800000 | (h & 0x3ff) << 13) >>> 0);
  const b = new Uint32Array(bf16ArrayToF32(all).buffer);
  t.is(b[0x7fc1], 0x7fc10000);
  const xs = new Rng(7).f32(1000, -70000, 70000);
  t.deepEqual(f32ArrayToF16(xs), Uint16Array.from(xs, f32ToF16Bits));
  t.deepEqual(f32ArrayToBf16(xs), Uint16Array.from(xs, f32ToBf16Bits));
});

// ---------------------------------------------------------------------------------------------
// round trips

const SPECIALS = [0, -0, 1, -1, 0.1, 65504, 2 ** -24, 2 ** -14, Infinity, -Infinity, NaN, bitsf32(0x00000001), bitsf32(0x7f7fffff)];

test('round trip F32: raw bytes and values bit-identical, metadata kept, layout as specified', (t) => {
  const a = Float32Array.from([...SPECIALS, ...new Rng(1).f32(23)]); // 36 values
  a[5] = bitsf32(0x7fa00001); // signalling-ish NaN payload
  const bytes = writeSafetensors({ b: { data: a, shape: [6, 6] }, a: { data: new Float32Array(3), shape: [3] } }, { format: 'pt', 'ünï': 'çødé "q"' });
  const hdrLen = new DataView(bytes.buffer).getUint32(0, true);
  t.is(hdrLen % 8, 0);
  t.is(new DataView(bytes.buffer).getUint32(4, true), 0);
  const text = new TextDecoder().decode(bytes.subarray(8, 8 + hdrLen));
  t.regex(text, / *$/);
  t.true(text.indexOf('"a"') < text.indexOf('"b"')); // sorted-name order
  const f = readSafetensors(bytes);
  t.deepEqual(f.metadata, { format: 'pt', 'ünï': 'çødé "q"' });
  t.deepEqual([...f.names], ['a', 'b']);
  t.deepEqual(f.info('b'), { dtype: 'F32', shape: [6, 6], byteLength: 144, dataOffsets: [12, 156] });
  t.deepEqual(f.getRaw('b'), bytesOf(a));
  t.deepEqual(new Uint32Array(f.get('b').slice().buffer), new Uint32Array(a.buffer));
});

test('round trip F64: raw bytes identical, get() rounds to float32', (t) => {
  const a = Float64Array.from([...SPECIALS, Math.PI, 1e300, -1e-300, 1 / 3]);
  const f = readSafetensors(writeSafetensors({ x: { data: a, shape: [a.length], dtype: 'F64' } }));
  t.is(f.info('x').dtype, 'F64');
  t.deepEqual(f.getRaw('x'), bytesOf(a));
  t.deepEqual(f.get('x'), new Float32Array(a));
});

for (const [dtype, decode] of [['F16', f16BitsToF32], ['BF16', bf16BitsToF32]] as const) {
  test(`round trip ${dtype}: all 65536 bit patterns (subnormals, ±0, ±Inf, NaN payloads) raw and decoded`, (t) => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const bytes = writeSafetensors({ h: { data: all, shape: [256, 256], dtype } });
    const f = readSafetensors(bytes);
    t.deepEqual(f.getRaw('h'), bytesOf(all));
    const got = f.get('h');
    const gotBits = new Uint32Array(got.buffer, got.byteOffset, got.length);
    let bad = 0;
    for (let h = 0; h < 65536; h++) {
      const want = decode(h);
      if (Number.isNaN(want)) { if (!Number.isNaN(got[h]) || (gotBits[h] & 0x7f800000) !== 0x7f800000) bad++; }
      else if (!Object.is(got[h], want)) bad++;
    }
    t.is(bad, 0);
    t.true(Object.is(got[0x8000], -0));
    t.is(got[0x7c00 * Number(dtype === 'F16') + 0x7f80 * Number(dtype === 'BF16')], Infinity);
  });

  test(`round trip ${dtype} from float32 values: representable values exact, others rounded once`, (t) => {
    const enc = dtype === 'F16' ? f32ToF16Bits : f32ToBf16Bits;
    const xs = Float32Array.from([...SPECIALS, ...new Rng(3).f32(200, -3, 3)]);
    const f = readSafetensors(writeSafetensors({ v: { data: xs, shape: [xs.length], dtype } }));
    const raw = f.getRaw('v');
    const bits = new Uint16Array(raw.slice().buffer);
    t.deepEqual(bits, Uint16Array.from(xs, enc));
    const back = f.get('v');
    for (let i = 0; i < xs.length; i++) {
      const want = decode(enc(xs[i]));
      t.true(Number.isNaN(want) ? Number.isNaN(back[i]) : Object.is(back[i], want), `index ${i}`);
    }
  });
}

test('mixed dtypes, unaligned F32 after an odd F16 tensor, zero-size tensor, empty file', (t) => {
  const w = new Rng(9).f32(5);
  const bytes = writeSafetensors({
    a: { data: new Float32Array([1, 2, 3]), shape: [3], dtype: 'F16' }, // 6 bytes → b starts unaligned
    b: { data: w, shape: [5] },
    c: { data: new Float32Array(0), shape: [2, 0] },
    d: { data: new Float64Array([1.5, 2.5]), shape: [1, 2], dtype: 'BF16' },
  });
  const f = readSafetensors(bytes);
  t.deepEqual(f.get('a'), new Float32Array([1, 2, 3]));
  t.deepEqual(f.get('b'), w);
  t.deepEqual(f.get('c'), new Float32Array(0));
  t.deepEqual(f.info('c').shape, [2, 0]);
  t.deepEqual(f.get('d'), new Float32Array([1.5, 2.5]));
  const empty = readSafetensors(writeSafetensors({}));
  t.deepEqual([...empty.names], []);
  t.deepEqual(empty.metadata, {});
  // Node Buffer with an odd byteOffset still reads (copying, never misaligned views).
  const shifted = new Uint8Array(bytes.length + 1).subarray(1);
  shifted.set(bytes);
  t.deepEqual(readSafetensors(shifted).get('b'), w);
});

test('aligned F32 get() is a zero-copy view', (t) => {
  const bytes = writeSafetensors({ x: { data: new Float32Array([1, 2]), shape: [2] } });
  const f = readSafetensors(bytes);
  const v = f.get('x');
  t.is(v.buffer, bytes.buffer);
  t.deepEqual(f.getRaw('x'), bytes.subarray(bytes.length - 8));
});

test('writer rejects bad input', (t) => {
  t.throws(() => writeSafetensors({ x: { data: new Float32Array(3), shape: [2, 2] } }), { instanceOf: DyadcError, message: /x: shape \[2, 2\] needs 4 elements but data has 3/ });
  t.throws(() => writeSafetensors({ x: { data: new Uint16Array(2), shape: [2] } }), { instanceOf: DyadcError, message: /F16/ });
  t.throws(() => writeSafetensors({ x: { data: new Uint16Array(2), shape: [2], dtype: 'F32' } }), { instanceOf: DyadcError });
  t.throws(() => writeSafetensors({ __metadata__: { data: new Float32Array(1), shape: [1] } }), { instanceOf: DyadcError });
  t.throws(() => writeSafetensors({ x: { data: new Float32Array(1), shape: [-1] } }), { instanceOf: DyadcError });
  t.throws(() => writeSafetensors({}, { k: 3 as unknown as string }), { instanceOf: DyadcError, message: /metadata/ });
});

test('names that look like integers keep their header order and data', (t) => {
  const f = readSafetensors(writeSafetensors({ '10': { data: new Float32Array([10]), shape: [1] }, '2': { data: new Float32Array([2]), shape: [1] }, z: { data: new Float32Array([9]), shape: [1] } }));
  t.deepEqual([...f.names], ['10', '2', 'z']);
  t.is(f.get('2')[0], 2);
  t.is(f.get('10')[0], 10);
});

test(`reads ${SHARED}`, (t) => {
  const f = readSafetensors(new Uint8Array(readFileSync(SHARED)));
  t.deepEqual([...f.names].sort(), ['expected_dt', 'expected_it', 'expected_ot', 'fc1.bias', 'fc1.wl', 'fc1.wu', 'input']);
  t.deepEqual(f.info('fc1.wl').shape, [4, 16, 8]);
  t.deepEqual(f.info('fc1.wu').shape, [4, 16, 8]);
  t.deepEqual(f.info('fc1.bias').shape, [64, 1]);
  t.deepEqual(f.info('input').shape, [3, 32]);
  for (const v of ['it', 'ot', 'dt']) t.deepEqual(f.info(`expected_${v}`).shape, [3, 64]);
  for (const n of f.names) t.is(f.get(n).length, f.info(n).shape.reduce((a, b) => a * b, 1));
  t.is(f.metadata.format, 'pt');
  t.true(f.get('fc1.wl').every(Number.isFinite));
  t.throws(() => f.get('fc1.nope'), { instanceOf: DyadcError, message: /no tensor "fc1.nope"/ });
});

test('node: readSafetensorsFile / Sync / atomic writeSafetensorsFile', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'dyadc-st-'));
  const p = join(dir, 'w.safetensors');
  const w = new Rng(5).f32(12);
  await writeSafetensorsFile(p, { w: { data: w, shape: [3, 4] } }, { a: 'b' });
  t.deepEqual(readdirSync(dir), ['w.safetensors']); // no temp file left behind
  const f = await readSafetensorsFile(p);
  t.deepEqual(f.get('w'), w);
  t.deepEqual(f.metadata, { a: 'b' });
  t.deepEqual(readSafetensorsFileSync(p).get('w'), w);
  const shared = await readSafetensorsFile(SHARED);
  t.deepEqual(shared.info('fc1.bias').shape, [64, 1]);
  // overwrite in place
  await writeSafetensorsFile(p, { v: { data: new Float32Array([1]), shape: [1] } });
  t.deepEqual([...(await readSafetensorsFile(p)).names], ['v']);
  // errors carry the file name
  const bad = join(dir, 'bad.safetensors');
  writeFileSync(bad, mk('{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', 4));
  await t.throwsAsync(readSafetensorsFile(bad), { instanceOf: DyadcError, message: /bad\.safetensors.*outside/ });
  t.throws(() => readSafetensorsFileSync(bad), { instanceOf: DyadcError, message: /bad\.safetensors.*outside/ });
  writeFileSync(bad, new Uint8Array(3));
  const short = await t.throwsAsync(readSafetensorsFile(bad), { instanceOf: DyadcError, message: /shorter than/ });
  t.is(short!.message.match(/\(fix:/g)?.length, 1, 'the fix is said once, with the file name in front');
  await t.throwsAsync(readSafetensorsFile(join(dir, 'absent.safetensors')), { instanceOf: DyadcError, message: /no such file.*fix: check the path/ });
  // missing directories are created; a parent that is a file is a clear error, with no temp-file name in it
  await writeSafetensorsFile(join(dir, 'new', 'sub', 'made.safetensors'), { v: { data: new Float32Array([2]), shape: [1] } });
  t.deepEqual([...(await readSafetensorsFile(join(dir, 'new', 'sub', 'made.safetensors'))).names], ['v']);
  const e = await t.throwsAsync(writeSafetensorsFile(join(dir, 'w.safetensors', 'under-a-file.safetensors'), {}), { instanceOf: DyadcError });
  t.notRegex(e!.message, /\.tmp/);
  t.deepEqual(readdirSync(dir).sort(), ['bad.safetensors', 'new', 'w.safetensors']);
});

// ---------------------------------------------------------------------------------------------
// hostile files: one named test per class

const ok1 = entry('F32', [2], [0, 8]);

test('hostile: file shorter than 8 bytes', (t) => {
  for (const n of [0, 1, 7]) rejects(t, new Uint8Array(n), /shorter than the 8-byte/);
});

test('hostile: header length larger than the file', (t) => {
  const b = mk({ x: ok1 }, 8);
  new DataView(b.buffer).setUint32(0, b.length, true);
  rejects(t, b, /header length \d+ runs past the end/);
});

test('hostile: absurd header length (> 100 MiB, or high 32 bits set)', (t) => {
  const b = new Uint8Array(16);
  new DataView(b.buffer).setUint32(0, 100 * 1024 * 1024 + 1, true);
  rejects(t, b, /absurd/);
  const c = new Uint8Array(16);
  new DataView(c.buffer).setUint32(4, 1, true);
  rejects(t, c, /absurd/);
  const d = new Uint8Array(16).fill(0xff);
  rejects(t, d, /absurd/);
});

test('hostile: header not valid UTF-8', (t) => {
  const b = mk('{"x\u00ff":{"dtype":"F32","shape":[0],"data_offsets":[0,0]}}');
  b[8 + 3] = 0xff; b[8 + 4] = 0xfe; // invalid bytes inside the key
  rejects(t, b, /not valid UTF-8/);
  const bom = mk('___{}');
  bom.set([0xef, 0xbb, 0xbf], 8);
  rejects(t, bom, /not valid JSON/);
});

test('hostile: header not JSON', (t) => {
  rejects(t, mk('{"x": '), /not valid JSON/);
  rejects(t, mk('{"a":1,}'), /not valid JSON/);
  rejects(t, mk(''), /not valid JSON/);
});

test('hostile: header not an object', (t) => {
  rejects(t, mk('[1,2]'), /must be a JSON object, got an array/);
  rejects(t, mk('"hi"'), /must be a JSON object, got the string/);
  rejects(t, mk('null'), /must be a JSON object, got null/);
  rejects(t, mk('42'), /must be a JSON object, got number 42/);
});

test('hostile: entry missing dtype / shape / data_offsets', (t) => {
  rejects(t, mk({ x: { shape: [2], data_offsets: [0, 8] } }, 8), /header\["x"\]: missing field "dtype"/);
  rejects(t, mk({ x: { dtype: 'F32', data_offsets: [0, 8] } }, 8), /header\["x"\]: missing field "shape"/);
  rejects(t, mk({ x: { dtype: 'F32', shape: [2] } }, 8), /header\["x"\]: missing field "data_offsets"/);
});

test('hostile: entry fields of the wrong type', (t) => {
  rejects(t, mk({ x: 5 }), /header\["x"\]: tensor entry must be an object/);
  rejects(t, mk({ x: [1] }), /header\["x"\]: tensor entry must be an object/);
  rejects(t, mk({ x: entry(7 as unknown as string, [2], [0, 8]) }, 8), /header\["x"\]\.dtype: dtype must be a string/);
  rejects(t, mk({ x: entry('F32', '2', [0, 8]) }, 8), /header\["x"\]\.shape: shape must be an array/);
  rejects(t, mk({ x: entry('F32', [2], '0-8') }, 8), /header\["x"\]\.data_offsets: data_offsets must be \[begin, end\]/);
  rejects(t, mk({ x: entry('F32', [2], [0, 4, 8]) }, 8), /data_offsets must be \[begin, end\].*length 3/);
  rejects(t, mk({ x: entry('F32', [2], [0, '8']) }, 8), /header\["x"\]\.data_offsets\[1\]: offset must be a non-negative integer/);
  rejects(t, mk({ x: entry('F32', [2], [-8, 0]) }, 8), /data_offsets\[0\]: offset must be a non-negative integer/);
  rejects(t, mk({ x: entry('F32', [2], [0.5, 8]) }, 8), /data_offsets\[0\]/);
  rejects(t, mk({ x: entry('F32', [2], [0, 2 ** 60]) }, 8), /data_offsets\[1\]/);
});

test('hostile: negative or non-integer shape dimensions', (t) => {
  rejects(t, mk({ x: entry('F32', [2, -1], [0, 8]) }, 8), /header\["x"\]\.shape\[1\]: shape dimension must be a non-negative integer, got number -1/);
  rejects(t, mk({ x: entry('F32', [1.5], [0, 8]) }, 8), /shape\[0\]: .*1\.5/);
  rejects(t, mk({ x: entry('F32', ['2'], [0, 8]) }, 8), /shape\[0\]/);
  rejects(t, mk({ x: entry('F32', [null], [0, 8]) }, 8), /shape\[0\].*null/);
  rejects(t, mk({ x: entry('F32', [2 ** 60], [0, 8]) }, 8), /shape\[0\]/);
});

test('hostile: unknown dtype', (t) => {
  rejects(t, mk({ x: entry('F128', [2], [0, 8]) }, 8), /header\["x"\]\.dtype: unknown dtype "F128".*fix: expected one of/);
  rejects(t, mk({ x: entry('f32', [2], [0, 8]) }, 8), /unknown dtype "f32"/);
});

test('hostile: offsets outside the data region', (t) => {
  rejects(t, mk({ x: entry('F32', [2], [1000, 1008]) }, 8), /header\["x"\]\.data_offsets: data_offsets \[1000, 1008\] lie outside the 8-byte data region/);
  rejects(t, mk({ x: entry('F32', [2], [4, 12]) }, 8), /lie outside/);
});

test('hostile: end before begin', (t) => {
  rejects(t, mk({ x: entry('F32', [0], [8, 0]) }, 8), /header\["x"\]\.data_offsets: data_offsets \[8, 0\] end before they begin/);
});

test('hostile: overlapping offsets', (t) => {
  rejects(t, mk({ a: entry('F32', [2], [0, 8]), b: entry('F32', [2], [4, 12]) }, 12),
    /header\["b"\]\.data_offsets: .*overlap tensor "a", which ends at 8/);
  rejects(t, mk({ a: entry('F32', [2], [0, 8]), b: entry('F32', [2], [0, 8]) }, 8), /overlap/);
});

test('unordered (but tiling) offsets are accepted', (t) => {
  const data = new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer);
  const f = readSafetensors(mk({ b: entry('F32', [2], [8, 16]), a: entry('F32', [2], [0, 8]) }, data));
  t.deepEqual([...f.names], ['a', 'b']);
  t.deepEqual(f.get('b'), new Float32Array([3, 4]));
});

test('hostile: holes (first tensor not at 0, gap between tensors)', (t) => {
  rejects(t, mk({ x: entry('F32', [2], [4, 12]) }, 12), /header\["x"\]\.data_offsets: .*hole: bytes \[0, 4\).*first tensor must start at 0/);
  rejects(t, mk({ a: entry('F32', [1], [0, 4]), b: entry('F32', [1], [8, 12]) }, 12), /header\["b"\].*hole: bytes \[4, 8\).*"a" ends at 4/);
});

test('hostile: trailing garbage after the last tensor', (t) => {
  rejects(t, mk({ x: ok1 }, 9), /data: 1 trailing bytes after the last tensor/);
  rejects(t, mk({}, 3), /3 trailing bytes/);
});

test('hostile: truncated data region', (t) => {
  const good = writeSafetensors({ a: { data: new Float32Array(4), shape: [4] }, b: { data: new Float32Array(4), shape: [4] } });
  rejects(t, good.subarray(0, good.length - 1), /header\["b"\]\.data_offsets: .*lie outside the 31-byte data region.*truncated/);
  rejects(t, good.subarray(0, good.length - 20), /header\["a"\]|header\["b"\]/);
});

test('hostile: shape × dtype size ≠ byte length', (t) => {
  rejects(t, mk({ x: entry('F32', [3], [0, 8]) }, 8), /header\["x"\]: shape \[3\] of F32 needs 12 bytes but data_offsets \[0, 8\] hold 8/);
  rejects(t, mk({ x: entry('F16', [2], [0, 8]) }, 8), /needs 4 bytes/);
  rejects(t, mk({ x: entry('F32', [2 ** 40, 2 ** 40], [0, 8]) }, 8), /needs/);
});

test('hostile: duplicate names (and duplicate fields / metadata keys)', (t) => {
  rejects(t, mk('{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', 8),
    /header\["x"\]: duplicate key "x" in the header/);
  rejects(t, mk('{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"\\u0078":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', 8),
    /duplicate key "x"/); // escaped spelling of the same name
  rejects(t, mk('{"x":{"dtype":"F64","dtype":"F32","shape":[2],"data_offsets":[0,8]}}', 8), /duplicate field "dtype" inside header entry "x"/);
  rejects(t, mk('{"__metadata__":{"k":"a","k":"b"}}'), /duplicate field "k" inside header entry "__metadata__"/);
  // the same key in different objects is fine
  t.notThrows(() => readSafetensors(mk('{"__metadata__":{"dtype":"x"},"dtype":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', 8)));
});

test('hostile: metadata not an object of strings', (t) => {
  rejects(t, mk({ __metadata__: { k: 1 } }), /header\.__metadata__\["k"\]: metadata value must be a string, got number 1/);
  rejects(t, mk({ __metadata__: { k: null } }), /metadata value must be a string, got null/);
  rejects(t, mk({ __metadata__: { k: { a: 'b' } } }), /metadata value must be a string/);
  rejects(t, mk({ __metadata__: ['a'] }), /__metadata__ must be an object of strings/);
  rejects(t, mk({ __metadata__: 'a' }), /__metadata__ must be an object of strings/);
});

test('hostile: deeply nested header', (t) => {
  rejects(t, mk('{"x":' + '['.repeat(100000) + ']'.repeat(100000) + '}'), /nests deeper than 64/);
});

test('hostile: get() of a non-float dtype', (t) => {
  const f = readSafetensors(mk({ i: entry('I64', [1], [0, 8]) }, 8));
  t.deepEqual(f.info('i').dtype, 'I64');
  t.is(f.getRaw('i').length, 8);
  t.throws(() => f.get('i'), { instanceOf: DyadcError, message: /I64 cannot be read as float32/ });
});

// ---------------------------------------------------------------------------------------------
// fuzz

const FUZZ_SEED = 20240611;
const FUZZ_CASES = 1500;

test(`fuzz: ${FUZZ_CASES} byte flips / truncations / splices of valid files never escape DyadcError (seed ${FUZZ_SEED})`, (t) => {
  const rng = new Rng(FUZZ_SEED);
  const bases = [
    new Uint8Array(readFileSync(SHARED)),
    writeSafetensors({
      'a.wl': { data: new Rng(1).f32(24), shape: [2, 3, 4], dtype: 'F16' },
      'a.wu': { data: new Rng(2).f32(24), shape: [2, 3, 4], dtype: 'BF16' },
      b: { data: new Float64Array([1, 2, 3]), shape: [3], dtype: 'F64' },
      c: { data: new Float32Array(5), shape: [5, 1] },
      z: { data: new Float32Array(0), shape: [0, 3] },
    }, { format: 'pt', note: 'fuzz' }),
    writeSafetensors({}),
  ];
  const failures: string[] = [];
  let succeeded = 0, maxMs = 0;
  for (let k = 0; k < FUZZ_CASES; k++) {
    const base = bases[k % bases.length];
    let b = base.slice();
    const hdrEnd = Math.min(b.length, 8 + new DataView(base.buffer, base.byteOffset).getUint32(0, true));
    const mode = rng.int(0, 5);
    const flip = (lo: number, hi: number) => { const i = rng.int(lo, Math.max(lo, hi - 1)); if (i < b.length) b[i] = rng.int(0, 255); };
    const flips = rng.int(1, 6);
    if (mode === 0) for (let j = 0; j < flips; j++) flip(8, hdrEnd);                 // header bytes
    else if (mode === 1) for (let j = 0; j < flips; j++) flip(0, b.length);         // anywhere
    else if (mode === 2) b = b.subarray(0, rng.int(0, b.length - 1));                // truncation
    else if (mode === 3) { for (let j = 0; j < flips; j++) flip(0, hdrEnd); b = b.subarray(0, rng.int(0, b.length)); }
    else if (mode === 4) flip(0, 8);                                                 // header length field
    else { // splice: insert or delete a byte inside the header, or flip a digit/quote/brace
      const i = rng.int(8, Math.max(8, hdrEnd - 1));
      const c = new Uint8Array(b.length + (rng.next() < 0.5 ? 1 : -1));
      if (c.length > b.length) { c.set(b.subarray(0, i)); c[i] = '0123456789{}[]",:- '.charCodeAt(rng.int(0, 18)); c.set(b.subarray(i), i + 1); }
      else { c.set(b.subarray(0, i)); c.set(b.subarray(i + 1), i); }
      b = c;
    }
    const t0 = performance.now();
    try {
      const f = readSafetensors(b);
      succeeded++;
      for (const n of f.names) {
        const info = f.info(n);
        const raw = f.getRaw(n);
        if (raw.length !== info.byteLength) failures.push(`case ${k}: getRaw length ${raw.length} ≠ ${info.byteLength}`);
        try { f.get(n); } catch (e) { if (!(e instanceof DyadcError)) throw e; }
      }
      JSON.stringify(f.metadata);
    } catch (e) {
      if (!(e instanceof DyadcError)) failures.push(`case ${k} (mode ${mode}): ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
    }
    maxMs = Math.max(maxMs, performance.now() - t0);
  }
  t.deepEqual(failures.slice(0, 5), []);
  t.true(maxMs < 2000, `slowest case took ${maxMs} ms`);
  t.log(`${succeeded}/${FUZZ_CASES} mutated files were still valid; slowest case ${maxMs.toFixed(1)} ms`);
});

// issue 13: follow the official reader (huggingface/safetensors, Rust, read_metadata at its May 2026 head)
test('official reader: "__metadata__": null means no metadata (serde Option::None)', (t) => {
  const f = readSafetensors(mk('{"__metadata__":null,"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}', new Uint8Array(new Float32Array([1.5, -2]).buffer)));
  t.deepEqual(f.metadata, {});
  t.deepEqual([...f.names], ['x']);
  t.deepEqual([...f.get('x')], [1.5, -2]);
});

test('official reader: JSON whitespace before the header\'s { and after its } is accepted (safetensors#686), anything else is not', (t) => {
  // the official test's header, byte for byte: "\t\n{}\r "
  t.deepEqual([...readSafetensors(mk('\t\n{}\r ')).names], []);
  const f = readSafetensors(mk('  \n{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}  ', new Uint8Array(new Float32Array([3]).buffer)));
  t.deepEqual([...f.get('x')], [3]);
  rejects(t, mk('\u00a0{}'), /header is not valid JSON/);  // a non-JSON space (serde_json refuses it too)
  rejects(t, mk('\ufeff{}'), /header is not valid JSON/);  // a BOM
});

test('readSafetensors takes what create() takes: ArrayBuffer, Uint8Array at an offset, Buffer, DataView, Int8Array; other kinds are a clear USAGE error', (t) => {
  const rng = new Rng(77);
  const a = rng.f32(35), b = rng.f32(6);
  const bytes = writeSafetensors({ w: { data: a, shape: [5, 7] }, v: { data: b, shape: [6] } });
  const padded = new Uint8Array(bytes.length + 13);
  padded.set(bytes, 13);
  const shared = new SharedArrayBuffer(bytes.length);
  new Uint8Array(shared).set(bytes);
  const forms: [string, unknown][] = [
    ['Uint8Array', bytes], ['ArrayBuffer', bytes.slice().buffer], ['Uint8Array at offset 13', padded.subarray(13)],
    ['Buffer', Buffer.from(bytes)], ['DataView at offset 13', new DataView(padded.buffer, 13, bytes.length)],
    ['Int8Array', new Int8Array(bytes.slice().buffer)], ['SharedArrayBuffer', shared],
  ];
  for (const [label, input] of forms) {
    const f = readSafetensors(input as Uint8Array);
    t.deepEqual([...f.names].sort(), ['v', 'w'], label);
    t.deepEqual(f.get('w'), a, label);
    t.deepEqual(f.get('v'), b, label);
    t.deepEqual(f.info('w').shape, [5, 7], label);
  }
  const wrong: [unknown, string][] = [
    [new Float32Array(4), 'Float32Array of 4 values'], ['model.safetensors', 'string "model.safetensors"'],
    [undefined, 'undefined'], [null, 'null'], [[1, 2], 'an array'], [{}, 'an object'], [new Map(), 'a Map'],
  ];
  for (const [input, words] of wrong) {
    const err = t.throws(() => readSafetensors(input as Uint8Array), { instanceOf: DyadcError }) as DyadcError;
    t.is(err.code, 'USAGE');
    t.true(err.message.startsWith('readSafetensors(): bytes must be the bytes of a safetensors file, got '), err.message);
    t.true(err.message.includes(words), err.message);
    t.true(err.message.includes('ArrayBuffer'), 'the fix names the accepted forms');
  }
});
