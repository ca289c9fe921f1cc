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
  .command('demo')
  .description('train a small TorchScript classifier on SST-2 and report dev accuracy')
  .option('--data <dir>', 'data folder holding sst2/', process.env.TORCHBERT_DATA ?? '../shared/data')
  .option('--steps <n>', 'training steps', '3000')
  .action(async (opts: { data: string; steps: string }) => {
    const { demo } = await import('./demo');
    const r = await demo({ data: opts.data, steps: Number(opts.steps), log: (s) => console.log(s) });
    console.log(`SST-2 dev accuracy ${(100 * r.accuracy).toFixed(1)}% (majority class ${(100 * r.majority).toFixed(1)}%)`);
  });

program.parseAsync(process.argv).catch((e: Error) => {
  console.error(`torchbert: ${e.message}`);
  process.exit(1);
});
