// ---- torchbert::linear_packed: act(x @ W^T + b) for fp32 inference, W packed once ----
// W [N, K] is packed into panels of 16 output columns, [K][16] each (pack_linear_weight), and the input
// per call into blocks of 6 rows, [K][6] each; a 6x16 kernel keeps its 12 accumulators in registers.
// It is one of the GEMMs prepack() measures per shape and row count (linear_select.cc): on AVX2 machines it
// tends to win at the few rows of short requests (bench/gemm.js, docs/benchmarks.md). GELU runs on the
// accumulators before they are stored. Other CPUs run the same layout through a portable loop.
#include <ATen/Parallel.h>

#include <cstdlib>
#include <cstring>
#include <string>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "errors.h"
#include "kernels.h"
#include "simd_math.h"

namespace torchbert {
namespace {

constexpr int64_t kNR = 16;
constexpr int64_t kMR = 6;

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

}  // namespace torchbert
