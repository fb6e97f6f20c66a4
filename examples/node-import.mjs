/**
 * Node example: load a dyadc-compiled module (plain ESM, no tsx needed) and run it.
 *
 *   npm run example:node
 * which runs
 *   node bin/dyadc.js compile examples/opt125m-ff-dyad.json -o build/examples
 *   node bin/dyadc.js init examples/opt125m-ff-dyad.json -o build/examples/opt125m_ff_dyad.safetensors
 *   node examples/node-import.mjs build/examples opt125m_ff_dyad
 *
 * The bundle finds WebGPU through the `webgpu` package (resolved from the bundle's directory
 * upwards); pass `device` to `create` to use your own GPUDevice instead.
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { exampleInput } from './browser/input.js';

process.env.XDG_RUNTIME_DIR ??= '/tmp';
const dir = resolve(process.argv[2] ?? 'build/examples');
const name = process.argv[3] ?? 'opt125m_ff_dyad';
const batch = Number(process.argv[4] ?? 4);

const mod = await import(pathToFileURL(resolve(dir, `${name}.mjs`)).href);
const weights = new Uint8Array(await readFile(resolve(dir, `${name}.safetensors`)));
const t0 = performance.now();
const model = await mod.create({ weights }); // safetensors bytes; or { 'fc1.wl': Float32Array, ... }
const t1 = performance.now();
const x = exampleInput(batch, mod.spec.input.features);
const y = await model.forward(x, batch);
const t2 = performance.now();

const outF = mod.spec.output.features;
console.log(`${name}: [${batch}, ${mod.spec.input.features}] → [${batch}, ${outF}], ${mod.plan.kernels.length} kernels; create ${(t1 - t0).toFixed(0)} ms, forward ${(t2 - t1).toFixed(1)} ms`);
for (let r = 0; r < Math.min(batch, 4); r++) {
  console.log(`y[${r}, 0:6] = ${Array.from(y.subarray(r * outF, r * outF + 6), (v) => v.toFixed(5)).join(', ')}`);
}
model.destroy();
process.exit(0); // the WebGPU instance keeps Node's event loop alive
