// The global torch switches behind tb.noGrad, autocast, manualSeed, RNG states, thread counts, the
// TorchScript graph executor, CUDA queries and the build's description.
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <torch/cuda.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#include <torch/version.h>

#include <cstdlib>
#include <mutex>
#include <string>

#include "compute.h"
#include "errors.h"
#include "kernels.h"
#include "tensor.h"

namespace torchbert {

using tensors::Get;
using tensors::Put;

static Napi::Value SetGradEnabled(const Napi::CallbackInfo& info) {
  bool prev = at::GradMode::is_enabled();
  at::GradMode::set_enabled(info[0].ToBoolean().Value());
  return Napi::Boolean::New(info.Env(), prev);
}
// setAutocast(device 'cpu' | 'cuda', enabled, dtype?) -> [previous enabled, previous dtype]
static Napi::Value SetAutocast(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) ThrowType(env, "autocast device must be 'cpu' or 'cuda'");
  std::string dev = info[0].As<Napi::String>().Utf8Value();
  if (dev != "cpu" && dev != "cuda") ThrowType(env, "autocast device must be 'cpu' or 'cuda', got '" + dev + "'");
  at::DeviceType dt = dev == "cpu" ? at::kCPU : at::kCUDA;
  Napi::Array prev = Napi::Array::New(env, 2);
  prev.Set(0u, at::autocast::is_autocast_enabled(dt));
  prev.Set(1u, DtypeName(at::autocast::get_autocast_dtype(dt)));
  if (info.Length() > 2 && info[2].IsString()) {
    c10::ScalarType t = ParseDtype(env, info[2].As<Napi::String>().Utf8Value());
    if (t != at::kBFloat16 && t != at::kHalf) ThrowType(env, "autocast dtype must be bfloat16 or float16, got " + DtypeName(t));
    at::autocast::set_autocast_dtype(dt, t);
  }
  at::autocast::set_autocast_enabled(dt, info[1].ToBoolean().Value());
  return prev;
}
static Napi::Value AutocastClearCache(const Napi::CallbackInfo& info) {
  at::autocast::clear_cache();
  return info.Env().Undefined();
}
static Napi::Value IsGradEnabled(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), at::GradMode::is_enabled());
}
static Napi::Value ManualSeed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t seed;
  if (info[0].IsBigInt()) {
    bool lossless;
    seed = info[0].As<Napi::BigInt>().Uint64Value(&lossless);
  } else if (info[0].IsNumber()) {
    double d = info[0].As<Napi::Number>().DoubleValue();
    if (!(d >= 0) || d != static_cast<double>(static_cast<uint64_t>(d))) ThrowRange(env, "seed must be a non-negative integer");
    seed = static_cast<uint64_t>(d);
  } else {
    ThrowType(env, "seed must be a number or bigint");
  }
  at::manual_seed(seed);
  return env.Undefined();
}
// The default CPU generator's state (a uint8 tensor), for checkpoints that resume bit-exactly.
static Napi::Value GetRngState(const Napi::CallbackInfo& info) {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return Put(info.Env(), gen.get_state());
}
static Napi::Value SetRngState(const Napi::CallbackInfo& info) {
  const at::Tensor& state = Get(info[0], "state");
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
  return info.Env().Undefined();
}
static Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  double n = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : 0;
  if (!(n >= 1) || n != static_cast<int>(n)) ThrowRange(env, "setNumThreads needs a positive integer");
  SetIntraOpThreads(static_cast<int>(n));
  return env.Undefined();
}
// TorchScript's graph executor optimisations (profiling, autodiff subgraphs, fusion). Returns the
// previous setting.
static Napi::Value SetGraphExecutorOptimize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsBoolean()) ThrowType(env, "setGraphExecutorOptimize needs a boolean");
  return Napi::Boolean::New(env, SetGraphExecutorOptimize(info[0].As<Napi::Boolean>().Value()));
}
// The setting as the thread that runs model calls sees it.
static Napi::Value GetGraphExecutorOptimize(const Napi::CallbackInfo& info) {
  bool on = true;
  RunOnComputeThread([&] { on = torch::jit::getGraphExecutorOptimize(); });
  return Napi::Boolean::New(info.Env(), on);
}
static Napi::Value GetNumThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), IntraOpThreads());
}
static Napi::Value CudaIsAvailable(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), torch::cuda::is_available());
}
static Napi::Value CudaDeviceCount(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(torch::cuda::device_count()));
}
static Napi::Value CudaSynchronize(const Napi::CallbackInfo& info) {
  if (torch::cuda::is_available()) torch::cuda::synchronize();
  return info.Env().Undefined();
}
static Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("torchVersion", TORCH_VERSION);
  std::string parallel;
  RunOnComputeThread([&] { parallel = at::get_parallel_info(); });  // the thread that runs the work
  o.Set("parallelInfo", parallel);
  o.Set("computeThread", Napi::Boolean::New(env, ComputeThreadEnabled()));
  o.Set("config", at::show_config());
  o.Set("cxx11Abi", Napi::Boolean::New(env, _GLIBCXX_USE_CXX11_ABI));
  o.Set("napiVersion", Napi::Number::New(env, NAPI_VERSION));
  bool grad_matmul = false;
  RunOnComputeThread([&] { grad_matmul = OneDnnGradMatmul(); });
  o.Set("onednnGradMatmul", Napi::Boolean::New(env, grad_matmul));
  return o;
}

// oneDNN and ideep cache a compiled primitive per input shape, 1,024 of each by default. A server's
// batches change shape nearly every call (rows x tokens), so its memory grew by about 1.5 MB a batch
// until both were full, hundreds of MB (a known PyTorch issue with variable shapes on CPU). 64 keeps a
// training step's shapes and holds memory flat; both are read at first use, so setting them here, before
// any oneDNN call, works, and a value the user exported wins.
void BoundPrimitiveCaches() {
  for (const char* name : {"ONEDNN_PRIMITIVE_CACHE_CAPACITY", "LRU_CACHE_CAPACITY"}) {
    const char* v = std::getenv(name);
    if (!v || !*v) setenv(name, "64", 1);
  }
}

void InitRuntime(Napi::Env env, Napi::Object exports) {
  Export<GetRngState>(exports, "getRngState");
  Export<SetRngState>(exports, "setRngState");
  Export<SetGradEnabled>(exports, "setGradEnabled");
  Export<IsGradEnabled>(exports, "isGradEnabled");
  Export<SetAutocast>(exports, "setAutocast");
  Export<AutocastClearCache>(exports, "autocastClearCache");
  Export<ManualSeed>(exports, "manualSeed");
  Export<SetNumThreads>(exports, "setNumThreads");
  Export<GetNumThreads>(exports, "getNumThreads");
  Export<SetGraphExecutorOptimize>(exports, "setGraphExecutorOptimize");
  Export<GetGraphExecutorOptimize>(exports, "getGraphExecutorOptimize");
  Export<CudaIsAvailable>(exports, "cudaIsAvailable");
  Export<CudaDeviceCount>(exports, "cudaDeviceCount");
  Export<CudaSynchronize>(exports, "cudaSynchronize");
  Export<BuildInfo>(exports, "buildInfo");
}

}  // namespace torchbert
