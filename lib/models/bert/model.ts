// BertPreTrainedModel: a BERT TorchScript module (units.ts, heads.ts) with its config and the HF-style
// forward, the losses, the inference copies (int8, prepacked) and saving. Loading is checkpoint.ts.
import * as fs from 'fs';
import * as path from 'path';
import * as tb from '../../core';
import { ScriptModule, Tensor, F, op } from '../../core';
import { BertConfig, BertConfigFields } from '../config';
import { saveFile } from '../../safetensors';
import type { DType } from '../../tensor';
import { native } from '../../binding';
import { checkCpuBf16 } from '../../cpu';
import { currentModes, withModes } from '../../torch';
import { LinearActivation, LinearBackend, LinearDtype, LinearShape, ensureLinearPlan, ensureLinearPlanAsync, forcedBackend, int8Plan, planBackends } from '../linear-plan';
import { HEADS, HeadKind, buildHead } from './heads';
import { buildPortable, buildUninitialised } from './layers';

export interface BertInputs {
  inputIds: Tensor;
  attentionMask?: Tensor;
  tokenTypeIds?: Tensor;
  positionIds?: Tensor;
  outputHiddenStates?: boolean;
  outputAttentions?: boolean;
  /** classification / token classification / multiple choice labels, MLM labels (-100 ignored) */
  labels?: Tensor;
  nextSentenceLabel?: Tensor;
  startPositions?: Tensor;
  endPositions?: Tensor;
  /**
   * Inference only (eval mode, an attention mask, no hidden states or attentions): the dense layers run
   * on the real tokens alone, skipping the padding. Real positions equal forward()'s (to float rounding;
   * with int8, activation ranges come from real tokens only); padded positions are zeros. Pipelines use it.
   */
  unpadded?: boolean;
}

export interface BertOutput {
  loss?: Tensor;
  logits?: Tensor;
  lastHiddenState?: Tensor;
  poolerOutput?: Tensor | null;
  predictionLogits?: Tensor;
  seqRelationshipLogits?: Tensor;
  startLogits?: Tensor;
  endLogits?: Tensor;
  hiddenStates?: Tensor[];
  attentions?: Tensor[];
}

export interface LoadReport {
  missingKeys: string[];
  unexpectedKeys: string[];
  /** weights left at their fresh initialisation because the checkpoint's have another shape (ignoreMismatchedSizes) */
  mismatchedKeys: { key: string; checkpoint: number[]; model: number[] }[];
}

const TIED = ['cls.predictions.decoder.weight', 'cls.predictions.decoder.bias'];
/** Names that share one tensor in the MLM head (HF ties the decoder to the word embeddings and to cls.predictions.bias). */
const TIED_PAIRS = [['cls.predictions.decoder.weight', 'bert.embeddings.word_embeddings.weight'], ['cls.predictions.decoder.bias', 'cls.predictions.bias']];

export interface PrepackOptions {
  /** the GEMM every layer runs ('auto', the default: the one measured fastest per shape and row count) */
  backend?: LinearBackend | 'auto';
  /**
   * 'auto' (default): a layer keeps a second layout of its weight (its memory again: 340 MB for bert-base)
   * where a second GEMM measured more than 10% faster from 16 rows up; 'one': each layer keeps one, of the
   * GEMM that costs least over all row counts, for servers short of memory.
   */
  layouts?: 'auto' | 'one';
  /**
   * Frees this model's linear weights as each is laid out and hands its other weights to the copy instead
   * of copying them (the model is unusable after: dispose it). Loading straight to a prepacked model does
   * this, so the float and packed weights are never all in memory at once.
   */
  consume?: boolean;
}

export interface QuantizeOptions {
  /** Hands this model's weights that stay float (embeddings, LayerNorm) to the copy instead of copying them (the model is unusable after: dispose it). */
  consume?: boolean;
}

/** The float weights an inference copy's linear layer `n` (under `prefix`) is made from: its fused qkv layer stacks query, key and value. */
function linearSources(prefix: string, n: string): string[] {
  return n === 'qkv' ? ['query', 'key', 'value'].map((part) => `${prefix}${part}.weight`) : [`${prefix}${n}.weight`];
}
/** That layer's weight or bias from the float model's state: a new stacked tensor for qkv, else the state's own. */
function linearTensor(state: Map<string, Tensor>, prefix: string, n: string, k: 'weight' | 'bias'): Tensor {
  return n === 'qkv' ? tb.cat(['query', 'key', 'value'].map((part) => state.get(`${prefix}${part}.${k}`)!)) : state.get(`${prefix}${n}.${k}`)!;
}
/** Gives `to` the packed int8 layers of `from`, a module of the same structure (call inside a tidy scope). */
function shareInt8Layers(to: ScriptModule, from: ScriptModule): void {
  const theirs = new Map(from.namedChildren());
  for (const [n, child] of to.namedChildren()) {
    const src = theirs.get(n)!;
    if (child.hasAttr('_packed_params')) for (const a of ['_packed_params', '_packed_params_onednn', 'onednn_from_rows']) child.shareAttr(a, src);
    else shareInt8Layers(child, src);
  }
}
/** Sets the parameter or buffer at dotted path `name` of `module` to `value`. */
function setSlot(module: ScriptModule, name: string, value: Tensor): void {
  const parts = name.split('.');
  const owners: ScriptModule[] = [];
  let m = module;
  for (const seg of parts.slice(0, -1)) owners.push((m = m.getAttr(seg) as ScriptModule));
  m.setAttr(parts.at(-1)!, value);
  for (const o of owners) o.dispose();
}

/** Any BERT architecture: the TorchScript module plus its config and the HF-style forward. */
export class BertPreTrainedModel {
  readonly kind: HeadKind;
  readonly config: BertConfig;
  readonly module: ScriptModule;
  /** An int8 dynamically quantised copy from quantizeDynamic(): inference only, on the CPU. */
  readonly quantized: boolean;
  /** A copy with prepacked linear weights from prepack() (fp32, or bf16 from a bf16 model): inference only, on the CPU. */
  readonly prepacked: boolean;

  /** Calls through this model and the models sharing its weights (encoderOf) take turns: one at a time, in order. */
  #turn: { tail: Promise<void> };

  constructor(kind: HeadKind, config: BertConfig, module?: ScriptModule, opts: { quantized?: boolean; prepacked?: boolean; sharesWeightsWith?: BertPreTrainedModel } = {}) {
    if (!HEADS.includes(kind)) throw new TypeError(`unknown BERT architecture '${kind}' (expected one of ${HEADS.join(', ')})`);
    this.kind = kind;
    this.config = config;
    this.quantized = !!opts.quantized;
    this.prepacked = !!opts.prepacked;
    this.#turn = opts.sharesWeightsWith ? opts.sharesWeightsWith.#turn : { tail: Promise.resolve() };
    // Parameters are initialised from the global generator (HF's _init_weights distributions).
    // The initial weights live in the module; tidy frees their JS handles now rather than at GC.
    this.module = module ?? tb.tidy(() => tb.noGrad(() => ScriptModule.inNewUnit(() => buildHead(kind, config.fields))));
  }

  /** Frees the model's native memory now (its TorchScript module, parameters and buffers). */
  dispose(): void {
    this.module.dispose();
  }
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** HF-named parameters (tied duplicates listed once). */
  namedParameters(): [string, Tensor][] {
    const seen = new Set<bigint>();
    const out: [string, Tensor][] = [];
    for (const [n, p] of this.module.namedParameters()) {
      const id = native.storageId(p._handle);
      if (TIED.includes(n) && seen.has(id)) continue;
      seen.add(id);
      out.push([n, p]);
    }
    return out;
  }
  parameters(): Tensor[] {
    return this.namedParameters().map(([, p]) => p);
  }
  /** Parameters and persistent buffers by HF name (position_ids is not persistent in HF). */
  stateDict(): Map<string, Tensor> {
    return new Map(this.namedParameters());
  }

  train(on = true): this {
    if (on && this.#inferenceOnly) throw new Error(`a ${this.#inferenceOnly} model is inference-only: train the float model, then make the copy`);
    this.module.train(on);
    return this;
  }
  eval(): this {
    return this.train(false);
  }
  get #inferenceOnly(): string | null {
    return this.quantized ? 'quantized' : this.prepacked ? 'prepacked' : null;
  }
  get training(): boolean {
    return this.module.training;
  }

  /** Moves and casts in place; the MLM decoder stays tied to the word embeddings. */
  to(target: string | { device?: string; dtype?: DType }): this {
    if (this.#inferenceOnly) {
      const t = typeof target === 'string' ? { device: target } : target;
      const own = this.module.namedParameters()[0]?.[1];
      const dtype = own?.dtype ?? 'float32';
      own?.dispose();
      if ((t.device && !t.device.startsWith('cpu')) || (t.dtype && t.dtype !== dtype)) throw new Error(`a ${this.#inferenceOnly} model runs on the CPU in ${dtype}: it cannot move or change dtype`);
    }
    this.module.to(target);
    this.#retie();
    return this;
  }
  #retie(): void {
    if (!['BertForMaskedLM', 'BertForPreTraining'].includes(this.kind)) return;
    // the handles taken on the way (modules, tensors) go with the scope; the module keeps what they name
    tb.tidy(() => {
      const bert = this.module.getAttr('bert') as ScriptModule;
      const word = (bert.getAttr('embeddings') as ScriptModule).getAttr('word_embeddings') as ScriptModule;
      const pred = (this.module.getAttr('cls') as ScriptModule).getAttr('predictions') as ScriptModule;
      const decoder = pred.getAttr('decoder') as ScriptModule;
      decoder.setAttr('weight', word.getAttr('weight') as Tensor);
      decoder.setAttr('bias', pred.getAttr('bias') as Tensor);
    });
  }

  /**
   * Copies tensors into the parameters by name, accepting HF checkpoints with or without the `bert.`
   * prefix and old `gamma`/`beta` LayerNorm names. Reports missing and unexpected keys as HF does.
   */
  loadStateDict(state: Map<string, Tensor>, opts: { strict?: boolean; assign?: boolean; ignoreMismatchedSizes?: boolean } = {}): LoadReport {
    const params = new Map(this.module.namedParameters());
    const base = this.kind !== 'BertModel';
    const rename = (k: string) => {
      let n = k.replace(/\.gamma$/, '.weight').replace(/\.beta$/, '.bias');
      if (base && !n.startsWith('bert.') && !n.startsWith('cls.') && !params.has(n) && params.has(`bert.${n}`)) n = `bert.${n}`;
      if (!base && n.startsWith('bert.')) n = n.slice(5);
      return n;
    };
    const unexpected: string[] = [];
    const mismatched: LoadReport['mismatchedKeys'] = [];
    const loaded = new Set<string>();
    tb.noGrad(() => {
      for (const [k, t] of state) {
        const n = rename(k);
        const p = params.get(n);
        if (!p) {
          // Heads of other architectures and non-persistent buffers are expected extras.
          unexpected.push(k);
          continue;
        }
        if (p.shape.join() !== t.shape.join()) {
          // HF's ignore_mismatched_sizes: a head of another size (another label count) starts afresh
          if (opts.ignoreMismatchedSizes) {
            mismatched.push({ key: n, checkpoint: t.shape, model: p.shape });
            continue;
          }
          const msg = `size mismatch for ${n}: checkpoint has [${t.shape}], model has [${p.shape}] (ignoreMismatchedSizes: true, finetune --ignore-mismatched-sizes, starts such weights afresh)`;
          for (const q of params.values()) q.dispose();
          throw new RangeError(msg);
        }
        // assign (torch's load_state_dict(assign=True)): the checkpoint's tensor becomes the parameter, no
        // second copy of the weights in memory while loading; other dtypes and devices are copied.
        if (opts.assign && t.dtype === p.dtype && t.device === p.device && t.isContiguous) {
          t.requiresGrad = p.requiresGrad;
          this.#setSlot(n, t);
        } else {
          p.copy_(t);
        }
        loaded.add(n);
        for (const pair of TIED_PAIRS) if (pair.includes(n)) pair.forEach((t) => loaded.add(t)); // one tensor, two names
      }
    });
    if (opts.assign) this.#retie();
    const missing = [...params.keys()].filter((n) => !loaded.has(n) && !mismatched.some((m) => m.key === n));
    // the handles namedParameters() made; the module keeps its tensors
    for (const p of params.values()) p.dispose();
    if (opts.strict && (missing.length || unexpected.length)) throw new Error(`loadStateDict: missing keys ${JSON.stringify(missing)}, unexpected keys ${JSON.stringify(unexpected)}`);
    return { missingKeys: missing, unexpectedKeys: unexpected, mismatchedKeys: mismatched };
  }

  /** Runs forward (and the loss when labels are given) with the TorchScript module on the compute thread. */
  async forward(inputs: BertInputs): Promise<BertOutput> {
    if (!(inputs.inputIds instanceof Tensor)) throw new TypeError('inputs.inputIds must be an int64 Tensor');
    const args = [inputs.inputIds, inputs.attentionMask ?? null, inputs.tokenTypeIds ?? null, inputs.positionIds ?? null, !!inputs.outputHiddenStates, !!inputs.outputAttentions];
    const out = (await this.#exclusive(() => this.module.call(this.#method(inputs), ...args))) as (Tensor | Tensor[] | null)[];
    // The masked-LM loss reads [B*T, vocab] logits: computed off the event loop like the forward.
    let mlmLoss: Tensor | undefined;
    if (inputs.labels && (this.kind === 'BertForMaskedLM' || (this.kind === 'BertForPreTraining' && inputs.nextSentenceLabel))) {
      const [flat, labels] = [(out[0] as Tensor).view(-1, (out[0] as Tensor).size(-1)), inputs.labels.view(-1)];
      try {
        mlmLoss = await F.crossEntropyAsync(flat, labels);
      } finally {
        flat.dispose();
        labels.dispose();
      }
    }
    return this.#wrap(out, inputs, mlmLoss);
  }
  /**
   * Runs `call` when the calls before it (through this model or one sharing its weights) are done: the
   * module and its submodules share one busy state (a second concurrent call would be an error).
   */
  async #exclusive<T>(call: () => Promise<T>): Promise<T> {
    const prev = this.#turn.tail;
    // The call starts after its turn comes, when the caller's grad mode and autocast (under which it was
    // made: noGrad, say) may have ended; it runs with them as they were now.
    const modes = currentModes();
    let done!: () => void;
    this.#turn.tail = new Promise<void>((r) => (done = r));
    try {
      await prev;
      return await withModes(modes, call);
    } finally {
      done();
    }
  }
  forwardSync(inputs: BertInputs): BertOutput {
    const args = [inputs.inputIds, inputs.attentionMask ?? null, inputs.tokenTypeIds ?? null, inputs.positionIds ?? null, !!inputs.outputHiddenStates, !!inputs.outputAttentions];
    return this.#wrap(this.module.callSync(this.#method(inputs), ...args) as (Tensor | Tensor[] | null)[], inputs);
  }
  #packed?: boolean;
  #method(inputs: BertInputs): string {
    if (!inputs.unpadded) return 'forward';
    // Modules saved before forward_packed existed run the padded forward.
    this.#packed ??= this.module.methodNames.includes('forward_packed');
    return this.#packed ? 'forward_packed' : 'forward';
  }

  /** The HF-shaped output; `mlmLoss`, when given, is the masked-LM loss already computed (forward()). */
  #wrap(out: (Tensor | Tensor[] | null)[], inputs: BertInputs, mlmLoss?: Tensor): BertOutput {
    const extras = (hs: unknown, ats: unknown): Partial<BertOutput> => ({
      ...(inputs.outputHiddenStates ? { hiddenStates: hs as Tensor[] } : {}),
      ...(inputs.outputAttentions ? { attentions: ats as Tensor[] } : {}),
    });
    const c = this.config.fields;
    switch (this.kind) {
      case 'BertModel':
        return { lastHiddenState: out[0] as Tensor, poolerOutput: out[1] as Tensor | null, ...extras(out[2], out[3]) };
      case 'BertForSequenceClassification': {
        const logits = out[0] as Tensor;
        return { logits, loss: inputs.labels ? sequenceLoss(logits, inputs.labels, c) : undefined, ...extras(out[1], out[2]) };
      }
      case 'BertForTokenClassification':
      case 'BertForMaskedLM': {
        const logits = out[0] as Tensor;
        const loss = mlmLoss ?? (inputs.labels ? F.crossEntropy(logits.view(-1, logits.size(-1)), inputs.labels.view(-1)) : undefined);
        return { logits, loss, ...extras(out[1], out[2]) };
      }
      case 'BertForMultipleChoice': {
        const logits = out[0] as Tensor;
        return { logits, loss: inputs.labels ? F.crossEntropy(logits, inputs.labels) : undefined, ...extras(out[1], out[2]) };
      }
      case 'BertForNextSentencePrediction': {
        const logits = out[0] as Tensor;
        const label = inputs.nextSentenceLabel ?? inputs.labels;
        return { logits, loss: label ? F.crossEntropy(logits, label.view(-1)) : undefined, ...extras(out[1], out[2]) };
      }
      case 'BertForPreTraining': {
        const [pred, nsp] = out as Tensor[];
        let loss: Tensor | undefined;
        if (inputs.labels && inputs.nextSentenceLabel) {
          const a = mlmLoss ?? F.crossEntropy(pred.view(-1, c.vocab_size), inputs.labels.view(-1));
          const b = F.crossEntropy(nsp.view(-1, 2), inputs.nextSentenceLabel.view(-1));
          loss = a.add(b);
        }
        return { predictionLogits: pred, seqRelationshipLogits: nsp, loss, ...extras(out[2], out[3]) };
      }
      case 'BertForQuestionAnswering': {
        const [startLogits, endLogits] = out as Tensor[];
        let loss: Tensor | undefined;
        if (inputs.startPositions && inputs.endPositions) {
          // Positions outside the sequence are clamped to T and ignored, as HF does.
          const T = startLogits.size(1);
          const s = inputs.startPositions.view(-1).clamp(0, T);
          const e = inputs.endPositions.view(-1).clamp(0, T);
          loss = F.crossEntropy(startLogits, s, { ignoreIndex: T }).add(F.crossEntropy(endLogits, e, { ignoreIndex: T })).div(2);
        }
        return { startLogits, endLogits, loss, ...extras(out[2], out[3]) };
      }
    }
  }

  /** Masked-LM loss computed on the masked positions only (BertForMaskedLM); equals forward's loss. */
  async mlmLoss(inputs: { inputIds: Tensor; attentionMask?: Tensor; labels: Tensor }): Promise<Tensor> {
    if (this.kind !== 'BertForMaskedLM') throw new TypeError(`mlmLoss needs a BertForMaskedLM, this is a ${this.kind}`);
    return (await this.#exclusive(() => this.module.call('mlm_loss', inputs.inputIds, inputs.attentionMask ?? null, inputs.labels))) as Tensor;
  }
  /**
   * mlmLoss() plus `weight` times a sentence-level term: the [CLS] vector, through the masked-LM head,
   * predicts the row's bag of words (`bagOfWords` [B, V], each row a distribution over the tokens of the
   * row; cross entropy). Resolves to the sum and the bag-of-words term alone.
   */
  async mlmBagOfWordsLoss(inputs: { inputIds: Tensor; attentionMask?: Tensor; labels: Tensor; bagOfWords: Tensor }, weight = 1): Promise<{ loss: Tensor; bagOfWords: Tensor }> {
    if (this.kind !== 'BertForMaskedLM') throw new TypeError(`mlmBagOfWordsLoss needs a BertForMaskedLM, this is a ${this.kind}`);
    const [B, V] = [inputs.inputIds.size(0), this.config.fields.vocab_size];
    const shape = inputs.bagOfWords.shape;
    if (shape.length !== 2 || shape[0] !== B || shape[1] !== V) throw new RangeError(`mlmBagOfWordsLoss: bagOfWords must be [${B}, ${V}] (rows x vocabulary), got [${shape.join(', ')}]`);
    if (!Number.isFinite(weight) || weight < 0) throw new RangeError(`mlmBagOfWordsLoss: weight must be a finite number >= 0, got ${weight}`);
    const [loss, bag] = (await this.#exclusive(() => this.module.call('mlm_bow_loss', inputs.inputIds, inputs.attentionMask ?? null, inputs.labels, inputs.bagOfWords, weight))) as Tensor[];
    return { loss, bagOfWords: bag };
  }
  /** mlmLoss() and the logits [N, V] at the N masked positions (labels != -100, row-major), e.g. to sample replacements (ELECTRA). */
  async mlmLossAndLogits(inputs: { inputIds: Tensor; attentionMask?: Tensor; labels: Tensor }): Promise<{ loss: Tensor; logits: Tensor }> {
    if (this.kind !== 'BertForMaskedLM') throw new TypeError(`mlmLossAndLogits needs a BertForMaskedLM, this is a ${this.kind}`);
    const [loss, logits] = (await this.#exclusive(() => this.module.call('mlm_loss_logits', inputs.inputIds, inputs.attentionMask ?? null, inputs.labels))) as Tensor[];
    return { loss, logits };
  }

  /**
   * An inference-only copy whose linear layers run in int8: weights quantised per output channel
   * (symmetric), activations quantised per call from their range, int32 accumulation (fbgemm), as
   * torch.ao's `quantize_dynamic(model, {nn.Linear: per_channel_dynamic_qconfig})`. Embeddings,
   * LayerNorm, attention and softmax stay float32. CPU only; this model is unchanged.
   */
  quantizeDynamic(opts: QuantizeOptions = {}): BertPreTrainedModel {
    return this.#inferenceCopy('int8', !!opts.consume);
  }

  /**
   * An inference-only fp32 copy whose linear layers keep their weights laid out once for the GEMM that
   * measured fastest on this machine for their shape and row count (torchbert::linear_prepacked,
   * native/linear_select.cc): our packed kernel (native/linear_packed.cc), oneDNN's (AVX2, AVX-512 or AMX) or
   * ATen's, instead of libtorch's GEMM repacking the weight on every call. Query, key and value run as
   * one product and GELU inside the GEMM. The measurement takes seconds the first time a shape meets a
   * machine and is cached on disk after (linear-plan.ts; `tb.linearTuning()` shows it); `backend`
   * (or TORCHBERT_PREPACKED) runs one GEMM everywhere instead. The same results to float rounding. CPU only;
   * this model is unchanged. This measures on the calling thread: prepackAsync() does it on the compute thread.
   */
  prepack(opts: PrepackOptions = {}): BertPreTrainedModel {
    const copy = this.#prepackedCopy(opts);
    try {
      ensureLinearPlan(copy.targets.map((t) => t.shape));
    } catch (e) {
      copy.release();
      copy.module.dispose();
      throw e;
    }
    return copy.fill();
  }
  /** prepack() with its GEMM measurements off the event loop. */
  async prepackAsync(opts: PrepackOptions = {}): Promise<BertPreTrainedModel> {
    const copy = this.#prepackedCopy(opts);
    try {
      await ensureLinearPlanAsync(copy.targets.map((t) => t.shape));
    } catch (e) {
      copy.release();
      copy.module.dispose();
      throw e;
    }
    return copy.fill();
  }

  #inferenceCopy(mode: 'int8', consume: boolean): BertPreTrainedModel {
    const { module, state } = this.#copyBase(mode, consume);
    try {
      this.#packInt8(module, state);
    } catch (e) {
      module.dispose();
      throw e;
    } finally {
      for (const t of state.values()) t.dispose(); // handles on the float model's weights, which stay its own
    }
    module.train(false);
    return new BertPreTrainedModel(this.kind, this.config, module, { quantized: true });
  }
  #packInt8(module: ScriptModule, state: Map<string, Tensor>): void {
    // tidy: the submodule handles taken here would otherwise keep the copy's layers alive until GC
    tb.tidy(() => tb.noGrad(() => {
      const pack = (m: ScriptModule, prefix: string): void => {
        for (const [n, child] of m.namedChildren()) {
          const at = prefix + n;
          if (child.hasAttr('_packed_params')) {
            // Quantised per output row, the stacked qkv weight holds exactly the three layers' int8 weights.
            const [w, b] = [linearTensor(state, prefix, n, 'weight'), linearTensor(state, prefix, n, 'bias')];
            const plan = int8Plan(w.size(0), w.size(1));
            child.packLinear('_packed_params', w, b, plan.engine === 'onednn' ? 'onednn' : 'fbgemm');
            if (plan.engine === 'both') {
              child.packLinear('_packed_params_onednn', w, b, 'onednn');
              child.setAttr('onednn_from_rows', plan.onednnFromRows!);
            }
          }
          else pack(child, `${at}.`);
        }
      };
      pack(module, '');
    }));
  }

  /** The inference module of `mode` with the float model's other parameters copied in (or, consuming, handed over). */
  #copyBase(mode: 'int8' | 'prepacked', consume: boolean): { module: ScriptModule; state: Map<string, Tensor> } {
    const what = mode === 'int8' ? 'quantizeDynamic' : 'prepack';
    if (this.#inferenceOnly) throw new Error(`${what}: the model is already ${this.#inferenceOnly}`);
    const state = new Map(this.module.namedParameters());
    const first = state.values().next().value!;
    const release = () => {
      for (const t of state.values()) t.dispose();
    };
    if (first.device !== 'cpu') {
      release();
      throw new Error(`${what}: runs on the CPU, the model is on ${first.device}`);
    }
    // bf16 models prepack to bf16 GEMMs (oneDNN's or ATen's); int8 quantises from float32.
    const dtypes = mode === 'prepacked' ? ['float32', 'bfloat16'] : ['float32'];
    if (!dtypes.includes(first.dtype)) {
      release();
      throw new Error(`${what}: needs ${dtypes.join(' or ')} weights, the model is ${first.dtype}`);
    }
    if (first.dtype === 'bfloat16') {
      try {
        checkCpuBf16('prepack() of a bfloat16 model');
      } catch (e) {
        release();
        throw e;
      }
    }
    // every parameter is copied or handed over below: none needs drawing; the building's handles go with the scope
    const module = tb.tidy(() => tb.noGrad(() => ScriptModule.inNewUnit(() => buildUninitialised(() => buildHead(this.kind, this.config.fields, mode)))));
    if (first.dtype !== 'float32') module.to({ dtype: first.dtype });
    // An inference copy trains nothing: without requires_grad on its parameters, a forward called outside
    // noGrad records no autograd graph (which would keep every intermediate alive until the output is collected).
    tb.tidy(() => tb.noGrad(() => {
      for (const [n, p] of module.namedParameters()) {
        const t = state.get(n)!;
        // Handed over, a weight keeps its storage: one copy in memory, and a mapped one stays mapped.
        if (consume && t.dtype === p.dtype && t.isContiguous) {
          t.requiresGrad = false;
          setSlot(module, n, t);
        } else p.copy_(t).requiresGrad_(false);
      }
    }));
    return { module, state };
  }

  /** The prepacked module, its linear layers with their shapes, and fill(): lays out each weight as the plan says. */
  #prepackedCopy(opts: PrepackOptions) {
    const forced = forcedBackend(opts.backend);
    if (opts.layouts !== undefined && opts.layouts !== 'auto' && opts.layouts !== 'one') throw new TypeError(`prepack layouts must be 'auto' or 'one', got ${JSON.stringify(opts.layouts)}`);
    const { module, state } = this.#copyBase('prepacked', !!opts.consume);
    const dtype = state.values().next().value!.dtype as LinearDtype;
    if (forced === 'torchbert' && dtype !== 'float32') {
      for (const t of state.values()) t.dispose();
      module.dispose();
      throw new TypeError(`prepack backend 'torchbert' runs float32 only; this model is ${dtype} (use 'auto', 'onednn' or 'aten')`);
    }
    const targets: { child: ScriptModule; weight: () => Tensor; bias: () => Tensor; shape: LinearShape; sources: string[] }[] = [];
    const walk = (m: ScriptModule, prefix: string): void => {
      for (const [n, child] of m.namedChildren()) {
        const at = prefix + n;
        if (!child.hasAttr('packed_weight')) {
          walk(child, `${at}.`);
          child.dispose();
          continue;
        }
        const weight = () => linearTensor(state, prefix, n, 'weight');
        const bias = () => (n === 'qkv' ? linearTensor(state, prefix, n, 'bias') : linearTensor(state, prefix, n, 'bias').clone());
        const sources = linearSources(prefix, n);
        const [N, K] = [sources.reduce((r, s) => r + state.get(s)!.size(0), 0), state.get(sources[0])!.size(1)];
        const activation = child.getAttr('activation') as LinearActivation; // the GELU its GEMM applies (layers.ts)
        targets.push({ child, weight, bias, shape: { n: N, k: K, activation, dtype }, sources });
      }
    };
    walk(module, '');
    const fill = (): BertPreTrainedModel => {
      try {
        tb.noGrad(() => {
          for (const [i, t] of targets.entries()) {
            const backends = forced ? [forced] : planBackends(t.shape, opts.layouts);
            if (!backends.length) throw new Error(`prepack: no GEMM plan for ${t.shape.n}x${t.shape.k}`);
            const w = t.weight();
            const layouts: [string, Tensor][] = [['bias', t.bias()]];
            if (backends.includes('torchbert')) layouts.push(['packed_weight', op('torchbert::pack_linear_weight').t(w)]);
            if (backends.includes('onednn')) layouts.push(['onednn_weight', op('torchbert::reorder_linear_weight').t(w)]);
            if (backends.includes('aten')) layouts.push(['weight', w.clone()]); // under noGrad: no history, no requires_grad
            for (const [k, v] of layouts) {
              t.child.setAttr(k, v);
              v.dispose();
            }
            if (t.sources.length > 1) w.dispose(); // stacked for this layer (qkv), not the state's own
            if (opts.consume) {
              for (const name of t.sources) this.#dropWeight(name, state);
              // The freed weights back to the OS as the copy grows (each BERT layer has four linear
              // layers), not all after the last one; emptying after every layer costs more calls.
              if ((i + 1) % 4 === 0 || i === targets.length - 1) tb.cpuCache.emptyCache();
            }
          }
        });
      } catch (e) {
        module.dispose();
        throw e;
      } finally {
        release();
      }
      module.train(false);
      return new BertPreTrainedModel(this.kind, this.config, module, { prepacked: true });
    };
    // The handles on the float model's weights (which stay its own) and on the copy's linear layers:
    // freed once the copy is filled.
    const release = () => {
      for (const t of state.values()) t.dispose();
      for (const t of targets) t.child.dispose();
    };
    return { module, targets, fill, release };
  }

  /** Frees this (consumed) model's weight `name` now: the module's slot gets an empty tensor, the handle goes. */
  #dropWeight(name: string, state: Map<string, Tensor>): void {
    const none = tb.empty([0]);
    this.#setSlot(name, none);
    none.dispose();
    state.get(name)?.dispose();
    state.delete(name);
  }
  #setSlot(name: string, value: Tensor): void {
    setSlot(this.module, name, value);
  }

  // ---------- checkpoints ----------

  /** Writes config.json and model.safetensors (HF names, tied weights once), loadable by transformers. */
  async savePretrained(dir: string): Promise<void> {
    if (this.#inferenceOnly) throw new Error(`savePretrained: a ${this.#inferenceOnly} model has no Hugging Face format; save the float model${this.quantized ? ' (or saveTorchScript)' : ''}`);
    fs.mkdirSync(dir, { recursive: true });
    const cfg = this.config.with({ architectures: [this.kind], torch_dtype: this.namedParameters()[0][1].dtype });
    cfg.save(path.join(dir, 'config.json'));
    const state = new Map<string, Tensor>();
    for (const [n, p] of this.namedParameters()) if (!TIED.includes(n)) state.set(n, p.detach());
    await saveFile(state, path.join(dir, 'model.safetensors'), { format: 'pt' });
  }

  /** Saves the TorchScript module (Python's torch.jit.load runs it). */
  async saveTorchScript(file: string): Promise<void> {
    // Its packed weights feed torchbert's own kernel and have no portable form to save.
    if (this.prepacked) throw new Error('saveTorchScript: a prepacked model runs torchbert::linear_packed; save the float model and prepack() it after loading');
    if (!this.#usesOwnOps()) return this.module.save(file);
    // torchbert's operators exist only where the addon is loaded: save the same model written with torch's
    // (torch.linear for torchbert::linear; an int8 copy's attention as SDPA, its packed layers shared).
    const mode = this.quantized ? 'int8' : 'portable';
    const copy = tb.tidy(() => tb.noGrad(() => ScriptModule.inNewUnit(() => buildPortable(() => buildUninitialised(() => buildHead(this.kind, this.config.fields, mode))))));
    try {
      const device = tb.tidy(() => tb.noGrad(() => {
        const state = new Map(this.module.namedParameters());
        for (const [n, p] of copy.namedParameters()) p.copy_(state.get(n)!);
        if (this.quantized) shareInt8Layers(copy, this.module);
        return state.values().next().value!.device;
      }));
      copy.to({ device });
      copy.train(this.module.training);
      await copy.save(file);
    } finally {
      copy.dispose();
    }
  }
  #usesOwnOps(m: ScriptModule = this.module): boolean {
    return m.methodNames.some((f) => m.graph(f).includes('torchbert::')) || tb.tidy(() => m.namedChildren().some(([, c]) => this.#usesOwnOps(c)));
  }
}


function sequenceLoss(logits: Tensor, labels: Tensor, c: BertConfigFields): Tensor {
  const nl = c.num_labels ?? 2;
  const problem = c.problem_type ?? (nl === 1 ? 'regression' : labels.dtype === 'int64' || labels.dtype === 'int32' ? 'single_label_classification' : 'multi_label_classification');
  if (problem === 'regression') return nl === 1 ? F.mseLoss(logits.squeeze(), labels.squeeze().float()) : F.mseLoss(logits, labels.float());
  if (problem === 'single_label_classification') return F.crossEntropy(logits.view(-1, nl), labels.view(-1));
  return F.bceWithLogits(logits, labels.float());
}
