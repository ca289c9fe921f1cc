// Registration of the generic ATen operator entry points (see ops.cc) and TorchScript modules.
#pragma once
#include <napi.h>

namespace torchbert {
void InitOps(Napi::Env env, Napi::Object exports);
void InitModules(Napi::Env env, Napi::Object exports);
void InitSafetensors(Napi::Env env, Napi::Object exports);
}  // namespace torchbert
