/**
 * Weight textures: the `texture` weight source of subgroup gemms (compiler Schedule.wsource). A kernel
 * that binds `{ kind: 'weightTexture', weight }` reads that tensor from an `rgba32float` texture instead
 * of the f32 weights arena (texture loads are cheaper than bounds-checked storage-buffer loads on Mesa
 * lavapipe: ../shared/LAVAPIPE.md, 0.86 against 1.22 ns per vec4).
 *
 * The arena stays the source of truth (training, getWeights, the register kernels all read it): every
 * texture is a copy of its tensor's span of the arena, rebuilt by a small compute kernel (`FILL_WGSL`)
 * whenever the weights may have changed (`markStale`: setWeights, a trainer step, any caller that took
 * `weightsBuffer`), submitted alone just before the next dispatch that may read the textures is recorded
 * (`refresh`), so queue order puts it after every write before it and before that dispatch. One kernel for every shape: copyBufferToTexture would need
 * 256-byte row pitches and 16-byte-aligned offsets, which ragged shapes and arena offsets do not have.
 *
 * Layout (compiler/passes/schedule.ts weightTextureSize; the plan's WeightTextureBinding): texture row r
 * = the tensor's row r along its last dimension (rows = every other dimension flattened), texel t = its
 * elements 4t .. 4t+3, zero past the end. Browser-safe; imports only runtime modules.
 */
import { weightTextureSize, type PlanWeight, type TrainBinding } from './core/plan.js';
import { DyadcError } from './core/errors.js';
import { getPipeline } from './pipelines.js';

/** GPUTextureUsage flags (WebGPU spec values; the global exists only where the `webgpu` globals were installed). */
const TEXTURE_USAGE = { TEXTURE_BINDING: 0x04, STORAGE_BINDING: 0x08 } as const;

/** minStorageBufferOffsetAlignment every adapter accepts (WebGPU's largest allowed value) */
const OFFSET_ALIGN = 256;

/**
 * Fills one weight texture from the arena: invocation (t, r) writes texel t of row r,
 * `vec4(src[first + r·cols + 4t + q])`, q = 0..3, zero where 4t + q ≥ cols.
 */
const FILL_WGSL = `// dyadc kernel fill_weight_texture: one weight tensor of the f32 arena -> its rgba32float texture
struct Fill {
  first: u32,   // the tensor's first element in the bound span of the arena
  cols: u32,    // the tensor's last dimension (floats per texture row)
  texels: u32,  // texels per row: ceil(cols / 4)
  rows: u32,    // texture rows
}
@group(0) @binding(0) var<uniform> fill: Fill;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var dst: texture_storage_2d<rgba32float, write>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let t = gid.x;
  let r = gid.y;
  if (t >= fill.texels || r >= fill.rows) { return; }
  var v = vec4<f32>(0.0);
  for (var q = 0u; q < 4u; q = q + 1u) {
    let c = 4u * t + q;
    if (c < fill.cols) { v[q] = src[fill.first + r * fill.cols + c]; }
  }
  textureStore(dst, vec2<u32>(t, r), v);
}
`;

/** A texture's size for a tensor shape (core/plan.ts weightTextureSize, shared with the compiler) and the floats per row. */
export function textureSize(shape: readonly number[]): { width: number; height: number; cols: number } {
  return { ...weightTextureSize(shape), cols: shape[shape.length - 1] };
}

/** Names of the weight tensors `kernels` (and their small-batch kernels) read as textures, in first-use order. */
export function textureWeights(kernels: readonly { bindings: readonly { buffer: { kind: string; weight?: string } }[]; smallBatch?: { kernel: unknown } }[]): string[] {
  const names = new Set<string>();
  for (const k of kernels) for (const kk of [k, k.smallBatch?.kernel as typeof k | undefined]) for (const b of kk?.bindings ?? [])
    if (b.buffer.kind === 'weightTexture' && b.buffer.weight) names.add(b.buffer.weight);
  return [...names];
}

interface Entry { texture: GPUTexture; view: GPUTextureView; uniform: GPUBuffer; group?: GPUBindGroup; arena?: GPUBuffer; width: number; height: number; weight: PlanWeight }

/** The weight textures of one model, kept copies of its f32 arena. */
export class WeightTextures {
  private entries = new Map<string, Entry>();
  private stale = true;

  private constructor(private readonly device: GPUDevice, private readonly pipeline: GPUComputePipeline, private readonly arena: () => GPUBuffer) {}

  /**
   * Creates the textures of `names` (plan.weights entries) and compiles the fill kernel.
   * @param arena the f32 arena (called when a refresh is encoded: the buffer may be created late)
   * @throws DyadcError(LIMIT) when a texture exceeds the device's maxTextureDimension2D (naming the tensor
   *   and its size; plans compiled with the default limits always fit); DyadcError(USAGE) for an unknown name.
   */
  static async create(device: GPUDevice, weights: readonly PlanWeight[], names: readonly string[], arena: () => GPUBuffer, model: string): Promise<WeightTextures> {
    const pipeline = await getPipeline(device, { name: 'fill_weight_texture', wgsl: FILL_WGSL, shapes: 'arena -> rgba32float texture', layers: [] });
    const t = new WeightTextures(device, pipeline, arena);
    const max = device.limits.maxTextureDimension2D;
    for (const name of names) {
      const weight = weights.find((w) => w.name === name);
      if (!weight) throw new DyadcError('USAGE', `model ${model}: a kernel reads weight texture ${name}, which is no weight of the plan`);
      const { width, height } = textureSize(weight.shape);
      if (Math.max(width, height) > max) {
        t.destroy();
        throw new DyadcError('LIMIT', `model ${model}: weight ${name} needs a ${width}×${height} texture but this device's maxTextureDimension2D is ${max}`,
          { fix: 'compile with this device\'s limits (--limits adapter) or the default limits, which keep such weights on the buffer' });
      }
      const texture = device.createTexture({ size: [width, height], format: 'rgba32float', usage: TEXTURE_USAGE.TEXTURE_BINDING | TEXTURE_USAGE.STORAGE_BINDING, label: `${model}.${name}.texture` });
      const uniform = device.createBuffer({ size: 16, usage: GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST, label: `${model}.${name}.fill` });
      t.entries.set(name, { texture, view: texture.createView(), uniform, width, height, weight });
    }
    return t;
  }

  /** The texture view bound for a `weightTexture` binding. @throws DyadcError(USAGE) for a texture this model does not hold. */
  view(b: TrainBinding, kernel: string): GPUTextureView {
    const name = b.buffer.kind === 'weightTexture' ? b.buffer.weight : '';
    const e = this.entries.get(name);
    if (!e) throw new DyadcError('USAGE', `kernel ${kernel} reads weight texture ${name || b.buffer.kind}, which this model did not create`);
    return e.view;
  }

  /** The weights may have changed: the next `refresh` copies the arena again. */
  markStale(): void { this.stale = true; }

  /**
   * When stale, submits the fill of every texture from the arena (one compute pass), so commands submitted
   * after it read the current weights.
   */
  refresh(): void {
    if (!this.stale || this.entries.size === 0) return;
    const arena = this.arena();
    const enc = this.device.createCommandEncoder({ label: 'fill weight textures' });
    const pass = enc.beginComputePass({ label: 'fill weight textures' });
    pass.setPipeline(this.pipeline);
    for (const e of this.entries.values()) {
      if (!e.group || e.arena !== arena) {
        // bind the tensor's span of the arena from a 256-byte boundary (the arena may exceed one binding)
        const start = Math.floor((e.weight.offset * 4) / OFFSET_ALIGN) * OFFSET_ALIGN;
        const first = e.weight.offset - start / 4, count = e.width === 0 ? 0 : e.weight.shape.reduce((a, b) => a * b, 1);
        this.device.queue.writeBuffer(e.uniform, 0, new Uint32Array([first, e.weight.shape[e.weight.shape.length - 1], e.width, e.height]));
        e.group = this.device.createBindGroup({ label: `fill ${e.weight.name}`, layout: this.pipeline.getBindGroupLayout(0), entries: [
          { binding: 0, resource: { buffer: e.uniform } },
          { binding: 1, resource: { buffer: arena, offset: start, size: (first + count) * 4 } },
          { binding: 2, resource: e.view }] });
        e.arena = arena;
      }
      pass.setBindGroup(0, e.group);
      pass.dispatchWorkgroups(Math.ceil(e.width / 64), e.height);
    }
    pass.end();
    this.device.queue.submit([enc.finish()]);
    this.stale = false;
  }

  /** Frees the textures and their uniforms. */
  destroy(): void {
    for (const e of this.entries.values()) { e.texture.destroy(); e.uniform.destroy(); }
    this.entries.clear();
  }
}
