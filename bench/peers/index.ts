// Peers for the dyadc benchmark: the same dense / DYAD layer computed by other WebGPU stacks
// (ONNX Runtime's WebGPU EP, TensorFlow.js WebGPU) and by ONNX Runtime on the CPU (MLAS).
// See bench/README-peers.md for what is timed by each peer and for the gotchas.
//
// Every heavy dependency is imported lazily, so a peer that cannot load here is reported with
// its reason and the others still run.

import { denseModel, dyadModel, identityModel, transpose2d, transposeBlocks } from './onnx-model.js';

export type PeerKind = 'dense' | 'dyad';
export type DyadVariant = 'it' | 'ot' | 'dt';

export interface PeerCase {
  kind: PeerKind;
  batch: number;
  in_features: number;
  out_features: number;
  /** DYAD block count n (kind 'dyad'). */
  blocks?: number;
  /** DYAD variant (kind 'dyad'); defaults to 'it'. */
  variant?: DyadVariant;
  /** Input, row-major [batch, in]. */
  x: Float32Array;
  /** Dense weight [out, in] (nn.Linear layout), kind 'dense'. */
  weight?: Float32Array;
  /** DYAD parts [n, out/n, in/n] (kind 'dyad'). */
  wl?: Float32Array;
  wu?: Float32Array;
  /** Bias [out]. */
  bias: Float32Array;
}

export interface PreparedPeer {
  /** One forward pass, resolved once the device has finished it; the output stays on the device. */
  run(): Promise<void>;
  /** Runs one forward and reads the output back, row-major [batch, out]. Not for timing. */
  output(): Promise<Float32Array>;
  dispose(): void;
}

export interface PeerRunner {
  /** Short stable id, e.g. 'ort-webgpu'. */
  name: string;
  /** One line: what the peer computes. */
  description: string;
  /** What one timed run() includes (transfers, sync). */
  timed: string;
  /** Which layer kinds this peer implements. */
  kinds: readonly PeerKind[];
  prepare(c: PeerCase): Promise<PreparedPeer>;
}

export interface PeerFailure {
  name: string;
  reason: string;
}

export interface PeerOptions {
  /**
   * The `GPU` object (from `create([])` of the `webgpu` package) that TF.js should use, e.g. the
   * benchmark's own, so TF.js runs on the same Dawn instance. Default: navigator.gpu if already
   * set, else a fresh `create([])`.
   */
  gpu?: GPU;
  /** Restrict to these peer names. */
  only?: string[];
}

// ---------------------------------------------------------------------------------------------
// shared helpers

function checkCase(c: PeerCase): { n: number; variant: DyadVariant } {
  const { batch: B, in_features: I, out_features: O } = c;
  if (c.x.length !== B * I) throw new Error(`x has ${c.x.length} elements, want ${B}*${I}`);
  if (c.bias.length !== O) throw new Error(`bias has ${c.bias.length} elements, want ${O}`);
  if (c.kind === 'dense') {
    if (!c.weight || c.weight.length !== O * I) throw new Error(`dense case needs weight [${O}, ${I}]`);
    return { n: 1, variant: 'it' };
  }
  const n = c.blocks ?? 0;
  if (!(n > 0) || I % n !== 0 || O % n !== 0) throw new Error(`blocks=${n} must divide in=${I} and out=${O}`);
  const size = n * (O / n) * (I / n);
  if (!c.wl || c.wl.length !== size || !c.wu || c.wu.length !== size) {
    throw new Error(`dyad case needs wl and wu [${n}, ${O / n}, ${I / n}]`);
  }
  return { n, variant: c.variant ?? 'it' };
}

function errorText(e: unknown): string {
  if (e instanceof Error) return `${e.name}: ${e.message}`.split('\n').slice(0, 4).join(' | ');
  return String(e);
}

// ---------------------------------------------------------------------------------------------
// ONNX Runtime (onnxruntime-node): WebGPU EP and CPU EP

type Ort = typeof import('onnxruntime-node');

async function loadOrt(): Promise<Ort> {
  const mod: any = await import('onnxruntime-node');
  return (mod.default ?? mod) as Ort;
}

function ortModel(c: PeerCase, probe: boolean): Uint8Array {
  const { n, variant } = checkCase(c);
  const { batch: B, in_features: I, out_features: O } = c;
  return c.kind === 'dense'
    ? denseModel(B, I, O, c.weight!, c.bias, probe)
    : dyadModel(B, I, O, n, variant, c.wl!, c.wu!, c.bias, probe);
}

function ortWebgpuRunner(ort: Ort): PeerRunner {
  return {
    name: 'ort-webgpu',
    description:
      'onnxruntime-node WebGPU EP; dense = MatMul+Add, dyad = Reshape/Transpose/batched MatMul x2/Add graph',
    timed:
      'session.run() with x already on the GPU (gpu-buffer tensor) and y left on the GPU ' +
      '(preferredOutputLocation gpu-buffer); sync = a 1-float Slice of y read back to the CPU',
    kinds: ['dense', 'dyad'],
    async prepare(c) {
      const { batch: B, in_features: I, out_features: O } = c;
      const ep = { executionProviders: ['webgpu'] as any };
      const upload = await ort.InferenceSession.create(identityModel([B, I]), {
        ...ep,
        preferredOutputLocation: 'gpu-buffer',
      });
      const download = await ort.InferenceSession.create(identityModel([B, O]), ep);
      const session = await ort.InferenceSession.create(ortModel(c, true), {
        ...ep,
        preferredOutputLocation: { y: 'gpu-buffer', probe: 'cpu' },
      });
      const xg = (await upload.run({ x: new ort.Tensor('float32', c.x, [B, I]) })).y;
      let last: any = null;
      const forward = async () => {
        const r = await session.run({ x: xg });
        if (last) last.dispose();
        last = r.y;
      };
      return {
        run: forward,
        async output() {
          await forward();
          const y = (await download.run({ x: last })).y;
          return Float32Array.from(y.data as Float32Array);
        },
        dispose() {
          if (last) last.dispose();
          last = null;
          xg.dispose();
          void session.release();
          void upload.release();
          void download.release();
        },
      };
    },
  };
}

function ortCpuRunner(ort: Ort): PeerRunner {
  return {
    name: 'ort-cpu',
    description: 'onnxruntime-node CPU EP (MLAS), same graphs as ort-webgpu',
    timed: 'session.run() on CPU tensors (input and output in host memory; nothing to transfer)',
    kinds: ['dense', 'dyad'],
    async prepare(c) {
      const { batch: B, in_features: I } = c;
      const session = await ort.InferenceSession.create(ortModel(c, false), { executionProviders: ['cpu'] });
      const x = new ort.Tensor('float32', c.x, [B, I]);
      let last: Float32Array | null = null;
      const forward = async () => {
        last = (await session.run({ x })).y.data as Float32Array;
      };
      return {
        run: forward,
        async output() {
          await forward();
          return Float32Array.from(last!);
        },
        dispose() {
          void session.release();
        },
      };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// TensorFlow.js WebGPU backend

type Tf = typeof import('@tensorflow/tfjs-core');

async function loadTf(gpu?: GPU): Promise<Tf> {
  const g = globalThis as any;
  if (!g.navigator?.gpu || gpu) {
    const webgpu = await import('webgpu');
    Object.assign(globalThis, webgpu.globals);
    const theGpu = gpu ?? webgpu.create([]);
    if (g.navigator == null) g.navigator = {};
    // Node >= 21 has a read-only global navigator object; define the property on it.
    Object.defineProperty(g.navigator, 'gpu', { value: theGpu, configurable: true, writable: true });
  }
  // tfjs-backend-webgpu decides at module load time (isWebGPUSupported) whether to register the
  // 'webgpu' backend, so navigator.gpu has to exist before this import.
  const adapter = await (g.navigator.gpu as GPU).requestAdapter();
  if (!adapter) throw new Error('navigator.gpu.requestAdapter() returned null (no WebGPU adapter)');
  const tfmod: any = await import('@tensorflow/tfjs-core');
  const tf = (tfmod.default ?? tfmod) as Tf;
  await import('@tensorflow/tfjs-backend-webgpu');
  if (!(await tf.setBackend('webgpu'))) throw new Error("tf.setBackend('webgpu') returned false");
  await tf.ready();
  // Small tensors whose data is still on the CPU may otherwise be computed on the CPU.
  tf.env().set('WEBGPU_CPU_FORWARD', false);
  return tf;
}

/** Flush TF.js's pending command encoder and wait for the GPU queue: a sync without a readback. */
async function tfSync(tf: Tf): Promise<void> {
  const be = tf.backend() as any;
  if (be.commandEncoder) {
    be.endComputePassEncoder();
    be.submitQueue();
  }
  await be.device.queue.onSubmittedWorkDone();
}

type TfTensor = import('@tensorflow/tfjs-core').Tensor;

function tfRunner(
  tf: Tf,
  name: string,
  description: string,
  kind: PeerKind,
  build: (c: PeerCase, t: (d: Float32Array, s: number[]) => TfTensor) => () => TfTensor,
): PeerRunner {
  return {
    name,
    description,
    timed:
      'the ops on GPU-resident tensors, then flush + device.queue.onSubmittedWorkDone() ' +
      '(no readback); y left on the GPU and disposed at the next run',
    kinds: [kind],
    async prepare(c) {
      checkCase(c);
      if (c.kind !== kind) throw new Error(`${name} implements only ${kind}`);
      const be = tf.backend() as any;
      const owned: TfTensor[] = [];
      const t = (d: Float32Array, s: number[]) => {
        const x = tf.tensor(d, s, 'float32');
        be.uploadToGPU(x.dataId); // make it GPU-resident now, not at the first timed run
        owned.push(x);
        return x;
      };
      const f = build(c, t);
      await tfSync(tf);
      let last: TfTensor | null = null;
      const forward = async () => {
        const y = tf.tidy(f);
        if (last) last.dispose();
        last = y;
        await tfSync(tf);
      };
      return {
        run: forward,
        async output() {
          await forward();
          return Float32Array.from((await last!.data()) as Float32Array);
        },
        dispose() {
          if (last) last.dispose();
          last = null;
          for (const x of owned) x.dispose();
        },
      };
    },
  };
}

function tfPeers(tf: Tf): PeerRunner[] {
  return [
    tfRunner(tf, 'tfjs-webgpu-matmul', 'TF.js WebGPU: tf.add(tf.matMul(x, Wt), b), Wt = W pre-transposed [in, out]', 'dense',
      (c, t) => {
        const x = t(c.x, [c.batch, c.in_features]);
        const wt = t(transpose2d(c.weight!, c.out_features, c.in_features), [c.in_features, c.out_features]);
        const b = t(c.bias, [c.out_features]);
        return () => tf.add(tf.matMul(x, wt), b);
      }),
    tfRunner(tf, 'tfjs-webgpu-fused', 'TF.js WebGPU: tf.fused.matMul({a: x, b: Wt, bias}), Wt pre-transposed [in, out]', 'dense',
      (c, t) => {
        const x = t(c.x, [c.batch, c.in_features]);
        const wt = t(transpose2d(c.weight!, c.out_features, c.in_features), [c.in_features, c.out_features]);
        const b = t(c.bias, [c.out_features]);
        return () => tf.fused.matMul({ a: x, b: wt, bias: b });
      }),
    tfRunner(tf, 'tfjs-webgpu-ops',
      'DYAD written with TF.js ops: reshape/transpose to [n, B, dIn], batched tf.matMul x2, transpose back, add, bias',
      'dyad',
      (c, t) => {
        const { n, variant } = checkCase(c);
        const B = c.batch, I = c.in_features, O = c.out_features, dIn = I / n, dOut = O / n;
        const x = t(c.x, [B, I]);
        const wlt = t(transposeBlocks(c.wl!, n, dOut, dIn), [n, dIn, dOut]);
        const wut = t(transposeBlocks(c.wu!, n, dOut, dIn), [n, dIn, dOut]);
        const b = t(c.bias, [O]);
        const stridedIn = variant === 'it' || variant === 'dt';
        const stridedOut = variant === 'ot' || variant === 'dt';
        return () => {
          const xl = tf.transpose(tf.reshape(x, [B, n, dIn]), [1, 0, 2]); // [n, B, dIn]
          const xu = stridedIn
            ? tf.transpose(tf.reshape(x, [B, dIn, n]), [2, 0, 1])
            : xl;
          const yl = tf.matMul(xl, wlt); // [n, B, dOut]
          const yu = tf.matMul(xu, wut);
          let y: TfTensor;
          if (!stridedOut) {
            // both parts land contiguously: add first, one transpose back
            y = tf.reshape(tf.transpose(tf.add(yl, yu), [1, 0, 2]), [B, O]);
          } else {
            y = tf.add(
              tf.reshape(tf.transpose(yl, [1, 0, 2]), [B, O]),
              tf.reshape(tf.transpose(yu, [1, 2, 0]), [B, O]),
            );
          }
          return tf.add(y, b);
        };
      }),
  ];
}

// ---------------------------------------------------------------------------------------------

/** Loads every peer that can load here; `failures` says why the others did not. */
export async function loadPeers(opts: PeerOptions = {}): Promise<{ runners: PeerRunner[]; failures: PeerFailure[] }> {
  const runners: PeerRunner[] = [];
  const failures: PeerFailure[] = [];
  const want = (name: string) => !opts.only || opts.only.includes(name);
  const ortNames = ['ort-webgpu', 'ort-cpu'];
  const tfNames = ['tfjs-webgpu-matmul', 'tfjs-webgpu-fused', 'tfjs-webgpu-ops'];

  if (ortNames.some(want)) {
    let ort: Ort | null = null;
    try {
      ort = await loadOrt();
    } catch (e) {
      for (const name of ortNames.filter(want)) failures.push({ name, reason: `import onnxruntime-node: ${errorText(e)}` });
    }
    if (ort) {
      if (want('ort-webgpu')) {
        // Creating a session is what initialises ORT's own Dawn and picks the adapter.
        try {
          const s = await ort.InferenceSession.create(identityModel([1]), { executionProviders: ['webgpu'] });
          await s.run({ x: new ort.Tensor('float32', new Float32Array([1]), [1]) });
          await s.release();
          runners.push(ortWebgpuRunner(ort));
        } catch (e) {
          failures.push({ name: 'ort-webgpu', reason: errorText(e) });
        }
      }
      if (want('ort-cpu')) runners.push(ortCpuRunner(ort));
    }
  }

  if (tfNames.some(want)) {
    try {
      const tf = await loadTf(opts.gpu);
      runners.push(...tfPeers(tf).filter((r) => want(r.name)));
    } catch (e) {
      for (const name of tfNames.filter(want)) failures.push({ name, reason: `TF.js WebGPU: ${errorText(e)}` });
    }
  }
  return { runners, failures };
}

/** The peers that load here; those that do not are reported on stderr (or to `onSkip`). */
export async function peers(
  opts: PeerOptions & { onSkip?: (f: PeerFailure) => void } = {},
): Promise<PeerRunner[]> {
  const { runners, failures } = await loadPeers(opts);
  const report = opts.onSkip ?? ((f: PeerFailure) => console.warn(`peer ${f.name} skipped: ${f.reason}`));
  failures.forEach(report);
  return runners;
}
