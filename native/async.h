// Base for every async native call (sharp's AsyncWorker pattern): JS values are converted on the main
// thread, Run() touches no JS, and the caller's thread-local state (grad mode, autocast, inference
// mode), intra-op thread count and CUDA device are restored on the worker thread.
#pragma once
#include <napi.h>
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>
#include <ATen/autocast_mode.h>
#include <c10/core/DeviceGuard.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>

#include "errors.h"

namespace torchbert {

class TorchWorker : public Napi::AsyncWorker {
 public:
  explicit TorchWorker(Napi::Env env)
      : Napi::AsyncWorker(env, "torchbert"), deferred_(Napi::Promise::Deferred::New(env)), threads_(at::get_num_threads()) {
    if (at::hasCUDA()) cuda_device_ = c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)->getDevice();
  }
  Napi::Promise Promise() { return deferred_.Promise(); }
  // Queues the worker and returns its promise.
  Napi::Value Start() {
    Napi::Promise p = Promise();
    Queue();
    return p;
  }

 protected:
  virtual void Run() = 0;                         // worker thread: no JS here
  virtual Napi::Value Result(Napi::Env env) = 0;  // main thread
  virtual void Finally() {}                       // main thread, success or failure

 private:
  void Execute() override {
    try {
      at::ThreadLocalStateGuard tls(tls_);
      if (at::get_num_threads() != threads_) at::set_num_threads(threads_);
      c10::OptionalDeviceGuard device(cuda_device_);
      // Autocast caches low-precision copies of weights per thread; each call is its own autocast
      // region, so a later call on this pool thread never sees weights from before an optimizer step.
      struct ClearAutocastCache {
        ~ClearAutocastCache() {
          if (at::autocast::is_autocast_enabled(at::kCPU) || at::autocast::is_autocast_enabled(at::kCUDA)) at::autocast::clear_cache();
        }
      } clear_cache;
      Run();
    } catch (...) {
      error_ = Capture(std::current_exception());
    }
  }
  void OnOK() override {
    Napi::Env env = Env();
    Finally();
    if (error_) {
      deferred_.Reject(ToJsError(env, error_).Value());
      return;
    }
    try {
      deferred_.Resolve(Guard(env, [&] { return Result(env); }));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }
  void OnError(const Napi::Error& e) override {
    Finally();
    deferred_.Reject(e.Value());
  }

  Napi::Promise::Deferred deferred_;
  at::ThreadLocalState tls_;
  int threads_;
  std::optional<c10::Device> cuda_device_;
  ErrorInfo error_;
};

}  // namespace torchbert
