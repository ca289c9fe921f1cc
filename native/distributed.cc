// Data-parallel training on PyTorch's own distributed engine (c10d), as torch.distributed drives it:
// a TCPStore or FileStore rendezvous, ProcessGroupGloo (and, on CUDA builds with NCCL's headers,
// ProcessGroupNCCL for CUDA tensors) behind a c10d::ProcessGroup, the collectives, and
// c10d::Reducer (DDP's gradient buckets, allreduced during backward). Every call that talks to peers runs
// on a worker thread; every c10d error (timeouts, a peer gone) becomes a JS error.
// Built where Gloo's headers are found (torch wheels ship libtorch's Gloo, not its headers: the build
// looks in libtorch's include folder, then the system's, e.g. Debian's libgloo-dev).
#include <napi.h>

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "async.h"
#include "compat.h"
#include "errors.h"
#include "tensor.h"

#ifdef TORCHBERT_HAVE_GLOO
#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/csrc/distributed/c10d/comm.hpp>
#include <torch/csrc/distributed/c10d/reducer.hpp>
#endif
#ifdef TORCHBERT_HAVE_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

namespace torchbert {
namespace {

// A worker for one call: `run` on a pool thread of its own (collectives wait on other processes: not on
// the compute thread), `result` back on the main thread.
class FnWorker : public TorchWorker {
 public:
  FnWorker(Napi::Env env, std::function<void()> run, std::function<Napi::Value(Napi::Env)> result = nullptr)
      : TorchWorker(env, /*compute=*/false), run_(std::move(run)), result_(std::move(result)) {}
  void Run() override { run_(); }
  Napi::Value Result(Napi::Env env) override { return result_ ? result_(env) : env.Undefined(); }

 private:
  std::function<void()> run_;
  std::function<Napi::Value(Napi::Env)> result_;
};

std::vector<at::Tensor> TensorList(const Napi::Value& v, const char* what) {
  if (!v.IsArray()) ThrowType(v.Env(), std::string(what) + " must be an array of tensors");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<at::Tensor> out;
  for (uint32_t i = 0; i < a.Length(); i++) out.push_back(tensors::Get(a.Get(i), what));
  return out;
}

#ifdef TORCHBERT_HAVE_GLOO
struct Group {
  c10::intrusive_ptr<c10d::ProcessGroup> pg;  // null on ranks outside the group
  std::vector<int> ranks;                     // global ranks in group order
};

struct State {
  std::mutex mu;
  c10::intrusive_ptr<c10d::Store> store;
  int rank = -1;
  int size = 0;
  std::chrono::milliseconds timeout{0};
  std::string bind;  // the address this rank's Gloo device listens on ("" = the host's default)
  bool nccl = false;  // CUDA tensors through NCCL (else through Gloo)
  int device = -1;    // with NCCL: this rank's CUDA device
  std::vector<std::optional<Group>> groups;  // 0 is the default group; destroyed ones are empty
  std::map<int, std::shared_ptr<c10d::Reducer>> reducers;
  int next_reducer = 1;
};
// Deliberately never destroyed: c10d's threads may still run while the process exits.
State& S() {
  static State* s = new State();
  return *s;
}

// Lays out the store keys as torch.distributed does (<base>/<group name>//cpu//...) and sets the group's
// sequence number, so a Python rank can join the same default group. Gloo always takes CPU tensors (the
// object collectives use them); CUDA tensors go to NCCL when asked for, else to Gloo, as torch.distributed
// registers its backends per device type.
c10::intrusive_ptr<c10d::ProcessGroup> MakeGroup(const c10::intrusive_ptr<c10d::Store>& base, int rank, int size, std::chrono::milliseconds timeout,
                                                 const std::string& bind, const std::string& name, bool nccl, int device) {
  auto group_store = c10::make_intrusive<c10d::PrefixStore>(name + "/", base);
  auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
  // Gloo's worker threads per group (PyTorch's default 2; TORCHBERT_GLOO_THREADS overrides)
  if (const char* n = std::getenv("TORCHBERT_GLOO_THREADS")) opts->threads = std::max(1, std::atoi(n));
  opts->devices.push_back(bind.empty() ? c10d::ProcessGroupGloo::createDefaultDevice() : c10d::ProcessGroupGloo::createDeviceForHostname(bind));
  auto backend = c10::make_intrusive<c10d::ProcessGroupGloo>(c10::make_intrusive<c10d::PrefixStore>("cpu/", group_store), rank, size, opts);
  compat::SetSequenceNumberForGroup(*backend);
  auto pg = c10::make_intrusive<c10d::ProcessGroup>(group_store, rank, size);
  pg->setBackend(c10::DeviceType::CPU, c10d::ProcessGroup::BackendType::GLOO, backend);
  if (nccl) {
#ifdef TORCHBERT_HAVE_NCCL
    auto nopts = c10d::ProcessGroupNCCL::Options::create();
    nopts->timeout = timeout;
    auto cuda = c10::make_intrusive<c10d::ProcessGroupNCCL>(c10::make_intrusive<c10d::PrefixStore>("cuda/", group_store), rank, size, nopts);
    if (device >= 0) cuda->setBoundDeviceId(at::Device(at::kCUDA, static_cast<c10::DeviceIndex>(device)));
    pg->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::BackendType::NCCL, cuda);
    pg->setDefaultBackend(c10d::ProcessGroup::BackendType::NCCL);
#else
    throw CodedError("TORCHBERT_UNAVAILABLE", "distributed: this build has no NCCL process group");
#endif
  } else {
    pg->setBackend(c10::DeviceType::CUDA, c10d::ProcessGroup::BackendType::GLOO, backend);
    pg->setDefaultBackend(c10d::ProcessGroup::BackendType::GLOO);
  }
  pg->setGroupName(name);
  return pg;
}

// The group behind an id, and this rank's index in it; throws when not initialised or not a member.
Group GetGroup(Napi::Env env, const Napi::Value& id) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  if (!s.store) ThrowCoded(env, "TORCHBERT_INVALID_STATE", "distributed: the default process group is not initialised (call initProcessGroup first)");
  int i = id.IsNumber() ? id.As<Napi::Number>().Int32Value() : 0;
  if (i < 0 || i >= static_cast<int>(s.groups.size()) || !s.groups[i]) ThrowCoded(env, "TORCHBERT_INVALID_STATE", "distributed: the process group was destroyed");
  if (!s.groups[i]->pg) ThrowCoded(env, "TORCHBERT_INVALID_STATE", "distributed: this rank (" + std::to_string(s.rank) + ") is not a member of the group");
  return *s.groups[i];
}

int GroupRank(Napi::Env env, const Group& g, const Napi::Value& global, const char* what) {
  int r = global.As<Napi::Number>().Int32Value();
  for (size_t i = 0; i < g.ranks.size(); i++)
    if (g.ranks[i] == r) return static_cast<int>(i);
  ThrowRange(env, std::string(what) + " rank " + std::to_string(r) + " is not in the group");
}

c10d::ReduceOp ParseOp(Napi::Env env, const std::string& op) {
  if (op == "sum" || op == "avg") return c10d::ReduceOp::SUM;
  if (op == "min") return c10d::ReduceOp::MIN;
  if (op == "max") return c10d::ReduceOp::MAX;
  if (op == "product") return c10d::ReduceOp::PRODUCT;
  ThrowType(env, "reduce op must be sum, avg, min, max or product, got '" + op + "'");
}

// distInit(kind 'tcp'|'file', host, port, path, rank, worldSize, timeoutMs, bind, nccl, device) -> Promise
Napi::Value Init(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string kind = info[0].As<Napi::String>();
  std::string host = info[1].As<Napi::String>();
  int port = info[2].As<Napi::Number>().Int32Value();
  std::string path = info[3].As<Napi::String>();
  int rank = info[4].As<Napi::Number>().Int32Value();
  int size = info[5].As<Napi::Number>().Int32Value();
  auto timeout = std::chrono::milliseconds(static_cast<int64_t>(info[6].As<Napi::Number>().DoubleValue()));
  std::string bind = info[7].As<Napi::String>();
  bool nccl = info[8].ToBoolean();
  int device = info[9].IsNumber() ? info[9].As<Napi::Number>().Int32Value() : -1;
  {
    std::lock_guard<std::mutex> lock(S().mu);
    if (S().store) ThrowCoded(env, "TORCHBERT_INVALID_STATE", "distributed: initProcessGroup was already called (destroyProcessGroup first)");
  }
  return (new FnWorker(env, [=] {
    c10::intrusive_ptr<c10d::Store> store;
    if (kind == "tcp") {
      c10d::TCPStoreOptions o;
      o.port = static_cast<uint16_t>(port);
      o.isServer = rank == 0;
      o.numWorkers = size;
      o.waitWorkers = true;
      o.timeout = timeout;
      store = c10::make_intrusive<c10d::TCPStore>(host, o);
    } else {
      store = c10::make_intrusive<c10d::FileStore>(path, size);
      store->setTimeout(timeout);
    }
    auto pg = MakeGroup(c10::make_intrusive<c10d::PrefixStore>("default_pg", store), rank, size, timeout, bind, "0", nccl, device);
    State& s = S();
    std::lock_guard<std::mutex> lock(s.mu);
    if (s.store) throw CodedError("TORCHBERT_INVALID_STATE", "distributed: initProcessGroup was already called (destroyProcessGroup first)");
    s.store = store;
    s.rank = rank;
    s.size = size;
    s.timeout = timeout;
    s.bind = bind;
    s.nccl = nccl;
    s.device = device;
    std::vector<int> all(size);
    for (int i = 0; i < size; i++) all[i] = i;
    s.groups.assign(1, Group{pg, all});
  }))->Start();
}

// distNewGroup(ranks) -> Promise<id>: every rank calls it (as torch.distributed.new_group), members connect.
Napi::Value NewGroup(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  GetGroup(env, Napi::Number::New(env, 0));
  std::vector<int> ranks;
  Napi::Array a = info[0].As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) ranks.push_back(a.Get(i).As<Napi::Number>().Int32Value());
  State& s = S();
  int id;
  c10::intrusive_ptr<c10d::Store> store;
  int me = -1;
  std::chrono::milliseconds timeout;
  std::string bind;
  bool nccl;
  int device;
  {
    std::lock_guard<std::mutex> lock(s.mu);
    for (size_t i = 0; i < ranks.size(); i++) {
      if (ranks[i] < 0 || ranks[i] >= s.size) ThrowRange(env, "newGroup: rank " + std::to_string(ranks[i]) + " is outside the world of " + std::to_string(s.size));
      if (ranks[i] == s.rank) me = static_cast<int>(i);
    }
    id = static_cast<int>(s.groups.size());
    s.groups.push_back(Group{nullptr, ranks});
    store = s.store;
    timeout = s.timeout;
    bind = s.bind;
    nccl = s.nccl;
    device = s.device;
  }
  int n = static_cast<int>(ranks.size());
  return (new FnWorker(
              env,
              [=] {
                if (me < 0) return;
                auto pg = MakeGroup(c10::make_intrusive<c10d::PrefixStore>("default_pg", store), me, n, timeout, bind, "torchbert_group_" + std::to_string(id), nccl, device);
                std::lock_guard<std::mutex> lock(S().mu);
                if (id < static_cast<int>(S().groups.size()) && S().groups[id]) S().groups[id]->pg = pg;
              },
              [id](Napi::Env env) { return Napi::Number::New(env, id); }))
      ->Start();
}

Napi::Value Destroy(const Napi::CallbackInfo& info) {
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  s.reducers.clear();
  // NCCL's communicators and watchdog end with shutdown (its destructor would abort them and warn); the
  // state is cleared even when one fails, and the first failure is reported after.
  std::string failed;
  if (s.nccl)
    for (auto& g : s.groups)
      if (g && g->pg) try {
          g->pg->shutdown();
        } catch (const std::exception& e) {
          if (failed.empty()) failed = e.what();
        }
  s.groups.clear();
  s.store.reset();
  s.rank = -1;
  s.size = 0;
  s.nccl = false;
  if (!failed.empty()) ThrowCoded(info.Env(), "TORCHBERT_NATIVE_ERROR", "destroyProcessGroup: NCCL shutdown failed: " + failed);
  return info.Env().Undefined();
}

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("available", true);
#ifdef TORCHBERT_HAVE_NCCL
  o.Set("nccl", true);
#else
  o.Set("nccl", false);
#endif
  State& s = S();
  std::lock_guard<std::mutex> lock(s.mu);
  o.Set("initialized", static_cast<bool>(s.store));
  o.Set("rank", s.rank);
  o.Set("worldSize", s.size);
  return o;
}

Napi::Value Wait(Napi::Env env, std::function<c10::intrusive_ptr<c10d::Work>()> start, std::function<void()> after = nullptr) {
  return (new FnWorker(env, [=] {
    start()->wait();
    if (after) after();
  }))->Start();
}

// distAllReduce(group, tensor, op)
Napi::Value AllReduce(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Group g = GetGroup(env, info[0]);
  at::Tensor t = tensors::Get(info[1], "tensor");
  std::string op = info[2].As<Napi::String>();
  c10d::AllreduceOptions o;
  o.reduceOp = ParseOp(env, op);
  if (op == "avg" && !at::isFloatingType(t.scalar_type()))
    ThrowType(env, "allReduce: avg needs a floating-point tensor, got " + DtypeName(t.scalar_type()));
  int size = static_cast<int>(g.ranks.size());
  return Wait(
      env, [=] { std::vector<at::Tensor> v{t}; return g.pg->allreduce(v, o); },
      // Gloo has no AVG: a sum divided by the group size, as torch.distributed does for it.
      [=] { if (op == "avg") t.div_(size); });
}

// distBroadcast(group, tensor, srcGlobalRank)
Napi::Value Broadcast(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Group g = GetGroup(env, info[0]);
  at::Tensor t = tensors::Get(info[1], "tensor");
  c10d::BroadcastOptions o;
  o.rootRank = GroupRank(env, g, info[2], "broadcast: source");
  return Wait(env, [=] { std::vector<at::Tensor> v{t}; return g.pg->broadcast(v, o); });
}

// distAllGather(group, outputs[], input)
Napi::Value AllGather(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Group g = GetGroup(env, info[0]);
  auto outs = TensorList(info[1], "allGather outputs");
  at::Tensor in = tensors::Get(info[2], "tensor");
  if (outs.size() != g.ranks.size()) ThrowRange(env, "allGather: needs one output tensor per rank (" + std::to_string(g.ranks.size()) + "), got " + std::to_string(outs.size()));
  return Wait(env, [=] {
    std::vector<std::vector<at::Tensor>> o{outs};
    std::vector<at::Tensor> i{in};
    return g.pg->allgather(o, i);
  });
}

// distReduceScatter(group, output, inputs[], op)
Napi::Value ReduceScatter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Group g = GetGroup(env, info[0]);
  at::Tensor out = tensors::Get(info[1], "tensor");
  auto ins = TensorList(info[2], "reduceScatter inputs");
  std::string op = info[3].As<Napi::String>();
  c10d::ReduceScatterOptions o;
  o.reduceOp = ParseOp(env, op);
  if (ins.size() != g.ranks.size()) ThrowRange(env, "reduceScatter: needs one input tensor per rank (" + std::to_string(g.ranks.size()) + "), got " + std::to_string(ins.size()));
  int size = static_cast<int>(g.ranks.size());
  return Wait(
      env,
      [=] {
        std::vector<at::Tensor> o1{out};
        std::vector<std::vector<at::Tensor>> i{ins};
        return g.pg->reduce_scatter(o1, i, o);
      },
      [=] { if (op == "avg") out.div_(size); });
}

// distGather(group, input, outputs[] (on dst only), dstGlobalRank)
Napi::Value Gather(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Group g = GetGroup(env, info[0]);
  at::Tensor in = tensors::Get(info[1], "tensor");
  c10d::GatherOptions o;
  o.rootRank = GroupRank(env, g, info[3], "gather: destination");
  std::vector<std::vector<at::Tensor>> outs;
  if (!info[2].IsUndefined() && !info[2].IsNull()) outs.push_back(TensorList(info[2], "gather outputs"));
  return Wait(env, [=]() mutable {
    std::vector<at::Tensor> i{in};
    return g.pg->gather(outs, i, o);
  });
}

// distScatter(group, output, inputs[] (on src only), srcGlobalRank)
Napi::Value Scatter(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Group g = GetGroup(env, info[0]);
  at::Tensor out = tensors::Get(info[1], "tensor");
  c10d::ScatterOptions o;
  o.rootRank = GroupRank(env, g, info[3], "scatter: source");
  std::vector<std::vector<at::Tensor>> ins;
  if (!info[2].IsUndefined() && !info[2].IsNull()) ins.push_back(TensorList(info[2], "scatter inputs"));
  return Wait(env, [=]() mutable {
    std::vector<at::Tensor> o1{out};
    return g.pg->scatter(o1, ins, o);
  });
}

// distSend(group, tensor, dstGlobalRank, tag) / distRecv(group, tensor, srcGlobalRank, tag)
Napi::Value Send(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Group g = GetGroup(env, info[0]);
  at::Tensor t = tensors::Get(info[1], "tensor");
  int dst = GroupRank(env, g, info[2], "send: destination");
  int tag = info[3].As<Napi::Number>().Int32Value();
  return Wait(env, [=] { std::vector<at::Tensor> v{t}; return g.pg->send(v, dst, tag); });
}
Napi::Value Recv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Group g = GetGroup(env, info[0]);
  at::Tensor t = tensors::Get(info[1], "tensor");
  int src = GroupRank(env, g, info[2], "recv: source");
  int tag = info[3].As<Napi::Number>().Int32Value();
  return Wait(env, [=] { std::vector<at::Tensor> v{t}; return g.pg->recv(v, src, tag); });
}

Napi::Value Barrier(const Napi::CallbackInfo& info) {
  Group g = GetGroup(info.Env(), info[0]);
  return Wait(info.Env(), [=] { return g.pg->barrier(); });
}

// ddpCreate(group, params[], buffers[], names[], bucketCapBytes, firstBucketBytes, findUnused) -> Promise<id>:
// checks that every rank has the same parameters, broadcasts parameters and buffers from the group's
// first rank, and builds the Reducer with buckets in reverse parameter order (as DDP does: gradients
// arrive roughly from the last layer to the first).
Napi::Value DdpCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Group g = GetGroup(env, info[0]);
  auto params = TensorList(info[1], "parameters");
  auto buffers = TensorList(info[2], "buffers");
  Napi::Array names = info[3].As<Napi::Array>();
  std::unordered_map<size_t, std::string> param_names;
  for (uint32_t i = 0; i < names.Length(); i++) param_names[i] = names.Get(i).As<Napi::String>();
  int64_t cap = static_cast<int64_t>(info[4].As<Napi::Number>().DoubleValue());
  int64_t first = static_cast<int64_t>(info[5].As<Napi::Number>().DoubleValue());
  bool find_unused = info[6].ToBoolean();
  if (params.empty()) ThrowType(env, "DistributedDataParallel: the model has no parameters that require gradients");
  int id;
  {
    std::lock_guard<std::mutex> lock(S().mu);
    id = S().next_reducer++;
  }
  return (new FnWorker(
              env,
              [=] {
                c10d::verify_params_across_processes(g.pg, params, std::nullopt);
                std::vector<at::Tensor> state(params);
                state.insert(state.end(), buffers.begin(), buffers.end());
                {
                  at::NoGradGuard no_grad;
                  c10d::broadcast_coalesced(g.pg, state, 250 * 1024 * 1024, 0);
                }
                auto [buckets, limits] = c10d::compute_bucket_assignment_by_size(params, {static_cast<size_t>(first), static_cast<size_t>(cap)}, std::vector<bool>(params.size(), false));
                std::reverse(buckets.begin(), buckets.end());
                std::vector<int64_t> caps(limits.rbegin(), limits.rend());
                auto reducer = std::make_shared<c10d::Reducer>(params, buckets, g.pg, std::vector<bool>(params.size(), false), cap, find_unused, false, param_names, first,
                                                               false, false, caps);
                std::lock_guard<std::mutex> lock(S().mu);
                S().reducers[id] = reducer;
              },
              [id](Napi::Env env) { return Napi::Number::New(env, id); }))
      ->Start();
}

std::shared_ptr<c10d::Reducer> GetReducer(Napi::Env env, const Napi::Value& id) {
  std::lock_guard<std::mutex> lock(S().mu);
  auto it = S().reducers.find(id.As<Napi::Number>().Int32Value());
  if (it == S().reducers.end()) ThrowDisposed(env, "DistributedDataParallel: disposed (or its process group was destroyed)");
  return it->second;
}

// ddpPrepareForward(id) -> Promise: the first call after the first backward re-buckets by the order
// gradients arrived (a collective, so it runs off the main thread).
Napi::Value DdpPrepareForward(const Napi::CallbackInfo& info) {
  auto r = GetReducer(info.Env(), info[0]);
  return (new FnWorker(info.Env(), [r] {
    r->prepare_for_forward();
    r->rebuild_buckets();
  }))->Start();
}

// ddpPrepareBackward(id, outputs[]): arms the reducer's hooks for the next backward (outputs are used
// to find unused parameters when enabled).
Napi::Value DdpPrepareBackward(const Napi::CallbackInfo& info) {
  auto r = GetReducer(info.Env(), info[0]);
  r->prepare_for_backward(TensorList(info[1], "outputs"));
  return info.Env().Undefined();
}

Napi::Value DdpDestroy(const Napi::CallbackInfo& info) {
  std::lock_guard<std::mutex> lock(S().mu);
  S().reducers.erase(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}
#else
Napi::Value Unavailable(const Napi::CallbackInfo& info) {
  ThrowCoded(info.Env(), "TORCHBERT_UNAVAILABLE",
                         "distributed: this build of torchbert has no Gloo process group (it was compiled without Gloo's headers; install libgloo-dev or a "
                         "libtorch that ships them, and rebuild)");
}

#endif

}  // namespace

void InitDistributed(Napi::Env env, Napi::Object exports) {
#ifdef TORCHBERT_HAVE_GLOO
  Export<Init>(exports, "distInit");
  Export<NewGroup>(exports, "distNewGroup");
  Export<Destroy>(exports, "distDestroy");
  Export<Info>(exports, "distInfo");
  Export<AllReduce>(exports, "distAllReduce");
  Export<Broadcast>(exports, "distBroadcast");
  Export<AllGather>(exports, "distAllGather");
  Export<ReduceScatter>(exports, "distReduceScatter");
  Export<Gather>(exports, "distGather");
  Export<Scatter>(exports, "distScatter");
  Export<Send>(exports, "distSend");
  Export<Recv>(exports, "distRecv");
  Export<Barrier>(exports, "distBarrier");
  Export<DdpCreate>(exports, "ddpCreate");
  Export<DdpPrepareForward>(exports, "ddpPrepareForward");
  Export<DdpPrepareBackward>(exports, "ddpPrepareBackward");
  Export<DdpDestroy>(exports, "ddpDestroy");
#else
  exports.Set("distInfo", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("available", false);
    o.Set("nccl", false);
    o.Set("initialized", false);
    return o;
  }));
  for (const char* name : {"distInit", "distNewGroup", "distDestroy", "distAllReduce", "distBroadcast", "distAllGather", "distReduceScatter", "distGather", "distScatter",
                           "distSend", "distRecv", "distBarrier", "ddpCreate", "ddpPrepareForward", "ddpPrepareBackward", "ddpDestroy"})
    exports.Set(name, Napi::Function::New<Guarded<Unavailable>>(env));
#endif
}

}  // namespace torchbert
