// Persistent thread pool: a generation counter announces each parallel region; workers spin on it for a
// short while, then sleep on a condition variable; tasks are claimed with a generation-checked ticket.
#include "engine/thread_pool.h"

#include <immintrin.h>

namespace conflux {

namespace {
// Polls of the generation counter before a worker sleeps: a few microseconds, about the gap between
// two regions of one decode step. Longer spinning steals the core from capture threads when the
// machine is busy (the worker then competes with GStreamer and PortAudio for two cores).
constexpr int kSpinPolls = 2000;
// Pause-polls of the completion count before the caller starts yielding its time slice.
constexpr int kCallerSpinPolls = 4000;

uint64_t make_ticket(uint32_t generation, uint32_t next) { return (uint64_t(generation) << 32) | next; }
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

void ThreadPool::drain(uint32_t generation, int thread) {
  // Finished tasks are reported once, on the way out: one contended atomic per thread and region
  // instead of one per task (on the bench machines a contended cache line costs ~0.2 us, which
  // added up to a third of a small decode matmul).
  int finished = 0;
  for (;;) {
    uint64_t t = ticket_.load(std::memory_order_acquire);
    if (uint32_t(t >> 32) != generation) break;
    const uint32_t task = uint32_t(t);
    if (int(task) >= n_tasks_.load(std::memory_order_acquire)) break;
    if (!ticket_.compare_exchange_weak(t, t + 1, std::memory_order_acq_rel)) continue;
    // The region cannot change while a claimed task is unreported: the caller waits for done_.
    (*job_.load(std::memory_order_acquire))(int(task), thread);
    ++finished;
  }
  if (finished > 0) done_.fetch_add(finished, std::memory_order_release);
}

void ThreadPool::run(int n_tasks, TaskRef fn) {
  if (n_tasks <= 0) return;
  if (workers_.empty() || n_tasks == 1) {
    for (int t = 0; t < n_tasks; ++t) fn(t, 0);
    return;
  }
  const uint32_t generation = generation_.load(std::memory_order_relaxed) + 1;
  job_.store(&fn, std::memory_order_relaxed);
  n_tasks_.store(n_tasks, std::memory_order_relaxed);
  done_.store(0, std::memory_order_relaxed);
  ticket_.store(make_ticket(generation, 0), std::memory_order_release);
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
      wake_.wait(lock, [&] { return stop_.load() || generation_.load(std::memory_order_seq_cst) != seen; });
      sleepers_.fetch_sub(1, std::memory_order_relaxed);
      now = generation_.load(std::memory_order_acquire);
    }
    if (stop_.load(std::memory_order_relaxed)) return;
    seen = now;
    drain(now, thread);
  }
}

}  // namespace conflux
