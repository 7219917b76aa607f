// A persistent worker pool for the kernels: threads are created once, woken per parallel region, and
// the calling thread takes a share of the work. No allocation per call. A decode step runs a few hundred
// parallel regions of tens of microseconds each, so workers spin briefly for the next region before
// sleeping on a condition variable, and the caller waits for completion by counting finished tasks
// (it never waits for a worker that has not started, so a descheduled worker costs nothing: the
// caller simply does the tasks itself).
#pragma once
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace conflux {

// Non-owning reference to a callable `void(int task, int thread)`; avoids std::function's allocation.
class TaskRef {
 public:
  template <class F>
  TaskRef(F& f) : obj_(&f), call_([](void* o, int task, int thread) { (*static_cast<F*>(o))(task, thread); }) {}
  void operator()(int task, int thread) const { call_(obj_, task, thread); }

 private:
  void* obj_;
  void (*call_)(void*, int, int);
};

class ThreadPool {
 public:
  // n_threads counts the caller: 1 means everything runs inline. 0 picks hardware_concurrency().
  explicit ThreadPool(int n_threads = 0);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return int(workers_.size()) + 1; }

  // Runs fn(task, thread) for every task in [0, n_tasks); thread is in [0, size()). Returns when all
  // tasks are done. Thread i first runs the i-th contiguous share of the tasks in order (a matmul's
  // share of W is then one sequential stream), then takes the next unclaimed tasks of the other
  // shares, so uneven tasks and a descheduled thread still balance. n_tasks < kMaxTasks.
  static constexpr int kMaxTasks = 1 << 20;

  // Gets sleeping workers up to spin for a region that is about to come. A worker asleep when a region
  // starts takes tens of microseconds to join it (the futex wake-up); the first region of a decode step
  // (after sampling, where the workers had nothing to do) otherwise paid that. Call it before serial
  // work that precedes the region.
  void wake_workers();
  // Workers asleep on the condition variable right now, and how often one has woken up (for tests and
  // diagnostics).
  int sleeping_workers() const { return sleepers_.load(std::memory_order_acquire); }
  uint64_t worker_wakeups() const { return wakeups_.load(std::memory_order_acquire); }
  template <class F>
  void parallel_for(int n_tasks, F&& fn) {
    auto& f = fn;
    run(n_tasks, TaskRef(f));
  }

 private:
  void run(int n_tasks, TaskRef fn);
  void worker_main(int thread);
  // Claims and runs tasks of region `generation` until none is left; returns when the region is
  // exhausted or a newer region has replaced it.
  void drain(uint32_t generation, int thread);

  // One share of a region's tasks: (generation << 40) | (next unclaimed task << 20) | end of the share.
  // A task is claimed by a CAS of the whole word, so a worker that wakes late can never claim a task
  // of another region (its generation differs, or the share it saw is used up).
  struct alignas(64) Lane {
    std::atomic<uint64_t> ticket{0};
  };
  bool claim(Lane& lane, uint32_t generation, int& task);

  std::vector<std::thread> workers_;
  std::unique_ptr<Lane[]> lanes_;  // (size()): lane i is thread i's share
  std::mutex mu_;                        // guards sleeping only
  std::condition_variable wake_;
  // What the caller writes once per region and the workers poll (one cache line), apart from what the
  // workers write (the next line): when done_ shared the line, each worker's report took the line
  // the others were spinning on away from them. An empty region on 2 threads: ~0.70 -> ~0.42 us.
  alignas(64) std::atomic<uint32_t> generation_{0};  // bumped once per parallel region
  std::atomic<TaskRef*> job_{nullptr};
  std::atomic<bool> stop_{false};
  std::atomic<int> sleepers_{0};         // workers blocked on wake_
  std::atomic<uint32_t> nudges_{0};      // bumped by wake_workers (under mu_)
  alignas(64) std::atomic<int> done_{0};  // tasks of the current region finished
  std::atomic<uint64_t> wakeups_{0};     // returns from the condition variable
};

}  // namespace conflux
