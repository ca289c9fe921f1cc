// torchbert::linear, the trainable fp32 linear layer.
//
// torchbert::linear(input, weight, bias?) is torch.linear whose three fp32 CPU GEMMs (the forward
// product, grad_input = grad_output @ weight, grad_weight = grad_output^T @ input) each run on whichever
// of libtorch's BLAS (MKL here) and oneDNN is faster for that shape on this machine, as cuDNN's benchmark
// mode picks convolution algorithms: the first calls of each shape alternate between the two and time
// them, then the faster is kept. Which is faster varies with the machine and even with its load
// (docs/benchmarks.md): MKL runs its AVX2 code on AMD CPUs, so on a Zen 5, whose AVX-512 units are full
// width, oneDNN is about twice as fast on all three; on a Zen 2 or Zen 4 the two are close. Anything
// else (CUDA, other dtypes, autocast, no oneDNN) runs torch.linear itself, so the op is always safe to call.
// The forward runs mkldnn::_linear_pointwise (bias fused); the two gradients run ATen's internal
// at::native::mkldnn_matmul, which reads the transposed operands in place where _linear_pointwise would
// need a transposed copy of the weight or of both operands. It is exported by libtorch_cpu but not in
// its public headers, so it is looked up at run time and checked once against at::mm: where it is
// missing, disagrees or refuses the CPU (it needs AVX-512 or AVX-NE-CONVERT, so on an AVX2 CPU or under
// ONEDNN_MAX_CPU_ISA=AVX2), grad_input falls back to _linear_pointwise and grad_weight stays on ATen.
// TORCHBERT_ONEDNN_LINEAR=0 always uses ATen, =1 always oneDNN (for comparison).
#include <ATen/autocast_mode.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/autograd/custom_function.h>
#include <torch/library.h>

#include <dlfcn.h>

#include <chrono>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "errors.h"
#include "kernels.h"
#include "online_choice.h"
#include "ops.h"

namespace torchbert {

namespace {
// Runs f; oneDNN's own exceptions (dnnl::error and the like) become libtorch's error type, named by `what`.
template <class F>
void AsTorchError(const char* what, F&& f) {
  try {
    f();
  } catch (const c10::Error&) {
    throw;
  } catch (const std::exception& e) {
    TORCH_CHECK(false, what, ": ", e.what());
  }
}
}  // namespace

at::Tensor OneDnnLinear(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& b, const std::string& attr,
                        const std::string& algorithm) {
  static const auto op = c10::Dispatcher::singleton().findSchemaOrThrow("mkldnn::_linear_pointwise", "");
  torch::jit::Stack stack{x, w, b, c10::IValue(attr), c10::IValue(c10::List<std::optional<at::Scalar>>()), c10::IValue(algorithm)};
  AsTorchError("torchbert::linear (oneDNN)", [&] { op.callBoxed(&stack); });
  return stack.back().toTensor();
}

namespace {

// at::native::mkldnn_matmul(mat1, mat2, result, beta, alpha): result = beta * result + alpha * mat1 @ mat2,
// 2-D operands in any strides. Null where this libtorch lacks it or its fp32 product disagrees with at::mm.
using MatmulFn = void (*)(const at::Tensor&, const at::Tensor&, const at::Tensor&, float, float);
MatmulFn OneDnnMatmul() {
  static const MatmulFn fn = []() -> MatmulFn {
    auto f = reinterpret_cast<MatmulFn>(dlsym(RTLD_DEFAULT, "_ZN2at6native13mkldnn_matmulERKNS_6TensorES3_S3_ff"));
    if (!f || !at::hasMKLDNN()) return nullptr;
    try {
      at::NoGradGuard no_grad;
      // Fixed values, not randn: the check must not move the global generator that seeds training.
      at::Tensor a = at::arange(35, at::kFloat).reshape({5, 7}).sin(), b = at::arange(15, at::kFloat).reshape({5, 3}).cos();
      at::Tensor out = at::empty({7, 3});
      f(a.t(), b, out, 0, 1);  // a transposed view, as grad_weight passes it
      return at::allclose(out, at::mm(a.t(), b), 1e-4, 1e-5) ? f : nullptr;
    } catch (const std::exception&) {
      return nullptr;
    }
  }();
  return fn;
}

at::Tensor OneDnnMm(MatmulFn mm, const at::Tensor& a, const at::Tensor& b) {
  at::Tensor out = at::empty({a.size(0), b.size(1)}, a.options());
  AsTorchError("torchbert::linear (oneDNN matmul)", [&] { mm(a, b, out, 0, 1); });
  return out;
}

// 'auto' (tune per shape), 'aten' or 'onednn', from TORCHBERT_ONEDNN_LINEAR.
enum class LinearPath { Auto, Aten, OneDnn };
LinearPath LinearMode() {
  static const LinearPath mode = [] {
    const char* env = std::getenv("TORCHBERT_ONEDNN_LINEAR");
    if (env && std::string(env) == "0") return LinearPath::Aten;
    if (env && std::string(env) == "1") return LinearPath::OneDnn;
    return LinearPath::Auto;
  }();
  return mode;
}

// Per (pass, rows rounded up to a power of two, N, K): ATen's or oneDNN's GEMM, whichever its first calls
// measure faster (online_choice.h).
class Tuner {
 public:
  enum Pass { kForward = 0, kGradInput = 1, kGradWeight = 2 };
  using Key = std::tuple<int, int64_t, int64_t, int64_t>;

  // Runs f(use_onednn) with the backend to use now.
  template <class F>
  at::Tensor Run(Pass pass, int64_t m, int64_t n, int64_t k, F&& f) {
    LinearPath mode = LinearMode();
    if (mode != LinearPath::Auto) return f(mode == LinearPath::OneDnn);
    int64_t rows = 1;
    while (rows < m) rows <<= 1;
    return choice_.Run(Key(static_cast<int>(pass), rows, n, k), double(m) * n * k, std::forward<F>(f));
  }

  // [pass, rows, N, K, choice (-1 undecided, 0 ATen, 1 oneDNN), ATen and oneDNN ns per 1e3 multiply-adds]
  std::vector<std::vector<double>> Snapshot() {
    std::vector<std::vector<double>> out;
    for (const auto& [key, e] : choice_.Snapshot()) {
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
  OnlineChoice<Key> choice_;
};

at::Tensor Forward(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& b) {
  return Tuner::Get().Run(Tuner::kForward, x.numel() / x.size(-1), w.size(0), w.size(1),
                          [&](bool onednn) { return onednn ? OneDnnLinear(x, w, b, "none", "") : at::linear(x, w, b); });
}

at::Tensor GradInput(const at::Tensor& gy, const at::Tensor& w) {
  return Tuner::Get().Run(Tuner::kGradInput, gy.numel() / gy.size(-1), w.size(1), w.size(0), [&](bool onednn) {
    if (!onednn) return at::matmul(gy, w);
    if (MatmulFn mm = OneDnnMatmul()) {
      std::vector<int64_t> shape = gy.sizes().vec();
      shape.back() = w.size(1);
      return OneDnnMm(mm, gy.reshape({-1, gy.size(-1)}), w).view(shape);
    }
    return OneDnnLinear(gy, w.t().contiguous(), std::nullopt, "none", "");
  });
}

// gy2 [rows, N], x2 [rows, K] -> [N, K]
at::Tensor GradWeight(const at::Tensor& gy2, const at::Tensor& x2) {
  MatmulFn mm = OneDnnMatmul();
  if (!mm) return gy2.t().mm(x2);
  return Tuner::Get().Run(Tuner::kGradWeight, gy2.size(0), gy2.size(1), x2.size(1),
                          [&](bool onednn) { return onednn ? OneDnnMm(mm, gy2.t(), x2) : gy2.t().mm(x2); });
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
    if (ctx->needs_input_grad(1)) gw = GradWeight(gy2, x.reshape({-1, x.size(-1)}));
    if (ctx->saved_data["bias"].toBool() && ctx->needs_input_grad(2)) gb = gy2.sum(0);
    return {gx, gw, gb};
  }
};

bool UseOneDnn(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& b) {
  static const bool available = LinearMode() != LinearPath::Aten && at::hasMKLDNN() &&
                                c10::Dispatcher::singleton().findSchema({"mkldnn::_linear_pointwise", ""}).has_value();
  auto cpu_f32 = [](const at::Tensor& t) { return t.device().is_cpu() && t.scalar_type() == at::kFloat && t.layout() == at::kStrided; };
  // Shapes torch.linear would reject or broadcast go to torch.linear too, for its errors and semantics.
  return available && cpu_f32(x) && cpu_f32(w) && x.dim() >= 2 && w.dim() == 2 && x.size(-1) == w.size(1) && x.numel() > 0 &&
         w.numel() > 0 && (!b.has_value() || !b->defined() || (cpu_f32(*b) && b->dim() == 1 && b->size(0) == w.size(0))) &&
         !at::autocast::is_autocast_enabled(at::kCPU);
}

}  // namespace

bool OneDnnGradMatmul() { return OneDnnMatmul() != nullptr; }

at::Tensor Linear(const at::Tensor& x, const at::Tensor& w, const std::optional<at::Tensor>& b) {
  if (!UseOneDnn(x, w, b)) return at::linear(x, w, b);
  return LinearFunction::apply(x.contiguous(), w.contiguous(), b);
}

Napi::Value LinearTuning(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto rows = Tuner::Get().Snapshot();
  Napi::Array out = Napi::Array::New(env, rows.size());
  for (size_t i = 0; i < rows.size(); i++) {
    const auto& r = rows[i];
    Napi::Object o = Napi::Object::New(env);
    o.Set("pass", r[0] == 0 ? "forward" : r[0] == 1 ? "grad_input" : "grad_weight");
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

}  // namespace torchbert
