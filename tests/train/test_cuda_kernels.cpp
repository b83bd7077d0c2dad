// Every CUDA kernel against its CPU twin on the same inputs, |gpu − cpu| ≤
// abs_tol + rel_tol·|cpu|. Exits 77 (meson: skipped) when no GPU is usable.
#include "cuda/cuda_backend.hpp"

#include <cmath>
#include <cstdio>
#include <vector>

#include <doctest/doctest.h>

#include "ckpt/train/random.hpp"
#include "ckpt/train/trainer.hpp"
#include "cpu_ops.hpp"

using namespace ckpt::train;

namespace {

Backend* gpu = nullptr;

std::vector<float> random_values(std::size_t count, std::uint64_t seed, float scale = 1.0f) {
  Pcg32 rng(seed, 9);
  std::vector<float> values(count);
  for (float& value : values) value = rng.next_uniform(-scale, scale);
  return values;
}

std::vector<std::int32_t> random_labels(std::size_t count, std::int32_t classes) {
  Pcg32 rng(77, 9);
  std::vector<std::int32_t> labels(count);
  for (auto& label : labels) label = static_cast<std::int32_t>(rng.next_below(static_cast<std::uint32_t>(classes)));
  return labels;
}

template <class T>
DeviceArray<T> to_gpu(const std::vector<T>& host) {
  auto array = gpu->allocate<T>(host.size());
  REQUIRE(array.ok());
  REQUIRE(gpu->upload(std::span<const T>(host), *array).ok());
  return std::move(*array);
}

template <class T>
std::vector<T> to_host(const DeviceArray<T>& array) {
  std::vector<T> host(array.size());
  REQUIRE(gpu->download(array, std::span<T>(host)).ok());
  return host;
}

void check_close(const char* what, const std::vector<float>& cpu_values, const std::vector<float>& gpu_values,
                 double abs_tol = 1e-5, double rel_tol = 1e-4) {
  REQUIRE(cpu_values.size() == gpu_values.size());
  int mismatches = 0;
  for (std::size_t i = 0; i < cpu_values.size() && mismatches < 10; ++i) {
    const double difference = std::abs(static_cast<double>(cpu_values[i]) - gpu_values[i]);
    if (difference > abs_tol + rel_tol * std::abs(cpu_values[i])) {
      ++mismatches;
      FAIL_CHECK(what << "[" << i << "]: cpu " << cpu_values[i] << ", gpu " << gpu_values[i]);
    }
  }
}

constexpr std::int64_t kBatch = 128;
constexpr std::int64_t kFeatures = 100;
constexpr std::int64_t kClasses = 10;

}  // namespace

TEST_CASE("gemm (cuBLAS) matches the CPU gemm for every transpose combination") {
  constexpr std::int64_t m = kBatch, n = 64, k = 784;
  const auto a = random_values(m * k, 1);
  const auto b = random_values(k * n, 2);
  const auto c0 = random_values(m * n, 3);
  for (const Transpose ta : {Transpose::kNo, Transpose::kYes}) {
    for (const Transpose tb : {Transpose::kNo, Transpose::kYes}) {
      std::vector<float> expected = c0;
      cpu::gemm(ta, tb, m, n, k, 0.5f, a.data(), b.data(), 2.0f, expected.data());
      const auto da = to_gpu(a), db = to_gpu(b), dc = to_gpu(c0);
      REQUIRE(gpu->gemm(ta, tb, m, n, k, 0.5f, da.data(), db.data(), 2.0f, dc.data()).ok());
      check_close("gemm", expected, to_host(dc), 1e-4, 1e-4);
    }
  }
}

TEST_CASE("add_bias_relu, relu_backward and bias_backward match their CPU twins") {
  const auto y0 = random_values(kBatch * kFeatures, 4);
  const auto bias = random_values(kFeatures, 5);
  const auto dy0 = random_values(kBatch * kFeatures, 6);
  for (const bool relu : {false, true}) {
    std::vector<float> expected = y0;
    cpu::add_bias_relu(kBatch, kFeatures, bias.data(), relu, expected.data());
    const auto dy = to_gpu(y0), dbias = to_gpu(bias);
    REQUIRE(gpu->add_bias_relu(kBatch, kFeatures, dbias.data(), relu, dy.data()).ok());
    check_close("add_bias_relu", expected, to_host(dy));
  }
  std::vector<float> y = y0;
  cpu::add_bias_relu(kBatch, kFeatures, bias.data(), true, y.data());
  std::vector<float> expected_dy = dy0;
  cpu::relu_backward(kBatch, kFeatures, y.data(), expected_dy.data());
  const auto gy = to_gpu(y), gdy = to_gpu(dy0);
  REQUIRE(gpu->relu_backward(kBatch, kFeatures, gy.data(), gdy.data()).ok());
  check_close("relu_backward", expected_dy, to_host(gdy), 0.0, 0.0);

  std::vector<float> expected_dbias(kFeatures);
  cpu::bias_backward(kBatch, kFeatures, dy0.data(), expected_dbias.data());
  const auto gdy0 = to_gpu(dy0);
  auto gdbias = gpu->allocate<float>(kFeatures);
  REQUIRE(gdbias.ok());
  REQUIRE(gpu->bias_backward(kBatch, kFeatures, gdy0.data(), gdbias->data()).ok());
  check_close("bias_backward", expected_dbias, to_host(*gdbias));
}

TEST_CASE("softmax cross-entropy forward and backward match their CPU twins") {
  const auto logits = random_values(kBatch * kClasses, 7, 8.0f);
  const auto labels = random_labels(kBatch, kClasses);
  std::vector<float> losses(kBatch), dlogits(logits.size());
  cpu::softmax_cross_entropy_forward(kBatch, kClasses, logits.data(), labels.data(), losses.data());
  cpu::softmax_cross_entropy_backward(kBatch, kClasses, logits.data(), labels.data(), dlogits.data());
  const auto glogits = to_gpu(logits);
  const auto glabels = to_gpu(labels);
  auto glosses = gpu->allocate<float>(kBatch);
  auto gdlogits = gpu->allocate<float>(logits.size());
  REQUIRE(glosses.ok());
  REQUIRE(gdlogits.ok());
  REQUIRE(gpu->softmax_cross_entropy_forward(kBatch, kClasses, glogits.data(), glabels.data(), glosses->data()).ok());
  REQUIRE(gpu->softmax_cross_entropy_backward(kBatch, kClasses, glogits.data(), glabels.data(), gdlogits->data()).ok());
  check_close("losses", losses, to_host(*glosses));
  check_close("dlogits", dlogits, to_host(*gdlogits), 1e-7, 1e-4);
}

TEST_CASE("sgd_update matches its CPU twin with and without momentum") {
  const auto grad = random_values(1000, 8);
  const auto param0 = random_values(1000, 9);
  const auto velocity0 = random_values(1000, 10);
  for (const SgdOptions options : {SgdOptions{0.003f, 0.0f, 0.0f}, SgdOptions{0.1f, 0.9f, 1e-3f}}) {
    std::vector<float> param = param0, velocity = velocity0;
    cpu::sgd_update(1000, options, grad.data(), velocity.data(), param.data());
    const auto ggrad = to_gpu(grad), gparam = to_gpu(param0), gvelocity = to_gpu(velocity0);
    REQUIRE(gpu->sgd_update(1000, options, ggrad.data(), gvelocity.data(), gparam.data()).ok());
    check_close("param", param, to_host(gparam), 1e-7, 1e-6);
    check_close("velocity", velocity, to_host(gvelocity), 1e-7, 1e-6);
  }
}

TEST_CASE("argmax_rows matches its CPU twin, ties included") {
  auto logits = random_values(kBatch * kClasses, 11);
  logits[3] = logits[7] = 5.0f;  // a tie in row 0: the first wins
  std::vector<std::int32_t> expected(kBatch);
  cpu::argmax_rows(kBatch, kClasses, logits.data(), expected.data());
  const auto glogits = to_gpu(logits);
  auto gpredictions = gpu->allocate<std::int32_t>(kBatch);
  REQUIRE(gpredictions.ok());
  REQUIRE(gpu->argmax_rows(kBatch, kClasses, glogits.data(), gpredictions->data()).ok());
  CHECK(to_host(*gpredictions) == expected);
  CHECK(expected[0] == 3);
}

TEST_CASE("one MLP gradient step agrees between the CUDA and CPU backends") {
  auto model = Mlp::create(MlpShape{}, 5);
  REQUIRE(model.ok());
  auto cuda = make_cuda_backend();
  REQUIRE(cuda.ok());
  auto on_gpu = Trainer::create(std::move(*cuda), *model, TrainConfig{});
  auto on_cpu = Trainer::create(make_cpu_backend(), *model, TrainConfig{});
  REQUIRE(on_gpu.ok());
  REQUIRE(on_cpu.ok());
  const auto images = random_values(kBatch * 784, 12);
  const auto labels = random_labels(kBatch, kClasses);
  auto gpu_loss = on_gpu->compute_gradients(images, labels);
  auto cpu_loss = on_cpu->compute_gradients(images, labels);
  REQUIRE(gpu_loss.ok());
  REQUIRE(cpu_loss.ok());
  CHECK(*gpu_loss == doctest::Approx(*cpu_loss).epsilon(1e-5));
  auto gpu_gradients = on_gpu->gradients();
  auto cpu_gradients = on_cpu->gradients();
  REQUIRE(gpu_gradients.ok());
  REQUIRE(cpu_gradients.ok());
  for (std::size_t i = 0; i < cpu_gradients->size(); ++i) {
    check_close(model->parameters()[i].name.c_str(), (*cpu_gradients)[i], (*gpu_gradients)[i], 1e-6, 1e-3);
  }
}

int main(int argc, char** argv) {
  auto backend = make_cuda_backend();
  if (!backend.ok()) {
    std::printf("no usable GPU (%s): skipped\n", backend.error().message().c_str());
    return 77;
  }
  std::printf("%s\n", (*backend)->description().c_str());
  gpu = backend->get();
  return doctest::Context(argc, argv).run();
}
