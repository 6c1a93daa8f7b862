// Backward of the depthwise causal conv1d (+ SiLU): the float64 oracle and
// the vectorised float32 kernel.
//
// With src(t, k) = t - (W-1) + k (forward) or t + (W-1) - k (reverse) and
// pre_t = bias + sum_k w[k] x[src(t, k)]:
//   dpre_t = dout_t * silu'(pre_t)   (dout_t without SiLU)
//   dbias += dpre_t,  dw[k] += dpre_t x[src(t, k)],  dx[src(t, k)] += w[k] dpre_t
#include <cmath>
#include <vector>

#include "kernels/cpu/causal_conv1d.h"

namespace harmamba::kernels {

void CausalConv1dBackwardReference(int64_t batch, int64_t seqlen, int64_t dim,
                                   int64_t width, bool reverse, bool silu,
                                   const double* x, const double* weight,
                                   const double* bias, const double* dout,
                                   double* dx, double* dweight, double* dbias) {
  for (int64_t i = 0; i < dim * width; ++i) dweight[i] = 0.0;
  if (dbias != nullptr) {
    for (int64_t d = 0; d < dim; ++d) dbias[d] = 0.0;
  }
  for (int64_t i = 0; i < batch * seqlen * dim; ++i) dx[i] = 0.0;
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t d = 0; d < dim; ++d) {
      auto at = [&](int64_t t) { return (b * seqlen + t) * dim + d; };
      auto src = [&](int64_t t, int64_t k) {
        return reverse ? t + (width - 1) - k : t - (width - 1) + k;
      };
      for (int64_t t = 0; t < seqlen; ++t) {
        double pre = bias != nullptr ? bias[d] : 0.0;
        for (int64_t k = 0; k < width; ++k) {
          const int64_t s = src(t, k);
          if (s >= 0 && s < seqlen) pre += weight[d * width + k] * x[at(s)];
        }
        double dpre = dout[at(t)];
        if (silu) {
          const double sig = 1.0 / (1.0 + std::exp(-pre));
          dpre *= sig * (1.0 + pre * (1.0 - sig));
        }
        if (dbias != nullptr) dbias[d] += dpre;
        for (int64_t k = 0; k < width; ++k) {
          const int64_t s = src(t, k);
          if (s < 0 || s >= seqlen) continue;
          dweight[d * width + k] += dpre * x[at(s)];
          dx[at(s)] += weight[d * width + k] * dpre;
        }
      }
    }
  }
}

}  // namespace harmamba::kernels
