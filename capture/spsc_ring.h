// SpscRing: a lock-free single-producer / single-consumer ring buffer of trivially copyable items.
// It is the hand-off between a real-time thread (the PortAudio callback) and an ordinary thread: the
// producer never blocks, never allocates and never takes a lock; when the ring is full a push fails and
// the caller counts the overflow. Exactly one thread may push and exactly one (other) thread may pop/peek.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstring>
#include <memory>
#include <new>
#include <stdexcept>
#include <type_traits>

namespace conflux::capture {

template <typename T>
class SpscRing {
  // Items are moved with memcpy so a bulk push is one or two copies and can never throw mid-way.
  static_assert(std::is_trivially_copyable_v<T>, "SpscRing moves items with memcpy");

 public:
  // Capacity is rounded up to a power of two so an index maps to a slot with a mask instead of a
  // division; the indices themselves run freely and wrap at 2^64, which a power-of-two size survives.
  explicit SpscRing(size_t min_capacity)
      : capacity_(round_up_to_power_of_two(min_capacity)),
        mask_(capacity_ - 1),
        slots_(std::make_unique<T[]>(capacity_)) {}

  SpscRing(const SpscRing&) = delete;
  SpscRing& operator=(const SpscRing&) = delete;

  size_t capacity() const { return capacity_; }

  // ---- producer side -----------------------------------------------------------------------------

  // Room the producer can fill right now (it may only grow until the next push).
  size_t free_space() const {
    const size_t write = write_index_.load(std::memory_order_relaxed);
    const size_t read = read_index_.load(std::memory_order_acquire);
    return capacity_ - (write - read);
  }

  // All-or-nothing bulk push: either all `count` items go in, or none do and false is returned. Keeping
  // a block whole means a consumer never sees half of a device buffer.
  bool push(const T* items, size_t count) {
    const size_t write = write_index_.load(std::memory_order_relaxed);
    if (capacity_ - (write - cached_read_index_) < count) {
      // Only re-read the consumer's index (a cache line the consumer owns) when the cached one says full.
      cached_read_index_ = read_index_.load(std::memory_order_acquire);
      if (capacity_ - (write - cached_read_index_) < count) return false;
    }
    copy_in(write, items, count);
    // Release: the items written above become visible to the consumer together with the new index.
    write_index_.store(write + count, std::memory_order_release);
    return true;
  }

  bool push(const T& item) { return push(&item, 1); }

  // ---- consumer side -----------------------------------------------------------------------------

  // Items available to the consumer right now (it may only grow until the next pop).
  size_t size() const {
    const size_t read = read_index_.load(std::memory_order_relaxed);
    const size_t write = write_index_.load(std::memory_order_acquire);
    return write - read;
  }

  bool empty() const { return size() == 0; }

  // Copies up to `max_count` of the oldest items into `out` without removing them; returns how many.
  size_t peek(T* out, size_t max_count) const {
    const size_t read = read_index_.load(std::memory_order_relaxed);
    const size_t count = std::min(max_count, available_from(read, max_count));
    copy_out(read, out, count);
    return count;
  }

  // Moves up to `max_count` of the oldest items into `out`; returns how many.
  size_t pop(T* out, size_t max_count) {
    const size_t read = read_index_.load(std::memory_order_relaxed);
    const size_t count = std::min(max_count, available_from(read, max_count));
    copy_out(read, out, count);
    // Release: the producer may reuse these slots only after our copy out of them has finished.
    read_index_.store(read + count, std::memory_order_release);
    return count;
  }

  bool pop(T& out) { return pop(&out, 1) == 1; }

  // Drops up to `max_count` of the oldest items; returns how many.
  size_t discard(size_t max_count) {
    const size_t read = read_index_.load(std::memory_order_relaxed);
    const size_t count = std::min(max_count, available_from(read, max_count));
    read_index_.store(read + count, std::memory_order_release);
    return count;
  }

 private:
  static size_t round_up_to_power_of_two(size_t n) {
    if (n == 0) throw std::invalid_argument("SpscRing: capacity must be positive");
    size_t capacity = 1;
    while (capacity < n) {
      if (capacity > (~size_t{0} >> 1)) throw std::invalid_argument("SpscRing: capacity too large");
      capacity <<= 1;
    }
    return capacity;
  }

  // Items readable from `read`, at least `wanted` if the producer has published that many: the shared
  // index (a cache line the producer owns) is only re-read when the cached view falls short.
  size_t available_from(size_t read, size_t wanted) const {
    if (cached_write_index_ - read < wanted) cached_write_index_ = write_index_.load(std::memory_order_acquire);
    return cached_write_index_ - read;
  }

  // A run of `count` items starting at free-running index `first` is at most two contiguous pieces.
  void copy_in(size_t first, const T* items, size_t count) {
    const size_t offset = first & mask_;
    const size_t head = std::min(count, capacity_ - offset);
    std::memcpy(&slots_[offset], items, head * sizeof(T));
    std::memcpy(&slots_[0], items + head, (count - head) * sizeof(T));
  }

  void copy_out(size_t first, T* out, size_t count) const {
    const size_t offset = first & mask_;
    const size_t head = std::min(count, capacity_ - offset);
    std::memcpy(out, &slots_[offset], head * sizeof(T));
    std::memcpy(out + head, &slots_[0], (count - head) * sizeof(T));
  }

  // 64 bytes: the cache-line size of x86-64 and most ARM cores. Keeping each side's index on its own
  // line stops the two threads from invalidating each other's cache on every operation.
  static constexpr size_t kCacheLine = 64;

  const size_t capacity_;
  const size_t mask_;
  const std::unique_ptr<T[]> slots_;

  // Written by the producer only.
  alignas(kCacheLine) std::atomic<size_t> write_index_{0};
  size_t cached_read_index_ = 0;  // producer's possibly stale view of read_index_
  // Written by the consumer only.
  alignas(kCacheLine) std::atomic<size_t> read_index_{0};
  mutable size_t cached_write_index_ = 0;  // consumer's possibly stale view of write_index_
};

}  // namespace conflux::capture
