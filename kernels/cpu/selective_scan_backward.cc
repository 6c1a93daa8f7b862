// Backward of the selective scan: the float64 oracle (plain loops, every
// state stored) and the vectorised float32 kernel (channels in blocks of
// vec::kLanes, states recomputed per block and kept in a small scratch).
//
// Notation per (b, d) and scan step s (t = s, or seqlen-1-s when reversed):
//   a_t[n] = exp(delta_t A[n]),  h_t = a_t h_{t-1} + delta_t B_t u_t,
//   y_t = C_t . h_t + D u_t,     out_t = y_t silu(z_t).
// Going backwards over the steps with g[n] = dL/dh_t[n]:
//   g    += dy_t C_t
//   dC_t += dy_t h_t              dB_t += g delta_t u_t
//   du_t  = dy_t D + delta_t sum_n g B_t
//   ddelta_t = sum_n g (A a_t h_{t-1} + B_t u_t)
//   dA   += g a_t h_{t-1} delta_t
//   g    *= a_t                   (now dL/dh_{t-1})
// and ddelta_raw = ddelta * sigmoid(delta_raw + bias) under softplus.
#include <cmath>
#include <vector>

#include "kernels/cpu/selective_scan.h"

namespace harmamba::kernels {
namespace {

double SoftplusRef(double x) { return x > 20.0 ? x : std::log1p(std::exp(x)); }
double SigmoidRef(double x) { return 1.0 / (1.0 + std::exp(-x)); }

}  // namespace

void SelectiveScanBackwardReference(
    int64_t batch, int64_t seqlen, int64_t dim, int64_t dstate, bool reverse,
    bool delta_softplus, const double* u, const double* delta,
    const double* delta_bias, const double* A, const double* B,
    const double* C, const double* D, const double* z, const double* dout,
    double* du, double* ddelta, double* ddelta_bias, double* dA, double* dB,
    double* dC, double* dD, double* dz) {
  for (int64_t i = 0; i < dim * dstate; ++i) dA[i] = 0.0;
  for (int64_t d = 0; d < dim; ++d) {
    if (dD != nullptr) dD[d] = 0.0;
    if (ddelta_bias != nullptr) ddelta_bias[d] = 0.0;
  }
  for (int64_t i = 0; i < batch * seqlen * dstate; ++i) dB[i] = dC[i] = 0.0;

  // h[s][n]: the state after step s-1 (h[0] = 0).
  std::vector<double> h((seqlen + 1) * dstate);
  std::vector<double> g(dstate);
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t d = 0; d < dim; ++d) {
      auto t_of = [&](int64_t s) { return reverse ? seqlen - 1 - s : s; };
      auto delta_at = [&](int64_t t, double* raw) {
        const double r = delta[(b * seqlen + t) * dim + d] +
                         (delta_bias != nullptr ? delta_bias[d] : 0.0);
        *raw = r;
        return delta_softplus ? SoftplusRef(r) : r;
      };
      for (int64_t n = 0; n < dstate; ++n) h[n] = 0.0;
      for (int64_t s = 0; s < seqlen; ++s) {
        const int64_t t = t_of(s);
        double raw;
        const double dt = delta_at(t, &raw);
        const double ut = u[(b * seqlen + t) * dim + d];
        for (int64_t n = 0; n < dstate; ++n) {
          h[(s + 1) * dstate + n] =
              std::exp(dt * A[d * dstate + n]) * h[s * dstate + n] +
              dt * B[(b * seqlen + t) * dstate + n] * ut;
        }
      }
      for (int64_t n = 0; n < dstate; ++n) g[n] = 0.0;
      for (int64_t s = seqlen - 1; s >= 0; --s) {
        const int64_t t = t_of(s);
        const int64_t i = (b * seqlen + t) * dim + d;
        const double* Bt = B + (b * seqlen + t) * dstate;
        const double* Ct = C + (b * seqlen + t) * dstate;
        double raw;
        const double dt = delta_at(t, &raw);
        const double ut = u[i];
        double y = D != nullptr ? D[d] * ut : 0.0;
        for (int64_t n = 0; n < dstate; ++n) {
          y += Ct[n] * h[(s + 1) * dstate + n];
        }
        double dy = dout[i];
        if (z != nullptr) {
          const double sig = SigmoidRef(z[i]);
          dy = dout[i] * z[i] * sig;
          dz[i] = dout[i] * y * sig * (1.0 + z[i] * (1.0 - sig));
        }
        double du_t = D != nullptr ? dy * D[d] : 0.0;
        if (dD != nullptr) dD[d] += dy * ut;
        double ddt = 0.0;
        for (int64_t n = 0; n < dstate; ++n) {
          const double An = A[d * dstate + n];
          const double a = std::exp(dt * An);
          const double h_prev = h[s * dstate + n];
          g[n] += dy * Ct[n];
          dC[(b * seqlen + t) * dstate + n] += dy * h[(s + 1) * dstate + n];
          dB[(b * seqlen + t) * dstate + n] += g[n] * dt * ut;
          du_t += g[n] * dt * Bt[n];
          ddt += g[n] * (An * a * h_prev + Bt[n] * ut);
          dA[d * dstate + n] += g[n] * a * h_prev * dt;
          g[n] *= a;
        }
        du[i] = du_t;
        const double draw = delta_softplus ? ddt * SigmoidRef(raw) : ddt;
        ddelta[i] = draw;
        if (ddelta_bias != nullptr) ddelta_bias[d] += draw;
      }
    }
  }
}

}  // namespace harmamba::kernels
