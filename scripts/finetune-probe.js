#!/usr/bin/env node
// Issue 20's fine-tuning probes on an encoder the main job pre-trained (OUT/pretrained), without
// pre-training again. Measurements for docs/results.md, not part of the library.
//
//   node scripts/finetune-probe.js pooling DIR SEED cls|mean|prompt [--epochs N] [--lr X] [--lr-embeddings X] [--dropout X] [--freeze PREFIX]... [--label-smoothing X] [--ema D] [--rdrop A [--copies K]] [--aux-mlm W] [--shift-positions N] [--distill-bow W] [--pseudo-labels FILE]... [--fgm EPS] [--roots K] [--inject-bow A] [--token-mask P] [--teacher MODEL... [--teacher-weight W]] [--rt-polarity] [--l2sp C] [--layer-decay D] [--swa S] [--mixup A] [--schedule NAME] [--sam RHO] [--save-model OUT] [--save-probs FILE]
//     fine-tunes DIR by the job's first recipe (one epoch of SST-2, AdamW lr 4e-4, 6% warmup, batch 32, the
//     seed's head weights and batches; the job's since 5 December is --epochs 2 --lr 1e-4) with the
//     classifier on HF's pooler ([CLS], 'cls') or on the mean of the last hidden states over the real tokens
//     ('mean', dropout 0.1 as HF's head) or, 'prompt', on DIR's pre-trained masked-LM head scoring 'bad' and
//     'good' at the [MASK] of 'it was [MASK] .' put before each sentence (prompt-based fine-tuning, Gao et
//     al. 2021: the head pre-training trained is kept, not replaced by a new classifier), and prints dev accuracy; --epochs: that many epochs, the schedule
//     over all of them; --dropout: BERT's hidden and attention dropout (0.1); --freeze: parameters whose
//     names start with PREFIX keep their pre-trained values; --lr-embeddings: the peak rate of
//     bert.embeddings.* (the other parameters keep --lr); --save-probs: the dev sentences' class
//     probabilities and gold labels to FILE (JSON), for ensembles of fine-tunings; --label-smoothing: of the
//     cross-entropy; --ema D: score an exponential moving average of the weights (decay D) instead of the
//     last ones; --rdrop A: R-Drop as the job has it since 5 December (tb.train.rDropLoss; A = 0 is the
//     doubled batch with plain cross-entropy); --copies K: R-Drop over K copies of each batch (default 2); without it, plain cross-entropy on the batch;
//     --aux-mlm W: add W times the masked-LM loss of a masked copy of each batch (15%, BERT's 80/10/10), through
//     DIR's pre-trained masked-LM head (trained on, the decoder tied to the word embeddings): an auxiliary
//     language-model term through fine-tuning (Chronopoulou et al. 2019); --shift-positions N: each training
//     row's tokens after [CLS] moved right by a random offset (the row's last within position N - 1), so that
//     the short phrases train the position embeddings the long dev sentences use; --fgm EPS: adversarial
//     training on the word embeddings (Miyato et al. 2017, fast-gradient form: a second pass of each batch on the
//     embedding table moved by EPS along its gradient; twice the cost); --roots K: the training sentences (the
//     phrases no other phrase contains) K times each; --inject-bow A: the bag-of-words regression's word-piece
//     scores written into the word embeddings along one random direction before fine-tuning (largest move A);
//     --token-mask P: a fresh share P of each training row's word pieces corrupted as the masked LM's are;
//     --teacher MODEL: fine-tuned classifiers (saved by --save-model) as teachers, each R-Drop copy's loss adding
//     W (--teacher-weight, 1) times KL(the teachers' mean probabilities || the student's) on the training row;
//     --save-model OUT: the fine-tuned classifier and its tokenizer to OUT; --rt-polarity: the Rotten Tomatoes
//     snippets that are not SST-2 training rows and overlap no dev sentence join the training rows (rtSupplement);
//     --l2sp C: L2-SP, each step pulling every pre-trained parameter back toward its starting value by lr x C of the distance;
//     --layer-decay D: layer-wise rate decay, the head at --lr and each layer below D times the one above, the
//     embeddings last; --swa S: score the mean of the weights after every 10th step past share S of the steps
//     (tail SWA); --mixup A: mixup of the pooled [CLS] vectors and labels, lambda ~ Beta(A, A), inside R-Drop;
//     --schedule NAME: the rate's schedule after the warmup (the Trainer's names; linear by default);
//     --sam RHO: sharpness-aware minimisation (Foret et al. 2021): each step's gradient taken at the weights moved
//     RHO along the batch's gradient (over all parameters' norm), then applied at the weights; about 2.7 times the time
//   node scripts/finetune-probe.js spans DIR SEED [--epochs N] [--lr X] [--span-weight W] [--save OUT]
//     fine-tunes DIR on the training sentences with every phrase they contain scored in place (the mean of its
//     word pieces' last hidden states through the model's pooler and classifier, weight W, default 1) beside
//     the sentence's [CLS]; 10 epochs of the 6,885 sentences at 1e-4 by default; --save: the fine-tuned model
//     and tokenizer to OUT, for `pooling` to fine-tune further
//   node scripts/finetune-probe.js scores MODEL FILE
//     the dev sentences' class probabilities of a fine-tuned classifier the job saved (OUT/sst2-model) to FILE
//   node scripts/finetune-probe.js bow DIR FILE [--rt-polarity]
//     the job's bag-of-words regression on DIR's vocabulary, its dev probabilities to FILE: beside `scores`,
//     whether the bag of words knows what the BERT does not
//   node scripts/finetune-probe.js ensemble FILE...
//     dev accuracy of each saved model and of the mean of their probabilities
//   node scripts/finetune-probe.js spread DIR...
//     how much the encoder's last hidden states at [CLS] and at the second word piece vary across 64 dev
//     sentences (standard deviation per dimension, averaged): a collapsed encoder gives every sentence
//     nearly the same vectors
// Needs the built package (npm run build); the data folder from TORCHBERT_DATA (default ../shared/data).
'use strict';
const fs = require('fs');
const path = require('path');
const { parseArgs } = require('util');
const tb = require('..');
const { F } = tb;
const { accuracy } = tb.train;
const { fromPretrained } = tb.models;
// the job's own SST-2 encoding and fine-tuning setup (lib/recipes/scratch.ts), so a probe varies only what it names
const { sst2Task, sst2FineTuning, trainBagOfWords, bagOfWordsLogits } = require('../dist/recipes/scratch');
const { loadFile } = require('../dist/safetensors');

const DATA = process.env.TORCHBERT_DATA || path.join(__dirname, '..', '..', 'shared', 'data');
// each split read once per run (rows are never mutated: callers spread or map them)
const splits = new Map();
const sst2 = (split) => {
  if (!splits.has(split)) splits.set(split, tb.datasets.readSst2(path.join(DATA, 'sst2', `${split}.tsv`)));
  return splits.get(split);
};
// SST-2's test sentences (GLUE gives them no labels), as rows of label -1
const sst2Test = () => tb.datasets.readDelimited(path.join(DATA, 'sst2', 'test.tsv')).map((r) => ({ text: r.sentence, label: -1 }));
const rowsOf = (split) => {
  if (split !== 'dev' && split !== 'test') throw new RangeError(`--split must be dev or test, got ${split}`);
  return split === 'dev' ? sst2('dev') : sst2Test();
};

// --rt-polarity: the Rotten Tomatoes polarity snippets (Pang and Lee 2005, what SST was built from) that are not
// already SST-2 training rows and overlap no dev sentence (tb.datasets.rtPolarityOutside), with their RT labels
function rtSupplement() {
  const flat = tb.datasets.lettersAndDigits;
  const train = sst2('train');
  const trainLabel = new Map(train.map((r) => [flat(r.text), r.label]));
  const rt = tb.datasets.readRtPolarity(path.join(DATA, 'rt-polarity'));
  const known = rt.filter((r) => trainLabel.has(flat(r.text)));
  console.log(`Rotten Tomatoes: ${known.length} of its ${rt.length} snippets are SST-2 training rows, labelled alike in ${known.filter((r) => trainLabel.get(flat(r.text)) === r.label).length}`);
  return tb.datasets.rtPolarityOutside(rt, train.map((r) => r.text), sst2('dev').map((r) => r.text));
}

// the encoder's word-embedding table, the parameter --aux-mlm ties its decoder to and --fgm, --inject-bow move
const wordEmbeddings = (m) => m.namedParameters().find(([n]) => n === 'bert.embeddings.word_embeddings.weight')[1];

// DIR's pre-trained masked-LM head (HF's BertLMPredictionHead: the transform and the decoder's bias; the decoder
// is tied to the word embeddings), as tensors to train
async function loadLmHead(dir, what) {
  const file = path.join(dir, 'model.safetensors');
  const P = 'cls.predictions.';
  const sd = await loadFile(file, { only: new Set(['transform.dense.weight', 'transform.dense.bias', 'transform.LayerNorm.weight', 'transform.LayerNorm.bias', 'bias'].map((k) => P + k)) });
  if (sd.size !== 5) throw new Error(`${what}: ${file} has no complete masked-LM head (found ${[...sd.keys()].join(', ') || 'none of it'})`);
  return Object.fromEntries([...sd].map(([k, t]) => [k.slice(P.length), tb.keep(t.requiresGrad_(true))]));
}

// prompt mode's template (LM-BFF's for SST-2, Gao et al. 2021, before the sentence so that truncation never
// cuts it) and label words, negative then positive
const PROMPT = 'it was [MASK] .';
const LABEL_WORDS = ['bad', 'good'];

// the job's bag-of-words regression on SST-2's training split (and on extra rows), handed to use and freed after it
async function withBagOfWords(tok, use, extra = []) {
  const r = await trainBagOfWords(tok, [...sst2('train'), ...extra]);
  try {
    return await use(r);
  } finally {
    r.w.dispose();
    r.b.dispose();
  }
}

// The training rows that are whole sentences (tb.datasets.sst2FullSentences: the rows no other row contains),
// each once, in their order in the split.
function rootsOf(rows) {
  const full = new Set(tb.datasets.sst2FullSentences(rows.map((r) => r.text)));
  return rows.filter((r) => full.delete(tb.datasets.singleSpaced(r.text)));
}

// Each row's predicted class and probability of 'positive', batch by batch, from logits(inputs) without gradients.
async function classify(batches, logits) {
  const [pred, positive] = [[], []];
  for (const bt of batches) {
    const scope = new tb.DisposeScope();
    await scope.run(async () => {
      const l = await tb.noGrad(() => logits({ inputIds: bt.inputIds, attentionMask: bt.attentionMask }));
      for (const v of await l.argmax(-1).data()) pred.push(Number(v));
      for (const v of await l.softmax(-1).select(1, 1).data()) positive.push(Number(v));
    });
    scope.dispose();
  }
  return { pred, positive };
}

// { dir, seed?, positive, gold }: the sentences' probability of 'positive' and gold labels, the format `ensemble` reads.
const writeProbs = (file, run) => fs.writeFileSync(file, JSON.stringify(run));

// Each of the Trainer's weight-decay groups split by the tier tierOf(name) gives each parameter, tier k at peak
// rate rates[k] (empty parts dropped); the schedule, built when training starts, scales each group's own peak.
// The groups are weightDecayGroups(namedParameters()): the same call over the names gives each parameter's name
// by position (each namedParameters() call makes new tensor handles, so not by identity).
function splitByRate(m, trainer, rates, tierOf) {
  const names = tb.train.weightDecayGroups(m.namedParameters().map(([n]) => [n, n]), 0).map((g) => g.params);
  const groups = trainer.optimizer.paramGroups;
  for (const [gi, g] of groups.splice(0, groups.length).entries()) {
    rates.forEach((rate, k) => {
      const params = g.params.filter((_, i) => tierOf(names[gi][i]) === k);
      if (params.length) groups.push({ ...g, params, lr: rate, initialLr: rate });
    });
  }
}

async function pooling(dir, seed, mode, { epochs = 1, lr = 4e-4, lrEmbeddings, dropout = 0.1, freeze = [], saveProbs, labelSmoothing = 0, ema, rdrop, copies = 2, auxMlm, shiftPositions, distillBow, pseudoLabels = [], fgm, roots = 1, injectBow, tokenMask, teachers = [], teacherWeight = 1, saveModel, rtPolarity = false, l2sp, layerDecay, swa, mixup, schedule, sam } = {}) {
  if (!['cls', 'mean', 'prompt'].includes(mode)) throw new TypeError(`pooling must be 'cls', 'mean' or 'prompt', got ${mode}`);
  if (mode === 'prompt' && (auxMlm !== undefined || tokenMask !== undefined || distillBow !== undefined || teachers.length || injectBow !== undefined)) throw new RangeError('prompt: not with --aux-mlm, --token-mask (one [MASK] a row), --distill-bow, --teacher or --inject-bow');
  if (!(epochs > 0)) throw new RangeError(`--epochs must be a positive number, got ${epochs}`);
  if (l2sp !== undefined && !(l2sp > 0)) throw new RangeError(`--l2sp takes a positive strength, got ${l2sp}`);
  if (layerDecay !== undefined && !(layerDecay > 0 && layerDecay <= 1)) throw new RangeError(`--layer-decay takes a factor in (0, 1], got ${layerDecay}`);
  if (layerDecay !== undefined && (lrEmbeddings !== undefined || mode === 'prompt' || auxMlm !== undefined)) throw new RangeError('--layer-decay: not with --lr-embeddings (each sets the embeddings\' rate), prompt or --aux-mlm (the masked-LM head has no depth among the layers)');
  if (swa !== undefined && !(swa >= 0 && swa < 1)) throw new RangeError(`--swa takes the share of the steps before averaging starts, in [0, 1), got ${swa}`);
  if (swa !== undefined && ema !== undefined) throw new RangeError('--swa: not with --ema (each replaces the weights scored)');
  if (mixup !== undefined && !(mixup > 0)) throw new RangeError(`--mixup takes a positive Beta parameter, got ${mixup}`);
  if (mixup !== undefined && (mode !== 'cls' || rdrop === undefined || copies !== 2 || fgm !== undefined || teachers.length || distillBow !== undefined || auxMlm !== undefined)) throw new RangeError('--mixup: cls only, with --rdrop over 2 copies (it replaces R-Drop\'s loss), not with --fgm, --teacher, --distill-bow or --aux-mlm');
  if (!(lr > 0)) throw new RangeError(`--lr must be a positive number, got ${lr}`);
  if (lrEmbeddings !== undefined && !(lrEmbeddings > 0)) throw new RangeError(`--lr-embeddings must be a positive number, got ${lrEmbeddings}`);
  if (!(dropout >= 0 && dropout < 1)) throw new RangeError(`--dropout must be in [0, 1), got ${dropout}`);
  if (!(labelSmoothing >= 0 && labelSmoothing < 1)) throw new RangeError(`--label-smoothing must be in [0, 1), got ${labelSmoothing}`);
  if (ema !== undefined && !(ema > 0 && ema < 1)) throw new RangeError(`--ema must be in (0, 1), got ${ema}`);
  if (rdrop !== undefined && !(rdrop >= 0)) throw new RangeError(`--rdrop must be a non-negative number, got ${rdrop}`);
  if (!(Number.isInteger(copies) && copies >= 2) || (copies !== 2 && rdrop === undefined)) throw new RangeError(`--copies takes an integer of at least 2, with --rdrop, got ${copies}`);
  if (shiftPositions !== undefined && !(Number.isInteger(shiftPositions) && shiftPositions >= 2 && shiftPositions <= 128)) throw new RangeError(`--shift-positions takes an integer in [2, 128] (the encoders' max_position_embeddings), got ${shiftPositions}`);
  if (distillBow !== undefined && !(distillBow > 0)) throw new RangeError(`--distill-bow takes a positive weight, got ${distillBow}`);
  if (teachers.length && (distillBow !== undefined || rdrop === undefined)) throw new RangeError('--teacher needs --rdrop (the student\'s logits are those of R-Drop\'s forward) and not --distill-bow (one teacher at a time)');
  if (!(teacherWeight > 0)) throw new RangeError(`--teacher-weight takes a positive weight, got ${teacherWeight}`);
  if (distillBow !== undefined && rdrop === undefined) throw new RangeError('--distill-bow needs --rdrop: the student\'s logits are those of R-Drop\'s forward');
  if (injectBow !== undefined && !(injectBow > 0)) throw new RangeError(`--inject-bow takes a positive scale, got ${injectBow}`);
  if (tokenMask !== undefined && !(tokenMask > 0 && tokenMask < 1)) throw new RangeError(`--token-mask takes a share in (0, 1), got ${tokenMask}`);
  if (tokenMask !== undefined && shiftPositions !== undefined) throw new RangeError('--token-mask: not with --shift-positions (each replaces the inputs)');
  if (!(Number.isInteger(roots) && roots >= 1)) throw new RangeError(`--roots takes a positive integer, got ${roots}`);
  if (sam !== undefined && !(sam > 0)) throw new RangeError(`--sam takes a positive radius, got ${sam}`);
  if (sam !== undefined && (fgm !== undefined || mixup !== undefined || distillBow !== undefined || teachers.length || auxMlm !== undefined)) throw new RangeError('--sam: not with --fgm, --mixup, --distill-bow, --teacher or --aux-mlm');
  if (fgm !== undefined && !(fgm > 0)) throw new RangeError(`--fgm takes a positive radius, got ${fgm}`);
  if (fgm !== undefined && (distillBow !== undefined || teachers.length || auxMlm !== undefined)) throw new RangeError('--fgm: not with --distill-bow, --teacher or --aux-mlm (each replaces the loss)');
  if (teachers.length && tokenMask !== undefined) throw new RangeError('--teacher: not with --token-mask (the teachers score the uncorrupted rows)');
  if (auxMlm !== undefined && !(auxMlm > 0)) throw new RangeError(`--aux-mlm must be a positive number, got ${auxMlm}`);
  if (rdrop !== undefined && (mode === 'mean' || labelSmoothing)) throw new RangeError('--rdrop: the library\'s R-Drop loss reads the model\'s own head (cls) or the prompt\'s, with plain cross-entropy');
  const tok = await tb.BertTokenizer.fromPretrained(dir);
  // --pseudo-labels: SST-2's unlabelled test sentences join the training phrases, each labelled by the mean of
  // the files' probabilities (written by `scores` and `bow` with --split test): self-training on in-domain
  // sentences shaped like the dev set's, the labels from a teacher the job could have (its BERT and its baseline)
  const pseudo = [];
  if (pseudoLabels.length) {
    const test = sst2Test();
    const runs = pseudoLabels.map((f) => JSON.parse(fs.readFileSync(f, 'utf8')));
    runs.forEach((r, k) => { if (r.positive.length !== test.length || r.gold.some((g) => g !== -1)) throw new Error(`--pseudo-labels: ${pseudoLabels[k]} does not hold the ${test.length} test sentences (write it with --split test)`); });
    test.forEach((r, i) => pseudo.push({ text: r.text, label: runs.reduce((a, x) => a + x.positive[i], 0) / runs.length > 0.5 ? 1 : 0 }));
  }
  // --roots K: the training sentences (the phrases no other phrase contains, 6,885, shaped like the dev
  // sentences: median 19 words against the phrases' 7) K times each instead of once
  const train = sst2('train');
  const extra = roots > 1 ? rootsOf(train).flatMap((r) => Array(roots - 1).fill(r)) : [];
  const rt = rtPolarity ? rtSupplement() : [];
  // prompt: every row, training and dev, read as the template followed by the sentence
  const prompted = (rows) => (mode === 'prompt' ? rows.map((r) => ({ ...r, text: `${PROMPT} ${r.text}` })) : rows);
  const task = sst2Task(tok, prompted([...train, ...extra, ...pseudo, ...rt]), prompted(sst2('dev')), 64);
  const { devBatches, devGold } = task;
  // the job's seeding (lib/recipes/scratch.ts): head weights from seed + 2, then batches and dropout
  tb.manualSeed(seed + 2);
  const m = await fromPretrained(dir, { kind: 'BertForSequenceClassification', config: { num_labels: 2, hidden_dropout_prob: dropout, attention_probs_dropout_prob: dropout } });
  const sd = m.stateDict();
  const [w, b] = [sd.get('classifier.weight'), sd.get('classifier.bias')];
  if (injectBow !== undefined) {
    // the job's bag-of-words regression written into the word embeddings before fine-tuning: each word piece's
    // row moves along one random unit direction by A times its score (w_positive - w_negative) over the largest
    // score, so that what the regression learned of rare words is in the encoder's input from the first step
    const word = wordEmbeddings(m);
    await withBagOfWords(tok, (r) => tb.tidy(() => tb.noGrad(() => {
      const score = r.w.select(0, 1).sub(r.w.select(0, 0));
      const u = tb.randn([word.shape[1]]);
      word.add_(score.div(score.abs().max()).mul(injectBow).unsqueeze(1).mul(u.div(u.norm()).unsqueeze(0)));
    })));
  }
  const frozen = m.namedParameters().filter(([n]) => freeze.some((f) => n.startsWith(f)));
  if (freeze.length && !frozen.length) throw new RangeError(`--freeze ${freeze.join(', ')}: no parameter name starts so`);
  for (const [, p] of frozen) p.requiresGrad = false; // the optimizer skips parameters without a gradient
  const head = mode === 'prompt' || auxMlm !== undefined ? await loadLmHead(dir, mode === 'prompt' ? 'prompt' : '--aux-mlm') : undefined;
  const H = m.config.fields.hidden_size;
  const lmTransform = (h) => F.layerNorm(F.gelu(F.linear(h, head['transform.dense.weight'], head['transform.dense.bias'])), [H], head['transform.LayerNorm.weight'], head['transform.LayerNorm.bias'], m.config.fields.layer_norm_eps);
  let labelIds;
  let words;
  if (mode === 'prompt') {
    const missing = LABEL_WORDS.filter((t) => tok.tokenToId(t) === tok.unkTokenId);
    if (missing.length) throw new Error(`prompt: ${missing.join(', ')} not in ${dir}'s vocabulary`);
    labelIds = tb.tensor(LABEL_WORDS.map((t) => tok.tokenToId(t)), { dtype: 'int64' });
    words = wordEmbeddings(m);
  }
  const logits = async (inputs) => {
    if (mode === 'cls') return (await m.forward(inputs)).logits;
    if (mode === 'prompt') {
      // prompt-based fine-tuning: the masked LM's scores of the two label words at the template's [MASK], through
      // the pre-trained head and the tied word embeddings (the classifier and pooler go unused)
      const h = (await m.forward({ inputIds: inputs.inputIds, attentionMask: inputs.attentionMask, outputHiddenStates: true })).hiddenStates.at(-1);
      const t = lmTransform(h.index([inputs.inputIds.eq(tok.maskTokenId)]));
      return F.linear(t, words.indexSelect(0, labelIds), head.bias.indexSelect(0, labelIds));
    }
    const h = (await m.forward({ inputIds: inputs.inputIds, attentionMask: inputs.attentionMask, outputHiddenStates: true })).hiddenStates.at(-1);
    const mask = inputs.attentionMask.unsqueeze(-1).float();
    return F.linear(F.dropout(h.mul(mask).sum(1).div(mask.sum(1)), 0.1, m.training), w, b);
  };
  const plannedSteps = Math.ceil(epochs * task.trainEx.length / 32);
  const { trainer, nextBatch: collate, toInputs: plainInputs, rows } = sst2FineTuning(m, task, {
    seed: seed + 2, batch: 32, lr, steps: plannedSteps, seconds: 120 * epochs * (copies / 2) * (auxMlm === undefined ? 1 : 1.5) * (fgm === undefined ? 1 : 2) * (sam === undefined ? 1 : 3) * (task.trainEx.length / train.length), trainer: { name: 'probe', loggingSteps: 500, log: () => {}, ...(schedule && { schedule }) },
  });
  let stepRows; // the rows of the batch being trained on (indices into task.trainEx), for --teacher
  const nextBatch = (step) => {
    stepRows = rows(step);
    return collate(step);
  };
  let toInputs = plainInputs;
  if (shiftPositions !== undefined) {
    // each training row's tokens after [CLS] moved right by a random offset, the padded row's last position
    // within N - 1: the short phrases train the position embeddings the long dev sentences use. Its own
    // generator, so that libtorch's keeps the baseline's dropout draws.
    const rand = tb.distributed.seededRandom(seed * 2654435761 + 12345);
    toInputs = (b) => {
      const [B, T] = b.inputIds.shape;
      const pos = new BigInt64Array(B * T);
      for (let r = 0; r < B; r++) {
        const s = Math.floor(rand() * (Math.max(0, shiftPositions - T) + 1));
        for (let t = 1; t < T; t++) pos[r * T + t] = BigInt(t + s);
      }
      return { ...plainInputs(b), positionIds: tb.tensor(pos, { shape: [B, T] }) };
    };
  }
  if (tokenMask !== undefined) {
    // word-piece dropout as augmentation: that share of each training row's word pieces corrupted as the
    // masked LM's are (80% [MASK], 10% random, 10% kept), a fresh draw each step, so that no single word decides
    const specialIds = [...tok.allSpecialIds];
    toInputs = (b) => ({ ...plainInputs(b), inputIds: tb.train.maskTokens(b.inputIds, { mlmProbability: tokenMask, maskTokenId: tok.maskTokenId, vocabSize: tok.vocabSize, specialIds, padId: tok.padTokenId }).inputIds });
  }
  if (lrEmbeddings !== undefined) {
    if (!m.namedParameters().some(([n]) => n.startsWith('bert.embeddings.'))) throw new Error('--lr-embeddings: no bert.embeddings.* parameter found');
    splitByRate(m, trainer, [lr, lrEmbeddings], (n) => (n.startsWith('bert.embeddings.') ? 1 : 0));
  }
  if (layerDecay !== undefined) {
    // layer-wise rate decay (ELECTRA's fine-tuning, Clark et al. 2020): the pooler and classifier at --lr, each
    // layer below one factor D lower, the embeddings below the first layer
    const L = m.config.fields.num_hidden_layers;
    const depth = (n) => {
      if (n.startsWith('bert.embeddings.')) return 0;
      const layer = /^bert\.encoder\.layer\.(\d+)\./.exec(n);
      return layer ? Number(layer[1]) + 1 : L + 1;
    };
    splitByRate(m, trainer, Array.from({ length: L + 2 }, (_, d) => lr * layerDecay ** (L + 1 - d)), depth);
  }
  // the masked-LM head trains beside the encoder at its rate (after --lr-embeddings' split, which reads the
  // groups by the encoder's names; before --ema, which averages the prompt's head too)
  if (head) trainer.optimizer.paramGroups.push({ ...trainer.optimizer.paramGroups[0], params: Object.values(head) });
  let averaged;
  if (ema !== undefined) {
    // an exponential moving average of the weights after each optimizer step (warmed up as TF's
    // ExponentialMovingAverage with num_updates), scored instead of the last weights
    const params = trainer.optimizer.paramGroups.flatMap((g) => g.params);
    averaged = tb.noGrad(() => params.map((p) => p.detach().clone()));
    const step = trainer.optimizer.step.bind(trainer.optimizer);
    let n = 0;
    trainer.optimizer.step = async (...a) => {
      const r = await step(...a);
      const d = Math.min(ema, (1 + ++n) / (10 + n));
      tb.noGrad(() => params.forEach((p, i) => averaged[i].mul_(d).add_(p, 1 - d)));
      return r;
    };
  }
  let swaCount = 0;
  if (swa !== undefined) {
    // stochastic weight averaging in its tail form (Izmailov et al. 2018, on the job's decaying schedule): the
    // equal-weight mean of the weights after every 10th optimizer step past that share of the planned steps (after
    // every step it ran past the probe's time budget, which then cut the schedule), scored instead of the last weights
    const params = trainer.optimizer.paramGroups.flatMap((g) => g.params);
    const start = Math.floor(swa * plannedSteps);
    const step = trainer.optimizer.step.bind(trainer.optimizer);
    let k = 0;
    trainer.optimizer.step = async (...a) => {
      const r = await step(...a);
      if (++k > start && (k - start) % 10 === 0) {
        swaCount++;
        tb.noGrad(() => {
          if (!averaged) averaged = params.map((p) => tb.keep(p.detach().clone()));
          else params.forEach((p, i) => averaged[i].mul_(1 - 1 / swaCount).add_(p, 1 / swaCount));
        });
      }
      return r;
    };
  }
  if (l2sp !== undefined) {
    // L2-SP (Li et al. 2018) in AdamW's decoupled form: after each step every pre-trained parameter moves back
    // toward its value before fine-tuning by lr x C of the distance (AdamW's own decay pulls toward zero); the
    // new pooler and classifier are not pulled
    const named = m.namedParameters().filter(([n]) => !n.startsWith('bert.pooler.') && !n.startsWith('classifier.'));
    const start = tb.noGrad(() => named.map(([, p]) => tb.keep(p.detach().clone())));
    const step = trainer.optimizer.step.bind(trainer.optimizer);
    trainer.optimizer.step = async (...a) => {
      const r = await step(...a);
      const c = trainer.optimizer.paramGroups[0].lr * l2sp;
      tb.noGrad(() => named.forEach(([, p], i) => p.sub_(p.sub(start[i]).mul(c))));
      return r;
    };
  }
  const ce = (l, y) => F.crossEntropy(l, y, { labelSmoothing });
  // --rdrop A: the job's R-Drop (tb.train.rDropLoss, the batch doubled in one forward); A = 0 is the doubled batch alone
  // prompt: R-Drop through the prompt's logits (a stand-in with the model's forward signature)
  const rDropModel = mode === 'prompt' ? { forward: async (x) => ({ logits: await logits(x) }) } : m;
  const taskLoss = async (inputs) => (rdrop === undefined ? ce(await logits(inputs), inputs.labels) : tb.train.rDropLoss(rDropModel, inputs, rdrop, copies));
  // a teacher's class probabilities [n, 2] for a training batch, and the weight of KL(teacher || student)
  let teacher;
  let teacherW;
  const cleanup = [];
  if (distillBow !== undefined) {
    // the job's bag-of-words regression as a teacher (Hinton et al. 2015, temperature 1), reading the row's word
    // pieces (not [CLS], [SEP], padding) as the baseline does
    const keepCols = tb.tensor(Float32Array.from({ length: tok.vocabSize }, (_, id) => (tok.allSpecialIds.has(id) ? 0 : 1)));
    const [tw, tbias] = await withBagOfWords(tok, (r) => [r.w, r.b].map((t) => tb.keep(t.detach())));
    cleanup.push(tw, tbias, keepCols);
    teacher = (inputs) => tb.noGrad(() => F.linear(tb.zeros([inputs.inputIds.shape[0], tok.vocabSize]).scatter(1, inputs.inputIds, 1).mul(keepCols), tw, tbias).softmax(-1));
    teacherW = distillBow;
  }
  if (teachers.length) {
    // fine-tuned classifiers (--save-model) as teachers, the mean of their probabilities on each training row,
    // computed once before training and looked up by the step's rows (self-distillation from an ensemble:
    // Furlanello et al. 2018)
    const positive = new Float32Array(task.trainEx.length);
    const order = tb.train.batchIndices(task.trainEx.map((e) => e.inputIds.length), 256, { shuffle: false });
    for (const t of teachers) {
      const tm = await fromPretrained(t, { kind: 'BertForSequenceClassification' });
      tm.eval();
      for (const idx of order) {
        const scope = new tb.DisposeScope(); // each batch's tensors freed as it is scored
        const { positive: p } = await scope.run(() => classify([tb.train.padCollate(idx.map((i) => task.trainEx[i]), task.padId)], async (x) => (await tm.forward(x)).logits));
        scope.dispose();
        idx.forEach((i, k) => { positive[i] += p[k] / teachers.length; });
      }
      tm.dispose();
    }
    teacher = () => tb.tensor(Float32Array.from(stepRows.flatMap((i) => [1 - positive[i], positive[i]])), { shape: [stepRows.length, 2] });
    teacherW = teacherWeight;
  }
  let distill;
  if (teacher) {
    // each R-Drop copy's loss adds W x KL(teacher || student); the student's logits are taken from R-Drop's one forward
    let logitsOut;
    const forward = m.forward.bind(m);
    m.forward = async (x) => { const o = await forward(x); logitsOut = o.logits; return o; };
    distill = async (inputs) => {
      const loss = await tb.train.rDropLoss(m, inputs, rdrop, copies);
      const t = tb.cat(Array(copies).fill(teacher(inputs)), 0);
      return loss.add(t.mul(t.clamp(1e-8).log().sub(logitsOut.logSoftmax(-1))).sum(-1).mean().mul(teacherW));
    };
    distill.dispose = () => cleanup.forEach((t) => t.dispose());
  }
  let mixed;
  if (mixup !== undefined) {
    // mixup on the pooled [CLS] vector (Sun et al. 2020, "Mixup-Transformer"), inside R-Drop: the batch twice with
    // different dropout, in each copy the pooler's outputs mixed with those of a permutation of the rows by
    // lambda ~ Beta(a, a) (one lambda and permutation a batch, the same for both copies), the cross-entropy
    // against the labels mixed the same way, plus R-Drop's symmetric KL between the copies. lambda and the
    // permutation come from their own generator, so libtorch's keeps the baseline's dropout draws.
    const rand = tb.distributed.seededRandom(seed * 2654435761 + 777);
    const normal = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
    const gamma = (a) => {
      if (a < 1) return gamma(a + 1) * rand() ** (1 / a);
      const d = a - 1 / 3;
      const c = 1 / Math.sqrt(9 * d);
      for (;;) { // Marsaglia and Tsang (2000)
        let x;
        let v;
        do { x = normal(); v = 1 + c * x; } while (v <= 0);
        v = v * v * v;
        const u = rand();
        if (u < 1 - 0.0331 * x ** 4 || Math.log(u) < 0.5 * x * x + d * (1 - v + Math.log(v))) return d * v;
      }
    };
    const [pw, pb] = [sd.get('bert.pooler.dense.weight'), sd.get('bert.pooler.dense.bias')];
    mixed = async (inputs) => {
      const y = inputs.labels;
      const n = y.shape[0];
      const g1 = gamma(mixup);
      const lam = g1 / (g1 + gamma(mixup));
      const perm = Array.from({ length: n }, (_, i) => i);
      for (let i = n - 1; i > 0; i--) { const j = Math.floor(rand() * (i + 1)); [perm[i], perm[j]] = [perm[j], perm[i]]; }
      const idx = tb.tensor(perm, { dtype: 'int64' });
      const twice = (t) => tb.cat([t, t], 0);
      const out = await m.forward({ inputIds: twice(inputs.inputIds), attentionMask: twice(inputs.attentionMask), outputHiddenStates: true });
      const pooled = F.linear(out.hiddenStates.at(-1).select(1, 0), pw, pb).tanh();
      const logp = [0, 1].map((k) => {
        const p = pooled.narrow(0, k * n, n);
        return F.linear(F.dropout(p.mul(lam).add(p.indexSelect(0, idx).mul(1 - lam)), 0.1, true), w, b).logSoftmax(-1);
      });
      const yp = y.indexSelect(0, idx);
      const ce = logp.map((l) => F.nllLoss(l, y).mul(lam).add(F.nllLoss(l, yp).mul(1 - lam))).reduce((a, c) => a.add(c)).div(2);
      return ce.add(logp[0].exp().sub(logp[1].exp()).mul(logp[0].sub(logp[1])).sum(-1).div(2).mean().mul(rdrop));
    };
  }
  let adversarial;
  if (fgm !== undefined) {
    // adversarial training on the word embeddings (Miyato et al. 2017, in the fast-gradient form common for
    // BERT): the batch's loss is back-propagated, the embedding table moved by fgm times its gradient over
    // the gradient's norm (only the batch's word pieces have one), the loss of the same batch on the moved
    // table back-propagated too, and the table restored before the optimizer steps on the sum of the two
    // gradients. The embedding lookup keeps no copy of the table for its backward, so moving it is safe.
    const word = wordEmbeddings(m);
    let moved;
    const step = trainer.optimizer.step.bind(trainer.optimizer);
    trainer.optimizer.step = async (...a) => {
      if (moved) tb.noGrad(() => word.sub_(moved));
      moved?.dispose();
      moved = undefined;
      return step(...a);
    };
    adversarial = async (inputs) => {
      await (await taskLoss(inputs)).backward();
      const g = word.grad;
      moved = tb.keep(tb.noGrad(() => g.mul(fgm / Math.max(g.norm().item(), 1e-12))));
      tb.noGrad(() => word.add_(moved));
      return taskLoss(inputs);
    };
  }
  let sharp;
  if (sam !== undefined) {
    // SAM: the batch's loss back-propagated, every trained parameter moved by sam times its gradient over the
    // norm of all of them, the gradient of the same batch's loss there taken instead (the first zeroed), and the
    // parameters moved back before the optimizer steps on it, as --fgm moves the embedding table
    const params = trainer.optimizer.paramGroups.flatMap((g) => g.params);
    let moved;
    const step = trainer.optimizer.step.bind(trainer.optimizer);
    trainer.optimizer.step = async (...a) => {
      if (moved) tb.noGrad(() => params.forEach((p, i) => moved[i] && p.sub_(moved[i])));
      moved?.forEach((t) => t?.dispose());
      moved = undefined;
      return step(...a);
    };
    sharp = async (inputs) => {
      await (await taskLoss(inputs)).backward();
      moved = tb.noGrad(() => {
        const grads = params.map((p) => p.grad);
        const norm = tb.stack(grads.filter(Boolean).map((g) => g.norm())).norm().item();
        return grads.map((g) => g && tb.keep(g.mul(sam / Math.max(norm, 1e-12))));
      });
      tb.noGrad(() => params.forEach((p, i) => moved[i] && p.add_(moved[i])));
      trainer.optimizer.zeroGrad();
      return taskLoss(inputs);
    };
  }
  let mlm;
  if (auxMlm !== undefined) {
    const word = wordEmbeddings(m);
    const specialIds = [...tok.allSpecialIds];
    mlm = async (inputs) => {
      const { inputIds, labels } = tb.train.maskTokens(inputs.inputIds, { maskTokenId: tok.maskTokenId, vocabSize: tok.vocabSize, specialIds, padId: tok.padTokenId });
      const h = (await m.forward({ inputIds, attentionMask: inputs.attentionMask, outputHiddenStates: true })).hiddenStates.at(-1);
      const sel = labels.ne(-100);
      // summed over the masked positions and divided by their count: a batch of short phrases may have none
      return F.crossEntropy(F.linear(lmTransform(h.index([sel])), word, head.bias), labels.index([sel]), { reduction: 'sum' }).div(sel.sum().clamp(1).float());
    };
  }
  const run = await trainer.train(nextBatch, toInputs, undefined, async (inputs) => (mixed ? mixed(inputs) : distill ? distill(inputs) : adversarial ? adversarial(inputs) : sharp ? sharp(inputs) : mlm ? (await taskLoss(inputs)).add((await mlm(inputs)).mul(auxMlm)) : taskLoss(inputs)));
  distill?.dispose();
  if (swa !== undefined && !swaCount) throw new Error(`--swa ${swa}: training stopped at step ${run.steps}, before averaging started`);
  if (averaged) {
    const params = trainer.optimizer.paramGroups.flatMap((g) => g.params);
    tb.noGrad(() => params.forEach((p, i) => p.copy_(averaged[i])));
    averaged.forEach((t) => t.dispose());
  }
  m.eval();
  const { pred, positive: probs } = await classify(devBatches, logits);
  if (head) Object.values(head).forEach((t) => t.dispose());
  labelIds?.dispose();
  if (saveModel) {
    await m.savePretrained(saveModel);
    tok.savePretrained(saveModel);
  }
  m.dispose();
  if (saveProbs) writeProbs(saveProbs, { dir, seed, positive: probs, gold: devGold });
  const variant = [epochs !== 1 && `${epochs} epochs`, lr !== 4e-4 && `lr ${lr}`, lrEmbeddings !== undefined && `embeddings lr ${lrEmbeddings}`, dropout !== 0.1 && `dropout ${dropout}`, freeze.length && `frozen ${freeze.join(', ')}`, labelSmoothing && `label smoothing ${labelSmoothing}`, ema !== undefined && `EMA ${ema}`, rdrop !== undefined && `R-Drop ${rdrop}${copies !== 2 ? ` over ${copies} copies` : ''}`, auxMlm !== undefined && `masked LM ${auxMlm}`, shiftPositions !== undefined && `positions shifted within ${shiftPositions}`, distillBow !== undefined && `bag-of-words teacher ${distillBow}`, pseudo.length && `${pseudo.length} test sentences labelled by ${pseudoLabels.length} models`, fgm !== undefined && `adversarial embeddings ${fgm}`, roots > 1 && `training sentences x${roots}`, injectBow !== undefined && `bag of words in the embeddings ${injectBow}`, tokenMask !== undefined && `word pieces masked ${tokenMask}`, teachers.length && `${teachers.length} fine-tuned teacher${teachers.length > 1 ? 's' : ''} ${teacherWeight}`, rt.length && `${rt.length} Rotten Tomatoes snippets`, layerDecay !== undefined && `layer decay ${layerDecay}`, swa !== undefined && `SWA of ${swaCount} snapshots`, mixup !== undefined && `mixup ${mixup}`, schedule && `${schedule} schedule`, sam !== undefined && `SAM ${sam}`].filter(Boolean).join(', ');
  console.log(`${dir} seed ${seed} ${mode}${variant ? ` (${variant})` : ''}, ${run.steps} steps in ${run.seconds.toFixed(0)} s: dev accuracy ${(100 * accuracy(pred, devGold)).toFixed(2)}%`);
}

// Span supervision in context: SST-2's training phrases are the nodes of its training sentences' parse trees,
// so instead of each phrase alone, each sentence (a root, rootsOf) is encoded once and every phrase it contains
// is scored in place: the mean of its word pieces' last hidden states through the model's own pooler and
// classifier, the sentence itself through [CLS] as at test time. Loss: the sentence's cross-entropy plus W times
// the mean over its phrases'. One epoch is the 6,885 sentences, not the 67k phrases.
async function spans(dir, seed, { epochs = 10, lr = 1e-4, weight = 1, seqLen = 64, save } = {}) {
  if (!(epochs > 0)) throw new RangeError(`--epochs must be a positive number, got ${epochs}`);
  if (!(lr > 0)) throw new RangeError(`--lr must be a positive number, got ${lr}`);
  if (!(weight >= 0)) throw new RangeError(`--span-weight must be a non-negative number, got ${weight}`);
  const tok = await tb.BertTokenizer.fromPretrained(dir);
  const train = sst2('train');
  const labelOf = new Map(train.map((r) => [r.text.trim(), r.label]));
  const roots = rootsOf(train);
  const pieces = new Map();
  const piecesOf = (w) => {
    if (!pieces.has(w)) pieces.set(w, tok.call(w).inputIds.slice(1, -1));
    return pieces.get(w);
  };
  let mismatched = 0;
  let total = 0;
  const examples = roots.map((r, i) => {
    const words = r.text.trim().split(' ');
    const at = [1]; // each word's first position after [CLS]; at[k] for k = words.length is the end
    for (const w of words) at.push(at.at(-1) + piecesOf(w).length);
    const ids = [tok.clsTokenId, ...words.flatMap(piecesOf)].slice(0, seqLen - 1).concat(tok.sepTokenId);
    const ref = tok.call(r.text, undefined, { truncation: true, maxLength: seqLen }).inputIds;
    if (ids.length !== ref.length || ids.some((t, k) => t !== ref[k])) mismatched++;
    const sp = [];
    for (let a = 0; a < words.length; a++) {
      for (let b = a + 1; b <= words.length; b++) {
        if (b - a === words.length || at[b] > seqLen - 1) continue; // the whole sentence is read at [CLS]
        const label = labelOf.get(words.slice(a, b).join(' '));
        if (label !== undefined) sp.push([at[a], at[b], label]);
      }
    }
    total += sp.length;
    return { inputIds: ids, label: r.label, i, spans: sp };
  });
  console.log(`${roots.length} training sentences, ${total} phrases in them (${(total / roots.length).toFixed(1)} each); ${mismatched} encoded unlike the tokenizer's own`);
  if (mismatched) throw new Error(`${mismatched} sentences' word pieces differ from the tokenizer's encoding`);
  const { devBatches, devGold } = sst2Task(tok, [], sst2('dev'), seqLen);
  tb.manualSeed(seed + 2);
  const m = await fromPretrained(dir, { kind: 'BertForSequenceClassification', config: { num_labels: 2 } });
  const P = Object.fromEntries(m.namedParameters().filter(([n]) => n.startsWith('bert.pooler.') || n.startsWith('classifier.')));
  // the job's fine-tuning settings over the sentences, its time budget wide enough not to bind
  const { trainer, nextBatch: collate, toInputs, rows: rowsAt } = sst2FineTuning(m, { trainEx: examples, padId: tok.padTokenId }, {
    seed: seed + 2, batch: 32, lr, steps: Math.ceil((epochs * examples.length) / 32), seconds: 1200, trainer: { name: 'spans', loggingSteps: 200, log: (l) => console.log(l) },
  });
  let rows;
  const nextBatch = (step) => {
    rows = rowsAt(step).map((i) => examples[i]);
    return collate(step);
  };
  const loss = async (inputs) => {
    const out = await m.forward({ ...inputs, outputHiddenStates: true });
    const [B, T] = inputs.inputIds.shape;
    const n = rows.reduce((k, r) => k + r.spans.length, 0);
    if (!n || !weight) return out.loss;
    const pool = new Float32Array(n * B * T);
    const labels = new BigInt64Array(n);
    let k = 0;
    rows.forEach((r, bi) => r.spans.forEach(([a, b, y]) => {
      for (let t = a; t < b; t++) pool[k * B * T + bi * T + t] = 1 / (b - a);
      labels[k++] = BigInt(y);
    }));
    const h = out.hiddenStates.at(-1).reshape([B * T, -1]);
    const rep = tb.tensor(pool, { shape: [n, B * T] }).matmul(h);
    const pooled = F.linear(rep, P['bert.pooler.dense.weight'], P['bert.pooler.dense.bias']).tanh();
    const logits = F.linear(F.dropout(pooled, 0.1, m.training), P['classifier.weight'], P['classifier.bias']);
    return out.loss.add(F.crossEntropy(logits, tb.tensor(labels)).mul(weight));
  };
  const r = await trainer.train(nextBatch, toInputs, undefined, loss);
  m.eval();
  const { pred } = await classify(devBatches, async (inputs) => (await m.forward(inputs)).logits);
  if (save) {
    // for `pooling` to fine-tune on: the phrases alone after the spans in context
    await m.savePretrained(save);
    tok.savePretrained(save);
  }
  m.dispose();
  console.log(`${dir} seed ${seed} spans (${epochs} epochs of ${examples.length} sentences, ${r.steps} steps in ${r.seconds.toFixed(0)}s, lr ${lr}, phrase weight ${weight}): dev accuracy ${(100 * accuracy(pred, devGold)).toFixed(2)}%`);
}

async function spread(dirs) {
  const texts = sst2('dev').slice(0, 64).map((r) => r.text);
  for (const dir of dirs) {
    const scope = new tb.DisposeScope();
    await scope.run(async () => {
      const tok = await tb.BertTokenizer.fromPretrained(dir);
      const m = await fromPretrained(dir, { kind: 'BertModel' });
      m.eval();
      const enc = tok.call(texts, undefined, { padding: true, returnTensors: 'pt' });
      const out = await tb.noGrad(() => m.forward({ inputIds: enc.inputIds, attentionMask: enc.attentionMask }));
      const std = (t) => t.std(0).mean().item().toFixed(4);
      const h = out.lastHiddenState;
      console.log(`${dir}: [CLS] ${std(h.select(1, 0))}, second word piece ${std(h.select(1, 2))}`);
      m.dispose();
    });
    scope.dispose();
  }
}


async function scores(dir, file, split = 'dev') {
  if (!file) throw new Error('scores: name the model folder and the file to write');
  const rows = rowsOf(split);
  const tok = await tb.BertTokenizer.fromPretrained(dir);
  const m = await fromPretrained(dir, { kind: 'BertForSequenceClassification' });
  m.eval();
  const { devBatches, devGold } = sst2Task(tok, [], rows, 64);
  const { positive } = await classify(devBatches, async (inputs) => (await m.forward(inputs)).logits);
  m.dispose();
  writeProbs(file, { dir, positive, gold: devGold });
  console.log(split === 'dev' ? `${dir}: dev accuracy ${(100 * accuracy(positive.map((p) => (p > 0.5 ? 1 : 0)), devGold)).toFixed(2)}%` : `${dir}: ${positive.length} ${split} sentences scored`);
}

async function bow(dir, file, split = 'dev', rtPolarity = false) {
  if (!file) throw new Error('bow: name the folder with the vocabulary and the file to write');
  const tok = await tb.BertTokenizer.fromPretrained(dir);
  const dev = rowsOf(split);
  const extra = rtPolarity ? rtSupplement() : [];
  if (extra.length) console.log(`${extra.length} Rotten Tomatoes snippets join the training rows`);
  const positive = await withBagOfWords(tok, (r) => Array.from(tb.tidy(() => bagOfWordsLogits(tok, r, dev).softmax(-1).select(1, 1).dataSync()), Number), extra);
  const gold = dev.map((x) => x.label);
  writeProbs(file, { dir, positive, gold });
  if (split !== 'dev') return console.log(`${dir}: ${positive.length} ${split} sentences scored by the bag of words`);
  console.log(`${dir}: bag-of-words dev accuracy ${(100 * accuracy(positive.map((p) => (p > 0.5 ? 1 : 0)), gold)).toFixed(2)}%`);
}

function ensemble(files) {
  if (!files.length) throw new Error('ensemble: name at least one file that --save-probs, scores or bow wrote');
  const runs = files.map((f) => JSON.parse(fs.readFileSync(f, 'utf8')));
  const gold = runs[0].gold;
  if (runs.some((r) => r.gold.length !== gold.length || r.gold.some((g, i) => g !== gold[i]))) throw new Error('ensemble: the files hold different dev sets');
  const acc = (p) => (100 * accuracy(p.map((x) => (x > 0.5 ? 1 : 0)), gold)).toFixed(2);
  runs.forEach((r, i) => console.log(`${files[i]}: ${acc(r.positive)}%`));
  console.log(`mean of the ${runs.length} models' probabilities: ${acc(gold.map((_, i) => runs.reduce((s, r) => s + r.positive[i], 0) / runs.length))}%`);
}

const USAGE = 'usage: finetune-probe.js pooling DIR SEED cls|mean|prompt [--epochs N] [--lr X] [--lr-embeddings X] [--dropout X] [--freeze PREFIX]... [--label-smoothing X] [--ema D] [--rdrop A [--copies K]] [--aux-mlm W] [--shift-positions N] [--distill-bow W] [--pseudo-labels FILE]... [--fgm EPS] [--roots K] [--inject-bow A] [--token-mask P] [--teacher MODEL... [--teacher-weight W]] [--rt-polarity] [--l2sp C] [--layer-decay D] [--swa S] [--mixup A] [--schedule NAME] [--sam RHO] [--save-model OUT] [--save-probs FILE] | spans DIR SEED [--epochs N] [--lr X] [--span-weight W] [--save OUT] | scores MODEL FILE [--split dev|test] | bow DIR FILE [--split dev|test] [--rt-polarity] | spread DIR... | ensemble FILE...';
let parsed;
try {
  parsed = parseArgs({
    allowPositionals: true,
    options: { epochs: { type: 'string' }, lr: { type: 'string' }, 'lr-embeddings': { type: 'string' }, 'save-probs': { type: 'string' }, dropout: { type: 'string' }, 'label-smoothing': { type: 'string' }, ema: { type: 'string' }, rdrop: { type: 'string' }, copies: { type: 'string' }, 'aux-mlm': { type: 'string' }, 'shift-positions': { type: 'string' }, 'distill-bow': { type: 'string' }, split: { type: 'string' }, 'pseudo-labels': { type: 'string', multiple: true }, fgm: { type: 'string' }, roots: { type: 'string' }, 'inject-bow': { type: 'string' }, 'token-mask': { type: 'string' }, teacher: { type: 'string', multiple: true }, 'teacher-weight': { type: 'string' }, 'save-model': { type: 'string' }, 'rt-polarity': { type: 'boolean' }, l2sp: { type: 'string' }, 'layer-decay': { type: 'string' }, swa: { type: 'string' }, mixup: { type: 'string' }, schedule: { type: 'string' }, sam: { type: 'string' }, 'span-weight': { type: 'string' }, save: { type: 'string' }, freeze: { type: 'string', multiple: true } },
  });
} catch (e) {
  console.error(`${e.message}\n${USAGE}`);
  process.exit(1);
}
const { positionals: [cmd, ...args], values: v } = parsed;
(cmd === 'pooling' ? pooling(args[0], Number(args[1] ?? 0), args[2] ?? 'cls', { epochs: Number(v.epochs ?? 1), lr: Number(v.lr ?? 4e-4), lrEmbeddings: v['lr-embeddings'] === undefined ? undefined : Number(v['lr-embeddings']), saveProbs: v['save-probs'], dropout: Number(v.dropout ?? 0.1), freeze: v.freeze ?? [], labelSmoothing: Number(v['label-smoothing'] ?? 0), ema: v.ema === undefined ? undefined : Number(v.ema), rdrop: v.rdrop === undefined ? undefined : Number(v.rdrop), copies: Number(v.copies ?? 2), auxMlm: v['aux-mlm'] === undefined ? undefined : Number(v['aux-mlm']), shiftPositions: v['shift-positions'] === undefined ? undefined : Number(v['shift-positions']), distillBow: v['distill-bow'] === undefined ? undefined : Number(v['distill-bow']), pseudoLabels: v['pseudo-labels'] ?? [], fgm: v.fgm === undefined ? undefined : Number(v.fgm), roots: Number(v.roots ?? 1), injectBow: v['inject-bow'] === undefined ? undefined : Number(v['inject-bow']), tokenMask: v['token-mask'] === undefined ? undefined : Number(v['token-mask']), teachers: v.teacher ?? [], teacherWeight: Number(v['teacher-weight'] ?? 1), saveModel: v['save-model'], rtPolarity: !!v['rt-polarity'], l2sp: v.l2sp === undefined ? undefined : Number(v.l2sp), layerDecay: v['layer-decay'] === undefined ? undefined : Number(v['layer-decay']), swa: v.swa === undefined ? undefined : Number(v.swa), mixup: v.mixup === undefined ? undefined : Number(v.mixup), schedule: v.schedule, sam: v.sam === undefined ? undefined : Number(v.sam) })
  : cmd === 'spans' ? spans(args[0], Number(args[1] ?? 0), { epochs: Number(v.epochs ?? 10), lr: Number(v.lr ?? 1e-4), weight: Number(v['span-weight'] ?? 1), save: v.save })
  : cmd === 'spread' ? spread(args)
    : cmd === 'scores' ? scores(args[0], args[1], v.split)
    : cmd === 'bow' ? bow(args[0], args[1], v.split, !!v['rt-polarity'])
    : cmd === 'ensemble' ? Promise.resolve().then(() => ensemble(args))
    : Promise.reject(new Error(USAGE))
).catch((e) => { console.error(e.message); process.exit(1); });
