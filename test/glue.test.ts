// GLUE-style fine-tuning (`torchbert finetune` on sentence pairs and regression, as HF's run_glue): the
// sequence-classification head's loss for each problem type against transformers, STS-B's correlations
// against scipy, sentence-pair encodings against HF's tokenizer (fixtures: scripts/fixtures.py, section
// seq_cls), the file reader's columns and errors, and the finetune and eval commands end to end.
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import * as tb from '../lib';
import { fromPretrained } from '../lib/models/bert';
import { loadFileSync } from '../lib/safetensors';
import { BertTokenizer } from '../lib/tokenizer';
import { pearson, spearman, meanSquaredError } from '../lib/train';
import { readLabelled, inferProblemType, encodeLabelled } from '../lib/recipes/finetune';
import { FIXTURES, DATA, ROOT, fixture, maxAbsDiff, tmpDir, tmpFile, flat } from './helpers';

const fx = fixture('seq-cls.json');
const cli = (args: string[]) => spawnSync(process.execPath, [path.join(ROOT, 'dist', 'cli.js'), ...args], { encoding: 'utf8', cwd: ROOT });
const i64 = (x: number[][]) => tb.tensor(x.map((r) => r.map(BigInt)) as any);

describe.each(Object.keys(fx.problems))('BertForSequenceClassification, %s, equals transformers', (name) => {
  test('logits and loss within 1e-5, gradients within 1e-4 relative', async () => {
    const want = fx.problems[name];
    const model = await fromPretrained(path.join(FIXTURES, 'seq-cls', name), { kind: 'BertForSequenceClassification' });
    model.eval();
    const out = await model.forward({
      inputIds: i64(fx.inputs.input_ids), attentionMask: i64(fx.inputs.attention_mask), tokenTypeIds: i64(fx.inputs.token_type_ids),
      labels: tb.tensor(Float32Array.from(flat(want.labels))).view(Array.isArray(want.labels[0]) ? [want.labels.length, -1] : [-1]),
    });
    expect(maxAbsDiff(out.logits!.toArraySync(), want.logits)).toBeLessThan(1e-5);
    expect(Math.abs((out.loss!.item() as number) - want.loss)).toBeLessThan(1e-5);
    await out.loss!.backward();
    const grads = loadFileSync(path.join(FIXTURES, 'seq-cls', name, 'grads.safetensors'));
    const ours = new Map(model.module.namedParameters());
    const floor = 1e-7 * Math.max(...[...grads.values()].map((g) => g.abs().max().item() as number));
    for (const [n, g] of grads) {
      const mine = ours.get(n)?.grad;
      const scale = Math.max(...flat(g.toArraySync()).map(Math.abs));
      expect([n, mine ? maxAbsDiff(mine.toArraySync(), g.toArraySync()) <= 1e-4 * scale + floor : false]).toEqual([n, true]);
    }
    expect(grads.size).toBeGreaterThan(10);
  });
});

test("a checkpoint's head of another size: an error naming it, or with ignoreMismatchedSizes HF's mismatched keys started afresh, the rest loaded", async () => {
  const dir = path.join(FIXTURES, 'seq-cls', 'multi-label-3');
  const config = { num_labels: 2, problem_type: null, id2label: { 0: 'a', 1: 'b' } };
  await expect(fromPretrained(dir, { kind: 'BertForSequenceClassification', config })).rejects.toThrow(/size mismatch for classifier\.(weight|bias): checkpoint has \[3(,32)?\], model has \[2(,32)?\] \(ignoreMismatchedSizes: true/);
  const m = await fromPretrained(dir, { kind: 'BertForSequenceClassification', config, ignoreMismatchedSizes: true });
  expect(m.loadReport.mismatchedKeys.map((k) => [k.key, k.checkpoint, k.model]).sort()).toEqual(fx.mismatched);
  expect([m.loadReport.missingKeys, m.loadReport.unexpectedKeys]).toEqual([[], []]);
  const saved = loadFileSync(path.join(dir, 'model.safetensors'));
  const ours = new Map(m.namedParameters());
  expect(maxAbsDiff(ours.get('bert.encoder.layer.1.output.dense.weight')!.toArraySync(), saved.get('bert.encoder.layer.1.output.dense.weight')!.toArraySync())).toBe(0);
  const w = ours.get('classifier.weight')!;
  expect([w.shape, Math.abs((w.std().item() as number) - 0.02) < 0.01, ours.get('classifier.bias')!.abs().max().item()]).toEqual([[2, 32], true, 0]);
});

test('Pearson and Spearman correlations equal scipy (ties averaged; NaN for a constant input); MSE', () => {
  for (const [name, c] of Object.entries<any>(fx.correlations)) {
    for (const [f, key] of [[pearson, 'pearson'], [spearman, 'spearmanr']] as const) {
      const got = f(c.x, c.y);
      if (c[key] === null) expect([name, key, got]).toEqual([name, key, NaN]);
      else expect([name, key, Math.abs(got - c[key]) < 1e-9]).toEqual([name, key, true]);
    }
  }
  expect(meanSquaredError([1, 2, 4], [1, 3, 2])).toBeCloseTo(5 / 3, 12);
  expect(() => pearson([1, 2], [1])).toThrow('pearson: 2 predictions for 1 targets');
  expect(() => spearman([1], [1])).toThrow('spearman: needs at least 2 pairs, got 1');
});

test("sentence pairs encode as HF's tokenizer(text, text_pair, truncation=True, max_length) does", async () => {
  const tok = await BertTokenizer.fromPretrained(path.join(DATA, 'bert-base-uncased'));
  const rows = fx.pairs.pairs.map(([text, textPair]: string[]) => ({ text, textPair, label: '0' }));
  for (const L of ['24', '128']) {
    const enc = encodeLabelled(tok, rows, Number(L));
    expect(enc.map((e) => e.inputIds)).toEqual(fx.pairs[L].input_ids);
    expect(enc.map((e) => e.tokenTypeIds)).toEqual(fx.pairs[L].token_type_ids);
  }
  // a single text carries no token types: the model's default (zeros), as before pairs were read
  expect(encodeLabelled(tok, [{ text: rows[0].text, label: '0' }], 24)[0].tokenTypeIds).toBeUndefined();
});

describe('labelled files', () => {
  test("GLUE's sentence1/sentence2, text/text_pair in JSONL, chosen columns; SST-2's TSV as before", () => {
    expect(readLabelled(tmpFile('a.tsv', 'idx\tsentence1\tsentence2\tlabel\n0\tA cat.\tA dog.\t1\n'))).toEqual([{ text: 'A cat.', textPair: 'A dog.', label: '1' }]);
    expect(readLabelled(tmpFile('a.jsonl', '{"text": "x", "text_pair": "y", "label": 0.25}\n\n{"text": "z", "text_pair": "w", "label": 3}\n'))).toEqual([
      { text: 'x', textPair: 'y', label: '0.25' }, { text: 'z', textPair: 'w', label: '3' }]);
    const qnli = tmpFile('q.csv', 'question,sentence,label\nWho?,Jane did.,entailment\n');
    expect(readLabelled(qnli)).toEqual([{ text: 'Jane did.', label: 'entailment' }]);
    expect(readLabelled(qnli, { textColumn: 'question', textPairColumn: 'sentence' })).toEqual([{ text: 'Who?', textPair: 'Jane did.', label: 'entailment' }]);
    expect(readLabelled(tmpFile('m.tsv', 'Quality\t#1 String\t#2 String\n1\tHe left.\tHe went.\n'), { labelColumn: 'Quality', textColumn: '#1 String', textPairColumn: '#2 String' }))
      .toEqual([{ text: 'He left.', textPair: 'He went.', label: '1' }]);
    const sst = readLabelled(path.join(DATA, 'sst2', 'dev.tsv'));
    expect(sst).toHaveLength(872);
    expect(sst[0]).toEqual({ text: expect.any(String), label: expect.stringMatching(/^[01]$/) });
  });
  test('regression where every label is a number and some have a fraction, as run_glue decides for files', () => {
    const rows = (labels: string[]) => labels.map((label) => ({ text: 't', label }));
    expect(inferProblemType(rows(['0.5', '3', '-1e-2']))).toBe('regression');
    expect(inferProblemType(rows(['0', '1', '1']))).toBe('single_label_classification');
    expect(inferProblemType(rows(['0.5', 'pos']))).toBe('single_label_classification');
  });
  test('errors name the file, the row and the column', () => {
    const f = tmpFile('b.csv', 'text,label\na,1\n');
    expect(() => readLabelled(f, { labelColumn: 'score' })).toThrow(`${f}: no column 'score' for the label (columns: text, label)`);
    expect(() => readLabelled(tmpFile('c.csv', 'body,label\na,1\n'))).toThrow(/c\.csv: no column for the text: name it 'text' or 'sentence' or 'sentence1', or choose it with the column options \(columns: body, label\)/);
    expect(() => readLabelled(tmpFile('d.jsonl', '{"text": "a", "label": 1}\n{"text": 5, "label": 1}\n'))).toThrow(/d\.jsonl:2: 'text' must be a string, got 5/);
    expect(() => readLabelled(tmpFile('e.jsonl', '{"text": "a", "text_pair": "b", "label": 1}\n{"text": "a", "label": 1}\n'))).toThrow(/e\.jsonl:2: 'text_pair' must be a string, got nothing/);
    expect(() => readLabelled(tmpFile('g.jsonl', '{"text": "a", "label": null}\n'))).toThrow(/g\.jsonl:1: 'label' must be a label \(a string or a number\), got null/);
  });
});

describe('finetune and eval on sentence pairs and regression', () => {
  const model = path.join(FIXTURES, 'pipelines', 'tiny-BertModel');
  // consecutive SST-2 training rows paired: do the two share a sentiment, and the mean of their labels
  const sst = fs.readFileSync(path.join(DATA, 'sst2', 'train.tsv'), 'utf8').trim().split('\n').slice(1, 1201).map((l) => l.split('\t'));
  // (none starting with '-', which the predict command would read as an option)
  const pairs = Array.from({ length: sst.length / 2 }, (_, i) => [sst[2 * i], sst[2 * i + 1]]).filter(([a, b]) => !a[0].startsWith('-') && !b[0].startsWith('-'));
  const dir = tmpDir();
  const files = { train: path.join(dir, 'train.tsv'), dev: path.join(dir, 'dev.tsv'), trainReg: path.join(dir, 'train.jsonl'), devReg: path.join(dir, 'dev.jsonl') };
  const tsv = (ps: string[][][]) => 'sentence1\tsentence2\tlabel\n' + ps.map(([a, b]) => `${a[0]}\t${b[0]}\t${Number(a[1] === b[1])}\n`).join('');
  const jsonl = (ps: string[][][]) => ps.map(([a, b]) => JSON.stringify({ text: a[0], text_pair: b[0], score: (Number(a[1]) + Number(b[1])) / 2 }) + '\n').join('');
  fs.writeFileSync(files.train, tsv(pairs.slice(0, 500)));
  fs.writeFileSync(files.dev, tsv(pairs.slice(500)));
  fs.writeFileSync(files.trainReg, jsonl(pairs.slice(0, 500)));
  fs.writeFileSync(files.devReg, jsonl(pairs.slice(500)));
  const run = (train: string, dev: string, out: string, extra: string[] = []) => cli(['finetune', model, '--train', train, '--dev', dev, '--out', out, '--max-steps', '16', '--eval-steps', '8', '--lr', '1e-3', ...extra]);

  test('pair classification: accuracy, F1 and MCC; eval of the saved model gives the same numbers', () => {
    const out = path.join(dir, 'cls');
    const r = run(files.train, files.dev, out);
    expect([r.status, r.stderr]).toEqual([0, '']);
    expect(r.stdout).toContain(`finetune: 500 training and ${pairs.length - 500} dev examples (sentence pairs, labels 0, 1), 16 steps of 32`);
    const rep = JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8'));
    expect(Object.keys(rep.dev)).toEqual(['accuracy', 'f1', 'mcc']);
    const e = cli(['eval', out, '--file', files.dev]);
    expect(e.status).toBe(0);
    const ev = JSON.parse(e.stdout);
    expect([ev.examples, ev.accuracy, ev.f1, ev.mcc]).toEqual([pairs.length - 500, rep.dev.accuracy, rep.dev.f1, rep.dev.mcc]);
    const p = cli(['predict', out, 'a fine film', 'dull', '--text-pair', 'a great film', 'bright']);
    expect([p.status, p.stderr]).toEqual([0, '']);
    expect(p.stdout.trim().split('\n').map((l) => l.replace(/^[01] +0\.\d{3}  /, ''))).toEqual(['a fine film | a great film', 'dull | bright']);
    expect(cli(['predict', out, 'a', '--text-pair', 'b', 'c']).stderr).toContain('--text-pair: 2 second sentences for 1 texts');
    // the pipeline (HF's pairs, token types included: test/pipelines.test.ts) labels the dev pairs as eval scored them
    const dev = pairs.slice(500);
    const all = cli(['predict', out, ...dev.map(([a]) => a[0]), '--text-pair', ...dev.map(([, b]) => b[0])]);
    const predicted = all.stdout.trim().split('\n').map((l) => Number(l.split(' ')[0]));
    expect(predicted.filter((y, i) => y === Number(dev[i][0][1] === dev[i][1][1])).length / dev.length).toBe(ev.accuracy);
    // the same pairs from a JSONL file, printed as JSON lines; single texts from standard input, one a line
    const pairFile = tmpFile('pairs.jsonl', dev.map(([a, b]) => JSON.stringify({ text: a[0], text_pair: b[0] }) + '\n').join(''));
    const js = cli(['predict', out, '--file', pairFile, '--json']).stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(js.map((j) => [j.text, j.text_pair, Number(j.label)])).toEqual(dev.map(([a, b], i) => [a[0], b[0], predicted[i]]));
    const lines = ['a fine film', '-- a dull one', 'bright'];
    const piped = spawnSync(process.execPath, [path.join(ROOT, 'dist', 'cli.js'), 'predict', out, '--file', '-'], { encoding: 'utf8', cwd: ROOT, input: `${lines.join('\r\n')}\n\n` });
    expect([piped.status, piped.stderr]).toEqual([0, '']);
    expect(piped.stdout.trim().split('\n').map((l) => l.replace(/^[01] +0\.\d{3}  /, ''))).toEqual(lines);
    expect(cli(['predict', out, 'a', '--file', pairFile]).stderr).toContain('--file: give the texts (and pairs) either in the file or as arguments, not both');
    expect(cli(['predict', out]).stderr).toContain('no texts: give them as arguments or with --file');
    expect(cli(['predict', out, '--file', tmpFile('bad.jsonl', '{"text": "a", "text_pair": "b"}\n{"text": "c"}\n')]).stderr).toMatch(/bad\.jsonl:2: 'text_pair' must be a string, got nothing/);
    // a CSV or TSV is read by its columns as finetune reads it (quoted fields, labels unused), not line by line
    const csv = cli(['predict', out, '--file', tmpFile('texts.csv', 'text,label\n"a fine film, truly",1\nbright,0\n')]);
    expect([csv.status, csv.stderr]).toEqual([0, '']);
    expect(csv.stdout.trim().split('\n').map((l) => l.replace(/^[01] +0\.\d{3}  /, ''))).toEqual(['a fine film, truly', 'bright']);
  });

  test('regression from a real-valued label column: one output, MSE loss, Pearson and Spearman; eval agrees; its loss falls', () => {
    const out = path.join(dir, 'reg');
    const r = run(files.trainReg, files.devReg, out, ['--label-column', 'score', '--max-steps', '24']);
    expect([r.status, r.stderr]).toEqual([0, '']);
    expect(r.stdout).toContain('(sentence pairs, regression)');
    const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
    expect([cfg.num_labels ?? Object.keys(cfg.id2label).length, cfg.problem_type]).toEqual([1, 'regression']);
    const rep = JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8'));
    expect(rep.best.metric).toBe('pearson');
    expect(Object.keys(rep.dev)).toEqual(['pearson', 'spearmanr', 'mse']);
    const losses = fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((x) => x.type === 'train').map((x) => x.loss);
    expect(losses[losses.length - 1]).toBeLessThan(losses[0]);
    const e = cli(['eval', out, '--file', files.devReg, '--label-column', 'score']);
    expect(e.status).toBe(0);
    const ev = JSON.parse(e.stdout);
    // the same weights and batches; the last digits may differ (the GEMM kernels are chosen per process)
    expect(maxAbsDiff([ev.pearson, ev.spearmanr, ev.mse], [rep.dev.pearson, rep.dev.spearmanr, rep.dev.mse])).toBeLessThan(1e-6);
    // a second run into the same folder logs only itself
    expect(run(files.trainReg, files.devReg, out, ['--label-column', 'score', '--max-steps', '4', '--eval-steps', '4']).status).toBe(0);
    expect(fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).step)).toEqual([1, 2, 3, 4, 4]);
    // a classifier's file through a regression model is a regression on its 0 and 1; the other way round is refused
    expect(cli(['eval', out, '--file', files.dev]).status).toBe(0);
    const cls = cli(['eval', path.join(dir, 'cls'), '--file', files.devReg, '--label-column', 'score']);
    expect(cls.stderr).toMatch(/dev\.jsonl: example \d+: label '0\.5' is none of the model's \(0, 1\) nor a class index below 2/);
  });

  test('bad combinations are refused before training, naming what is wrong; nothing is written', () => {
    const cases: [string[], string][] = [
      [[files.trainReg, files.devReg, '--label-column', 'score', '--rdrop', '1'], 'R-Drop compares two predicted class distributions; a regression has none'],
      [[files.train, files.dev, '--problem-type', 'regresion'], "problem type must be regression, single_label_classification or multi_label_classification, got 'regresion'"],
      [[files.train, path.join(DATA, 'sst2', 'dev.tsv')], `${files.train} has sentence pairs and ${path.join(DATA, 'sst2', 'dev.tsv')} single texts`],
    ];
    for (const [[train, dev, ...extra], message] of cases) {
      const out = path.join(tmpDir(), 'o');
      const r = run(train, dev, out, extra);
      expect([r.status, r.stderr]).toEqual([1, expect.stringContaining(message)]);
      expect(fs.existsSync(out)).toBe(false);
    }
    // a 3-label classifier fine-tuned for 2 labels: refused by name, or its head started afresh on request
    const three = path.join(FIXTURES, 'pipelines', 'tiny-BertForSequenceClassification');
    const refused = cli(['finetune', three, '--train', files.train, '--dev', files.dev, '--out', path.join(dir, 'r'), '--max-steps', '2']);
    expect([refused.status, refused.stderr]).toEqual([1, expect.stringContaining('size mismatch for classifier.bias: checkpoint has [3], model has [2]')]);
    const fresh = cli(['finetune', three, '--train', files.train, '--dev', files.dev, '--out', path.join(dir, 'f'), '--max-steps', '2', '--ignore-mismatched-sizes']);
    expect([fresh.status, fresh.stderr]).toEqual([0, '']);
    const words = path.join(dir, 'words.csv');
    fs.writeFileSync(words, 'text,label\na,pos\nb,0.5\n');
    const r = run(words, words, path.join(dir, 'w'), ['--problem-type', 'regression']);
    expect(r.stderr).toContain(`${words}: example 1: regression needs a number as the label, got 'pos'`);
  });
});
