// torchbert's own operators, callable from TorchScript as ops.torchbert.<name>, registered once:
//   linear, linear_tuning        the trainable fp32 linear layer, its GEMM chosen per shape (linear.cc)
//   dropout                      dropout with a parallel, counter-based mask (dropout.cc)
//   pack_linear_weight, linear_packed  our packed fp32 inference GEMM (linear_packed.cc)
//   linear_prepacked and its tuning ops  per-shape choice for prepacked inference (linear_select.cc)
//   attention                    fused or spelled-out attention for inference copies (attention.cc)
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <mutex>

#include "errors.h"
#include "kernels.h"

namespace torchbert {

void InitKernels(Napi::Env env, Napi::Object exports) {
  Export<LinearTuning>(exports, "linearTuning");
  Export<AttentionTuning>(exports, "attentionTuning");
  Export<AttentionModeJs>(exports, "attentionMode");
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
    RegisterAttention(*lib);
  });
}

}  // namespace torchbert
