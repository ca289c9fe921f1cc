// Tokenizer API: loading (files, bad files, Hub names through a local HTTP server), saving for
// transformers, tensors, offset helpers, added tokens, and the WordPiece trainer.
import * as fs from 'fs';
import * as http from 'http';
import * as path from 'path';
import { AddressInfo } from 'net';
import { BertTokenizer, WordPieceTrainer } from '../lib/tokenizer';
import { readLines } from '../lib/data/datasets';
import { DATA, python, tmpDir } from './helpers';

const UNCASED = path.join(DATA, 'bert-base-uncased');

describe('loading', () => {
  test('vocab.txt and tokenizer.json give the same tokenizer', async () => {
    const a = await BertTokenizer.fromPretrained(UNCASED);
    const b = BertTokenizer.fromVocabFile(path.join(UNCASED, 'vocab.txt'));
    const text = 'Héllo, [MASK] world! 北京 unaffable';
    expect(a.call(text).inputIds).toEqual(b.call(text).inputIds);
    expect(a.vocabSize).toBe(30522);
  });

  test('bad vocabularies and tokenizer.json files get errors naming the file and the problem', () => {
    const dir = tmpDir();
    const write = (name: string, data: string | Buffer) => {
      const p = path.join(dir, name);
      fs.writeFileSync(p, data);
      return p;
    };
    expect(() => BertTokenizer.fromVocabFile(write('empty.txt', ''))).toThrow(/empty.txt: the vocabulary file is empty/);
    expect(() => BertTokenizer.fromVocabFile(write('bin.txt', Buffer.from([0x5b, 0x00, 0xff, 0x0a])))).toThrow(/bin.txt: the vocabulary file is binary/);
    expect(() => BertTokenizer.fromVocabFile(write('latin.txt', Buffer.from([0x63, 0x61, 0x66, 0xe9, 0x0a])))).toThrow(/latin.txt: the vocabulary file is not valid UTF-8/);
    expect(() => BertTokenizer.fromVocabFile(write('dup.txt', '[UNK]\na\nb\na\n'))).toThrow(/dup.txt: duplicate token 'a' on lines 2 and 4/);
    expect(() => BertTokenizer.fromVocabFile(write('nounk.txt', 'a\nb\n'))).toThrow(/nounk.txt: the vocabulary has no unknown token '\[UNK\]'/);
    expect(() => BertTokenizer.fromVocabFile(path.join(dir, 'missing.txt'))).toThrow(/no such vocabulary file/);
    expect(() => BertTokenizer.fromTokenizerJson(write('bad.json', '{"model": '))).toThrow(/bad.json: not valid JSON/);
    expect(() => BertTokenizer.fromTokenizerJson(write('nomodel.json', '{}'))).toThrow(/nomodel.json: missing 'model'/);
    expect(() => BertTokenizer.fromTokenizerJson(write('bpe.json', '{"model": {"type": "BPE", "vocab": {}}}'))).toThrow(/model type 'BPE' is not WordPiece/);
    expect(() => BertTokenizer.fromTokenizerJson(write('ids.json', '{"model": {"type": "WordPiece", "vocab": {"[UNK]": 0, "a": 0}}}'))).toThrow(/share id 0/);
    expect(() => BertTokenizer.fromTokenizerJson(write('neg.json', '{"model": {"vocab": {"[UNK]": -1}, "continuing_subword_prefix": "##"}}'))).toThrow(/not a non-negative integer id/);
  });

  test('a Hub name resolves from the HF cache, else downloads (local HTTP server)', async () => {
    const cache = tmpDir('hf-cache-');
    const requests: string[] = [];
    const server = http.createServer((req, res) => {
      requests.push(req.url!);
      if (req.url!.startsWith('/acme/cut/resolve/main/tokenizer.json')) {
        // a download cut short: the header promises more than arrives
        res.writeHead(200, { 'content-length': 100000, 'x-repo-commit': 'def456', etag: '"etag-cut"' });
        res.write('{"version": ');
        setTimeout(() => res.destroy(), 20);
        return;
      }
      const m = req.url!.match(/^\/acme\/tiny-bert\/resolve\/main\/(.+)$/);
      const file = m && path.join(UNCASED, m[1]);
      if (!file || !fs.existsSync(file)) {
        res.writeHead(404).end('not found');
        return;
      }
      const body = fs.readFileSync(file);
      res.writeHead(200, { 'content-length': body.length, 'x-repo-commit': 'abc123', etag: `"etag-${m![1]}"` }).end(body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const tok = await BertTokenizer.fromPretrained('acme/tiny-bert', { cacheDir: cache, endpoint });
      expect(tok.call('hello world').inputIds).toEqual([101, 7592, 2088, 102]);
      expect(requests.some((u) => u.endsWith('tokenizer.json'))).toBe(true);
      // The cache has the Hub layout, and a second load makes no request.
      const snap = path.join(cache, 'models--acme--tiny-bert', 'snapshots', 'abc123', 'tokenizer.json');
      expect(fs.lstatSync(snap).isSymbolicLink()).toBe(true);
      expect(fs.readFileSync(path.join(cache, 'models--acme--tiny-bert', 'refs', 'main'), 'utf8')).toBe('abc123');
      const before = requests.length;
      await BertTokenizer.fromPretrained('acme/tiny-bert', { cacheDir: cache, endpoint, offline: true });
      expect(requests.length).toBe(before);
      await expect(BertTokenizer.fromPretrained('acme/nothing-here', { cacheDir: cache, endpoint })).rejects.toThrow(/has none of tokenizer.json, vocab.txt/);
      await expect(BertTokenizer.fromPretrained('acme/other', { cacheDir: cache, endpoint, offline: true })).rejects.toThrow(/has none of/);
      await expect(BertTokenizer.fromPretrained('bad name!', { cacheDir: cache, endpoint })).rejects.toThrow(/invalid model name/);
      // Downloads stream to a temporary file: a cut one fails and leaves nothing behind in the cache.
      await expect(BertTokenizer.fromPretrained('acme/cut', { cacheDir: cache, endpoint })).rejects.toThrow(/download of 'tokenizer.json' of 'acme\/cut' .* broke off after \d+ of 100000 bytes/);
      const blobs = path.join(cache, 'models--acme--cut', 'blobs');
      expect(fs.existsSync(blobs) ? fs.readdirSync(blobs) : []).toEqual([]);
    } finally {
      server.close();
    }
  });
});

describe('saving', () => {
  test('savePretrained writes files transformers loads with identical results', async () => {
    const tok = await BertTokenizer.fromPretrained(UNCASED);
    tok.addTokens(['<ent>']);
    const dir = tmpDir();
    tok.savePretrained(dir);
    const texts = ['Hello, world! <ent> naïve', 'A pair of sentences.'];
    const out = python(
      `import sys, json
from transformers import AutoTokenizer
t = AutoTokenizer.from_pretrained(sys.argv[1])
texts = json.loads(sys.argv[2])
print(json.dumps({'cls': type(t).__name__, 'ids': t(texts)['input_ids'], 'pair': t(texts[0], texts[1])['input_ids']}))`,
      [dir, JSON.stringify(texts)],
    );
    expect(out.ids).toEqual(tok.call(texts).inputIds);
    expect(out.pair).toEqual(tok.call(texts[0], texts[1]).inputIds);
    const again = await BertTokenizer.fromPretrained(dir);
    expect(again.call(texts).inputIds).toEqual(tok.call(texts).inputIds);
  });
});

describe('calling', () => {
  let tok: BertTokenizer;
  beforeAll(async () => {
    tok = await BertTokenizer.fromPretrained(UNCASED);
  });

  test("returnTensors 'pt' gives int64 tensors", () => {
    const r = tok.call(['short', 'a longer sentence here'], undefined, { padding: true, returnTensors: 'pt' });
    const ids = r.inputIds as import('../lib').Tensor;
    expect(ids.dtype).toBe('int64');
    expect(ids.shape).toEqual([2, 6]);
    expect((r.attentionMask as import('../lib').Tensor).sum().item()).toBe(3 + 6);
    expect(() => tok.call(['a', 'b c d'], undefined, { returnTensors: 'pt' })).toThrow(/use padding/);
  });

  test('offset helpers', () => {
    const text = 'Hello unaffable world';
    const r = tok.call(text);
    expect(r.wordIds()).toEqual([null, 0, 1, 1, 1, 2, null]);
    expect(r.sequenceIds()).toEqual([null, 0, 0, 0, 0, 0, null]);
    expect(r.charToToken(8)).toBe(2);
    expect(r.tokenToChars(2)).toEqual({ start: 6, end: 9 });
    expect(r.tokenToChars(0)).toBeNull();
    const p = tok.call('question here', 'the context');
    expect(p.sequenceIds()).toEqual([null, 0, 0, null, 1, 1, null]);
    expect(p.charToToken(0, 4, 1)).toBe(5);
  });

  test('bad arguments are clear errors', () => {
    expect(() => tok.call(42 as any)).toThrow(/text must be a string/);
    expect(() => tok.call(['a', null as any])).toThrow(/text\[1\] must be a string/);
    expect(() => tok.call(['a'], ['b', 'c'])).toThrow(/1 texts but 2 pairs/);
    expect(() => tok.call('a', undefined, { truncation: 'sideways' as any, maxLength: 5 })).toThrow(/unknown truncation strategy/);
    expect(() => tok.call('a', undefined, { padding: 'max_length' })).toThrow(/needs maxLength/);
    expect(() => tok.call('a b c', undefined, { truncation: true, maxLength: 1 })).toThrow(/no room/);
    expect(() => tok.convertIdsToTokens([999999])).toThrow(/not in the vocabulary/);
  });

  test('added tokens are matched in raw text', () => {
    const t = BertTokenizer.fromVocabFile(path.join(UNCASED, 'vocab.txt'));
    expect(t.addTokens(['<Special_One>', 'hello'])).toBe(1);
    expect(t.tokenize('x <Special_One> y')).toEqual(['x', '<Special_One>', 'y']);
    expect(t.convertTokensToIds('<Special_One>')).toBe(30522);
    expect(t.decode(t.encode('Hello world!'), { skipSpecialTokens: true })).toBe('hello world!');
  });
});

describe('parallel batch path', () => {
  test('callParallel equals call, pairs and overflow included', async () => {
    const tok = await BertTokenizer.fromPretrained(UNCASED);
    const texts = readLines(path.join(DATA, 'wikitext-2', 'valid.txt')).slice(0, 500);
    const pairs = texts.map((t, i) => texts[(i + 7) % texts.length]);
    const pool = tok.createPool(2);
    try {
      const opts = { padding: true, truncation: 'longest_first', maxLength: 48, stride: 8, returnOverflowingTokens: true, returnOffsetsMapping: true } as const;
      const a = await tok.callParallel(texts, pairs, opts, pool);
      const b = tok.call(texts, pairs, opts);
      expect(a.inputIds).toEqual(b.inputIds);
      expect(a.offsetMapping).toEqual(b.offsetMapping);
      expect(a.overflowToSampleMapping).toEqual(b.overflowToSampleMapping);
      expect(a.wordIds(5)).toEqual(b.wordIds(5));
      const c = await tok.callParallel(texts, undefined, { padding: true, returnTensors: 'pt' }, pool);
      expect((c.inputIds as import('../lib').Tensor).equal(tok.call(texts, undefined, { padding: true, returnTensors: 'pt' }).inputIds as import('../lib').Tensor)).toBe(true);
      await expect(tok.callParallel(texts, undefined, { truncation: true, maxLength: 1 }, pool)).rejects.toThrow(/no room/);
    } finally {
      await pool.close();
    }
  });
});

describe('WordPieceTrainer', () => {
  test('learns a vocabulary with under 1% [UNK] on held-out text, loadable by transformers', () => {
    const train = readLines(path.join(DATA, 'wikitext-2', 'test.txt'));
    const held = readLines(path.join(DATA, 'wikitext-2', 'valid.txt'));
    const tok = new WordPieceTrainer({ vocabSize: 6000, minFrequency: 2 }).trainTokenizer(train);
    expect(tok.vocabSize).toBe(6000);
    let unk = 0;
    let total = 0;
    for (const l of held) {
      const ids = tok.call(l, undefined, { addSpecialTokens: false }).inputIds as number[];
      total += ids.length;
      unk += ids.filter((i) => i === tok.unkTokenId).length;
    }
    expect(total).toBeGreaterThan(100000);
    expect(unk / total).toBeLessThan(0.01);
    const dir = tmpDir();
    tok.savePretrained(dir);
    const sample = held.filter((l) => l.trim()).slice(0, 50);
    const out = python(
      `import sys, json
from transformers import BertTokenizer
t = BertTokenizer.from_pretrained(sys.argv[1])
print(json.dumps(t(json.loads(sys.argv[2]))['input_ids']))`,
      [dir, JSON.stringify(sample)],
    );
    expect(out).toEqual(tok.call(sample).inputIds);
  });

  test('rejects impossible settings', () => {
    expect(() => new WordPieceTrainer({ vocabSize: 2 })).toThrow(/vocabSize/);
    expect(() => new WordPieceTrainer({ specialTokens: ['[PAD]'] })).toThrow(/\[UNK\]/);
  });
});
