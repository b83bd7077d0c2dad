#include "cpu_ops.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#if CKPT_TRAIN_HAVE_BLIS
#include <blis.h>
#elif CKPT_TRAIN_HAVE_OPENBLAS
#include <cblas.h>
#endif

namespace ckpt::train::cpu {

#if !CKPT_TRAIN_HAVE_BLIS && !CKPT_TRAIN_HAVE_OPENBLAS
namespace {

// Row (or, with a transpose, column) `i`'s element `j` of op(X), X stored
// row-major with `columns` columns.
inline float element(const float* x, Transpose transpose, std::int64_t columns, std::int64_t i, std::int64_t j) {
  return transpose == Transpose::kYes ? x[j * columns + i] : x[i * columns + j];
}

}  // namespace
#endif

void gemm(Transpose transpose_a, Transpose transpose_b, std::int64_t m, std::int64_t n, std::int64_t k, float alpha,
          const float* a, const float* b, float beta, float* c) {
  const std::int64_t lda = transpose_a == Transpose::kYes ? m : k;
  const std::int64_t ldb = transpose_b == Transpose::kYes ? k : n;
#if CKPT_TRAIN_HAVE_BLIS
  // Row-major storage is row stride ld, column stride 1; BLIS reads its
  // operands only, whatever its prototype's missing const says.
  float alpha_value = alpha;
  float beta_value = beta;
  bli_sgemm(transpose_a == Transpose::kYes ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE,
            transpose_b == Transpose::kYes ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE, m, n, k, &alpha_value,
            const_cast<float*>(a), lda, 1, const_cast<float*>(b), ldb, 1, &beta_value, c, n, 1);
#elif CKPT_TRAIN_HAVE_OPENBLAS
  cblas_sgemm(CblasRowMajor, transpose_a == Transpose::kYes ? CblasTrans : CblasNoTrans,
              transpose_b == Transpose::kYes ? CblasTrans : CblasNoTrans, static_cast<blasint>(m),
              static_cast<blasint>(n), static_cast<blasint>(k), alpha, a, static_cast<blasint>(lda), b,
              static_cast<blasint>(ldb), beta, c, static_cast<blasint>(n));
#else
  for (std::int64_t i = 0; i < m; ++i) {
    float* row = c + i * n;
    for (std::int64_t j = 0; j < n; ++j) row[j] = beta == 0.0f ? 0.0f : beta * row[j];
    // i-p-j order walks B and C along rows when B is not transposed.
    for (std::int64_t p = 0; p < k; ++p) {
      const float scaled = alpha * element(a, transpose_a, lda, i, p);
      for (std::int64_t j = 0; j < n; ++j) row[j] += scaled * element(b, transpose_b, ldb, p, j);
    }
  }
#endif
}

void add_bias_relu(std::int64_t batch, std::int64_t features, const float* bias, bool relu, float* y) {
  for (std::int64_t row = 0; row < batch; ++row) {
    float* out = y + row * features;
    for (std::int64_t f = 0; f < features; ++f) {
      const float value = out[f] + bias[f];
      out[f] = relu ? std::max(value, 0.0f) : value;
    }
  }
}

void relu_backward(std::int64_t batch, std::int64_t features, const float* y, float* dy) {
  for (std::int64_t i = 0; i < batch * features; ++i) {
    if (!(y[i] > 0.0f)) dy[i] = 0.0f;
  }
}

void bias_backward(std::int64_t batch, std::int64_t features, const float* dy, float* dbias) {
  std::fill(dbias, dbias + features, 0.0f);
  for (std::int64_t row = 0; row < batch; ++row) {
    for (std::int64_t f = 0; f < features; ++f) dbias[f] += dy[row * features + f];
  }
}

namespace {

// max and log(sum(exp(x − max))) of one row, the stable log-sum-exp.
struct RowNormalizer {
  float max;
  float log_sum;
};

RowNormalizer normalize_row(std::int64_t classes, const float* row) {
  const float max = *std::max_element(row, row + classes);
  float sum = 0.0f;
  for (std::int64_t c = 0; c < classes; ++c) sum += std::exp(row[c] - max);
  return {max, std::log(sum)};
}

}  // namespace

void softmax_cross_entropy_forward(std::int64_t batch, std::int64_t classes, const float* logits,
                                   const std::int32_t* labels, float* losses) {
  for (std::int64_t row = 0; row < batch; ++row) {
    const float* x = logits + row * classes;
    const RowNormalizer norm = normalize_row(classes, x);
    losses[row] = norm.log_sum - (x[labels[row]] - norm.max);
  }
}

void softmax_cross_entropy_backward(std::int64_t batch, std::int64_t classes, const float* logits,
                                    const std::int32_t* labels, float* dlogits) {
  const float scale = 1.0f / static_cast<float>(batch);
  for (std::int64_t row = 0; row < batch; ++row) {
    const float* x = logits + row * classes;
    float* dx = dlogits + row * classes;
    const RowNormalizer norm = normalize_row(classes, x);
    for (std::int64_t c = 0; c < classes; ++c) {
      const float probability = std::exp(x[c] - norm.max - norm.log_sum);
      dx[c] = (probability - (c == labels[row] ? 1.0f : 0.0f)) * scale;
    }
  }
}

void sgd_update(std::int64_t count, SgdOptions options, const float* grad, float* velocity, float* param) {
  for (std::int64_t i = 0; i < count; ++i) {
    float step = grad[i];
    if (options.weight_decay != 0.0f) step += options.weight_decay * param[i];
    if (options.momentum != 0.0f) {
      velocity[i] = options.momentum * velocity[i] + step;
      step = velocity[i];
    }
    param[i] -= options.learning_rate * step;
  }
}

void argmax_rows(std::int64_t batch, std::int64_t classes, const float* logits, std::int32_t* predictions) {
  for (std::int64_t row = 0; row < batch; ++row) {
    const float* x = logits + row * classes;
    predictions[row] = static_cast<std::int32_t>(std::max_element(x, x + classes) - x);
  }
}

std::string blas_description() {
#if CKPT_TRAIN_HAVE_BLIS
  // Without BLIS_NUM_THREADS (or OMP_NUM_THREADS) BLIS runs on one thread and reports -1.
  return fmt::format("BLIS {}, {} kernels, {} threads", bli_info_get_version_str(),
                     bli_arch_string(bli_arch_query_id()), std::max<long>(bli_thread_get_num_threads(), 1));
#elif CKPT_TRAIN_HAVE_OPENBLAS
  return fmt::format("OpenBLAS, {} threads", openblas_get_num_threads());
#else
  return "portable loops";
#endif
}

}  // namespace ckpt::train::cpu
