// ScriptModule: owns a torch::jit::Module. Modules are loaded from .pt files or built natively from
// TorchScript source (parameters, buffers, attributes, submodules, methods). Load, save and method
// calls run on worker threads; a module in use by a worker is busy, and a second use is an error.
#include <torch/script.h>
#include <torch/csrc/jit/api/module.h>
#include <torch/csrc/jit/frontend/resolver.h>
#include <torch/csrc/jit/serialization/import.h>

#include <atomic>
#include <memory>
#include <limits>
#include <vector>

#include "async.h"
#include "compute.h"
#include "errors.h"
#include "ivalue.h"
#include "kernels.h"
#include "ops.h"
#include "tensor.h"

namespace torchbert {

namespace {

// Modules built between beginUnit() and endUnit() share a fresh compilation unit, which they keep
// alive and which dies with the last of them (its class types and compiled methods with it); a build
// in the process-wide unit would leave its code there after the modules are gone.
std::vector<std::shared_ptr<torch::jit::CompilationUnit>> unit_stack;

std::shared_ptr<torch::jit::CompilationUnit> compilation_unit() {
  static auto cu = std::make_shared<torch::jit::CompilationUnit>();
  return unit_stack.empty() ? cu : unit_stack.back();
}

Napi::Value BeginUnit(const Napi::CallbackInfo& info) {
  unit_stack.push_back(std::make_shared<torch::jit::CompilationUnit>());
  return info.Env().Undefined();
}
Napi::Value EndUnit(const Napi::CallbackInfo& info) {
  if (!unit_stack.empty()) unit_stack.pop_back();
  return info.Env().Undefined();
}

// `ops.<namespace>.<op>`: registered operators outside aten (e.g. ops.quantized.linear_dynamic), the
// spelling TorchScript's serializer writes, so saved code reads back the same here and in Python.
struct OpsNamespaces : torch::jit::SugaredValue {
  std::string kind() const override { return "ops"; }
  std::shared_ptr<torch::jit::SugaredValue> attr(const torch::jit::SourceRange&, torch::jit::GraphFunction&, const std::string& ns) override {
    return std::make_shared<torch::jit::BuiltinModule>(ns);
  }
};
struct SourceResolver : torch::jit::NativeResolver {
  std::shared_ptr<torch::jit::SugaredValue> resolveValue(const std::string& name, torch::jit::GraphFunction& m, const torch::jit::SourceRange& loc) override {
    if (name == "ops") return std::make_shared<OpsNamespaces>();
    return NativeResolver::resolveValue(name, m, loc);
  }
};

c10::TypePtr ParseAttrType(Napi::Env env, const std::string& s) {
  if (s == "int") return c10::IntType::get();
  if (s == "float") return c10::FloatType::get();
  if (s == "bool") return c10::BoolType::get();
  if (s == "str") return c10::StringType::get();
  if (s == "Tensor") return c10::TensorType::get();
  if (s == "Optional[Tensor]") return c10::OptionalType::create(c10::TensorType::get());
  if (s == "List[int]") return c10::ListType::ofInts();
  if (s == "List[float]") return c10::ListType::ofFloats();
  if (s == "List[str]") return c10::ListType::ofStrings();
  if (s == "List[Tensor]") return c10::ListType::ofTensors();
  ThrowType(env, "unsupported attribute type '" + s + "'");
}

class ModuleWrap : public Napi::ObjectWrap<ModuleWrap> {
 public:
  static Napi::FunctionReference ctor;

  static void Init(Napi::Env env, Napi::Object exports) {
    Napi::Function f = DefineClass(
        env, "NativeModule",
        {
            StaticMethod<&ModuleWrap::S<&ModuleWrap::Load>>("load"),
            StaticMethod<&ModuleWrap::S<&ModuleWrap::LoadSync>>("loadSync"),
            InstanceMethod<&ModuleWrap::G<&ModuleWrap::Save>>("save"),
            InstanceMethod<&ModuleWrap::G<&ModuleWrap::SaveSync>>("saveSync"),
            InstanceMethod<&ModuleWrap::G<&ModuleWrap::Call>>("call"),
            InstanceMethod<&ModuleWrap::G<&ModuleWrap::CallSync>>("callSync"),
            InstanceMethod<&ModuleWrap::G<&ModuleWrap::Define>>("define"),
            InstanceMethod<&ModuleWrap::G<&ModuleWrap::RegisterParameter>>("registerParameter"),
            InstanceMethod<&ModuleWrap::G<&ModuleWrap::RegisterModule>>("registerModule"),
            InstanceMethod<&ModuleWrap::G<&ModuleWrap::RegisterAttribute>>("registerAttribute"),
            InstanceMethod<&ModuleWrap::G<&ModuleWrap::SetAttr>>("setAttr"),
            InstanceMethod<&ModuleWrap::G<&ModuleWrap::PackLinear>>("packLinear"),
            InstanceMethod<&ModuleWrap::G<&ModuleWrap::ShareAttr>>("shareAttr"),
            InstanceMethod<&ModuleWrap::G<&ModuleWrap::GetAttr>>("getAttr"),
            InstanceMethod<&ModuleWrap::G<&ModuleWrap::HasAttr>>("hasAttr"),
            InstanceMethod<&ModuleWrap::G<&ModuleWrap::MethodNames>>("methodNames"),
            InstanceMethod<&ModuleWrap::G<&ModuleWrap::MethodSchema>>("methodSchema"),
            InstanceMethod<&ModuleWrap::G<&ModuleWrap::NamedParameters>>("namedParameters"),
            InstanceMethod<&ModuleWrap::G<&ModuleWrap::NamedBuffers>>("namedBuffers"),
            InstanceMethod<&ModuleWrap::G<&ModuleWrap::NamedChildren>>("namedChildren"),
            InstanceMethod<&ModuleWrap::G<&ModuleWrap::Train>>("train"),
            InstanceMethod<&ModuleWrap::G<&ModuleWrap::IsTraining>>("isTraining"),
            InstanceMethod<&ModuleWrap::G<&ModuleWrap::To>>("to"),
            InstanceMethod<&ModuleWrap::G<&ModuleWrap::Clone>>("clone"),
            InstanceMethod<&ModuleWrap::G<&ModuleWrap::Freeze>>("freeze"),
            InstanceMethod<&ModuleWrap::G<&ModuleWrap::TypeName>>("typeName"),
            InstanceMethod<&ModuleWrap::G<&ModuleWrap::Code>>("code"),
            InstanceMethod<&ModuleWrap::G<&ModuleWrap::Dispose>>("dispose"),
            InstanceMethod<&ModuleWrap::G<&ModuleWrap::IsBusy>>("isBusy"),
        });
    ctor = Napi::Persistent(f);
    exports.Set("NativeModule", f);
    exports.Set("beginUnit", Napi::Function::New(env, BeginUnit));
    exports.Set("endUnit", Napi::Function::New(env, EndUnit));
  }

  // A wrapper of m; a submodule's wrapper (getAttr, namedChildren) shares its parent's busy state: the
  // two reach the same weights, so a call through one must not overlap a call or mutation through the other.
  static Napi::Object New(Napi::Env env, torch::jit::Module m, std::shared_ptr<std::atomic<bool>> busy = nullptr) {
    Napi::Object o = ctor.New({});
    ModuleWrap* w = Unwrap(o);
    w->Reset(std::move(m));
    if (busy) w->busy_ = std::move(busy);
    return o;
  }

  static ModuleWrap* Get(const Napi::Value& v, const char* what) {
    if (!v.IsObject() || !v.As<Napi::Object>().InstanceOf(ctor.Value())) ThrowType(v.Env(), std::string(what) + " must be a ScriptModule");
    ModuleWrap* w = Unwrap(v.As<Napi::Object>());
    w->CheckLive(v.Env());
    return w;
  }

  explicit ModuleWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModuleWrap>(info) {
    if (info.Length() > 0 && info[0].IsString()) {
      std::string name = info[0].As<Napi::String>().Utf8Value();
      Guard(info.Env(), [&] {
        torch::jit::Module m(c10::QualifiedName("__torch__.torchbert." + name), compilation_unit(), /*shouldMangle=*/true);
        // Module::train() and scripted code (self.training) expect this attribute, as nn.Module has.
        m.register_attribute("training", c10::BoolType::get(), true);
        Reset(std::move(m));
        return 0;
      });
    }
  }

  void Reset(torch::jit::Module m) {
    m_ = std::move(m);
    live_ = true;
  }

  // Marks the module busy for the duration of a worker; released in the worker's Finally().
  void Acquire(Napi::Env env) {
    CheckLive(env);
    bool expected = false;
    if (!busy_->compare_exchange_strong(expected, true))
      ThrowCoded(env, "TORCHBERT_BUSY", "ScriptModule is busy: another load, save or call on it has not finished (await it first)");
  }
  void ReleaseBusy() { *busy_ = false; }
  const torch::jit::Module& module() const { return m_; }

 private:
  template <Napi::Value (ModuleWrap::*M)(const Napi::CallbackInfo&)>
  Napi::Value G(const Napi::CallbackInfo& info) {
    return Guard(info.Env(), [&] { return (this->*M)(info); });
  }
  template <Napi::Value (*F)(const Napi::CallbackInfo&)>
  static Napi::Value S(const Napi::CallbackInfo& info) {
    return Guard(info.Env(), [&] { return F(info); });
  }

  void CheckLive(Napi::Env env) const {
    if (!live_) ThrowDisposed(env, "ScriptModule has been disposed");
  }
  // Mutations and sync calls must not overlap a worker using the module.
  void CheckIdle(Napi::Env env) const {
    CheckLive(env);
    if (*busy_) ThrowCoded(env, "TORCHBERT_BUSY", "ScriptModule is busy: another load, save or call on it has not finished (await it first)");
  }

  static std::string PathArg(const Napi::CallbackInfo& info, size_t i) {
    if (!info[i].IsString()) ThrowType(info.Env(), "path must be a string");
    return info[i].As<Napi::String>().Utf8Value();
  }
  static std::optional<c10::Device> DeviceArg(const Napi::CallbackInfo& info, size_t i) {
    if (info.Length() <= i || !info[i].IsString()) return std::nullopt;
    return ParseDevice(info.Env(), info[i].As<Napi::String>().Utf8Value());
  }

  class LoadWorker : public TorchWorker {
   public:
    LoadWorker(Napi::Env env, std::string path, std::optional<c10::Device> dev) : TorchWorker(env, /*compute=*/false), path_(std::move(path)), dev_(dev) {}
    void Run() override { m_ = torch::jit::load(path_, dev_); }
    Napi::Value Result(Napi::Env env) override { return New(env, m_); }

   private:
    std::string path_;
    std::optional<c10::Device> dev_;
    torch::jit::Module m_;
  };

  static Napi::Value Load(const Napi::CallbackInfo& info) {
    return (new LoadWorker(info.Env(), PathArg(info, 0), DeviceArg(info, 1)))->Start();
  }
  static Napi::Value LoadSync(const Napi::CallbackInfo& info) {
    return New(info.Env(), torch::jit::load(PathArg(info, 0), DeviceArg(info, 1)));
  }

  class SaveWorker : public TorchWorker {
   public:
    SaveWorker(Napi::Env env, ModuleWrap* w, std::string path) : TorchWorker(env, /*compute=*/false), w_(w), ref_(Napi::Persistent(w->Value())), path_(std::move(path)) {
      w_->Acquire(env);
    }
    void Run() override { w_->m_.save(path_); }
    Napi::Value Result(Napi::Env env) override { return env.Undefined(); }
    void Finally() override { w_->ReleaseBusy(); }

   private:
    ModuleWrap* w_;
    Napi::ObjectReference ref_;  // keeps the wrapper alive while the worker runs
    std::string path_;
  };

  Napi::Value Save(const Napi::CallbackInfo& info) { return (new SaveWorker(info.Env(), this, PathArg(info, 0)))->Start(); }
  Napi::Value SaveSync(const Napi::CallbackInfo& info) {
    CheckIdle(info.Env());
    m_.save(PathArg(info, 0));
    return info.Env().Undefined();
  }

  torch::jit::Method FindMethod(Napi::Env env, const Napi::Value& name) {
    if (!name.IsString()) ThrowType(env, "method name must be a string");
    std::string n = name.As<Napi::String>().Utf8Value();
    auto m = m_.find_method(n);
    if (!m) ThrowType(env, "ScriptModule " + m_.type()->name()->name() + " has no method '" + n + "'");
    return *m;
  }

  class CallWorker : public TorchWorker {
   public:
    CallWorker(Napi::Env env, ModuleWrap* w, torch::jit::Method method, torch::jit::Stack args)
        : TorchWorker(env), w_(w), ref_(Napi::Persistent(w->Value())), method_(std::move(method)), args_(std::move(args)) {
      w_->Acquire(env);
    }
    void Run() override { out_ = method_(std::move(args_)); }
    Napi::Value Result(Napi::Env env) override { return FromIValue(env, out_, true); }
    void Finally() override { w_->ReleaseBusy(); }

   private:
    ModuleWrap* w_;
    Napi::ObjectReference ref_;
    torch::jit::Method method_;
    torch::jit::Stack args_;
    c10::IValue out_;
  };

  torch::jit::Stack MethodArgs(const Napi::CallbackInfo& info, const torch::jit::Method& method) {
    torch::jit::Stack stack;
    PushArgs(info[1], method.function().getSchema(), 1, method.name(), stack);
    return stack;
  }

  Napi::Value Call(const Napi::CallbackInfo& info) {
    CheckIdle(info.Env());
    torch::jit::Method method = FindMethod(info.Env(), info[0]);
    torch::jit::Stack args = MethodArgs(info, method);
    return (new CallWorker(info.Env(), this, std::move(method), std::move(args)))->Start();
  }
  Napi::Value CallSync(const Napi::CallbackInfo& info) {
    CheckIdle(info.Env());
    torch::jit::Method method = FindMethod(info.Env(), info[0]);
    torch::jit::Stack args = MethodArgs(info, method);
    // A forward is heavy: it runs with the compute thread's intra-op threads (compute.cc), the event loop waiting.
    c10::IValue out;
    RunOnComputeThread([&] { out = method(std::move(args)); });
    return FromIValue(info.Env(), out, true);
  }

  Napi::Value Define(const Napi::CallbackInfo& info) {
    CheckIdle(info.Env());
    if (!info[0].IsString()) ThrowType(info.Env(), "TorchScript source must be a string");
    static const auto resolver = std::make_shared<SourceResolver>();
    m_.define(info[0].As<Napi::String>().Utf8Value(), resolver);
    return info.Env().Undefined();
  }

  static std::string NameArg(const Napi::CallbackInfo& info) {
    if (!info[0].IsString()) ThrowType(info.Env(), "name must be a string");
    std::string n = info[0].As<Napi::String>().Utf8Value();
    if (n.empty() || n.find('.') != std::string::npos) ThrowType(info.Env(), "invalid attribute name '" + n + "'");
    return n;
  }

  Napi::Value RegisterParameter(const Napi::CallbackInfo& info) {
    CheckIdle(info.Env());
    std::string name = NameArg(info);
    const at::Tensor& t = tensors::Get(info[1], "tensor");
    bool is_buffer = info.Length() > 2 && info[2].ToBoolean().Value();
    m_.register_parameter(name, t, is_buffer);
    return info.Env().Undefined();
  }
  Napi::Value RegisterModule(const Napi::CallbackInfo& info) {
    CheckIdle(info.Env());
    std::string name = NameArg(info);
    m_.register_module(name, Get(info[1], "module")->m_);
    return info.Env().Undefined();
  }
  Napi::Value RegisterAttribute(const Napi::CallbackInfo& info) {
    CheckIdle(info.Env());
    std::string name = NameArg(info);
    if (!info[1].IsString()) ThrowType(info.Env(), "attribute type must be a string");
    c10::TypePtr type = ParseAttrType(info.Env(), info[1].As<Napi::String>().Utf8Value());
    m_.register_attribute(name, type, ToIValue(info[2], type, What{nullptr, &name}));
    return info.Env().Undefined();
  }
  // Int8 dynamic quantisation of one linear layer: the weight quantised per output channel
  // (symmetric, scale = max|w| / 127.5 as torch.ao's PerChannelMinMaxObserver computes it), then
  // packed by quantized::linear_prepack for quantized::linear_dynamic. Stored as attribute `name`.
  Napi::Value PackLinear(const Napi::CallbackInfo& info) {
    CheckIdle(info.Env());
    std::string name = NameArg(info);
    at::Tensor w = tensors::Get(info[1], "weight").detach();
    if (w.dim() != 2 || !w.is_floating_point()) ThrowType(info.Env(), "packLinear: weight must be a 2-D floating-point tensor");
    w = w.to(at::kCPU, at::kFloat).contiguous();
    c10::optional<at::Tensor> bias;
    if (info.Length() > 2 && !info[2].IsNull() && !info[2].IsUndefined()) {
      at::Tensor b = tensors::Get(info[2], "bias").detach().to(at::kCPU, at::kFloat).contiguous();
      if (b.dim() != 1 || b.size(0) != w.size(0)) ThrowType(info.Env(), "packLinear: bias must be 1-D with one value per output row");
      bias = b;
    }
    const std::string engine_name = info.Length() > 3 && info[3].IsString() ? info[3].As<Napi::String>().Utf8Value() : "";
    // On the compute thread: oneDNN's packed layout depends on the thread count it will run with.
    c10::IValue packed;
    RunOnComputeThread([&] {
      at::Tensor scales = (w.abs().amax(1) / 127.5).clamp_min(std::numeric_limits<float>::epsilon()).to(at::kDouble);
      at::Tensor zero_points = at::zeros({w.size(0)}, at::kLong);
      // torch 2.13 warns that quantized dtypes are deprecated; that is ours to track, not the user's.
      struct Quiet : c10::WarningHandler {
        void process(const c10::Warning&) override {}
      } quiet;
      c10::WarningUtils::WarningHandlerGuard guard(&quiet);
      at::Tensor qw = at::quantize_per_channel(w, scales, zero_points, 0, at::kQInt8);
      static const auto prepack = c10::Dispatcher::singleton().findSchemaOrThrow("quantized::linear_prepack", "");
      torch::jit::Stack stack{qw, bias ? c10::IValue(*bias) : c10::IValue()};
      {
        // The engine (fbgemm or onednn, chosen by measurement in lib/models/linear-plan.ts) decides the
        // packed format; linear_dynamic then runs whichever engine packed the layer.
        QEngineGuard engine(engine_name);
        prepack.callBoxed(&stack);
      }
      packed = stack.at(0);
    });
    if (m_.hasattr(name)) m_.setattr(name, packed);
    else m_.register_attribute(name, packed.type(), packed);
    return info.Env().Undefined();
  }
  // Attribute `name` of another module, whatever its type (an int8 layer's packed weights, which have no
  // JS form), set here by reference: both modules then hold the same object.
  Napi::Value ShareAttr(const Napi::CallbackInfo& info) {
    CheckIdle(info.Env());
    std::string name = NameArg(info);
    ModuleWrap* from = Get(info[1], "module");
    if (!from->m_.hasattr(name)) ThrowType(info.Env(), "shareAttr: the source module has no attribute '" + name + "'");
    c10::IValue v = from->m_.attr(name);
    if (!m_.hasattr(name)) {
      m_.register_attribute(name, from->m_.type()->getAttribute(name), v);
    } else {
      c10::TypePtr type = m_.type()->getAttribute(name);
      if (!v.type()->isSubtypeOf(*type)) ThrowType(info.Env(), "shareAttr: attribute '" + name + "' is " + type->str() + " here, " + v.type()->str() + " there");
      m_.setattr(name, v);
    }
    return info.Env().Undefined();
  }
  Napi::Value SetAttr(const Napi::CallbackInfo& info) {
    CheckIdle(info.Env());
    std::string name = NameArg(info);
    if (!m_.hasattr(name)) ThrowType(info.Env(), "ScriptModule has no attribute '" + name + "'");
    c10::TypePtr type = m_.type()->getAttribute(name);
    m_.setattr(name, ToIValue(info[1], type, What{nullptr, &name}));
    return info.Env().Undefined();
  }
  Napi::Value GetAttr(const Napi::CallbackInfo& info) {
    CheckLive(info.Env());
    std::string name = NameArg(info);
    if (!m_.hasattr(name)) ThrowType(info.Env(), "ScriptModule has no attribute '" + name + "'");
    c10::IValue v = m_.attr(name);
    if (v.isModule()) return New(info.Env(), v.toModule(), busy_);
    return FromIValue(info.Env(), v, true);
  }
  Napi::Value HasAttr(const Napi::CallbackInfo& info) {
    CheckLive(info.Env());
    return Napi::Boolean::New(info.Env(), m_.hasattr(NameArg(info)));
  }
  Napi::Value MethodNames(const Napi::CallbackInfo& info) {
    CheckLive(info.Env());
    auto methods = m_.get_methods();
    Napi::Array a = Napi::Array::New(info.Env(), methods.size());
    uint32_t i = 0;
    for (const auto& m : methods) a.Set(i++, m.name());
    return a;
  }
  Napi::Value MethodSchema(const Napi::CallbackInfo& info) {
    CheckLive(info.Env());
    return Napi::String::New(info.Env(), c10::toString(FindMethod(info.Env(), info[0]).function().getSchema()));
  }

  template <typename List>
  static Napi::Value Pairs(Napi::Env env, const List& list) {
    Napi::Array a = Napi::Array::New(env);
    uint32_t i = 0;
    for (const auto& item : list) {
      Napi::Array pair = Napi::Array::New(env, 2);
      pair.Set(0u, item.name);
      pair.Set(1u, tensors::Put(env, item.value));
      a.Set(i++, pair);
    }
    return a;
  }
  Napi::Value NamedParameters(const Napi::CallbackInfo& info) {
    CheckLive(info.Env());
    bool recurse = info.Length() == 0 || info[0].IsUndefined() || info[0].ToBoolean().Value();
    return Pairs(info.Env(), m_.named_parameters(recurse));
  }
  Napi::Value NamedBuffers(const Napi::CallbackInfo& info) {
    CheckLive(info.Env());
    bool recurse = info.Length() == 0 || info[0].IsUndefined() || info[0].ToBoolean().Value();
    return Pairs(info.Env(), m_.named_buffers(recurse));
  }
  Napi::Value NamedChildren(const Napi::CallbackInfo& info) {
    CheckLive(info.Env());
    Napi::Array a = Napi::Array::New(info.Env());
    uint32_t i = 0;
    for (const auto& c : m_.named_children()) {
      Napi::Array pair = Napi::Array::New(info.Env(), 2);
      pair.Set(0u, c.name);
      pair.Set(1u, New(info.Env(), c.value, busy_));
      a.Set(i++, pair);
    }
    return a;
  }
  Napi::Value Train(const Napi::CallbackInfo& info) {
    CheckIdle(info.Env());
    m_.train(info.Length() == 0 || info[0].ToBoolean().Value());
    return info.Env().Undefined();
  }
  Napi::Value IsTraining(const Napi::CallbackInfo& info) {
    CheckLive(info.Env());
    return Napi::Boolean::New(info.Env(), m_.is_training());
  }
  // to(device?, dtype?)
  Napi::Value To(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    CheckIdle(env);
    std::optional<c10::Device> dev = DeviceArg(info, 0);
    std::optional<c10::ScalarType> dt;
    if (info.Length() > 1 && info[1].IsString()) dt = ParseDtype(env, info[1].As<Napi::String>().Utf8Value());
    // As nn.Module.to in Python: a dtype applies to floating-point parameters and buffers only (position
    // ids and other integer buffers keep theirs); jit::Module::to would cast them all.
    auto move = [&](const at::Tensor& t) {
      const c10::ScalarType type = dt && t.is_floating_point() ? *dt : t.scalar_type();
      if (t.scalar_type() == type && (!dev || t.device() == *dev)) return;
      at::Tensor moved = t.to(dev.value_or(t.device()), type);
      const_cast<at::Tensor&>(t).set_data(moved);
    };
    for (const at::Tensor& p : m_.parameters(/*recurse=*/true)) move(p);
    for (const at::Tensor& b : m_.buffers(/*recurse=*/true)) move(b);
    return env.Undefined();
  }
  Napi::Value Clone(const Napi::CallbackInfo& info) {
    CheckLive(info.Env());
    return New(info.Env(), m_.clone());
  }
  // freeze(): an inference-only copy with weights inlined as constants and graph optimisations applied.
  Napi::Value Freeze(const Napi::CallbackInfo& info) {
    CheckIdle(info.Env());
    std::vector<std::string> keep;
    if (info.Length() > 0 && info[0].IsArray()) {
      Napi::Array a = info[0].As<Napi::Array>();
      for (uint32_t i = 0; i < a.Length(); i++) keep.push_back(a.Get(i).ToString().Utf8Value());
    }
    torch::jit::Module copy = m_.clone();
    copy.eval();
    torch::jit::Module frozen = torch::jit::freeze(copy, keep, /*optimize_numerics=*/true);
    if (info.Length() > 1 && info[1].ToBoolean().Value()) frozen = torch::jit::optimize_for_inference(frozen, keep);
    return New(info.Env(), frozen);
  }
  Napi::Value TypeName(const Napi::CallbackInfo& info) {
    CheckLive(info.Env());
    return Napi::String::New(info.Env(), m_.type()->name()->qualifiedName());
  }
  Napi::Value Code(const Napi::CallbackInfo& info) {
    CheckLive(info.Env());
    std::string name = info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "forward";
    auto m = m_.find_method(name);
    if (!m) ThrowType(info.Env(), "no method '" + name + "'");
    return Napi::String::New(info.Env(), m->graph()->toString());
  }
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    if (*busy_) ThrowCoded(info.Env(), "TORCHBERT_BUSY", "ScriptModule is busy and cannot be disposed until its call finishes");
    if (live_) {
      live_ = false;
      m_ = torch::jit::Module();
    }
    return info.Env().Undefined();
  }
  Napi::Value IsBusy(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), busy_->load()); }

  torch::jit::Module m_;
  bool live_ = false;
  std::shared_ptr<std::atomic<bool>> busy_ = std::make_shared<std::atomic<bool>>(false);
};

Napi::FunctionReference ModuleWrap::ctor;

}  // namespace

void InitModules(Napi::Env env, Napi::Object exports) { ModuleWrap::Init(env, exports); }

}  // namespace torchbert
