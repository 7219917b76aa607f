// Seeded random test data shared by the kernel tests.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

namespace conflux::testing_support {

// n values from N(0, std^2), the same for the same seed.
inline std::vector<float> randn(size_t n, uint64_t seed, float std = 1.f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> d(0.f, std);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

}  // namespace conflux::testing_support
