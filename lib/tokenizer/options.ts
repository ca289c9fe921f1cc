// What a tokenizer call takes (HF's __call__ arguments in camelCase).
import type { TruncationStrategy } from './encoding';

export type Padding = boolean | 'longest' | 'max_length' | 'do_not_pad';
export type Truncation = boolean | TruncationStrategy | 'do_not_truncate';

export interface CallOptions {
  padding?: Padding;
  truncation?: Truncation;
  maxLength?: number;
  padToMultipleOf?: number;
  stride?: number;
  addSpecialTokens?: boolean;
  returnOverflowingTokens?: boolean;
  returnOffsetsMapping?: boolean;
  returnSpecialTokensMask?: boolean;
  returnTokenTypeIds?: boolean;
  returnAttentionMask?: boolean;
  returnTensors?: 'pt';
}
