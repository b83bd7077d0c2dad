#include "ckpt/train/random.hpp"

#include <algorithm>
#include <numeric>
#include <vector>

#include <doctest/doctest.h>

using ckpt::train::Pcg32;

TEST_CASE("PCG32 reproduces the reference generator's output") {
  // pcg32-demo of the reference C implementation: seed 42, sequence 54.
  Pcg32 rng(42, 54);
  const std::vector<std::uint32_t> expected = {0xa15c02b7, 0x7b47f409, 0xba1d3330, 0x83d2f293, 0xbfa4784b, 0xcbed606e};
  for (const std::uint32_t value : expected) CHECK(rng.next_u32() == value);
}

TEST_CASE("a generator restored from its state continues the same sequence") {
  Pcg32 rng(7, 2);
  for (int i = 0; i < 10; ++i) rng.next_u32();
  Pcg32 restored = Pcg32::from_state(rng.state(), rng.increment());
  CHECK(restored == rng);
  for (int i = 0; i < 100; ++i) CHECK(restored.next_u32() == rng.next_u32());
}

TEST_CASE("next_below stays below its bound and reaches every value") {
  Pcg32 rng(1, 1);
  std::vector<int> seen(7, 0);
  for (int i = 0; i < 7000; ++i) {
    const std::uint32_t value = rng.next_below(7);
    REQUIRE(value < 7);
    ++seen[value];
  }
  for (const int count : seen) CHECK(count > 800);  // 1000 expected each
}

TEST_CASE("next_uniform stays in range") {
  Pcg32 rng(3, 1);
  double sum = 0;
  for (int i = 0; i < 10000; ++i) {
    const float value = rng.next_uniform(-0.5f, 0.5f);
    REQUIRE(value >= -0.5f);
    REQUIRE(value <= 0.5f);
    sum += value;
  }
  CHECK(std::abs(sum / 10000) < 0.01);
}

TEST_CASE("shuffle is a seeded permutation") {
  std::vector<std::uint32_t> a(1000);
  std::iota(a.begin(), a.end(), 0U);
  std::vector<std::uint32_t> b = a;
  Pcg32 rng_a(5, 2);
  Pcg32 rng_b(5, 2);
  ckpt::train::shuffle(a, rng_a);
  ckpt::train::shuffle(b, rng_b);
  CHECK(a == b);
  std::vector<std::uint32_t> sorted = a;
  std::sort(sorted.begin(), sorted.end());
  for (std::uint32_t i = 0; i < sorted.size(); ++i) REQUIRE(sorted[i] == i);
  std::size_t fixed_points = 0;
  for (std::uint32_t i = 0; i < a.size(); ++i) fixed_points += a[i] == i ? 1 : 0;
  CHECK(fixed_points < 10);
}
