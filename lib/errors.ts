// Error classes shared by the native layer and TS: libtorch failures arrive as TorchError with a code.
// torchbert's own native errors carry a code too (native/errors.h): TypeError TORCHBERT_INVALID_ARGUMENT,
// RangeError TORCHBERT_OUT_OF_RANGE, DisposedError DISPOSED, and Errors with TORCHBERT_BUSY,
// TORCHBERT_INVALID_STATE, TORCHBERT_UNAVAILABLE, TORCHBERT_IO_ERROR, TORCHBERT_TOO_MANY_TENSORS or
// TORCHBERT_NATIVE_ERROR.

/** An error raised inside libtorch (shape or device mismatch, out of memory, ...). */
export class TorchError extends Error {
  /** `TORCH_ERROR`, `TORCH_OUT_OF_MEMORY` or `TORCH_NOT_IMPLEMENTED`. */
  readonly code: string;
  constructor(message: string, code = 'TORCH_ERROR') {
    super(message);
    this.name = 'TorchError';
    this.code = code;
  }
}

/** Use of a tensor, module or scope after dispose(). */
export class DisposedError extends Error {
  readonly code = 'DISPOSED';
  constructor(message: string) {
    super(message);
    this.name = 'DisposedError';
  }
}

/** libtorch could not be found or does not match the addon. */
export class LibtorchNotFoundError extends Error {
  readonly code = 'LIBTORCH_NOT_FOUND';
  constructor(message: string) {
    super(message);
    this.name = 'LibtorchNotFoundError';
  }
}
