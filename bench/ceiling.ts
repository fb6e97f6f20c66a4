/**
 * The ceiling reference of `npm run bench`: a hand-written subgroup GEMM for lavapipe-like adapters
 * (the design ../shared/LAVAPIPE.md measured best), timed in the same run as dyadc's generated kernels so
 * they can be compared with what this adapter allows. Not part of dyadc: one fixed kernel, no fusion.
 *
 *   y[b, r] = Σ_k x[b, k] · W[r, k] + bias[r]          (dense, W in nn.Linear layout [N, K])
 *   y[b, i·dOut + o] = Σ_a wl[i, o, a] x[b, i·dIn + a] + Σ_a wu[i, o, a] x[b, a·n + i] + bias   (DYAD `it`, DYAD.md)
 *
 * Lanes = batch rows: an invocation owns 2 rows × 32 output columns (64 f32 accumulators); for each vec4
 * step along K, each lane of a subgroup of 8 loads one column's weight texel and `subgroupBroadcast` hands
 * all 8 to every lane, so one weight load feeds 8 columns, while x rows stay per lane. W and x are
 * `rgba32float` textures (texture loads are cheaper than storage-buffer gathers on lavapipe); x is copied
 * into its texture in every timed run (for DYAD `it` the strided part reads a column-permuted copy, made by
 * a small compute pass in every run too). Needs `subgroups` with a subgroup size of exactly 8 (lavapipe's
 * AVX2 lanes); elsewhere the row is reported unavailable. Shapes: K and dIn multiples of 4, N and dOut
 * multiples of 32, any batch.
 */
import type { PeerCase, PeerRunner, PreparedPeer } from './peers/index.js';

const COLS = 32, ROWS_PER_WG = 128;
/** GPUTextureUsage flags (WebGPU spec values; the global is defined only where the `webgpu` globals were installed) */
const TEXTURE_USAGE = { COPY_DST: 0x02, TEXTURE_BINDING: 0x04 } as const;

/** WGSL of the kernel: `parts` = 1 (dense) or 2 (DYAD `it`: lower part on x, upper part on the permuted x). */
function kernel(parts: 1 | 2): string {
  const L: string[] = [];
  for (let r = 0; r < 2; r++) for (let c = 0; c < COLS; c++) L.push(`  var a${r}_${c} = 0.0;`);
  const body: string[] = [];
  for (let p = 0; p < parts; p++) {
    body.push(`    let x0_${p} = textureLoad(x${p}, vec2u(kx + k, ra), 0);`, `    let x1_${p} = textureLoad(x${p}, vec2u(kx + k, rb), 0);`);
    for (let g = 0; g < COLS / 8; g++) {
      body.push(`    let w${p}_${g} = textureLoad(w${p}, vec2u(k, c0 + ${g * 8}u + lane), 0);`);
      for (let j = 0; j < 8; j++) {
        const c = g * 8 + j;
        body.push(`    { let w = subgroupBroadcast(w${p}_${g}, ${j}u); a0_${c} += dot(x0_${p}, w); a1_${c} += dot(x1_${p}, w); }`);
      }
    }
  }
  const store: string[] = [];
  for (let r = 0; r < 2; r++) {
    store.push(`  if (r${r} < p.batch) {`);
    for (let c = 0; c < COLS; c++) store.push(`    y[r${r} * p.n + c0 + ${c}u] = a${r}_${c} + bias[c0 + ${c}u];`);
    store.push('  }');
  }
  return `// bench ceiling reference: subgroup GEMM, 2 rows x ${COLS} columns per invocation, W and x as rgba32float textures, ${parts === 1 ? 'dense' : 'DYAD it (two parts)'}
enable subgroups;
struct P { batch: u32, n: u32, k4: u32, d_out: u32 }
@group(0) @binding(0) var<uniform> p: P;
@group(0) @binding(1) var<storage, read> bias: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(3) var w0: texture_2d<f32>;   // [N rows, k4 texels] (DYAD: wl as [n·dOut, dIn/4])
@group(0) @binding(4) var x0: texture_2d<f32>;   // [batch rows, K/4 texels]
${parts === 2 ? `@group(0) @binding(5) var w1: texture_2d<f32>;   // wu as [n·dOut, dIn/4]
@group(0) @binding(6) var x1: texture_2d<f32>;   // x with columns permuted: x1[b, i·dIn + a] = x[b, a·n + i]
` : ''}
@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32, @builtin(subgroup_invocation_id) lane: u32) {
  let c0 = wid.x * ${COLS}u;
  // DYAD: the column block's DYAD block i reads x texels [i·k4, (i+1)·k4); dense: k4 = K/4, one block
  let kx = (c0 / p.d_out) * p.k4;
  let r0 = wid.y * ${ROWS_PER_WG}u + (li / 8u) * 16u + (li % 8u);
  let r1 = r0 + 8u;
  let ra = min(r0, p.batch - 1u);
  let rb = min(r1, p.batch - 1u);
${L.join('\n')}
  for (var k = 0u; k < p.k4; k = k + 1u) {
${body.join('\n')}
  }
${store.join('\n')}
}
`;
}

/** The permutation pass of DYAD `it`'s upper part: xp[b, i·dIn + a] = x[b, a·n + i]. */
const PERMUTE = `
struct Q { batch: u32, inf: u32, n: u32, d_in: u32 }
@group(0) @binding(0) var<uniform> q: Q;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> xp: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3u) {
  let e = gid.x + gid.y * 65535u * 64u;
  if (e >= q.batch * q.inf) { return; }
  let b = e / q.inf; let c = e % q.inf;
  let i = c / q.d_in; let a = c % q.d_in;
  xp[e] = x[b * q.inf + a * q.n + i];
}
`;

/** Whether this device can run the ceiling kernel (subgroups of exactly 8 lanes). */
export function ceilingAvailable(device: GPUDevice, adapterInfo?: GPUAdapterInfo): string | undefined {
  if (!device.features.has('subgroups' as GPUFeatureName)) return 'the device lacks the subgroups feature';
  const info = (adapterInfo ?? (device as unknown as { adapterInfo?: GPUAdapterInfo }).adapterInfo) as (GPUAdapterInfo & { subgroupMinSize?: number; subgroupMaxSize?: number }) | undefined;
  if (info?.subgroupMinSize !== 8 || info?.subgroupMaxSize !== 8) return `subgroup size ${info?.subgroupMinSize}–${info?.subgroupMaxSize}, the kernel needs exactly 8`;
  return undefined;
}

/** A bench runner for the ceiling kernel (dense, and DYAD `it`). `device` must have been created with `subgroups`. */
export function ceilingRunner(device: GPUDevice): PeerRunner {
  return {
    name: 'ceiling', description: 'hand-written subgroup GEMM (2×32 per invocation, W and x as rgba32float textures): the reference of what lavapipe allows',
    timed: 'x copied into its texture (and, DYAD it, permuted) + one dispatch, y left on GPU, onSubmittedWorkDone',
    kinds: ['dense', 'dyad'],
    async prepare(c: PeerCase): Promise<PreparedPeer> {
      const dyad = c.kind === 'dyad';
      if (dyad && (c.variant ?? 'it') !== 'it') throw new Error('ceiling: DYAD it only');
      const n = dyad ? c.blocks! : 1, K = c.in_features, N = c.out_features, B = c.batch;
      const dIn = K / n, dOut = N / n;
      if (dIn % 4 || dOut % COLS) throw new Error(`ceiling: needs dIn % 4 = 0 and dOut % ${COLS} = 0 (got ${dIn}, ${dOut})`);
      if (dyad && (K * 4) % 256) throw new Error('ceiling: DYAD needs in_features a multiple of 64 (texture copy row pitch)');
      const tex = (w: number, h: number, usage: number) => device.createTexture({ size: [w, h], format: 'rgba32float', usage });
      const T = TEXTURE_USAGE, U = GPUBufferUsage;
      const weightTex = (data: Float32Array) => {
        const t = tex(dIn / 4, N, T.TEXTURE_BINDING | T.COPY_DST);
        device.queue.writeTexture({ texture: t }, data as Float32Array<ArrayBuffer>, { bytesPerRow: dIn * 4, rowsPerImage: N }, [dIn / 4, N]);
        return t;
      };
      const w0 = weightTex(dyad ? c.wl! : c.weight!), w1 = dyad ? weightTex(c.wu!) : undefined;
      const rowBytes = Math.ceil((K * 4) / 256) * 256;
      const xb = device.createBuffer({ size: rowBytes * B, usage: U.STORAGE | U.COPY_SRC | U.COPY_DST });
      const padded = new Float32Array((rowBytes / 4) * B);
      for (let b = 0; b < B; b++) padded.set(c.x.subarray(b * K, (b + 1) * K), (b * rowBytes) / 4);
      device.queue.writeBuffer(xb, 0, padded);
      const xpb = dyad ? device.createBuffer({ size: rowBytes * B, usage: U.STORAGE | U.COPY_SRC }) : undefined;
      const x0 = tex(K / 4, B, T.TEXTURE_BINDING | T.COPY_DST), x1 = dyad ? tex(K / 4, B, T.TEXTURE_BINDING | T.COPY_DST) : undefined;
      const bias = device.createBuffer({ size: N * 4, usage: U.STORAGE | U.COPY_DST });
      device.queue.writeBuffer(bias, 0, c.bias as Float32Array<ArrayBuffer>);
      const y = device.createBuffer({ size: B * N * 4, usage: U.STORAGE | U.COPY_SRC });
      const params = device.createBuffer({ size: 16, usage: U.UNIFORM | U.COPY_DST });
      device.queue.writeBuffer(params, 0, new Uint32Array([B, N, dIn / 4, dyad ? dOut : N]));
      device.pushErrorScope('validation');
      const pipeline = await device.createComputePipelineAsync({ layout: 'auto', compute: { module: device.createShaderModule({ code: kernel(dyad ? 2 : 1) }), entryPoint: 'main' } });
      const entries: GPUBindGroupEntry[] = [{ binding: 0, resource: { buffer: params } }, { binding: 1, resource: { buffer: bias } }, { binding: 2, resource: { buffer: y } },
        { binding: 3, resource: w0.createView() }, { binding: 4, resource: x0.createView() }];
      if (dyad) entries.push({ binding: 5, resource: w1!.createView() }, { binding: 6, resource: x1!.createView() });
      const group = device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
      let permute: { pipeline: GPUComputePipeline; group: GPUBindGroup; groups: number } | undefined;
      if (dyad) {
        // the permuted copy is packed (K·4-byte rows, a multiple of 256 as texture copies need)
        const q = device.createBuffer({ size: 16, usage: U.UNIFORM | U.COPY_DST });
        device.queue.writeBuffer(q, 0, new Uint32Array([B, K, n, dIn]));
        const xs = device.createBuffer({ size: B * K * 4, usage: U.STORAGE | U.COPY_DST });
        device.queue.writeBuffer(xs, 0, c.x as Float32Array<ArrayBuffer>);
        const p = await device.createComputePipelineAsync({ layout: 'auto', compute: { module: device.createShaderModule({ code: PERMUTE }), entryPoint: 'main' } });
        permute = { pipeline: p, groups: Math.ceil((B * K) / 64), group: device.createBindGroup({ layout: p.getBindGroupLayout(0), entries: [
          { binding: 0, resource: { buffer: q } }, { binding: 1, resource: { buffer: xs } }, { binding: 2, resource: { buffer: xpb! } }] }) };
      }
      const err = await device.popErrorScope();
      if (err) throw new Error(`ceiling kernel: ${err.message}`);
      const colGroups = N / COLS, rowGroups = Math.ceil(B / ROWS_PER_WG);
      const encode = () => {
        const enc = device.createCommandEncoder();
        enc.copyBufferToTexture({ buffer: xb, bytesPerRow: rowBytes, rowsPerImage: B }, { texture: x0 }, [K / 4, B]);
        if (permute) {
          const pass = enc.beginComputePass();
          pass.setPipeline(permute.pipeline); pass.setBindGroup(0, permute.group);
          pass.dispatchWorkgroups(Math.min(permute.groups, 65535), Math.ceil(permute.groups / 65535));
          pass.end();
          enc.copyBufferToTexture({ buffer: xpb!, bytesPerRow: K * 4, rowsPerImage: B }, { texture: x1! }, [K / 4, B]);
        }
        const pass = enc.beginComputePass();
        pass.setPipeline(pipeline); pass.setBindGroup(0, group);
        pass.dispatchWorkgroups(colGroups, rowGroups);
        pass.end();
        return enc;
      };
      return {
        async run() { device.queue.submit([encode().finish()]); await device.queue.onSubmittedWorkDone(); },
        async output() {
          const enc = encode();
          const read = device.createBuffer({ size: B * N * 4, usage: U.MAP_READ | U.COPY_DST });
          enc.copyBufferToBuffer(y, 0, read, 0, B * N * 4);
          device.queue.submit([enc.finish()]);
          await read.mapAsync(GPUMapMode.READ);
          const out = new Float32Array(read.getMappedRange().slice(0));
          read.unmap(); read.destroy();
          return out;
        },
        dispose() { for (const t of [w0, w1, x0, x1]) t?.destroy(); for (const b of [xb, xpb, bias, y, params]) b?.destroy(); },
      };
    },
  };
}
