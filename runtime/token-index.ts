/**
 * The host side of the embedding gradient (compiler/codegen/embedding.ts renderEmbeddingGrad): the
 * segment index of a batch's token ids, which the trainer builds and uploads with every step (the
 * runtime never imports compiler/; the compiler re-exports this for its kernel tests).
 */
import { DyadcError } from './core/errors.js';

/**
 * The segment index of the embedding gradient: a stable counting sort of the row indices by token id
 * (Cormen et al., "Introduction to Algorithms", §8.2). O(rows + vocab) on the host.
 * @param ids `[rows]` token ids
 * @returns rows `[rows]` (the rows of id 0 in order, then of id 1, …) and starts `[vocab + 1]` (id v's rows are rows[starts[v] … starts[v+1]))
 * @throws DyadcError(USAGE) for an id outside [0, vocab), naming its position.
 */
export function embeddingGradIndex(ids: ArrayLike<number>, vocab: number): { rows: Uint32Array; starts: Uint32Array } {
  const starts = new Uint32Array(vocab + 1);
  for (let r = 0; r < ids.length; r++) {
    const v = ids[r];
    if (!Number.isInteger(v) || v < 0 || v >= vocab) throw new DyadcError('USAGE', `token ids[${r}] = ${v} is outside [0, ${vocab})`, { fix: 'map the text through the model vocabulary' });
    starts[v + 1]++;
  }
  for (let v = 0; v < vocab; v++) starts[v + 1] += starts[v];
  const next = starts.slice(0, vocab), rows = new Uint32Array(ids.length);
  for (let r = 0; r < ids.length; r++) rows[next[ids[r]]++] = r;
  return { rows, starts };
}
