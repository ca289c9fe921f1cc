// A choice between two implementations of one computation, made on the running machine from its first
// calls (as cuDNN's benchmark mode picks convolution algorithms): per key (a shape bucket), the first
// calls alternate between the two and time them (after one untimed call of each), then the one with the
// better best time is kept. Used by
// torchbert::linear's GEMMs (linear.cc) and torchbert::attention (attention.cc).
#pragma once
#include <ATen/ATen.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

namespace torchbert {

template <class Key>
class OnlineChoice {
 public:
  static constexpr int kTrials = 3;

  // Runs f(second) with the implementation to use now (second: the second candidate), timing it while
  // the key is still on trial; `work` scales the time into a rate comparable across a bucket's shapes.
  template <class F>
  at::Tensor Run(const Key& key, double work, F&& f) {
    bool second;
    {
      std::lock_guard<std::mutex> lock(mu_);
      Entry& e = entries_[key];
      if (e.choice >= 0) return f(e.choice == 1);
      second = e.trials[1] < e.trials[0];  // alternate, the first candidate first
    }
    const auto t0 = std::chrono::steady_clock::now();
    at::Tensor out = f(second);
    const double per = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / work;
    std::lock_guard<std::mutex> lock(mu_);
    Entry& e = entries_[key];
    const int i = second ? 1 : 0;
    const int trial = e.trials[i]++;
    if (trial < 0) return out;  // a candidate's first call (its setup, cold caches) is not timed
    e.best[i] = trial == 0 ? per : std::min(e.best[i], per);
    if (e.choice < 0 && e.trials[0] >= kTrials && e.trials[1] >= kTrials) e.choice = e.best[1] < e.best[0] ? 1 : 0;
    return out;
  }

  struct Entry {
    int trials[2] = {-1, -1};  // from -1: the first call of each is a warm-up
    double best[2] = {0, 0};  // seconds per unit of work
    int choice = -1;          // -1 still on trial
  };
  std::vector<std::pair<Key, Entry>> Snapshot() {
    std::lock_guard<std::mutex> lock(mu_);
    return {entries_.begin(), entries_.end()};
  }

 private:
  std::mutex mu_;
  std::map<Key, Entry> entries_;
};

}  // namespace torchbert
