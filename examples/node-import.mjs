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
 * upwards) and shares one default device between its models. With `--gpu` this example brings its
 * own WebGPU instance instead, the safe way:
 *
 *   const gpu = createGPU([]);                          // the `GPU` object of the webgpu package
 *   const model = await mod.create({ weights, gpu });   // dyadc requests the device and holds `gpu`
 *
 * Passing your own `device` works too, but then YOU must keep `gpu` referenced as long as the device
 * is used: `(await createGPU([]).requestAdapter()).requestDevice()` drops the GPU object, Dawn
 * destroys the instance when it is garbage-collected, and the next use of the device crashes the
 * process (segfault, seen after a few hundred forwards with `node --expose-gc`).
 */
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { exampleInput } from './browser/input.js';

process.env.XDG_RUNTIME_DIR ??= '/tmp';
const ownGpu = process.argv.includes('--gpu');
const args = process.argv.slice(2).filter((a) => a !== '--gpu');
const dir = resolve(args[0] ?? 'build/examples');
const name = args[1] ?? 'opt125m_ff_dyad';
const batch = Number(args[2] ?? 4);

const mod = await import(pathToFileURL(resolve(dir, `${name}.mjs`)).href);
const weights = new Uint8Array(await readFile(resolve(dir, `${name}.safetensors`)));
const t0 = performance.now();
// weights: safetensors bytes (Uint8Array/Buffer, or the ArrayBuffer of fetch().arrayBuffer()), or { 'fc1.wl': Float32Array, ... }
const gpu = ownGpu ? (await import('webgpu')).create([]) : undefined;
const model = await mod.create(gpu ? { weights, gpu } : { weights });
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
