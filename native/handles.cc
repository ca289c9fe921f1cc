// The tensor handle table: each JS handle names a slot owning an at::Tensor (tensor.h), with per-device
// accounting of live tensors and bytes, and V8 told about CPU bytes so that GC pressure follows them.
// Process-global and used from one JS thread only: addon.cc refuses a second thread's load.
#include <c10/util/flat_hash_map.h>

#include <cmath>
#include <map>
#include <stdexcept>
#include <vector>

#include "errors.h"
#include "tensor.h"

namespace torchbert {

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
    if (slots.size() >= static_cast<size_t>(kSlots)) throw CodedError("TORCHBERT_TOO_MANY_TENSORS", "too many live tensors (2^26); dispose some");
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

const at::Tensor* TryGet(const Napi::Value& v) {
  Slot* s = Find(v);
  return s && s->live ? &s->t : nullptr;
}

const at::Tensor& Get(const Napi::Value& v, const char* what) {
  if (const at::Tensor* t = TryGet(v)) return *t;
  if (v.IsNumber() || v.IsBigInt()) ThrowDisposed(v.Env(), std::string(what) + ": Tensor has been disposed");
  ThrowType(v.Env(), std::string(what) + " must be a Tensor");
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

// Frees every live tensor (the JS thread that owned them is going away).
void ReleaseAll(Napi::Env env) {
  for (Slot& s : slots) {
    if (!s.live) continue;
    Track(env, s.t, -1);
    s.t = at::Tensor();
    s.live = false;
    free_slots.push_back(static_cast<uint32_t>(&s - slots.data()));
  }
}

void InitHandles(Napi::Env env, Napi::Object exports) {
  Export<tensors::Release>(exports, "release");
  Export<tensors::Memory>(exports, "memory");
}
}  // namespace tensors

}  // namespace torchbert
