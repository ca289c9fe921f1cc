// A caching CPU allocator for libtorch tensors, in the spirit of PyTorch's CUDA caching allocator.
//
// glibc's malloc serves tensors of a few MB or more from fresh mmaps (or from per-thread heaps that it
// unmaps when they empty), so every training step pays the kernel to zero the same pages again:
// `perf` showed clear_page_erms among the top symbols of a BERT-base forward. Freed blocks of at least
// kMinCached bytes are kept here for reuse (the smallest that fits, up to half again the size asked for: a
// server's batches vary in shape, and a tighter fit missed a few blocks a batch), up to a byte limit (a quarter
// of physical memory by default, TORCHBERT_CPU_CACHE_MB, or setCpuCacheLimit; past it the blocks freed
// longest ago go first); smaller blocks go straight to c10's allocator. The blocks are mapped and unmapped
// here, not by malloc, so a block the cache lets go returns to the OS at once (glibc would keep it in an
// arena once its mmap threshold has risen). Only libtorch tensors allocated after the addon loads use it.
#include <c10/core/CPUAllocator.h>
#include <c10/core/impl/alloc_cpu.h>
#include <napi.h>
#include <unistd.h>
#if defined(__unix__) || defined(__APPLE__)
#include <sys/mman.h>
#define TORCHBERT_MMAP_BLOCKS 1
#endif

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <unordered_map>
#include <vector>
#if defined(__GLIBC__)
#include <malloc.h>  // malloc_trim
#endif

#include "errors.h"
#include "ops.h"

namespace torchbert {

namespace {

constexpr size_t kMinCached = 256 << 10;
constexpr size_t kPage = 4096;

// Requests round up to one of four sizes per power of two (at most 25% more): tensors whose sizes vary
// from call to call (a server's batches) then reuse each other's blocks instead of each caching its own.
size_t SizeClass(size_t n) {
  size_t pow2 = size_t(1) << (63 - __builtin_clzll(n));
  size_t step = pow2 / 4;
  size_t size = (n + step - 1) / step * step;
  return (size + kPage - 1) / kPage * kPage;
}

class CachingCpuAllocator final : public c10::Allocator {
 public:
  CachingCpuAllocator() {
    const char* env = std::getenv("TORCHBERT_CPU_CACHE_MB");
    if (env && *env) {
      limit_ = static_cast<size_t>(std::strtoull(env, nullptr, 10)) << 20;
    } else {
      long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
      limit_ = pages > 0 && page > 0 ? static_cast<size_t>(pages) * static_cast<size_t>(page) / 4 : size_t(1) << 30;
    }
  }

  c10::DataPtr allocate(size_t n) override {
    if (n < kMinCached) {
      void* p = c10::alloc_cpu(n);
      return {p, p, &c10::free_cpu, c10::Device(c10::DeviceType::CPU)};
    }
    size_t size = SizeClass(n);
    void* p = nullptr;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = free_.lower_bound(size);
      if (it != free_.end() && it->first <= size + size / 2) {
        p = it->second.block;
        size = it->first;
        free_.erase(it);
        cached_ -= size;
        hits_++;
      } else {
        misses_++;
      }
    }
    if (!p) p = AllocFresh(size);
    {
      std::lock_guard<std::mutex> lock(mu_);
      live_[p] = size;
      in_use_ += size;
      peak_ = std::max(peak_, in_use_);
    }
    return {p, p, &Release, c10::Device(c10::DeviceType::CPU)};
  }

  c10::DeleterFnPtr raw_deleter() const override { return &Release; }
  void copy_data(void* dest, const void* src, std::size_t count) const override { default_copy_data(dest, src, count); }

  static void Release(void* p) {
    if (!p) return;
    CachingCpuAllocator& a = Get();
    std::unique_lock<std::mutex> lock(a.mu_);
    auto it = a.live_.find(p);
    if (it == a.live_.end()) {  // a small block from raw_allocate
      lock.unlock();
      c10::free_cpu(p);
      return;
    }
    size_t size = it->second;
    a.live_.erase(it);
    a.in_use_ -= size;
    if (size > a.limit_) {
      lock.unlock();
      FreeBlock(p, size);
      return;
    }
    // Over the limit: the blocks freed longest ago make room (a server's batch shapes drift; the
    // recent ones are the ones the next call will ask for).
    std::vector<std::pair<size_t, void*>> drop;
    while (a.cached_ + size > a.limit_) {
      auto oldest = a.free_.begin();
      for (auto j = a.free_.begin(); j != a.free_.end(); ++j)
        if (j->second.stamp < oldest->second.stamp) oldest = j;
      a.cached_ -= oldest->first;
      drop.emplace_back(oldest->first, oldest->second.block);
      a.free_.erase(oldest);
    }
    a.free_.emplace(size, Cached{p, a.stamp_++});
    a.cached_ += size;
    lock.unlock();
    for (auto& [n, q] : drop) FreeBlock(q, n);
  }

  void EmptyCache() {
    std::multimap<size_t, Cached> blocks;
    {
      std::lock_guard<std::mutex> lock(mu_);
      blocks.swap(free_);
      cached_ = 0;
    }
    for (auto& [size, c] : blocks) FreeBlock(c.block, size);
#if defined(__GLIBC__)
    // glibc keeps freed heap memory (blocks under its mmap threshold, which rises to 32 MB after large
    // frees) in its arenas: hand it back too, or the process's resident size does not fall.
    malloc_trim(0);
#endif
  }

  void SetLimit(size_t bytes) {
    std::multimap<size_t, Cached> drop;
    {
      std::lock_guard<std::mutex> lock(mu_);
      limit_ = bytes;
      while (cached_ > limit_ && !free_.empty()) {  // largest first
        auto it = std::prev(free_.end());
        cached_ -= it->first;
        drop.emplace(it->first, it->second);
        free_.erase(it);
      }
    }
    for (auto& [size, c] : drop) FreeBlock(c.block, size);
  }

  Napi::Object Stats(Napi::Env env) {
    std::lock_guard<std::mutex> lock(mu_);
    Napi::Object o = Napi::Object::New(env);
    o.Set("cachedBytes", static_cast<double>(cached_));
    o.Set("cachedBlocks", static_cast<double>(free_.size()));
    o.Set("limitBytes", static_cast<double>(limit_));
    o.Set("hits", static_cast<double>(hits_));
    o.Set("misses", static_cast<double>(misses_));
    o.Set("inUseBytes", static_cast<double>(in_use_));
    o.Set("peakInUseBytes", static_cast<double>(peak_));
    return o;
  }
  // The peak starts again from what is in use now (a server measures each batch's working set).
  void ResetPeak() {
    std::lock_guard<std::mutex> lock(mu_);
    peak_ = in_use_;
  }

  static CachingCpuAllocator& Get() {
    static auto* a = new CachingCpuAllocator();  // never destroyed: tensors may be freed during exit
    return *a;
  }

 private:
  // Blocks are whole pages (SizeClass), page-aligned, so mmap serves them directly.
  static void* MapBlock(size_t size) {
#ifdef TORCHBERT_MMAP_BLOCKS
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    TORCH_CHECK(p != MAP_FAILED, "DefaultCPUAllocator: can't allocate memory: you tried to allocate ", size, " bytes (mmap failed)");
    return p;
#else
    return c10::alloc_cpu(size);
#endif
  }
  static void FreeBlock(void* p, size_t size) {
#ifdef TORCHBERT_MMAP_BLOCKS
    munmap(p, size);
#else
    (void)size;
    c10::free_cpu(p);
#endif
  }
  void* AllocFresh(size_t size) {
    try {
      return MapBlock(size);
    } catch (const c10::Error&) {
      EmptyCache();  // out of memory: give the cached blocks back and try once more
      return MapBlock(size);
    }
  }

  struct Cached {
    void* block;
    uint64_t stamp;  // when it was freed: the oldest go first past the limit
  };
  std::mutex mu_;
  std::multimap<size_t, Cached> free_;       // size -> block
  std::unordered_map<void*, size_t> live_;   // block -> size, for blocks handed out
  size_t cached_ = 0, limit_ = 0;
  size_t in_use_ = 0, peak_ = 0;  // bytes of the blocks handed out (256 KiB or more), and their peak
  uint64_t hits_ = 0, misses_ = 0, stamp_ = 0;
};

Napi::Value CpuCacheStats(const Napi::CallbackInfo& info) { return CachingCpuAllocator::Get().Stats(info.Env()); }
Napi::Value CpuEmptyCache(const Napi::CallbackInfo& info) {
  CachingCpuAllocator::Get().EmptyCache();
  return info.Env().Undefined();
}
Napi::Value CpuCacheResetPeak(const Napi::CallbackInfo& info) {
  CachingCpuAllocator::Get().ResetPeak();
  return info.Env().Undefined();
}
Napi::Value SetCpuCacheLimit(const Napi::CallbackInfo& info) {
  if (!info[0].IsNumber() || info[0].As<Napi::Number>().DoubleValue() < 0) ThrowType(info.Env(), "cache limit must be a number of bytes >= 0");
  CachingCpuAllocator::Get().SetLimit(static_cast<size_t>(info[0].As<Napi::Number>().DoubleValue()));
  return info.Env().Undefined();
}

}  // namespace

void InitAllocator(Napi::Env env, Napi::Object exports) {
  static std::once_flag once;
  std::call_once(once, [] {
    const char* off = std::getenv("TORCHBERT_CPU_CACHE");
    if (off && std::string(off) == "0") return;
    // Priority above libtorch's default (0). A second copy of the addon (the other build) takes over for
    // new tensors; each copy's blocks go back to the copy that made them (the deleter travels with them).
    c10::SetCPUAllocator(&CachingCpuAllocator::Get(), 10);
  });
  Export<CpuCacheStats>(exports, "cpuCacheStats");
  Export<CpuEmptyCache>(exports, "cpuEmptyCache");
  Export<SetCpuCacheLimit>(exports, "setCpuCacheLimit");
  Export<CpuCacheResetPeak>(exports, "cpuCacheResetPeak");
}

}  // namespace torchbert
