// The one thread that runs libtorch's parallel work (compute.cc says why).
#pragma once
#include <functional>

namespace torchbert {

// Runs fn on the compute thread under the caller's thread-local state (grad mode, autocast, profiler)
// and waits for it; inline when called there. fn's exception is rethrown to the caller.
void RunOnComputeThread(const std::function<void()>& fn);
// False when TORCHBERT_COMPUTE_THREAD=0: jobs run on libuv's pool threads, concurrently.
bool ComputeThreadEnabled();
// Queues job on the compute thread and returns at once; job must not throw.
void PostToComputeThread(std::function<void()> job);
// The intra-op thread count the compute thread runs with (tb.setNumThreads; libtorch's default at load).
int IntraOpThreads();
// Sets it; the main thread keeps one. Main thread only.
void SetIntraOpThreads(int n);
// Gives the calling thread that count (the pool route, TORCHBERT_COMPUTE_THREAD=0).
void UseIntraOpThreadsHere();
// Makes the calling (libuv pool) thread run its parallel ops on itself alone.
void SingleThreadedHere();
// TorchScript's graph-executor optimisation switch is thread-local in libtorch: the process-wide value
// (tb.setGraphExecutorOptimize, main thread) is applied on whichever thread runs a job. Returns the previous.
bool SetGraphExecutorOptimize(bool on);
// Gives the calling thread that value.
void UseGraphExecutorOptimizeHere();
// At load, on the main thread.
void InitCompute();

}  // namespace torchbert
