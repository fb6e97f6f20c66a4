/**
 * Saving and reloading a language model (issue 17 acceptance: "A saved LM reloads and generates the same greedy
 * text"). A 2-layer GPT (d_model 16, 2 heads, seq 24, the helpers' character vocabulary; dense, DYAD `it`
 * feed-forward, and dense with the LM head tied to the embedding) is trained with AdamW on a short repeated text
 * (test/helpers/lm-io.ts), saved the way users save (`trainer.saveSafetensors()` → a .safetensors file), and reloaded
 *  - JIT: a fresh `compile(spec).create({ weights: <file bytes> })`: the same weights bit for bit, the same greedy
 *    and seeded-sampled tokens with and without the key/value cache, step logits bit-identical to the trained
 *    model's (same device, same kernels), and the last step's logits within 1e-5 of the float64 interpreter run
 *    on the tensors read back from the file;
 *  - AOT: `dyadc compile` (compileToDirectory) → the `.mjs` bundle, imported by a plain Node script in a child
 *    process (test/helpers/aot-generate.mjs: no tsx, no dyadc; the bundle finds `webgpu` itself), which loads the
 *    file and generates: the same tokens as JIT, logits within 1e-5.
 * The module's declarations type-check a consumer that calls `generate` with token ids.
 */
import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { compile } from '../compiler/index.js';
import { compileToDirectory } from '../compiler/aot.js';
import { interpret } from '../compiler/interp/interpreter.js';
import { Rng } from '../compiler/util/rng.js';
import { readSafetensors } from '../runtime/weights/safetensors.js';
import { compare, randomWeights, sharedDevice, since, testSeed } from './helpers/gpu.js';
import { gpt } from './helpers/gpt.js';
import { CHARS, decode, encode, minMargin, trainOnText } from './helpers/lm-io.js';

process.env.XDG_RUNTIME_DIR ??= '/tmp';
const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const SEED = testSeed(0x6e7f0105);
const SEQ = 24, VOCAB = CHARS.length, STEPS = 120;
const PROMPT = 'the d';
const TOL = 1e-5;
const T0 = Date.now();

const tmp = mkdtempSync(join(tmpdir(), 'dyadc-lm-io-'));
test.after.always(() => rmSync(tmp, { recursive: true, force: true }));

/** Every value of a and b is the same f32 (NaN-safe). */
const bitEqual = (a: ArrayLike<number>, b: ArrayLike<number>) => a.length === b.length && Array.from(a).every((v, i) => Object.is(v, b[i]));

interface Generated { tokens: Int32Array; logits: Float32Array[] }

for (const kind of ['dense', 'dyad', 'tied'] as const) {
  const name = kind === 'dense' ? 'lm_io' : `lm_io_${kind}`;
  test.serial(`a trained GPT${kind === 'dyad' ? ' (DYAD feed-forward)' : kind === 'tied' ? ' (LM head tied to the embedding)' : ''} saved as safetensors reloads (JIT and the AOT bundle in plain Node) and generates the same tokens`, async (t) => {
    const spec = gpt(name, { seq: SEQ, vocab: VOCAB, dyadFF: kind === 'dyad', tied: kind === 'tied' });
    const device = await sharedDevice();
    const c = await compile(spec as never);
    const model = await c.create({ weights: randomWeights(c.weightShapes, new Rng(SEED)), device });
    const { trainer, losses } = await trainOnText(model, SEQ, STEPS, { seed: SEED + 1 });
    t.true(losses[STEPS - 1]! < 0.25 * losses[0]!, `the model learns the text: loss ${losses[0]} → ${losses[STEPS - 1]}`);
    const prompt = encode(PROMPT), maxTokens = SEQ - prompt.length + 1;
    const runs = [{ maxTokens }, { maxTokens, temperature: 0.8, seed: 11 }];
    const gen = async (m: typeof model, r: (typeof runs)[number], cache?: boolean): Promise<Generated> => {
      const logits: Float32Array[] = [];
      const tokens = await m.generate(prompt, { ...r, cache, onStep: (_s, l) => logits.push(l) });
      return { tokens, logits };
    };
    const [greedy, sampled] = [await gen(model, runs[0]!), await gen(model, runs[1]!)];
    const margin = minMargin(greedy.logits);
    t.log(`${name}: loss ${losses[0]!.toFixed(3)} → ${losses[STEPS - 1]!.toFixed(3)} in ${STEPS} AdamW steps; greedy ${JSON.stringify(PROMPT + decode(greedy.tokens))}, sampled (T 0.8, seed 11) ${JSON.stringify(PROMPT + decode(sampled.tokens))}; smallest top-2 logit gap ${margin.toFixed(3)} (${since(T0)})`);

    // save as users do, and reload into a fresh compile
    const file = join(tmp, `${name}.safetensors`);
    writeFileSync(file, await trainer.saveSafetensors({ text: 'lm-io test' }));
    const trained = await model.getWeights();
    trainer.destroy();
    model.destroy();
    const bytes = readFileSync(file);
    const c2 = await compile(spec as never);
    const reloaded = await c2.create({ weights: bytes, device });
    try {
      const back = await reloaded.getWeights();
      t.deepEqual(Object.keys(back), Object.keys(trained));
      for (const k of Object.keys(trained)) t.true(bitEqual(back[k]!, trained[k]!), `${k} reloads bit for bit`);
      for (const [i, ref] of [greedy, sampled].entries()) {
        for (const cache of [true, false]) {
          const again = await gen(reloaded, runs[i]!, cache);
          t.deepEqual(again.tokens, ref.tokens, `${i ? 'sampled' : 'greedy'} tokens after reload (cache ${cache})`);
          if (cache) again.logits.forEach((l, s) => t.true(bitEqual(l, ref.logits[s]!), `step ${s}: logits bit-identical after reload`));
        }
      }
      // the file holds the weights the GPU ran: the last greedy step's logits vs float64 on the file's tensors
      const f = readSafetensors(bytes);
      const W = Object.fromEntries(Object.keys(c2.weightShapes).map((k) => [k, Float64Array.from(f.get(k))]));
      const context = Int32Array.from([...prompt, ...greedy.tokens].slice(0, SEQ));
      const ref = interpret(c2.graph, W, context, SEQ).subarray((SEQ - 1) * VOCAB, SEQ * VOCAB);
      const cmp = compare(greedy.logits[maxTokens - 1]!, ref, VOCAB, TOL);
      t.true(cmp.ok, `last step vs float64 on the saved tensors: ${cmp.detail}`);

      // AOT: the bundle in a plain Node process, the same file
      const out = join(tmp, `${name}-aot`);
      await compileToDirectory(spec as never, { outDir: out });
      mkdirSync(join(out, 'node_modules'));
      symlinkSync(join(ROOT, 'node_modules', 'webgpu'), join(out, 'node_modules', 'webgpu'), 'dir');
      const child = await run(process.execPath, [join(ROOT, 'test', 'helpers', 'aot-generate.mjs'), join(out, `${name}.mjs`), file, JSON.stringify({ prompt: Array.from(prompt), runs })],
        { cwd: tmp, env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR ?? '/tmp' }, maxBuffer: 64 << 20 });
      const aot = JSON.parse(child.stdout) as { tokens: number[][]; logits: number[][][] };
      let worst = 0, identical = true;
      for (const [i, ref2] of [greedy, sampled].entries()) {
        t.deepEqual(aot.tokens[i], Array.from(ref2.tokens), `${i ? 'sampled' : 'greedy'} tokens: AOT bundle in plain Node vs JIT`);
        aot.logits[i]!.forEach((l, s) => {
          const d = compare(Float32Array.from(l), ref2.logits[s]!, VOCAB, TOL);
          t.true(d.ok, `AOT step ${s} logits vs JIT: ${d.detail}`);
          worst = Math.max(worst, d.rel);
          identical &&= bitEqual(Float32Array.from(l), ref2.logits[s]!);
        });
      }
      t.log(`${name}: reloaded JIT and AOT (plain Node child) generate the same tokens; AOT step logits vs JIT max rel. ${worst.toExponential(2)}${identical ? ' (bit-identical)' : ''}; last step vs float64 ${cmp.rel.toExponential(2)} (${since(T0)})`);
    } finally { reloaded.destroy(); }
  });
}

test.serial('the AOT declarations of a token model type-check a consumer of forward (Int32Array ids) and generate', async (t) => {
  const out = join(tmp, 'lm_io-aot');
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  const consumer = join(tmp, 'consumer');
  mkdirSync(consumer);
  writeFileSync(join(consumer, 'package.json'), '{ "type": "module" }\n');
  for (const f of ['lm_io.mjs', 'lm_io.d.mts']) writeFileSync(join(consumer, f), readFileSync(join(out, f)));
  writeFileSync(join(consumer, 'tsconfig.json'), JSON.stringify({
    compilerOptions: { strict: true, noEmit: true, target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', lib: ['ES2022', 'DOM'],
      types: ['@webgpu/types'], typeRoots: [join(ROOT, 'node_modules')] },
    files: ['consumer.ts'],
  }));
  writeFileSync(join(consumer, 'consumer.ts'), `
import { create, spec, type Model, type GenerateOptions } from './lm_io.mjs';
const m: Model = await create({ weights: new Uint8Array(0) });
const seq: number = spec.input.seq ?? 0;
const logits: Float32Array = await m.forward(new Int32Array(seq), 1);
const opts: GenerateOptions = { maxTokens: 4, temperature: 0.8, seed: 1, cache: true, onStep: (s: number, l: Float32Array, tok: number) => { void [s, l, tok]; } };
const ids: Int32Array = await m.generate([1, 2, 3], opts);
const greedy: Int32Array = await m.generate(Int32Array.from([1]), { maxTokens: 2 });
// @ts-expect-error maxTokens is required
await m.generate([1], {});
// @ts-expect-error the prompt is token ids
await m.generate('the', { maxTokens: 1 });
export { logits, ids, greedy };
`);
  const errors = await run(process.execPath, [tsc, '-p', join(consumer, 'tsconfig.json')], { cwd: consumer }).then(
    () => '', (e: { stdout?: string; stderr?: string }) => `${e.stdout ?? ''}${e.stderr ?? ''}` || String(e));
  t.is(errors, '');
});
