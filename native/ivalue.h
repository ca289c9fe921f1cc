// JS <-> c10::IValue conversion driven by a schema's argument types, shared by ATen operator calls
// and TorchScript method calls. Tensors cross as NativeTensor objects, dtypes and devices as strings.
#pragma once
#include <napi.h>
#include <ATen/core/function_schema.h>
#include <ATen/core/ivalue.h>
#include <ATen/core/stack.h>

#include <string>

namespace torchbert {

// Names the value being converted, for error messages; built into a string only when one is thrown.
struct What {
  const std::string* who = nullptr;   // operator or method
  const std::string* name = nullptr;  // argument or attribute name
  const What* parent = nullptr;       // for list items and dict values
  int64_t index = -1;
  const std::string* key = nullptr;
  std::string str() const;
};

c10::IValue ToIValue(const Napi::Value& v, const c10::TypePtr& type, const What& what);
// Tensors become handles: numbers where the caller knows the result type, BigInts where it must tell them apart.
Napi::Value FromIValue(Napi::Env env, const c10::IValue& v, bool bigint_handles);
// Converts positional JS args (undefined = schema default) to a stack; `first` skips `self` for methods.
void PushArgs(const Napi::Value& args, const c10::FunctionSchema& schema, size_t first, const std::string& who, torch::jit::Stack& stack);
// The same, from the call's own arguments info[start...].
void PushCallArgs(const Napi::CallbackInfo& info, size_t start, const c10::FunctionSchema& schema, const std::string& who, torch::jit::Stack& stack);
Napi::Value StackResult(Napi::Env env, torch::jit::Stack& stack, bool bigint_handles);

}  // namespace torchbert
