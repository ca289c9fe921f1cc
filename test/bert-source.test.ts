// The TorchScript each BERT mode runs, as a reader opens it (bertTorchScript): a change to the model's
// source shows in review as a change to these snapshots (test/__snapshots__/bert-source.test.ts.snap).
import { bertTorchScript } from '../lib/models/bert';

const config = { vocab_size: 30, hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 4, intermediate_size: 64, max_position_embeddings: 16 };

describe('the generated TorchScript, one unit per Hugging Face module', () => {
  test.each(['float', 'prepacked', 'int8'] as const)('BertForSequenceClassification, %s', (mode) => {
    const src = bertTorchScript('BertForSequenceClassification', config, mode);
    // One class per HF module, each listed once however many layers use it.
    for (const unit of ['BertEmbeddings', 'BertSelfAttention', 'BertSelfOutput', 'BertAttention', 'BertIntermediate', 'BertOutput', 'BertLayer', 'BertEncoder', 'BertPooler', 'BertModel', 'BertForSequenceClassification']) {
      expect(src.match(new RegExp(`^class ${unit}:`, 'gm'))).toHaveLength(1);
    }
    expect(src).toMatchSnapshot();
  });

  test('BertForMaskedLM and BertForQuestionAnswering, float', () => {
    expect(bertTorchScript('BertForMaskedLM', config)).toMatchSnapshot();
    expect(bertTorchScript('BertForQuestionAnswering', config)).toMatchSnapshot();
  });

  test('the modes differ only in their Linear and Dropout units, and the inference copies (int8, prepacked) in BertSelfAttention alike (fused query/key/value, torchbert::attention)', () => {
    const units = (mode: 'float' | 'portable' | 'int8' | 'prepacked') => {
      const byClass = new Map<string, string>();
      for (const block of bertTorchScript('BertForSequenceClassification', config, mode).split(/^(?=class )/m)) byClass.set(block.slice(6, block.indexOf(':')), block);
      return byClass;
    };
    const float = units('float');
    for (const mode of ['portable', 'int8', 'prepacked'] as const) {
      const other = units(mode);
      const differing = [...float.keys()].filter((k) => other.get(k) !== float.get(k));
      expect(differing.sort()).toEqual(mode === 'portable' ? ['Dropout', 'Linear'] : ['BertSelfAttention', 'Dropout', 'Linear']);
    }
    // The two inference copies share one BertSelfAttention; it differs from float's in the projections and the attention call alone.
    expect(units('int8').get('BertSelfAttention')).toBe(units('prepacked').get('BertSelfAttention'));
    const strip = (src: string) => src.replace(/^ *def (project|split_qkv|project_padded)\b[\s\S]*?\n\n/gm, '').replace(/ops\.torchbert\.attention\(q, k, v, mask\)|torch\.scaled_dot_product_attention\(q, k, v, mask, (p|0\.0)\)/g, 'ATTENTION').replace(/ +#/g, ' #');
    expect(strip(units('prepacked').get('BertSelfAttention')!)).toBe(strip(float.get('BertSelfAttention')!));
  });
});
