// torchbert::dropout, the trainable dropout.
//
// torchbert::dropout(input, p, train) is torch.dropout whose fp32 CPU mask is drawn in parallel from a
// counter-based generator: ATen's CPU bernoulli_ is a serial loop under the generator's lock, one core
// idle (bench/dropout.js measures both on a bert-base training step's dropouts). Each call takes one 64-bit
// seed from libtorch's default CPU generator, so manualSeed() and saved RNG states still reproduce a run, and
// element i's draw depends only on (seed, i), not on the thread count. The mask is kept as bool (a
// quarter of the float noise ATen keeps for backward). The draws differ from torch's stream.
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/csrc/autograd/custom_function.h>

#include <cstdint>
#include <mutex>

#include "kernels.h"

namespace torchbert {
namespace {

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

}  // namespace

at::Tensor Dropout(const at::Tensor& input, double p, bool train) {
  // torch.dropout handles eval, p of 0 or 1, out-of-range p (its error), other dtypes and devices.
  bool ours = train && p > 0 && p < 1 && input.device().is_cpu() && input.layout() == at::kStrided &&
              input.scalar_type() == at::kFloat && input.numel() > 0;
  if (!ours) return at::dropout(input, p, train);
  return DropoutFunction::apply(input, p);
}

}  // namespace torchbert
