// The global operator new replacement behind allocation_counter.h. The replacements are noinline so
// that GCC does not pair malloc/free with new/delete (-Wmismatched-new-delete).
#include "tests/support/allocation_counter.h"

#include <cstdlib>
#include <new>

namespace conflux::testing_support {
std::atomic<bool> g_count_allocations{false};
std::atomic<long> g_allocation_count{0};
}  // namespace conflux::testing_support

using conflux::testing_support::g_allocation_count;
using conflux::testing_support::g_count_allocations;

[[gnu::noinline]] void* operator new(std::size_t size) {
  if (g_count_allocations.load(std::memory_order_relaxed)) g_allocation_count.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
[[gnu::noinline]] void operator delete(void* p) noexcept { std::free(p); }
[[gnu::noinline]] void operator delete(void* p, std::size_t) noexcept { std::free(p); }
