// Error classes shared by the native layer and TS: libtorch failures arrive as TorchError with a code.

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

/** libtorch could not be found or does not match the addon. */
/** Use of a tensor, module or scope after dispose(). */
export class DisposedError extends Error {
  readonly code = 'DISPOSED';
  constructor(message: string) {
    super(message);
    this.name = 'DisposedError';
  }
}

export class LibtorchNotFoundError extends Error {
  readonly code = 'LIBTORCH_NOT_FOUND';
  constructor(message: string) {
    super(message);
    this.name = 'LibtorchNotFoundError';
  }
}
