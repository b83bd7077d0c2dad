// Finite-difference checks of every layer's backward pass on the CPU backend,
// then of the whole MLP through the trainer.
#include "cpu_ops.hpp"

#include <algorithm>
#include <cmath>
#include <functional>
#include <vector>

#include <doctest/doctest.h>

#include "ckpt/train/random.hpp"
#include "ckpt/train/trainer.hpp"

using namespace ckpt::train;

namespace {

std::vector<float> random_values(std::size_t count, std::uint64_t seed, float scale = 1.0f) {
  Pcg32 rng(seed, 9);
  std::vector<float> values(count);
  for (float& value : values) value = rng.next_uniform(-scale, scale);
  return values;
}

// Checks `analytic` against central differences of `loss` in each element of
// `x`: |analytic − numeric| ≤ abs_tol + rel_tol·|numeric|.
void check_gradient(const char* what, std::vector<float>& x, const std::vector<float>& analytic,
                    const std::function<double()>& loss, float step = 1e-2f, double abs_tol = 1e-3,
                    double rel_tol = 1e-2) {
  REQUIRE(x.size() == analytic.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const float saved = x[i];
    x[i] = saved + step;
    const double plus = loss();
    x[i] = saved - step;
    const double minus = loss();
    x[i] = saved;
    const double numeric = (plus - minus) / (2.0 * static_cast<double>(x[i] + step - x[i]));
    INFO(what << " element " << i << ": analytic " << analytic[i] << ", numeric " << numeric);
    CHECK(std::abs(analytic[i] - numeric) <= abs_tol + rel_tol * std::abs(numeric));
  }
}

double weighted_sum(const std::vector<float>& values, const std::vector<float>& weights) {
  double sum = 0;
  for (std::size_t i = 0; i < values.size(); ++i) sum += static_cast<double>(values[i]) * weights[i];
  return sum;
}

constexpr std::int64_t kBatch = 5;

}  // namespace

TEST_CASE("softmax cross-entropy: backward is the gradient of the batch-mean forward") {
  constexpr std::int64_t classes = 4;
  std::vector<float> logits = random_values(kBatch * classes, 1, 3.0f);
  const std::vector<std::int32_t> labels = {0, 3, 1, 1, 2};
  std::vector<float> dlogits(logits.size());
  cpu::softmax_cross_entropy_backward(kBatch, classes, logits.data(), labels.data(), dlogits.data());
  check_gradient("dlogits", logits, dlogits, [&] {
    std::vector<float> losses(kBatch);
    cpu::softmax_cross_entropy_forward(kBatch, classes, logits.data(), labels.data(), losses.data());
    double sum = 0;
    for (const float loss : losses) sum += loss;
    return sum / kBatch;
  });
}

TEST_CASE("softmax cross-entropy forward matches log-softmax by hand, even for large logits") {
  const std::vector<float> logits = {1000.0f, 1001.0f, 999.0f};
  const std::vector<std::int32_t> label = {2};
  float loss = 0;
  cpu::softmax_cross_entropy_forward(1, 3, logits.data(), label.data(), &loss);
  const double expected = std::log(std::exp(-1.0) + 1.0 + std::exp(-2.0)) + 2.0;
  CHECK(loss == doctest::Approx(expected).epsilon(1e-6));
}

TEST_CASE("linear layer: weight, bias and input gradients") {
  constexpr std::int64_t in = 6;
  constexpr std::int64_t out = 3;
  std::vector<float> x = random_values(kBatch * in, 2);
  std::vector<float> weight = random_values(out * in, 3);
  std::vector<float> bias = random_values(out, 4);
  const std::vector<float> upstream = random_values(kBatch * out, 5);  // dL/dy for L = Σ upstream·y

  const auto forward = [&] {
    std::vector<float> y(kBatch * out);
    cpu::gemm(Transpose::kNo, Transpose::kYes, kBatch, out, in, 1.0f, x.data(), weight.data(), 0.0f, y.data());
    cpu::add_bias_relu(kBatch, out, bias.data(), false, y.data());
    return weighted_sum(y, upstream);
  };
  // The trainer's backward ops for one layer.
  std::vector<float> dweight(weight.size()), dbias(bias.size()), dx(x.size());
  cpu::gemm(Transpose::kYes, Transpose::kNo, out, in, kBatch, 1.0f, upstream.data(), x.data(), 0.0f, dweight.data());
  cpu::bias_backward(kBatch, out, upstream.data(), dbias.data());
  cpu::gemm(Transpose::kNo, Transpose::kNo, kBatch, in, out, 1.0f, upstream.data(), weight.data(), 0.0f, dx.data());

  check_gradient("dweight", weight, dweight, forward);
  check_gradient("dbias", bias, dbias, forward);
  check_gradient("dx", x, dx, forward);
}

TEST_CASE("bias + ReLU: input and bias gradients") {
  constexpr std::int64_t features = 7;
  // Away from the kink at 0 so that ±step does not cross it.
  std::vector<float> x = random_values(kBatch * features, 6);
  for (float& value : x) value += value >= 0.0f ? 0.1f : -0.1f;
  std::vector<float> bias(features, 0.0f);
  const std::vector<float> upstream = random_values(kBatch * features, 7);

  const auto forward_output = [&] {
    std::vector<float> y = x;
    cpu::add_bias_relu(kBatch, features, bias.data(), true, y.data());
    return y;
  };
  const std::vector<float> y = forward_output();
  std::vector<float> dx = upstream;
  cpu::relu_backward(kBatch, features, y.data(), dx.data());
  std::vector<float> dbias(features);
  cpu::bias_backward(kBatch, features, dx.data(), dbias.data());

  const auto loss = [&] { return weighted_sum(forward_output(), upstream); };
  check_gradient("dx", x, dx, loss, 1e-2f);
  check_gradient("dbias", bias, dbias, loss, 1e-2f);
}

TEST_CASE("gemm handles every transpose combination") {
  constexpr std::int64_t m = 3, n = 4, k = 5;
  const std::vector<float> a = random_values(m * k, 8);
  const std::vector<float> b = random_values(k * n, 9);
  for (const Transpose ta : {Transpose::kNo, Transpose::kYes}) {
    for (const Transpose tb : {Transpose::kNo, Transpose::kYes}) {
      // The same logical A (m, k) and B (k, n), stored transposed when asked.
      std::vector<float> stored_a(a.size()), stored_b(b.size());
      for (std::int64_t i = 0; i < m; ++i)
        for (std::int64_t p = 0; p < k; ++p) stored_a[ta == Transpose::kYes ? p * m + i : i * k + p] = a[i * k + p];
      for (std::int64_t p = 0; p < k; ++p)
        for (std::int64_t j = 0; j < n; ++j) stored_b[tb == Transpose::kYes ? j * k + p : p * n + j] = b[p * n + j];
      std::vector<float> c(m * n, 1.0f);
      cpu::gemm(ta, tb, m, n, k, 2.0f, stored_a.data(), stored_b.data(), 0.5f, c.data());
      for (std::int64_t i = 0; i < m; ++i) {
        for (std::int64_t j = 0; j < n; ++j) {
          double expected = 0.5;
          for (std::int64_t p = 0; p < k; ++p) expected += 2.0 * a[i * k + p] * b[p * n + j];
          CHECK(c[i * n + j] == doctest::Approx(expected).epsilon(1e-5));
        }
      }
    }
  }
}

TEST_CASE("gemm at the trainer's shapes stays within float32 rounding of a double-precision product") {
  // Whatever BLAS was built in (BLIS, OpenBLAS, loops): the forward product, the weight gradient and the
  // input gradient of each layer, for a full batch and the last, short batch of an epoch (60,000 % 128 = 96).
  struct Product {
    Transpose ta, tb;
    std::int64_t m, n, k;
  };
  const std::int64_t widths[] = {784, 128, 64, 10};
  for (const std::int64_t batch : {128, 96}) {
    for (std::size_t layer = 0; layer < 3; ++layer) {
      const std::int64_t in = widths[layer], out = widths[layer + 1];
      for (const Product p : {Product{Transpose::kNo, Transpose::kYes, batch, out, in},
                              Product{Transpose::kYes, Transpose::kNo, out, in, batch},
                              Product{Transpose::kNo, Transpose::kNo, batch, in, out}}) {
        const std::int64_t lda = p.ta == Transpose::kYes ? p.m : p.k;
        const std::int64_t ldb = p.tb == Transpose::kYes ? p.k : p.n;
        const auto seed = static_cast<std::uint64_t>(batch + 10 * static_cast<std::int64_t>(layer));
        const std::vector<float> a = random_values(static_cast<std::size_t>(p.m * p.k), seed);
        const std::vector<float> b = random_values(static_cast<std::size_t>(p.k * p.n), seed + 1);
        std::vector<float> c(static_cast<std::size_t>(p.m * p.n), 7.0f);  // beta 0: never read
        cpu::gemm(p.ta, p.tb, p.m, p.n, p.k, 1.0f, a.data(), b.data(), 0.0f, c.data());
        double worst = 0;  // error over its bound; <= 1 passes
        for (std::int64_t i = 0; i < p.m; ++i) {
          for (std::int64_t j = 0; j < p.n; ++j) {
            double exact = 0, magnitude = 0;
            for (std::int64_t q = 0; q < p.k; ++q) {
              const double x = a[static_cast<std::size_t>(p.ta == Transpose::kYes ? q * lda + i : i * lda + q)];
              const double y = b[static_cast<std::size_t>(p.tb == Transpose::kYes ? j * ldb + q : q * ldb + j)];
              exact += x * y;
              magnitude += std::abs(x * y);
            }
            // The classic bound for a float32 dot product of length k: k * 2^-24 * sum |x y|.
            const double bound = static_cast<double>(p.k) * 0x1p-24 * magnitude + 1e-30;
            worst = std::max(worst, std::abs(c[static_cast<std::size_t>(i * p.n + j)] - exact) / bound);
          }
        }
        INFO("batch " << batch << " layer " << layer + 1 << " m " << p.m << " n " << p.n << " k " << p.k);
        CHECK(worst <= 1.0);
      }
    }
  }
}

TEST_CASE("SGD follows torch.optim.SGD: weight decay, then momentum buffer, then step") {
  std::vector<float> param = {1.0f, -2.0f};
  std::vector<float> velocity = {0.0f, 0.0f};
  const std::vector<float> grad = {0.5f, 0.25f};
  const SgdOptions options{0.1f, 0.9f, 0.01f};
  cpu::sgd_update(2, options, grad.data(), velocity.data(), param.data());
  // v = g + wd·p = 0.51, p = 1 − 0.1·0.51
  CHECK(velocity[0] == doctest::Approx(0.51f));
  CHECK(param[0] == doctest::Approx(0.949f));
  cpu::sgd_update(2, options, grad.data(), velocity.data(), param.data());
  // v = 0.9·0.51 + 0.5 + 0.01·0.949
  CHECK(velocity[0] == doctest::Approx(0.9f * 0.51f + 0.5f + 0.00949f));
  // p1: −2 − 0.1·0.23 = −2.023, then v = 0.9·0.23 + 0.25 − 0.01·2.023, p = −2.023 − 0.1·v
  CHECK(param[1] == doctest::Approx(-2.066677f));

  std::vector<float> plain = {1.0f};
  cpu::sgd_update(1, SgdOptions{0.5f, 0.0f, 0.0f}, grad.data(), nullptr, plain.data());
  CHECK(plain[0] == 0.75f);
}

TEST_CASE("argmax takes the first maximum of each row") {
  const std::vector<float> logits = {0.0f, 2.0f, 2.0f, -1.0f, -3.0f, -2.0f};
  std::vector<std::int32_t> predictions(2);
  cpu::argmax_rows(2, 3, logits.data(), predictions.data());
  CHECK(predictions == std::vector<std::int32_t>{1, 0});
}

TEST_CASE("the whole MLP: every parameter's gradient through the trainer") {
  auto model = Mlp::create(MlpShape{{6, 5, 4, 3}}, 11);
  REQUIRE(model.ok());
  TrainConfig config;
  config.batch_size = kBatch;
  auto trainer = Trainer::create(make_cpu_backend(), *model, config);
  REQUIRE(trainer.ok());
  const std::vector<float> images = random_values(kBatch * 6, 12, 2.0f);
  const std::vector<std::int32_t> labels = {2, 0, 1, 2, 1};
  REQUIRE(trainer->compute_gradients(images, labels).ok());
  auto gradients = trainer->gradients();
  REQUIRE(gradients.ok());

  Mlp perturbed = *model;
  for (std::size_t p = 0; p < perturbed.parameters().size(); ++p) {
    check_gradient(perturbed.parameters()[p].name.c_str(), perturbed.parameters()[p].values, (*gradients)[p], [&] {
      REQUIRE(trainer->load_parameters(perturbed).ok());
      auto loss = trainer->compute_gradients(images, labels);
      REQUIRE(loss.ok());
      return static_cast<double>(*loss);
    }, 1e-2f, 2e-3, 2e-2);
  }
}
