/**
 * Index maps: how block `i` (0 ≤ i < blocks) and in-block index `a` (0 ≤ a < blockSize) of a block
 * product reach a feature of a `[batch, blocks*blockSize]` activation (DYAD.md, "The two index maps"):
 *
 *     contiguous:  feature(i, a) = i*blockSize + a
 *     strided:     feature(i, a) = a*blocks + i        (view as [blockSize, blocks], transpose)
 *
 * A map is a value object: it never materialises a permutation, it renders to an index expression.
 */
export type MapKind = 'contiguous' | 'strided';

export class IndexMap {
  constructor(readonly kind: MapKind, readonly blocks: number, readonly blockSize: number) {}

  static contiguous(blocks: number, blockSize: number): IndexMap { return new IndexMap('contiguous', blocks, blockSize); }
  static strided(blocks: number, blockSize: number): IndexMap { return new IndexMap('strided', blocks, blockSize); }

  /** Number of features the map covers (`blocks * blockSize`). */
  get size(): number { return this.blocks * this.blockSize; }

  /** feature(i, a). */
  apply(i: number, a: number): number {
    return this.kind === 'contiguous' ? i * this.blockSize + a : a * this.blocks + i;
  }

  /** The inverse: feature → [i, a]. */
  inverse(feature: number): [number, number] {
    return this.kind === 'contiguous'
      ? [Math.floor(feature / this.blockSize), feature % this.blockSize]
      : [feature % this.blocks, Math.floor(feature / this.blocks)];
  }

  /** Block of a feature (first component of `inverse`). */
  blockOf(feature: number): number { return this.inverse(feature)[0]; }

  /**
   * Composition with another map over the same features, as the permutation `p[f] = this.apply(other.inverse(f))`.
   * (Used by tests and `print`; kernels never build it.) Two strided maps with swapped shapes compose to the identity.
   */
  compose(other: IndexMap): Int32Array {
    const p = new Int32Array(this.size);
    for (let f = 0; f < this.size; f++) { const [i, a] = other.inverse(f); p[f] = this.apply(i, a); }
    return p;
  }

  /** WGSL u32 expression for feature(i, a); `i` and `a` are WGSL u32 expressions. */
  wgsl(i: string, a: string): string {
    return this.kind === 'contiguous'
      ? `(${i} * ${this.blockSize}u + ${a})`
      : `(${a} * ${this.blocks}u + ${i})`;
  }

  equals(o: IndexMap): boolean { return o.kind === this.kind && o.blocks === this.blocks && o.blockSize === this.blockSize; }
  toString(): string { return this.kind === 'contiguous' ? `contiguous(${this.blocks}x${this.blockSize})` : `strided(${this.blocks}x${this.blockSize})`; }
  toJSON(): object { return { kind: this.kind, blocks: this.blocks, blockSize: this.blockSize }; }
}

/** The (inMap, outMap) kinds of the upper part for each DYAD variant (DYAD.md table). */
export const UPPER_MAPS: Record<'it' | 'ot' | 'dt', { in: MapKind; out: MapKind }> = {
  it: { in: 'strided', out: 'contiguous' },
  ot: { in: 'contiguous', out: 'strided' },
  dt: { in: 'strided', out: 'strided' },
};
