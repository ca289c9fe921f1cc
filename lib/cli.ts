#!/usr/bin/env node
// The torchbert command line.
import { Command, InvalidArgumentError, Option } from 'commander';
import { LOW_MEMORY_OPTIONS, SERVE_PRIMITIVE_CACHE, asFlags } from './serve/defaults';
import { hasBf16Units } from './cpu';
import type { CpuInfo } from './cpu';
import type { ExtraText } from './recipes/scratch';

// Numeric options are checked where they are parsed: `--lr abc` is an error naming the option.
function integer(v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected a non-negative integer.');
  return n;
}
function number(v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isFinite(n)) throw new InvalidArgumentError('expected a number.');
  return n;
}

const program = new Command();
program.name('torchbert').description('Train and serve BERT from Node.js on libtorch').version(require('../package.json').version).enablePositionalOptions();

/**
 * `--nproc N` (N > 1) outside a launched rank: re-runs this very command as N local data-parallel ranks
 * through the launcher and resolves true. Inside a rank: joins the process group and resolves false.
 */
async function dataParallel(nproc: number): Promise<boolean> {
  if (process.env.RANK === undefined) {
    if (nproc <= 1) return false;
    const { launch } = await import('./distributed/launch');
    const net = await import('net');
    const port = await new Promise<number>((resolve) => {
      const srv = net.createServer().listen(0, '127.0.0.1', () => {
        const p = (srv.address() as import('net').AddressInfo).port;
        srv.close(() => resolve(p));
      });
    });
    const argv = process.argv.slice(1);
    const i = argv.findIndex((a) => a === '--nproc' || a.startsWith('--nproc='));
    argv.splice(i, argv[i] === '--nproc' ? 2 : 1);
    await launch(process.execPath, argv, { nprocPerNode: nproc, masterPort: port });
    return true;
  }
  if (Number(process.env.WORLD_SIZE ?? 1) > 1) {
    const dist = await import('./distributed/process-group');
    await dist.initProcessGroup();
  }
  return false;
}

/** Ends a --nproc run: leaves the process group; true on the rank that reports (rank 0, or no group). */
async function leaveGroup(): Promise<boolean> {
  const dist = await import('./distributed/process-group');
  const main = !dist.isInitialized() || dist.getRank() === 0;
  if (dist.isInitialized()) await dist.destroyProcessGroup();
  return main;
}

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
    const d = i.distributed as { available: boolean; nccl: boolean };
    console.log(`distributed ${d.available ? `c10d with Gloo${d.nccl ? ' and NCCL' : ''} (tb.distributed, torchbert run)` : 'not in this build (Gloo headers were missing at build time)'}`);
    const cpu = i.cpu as CpuInfo;
    const bf16 = cpu.bf16 ? 'yes' : hasBf16Units(cpu) ? `not usable (ONEDNN_MAX_CPU_ISA=${cpu.onednnIsaCap})` : 'no';
    console.log(`cpu         ${cpu.model} [${cpu.flags.join(' ')}]; bf16 units: ${bf16}, int8 dot-product units: ${cpu.vnni ? 'yes' : 'no'}` +
      `${cpu.onednnIsaCap ? `; oneDNN capped at ${cpu.onednnIsaCap}` : ''}`);
    const plan = i.linearPlan as { cache: string | null; shapes: { shape: string; rows: number[]; choices: string[] }[] };
    console.log(`gemm plan   ${plan.shapes.length ? `measured here (${plan.cache}); by rows ${plan.shapes[0].rows.join(', ')}:` : plan.cache ? `none measured yet (prepack() measures and caches in ${plan.cache})` : 'no tuning cache (TORCHBERT_TUNING_CACHE=0)'}`);
    for (const s of plan.shapes) console.log(`            ${s.shape.padEnd(16)} ${s.choices.join(', ')}`);
  });

program
  .command('main')
  .description('the end-to-end job: vocabulary, MLM pre-training, SST-2 fine-tuning, baselines, save, predict')
  .option('--data <dir>', 'data folder (sst2/, wikitext-2/)', process.env.TORCHBERT_DATA ?? '../shared/data')
  .option('--out <dir>', 'output folder', 'runs/main')
  .option('--pretrain-steps <n>', 'at most this many pre-training steps (default: 10000)', integer)
  .option('--finetune-steps <n>', 'SST-2 fine-tuning steps (default: --finetune-epochs epochs)', integer)
  .option('--finetune-epochs <x>', 'epochs of SST-2 fine-tuning where --finetune-steps is not given (default: 2)', number)
  .option('--pretrain-batch <n>', 'pre-training batch (global: under --nproc each rank takes 1/n; default: 64)', integer)
  .option('--finetune-batch <n>', 'fine-tuning batch (global, as --pretrain-batch; default: 32)', integer)
  .option('--pretrain-seconds <n>', 'pre-training time budget: the schedule is fitted to the steps it holds (default: 540)', integer)
  .option('--finetune-seconds <n>', 'time budget of each fine-tuning (each copy of a soup, the control; default: 150); the model and its control side by side share twice this', integer)
  .option('--soup <n>', 'fine-tune n copies of the pre-trained BERT (different batch orders) and average their weights into the model reported and saved (a model soup; default: 1; did not help this job: docs/results.md)', integer)
  .option('--vocab-size <n>', 'WordPiece vocabulary learned by the job (default: 8000)', integer)
  .option('--hidden <n>', 'hidden size (default: 128)', integer)
  .option('--layers <n>', 'encoder layers (default: 2)', integer)
  .option('--heads <n>', 'attention heads, dividing the hidden size (default: hidden / 64)', integer)
  .option('--seed <n>', 'seed of the weights, masking, dropout and batch order', integer, 0)
  .addOption(new Option('--objective <o>', 'pre-training objective: masked LM or ELECTRA replaced-token detection').choices(['mlm', 'electra']).default('mlm'))
  .option('--pretrain-lr <x>', 'peak learning rate of pre-training (default: 1e-3, with --objective electra 3e-4)', number)
  .option('--finetune-lr <x>', 'peak learning rate of fine-tuning (default: 1e-4)', number)
  .option('--no-control', 'skip the control (the same BERT fine-tuned from random weights)')
  .option('--no-parallel-control', 'fine-tune the control after the model, on all threads, instead of beside it in a second process (each on half the threads, within both budgets)')
  .option('--pack', 'pre-train on packed full-length rows of text (SST-2 sentences once each) instead of one row per line')
  .option('--word-vectors', 'start pre-training from co-occurrence word vectors of the corpus (PPMI + SVD): a lower masked-LM loss, not a better SST-2 score here (docs/results.md)')
  .option('--bag-of-words <w>', 'add w x a sentence-level term to the masked LM: the [CLS] vector predicts the row\'s bag of words (did not help: docs/results.md)', number, 0)
  .option('--selective-mask <share>', "task-guided selective masking: this share of pre-training's masks follows each word piece's weight in the bag-of-words baseline, trained first (default: 0, off; 82.30% against 82.26% over three seeds: docs/results.md)", number)
  .option('--whole-word-mask', 'pre-train with whole-word masking rather than single word pieces')
  .option('--mask-prob <p>', 'share of the tokens the masked LM predicts (default: 0.15)', number)
  .option('--extra-text <names>', 'more unlabelled text for the vocabulary and pre-training, comma-separated: conll (CoNLL-2003\'s sentences), shakespeare (tiny Shakespeare), rt (Rotten Tomatoes\' snippets that are not SST-2 rows and overlap no dev sentence)', (v: string) => v.split(',').map((t) => t.trim()).filter(Boolean))
  .option('--wikitext', "add WikiText-2's test and valid articles to the vocabulary's and pre-training's text (default: SST-2's sentences alone)")
  .option('--nproc <n>', 'data-parallel over n local processes (cores / n threads each); the batches stay global: each rank takes 1/n', integer, 1)
  .option('--pretrained <dir>', "skip the vocabulary and pre-training: fine-tune this encoder (an earlier run's OUT/pretrained folder); with --seed, what fine-tuning alone varies")
  .option('--bf16', 'bfloat16 mixed precision (autocast) in every training phase, on CPUs with bf16 units')
  .option('--pretrain-dropout <p>', 'hidden and attention dropout while pre-training (default: 0.1; fine-tuning keeps 0.1)', number)
  .option('--rdrop <a>', 'R-Drop in fine-tuning: each batch twice with different dropout, plus a times the symmetric KL of the two predictions (default: 1; 0: plain cross-entropy)', number)
  .action(async (o: { data: string; rdrop?: number; out: string; pretrainDropout?: number; pretrainSteps?: number; finetuneSteps?: number; finetuneEpochs?: number; pretrainSeconds?: number; finetuneSeconds?: number; vocabSize?: number; hidden?: number; layers?: number; heads?: number; seed: number; objective: 'mlm' | 'electra'; pretrainLr?: number; finetuneLr?: number; soup?: number; control: boolean; parallelControl: boolean; pack?: boolean; wordVectors?: boolean; bagOfWords: number; selectiveMask?: number; wholeWordMask?: boolean; extraText?: ExtraText[]; wikitext?: boolean; maskProb?: number; nproc: number; pretrained?: string; pretrainBatch?: number; finetuneBatch?: number; bf16?: boolean }, cmd: Command) => {
    const started = Date.now();
    if (o.pretrained !== undefined) {
      // Refused here by their flags' names: some have defaults, so only the command line tells whether they were given.
      const given = ['pretrainDropout', 'vocabSize', 'hidden', 'layers', 'heads', 'pretrainSteps', 'pretrainSeconds', 'pretrainLr', 'pretrainBatch', 'objective', 'pack', 'wordVectors', 'bagOfWords', 'selectiveMask', 'wholeWordMask', 'extraText', 'maskProb', 'wikitext'].filter((k) => cmd.getOptionValueSource(k) === 'cli');
      if (given.length) throw new RangeError(`main: --pretrained reuses an encoder, so ${given.map((k) => '--' + k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())).join(', ')} do not apply`);
    }
    if (await dataParallel(o.nproc)) return;
    const { fromScratch } = await import('./recipes/scratch');
    const r = await fromScratch({ data: o.data, out: o.out, pretrainSteps: o.pretrainSteps, finetuneSteps: o.finetuneSteps, finetuneEpochs: o.finetuneEpochs, pretrainSeconds: o.pretrainSeconds, finetuneSeconds: o.finetuneSeconds, vocabSize: o.vocabSize, hidden: o.hidden, layers: o.layers, heads: o.heads, seed: o.seed, objective: o.objective, pretrainLr: o.pretrainLr, finetuneLr: o.finetuneLr, soup: o.soup, control: o.control, parallelControl: o.parallelControl, pack: !!o.pack, wordVectors: !!o.wordVectors, bagOfWords: o.bagOfWords, selectiveMask: o.selectiveMask, wholeWordMask: !!o.wholeWordMask, extraText: o.extraText, wikitext: !!o.wikitext, maskProbability: o.maskProb, pretrained: o.pretrained, pretrainBatch: o.pretrainBatch, finetuneBatch: o.finetuneBatch, bf16: !!o.bf16, pretrainDropout: o.pretrainDropout, rDrop: o.rdrop });
    if (!(await leaveGroup()) || !r) return;
    const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
    console.log('');
    console.log(`SST-2 dev accuracy: ${pct(r.dev.accuracy)} (F1 ${pct(r.dev.f1)})${r.dev.copies.length > 1 ? `, the average of ${r.dev.copies.length} fine-tuned copies (alone: ${r.dev.copies.map(pct).join(', ')})` : ''}`);
    console.log(`  majority class:                   ${pct(r.dev.majority)}`);
    console.log(`  bag-of-words logistic regression: ${pct(r.dev.bagOfWords)}`);
    if (r.dev.noPretraining !== undefined) console.log(`  the same BERT without pre-training: ${pct(r.dev.noPretraining)}${r.dev.copies.length > 1 ? ' (one fine-tuning)' : ''}`);
    for (const p of r.predictions) console.log(`  ${p.label.padEnd(8)} ${p.score.toFixed(3)}  ${p.text}`);
    console.log(`saved: ${r.savedTo.hf} (Hugging Face format) and ${r.savedTo.torchscript} (TorchScript)`);
    console.log(`total ${((Date.now() - started) / 1000).toFixed(0)}s`);
    require('fs').writeFileSync(require('path').join(o.out, 'report.json'), JSON.stringify(r, null, 2));
  });

program
  .command('pretrain')
  .description('learn a WordPiece vocabulary and pre-train a small BERT with masked-LM on text files (one passage per line)')
  .argument('<files...>', 'text files')
  .option('--out <dir>', 'output folder (tokenizer/, pretrained/, metrics.jsonl, pretrain-curves.svg)', 'runs/pretrain')
  .option('--vocab-size <n>', 'WordPiece vocabulary size (default: 8000)', integer)
  .option('--hidden <n>', 'hidden size (default: 128)', integer)
  .option('--layers <n>', 'encoder layers (default: 2)', integer)
  .option('--heads <n>', 'attention heads, dividing the hidden size (default: hidden / 64)', integer)
  .option('--steps <n>', 'optimizer steps of batch 64 (default: 6000)', integer)
  .option('--seconds <n>', 'time budget: the schedule is fitted to the steps it holds (default: 480)', integer)
  .option('--seq-len <n>', 'tokens per passage (default: 64)', integer)
  .option('--whole-word-mask', 'mask whole words rather than single word pieces')
  .option('--pack', 'pack the lines into full --seq-len rows (as HF run_mlm.py groups texts) instead of one padded row per line')
  .addOption(new Option('--objective <o>', 'masked LM, or ELECTRA replaced-token detection (one process)').choices(['mlm', 'electra']).default('mlm'))
  .option('--seed <n>', 'seed of the weights, masking, dropout and batch order', integer, 1)
  .option('--word-vectors', 'start the word embeddings from co-occurrence vectors of the corpus (PPMI + SVD) instead of random ones')
  .option('--bag-of-words <w>', 'masked LM: add w x a sentence-level term, the [CLS] vector predicting the row\'s bag of words (default: 0)', number)
  .option('--mask-prob <p>', 'share of the tokens the masked LM predicts (default: 0.15)', number)
  .option('--lr <x>', 'peak learning rate (default: 1e-3, with --objective electra 3e-4)', number)
  .option('--nproc <n>', 'data-parallel over n local processes (cores / n threads each); the batch is per process', integer, 1)
  .option('--bf16', 'bfloat16 mixed precision (autocast), on CPUs with bf16 units')
  .option('--dropout <p>', 'hidden and attention dropout while pre-training (default: 0.1); the saved config keeps 0.1 for fine-tuning', number)
  .action(async (files: string[], o: { dropout?: number; out: string; vocabSize?: number; hidden?: number; layers?: number; heads?: number; steps?: number; seconds?: number; seqLen?: number; wholeWordMask?: boolean; pack?: boolean; objective: 'mlm' | 'electra'; seed: number; wordVectors?: boolean; bagOfWords?: number; maskProb?: number; lr?: number; nproc: number; bf16?: boolean }) => {
    if (await dataParallel(o.nproc)) return;
    const { pretrain } = await import('./recipes/pretrain');
    const { readLines } = await import('./data/datasets');
    const corpus = files.flatMap((f) => readLines(f)).map((l) => l.trim()).filter((l) => l.length > 20 && !l.startsWith('='));
    const r = await pretrain({ corpus, out: o.out, vocabSize: o.vocabSize, hidden: o.hidden, layers: o.layers, heads: o.heads, steps: o.steps, seconds: o.seconds, seqLen: o.seqLen, wholeWordMask: !!o.wholeWordMask, pack: !!o.pack, objective: o.objective, seed: o.seed, wordVectors: !!o.wordVectors, bagOfWords: o.bagOfWords, maskProbability: o.maskProb, learningRate: o.lr, bf16: !!o.bf16, dropout: o.dropout });
    if (await leaveGroup()) console.log(`saved: ${r.dir}`);
  });

program
  .command('finetune')
  .description('fine-tune a model folder or Hub name: text or sentence-pair classification, multi-label classification and regression (TSV/CSV/JSONL with text, optionally text_pair, and label, a list of labels in JSONL for multi-label; GLUE\'s sentence1/sentence2 too), NER (CoNLL files) or extractive QA (SQuAD JSON or JSONL)')
  .argument('<model>', 'model folder or Hub name')
  .requiredOption('--train <file>', 'training file')
  .requiredOption('--dev <file>', 'dev file (evaluated during training; the best model is kept)')
  .option('--task <task>', 'classification, ner or qa', 'classification')
  .option('--out <dir>', 'output folder', 'runs/finetune')
  .option('--epochs <n>', 'epochs (default: 3)', integer)
  .option('--max-steps <n>', 'optimizer steps (overrides epochs)', integer)
  .option('--lr <x>', 'peak learning rate (AdamW, linear warmup and decay; default: 2e-5)', number)
  .option('--batch-size <n>', 'batch size (default: 32)', integer)
  .option('--max-length <n>', 'tokens per example (default: 128), per window for qa (default: 384, as HF run_qa)', integer)
  .option('--doc-stride <n>', 'qa: overlap of context windows in tokens (default: 128, at most half of --max-length)', integer)
  .option('--eval-steps <n>', 'evaluate every n steps (default: 5 times per run)', integer)
  .option('--patience <n>', 'early stopping: evaluations without improvement', integer)
  .option('--seconds <n>', 'time budget', integer)
  .option('--limit <n>', 'use only the first n training examples', integer)
  .option('--seed <n>', "seed of the head initialisation, dropout and each epoch's shuffle (default: 42)", integer)
  .option('--weight-decay <x>', 'AdamW weight decay, not on biases and LayerNorm (default: 0.01)', number)
  .option('--warmup-ratio <x>', 'fraction of the steps spent warming up the learning rate (default: 0.1)', number)
  .option('--group-by-length', 'batch examples of similar length together (HF group_by_length)')
  .option('--save-steps <n>', 'write a checkpoint every n steps into the output folder', integer)
  .option('--resume <checkpoint>', 'continue from a checkpoint folder of an earlier run with the same options')
  .option('--text-column <name>', 'classification: the text column (default: text, sentence or sentence1)')
  .option('--text-pair-column <name>', 'classification: the second text of a sentence pair (default: text_pair or sentence2 where the file has one)')
  .option('--label-column <name>', 'classification: the label column (default: label)')
  .option('--ignore-mismatched-sizes', "start the head afresh where the checkpoint's has another size (another label count), as HF's ignore_mismatched_sizes")
  .option('--problem-type <t>', 'classification: regression, single_label_classification or multi_label_classification (default: multi-label where the labels are lists, regression where every label is a number and some have a fraction, as run_classification and run_glue)')
  .option('--scheme <s>', 'NER tag scheme of the files: iob1 or iob2 (default: iob2)')
  .option('--bf16', 'bfloat16 mixed precision (autocast)')
  .option('--fp16', 'float16 mixed precision with loss scaling (CUDA)')
  .option('--rdrop <a>', 'R-Drop (classification, ner): each batch twice with different dropout, plus a times the symmetric KL of the two predictions (default: 0)', number)
  .option('--nproc <n>', 'data-parallel over n local processes (cores / n threads each); the batch size is per process', integer, 1)
  .action(async (model: string, o: Record<string, string | undefined>) => {
    if (await dataParallel(Number(o.nproc))) return;
    const { finetuneClassification, finetuneNer, finetuneQa } = await import('./recipes/finetune');
    const num = (k: string) => (o[k] === undefined ? undefined : Number(o[k]));
    const opts = {
      model, train: o.train!, dev: o.dev!, out: o.out!, epochs: num('epochs'), maxSteps: num('maxSteps'), learningRate: num('lr'), batchSize: num('batchSize'), maxLength: num('maxLength'),
      evalSteps: num('evalSteps'), patience: num('patience'), timeBudgetSec: num('seconds'), limit: num('limit'), bf16: !!o.bf16, fp16: !!o.fp16,
      seed: num('seed'), weightDecay: num('weightDecay'), warmupRatio: num('warmupRatio'), groupByLength: !!o.groupByLength, saveSteps: num('saveSteps'), resumeFrom: o.resume, rDrop: num('rdrop'),
      textColumn: o.textColumn, textPairColumn: o.textPairColumn, labelColumn: o.labelColumn, problemType: o.problemType as import('./models/config').ProblemType | undefined, ignoreMismatchedSizes: !!o.ignoreMismatchedSizes,
    };
    if (!['classification', 'ner', 'qa'].includes(o.task!)) throw new Error(`--task must be classification, ner or qa, got '${o.task}'`);
    const r = o.task === 'ner' ? await finetuneNer({ ...opts, scheme: o.scheme as 'iob1' | 'iob2' })
      : o.task === 'qa' ? await finetuneQa({ ...opts, docStride: num('docStride') })
      : await finetuneClassification(opts);
    if (!(await leaveGroup())) return;
    console.log(JSON.stringify(r));
    require('fs').writeFileSync(require('path').join(r.savedTo, 'report.json'), JSON.stringify(r, null, 2));
  });

program
  .command('run')
  .description("torchrun for Node: starts the ranks of a data-parallel job with torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, ...); a .js command runs on this Node")
  .argument('<command>', 'a script (.js) or an executable')
  .argument('[args...]', 'its arguments')
  .option('--nproc-per-node <n>', 'ranks on this node', integer, 1)
  .option('--nnodes <n>', 'nodes', integer, 1)
  .option('--node-rank <n>', "this node's index", integer, 0)
  .option('--master-addr <host>', "rank 0's address (the rendezvous store)", '127.0.0.1')
  .option('--master-port <n>', "rank 0's port", integer, 29500)
  .option('--max-restarts <n>', 'when a rank fails, restart every local rank up to n times', integer, 0)
  .option('--local-addr <host>', "the address this node's ranks listen on (default: the master's when it is loopback, else the host's)")
  .passThroughOptions()
  .action(async (cmd: string, args: string[], o: { nprocPerNode: number; nnodes: number; nodeRank: number; masterAddr: string; masterPort: number; maxRestarts: number; localAddr?: string }) => {
    const { launch, LaunchError } = await import('./distributed/launch');
    const js = /\.(c|m)?js$/.test(cmd);
    try {
      await launch(js ? process.execPath : cmd, js ? [cmd, ...args] : args, { nprocPerNode: o.nprocPerNode, nnodes: o.nnodes, nodeRank: o.nodeRank, masterAddr: o.masterAddr, masterPort: o.masterPort, maxRestarts: o.maxRestarts, localAddr: o.localAddr });
    } catch (e) {
      if (!(e instanceof LaunchError)) throw e;
      console.error(`torchbert run: ${e.message}`);
      process.exit(e.exitCode && e.exitCode > 0 ? e.exitCode : 1);
    }
  });

program
  .command('predict')
  .description('classify sentences or sentence pairs with a sequence-classification model folder (config.json, model.safetensors, tokenizer files); a regression model prints its value, a multi-label model every label whose probability passes --threshold (texts that start with - go after --)')
  .argument('<model>', 'model folder or Hub name')
  .argument('[texts...]', 'sentences to classify (or --file)')
  .option('--text-pair <texts...>', "each text's second sentence, for a model fine-tuned on sentence pairs (as many as the texts)")
  .option('--file <file>', 'the texts from a file instead: CSV, TSV or JSONL with the columns finetune reads (labels unused), else one a line (- for standard input)')
  .option('--json', 'one JSON object a line: the text (and text_pair), then label and score, or for a multi-label model the labels that pass')
  .option('--threshold <p>', 'multi-label models: the probability a label must pass (default: 0.5)', number)
  .action(async (model: string, texts: string[], o: { textPair?: string[]; file?: string; json?: boolean; threshold?: number }) => {
    if (o.file !== undefined && (texts.length || o.textPair)) throw new Error('--file: give the texts (and pairs) either in the file or as arguments, not both');
    if (o.file === undefined && !texts.length) throw new Error('no texts: give them as arguments or with --file');
    if (o.textPair && o.textPair.length !== texts.length) throw new Error(`--text-pair: ${o.textPair.length} second sentences for ${texts.length} texts`);
    if (o.threshold !== undefined && !(o.threshold > 0 && o.threshold < 1)) throw new RangeError(`--threshold must be a probability in (0, 1), got ${o.threshold}`);
    const { readTexts } = await import('./recipes/finetune');
    const rows = o.file !== undefined ? readTexts(o.file) : texts.map((text, i) => (o.textPair ? { text, textPair: o.textPair[i] } : { text }));
    if (!rows.length) throw new Error(`${o.file === '-' ? 'standard input' : o.file}: no texts`);
    const { pipeline } = await import('./pipelines');
    await using clf = await pipeline('text-classification', model);
    const multi = clf.model.config.fields.problem_type === 'multi_label_classification';
    if (o.threshold !== undefined && !multi) throw new Error(`--threshold: ${model} is not a multi-label model`);
    const shown = (r: { text: string; textPair?: string }) => (r.textPair === undefined ? r.text : `${r.text} | ${r.textPair}`);
    const json = (r: { text: string; textPair?: string }) => ({ text: r.text, ...(r.textPair === undefined ? {} : { text_pair: r.textPair }) });
    // in chunks, so that a long file is printed as it is classified and never held whole as results
    for (let i = 0; i < rows.length; i += 256) {
      const chunk = rows.slice(i, i + 256);
      if (multi) {
        // every label's sigmoid, as HF's pipeline gives them with top_k=None; those past the threshold are the row's labels
        const all = (await clf.call(chunk, { topK: null })) as import('./pipelines').LabelScore[][];
        all.forEach((ls, k) => {
          const on = ls.filter((l) => l.score > (o.threshold ?? 0.5));
          console.log(o.json ? JSON.stringify({ ...json(chunk[k]), labels: on }) : `${on.length ? on.map((l) => `${l.label} ${l.score.toFixed(3)}`).join(', ') : '(none)'}  ${shown(chunk[k])}`);
        });
      } else {
        const best = (await clf.call(chunk)) as import('./pipelines').LabelScore[];
        best.forEach((b, k) => console.log(o.json ? JSON.stringify({ ...json(chunk[k]), ...b }) : `${b.label.padEnd(10)} ${b.score.toFixed(3)}  ${shown(chunk[k])}`));
      }
    }
  });

program
  .command('eval')
  .description('a sequence-classification model on a labelled file: accuracy, F1 and MCC, Pearson, Spearman and MSE for a regression model, micro and macro F1, subset accuracy and Hamming loss for a multi-label one (default file: SST-2 dev)')
  .argument('<model>', 'model folder or Hub name')
  .option('--file <file>', 'labelled TSV/CSV/JSONL, as finetune reads them', `${process.env.TORCHBERT_DATA ?? '../shared/data'}/sst2/dev.tsv`)
  .option('--text-column <name>', 'the text column (default: text, sentence or sentence1)')
  .option('--text-pair-column <name>', 'the second text of a sentence pair (default: text_pair or sentence2 where the file has one)')
  .option('--label-column <name>', 'the label column (default: label)')
  .option('--quantize <q>', 'int8: evaluate the int8 dynamically quantised model')
  .option('--threshold <p>', 'multi-label models: the probability a label must pass (default: 0.5)', number)
  .action(async (model: string, o: { file: string; quantize?: 'int8'; textColumn?: string; textPairColumn?: string; labelColumn?: string; threshold?: number }) => {
    const { BertTokenizer } = await import('./tokenizer');
    const { fromPretrained } = await import('./models/bert');
    const { readLabelled, encodeLabelled, regressionTarget, multiHot, multiLabelDecisions, classificationFeatures, regressionMetrics, classMetrics, multiLabelMetrics } = await import('./recipes/finetune');
    const { predictClasses, predictLogits, padCollate } = await import('./train');
    const rows = readLabelled(o.file, o);
    if (!rows.length) throw new Error(`${o.file}: no examples`);
    const tok = await BertTokenizer.fromPretrained(model);
    const m = await fromPretrained(model, { kind: 'BertForSequenceClassification', quantize: o.quantize });
    const c = m.config.fields;
    const multi = c.problem_type === 'multi_label_classification';
    if (o.threshold !== undefined && !(multi && o.threshold > 0 && o.threshold < 1)) throw new RangeError(multi ? `--threshold must be a probability in (0, 1), got ${o.threshold}` : `--threshold: ${model} is not a multi-label model`);
    const examples = encodeLabelled(tok, rows, c.max_position_embeddings);
    const pairs = rows[0].textPair !== undefined;
    const batches = [];
    for (let i = 0; i < examples.length; i += 64) batches.push(padCollate(examples.slice(i, i + 64), tok.padTokenId));
    const features = classificationFeatures(pairs);
    const head = { file: o.file, ...(o.quantize ? { quantize: o.quantize } : {}), examples: rows.length };
    if (c.problem_type === 'regression' || c.num_labels === 1) {
      const gold = rows.map((r, i) => regressionTarget(r.label, o.file, i));
      const pred = (await predictLogits(m, batches, features)).map((r) => r[0]);
      console.log(JSON.stringify({ ...head, ...regressionMetrics(pred, gold) }));
      return;
    }
    const label2id = new Map(Object.entries(c.label2id ?? {}).map(([k, v]) => [k, Number(v)]));
    if (multi) {
      const gold = rows.map((r, i) => multiHot(r.label, label2id, o.file, i));
      const pred = multiLabelDecisions(await predictLogits(m, batches, features), o.threshold);
      console.log(JSON.stringify({ ...head, ...multiLabelMetrics(pred, gold) }));
      return;
    }
    // a label the model names (its label2id), else a class index as SST-2's 0 and 1 are
    const gold = rows.map((r, i) => {
      if (typeof r.label !== 'string') throw new Error(`${o.file}: example ${i + 1}: a list of labels, and ${model} is not a multi-label model`);
      const id = label2id.get(r.label) ?? (/^\d+$/.test(r.label) && Number(r.label) < c.num_labels! ? Number(r.label) : undefined);
      if (id === undefined) throw new Error(`${o.file}: example ${i + 1}: label '${r.label}' is none of the model's (${[...label2id.keys()].join(', ')}) nor a class index below ${c.num_labels}`);
      return id;
    });
    const pred = await predictClasses(m, batches, features);
    console.log(JSON.stringify({ ...head, ...classMetrics(pred, gold, c.num_labels!) }));
  });

program
  .command('serve')
  .description('serve a model over HTTP: /v1/classify, /v1/embed, /v1/ner, /v1/fill-mask, /v1/qa (what the model supports), /health, /ready, /metrics, /openapi.json')
  .argument('<model>', 'model folder or Hub name')
  .option('--host <host>', 'address to bind', '127.0.0.1')
  .option('--port <n>', 'port', integer, 8080)
  .option('--workers <n>', 'processes sharing the port, each with its own model and cores / workers threads', integer, 1)
  .option('--threads <n>', 'intra-op threads per process (default: cores / workers)', integer)
  .option('--device <device>', 'cpu or cuda[:N]')
  .option('--quantize <q>', 'int8: int8 dynamic quantisation of the linear layers (CPU only)')
  .option('--no-prepack', 'fp32 on the CPU: keep libtorch GEMM rather than prepacked linear weights (prepack())')
  .option('--dtype <dtype>', 'float32 or bf16 (bf16 on CPUs with bf16 units, or CUDA)')
  .option('--weight-layouts <mode>', 'prepacked weights: auto (a second layout where it measured faster) or one (one per layer: less memory)', 'auto')
  .option('--no-mmap', 'read the checkpoint into memory rather than map it (mapped, the weights kept as stored are shared by every process serving the files)')
  .option('--no-graph-optimize', "TorchScript's graph executor optimisations off: no optimised plan kept per model (less memory), one-sentence calls a little slower")
  .option('--embeddings-by-rows', "mapped checkpoint: the word embeddings paged in by the rows looked up, not by the kernel's fault-around (less memory; a first use of a page reads the file)")
  .option('--primitive-cache <n>', "compiled oneDNN and ideep primitives kept, per cache, replacing ONEDNN_PRIMITIVE_CACHE_CAPACITY and LRU_CACHE_CAPACITY: one per batch shape, about half a MB each at bert-base's widths, and a server's shapes rarely repeat", integer, SERVE_PRIMITIVE_CACHE)
  .option('--low-memory', `the least memory, at some throughput: ${asFlags(LOW_MEMORY_OPTIONS)} (options given win)`)
  .option('--max-batch-size <n>', 'rows per model call', integer, 16)
  .option('--max-batch-tokens <n>', 'padded tokens per model call (rows x longest row)', integer, 4096)
  .option('--max-wait-ms <n>', 'how long a row waits for others to join its batch', integer, 2)
  .option('--max-queue <n>', 'rows waiting per task before 429', integer, 1024)
  .option('--body-limit <bytes>', 'largest request body (413 beyond)', integer, 1048576)
  .option('--max-items <n>', 'inputs per request (413 beyond)', integer, 256)
  .option('--max-text-chars <n>', 'characters per text (413 beyond)', integer, 20000)
  .option('--on-long <mode>', "texts over the model's token limit: truncate or reject (413)", 'truncate')
  .option('--cpu-cache-mb <n>', 'MB of freed activation blocks kept for reuse (default: twice the largest working set of a batch so far, as measured)', number)
  .option('--cpu-cache-batches <x>', 'without --cpu-cache-mb: freed activation blocks kept, as a multiple of the largest working set of a batch so far', number, 2)
  .option('--log', 'log every request')
  .action(async (model: string, o: Record<string, string | number | boolean | undefined>, cmd: Command) => {
    if (o.lowMemory) {
      for (const [k, v] of Object.entries(LOW_MEMORY_OPTIONS)) if (cmd.getOptionValueSource(k) !== 'cli') o[k] = v;
    }
    const cluster = await import('cluster');
    const os = await import('os');
    const workers = Number(o.workers);
    if (!Number.isInteger(workers) || workers < 1) throw new Error(`--workers must be a positive integer, got ${o.workers}`);
    const threads = o.threads ? Number(o.threads) : Math.max(1, Math.floor(os.availableParallelism() / workers));
    if (workers > 1 && cluster.default.isPrimary) {
      // The primary only forks and supervises; workers share the listening socket.
      let stopping = false;
      const fork = () => cluster.default.fork({ TORCHBERT_WORKER: '1' });
      for (let i = 0; i < workers; i++) fork();
      cluster.default.on('exit', (w, code, signal) => {
        if (stopping) return;
        console.error(`torchbert: worker ${w.process.pid} exited (${signal ?? code}); starting another`);
        fork();
      });
      const stop = () => {
        if (stopping) return;
        stopping = true;
        for (const w of Object.values(cluster.default.workers ?? {})) w?.process.kill('SIGTERM');
        const check = setInterval(() => {
          if (Object.keys(cluster.default.workers ?? {}).length === 0) {
            clearInterval(check);
            process.exit(0);
          }
        }, 50);
      };
      process.on('SIGTERM', stop);
      process.on('SIGINT', stop);
      return;
    }
    const { serve } = await import('./serve/server');
    const torch = await import('./torch');
    const num = (k: string) => Number(o[k]);
    if (o.graphOptimize === false) torch.setGraphExecutorOptimize(false);
    // Before the model loads: the caches read it at oneDNN's first use.
    torch.setPrimitiveCacheCapacity(num('primitiveCache'));
    const s = await serve({
      model, host: o.host as string, port: num('port'), device: o.device as string | undefined, quantize: o.quantize as 'int8' | undefined, prepack: o.prepack === false ? false : undefined, weightLayouts: o.weightLayouts as 'auto' | 'one', mmap: o.mmap === false ? false : undefined, embeddingsByRows: !!o.embeddingsByRows, threads,
      dtype: o.dtype as 'float32' | 'bf16' | undefined,
      batch: { maxBatchSize: num('maxBatchSize'), maxBatchTokens: num('maxBatchTokens'), maxWaitMs: num('maxWaitMs'), maxQueue: num('maxQueue') },
      bodyLimit: num('bodyLimit'), maxItems: num('maxItems'), maxTextChars: num('maxTextChars'), onLongInput: o.onLong as 'truncate' | 'reject', logger: !!o.log,
      cpuCacheMb: o.cpuCacheMb === undefined ? undefined : num('cpuCacheMb'), cpuCacheBatches: num('cpuCacheBatches'),
    });
    await s.warm;
    console.log(`torchbert: serving ${model} (${s.tasks.join(', ')}) on ${s.url} [pid ${process.pid}, ${threads} threads]`);
    const stop = async () => {
      await s.close();
      process.exit(0);
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });

const lt = program.command('libtorch').description('find or download libtorch');
lt.command('where')
  .description('print the libtorch torchbert uses and where it came from')
  .action(() => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { requireLibtorch } = require('../scripts/find-libtorch.js');
    console.log(JSON.stringify(requireLibtorch(), null, 2));
  });
lt.command('download')
  .description('download LibTorch from pytorch.org into the cache (~/.cache/torchbert, or TORCHBERT_CACHE); honours HTTP(S)_PROXY, NO_PROXY and TORCHBERT_OFFLINE')
  .option('--version <v>', 'LibTorch version', '2.13.0')
  .option('--flavour <f>', 'cpu, cu126, cu128, ...', 'cpu')
  .option('--url <url>', 'download from here instead of pytorch.org (a mirror)')
  .option('--sha256 <hex>', 'expected SHA-256 of the zip (or TORCHBERT_LIBTORCH_SHA256)')
  .option('--allow-unverified', 'download without a checksum')
  .action(async (o: { version: string; flavour: string; url?: string; sha256?: string; allowUnverified?: boolean }) => {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const { downloadLibtorch } = require('../scripts/download-libtorch.js');
    // The same progress bar as training (cli-progress), on a terminal; a line per 100 MB otherwise.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const progress = require('cli-progress');
    const bar = process.stderr.isTTY ? new progress.SingleBar({ format: 'libtorch |{bar}| {value}/{total} MB {percentage}% eta {eta_formatted}', stream: process.stderr, hideCursor: true }, progress.Presets.shades_classic) : null;
    let shown = -1;
    let r: { cached: boolean; root: string };
    try {
      r = await downloadLibtorch({
        ...o,
        onProgress: (got: number, total: number) => {
          const mb = Math.floor(got / 1e6);
          if (bar) {
            if (shown < 0) bar.start(Math.ceil(total / 1e6) || mb, 0);
            bar.update(mb);
          } else if (Math.floor(mb / 100) > Math.floor(shown / 100)) {
            process.stderr.write(`libtorch: ${mb} MB${total ? ` of ${Math.ceil(total / 1e6)} MB` : ''}\n`);
          }
          shown = mb;
        },
      });
    } finally {
      bar?.stop();
    }
    console.log(`${r.cached ? 'already in the cache' : 'installed'}: ${r.root}`);
  });

program.parseAsync(process.argv).catch((e: Error) => {
  console.error(`torchbert: ${e.message}`);
  process.exit(1);
});
