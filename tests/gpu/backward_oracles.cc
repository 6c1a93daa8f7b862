#include "tests/gpu/backward_oracles.h"

#include <cmath>
#include <vector>

namespace harmamba::kernels::oracle {
namespace {

double Sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

}  // namespace

void SelectiveScanBackwardReference(
    int64_t batch, int64_t seqlen, int64_t dim, int64_t dstate, bool reverse,
    bool delta_softplus, const double* u, const double* delta,
    const double* delta_bias, const double* A, const double* B, const double* C,
    const double* D, const double* z, const double* dout, double* du,
    double* ddelta, double* ddelta_bias, double* dA, double* dB, double* dC,
    double* dD, double* dz) {
  const int64_t L = seqlen, N = dstate;
  for (int64_t i = 0; i < dim * N; ++i) dA[i] = 0;
  for (int64_t d = 0; d < dim; ++d) {
    if (dD) dD[d] = 0;
    if (ddelta_bias) ddelta_bias[d] = 0;
  }
  for (int64_t i = 0; i < batch * L * N; ++i) dB[i] = dC[i] = 0;

  // states[k][n] = h after the k-th step in scan order (k = 0: h_{-1} = 0).
  std::vector<double> states((L + 1) * N), adjoint(N);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t d = 0; d < dim; ++d) {
      auto time_of = [&](int64_t step) {
        return reverse ? L - 1 - step : step;
      };
      auto raw_at = [&](int64_t t) {
        return delta[(b * L + t) * dim + d] + (delta_bias ? delta_bias[d] : 0);
      };
      auto dt_of = [&](double raw) {
        return delta_softplus ? (raw > 20 ? raw : std::log1p(std::exp(raw)))
                              : raw;
      };
      for (int64_t n = 0; n < N; ++n) states[n] = 0;
      for (int64_t step = 0; step < L; ++step) {
        const int64_t t = time_of(step);
        const double dt = dt_of(raw_at(t));
        const double ut = u[(b * L + t) * dim + d];
        for (int64_t n = 0; n < N; ++n) {
          states[(step + 1) * N + n] =
              std::exp(dt * A[d * N + n]) * states[step * N + n] +
              dt * B[(b * L + t) * N + n] * ut;
        }
      }
      for (int64_t n = 0; n < N; ++n) adjoint[n] = 0;
      for (int64_t step = L - 1; step >= 0; --step) {
        const int64_t t = time_of(step);
        const int64_t i = (b * L + t) * dim + d;
        const double raw = raw_at(t);
        const double dt = dt_of(raw);
        const double* h = &states[(step + 1) * N];
        const double* h_prev = &states[step * N];
        // out = y * silu(z), y = C . h + D u.
        double y = D ? D[d] * u[i] : 0;
        for (int64_t n = 0; n < N; ++n) y += C[(b * L + t) * N + n] * h[n];
        double dy = dout[i];
        if (z) {
          const double s = Sigmoid(z[i]);
          dy = dout[i] * z[i] * s;
          if (dz) dz[i] = dout[i] * y * s * (1 + z[i] * (1 - s));
        }
        double du_i = D ? D[d] * dy : 0;
        if (dD) dD[d] += dy * u[i];
        double ddt = 0;
        for (int64_t n = 0; n < N; ++n) {
          const int64_t bn = (b * L + t) * N + n;
          const double a = std::exp(dt * A[d * N + n]);
          // h_n = a h'_n + dt B_n u; dL/dh_n collects dy C_n and the future.
          adjoint[n] += dy * C[bn];
          dC[bn] += dy * h[n];
          dB[bn] += adjoint[n] * dt * u[i];
          du_i += adjoint[n] * dt * B[bn];
          ddt += adjoint[n] * (A[d * N + n] * a * h_prev[n] + B[bn] * u[i]);
          dA[d * N + n] += adjoint[n] * dt * a * h_prev[n];
          adjoint[n] *= a;
        }
        du[i] = du_i;
        const double draw = delta_softplus ? ddt * Sigmoid(raw) : ddt;
        ddelta[i] = draw;
        if (ddelta_bias) ddelta_bias[d] += draw;
      }
    }
  }
}

void CausalConv1dBackwardReference(int64_t batch, int64_t seqlen, int64_t dim,
                                   int64_t width, bool reverse, bool silu,
                                   const double* x, const double* weight,
                                   const double* bias, const double* dout,
                                   double* dx, double* dweight, double* dbias) {
  const int64_t sign = reverse ? 1 : -1;
  for (int64_t i = 0; i < batch * seqlen * dim; ++i) dx[i] = 0;
  for (int64_t i = 0; i < dim * width; ++i) dweight[i] = 0;
  if (dbias) {
    for (int64_t d = 0; d < dim; ++d) dbias[d] = 0;
  }
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t t = 0; t < seqlen; ++t) {
      for (int64_t d = 0; d < dim; ++d) {
        auto src_of = [&](int64_t k) { return t + sign * (width - 1 - k); };
        double pre = bias ? bias[d] : 0;
        for (int64_t k = 0; k < width; ++k) {
          const int64_t src = src_of(k);
          if (src >= 0 && src < seqlen) {
            pre += weight[d * width + k] * x[(b * seqlen + src) * dim + d];
          }
        }
        double g = dout[(b * seqlen + t) * dim + d];
        if (silu) {
          const double s = Sigmoid(pre);
          g *= s * (1 + pre * (1 - s));
        }
        if (dbias) dbias[d] += g;
        for (int64_t k = 0; k < width; ++k) {
          const int64_t src = src_of(k);
          if (src < 0 || src >= seqlen) continue;
          dx[(b * seqlen + src) * dim + d] += weight[d * width + k] * g;
          dweight[d * width + k] += x[(b * seqlen + src) * dim + d] * g;
        }
      }
    }
  }
}

}  // namespace harmamba::kernels::oracle
