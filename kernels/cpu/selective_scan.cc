#include "kernels/cpu/selective_scan.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "kernels/cpu/vec.h"

namespace harmamba::kernels {
namespace {

using vec::Vec;

constexpr int64_t kMaxState = 256;

absl::Status Invalid(const std::string& what) {
  return absl::InvalidArgumentError("selective scan: " + what);
}

// Scans channels [d0, d0 + lanes) of batch element b. kN is the state size
// when known at compile time (the states then live in registers), 0 for the
// runtime size. kFull: lanes == kLanes (no masked loads/stores).
template <int kN, bool kFull>
void ScanChannelBlock(const SelectiveScanParams& p, int64_t b, int64_t d0,
                      int lanes) {
  const int n_state = kN > 0 ? kN : static_cast<int>(p.dstate);
  constexpr int kCap = kN > 0 ? kN : kMaxState;
  auto load = [lanes](const float* ptr) {
    return kFull ? vec::Load(ptr) : vec::LoadPartial(ptr, lanes);
  };

  // Per-channel constants, transposed so each state's A is one vector.
  Vec a_log2[kCap];
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
  constexpr int kMaxRank = 16;
  Vec dt_w[kMaxRank];
  const int rank = p.dt_low ? static_cast<int>(p.dt_rank) : 0;
  for (int r = 0; r < rank; ++r) {
    float tmp[vec::kLanes] = {};
    for (int l = 0; l < lanes; ++l) tmp[l] = p.dt_weight[(d0 + l) * rank + r];
    dt_w[r] = vec::Load(tmp);
  }

  // Pass 1, free of the recurrence's dependency chain: per time step, the
  // step size delta, delta * u and the gate SiLU(z) (one value per lane).
  // Pass 2 then runs only the recurrence, with the states in registers.
  constexpr int64_t kChunk = 128;  // time steps per pass (bounds the buffers)
  alignas(64) float delta_buf[kChunk * vec::kLanes];
  alignas(64) float delta_u_buf[kChunk * vec::kLanes];
  alignas(64) float gate_buf[kChunk * vec::kLanes];

  Vec h[kCap];
  for (int n = 0; n < n_state; ++n) h[n] = vec::Splat(0.f);

  const float* u_b = p.u + b * p.u_batch_stride + d0;
  const float* B_b = p.B + b * p.B_batch_stride;
  const float* C_b = p.C + b * p.C_batch_stride;
  float* out_b = p.out + b * p.out_batch_stride + d0;
  for (int64_t step0 = 0; step0 < p.seqlen; step0 += kChunk) {
    const int64_t steps = std::min(kChunk, p.seqlen - step0);
    for (int64_t i = 0; i < steps; ++i) {
      const int64_t step = step0 + i;
      const int64_t t = p.reverse ? p.seqlen - 1 - step : step;
      const Vec u = load(u_b + t * p.u_seq_stride);
      Vec delta;
      if (p.dt_low) {
        const float* low =
            p.dt_low + b * p.dt_low_batch_stride + t * p.dt_low_seq_stride;
        delta = dt_w[0] * low[0];
        for (int r = 1; r < rank; ++r) delta += dt_w[r] * low[r];
      } else {
        delta = load(p.delta + b * p.delta_batch_stride +
                     t * p.delta_seq_stride + d0);
      }
      delta += bias;
      if (p.delta_softplus) delta = vec::Softplus(delta);
      vec::Store(delta_buf + i * vec::kLanes, delta);
      vec::Store(delta_u_buf + i * vec::kLanes, delta * u);
      Vec gate = vec::Splat(1.f);
      if (p.z) {
        gate = vec::Silu(
            load(p.z + b * p.z_batch_stride + t * p.z_seq_stride + d0));
      }
      vec::Store(gate_buf + i * vec::kLanes, gate);
    }
    for (int64_t i = 0; i < steps; ++i) {
      const int64_t step = step0 + i;
      const int64_t t = p.reverse ? p.seqlen - 1 - step : step;
      const Vec delta = vec::Load(delta_buf + i * vec::kLanes);
      const Vec delta_u = vec::Load(delta_u_buf + i * vec::kLanes);
      const float* B_t = B_b + t * p.B_seq_stride;
      const float* C_t = C_b + t * p.C_seq_stride;
      // Four partial sums break the dependency chain of C.h.
      Vec y_part[4] = {skip * load(u_b + t * p.u_seq_stride), vec::Splat(0.f),
                       vec::Splat(0.f), vec::Splat(0.f)};
#pragma GCC unroll 16
      for (int n = 0; n < n_state; ++n) {
        const Vec decay = vec::Exp2NonPositive(delta * a_log2[n]);
        h[n] = decay * h[n] + delta_u * B_t[n];
        y_part[n % 4] += h[n] * C_t[n];
      }
      const Vec y = ((y_part[0] + y_part[1]) + (y_part[2] + y_part[3])) *
                    vec::Load(gate_buf + i * vec::kLanes);
      float* dst = out_b + t * p.out_seq_stride;
      if (kFull) {
        vec::Store(dst, y);
      } else {
        vec::StorePartial(dst, y, lanes);
      }
    }
  }
}

template <int kN>
void ScanAll(const SelectiveScanParams& p) {
  for (int64_t b = 0; b < p.batch; ++b) {
    int64_t d0 = 0;
    for (; d0 + vec::kLanes <= p.dim; d0 += vec::kLanes) {
      ScanChannelBlock<kN, true>(p, b, d0, vec::kLanes);
    }
    if (d0 < p.dim) {
      ScanChannelBlock<kN, false>(p, b, d0, static_cast<int>(p.dim - d0));
    }
  }
}

}  // namespace

absl::Status CheckSelectiveScanParams(const SelectiveScanParams& p) {
  if (p.batch < 0 || p.seqlen < 0 || p.dim < 0) {
    return Invalid("batch, seqlen and dim must be >= 0");
  }
  if (p.dstate < 1 || p.dstate > kMaxState) {
    return Invalid("dstate must be in [1, " + std::to_string(kMaxState) +
                   "], got " + std::to_string(p.dstate));
  }
  if (!p.u || !p.A || !p.B || !p.C || !p.out) {
    return Invalid("u, A, B, C and out are required");
  }
  if ((p.delta == nullptr) == (p.dt_low == nullptr)) {
    return Invalid("exactly one of delta and dt_low must be given");
  }
  if (p.dt_low && (p.dt_rank < 1 || p.dt_rank > 16 || !p.dt_weight)) {
    return Invalid("dt_low needs dt_weight and dt_rank in [1, 16], got " +
                   std::to_string(p.dt_rank));
  }
  return absl::OkStatus();
}

void SelectiveScanForward(const SelectiveScanParams& p) {
  if (p.dstate == 16) {
    ScanAll<16>(p);
  } else {
    ScanAll<0>(p);
  }
}

void SelectiveScanReference(int64_t batch, int64_t seqlen, int64_t dim,
                            int64_t dstate, bool reverse, bool delta_softplus,
                            const double* u, const double* delta,
                            const double* delta_bias, const double* A,
                            const double* B, const double* C, const double* D,
                            const double* z, double* out) {
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t d = 0; d < dim; ++d) {
      std::vector<double> h(dstate, 0.0);
      for (int64_t step = 0; step < seqlen; ++step) {
        const int64_t t = reverse ? seqlen - 1 - step : step;
        const int64_t i = (b * seqlen + t) * dim + d;
        const int64_t row = (b * seqlen + t) * dstate;
        double dt = delta[i] + (delta_bias ? delta_bias[d] : 0.0);
        if (delta_softplus) dt = dt > 20.0 ? dt : std::log1p(std::exp(dt));
        double y = D ? D[d] * u[i] : 0.0;
        for (int64_t n = 0; n < dstate; ++n) {
          h[n] =
              std::exp(dt * A[d * dstate + n]) * h[n] + dt * B[row + n] * u[i];
          y += C[row + n] * h[n];
        }
        if (z) y *= z[i] / (1.0 + std::exp(-z[i]));
        out[i] = y;
      }
    }
  }
}

}  // namespace harmamba::kernels
