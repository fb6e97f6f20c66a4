/**
 * Browser example: imports a dyadc-compiled module (`<model>.mjs`, built with
 * `dyadc compile <spec> -o <dir> --target browser`), fetches `<model>.safetensors` (from
 * `dyadc init <spec> -o <dir>/<model>.safetensors`) from the same directory, runs one forward pass
 * on WebGPU (navigator.gpu) and prints the result into the page. The result is also left in
 * `window.dyadcResult` ({ y: number[], ... } or { error }) for automated checks (test/browser.test.ts).
 *
 * A token model (a GPT: spec input `{ vocab, seq }`) generates instead: `?prompt=3,1,4&maxTokens=8` (token ids;
 * default prompt `0`, maxTokens filling the context), greedy unless `temperature` (and `seed`) are given;
 * `window.dyadcResult` then holds { tokens: number[], logits: number[][] } (the step logits).
 *
 * Serve the directory over http://127.0.0.1 or https (WebGPU needs a secure context), e.g.
 *   npm run example:browser && python3 -m http.server -d build/examples/browser --bind 127.0.0.1 8080
 */
import { exampleInput } from './input.js';

const params = new URLSearchParams(location.search);
const name = params.get('model') ?? 'opt125m_ff_dyad';
const batch = Number(params.get('batch') ?? 4);
const status = document.getElementById('status');
const out = document.getElementById('out');

async function run() {
  if (!navigator.gpu) throw new Error('this browser has no WebGPU (navigator.gpu is missing)');
  const mod = await import(`./${name}.mjs`);
  status.textContent = `fetching ${name}.safetensors…`;
  const res = await fetch(`./${name}.safetensors`);
  if (!res.ok) throw new Error(`fetching ${name}.safetensors: HTTP ${res.status}`);
  const weights = new Uint8Array(await res.arrayBuffer());
  status.textContent = 'compiling kernels…';
  const t0 = performance.now();
  const model = await mod.create({ weights });
  const t1 = performance.now();
  if (mod.spec.input.vocab !== undefined) return generate(mod, model, t0, t1);
  const x = exampleInput(batch, mod.spec.input.features);
  const y = await model.forward(x, batch);
  const t2 = performance.now();
  const info = model.device.adapterInfo ?? {};
  const outF = mod.spec.output.features;
  const rows = [];
  for (let r = 0; r < Math.min(batch, 4); r++) rows.push(`y[${r}, 0:6] = ${Array.from(y.subarray(r * outF, r * outF + 6), (v) => v.toFixed(5)).join(', ')}`);
  out.textContent = [
    `model   ${name}: [${batch}, ${mod.spec.input.features}] → [${batch}, ${outF}], ${mod.plan.kernels.length} kernels`,
    `adapter ${[info.vendor, info.architecture, info.description].filter(Boolean).join(' / ') || '(not reported)'}`,
    `create  ${(t1 - t0).toFixed(0)} ms, forward ${(t2 - t1).toFixed(1)} ms`,
    ...rows,
  ].join('\n');
  status.textContent = 'done';
  model.destroy();
  return { name, batch, inFeatures: mod.spec.input.features, outFeatures: outF, y: Array.from(y), adapter: [info.vendor, info.architecture, info.description].filter(Boolean).join(' / '), ms: { create: t1 - t0, forward: t2 - t1 } };
}

/** A token model: `model.generate` from the page's query (prompt ids, maxTokens, temperature, seed), printed and returned. */
async function generate(mod, model, t0, t1) {
  const { vocab, seq } = mod.spec.input;
  const prompt = (params.get('prompt') ?? '0').split(',').map(Number);
  const maxTokens = Number(params.get('maxTokens') ?? seq - prompt.length + 1);
  const temperature = Number(params.get('temperature') ?? 0), seed = Number(params.get('seed') ?? 0);
  const logits = [];
  status.textContent = 'generating…';
  const ids = await model.generate(prompt, { maxTokens, temperature, seed, onStep: (_s, l) => logits.push(Array.from(l)) });
  const t2 = performance.now();
  const info = model.device.adapterInfo ?? {};
  const adapter = [info.vendor, info.architecture, info.description].filter(Boolean).join(' / ');
  out.textContent = [
    `model   ${name}: token ids [batch, ${seq}] → logits over ${vocab} tokens, ${mod.plan.kernels.length} kernels`,
    `adapter ${adapter || '(not reported)'}`,
    `create  ${(t1 - t0).toFixed(0)} ms, generate ${maxTokens} tokens ${(t2 - t1).toFixed(0)} ms (${temperature > 0 ? `temperature ${temperature}, seed ${seed}` : 'greedy'})`,
    `prompt  ${prompt.join(' ')}`,
    `output  ${Array.from(ids).join(' ')}`,
  ].join('\n');
  status.textContent = 'done';
  model.destroy();
  return { name, prompt, tokens: Array.from(ids), logits, adapter, ms: { create: t1 - t0, generate: t2 - t1 } };
}

run().then((r) => { window.dyadcResult = r; }, (e) => {
  status.textContent = `error: ${e?.message ?? e}`;
  window.dyadcResult = { error: String(e?.message ?? e) };
});
