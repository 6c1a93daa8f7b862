// Row-wise LayerNorm with an optional fused residual add, on the CPU.
//
//   s   = x + residual            (residual optional; s written to sum_out
//                                  when given)
//   out = (s - mean(s)) / sqrt(var(s) + eps) * gamma + beta
// gamma/beta optional (identity when null). Biased variance, as PyTorch.
// Re-entrant; single-threaded.
#ifndef HARMAMBA_KERNELS_CPU_LAYER_NORM_H_
#define HARMAMBA_KERNELS_CPU_LAYER_NORM_H_

#include <cstdint>

namespace harmamba::kernels {

struct LayerNormParams {
  int64_t rows = 0;
  int64_t dim = 0;
  float eps = 1e-5f;
  const float* x = nullptr;
  int64_t x_row_stride = 0;
  const float* residual = nullptr;  // optional
  int64_t residual_row_stride = 0;
  float* sum_out = nullptr;  // optional: x + residual
  int64_t sum_out_row_stride = 0;
  const float* gamma = nullptr;  // optional
  const float* beta = nullptr;   // optional
  float* out = nullptr;
  int64_t out_row_stride = 0;
  float* mean_out = nullptr;  // optional [rows]
  float* rstd_out = nullptr;  // optional [rows]
};

void LayerNormForward(const LayerNormParams& p);

// float64 oracle, contiguous rows.
void LayerNormReference(int64_t rows, int64_t dim, double eps, const double* x,
                        const double* residual, const double* gamma,
                        const double* beta, double* out);

}  // namespace harmamba::kernels

#endif  // HARMAMBA_KERNELS_CPU_LAYER_NORM_H_
