// Entry point of the torchbert addon: registers tensors, generic ATen operators, TorchScript modules
// and safetensors I/O. lib/binding.ts is the only file that loads it.
#include <napi.h>

#include <mutex>

#include "compute.h"
#include "errors.h"
#include "ops.h"
#include "tensor.h"

namespace torchbert {

static Napi::Value SetErrorClassJs(const Napi::CallbackInfo& info) {
  if (!info[0].IsFunction()) ThrowType(info.Env(), "error class must be a function");
  SetErrorClass(info);
  return info.Env().Undefined();
}

// The tensor handle table, the error class and the kernels' registration are process-wide and touched
// from one JS thread: the first environment (the main thread or one worker) to load the addon owns them
// until it exits; another thread's require() gets an error instead of sharing them unsafely.
static std::mutex owner_mutex;
static napi_env owner = nullptr;

static void ReleaseOwner(void* env) {
  tensors::ReleaseAll(Napi::Env(static_cast<napi_env>(env)));
  std::lock_guard<std::mutex> lock(owner_mutex);
  owner = nullptr;
}

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  {
    std::lock_guard<std::mutex> lock(owner_mutex);
    if (owner != nullptr && owner != static_cast<napi_env>(env)) {
      ThrowCoded(env, "ADDON_IN_OTHER_THREAD", "torchbert is already loaded by another thread of this process (the main thread or a worker): "
                                  "its tensors live in one process-wide table, so only one JS thread at a time can use it. "
                                  "Use it from that thread, or from a child process.");
    }
    owner = env;
  }
  napi_add_env_cleanup_hook(env, ReleaseOwner, env);
  BoundPrimitiveCaches();
  Export<SetErrorClassJs>(exports, "setErrorClass");
  InitAllocator(env, exports);
  InitCompute();
  tensors::InitHandles(env, exports);
  InitTensorFunctions(env, exports);
  InitRuntime(env, exports);
  InitOps(env, exports);
  InitModules(env, exports);
  InitSafetensors(env, exports);
  InitKernels(env, exports);
  InitDistributed(env, exports);
  InitProfiler(env, exports);
  try {
    RegisterKernels();
  } catch (const std::exception& e) {
    ThrowCoded(env, "TORCHBERT_NATIVE_ERROR", std::string("torchbert: registering its operators failed: ") + e.what());
  }
  return exports;
}

}  // namespace torchbert

static Napi::Object InitAddon(Napi::Env env, Napi::Object exports) { return torchbert::Init(env, exports); }
NODE_API_MODULE(torchbert_addon, InitAddon)
