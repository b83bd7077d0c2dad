#include "ckpt/train/model.hpp"

#include <cmath>

#include <fmt/format.h>

#include "ckpt/train/random.hpp"

namespace ckpt::train {

namespace {
constexpr std::uint64_t kInitStream = 1;
}  // namespace

Result<Mlp> Mlp::create(MlpShape shape, std::uint64_t seed) {
  if (shape.widths.size() < 2) {
    return Error(ErrorCode::kInvalidArgument,
                 fmt::format("MLP widths: expected at least 2 (inputs, outputs), found {}", shape.widths.size()));
  }
  for (const std::int64_t width : shape.widths) {
    if (width <= 0) return Error(ErrorCode::kInvalidArgument, fmt::format("MLP width: expected > 0, found {}", width));
  }

  Pcg32 rng(seed, kInitStream);
  std::vector<Parameter> parameters;
  for (std::size_t layer = 0; layer < shape.layers(); ++layer) {
    const std::int64_t in = shape.widths[layer];
    const std::int64_t out = shape.widths[layer + 1];
    // kaiming_uniform(a=sqrt(5)) on the weight reduces to this same bound.
    const float bound = 1.0f / std::sqrt(static_cast<float>(in));
    const std::string prefix = fmt::format("l{}.", layer + 1);
    Parameter weight{prefix + "weight", {out, in}, std::vector<float>(static_cast<std::size_t>(out * in))};
    Parameter bias{prefix + "bias", {out}, std::vector<float>(static_cast<std::size_t>(out))};
    for (float& value : weight.values) value = rng.next_uniform(-bound, bound);
    for (float& value : bias.values) value = rng.next_uniform(-bound, bound);
    parameters.push_back(std::move(weight));
    parameters.push_back(std::move(bias));
  }
  return Mlp(std::move(shape), std::move(parameters));
}

}  // namespace ckpt::train
