// A bounded multi-producer, single-consumer queue between capture threads and the session thread.
// Two overflow policies: Block (the producer waits: audio is never dropped) and DropOldest (video:
// the stalest frame goes, and the drop is counted). Capacity is fixed; the deque never grows past it.
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <optional>

namespace conflux {

enum class OverflowPolicy { Block, DropOldest };

template <class T>
class BoundedQueue {
 public:
  BoundedQueue(size_t capacity, OverflowPolicy policy) : capacity_(capacity), policy_(policy) {}

  // Returns false only if the queue was closed.
  bool push(T item) {
    std::unique_lock<std::mutex> lock(mu_);
    if (policy_ == OverflowPolicy::Block) {
      not_full_.wait(lock, [&] { return closed_ || items_.size() < capacity_; });
    } else if (items_.size() >= capacity_) {
      items_.pop_front();
      dropped_.fetch_add(1, std::memory_order_relaxed);
    }
    if (closed_) return false;
    items_.push_back(std::move(item));
    high_water_ = std::max(high_water_, items_.size());
    return true;
  }

  std::optional<T> try_pop() {
    std::unique_lock<std::mutex> lock(mu_);
    if (items_.empty()) return std::nullopt;
    T item = std::move(items_.front());
    items_.pop_front();
    lock.unlock();
    not_full_.notify_one();
    return item;
  }

  // Wakes blocked producers and makes later pushes fail.
  void close() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      closed_ = true;
    }
    not_full_.notify_all();
  }
  size_t size() const {
    std::lock_guard<std::mutex> lock(mu_);
    return items_.size();
  }
  size_t high_water() const {
    std::lock_guard<std::mutex> lock(mu_);
    return high_water_;
  }
  size_t capacity() const { return capacity_; }
  uint64_t dropped() const { return dropped_.load(std::memory_order_relaxed); }

 private:
  const size_t capacity_;
  const OverflowPolicy policy_;
  mutable std::mutex mu_;
  std::condition_variable not_full_;
  std::deque<T> items_;
  size_t high_water_ = 0;
  bool closed_ = false;
  std::atomic<uint64_t> dropped_{0};
};

}  // namespace conflux
