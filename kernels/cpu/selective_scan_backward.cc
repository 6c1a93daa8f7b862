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
#include <string>
#include <vector>

#include "kernels/cpu/selective_scan.h"
#include "kernels/cpu/vec.h"

namespace harmamba::kernels {
namespace {

using vec::Vec;

constexpr float kLn2 = 0.6931471805599453f;

double SoftplusRef(double x) { return x > 20.0 ? x : std::log1p(std::exp(x)); }
double SigmoidRef(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// Scratch for one call: per-step vectors of one channel block, and the
// lane-wise partial sums of dB and dC of one batch element (reduced across
// lanes once per batch element rather than once per channel block).
struct ScanScratch {
  ScanScratch(int64_t seqlen, int64_t dstate)
      : states((seqlen + 1) * dstate),
        decays(seqlen * dstate),
        delta(seqlen),
        delta_grad_scale(seqlen),
        dB(seqlen * dstate),
        dC(seqlen * dstate) {}
  std::vector<Vec> states;            // [step + 1][n]; states[0] = 0
  std::vector<Vec> decays;            // [step][n] exp(delta A)
  std::vector<Vec> delta;             // [step] post-softplus
  std::vector<Vec> delta_grad_scale;  // [step] d delta / d delta_raw
  std::vector<Vec> dB, dC;            // [step][n]
};

// Backward of channels [d0, d0 + lanes) of batch element b; adds this
// block's dB/dC contributions to the scratch sums and its parameter
// gradients to g.dA/dD/ddelta_bias. kN: the state size when known at
// compile time, else 0. Lanes beyond `lanes` load zeros, so they contribute
// nothing (dy = 0 there keeps every adjoint at 0).
template <int kN, bool kFull>
void BackwardChannelBlock(const SelectiveScanParams& p,
                          const SelectiveScanGrads& g, int64_t b, int64_t d0,
                          int lanes, ScanScratch& s) {
  const int n_state = kN > 0 ? kN : static_cast<int>(p.dstate);
  constexpr int kCap = kN > 0 ? kN : 256;
  auto load = [lanes](const float* ptr) {
    return kFull ? vec::Load(ptr) : vec::LoadPartial(ptr, lanes);
  };
  auto store = [lanes](float* ptr, Vec v) {
    if (kFull) {
      vec::Store(ptr, v);
    } else {
      vec::StorePartial(ptr, v, lanes);
    }
  };

  Vec a_log2[kCap];  // A * log2(e), transposed: one vector per state
  for (int n = 0; n < n_state; ++n) {
    float tmp[vec::kLanes] = {};
    for (int l = 0; l < lanes; ++l) {
      tmp[l] =
          p.A[(d0 + l) * p.A_dim_stride + n * p.A_state_stride] * vec::kLog2e;
    }
    a_log2[n] = vec::Load(tmp);
  }
  const Vec bias = p.delta_bias ? load(p.delta_bias + d0) : vec::Splat(0.f);
  const Vec skip = p.D ? load(p.D + d0) : vec::Splat(0.f);
  const int64_t L = p.seqlen;
  auto step_time = [&](int64_t step) {
    return p.reverse ? L - 1 - step : step;
  };

  const float* u_b = p.u + b * p.u_batch_stride + d0;
  const float* delta_b = p.delta + b * p.delta_batch_stride + d0;
  const float* B_b = p.B + b * p.B_batch_stride;
  const float* C_b = p.C + b * p.C_batch_stride;

  // Forward recomputation of the states.
  Vec* states = s.states.data();
  for (int n = 0; n < n_state; ++n) states[n] = vec::Splat(0.f);
  for (int64_t step = 0; step < L; ++step) {
    const int64_t t = step_time(step);
    const Vec u = load(u_b + t * p.u_seq_stride);
    Vec delta = load(delta_b + t * p.delta_seq_stride) + bias;
    if (p.delta_softplus) {
      s.delta_grad_scale[step] = vec::Sigmoid(delta);
      delta = vec::Softplus(delta);
    }
    s.delta[step] = delta;
    const Vec delta_u = delta * u;
    const float* B_t = B_b + t * p.B_seq_stride;
    const Vec* prev = states + step * n_state;
    Vec* next = states + (step + 1) * n_state;
    Vec* decay = s.decays.data() + step * n_state;
#pragma GCC unroll 16
    for (int n = 0; n < n_state; ++n) {
      decay[n] = vec::Exp2(delta * a_log2[n]);
      next[n] = decay[n] * prev[n] + delta_u * B_t[n];
    }
  }

  // Reverse sweep. grad_h[n] = dL/dh_t[n] for the step being processed.
  Vec grad_h[kCap], dA_acc[kCap];
  for (int n = 0; n < n_state; ++n) grad_h[n] = dA_acc[n] = vec::Splat(0.f);
  Vec dD_acc = vec::Splat(0.f), dbias_acc = vec::Splat(0.f);
  for (int64_t step = L - 1; step >= 0; --step) {
    const int64_t t = step_time(step);
    const Vec u = load(u_b + t * p.u_seq_stride);
    const Vec delta = s.delta[step];
    const float* B_t = B_b + t * p.B_seq_stride;
    const float* C_t = C_b + t * p.C_seq_stride;
    const Vec* prev = states + step * n_state;
    const Vec* cur = prev + n_state;
    Vec dy =
        load(g.dout + b * g.dout_batch_stride + t * g.dout_seq_stride + d0);
    if (p.z) {
      const Vec z = load(p.z + b * p.z_batch_stride + t * p.z_seq_stride + d0);
      Vec y = skip * u;
      for (int n = 0; n < n_state; ++n) y += cur[n] * C_t[n];
      const Vec sig = vec::Sigmoid(z);
      store(g.dz + b * g.dz_batch_stride + t * g.dz_seq_stride + d0,
            dy * y * sig * (1.0f + z * (1.0f - sig)));
      dy *= z * sig;
    }
    dD_acc += dy * u;
    Vec sum_gB = vec::Splat(0.f);    // sum_n grad_h B_t
    Vec sum_gahA = vec::Splat(0.f);  // sum_n grad_h a h_prev A log2(e)
    Vec* dB_t = s.dB.data() + step * n_state;
    Vec* dC_t = s.dC.data() + step * n_state;
    const Vec delta_u = delta * u;
    const Vec* decays = s.decays.data() + step * n_state;
#pragma GCC unroll 16
    for (int n = 0; n < n_state; ++n) {
      const Vec decay = decays[n];
      dC_t[n] += dy * cur[n];
      grad_h[n] += dy * C_t[n];
      dB_t[n] += grad_h[n] * delta_u;
      sum_gB += grad_h[n] * B_t[n];
      const Vec gah = grad_h[n] * decay * prev[n];
      dA_acc[n] += gah * delta;
      sum_gahA += gah * a_log2[n];
      grad_h[n] *= decay;
    }
    store(g.du + b * g.du_batch_stride + t * g.du_seq_stride + d0,
          dy * skip + delta * sum_gB);
    Vec ddelta = sum_gahA * kLn2 + u * sum_gB;
    if (p.delta_softplus) ddelta *= s.delta_grad_scale[step];
    store(g.ddelta + b * g.ddelta_batch_stride + t * g.ddelta_seq_stride + d0,
          ddelta);
    dbias_acc += ddelta;
  }

  for (int n = 0; n < n_state; ++n) {
    for (int l = 0; l < lanes; ++l) {
      g.dA[(d0 + l) * p.dstate + n] += dA_acc[n][l];
    }
  }
  for (int l = 0; l < lanes; ++l) {
    if (g.dD) g.dD[d0 + l] += dD_acc[l];
    if (g.ddelta_bias) g.ddelta_bias[d0 + l] += dbias_acc[l];
  }
}

template <int kN>
void BackwardAll(const SelectiveScanParams& p, const SelectiveScanGrads& g) {
  ScanScratch scratch(p.seqlen, p.dstate);
  const int64_t n_state = p.dstate;
  for (int64_t b = 0; b < p.batch; ++b) {
    for (Vec& v : scratch.dB) v = vec::Splat(0.f);
    for (Vec& v : scratch.dC) v = vec::Splat(0.f);
    int64_t d0 = 0;
    for (; d0 + vec::kLanes <= p.dim; d0 += vec::kLanes) {
      BackwardChannelBlock<kN, true>(p, g, b, d0, vec::kLanes, scratch);
    }
    if (d0 < p.dim) {
      BackwardChannelBlock<kN, false>(p, g, b, d0, static_cast<int>(p.dim - d0),
                                      scratch);
    }
    for (int64_t step = 0; step < p.seqlen; ++step) {
      const int64_t t = p.reverse ? p.seqlen - 1 - step : step;
      float* dB_t = g.dB + b * g.dB_batch_stride + t * g.dB_seq_stride;
      float* dC_t = g.dC + b * g.dC_batch_stride + t * g.dC_seq_stride;
      for (int64_t n = 0; n < n_state; ++n) {
        dB_t[n] = vec::ReduceSum(scratch.dB[step * n_state + n]);
        dC_t[n] = vec::ReduceSum(scratch.dC[step * n_state + n]);
      }
    }
  }
}

absl::Status Invalid(const std::string& what) {
  return absl::InvalidArgumentError("selective scan backward: " + what);
}

}  // namespace

absl::Status CheckSelectiveScanBackward(const SelectiveScanParams& p,
                                        const SelectiveScanGrads& g) {
  // The backward does not use p.out; give the forward check a stand-in.
  SelectiveScanParams with_out = p;
  if (with_out.out == nullptr) with_out.out = g.du;
  if (absl::Status s = CheckSelectiveScanParams(with_out); !s.ok()) return s;
  if (p.delta == nullptr) {
    return Invalid("needs a dense delta (p.delta), not dt_low");
  }
  if (!g.dout || !g.du || !g.ddelta || !g.dB || !g.dC || !g.dA) {
    return Invalid("dout, du, ddelta, dB, dC and dA are required");
  }
  if ((p.z == nullptr) != (g.dz == nullptr)) {
    return Invalid("dz must be given exactly when z is");
  }
  return absl::OkStatus();
}

void SelectiveScanBackward(const SelectiveScanParams& p,
                           const SelectiveScanGrads& g) {
  if (p.batch == 0 || p.seqlen == 0) return;
  if (p.dstate == 16) {
    BackwardAll<16>(p, g);
  } else {
    BackwardAll<0>(p, g);
  }
}

void SelectiveScanBackwardReference(
    int64_t batch, int64_t seqlen, int64_t dim, int64_t dstate, bool reverse,
    bool delta_softplus, const double* u, const double* delta,
    const double* delta_bias, const double* A, const double* B, const double* C,
    const double* D, const double* z, const double* dout, double* du,
    double* ddelta, double* ddelta_bias, double* dA, double* dB, double* dC,
    double* dD, double* dz) {
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
