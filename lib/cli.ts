#!/usr/bin/env node
// The torchbert command line.
import { Command } from 'commander';

const program = new Command();
program.name('torchbert').description('Train and serve BERT from Node.js on libtorch').version(require('../package.json').version);

program
  .command('info')
  .description('print versions, library paths, CUDA and threads')
  .option('--json', 'print JSON')
  .action(async (opts: { json?: boolean }) => {
    const { info } = await import('./torch');
    const i = info();
    if (opts.json) {
      console.log(JSON.stringify(i, null, 2));
      return;
    }
    const lt = i.libtorch as Record<string, unknown>;
    const cu = i.cuda as Record<string, unknown>;
    console.log(`torchbert   ${i.torchbert}`);
    console.log(`node        ${i.node} (Node-API ${i.napiVersion})`);
    console.log(`libtorch    ${lt.version} ${lt.flavour ?? ''} from ${lt.source ?? '?'}`);
    console.log(`            ${lt.lib ?? ''}`);
    console.log(`addon       ${i.addon}`);
    console.log(`cuda        ${cu.available ? `available, ${cu.devices} device(s)` : 'not available'}`);
    console.log(`threads     ${i.threads}`);
  });

program
  .command('main')
  .description('the end-to-end job: vocabulary, MLM pre-training, SST-2 fine-tuning, baselines, save, predict')
  .option('--data <dir>', 'data folder (sst2/, wikitext-2/)', process.env.TORCHBERT_DATA ?? '../shared/data')
  .option('--out <dir>', 'output folder', 'runs/main')
  .option('--pretrain-steps <n>', 'masked-LM pre-training steps (batch 64)', '3600')
  .option('--finetune-steps <n>', 'SST-2 fine-tuning steps (batch 32)', '4000')
  .option('--pretrain-seconds <n>', 'stop pre-training early after this many seconds', '480')
  .option('--finetune-seconds <n>', 'stop fine-tuning early after this many seconds', '330')
  .option('--hidden <n>', 'hidden size', '128')
  .option('--layers <n>', 'encoder layers', '2')
  .action(async (o: { data: string; out: string; pretrainSteps: string; finetuneSteps: string; pretrainSeconds: string; finetuneSeconds: string; hidden: string; layers: string }) => {
    const { fromScratch } = await import('./recipes/scratch');
    const started = Date.now();
    const r = await fromScratch({ data: o.data, out: o.out, pretrainSteps: Number(o.pretrainSteps), finetuneSteps: Number(o.finetuneSteps), pretrainSeconds: Number(o.pretrainSeconds), finetuneSeconds: Number(o.finetuneSeconds), hidden: Number(o.hidden), layers: Number(o.layers) });
    const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
    console.log('');
    console.log(`SST-2 dev accuracy: ${pct(r.dev.accuracy)} (F1 ${pct(r.dev.f1)})`);
    console.log(`  majority class:                 ${pct(r.dev.majority)}`);
    console.log(`  bag-of-words logistic regression: ${pct(r.dev.bagOfWords)}`);
    for (const p of r.predictions) console.log(`  ${p.label.padEnd(8)} ${p.score.toFixed(3)}  ${p.text}`);
    console.log(`saved: ${r.savedTo.hf} (Hugging Face format) and ${r.savedTo.torchscript} (TorchScript)`);
    console.log(`total ${((Date.now() - started) / 1000).toFixed(0)}s`);
    require('fs').writeFileSync(require('path').join(o.out, 'report.json'), JSON.stringify(r, null, 2));
  });

program.parseAsync(process.argv).catch((e: Error) => {
  console.error(`torchbert: ${e.message}`);
  process.exit(1);
});
