// torchbert::attention(q, k, v, mask): softmax(q k^T / sqrt(d), masked) v for prepacked copies, run by
// whichever of two implementations the first calls of its shape measure faster on this machine
// (online_choice.h): ATen's fused CPU kernel (scaled_dot_product_attention, flash attention on the CPU)
// or the three steps spelled out (two batched GEMMs around an in-place softmax). Which wins depends on
// the dtype, the sequence length and the batch, and differs between CPUs (docs/benchmarks.md): fused for
// long sequences, spelled out for short ones in bf16 on one machine. TORCHBERT_ATTENTION=sdpa|math fixes
// the choice. Anything needing gradients runs SDPA.
#include <ATen/ATen.h>
#include <c10/core/GradMode.h>
#include <torch/library.h>

#include <cmath>
#include <cstdlib>
#include <atomic>
#include <limits>
#include <optional>
#include <string>
#include <tuple>

#include "errors.h"
#include "kernels.h"
#include "online_choice.h"

namespace torchbert {

namespace {

enum class AttnMode { Auto, Sdpa, Math };
const char* const kModeNames[] = {"auto", "sdpa", "math"};
// The mode named `name` ("" is auto), or -1.
int ParseMode(const std::string& name) {
  if (name.empty()) return int(AttnMode::Auto);
  for (int i = 0; i < 3; i++)
    if (name == kModeNames[i]) return i;
  return -1;
}
// TORCHBERT_ATTENTION at first use; attentionMode(mode) changes it at run time (for every thread).
std::atomic<int>& ModeSetting() {
  static std::atomic<int> mode = [] {
    const char* env = std::getenv("TORCHBERT_ATTENTION");
    const int m = ParseMode(env ? env : "");
    if (m >= 0) return m;
    TORCH_WARN("TORCHBERT_ATTENTION must be auto, sdpa or math, got '", env, "': measuring (auto)");
    return int(AttnMode::Auto);
  }();
  return mode;
}
AttnMode AttentionMode() { return AttnMode(ModeSetting().load(std::memory_order_relaxed)); }

at::Tensor Math(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const std::optional<at::Tensor>& mask) {
  at::Tensor s = at::matmul(q, k.transpose(-2, -1));  // [..., Tq, Tk]
  s.mul_(1.0 / std::sqrt(double(q.size(-1))));
  if (mask && mask->defined()) {
    if (mask->scalar_type() == at::kBool) s.masked_fill_(mask->logical_not(), -std::numeric_limits<double>::infinity());
    else s.add_(*mask);
  }
  at::softmax_out(s, s, -1);
  return at::matmul(s, v);
}

int64_t Pow2(int64_t x) {
  int64_t p = 1;
  while (p < x) p <<= 1;
  return p;
}

// (dtype, batch x heads, query length, key length), the sizes rounded up to powers of two.
using Key = std::tuple<int, int64_t, int64_t, int64_t>;
OnlineChoice<Key>& Choice() {
  static auto* c = new OnlineChoice<Key>();
  return *c;
}

at::Tensor Attention(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v, const std::optional<at::Tensor>& mask) {
  TORCH_CHECK(q.dim() >= 3 && k.dim() == q.dim() && v.dim() == q.dim(), "torchbert::attention: q, k and v must be [..., T, d] of one rank, got ",
              q.sizes(), ", ", k.sizes(), ", ", v.sizes());
  const AttnMode mode = AttentionMode();
  const bool grad = c10::GradMode::is_enabled() && (q.requires_grad() || k.requires_grad() || v.requires_grad());
  if (grad || mode == AttnMode::Sdpa || !q.device().is_cpu()) return at::scaled_dot_product_attention(q, k, v, mask);
  if (mode == AttnMode::Math) return Math(q, k, v, mask);
  const int64_t tq = q.size(-2), tk = k.size(-2), d = q.size(-1);
  const int64_t bh = q.numel() / std::max<int64_t>(1, tq * d);
  const Key key(static_cast<int>(q.scalar_type()), Pow2(bh), Pow2(tq), Pow2(tk));
  return Choice().Run(key, double(bh) * tq * tk * d, [&](bool math) {
    return math ? Math(q, k, v, mask) : at::scaled_dot_product_attention(q, k, v, mask);
  });
}

}  // namespace

void RegisterAttention(torch::Library& lib) {
  // Above autograd, so that the SDPA it runs for inputs needing gradients records its backward.
  lib.def("attention(Tensor query, Tensor key, Tensor value, Tensor? mask=None) -> Tensor",
          torch::dispatch(c10::DispatchKey::CompositeImplicitAutograd, &Attention));
}

// attentionMode([mode]): the implementation torchbert::attention runs ('auto': measured per shape), set first.
Napi::Value AttentionModeJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() > 0 && !info[0].IsUndefined()) {
    const std::string want = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
    const int m = want.empty() ? -1 : ParseMode(want);  // "" is auto only in the environment variable
    if (m < 0) ThrowType(env, "attentionMode must be 'auto', 'sdpa' or 'math', got " + (info[0].IsString() ? "'" + want + "'" : std::string("a non-string")));
    ModeSetting().store(m);
  }
  return Napi::String::New(env, kModeNames[int(AttentionMode())]);
}

// attentionTuning()'s rows: per shape bucket, each implementation's best time and the choice.
Napi::Value AttentionTuning(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto rows = Choice().Snapshot();
  Napi::Array out = Napi::Array::New(env, rows.size());
  uint32_t i = 0;
  for (const auto& [key, e] : rows) {
    const auto& [dtype, bh, tq, tk] = key;
    Napi::Object o = Napi::Object::New(env);
    o.Set("dtype", c10::toString(static_cast<at::ScalarType>(dtype)));
    o.Set("batchHeads", double(bh));
    o.Set("queryLength", double(tq));
    o.Set("keyLength", double(tk));
    o.Set("choice", e.choice < 0 ? env.Null() : Napi::String::New(env, e.choice == 1 ? "math" : "sdpa"));
    // picoseconds per (query, key, channel) product
    o.Set("sdpaPs", e.trials[0] > 0 ? Napi::Value(Napi::Number::New(env, e.best[0] * 1e12)) : env.Null());
    o.Set("mathPs", e.trials[1] > 0 ? Napi::Value(Napi::Number::New(env, e.best[1] * 1e12)) : env.Null());
    out.Set(i++, o);
  }
  return out;
}

}  // namespace torchbert
