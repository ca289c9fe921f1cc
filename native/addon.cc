// Entry point of the torchbert addon: registers tensors, generic ATen operators, TorchScript modules
// and safetensors I/O. lib/binding.ts is the only file that loads it.
#include <napi.h>

#include "errors.h"
#include "ops.h"
#include "tensor.h"

namespace torchbert {

static Napi::Value SetErrorClassJs(const Napi::CallbackInfo& info) {
  if (!info[0].IsFunction()) ThrowType(info.Env(), "error class must be a function");
  SetErrorClass(info);
  return info.Env().Undefined();
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("setErrorClass", Napi::Function::New<Guarded<SetErrorClassJs>>(env));
  InitAllocator(env, exports);
  InitTensorFunctions(env, exports);
  InitOps(env, exports);
  InitModules(env, exports);
  InitSafetensors(env, exports);
  InitKernels(env, exports);
  InitDistributed(env, exports);
  try {
    RegisterKernels();
  } catch (const std::exception& e) {
    throw Napi::Error::New(env, std::string("torchbert: registering its operators failed: ") + e.what());
  }
  return exports;
}

}  // namespace torchbert

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return torchbert::Init(env, exports); }
NODE_API_MODULE(torchbert_addon, InitAddon)
