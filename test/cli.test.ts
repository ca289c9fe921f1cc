// The CLI: info, predict and eval on a saved model folder (a small random model: the output format
// and the wiring are under test, not accuracy).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { BertTokenizer } from '../lib/tokenizer';
import { fromConfig } from '../lib/models';
import { readDelimited, readRtPolarity, readSst2, rtPolarityOutside } from '../lib/data/datasets';
import { DATA, residentKbOf, serveProcess, tmpDir } from './helpers';

const cli = (...args: string[]) =>
  spawnSync(process.execPath, ['-r', require.resolve('ts-node/register/transpile-only'), path.join(__dirname, '..', 'lib', 'cli.ts'), ...args], { encoding: 'utf8', env: { ...process.env, TORCHBERT_DATA: DATA } });

test('info --json reports versions and the libtorch in use', () => {
  const r = cli('info', '--json');
  expect(r.status).toBe(0);
  const i = JSON.parse(r.stdout);
  expect(i.libtorch.version).toMatch(/^2\./);
  expect(typeof i.cuda.available).toBe('boolean');
  expect(i.threads).toBeGreaterThan(0);
});

test('predict and eval run on a saved model folder', async () => {
  const dir = tmpDir();
  const tok = await BertTokenizer.fromPretrained(path.join(DATA, 'bert-base-uncased'));
  const m = fromConfig('BertForSequenceClassification', { vocab_size: tok.vocabSize, hidden_size: 32, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 64, id2label: { 0: 'negative', 1: 'positive' } });
  await m.savePretrained(dir);
  tok.savePretrained(dir);
  const p = cli('predict', dir, 'a fine film', 'a dull film');
  expect(p.stderr).toBe('');
  const lines = p.stdout.trim().split('\n');
  expect(lines).toHaveLength(2);
  expect(lines[0]).toMatch(/^(positive|negative)\s+[01]\.\d{3}  a fine film$/);
  const e = cli('eval', dir);
  expect(e.status).toBe(0);
  const res = JSON.parse(e.stdout);
  expect(res.examples).toBe(872);
  expect(res.accuracy).toBeGreaterThanOrEqual(0);
  expect(res.accuracy).toBeLessThanOrEqual(1);
  const bad = cli('predict', path.join(dir, 'nope'), 'x');
  expect(bad.status).not.toBe(0);
  expect(bad.stderr).toMatch(/torchbert: /);
});

test('serve --low-memory pages the word embeddings in by rows: one request leaves fewer of their pages resident', async () => {
  const dir = tmpDir();
  const tok = await BertTokenizer.fromPretrained(path.join(DATA, 'bert-base-uncased'));
  // word embeddings 30,522 x 64 floats (7.8 MB, mapped); the other weights are read
  const m = fromConfig('BertForSequenceClassification', { vocab_size: tok.vocabSize, hidden_size: 64, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 64, max_position_embeddings: 64 });
  await m.savePretrained(dir);
  m.dispose();
  tok.savePretrained(dir);
  const file = path.join(dir, 'model.safetensors');
  const residentAfterRequest = async (flags: string[]) => {
    fs.readFileSync(file); // the whole checkpoint in the page cache, as after a download
    const server = await serveProcess([dir, '--port', '0', ...flags]);
    try {
      const r = await fetch(`${server.url}/v1/classify`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ inputs: 'the quick brown fox jumps over the lazy dog' }) });
      expect(r.status).toBe(200);
      return residentKbOf(file, server.child.pid!);
    } finally {
      await server.stop();
    }
  };
  const plain = await residentAfterRequest([]);
  const low = await residentAfterRequest(['--low-memory']);
  // by rows, a page per distinct token at most: the warm-up's 5 and the request's 11 (rows of 256 bytes,
  // 16 a page); plain, the kernel's fault-around maps 64 KiB or a whole large folio around each fault
  expect(low).toBeLessThanOrEqual(16 * 4);
  expect(plain).toBeGreaterThan(2 * low);
}, 120000);

test('main: the end-to-end job runs through with tiny budgets and saves what it reports', () => {
  const out = tmpDir();
  const r = cli('main', '--out', out, '--pretrain-steps', '4', '--finetune-steps', '4', '--hidden', '32', '--layers', '1', '--finetune-seconds', '60', '--soup', '2',
    '--whole-word-mask', '--bag-of-words', '0.5', '--extra-text', 'conll,shakespeare,rt');
  expect([r.status, r.stderr]).toEqual([0, '']);
  // the extra text joins the corpus: CoNLL's sentences (runs of token lines) and Shakespeare's speeches of over 20 characters
  const conll = ['eng.train', 'eng.testa', 'eng.testb'].map((f) => fs.readFileSync(path.join(DATA, 'conll2003', f), 'utf8').split(/\n\s*\n/)
    .filter((b: string) => b.split('\n').some((l) => l.trim() && !l.startsWith('-DOCSTART-'))).length).reduce((a, b) => a + b);
  const speeches = fs.readFileSync(path.join(DATA, 'tinyshakespeare', 'input.txt'), 'utf8').split(/\n\s*\n/)
    .filter((b: string) => b.trim().split('\n').slice(1).join(' ').trim().length > 20).length;
  // and RT's snippets outside SST-2's training and test rows and its dev set (the filter has its own test in train.test.ts)
  const sst2Texts = (f: string) => readSst2(path.join(DATA, 'sst2', f)).map((e) => e.text);
  const testTexts = readDelimited(path.join(DATA, 'sst2', 'test.tsv')).map((row) => row.sentence);
  const rt = rtPolarityOutside(readRtPolarity(path.join(DATA, 'rt-polarity')), [...sst2Texts('train.tsv'), ...testTexts], sst2Texts('dev.tsv')).length;
  expect(rt).toBeGreaterThan(1000);
  expect(r.stdout).toContain(`extra text: ${conll + speeches + rt} lines (conll, shakespeare, rt)`);
  // the budget not given is the recipe's default, the same from the CLI as from fromScratch()
  expect(r.stdout).toContain('pre-training: at most 4 steps of 64 within 540s');
  // R-Drop is the fine-tuning's default
  expect(r.stdout).toMatch(/fine-tuning: 4 steps of 32 .* at peak lr 1e-4, R-Drop 1, within 60s each/);
  expect(r.stdout).toMatch(/pre-training \(masked LM \+ 0\.5 x \[CLS\] bag of words\): 4 steps/);
  expect(r.stdout).toMatch(/SST-2 dev accuracy: \d+\.\d% \(F1 \d+\.\d%\), the average of 2 fine-tuned copies \(alone: \d+\.\d%, \d+\.\d%\)/);
  const rep = JSON.parse(require('fs').readFileSync(path.join(out, 'report.json'), 'utf8'));
  expect(rep.pretrain.steps).toBe(4);
  expect(rep.finetune).toMatchObject({ steps: 4, copies: 2 });
  expect(rep.dev.copies).toHaveLength(2);
  // the vocabulary and pre-training read SST-2's training phrases and test sentences (and the extra text); with
  // --wikitext, WikiText-2's test and valid lines of over 20 characters that are not headings too
  const rows = (f: string) => fs.readFileSync(path.join(DATA, 'sst2', f), 'utf8').trim().split('\n').length - 1;
  expect(r.stdout).toContain(`learned from ${rows('train.tsv') + rows('test.tsv') + conll + speeches + rt} lines`);
  const wiki = ['test.txt', 'valid.txt'].flatMap((f) => fs.readFileSync(path.join(DATA, 'wikitext-2', f), 'utf8').split('\n')).filter((l: string) => l.trim().length > 20 && !l.trim().startsWith('=')).length;
  const withWiki = cli('main', '--out', tmpDir(), '--wikitext', '--pretrain-steps', '2', '--finetune-steps', '2', '--hidden', '32', '--layers', '1', '--finetune-seconds', '60', '--no-control');
  expect([withWiki.status, withWiki.stderr]).toEqual([0, '']);
  expect(withWiki.stdout).toContain(`learned from ${rows('train.tsv') + rows('test.tsv') + wiki} lines`);
  // a soup of no copies is refused before any work, and nothing is written
  const none = tmpDir();
  const bad = cli('main', '--out', none, '--soup', '0', '--pretrain-steps', '4');
  expect(bad.status).not.toBe(0);
  expect(bad.stderr).toMatch(/main: soup must be a positive integer \(copies to fine-tune and average\), got 0/);
  expect(require('fs').readdirSync(none)).toEqual([]);
  const negative = cli('main', '--out', none, '--bag-of-words', '-1', '--pretrain-steps', '4');
  expect(negative.status).not.toBe(0);
  expect(negative.stderr).toMatch(/pretrain: bagOfWords must be a weight >= 0, got -1/);
  const badRdrop = cli('main', '--out', none, '--rdrop', '-0.5', '--pretrain-steps', '4');
  expect(badRdrop.status).not.toBe(0);
  expect(badRdrop.stderr).toMatch(/main: rDrop must be a non-negative number, got -0.5/);
  const noBatch = cli('main', '--out', none, '--pretrain-batch', '0');
  expect(noBatch.status).not.toBe(0);
  expect(noBatch.stderr).toMatch(/main: pretrainBatch must be a positive integer, got 0/);
  const noText = cli('main', '--out', none, '--extra-text', 'conll,imdb');
  expect(noText.status).not.toBe(0);
  expect(noText.stderr).toMatch(/main: extraText takes 'conll', 'shakespeare' and 'rt', got "imdb"/);
  const noShare = cli('main', '--out', none, '--selective-mask', '1.5');
  expect(noShare.status).not.toBe(0);
  expect(noShare.stderr).toMatch(/main: selectiveMask must be a share in \[0, 1\], got 1\.5/);
  const noEpochs = cli('main', '--out', none, '--finetune-epochs', '0');
  expect(noEpochs.status).not.toBe(0);
  expect(noEpochs.stderr).toMatch(/main: finetuneEpochs must be a positive number, got 0/);
  const noVocab = cli('main', '--out', none, '--vocab-size', '4');
  expect(noVocab.status).not.toBe(0);
  expect(noVocab.stderr).toMatch(/vocabSize must be an integer of at least 5 \(the special tokens\)/);
  expect(require('fs').readdirSync(none)).toEqual([]);
  for (const f of ['sst2-model/config.json', 'sst2-model/model.safetensors', 'sst2-model/vocab.txt', 'sst2-model.pt', 'pretrained/model.safetensors', 'pretrain-curves.svg']) {
    expect([f, require('fs').existsSync(path.join(out, f))]).toEqual([f, true]);
  }

  // --pretrained: the same encoder fine-tuned again, without a vocabulary or pre-training of its own
  const encoder = path.join(out, 'pretrained');
  const again = tmpDir();
  const re = cli('main', '--out', again, '--pretrained', encoder, '--seed', '1', '--finetune-steps', '4', '--finetune-seconds', '60', '--no-control');
  expect([re.status, re.stderr]).toEqual([0, '']);
  expect(re.stdout).toContain(`pre-training: none, reusing the encoder in ${encoder} (vocabulary of ${rep.vocabSize})`);
  // only the pooler and the head are new (a masked LM has neither): every encoder weight came from the folder
  expect(re.stdout).toContain('fine-tuning from the pre-trained encoder (new weights: bert.pooler.dense.weight, bert.pooler.dense.bias, classifier.weight, classifier.bias)');
  const rep2 = JSON.parse(require('fs').readFileSync(path.join(again, 'report.json'), 'utf8'));
  expect(rep2.pretrain).toMatchObject({ steps: 0, from: encoder });
  expect(rep2.finetune).toMatchObject({ steps: 4, copies: 1 });
  expect(re.stdout).toMatch(/fine-tuning: 4 steps of 32 \(0\.0019 epochs of SST-2's 67349 phrases\) at peak lr 1e-4, R-Drop 1, within 60s each/);
  expect(require('fs').readFileSync(path.join(again, 'sst2-model/vocab.txt'), 'utf8')).toBe(require('fs').readFileSync(path.join(encoder, 'vocab.txt'), 'utf8'));
  expect(require('fs').existsSync(path.join(again, 'pretrained'))).toBe(false);
  // pre-training options with --pretrained, and a folder that holds no encoder, are refused before any work
  const none2 = tmpDir();
  const both = cli('main', '--out', none2, '--pretrained', encoder, '--word-vectors', '--layers', '4', '--vocab-size', '100', '--extra-text', 'conll', '--mask-prob', '0.3', '--pretrain-dropout', '0', '--wikitext', '--selective-mask', '1');
  expect(both.status).not.toBe(0);
  expect(both.stderr).toMatch(/main: --pretrained reuses an encoder, so --pretrain-dropout, --vocab-size, --layers, --word-vectors, --selective-mask, --extra-text, --mask-prob, --wikitext do not apply/);
  const missing = cli('main', '--out', none2, '--pretrained', path.join(none2, 'nothing'));
  expect(missing.status).not.toBe(0);
  expect(missing.stderr).toMatch(/main: pretrained must be a pre-trained model folder with config\.json and vocab\.txt \(an earlier run's OUT\/pretrained\), got .*nothing/);
  expect(require('fs').readdirSync(none2)).toEqual([]);
}, 900000);

test('main: the control fine-tunes in a second process beside the model, the same control as after it', () => {
  const run = (...extra: string[]) => {
    const out = tmpDir();
    // two threads to share, whatever share of the cores the test runner gives this process (scripts/test.sh)
    const r = spawnSync(process.execPath, ['-r', require.resolve('ts-node/register/transpile-only'), path.join(__dirname, '..', 'lib', 'cli.ts'), 'main', '--out', out, '--seed', '1', '--pretrain-steps', '4', '--finetune-steps', '8', '--hidden', '32', '--layers', '1', '--finetune-seconds', '60', ...extra],
      { encoding: 'utf8', env: { ...process.env, TORCHBERT_DATA: DATA, OMP_NUM_THREADS: '2' } });
    expect([r.status, r.stderr]).toEqual([0, '']);
    const rows = fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l: string) => JSON.parse(l));
    return { r, rep: JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8')), control: rows.filter((x) => x.type === 'train' && x.name === 'control') };
  };
  const side = run();
  // both fine-tunings share the two budgets' sum, each process on half the threads
  expect(side.r.stdout).toMatch(/R-Drop 1, the model and its control side by side \(\d+ threads each\) within 120s/);
  expect(side.r.stdout).toContain('control: fine-tuning the same BERT from random weights, in a second process');
  expect(side.rep.control).toMatchObject({ steps: 8, alongside: true });
  expect(side.r.stdout).toMatch(/the same BERT without pre-training: \d+\.\d%/);
  const after = run('--no-parallel-control');
  expect(after.r.stdout).toMatch(/R-Drop 1, within 60s each/);
  expect(after.rep.control).toMatchObject({ steps: 8, alongside: false });
  // the worker rebuilt the same control: its weights, batches and dropout give the same losses (to float
  // rounding: one thread against two); the control reads the encoder's config and vocabulary, not its weights
  expect(side.control.length).toBeGreaterThan(0);
  expect(side.control.map((x) => x.step)).toEqual(after.control.map((x) => x.step));
  side.control.forEach((x, i) => expect(Math.abs(x.loss - after.control[i].loss)).toBeLessThan(1e-6));
}, 300000);

test('main: the control\'s worker answers a spec it cannot run with an error naming what was wrong, and stops when the job goes away', async () => {
  const { fork } = await import('child_process');
  const child = fork(path.join(__dirname, '..', 'lib', 'recipes', 'control-worker.ts'), [], { execArgv: ['-r', require.resolve('ts-node/register/transpile-only')], stdio: ['ignore', 'ignore', 'ignore', 'ipc'] });
  const messages: { error?: string }[] = [];
  child.on('message', (m: { error?: string }) => messages.push(m));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const missing = path.join(tmpDir(), 'no-tokenizer');
  child.send({ data: DATA, tokenizer: missing, seqLen: 64, config: {}, initSeed: 3, fineTuning: { seed: 2, batch: 32, lr: 1e-4, steps: 1, seconds: 10, rDrop: 1, out: tmpDir() }, threads: 1 });
  expect(await exited).toBe(0);
  expect(messages).toHaveLength(1);
  expect(messages[0].error).toContain(missing);
  // the job gone before the answer (its channel closed mid-run): the worker stops instead of training for no one
  const orphan = fork(path.join(__dirname, '..', 'lib', 'recipes', 'control-worker.ts'), [], { execArgv: ['-r', require.resolve('ts-node/register/transpile-only')], stdio: ['ignore', 'ignore', 'ignore', 'ipc'] });
  const gone = new Promise<NodeJS.Signals | null>((resolve) => orphan.on('exit', (_code, signal) => resolve(signal)));
  const started = new Promise<void>((resolve) => orphan.on('message', () => resolve()));
  const config = { vocab_size: 30522, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 1, intermediate_size: 32, num_labels: 2 };
  orphan.send({ data: DATA, tokenizer: path.join(DATA, 'bert-base-uncased'), seqLen: 64, config, initSeed: 3, fineTuning: { seed: 2, batch: 32, lr: 1e-4, steps: 1000000, seconds: 600, rDrop: 1, out: tmpDir() }, threads: 1 });
  await started; // its first log line: it is training
  orphan.disconnect();
  expect(await gone).toBe('SIGKILL'); // it killed itself (see control-worker.ts), not a crash on the way out
}, 120000);
