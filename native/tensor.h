// Tensors cross to JS as handles: a number naming a slot in a native table that owns the at::Tensor
// by value (with a generation count, so a stale handle is an error, never a dangling pointer). This
// is several times cheaper per op than one ObjectWrap per tensor. The TS Tensor class owns a handle,
// frees it with dispose(), and registers a FinalizationRegistry backstop.
#pragma once
#include <napi.h>
#include <ATen/ATen.h>

#include <string>

#include "errors.h"

namespace torchbert {

c10::ScalarType ParseDtype(Napi::Env env, const std::string& name);
std::string DtypeName(c10::ScalarType t);
c10::Device ParseDevice(Napi::Env env, const std::string& name);

namespace tensors {
// Stores a tensor and returns its handle (a JS number, or a BigInt where results are untyped).
Napi::Value Put(Napi::Env env, at::Tensor t, bool as_bigint = false);
// The live tensor behind a handle, or nullptr (not a handle, or a disposed one): the one lookup.
const at::Tensor* TryGet(const Napi::Value& v);
// The live tensor behind a handle; throws a TypeError naming `what` if v is no live handle.
const at::Tensor& Get(const Napi::Value& v, const char* what);
// Frees every live tensor; for the teardown of the JS thread that owns the table.
void ReleaseAll(Napi::Env env);
// release(handle) and memory().
void InitHandles(Napi::Env env, Napi::Object exports);
}  // namespace tensors

// Copies a contiguous CPU tensor into a new JS TypedArray of the matching kind.
Napi::Value TypedArrayFrom(Napi::Env env, const at::Tensor& host);
// Prepares a private host copy of a tensor for reading (safe to call on a worker thread).
at::Tensor HostCopy(const at::Tensor& t);

void InitTensorFunctions(Napi::Env env, Napi::Object exports);
// Grad mode, autocast, seeds and RNG states, threads, graph executor, CUDA queries, buildInfo (runtime.cc).
void InitRuntime(Napi::Env env, Napi::Object exports);
// Bounds oneDNN's and ideep's per-shape primitive caches (unless the environment sets them): call
// before anything can reach oneDNN.
void BoundPrimitiveCaches();

}  // namespace torchbert
