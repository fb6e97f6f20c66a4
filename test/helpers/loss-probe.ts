/**
 * A probe for the loss kernels: an identity `linear` C→C layer with a zero bias, so the model's logits
 * are its input exactly (1·x + 0·others) and, at batch 1, dL/dbias is dL/dlogits exactly. Used by
 * test/numerics.test.ts and bench/numerics.ts.
 */
import { compile } from '../../compiler/index.js';
import type { Model } from '../../runtime/model.js';
import type { Trainer, LossKind } from '../../runtime/trainer.js';

export interface LossProbe {
  model: Model; trainer: Trainer;
  /** Loss of one row of logits `x` with `label`, and dL/dlogits (weights reset first, buffers poisoned). */
  run(x: Float32Array, label: number): Promise<{ loss: number; dlogits: Float32Array }>;
  destroy(): void;
}

/** @param classes C, the logits per row */
export async function lossProbe(device: GPUDevice, classes: number, loss: LossKind = 'softmax_cross_entropy'): Promise<LossProbe> {
  const c = await compile({ name: 'id', input: { features: classes }, layers: [{ op: 'linear', name: 'fc', out_features: classes, bias: true }] });
  const eye = new Float32Array(classes * classes);
  for (let i = 0; i < classes; i++) eye[i * classes + i] = 1;
  const W = { 'fc.weight': eye, 'fc.bias': new Float32Array(classes) };
  const model = await c.create({ weights: W, device });
  const trainer = await model.trainer({ loss, optimizer: { type: 'sgd', lr: 1e-3 } });
  return {
    model, trainer,
    async run(x, label) {
      model.setWeights(W);
      trainer.poison(1);
      const l = await trainer.step(x, Int32Array.of(label), 1);
      return { loss: l, dlogits: (await trainer.gradients())['fc.bias'] };
    },
    destroy() { trainer.destroy(); model.destroy(); },
  };
}
