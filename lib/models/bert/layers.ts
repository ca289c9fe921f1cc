// The torch.nn pieces BERT is made of (Linear, Dropout, LayerNorm, Embedding) as TorchScript units, with
// HF's parameter names and initialisation. The run mode of a model lives here and only here: a Linear
// unit's forward is the one line that differs between a trainable model, its portable save, and the
// int8 and prepacked inference copies; every BERT unit above calls `self.dense.forward(h)` the same way,
// and writes its attention with attention() below.
import * as tb from '../../core';
import { ScriptModule, Tensor } from '../../core';
import type { LinearActivation } from '../linear-plan';

/**
 * How linear layers (and dropout) run: 'float' (trainable; torchbert::linear, whose fp32 CPU GEMMs run
 * on the faster of MKL and oneDNN, native/linear.cc, and torchbert::dropout, native/dropout.cc), 'portable' (the same
 * with torch.linear and torch.dropout, for TorchScript that Python loads), or in an inference-only copy
 * 'int8' (dynamic quantisation, quantizeDynamic()) or 'prepacked' (each weight laid out once for the GEMM
 * measured fastest for its shape, prepack()).
 */
export type LinearMode = 'float' | 'portable' | 'int8' | 'prepacked';
export const LINEAR_MODES: LinearMode[] = ['float', 'portable', 'int8', 'prepacked'];

/**
 * TorchScript for softmax(q k^T / sqrt(d), mask) v with dropout probability `p` (a TorchScript expression).
 * The inference copies (int8, prepacked) run torchbert::attention: ATen's fused kernel or the spelled-out
 * steps, whichever measured faster here for the shape (native/attention.cc). The others, and anything built
 * by buildPortable() (the int8 copy saveTorchScript writes, which Python loads without torchbert's ops),
 * run torch's SDPA.
 */
export function attention(mode: LinearMode, qkvMask: string, p = '0.0'): string {
  return (mode === 'prepacked' || mode === 'int8') && !portable.value ? `ops.torchbert.attention(${qkvMask})` : `torch.scaled_dot_product_attention(${qkvMask}, ${p})`;
}

/** A setting the layer builders read, holding `value` while a build runs (builds nest: the outer value returns after). */
class BuildSetting<V> {
  constructor(public value: V) {}
  during<T>(value: V, build: () => T): T {
    const outer = this.value;
    this.value = value;
    try {
      return build();
    } finally {
      this.value = outer;
    }
  }
}
const portable = new BuildSetting(false);
/** Builds with torch's own operators only where the mode has a choice (attention), for TorchScript that Python loads. */
export const buildPortable = <T>(build: () => T): T => portable.during(true, build);

/** A float literal for TorchScript source. */
export const num = (v: number) => (Number.isInteger(v) ? `${v}.0` : String(v));

/** TorchScript applying HF's activation `name` (config.hidden_act, or the pooler's tanh) to `x`. */
export function act(name: string, x: string): string {
  switch (name) {
    case 'gelu': return `torch.gelu(${x})`;
    case 'gelu_new': case 'gelu_pytorch_tanh': case 'gelu_fast': return `torch.gelu(${x}, approximate='tanh')`;
    case 'relu': return `torch.relu(${x})`;
    case 'tanh': return `torch.tanh(${x})`;
    case 'none': return x;
    default: return `torch.silu(${x})`;
  }
}
/** The GELU a prepacked layer applies inside its GEMM for activation `name`, or 'none' (applied after). */
export function fusedActivation(name: string): LinearActivation {
  return name === 'gelu' ? 'gelu' : ['gelu_new', 'gelu_pytorch_tanh', 'gelu_fast'].includes(name) ? 'gelu_tanh' : 'none';
}

/**
 * True while building a model whose weights are overwritten right after (loading a checkpoint, the
 * portable copy of saveTorchScript): normal-initialised weights are then left uninitialised, which
 * spares drawing ~110M random numbers for bert-base. Whatever a checkpoint lacks is initialised after
 * loading (initWeights).
 */
const uninitialised = new BuildSetting(false);
export const buildUninitialised = <T>(build: () => T): T => uninitialised.during(true, build);
/** A weight drawn from N(0, std^2) with the padding row zero, as HF's _init_weights does for Linear and Embedding. */
export function normalWeight(shape: number[], std: number, paddingIdx?: number): Tensor {
  if (uninitialised.value) return tb.empty(shape);
  const w = tb.randn(shape).mul_(std);
  if (paddingIdx !== undefined) w.select(0, paddingIdx).zero_();
  return w;
}
/**
 * HF's _init_weights for the named parameters (those a checkpoint lacked): N(0, initializer_range) for
 * Linear and Embedding weights (the padding row zero), zeros for biases, ones for LayerNorm weights.
 */
export function initWeights(params: Map<string, Tensor>, names: string[], std: number, pad: number): void {
  tb.noGrad(() => {
    for (const n of names) {
      const p = params.get(n)!;
      if (n.endsWith('LayerNorm.weight')) p.fill_(1);
      else if (n.endsWith('bias')) p.zero_();
      else {
        const w = normalWeight(p.shape, std, n.endsWith('word_embeddings.weight') ? pad : undefined);
        p.copy_(w);
        w.dispose();
      }
    }
  });
}

/**
 * Collects the TorchScript each unit compiles while `build` runs: the listing a reader opens to see
 * what runs (bertTorchScript, and the snapshot test of each mode).
 */
const listing = new BuildSetting<{ unit: string; source: string }[] | null>(null);
export function recordSources<T>(build: () => T): { result: T; sources: { unit: string; source: string }[] } {
  const sources: { unit: string; source: string }[] = [];
  return { result: listing.during(sources, build), sources };
}
/** A TorchScript unit: a module named after its HF class, its submodules, buffers and attributes, and its methods' source. */
export function unit(name: string, children: Record<string, ScriptModule>, source?: string,
  extra: { parameters?: Record<string, Tensor>; buffers?: Record<string, Tensor>; attributes?: [string, string, boolean | number | string][] } = {}): ScriptModule {
  const m = new ScriptModule(name);
  for (const [k, child] of Object.entries(children)) m.registerModule(k, child);
  for (const [k, t] of Object.entries(extra.parameters ?? {})) m.registerParameter(k, t, { requiresGrad: true });
  for (const [k, t] of Object.entries(extra.buffers ?? {})) m.registerBuffer(k, t);
  for (const [k, type, v] of extra.attributes ?? []) m.registerAttribute(k, type, v);
  return source ? define(m, name, source) : m;
}

/** A unit holding named parameters, like nn.LayerNorm / nn.Embedding state. */
function holder(name: string, tensors: Record<string, Tensor>): ScriptModule {
  const m = new ScriptModule(name);
  for (const [k, t] of Object.entries(tensors)) m.registerParameter(k, t, { requiresGrad: true });
  return m;
}
export function layerNorm(n: number): ScriptModule {
  return holder('LayerNorm', { weight: tb.ones([n]), bias: tb.zeros([n]) });
}
export function embedding(n: number, dim: number, std: number, paddingIdx?: number): ScriptModule {
  return holder('Embedding', { weight: normalWeight([n, dim], std, paddingIdx) });
}

export interface LinearOptions {
  std: number;
  mode: LinearMode;
  /** Applied to the output by the layer (HF's intermediate_act_fn, the pooler's tanh); inside the GEMM where prepacked can. */
  activation?: string;
  /** Existing weight and bias to hold (the MLM decoder, tied to the word embeddings and to cls.predictions.bias). */
  tied?: { weight: Tensor; bias: Tensor };
}

/**
 * nn.Linear (then `activation`) in the given mode. The inference modes hold placeholders that
 * quantizeDynamic() and prepack() fill from the float model's weight and bias.
 */
export function linear(inF: number, outF: number, o: LinearOptions): ScriptModule {
  const activation = o.activation ?? 'none';
  switch (o.mode) {
    case 'float':
    case 'portable': {
      const m = o.tied ? holder('Linear', { weight: o.tied.weight, bias: o.tied.bias }) : holder('Linear', { weight: normalWeight([outF, inF], o.std), bias: tb.zeros([outF]) });
      const gemm = o.mode === 'float' ? 'ops.torchbert.linear' : 'torch.linear';
      return define(m, 'Linear', `
def forward(self, x: Tensor) -> Tensor:
    return ${act(activation, `${gemm}(x, self.weight, self.bias)`)}
`);
    }
    case 'int8': {
      // fbgemm's packed weight, and oneDNN's for the row counts from which it measured faster
      // (linear-plan.ts); reduce_range as torch.ao's dynamic Linear on x86.
      const m = new ScriptModule('DynamicQuantizedLinear').packLinear('_packed_params', tb.zeros([outF, inF]), tb.zeros([outF]))
        .packLinear('_packed_params_onednn', tb.zeros([1, 1]), null).registerAttribute('onednn_from_rows', 'int', Number.MAX_SAFE_INTEGER);
      return define(m, 'DynamicQuantizedLinear', `
def forward(self, x: Tensor) -> Tensor:
    rows = x.numel() // x.size(-1)
    packed = self._packed_params_onednn if rows >= self.onednn_from_rows else self._packed_params
    return ${act(activation, 'ops.quantized.linear_dynamic(x, packed, True)')}
`);
    }
    case 'prepacked': {
      // The weight in the layout of each GEMM the plan runs for this shape (linear-plan.ts), empty
      // otherwise; torchbert::linear_prepacked picks one by the row count. GELU runs in the GEMM.
      const fused = fusedActivation(activation);
      const m = new ScriptModule('PrepackedLinear');
      for (const layout of ['packed_weight', 'onednn_weight', 'weight']) m.registerBuffer(layout, tb.zeros([0]));
      m.registerBuffer('bias', tb.zeros([outF])).registerAttribute('activation', 'str', fused);
      const call = 'ops.torchbert.linear_prepacked(x, self.packed_weight, self.onednn_weight, self.weight, self.bias, self.bias.size(0), self.activation)';
      return define(m, 'PrepackedLinear', `
def forward(self, x: Tensor) -> Tensor:
    return ${fused === 'none' ? act(activation, call) : call}
`);
    }
  }
}
function define(m: ScriptModule, name: string, source: string): ScriptModule {
  m.define(source);
  listing.value?.push({ unit: name, source });
  return m;
}

/** nn.Dropout(p): torchbert::dropout (a parallel mask, native/dropout.cc) in trainable models, torch.dropout otherwise. */
export function dropout(p: number, mode: LinearMode): ScriptModule {
  const m = new ScriptModule('Dropout').registerAttribute('p', 'float', p);
  const fn = mode === 'float' ? 'ops.torchbert.dropout' : 'torch.dropout';
  return define(m, 'Dropout', `
def forward(self, x: Tensor) -> Tensor:
    return ${fn}(x, self.p, self.training)
`);
}
