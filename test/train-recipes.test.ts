// Training pieces beyond the core loop: entity-level NER metrics against seqeval, SQuAD exact match and
// F1 against transformers 4's squad_metrics, NER label alignment and pre-split word encoding against
// HF's fast tokenizer, whole-word masking, NSP pairs, early stopping and load-best in the Trainer, the
// loss-curve image, and the pretrain / finetune CLI commands end to end on tiny runs.
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import * as tb from '../lib';
import { BertTokenizer } from '../lib/tokenizer';
import { fromConfig } from '../lib/models/bert';
import { getEntities, entityScores, qaScore, alignLabels, wholeWordMask, nspPairs, Trainer, padCollate, EpochBatches } from '../lib/train';
import { encodeWords } from '../lib/recipes/finetune';
import { FIXTURES, DATA, ROOT, fixture, tmpDir } from './helpers';

/** The built torchbert command, run as a user runs it. */
const cli = (args: string[], env?: NodeJS.ProcessEnv) => spawnSync(process.execPath, [path.join(ROOT, 'dist', 'cli.js'), ...args], { encoding: 'utf8', cwd: ROOT, ...(env ? { env } : {}) });

const fx = fixture('train-metrics.json');

describe('NER metrics (seqeval semantics)', () => {
  test('entity chunks equal seqeval get_entities, IOB1, IOB2 and odd sequences', () => {
    fx.entity_inputs.forEach((tags: string[], i: number) => {
      expect(getEntities(tags).map((e) => [e.type, e.start, e.end])).toEqual(fx.entities[i]);
    });
  });
  test.each([0, 1])('precision, recall, F1 and the per-type report equal seqeval (case %s)', (k) => {
    const c = fx.seqeval[k];
    const s = entityScores(c.pred, c.gold);
    expect(s.f1).toBeCloseTo(c.f1, 12);
    expect(s.precision).toBeCloseTo(c.precision, 12);
    expect(s.recall).toBeCloseTo(c.recall, 12);
    expect(Object.keys(s.perType).sort()).toEqual(Object.keys(c.per_type).sort());
    for (const [t, v] of Object.entries(c.per_type) as [string, any][]) {
      expect(s.perType[t].support).toBe(v.support);
      expect(s.perType[t].f1).toBeCloseTo(v.f1, 12);
      expect(s.perType[t].precision).toBeCloseTo(v.precision, 12);
    }
    expect(() => entityScores(c.pred.slice(1), c.gold)).toThrow(/predicted sentences/);
  });
});

test('QA exact match and F1 equal the SQuAD evaluation', () => {
  fx.squad.cases.forEach(([pred, golds]: [string, string[]], i: number) => {
    const s = qaScore(pred, golds);
    expect([i, s.exact]).toEqual([i, fx.squad.scores[i][0]]);
    expect(s.f1).toBeCloseTo(fx.squad.scores[i][1], 12);
  });
});

test('pre-split words encode to HF ids and word ids; labels go to the first sub-token', () => {
  const tok = BertTokenizer.fromVocabFile(path.join(DATA, 'bert-base-cased', 'vocab.txt'), { doLowerCase: false });
  const sw = fx.split_words;
  sw.words.forEach((words: string[], i: number) => {
    const e = encodeWords(tok, words, 128);
    expect(e.ids).toEqual(sw.input_ids[i]);
    expect(e.wordIds).toEqual(sw.word_ids[i]);
    const labels = words.map((_, w) => w % 5);
    const aligned = alignLabels(e.wordIds, labels);
    // Each word's label exactly once, on its first piece; -100 elsewhere.
    const seen = new Set<number>();
    aligned.forEach((l, t) => {
      const w = e.wordIds[t];
      if (w === null || seen.has(w)) expect(l).toBe(-100);
      else {
        expect(l).toBe(labels[w]);
        seen.add(w);
      }
    });
    expect(alignLabels(e.wordIds, labels, true).filter((l) => l !== -100).length).toBe(e.wordIds.filter((w) => w !== null).length);
  });
  expect(() => alignLabels([null, 0, 3], [1])).toThrow(/word 3 has no label/);
});

test('whole-word masking selects whole words, about 15% of tokens, never special tokens', () => {
  const tok = BertTokenizer.fromVocabFile(path.join(DATA, 'bert-base-uncased', 'vocab.txt'));
  const texts = fs.readFileSync(path.join(DATA, 'sst2', 'dev.tsv'), 'utf8').split('\n').slice(1, 200).map((l) => l.split('\t')[0]).filter(Boolean);
  const rows = texts.map((t) => tok.encode(t));
  const T = Math.max(...rows.map((r) => r.length));
  tb.manualSeed(0);
  const sel = wholeWordMask(rows, T, tok.idsToTokens, [tok.clsTokenId, tok.sepTokenId]);
  const m = sel.dataSync() as Uint8Array;
  let chosen = 0;
  let total = 0;
  rows.forEach((ids, b) => {
    total += ids.length;
    ids.forEach((id, i) => {
      const on = m[b * T + i] === 1;
      if (on) chosen++;
      if (id === tok.clsTokenId || id === tok.sepTokenId) expect(on).toBe(false);
      // A "##" piece is chosen exactly when the piece before it is.
      if (tok.idsToTokens[id].startsWith('##')) expect([b, i, on]).toEqual([b, i, m[b * T + i - 1] === 1]);
    });
    for (let i = ids.length; i < T; i++) expect(m[b * T + i]).toBe(0);
  });
  expect(chosen / total).toBeGreaterThan(0.1);
  expect(chosen / total).toBeLessThan(0.16);
  tb.manualSeed(0);
  expect(Array.from(wholeWordMask(rows, T, tok.idsToTokens, [tok.clsTokenId, tok.sepTokenId]).dataSync() as Uint8Array)).toEqual(Array.from(m));
});

test('NSP pairs: IsNext pairs are consecutive, NotNext ones come from other documents, about half each', () => {
  const docs = Array.from({ length: 20 }, (_, d) => Array.from({ length: 10 }, (_, i) => `d${d}s${i}`));
  const pairs = nspPairs(docs, 7);
  expect(pairs.length).toBe(20 * 9);
  for (const p of pairs) {
    const [da, sa] = p.a.slice(1).split('s').map(Number);
    const [db, sb] = p.b.slice(1).split('s').map(Number);
    if (p.label === 0) expect([db, sb]).toEqual([da, sa + 1]);
    else expect(db).not.toBe(da);
  }
  const share = pairs.filter((p) => p.label === 1).length / pairs.length;
  expect(share).toBeGreaterThan(0.4);
  expect(share).toBeLessThan(0.6);
});

describe('Trainer: early stopping, best model, curves', () => {
  test('stops after `patience` evaluations without improvement and restores the best weights', async () => {
    tb.manualSeed(0);
    const model = fromConfig('BertForSequenceClassification', { vocab_size: 50, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32, max_position_embeddings: 16 });
    const batch = padCollate([{ inputIds: [1, 5, 7, 2], label: 1 }, { inputIds: [1, 9, 2], label: 0 }], 0);
    const scores = [0.5, 0.7, 0.65, 0.69, 0.6, 0.9];
    let k = 0;
    const snapshots: Float32Array[] = [];
    const dir = tmpDir();
    const logs: string[] = [];
    const trainer = new Trainer(model, {
      maxSteps: 100, learningRate: 1e-2, evalSteps: 2, loggingSteps: 1, metricForBestModel: 'accuracy', loadBestModelAtEnd: true,
      earlyStoppingPatience: 3, plotFile: path.join(dir, 'curves.svg'), log: (s) => logs.push(s),
    });
    const res = await trainer.train(() => batch, (b) => ({ inputIds: b.inputIds, attentionMask: b.attentionMask, labels: b.labels }), async () => {
      snapshots.push((model.namedParameters().find(([n]) => n === 'classifier.weight')![1].detach().clone().dataSync() as Float32Array).slice());
      return { accuracy: scores[k++] };
    });
    expect(res.stoppedEarly).toBe(true);
    expect(res.steps).toBe(10); // evaluations at 2, 4 (best), 6, 8, 10: three without improvement
    expect(res.best).toEqual({ step: 4, metric: 'accuracy', value: 0.7 });
    const now = model.namedParameters().find(([n]) => n === 'classifier.weight')![1].dataSync() as Float32Array;
    expect(Array.from(now)).toEqual(Array.from(snapshots[1]));
    expect(Array.from(now)).not.toEqual(Array.from(snapshots[4]));
    expect(logs.join('\n')).toMatch(/early stopping at step 10/);
    const svg = fs.readFileSync(path.join(dir, 'curves.svg'), 'utf8');
    expect(svg).toMatch(/^<svg[^>]*xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    expect((svg.match(/<polyline/g) ?? []).length).toBe(2); // the loss and the accuracy
    expect(() => new Trainer(model, { maxSteps: 5, earlyStoppingPatience: 2 })).toThrow(/need metricForBestModel/);
  });
  test('an evaluation that gives NaN (a correlation of constant predictions) is never the best model', async () => {
    const model = fromConfig('BertForSequenceClassification', { vocab_size: 50, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32, max_position_embeddings: 16, num_labels: 1 });
    const batch = padCollate([{ inputIds: [1, 5, 7, 2], target: 0.5 }, { inputIds: [1, 9, 2], target: -1 }], 0);
    const scores = [NaN, 0.2, NaN, 0.1];
    let k = 0;
    const trainer = new Trainer(model, { maxSteps: 8, learningRate: 1e-2, evalSteps: 2, metricForBestModel: 'pearson', loadBestModelAtEnd: true, earlyStoppingPatience: 2, log: () => {} });
    const res = await trainer.train(() => batch, (b) => ({ inputIds: b.inputIds, attentionMask: b.attentionMask, labels: b.labels }), async () => ({ pearson: scores[k++] }));
    expect(res.best).toEqual({ step: 4, metric: 'pearson', value: 0.2 });
    expect(res.stoppedEarly).toBe(true); // the NaN at step 6 and the 0.1 at step 8 are two without improvement
    expect(batch.labels!.dtype).toBe('float32');
  });

  test('a failing evaluation keeps the trained steps: a complete checkpoint is written and the error names it', async () => {
    tb.manualSeed(0);
    const model = fromConfig('BertForSequenceClassification', { vocab_size: 50, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32, max_position_embeddings: 16 });
    const batch = padCollate([{ inputIds: [1, 5, 7, 2], label: 1 }, { inputIds: [1, 9, 2], label: 0 }], 0);
    const dir = tmpDir();
    const toInputs = (b: any) => ({ inputIds: b.inputIds, attentionMask: b.attentionMask, labels: b.labels });
    const trainer = new Trainer(model, { maxSteps: 10, learningRate: 1e-2, evalSteps: 3, outputDir: dir, log: () => {} });
    let evals = 0;
    const err = await trainer.train(() => batch, toInputs, async () => {
      if (++evals === 2) throw new Error('dev example 7 is broken');
      return { accuracy: 0.5 };
    }).catch((e) => e);
    expect(err).toBeInstanceOf(Error);
    const ck = path.join(dir, 'checkpoint-6');
    expect(err.message).toBe(`train: evaluation at step 6 failed: dev example 7 is broken; the 6 trained steps are saved in ${ck} (resume from it once the evaluation data is fixed)`);
    const weights = new Map(model.namedParameters().map(([n, p]) => [n, Array.from(p.dataSync() as Float32Array)]));
    // The checkpoint holds the weights trained so far and resumes at step 6.
    const again = fromConfig('BertForSequenceClassification', { vocab_size: 50, hidden_size: 16, num_hidden_layers: 1, num_attention_heads: 2, intermediate_size: 32, max_position_embeddings: 16 });
    const resumed = new Trainer(again, { maxSteps: 6, learningRate: 1e-2, resumeFrom: ck, log: () => {} });
    const res = await resumed.train(() => batch, toInputs);
    expect(res.steps).toBe(6);
    for (const [n, p] of again.namedParameters()) expect([n, Array.from(p.dataSync() as Float32Array)]).toEqual([n, weights.get(n)]);
  });
});

describe('epoch batches (HF Trainer sampling)', () => {
  test('a fresh seeded shuffle every epoch, each a permutation; the same seed gives the same run; length grouping optional', () => {
    const lengths = Array.from({ length: 103 }, (_, i) => 3 + ((i * 37) % 50));
    const a = new EpochBatches(lengths, 8, { seed: 7 });
    expect(a.perEpoch).toBe(13);
    const e0 = a.epoch(0).flat();
    const e1 = a.epoch(1).flat();
    expect([...e0].sort((x, y) => x - y)).toEqual(lengths.map((_, i) => i));
    expect([...e1].sort((x, y) => x - y)).toEqual(lengths.map((_, i) => i));
    expect(e1).not.toEqual(e0);
    // at(step) walks the epochs in order, as a resumed run needs
    expect(a.at(13)).toEqual(a.epoch(1)[0]);
    expect(a.at(12)).toEqual(a.epoch(0)[12]);
    expect(new EpochBatches(lengths, 8, { seed: 7 }).epoch(3)).toEqual(a.epoch(3));
    expect(new EpochBatches(lengths, 8, { seed: 8 }).epoch(0)).not.toEqual(a.epoch(0));
    // grouped: within each batch, lengths are sorted (longest first), batches far less padded
    const g = new EpochBatches(lengths, 8, { seed: 7, groupByLength: true });
    const pad = (bs: number[][]) => bs.reduce((t, b) => t + b.length * Math.max(...b.map((i) => lengths[i])) - b.reduce((u, i) => u + lengths[i], 0), 0);
    expect(pad(g.epoch(0))).toBeLessThan(pad(a.epoch(0)) / 4);
    for (const b of g.epoch(0)) expect(b.map((i) => lengths[i])).toEqual([...b.map((i) => lengths[i])].sort((x, y) => y - x));
  });
});

describe('the pretrain and finetune commands', () => {
  test('pretrain: vocabulary, whole-word-masked MLM at the rate given, saved model and curves', () => {
    const out = tmpDir();
    const r = cli(['pretrain', path.join(DATA, 'wikitext-2', 'valid.txt'), '--out', out, '--steps', '6', '--seconds', '120', '--vocab-size', '600', '--hidden', '32', '--layers', '1', '--whole-word-mask', '--lr', '5e-4']);
    expect([r.status, r.stderr]).toEqual([0, '']);
    expect(r.stdout).toMatch(/^pre-training \(masked LM\): 6 steps in \d+s at peak lr 5e-4, loss /m);
    for (const f of ['pretrained/config.json', 'pretrained/model.safetensors', 'pretrained/vocab.txt', 'metrics.jsonl', 'pretrain-curves.svg']) expect(fs.existsSync(path.join(out, f))).toBe(true);
  });
  test('finetune --task ner on CoNLL: seqeval F1 reported, best model and tokenizer saved', () => {
    const out = tmpDir();
    const r = cli(['finetune', path.join(FIXTURES, 'pipelines', 'tiny-BertForTokenClassification'), '--task', 'ner', '--train', path.join(DATA, 'conll2003', 'eng.train'), '--dev', path.join(DATA, 'conll2003', 'eng.testb'),
      '--limit', '300', '--max-steps', '12', '--eval-steps', '4', '--lr', '1e-3', '--scheme', 'iob2', '--out', out]);
    expect([r.status, r.stderr]).toEqual([0, '']);
    const rep = JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8'));
    expect(rep.task).toBe('ner');
    expect(rep.examples.train).toBe(300);
    expect(rep.dev.f1).toBeGreaterThanOrEqual(0);
    expect(rep.dev.f1).toBe(rep.best.value); // the best evaluation's model is the one saved
    for (const f of ['config.json', 'model.safetensors', 'vocab.txt', 'curves.svg']) expect(fs.existsSync(path.join(out, f))).toBe(true);
    const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
    expect(Object.values(cfg.id2label)).toEqual(expect.arrayContaining(['O', 'B-PER', 'I-PER', 'B-LOC', 'I-MISC']));
  });
  test('finetune: a dev label missing from training joins the labels, logged, as run_classification adds it', () => {
    const dir = tmpDir();
    fs.writeFileSync(path.join(dir, 'train.csv'), 'text,label\na,pos\nb,neg\n');
    fs.writeFileSync(path.join(dir, 'dev.csv'), 'text,label\nc,meh\nd,pos\n');
    const out = path.join(dir, 'o');
    const r = cli(['finetune', path.join(FIXTURES, 'pipelines', 'tiny-BertForSequenceClassification'), '--train', path.join(dir, 'train.csv'), '--dev', path.join(dir, 'dev.csv'), '--out', out, '--max-steps', '2']);
    expect([r.status, r.stderr]).toEqual([0, '']);
    expect(r.stdout).toMatch(/dev\.csv has labels .*train\.csv lacks \(meh\); the model has them, though no training row does/);
    expect(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')).id2label).toEqual({ 0: 'meh', 1: 'neg', 2: 'pos' });
    expect(JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8')).examples).toEqual({ train: 2, dev: 2 });
  });
  test('finetune: bad files and options are refused before training, naming the file, line or option', () => {
    const dir = tmpDir();
    const model = path.join(FIXTURES, 'pipelines', 'tiny-BertForTokenClassification');
    fs.writeFileSync(path.join(dir, 'train.conll'), 'EU B-ORG\nrejects O\nGerman PERSONx\n');
    const r = cli(['finetune', model, '--task', 'ner', '--train', path.join(dir, 'train.conll'), '--dev', path.join(DATA, 'conll2003', 'eng.testb'), '--out', path.join(dir, 'o')]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toContain(`${path.join(dir, 'train.conll')}:3: tag 'PERSONx' is not O or B-/I-/E-/S- followed by a type`);
    const lr = cli(['finetune', model, '--train', 'a', '--dev', 'b', '--lr', 'abc']);
    expect(lr.status).not.toBe(0);
    expect(lr.stderr).toContain("option '--lr <x>' argument 'abc' is invalid");
    fs.writeFileSync(path.join(dir, 'one.csv'), 'text,label\na,pos\nb,pos\n');
    const one = cli(['finetune', path.join(FIXTURES, 'pipelines', 'tiny-BertForSequenceClassification'), '--train', path.join(dir, 'one.csv'), '--dev', path.join(dir, 'one.csv'), '--out', path.join(dir, 'o')]);
    expect(one.stderr).toMatch(/one\.csv: every example has the label 'pos'; classification needs at least two/);
    expect(fs.existsSync(path.join(dir, 'o'))).toBe(false);
  });
});

describe('extractive QA fine-tuning', () => {
  // Questions built from CoNLL sentences: "which place is named?", answered by the first LOC entity.
  function qaSet(): { id: string; question: string; context: string; answers: { text: string[]; answer_start: number[] } }[] {
    const { readConll } = require('../lib/data/datasets');
    const out: any[] = [];
    for (const s of readConll(path.join(DATA, 'conll2003', 'eng.testa'), 'iob2') as { tokens: string[]; tags: string[] }[]) {
      const b = s.tags.indexOf('B-LOC');
      if (b < 0) continue;
      let e = b + 1;
      while (s.tags[e] === 'I-LOC') e++;
      const before = s.tokens.slice(0, b).join(' ');
      const text = s.tokens.slice(b, e).join(' ');
      out.push({ id: String(out.length), question: 'Which place is named?', context: s.tokens.join(' '), answers: { text: [text], answer_start: [before ? before.length + 1 : 0] } });
      if (out.length >= 60) break;
    }
    return out;
  }

  test('training windows point at the answer tokens, or at [CLS] when the answer is outside', () => {
    const { readQa, qaFeatures } = require('../lib/recipes/finetune');
    const dir = tmpDir();
    const rows = qaSet();
    // Long contexts: five sentences each, so small windows overflow.
    const long = rows.slice(0, 20).map((r, i) => {
      const pre = rows.slice(20 + i, 24 + i).map((x) => x.context).join(' ') + ' ';
      return { ...r, context: pre + r.context, answers: { text: r.answers.text, answer_start: [r.answers.answer_start[0] + pre.length] } };
    });
    fs.writeFileSync(path.join(dir, 'qa.jsonl'), long.map((r) => JSON.stringify(r)).join('\n'));
    const tok = BertTokenizer.fromVocabFile(path.join(DATA, 'bert-base-uncased', 'vocab.txt'));
    let inside = 0;
    let outside = 0;
    let windows = 0;
    const examples = readQa(path.join(dir, 'qa.jsonl'));
    for (const ex of examples) {
      const feats = qaFeatures(tok, ex, 48, 16);
      windows += feats.length;
      const enc = tok.encodeRows([ex.question], [ex.context], { truncation: 'only_second', maxLength: 48, stride: 16, returnOverflowingTokens: true }).rows;
      feats.forEach((f: any, w: number) => {
        expect(f.inputIds).toEqual(enc[w].ids);
        if (f.start === 0) {
          expect(f.end).toBe(0);
          outside++;
          return;
        }
        inside++;
        const a = ex.answers[0];
        expect(ex.context.slice(enc[w].offsets[f.start][0], enc[w].offsets[f.end][1]).toLowerCase()).toBe(a.text.toLowerCase());
      });
    }
    expect(windows).toBeGreaterThan(2 * examples.length); // long contexts overflow into several windows
    expect(inside).toBeGreaterThanOrEqual(examples.length);
    expect(outside).toBeGreaterThan(10);
    fs.writeFileSync(path.join(dir, 'bad.jsonl'), JSON.stringify({ question: 'q', context: 'abc', answers: { text: ['b'], answer_start: [0] } }));
    expect(() => readQa(path.join(dir, 'bad.jsonl'))).toThrow(/answer 'b' is not at offset 0/);
  });

  test('finetune --task qa: exact match and F1 on dev, model saved', () => {
    const dir = tmpDir();
    const rows = qaSet();
    fs.writeFileSync(path.join(dir, 'train.jsonl'), rows.slice(0, 48).map((r) => JSON.stringify(r)).join('\n'));
    // SQuAD JSON for dev.
    fs.writeFileSync(path.join(dir, 'dev.json'), JSON.stringify({ data: [{ title: 'conll', paragraphs: rows.slice(48).map((r) => ({ context: r.context, qas: [{ id: r.id, question: r.question, answers: [{ text: r.answers.text[0], answer_start: r.answers.answer_start[0] }] }] })) }] }));
    const r = cli(['finetune', path.join(FIXTURES, 'pipelines', 'tiny-BertForQuestionAnswering'), '--task', 'qa',
      '--train', path.join(dir, 'train.jsonl'), '--dev', path.join(dir, 'dev.json'), '--max-steps', '6', '--eval-steps', '3', '--batch-size', '8', '--lr', '1e-3', '--max-length', '64', '--out', path.join(dir, 'out')]);
    expect([r.status, r.stderr]).toEqual([0, '']);
    const rep = JSON.parse(fs.readFileSync(path.join(dir, 'out', 'report.json'), 'utf8'));
    expect(rep.task).toBe('qa');
    expect(rep.examples).toEqual({ train: 48, dev: 12 });
    for (const k of ['exact', 'f1']) {
      expect(rep.dev[k]).toBeGreaterThanOrEqual(0);
      expect(rep.dev[k]).toBeLessThanOrEqual(1);
    }
    expect(rep.dev.f1).toBe(rep.best.value);
    expect(fs.existsSync(path.join(dir, 'out', 'model.safetensors'))).toBe(true);
    expect(r.stdout).toContain('windows of up to 64 tokens, stride 32)');
    // without --max-length the command gets the recipe's QA windows (HF run_qa's 384, stride 128), not classification's 128
    const d = cli(['finetune', path.join(FIXTURES, 'pipelines', 'tiny-BertForQuestionAnswering'), '--task', 'qa',
      '--train', path.join(dir, 'train.jsonl'), '--dev', path.join(dir, 'dev.json'), '--max-steps', '1', '--out', path.join(dir, 'out-default')]);
    expect([d.status, d.stderr]).toEqual([0, '']);
    expect(d.stdout).toContain('windows of up to 384 tokens, stride 128)');
  });

  test('a dev question too long for --max-length and --doc-stride is refused before training, naming it', () => {
    const dir = tmpDir();
    const rows = qaSet();
    fs.writeFileSync(path.join(dir, 'train.jsonl'), rows.slice(0, 40).map((r) => JSON.stringify(r)).join('\n'));
    // Questions of many word pieces (rare words split into several each).
    const dev = rows.slice(40, 50).map((r, i) => (i === 3 || i === 6 ? { ...r, id: `long-${i}`, question: 'pneumonoultramicroscopic silicovolcanoconiosis '.repeat(4) + r.question } : r));
    fs.writeFileSync(path.join(dir, 'dev.jsonl'), dev.map((r) => JSON.stringify(r)).join('\n'));
    const out = path.join(dir, 'out');
    const r = cli(['finetune', path.join(FIXTURES, 'pipelines', 'tiny-BertForQuestionAnswering'), '--task', 'qa',
      '--train', path.join(dir, 'train.jsonl'), '--dev', path.join(dir, 'dev.jsonl'), '--max-steps', '6', '--max-length', '64', '--doc-stride', '24', '--out', out]);
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(new RegExp(`${path.join(dir, 'dev.jsonl').replace(/[.]/g, '\\.')}: question long-3 is \\d+ tokens, which leaves context windows of -?\\d+ tokens at --max-length 64, not more than --doc-stride 24 \\(2 questions are too long\\)`));
    expect(fs.existsSync(path.join(out, 'metrics.jsonl'))).toBe(false); // no step was trained
  });
});

describe('ELECTRA pre-training (replaced-token detection)', () => {
  test('the loss falls; the discriminator\'s encoder is saved as a BertModel that a classifier loads', async () => {
    const { pretrain } = await import('../lib/recipes/pretrain');
    const { fromPretrained } = await import('../lib/models');
    const out = tmpDir();
    const corpus = fs.readFileSync(path.join(DATA, 'wikitext-2', 'valid.txt'), 'utf8').split('\n').filter((l) => l.trim().length > 20 && !l.trim().startsWith('=')).slice(0, 400);
    const logs: string[] = [];
    const r = await pretrain({ corpus, out, vocabSize: 600, hidden: 32, layers: 1, steps: 200, seconds: 600, seqLen: 32, objective: 'electra', seed: 5, log: (l) => logs.push(l) });
    expect(r.model.kind).toBe('BertForTokenClassification');
    expect(r.result.losses.map((l) => l.step)).toEqual([100, 200]);
    // ELECTRA's own default rate (the masked LM's 1e-3 collapsed the discriminator): halfway down the linear decay
    expect(logs.at(-1)).toMatch(/^pre-training \(ELECTRA, generator hidden 32\): 200 steps in \d+s at peak lr 3e-4, loss /);
    expect(r.result.losses[0].lr).toBeGreaterThan(1e-4);
    expect(r.result.losses[0].lr).toBeLessThan(2e-4);
    expect(r.result.losses[1].loss).toBeLessThan(r.result.losses[0].loss);
    expect(JSON.parse(fs.readFileSync(path.join(r.dir, 'config.json'), 'utf8')).architectures).toEqual(['BertModel']);
    const cls = await fromPretrained(r.dir, { kind: 'BertForSequenceClassification' });
    expect(cls.loadReport.missingKeys.sort()).toEqual(['classifier.bias', 'classifier.weight']);
    // the encoder saved is the discriminator's
    const enc = r.model.stateDict().get('bert.encoder.layer.0.output.dense.weight')!;
    expect(cls.stateDict().get('bert.encoder.layer.0.output.dense.weight')!.equal(enc)).toBe(true);
    await expect(pretrain({ corpus, out, objective: 'bert' as never, log: () => {} })).rejects.toThrow(/objective must be 'mlm' or 'electra'/);
  });
});

test('readDelimited: quoted fields, escapes, line breaks in quotes, BOM, CRLF, blank lines; ragged rows named', () => {
  const { readDelimited } = require('../lib/data/datasets');
  const dir = tmpDir();
  const csv = path.join(dir, 'a.csv');
  fs.writeFileSync(csv, '\uFEFFtext,label\r\n"a, b",pos\r\n\r\n"he said ""hi""",neg\r\n"two\nlines",pos\r\n');
  expect(readDelimited(csv)).toEqual([{ text: 'a, b', label: 'pos' }, { text: 'he said "hi"', label: 'neg' }, { text: 'two\nlines', label: 'pos' }]);
  const tsv = path.join(dir, 'a.tsv');
  fs.writeFileSync(tsv, 'sentence\tlabel\nthe "best" film , a "\t1\n');
  expect(readDelimited(tsv)).toEqual([{ sentence: 'the "best" film , a "', label: '1' }]);
  fs.writeFileSync(csv, 'text,label\na,pos\nb\n');
  expect(() => readDelimited(csv)).toThrow(/a\.csv: row 3 has 1 fields, the header has 2/);
  fs.writeFileSync(csv, '');
  expect(() => readDelimited(csv)).toThrow(/a\.csv: empty file/);
  // every SST-2 file reads as one row per line under the header's columns
  for (const f of ['train.tsv', 'dev.tsv', 'test.tsv']) {
    const lines = fs.readFileSync(path.join(DATA, 'sst2', f), 'utf8').trimEnd().split('\n');
    const rows = readDelimited(path.join(DATA, 'sst2', f));
    expect(rows.length).toBe(lines.length - 1);
    expect(rows.map((r: Record<string, string>) => Object.values(r).join('\t'))).toEqual(lines.slice(1));
  }
});

describe('packed masked-LM pre-training', () => {
  test('the lines packed into full rows train a masked LM whose loss falls', async () => {
    const { pretrain } = await import('../lib/recipes/pretrain');
    const out = tmpDir();
    const corpus = fs.readFileSync(path.join(DATA, 'sst2', 'dev.tsv'), 'utf8').split('\n').slice(1, 400).map((l) => l.split('\t')[0]);
    const r = await pretrain({ corpus, out, vocabSize: 500, hidden: 32, layers: 1, steps: 200, seconds: 600, seqLen: 32, batchSize: 8, pack: true, seed: 5, log: () => {} });
    expect(r.result.losses.map((l) => l.step)).toEqual([100, 200]);
    expect(r.result.losses[1].loss).toBeLessThan(r.result.losses[0].loss);
    r.model.dispose();
  });
  test('bagOfWords: pre-training adds the [CLS] bag-of-words term to the masked LM; bad weights are refused', async () => {
    const { pretrain } = await import('../lib/recipes/pretrain');
    const corpus = fs.readFileSync(path.join(DATA, 'sst2', 'dev.tsv'), 'utf8').split('\n').slice(1, 400).map((l) => l.split('\t')[0]);
    const logs: string[] = [];
    const r = await pretrain({ corpus, out: tmpDir(), vocabSize: 500, hidden: 32, layers: 1, steps: 200, seconds: 600, seqLen: 32, batchSize: 8, seed: 5, bagOfWords: 1, log: (l) => logs.push(l) });
    expect(logs.some((l) => /masked LM \+ 1 x \[CLS\] bag of words\): 200 steps/.test(l))).toBe(true);
    // the same run without the term: the logged loss is the masked LM's alone, lower by about the bag term (log 500 = 6.2 at most)
    const plain = await pretrain({ corpus, out: tmpDir(), vocabSize: 500, hidden: 32, layers: 1, steps: 200, seconds: 600, seqLen: 32, batchSize: 8, seed: 5, log: () => {} });
    const gap = r.result.losses[1].loss - plain.result.losses[1].loss;
    expect(gap).toBeGreaterThan(4);
    expect(gap).toBeLessThan(Math.log(500) + 0.5);
    await expect(pretrain({ corpus, out: tmpDir(), vocabSize: 500, steps: 1, bagOfWords: -1, log: () => {} })).rejects.toThrow(/bagOfWords must be a weight >= 0, got -1/);
    await expect(pretrain({ corpus, out: tmpDir(), vocabSize: 500, steps: 1, bagOfWords: 1, objective: 'electra', log: () => {} })).rejects.toThrow(/bagOfWords goes with the masked-LM objective/);
    [r.model, plain.model].forEach((m) => m.dispose());
  });
  test('selectiveMask: the importance the caller gives, asked with the learned vocabulary, steers the masking; bad shares and scores are refused', async () => {
    const { pretrain } = await import('../lib/recipes/pretrain');
    const corpus = fs.readFileSync(path.join(DATA, 'sst2', 'dev.tsv'), 'utf8').split('\n').slice(1, 400).map((l) => l.split('\t')[0]);
    const logs: string[] = [];
    let vocab = 0;
    const given: tb.Tensor[] = [];
    // every score on "film": with share 0.5 it takes half the masks, the other tokens keep half their rate
    const importance = (tok: BertTokenizer) => {
      vocab = tok.vocabSize;
      const s = new Float32Array(tok.vocabSize);
      s[tok.convertTokensToIds(['film'])[0]] = 1;
      given.push(tb.tensor(s, { shape: [tok.vocabSize] }));
      return given.at(-1)!;
    };
    const r = await pretrain({ corpus, out: tmpDir(), vocabSize: 500, hidden: 32, layers: 1, steps: 100, seconds: 600, seqLen: 32, batchSize: 8, seed: 5, selectiveMask: { importance, share: 0.5 }, log: (l) => logs.push(l) });
    expect(vocab).toBe(500);
    expect(given.map((t) => t.isDisposed)).toEqual([true]); // pretrain owns the scores it is given
    expect(logs.find((l) => l.startsWith('selective masking:'))).toMatch(/^selective masking: 0\.5 of the masks by task importance; most masked: film x\d+\.\d, \S+ x0\.5,/);
    // share 1: "film" is the only token ever masked (batches without it cost 0), so the masked LM's first 100
    // steps average well under those of share 0.5's mixed targets (2.8 against 5.9 on the Zen 2 EPYC)
    const only = await pretrain({ corpus, out: tmpDir(), vocabSize: 500, hidden: 32, layers: 1, steps: 100, seconds: 600, seqLen: 32, batchSize: 8, seed: 5, selectiveMask: { importance, share: 1 }, log: () => {} });
    expect(r.result.losses[0].loss).toBeGreaterThan(5);
    expect(only.result.losses[0].loss).toBeLessThan(4);
    [r.model, only.model].forEach((m) => m.dispose());
    const bad = (selectiveMask: { importance: (t: BertTokenizer) => tb.Tensor; share: number }, extra = {}) => pretrain({ corpus, out: tmpDir(), vocabSize: 500, steps: 1, selectiveMask, log: () => {}, ...extra });
    await expect(bad({ importance, share: 0 })).rejects.toThrow(/selectiveMask\.share must be in \(0, 1\], got 0/);
    await expect(bad({ importance, share: 0.5 }, { wholeWordMask: true })).rejects.toThrow(/selectiveMask goes with the masked LM on word pieces, not wholeWordMask/);
    await expect(bad({ importance: () => tb.ones([3]), share: 0.5 })).rejects.toThrow(/importance must give \[500\] scores \(one per token id\), got \[3\]/);
    await expect(bad({ importance: () => tb.zeros([500]), share: 0.5 })).rejects.toThrow(/scores every token of the corpus 0/);
    await expect(bad({ importance: () => tb.full([500], -1), share: 0.5 })).rejects.toThrow(/finite, non-negative scores/);
  });
  test('a masked LM that ends on its plateau (the loss of guessing by frequency) is warned about; one that learned to read context is not', async () => {
    const { pretrain } = await import('../lib/recipes/pretrain');
    const corpus = fs.readFileSync(path.join(DATA, 'sst2', 'dev.tsv'), 'utf8').split('\n').slice(1, 400).map((l) => l.split('\t')[0]);
    const run = async (lines: string[], steps: number, learningRate?: number) => {
      const logs: string[] = [];
      const r = await pretrain({ corpus: lines, out: tmpDir(), vocabSize: 500, hidden: 32, layers: 1, steps, seconds: 600, seqLen: 32, batchSize: 8, seed: 5, learningRate, log: (l) => logs.push(l) });
      r.model.dispose();
      return { r, warnings: logs.filter((l) => l.startsWith('warning:')) };
    };
    // 4 steps: still at the start
    const early = await run(corpus, 4);
    const special = new Set(early.r.tokenizer.allSpecialIds);
    const counts = new Map<number, number>();
    for (const t of corpus) for (const id of early.r.tokenizer.call(t, undefined, { truncation: true, maxLength: 32 }).inputIds as number[]) if (!special.has(id)) counts.set(id, (counts.get(id) ?? 0) + 1);
    const n = [...counts.values()].reduce((a, b) => a + b, 0);
    const entropy = -[...counts.values()].reduce((h, c) => h + (c / n) * Math.log(c / n), 0);
    expect(early.r.unigramLoss).toBeCloseTo(entropy, 6);
    expect(early.warnings).toEqual([expect.stringMatching(/^warning: pre-training ended on the masked-LM plateau \(loss \d+\.\d\d; guessing each masked word piece by its frequency alone costs \d+\.\d\d\)/)]);
    // four sentences over and over at a high rate: the context gives every masked piece away, and the loss falls far below
    const learned = await run(Array.from({ length: 400 }, (_, i) => corpus[i % 4]), 400, 5e-3);
    expect(learned.r.result.losses.at(-1)!.loss).toBeLessThan(learned.r.unigramLoss! - 1);
    expect(learned.warnings).toEqual([]);
  });
  test('wordVectors: the embeddings start from the corpus\'s co-occurrence vectors, not the random ones of the same seed', async () => {
    const { pretrain } = await import('../lib/recipes/pretrain');
    const corpus = fs.readFileSync(path.join(DATA, 'sst2', 'dev.tsv'), 'utf8').split('\n').slice(1, 400).map((l) => l.split('\t')[0]);
    const logs: string[] = [];
    const run = (wordVectors: boolean) => pretrain({ corpus, out: tmpDir(), vocabSize: 500, hidden: 32, layers: 1, steps: 1, seconds: 600, seqLen: 32, batchSize: 8, seed: 5, wordVectors, log: (l) => logs.push(l) });
    const [plain, wv] = [await run(false), await run(true)];
    expect(logs.filter((l) => l.startsWith('word vectors: PPMI + SVD'))).toHaveLength(1);
    const emb = (r: typeof plain) => r.model.stateDict().get('bert.embeddings.word_embeddings.weight')!;
    // one step at the first warmup rate moves the weights by far less than the difference between the two starts
    expect(emb(wv).sub(emb(plain)).abs().max().item()).toBeGreaterThan(0.02);
    // words of the same contexts: "film" and "movie" are nearer in the co-occurrence start than in the random one
    const ids = ['film', 'movie'].map((w) => wv.tokenizer.tokenToId(w));
    const cos = (r: typeof plain) => tb.F.cosineSimilarity(emb(r).select(0, ids[0]), emb(r).select(0, ids[1]), 0).item() as number;
    expect(cos(wv)).toBeGreaterThan(cos(plain) + 0.3);
    plain.model.dispose();
    wv.model.dispose();
  });
});

test('dropout: pre-training at 0 runs the model without dropout (two training-mode forwards agree); the saved config keeps BERT\'s 0.1 for fine-tuning; bad values refused', async () => {
  const { pretrain } = await import('../lib/recipes/pretrain');
  const corpus = fs.readFileSync(path.join(DATA, 'sst2', 'dev.tsv'), 'utf8').split('\n').slice(1, 400).map((l) => l.split('\t')[0]);
  const run = (dropout?: number) => pretrain({ corpus, out: tmpDir(), vocabSize: 500, hidden: 32, layers: 1, steps: 1, seconds: 600, seqLen: 32, batchSize: 8, seed: 5, dropout, log: () => {} });
  const r = await run(0);
  const cfg = JSON.parse(fs.readFileSync(path.join(r.dir, 'config.json'), 'utf8'));
  expect([cfg.hidden_dropout_prob, cfg.attention_probs_dropout_prob]).toEqual([0.1, 0.1]);
  // in training mode two forwards of one batch agree for the model pre-trained at 0, not at 0.1
  const d = await run();
  // the batch, the forwards' outputs and their differences are freed with the scope
  const scope = new tb.DisposeScope();
  const [same, differs] = await scope.run(async () => {
    const batch = r.tokenizer.call(corpus.slice(0, 4), undefined, { padding: true, returnTensors: 'pt' });
    const inputs = { inputIds: batch.inputIds as tb.Tensor, attentionMask: batch.attentionMask as tb.Tensor };
    const gap = async (m: typeof r.model) => {
      m.train();
      const [a, b] = [await m.forward(inputs), await m.forward(inputs)];
      return a.logits!.sub(b.logits!).abs().max().item();
    };
    return [await gap(r.model), await gap(d.model)];
  });
  scope.dispose();
  expect(same).toBe(0);
  expect(differs).toBeGreaterThan(0);
  [r.model, d.model].forEach((m) => m.dispose());
  const out = path.join(tmpDir(), 'run');
  for (const p of [1, -0.1, NaN]) {
    await expect(pretrain({ corpus, out, dropout: p, log: () => {} })).rejects.toThrow(`pretrain: dropout must be in [0, 1), got ${p}`);
  }
  const bad = cli(['pretrain', path.join(DATA, 'wikitext-2', 'valid.txt'), '--dropout', '1', '--out', out]);
  expect(bad.status).not.toBe(0);
  expect(bad.stderr).toContain('pretrain: dropout must be in [0, 1), got 1');
  expect(fs.existsSync(out)).toBe(false);
});

test('pretrain: heads sets the saved config\'s attention heads; a count that does not divide hidden is refused before writing anything', async () => {
  const { pretrain } = await import('../lib/recipes/pretrain');
  const corpus = fs.readFileSync(path.join(DATA, 'sst2', 'dev.tsv'), 'utf8').split('\n').slice(1, 200).map((l) => l.split('\t')[0]);
  const out = tmpDir();
  const r = await pretrain({ corpus, out, vocabSize: 300, hidden: 32, layers: 1, heads: 4, steps: 2, seconds: 600, seqLen: 32, batchSize: 4, seed: 5, log: () => {} });
  r.model.dispose();
  expect(JSON.parse(fs.readFileSync(path.join(out, 'pretrained', 'config.json'), 'utf8')).num_attention_heads).toBe(4);
  const bad = path.join(tmpDir(), 'run');
  for (const h of [3, 0, 1.5]) {
    await expect(pretrain({ corpus, out: bad, hidden: 32, heads: h, log: () => {} })).rejects.toThrow(`pretrain: heads must be a positive integer that divides hidden (32), got ${h}`);
  }
  const c = cli(['main', '--heads', '3', '--out', bad]);
  expect(c.status).not.toBe(0);
  expect(c.stderr).toContain('main: heads must be a positive integer that divides hidden (128), got 3');
  expect(fs.existsSync(bad)).toBe(false);
});

test('pretrain refuses a masking share outside (0, 1) before writing anything, as a function and as a command', async () => {
  const { pretrain } = await import('../lib/recipes/pretrain');
  const out = path.join(tmpDir(), 'run');
  for (const p of [0, 1, -0.1, NaN]) {
    await expect(pretrain({ corpus: ['a line of text for the vocabulary'], out, maskProbability: p, log: () => {} })).rejects.toThrow(`pretrain: maskProbability must be between 0 and 1, got ${p}`);
  }
  const r = cli(['pretrain', path.join(DATA, 'wikitext-2', 'valid.txt'), '--mask-prob', '1.5', '--out', out]);
  expect(r.status).not.toBe(0);
  expect(r.stderr).toContain('pretrain: maskProbability must be between 0 and 1, got 1.5');
  expect(fs.existsSync(out)).toBe(false);
});

describe('bf16 pre-training (main --bf16, pretrain --bf16)', () => {
  test('the masked LM trains under bf16 autocast: its losses are float32\'s within bf16 rounding, and not equal to them', async () => {
    const { pretrain } = await import('../lib/recipes/pretrain');
    const corpus = fs.readFileSync(path.join(DATA, 'sst2', 'dev.tsv'), 'utf8').split('\n').slice(1, 400).map((l) => l.split('\t')[0]);
    // Where the CPU has no bf16 units PyTorch emulates them: the numbers are the same, only slower.
    const allow = process.env.TORCHBERT_ALLOW_SLOW_BF16;
    if (!tb.cpuInfo().bf16) process.env.TORCHBERT_ALLOW_SLOW_BF16 = '1';
    try {
      const run = (bf16: boolean) => pretrain({ corpus, out: tmpDir(), vocabSize: 500, hidden: 32, layers: 1, steps: 100, seconds: 600, seqLen: 32, batchSize: 8, seed: 5, bf16, log: () => {} });
      const [fp, bf] = [await run(false), await run(true)];
      const [a, b] = [fp.result.losses[0].loss, bf.result.losses[0].loss];
      expect(b).not.toBe(a);
      expect(Math.abs(b - a)).toBeLessThan(0.02 * a);
      fp.model.dispose();
      bf.model.dispose();
    } finally {
      if (allow === undefined) delete process.env.TORCHBERT_ALLOW_SLOW_BF16;
      else process.env.TORCHBERT_ALLOW_SLOW_BF16 = allow;
    }
  });
  test('where oneDNN may not use bf16 units (a cap hides them, or the CPU lacks them) both commands refuse before writing anything', () => {
    const out = path.join(tmpDir(), 'run');
    const env: NodeJS.ProcessEnv = { ...process.env, ONEDNN_MAX_CPU_ISA: 'AVX2' };
    delete env.TORCHBERT_ALLOW_SLOW_BF16;
    for (const [args, what] of [[['main', '--bf16', '--data', DATA, '--out', out], 'main --bf16'], [['pretrain', path.join(DATA, 'wikitext-2', 'valid.txt'), '--bf16', '--out', out], 'pretrain --bf16']] as const) {
      const r = cli([...args], env);
      expect(r.status).not.toBe(0);
      expect(r.stderr).toContain(`${what}: this CPU`);
      expect(r.stderr).toMatch(/bf16 would be emulated and slower than float32/);
      expect(fs.existsSync(out)).toBe(false);
    }
  });
});

test('fromScratch with a reused encoder refuses pre-training options by name, before writing anything', async () => {
  const { fromScratch } = await import('../lib/recipes/scratch');
  const out = path.join(tmpDir(), 'run');
  await expect(fromScratch({ data: DATA, out, pretrained: out, wordVectors: true, objective: 'electra', selectiveMask: 1 }))
    .rejects.toThrow('main: pretrained reuses an encoder, so the pre-training options (objective, wordVectors, selectiveMask) do not apply');
  // the shape, budgets, rate and batch of pre-training too (they were ignored from code; the CLI refused them by flag)
  await expect(fromScratch({ data: DATA, out, pretrained: out, hidden: 256, pretrainSteps: 5, pretrainLr: 1e-3, pretrainBatch: 128 }))
    .rejects.toThrow('main: pretrained reuses an encoder, so the pre-training options (hidden, pretrainSteps, pretrainLr, pretrainBatch) do not apply');
  await expect(fromScratch({ data: DATA, out, pretrained: out })).rejects.toThrow(/main: pretrained must be a pre-trained model folder with config\.json and vocab\.txt .*, got .*run$/);
  expect(fs.existsSync(out)).toBe(false);
});
