// BERT as a TorchScript module compiled natively from TorchScript source, one unit per Hugging Face
// class (BertEmbeddings, BertSelfAttention, ...) with HF's parameter names and initialisation, and the
// task heads. Checkpoints in and out: config.json + model.safetensors (sharded too), and TorchScript.
import * as fs from 'fs';
import * as path from 'path';
import * as tb from '../core';
import { ScriptModule, Tensor, F, op } from '../core';
import { BertConfig, BertConfigFields } from './config';
import { loadFile, saveFile } from '../safetensors';
import { HubOptions, resolveModelDir } from '../hub';
import type { DType } from '../tensor';
import { native } from '../binding';
import { checkCpuBf16 } from '../cpu';
import { LinearActivation, LinearBackend, LinearShape, ensureLinearPlan, ensureLinearPlanAsync, forcedBackend, int8Plan, planBackends } from './linear-plan';

// ---------- TorchScript units ----------

function act(name: string, x: string): string {
  switch (name) {
    case 'gelu': return `torch.gelu(${x})`;
    case 'gelu_new': case 'gelu_pytorch_tanh': case 'gelu_fast': return `torch.gelu(${x}, approximate='tanh')`;
    case 'relu': return `torch.relu(${x})`;
    case 'tanh': return `torch.tanh(${x})`;
    default: return `torch.silu(${x})`;
  }
}
const num = (v: number) => (Number.isInteger(v) ? `${v}.0` : String(v));

/**
 * True while building a model whose weights are overwritten right after (loading a checkpoint, the
 * portable copy of saveTorchScript): normal-initialised weights are then left uninitialised, which
 * spares drawing ~110M random numbers for bert-base. Whatever a checkpoint lacks is initialised after
 * loading (initWeights, below fromPretrained).
 */
let skipInit = false;
function buildUninitialised<T>(build: () => T): T {
  skipInit = true;
  try {
    return build();
  } finally {
    skipInit = false;
  }
}
/** A weight drawn from N(0, std^2) with the padding row zero, as HF's _init_weights does for Linear and Embedding. */
function normalWeight(shape: number[], std: number, paddingIdx?: number): Tensor {
  if (skipInit) return tb.empty(shape);
  const w = tb.randn(shape).mul_(std);
  if (paddingIdx !== undefined) w.select(0, paddingIdx).zero_();
  return w;
}

/** A module holding named tensors, like nn.Linear / nn.LayerNorm / nn.Embedding state. */
function holder(name: string, tensors: Record<string, Tensor>): ScriptModule {
  const m = new ScriptModule(name);
  for (const [k, t] of Object.entries(tensors)) m.registerParameter(k, t, { requiresGrad: true });
  return m;
}
/**
 * How linear layers (and dropout) run: 'float' (trainable; torchbert::linear, whose fp32 CPU GEMMs run
 * on the faster of MKL and oneDNN, and torchbert::dropout, see native/kernels.cc), 'portable' (the same
 * with torch.linear and torch.dropout, for TorchScript that Python loads), or
 * in an inference-only copy 'int8' (dynamic quantisation, quantizeDynamic()) or 'prepacked' (fp32
 * through torchbert::linear_packed with the weight packed once into its panel layout, prepack()).
 */
type LinearMode = 'float' | 'portable' | 'int8' | 'prepacked';

/** nn.Linear state; the inference modes hold placeholders that quantizeDynamic()/prepack() fill. */
function linear(inF: number, outF: number, std: number, q: LinearMode = 'float'): ScriptModule {
  if (q === 'int8') {
    // fbgemm's packed weight, and oneDNN's for the row counts from which it measured faster (linear-plan.ts).
    return new ScriptModule('DynamicQuantizedLinear').packLinear('_packed_params', tb.zeros([outF, inF]), tb.zeros([outF]))
      .packLinear('_packed_params_onednn', tb.zeros([1, 1]), null).registerAttribute('onednn_from_rows', 'int', Number.MAX_SAFE_INTEGER);
  }
  if (q === 'prepacked') {
    // The weight in the layout of each GEMM the plan runs for this shape (linear-plan.ts); empty otherwise.
    const m = new ScriptModule('PrepackedLinear');
    for (const layout of ['packed_weight', 'onednn_weight', 'weight']) m.registerBuffer(layout, tb.zeros([0]));
    return m.registerBuffer('bias', tb.zeros([outF]));
  }
  return holder('Linear', { weight: normalWeight([outF, inF], std), bias: tb.zeros([outF]) });
}
/** TorchScript for `mod`'s linear map of `x`; int8 uses reduce_range as torch.ao's dynamic Linear on x86 (fbgemm). */
function lin(q: LinearMode, mod: string, x: string, bias = `${mod}.bias`): string {
  if (q === 'int8') return `ops.quantized.linear_dynamic(${x}, ${mod}._packed_params_onednn if ${x}.numel() // ${x}.size(-1) >= ${mod}.onednn_from_rows else ${mod}._packed_params, True)`;
  if (q === 'prepacked') return prepackedCall(mod, x, bias, 'none');
  if (q === 'float') return `ops.torchbert.linear(${x}, ${mod}.weight, ${bias})`;
  return `torch.linear(${x}, ${mod}.weight, ${bias})`;
}
/** TorchScript for dropout of `x` in training; trainable models use torchbert::dropout (parallel mask, native/kernels.cc). */
function drop(q: LinearMode, x: string, p: string | number): string {
  const pp = typeof p === 'number' ? num(p) : p;
  return q === 'float' ? `ops.torchbert.dropout(${x}, ${pp}, self.training)` : `torch.dropout(${x}, ${pp}, self.training)`;
}
/** torchbert::linear_prepacked: the GEMM the plan chose for this shape and row count, on the layout kept for it. */
function prepackedCall(mod: string, x: string, bias: string, activation: LinearActivation): string {
  return `ops.torchbert.linear_prepacked(${x}, ${mod}.packed_weight, ${mod}.onednn_weight, ${mod}.weight, ${bias}, ${mod}.bias.size(0), "${activation}")`;
}
/** The GELU a prepacked layer applies inside its GEMM for hidden_act `name`, or 'none' (applied after). */
function fusedActivation(name: string): LinearActivation {
  return name === 'gelu' ? 'gelu' : ['gelu_new', 'gelu_pytorch_tanh', 'gelu_fast'].includes(name) ? 'gelu_tanh' : 'none';
}
/** act(linear(x)); prepacked GELU runs inside the GEMM (on the accumulators, or as oneDNN's post-op). */
function linAct(q: LinearMode, mod: string, x: string, name: string): string {
  const gelu = fusedActivation(name);
  if (q === 'prepacked' && gelu !== 'none') return prepackedCall(mod, x, `${mod}.bias`, gelu);
  return act(name, lin(q, mod, x));
}
function layerNorm(n: number): ScriptModule {
  return holder('LayerNorm', { weight: tb.ones([n]), bias: tb.zeros([n]) });
}
function embedding(n: number, dim: number, std: number, paddingIdx?: number): ScriptModule {
  return holder('Embedding', { weight: normalWeight([n, dim], std, paddingIdx) });
}

function buildEmbeddings(c: BertConfigFields, q: LinearMode): ScriptModule {
  const m = new ScriptModule('BertEmbeddings');
  const std = c.initializer_range;
  m.registerModule('word_embeddings', embedding(c.vocab_size, c.hidden_size, std, c.pad_token_id));
  m.registerModule('position_embeddings', embedding(c.max_position_embeddings, c.hidden_size, std));
  m.registerModule('token_type_embeddings', embedding(c.type_vocab_size, c.hidden_size, std));
  m.registerModule('LayerNorm', layerNorm(c.hidden_size));
  m.registerBuffer('position_ids', tb.arange(c.max_position_embeddings, undefined, 1, { dtype: 'int64' }).unsqueeze(0));
  m.define(`
def forward(self, input_ids: Tensor, token_type_ids: Optional[Tensor], position_ids: Optional[Tensor]) -> Tensor:
    seq_len = input_ids.size(1)
    if position_ids is None:
        position_ids = self.position_ids[:, :seq_len]                                   # [1, T]
    if token_type_ids is None:
        token_type_ids = torch.zeros_like(input_ids)
    e = torch.embedding(self.word_embeddings.weight, input_ids, ${c.pad_token_id})      # [B, T, H]
    e = e + torch.embedding(self.token_type_embeddings.weight, token_type_ids)
    e = e + torch.embedding(self.position_embeddings.weight, position_ids)
    e = torch.layer_norm(e, [${c.hidden_size}], self.LayerNorm.weight, self.LayerNorm.bias, ${c.layer_norm_eps})
    return ${drop(q, 'e', c.hidden_dropout_prob)}
`);
  return m;
}

/** BertSelfOutput and BertOutput: dense, dropout, then LayerNorm of the residual sum. */
function denseAddNorm(name: string, inF: number, c: BertConfigFields, q: LinearMode): ScriptModule {
  const H = c.hidden_size;
  const m = new ScriptModule(name);
  m.registerModule('dense', linear(inF, H, c.initializer_range, q));
  m.registerModule('LayerNorm', layerNorm(H));
  m.define(`
def forward(self, h: Tensor, inp: Tensor) -> Tensor:
    h = ${drop(q, lin(q, 'self.dense', 'h'), c.hidden_dropout_prob)}
    return torch.layer_norm(h + inp, [${H}], self.LayerNorm.weight, self.LayerNorm.bias, ${c.layer_norm_eps})
`);
  return m;
}

/**
 * One BertLayer. The last also gets forward_cls / forward_packed_cls: the layer for the first token's
 * row only (keys and values still from every token), all that the pooler and the heads over it read.
 */
function buildLayer(c: BertConfigFields, q: LinearMode, last: boolean): ScriptModule {
  const std = c.initializer_range;
  const H = c.hidden_size;
  const nH = c.num_attention_heads;
  const dH = H / nH;
  const self = new ScriptModule('BertSelfAttention');
  // Prepacked copies hold query, key and value as one [3H, H] weight: one GEMM, the input packed once.
  const fused = q === 'prepacked';
  if (fused) self.registerModule('qkv', linear(H, 3 * H, std, q));
  else for (const n of ['query', 'key', 'value']) self.registerModule(n, linear(H, H, std, q));
  // TorchScript setting q, k, v [B, nH, T, dH] from h [B, T, H] (or the real tokens [N, H] scattered by idx); q for
  // the first position only when cls.
  const qkv = (packed: boolean, cls: boolean): string => {
    const scatter = (t: string, width: number) => (packed ? `h.new_zeros([B * T, ${width}]).index_copy(0, idx, ${t})` : t);
    if (fused) {
      return `
    qkv = ${scatter(lin(q, 'self.qkv', 'h'), 3 * H)}.view(B, T, 3, ${nH}, ${dH}).permute(2, 0, 3, 1, 4)  # [3, B, nH, T, dH]
    q = qkv[0]${cls ? '[:, :, :1]' : ''}
    k = qkv[1]
    v = qkv[2]`;
    }
    const first = packed ? 'h.index_select(0, rows)' : 'h[:, 0].contiguous()';
    return `
    q = ${cls ? `${lin(q, 'self.query', first)}.view(B, ${nH}, 1, ${dH})` : `${scatter(lin(q, 'self.query', 'h'), H)}.view(B, T, ${nH}, ${dH}).transpose(1, 2)`}
    k = ${scatter(lin(q, 'self.key', 'h'), H)}.view(B, T, ${nH}, ${dH}).transpose(1, 2)
    v = ${scatter(lin(q, 'self.value', 'h'), H)}.view(B, T, ${nH}, ${dH}).transpose(1, 2)`;
  };
  self.define(`
def forward(self, h: Tensor, mask: Optional[Tensor], want_attn: bool) -> Tuple[Tensor, Optional[Tensor]]:
    B = h.size(0)
    T = h.size(1)${qkv(false, false)}
    p = ${num(c.attention_probs_dropout_prob)} if self.training else 0.0
    attn: Optional[Tensor] = None
    if want_attn${q === 'float' ? ' or (p > 0.0 and not h.is_cuda)' : ''}:
        # Spelled out for the weights, and (trainable models) for torchbert::dropout on the CPU, where
        # SDPA with dropout would run these same steps (its fused CPU kernels have no dropout).
        scores = torch.matmul(q, k.transpose(-1, -2)) / ${Math.sqrt(dH)}                # [B, nH, T, T]
        if mask is not None:
            scores = scores.masked_fill(mask.logical_not(), float('-inf'))
        probs = torch.softmax(scores, -1)
        if want_attn:
            attn = probs
        ctx = torch.matmul(${drop(q, 'probs', 'p')}, v)                                  # [B, nH, T, dH]
    else:
        ctx = torch.scaled_dot_product_attention(q, k, v, mask, p)                      # [B, nH, T, dH]
    return ctx.transpose(1, 2).reshape(B, T, ${H}), attn                               # [B, nH, T, dH] -> [B, T, H]

def forward_packed(self, h: Tensor, idx: Tensor, B: int, T: int, mask: Tensor) -> Tensor:
    # h holds only the real tokens [N, H] (idx: their positions in the flattened [B*T]); the
    # projections run on those, and only attention sees the padded [B, nH, T, dH] layout.${qkv(true, false)}
    ctx = torch.scaled_dot_product_attention(q, k, v, mask, 0.0)                        # [B, nH, T, dH]
    return ctx.transpose(1, 2).reshape(B * T, ${H}).index_select(0, idx)                 # [N, H]
${last ? `
def forward_cls(self, h: Tensor, mask: Optional[Tensor]) -> Tensor:
    B = h.size(0)
    T = h.size(1)${qkv(false, true)}
    return torch.scaled_dot_product_attention(q, k, v, mask, 0.0).reshape(B, ${H})       # [B, nH, 1, dH] -> [B, H]

def forward_packed_cls(self, h: Tensor, idx: Tensor, B: int, T: int, mask: Tensor, rows: Tensor) -> Tensor:
    # rows: where each sequence's first token sits in the packed h.${qkv(true, true)}
    return torch.scaled_dot_product_attention(q, k, v, mask, 0.0).reshape(B, ${H})
` : ''}`);
  const selfOut = denseAddNorm('BertSelfOutput', H, c, q);
  const attention = new ScriptModule('BertAttention');
  attention.registerModule('self', self);
  attention.registerModule('output', selfOut);
  attention.define(`
def forward(self, h: Tensor, mask: Optional[Tensor], want_attn: bool) -> Tuple[Tensor, Optional[Tensor]]:
    a, w = self.self.forward(h, mask, want_attn)
    return self.output.forward(a, h), w

def forward_packed(self, h: Tensor, idx: Tensor, B: int, T: int, mask: Tensor) -> Tensor:
    return self.output.forward(self.self.forward_packed(h, idx, B, T, mask), h)
${last ? `
def forward_cls(self, h: Tensor, mask: Optional[Tensor]) -> Tensor:
    return self.output.forward(self.self.forward_cls(h, mask), h[:, 0])

def forward_packed_cls(self, h: Tensor, idx: Tensor, B: int, T: int, mask: Tensor, rows: Tensor) -> Tensor:
    return self.output.forward(self.self.forward_packed_cls(h, idx, B, T, mask, rows), h.index_select(0, rows))
` : ''}`);
  const inter = new ScriptModule('BertIntermediate');
  inter.registerModule('dense', linear(H, c.intermediate_size, std, q));
  inter.define(`
def forward(self, h: Tensor) -> Tensor:
    return ${linAct(q, 'self.dense', 'h', c.hidden_act)}
`);
  const out = denseAddNorm('BertOutput', c.intermediate_size, c, q);
  const layer = new ScriptModule('BertLayer');
  layer.registerModule('attention', attention);
  layer.registerModule('intermediate', inter);
  layer.registerModule('output', out);
  layer.define(`
def forward(self, h: Tensor, mask: Optional[Tensor], want_attn: bool) -> Tuple[Tensor, Optional[Tensor]]:
    a, w = self.attention.forward(h, mask, want_attn)
    return self.output.forward(self.intermediate.forward(a), a), w

def forward_packed(self, h: Tensor, idx: Tensor, B: int, T: int, mask: Tensor) -> Tensor:
    a = self.attention.forward_packed(h, idx, B, T, mask)
    return self.output.forward(self.intermediate.forward(a), a)
${last ? `
def forward_cls(self, h: Tensor, mask: Optional[Tensor]) -> Tensor:
    a = self.attention.forward_cls(h, mask)                                             # [B, H]
    return self.output.forward(self.intermediate.forward(a), a)

def forward_packed_cls(self, h: Tensor, idx: Tensor, B: int, T: int, mask: Tensor, rows: Tensor) -> Tensor:
    a = self.attention.forward_packed_cls(h, idx, B, T, mask, rows)
    return self.output.forward(self.intermediate.forward(a), a)
` : ''}`);
  return layer;
}

function buildEncoder(c: BertConfigFields, q: LinearMode): ScriptModule {
  const list = new ScriptModule('ModuleList');
  const L = c.num_hidden_layers;
  for (let i = 0; i < L; i++) list.registerModule(String(i), buildLayer(c, q, i === L - 1));
  const enc = new ScriptModule('BertEncoder');
  enc.registerModule('layer', list);
  const calls = Array.from({ length: c.num_hidden_layers }, (_, i) => `
    if want_hidden:
        hiddens.append(h)
    h, w = getattr(self.layer, "${i}").forward(h, mask, want_attn)
    if w is not None:
        attns.append(w)`).join('');
  const packed = Array.from({ length: L }, (_, i) => `
    h = getattr(self.layer, "${i}").forward_packed(h, idx, B, T, mask)`);
  const padded = Array.from({ length: L - 1 }, (_, i) => `
    h, w = getattr(self.layer, "${i}").forward(h, mask, False)`).join('');
  enc.define(`
def forward(self, h: Tensor, mask: Optional[Tensor], want_hidden: bool, want_attn: bool) -> Tuple[Tensor, List[Tensor], List[Tensor]]:
    hiddens: List[Tensor] = []
    attns: List[Tensor] = []${calls}
    if want_hidden:
        hiddens.append(h)
    return h, hiddens, attns

def forward_packed(self, h: Tensor, idx: Tensor, B: int, T: int, mask: Tensor) -> Tensor:${packed.join('')}
    return h

def forward_cls(self, h: Tensor, mask: Optional[Tensor]) -> Tensor:${padded}
    return getattr(self.layer, "${L - 1}").forward_cls(h, mask)                          # [B, H]

def forward_packed_cls(self, h: Tensor, idx: Tensor, B: int, T: int, mask: Tensor, rows: Tensor) -> Tensor:${packed.slice(0, -1).join('')}
    return getattr(self.layer, "${L - 1}").forward_packed_cls(h, idx, B, T, mask, rows)
`);
  return enc;
}

function buildBertModel(c: BertConfigFields, addPooler: boolean, q: LinearMode): ScriptModule {
  const m = new ScriptModule('BertModel');
  m.registerModule('embeddings', buildEmbeddings(c, q));
  m.registerModule('encoder', buildEncoder(c, q));
  if (addPooler) {
    const pooler = new ScriptModule('BertPooler');
    pooler.registerModule('dense', linear(c.hidden_size, c.hidden_size, c.initializer_range, q));
    pooler.define(`
def forward(self, h: Tensor) -> Tensor:
    return torch.tanh(${lin(q, 'self.dense', 'h[:, 0]')})       # [B, T, H] -> [B, H]
`);
    m.registerModule('pooler', pooler);
  }
  m.define(`
def padding_mask(self, attention_mask: Optional[Tensor]) -> Optional[Tensor]:
    mask: Optional[Tensor] = None
    if attention_mask is not None:
        attend = attention_mask.ne(0)
        if not bool(attend.all()):                                                      # no padding: no mask (as HF's SDPA path)
            mask = attend[:, None, None, :]                                             # [B, T] -> [B, 1, 1, T], True = attend
    return mask

def packed_embeddings(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Optional[Tensor], position_ids: Optional[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
    # The real tokens' embeddings [N, H], their positions in the flattened [B*T], and the [B, 1, 1, T] mask.
    e = self.embeddings.forward(input_ids, token_type_ids, position_ids)
    attend = attention_mask.ne(0)
    idx = attend.reshape(-1).nonzero().squeeze(1)
    return e.reshape(-1, ${c.hidden_size}).index_select(0, idx), idx, attend[:, None, None, :]

def forward(self, input_ids: Tensor, attention_mask: Optional[Tensor], token_type_ids: Optional[Tensor], position_ids: Optional[Tensor], want_hidden: bool, want_attn: bool) -> Tuple[Tensor, Optional[Tensor], List[Tensor], List[Tensor]]:
    e = self.embeddings.forward(input_ids, token_type_ids, position_ids)
    h, hiddens, attns = self.encoder.forward(e, self.padding_mask(attention_mask), want_hidden, want_attn)
    pooled: Optional[Tensor] = ${addPooler ? 'self.pooler.forward(h)' : 'None'}
    return h, pooled, hiddens, attns

def forward_packed(self, input_ids: Tensor, attention_mask: Optional[Tensor], token_type_ids: Optional[Tensor], position_ids: Optional[Tensor], want_hidden: bool, want_attn: bool) -> Tuple[Tensor, Optional[Tensor], List[Tensor], List[Tensor]]:
    # Inference without the padding: the dense layers (most of the work) see only the real tokens.
    # Real positions match forward(); padded positions of the last hidden state are zeros.
    if attention_mask is None or want_hidden or want_attn or self.training:
        return self.forward(input_ids, attention_mask, token_type_ids, position_ids, want_hidden, want_attn)
    B = input_ids.size(0)
    T = input_ids.size(1)
    x, idx, mask = self.packed_embeddings(input_ids, attention_mask, token_type_ids, position_ids)
    h = self.encoder.forward_packed(x, idx, B, T, mask)
    h = h.new_zeros([B * T, ${c.hidden_size}]).index_copy(0, idx, h).view(B, T, ${c.hidden_size})
    pooled: Optional[Tensor] = ${addPooler ? 'self.pooler.forward(h)' : 'None'}
    none: List[Tensor] = []
    return h, pooled, none, none
${addPooler ? `
def forward_cls(self, input_ids: Tensor, attention_mask: Optional[Tensor], token_type_ids: Optional[Tensor], position_ids: Optional[Tensor]) -> Tensor:
    # Inference for heads that read the pooled output only: the last layer runs for the first token's
    # row alone (keys and values from every token), about 7% less work for bert-base.
    e = self.embeddings.forward(input_ids, token_type_ids, position_ids)
    return self.pooler.forward(self.encoder.forward_cls(e, self.padding_mask(attention_mask)).unsqueeze(1))  # [B, H]

def forward_packed_cls(self, input_ids: Tensor, attention_mask: Optional[Tensor], token_type_ids: Optional[Tensor], position_ids: Optional[Tensor]) -> Tensor:
    # forward_packed and forward_cls together. A sequence whose first token is padding runs padded, so
    # its pooled output is HF's (forward_packed would pool a zero row).
    if attention_mask is None or not bool(attention_mask[:, 0].ne(0).all()):
        return self.forward_cls(input_ids, attention_mask, token_type_ids, position_ids)
    B = input_ids.size(0)
    T = input_ids.size(1)
    x, idx, mask = self.packed_embeddings(input_ids, attention_mask, token_type_ids, position_ids)
    n = attention_mask.ne(0).sum(1)
    rows = n.cumsum(0) - n                                                              # [B] first token of each in [N]
    c = self.encoder.forward_packed_cls(x, idx, B, T, mask, rows)
    return self.pooler.forward(c.unsqueeze(1))
` : ''}`);
  return m;
}

// ---------- heads ----------

export type HeadKind = 'BertModel' | 'BertForSequenceClassification' | 'BertForTokenClassification' | 'BertForMaskedLM' | 'BertForPreTraining'
  | 'BertForNextSentencePrediction' | 'BertForQuestionAnswering' | 'BertForMultipleChoice';
export const HEADS: HeadKind[] = ['BertModel', 'BertForSequenceClassification', 'BertForTokenClassification', 'BertForMaskedLM', 'BertForPreTraining',
  'BertForNextSentencePrediction', 'BertForQuestionAnswering', 'BertForMultipleChoice'];

const BASE_ARGS = 'input_ids: Tensor, attention_mask: Optional[Tensor], token_type_ids: Optional[Tensor], position_ids: Optional[Tensor], want_hidden: bool, want_attn: bool';
const BASE_ARGS_CALL = '(input_ids, attention_mask, token_type_ids, position_ids, want_hidden, want_attn)';
const BASE_CALL = `self.bert.forward${BASE_ARGS_CALL}`;

function mlmHead(c: BertConfigFields, wordEmbeddings: Tensor, q: LinearMode): ScriptModule {
  const transform = new ScriptModule('BertPredictionHeadTransform');
  transform.registerModule('dense', linear(c.hidden_size, c.hidden_size, c.initializer_range, q));
  transform.registerModule('LayerNorm', layerNorm(c.hidden_size));
  transform.define(`
def forward(self, h: Tensor) -> Tensor:
    h = ${linAct(q, 'self.dense', 'h', c.hidden_act)}
    return torch.layer_norm(h, [${c.hidden_size}], self.LayerNorm.weight, self.LayerNorm.bias, ${c.layer_norm_eps})
`);
  const bias = tb.zeros([c.vocab_size]);
  // Tied to bert.embeddings.word_embeddings.weight (a quantised decoder holds its own int8 copy).
  const decoder = q !== 'float' ? linear(c.hidden_size, c.vocab_size, 0, q) : holder('Linear', { weight: wordEmbeddings, bias });
  const pred = new ScriptModule('BertLMPredictionHead');
  pred.registerModule('transform', transform);
  pred.registerModule('decoder', decoder);
  pred.registerParameter('bias', bias);
  pred.define(`
def forward(self, h: Tensor) -> Tensor:
    return ${lin(q, 'self.decoder', 'self.transform.forward(h)', 'self.bias')}       # [B, T, H] -> [B, T, V]
`);
  return pred;
}

/**
 * A head's forward source plus forward_packed: the same head over BertModel.forward_packed (inference
 * on the real tokens only). Only the first method is copied (mlm_loss stays single).
 */
function withPacked(src: string): string {
  const second = src.indexOf('\ndef ', src.indexOf('def forward(') + 1);
  const fwd = second < 0 ? src : src.slice(0, second);
  return `${src}\n${fwd.replace('def forward(', 'def forward_packed(').replace(/self\.bert\.forward(_cls)?\(/g, 'self.bert.forward_packed$1(')}`;
}

/**
 * TorchScript setting `pooled` from BertModel `call` (its arguments after `self.bert.forward`), plus
 * `hs` and `ats`: in inference without hidden states or attentions, through forward_cls. Not for int8,
 * whose dynamic activation ranges would then come from the first token's rows alone in the last layer,
 * no longer torch.ao's quantisation of the same model.
 */
function pooledOnly(call: string, q: LinearMode): string {
  if (q === 'int8') return `
    h, pooled, hs, ats = self.bert.forward${call}
    assert pooled is not None`;
  return `
    hs: List[Tensor] = []
    ats: List[Tensor] = []
    if self.training or want_hidden or want_attn:
        h, p, hs, ats = self.bert.forward${call}
        assert p is not None
        pooled = p
    else:
        pooled = self.bert.forward_cls${call.replace(/, want_hidden, want_attn\)$/, ')')}`;
}

function buildHead(kind: HeadKind, c: BertConfigFields, q: LinearMode = 'float'): ScriptModule {
  if (kind === 'BertModel') return buildBertModel(c, true, q);
  const std = c.initializer_range;
  const withPooler = !['BertForTokenClassification', 'BertForMaskedLM', 'BertForQuestionAnswering'].includes(kind);
  const bert = buildBertModel(c, withPooler, q);
  const m = new ScriptModule(kind);
  m.registerModule('bert', bert);
  const dropP = c.classifier_dropout ?? c.hidden_dropout_prob;
  const nl = c.num_labels ?? 2;
  const word = () => (bert.getAttr('embeddings') as ScriptModule).namedParameters().find(([n]) => n === 'word_embeddings.weight')![1];
  switch (kind) {
    case 'BertForSequenceClassification':
      m.registerModule('classifier', linear(c.hidden_size, nl, std, q));
      m.define(withPacked(`
def forward(self, ${BASE_ARGS}) -> Tuple[Tensor, List[Tensor], List[Tensor]]:${pooledOnly(BASE_ARGS_CALL, q)}
    return ${lin(q, 'self.classifier', drop(q, 'pooled', dropP))}, hs, ats   # [B, labels]
`));
      break;
    case 'BertForTokenClassification':
      m.registerModule('classifier', linear(c.hidden_size, nl, std, q));
      m.define(withPacked(`
def forward(self, ${BASE_ARGS}) -> Tuple[Tensor, List[Tensor], List[Tensor]]:
    h, pooled, hs, ats = ${BASE_CALL}
    return ${lin(q, 'self.classifier', drop(q, 'h', dropP))}, hs, ats        # [B, T, labels]
`));
      break;
    case 'BertForQuestionAnswering':
      m.registerModule('qa_outputs', linear(c.hidden_size, 2, std, q));
      m.define(withPacked(`
def forward(self, ${BASE_ARGS}) -> Tuple[Tensor, Tensor, List[Tensor], List[Tensor]]:
    h, pooled, hs, ats = ${BASE_CALL}
    logits = ${lin(q, 'self.qa_outputs', 'h')}                 # [B, T, 2]
    start, end = logits.split(1, -1)
    return start.squeeze(-1).contiguous(), end.squeeze(-1).contiguous(), hs, ats
`));
      break;
    case 'BertForMultipleChoice':
      m.registerModule('classifier', linear(c.hidden_size, 1, std, q));
      m.define(withPacked(`
def forward(self, ${BASE_ARGS}) -> Tuple[Tensor, List[Tensor], List[Tensor]]:
    C = input_ids.size(1)
    flat = input_ids.view(-1, input_ids.size(-1))                                          # [B, C, T] -> [B*C, T]
    am = attention_mask.view(-1, attention_mask.size(-1)) if attention_mask is not None else None
    tt = token_type_ids.view(-1, token_type_ids.size(-1)) if token_type_ids is not None else None
    pi = position_ids.view(-1, position_ids.size(-1)) if position_ids is not None else None
${pooledOnly('(flat, am, tt, pi, want_hidden, want_attn)', q)}
    logits = ${lin(q, 'self.classifier', drop(q, 'pooled', dropP))}
    return logits.view(-1, C), hs, ats                                                      # [B*C, 1] -> [B, C]
`));
      break;
    case 'BertForMaskedLM': {
      const cls = new ScriptModule('BertOnlyMLMHead');
      cls.registerModule('predictions', mlmHead(c, word(), q));
      m.registerModule('cls', cls);
      m.define(withPacked(`
def forward(self, ${BASE_ARGS}) -> Tuple[Tensor, List[Tensor], List[Tensor]]:
    h, pooled, hs, ats = ${BASE_CALL}
    return self.cls.predictions.forward(h), hs, ats                                         # [B, T, V]

def mlm_loss_logits(self, input_ids: Tensor, attention_mask: Optional[Tensor], labels: Tensor) -> Tuple[Tensor, Tensor]:
    # The MLM loss from the masked positions only: the same mean cross entropy as over all
    # positions with -100 ignored, without the [B, T, V] logits of unmasked tokens; and those
    # positions' logits [N, V] (row-major order of the masked positions).
    h, pooled, hs, ats = self.bert.forward(input_ids, attention_mask, None, None, False, False)
    sel = labels.ne(-100)                                                                   # [B, T]
    logits = self.cls.predictions.forward(h[sel])                                           # [N, H] -> [N, V]
    target = labels[sel]
    picked = logits.gather(1, target.unsqueeze(1)).squeeze(1)
    return (torch.logsumexp(logits, -1) - picked).mean(), logits

def mlm_loss(self, input_ids: Tensor, attention_mask: Optional[Tensor], labels: Tensor) -> Tensor:
    return self.mlm_loss_logits(input_ids, attention_mask, labels)[0]
`));
      break;
    }
    case 'BertForPreTraining':
    case 'BertForNextSentencePrediction': {
      const cls = new ScriptModule(kind === 'BertForPreTraining' ? 'BertPreTrainingHeads' : 'BertOnlyNSPHead');
      if (kind === 'BertForPreTraining') cls.registerModule('predictions', mlmHead(c, word(), q));
      cls.registerModule('seq_relationship', linear(c.hidden_size, 2, std, q));
      m.registerModule('cls', cls);
      const mlm = kind === 'BertForPreTraining' ? 'self.cls.predictions.forward(h), ' : '';
      const ret = kind === 'BertForPreTraining' ? 'Tuple[Tensor, Tensor, List[Tensor], List[Tensor]]' : 'Tuple[Tensor, List[Tensor], List[Tensor]]';
      m.define(withPacked(`
def forward(self, ${BASE_ARGS}) -> ${ret}:${kind === 'BertForPreTraining' ? `
    h, pooled, hs, ats = ${BASE_CALL}
    assert pooled is not None` : pooledOnly(BASE_ARGS_CALL, q)}
    return ${mlm}${lin(q, 'self.cls.seq_relationship', 'pooled')}, hs, ats
`));
      break;
    }
  }
  return m;
}

// ---------- the model classes ----------

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
}

const TIED = ['cls.predictions.decoder.weight', 'cls.predictions.decoder.bias'];
/** Names that share one tensor in the MLM head (HF ties the decoder to the word embeddings and to cls.predictions.bias). */
const TIED_PAIRS = [['cls.predictions.decoder.weight', 'bert.embeddings.word_embeddings.weight'], ['cls.predictions.decoder.bias', 'cls.predictions.bias']];

/** Any BERT architecture: the TorchScript module plus its config and the HF-style forward. */
export class BertPreTrainedModel {
  readonly kind: HeadKind;
  readonly config: BertConfig;
  readonly module: ScriptModule;
  /** An int8 dynamically quantised copy from quantizeDynamic(): inference only, on the CPU. */
  readonly quantized: boolean;
  /** An fp32 copy with prepacked linear weights from prepack(): inference only, on the CPU. */
  readonly prepacked: boolean;

  constructor(kind: HeadKind, config: BertConfig, module?: ScriptModule, opts: { quantized?: boolean; prepacked?: boolean } = {}) {
    if (!HEADS.includes(kind)) throw new TypeError(`unknown BERT architecture '${kind}' (expected one of ${HEADS.join(', ')})`);
    this.kind = kind;
    this.config = config;
    this.quantized = !!opts.quantized;
    this.prepacked = !!opts.prepacked;
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
      if ((t.device && !t.device.startsWith('cpu')) || (t.dtype && t.dtype !== 'float32')) throw new Error(`a ${this.#inferenceOnly} model runs on the CPU in float32: it cannot move or change dtype`);
    }
    this.module.to(target);
    this.#retie();
    return this;
  }
  #retie(): void {
    if (!['BertForMaskedLM', 'BertForPreTraining'].includes(this.kind)) return;
    const bert = this.module.getAttr('bert') as ScriptModule;
    const word = (bert.getAttr('embeddings') as ScriptModule).getAttr('word_embeddings') as ScriptModule;
    const pred = (this.module.getAttr('cls') as ScriptModule).getAttr('predictions') as ScriptModule;
    const decoder = pred.getAttr('decoder') as ScriptModule;
    decoder.setAttr('weight', word.getAttr('weight') as Tensor);
    decoder.setAttr('bias', pred.getAttr('bias') as Tensor);
  }

  /**
   * Copies tensors into the parameters by name, accepting HF checkpoints with or without the `bert.`
   * prefix and old `gamma`/`beta` LayerNorm names. Reports missing and unexpected keys as HF does.
   */
  loadStateDict(state: Map<string, Tensor>, opts: { strict?: boolean } = {}): LoadReport {
    const params = new Map(this.module.namedParameters());
    const base = this.kind !== 'BertModel';
    const rename = (k: string) => {
      let n = k.replace(/\.gamma$/, '.weight').replace(/\.beta$/, '.bias');
      if (base && !n.startsWith('bert.') && !n.startsWith('cls.') && !params.has(n) && params.has(`bert.${n}`)) n = `bert.${n}`;
      if (!base && n.startsWith('bert.')) n = n.slice(5);
      return n;
    };
    const unexpected: string[] = [];
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
          const msg = `size mismatch for ${n}: checkpoint has [${t.shape}], model has [${p.shape}]`;
          for (const q of params.values()) q.dispose();
          throw new RangeError(msg);
        }
        p.copy_(t);
        loaded.add(n);
        for (const pair of TIED_PAIRS) if (pair.includes(n)) pair.forEach((t) => loaded.add(t)); // one tensor, two names
      }
    });
    const missing = [...params.keys()].filter((n) => !loaded.has(n));
    // the handles namedParameters() made; the module keeps its tensors
    for (const p of params.values()) p.dispose();
    if (opts.strict && (missing.length || unexpected.length)) throw new Error(`loadStateDict: missing keys ${JSON.stringify(missing)}, unexpected keys ${JSON.stringify(unexpected)}`);
    return { missingKeys: missing, unexpectedKeys: unexpected };
  }

  /** Runs forward (and the loss when labels are given) with the TorchScript module on a worker thread. */
  async forward(inputs: BertInputs): Promise<BertOutput> {
    if (!(inputs.inputIds instanceof Tensor)) throw new TypeError('inputs.inputIds must be an int64 Tensor');
    const args = [inputs.inputIds, inputs.attentionMask ?? null, inputs.tokenTypeIds ?? null, inputs.positionIds ?? null, !!inputs.outputHiddenStates, !!inputs.outputAttentions];
    const out = (await this.module.call(this.#method(inputs), ...args)) as (Tensor | Tensor[] | null)[];
    return this.#wrap(out, inputs);
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

  #wrap(out: (Tensor | Tensor[] | null)[], inputs: BertInputs): BertOutput {
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
        const loss = inputs.labels ? F.crossEntropy(logits.view(-1, logits.size(-1)), inputs.labels.view(-1)) : undefined;
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
          const a = F.crossEntropy(pred.view(-1, c.vocab_size), inputs.labels.view(-1));
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
    return (await this.module.call('mlm_loss', inputs.inputIds, inputs.attentionMask ?? null, inputs.labels)) as Tensor;
  }
  /** mlmLoss() and the logits [N, V] at the N masked positions (labels != -100, row-major), e.g. to sample replacements (ELECTRA). */
  async mlmLossAndLogits(inputs: { inputIds: Tensor; attentionMask?: Tensor; labels: Tensor }): Promise<{ loss: Tensor; logits: Tensor }> {
    if (this.kind !== 'BertForMaskedLM') throw new TypeError(`mlmLossAndLogits needs a BertForMaskedLM, this is a ${this.kind}`);
    const [loss, logits] = (await this.module.call('mlm_loss_logits', inputs.inputIds, inputs.attentionMask ?? null, inputs.labels)) as Tensor[];
    return { loss, logits };
  }

  /**
   * An inference-only copy whose linear layers run in int8: weights quantised per output channel
   * (symmetric), activations quantised per call from their range, int32 accumulation (fbgemm), as
   * torch.ao's `quantize_dynamic(model, {nn.Linear: per_channel_dynamic_qconfig})`. Embeddings,
   * LayerNorm, attention and softmax stay float32. CPU only; this model is unchanged.
   */
  quantizeDynamic(): BertPreTrainedModel {
    return this.#inferenceCopy('int8');
  }

  /**
   * An inference-only fp32 copy whose linear layers keep their weights laid out once for the GEMM that
   * measured fastest on this machine for their shape and row count (torchbert::linear_prepacked,
   * native/linear_select.cc): our packed kernel (native/kernels.cc), oneDNN's (AVX2, AVX-512 or AMX) or
   * ATen's, instead of libtorch's GEMM repacking the weight on every call. Query, key and value run as
   * one product and GELU inside the GEMM. The measurement takes seconds the first time a shape meets a
   * machine and is cached on disk after (linear-plan.ts; `tb.linearTuning()` shows it); `backend`
   * (or TORCHBERT_PREPACKED) runs one GEMM everywhere instead. The same results to float rounding. CPU only;
   * this model is unchanged. This measures on the calling thread: prepackAsync() does it on a worker.
   */
  prepack(opts: { backend?: LinearBackend | 'auto' } = {}): BertPreTrainedModel {
    const copy = this.#prepackedCopy(opts);
    ensureLinearPlan(copy.targets.map((t) => t.shape));
    return copy.fill();
  }
  /** prepack() with its GEMM measurements off the event loop. */
  async prepackAsync(opts: { backend?: LinearBackend | 'auto' } = {}): Promise<BertPreTrainedModel> {
    const copy = this.#prepackedCopy(opts);
    try {
      await ensureLinearPlanAsync(copy.targets.map((t) => t.shape));
    } catch (e) {
      copy.module.dispose();
      throw e;
    }
    return copy.fill();
  }

  #inferenceCopy(mode: 'int8'): BertPreTrainedModel {
    const { module, state } = this.#copyBase(mode);
    tb.noGrad(() => {
      const pack = (m: ScriptModule, prefix: string): void => {
        for (const [n, child] of m.namedChildren()) {
          const at = prefix + n;
          if (child.hasAttr('_packed_params')) {
            const [w, b] = [state.get(`${at}.weight`)!, state.get(`${at}.bias`)];
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
    });
    module.train(false);
    return new BertPreTrainedModel(this.kind, this.config, module, { quantized: true });
  }

  /** The inference module of `mode` with the float model's other parameters copied in. */
  #copyBase(mode: 'int8' | 'prepacked'): { module: ScriptModule; state: Map<string, Tensor> } {
    const what = mode === 'int8' ? 'quantizeDynamic' : 'prepack';
    if (this.#inferenceOnly) throw new Error(`${what}: the model is already ${this.#inferenceOnly}`);
    const state = new Map(this.module.namedParameters());
    const first = state.values().next().value!;
    if (first.device !== 'cpu') throw new Error(`${what}: runs on the CPU, the model is on ${first.device}`);
    if (first.dtype !== 'float32') throw new Error(`${what}: needs float32 weights, the model is ${first.dtype}`);
    const module = tb.noGrad(() => ScriptModule.inNewUnit(() => buildHead(this.kind, this.config.fields, mode)));
    tb.noGrad(() => {
      for (const [n, p] of module.namedParameters()) p.copy_(state.get(n)!);
    });
    return { module, state };
  }

  /** The prepacked module, its linear layers with their shapes, and fill(): lays out each weight as the plan says. */
  #prepackedCopy(opts: { backend?: LinearBackend | 'auto' }) {
    const forced = forcedBackend(opts.backend);
    const { module, state } = this.#copyBase('prepacked');
    const gelu = fusedActivation(this.config.fields.hidden_act);
    const targets: { child: ScriptModule; weight: () => Tensor; bias: () => Tensor; stacked: boolean; shape: LinearShape }[] = [];
    const walk = (m: ScriptModule, prefix: string): void => {
      for (const [n, child] of m.namedChildren()) {
        const at = prefix + n;
        if (!child.hasAttr('packed_weight')) {
          walk(child, `${at}.`);
          continue;
        }
        // The fused qkv layer holds query, key and value stacked.
        const stacked = (k: string) => () => tb.cat(['query', 'key', 'value'].map((part) => state.get(`${prefix}${part}.${k}`)!));
        const weight = n === 'qkv' ? stacked('weight') : () => state.get(`${at}.weight`)!;
        const bias = n === 'qkv' ? stacked('bias') : () => state.get(`${at}.bias`)!.clone();
        const [N, K] = n === 'qkv' ? [3 * state.get(`${prefix}query.weight`)!.size(0), state.get(`${prefix}query.weight`)!.size(1)] : state.get(`${at}.weight`)!.shape;
        // The layers whose GELU runs in the GEMM (linAct): BertIntermediate and the MLM head's transform.
        const activation = /(^|\.)(intermediate|transform)\.dense$/.test(at) ? gelu : 'none';
        targets.push({ child, weight, bias, stacked: n === 'qkv', shape: { n: N, k: K, activation } });
      }
    };
    walk(module, '');
    const fill = (): BertPreTrainedModel => {
      try {
        tb.noGrad(() => {
          for (const t of targets) {
            const backends = forced ? [forced] : planBackends(t.shape);
            if (!backends.length) throw new Error(`prepack: no GEMM plan for ${t.shape.n}x${t.shape.k}`);
            const w = t.weight();
            const layouts: [string, Tensor][] = [['bias', t.bias()]];
            if (backends.includes('torchbert')) layouts.push(['packed_weight', op('torchbert::pack_linear_weight').t(w._handle)]);
            if (backends.includes('onednn')) layouts.push(['onednn_weight', op('torchbert::reorder_linear_weight').t(w._handle)]);
            if (backends.includes('aten')) layouts.push(['weight', w.detach().clone()]);
            for (const [k, v] of layouts) {
              t.child.setAttr(k, v);
              v.dispose();
            }
            if (t.stacked) w.dispose();
          }
        });
      } catch (e) {
        module.dispose();
        throw e;
      }
      module.train(false);
      return new BertPreTrainedModel(this.kind, this.config, module, { prepacked: true });
    };
    return { module, targets, fill };
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
    // torchbert::linear exists only where the addon is loaded: save the same model with torch.linear.
    const copy = tb.noGrad(() => ScriptModule.inNewUnit(() => buildUninitialised(() => buildHead(this.kind, this.config.fields, 'portable'))));
    try {
      const state = new Map(this.module.namedParameters());
      tb.noGrad(() => {
        for (const [n, p] of copy.namedParameters()) p.copy_(state.get(n)!);
      });
      copy.to({ device: state.values().next().value!.device });
      copy.train(this.module.training);
      await copy.save(file);
    } finally {
      copy.dispose();
    }
  }
  #usesOwnOps(m: ScriptModule = this.module): boolean {
    return m.methodNames.some((f) => m.graph(f).includes('torchbert::')) || m.namedChildren().some(([, c]) => this.#usesOwnOps(c));
  }
}

function sequenceLoss(logits: Tensor, labels: Tensor, c: BertConfigFields): Tensor {
  const nl = c.num_labels ?? 2;
  const problem = c.problem_type ?? (nl === 1 ? 'regression' : labels.dtype === 'int64' || labels.dtype === 'int32' ? 'single_label_classification' : 'multi_label_classification');
  if (problem === 'regression') return nl === 1 ? F.mseLoss(logits.squeeze(), labels.squeeze().float()) : F.mseLoss(logits, labels.float());
  if (problem === 'single_label_classification') return F.crossEntropy(logits.view(-1, nl), labels.view(-1));
  return F.bceWithLogits(logits, labels.float());
}

/** Loads config.json + safetensors weights (single file or sharded with an index). */
async function readWeights(dir: string, files: Set<string>, device?: string): Promise<Map<string, Tensor>> {
  if (files.has('model.safetensors')) return loadFile(path.join(dir, 'model.safetensors'), { device });
  if (files.has('model.safetensors.index.json')) {
    const idx = JSON.parse(fs.readFileSync(path.join(dir, 'model.safetensors.index.json'), 'utf8'));
    const shards = [...new Set(Object.values(idx.weight_map ?? {}) as string[])];
    if (!shards.length) throw new Error(`${dir}/model.safetensors.index.json: empty weight_map`);
    const out = new Map<string, Tensor>();
    for (const s of shards) for (const [k, t] of await loadFile(path.join(dir, s), { device })) out.set(k, t);
    return out;
  }
  throw new Error(`${dir}: no model.safetensors (or model.safetensors.index.json); PyTorch .bin checkpoints are not read, convert them to safetensors`);
}

/**
 * Loads a BERT checkpoint from a folder or Hub name. `kind` picks the head (default: the first of
 * config.architectures, like AutoModel), and the report lists missing/unexpected keys.
 * @example const m = await fromPretrained('./bert-tiny', { kind: 'BertForSequenceClassification' });
 */
export async function fromPretrained(dirOrName: string, opts: HubOptions & { kind?: HeadKind; device?: string; dtype?: DType; config?: Partial<BertConfigFields>; quantize?: 'int8'; prepack?: boolean } = {}): Promise<BertPreTrainedModel & { loadReport: LoadReport }> {
  if (opts.quantize && opts.prepack) throw new TypeError("choose quantize: 'int8' or prepack, not both");
  if (opts.quantize !== undefined && opts.quantize !== 'int8') throw new TypeError(`quantize must be 'int8', got ${JSON.stringify(opts.quantize)}`);
  if ((opts.quantize || opts.prepack) && ((opts.device && !opts.device.startsWith('cpu')) || (opts.dtype && opts.dtype !== 'float32'))) throw new TypeError("quantize and prepack run on the CPU from float32 weights");
  const { dir, files } = await resolveModelDir(dirOrName, { required: [['config.json'], ['model.safetensors', 'model.safetensors.index.json']], optional: [] }, opts);
  if (files.has('model.safetensors.index.json') && !files.has('model.safetensors') && !fs.existsSync(path.join(dir, 'model.safetensors'))) {
    // Sharded on the Hub: fetch the shards the index names.
    const idx = JSON.parse(fs.readFileSync(path.join(dir, 'model.safetensors.index.json'), 'utf8'));
    for (const s of new Set(Object.values(idx.weight_map ?? {}) as string[])) if (!fs.existsSync(path.join(dir, s))) await resolveModelDir(dirOrName, { required: [[s]], optional: [] }, opts);
  }
  if (opts.dtype === 'bfloat16' && !(opts.device ?? 'cpu').startsWith('cuda')) checkCpuBf16('fromPretrained({ dtype: bfloat16 })');
  let config = BertConfig.fromFile(path.join(dir, 'config.json'));
  if (opts.config) config = config.with(opts.config);
  const arch = opts.kind ?? (config.fields.architectures?.find((a) => HEADS.includes(a as HeadKind)) as HeadKind | undefined) ?? 'BertModel';
  const state = await readWeights(dir, new Set([...files, ...fs.readdirSync(dir)]), undefined);
  const module = tb.tidy(() => tb.noGrad(() => ScriptModule.inNewUnit(() => buildUninitialised(() => buildHead(arch, config.fields)))));
  const model = new BertPreTrainedModel(arch, config, module);
  let report: LoadReport;
  try {
    report = model.loadStateDict(state);
  } catch (e) {
    module.dispose();
    throw e;
  } finally {
    for (const t of state.values()) t.dispose();
  }
  initWeights(model, report.missingKeys);
  if (opts.device || opts.dtype) model.to({ device: opts.device, dtype: opts.dtype });
  model.eval();
  if (opts.quantize || opts.prepack) {
    const q = opts.quantize ? model.quantizeDynamic() : await model.prepackAsync();
    model.module.dispose();
    return Object.assign(q, { loadReport: report });
  }
  return Object.assign(model, { loadReport: report });
}

/** HF's _init_weights for the named parameters (those a checkpoint lacked): N(0, initializer_range) for
 * Linear and Embedding weights (the padding row zero), zeros for biases, ones for LayerNorm weights. */
function initWeights(model: BertPreTrainedModel, names: string[]): void {
  if (names.length === 0) return;
  const params = new Map(model.module.namedParameters());
  const { initializer_range: std, pad_token_id: pad } = model.config.fields;
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
  for (const p of params.values()) p.dispose();
}

/** A model of the given architecture with fresh HF-style initialisation. */
export function fromConfig(kind: HeadKind, config: BertConfig | Partial<BertConfigFields>): BertPreTrainedModel {
  return new BertPreTrainedModel(kind, config instanceof BertConfig ? config : new BertConfig(config));
}
