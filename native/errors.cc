// Exception translation (see errors.h).
#include "errors.h"

#include <c10/util/Exception.h>
#include <torch/csrc/jit/frontend/error_report.h>
#include <torch/csrc/jit/runtime/jit_exception.h>

namespace torchbert {

static Napi::FunctionReference torch_error_class;
static Napi::FunctionReference disposed_error_class;

void SetErrorClass(const Napi::CallbackInfo& info) {
  torch_error_class = Napi::Persistent(info[0].As<Napi::Function>());
  if (info[1].IsFunction()) disposed_error_class = Napi::Persistent(info[1].As<Napi::Function>());
}

ErrorInfo Capture(std::exception_ptr e) {
  using K = ErrorInfo::Kind;
  try {
    std::rethrow_exception(e);
  } catch (const c10::OutOfMemoryError& err) {
    return {K::OutOfMemory, err.what_without_backtrace()};
  } catch (const c10::IndexError& err) {
    return {K::Range, err.what_without_backtrace()};
  } catch (const c10::TypeError& err) {
    return {K::Type, err.what_without_backtrace()};
  } catch (const c10::NotImplementedError& err) {
    return {K::NotImplemented, err.what_without_backtrace()};
  } catch (const c10::Error& err) {
    // The CPU allocator reports exhaustion as a plain c10::Error.
    std::string msg = err.what_without_backtrace();
    bool oom = msg.find("can't allocate memory") != std::string::npos || msg.find("out of memory") != std::string::npos;
    return {oom ? K::OutOfMemory : K::Torch, msg};
  } catch (const torch::jit::JITException& err) {
    // Errors raised inside TorchScript code: the original type is folded into the message.
    std::string msg = err.what();
    return {msg.find("out of memory") != std::string::npos ? K::OutOfMemory : K::Torch, msg};
  } catch (const torch::jit::ErrorReport& err) {
    return {K::Torch, err.what()};
  } catch (const CodedError& err) {
    ErrorInfo info{K::Coded, err.what()};
    info.code = err.code;
    return info;
  } catch (const std::bad_alloc&) {
    return {K::OutOfMemory, "out of memory (std::bad_alloc)"};
  } catch (const std::out_of_range& err) {
    return {K::Range, err.what()};
  } catch (const std::invalid_argument& err) {
    return {K::Type, err.what()};
  } catch (const std::exception& err) {
    // The TorchScript interpreter rethrows op failures as std::runtime_error with its traceback.
    std::string msg = err.what();
    if (msg.rfind("The following operation failed in the TorchScript interpreter", 0) == 0)
      return {msg.find("out of memory") != std::string::npos ? K::OutOfMemory : K::Torch, msg};
    return {K::Generic, msg};
  } catch (...) {
    return {K::Generic, "unknown native error"};
  }
}

namespace {
// Every error from native code carries a code, as libtorch's do (TORCH_*): JS can branch on it.
Napi::Error WithCode(Napi::Error err, const char* code) {
  err.Set("code", Napi::String::New(err.Env(), code));
  return err;
}
}  // namespace

Napi::Error ToJsError(Napi::Env env, const ErrorInfo& info) {
  using K = ErrorInfo::Kind;
  switch (info.kind) {
    case K::Type:
      return WithCode(Napi::TypeError::New(env, info.message), "TORCHBERT_INVALID_ARGUMENT");
    case K::Range:
      return WithCode(Napi::RangeError::New(env, info.message), "TORCHBERT_OUT_OF_RANGE");
    case K::Torch:
    case K::OutOfMemory:
    case K::NotImplemented: {
      const char* code = info.kind == K::OutOfMemory ? "TORCH_OUT_OF_MEMORY"
                         : info.kind == K::NotImplemented ? "TORCH_NOT_IMPLEMENTED"
                                                          : "TORCH_ERROR";
      if (!torch_error_class.IsEmpty()) {
        Napi::Object err = torch_error_class.New({Napi::String::New(env, info.message), Napi::String::New(env, code)});
        return Napi::Error(env, err);
      }
      Napi::Error err = Napi::Error::New(env, info.message);
      err.Set("code", Napi::String::New(env, code));
      return err;
    }
    case K::Coded:
      return WithCode(Napi::Error::New(env, info.message), info.code);
    default:
      return WithCode(Napi::Error::New(env, info.message), "TORCHBERT_NATIVE_ERROR");
  }
}

void ThrowType(Napi::Env env, const std::string& msg) { throw WithCode(Napi::TypeError::New(env, msg), "TORCHBERT_INVALID_ARGUMENT"); }
void ThrowRange(Napi::Env env, const std::string& msg) { throw WithCode(Napi::RangeError::New(env, msg), "TORCHBERT_OUT_OF_RANGE"); }
void ThrowCoded(Napi::Env env, const char* code, const std::string& msg) { throw WithCode(Napi::Error::New(env, msg), code); }

void ThrowDisposed(Napi::Env env, const std::string& msg) {
  if (disposed_error_class.IsEmpty()) ThrowCoded(env, "DISPOSED", msg);
  throw Napi::Error(env, disposed_error_class.New({Napi::String::New(env, msg)}));
}

}  // namespace torchbert
