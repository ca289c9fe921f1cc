// torchbert's operators (registered in kernels.cc): the trainable linear and dropout, the GEMMs that
// prepacked inference chooses between per shape (linear_select.cc).
#pragma once
#include <ATen/ATen.h>
#include <napi.h>
#include <torch/library.h>

#include <optional>
#include <string>

namespace torchbert {
// torchbert::linear (linear.cc) and linearTuning()'s rows for it.
at::Tensor Linear(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& b);
Napi::Value LinearTuning(const Napi::CallbackInfo& info);
// Whether torchbert::linear's gradients can run on oneDNN's matmul here (not where it is missing or needs
// ISA this CPU, or an ONEDNN_MAX_CPU_ISA cap, lacks: then grad_weight stays on ATen).
bool OneDnnGradMatmul();
// torchbert::dropout (dropout.cc).
at::Tensor Dropout(const at::Tensor& input, double p, bool train);
// mkldnn::_linear_pointwise: oneDNN's GEMM with an optional fused post-op (attr "gelu", algorithm "none" or "tanh").
at::Tensor OneDnnLinear(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& b, const std::string& attr,
                        const std::string& algorithm);
// torchbert::pack_linear_weight and torchbert::linear_packed (our fp32 inference GEMM, linear_packed.cc).
at::Tensor PackLinearWeight(const at::Tensor& weight);
at::Tensor LinearPacked(const at::Tensor& input, const at::Tensor& packed, const std::optional<at::Tensor>& bias, int64_t n_out,
                        c10::string_view activation);
// Whether linear_packed runs its AVX2/FMA kernel here (false: the portable loop).
bool HasAvx2Kernel();
// linear_select.cc: defines torchbert::linear_prepacked and its tuning ops; appends linearTuning()'s
// inference rows.
void RegisterLinearSelect(torch::Library& lib);
void AppendPrepackedTuning(Napi::Env env, Napi::Array& out);
// attention.cc: defines torchbert::attention (fused or spelled-out attention, chosen by measurement) and
// attentionTuning()'s rows.
void RegisterAttention(torch::Library& lib);
Napi::Value AttentionTuning(const Napi::CallbackInfo& info);
Napi::Value AttentionModeJs(const Napi::CallbackInfo& info);

// Sets libtorch's quantized engine ("fbgemm", "onednn" or "x86"; "" leaves it) for a scope: the engine
// that packs an int8 linear layer is the one that runs it.
class QEngineGuard {
 public:
  explicit QEngineGuard(const std::string& name);
  ~QEngineGuard();
  QEngineGuard(const QEngineGuard&) = delete;
  QEngineGuard& operator=(const QEngineGuard&) = delete;

 private:
  at::QEngine prev_;
  bool set_ = false;
};
}  // namespace torchbert
