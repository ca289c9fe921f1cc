// Multi-label classification (`torchbert finetune` on rows labelled with a list, as HF's run_classification
// reads a list column): the scores against scikit-learn (fixtures: scripts/fixtures.py, section multi_label),
// the reader's lists, the batch's multi-hot targets, and finetune, eval and predict end to end on a real task
// built from CoNLL-2003: which entity types (LOC, MISC, ORG, PER) a sentence mentions. The head's BCE loss and
// gradients are tested against transformers in test/glue.test.ts.
import * as fs from 'fs';
import * as path from 'path';
import { spawnSync } from 'child_process';
import { multiLabelScores, padCollate } from '../lib/train';
import { readLabelled, inferProblemType, multiHot, multiLabelDecisions } from '../lib/recipes/finetune';
import { readConll } from '../lib/data/datasets';
import { FIXTURES, DATA, ROOT, fixture, tmpDir, tmpFile } from './helpers';

const fx = fixture('multi-label.json');
const cli = (args: string[]) => spawnSync(process.execPath, [path.join(ROOT, 'dist', 'cli.js'), ...args], { encoding: 'utf8', cwd: ROOT });

test('micro and macro F1, subset accuracy and Hamming loss equal scikit-learn (a class never true nor predicted scores 0)', () => {
  for (const [name, c] of Object.entries<any>(fx)) {
    const s = multiLabelScores(c.pred, c.gold);
    const got = [s.microF1, s.macroF1, s.subsetAccuracy, s.hammingLoss];
    const want = [c.f1_micro, c.f1_macro, c.subset_accuracy, c.hamming_loss];
    got.forEach((v, i) => expect([name, i, Math.abs(v - want[i]) < 1e-12]).toEqual([name, i, true]));
  }
  expect(() => multiLabelScores([[1, 0]], [[1, 0], [0, 1]])).toThrow('multiLabelScores: 1 predictions for 2 labels');
  expect(() => multiLabelScores([[1, 0]], [[1, 0, 0]])).toThrow('multiLabelScores: every row needs 3 classes');
});

describe('labelled rows with lists', () => {
  test('a JSONL list is the row\'s labels (strings or numbers, repeats once, empty allowed); multi-label is inferred from it', () => {
    const rows = readLabelled(tmpFile('a.jsonl', '{"text": "x", "label": ["b", "a", "b"]}\n{"text": "y", "label": []}\n{"text": "z", "label": [3]}\n'));
    expect(rows).toEqual([{ text: 'x', label: ['b', 'a'] }, { text: 'y', label: [] }, { text: 'z', label: ['3'] }]);
    expect(inferProblemType(rows)).toBe('multi_label_classification');
    const id = new Map([['3', 0], ['a', 1], ['b', 2]]);
    expect(rows.map((r, i) => multiHot(r.label, id, 'f', i))).toEqual([[0, 1, 1], [0, 0, 0], [1, 0, 0]]);
    expect(() => multiHot(['c'], id, 'f', 4)).toThrow("f: example 5: label 'c' is none of 3, a, b");
    expect(() => multiHot('a', id, 'f', 0)).toThrow('f: example 1: multi-label classification reads each row\'s labels as a list');
  });
  test('a file mixing lists and single labels, or listing something else, is refused by row', () => {
    expect(() => readLabelled(tmpFile('b.jsonl', '{"text": "x", "label": ["a"]}\n{"text": "y", "label": "a"}\n'))).toThrow(/b\.jsonl:2: 'label' is one label where the first row has a list/);
    expect(() => readLabelled(tmpFile('c.jsonl', '{"text": "x", "label": "a"}\n{"text": "y", "label": ["a"]}\n'))).toThrow(/c\.jsonl:2: 'label' is a list where the first row has one label/);
    expect(() => readLabelled(tmpFile('d.jsonl', '{"text": "x", "label": ["a", {"b": 1}]}\n'))).toThrow(/d\.jsonl:1: 'label' must list labels \(strings or numbers\), got \["a",\{"b":1\}\]/);
    expect(() => readLabelled(tmpFile('e.jsonl', '{"text": "x", "label": ["a"]}\n{"text": "y"}\n'))).toThrow(/e\.jsonl:2: 'label' must be a label \(a string or a number, or a list of them as the first row has\), got nothing/);
  });
  test('multi-hot targets batch as float32 [rows, classes]; decisions are sigmoid > threshold', () => {
    const b = padCollate([{ inputIds: [1, 2], targets: [0, 1, 1] }, { inputIds: [1], targets: [1, 0, 0] }]);
    expect([b.labels!.dtype, b.labels!.shape, b.labels!.toArraySync()]).toEqual(['float32', [2, 3], [[0, 1, 1], [1, 0, 0]]]);
    expect(multiLabelDecisions([[0.1, -0.1, 0], [2, 1.2, -3]])).toEqual([[1, 0, 0], [1, 1, 0]]);
    // sigmoid(1.2) = 0.769: under a threshold of 0.8, over 0.75
    expect(multiLabelDecisions([[2, 1.2, -3]], 0.8)).toEqual([[1, 0, 0]]);
    expect(multiLabelDecisions([[2, 1.2, -3]], 0.75)).toEqual([[1, 1, 0]]);
  });
});

describe('finetune, eval and predict: the entity types a CoNLL-2003 sentence mentions', () => {
  const model = path.join(FIXTURES, 'pipelines', 'tiny-BertModel');
  const types = (tags: string[]) => [...new Set(tags.filter((t) => t !== 'O').map((t) => t.slice(2)))].sort();
  const jsonl = (file: string, n: number) => readConll(path.join(DATA, 'conll2003', file)).slice(0, n).map((s) => ({ text: s.tokens.join(' '), label: types(s.tags) }));
  const train = jsonl('eng.train', 600);
  const dev = jsonl('eng.testa', 150);
  const dir = tmpDir();
  const files = { train: path.join(dir, 'train.jsonl'), dev: path.join(dir, 'dev.jsonl') };
  fs.writeFileSync(files.train, train.map((r) => JSON.stringify(r) + '\n').join(''));
  fs.writeFileSync(files.dev, dev.map((r) => JSON.stringify(r) + '\n').join(''));
  const out = path.join(dir, 'types');
  const run = (extra: string[], to = out) => cli(['finetune', model, '--train', files.train, '--dev', files.dev, '--out', to, '--max-steps', '30', '--eval-steps', '10', '--lr', '2e-3', ...extra]);

  test('one sigmoid output per type (BCE), kept by micro F1; eval gives the report\'s numbers; predict lists what passes the threshold', () => {
    const r = run([]);
    expect([r.status, r.stderr]).toEqual([0, '']);
    expect(r.stdout).toContain('finetune: 600 training and 150 dev examples (texts, multi-label, labels LOC, MISC, ORG, PER), 30 steps of 32');
    const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
    expect([cfg.problem_type, cfg.id2label]).toEqual(['multi_label_classification', { 0: 'LOC', 1: 'MISC', 2: 'ORG', 3: 'PER' }]);
    const rep = JSON.parse(fs.readFileSync(path.join(out, 'report.json'), 'utf8'));
    expect([rep.best.metric, Object.keys(rep.dev)]).toEqual(['f1_micro', ['f1_micro', 'f1_macro', 'subset_accuracy', 'hamming_loss']]);
    const losses = fs.readFileSync(path.join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l)).filter((x) => x.type === 'train').map((x) => x.loss);
    expect(losses[losses.length - 1]).toBeLessThan(losses[0]);
    // better than predicting the types' prior alone: no type is in over half the sentences, so "none" scores F1 0
    expect(rep.dev.f1_micro).toBeGreaterThan(0);
    const e = cli(['eval', out, '--file', files.dev]);
    expect([e.status, e.stderr]).toEqual([0, '']);
    const ev = JSON.parse(e.stdout);
    expect([ev.examples, ev.f1_micro, ev.f1_macro, ev.subset_accuracy, ev.hamming_loss]).toEqual([150, rep.dev.f1_micro, rep.dev.f1_macro, rep.dev.subset_accuracy, rep.dev.hamming_loss]);
    // predict through the pipeline (sigmoid of every label) decides as eval did: the same subset accuracy.
    // Texts after -- may start with '-', as CoNLL's datelines do.
    const p = cli(['predict', out, '--', ...dev.map((d) => d.text), '-- Reuters London Newsroom']);
    expect([p.status, p.stderr]).toEqual([0, '']);
    const lines = p.stdout.trim().split('\n');
    expect(lines.pop()).toMatch(/  -- Reuters London Newsroom$/);
    expect(lines.map((l, i) => l.endsWith(`  ${dev[i].text}`))).toEqual(dev.map(() => true));
    const labelsOf = (l: string) => (l.startsWith('(none)') ? [] : l.split('  ')[0].split(', ').map((x) => x.split(' ')[0]).sort());
    const predicted = lines.map(labelsOf);
    expect(predicted.flat().length).toBeGreaterThan(0);
    expect(predicted.filter((ls, i) => ls.join() === dev[i].label.join()).length / dev.length).toBeCloseTo(ev.subset_accuracy, 12);
    // --file reads the dev JSONL itself (its labels unused); --json prints the labels that pass with their scores
    const fromFile = cli(['predict', out, '--file', files.dev, '--json']);
    expect([fromFile.status, fromFile.stderr]).toEqual([0, '']);
    const rowsOut = fromFile.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(rowsOut.map((j) => j.text)).toEqual(dev.map((d) => d.text));
    expect(rowsOut.map((j) => j.labels.map((l: { label: string }) => l.label).sort())).toEqual(predicted);
    expect(rowsOut.flatMap((j) => j.labels.map((l: { score: number }) => l.score > 0.5))).toEqual(predicted.flat().map(() => true));
    // so does a threshold of 0.9, at which predict names fewer labels
    const strict = JSON.parse(cli(['eval', out, '--file', files.dev, '--threshold', '0.9']).stdout);
    const high = cli(['predict', out, '--threshold', '0.9', '--', ...dev.map((d) => d.text)]).stdout.trim().split('\n').map(labelsOf);
    expect(high.filter((ls, i) => ls.join() === dev[i].label.join()).length / dev.length).toBeCloseTo(strict.subset_accuracy, 12);
    expect(high.flat().length).toBeLessThan(predicted.flat().length);
  });

  test('what does not fit is refused by name before anything is written', () => {
    const single = path.join(DATA, 'sst2', 'dev.tsv');
    const cases: [string[], string][] = [
      [['--rdrop', '1'], 'R-Drop compares two predicted class distributions; multi-label classification makes a yes or no per class'],
      [['--problem-type', 'regression'], `${files.train}: the labels are lists (multi-label); regression needs one label a row`],
    ];
    for (const [extra, message] of cases) {
      const to = path.join(tmpDir(), 'o');
      const r = run(extra, to);
      expect([r.status, r.stderr]).toEqual([1, expect.stringContaining(message)]);
      expect(fs.existsSync(to)).toBe(false);
    }
    const mixed = cli(['finetune', model, '--train', files.train, '--dev', single, '--out', path.join(tmpDir(), 'o'), '--max-steps', '2']);
    expect(mixed.stderr).toContain(`${files.train} lists labels (multi-label) and ${single} has one a row`);
    const told = cli(['finetune', model, '--train', single, '--dev', single, '--out', path.join(tmpDir(), 'o'), '--max-steps', '2', '--problem-type', 'multi_label_classification']);
    expect(told.stderr).toContain(`${single}: multi-label classification reads each row's labels as a list`);
    expect(cli(['predict', path.join(FIXTURES, 'pipelines', 'tiny-BertForSequenceClassification'), 'a', '--threshold', '0.5']).stderr).toContain('is not a multi-label model');
    expect(cli(['predict', out, 'a', '--threshold', '1.5']).stderr).toContain('--threshold must be a probability in (0, 1), got 1.5');
  });
});
