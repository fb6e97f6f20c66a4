/** Prints one JSON line: ms for compile (spec → plan), pipeline creation and the first dispatch of OPT-125m fc1 (DYAD it n=4, batch 64). */
import { compileSync } from '../compiler/index.js';
import { Rng } from '../compiler/util/rng.js';
const t0 = performance.now();
const c = compileSync({ name: 'fd', input: { features: 768 }, layers: [{ op: 'dyad', name: 'fc1', out_features: 3072, blocks: 4, variant: 'it' }, { op: 'relu' }] });
const t1 = performance.now();
const rng = new Rng(3);
const w: Record<string, Float32Array> = {};
for (const [k, s] of Object.entries(c.weightShapes)) w[k] = rng.f32(s.reduce((a, b) => a * b, 1));
const m = await c.create({ weights: w });
const t2 = performance.now();
await m.forward(rng.f32(64 * 768), 64);
const t3 = performance.now();
await m.forward(rng.f32(64 * 768), 64);
const t4 = performance.now();
console.log(JSON.stringify({ compile_ms: +(t1 - t0).toFixed(1), create_ms: +(t2 - t1).toFixed(1), first_forward_ms: +(t3 - t2).toFixed(1), second_forward_ms: +(t4 - t3).toFixed(1) }));
process.exit(0);
