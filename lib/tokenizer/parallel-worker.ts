// Worker thread of the tokenizer pool (see parallel.ts): rebuilds the tokenizer from its serialized
// form, encodes slices, and posts packed typed arrays back with their buffers transferred.
import { parentPort, workerData } from 'worker_threads';
import { BertTokenizer } from './bert-tokenizer';
import { pack } from './parallel';

const tok = BertTokenizer.deserialize(workerData);
parentPort!.on('message', (m: { id: number; texts: string[]; pairs: (string | null)[] | null; opts: object }) => {
  try {
    const { rows, sampleMap } = tok.encodeRows(m.texts, m.pairs, m.opts);
    const packed = pack(rows);
    parentPort!.postMessage({ id: m.id, packed, sampleMap }, [packed.lengths.buffer, packed.ids.buffer, packed.typeIds.buffer, packed.special.buffer, packed.offsets.buffer, packed.words.buffer, packed.seqIds.buffer] as ArrayBuffer[]);
  } catch (e) {
    parentPort!.postMessage({ id: m.id, error: (e as Error).message });
  }
});
