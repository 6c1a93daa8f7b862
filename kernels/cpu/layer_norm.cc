#include "kernels/cpu/layer_norm.h"

#include <cmath>
#include <vector>

#include "kernels/cpu/vec.h"

namespace harmamba::kernels {

namespace {

// Sum of v[0..n): 16-lane partial sums (a scalar float loop cannot be
// vectorised without reassociation, and its add latency dominates at the
// model's 64 channels), then the tail.
float Sum(const float* v, int64_t n) {
  vec::Vec acc = vec::Splat(0.f);
  int64_t i = 0;
  for (; i + vec::kLanes <= n; i += vec::kLanes) acc += vec::Load(v + i);
  float total = vec::ReduceSum(acc);
  for (; i < n; ++i) total += v[i];
  return total;
}

float SumOfSquaredDeviations(const float* v, int64_t n, float mean) {
  vec::Vec acc = vec::Splat(0.f);
  int64_t i = 0;
  for (; i + vec::kLanes <= n; i += vec::kLanes) {
    const vec::Vec d = vec::Load(v + i) - mean;
    acc += d * d;
  }
  float total = vec::ReduceSum(acc);
  for (; i < n; ++i) total += (v[i] - mean) * (v[i] - mean);
  return total;
}

}  // namespace

void LayerNormForward(const LayerNormParams& p) {
  constexpr int64_t kStackDim = 1024;
  float stack_sum[kStackDim];
  std::vector<float> heap_sum(p.dim > kStackDim ? p.dim : 0);
  float* sum = p.dim > kStackDim ? heap_sum.data() : stack_sum;
  for (int64_t r = 0; r < p.rows; ++r) {
    const float* x = p.x + r * p.x_row_stride;
    const float* res =
        p.residual ? p.residual + r * p.residual_row_stride : nullptr;
    const float* s = x;
    if (res) {
      for (int64_t i = 0; i < p.dim; ++i) sum[i] = x[i] + res[i];
      s = sum;
    }
    const float mean = Sum(s, p.dim) / static_cast<float>(p.dim);
    const float var =
        SumOfSquaredDeviations(s, p.dim, mean) / static_cast<float>(p.dim);
    const float rstd = 1.0f / std::sqrt(var + p.eps);
    float* out = p.out + r * p.out_row_stride;
    for (int64_t i = 0; i < p.dim; ++i) {
      float v = (s[i] - mean) * rstd;
      if (p.gamma) v *= p.gamma[i];
      if (p.beta) v += p.beta[i];
      out[i] = v;
    }
    if (p.sum_out) {
      float* dst = p.sum_out + r * p.sum_out_row_stride;
      for (int64_t i = 0; i < p.dim; ++i) dst[i] = s[i];
    }
    if (p.mean_out) p.mean_out[r] = mean;
    if (p.rstd_out) p.rstd_out[r] = rstd;
  }
}

void LayerNormReference(int64_t rows, int64_t dim, double eps, const double* x,
                        const double* residual, const double* gamma,
                        const double* beta, double* out) {
  std::vector<double> s(dim);
  for (int64_t r = 0; r < rows; ++r) {
    double mean = 0;
    for (int64_t i = 0; i < dim; ++i) {
      s[i] = x[r * dim + i] + (residual ? residual[r * dim + i] : 0.0);
      mean += s[i];
    }
    mean /= dim;
    double var = 0;
    for (int64_t i = 0; i < dim; ++i) var += (s[i] - mean) * (s[i] - mean);
    var /= dim;
    const double rstd = 1.0 / std::sqrt(var + eps);
    for (int64_t i = 0; i < dim; ++i) {
      double v = (s[i] - mean) * rstd;
      if (gamma) v *= gamma[i];
      if (beta) v += beta[i];
      out[r * dim + i] = v;
    }
  }
}

}  // namespace harmamba::kernels
