// torchbert's own operators, callable from TorchScript as ops.torchbert.<name>.
//
// torchbert::linear(input, weight, bias?) is torch.linear with its fp32 CPU GEMMs on oneDNN
// (mkldnn::_linear_pointwise) instead of libtorch's default BLAS: bench/train.js measured the dense
// layers of a BERT training step 1.2x faster that way on an AVX2 machine. The backward pass computes
// grad_input through oneDNN as well (grad_output @ weight) and grad_weight with ATen's mm, which was
// the faster of the two for that product. Anything else (CUDA, other dtypes, autocast, no oneDNN)
// runs torch.linear itself, so the op is always safe to call. TORCHBERT_ONEDNN_LINEAR=0 turns the
// oneDNN path off (for comparison).
#include <ATen/autocast_mode.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <cstdlib>
#include <mutex>
#include <string>

#include "ops.h"

namespace torchbert {

namespace {

at::Tensor OneDnnLinear(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& b) {
  static const auto op = c10::Dispatcher::singleton().findSchemaOrThrow("mkldnn::_linear_pointwise", "");
  torch::jit::Stack stack{x, w, b, c10::IValue(std::string("none")), c10::IValue(c10::List<std::optional<at::Scalar>>()),
                          c10::IValue(std::string(""))};
  try {
    op.callBoxed(&stack);
  } catch (const c10::Error&) {
    throw;
  } catch (const std::exception& e) {  // dnnl::error and the like: give it libtorch's error type
    TORCH_CHECK(false, "torchbert::linear (oneDNN): ", e.what());
  }
  return stack.back().toTensor();
}

struct LinearFunction : torch::autograd::Function<LinearFunction> {
  static at::Tensor forward(torch::autograd::AutogradContext* ctx, const at::Tensor& x, const at::Tensor& w,
                            const std::optional<at::Tensor>& b) {
    ctx->save_for_backward({x, w});
    ctx->saved_data["bias"] = b.has_value() && b->defined();
    return OneDnnLinear(x, w, b);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx, torch::autograd::variable_list g) {
    auto saved = ctx->get_saved_variables();
    const at::Tensor& x = saved[0];
    const at::Tensor& w = saved[1];
    at::Tensor gy = g[0].contiguous();
    at::Tensor gx, gw, gb;
    if (ctx->needs_input_grad(0)) gx = OneDnnLinear(gy, w.t().contiguous(), std::nullopt);
    at::Tensor gy2 = gy.reshape({-1, gy.size(-1)});
    if (ctx->needs_input_grad(1)) gw = gy2.t().mm(x.reshape({-1, x.size(-1)}));
    if (ctx->saved_data["bias"].toBool() && ctx->needs_input_grad(2)) gb = gy2.sum(0);
    return {gx, gw, gb};
  }
};

bool UseOneDnn(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& b) {
  static const bool available = [] {
    const char* env = std::getenv("TORCHBERT_ONEDNN_LINEAR");
    if (env && std::string(env) == "0") return false;
    return at::hasMKLDNN() && c10::Dispatcher::singleton().findSchema({"mkldnn::_linear_pointwise", ""}).has_value();
  }();
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

}  // namespace

void RegisterKernels() {
  static std::once_flag once;
  std::call_once(once, [] {
    // Another copy of the addon in this process (the cmake-js and node-gyp builds) may have registered it.
    if (c10::Dispatcher::singleton().findSchema({"torchbert::linear", ""})) return;
    static auto* lib = new torch::Library(torch::Library::FRAGMENT, "torchbert", std::nullopt, __FILE__, __LINE__);
    lib->def("linear(Tensor input, Tensor weight, Tensor? bias=None) -> Tensor", &Linear);
  });
}

}  // namespace torchbert
