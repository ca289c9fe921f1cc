// The tensor handle table: ownership, accounting, host copies, autograd entry points; plus the
// global torch switches (grad mode, seeds, threads, CUDA queries) that tensors need.
#include "tensor.h"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include <mutex>
#include <torch/version.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/jit/runtime/graph_executor.h>

#include <cmath>
#include <cstring>
#include <map>
#include <c10/util/flat_hash_map.h>

#include "async.h"
#include "errors.h"

namespace torchbert {

// ---------- dtypes and devices ----------

static const std::pair<const char*, c10::ScalarType> kDtypes[] = {
    {"float32", at::kFloat}, {"float64", at::kDouble}, {"float16", at::kHalf}, {"bfloat16", at::kBFloat16},
    {"int32", at::kInt},     {"int64", at::kLong},     {"int16", at::kShort},  {"int8", at::kChar},
    {"uint8", at::kByte},    {"bool", at::kBool},
};

c10::ScalarType ParseDtype(Napi::Env env, const std::string& name) {
  for (const auto& [n, t] : kDtypes)
    if (name == n) return t;
  ThrowType(env, "unknown dtype '" + name + "' (expected float32, float64, float16, bfloat16, int32, int64, int16, int8, uint8 or bool)");
}

std::string DtypeName(c10::ScalarType t) {
  for (const auto& [n, s] : kDtypes)
    if (s == t) return n;
  return c10::toString(t);
}

c10::Device ParseDevice(Napi::Env env, const std::string& name) {
  try {
    return c10::Device(name);
  } catch (const c10::Error&) {
    ThrowType(env, "invalid device '" + name + "' (expected 'cpu', 'cuda' or 'cuda:N')");
  }
}

// ---------- the handle table (main thread only) ----------

namespace tensors {
namespace {
constexpr double kSlots = 67108864.0;  // 2^26 slots; handle = generation * 2^26 + slot, exact in a double

struct Slot {
  at::Tensor t;
  uint32_t gen = 0;
  bool live = false;
};
struct DeviceStats {
  int64_t tensors = 0;
  int64_t bytes = 0;
};

std::vector<Slot> slots;
std::vector<uint32_t> free_slots;
std::map<std::pair<int, int>, DeviceStats> device_stats;                 // by (device type, index)
ska::flat_hash_map<const c10::StorageImpl*, int64_t> storage_refs;  // handles per storage (open addressing: no malloc per tensor)
int64_t pending_external = 0;  // CPU bytes not yet reported to V8 (reported in 1 MiB steps)

DeviceStats& StatsFor(const c10::Device& d) {
  static DeviceStats& cpu = device_stats[{static_cast<int>(c10::DeviceType::CPU), -1}];
  if (d.is_cpu()) return cpu;
  return device_stats[{static_cast<int>(d.type()), d.index()}];
}

void ReportExternal(Napi::Env env, int64_t delta) {
  pending_external += delta;
  if (pending_external > (1 << 20) || pending_external < -(1 << 20)) {
    Napi::MemoryManagement::AdjustExternalMemory(env, pending_external);
    pending_external = 0;
  }
}

void Track(Napi::Env env, const at::Tensor& t, int sign) {
  DeviceStats& s = StatsFor(t.device());
  s.tensors += sign;
  if (!t.has_storage()) return;
  const c10::StorageImpl* key = t.storage().unsafeGetStorageImpl();
  int64_t& refs = storage_refs[key];
  refs += sign;
  if ((sign > 0 && refs == 1) || (sign < 0 && refs == 0)) {
    int64_t n = static_cast<int64_t>(t.storage().nbytes()) * sign;
    s.bytes += n;
    if (t.is_cpu()) ReportExternal(env, n);
  }
  if (refs == 0) storage_refs.erase(key);
}

Slot* Find(const Napi::Value& v) {
  double h;
  napi_status st = napi_get_value_double(v.Env(), v, &h);
  if (st != napi_ok) {
    if (!v.IsBigInt()) return nullptr;
    bool lossless;
    h = static_cast<double>(v.As<Napi::BigInt>().Uint64Value(&lossless));
  }
  if (!(h >= kSlots) || h > 4.5e15 || h != std::floor(h)) return nullptr;
  uint64_t u = static_cast<uint64_t>(h);
  size_t idx = static_cast<size_t>(u & 67108863u);
  if (idx >= slots.size() || slots[idx].gen != static_cast<uint32_t>(u >> 26)) return nullptr;
  return &slots[idx];
}
}  // namespace

Napi::Value Put(Napi::Env env, at::Tensor t, bool as_bigint) {
  uint32_t idx;
  if (!free_slots.empty()) {
    idx = free_slots.back();
    free_slots.pop_back();
  } else {
    if (slots.size() >= static_cast<size_t>(kSlots)) throw std::runtime_error("too many live tensors (2^26); dispose some");
    idx = static_cast<uint32_t>(slots.size());
    slots.emplace_back();
  }
  Slot& s = slots[idx];
  s.gen = s.gen % 67108863u + 1;  // generations 1..2^26-1, so handle 0 is never valid
  s.t = std::move(t);
  s.live = true;
  Track(env, s.t, +1);
  double h = static_cast<double>(s.gen) * kSlots + idx;
  if (as_bigint) return Napi::BigInt::New(env, static_cast<uint64_t>(h));
  return Napi::Number::New(env, h);
}

bool IsHandle(const Napi::Value& v) {
  Slot* s = Find(v);
  return s && s->live;
}

const at::Tensor& Get(const Napi::Value& v, const char* what) {
  Slot* s = Find(v);
  if (!s || !s->live) {
    if (v.IsNumber() || v.IsBigInt()) throw Napi::Error::New(v.Env(), std::string(what) + ": Tensor has been disposed");
    ThrowType(v.Env(), std::string(what) + " must be a Tensor");
  }
  return s->t;
}

// release(handle): frees the tensor now; idempotent (a stale handle is ignored).
static Napi::Value Release(const Napi::CallbackInfo& info) {
  Slot* s = Find(info[0]);
  if (s && s->live) {
    Track(info.Env(), s->t, -1);
    s->t = at::Tensor();
    s->live = false;
    free_slots.push_back(static_cast<uint32_t>(s - slots.data()));
  }
  return info.Env().Undefined();
}

static Napi::Value Memory(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object out = Napi::Object::New(env);
  int64_t count = 0, bytes = 0;
  Napi::Object devices = Napi::Object::New(env);
  for (const auto& [key, s] : device_stats) {
    if (s.tensors == 0 && s.bytes == 0) continue;
    std::string dev = c10::Device(static_cast<c10::DeviceType>(key.first), static_cast<c10::DeviceIndex>(key.second)).str();
    Napi::Object d = Napi::Object::New(env);
    d.Set("tensors", Napi::Number::New(env, static_cast<double>(s.tensors)));
    d.Set("bytes", Napi::Number::New(env, static_cast<double>(s.bytes)));
    devices.Set(dev, d);
    count += s.tensors;
    bytes += s.bytes;
  }
  out.Set("tensors", Napi::Number::New(env, static_cast<double>(count)));
  out.Set("bytes", Napi::Number::New(env, static_cast<double>(bytes)));
  out.Set("devices", devices);
  return out;
}
}  // namespace tensors

using tensors::Get;
using tensors::Put;

static Napi::Array IntArray(Napi::Env env, c10::IntArrayRef v) {
  Napi::Array a = Napi::Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); i++) a.Set(i, Napi::Number::New(env, static_cast<double>(v[i])));
  return a;
}

static Napi::Value Shape(const Napi::CallbackInfo& info) { return IntArray(info.Env(), Get(info[0], "tensor").sizes()); }
static Napi::Value Strides(const Napi::CallbackInfo& info) { return IntArray(info.Env(), Get(info[0], "tensor").strides()); }
static Napi::Value Dtype(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), DtypeName(Get(info[0], "tensor").scalar_type()));
}
static Napi::Value Device(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), Get(info[0], "tensor").device().str());
}
// meta(handle) -> [dtype, device, ...shape]: one crossing for what the TS object caches.
static Napi::Value Meta(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const at::Tensor& t = Get(info[0], "tensor");
  Napi::Array a = Napi::Array::New(env, 2 + t.dim());
  a.Set(0u, DtypeName(t.scalar_type()));
  a.Set(1u, t.device().str());
  for (int64_t i = 0; i < t.dim(); i++) a.Set(static_cast<uint32_t>(2 + i), Napi::Number::New(env, static_cast<double>(t.size(i))));
  return a;
}
static Napi::Value IsContiguous(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), Get(info[0], "tensor").is_contiguous());
}
static Napi::Value IsAlive(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), tensors::IsHandle(info[0])); }
static Napi::Value StorageId(const Napi::CallbackInfo& info) {
  // Identity of the underlying storage, for tests of views and in-place ops (never dereferenced in JS).
  const at::Tensor& t = Get(info[0], "tensor");
  return Napi::BigInt::New(info.Env(), static_cast<uint64_t>(reinterpret_cast<uintptr_t>(t.storage().unsafeGetStorageImpl())));
}
static Napi::Value RequiresGrad(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), Get(info[0], "tensor").requires_grad());
}
static Napi::Value SetRequiresGrad(const Napi::CallbackInfo& info) {
  const at::Tensor& t = Get(info[0], "tensor");
  if (!info[1].IsBoolean()) ThrowType(info.Env(), "requiresGrad must be a boolean");
  const_cast<at::Tensor&>(t).set_requires_grad(info[1].As<Napi::Boolean>().Value());
  return info.Env().Undefined();
}
static Napi::Value Grad(const Napi::CallbackInfo& info) {
  const at::Tensor& g = Get(info[0], "tensor").grad();
  if (!g.defined()) return info.Env().Null();
  return Put(info.Env(), g);
}
static Napi::Value SetGrad(const Napi::CallbackInfo& info) {
  at::Tensor t = Get(info[0], "tensor");
  if (info[1].IsNull() || info[1].IsUndefined())
    t.mutable_grad() = at::Tensor();
  else
    t.mutable_grad() = Get(info[1], "grad");
  return info.Env().Undefined();
}
static Napi::Value IsLeaf(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), Get(info[0], "tensor").is_leaf()); }

at::Tensor HostCopy(const at::Tensor& t) {
  at::Tensor c = t.detach();
  if (c.scalar_type() == at::kHalf || c.scalar_type() == at::kBFloat16) c = c.to(at::kFloat);
  c = c.to(at::kCPU).contiguous();
  // Always a private copy: the TypedArray must not alias the tensor's storage.
  if (c.has_storage() && t.has_storage() && c.storage().is_alias_of(t.storage())) c = c.clone();
  return c;
}

static napi_typedarray_type ArrayType(c10::ScalarType s) {
  switch (s) {
    case at::kFloat: return napi_float32_array;
    case at::kDouble: return napi_float64_array;
    case at::kInt: return napi_int32_array;
    case at::kLong: return napi_bigint64_array;
    case at::kShort: return napi_int16_array;
    case at::kChar: return napi_int8_array;
    case at::kByte:
    case at::kBool: return napi_uint8_array;
    default: throw std::invalid_argument("cannot copy dtype " + std::string(c10::toString(s)) + " to a TypedArray");
  }
}

// Hands the host copy's buffer to V8 without another memcpy; the finalizer frees the tensor.
Napi::Value TypedArrayFrom(Napi::Env env, const at::Tensor& host) {
  napi_typedarray_type type = ArrayType(host.scalar_type());
  size_t n = static_cast<size_t>(host.numel());
  size_t bytes = n * host.element_size();
  Napi::ArrayBuffer buf;
  if (bytes == 0) {
    buf = Napi::ArrayBuffer::New(env, 0);
  } else {
    auto* keep = new at::Tensor(host);
    buf = Napi::ArrayBuffer::New(env, keep->data_ptr(), bytes, [](Napi::Env, void*, at::Tensor* t) { delete t; }, keep);
  }
  napi_value out;
  napi_status st = napi_create_typedarray(env, type, n, buf, 0, &out);
  NAPI_THROW_IF_FAILED(env, st, Napi::Value());
  return Napi::Value(env, out);
}

namespace {
class HostCopyWorker : public TorchWorker {
 public:
  HostCopyWorker(Napi::Env env, at::Tensor t) : TorchWorker(env), t_(std::move(t)) {}
  void Run() override { host_ = HostCopy(t_); }
  Napi::Value Result(Napi::Env env) override { return TypedArrayFrom(env, host_); }

 private:
  at::Tensor t_, host_;
};

class BackwardWorker : public TorchWorker {
 public:
  BackwardWorker(Napi::Env env, at::Tensor t, at::Tensor grad, bool retain, bool create)
      : TorchWorker(env), t_(std::move(t)), grad_(std::move(grad)), retain_(retain), create_(create) {}
  void Run() override { t_.backward(grad_, retain_, create_); }
  Napi::Value Result(Napi::Env env) override { return env.Undefined(); }

 private:
  at::Tensor t_, grad_;
  bool retain_, create_;
};
}  // namespace

static Napi::Value ToTypedArray(const Napi::CallbackInfo& info) {
  return TypedArrayFrom(info.Env(), HostCopy(Get(info[0], "tensor")));
}
static Napi::Value ToTypedArrayAsync(const Napi::CallbackInfo& info) {
  return (new HostCopyWorker(info.Env(), Get(info[0], "tensor")))->Start();
}

static Napi::Value Item(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const at::Tensor& t = Get(info[0], "tensor");
  if (t.numel() != 1) ThrowRange(env, "item() needs a tensor with exactly one element, got shape " + c10::str(t.sizes()));
  at::Scalar s = t.item();
  if (s.isBoolean()) return Napi::Boolean::New(env, s.toBool());
  if (s.isIntegral(false)) return Napi::Number::New(env, static_cast<double>(s.toLong()));
  return Napi::Number::New(env, s.toDouble());
}

// backward(handle, gradient?, retainGraph?, createGraph?, async?)
static Napi::Value Backward(const Napi::CallbackInfo& info) {
  at::Tensor t = Get(info[0], "tensor");
  at::Tensor grad;
  if (!info[1].IsUndefined() && !info[1].IsNull()) grad = Get(info[1], "gradient");
  bool retain = info[2].ToBoolean().Value(), create = info[3].ToBoolean().Value();
  if (info[4].ToBoolean().Value()) return (new BackwardWorker(info.Env(), t, grad, retain, create))->Start();
  t.backward(grad, retain, create);
  return info.Env().Undefined();
}

// ---------- module-level functions ----------

static c10::ScalarType NaturalDtype(napi_typedarray_type t) {
  switch (t) {
    case napi_float32_array: return at::kFloat;
    case napi_float64_array: return at::kDouble;
    case napi_int32_array: return at::kInt;
    case napi_bigint64_array: return at::kLong;
    case napi_int16_array: return at::kShort;
    case napi_int8_array: return at::kChar;
    case napi_uint8_array: return at::kByte;
    default: return at::ScalarType::Undefined;
  }
}

// fromTypedArray(data, shape, dtype, device): copies the data into a new tensor.
static Napi::Value FromTypedArray(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsTypedArray()) ThrowType(env, "data must be a TypedArray");
  Napi::TypedArray arr = info[0].As<Napi::TypedArray>();
  if (!info[1].IsArray()) ThrowType(env, "shape must be an array of integers");
  Napi::Array shapeArr = info[1].As<Napi::Array>();
  std::vector<int64_t> shape;
  int64_t numel = 1;
  for (uint32_t i = 0; i < shapeArr.Length(); i++) {
    Napi::Value d = shapeArr.Get(i);
    double v = d.IsNumber() ? d.As<Napi::Number>().DoubleValue() : -1;
    if (!(v >= 0) || v != static_cast<double>(static_cast<int64_t>(v)) || v > 9e15)
      ThrowRange(env, "shape[" + std::to_string(i) + "] must be a non-negative integer");
    shape.push_back(static_cast<int64_t>(v));
    numel *= shape.back();
  }
  if (static_cast<int64_t>(arr.ElementLength()) != numel)
    ThrowRange(env, "data has " + std::to_string(arr.ElementLength()) + " elements but shape " + c10::str(shape) + " needs " +
                        std::to_string(numel));
  c10::ScalarType target = ParseDtype(env, info[2].As<Napi::String>().Utf8Value());
  c10::ScalarType natural = NaturalDtype(arr.TypedArrayType());
  // Uint16Array carries raw float16/bfloat16 bits; bool arrives as bytes.
  if (arr.TypedArrayType() == napi_uint16_array && (target == at::kHalf || target == at::kBFloat16)) natural = target;
  if (arr.TypedArrayType() == napi_uint8_array && target == at::kBool) natural = at::kBool;
  if (natural == at::ScalarType::Undefined) ThrowType(env, "unsupported TypedArray kind for dtype " + DtypeName(target));
  c10::Device device = info[3].IsString() ? ParseDevice(env, info[3].As<Napi::String>().Utf8Value()) : c10::Device(at::kCPU);
  at::Tensor t = at::empty(shape, at::TensorOptions().dtype(natural));
  if (numel > 0) {
    void* src = static_cast<uint8_t*>(arr.ArrayBuffer().Data()) + arr.ByteOffset();
    // A borrowed view of the JS memory, copied by TensorIterator (parallel for large sizes).
    t.copy_(at::from_blob(src, shape, at::TensorOptions().dtype(natural)));
  }
  if (natural == at::kBool) t = t.ne(0);  // canonicalise non-0/1 bytes
  if (natural != target || device != t.device()) t = t.to(device, target);
  return Put(env, std::move(t));
}

static Napi::Value SetGradEnabled(const Napi::CallbackInfo& info) {
  bool prev = at::GradMode::is_enabled();
  at::GradMode::set_enabled(info[0].ToBoolean().Value());
  return Napi::Boolean::New(info.Env(), prev);
}
// setAutocast(device 'cpu' | 'cuda', enabled, dtype?) -> [previous enabled, previous dtype]
static Napi::Value SetAutocast(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) ThrowType(env, "autocast device must be 'cpu' or 'cuda'");
  std::string dev = info[0].As<Napi::String>().Utf8Value();
  if (dev != "cpu" && dev != "cuda") ThrowType(env, "autocast device must be 'cpu' or 'cuda', got '" + dev + "'");
  at::DeviceType dt = dev == "cpu" ? at::kCPU : at::kCUDA;
  Napi::Array prev = Napi::Array::New(env, 2);
  prev.Set(0u, at::autocast::is_autocast_enabled(dt));
  prev.Set(1u, DtypeName(at::autocast::get_autocast_dtype(dt)));
  if (info.Length() > 2 && info[2].IsString()) {
    c10::ScalarType t = ParseDtype(env, info[2].As<Napi::String>().Utf8Value());
    if (t != at::kBFloat16 && t != at::kHalf) ThrowType(env, "autocast dtype must be bfloat16 or float16, got " + DtypeName(t));
    at::autocast::set_autocast_dtype(dt, t);
  }
  at::autocast::set_autocast_enabled(dt, info[1].ToBoolean().Value());
  return prev;
}
static Napi::Value AutocastClearCache(const Napi::CallbackInfo& info) {
  at::autocast::clear_cache();
  return info.Env().Undefined();
}
static Napi::Value IsGradEnabled(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), at::GradMode::is_enabled());
}
static Napi::Value ManualSeed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  uint64_t seed;
  if (info[0].IsBigInt()) {
    bool lossless;
    seed = info[0].As<Napi::BigInt>().Uint64Value(&lossless);
  } else if (info[0].IsNumber()) {
    double d = info[0].As<Napi::Number>().DoubleValue();
    if (!(d >= 0) || d != static_cast<double>(static_cast<uint64_t>(d))) ThrowRange(env, "seed must be a non-negative integer");
    seed = static_cast<uint64_t>(d);
  } else {
    ThrowType(env, "seed must be a number or bigint");
  }
  at::manual_seed(seed);
  return env.Undefined();
}
// The default CPU generator's state (a uint8 tensor), for checkpoints that resume bit-exactly.
static Napi::Value GetRngState(const Napi::CallbackInfo& info) {
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  return Put(info.Env(), gen.get_state());
}
static Napi::Value SetRngState(const Napi::CallbackInfo& info) {
  const at::Tensor& state = Get(info[0], "state");
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  gen.set_state(state);
  return info.Env().Undefined();
}
static Napi::Value SetNumThreads(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  double n = info[0].IsNumber() ? info[0].As<Napi::Number>().DoubleValue() : 0;
  if (!(n >= 1) || n != static_cast<int>(n)) ThrowRange(env, "setNumThreads needs a positive integer");
  at::set_num_threads(static_cast<int>(n));
  return env.Undefined();
}
// TorchScript's graph executor optimisations (profiling, autodiff subgraphs, fusion). Returns the
// previous setting.
static Napi::Value SetGraphExecutorOptimize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsBoolean()) ThrowType(env, "setGraphExecutorOptimize needs a boolean");
  bool prev = torch::jit::getGraphExecutorOptimize();
  torch::jit::setGraphExecutorOptimize(info[0].As<Napi::Boolean>().Value());
  return Napi::Boolean::New(env, prev);
}
static Napi::Value GetNumThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), at::get_num_threads());
}
static Napi::Value CudaIsAvailable(const Napi::CallbackInfo& info) {
  return Napi::Boolean::New(info.Env(), torch::cuda::is_available());
}
static Napi::Value CudaDeviceCount(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(torch::cuda::device_count()));
}
static Napi::Value CudaSynchronize(const Napi::CallbackInfo& info) {
  if (torch::cuda::is_available()) torch::cuda::synchronize();
  return info.Env().Undefined();
}
static Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("torchVersion", TORCH_VERSION);
  o.Set("parallelInfo", at::get_parallel_info());
  o.Set("config", at::show_config());
  o.Set("cxx11Abi", Napi::Boolean::New(env, _GLIBCXX_USE_CXX11_ABI));
  o.Set("napiVersion", Napi::Number::New(env, NAPI_VERSION));
  return o;
}

void InitTensorFunctions(Napi::Env env, Napi::Object exports) {
#define EXPORT(name, fn) exports.Set(name, Napi::Function::New<Guarded<fn>>(env))
  EXPORT("release", tensors::Release);
  EXPORT("memory", tensors::Memory);
  EXPORT("isAlive", IsAlive);
  EXPORT("shape", Shape);
  EXPORT("strides", Strides);
  EXPORT("dtype", Dtype);
  EXPORT("device", Device);
  EXPORT("meta", Meta);
  EXPORT("isContiguous", IsContiguous);
  EXPORT("storageId", StorageId);
  EXPORT("requiresGrad", RequiresGrad);
  EXPORT("setRequiresGrad", SetRequiresGrad);
  EXPORT("grad", Grad);
  EXPORT("setGrad", SetGrad);
  EXPORT("isLeaf", IsLeaf);
  EXPORT("toTypedArray", ToTypedArray);
  EXPORT("toTypedArrayAsync", ToTypedArrayAsync);
  EXPORT("item", Item);
  EXPORT("backward", Backward);
  EXPORT("fromTypedArray", FromTypedArray);
  EXPORT("getRngState", GetRngState);
  EXPORT("setRngState", SetRngState);
#undef EXPORT
  exports.Set("setGradEnabled", Napi::Function::New<Guarded<SetGradEnabled>>(env));
  exports.Set("isGradEnabled", Napi::Function::New<Guarded<IsGradEnabled>>(env));
  exports.Set("setAutocast", Napi::Function::New<Guarded<SetAutocast>>(env));
  exports.Set("autocastClearCache", Napi::Function::New<Guarded<AutocastClearCache>>(env));
  exports.Set("manualSeed", Napi::Function::New<Guarded<ManualSeed>>(env));
  exports.Set("setNumThreads", Napi::Function::New<Guarded<SetNumThreads>>(env));
  exports.Set("getNumThreads", Napi::Function::New<Guarded<GetNumThreads>>(env));
  exports.Set("setGraphExecutorOptimize", Napi::Function::New<Guarded<SetGraphExecutorOptimize>>(env));
  exports.Set("cudaIsAvailable", Napi::Function::New<Guarded<CudaIsAvailable>>(env));
  exports.Set("cudaDeviceCount", Napi::Function::New<Guarded<CudaDeviceCount>>(env));
  exports.Set("cudaSynchronize", Napi::Function::New<Guarded<CudaSynchronize>>(env));
  exports.Set("buildInfo", Napi::Function::New<Guarded<BuildInfo>>(env));
}

}  // namespace torchbert
