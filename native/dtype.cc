// dtype and device names as torchbert spells them (PyTorch's: float32, bfloat16, cuda:1, ...).
#include <ATen/ATen.h>

#include <string>
#include <utility>

#include "errors.h"
#include "tensor.h"

namespace torchbert {

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

}  // namespace torchbert
