/**
 * The Brown-corpus data of the LM example (examples/lm-data.ts): detagging, the character vocabulary,
 * the BPE vocabulary (Hugging Face tokenizers), the seeded split by document, the batch sampler and the unigram
 * baselines. CPU only, ~10 s (the BPE trainer runs twice).
 */
import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DyadcError } from '../compiler/errors.js';
import {
  BatchSampler, bpeTokens, brownDir, brownLmData, charVocab, corpusWordShare, detagDocument, detagTokens, lmTokens, sequentialBatches, splitByDocument, unigramBitsPerChar, wordSet,
} from '../examples/lm-data.js';

const SEED = 17;
const data = brownLmData({ seed: SEED });
const raw = (id: string) => readFileSync(join(brownDir(), id), 'latin1');

test('the corpus: 500 documents in 15 genres, statistics add up', (t) => {
  const { stats, docs } = data;
  t.is(stats.documents, 500);
  t.is(new Set(docs.map((d) => d.category)).size, 15);
  t.is(stats.trainDocuments + stats.valDocuments, 500);
  t.is(stats.characters, docs.reduce((s, d) => s + d.text.length, 0));
  t.is(stats.trainCharacters + stats.valCharacters, stats.characters);
  t.log(JSON.stringify(stats));
});

test('detagging: the known first sentence of ca01, quotes, brackets, a line opening with punctuation', (t) => {
  t.true(data.docs[0].text.startsWith(
    `The Fulton County Grand Jury said Friday an investigation of Atlanta's recent primary election produced "no evidence" that any irregularities took place.\n`
    + 'The jury further said in term-end presentments that the City Executive Committee, which had over-all charge of the election, "deserves the praise and thanks of the City of Atlanta" for the manner in which the election was conducted.\n'));
  t.is(detagTokens("He/pps said/vbd ,/, ``/`` more/ap '/' pro/nn '/' letters/nns (/( 3/cd )/) ''/'' ./.".split(' ')),
    `He said, "more 'pro' letters (3)".`);
  t.is(detagTokens("and/cc 1/2/cd cup/nn of/in 1/4''/nn pipe/nn ;/. ;/.".split(' ')), 'and 1/2 cup of 1/4" pipe;;'); // the word keeps its "/", the corpus's doubled mark stays
  // A sentence line that opens with a closing quote attaches to the paragraph before it; a headline stands alone.
  t.is(detagDocument('\n\n\tHe/pps said/vbd ``/`` no/rb ./.\n\'\'/\'\'\n\n\nNews/nn-hl \nThen/rb ./.\n', 'x'), 'He said "no."\nNews\nThen.');
  const e = t.throws(() => detagDocument('\tfine/jj word\n', 'cz01'), { instanceOf: DyadcError });
  t.is(e?.path, 'cz01:1');
  t.regex(e?.message ?? '', /token "word" has no "\/tag"/);
});

test('tags are gone from every document: no word/tag left, every "/" is one the words themselves hold', (t) => {
  const tag = /\S\/(?:at|nn|nns|np|np\$|in|vbd|vbn|vb|jj|cc|cs|rb|pps|ppss|dt|cd|to|md|be|bez|bedz|hvd|wdt)(?:-tl|-hl|-nc)?(?=\s|$)/;
  for (const doc of data.docs) {
    t.false(tag.test(doc.text), `${doc.id}: ${doc.text.match(tag)?.[0]}`);
    t.false(doc.text.includes('\t') || doc.text.includes('``') || doc.text.includes("''"), doc.id);
    // Independent count: each raw token holds exactly one tag separator; every other "/" belongs to a word.
    const tokens = raw(doc.id).split(/\s+/).filter((w) => w !== '');
    const wordSlashes = tokens.reduce((s, w) => s + w.split('/').length - 2, 0);
    t.is(doc.text.split('/').length - 1, wordSlashes, doc.id);
  }
});

test('vocabulary: sorted, all characters kept, decode(encode(s)) round-trips every document, clear errors', (t) => {
  const { vocab } = data;
  t.deepEqual([...vocab.chars], [...vocab.chars].sort());
  t.deepEqual([...charVocab([...data.docs].reverse().map((d) => d.text)).chars], [...vocab.chars], 'order of documents must not matter');
  t.true(vocab.chars.includes('\n') && vocab.chars.includes('"') && !vocab.chars.includes('\t'));
  for (const doc of data.docs) t.is(vocab.decode(vocab.encode(doc.text)), doc.text, doc.id);
  t.log(`vocab ${vocab.size}: ${JSON.stringify(vocab.chars.join(''))}`);
  t.throws(() => vocab.encode('caf\u00e9'), { instanceOf: DyadcError, message: /character "é" at 3 is not in the \d+-character vocabulary/ });
  t.throws(() => vocab.decode([0, vocab.size]), { instanceOf: DyadcError, message: /token id \d+ at 1 is outside the vocabulary/ });
});

test('split by document: disjoint, complete, every genre in validation, reproducible, seed-dependent', (t) => {
  const ids = (docs: { id: string }[]) => docs.map((d) => d.id);
  const train = new Set(ids(data.train)), val = new Set(ids(data.val));
  t.true([...val].every((id) => !train.has(id)));
  t.is(train.size + val.size, 500);
  t.is(val.size, 25); // 5 % of each genre, rounded, at least one
  t.is(new Set(data.val.map((d) => d.category)).size, 15);
  const again = splitByDocument(data.docs, { seed: SEED });
  t.deepEqual(ids(again.val), ids(data.val));
  t.deepEqual(ids(again.train), ids(data.train));
  const other = splitByDocument(data.docs, { seed: SEED + 1 });
  t.notDeepEqual(ids(other.val), ids(data.val));
  t.is(other.val.length, 25);
  t.is(splitByDocument(data.docs, { seed: SEED, valFraction: 0.2 }).val.length, 100);
  t.throws(() => splitByDocument(data.docs, { seed: 1, valFraction: 0 }), { instanceOf: DyadcError, message: /^valFraction: valFraction 0 must be in \(0, 0.5\]/ });
  t.log(`validation documents (seed ${SEED}): ${ids(data.val).join(' ')}`);
});

test('batch sampler: [batch, seq] Int32 windows inside one document, targets = inputs shifted by one, seeded', (t) => {
  const seq = 64, batch = 8;
  const sampler = new BatchSampler(data.trainIds, seq, 5);
  t.is(sampler.windows, data.trainIds.reduce((s, d) => s + d.length - seq, 0));
  const texts = data.train.map((d) => d.text);
  for (let step = 0; step < 20; step++) {
    const { inputs, targets } = sampler.next(batch);
    t.true(inputs instanceof Int32Array && targets instanceof Int32Array);
    t.is(inputs.length, batch * seq);
    t.is(targets.length, batch * seq);
    for (let b = 0; b < batch; b++) {
      for (let s = 0; s + 1 < seq; s++) t.is(targets[b * seq + s], inputs[b * seq + s + 1]);
      const window = data.vocab.decode(inputs.subarray(b * seq, (b + 1) * seq)) + data.vocab.decode([targets[(b + 1) * seq - 1]]);
      t.true(texts.some((x) => x.includes(window)), `window ${JSON.stringify(window)} is not inside one training document`);
    }
  }
  const a = new BatchSampler(data.trainIds, seq, 5).next(batch), b = new BatchSampler(data.trainIds, seq, 5).next(batch), c = new BatchSampler(data.trainIds, seq, 6).next(batch);
  t.deepEqual(a, b);
  t.notDeepEqual(a.inputs, c.inputs);
  t.throws(() => new BatchSampler([Int32Array.of(1, 2, 3)], 3, 1), { instanceOf: DyadcError, message: /^seq: no document is longer than seq 3/ });
  t.throws(() => sampler.next(0), { instanceOf: DyadcError, message: /^batch: batch 0 must be an integer ≥ 1/ });
  // Every window of a small corpus is drawn (uniform over windows, none straddles documents).
  const tiny = [Int32Array.of(0, 1, 2, 3), Int32Array.of(10, 11, 12)];
  const seen = new Set<string>();
  const s2 = new BatchSampler(tiny, 2, 9);
  for (let i = 0; i < 50; i++) { const { inputs, targets } = s2.next(1); seen.add(`${inputs[0]},${inputs[1]}>${targets[1]}`); }
  t.deepEqual([...seen].sort(), ['0,1>2', '1,2>3', '10,11>12']);
});

test('sequential batches: every non-overlapping window once, in order, last batch ragged', (t) => {
  const docs = [Int32Array.from({ length: 10 }, (_, i) => i), Int32Array.of(20, 21, 22), Int32Array.of(30, 31, 32, 33, 34)];
  const batches = [...sequentialBatches(docs, 4, 2)];
  t.deepEqual(batches.map((b) => b.batch), [2, 1]);
  t.deepEqual([...batches[0].inputs], [0, 1, 2, 3, 4, 5, 6, 7]);
  t.deepEqual([...batches[0].targets], [1, 2, 3, 4, 5, 6, 7, 8]);
  t.deepEqual([...batches[1].inputs], [30, 31, 32, 33]);
  t.deepEqual([...batches[1].targets], [31, 32, 33, 34]);
  const targets = [...sequentialBatches(data.valIds, 128, 16)].reduce((s, b) => s + b.targets.length, 0);
  t.is(targets, data.valIds.reduce((s, d) => s + Math.floor((d.length - 1) / 128) * 128, 0));
});

test('unigram baseline: bits per character of validation under the training unigram', (t) => {
  const bpc = unigramBitsPerChar(data.trainIds, data.valIds, data.vocab.size);
  // Gibbs: the cross-entropy is at least the validation text's own unigram entropy, and below uniform.
  const counts = new Float64Array(data.vocab.size);
  let n = 0;
  for (const d of data.valIds) for (const id of d) { counts[id]++; n++; }
  const entropy = counts.reduce((h, c) => (c > 0 ? h - (c / n) * Math.log2(c / n) : h), 0);
  t.true(bpc >= entropy && bpc < Math.log2(data.vocab.size), `entropy ${entropy}, bpc ${bpc}, uniform ${Math.log2(data.vocab.size)}`);
  t.true(bpc - entropy < 0.05, 'train and validation are the same kind of English: their unigrams must be close');
  t.log(`unigram bpc (seed ${SEED}): ${bpc.toFixed(4)} (validation's own unigram entropy ${entropy.toFixed(4)}, uniform over ${data.vocab.size}: ${Math.log2(data.vocab.size).toFixed(4)})`);
});

// The BPE vocabulary (`--tokens bpe`, the experiment's default), learned once from this split's training documents.
const bpe = lmTokens(data, { bpe: 1024 });

test('BPE tokens: 1024 pieces learned from training documents only, exact round trip of every validation document, characters per token', async (t) => {
  const { vocab, trainIds, valIds } = await bpe;
  t.is(vocab.kind, 'bpe');
  t.is(vocab.size, 1024);
  t.is(trainIds.length, data.train.length);
  t.is(valIds.length, data.val.length);
  // Validation characters the training text lacks are in the alphabet: every validation document decodes back exactly.
  for (let i = 0; i < data.val.length; i++) {
    t.true(valIds[i].every((id) => id >= 0 && id < 1024), data.val[i].id);
    t.is(await vocab.decode(valIds[i]), data.val[i].text, data.val[i].id);
    // Characters per token: the pieces' lengths add up to the text plus the leading word mark of the document.
    t.is(valIds[i].reduce((n, id) => n + vocab.charsOf(id), 0), data.val[i].text.length + 1, data.val[i].id);
  }
  for (let i = 0; i < data.train.length; i += 25) t.is(await vocab.decode(trainIds[i]), data.train[i].text, data.train[i].id);
  const tokens = trainIds.reduce((n, d) => n + d.length, 0);
  const perToken = data.stats.trainCharacters / tokens;
  t.true(perToken > 2.3 && perToken < 3.5, `characters per token ${perToken}`);
  // Frequent words are single pieces; a rare one is split into several.
  t.is((await vocab.encode('the')).length, 1);
  t.is((await vocab.encode(' of the')).length, 2);
  t.true((await vocab.encode('Fulton')).length > 1);
  t.log(`BPE 1024: ${tokens.toLocaleString('en-US')} training tokens, ${perToken.toFixed(3)} characters per token`);
});

test('BPE tokens: deterministic, and a size at or below the alphabet is a clear error', async (t) => {
  const { vocab } = await bpe;
  const again = await bpeTokens(data.train.map((d) => d.text), 1024, data.val.map((d) => d.text));
  const text = data.val[0].text;
  t.deepEqual(await again.encode(text), await vocab.encode(text));
  // Alphabet of 'ab ab ab abc' (+ the newline joining texts): ▁ a b c \n; the first merge is ▁ + a.
  const small = await bpeTokens(['ab ab ab abc'], 6);
  t.is(small.size, 6);
  t.is((await small.encode('ab abc')).length, 5, 'one merge (▁a or ab): 5 pieces');
  const three = await bpeTokens(['ab ab ab abc'], 9);
  t.deepEqual([...await three.encode('ab abc')].map(three.charsOf), [3, 3, 1], 'merges up to ▁ab: ▁ab ▁ab c');
  t.is(await small.decode(await small.encode('ab abc')), 'ab abc');
  await t.throwsAsync(bpeTokens(['ab ab ab abc'], 100), { instanceOf: DyadcError, message: /^bpe: BPE vocabulary size 100 exceeds the \d+ pieces the trainer learns/ });
  await t.throwsAsync(bpeTokens(['ab ab ab abc'], 5), { instanceOf: DyadcError, message: /^bpe: BPE vocabulary size 5 must be an integer above the 5-character alphabet/ });
  await t.throwsAsync(async () => vocab.decode([0, 1024]), { instanceOf: DyadcError, message: /token id 1024 at 1 is outside the vocabulary/ });
});

test('unigram baseline over BPE tokens, in bits per character: below the character unigram (pieces carry within-word structure)', async (t) => {
  const { vocab, trainIds, valIds } = await bpe;
  const pieces = unigramBitsPerChar(trainIds, valIds, vocab.size, vocab.charsOf);
  const chars = unigramBitsPerChar(data.trainIds, data.valIds, data.vocab.size);
  t.true(pieces < chars - 0.5 && pieces > 1.5, `BPE unigram ${pieces} bits/char vs character unigram ${chars}`);
  // charsOf weights the denominator: with every token counted as one character it is the per-token entropy.
  t.true(Math.abs(unigramBitsPerChar(trainIds, valIds, vocab.size) / pieces - valIds.reduce((n, d) => n + d.reduce((m, id) => m + vocab.charsOf(id), 0), 0) / valIds.reduce((n, d) => n + d.length, 0)) < 1e-9);
  t.log(`unigram: BPE ${pieces.toFixed(4)} bits/char, characters ${chars.toFixed(4)}`);
});

test('sample spelling: corpusWordShare counts the words of a text that are words of the training documents', (t) => {
  const known = wordSet(data.train.map((d) => d.text));
  t.true(known.has('jury') && known.has('the') && !known.has('The'), 'lower-cased letter runs');
  t.deepEqual(corpusWordShare('The jury said that the wul, in the stu', known), { words: 8, known: 7, share: 7 / 8 }, 'a last word cut by the end is left out; "wul" is not a word');
  t.deepEqual(corpusWordShare('Qzxv, jury. ', known), { words: 2, known: 1, share: 0.5 });
  t.deepEqual(corpusWordShare(' 1961 -- ', known), { words: 0, known: 0, share: 0 });
  // Held-out English scores near 1: the validation documents' words are mostly words of the training documents.
  const val = corpusWordShare(data.val.map((d) => d.text).join('\n'), known);
  t.true(val.share > 0.9 && val.share < 1, `validation text: ${val.known} of ${val.words}`);
});
