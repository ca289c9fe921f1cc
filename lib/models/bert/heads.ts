// The task heads of modeling_bert.py over BertModel, one TorchScript unit each, named after the HF
// class. Every head is written once as run(..., unpadded); forward and forward_packed (inference on
// the real tokens only) call it with that flag.
import * as tb from '../../core';
import { ScriptModule, Tensor } from '../../core';
import type { BertConfigFields } from '../config';
import { LinearMode, dropout, layerNorm, linear, unit } from './layers';
import { BertModel } from './units';

export type HeadKind = 'BertModel' | 'BertForSequenceClassification' | 'BertForTokenClassification' | 'BertForMaskedLM' | 'BertForPreTraining'
  | 'BertForNextSentencePrediction' | 'BertForQuestionAnswering' | 'BertForMultipleChoice';
export const HEADS: HeadKind[] = ['BertModel', 'BertForSequenceClassification', 'BertForTokenClassification', 'BertForMaskedLM', 'BertForPreTraining',
  'BertForNextSentencePrediction', 'BertForQuestionAnswering', 'BertForMultipleChoice'];

const ARGS = 'input_ids: Tensor, attention_mask: Optional[Tensor], token_type_ids: Optional[Tensor], position_ids: Optional[Tensor], want_hidden: bool, want_attn: bool';
const CALL = 'input_ids, attention_mask, token_type_ids, position_ids, want_hidden, want_attn';

/** forward and forward_packed of a head whose run() returns `ret`. */
const entries = (ret: string) => `
def forward(self, ${ARGS}) -> ${ret}:
    return self.run(${CALL}, False)

def forward_packed(self, ${ARGS}) -> ${ret}:
    return self.run(${CALL}, True)
`;

/** HF BertLMPredictionHead (with its BertPredictionHeadTransform); the decoder tied to the word embeddings in trainable models. */
function BertLMPredictionHead(c: BertConfigFields, mode: LinearMode, wordEmbeddings: Tensor): ScriptModule {
  const H = c.hidden_size;
  const transform = unit('BertPredictionHeadTransform', {
    dense: linear(H, H, { std: c.initializer_range, mode, activation: c.hidden_act }), LayerNorm: layerNorm(H),
  }, `
def forward(self, h: Tensor) -> Tensor:
    return torch.layer_norm(self.dense.forward(h), [${H}], self.LayerNorm.weight, self.LayerNorm.bias, ${c.layer_norm_eps})
`);
  const bias = tb.zeros([c.vocab_size]);
  // HF ties decoder.weight to the word embeddings and decoder.bias to this bias; an inference copy's
  // decoder holds its own packed copy of both.
  const tied = mode === 'float' || mode === 'portable' ? { weight: wordEmbeddings, bias } : undefined;
  return unit('BertLMPredictionHead', { transform, decoder: linear(H, c.vocab_size, { std: 0, mode, tied }) }, `
def forward(self, h: Tensor) -> Tensor:
    return self.decoder.forward(self.transform.forward(h))                             # [..., H] -> [..., V]
`, { parameters: { bias } });
}

/** A head of `kind` over a BertModel built in `mode`. */
export function buildHead(kind: HeadKind, c: BertConfigFields, mode: LinearMode = 'float'): ScriptModule {
  if (kind === 'BertModel') return BertModel(c, mode, { addPooler: true });
  const H = c.hidden_size;
  const dense = (outF: number) => linear(H, outF, { std: c.initializer_range, mode });
  const headDropout = () => dropout(c.classifier_dropout ?? c.hidden_dropout_prob, mode);
  const labels = c.num_labels ?? 2;
  const bert = BertModel(c, mode, { addPooler: !['BertForTokenClassification', 'BertForMaskedLM', 'BertForQuestionAnswering'].includes(kind) });
  const word = () => (bert.getAttr('embeddings') as ScriptModule).namedParameters().find(([n]) => n === 'word_embeddings.weight')![1];
  const TRIPLE = 'Tuple[Tensor, List[Tensor], List[Tensor]]';
  const QUAD = 'Tuple[Tensor, Tensor, List[Tensor], List[Tensor]]';
  switch (kind) {
    case 'BertForSequenceClassification':
      return unit(kind, { bert, dropout: headDropout(), classifier: dense(labels) }, `${entries(TRIPLE)}
def run(self, ${ARGS}, unpadded: bool) -> ${TRIPLE}:
    pooled, hs, ats = self.bert.pooled_output(${CALL}, unpadded)
    return self.classifier.forward(self.dropout.forward(pooled)), hs, ats              # [B, labels]
`);
    case 'BertForTokenClassification':
      return unit(kind, { bert, dropout: headDropout(), classifier: dense(labels) }, `${entries(TRIPLE)}
def run(self, ${ARGS}, unpadded: bool) -> ${TRIPLE}:
    h, pooled, hs, ats = self.bert.encode(${CALL}, unpadded)
    return self.classifier.forward(self.dropout.forward(h)), hs, ats                   # [B, T, labels]
`);
    case 'BertForQuestionAnswering':
      return unit(kind, { bert, qa_outputs: dense(2) }, `${entries(QUAD)}
def run(self, ${ARGS}, unpadded: bool) -> ${QUAD}:
    h, pooled, hs, ats = self.bert.encode(${CALL}, unpadded)
    logits = self.qa_outputs.forward(h)                                                # [B, T, 2]
    start, end = logits.split(1, -1)
    return start.squeeze(-1).contiguous(), end.squeeze(-1).contiguous(), hs, ats
`);
    case 'BertForMultipleChoice':
      return unit(kind, { bert, dropout: headDropout(), classifier: dense(1) }, `${entries(TRIPLE)}
def run(self, ${ARGS}, unpadded: bool) -> ${TRIPLE}:
    C = input_ids.size(1)
    flat = input_ids.view(-1, input_ids.size(-1))                                      # [B, C, T] -> [B*C, T]
    am = attention_mask.view(-1, attention_mask.size(-1)) if attention_mask is not None else None
    tt = token_type_ids.view(-1, token_type_ids.size(-1)) if token_type_ids is not None else None
    pi = position_ids.view(-1, position_ids.size(-1)) if position_ids is not None else None
    pooled, hs, ats = self.bert.pooled_output(flat, am, tt, pi, want_hidden, want_attn, unpadded)
    logits = self.classifier.forward(self.dropout.forward(pooled))
    return logits.view(-1, C), hs, ats                                                 # [B*C, 1] -> [B, C]
`);
    case 'BertForMaskedLM':
      return unit(kind, { bert, cls: unit('BertOnlyMLMHead', { predictions: BertLMPredictionHead(c, mode, word()) }) }, `${entries(TRIPLE)}
def run(self, ${ARGS}, unpadded: bool) -> ${TRIPLE}:
    h, pooled, hs, ats = self.bert.encode(${CALL}, unpadded)
    return self.cls.predictions.forward(h), hs, ats                                    # [B, T, V]

def mlm_loss_logits(self, input_ids: Tensor, attention_mask: Optional[Tensor], labels: Tensor) -> Tuple[Tensor, Tensor]:
    # The MLM loss from the masked positions only: the same mean cross entropy as over all
    # positions with -100 ignored, without the [B, T, V] logits of unmasked tokens; and those
    # positions' logits [N, V] (row-major order of the masked positions). A batch with nothing masked
    # (short rows, or one data-parallel rank's share of a batch) gives 0 and zero gradients, not NaN.
    h, pooled, hs, ats = self.bert.forward(input_ids, attention_mask, None, None, False, False)
    return self.masked_positions_loss(h, labels)

def masked_positions_loss(self, h: Tensor, labels: Tensor) -> Tuple[Tensor, Tensor]:
    sel = labels.ne(-100)                                                              # [B, T]
    logits = self.cls.predictions.forward(h[sel])                                      # [N, H] -> [N, V]
    target = labels[sel]
    picked = logits.gather(1, target.unsqueeze(1)).squeeze(1)
    return (torch.logsumexp(logits, -1) - picked).sum() / max(target.numel(), 1), logits

def mlm_loss(self, input_ids: Tensor, attention_mask: Optional[Tensor], labels: Tensor) -> Tensor:
    return self.mlm_loss_logits(input_ids, attention_mask, labels)[0]

def mlm_bow_loss(self, input_ids: Tensor, attention_mask: Optional[Tensor], labels: Tensor, bow: Tensor, weight: float) -> Tuple[Tensor, Tensor]:
    # A sentence-level term beside the masked LM: the [CLS] vector predicts, through the same head, the
    # row's bag of words (bow [B, V], each row a distribution over the row's words; a cross entropy).
    # The masked LM alone never trains the vector fine-tuning's classifier reads. Returns (masked LM
    # loss + weight * bag loss, bag loss).
    h, pooled, hs, ats = self.bert.forward(input_ids, attention_mask, None, None, False, False)
    mlm = self.masked_positions_loss(h, labels)[0]
    logp = torch.log_softmax(self.cls.predictions.forward(h[:, 0]), -1)               # [B, V]
    bag = -(bow * logp).sum() / max(bow.size(0), 1)
    return mlm + weight * bag, bag
`);
    case 'BertForPreTraining':
      return unit(kind, { bert, cls: unit('BertPreTrainingHeads', { predictions: BertLMPredictionHead(c, mode, word()), seq_relationship: dense(2) }) }, `${entries(QUAD)}
def run(self, ${ARGS}, unpadded: bool) -> ${QUAD}:
    h, pooled, hs, ats = self.bert.encode(${CALL}, unpadded)
    assert pooled is not None
    return self.cls.predictions.forward(h), self.cls.seq_relationship.forward(pooled), hs, ats
`);
    case 'BertForNextSentencePrediction':
      return unit(kind, { bert, cls: unit('BertOnlyNSPHead', { seq_relationship: dense(2) }) }, `${entries(TRIPLE)}
def run(self, ${ARGS}, unpadded: bool) -> ${TRIPLE}:
    pooled, hs, ats = self.bert.pooled_output(${CALL}, unpadded)
    return self.cls.seq_relationship.forward(pooled), hs, ats
`);
  }
}
