// The training's only source of randomness: PCG32 (O'Neill 2014,
// "PCG-XSH-RR 64/32", the reference pcg32_random_r), so a run is reproducible
// from its seed on every platform and its state is two integers that a
// training-state snapshot stores exactly.
#pragma once

#include <cstdint>
#include <span>

namespace ckpt::train {

class Pcg32 {
 public:
  // `stream` selects one of 2^63 independent sequences for the same seed.
  Pcg32(std::uint64_t seed, std::uint64_t stream);

  // Restores a generator from state() and increment() (any odd increment).
  static Pcg32 from_state(std::uint64_t state, std::uint64_t increment);

  std::uint32_t next_u32();
  // Uniform in [0, bound) without modulo bias (rejection below 2^32 mod bound).
  std::uint32_t next_below(std::uint32_t bound);
  // Uniform in [low, high] (24 random bits scaled; rounding may reach `high`).
  float next_uniform(float low, float high);

  std::uint64_t state() const { return state_; }
  std::uint64_t increment() const { return increment_; }

  bool operator==(const Pcg32& other) const = default;

 private:
  Pcg32() = default;
  std::uint64_t state_ = 0;
  std::uint64_t increment_ = 1;
};

// Fisher-Yates shuffle of `indices` driven by `rng`.
void shuffle(std::span<std::uint32_t> indices, Pcg32& rng);

}  // namespace ckpt::train
