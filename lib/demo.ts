// `torchbert demo`: the end-to-end path that exists so far, on real data: SST-2 sentences become int64
// tensors, a TorchScript classifier built natively from source trains with autograd on worker threads,
// and dev accuracy is reported beside the majority-class baseline.
import * as fs from 'fs';
import * as path from 'path';
import * as tb from './index';
import { F, ScriptModule, Tensor } from './index';

function readSst2(file: string): { text: string; label: number }[] {
  if (!fs.existsSync(file)) throw new Error(`SST-2 not found at ${file}: set TORCHBERT_DATA to the folder holding sst2/`);
  return fs.readFileSync(file, 'utf8').split('\n').slice(1).filter(Boolean).map((l) => {
    const [text, label] = l.split('\t');
    return { text, label: Number(label) };
  });
}

export async function demo(opts: { data: string; steps: number; log: (s: string) => void }): Promise<{ accuracy: number; majority: number }> {
  const train = readSst2(path.join(opts.data, 'sst2', 'train.tsv'));
  const dev = readSst2(path.join(opts.data, 'sst2', 'dev.tsv'));
  const vocab = new Map<string, number>();
  const ids = (s: string) => s.toLowerCase().split(/\s+/).filter(Boolean).map((w) => {
    if (!vocab.has(w)) vocab.set(w, vocab.size + 1);
    return vocab.get(w)!;
  });
  const encode = (rows: { text: string }[], maxLen = 48) => {
    const out = new BigInt64Array(rows.length * maxLen);
    rows.forEach((r, i) => ids(r.text).slice(0, maxLen).forEach((id, j) => (out[i * maxLen + j] = BigInt(id))));
    return tb.tensor(out, { shape: [rows.length, maxLen] });
  };
  const xTrain = encode(train);
  const yTrain = tb.tensor(BigInt64Array.from(train, (r) => BigInt(r.label)));
  const xDev = encode(dev);
  const yDev = tb.tensor(BigInt64Array.from(dev, (r) => BigInt(r.label)));
  tb.manualSeed(0);
  const dim = 64;
  const m = new ScriptModule('BagOfEmbeddings');
  m.registerParameter('emb', tb.randn([vocab.size + 1, dim]).mul(0.1), { requiresGrad: true });
  m.registerParameter('w', tb.randn([2, dim]).mul(0.1), { requiresGrad: true });
  m.registerParameter('b', tb.zeros([2]), { requiresGrad: true });
  m.define(`
def forward(self, ids: Tensor) -> Tensor:
    mask = (ids != 0).unsqueeze(-1).float()                           # [B, T, 1]
    h = torch.embedding(self.emb, ids, 0) * mask                      # [B, T, D]
    pooled = h.sum(1) / mask.sum(1).clamp_min(1.0)                    # [B, D]
    return torch.linear(torch.tanh(pooled), self.w, self.b)           # [B, 2]
`);
  const params = m.parameters();
  const lr = 0.5;
  for (let step = 0; step < opts.steps; step++) {
    const scope = new tb.DisposeScope();
    const loss = await scope.run(async () => {
      const idx = tb.randint(0, train.length, [64]);
      const logits = (await m.forward(xTrain.indexSelect(0, idx))) as Tensor;
      const l = F.crossEntropy(logits, yTrain.indexSelect(0, idx));
      await l.backward();
      tb.noGrad(() => params.forEach((p) => { p.sub_(p.grad!, lr); p.grad!.zero_(); }));
      return l.item() as number;
    });
    scope.dispose();
    if (step % 100 === 0 || step === opts.steps - 1) opts.log(`step ${step} loss ${loss.toFixed(4)}`);
  }
  m.eval();
  const pred = tb.noGrad(() => (m.forwardSync(xDev) as Tensor).argmax(1));
  const accuracy = pred.eq(yDev).float().mean().item() as number;
  const ones = dev.filter((r) => r.label === 1).length;
  const majority = Math.max(ones, dev.length - ones) / dev.length;
  return { accuracy, majority };
}
