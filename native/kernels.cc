// torchbert's own operators, callable from TorchScript as ops.torchbert.<name>.
//
// torchbert::linear(input, weight, bias?) is torch.linear whose fp32 CPU GEMMs (the forward product
// and grad_input = grad_output @ weight) run on whichever of libtorch's BLAS (MKL here) and oneDNN
// (mkldnn::_linear_pointwise) is faster for that shape on this machine, as cuDNN's benchmark mode picks
// convolution algorithms: the first calls of each shape alternate between the two and time them, then
// the faster is kept. On the 2-core AMD VM used for bench/train.js, oneDNN ran BERT's dense layers 20-30%
// faster in some hours and MKL 10% faster in others, so neither is a safe fixed choice. grad_weight
// stays on ATen's mm (faster for that product in every measurement). Anything else (CUDA, other dtypes,
// autocast, no oneDNN) runs torch.linear itself, so the op is always safe to call.
// TORCHBERT_ONEDNN_LINEAR=0 always uses ATen, =1 always oneDNN (for comparison).
//
// torchbert::dropout(input, p, train) is torch.dropout whose fp32 CPU mask is drawn in parallel from a
// counter-based generator: ATen's CPU bernoulli_ is a serial loop under the generator's lock, one core
// idle (bench/dropout.js: ~1 s of a bert-base training step's ~10 s for ATen's dropouts, a quarter of that
// for these). Each call takes one 64-bit seed from
// libtorch's default CPU generator, so manualSeed() and saved RNG states still reproduce a run, and
// element i's draw depends only on (seed, i), not on the thread count. The mask is kept as bool (a
// quarter of the float noise ATen keeps for backward). The draws differ from torch's stream.
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ATen/autocast_mode.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <chrono>
#include <cstring>
#include <vector>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <cmath>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "errors.h"
#include "kernels.h"
#include "ops.h"

namespace torchbert {

at::Tensor OneDnnLinear(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& b, const std::string& attr,
                        const std::string& algorithm) {
  static const auto op = c10::Dispatcher::singleton().findSchemaOrThrow("mkldnn::_linear_pointwise", "");
  torch::jit::Stack stack{x, w, b, c10::IValue(attr), c10::IValue(c10::List<std::optional<at::Scalar>>()), c10::IValue(algorithm)};
  try {
    op.callBoxed(&stack);
  } catch (const c10::Error&) {
    throw;
  } catch (const std::exception& e) {  // dnnl::error and the like: give it libtorch's error type
    TORCH_CHECK(false, "torchbert::linear (oneDNN): ", e.what());
  }
  return stack.back().toTensor();
}

namespace {

at::Tensor OneDnnLinear(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& b) {
  return torchbert::OneDnnLinear(x, w, b, "none", "");
}

// 'auto' (tune per shape), 'aten' or 'onednn', from TORCHBERT_ONEDNN_LINEAR.
enum class Mode { Auto, Aten, OneDnn };
Mode LinearMode() {
  static const Mode mode = [] {
    const char* env = std::getenv("TORCHBERT_ONEDNN_LINEAR");
    if (env && std::string(env) == "0") return Mode::Aten;
    if (env && std::string(env) == "1") return Mode::OneDnn;
    return Mode::Auto;
  }();
  return mode;
}

// Per (pass, rows rounded up to a power of two, N, K): the best time per multiply-add each backend has
// shown in its trials, and the choice once both have had kTrials.
class Tuner {
 public:
  static constexpr int kTrials = 3;
  enum Pass { kForward = 0, kGradInput = 1 };

  // Runs f(use_onednn) with the backend to use now, timing it while the shape is still on trial.
  template <class F>
  at::Tensor Run(Pass pass, int64_t m, int64_t n, int64_t k, F&& f) {
    Mode mode = LinearMode();
    if (mode != Mode::Auto) return f(mode == Mode::OneDnn);
    int64_t rows = 1;
    while (rows < m) rows <<= 1;
    auto key = std::make_tuple(static_cast<int>(pass), rows, n, k);
    bool onednn;
    {
      std::lock_guard<std::mutex> lock(mu_);
      Entry& e = entries_[key];
      if (e.choice >= 0) return f(e.choice == 1);
      onednn = e.trials[1] < e.trials[0];  // alternate, ATen first
    }
    auto t0 = std::chrono::steady_clock::now();
    at::Tensor out = f(onednn);
    double per = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / (double(m) * n * k);
    std::lock_guard<std::mutex> lock(mu_);
    Entry& e = entries_[key];
    int i = onednn ? 1 : 0;
    e.best[i] = e.trials[i]++ == 0 ? per : std::min(e.best[i], per);
    if (e.choice < 0 && e.trials[0] >= kTrials && e.trials[1] >= kTrials) e.choice = e.best[1] < e.best[0] ? 1 : 0;
    return out;
  }

  // [pass, rows, N, K, choice (-1 undecided, 0 ATen, 1 oneDNN), ATen and oneDNN ns per 1e3 multiply-adds]
  std::vector<std::vector<double>> Snapshot() {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::vector<double>> out;
    for (const auto& [key, e] : entries_) {
      out.push_back({double(std::get<0>(key)), double(std::get<1>(key)), double(std::get<2>(key)), double(std::get<3>(key)),
                     double(e.choice), e.best[0] * 1e12, e.best[1] * 1e12});
    }
    return out;
  }

  static Tuner& Get() {
    static auto* t = new Tuner();
    return *t;
  }

 private:
  struct Entry {
    int trials[2] = {0, 0};
    double best[2] = {0, 0};
    int choice = -1;
  };
  std::mutex mu_;
  std::map<std::tuple<int, int64_t, int64_t, int64_t>, Entry> entries_;
};

at::Tensor Forward(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& b) {
  return Tuner::Get().Run(Tuner::kForward, x.numel() / x.size(-1), w.size(0), w.size(1),
                          [&](bool onednn) { return onednn ? OneDnnLinear(x, w, b) : at::linear(x, w, b); });
}

at::Tensor GradInput(const at::Tensor& gy, const at::Tensor& w) {
  return Tuner::Get().Run(Tuner::kGradInput, gy.numel() / gy.size(-1), w.size(1), w.size(0), [&](bool onednn) {
    return onednn ? OneDnnLinear(gy, w.t().contiguous(), std::nullopt) : at::matmul(gy, w);
  });
}

struct LinearFunction : torch::autograd::Function<LinearFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w,
                            const std::optional<at::Tensor>& b) {
    ctx->save_for_backward({x, w});
    ctx->saved_data["bias"] = b.has_value() && b->defined();
    return Forward(x, w, b);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list g) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& w = saved[1];
    at::Tensor gy = g[0].contiguous();
    at::Tensor gx, gw, gb;
    if (ctx->needs_input_grad(0)) gx = GradInput(gy, w);
    at::Tensor gy2 = gy.reshape({-1, gy.size(-1)});
    if (ctx->needs_input_grad(1)) gw = gy2.t().mm(x.reshape({-1, x.size(-1)}));
    if (ctx->saved_data["bias"].toBool() && ctx->needs_input_grad(2)) gb = gy2.sum(0);
    return {gx, gw, gb};
  }
};

bool UseOneDnn(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& b) {
  static const bool available = LinearMode() != Mode::Aten && at::hasMKLDNN() &&
                                c10::Dispatcher::singleton().findSchema({"mkldnn::_linear_pointwise", ""}).has_value();
  auto cpu_f32 = [](const at::Tensor& t) { return t.device().is_cpu() && t.scalar_type() == at::kFloat && t.layout() == at::kStrided; };
  // Shapes torch.linear would reject or broadcast go to torch.linear too, for its errors and semantics.
  return available && cpu_f32(x) && cpu_f32(w) && x.dim() >= 2 && w.dim() == 2 && x.size(-1) == w.size(1) && x.numel() > 0 &&
         w.numel() > 0 && (!b.has_value() || !b->defined() || (cpu_f32(*b) && b->dim() == 1 && b->size(0) == w.size(0))) &&
         !at::autocast::is_autocast_enabled(at::kCPU);
}

at::Tensor Linear(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& b) {
  if (!UseOneDnn(x, w, b)) return at::linear(x, w, b);
  return LinearFunction::apply(x.contiguous(), w.contiguous(), b);
}

// SplitMix64's output function (Steele, Lea and Flood, 2014): the n-th draw of a stream is Mix(seed +
// n * golden), so any element's draw is computed without the ones before it.
inline uint64_t Mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

// out = in * (keep ? scale : 0) over n elements. The mask is read as bytes (gcc does not vectorise loads
// of bool) and the pointers are restrict so the loop vectorises without runtime alias checks.
void ApplyMask(const float* __restrict in, const uint8_t* __restrict keep, float scale, float* __restrict out, int64_t n) {
  for (int64_t i = 0; i < n; i++) out[i] = in[i] * (keep[i] ? scale : 0.f);
}

struct DropoutFunction : torch::autograd::Function<DropoutFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& input, double p) {
    at::Tensor x = input.contiguous();
    at::Tensor out = at::empty_like(x);
    at::Tensor mask = at::empty(x.sizes(), x.options().dtype(at::kBool));
    uint64_t seed;
    {
      auto* gen = at::check_generator<at::CPUGeneratorImpl>(at::detail::getDefaultCPUGenerator());
      std::lock_guard<std::mutex> lock(gen->mutex_);
      seed = gen->random64();
    }
    // Keep an element when its 32-bit draw is below (1 - p) * 2^32; each 64-bit draw serves two elements.
    // (2^32 itself, for p under 1e-10, is clamped: a drop chance of 2^-32 instead.)
    const uint32_t keep_below = static_cast<uint32_t>(std::min<double>(std::llround((1.0 - p) * 4294967296.0), 4294967295.0));
    const float scale = static_cast<float>(1.0 / (1.0 - p));
    const float* xs = x.const_data_ptr<float>();
    float* ys = out.data_ptr<float>();
    uint8_t* ms = reinterpret_cast<uint8_t*>(mask.data_ptr<bool>());
    const int64_t n = x.numel();
    // Draws for a block first (independent multiplies, no stores in between), then vectorised passes.
    constexpr int64_t kBlock = 512;
    auto run = [&](int64_t begin, int64_t end) {  // element range, begin even
      uint32_t u[kBlock];
      for (int64_t b = begin; b < end; b += kBlock) {
        const int64_t len = std::min(kBlock, end - b);
        for (int64_t j = 0; j < (len + 1) / 2; j++) {
          uint64_t r = Mix(seed + static_cast<uint64_t>(b / 2 + j + 1) * 0x9e3779b97f4a7c15ULL);
          u[2 * j] = static_cast<uint32_t>(r);
          u[2 * j + 1] = static_cast<uint32_t>(r >> 32);
        }
        uint8_t* __restrict mb = ms + b;
        for (int64_t i = 0; i < len; i++) mb[i] = u[i] < keep_below;
        ApplyMask(xs + b, mb, scale, ys + b, len);
      }
    };
    at::parallel_for(0, (n + kBlock - 1) / kBlock, 16, [&](int64_t begin, int64_t end) {
      run(begin * kBlock, std::min(n, end * kBlock));
    });
    ctx->save_for_backward({mask});
    ctx->saved_data["scale"] = static_cast<double>(scale);
    return out;
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list g) {
    at::Tensor mask = ctx->get_saved_variables()[0];
    double scale = ctx->saved_data["scale"].toDouble();
    // With create_graph, stay on differentiable ops so that double backward sees this step.
    if (at::GradMode::is_enabled() || g[0].scalar_type() != at::kFloat) return {g[0] * mask * scale, at::Tensor()};
    at::Tensor gy = g[0].contiguous();
    at::Tensor gx = at::empty_like(gy);
    const float* gs = gy.const_data_ptr<float>();
    const uint8_t* ms = reinterpret_cast<const uint8_t*>(mask.const_data_ptr<bool>());
    float* out = gx.data_ptr<float>();
    at::parallel_for(0, gy.numel(), 32768, [&](int64_t begin, int64_t end) {
      ApplyMask(gs + begin, ms + begin, static_cast<float>(scale), out + begin, end - begin);
    });
    return {gx, at::Tensor()};
  }
};

at::Tensor Dropout(const at::Tensor& input, double p, bool train) {
  // torch.dropout handles eval, p of 0 or 1, out-of-range p (its error), other dtypes and devices.
  bool ours = train && p > 0 && p < 1 && input.device().is_cpu() && input.layout() == at::kStrided &&
              input.scalar_type() == at::kFloat && input.numel() > 0;
  if (!ours) return at::dropout(input, p, train);
  return DropoutFunction::apply(input, p);
}

Napi::Value LinearTuning(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto rows = Tuner::Get().Snapshot();
  Napi::Array out = Napi::Array::New(env, rows.size());
  for (size_t i = 0; i < rows.size(); i++) {
    const auto& r = rows[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("pass", r[0] == 0 ? "forward" : "grad_input");
    o.Set("rows", r[1]);
    o.Set("n", r[2]);
    o.Set("k", r[3]);
    o.Set("choice", r[4] < 0 ? env.Null() : Napi::String::New(env, r[4] == 1 ? "onednn" : "aten"));
    o.Set("atenPsPerMac", r[5]);
    o.Set("onednnPsPerMac", r[6]);
    out.Set(i, o);
  }
  AppendPrepackedTuning(env, out);
  return out;
}


// ---- torchbert::linear_packed: act(x @ W^T + b) for fp32 inference, W packed once ----
// W [N, K] is packed into panels of 16 output columns, [K][16] each (pack_linear_weight), and the input
// per call into blocks of 6 rows, [K][6] each; a 6x16 kernel keeps its 12 accumulators in registers.
// On the 2-core AVX2 VM (bench/gemm.js) this beats oneDNN's prepacked GEMM by ~20% at the row counts of a
// single short request (24) and matches it at a batch of 16 (400 rows). GELU runs on the accumulators
// before they are stored. Other CPUs run the same layout through a portable loop.
constexpr int64_t kNR = 16;
constexpr int64_t kMR = 6;
enum class Act { kNone, kGelu, kGeluTanh };

float GeluScalar(float x, Act act) {
  if (act == Act::kGelu) return 0.5f * x * (1.f + std::erf(x * 0.70710678118654752f));
  if (act == Act::kGeluTanh) return 0.5f * x * (1.f + std::tanh(0.7978845608028654f * (x + 0.044715f * x * x * x)));
  return x;
}

// Portable kernel: rows r < mr of C[., ncols] = act(bias + A-block @ panel).
void MicroPortable(int64_t mr, const float* a, const float* b, int64_t K, const float* bias, float* c, int64_t ldc, int64_t ncols, Act act,
                   bool accumulate) {
  float acc[kMR][kNR];
  for (int64_t r = 0; r < kMR; r++)
    for (int64_t j = 0; j < kNR; j++) acc[r][j] = accumulate ? (r < mr && j < ncols ? c[r * ldc + j] : 0.f) : bias[j];
  for (int64_t k = 0; k < K; k++, a += kMR, b += kNR)
    for (int64_t r = 0; r < kMR; r++)
      for (int64_t j = 0; j < kNR; j++) acc[r][j] += a[r] * b[j];
  for (int64_t r = 0; r < mr; r++)
    for (int64_t j = 0; j < ncols; j++) c[r * ldc + j] = GeluScalar(acc[r][j], act);
}

#if defined(__x86_64__)
#define TB_AVX2 __attribute__((target("avx2,fma")))

// exp for x in [-88, 88] (Cephes' expf: 2^n * polynomial of the remainder, ~1 ulp).
TB_AVX2 inline __m256 Exp(__m256 x) {
  x = _mm256_min_ps(_mm256_max_ps(x, _mm256_set1_ps(-87.3f)), _mm256_set1_ps(88.3f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  p = _mm256_fmadd_ps(p, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

// GELU on 8 lanes. erf by Abramowitz and Stegun 7.1.26 (absolute error under 1.5e-7), as ATen's
// vectorised erf; tanh(y) as 1 - 2 / (exp(2y) + 1).
TB_AVX2 inline __m256 Gelu(__m256 x, Act act) {
  const __m256 half_x = _mm256_mul_ps(x, _mm256_set1_ps(0.5f));
  const __m256 one = _mm256_set1_ps(1.f);
  if (act == Act::kGelu) {
    const __m256 z = _mm256_mul_ps(x, _mm256_set1_ps(0.70710678118654752f));
    const __m256 sign = _mm256_and_ps(z, _mm256_set1_ps(-0.f));
    const __m256 az = _mm256_andnot_ps(_mm256_set1_ps(-0.f), z);
    const __m256 t = _mm256_div_ps(one, _mm256_fmadd_ps(_mm256_set1_ps(0.3275911f), az, one));
    __m256 p = _mm256_set1_ps(1.061405429f);
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.453152027f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.421413741f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.284496736f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.254829592f));
    p = _mm256_mul_ps(p, t);
    const __m256 e = Exp(_mm256_sub_ps(_mm256_setzero_ps(), _mm256_mul_ps(az, az)));
    const __m256 erf = _mm256_or_ps(_mm256_fnmadd_ps(p, e, one), sign);
    return _mm256_mul_ps(half_x, _mm256_add_ps(one, erf));
  }
  const __m256 inner = _mm256_mul_ps(_mm256_set1_ps(0.7978845608028654f), _mm256_fmadd_ps(_mm256_mul_ps(_mm256_set1_ps(0.044715f), x), _mm256_mul_ps(x, x), x));
  const __m256 y2 = _mm256_mul_ps(_mm256_set1_ps(2.f), _mm256_min_ps(_mm256_max_ps(inner, _mm256_set1_ps(-9.f)), _mm256_set1_ps(9.f)));
  const __m256 tanh = _mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.f), _mm256_add_ps(Exp(y2), one)));
  return _mm256_mul_ps(half_x, _mm256_add_ps(one, tanh));
}

// Rows r < MR of C[., ncols] = act(bias + A-block @ panel); accumulators in named registers (gcc keeps
// an array of them in memory, a store per multiply-add).
template <int MR>
TB_AVX2 void Micro(const float* a, const float* b, int64_t K, const float* bias, float* c, int64_t ldc, int64_t ncols, Act act,
                   const float* pf, bool accumulate) {
  // Start from the bias, or for a later block of K from what C holds.
  alignas(32) float init[kMR][kNR];
  for (int r = 0; r < MR; r++) {
    if (!accumulate) {
      std::memcpy(init[r], bias, sizeof(init[r]));
    } else {
      std::memcpy(init[r], c + r * ldc, ncols * sizeof(float));
      std::fill(init[r] + ncols, init[r] + kNR, 0.f);
    }
  }
  // Rows past MR stay zero and unused (initialised so that the row arrays below read no undefined value).
  __m256 c00 = _mm256_load_ps(init[0]), c01 = _mm256_load_ps(init[0] + 8), c10{}, c11{}, c20{}, c21{}, c30{}, c31{}, c40{}, c41{}, c50{}, c51{};
  if constexpr (MR > 1) c10 = _mm256_load_ps(init[1]), c11 = _mm256_load_ps(init[1] + 8);
  if constexpr (MR > 2) c20 = _mm256_load_ps(init[2]), c21 = _mm256_load_ps(init[2] + 8);
  if constexpr (MR > 3) c30 = _mm256_load_ps(init[3]), c31 = _mm256_load_ps(init[3] + 8);
  if constexpr (MR > 4) c40 = _mm256_load_ps(init[4]), c41 = _mm256_load_ps(init[4] + 8);
  if constexpr (MR > 5) c50 = _mm256_load_ps(init[5]), c51 = _mm256_load_ps(init[5] + 8);
  for (int64_t k = 0; k < K; k++, b += kNR, a += kMR) {
    if (pf) _mm_prefetch(reinterpret_cast<const char*>(pf + k * kNR), _MM_HINT_T1);
    const __m256 w0 = _mm256_loadu_ps(b), w1 = _mm256_loadu_ps(b + 8);
    __m256 x = _mm256_broadcast_ss(a);
    c00 = _mm256_fmadd_ps(x, w0, c00), c01 = _mm256_fmadd_ps(x, w1, c01);
    if constexpr (MR > 1) x = _mm256_broadcast_ss(a + 1), c10 = _mm256_fmadd_ps(x, w0, c10), c11 = _mm256_fmadd_ps(x, w1, c11);
    if constexpr (MR > 2) x = _mm256_broadcast_ss(a + 2), c20 = _mm256_fmadd_ps(x, w0, c20), c21 = _mm256_fmadd_ps(x, w1, c21);
    if constexpr (MR > 3) x = _mm256_broadcast_ss(a + 3), c30 = _mm256_fmadd_ps(x, w0, c30), c31 = _mm256_fmadd_ps(x, w1, c31);
    if constexpr (MR > 4) x = _mm256_broadcast_ss(a + 4), c40 = _mm256_fmadd_ps(x, w0, c40), c41 = _mm256_fmadd_ps(x, w1, c41);
    if constexpr (MR > 5) x = _mm256_broadcast_ss(a + 5), c50 = _mm256_fmadd_ps(x, w0, c50), c51 = _mm256_fmadd_ps(x, w1, c51);
  }
  const __m256 lo[kMR] = {c00, c10, c20, c30, c40, c50}, hi[kMR] = {c01, c11, c21, c31, c41, c51};
  for (int r = 0; r < MR; r++) {
    __m256 l = lo[r], h = hi[r];
    if (act != Act::kNone) l = Gelu(l, act), h = Gelu(h, act);
    if (ncols == kNR) {
      _mm256_storeu_ps(c + r * ldc, l);
      _mm256_storeu_ps(c + r * ldc + 8, h);
    } else {
      alignas(32) float t[kNR];
      _mm256_store_ps(t, l);
      _mm256_store_ps(t + 8, h);
      std::memcpy(c + r * ldc, t, ncols * sizeof(float));
    }
  }
}

// TORCHBERT_LINEAR_PACKED=portable runs the portable kernel here too (for its tests).
bool UseAvx2() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                          !(std::getenv("TORCHBERT_LINEAR_PACKED") && std::string(std::getenv("TORCHBERT_LINEAR_PACKED")) == "portable");
  return yes;
}
#else
bool UseAvx2() { return false; }
#endif

void RunMicro(int64_t mr, const float* a, const float* b, int64_t K, const float* bias, float* c, int64_t ldc, int64_t ncols, Act act,
              const float* pf, bool accumulate) {
#if defined(__x86_64__)
  if (UseAvx2()) {
    switch (mr) {
      case 6: return Micro<6>(a, b, K, bias, c, ldc, ncols, act, pf, accumulate);
      case 5: return Micro<5>(a, b, K, bias, c, ldc, ncols, act, pf, accumulate);
      case 4: return Micro<4>(a, b, K, bias, c, ldc, ncols, act, pf, accumulate);
      case 3: return Micro<3>(a, b, K, bias, c, ldc, ncols, act, pf, accumulate);
      case 2: return Micro<2>(a, b, K, bias, c, ldc, ncols, act, pf, accumulate);
      default: return Micro<1>(a, b, K, bias, c, ldc, ncols, act, pf, accumulate);
    }
  }
#endif
  MicroPortable(mr, a, b, K, bias, c, ldc, ncols, act, accumulate);
}

}  // namespace

bool HasAvx2Kernel() { return UseAvx2(); }

at::Tensor PackLinearWeight(const at::Tensor& weight) {
  TORCH_CHECK(weight.dim() == 2 && weight.device().is_cpu() && weight.scalar_type() == at::kFloat && weight.size(0) > 0 && weight.size(1) > 0,
              "torchbert::pack_linear_weight: expected a 2-D float32 CPU weight [out, in], got ", weight.sizes(), " ",
              weight.scalar_type(), " on ", weight.device());
  const int64_t N = weight.size(0), K = weight.size(1), P = (N + kNR - 1) / kNR;
  at::Tensor w = weight.detach().contiguous();
  at::Tensor padded = N == P * kNR ? w : at::cat({w, at::zeros({P * kNR - N, K}, w.options())});
  return padded.view({P, kNR, K}).transpose(1, 2).contiguous();  // [p, k, j] = W[p * 16 + j, k]
}

at::Tensor LinearPacked(const at::Tensor& input, const at::Tensor& packed, const std::optional<at::Tensor>& bias, int64_t n_out,
                        c10::string_view activation) {
  TORCH_CHECK(packed.dim() == 3 && packed.size(2) == kNR && packed.scalar_type() == at::kFloat && packed.is_contiguous() &&
                  packed.device().is_cpu(),
              "torchbert::linear_packed: the weight must come from torchbert::pack_linear_weight, got ", packed.sizes());
  const int64_t K = packed.size(1), P = packed.size(0);
  TORCH_CHECK(K > 0, "torchbert::linear_packed: the packed weight has no input features");
  TORCH_CHECK(n_out > 0 && (n_out + kNR - 1) / kNR == P, "torchbert::linear_packed: out_features ", n_out,
              " does not match the packed weight ", packed.sizes());
  TORCH_CHECK(input.dim() >= 1 && input.size(-1) == K, "torchbert::linear_packed: input ", input.sizes(), " does not end in in_features ", K);
  TORCH_CHECK(input.device().is_cpu() && input.scalar_type() == at::kFloat, "torchbert::linear_packed: expected a float32 CPU input, got ",
              input.scalar_type(), " on ", input.device());
  TORCH_CHECK(activation == "none" || activation == "gelu" || activation == "gelu_tanh",
              "torchbert::linear_packed: activation must be none, gelu or gelu_tanh, got ", activation);
  const Act act = activation == "gelu" ? Act::kGelu : activation == "gelu_tanh" ? Act::kGeluTanh : Act::kNone;
  std::vector<float> bz(P * kNR, 0.f);
  if (bias.has_value() && bias->defined()) {
    TORCH_CHECK(bias->numel() == n_out && bias->device().is_cpu(), "torchbert::linear_packed: bias of ", bias->numel(), " for ", n_out, " outputs");
    at::Tensor bc = bias->to(at::kFloat).contiguous();
    std::memcpy(bz.data(), bc.const_data_ptr<float>(), n_out * sizeof(float));
  }
  at::Tensor x = input.contiguous();
  const int64_t M = x.numel() / K;
  std::vector<int64_t> shape(x.sizes().begin(), x.sizes().end());
  shape.back() = n_out;
  at::Tensor out = at::empty(shape, x.options());
  if (M == 0) return out;
  const float* xs = x.const_data_ptr<float>();
  const float* ws = packed.const_data_ptr<float>();
  float* ys = out.data_ptr<float>();
  // K in blocks of up to 768 and rows in chunks of up to 168. A chunk of the input is packed in blocks of
  // 6 rows, [kc][6] each (one stream per block for the kernel), into a buffer kept per calling thread
  // (512 KB, no page faults per call); it stays in cache while every panel passes over it, and a panel's
  // block while every row block does. Each weight block is read once per chunk (from L3 when it fits).
  // A request or a batch of short ones is a single chunk and block.
  constexpr int64_t kKC = 768, kMC = 168;
  thread_local std::vector<float> chunk;
  chunk.resize(kMC * kKC);
  float* ap = chunk.data();
  for (int64_t k0 = 0; k0 < K; k0 += kKC) {
    const int64_t kc = std::min(kKC, K - k0);
    const bool last = k0 + kc == K;
    for (int64_t m0 = 0; m0 < M; m0 += kMC) {
      const int64_t m1 = std::min(M, m0 + kMC);
      at::parallel_for(0, (m1 - m0 + kMR - 1) / kMR, 1, [&](int64_t b0, int64_t b1) {
        for (int64_t mb = b0; mb < b1; mb++) {
          float* dst = ap + mb * kc * kMR;
          for (int64_t r = 0; r < kMR && m0 + mb * kMR + r < m1; r++) {
            const float* src = xs + (m0 + mb * kMR + r) * K + k0;
            for (int64_t k = 0; k < kc; k++) dst[k * kMR + r] = src[k];
          }
        }
      });
      at::parallel_for(0, P, 1, [&](int64_t p0, int64_t p1) {
        for (int64_t p = p0; p < p1; p++) {
          const int64_t ncols = std::min(kNR, n_out - p * kNR);
          const float* panel = ws + (p * K + k0) * kNR;
          // With several row blocks, the last fetches the next panel into L2 on the way (the first block
          // over it then does not wait on memory); a single block streams the weight as fast without.
          const float* next = p + 1 < p1 && m1 - m0 > kMR ? panel + K * kNR : nullptr;
          for (int64_t m = m0; m < m1; m += kMR)
            RunMicro(std::min(kMR, m1 - m), ap + (m - m0) * kc, panel, kc, bz.data() + p * kNR, ys + m * n_out + p * kNR, n_out, ncols,
                     last ? act : Act::kNone, m + kMR >= m1 ? next : nullptr, k0 > 0);
        }
      });
    }
  }
  return out;
}

void InitKernels(Napi::Env env, Napi::Object exports) {
  exports.Set("linearTuning", Napi::Function::New<Guarded<LinearTuning>>(env));
}

void RegisterKernels() {
  static std::once_flag once;
  std::call_once(once, [] {
    // Another copy of the addon in this process (the cmake-js and node-gyp builds) may have registered it.
    if (c10::Dispatcher::singleton().findSchema({"torchbert::linear", ""})) return;
    static auto* lib = new torch::Library(torch::Library::FRAGMENT, "torchbert", std::nullopt, __FILE__, __LINE__);
    lib->def("linear(Tensor input, Tensor weight, Tensor? bias=None) -> Tensor", &Linear);
    lib->def("dropout(Tensor input, float p, bool train) -> Tensor", &Dropout);
    lib->def("pack_linear_weight(Tensor weight) -> Tensor", &PackLinearWeight);
    lib->def("linear_packed(Tensor input, Tensor packed, Tensor? bias, int out_features, str activation=\"none\") -> Tensor", &LinearPacked);
    RegisterLinearSelect(*lib);
  });
}

}  // namespace torchbert
