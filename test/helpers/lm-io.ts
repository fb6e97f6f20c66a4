/**
 * A tiny language model that has learnt something, for the save/reload and browser tests of issue 17
 * (test/lm-io.test.ts, test/browser.test.ts): a character vocabulary over a short repeated text, and a
 * few AdamW steps on windows of it, so that greedy generation continues the text with clear margins
 * between the top two logits (random weights give near-ties, where f32 rounding differences between two
 * GPUs could legitimately pick different tokens).
 */
import type { Model } from '../../runtime/model.js';
import type { Trainer } from '../../runtime/trainer.js';
import { Rng } from '../../compiler/util/rng.js';

/** The training text (repeated); its distinct characters, sorted, are the vocabulary (ids 0..CHARS.length-1). */
export const TEXT = 'a cat sat on a mat. the dog ran to the cat. ';
export const CHARS = [...new Set(TEXT)].sort().join('');

/** Characters → token ids. @throws Error for a character outside CHARS. */
export function encode(s: string): Int32Array {
  return Int32Array.from(s, (ch) => { const i = CHARS.indexOf(ch); if (i < 0) throw new Error(`${JSON.stringify(ch)} is not in the vocabulary`); return i; });
}

/** Token ids → characters (ids past CHARS, which an untrained model may emit, as '?'). */
export function decode(ids: ArrayLike<number>): string {
  return Array.from(ids, (i) => CHARS[i] ?? '?').join('');
}

/**
 * Trains `model` (a token model with vocab ≥ CHARS.length, `seq` positions) for `steps` AdamW steps (lr 1e-2),
 * each on `batch` windows of the repeated TEXT at seeded random offsets, labels = the next character.
 * Returns the trainer (its weights are the model's; `saveSafetensors()` saves them) and the losses per step.
 */
export async function trainOnText(model: Model, seq: number, steps: number, opts: { batch?: number; seed?: number } = {}): Promise<{ trainer: Trainer; losses: number[] }> {
  const batch = opts.batch ?? 4, rng = new Rng(opts.seed ?? 1);
  const long = encode(TEXT.repeat(Math.ceil((seq + TEXT.length + 1) / TEXT.length)));
  const trainer = await model.trainer({ loss: 'softmax_cross_entropy', optimizer: { type: 'adamw', lr: 1e-2 } });
  const losses: number[] = [];
  const ids = new Int32Array(batch * seq), labels = new Int32Array(batch * seq);
  for (let s = 0; s < steps; s++) {
    for (let b = 0; b < batch; b++) {
      const o = rng.int(0, TEXT.length - 1);
      ids.set(long.subarray(o, o + seq), b * seq);
      labels.set(long.subarray(o + 1, o + seq + 1), b * seq);
    }
    losses.push(await trainer.step(ids, labels, batch));
  }
  return { trainer, losses };
}

/** Smallest gap between the largest and second-largest logit over the steps (how safe an argmax is against rounding). */
export function minMargin(steps: ArrayLike<number>[]): number {
  let m = Infinity;
  for (const l of steps) {
    let a = -Infinity, b = -Infinity;
    for (let i = 0; i < l.length; i++) { const v = l[i]; if (v > a) { b = a; a = v; } else if (v > b) b = v; }
    m = Math.min(m, a - b);
  }
  return m;
}
