// Generic access to every ATen operator through the dispatcher: TS resolves an operator name once to
// a handle, then calls it with positional args converted by the operator's own schema. This keeps the
// native layer thin while the TS Tensor class exposes a typed, PyTorch-shaped API.
#include <ATen/core/dispatch/Dispatcher.h>

#include <deque>

#include "async.h"
#include "compute.h"
#include "errors.h"
#include "ivalue.h"
#include "ops.h"

namespace torchbert {

namespace {
struct Op {
  c10::OperatorHandle handle;
  std::string name;
  // torchbert's own operators run on the compute thread even when called sync: their measurements
  // (tune_*) and weight layouts (oneDNN's blocking depends on the thread count) must match where the
  // work runs.
  bool on_compute_thread;
};
std::deque<Op> ops;  // deque: stable addresses while handles are appended

const Op& GetOp(const Napi::Value& id) {
  if (!id.IsNumber()) ThrowType(id.Env(), "operator handle must be a number");
  uint32_t i = id.As<Napi::Number>().Uint32Value();
  if (i >= ops.size()) ThrowRange(id.Env(), "unknown operator handle " + std::to_string(i));
  return ops[i];
}

// opHandle("aten::add.Tensor") -> integer handle
Napi::Value OpHandle(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) ThrowType(env, "operator name must be a string");
  std::string full = info[0].As<Napi::String>().Utf8Value();
  size_t ns = full.find("::");
  size_t dot = full.find('.', ns == std::string::npos ? 0 : ns);
  std::string name = dot == std::string::npos ? full : full.substr(0, dot);
  std::string overload = dot == std::string::npos ? "" : full.substr(dot + 1);
  auto handle = c10::Dispatcher::singleton().findSchema({name, overload});
  if (!handle) ThrowType(env, "unknown operator '" + full + "'");
  ops.push_back({*handle, full, full.rfind("torchbert::", 0) == 0});
  return Napi::Number::New(env, static_cast<double>(ops.size() - 1));
}

torch::jit::Stack Invoke(const Napi::CallbackInfo& info) {
  const Op& op = GetOp(info[0]);
  torch::jit::Stack stack;
  PushCallArgs(info, 1, op.handle.schema(), op.name, stack);
  if (op.on_compute_thread) {
    RunOnComputeThread([&] { op.handle.callBoxed(stack); });
  } else {
    op.handle.callBoxed(stack);
  }
  return stack;
}

// callOp(handle, ...args): returns the op's result(s).
Napi::Value CallOp(const Napi::CallbackInfo& info) {
  torch::jit::Stack stack = Invoke(info);
  return StackResult(info.Env(), stack, false);
}

// callOpInplace(handle, ...args): for in-place ops, whose result is an argument the caller already holds.
Napi::Value CallOpInplace(const Napi::CallbackInfo& info) {
  Invoke(info);
  return info.Env().Undefined();
}
// Runs an operator on a worker thread (an optimizer step over all parameters, a large copy): the stack
// is built on the main thread, the kernel runs off it, tensors come back as handles.
class OpWorker : public TorchWorker {
 public:
  OpWorker(Napi::Env env, c10::OperatorHandle handle, torch::jit::Stack stack)
      : TorchWorker(env), handle_(std::move(handle)), stack_(std::move(stack)) {}
  void Run() override { handle_.callBoxed(stack_); }
  Napi::Value Result(Napi::Env env) override { return StackResult(env, stack_, false); }

 private:
  c10::OperatorHandle handle_;
  torch::jit::Stack stack_;
};

// callOpAsync(handle, ...args) -> Promise of the op's result(s).
Napi::Value CallOpAsync(const Napi::CallbackInfo& info) {
  const Op& op = GetOp(info[0]);
  torch::jit::Stack stack;
  PushCallArgs(info, 1, op.handle.schema(), op.name, stack);
  return (new OpWorker(info.Env(), op.handle, std::move(stack)))->Start();
}
}  // namespace

void InitOps(Napi::Env env, Napi::Object exports) {
  Export<OpHandle>(exports, "opHandle");
  Export<CallOp>(exports, "callOp");
  Export<CallOpInplace>(exports, "callOpInplace");
  Export<CallOpAsync>(exports, "callOpAsync");
}

}  // namespace torchbert
