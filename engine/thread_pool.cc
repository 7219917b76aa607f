// Persistent thread pool: a generation counter announces each parallel region; workers spin on it for a
// short while, then sleep on a condition variable; tasks are claimed with an atomic counter.
#include "engine/thread_pool.h"

#include <immintrin.h>

namespace conflux {

namespace {
// Polls of the generation counter before a worker sleeps: ~50 us at a few ns per pause, longer than the
// gap between two regions of one decode step, far shorter than the gap between tokens of a slow model.
constexpr int kSpinPolls = 20000;
}  // namespace

ThreadPool::ThreadPool(int n_threads) {
  if (n_threads <= 0) n_threads = int(std::max(1u, std::thread::hardware_concurrency()));
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

void ThreadPool::drain(int thread) {
  for (;;) {
    const int task = next_task_.fetch_add(1, std::memory_order_relaxed);
    if (task >= n_tasks_) return;
    (*job_)(task, thread);
  }
}

void ThreadPool::run(int n_tasks, TaskRef fn) {
  if (n_tasks <= 0) return;
  if (workers_.empty() || n_tasks == 1) {
    for (int t = 0; t < n_tasks; ++t) fn(t, 0);
    return;
  }
  job_ = &fn;
  n_tasks_ = n_tasks;
  next_task_.store(0, std::memory_order_relaxed);
  busy_workers_.store(int(workers_.size()), std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_seq_cst);  // publishes the job to spinning workers
  if (sleepers_.load(std::memory_order_seq_cst) > 0) {
    std::lock_guard<std::mutex> lock(mu_);
    wake_.notify_all();
  }
  drain(0);
  while (busy_workers_.load(std::memory_order_acquire) != 0) _mm_pause();
  job_ = nullptr;
}

void ThreadPool::worker_main(int thread) {
  uint64_t seen = 0;
  for (;;) {
    uint64_t now = generation_.load(std::memory_order_acquire);
    for (int i = 0; now == seen && i < kSpinPolls && !stop_.load(std::memory_order_relaxed); ++i) {
      _mm_pause();
      now = generation_.load(std::memory_order_acquire);
    }
    if (now == seen) {
      std::unique_lock<std::mutex> lock(mu_);
      sleepers_.fetch_add(1, std::memory_order_seq_cst);
      // Re-checked after announcing the sleep: a region published before the announcement is seen here,
      // one published after it finds sleepers_ > 0 and notifies under the lock.
      wake_.wait(lock, [&] { return stop_.load() || generation_.load(std::memory_order_seq_cst) != seen; });
      sleepers_.fetch_sub(1, std::memory_order_relaxed);
      if (stop_.load()) return;
      now = generation_.load(std::memory_order_acquire);
    }
    if (stop_.load(std::memory_order_relaxed)) return;
    seen = now;
    drain(thread);
    busy_workers_.fetch_sub(1, std::memory_order_release);
  }
}

}  // namespace conflux
