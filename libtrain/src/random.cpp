#include "ckpt/train/random.hpp"

#include <utility>

namespace ckpt::train {

namespace {
constexpr std::uint64_t kMultiplier = 6364136223846793005ULL;
}  // namespace

Pcg32::Pcg32(std::uint64_t seed, std::uint64_t stream) : state_(0), increment_((stream << 1U) | 1U) {
  // The reference seeding sequence (pcg32_srandom_r).
  next_u32();
  state_ += seed;
  next_u32();
}

Pcg32 Pcg32::from_state(std::uint64_t state, std::uint64_t increment) {
  Pcg32 rng;
  rng.state_ = state;
  rng.increment_ = increment | 1U;
  return rng;
}

std::uint32_t Pcg32::next_u32() {
  const std::uint64_t old = state_;
  state_ = old * kMultiplier + increment_;
  const auto xorshifted = static_cast<std::uint32_t>(((old >> 18U) ^ old) >> 27U);
  const auto rotation = static_cast<std::uint32_t>(old >> 59U);
  return (xorshifted >> rotation) | (xorshifted << ((32U - rotation) & 31U));
}

std::uint32_t Pcg32::next_below(std::uint32_t bound) {
  // 2^32 mod bound: values below it would make small results more likely.
  const std::uint32_t threshold = (0U - bound) % bound;
  for (;;) {
    const std::uint32_t value = next_u32();
    if (value >= threshold) return value % bound;
  }
}

float Pcg32::next_uniform(float low, float high) {
  const float unit = static_cast<float>(next_u32() >> 8U) * 0x1.0p-24f;
  return low + (high - low) * unit;
}

void shuffle(std::span<std::uint32_t> indices, Pcg32& rng) {
  for (std::size_t i = indices.size(); i > 1; --i) {
    const std::uint32_t j = rng.next_below(static_cast<std::uint32_t>(i));
    std::swap(indices[i - 1], indices[j]);
  }
}

}  // namespace ckpt::train
