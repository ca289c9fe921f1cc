// Registration of the generic ATen operator entry points (see ops.cc) and TorchScript modules.
#pragma once
#include <napi.h>

namespace torchbert {
void InitOps(Napi::Env env, Napi::Object exports);
void InitModules(Napi::Env env, Napi::Object exports);
void InitSafetensors(Napi::Env env, Napi::Object exports);
// Installs the caching CPU allocator (allocator.cc) and its statistics functions.
void InitAllocator(Napi::Env env, Napi::Object exports);
// Registers torchbert's own operators (kernels.cc) with the dispatcher, once per process.
void RegisterKernels();
// linearTuning(): the shapes torchbert::linear has timed and the backend chosen for each.
void InitKernels(Napi::Env env, Napi::Object exports);
void InitDistributed(Napi::Env env, Napi::Object exports);
void InitProfiler(Napi::Env env, Napi::Object exports);
}  // namespace torchbert
