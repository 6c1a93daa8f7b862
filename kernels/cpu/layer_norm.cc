#include "kernels/cpu/layer_norm.h"

#include <cmath>
#include <vector>

namespace harmamba::kernels {

void LayerNormForward(const LayerNormParams& p) {
  std::vector<float> sum(p.dim);
  for (int64_t r = 0; r < p.rows; ++r) {
    const float* x = p.x + r * p.x_row_stride;
    const float* res =
        p.residual ? p.residual + r * p.residual_row_stride : nullptr;
    float mean = 0.f;
    for (int64_t i = 0; i < p.dim; ++i) {
      sum[i] = res ? x[i] + res[i] : x[i];
      mean += sum[i];
    }
    mean /= static_cast<float>(p.dim);
    float var = 0.f;
    for (int64_t i = 0; i < p.dim; ++i) {
      const float c = sum[i] - mean;
      var += c * c;
    }
    var /= static_cast<float>(p.dim);
    const float rstd = 1.0f / std::sqrt(var + p.eps);
    float* out = p.out + r * p.out_row_stride;
    for (int64_t i = 0; i < p.dim; ++i) {
      float v = (sum[i] - mean) * rstd;
      if (p.gamma) v *= p.gamma[i];
      if (p.beta) v += p.beta[i];
      out[i] = v;
    }
    if (p.sum_out) {
      float* s = p.sum_out + r * p.sum_out_row_stride;
      for (int64_t i = 0; i < p.dim; ++i) s[i] = sum[i];
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
