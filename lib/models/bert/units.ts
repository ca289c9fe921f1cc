// BertModel as TorchScript units, one per Hugging Face module of modeling_bert.py and named after it,
// with HF's parameter names. Each unit's source is written out once and is the same in every mode:
// how a linear layer or dropout runs is the Linear/Dropout unit's business (layers.ts). Two variants
// are arguments of the build, not rewrites of the source: the pooler (HF's add_pooling_layer) and, in
// the inference copies (int8 and prepacked), query/key/value as one GEMM (BertSelfAttention.project).
//
// Inference-only methods beside forward (the model class picks them):
//   forward_packed      the dense layers run on the real tokens only [N, H]; attention sees the padded
//                       layout. Real positions equal forward()'s, padded ones are zeros.
//   forward_cls         for heads that read the pooled output only: the last layer computes the first
//                       token's row alone (keys and values still from every token).
//   forward_packed_cls  both.
import { ScriptModule } from '../../core';
import * as tb from '../../core';
import type { BertConfigFields } from '../config';
import { LinearMode, attention, dropout, embedding, layerNorm, linear, unit } from './layers';

const dense = (inF: number, outF: number, c: BertConfigFields, mode: LinearMode, activation?: string) =>
  linear(inF, outF, { std: c.initializer_range, mode, activation });

/** HF BertEmbeddings: word + token type + position embeddings, LayerNorm, dropout. */
export function BertEmbeddings(c: BertConfigFields, mode: LinearMode): ScriptModule {
  const std = c.initializer_range;
  return unit('BertEmbeddings', {
    word_embeddings: embedding(c.vocab_size, c.hidden_size, std, c.pad_token_id),
    position_embeddings: embedding(c.max_position_embeddings, c.hidden_size, std),
    token_type_embeddings: embedding(c.type_vocab_size, c.hidden_size, std),
    LayerNorm: layerNorm(c.hidden_size),
    dropout: dropout(c.hidden_dropout_prob, mode),
  }, `
def forward(self, input_ids: Tensor, token_type_ids: Optional[Tensor], position_ids: Optional[Tensor]) -> Tensor:
    seq_len = input_ids.size(1)
    if position_ids is None:
        position_ids = self.position_ids[:, :seq_len]                                  # [1, T]
    if token_type_ids is None:
        token_type_ids = torch.zeros_like(input_ids)
    e = torch.embedding(self.word_embeddings.weight, input_ids, ${c.pad_token_id})     # [B, T, H]
    e = e + torch.embedding(self.token_type_embeddings.weight, token_type_ids)
    e = e + torch.embedding(self.position_embeddings.weight, position_ids)
    e = torch.layer_norm(e, [${c.hidden_size}], self.LayerNorm.weight, self.LayerNorm.bias, ${c.layer_norm_eps})
    return self.dropout.forward(e)
`, { buffers: { position_ids: tb.arange(c.max_position_embeddings, undefined, 1, { dtype: 'int64' }).unsqueeze(0) } });
}

/** HF BertSelfAttention (SDPA attention; spelled out where the weights are asked for or dropout runs on the CPU). */
export function BertSelfAttention(c: BertConfigFields, mode: LinearMode): ScriptModule {
  const H = c.hidden_size;
  const nH = c.num_attention_heads;
  const dH = H / nH;
  // Inference copies hold query, key and value stacked as one [3H, H] weight: one GEMM, the input packed
  // (int8: quantised) once, and for unpadded rows one scatter back to the padded layout instead of three.
  // int8 stays torch.ao's numbers: its weights are quantised per output row, its input once per call either way.
  const fused = mode === 'prepacked' || mode === 'int8';
  const projections: Record<string, ScriptModule> = fused ? { qkv: dense(H, 3 * H, c, mode) } : { query: dense(H, H, c, mode), key: dense(H, H, c, mode), value: dense(H, H, c, mode) };
  const project = fused ? `
def project(self, h: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    # query, key and value of h [..., H], each [..., H], from one GEMM
    return self.split_qkv(self.qkv.forward(h))

def split_qkv(self, qkv: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    return qkv.narrow(-1, 0, ${H}), qkv.narrow(-1, ${H}, ${H}), qkv.narrow(-1, ${2 * H}, ${H})

def project_padded(self, h: Tensor, idx: Tensor, B: int, T: int) -> Tuple[Tensor, Tensor, Tensor]:
    # query, key and value of the real tokens' rows h [N, H], in the padded layout [B, T, H] each
    return self.split_qkv(self.unpack(self.qkv.forward(h), idx, B, T))
` : `
def project(self, h: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
    # query, key and value of h [..., H], each [..., H]
    return self.query.forward(h), self.key.forward(h), self.value.forward(h)

def project_padded(self, h: Tensor, idx: Tensor, B: int, T: int) -> Tuple[Tensor, Tensor, Tensor]:
    # query, key and value of the real tokens' rows h [N, H], in the padded layout [B, T, H] each
    q, k, v = self.project(h)
    return self.unpack(q, idx, B, T), self.unpack(k, idx, B, T), self.unpack(v, idx, B, T)
`;
  return unit('BertSelfAttention', { ...projections, dropout: dropout(c.attention_probs_dropout_prob, mode) }, `${project}
def split_heads(self, x: Tensor, B: int, T: int) -> Tensor:
    return x.view(B, T, ${nH}, ${dH}).transpose(1, 2)                                 # [B, T, H] -> [B, nH, T, dH]

def unpack(self, x: Tensor, idx: Tensor, B: int, T: int) -> Tensor:
    # the real tokens' rows [N, W] back in the padded layout [B, T, W], zeros elsewhere
    return x.new_zeros([B * T, x.size(1)]).index_copy(0, idx, x).view(B, T, x.size(1))

def forward(self, h: Tensor, mask: Optional[Tensor], want_attn: bool) -> Tuple[Tensor, Optional[Tensor]]:
    B = h.size(0)
    T = h.size(1)
    q, k, v = self.project(h)
    q = self.split_heads(q, B, T)
    k = self.split_heads(k, B, T)
    v = self.split_heads(v, B, T)
    p = self.dropout.p if self.training else 0.0
    attn: Optional[Tensor] = None
    if want_attn or (p > 0.0 and not h.is_cuda):
        # Spelled out for the weights, and for dropout on the CPU, where SDPA would run these same
        # steps (its fused CPU kernels have no dropout) with torch's dropout instead of the model's.
        scores = torch.matmul(q, k.transpose(-1, -2)) / ${Math.sqrt(dH)}               # [B, nH, T, T]
        if mask is not None:
            scores = scores.masked_fill(mask.logical_not(), float('-inf'))
        probs = torch.softmax(scores, -1)
        if want_attn:
            attn = probs
        ctx = torch.matmul(self.dropout.forward(probs), v)                             # [B, nH, T, dH]
    else:
        ctx = ${attention(mode, 'q, k, v, mask', 'p')}                     # [B, nH, T, dH]
    return ctx.transpose(1, 2).reshape(B, T, ${H}), attn                              # [B, T, H]

def forward_packed(self, h: Tensor, idx: Tensor, B: int, T: int, mask: Tensor) -> Tensor:
    q, k, v = self.project_padded(h, idx, B, T)                                        # [B, T, H] each
    q = self.split_heads(q, B, T)
    k = self.split_heads(k, B, T)
    v = self.split_heads(v, B, T)
    ctx = ${attention(mode, 'q, k, v, mask')}                       # [B, nH, T, dH]
    return ctx.transpose(1, 2).reshape(B * T, ${H}).index_select(0, idx)                # [N, H]

def forward_cls(self, h: Tensor, mask: Optional[Tensor]) -> Tensor:
    B = h.size(0)
    T = h.size(1)
    q, k, v = self.project(h)
    q = self.split_heads(q[:, :1], B, 1)                                               # [B, nH, 1, dH]
    k = self.split_heads(k, B, T)
    v = self.split_heads(v, B, T)
    return ${attention(mode, 'q, k, v, mask')}.reshape(B, ${H})      # [B, H]

def forward_packed_cls(self, h: Tensor, idx: Tensor, B: int, T: int, mask: Tensor) -> Tensor:
    # every sequence's first token is real (BertModel.forward_packed_cls): its query sits at [b, 0]
    q, k, v = self.project_padded(h, idx, B, T)
    q = self.split_heads(q[:, :1], B, 1)                                               # [B, nH, 1, dH]
    k = self.split_heads(k, B, T)
    v = self.split_heads(v, B, T)
    return ${attention(mode, 'q, k, v, mask')}.reshape(B, ${H})
`);
}

/** HF BertSelfOutput and BertOutput: dense, dropout, then LayerNorm of the residual sum. */
function denseAddNorm(name: 'BertSelfOutput' | 'BertOutput', inF: number, c: BertConfigFields, mode: LinearMode): ScriptModule {
  return unit(name, { dense: dense(inF, c.hidden_size, c, mode), LayerNorm: layerNorm(c.hidden_size), dropout: dropout(c.hidden_dropout_prob, mode) }, `
def forward(self, hidden_states: Tensor, input_tensor: Tensor) -> Tensor:
    h = self.dropout.forward(self.dense.forward(hidden_states))
    return torch.layer_norm(h + input_tensor, [${c.hidden_size}], self.LayerNorm.weight, self.LayerNorm.bias, ${c.layer_norm_eps})
`);
}
export const BertSelfOutput = (c: BertConfigFields, mode: LinearMode) => denseAddNorm('BertSelfOutput', c.hidden_size, c, mode);
export const BertOutput = (c: BertConfigFields, mode: LinearMode) => denseAddNorm('BertOutput', c.intermediate_size, c, mode);

/** HF BertAttention: self-attention, then its output block over the residual. */
export function BertAttention(c: BertConfigFields, mode: LinearMode): ScriptModule {
  return unit('BertAttention', { self: BertSelfAttention(c, mode), output: BertSelfOutput(c, mode) }, `
def forward(self, h: Tensor, mask: Optional[Tensor], want_attn: bool) -> Tuple[Tensor, Optional[Tensor]]:
    a, w = self.self.forward(h, mask, want_attn)
    return self.output.forward(a, h), w

def forward_packed(self, h: Tensor, idx: Tensor, B: int, T: int, mask: Tensor) -> Tensor:
    return self.output.forward(self.self.forward_packed(h, idx, B, T, mask), h)

def forward_cls(self, h: Tensor, mask: Optional[Tensor]) -> Tensor:
    return self.output.forward(self.self.forward_cls(h, mask), h[:, 0])

def forward_packed_cls(self, h: Tensor, idx: Tensor, B: int, T: int, mask: Tensor, rows: Tensor) -> Tensor:
    return self.output.forward(self.self.forward_packed_cls(h, idx, B, T, mask), h.index_select(0, rows))
`);
}

/** HF BertIntermediate: dense with hidden_act (the layer applies it: inside the GEMM when prepacked). */
export function BertIntermediate(c: BertConfigFields, mode: LinearMode): ScriptModule {
  return unit('BertIntermediate', { dense: dense(c.hidden_size, c.intermediate_size, c, mode, c.hidden_act) }, `
def forward(self, h: Tensor) -> Tensor:
    return self.dense.forward(h)
`);
}

/** HF BertLayer: attention, then the feed-forward block (intermediate and output). */
export function BertLayer(c: BertConfigFields, mode: LinearMode): ScriptModule {
  return unit('BertLayer', { attention: BertAttention(c, mode), intermediate: BertIntermediate(c, mode), output: BertOutput(c, mode) }, `
def forward(self, h: Tensor, mask: Optional[Tensor], want_attn: bool) -> Tuple[Tensor, Optional[Tensor]]:
    a, w = self.attention.forward(h, mask, want_attn)
    return self.output.forward(self.intermediate.forward(a), a), w

def forward_packed(self, h: Tensor, idx: Tensor, B: int, T: int, mask: Tensor) -> Tensor:
    a = self.attention.forward_packed(h, idx, B, T, mask)
    return self.output.forward(self.intermediate.forward(a), a)

def forward_cls(self, h: Tensor, mask: Optional[Tensor]) -> Tensor:
    a = self.attention.forward_cls(h, mask)                                            # [B, H]
    return self.output.forward(self.intermediate.forward(a), a)

def forward_packed_cls(self, h: Tensor, idx: Tensor, B: int, T: int, mask: Tensor, rows: Tensor) -> Tensor:
    a = self.attention.forward_packed_cls(h, idx, B, T, mask, rows)
    return self.output.forward(self.intermediate.forward(a), a)
`);
}

/** HF BertEncoder: the layers in turn (the loop over HF's ModuleList written out, one call per layer). */
export function BertEncoder(c: BertConfigFields, mode: LinearMode): ScriptModule {
  const L = c.num_hidden_layers;
  const layers: Record<string, ScriptModule> = {};
  for (let i = 0; i < L; i++) layers[String(i)] = BertLayer(c, mode);
  const each = (line: (i: number) => string, from = 0, to = L) => Array.from({ length: to - from }, (_, j) => line(from + j)).join('');
  const layer = (i: number) => `getattr(self.layer, "${i}")`;
  return unit('BertEncoder', { layer: unit('ModuleList', layers) }, `
def forward(self, h: Tensor, mask: Optional[Tensor], want_hidden: bool, want_attn: bool) -> Tuple[Tensor, List[Tensor], List[Tensor]]:
    hiddens: List[Tensor] = []
    attns: List[Tensor] = []${each((i) => `
    if want_hidden:
        hiddens.append(h)
    h, w = ${layer(i)}.forward(h, mask, want_attn)
    if w is not None:
        attns.append(w)`)}
    if want_hidden:
        hiddens.append(h)
    return h, hiddens, attns

def forward_packed(self, h: Tensor, idx: Tensor, B: int, T: int, mask: Tensor) -> Tensor:${each((i) => `
    h = ${layer(i)}.forward_packed(h, idx, B, T, mask)`)}
    return h

def forward_cls(self, h: Tensor, mask: Optional[Tensor]) -> Tensor:${each((i) => `
    h, w = ${layer(i)}.forward(h, mask, False)`, 0, L - 1)}
    return ${layer(L - 1)}.forward_cls(h, mask)                                          # [B, H]

def forward_packed_cls(self, h: Tensor, idx: Tensor, B: int, T: int, mask: Tensor, rows: Tensor) -> Tensor:${each((i) => `
    h = ${layer(i)}.forward_packed(h, idx, B, T, mask)`, 0, L - 1)}
    return ${layer(L - 1)}.forward_packed_cls(h, idx, B, T, mask, rows)
`);
}

/** HF BertPooler: tanh(dense(first token)). */
export function BertPooler(c: BertConfigFields, mode: LinearMode): ScriptModule {
  return unit('BertPooler', { dense: dense(c.hidden_size, c.hidden_size, c, mode, 'tanh') }, `
def forward(self, h: Tensor) -> Tensor:
    return self.dense.forward(h[:, 0])                                                 # [B, T, H] -> [B, H]
`);
}

const ARGS = 'input_ids: Tensor, attention_mask: Optional[Tensor], token_type_ids: Optional[Tensor], position_ids: Optional[Tensor]';
const OUT = 'Tuple[Tensor, Optional[Tensor], List[Tensor], List[Tensor]]';

/**
 * HF BertModel: embeddings, encoder and (addPooler) the pooler. Returns (last hidden state, pooled
 * output or None, hidden states, attentions). Besides forward and the inference variants, heads call
 * encode(..., unpadded) and pooled_output(..., unpadded), the variant as an argument.
 * `firstTokenShortcut` lets pooled_output use forward_cls in inference; int8 copies turn it off, as
 * their dynamic activation ranges would then come from the first token's rows alone in the last layer
 * (no longer torch.ao's quantisation of the same model).
 */
export function BertModel(c: BertConfigFields, mode: LinearMode, o: { addPooler: boolean }): ScriptModule {
  const H = c.hidden_size;
  const pooled = o.addPooler ? `
def pool(self, h: Tensor) -> Optional[Tensor]:
    return self.pooler.forward(h)

def forward_cls(self, ${ARGS}) -> Tensor:
    e = self.embeddings.forward(input_ids, token_type_ids, position_ids)
    return self.pooler.forward(self.encoder.forward_cls(e, self.padding_mask(attention_mask)).unsqueeze(1))  # [B, H]

def forward_packed_cls(self, ${ARGS}) -> Tensor:
    # A sequence whose first token is padding runs padded, so its pooled output is HF's (forward_packed
    # would pool a zero row).
    if attention_mask is None or not bool(attention_mask[:, 0].ne(0).all()):
        return self.forward_cls(input_ids, attention_mask, token_type_ids, position_ids)
    B = input_ids.size(0)
    T = input_ids.size(1)
    x, idx, mask = self.packed_embeddings(input_ids, attention_mask, token_type_ids, position_ids)
    n = attention_mask.ne(0).sum(1)
    rows = n.cumsum(0) - n                                                             # [B] first token of each in [N]
    return self.pooler.forward(self.encoder.forward_packed_cls(x, idx, B, T, mask, rows).unsqueeze(1))

def pooled_output(self, ${ARGS}, want_hidden: bool, want_attn: bool, unpadded: bool) -> Tuple[Tensor, List[Tensor], List[Tensor]]:
    if self.training or want_hidden or want_attn or not self.first_token_shortcut:
        h, p, hs, ats = self.encode(input_ids, attention_mask, token_type_ids, position_ids, want_hidden, want_attn, unpadded)
        assert p is not None
        return p, hs, ats
    none: List[Tensor] = []
    if unpadded:
        return self.forward_packed_cls(input_ids, attention_mask, token_type_ids, position_ids), none, none
    return self.forward_cls(input_ids, attention_mask, token_type_ids, position_ids), none, none
` : `
def pool(self, h: Tensor) -> Optional[Tensor]:
    return None
`;
  const children = { embeddings: BertEmbeddings(c, mode), encoder: BertEncoder(c, mode), ...(o.addPooler ? { pooler: BertPooler(c, mode) } : {}) };
  return unit('BertModel', children, `
def padding_mask(self, attention_mask: Optional[Tensor]) -> Optional[Tensor]:
    mask: Optional[Tensor] = None
    if attention_mask is not None:
        attend = attention_mask.ne(0)
        if not bool(attend.all()):                                                     # no padding: no mask (as HF's SDPA path)
            mask = attend[:, None, None, :]                                            # [B, T] -> [B, 1, 1, T], True = attend
    return mask

def packed_embeddings(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Optional[Tensor], position_ids: Optional[Tensor]) -> Tuple[Tensor, Tensor, Tensor]:
    # The real tokens' embeddings [N, H], their rows in the flattened [B*T], and the [B, 1, 1, T] mask.
    e = self.embeddings.forward(input_ids, token_type_ids, position_ids)
    attend = attention_mask.ne(0)
    idx = attend.reshape(-1).nonzero().squeeze(1)
    return e.reshape(-1, ${H}).index_select(0, idx), idx, attend[:, None, None, :]
${pooled}
def forward(self, ${ARGS}, want_hidden: bool, want_attn: bool) -> ${OUT}:
    e = self.embeddings.forward(input_ids, token_type_ids, position_ids)
    h, hiddens, attns = self.encoder.forward(e, self.padding_mask(attention_mask), want_hidden, want_attn)
    return h, self.pool(h), hiddens, attns

def forward_packed(self, ${ARGS}, want_hidden: bool, want_attn: bool) -> ${OUT}:
    if attention_mask is None or want_hidden or want_attn or self.training:
        return self.forward(input_ids, attention_mask, token_type_ids, position_ids, want_hidden, want_attn)
    B = input_ids.size(0)
    T = input_ids.size(1)
    x, idx, mask = self.packed_embeddings(input_ids, attention_mask, token_type_ids, position_ids)
    h = self.encoder.forward_packed(x, idx, B, T, mask)
    h = h.new_zeros([B * T, ${H}]).index_copy(0, idx, h).view(B, T, ${H})
    none: List[Tensor] = []
    return h, self.pool(h), none, none

def encode(self, ${ARGS}, want_hidden: bool, want_attn: bool, unpadded: bool) -> ${OUT}:
    if unpadded:
        return self.forward_packed(input_ids, attention_mask, token_type_ids, position_ids, want_hidden, want_attn)
    return self.forward(input_ids, attention_mask, token_type_ids, position_ids, want_hidden, want_attn)
`, { attributes: [['first_token_shortcut', 'bool', mode !== 'int8']] });
}
