/**
 * Plain Node (no tsx, no dyadc): imports an AOT-compiled token model (`dyadc compile` bundle), loads a
 * safetensors file, generates, and prints the result as one JSON line on stdout. test/lm-io.test.ts runs it
 * in a child process, as a user's script would run the module.
 *
 *   node aot-generate.mjs <bundle.mjs> <weights.safetensors> '<json: { prompt, runs: [{ maxTokens, temperature?, seed?, cache? }] }>'
 *
 * Prints { tokens: number[][], logits: number[][][] } (per run: the generated ids; the step logits).
 * The bundle finds WebGPU through the `webgpu` package, resolved from its own directory upwards.
 */
import { readFile } from 'node:fs/promises';
import { pathToFileURL } from 'node:url';

process.env.XDG_RUNTIME_DIR ??= '/tmp';
const [bundle, weightsFile, json] = process.argv.slice(2);
const { prompt, runs } = JSON.parse(json);
const mod = await import(pathToFileURL(bundle).href);
const model = await mod.create({ weights: await readFile(weightsFile) });
const out = { tokens: [], logits: [] };
for (const r of runs) {
  const logits = [];
  const ids = await model.generate(prompt, { ...r, onStep: (_s, l) => logits.push(Array.from(l)) });
  out.tokens.push(Array.from(ids));
  out.logits.push(logits);
}
model.destroy();
process.stdout.write(JSON.stringify(out) + '\n');
