// Counts heap allocations in tests: while g_count_allocations is set, every operator new adds one to
// g_allocation_count. Used to check the real-time rules (no allocation per audio frame, per sampled
// token or per decoded token). Linking tests/support/allocation_counter.cc replaces the global
// operator new for the whole test binary; replacing it is the only portable way to observe this.
#pragma once
#include <atomic>

namespace conflux::testing_support {
extern std::atomic<bool> g_count_allocations;
extern std::atomic<long> g_allocation_count;
}  // namespace conflux::testing_support
