// Persistent thread pool: a generation counter announces each parallel region; workers spin on it for a
// short while, then sleep on a condition variable; tasks are claimed from per-thread shares with
// generation-checked tickets.
#include "engine/thread_pool.h"

#include <immintrin.h>

#include <stdexcept>
#include <string>

namespace conflux {

namespace {
// Polls of the generation counter before a worker sleeps: a few microseconds, about the gap between
// two regions of one decode step. Longer spinning steals the core from capture threads when the
// machine is busy (the worker then competes with GStreamer and PortAudio for two cores).
constexpr int kSpinPolls = 2000;
// Pause-polls of the completion count before the caller starts yielding its time slice.
constexpr int kCallerSpinPolls = 4000;

// Ticket fields: the region's generation (its low 24 bits), the next task (20 bits), the share's end
// (20 bits). The caller starts a region only when every task of the last one is done, so an old
// region's shares are all used up (next == end) and cannot be claimed from; the generation also keeps a
// worker that is still on the old region out of the shares being set up for the new one.
constexpr int kTaskBits = 20;
constexpr uint64_t kTaskMask = (uint64_t(1) << kTaskBits) - 1;
constexpr uint32_t kGenerationMask = (1u << 24) - 1;
uint64_t make_ticket(uint32_t generation, uint32_t next, uint32_t end) {
  return (uint64_t(generation & kGenerationMask) << (2 * kTaskBits)) | (uint64_t(next) << kTaskBits) | end;
}
}  // namespace

ThreadPool::ThreadPool(int n_threads) {
  if (n_threads <= 0) n_threads = int(std::max(1u, std::thread::hardware_concurrency()));
  lanes_ = std::make_unique<Lane[]>(size_t(n_threads));
  for (int i = 1; i < n_threads; ++i) workers_.emplace_back([this, i] { worker_main(i); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& t : workers_) t.join();
}

bool ThreadPool::claim(Lane& lane, uint32_t generation, int& task) {
  uint64_t t = lane.ticket.load(std::memory_order_acquire);
  for (;;) {
    const uint32_t next = uint32_t((t >> kTaskBits) & kTaskMask), end = uint32_t(t & kTaskMask);
    if (uint32_t(t >> (2 * kTaskBits)) != (generation & kGenerationMask) || next >= end) return false;
    if (lane.ticket.compare_exchange_weak(t, t + (uint64_t(1) << kTaskBits), std::memory_order_acq_rel)) {
      task = int(next);
      return true;
    }
  }
}

void ThreadPool::drain(uint32_t generation, int thread) {
  // Finished tasks are reported once, on the way out: one contended atomic per thread and region
  // instead of one per task (on the bench machines a contended cache line costs ~0.2 us, which
  // added up to a third of a small decode matmul).
  int finished = 0;
  const int n = size();
  // Own share first, front to back: consecutive tasks are adjacent rows of a matrix, one stream for the
  // hardware prefetcher (handing tasks out round-robin across threads instead, with 4 tasks per thread,
  // left the 270M's q8 decode with 2 threads at 111 tok/s against 129 for one task per thread). Then the
  // rest of the other shares.
  for (int k = 0; k < n; ++k) {
    Lane& lane = lanes_[size_t((thread + k) % n)];
    // The region cannot change while a claimed task is unreported: the caller waits for done_.
    for (int task; claim(lane, generation, task); ++finished) (*job_.load(std::memory_order_acquire))(task, thread);
  }
  if (finished > 0) done_.fetch_add(finished, std::memory_order_release);
}

void ThreadPool::run(int n_tasks, TaskRef fn) {
  if (n_tasks <= 0) return;
  if (workers_.empty() || n_tasks == 1) {
    for (int t = 0; t < n_tasks; ++t) fn(t, 0);
    return;
  }
  if (n_tasks >= kMaxTasks)
    throw std::invalid_argument("ThreadPool: " + std::to_string(n_tasks) + " tasks in one region, at most " +
                                std::to_string(kMaxTasks - 1));
  const uint32_t generation = generation_.load(std::memory_order_relaxed) + 1;
  job_.store(&fn, std::memory_order_relaxed);
  done_.store(0, std::memory_order_relaxed);
  const int n = size();
  for (int i = 0; i < n; ++i)  // share i: tasks [i·n_tasks/n, (i+1)·n_tasks/n)
    lanes_[size_t(i)].ticket.store(
        make_ticket(generation, uint32_t(int64_t(i) * n_tasks / n), uint32_t(int64_t(i + 1) * n_tasks / n)),
        std::memory_order_release);
  generation_.store(generation, std::memory_order_seq_cst);  // wakes spinning workers
  if (sleepers_.load(std::memory_order_seq_cst) > 0) {
    std::lock_guard<std::mutex> lock(mu_);
    wake_.notify_all();
  }
  drain(generation, 0);
  for (int polls = 0; done_.load(std::memory_order_acquire) != n_tasks; ++polls) {
    if (polls < kCallerSpinPolls) _mm_pause();
    else std::this_thread::yield();  // a worker holds a task but lost its core: let it run
  }
}

// A hint: a worker that announces its sleep just after the check below is woken by the region itself, as
// always.
void ThreadPool::wake_workers() {
  if (sleepers_.load(std::memory_order_seq_cst) == 0) return;
  std::lock_guard<std::mutex> lock(mu_);
  nudges_.fetch_add(1, std::memory_order_relaxed);
  wake_.notify_all();
}

void ThreadPool::worker_main(int thread) {
  uint32_t seen = 0;
  for (;;) {
    uint32_t now = generation_.load(std::memory_order_acquire);
    for (int i = 0; now == seen && i < kSpinPolls && !stop_.load(std::memory_order_relaxed); ++i) {
      _mm_pause();
      now = generation_.load(std::memory_order_acquire);
    }
    if (now == seen) {
      std::unique_lock<std::mutex> lock(mu_);
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      // Re-checked after announcing the sleep: a region published before the announcement is seen here,
      // one published after it finds sleepers_ > 0 and notifies under the lock.
      const uint32_t nudged = nudges_.load(std::memory_order_relaxed);
      wake_.wait(lock, [&] {
        return stop_.load() || generation_.load(std::memory_order_seq_cst) != seen ||
               nudges_.load(std::memory_order_relaxed) != nudged;
      });
      sleepers_.fetch_sub(1, std::memory_order_relaxed);
      wakeups_.fetch_add(1, std::memory_order_release);
      now = generation_.load(std::memory_order_acquire);
    }
    if (stop_.load(std::memory_order_relaxed)) return;
    if (now == seen) continue;  // woken ahead of a region (wake_workers): spin for it
    seen = now;
    drain(now, thread);
  }
}

}  // namespace conflux
