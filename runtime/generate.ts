/**
 * Autoregressive generation for a compiled decoder-only GPT (a token model: spec input `{ vocab, seq }`
 * whose output row t holds the logits of the token after position t).
 *
 * Two paths, the same tokens: with the key/value cache (`DecodeSession`, default where the plan has `decode`
 * kernels) each new token runs the network for ONE row, the attention layers reading their cached keys and
 * values of earlier positions on the GPU; uncached (`cache: false`), each new token re-runs `forward` over the
 * whole context (padded to the model's `seq` with token 0) and reads the logits of the last real position,
 * exact because attention is causal (row t never reads rows > t, so the padding does not change it).
 *
 * Greedy decoding takes the argmax (ties → the lowest id); temperature T > 0 samples from softmax(logits / T)
 * computed in float64 on the host, with a seeded generator so a seed replays the same tokens.
 */
import { DyadcError } from './core/errors.js';
import type { Plan, PlanKernel } from './core/plan.js';
import { scoped } from './executor.js';

/** The part of the runtime's Executor (runtime/executor.ts) a decode session uses. */
export interface DecodeExecutor {
  ensureCapacity(batch: number, what?: string): void;
  add(kernels: readonly PlanKernel[]): Promise<void>;
  value(id: string): GPUBuffer;
  encode(enc: GPUCommandEncoder, kernels: readonly PlanKernel[], batch: number, label: string): void;
  readValues(src: GPUBuffer, count: number, dtype: 'f32' | 'f16' | undefined, enc?: GPUCommandEncoder): Promise<Float32Array>;
  destroy(): void;
}

/** What generation needs of a Model (runtime/model.ts; an interface, so that module and this one do not import each other). */
export interface GeneratingModel {
  readonly plan: Plan;
  readonly device: GPUDevice;
  executorFor(values: readonly { id: string; features: number }[], name: string): DecodeExecutor;
  readonly tokens: { vocab: number; seq: number } | undefined;
  forward(x: Int32Array, batch: number): Promise<Float32Array>;
}

/** Options of `Model.generate`. */
export interface GenerateOptions {
  /** Tokens to generate (an integer ≥ 0). Prompt + maxTokens − 1 must fit in the model's `seq`. */
  maxTokens: number;
  /** 0 (default): greedy argmax. T > 0: sample from softmax(logits / T). */
  temperature?: number;
  /** Seed of the sampler (a 32-bit integer, default 0); ignored when greedy. */
  seed?: number;
  /**
   * Use the key/value cache (default: true where the plan has decode kernels, `plan.decode`): each token runs the
   * network for ONE row; false re-runs the whole context per token.
   */
  cache?: boolean;
  /** Called after each step with its index, the f32 logits `[vocab]` of the last position, and the chosen token. */
  onStep?: (step: number, logits: Float32Array, token: number) => void;
}

/**
 * Seeded uniform numbers in [0, 1) for sampling: SplitMix32 (the 32-bit finaliser of MurmurHash3 applied to a
 * Weyl sequence, Steele, Lea & Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014).
 */
function uniforms(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
    return ((z ^ (z >>> 16)) >>> 0) / 4294967296;
  };
}

/** Index of the largest logit, the lowest index among equals. `logits` non-empty. */
export function argmax(logits: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
  return best;
}

/**
 * Draws an index from softmax(logits / temperature) (float64, shifted by the max for range): the first i whose
 * cumulative probability mass exceeds u · total, with u uniform in [0, 1).
 */
export function sampleSoftmax(logits: ArrayLike<number>, temperature: number, u: number): number {
  const n = logits.length, m = logits[argmax(logits)];
  const p = new Float64Array(n);
  let total = 0;
  for (let i = 0; i < n; i++) total += (p[i] = Math.exp((logits[i] - m) / temperature));
  let acc = 0;
  const target = u * total;
  for (let i = 0; i < n; i++) if ((acc += p[i]) > target) return i;
  return argmax(logits);
}

/**
 * Checks the prompt and options against the model; returns the prompt as an Int32Array.
 * @throws DyadcError(USAGE) for a model that is not a token model or whose output width is not its vocab, an empty prompt,
 *   a prompt id that is not an integer in [0, vocab), a maxTokens that is not an integer ≥ 0, a temperature that is
 *   not finite and ≥ 0, a seed that is not an integer, or a context (prompt + maxTokens − 1) longer than seq.
 */
export function checkGenerate(model: GeneratingModel, prompt: Int32Array | readonly number[], opts: GenerateOptions): { ids: Int32Array; vocab: number; seq: number } {
  const tok = model.tokens;
  if (!tok) throw new DyadcError('USAGE', `generate: model ${model.plan.name} is not a token model`, { fix: 'compile a spec whose input is { "vocab": V, "seq": T } (a GPT)' });
  const { vocab, seq } = tok;
  if (model.plan.outFeatures !== vocab) throw new DyadcError('USAGE', `generate: the model's output has ${model.plan.outFeatures} features, not one logit per token of the vocab ${vocab}`, { fix: `end the spec with an LM head of out_features ${vocab}` });
  if (prompt.length === 0) throw new DyadcError('USAGE', 'generate: the prompt is empty', { fix: 'pass at least one token id (e.g. a start token)' });
  for (let i = 0; i < prompt.length; i++) {
    const v = prompt[i];
    if (!Number.isInteger(v) || v < 0 || v >= vocab) throw new DyadcError('USAGE', `generate: prompt[${i}] = ${v} is not a token id in [0, ${vocab})`, { fix: `use integer ids below the vocab ${vocab}` });
  }
  const { maxTokens, temperature = 0, seed = 0 } = opts;
  if (!Number.isInteger(maxTokens) || maxTokens < 0) throw new DyadcError('USAGE', `generate: maxTokens = ${maxTokens} is not an integer ≥ 0`, { fix: 'pass the number of tokens to generate' });
  if (!Number.isFinite(temperature) || temperature < 0) throw new DyadcError('USAGE', `generate: temperature = ${temperature} must be finite and ≥ 0`, { fix: 'use 0 for greedy decoding or T > 0 to sample from softmax(logits / T)' });
  if (!Number.isInteger(seed)) throw new DyadcError('USAGE', `generate: seed = ${seed} is not an integer`, { fix: 'pass a 32-bit integer seed' });
  const context = prompt.length + Math.max(maxTokens, 1) - 1;
  if (context > seq) throw new DyadcError('USAGE', `generate: a prompt of ${prompt.length} tokens and maxTokens ${maxTokens} need a context of ${context} positions, the model has seq ${seq} (its learned positions)`, { fix: `keep prompt length + maxTokens − 1 ≤ ${seq} (maxTokens ≤ ${Math.max(0, seq - prompt.length + 1)} for this prompt), or compile the model with a larger input.seq` });
  return { ids: Int32Array.from(prompt), vocab, seq };
}

/**
 * Generates `opts.maxTokens` token ids after `prompt` (cached: one row per token; uncached: a forward of `seq` rows per token).
 * Returns the generated ids (prompt excluded), Int32Array `[maxTokens]`.
 * @throws DyadcError(USAGE) as `checkGenerate`; DyadcError(GPU) from `forward`.
 */
export async function generate(model: GeneratingModel, prompt: Int32Array | readonly number[], opts: GenerateOptions): Promise<Int32Array> {
  const { ids, vocab, seq } = checkGenerate(model, prompt, opts);
  const temperature = opts.temperature ?? 0, next = uniforms(opts.seed ?? 0);
  const context = new Int32Array(seq); // token 0 pads the positions after the last real one (never read, causal)
  context.set(ids);
  const out = new Int32Array(opts.maxTokens);
  if (opts.cache === true && !model.plan.decode) throw new DyadcError('USAGE', `generate: model ${model.plan.name} has no decode kernels (a plan compiled before the key/value cache)`, { fix: 'recompile the model, or pass cache: false' });
  const session = opts.cache !== false && model.plan.decode && opts.maxTokens > 0 ? await DecodeSession.create(model) : undefined;
  try {
    if (session) for (let p = 0; p < ids.length - 1; p++) await session.step(context, p, false);  // the prompt fills the caches
    for (let step = 0, n = ids.length; step < opts.maxTokens; step++, n++) {
      const logits = session ? await session.step(context, n - 1, true) : (await model.forward(context, 1)).slice((n - 1) * vocab, n * vocab);
    const token = temperature === 0 ? argmax(logits) : sampleSoftmax(logits, temperature, next());
      opts.onStep?.(step, logits, token);
      out[step] = token;
      if (n < seq) context[n] = token;
    }
  } finally {
    session?.destroy();
  }
  return out;
}

/**
 * The decode step with a key/value cache: its own executor over the model's weights (values at capacity seq, plus
 * each attention's `[seq, d_model]` k/v caches and the u32 position), running per step
 *  1. the embedding kernel over the context's seq rows (a gather, seq·d_model adds: its position table is indexed
 *     by row, so row p is computed where it lies), then row p copied to row 0;
 *  2. every other forward kernel for ONE row (gemms at batch 1), each attention replaced by its decode kernel
 *     (compiler/codegen/attention-decode.ts), which appends the row's k, v at position p and attends over 0..p.
 */
class DecodeSession {
  private constructor(private readonly model: GeneratingModel, private readonly exec: DecodeExecutor, private readonly embedding: PlanKernel,
    private readonly rest: PlanKernel[], private readonly scratch: GPUBuffer, private readonly rowBytes: number) {}

  static async create(model: GeneratingModel): Promise<DecodeSession> {
    const plan = model.plan, d = plan.decode!, seq = model.tokens!.seq;
    const [embedding, ...others] = plan.kernels;
    if (!embedding || !embedding.bindings.some((b) => b.buffer.kind === 'value' && b.buffer.id === plan.input)) throw new DyadcError('USAGE', `generate: the first kernel of ${plan.name} does not read the token ids`, { fix: 'pass cache: false' });
    const byOutput = new Map(d.attention.map((k) => [k.output, k]));
    const rest = others.map((k) => byOutput.get(k.output) ?? k);
    const exec = model.executorFor([...plan.values, ...d.cacheValues, { id: d.position, features: 1 }], `${plan.name}.decode`);
    try {
      exec.ensureCapacity(seq, 'generate: seq');
      await exec.add([embedding, ...rest]);
    } catch (e) { exec.destroy(); throw e; }
    const ev = plan.values.find((v) => v.id === embedding.output)!;
    const rowBytes = ev.features * (ev.dtype === 'f16' ? 2 : 4);  // an f16 embedding stores 2-byte rows (d_model a multiple of 4: a 4-byte-aligned copy)
    const scratch = model.device.createBuffer({ size: rowBytes, usage: GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST, label: `${plan.name}.decode.row` });
    return new DecodeSession(model, exec, embedding, rest, scratch, rowBytes);
  }

  /** Runs position p (context[p] its token, context[0..p) already cached); returns its logits `[vocab]` when `read`. */
  async step(context: Int32Array, p: number, read: boolean): Promise<Float32Array> {
    const { model, exec } = this, plan = model.plan, q = model.device.queue, seq = context.length;
    q.writeBuffer(exec.value(plan.input), 0, context as Int32Array<ArrayBuffer>);
    q.writeBuffer(exec.value(plan.decode!.position), 0, new Uint32Array([p]));
    const enc = model.device.createCommandEncoder({ label: `${plan.name}.decode` });
    exec.encode(enc, [this.embedding], seq, `${plan.name}.decode.embedding`);
    const emb = exec.value(this.embedding.output);
    if (p > 0) {
      enc.copyBufferToBuffer(emb, p * this.rowBytes, this.scratch, 0, this.rowBytes);
      enc.copyBufferToBuffer(this.scratch, 0, emb, 0, this.rowBytes);
    }
    exec.encode(enc, this.rest, 1, `${plan.name}.decode.row`);
    if (read) return scoped(model.device, `decode step at position ${p} of ${plan.name}`, () => exec.readValues(exec.value(plan.output), plan.outFeatures, plan.values.find((v) => v.id === plan.output)?.dtype, enc));  // f16 logits widened
    return scoped(model.device, `decode step at position ${p} of ${plan.name}`, async () => { q.submit([enc.finish()]); return new Float32Array(0); });
  }

  destroy(): void { this.exec.destroy(); this.scratch.destroy(); }
}
