// TorchWorker's two routes: compute jobs go from the main thread straight to the compute thread and come
// back through one thread-safe function (a libuv pool thread in between would only add two thread
// switches per job, which a loaded 2-core machine pays in milliseconds); other jobs go through libuv's pool.
#include "async.h"

#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <c10/core/DeviceGuard.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>

#include "compute.h"

namespace torchbert {

namespace {

void Settle(Napi::Env env, Napi::Function, std::nullptr_t*, TorchWorker* w);
using Completions = Napi::TypedThreadSafeFunction<std::nullptr_t, TorchWorker, Settle>;

// One for the JS thread that owns the addon (addon.cc), made at its first job. Referenced only while
// jobs are out, so that it never keeps the process alive by itself.
Completions completions;
bool have_completions = false;
size_t pending = 0;

// When that thread's environment goes (a worker thread that loaded the addon exits), the next owner
// makes its own; jobs of the old one still running find theirs closed and are dropped.
void Forget(void*) {
  have_completions = false;
  pending = 0;
}

void Settle(Napi::Env env, Napi::Function, std::nullptr_t*, TorchWorker* w) {
  if (env == nullptr) return;  // the environment is going away: nothing left to resolve
  w->Complete(env);
}

class PoolRun : public Napi::AsyncWorker {
 public:
  PoolRun(Napi::Env env, TorchWorker* w) : Napi::AsyncWorker(env, "torchbert"), w_(w) {}
  void Execute() override { w_->Execute(); }
  void OnOK() override { w_->Complete(Env()); }

 private:
  TorchWorker* w_;
};

}  // namespace

TorchWorker::TorchWorker(Napi::Env env, bool compute) : env_(env), deferred_(Napi::Promise::Deferred::New(env)), compute_(compute) {
  if (at::hasCUDA()) cuda_device_ = c10::impl::getDeviceGuardImpl(c10::DeviceType::CUDA)->getDevice();
}

Napi::Value TorchWorker::Start() {
  Napi::Promise p = deferred_.Promise();
  if (!compute_ || !ComputeThreadEnabled()) {
    (new PoolRun(env_, this))->Queue();
    return p;
  }
  if (!have_completions) {
    completions = Completions::New(env_, "torchbert", 0, 1);
    completions.Unref(env_);
    have_completions = true;
    napi_add_env_cleanup_hook(env_, Forget, nullptr);
  }
  if (pending++ == 0) completions.Ref(env_);
  // This environment's function, copied: another owner may have made its own by the time the job ends.
  Completions done = completions;
  PostToComputeThread([this, done]() mutable {
    Execute();
    done.NonBlockingCall(this);  // napi_closing once the environment has gone: nothing left to settle
  });
  return p;
}

void TorchWorker::Execute() {
  try {
    if (!compute_) {
      SingleThreadedHere();
    } else if (!ComputeThreadEnabled()) {
      UseIntraOpThreadsHere();  // the pool route for compute jobs
    }
    at::ThreadLocalStateGuard tls(tls_);
    UseGraphExecutorOptimizeHere();
    c10::OptionalDeviceGuard device(cuda_device_);
    // Autocast caches low-precision copies of weights per thread; each call is its own autocast
    // region, so a later call on this thread never sees weights from before an optimizer step.
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

void TorchWorker::Complete(Napi::Env env) {
  Napi::HandleScope scope(env);
  if (compute_ && ComputeThreadEnabled() && --pending == 0) completions.Unref(env);
  Finally();
  if (error_) {
    deferred_.Reject(ToJsError(env, error_).Value());
  } else {
    try {
      deferred_.Resolve(Guard(env, [&] { return Result(env); }));
    } catch (const Napi::Error& e) {
      deferred_.Reject(e.Value());
    }
  }
  delete this;
}

}  // namespace torchbert
