// scripts/gpu-check.js runs on the GPU machine (scripts/gpu-check.sh), which sessions get only by chance:
// here it runs its checks on the CPU, against transformers on the CPU, so that it does not rot between runs.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { ROOT, tmpDir } from './helpers';

test('scripts/gpu-check.js passes every check on the CPU (TORCHBERT_CHECK_DEVICE=cpu)', () => {
  const out = path.join(tmpDir(), 'checks.json');
  const r = spawnSync(process.execPath, [path.join(ROOT, 'scripts', 'gpu-check.js'), '--out', out], { cwd: ROOT, env: { ...process.env, TORCHBERT_CHECK_DEVICE: 'cpu' }, encoding: 'utf8' });
  expect([r.status, r.stdout.match(/^FAIL .*/gm)]).toEqual([0, null]);
  const report = JSON.parse(fs.readFileSync(out, 'utf8'));
  expect(report.device).toBe('cpu');
  expect([report.passed, report.failed]).toEqual([10, 0]);
  const bert = report.results.find((x: { name: string }) => x.name.startsWith('BERT against transformers'));
  expect(bert.detail.fp32MaxDiff).toBeLessThan(1e-4);
}, 300_000);
