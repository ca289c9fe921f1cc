// Tensor accessors across the handle boundary: metadata, grad state, typed-array copies in and out,
// backward. The handle table is handles.cc, dtype names dtype.cc, global switches runtime.cc.
#include "tensor.h"

#include <ATen/Parallel.h>

#include <torch/csrc/autograd/autograd.h>

#include <cmath>
#include <cstring>

#include "async.h"
#include "compute.h"
#include "errors.h"

namespace torchbert {

using tensors::Get;
using tensors::Put;

static Napi::Array IntArray(Napi::Env env, c10::IntArrayRef v) {
  Napi::Array a = Napi::Array::New(env, v.size());
  for (size_t i = 0; i < v.size(); i++) a.Set(i, Napi::Number::New(env, static_cast<double>(v[i])));
  return a;
}

static Napi::Value Strides(const Napi::CallbackInfo& info) { return IntArray(info.Env(), Get(info[0], "tensor").strides()); }
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
  RunOnComputeThread([&] { t.backward(grad, retain, create); });  // heavy: the compute thread's intra-op threads
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

void InitTensorFunctions(Napi::Env env, Napi::Object exports) {
  Export<Strides>(exports, "strides");
  Export<Meta>(exports, "meta");
  Export<IsContiguous>(exports, "isContiguous");
  Export<StorageId>(exports, "storageId");
  Export<RequiresGrad>(exports, "requiresGrad");
  Export<SetRequiresGrad>(exports, "setRequiresGrad");
  Export<Grad>(exports, "grad");
  Export<SetGrad>(exports, "setGrad");
  Export<IsLeaf>(exports, "isLeaf");
  Export<ToTypedArray>(exports, "toTypedArray");
  Export<ToTypedArrayAsync>(exports, "toTypedArrayAsync");
  Export<Item>(exports, "item");
  Export<Backward>(exports, "backward");
  Export<FromTypedArray>(exports, "fromTypedArray");
}

}  // namespace torchbert
