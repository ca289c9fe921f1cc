// The CLI: info, predict and eval on a saved model folder (a small random model: the output format
// and the wiring are under test, not accuracy).
import { spawnSync } from 'child_process';
import * as path from 'path';
import { BertTokenizer } from '../lib/tokenizer';
import { fromConfig } from '../lib/models';
import { DATA, tmpDir } from './helpers';

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

test('main: the end-to-end job runs through with tiny budgets and saves what it reports', () => {
  const out = tmpDir();
  const r = cli('main', '--out', out, '--pretrain-steps', '4', '--finetune-steps', '4', '--hidden', '32', '--layers', '1', '--pretrain-seconds', '60', '--finetune-seconds', '60');
  expect([r.status, r.stderr]).toEqual([0, '']);
  expect(r.stdout).toMatch(/SST-2 dev accuracy: \d+\.\d%/);
  const rep = JSON.parse(require('fs').readFileSync(path.join(out, 'report.json'), 'utf8'));
  expect(rep.pretrain.steps).toBe(4);
  expect(rep.finetune.steps).toBe(4);
  for (const f of ['sst2-model/config.json', 'sst2-model/model.safetensors', 'sst2-model/vocab.txt', 'sst2-model.pt', 'pretrained/model.safetensors', 'pretrain-curves.svg']) {
    expect([f, require('fs').existsSync(path.join(out, f))]).toEqual([f, true]);
  }
}, 600000);
