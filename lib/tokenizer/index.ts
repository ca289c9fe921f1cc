// Tokenizers: Hugging Face's BertTokenizer in TypeScript, and a WordPiece vocabulary trainer.
export { BertTokenizer, BatchEncoding } from './bert-tokenizer';
export type { CallOptions, BertTokenizerOptions, Padding, Truncation } from './bert-tokenizer';
export type { Encoding } from './encoding';
export { WordPieceTrainer } from './trainer';
export type { WordPieceTrainerOptions } from './trainer';
