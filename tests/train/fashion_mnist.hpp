// Debian's Fashion-MNIST for the training tests, cut to a subset.
#pragma once

#include <doctest/doctest.h>

#include "ckpt/train/dataset.hpp"

namespace ckpt::testing {

struct TrainTestData {
  train::Dataset train;
  train::Dataset test;
};

// The first `train_samples` and `test_samples`; fails the test when the
// dataset-fashion-mnist package is missing.
inline TrainTestData load_fashion_mnist(std::size_t train_samples, std::size_t test_samples) {
  const std::string dir(train::kDefaultDataDir);
  auto train = train::load_mnist(dir, train::Split::kTrain);
  auto test = train::load_mnist(dir, train::Split::kTest);
  REQUIRE_MESSAGE(train.ok(), "install dataset-fashion-mnist (scripts/install-deps.sh)");
  REQUIRE(test.ok());
  return {train->head(train_samples), test->head(test_samples)};
}

}  // namespace ckpt::testing
