// Schema-driven JS <-> IValue conversion (see ivalue.h).
#include "ivalue.h"

#include <ATen/core/Dict.h>
#include <ATen/core/List.h>
#include <ATen/core/jit_type.h>

#include <cmath>

#include "errors.h"
#include "tensor.h"

namespace torchbert {

static std::string Describe(const Napi::Value& v) {
  if (v.IsUndefined()) return "undefined";
  if (v.IsNull()) return "null";
  if (v.IsNumber()) return "number " + v.ToString().Utf8Value();
  if (v.IsBoolean()) return "boolean";
  if (v.IsString()) return "string";
  if (v.IsBigInt()) return "bigint";
  if (v.IsArray()) return "array";
  return "object";
}

std::string What::str() const {
  if (parent) return parent->str() + (key ? "['" + *key + "']" : "[" + std::to_string(index) + "]");
  std::string s = who ? *who : std::string();
  if (name) s += (s.empty() ? "" : " argument ") + ("'" + *name + "'");
  return s;
}

[[noreturn]] static void Mismatch(const Napi::Value& v, const c10::TypePtr& type, const What& what) {
  ThrowType(v.Env(), what.str() + " must be " + type->annotation_str() + ", got " + Describe(v));
}

static const at::Tensor& GetTensor(const Napi::Value& v, const What& what) {
  if (const at::Tensor* t = tensors::TryGet(v)) return *t;
  if (v.IsNumber() || v.IsBigInt()) ThrowDisposed(v.Env(), what.str() + ": Tensor has been disposed or is not a tensor");
  ThrowType(v.Env(), what.str() + " must be a Tensor, got " + Describe(v));
}

static int64_t ToInt(const Napi::Value& v, const c10::TypePtr& type, const What& what) {
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (std::isfinite(d) && d == std::trunc(d) && std::fabs(d) <= 9007199254740992.0) return static_cast<int64_t>(d);
    ThrowType(v.Env(), what.str() + " must be an integer, got " + v.ToString().Utf8Value());
  }
  if (v.IsBigInt()) {
    bool lossless;
    int64_t r = v.As<Napi::BigInt>().Int64Value(&lossless);
    if (!lossless) ThrowRange(v.Env(), what.str() + " is out of the int64 range");
    return r;
  }
  if (v.IsBoolean()) return v.As<Napi::Boolean>().Value() ? 1 : 0;
  Mismatch(v, type, what);
}

static c10::Scalar ToScalar(const Napi::Value& v, const c10::TypePtr& type, const What& what) {
  if (v.IsBoolean()) return c10::Scalar(v.As<Napi::Boolean>().Value());
  if (v.IsBigInt()) return c10::Scalar(ToInt(v, type, what));
  if (v.IsNumber()) {
    // JS has one number type: integral values become int scalars, which ATen promotes like Python ints.
    double d = v.As<Napi::Number>().DoubleValue();
    if (std::isfinite(d) && d == std::trunc(d) && std::fabs(d) <= 9007199254740992.0) return c10::Scalar(static_cast<int64_t>(d));
    return c10::Scalar(d);
  }
  Mismatch(v, type, what);
}

static Napi::Array AsArray(const Napi::Value& v, const c10::TypePtr& type, const What& what) {
  if (!v.IsArray()) Mismatch(v, type, what);
  return v.As<Napi::Array>();
}

c10::IValue ToIValue(const Napi::Value& v, const c10::TypePtr& type, const What& what) {
  using K = c10::TypeKind;
  switch (type->kind()) {
    case K::OptionalType:
      if (v.IsUndefined() || v.IsNull()) return c10::IValue();
      return ToIValue(v, type->expectRef<c10::OptionalType>().getElementType(), what);
    case K::TensorType:
      return GetTensor(v, what);
    case K::IntType:
    case K::SymIntType:
      return ToInt(v, type, what);
    case K::ScalarTypeType:
      if (v.IsString()) return static_cast<int64_t>(ParseDtype(v.Env(), v.As<Napi::String>().Utf8Value()));
      return ToInt(v, type, what);
    case K::LayoutType:
    case K::MemoryFormatType:
      return ToInt(v, type, what);
    case K::FloatType:
    case K::SymFloatType:
      if (!v.IsNumber()) Mismatch(v, type, what);
      return v.As<Napi::Number>().DoubleValue();
    case K::BoolType:
    case K::SymBoolType:
      if (!v.IsBoolean()) Mismatch(v, type, what);
      return v.As<Napi::Boolean>().Value();
    case K::NumberType:
      return ToScalar(v, type, what);
    case K::StringType:
      if (!v.IsString()) Mismatch(v, type, what);
      return v.As<Napi::String>().Utf8Value();
    case K::DeviceObjType:
      if (!v.IsString()) Mismatch(v, type, what);
      return ParseDevice(v.Env(), v.As<Napi::String>().Utf8Value());
    case K::GeneratorType:
      if (v.IsUndefined() || v.IsNull()) return c10::IValue();
      ThrowType(v.Env(), what.str() + ": generators are not supported; use manualSeed()");
    case K::ListType: {
      const c10::TypePtr& elem = type->expectRef<c10::ListType>().getElementType();
      // A single int where an int list is expected (dim=1 for dim=[1]), as PyTorch allows.
      if ((elem->kind() == K::IntType || elem->kind() == K::SymIntType) && (v.IsNumber() || v.IsBigInt()))
        return std::vector<int64_t>{ToInt(v, elem, what)};
      Napi::Array a = AsArray(v, type, what);
      uint32_t n = a.Length();
      switch (elem->kind()) {
        case K::IntType:
        case K::SymIntType: {
          std::vector<int64_t> out(n);
          for (uint32_t i = 0; i < n; i++) out[i] = ToInt(a.Get(i), elem, What{nullptr, nullptr, &what, static_cast<int64_t>(i)});
          return out;
        }
        case K::FloatType: {
          std::vector<double> out(n);
          for (uint32_t i = 0; i < n; i++) {
            Napi::Value e = a.Get(i);
            if (!e.IsNumber()) Mismatch(e, elem, What{nullptr, nullptr, &what, static_cast<int64_t>(i)});
            out[i] = e.As<Napi::Number>().DoubleValue();
          }
          return out;
        }
        case K::TensorType: {
          c10::List<at::Tensor> out;
          out.reserve(n);
          for (uint32_t i = 0; i < n; i++) out.push_back(GetTensor(a.Get(i), What{nullptr, nullptr, &what, static_cast<int64_t>(i)}));
          return out;
        }
        default: {
          if (elem->kind() == K::OptionalType &&
              elem->expectRef<c10::OptionalType>().getElementType()->kind() == K::TensorType) {
            c10::List<std::optional<at::Tensor>> out;
            for (uint32_t i = 0; i < n; i++) {
              Napi::Value e = a.Get(i);
              if (e.IsNull() || e.IsUndefined())
                out.push_back(std::nullopt);
              else
                out.push_back(GetTensor(e, What{nullptr, nullptr, &what, static_cast<int64_t>(i)}));
            }
            return out;
          }
          c10::impl::GenericList out(elem);
          for (uint32_t i = 0; i < n; i++) out.push_back(ToIValue(a.Get(i), elem, What{nullptr, nullptr, &what, static_cast<int64_t>(i)}));
          return out;
        }
      }
    }
    case K::TupleType: {
      const auto& elems = type->expectRef<c10::TupleType>().elements();
      Napi::Array a = AsArray(v, type, what);
      if (a.Length() != elems.size())
        ThrowType(v.Env(), what.str() + " must be a tuple of " + std::to_string(elems.size()) + " items, got " + std::to_string(a.Length()));
      std::vector<c10::IValue> out;
      for (size_t i = 0; i < elems.size(); i++) out.push_back(ToIValue(a.Get(i), elems[i], What{nullptr, nullptr, &what, static_cast<int64_t>(i)}));
      return c10::ivalue::Tuple::create(std::move(out));
    }
    case K::DictType: {
      const auto& dt = type->expectRef<c10::DictType>();
      if (!v.IsObject() || v.IsArray()) Mismatch(v, type, what);
      c10::impl::GenericDict out(dt.getKeyType(), dt.getValueType());
      Napi::Object o = v.As<Napi::Object>();
      Napi::Array keys = o.GetPropertyNames();
      for (uint32_t i = 0; i < keys.Length(); i++) {
        std::string k = keys.Get(i).ToString().Utf8Value();
        c10::IValue key = dt.getKeyType()->kind() == K::StringType ? c10::IValue(k) : c10::IValue(static_cast<int64_t>(std::stoll(k)));
        out.insert(key, ToIValue(o.Get(k), dt.getValueType(), What{nullptr, nullptr, &what, -1, &k}));
      }
      return out;
    }
    case K::NoneType:
      if (!v.IsUndefined() && !v.IsNull()) Mismatch(v, type, what);
      return c10::IValue();
    case K::AnyType:
    case K::UnionType: {
      // No static type: infer from the JS value.
      if (v.IsUndefined() || v.IsNull()) return c10::IValue();
      if (v.IsBigInt()) return GetTensor(v, what);  // untyped positions carry tensors as BigInt handles
      if (v.IsBoolean()) return v.As<Napi::Boolean>().Value();
      if (v.IsString()) return v.As<Napi::String>().Utf8Value();
      if (v.IsNumber()) return ToScalar(v, type, what).isIntegral(false) ? c10::IValue(ToInt(v, type, what)) : c10::IValue(v.As<Napi::Number>().DoubleValue());
      Mismatch(v, type, what);
    }
    default:
       ThrowType(v.Env(), what.str() + ": values of type " + type->annotation_str() + " cannot be passed from JS");
  }
}

Napi::Value FromIValue(Napi::Env env, const c10::IValue& v, bool bigint_handles) {
  if (v.isTensor()) {
    const at::Tensor& t = v.toTensor();
    if (!t.defined()) return env.Null();
    return tensors::Put(env, t, bigint_handles);
  }
  if (v.isNone()) return env.Null();
  if (v.isBool()) return Napi::Boolean::New(env, v.toBool());
  if (v.isInt()) return Napi::Number::New(env, static_cast<double>(v.toInt()));
  if (v.isDouble()) return Napi::Number::New(env, v.toDouble());
  if (v.isString()) return Napi::String::New(env, v.toStringRef());
  if (v.isList()) {
    auto list = v.toListRef();
    Napi::Array a = Napi::Array::New(env, list.size());
    for (size_t i = 0; i < list.size(); i++) a.Set(i, FromIValue(env, list[i], bigint_handles));
    return a;
  }
  if (v.isTuple()) {
    const auto& elems = v.toTupleRef().elements();
    Napi::Array a = Napi::Array::New(env, elems.size());
    for (size_t i = 0; i < elems.size(); i++) a.Set(i, FromIValue(env, elems[i], bigint_handles));
    return a;
  }
  if (v.isGenericDict()) {
    Napi::Object o = Napi::Object::New(env);
    for (const auto& kv : v.toGenericDict()) {
      const c10::IValue& k = kv.key();
      std::string key = k.isString() ? k.toStringRef() : k.isInt() ? std::to_string(k.toInt()) : "?";
      o.Set(key, FromIValue(env, kv.value(), bigint_handles));
    }
    return o;
  }
  if (v.isDevice()) return Napi::String::New(env, v.toDevice().str());
  if (v.isScalar()) {
    at::Scalar s = v.toScalar();
    return Napi::Number::New(env, s.toDouble());
  }
  ThrowType(env, "a value of type " + v.tagKind() + " cannot be returned to JS");
}

// Arguments arrive either as one JS array (method calls) or as the call's own trailing arguments
// (operator calls: no array to allocate and unpack on the hot path).
struct ArgList {
  Napi::Env env;
  const Napi::CallbackInfo* info = nullptr;
  size_t start = 0;
  Napi::Array array;
  size_t Length() const { return info ? (info->Length() > start ? info->Length() - start : 0) : array.Length(); }
  Napi::Value Get(size_t i) const { return info ? (*info)[start + i] : array.Get(static_cast<uint32_t>(i)); }
};

static void PushArgList(const ArgList& args, const c10::FunctionSchema& schema, size_t first, const std::string& who, torch::jit::Stack& stack) {
  Napi::Env env = args.env;
  const auto& formals = schema.arguments();
  size_t n = formals.size() - first;
  size_t given = args.Length();
  if (given > n) ThrowType(env, who + " takes at most " + std::to_string(n) + " arguments, got " + std::to_string(given));
  stack.reserve(stack.size() + n);
  for (size_t i = 0; i < n; i++) {
    const c10::Argument& formal = formals[first + i];
    Napi::Value v = i < given ? args.Get(i) : env.Undefined();
    if (v.IsUndefined()) {
      if (formal.default_value()) {
        stack.push_back(*formal.default_value());
        continue;
      }
      if (formal.real_type()->kind() != c10::TypeKind::OptionalType)
        ThrowType(env, who + ": missing argument '" + formal.name() + "'");
    }
    stack.push_back(ToIValue(v, formal.real_type(), What{&who, &formal.name()}));
  }
}

void PushArgs(const Napi::Value& argsValue, const c10::FunctionSchema& schema, size_t first, const std::string& who, torch::jit::Stack& stack) {
  if (!argsValue.IsArray()) ThrowType(argsValue.Env(), who + ": arguments must be an array");
  PushArgList(ArgList{argsValue.Env(), nullptr, 0, argsValue.As<Napi::Array>()}, schema, first, who, stack);
}

void PushCallArgs(const Napi::CallbackInfo& info, size_t start, const c10::FunctionSchema& schema, const std::string& who, torch::jit::Stack& stack) {
  PushArgList(ArgList{info.Env(), &info, start, Napi::Array()}, schema, 0, who, stack);
}

Napi::Value StackResult(Napi::Env env, torch::jit::Stack& stack, bool bigint_handles) {
  if (stack.empty()) return env.Undefined();
  if (stack.size() == 1) return FromIValue(env, stack[0], bigint_handles);
  Napi::Array a = Napi::Array::New(env, stack.size());
  for (size_t i = 0; i < stack.size(); i++) a.Set(i, FromIValue(env, stack[i], bigint_handles));
  return a;
}

}  // namespace torchbert
