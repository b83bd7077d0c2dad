// The tutorial's MLP, Linear → ReLU → Linear → ReLU → Linear, held on the
// host as named float32 parameters in state_dict order:
//   l1.weight [128, 784], l1.bias [128], l2.weight [64, 128], l2.bias [64],
//   l3.weight [10, 64], l3.bias [10]   (weight is [out, in], as nn.Linear).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ckpt/format/error.hpp"

namespace ckpt::train {

struct Parameter {
  std::string name;                 // "l1.weight"
  std::vector<std::int64_t> shape;  // [out, in] or [out]
  std::vector<float> values;        // row-major
};

// Layer widths from input to output; the tutorial's is {784, 128, 64, 10}.
struct MlpShape {
  std::vector<std::int64_t> widths{784, 128, 64, 10};

  std::size_t layers() const { return widths.size() - 1; }
  std::int64_t inputs() const { return widths.front(); }
  std::int64_t outputs() const { return widths.back(); }
};

class Mlp {
 public:
  // nn.Linear's default initialisation: weight and bias uniform in
  // ±1/sqrt(in_features), drawn in state_dict order from PCG32(seed, stream 1).
  static Result<Mlp> create(MlpShape shape, std::uint64_t seed);

  const MlpShape& shape() const { return shape_; }
  // Two per layer: weight then bias.
  std::vector<Parameter>& parameters() { return parameters_; }
  const std::vector<Parameter>& parameters() const { return parameters_; }
  const Parameter& weight(std::size_t layer) const { return parameters_[2 * layer]; }
  const Parameter& bias(std::size_t layer) const { return parameters_[2 * layer + 1]; }

 private:
  Mlp(MlpShape shape, std::vector<Parameter> parameters)
      : shape_(std::move(shape)), parameters_(std::move(parameters)) {}

  MlpShape shape_;
  std::vector<Parameter> parameters_;
};

}  // namespace ckpt::train
