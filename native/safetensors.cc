// Bulk data of safetensors files. The TS side parses and validates the JSON header; this side re-checks
// every range against the real file size and dtype/shape before reading, so a hostile header can
// never cause an out-of-bounds read. Reads and writes run on worker threads. A read may instead map the
// file (mmap), as safetensors' safe_open and torch.load(mmap=True) do.
#include <ATen/ATen.h>

#include <cstdio>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "async.h"
#include "errors.h"
#include "ops.h"
#include "tensor.h"

namespace torchbert {

namespace {

struct Entry {
  c10::ScalarType dtype;
  std::vector<int64_t> shape;
  uint64_t begin, end;
  bool by_rows = false;  // mapped: paged in one page at a time as rows are looked up (an embedding table)
};

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

void ReadFully(int fd, uint8_t* dst, uint64_t n, uint64_t offset, const std::string& path) {
  while (n > 0) {
    ssize_t r = ::pread(fd, dst, n > (1u << 30) ? (1u << 30) : n, static_cast<off_t>(offset));
    if (r <= 0) throw CodedError("TORCHBERT_IO_ERROR", path + ": unexpected end of file or read error");
    dst += r;
    n -= static_cast<uint64_t>(r);
    offset += static_cast<uint64_t>(r);
  }
}

// Tensors smaller than this are read: a mapping costs a syscall and at least a page.
constexpr uint64_t kMinMappedBytes = 64 << 10;

// A private mapping of the tensor's bytes: pages are read from the page cache when first touched, count
// as the file's (shared by every process that maps it) while only read, and are copied on a first write,
// which never reaches the file. Each tensor has its own mapping, unmapped when its storage is freed, so a
// weight that is consumed (prepack) leaves nothing behind. Undefined when the bytes are misaligned for the
// dtype or the kernel refuses; the caller reads instead.
// By rows (entries flagged byRows: embedding tables): no readahead, and the page cache's copies of the range
// that no process maps are dropped, so a first touch reads one page and the kernel's fault-around (which
// maps every cached page near a fault) finds nothing more to map: the process keeps resident the rows it
// looked up, whatever the cache held before. Advice only: where the kernel ignores it, pages come as usual.
at::Tensor MapTensor(int fd, uint64_t offset, const Entry& e, uint64_t bytes) {
  static const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  if (offset % c10::elementSize(e.dtype) != 0) return {};
  uint64_t base = offset - offset % page;
  size_t len = static_cast<size_t>(bytes + (offset - base));
  void* p = ::mmap(nullptr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, static_cast<off_t>(base));
  if (p == MAP_FAILED) return {};
  if (e.by_rows) {
    ::madvise(p, len, MADV_RANDOM);
    ::posix_fadvise(fd, static_cast<off_t>(base), static_cast<off_t>(len), POSIX_FADV_DONTNEED);
  }
  return at::from_blob(
      static_cast<uint8_t*>(p) + (offset - base), e.shape, [p, len](void*) { ::munmap(p, len); },
      at::TensorOptions().dtype(e.dtype));
}

std::vector<at::Tensor> ReadTensors(const std::string& path, uint64_t data_start, const std::vector<Entry>& entries,
                                    std::optional<c10::Device> device, bool map) {
  Fd f;
  f.fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (f.fd < 0) throw CodedError("TORCHBERT_IO_ERROR", path + ": cannot open file");
  struct stat st;
  if (::fstat(f.fd, &st) != 0) throw CodedError("TORCHBERT_IO_ERROR", path + ": cannot stat file");
  uint64_t size = static_cast<uint64_t>(st.st_size);
  if (data_start > size) throw std::out_of_range(path + ": header extends past the end of the file");
  std::vector<at::Tensor> out;
  out.reserve(entries.size());
  for (size_t i = 0; i < entries.size(); i++) {
    const Entry& e = entries[i];
    uint64_t numel = 1;
    for (int64_t d : e.shape) {
      if (d < 0 || (d > 0 && numel > UINT64_MAX / static_cast<uint64_t>(d))) throw std::out_of_range(path + ": invalid shape");
      numel *= static_cast<uint64_t>(d);
    }
    uint64_t want = numel * c10::elementSize(e.dtype);
    if (e.end < e.begin || e.end - e.begin != want || e.end > size - data_start)
      throw std::out_of_range(path + ": tensor " + std::to_string(i) + " has data offsets outside the file or not matching its shape");
    at::Tensor t;
    if (map && want >= kMinMappedBytes && (!device || device->is_cpu())) t = MapTensor(f.fd, data_start + e.begin, e, want);
    if (t.defined()) {
      out.push_back(std::move(t));
      continue;
    }
    t = at::empty(e.shape, at::TensorOptions().dtype(e.dtype));
    if (want) ReadFully(f.fd, static_cast<uint8_t*>(t.data_ptr()), want, data_start + e.begin, path);
    if (device && *device != t.device()) t = t.to(*device);
    out.push_back(std::move(t));
  }
  return out;
}

void WriteTensors(const std::string& path, const std::vector<uint8_t>& header, const std::vector<at::Tensor>& tensors) {
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) throw CodedError("TORCHBERT_IO_ERROR", path + ": cannot open for writing");
  auto fail = [&](const char* what) {
    std::fclose(f);
    throw CodedError("TORCHBERT_IO_ERROR", path + ": " + what);
  };
  if (std::fwrite(header.data(), 1, header.size(), f) != header.size()) fail("write failed");
  for (const at::Tensor& t : tensors) {
    at::Tensor c = t.detach().to(at::kCPU).contiguous();
    size_t n = c.numel() * c.element_size();
    if (n && std::fwrite(c.data_ptr(), 1, n, f) != n) fail("write failed");
  }
  if (std::fflush(f) != 0 || ::fsync(fileno(f)) != 0) fail("flush failed");
  if (std::fclose(f) != 0) throw CodedError("TORCHBERT_IO_ERROR", path + ": close failed");
}

std::vector<Entry> ParseEntries(Napi::Env env, const Napi::Value& v) {
  if (!v.IsArray()) ThrowType(env, "entries must be an array");
  Napi::Array a = v.As<Napi::Array>();
  std::vector<Entry> out;
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Object o = a.Get(i).As<Napi::Object>();
    Entry e;
    e.dtype = ParseDtype(env, o.Get("dtype").ToString().Utf8Value());
    Napi::Array s = o.Get("shape").As<Napi::Array>();
    for (uint32_t j = 0; j < s.Length(); j++) e.shape.push_back(static_cast<int64_t>(s.Get(j).ToNumber().DoubleValue()));
    double b = o.Get("begin").ToNumber().DoubleValue(), en = o.Get("end").ToNumber().DoubleValue();
    if (!(b >= 0) || !(en >= 0)) ThrowRange(env, "entry offsets must be non-negative");
    e.begin = static_cast<uint64_t>(b);
    e.end = static_cast<uint64_t>(en);
    e.by_rows = o.Get("byRows").ToBoolean().Value();
    out.push_back(std::move(e));
  }
  return out;
}

Napi::Value TensorArray(Napi::Env env, const std::vector<at::Tensor>& ts) {
  Napi::Array a = Napi::Array::New(env, ts.size());
  for (size_t i = 0; i < ts.size(); i++) a.Set(i, tensors::Put(env, ts[i]));
  return a;
}

class ReadWorker : public TorchWorker {
 public:
  ReadWorker(Napi::Env env, std::string path, uint64_t start, std::vector<Entry> entries, std::optional<c10::Device> dev, bool map)
      : TorchWorker(env, /*compute=*/false), path_(std::move(path)), start_(start), entries_(std::move(entries)), dev_(dev), map_(map) {}
  void Run() override { out_ = ReadTensors(path_, start_, entries_, dev_, map_); }
  Napi::Value Result(Napi::Env env) override { return TensorArray(env, out_); }

 private:
  std::string path_;
  uint64_t start_;
  std::vector<Entry> entries_;
  std::optional<c10::Device> dev_;
  bool map_;
  std::vector<at::Tensor> out_;
};

class WriteWorker : public TorchWorker {
 public:
  WriteWorker(Napi::Env env, std::string path, std::vector<uint8_t> header, std::vector<at::Tensor> ts)
      : TorchWorker(env, /*compute=*/false), path_(std::move(path)), header_(std::move(header)), ts_(std::move(ts)) {}
  void Run() override { WriteTensors(path_, header_, ts_); }
  Napi::Value Result(Napi::Env env) override { return env.Undefined(); }

 private:
  std::string path_;
  std::vector<uint8_t> header_;
  std::vector<at::Tensor> ts_;
};

// readTensors(path, dataStart, entries, device?, async, mmap?)
Napi::Value ReadTensorsJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) ThrowType(env, "path must be a string");
  std::string path = info[0].As<Napi::String>().Utf8Value();
  double start = info[1].ToNumber().DoubleValue();
  if (!(start >= 0)) ThrowRange(env, "dataStart must be non-negative");
  std::vector<Entry> entries = ParseEntries(env, info[2]);
  std::optional<c10::Device> dev;
  if (info[3].IsString()) dev = ParseDevice(env, info[3].As<Napi::String>().Utf8Value());
  bool map = info[5].ToBoolean().Value();
  if (info[4].ToBoolean().Value()) return (new ReadWorker(env, path, static_cast<uint64_t>(start), std::move(entries), dev, map))->Start();
  return TensorArray(env, ReadTensors(path, static_cast<uint64_t>(start), entries, dev, map));
}

// writeTensors(path, headerBytes, tensors, async)
Napi::Value WriteTensorsJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString()) ThrowType(env, "path must be a string");
  if (!info[1].IsTypedArray()) ThrowType(env, "header must be a Uint8Array");
  Napi::Uint8Array h = info[1].As<Napi::Uint8Array>();
  std::vector<uint8_t> header(h.Data(), h.Data() + h.ByteLength());
  if (!info[2].IsArray()) ThrowType(env, "tensors must be an array");
  Napi::Array a = info[2].As<Napi::Array>();
  std::vector<at::Tensor> ts;
  for (uint32_t i = 0; i < a.Length(); i++) ts.push_back(tensors::Get(a.Get(i), "tensors[i]"));
  std::string path = info[0].As<Napi::String>().Utf8Value();
  if (info[3].ToBoolean().Value()) return (new WriteWorker(env, path, std::move(header), std::move(ts)))->Start();
  WriteTensors(path, header, ts);
  return env.Undefined();
}

}  // namespace

void InitSafetensors(Napi::Env env, Napi::Object exports) {
  Export<ReadTensorsJs>(exports, "readTensors");
  Export<WriteTensorsJs>(exports, "writeTensors");
}

}  // namespace torchbert
