// Exception translation: every libtorch / C++ error becomes a JS error, never an abort.
// Modelled on PyTorch's torch/csrc/Exceptions.h: IndexError -> RangeError, TypeError -> TypeError,
// other c10::Error (OOM with its own code) -> TorchError, std::exception and unknown last.
#pragma once
#include <napi.h>

#include <exception>
#include <stdexcept>
#include <string>

namespace torchbert {

// A thread-safe snapshot of an error, made on a worker thread and turned into JS on the main thread.
struct ErrorInfo {
  enum class Kind { None, Type, Range, Torch, OutOfMemory, NotImplemented, Coded, Generic };
  Kind kind = Kind::None;
  std::string message;
  const char* code = nullptr;  // Kind::Coded
  explicit operator bool() const { return kind != Kind::None; }
};

// torchbert's own failure with a code (see ThrowCoded), thrown where no Napi::Env exists (worker threads).
struct CodedError : std::runtime_error {
  const char* code;
  CodedError(const char* c, const std::string& msg) : std::runtime_error(msg), code(c) {}
};

ErrorInfo Capture(std::exception_ptr e);
Napi::Error ToJsError(Napi::Env env, const ErrorInfo& info);
void SetErrorClass(const Napi::CallbackInfo& info);  // TS passes its TorchError and DisposedError classes once

// Runs f, translating any C++ exception into the matching JS exception.
template <typename F>
auto Guard(Napi::Env env, F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    throw ToJsError(env, Capture(std::current_exception()));
  }
}

// Wraps a native callback so every exported function runs inside Guard.
template <Napi::Value (*F)(const Napi::CallbackInfo&)>
Napi::Value Guarded(const Napi::CallbackInfo& info) {
  return Guard(info.Env(), [&] { return F(info); });
}

// Exports F as `name`, run inside Guard.
template <Napi::Value (*F)(const Napi::CallbackInfo&)>
void Export(Napi::Object& exports, const char* name) {
  exports.Set(name, Napi::Function::New<Guarded<F>>(exports.Env()));
}

[[noreturn]] void ThrowType(Napi::Env env, const std::string& msg);
[[noreturn]] void ThrowRange(Napi::Env env, const std::string& msg);
// Use of a disposed tensor, module or reducer: TS's DisposedError (code DISPOSED).
[[noreturn]] void ThrowDisposed(Napi::Env env, const std::string& msg);
// torchbert's own failures that are not about an argument, each with a stable code JS can branch on, e.g.
// TORCHBERT_BUSY (a module in use by a running call), TORCHBERT_INVALID_STATE (no process group yet),
// TORCHBERT_UNAVAILABLE (not compiled into this build); lib/errors.ts lists them all.
[[noreturn]] void ThrowCoded(Napi::Env env, const char* code, const std::string& msg);

}  // namespace torchbert
