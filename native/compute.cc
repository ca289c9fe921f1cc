// Why one compute thread: libtorch's intra-op parallelism on Linux is GNU OpenMP, which keeps a team of
// worker threads for every thread that opens parallel regions, and once the process holds more OpenMP
// threads than CPUs it stops spinning between regions (GOMP's throttled spin): each parallel op then
// waits for its workers to wake from a futex. Async jobs used to run on whichever libuv pool thread took
// them, one team each: a bert-base forward at one short sentence ran up to 1.8x slower than on one
// thread (docs/benchmarks.md, "One compute thread").
// So every async job's libtorch work runs here, in order (the main thread hands it over, async.cc), and
// the main thread's own ops (small, sync) run on one thread. TORCHBERT_COMPUTE_THREAD=0 at start-up
// restores the pool: jobs run where libuv puts them, concurrently, each with the intra-op count.
#include "compute.h"

#include <ATen/Parallel.h>
#include <ATen/ThreadLocalState.h>
#include <torch/csrc/jit/runtime/graph_executor.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <exception>
#include <mutex>
#include <string>
#include <thread>

namespace torchbert {

namespace {
struct Queue {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<std::function<void()>> jobs;
  std::thread::id id;
};
// Leaked on purpose: the detached thread may outlive static destructors at exit.
Queue& TheQueue() {
  static Queue* q = new Queue();
  return *q;
}
std::once_flag started;
std::atomic<int> intra_threads{0};
std::atomic<bool> graph_optimize{true};  // libtorch's default

void Loop() {
  Queue& q = TheQueue();
  for (;;) {
    std::function<void()> job;
    {
      std::unique_lock<std::mutex> lock(q.mu);
      q.cv.wait(lock, [&] { return !q.jobs.empty(); });
      job = std::move(q.jobs.front());
      q.jobs.pop_front();
    }
    job();  // jobs catch their own exceptions
  }
}
void Start() {
  std::call_once(started, [] {
    std::thread t(Loop);
    TheQueue().id = t.get_id();
    t.detach();
  });
}
}  // namespace

bool ComputeThreadEnabled() {
  static const bool on = [] {
    const char* v = std::getenv("TORCHBERT_COMPUTE_THREAD");
    return v == nullptr || std::string(v) != "0";
  }();
  return on;
}

void UseIntraOpThreadsHere() {
  const int n = intra_threads.load();
  if (n > 0 && at::get_num_threads() != n) at::set_num_threads(n);
}

void PostToComputeThread(std::function<void()> job) {
  Start();
  Queue& q = TheQueue();
  {
    std::lock_guard<std::mutex> lock(q.mu);
    q.jobs.push_back(std::move(job));
  }
  q.cv.notify_one();
}

bool SetGraphExecutorOptimize(bool on) {
  torch::jit::setGraphExecutorOptimize(on);  // the main thread's own sync calls
  return graph_optimize.exchange(on);
}

void UseGraphExecutorOptimizeHere() {
  const bool on = graph_optimize.load();
  if (torch::jit::getGraphExecutorOptimize() != on) torch::jit::setGraphExecutorOptimize(on);
}

void RunOnComputeThread(const std::function<void()>& fn) {
  if (!ComputeThreadEnabled()) {
    UseIntraOpThreadsHere();
    UseGraphExecutorOptimizeHere();
    fn();
    return;
  }
  Start();
  Queue& q = TheQueue();
  if (std::this_thread::get_id() == q.id) {
    fn();
    return;
  }
  at::ThreadLocalState state;
  std::exception_ptr error;
  bool done = false;
  std::mutex mu;
  std::condition_variable cv;
  PostToComputeThread([&] {
    try {
      at::ThreadLocalStateGuard guard(state);
      UseGraphExecutorOptimizeHere();
      fn();
    } catch (...) {
      error = std::current_exception();
    }
    std::lock_guard<std::mutex> lock(mu);
    done = true;
    cv.notify_one();
  });
  {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait(lock, [&] { return done; });
  }
  if (error) std::rethrow_exception(error);
}

void SingleThreadedHere() {
#ifdef _OPENMP
  // Not at::set_num_threads(1): that also sets the count every thread starts from, which a copy of
  // ATen's inline lazy initialisation compiled into this addon would later apply to the compute thread.
  at::get_num_threads();  // ATen's own lazy initialisation first: it would undo the next line
  omp_set_num_threads(1);
#endif
}

int IntraOpThreads() {
  return intra_threads.load();
}

void SetIntraOpThreads(int n) {
  intra_threads = n;
  if (!ComputeThreadEnabled()) {
    at::set_num_threads(n);
    return;
  }
  // at::set_num_threads sets the calling thread's OpenMP (and MKL) thread count and the count that
  // threads take when they first run a parallel op: the compute thread's call comes last, so that
  // count is n.
  at::set_num_threads(1);
  RunOnComputeThread([n] {
    at::get_num_threads();  // this thread's lazy initialisation first, so that it does not undo the next line
    at::set_num_threads(n);
  });
}

void InitCompute() {
  int n = at::get_num_threads();  // libtorch's default (physical cores, or OMP_NUM_THREADS), and the main thread's initialisation
  SetIntraOpThreads(n);
}

}  // namespace torchbert
