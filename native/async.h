// Base for every async native call (sharp's AsyncWorker pattern): JS values are converted on the main
// thread, Run() touches no JS, and the caller's thread-local state (grad mode, autocast, inference
// mode, profiler) and CUDA device are restored where Run() runs: the compute thread (compute.cc), to
// which the main thread hands the job directly, or, for file I/O and for jobs that wait on other
// processes (collectives), a libuv pool thread.
#pragma once
#include <napi.h>
#include <ATen/ATen.h>
#include <ATen/ThreadLocalState.h>

#include <optional>

#include "errors.h"

namespace torchbert {

class TorchWorker {
 public:
  // compute: run on the compute thread, in order with the other jobs; false for file I/O (which would
  // hold up compute) and for jobs that wait on other processes (a send would otherwise hold up the recv
  // its peer waits for): those run on a pool thread, single-threaded.
  explicit TorchWorker(Napi::Env env, bool compute = true);
  virtual ~TorchWorker() = default;
  TorchWorker(const TorchWorker&) = delete;
  TorchWorker& operator=(const TorchWorker&) = delete;
  // Hands the job over and returns its promise; the worker deletes itself once settled.
  Napi::Value Start();

  // Where the job runs (compute thread or pool thread), then back on the main thread.
  void Execute();
  void Complete(Napi::Env env);

 protected:
  virtual void Run() = 0;                         // off the main thread: no JS here
  virtual Napi::Value Result(Napi::Env env) = 0;  // main thread
  virtual void Finally() {}                       // main thread, success or failure

 private:
  Napi::Env env_;
  Napi::Promise::Deferred deferred_;
  at::ThreadLocalState tls_;
  bool compute_;
  std::optional<c10::Device> cuda_device_;
  ErrorInfo error_;
};

}  // namespace torchbert
