// PyTorch's own profiler (Kineto) for JS: tb.profile() starts it on the main thread and stops it when
// the profiled work is done. Async calls started in between record too: each captures the caller's
// thread-local state, the profiler's callbacks included (async.h), and replays it on its worker thread.
#include <ATen/Context.h>
#include <torch/csrc/autograd/profiler_kineto.h>

#include <set>
#include <string>

#include "errors.h"

namespace torchbert {

namespace prof = torch::autograd::profiler;
using torch::profiler::impl::ActivityType;
using torch::profiler::impl::ProfilerConfig;
using torch::profiler::impl::ProfilerState;

// Only the main JS thread starts and stops it.
static bool running = false;

static std::set<ActivityType> Activities() {
  std::set<ActivityType> a{ActivityType::CPU};
  if (at::hasCUDA()) a.insert(ActivityType::CUDA);
  return a;
}

// profilerStart(recordShapes: boolean)
static Napi::Value ProfilerStart(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TORCH_CHECK(!running, "the profiler is already running: one tb.profile() at a time");
  ProfilerConfig config(ProfilerState::KINETO, /*report_input_shapes=*/info[0].ToBoolean().Value());
  prof::prepareProfiler(config, Activities());
  prof::enableProfiler(config, Activities());
  running = true;
  return env.Undefined();
}

// profilerStop(tracePath?: string) -> { name: string[], thread, startUs, durationUs: Float64Array, shapes: string[], device: string[] }
// Times are microseconds from the first event; a Chrome trace is written to tracePath when given.
static Napi::Value ProfilerStop(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TORCH_CHECK(running, "the profiler is not running");
  running = false;
  std::unique_ptr<prof::ProfilerResult> result = prof::disableProfiler();
  if (info.Length() > 0 && info[0].IsString()) result->save(info[0].As<Napi::String>().Utf8Value());
  std::vector<const prof::KinetoEvent*> kept;
  uint64_t t0 = UINT64_MAX;
  for (const auto& e : result->events()) {
    if (e.isHiddenEvent() || e.durationNs() == 0) continue;
    kept.push_back(&e);
    t0 = std::min(t0, e.startNs());
  }
  size_t n = kept.size();
  Napi::Array names = Napi::Array::New(env, n), shapes = Napi::Array::New(env, n), devices = Napi::Array::New(env, n);
  Napi::Float64Array thread = Napi::Float64Array::New(env, n), start = Napi::Float64Array::New(env, n), dur = Napi::Float64Array::New(env, n);
  for (size_t i = 0; i < n; i++) {
    const prof::KinetoEvent& e = *kept[i];
    names.Set(i, e.name());
    std::string s;
    if (e.hasShapes()) {
      for (const auto& shape : e.shapes()) {
        s += s.empty() ? "[" : ", [";
        for (size_t d = 0; d < shape.size(); d++) s += (d ? ", " : "") + std::to_string(shape[d]);
        s += "]";
      }
    }
    shapes.Set(i, s);
    devices.Set(i, e.deviceType() == c10::DeviceType::CPU ? "cpu" : c10::DeviceTypeName(e.deviceType(), /*lower_case=*/true));
    thread[i] = static_cast<double>(e.startThreadId());
    start[i] = static_cast<double>(e.startNs() - t0) / 1e3;
    dur[i] = static_cast<double>(e.durationNs()) / 1e3;
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("name", names);
  out.Set("thread", thread);
  out.Set("startUs", start);
  out.Set("durationUs", dur);
  out.Set("shapes", shapes);
  out.Set("device", devices);
  return out;
}

void InitProfiler(Napi::Env env, Napi::Object exports) {
  Export<ProfilerStart>(exports, "profilerStart");
  Export<ProfilerStop>(exports, "profilerStop");
}

}  // namespace torchbert
