// torchbert::linear_prepacked: the linear layer of prepack()'s inference copies, run by whichever GEMM
// measured fastest on this machine for its shape and row count:
//   torchbert  our packed kernel (torchbert::linear_packed, linear_packed.cc; AVX2/FMA, or a portable loop),
//   onednn     oneDNN's GEMM on its own reordered weight (dispatched by ISA: AVX2, AVX-512, AMX),
//   aten       ATen's linear on the plain weight (MKL or the BLAS libtorch was built with).
// No choice is fixed in advance: a kernel that wins on one CPU can run at half speed on another.
//
// bf16 layers (prepack() of a bf16 model, on CPUs with bf16 units) choose between oneDNN and ATen on
// bf16 weights; our kernel is fp32 only.
//
// torchbert::tune_linear(N, K, activation, dtype) times them on synthetic weights of that shape at 1, 4,
// 16, 64, 256, 1024 and 4096 rows (up to 64 rows, enough weight copies are cycled that each call reads its
// weight from memory, as a forward through a dozen layers does) and keeps, per shape and row bucket, the
// backend to run: the fewest backends that run every bucket from 16 rows up within 10% of its fastest
// (Decide), so a model holds one layout of a weight unless a second one pays for its memory.
// lib/models/linear-plan.ts decides which layouts to build and caches the timings on disk. A call runs
// its bucket's choice when the module holds that layout, else the first layout it holds.
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/irange.h>
#include <torch/library.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <mutex>
#include <tuple>
#include <vector>

#include "kernels.h"
#include "ops.h"

namespace torchbert {

namespace {

enum Backend : int { kOurs = 0, kOneDnn = 1, kAten = 2 };
constexpr int kNumBackends = 3;
constexpr int kBuckets = 7;  // rows 1, 4, 16, 64, 256, 1024, 4096 (and above)
constexpr const char* kBackendNames[kNumBackends] = {"torchbert", "onednn", "aten"};

int64_t BucketRows(int b) { return int64_t(1) << (2 * b); }
// The nearest bucket on a log scale.
int Bucket(int64_t rows) {
  int b = 0;
  while (b + 1 < kBuckets && double(rows) * rows > double(BucketRows(b)) * BucketRows(b + 1)) b++;
  return b;
}

bool OneDnnAvailable() {
  static const bool yes = at::hasMKLDNN() && c10::Dispatcher::singleton().findSchema({"mkldnn::_linear_pointwise", ""}).has_value() &&
                          c10::Dispatcher::singleton().findSchema({"mkldnn::_reorder_linear_weight", ""}).has_value();
  return yes;
}

at::Tensor OneDnnReorder(const at::Tensor& w) {
  static const auto op = c10::Dispatcher::singleton().findSchemaOrThrow("mkldnn::_reorder_linear_weight", "");
  torch::jit::Stack stack{w.detach().contiguous(), c10::IValue()};
  op.callBoxed(&stack);
  return stack.back().toTensor();
}

void CheckActivation(c10::string_view a, const char* who) {
  TORCH_CHECK(a == "none" || a == "gelu" || a == "gelu_tanh", who, ": activation must be none, gelu or gelu_tanh, got ", a);
}

// The dtypes a prepacked layer runs in.
at::ScalarType ParseGemmDtype(c10::string_view d, const char* who) {
  if (d == "float32") return at::kFloat;
  if (d == "bfloat16") return at::kBFloat16;
  TORCH_CHECK(false, who, ": dtype must be float32 or bfloat16, got ", d);
}
const char* GemmDtypeName(at::ScalarType t) { return t == at::kBFloat16 ? "bfloat16" : "float32"; }

// One backend's act(x @ W^T + b) on its own layout of W.
at::Tensor RunBackend(int backend, const at::Tensor& x, const at::Tensor& layout, const std::optional<at::Tensor>& bias, int64_t n_out,
                      c10::string_view act) {
  switch (backend) {
    case kOurs:
      return LinearPacked(x, layout, bias, n_out, act);
    case kOneDnn:
      if (act == "none") return OneDnnLinear(x.contiguous(), layout, bias, "none", "");
      return OneDnnLinear(x.contiguous(), layout, bias, "gelu", act == "gelu_tanh" ? "tanh" : "none");
    default: {
      at::Tensor y = at::linear(x, layout, bias);
      if (act == "none") return y;
      return at::gelu(y, act == "gelu_tanh" ? "tanh" : "none");
    }
  }
}

struct PlanEntry {
  double ms[kBuckets][kNumBackends];
  int choice[kBuckets];
};

// The backend each bucket runs. Each weight layout kept costs the weight's memory again (340 MB for
// bert-base), so the choice is the smallest set of backends that runs every bucket from 16 rows up within
// 10% of its fastest (the cheaper set in total time among sets of that size), and each bucket runs the
// fastest backend of that set. 1 and 4 rows (a sequence of a word or two, a pooler at batch 1) take
// well under a millisecond per layer whichever runs them: a second copy of the weights is not kept for
// them. (Timings of the same call on a shared 2-core VM move by 5-10% between runs: a smaller margin
// keeps layouts for noise.)
constexpr int kFirstDecidingBucket = 2;  // 16 rows
void Decide(PlanEntry& e) {
  double best[kBuckets];
  for (int b = 0; b < kBuckets; b++) {
    best[b] = std::numeric_limits<double>::infinity();
    for (int k = 0; k < kNumBackends; k++)
      if (std::isfinite(e.ms[b][k])) best[b] = std::min(best[b], e.ms[b][k]);
  }
  int chosen = 0;
  double chosen_cost = std::numeric_limits<double>::infinity();
  for (int size = 1; size <= kNumBackends && chosen == 0; size++) {
    for (int set = 1; set < (1 << kNumBackends); set++) {
      if (__builtin_popcount(set) != size) continue;
      double cost = 0;
      bool ok = true;
      for (int b = 0; b < kBuckets && ok; b++) {
        double fastest = std::numeric_limits<double>::infinity();
        for (int k = 0; k < kNumBackends; k++)
          if ((set >> k & 1) && std::isfinite(e.ms[b][k])) fastest = std::min(fastest, e.ms[b][k]);
        ok = b < kFirstDecidingBucket || fastest <= 1.1 * best[b];
        cost += fastest / best[b];
      }
      if (ok && cost < chosen_cost) chosen = set, chosen_cost = cost;
    }
  }
  for (int b = 0; b < kBuckets; b++) {
    e.choice[b] = -1;
    double fastest = std::numeric_limits<double>::infinity();
    for (int k = 0; k < kNumBackends; k++)
      if ((chosen >> k & 1) && std::isfinite(e.ms[b][k]) && e.ms[b][k] < fastest) fastest = e.ms[b][k], e.choice[b] = k;
  }
}

class Plan {
 public:
  using Key = std::tuple<int64_t, int64_t, std::string, at::ScalarType>;
  static Plan& Get() {
    static auto* p = new Plan();
    return *p;
  }
  void Set(const Key& key, const PlanEntry& e) {
    std::lock_guard<std::mutex> lock(mu_);
    entries_[key] = e;
  }
  // The bucket's choice, or -1 when the shape was never tuned.
  int Choice(const Key& key, int bucket) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(key);
    return it == entries_.end() ? -1 : it->second.choice[bucket];
  }
  std::optional<PlanEntry> Find(const Key& key) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(key);
    if (it == entries_.end()) return std::nullopt;
    return it->second;
  }
  std::vector<std::pair<Key, PlanEntry>> Snapshot() {
    std::lock_guard<std::mutex> lock(mu_);
    return {entries_.begin(), entries_.end()};
  }

 private:
  std::mutex mu_;
  std::map<Key, PlanEntry> entries_;
};

at::Tensor LinearPrepacked(const at::Tensor& input, const at::Tensor& packed, const at::Tensor& onednn, const at::Tensor& weight,
                           const std::optional<at::Tensor>& bias, int64_t n_out, c10::string_view activation) {
  constexpr const char* who = "torchbert::linear_prepacked";
  CheckActivation(activation, who);
  const at::Tensor* layouts[kNumBackends] = {&packed, &onednn, &weight};
  bool has[kNumBackends];
  int64_t k = -1;
  for (int i = 0; i < kNumBackends; i++) {
    has[i] = layouts[i]->defined() && layouts[i]->numel() > 0;
    if (has[i]) k = layouts[i]->size(1);
  }
  TORCH_CHECK(k > 0, who, ": the module holds no weight layout (was it built by prepack()?)");
  TORCH_CHECK(input.dim() >= 1 && input.size(-1) == k, who, ": input ", input.sizes(), " does not end in in_features ", k);
  const at::ScalarType dtype = input.scalar_type();
  TORCH_CHECK(input.device().is_cpu() && (dtype == at::kFloat || dtype == at::kBFloat16), who, ": expected a float32 or bfloat16 CPU input, got ",
              dtype, " on ", input.device());
  // Our kernel's layout is fp32 only; the others hold the weight in the model's dtype.
  if (dtype != at::kFloat) has[kOurs] = false;
  for (int i = kOneDnn; i < kNumBackends; i++)
    TORCH_CHECK(!has[i] || layouts[i]->scalar_type() == dtype, who, ": a ", dtype, " input needs ", dtype, " weights, the module holds ",
                layouts[i]->scalar_type());
  const int64_t rows = input.numel() / k;
  int backend = Plan::Get().Choice({n_out, k, std::string(activation), dtype}, Bucket(rows));
  if (backend < 0 || !has[backend]) {
    backend = 0;
    while (backend < kNumBackends && !has[backend]) backend++;
    TORCH_CHECK(backend < kNumBackends, who, ": the module holds no ", dtype, " weight layout");
  }
  return RunBackend(backend, input, *layouts[backend], bias, n_out, activation);
}

// Times the backends for one shape (see the top of this file); returns ms per call, [bucket][backend],
// NaN where a backend is not available, and keeps the decision for this process.
std::vector<double> TuneLinear(int64_t n, int64_t k, c10::string_view activation, c10::string_view dtype_name) {
  CheckActivation(activation, "torchbert::tune_linear");
  const at::ScalarType dtype = ParseGemmDtype(dtype_name, "torchbert::tune_linear");
  TORCH_CHECK(n > 0 && k > 0, "torchbert::tune_linear: out_features and in_features must be positive, got ", n, " and ", k);
  at::NoGradGuard no_grad;
  // Enough copies that the small-row calls read their weight from memory, not from a 32 MB cache.
  const int64_t wbytes = n * k * int64_t(c10::elementSize(dtype));
  const int64_t copies = std::clamp<int64_t>((int64_t(48) << 20) / wbytes + 1, 1, 12);
  std::vector<at::Tensor> layouts[kNumBackends];
  bool available[kNumBackends] = {dtype == at::kFloat, OneDnnAvailable(), true};
  at::Tensor bias = at::randn({n}).mul_(0.02).to(dtype);
  for (int64_t i = 0; i < copies; i++) {
    at::Tensor w = at::randn({n, k}).mul_(0.02).to(dtype);
    if (available[kOurs]) layouts[kOurs].push_back(PackLinearWeight(w));
    if (available[kOneDnn]) {
      try {
        layouts[kOneDnn].push_back(OneDnnReorder(w));
      } catch (const std::exception&) {
        available[kOneDnn] = false;
      }
    }
    layouts[kAten].push_back(w);
  }
  // A backend that cannot run this dtype here (oneDNN's bf16 needs AVX-512 or AVX-NE-CONVERT) is not timed.
  for (int i = 0; i < kNumBackends; i++) {
    if (!available[i]) continue;
    try {
      RunBackend(i, at::randn({1, k}).to(dtype), layouts[i][0], bias, n, activation);
    } catch (const std::exception&) {
      available[i] = false;
    }
  }
  PlanEntry e;
  std::vector<double> out;
  for (int b = 0; b < kBuckets; b++) {
    const int64_t rows = BucketRows(b);
    const int64_t c = rows <= 64 ? copies : 1;
    at::Tensor x = at::randn({rows, k}).to(dtype);
    for (int i = 0; i < kNumBackends; i++) e.ms[b][i] = std::numeric_limits<double>::infinity();
    // A warm-up round, then three (two at 4096 rows, where one call takes a tenth of a second); the
    // backends take turns in a rotating order so that a slow phase of a shared machine does not fall on
    // one of them.
    const int reps = rows >= 4096 ? 3 : 4;
    for (int rep = 0; rep < reps; rep++) {
      for (int j = 0; j < kNumBackends; j++) {
        const int backend = (rep + j) % kNumBackends;
        if (!available[backend]) continue;
        const auto t0 = std::chrono::steady_clock::now();
        for (int64_t i = 0; i < c; i++) RunBackend(backend, x, layouts[backend][i], bias, n, activation);
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / c;
        if (rep > 0) e.ms[b][backend] = std::min(e.ms[b][backend], ms);
      }
    }
    for (int i = 0; i < kNumBackends; i++) out.push_back(available[i] ? e.ms[b][i] : std::nan(""));
  }
  Decide(e);
  Plan::Get().Set({n, k, std::string(activation), dtype}, e);
  return out;
}

// Installs timings measured earlier (the on-disk cache), decided as TuneLinear decides.
void SetLinearPlan(int64_t n, int64_t k, c10::string_view activation, c10::ArrayRef<double> ms, c10::string_view dtype) {
  CheckActivation(activation, "torchbert::set_linear_plan");
  const at::ScalarType t = ParseGemmDtype(dtype, "torchbert::set_linear_plan");
  TORCH_CHECK(ms.size() == size_t(kBuckets * kNumBackends), "torchbert::set_linear_plan: expected ", kBuckets * kNumBackends,
              " timings, got ", ms.size());
  PlanEntry e;
  for (int b = 0; b < kBuckets; b++)
    for (int i = 0; i < kNumBackends; i++) {
      const double v = ms[b * kNumBackends + i];
      e.ms[b][i] = std::isfinite(v) && v > 0 ? v : std::numeric_limits<double>::infinity();
    }
  if (t != at::kFloat)
    for (int b = 0; b < kBuckets; b++) e.ms[b][kOurs] = std::numeric_limits<double>::infinity();
  Decide(e);
  Plan::Get().Set({n, k, std::string(activation), t}, e);
}

// The one backend that runs every bucket at the least cost (Decide's cost: the sum over buckets of its
// time over the bucket's fastest), for a model that keeps one layout of each weight whatever it loses.
int SingleBackend(const PlanEntry& e) {
  int chosen = -1;
  double chosen_cost = std::numeric_limits<double>::infinity();
  for (int k = 0; k < kNumBackends; k++) {
    double cost = 0;
    for (int b = 0; b < kBuckets; b++) {
      double best = std::numeric_limits<double>::infinity();
      for (int j = 0; j < kNumBackends; j++) best = std::min(best, e.ms[b][j]);
      cost += e.ms[b][k] / best;  // infinite where k cannot run
    }
    if (cost < chosen_cost) chosen = k, chosen_cost = cost;
  }
  return chosen;
}

// The backend each bucket runs for this shape ([] when it was never tuned); with max_layouts 1, the one
// backend of SingleBackend in every bucket.
std::vector<int64_t> LinearPlanChoices(int64_t n, int64_t k, c10::string_view activation, c10::string_view dtype, int64_t max_layouts) {
  TORCH_CHECK(max_layouts == 0 || max_layouts == 1, "torchbert::linear_plan: max_layouts must be 0 (as measured) or 1, got ", max_layouts);
  auto e = Plan::Get().Find({n, k, std::string(activation), ParseGemmDtype(dtype, "torchbert::linear_plan")});
  if (!e) return {};
  if (max_layouts == 1) return std::vector<int64_t>(kBuckets, SingleBackend(*e));
  return std::vector<int64_t>(e->choice, e->choice + kBuckets);
}

// int8 (quantizeDynamic): quantized::linear_dynamic on weights packed by fbgemm and by oneDNN (VNNI and
// AMX where the CPU has them), timed as TuneLinear times fp32 GEMMs; [bucket][engine], NaN where this
// libtorch lacks the engine. The choice is the caller's (linear-plan.ts), per shape.
constexpr const char* kEngines[] = {"fbgemm", "onednn"};
std::vector<double> TuneInt8Linear(int64_t n, int64_t k) {
  TORCH_CHECK(n > 0 && k > 0, "torchbert::tune_int8_linear: out_features and in_features must be positive, got ", n, " and ", k);
  at::NoGradGuard no_grad;
  static const auto prepack = c10::Dispatcher::singleton().findSchemaOrThrow("quantized::linear_prepack", "");
  static const auto run = c10::Dispatcher::singleton().findSchemaOrThrow("quantized::linear_dynamic", "");
  const int64_t copies = std::clamp<int64_t>((int64_t(48) << 20) / (n * k) + 1, 1, 12);
  const auto& supported = at::globalContext().supportedQEngines();
  struct Quiet : c10::WarningHandler {  // torch 2.13 warns that quantized dtypes are deprecated
    void process(const c10::Warning&) override {}
  } quiet;
  c10::WarningUtils::WarningHandlerGuard guard(&quiet);
  std::vector<c10::IValue> packed[2];
  bool available[2];
  for (int e = 0; e < 2; e++) {
    available[e] = std::find(supported.begin(), supported.end(), e == 0 ? at::QEngine::FBGEMM : at::QEngine::ONEDNN) != supported.end();
    if (!available[e]) continue;
    QEngineGuard engine(kEngines[e]);
    for (int64_t i = 0; i < copies; i++) {
      at::Tensor w = at::randn({n, k}).mul_(0.02);
      at::Tensor scales = (w.abs().amax(1) / 127.5).clamp_min(1e-7).to(at::kDouble);
      at::Tensor qw = at::quantize_per_channel(w, scales, at::zeros({n}, at::kLong), 0, at::kQInt8);
      torch::jit::Stack stack{qw, at::randn({n})};
      prepack.callBoxed(&stack);
      packed[e].push_back(stack.at(0));
    }
  }
  std::vector<double> out(kBuckets * 2, std::nan(""));
  for (int b = 0; b < kBuckets; b++) {
    const int64_t rows = BucketRows(b);
    const int64_t c = rows <= 64 ? copies : 1;
    at::Tensor x = at::randn({rows, k});
    for (int rep = 0; rep < (rows >= 4096 ? 3 : 4); rep++) {
      for (int j = 0; j < 2; j++) {
        const int e = (rep + j) % 2;
        if (!available[e]) continue;
        const auto t0 = std::chrono::steady_clock::now();
        for (int64_t i = 0; i < c; i++) {
          torch::jit::Stack stack{x, packed[e][i], true};
          run.callBoxed(&stack);
        }
        const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / c;
        double& slot = out[b * 2 + e];
        if (rep > 0) slot = std::isnan(slot) ? ms : std::min(slot, ms);
      }
    }
  }
  return out;
}

at::QEngine ParseQEngine(const std::string& name) {
  at::QEngine e;
  if (name == "fbgemm") e = at::QEngine::FBGEMM;
  else if (name == "onednn") e = at::QEngine::ONEDNN;
  else if (name == "x86") e = at::QEngine::X86;
  else TORCH_CHECK(false, "quantized engine must be fbgemm, onednn or x86, got '", name, "'");
  const auto& supported = at::globalContext().supportedQEngines();
  TORCH_CHECK(std::find(supported.begin(), supported.end(), e) != supported.end(), "this libtorch has no ", name, " quantized engine");
  return e;
}

}  // namespace

QEngineGuard::QEngineGuard(const std::string& name) : prev_(at::globalContext().qEngine()) {
  if (name.empty()) return;
  at::globalContext().setQEngine(ParseQEngine(name));
  set_ = true;
}
QEngineGuard::~QEngineGuard() {
  if (set_) at::globalContext().setQEngine(prev_);
}

// linearTuning()'s rows for prepacked inference: one per shape and row bucket.
void AppendPrepackedTuning(Napi::Env env, Napi::Array& out) {
  for (const auto& [key, e] : Plan::Get().Snapshot()) {
    const auto& [n, k, act, dtype] = key;
    for (int b = 0; b < kBuckets; b++) {
      Napi::Object o = Napi::Object::New(env);
      o.Set("pass", "inference");
      o.Set("rows", double(BucketRows(b)));
      o.Set("n", double(n));
      o.Set("k", double(k));
      o.Set("activation", act);
      o.Set("dtype", GemmDtypeName(dtype));
      o.Set("choice", e.choice[b] < 0 ? env.Null() : Napi::String::New(env, kBackendNames[e.choice[b]]));
      const double macs = double(BucketRows(b)) * n * k;
      const char* fields[kNumBackends] = {"torchbertPsPerMac", "onednnPsPerMac", "atenPsPerMac"};
      for (int i = 0; i < kNumBackends; i++)
        o.Set(fields[i], std::isfinite(e.ms[b][i]) ? Napi::Value(Napi::Number::New(env, e.ms[b][i] * 1e9 / macs)) : env.Null());
      out.Set(out.Length(), o);
    }
  }
}

void RegisterLinearSelect(torch::Library& lib) {
  lib.def(
      "linear_prepacked(Tensor input, Tensor packed, Tensor onednn, Tensor weight, Tensor? bias, int out_features, str activation=\"none\") -> "
      "Tensor",
      &LinearPrepacked);
  lib.def("tune_linear(int out_features, int in_features, str activation=\"none\", str dtype=\"float32\") -> float[]", &TuneLinear);
  lib.def("set_linear_plan(int out_features, int in_features, str activation, float[] ms, str dtype=\"float32\") -> ()", &SetLinearPlan);
  lib.def("linear_plan(int out_features, int in_features, str activation=\"none\", str dtype=\"float32\", int max_layouts=0) -> int[]",
          &LinearPlanChoices);
  lib.def("tune_int8_linear(int out_features, int in_features) -> float[]", &TuneInt8Linear);
  lib.def("reorder_linear_weight(Tensor weight) -> Tensor", [](const at::Tensor& w) {
    TORCH_CHECK(OneDnnAvailable(), "torchbert::reorder_linear_weight: this libtorch has no oneDNN");
    return OneDnnReorder(w);
  });
}

}  // namespace torchbert
