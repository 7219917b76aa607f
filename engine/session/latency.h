// Rolling latency statistics: the last N samples of one stage, with p50/p95/p99 on demand.
// Fixed capacity, no allocation after construction; not thread-safe (the session thread owns it and
// publishes copies of the summaries).
#pragma once
#include <algorithm>
#include <cstddef>
#include <vector>

namespace conflux {

struct Percentiles {
  double p50 = 0, p95 = 0, p99 = 0;
  size_t count = 0;  // samples seen in total (not only those in the window)
};

class RollingStat {
 public:
  explicit RollingStat(size_t capacity = 1024) : ring_(capacity), sorted_(capacity) {}
  void add(double v) {
    ring_[next_ % ring_.size()] = v;
    ++next_;
  }
  size_t count() const { return next_; }
  // Nearest-rank percentiles over the samples in the window.
  Percentiles percentiles() {
    Percentiles p;
    p.count = next_;
    const size_t n = std::min(next_, ring_.size());
    if (n == 0) return p;
    std::copy_n(ring_.begin(), n, sorted_.begin());
    std::sort(sorted_.begin(), sorted_.begin() + long(n));
    auto rank = [&](double q) { return sorted_[std::min(n - 1, size_t(q * double(n - 1) + 0.5))]; };
    p.p50 = rank(0.50);
    p.p95 = rank(0.95);
    p.p99 = rank(0.99);
    return p;
  }

 private:
  std::vector<double> ring_;
  std::vector<double> sorted_;
  size_t next_ = 0;
};

}  // namespace conflux
