// Backward of the depthwise causal conv1d (+ SiLU): the float64 oracle and
// the vectorised float32 kernel.
//
// With src(t, k) = t - (W-1) + k (forward) or t + (W-1) - k (reverse) and
// pre_t = bias + sum_k w[k] x[src(t, k)]:
//   dpre_t = dout_t * silu'(pre_t)   (dout_t without SiLU)
//   dbias += dpre_t,  dw[k] += dpre_t x[src(t, k)],  dx[src(t, k)] += w[k]
//   dpre_t
#include <cmath>
#include <vector>

#include "kernels/cpu/causal_conv1d.h"
#include "kernels/cpu/vec.h"

namespace harmamba::kernels {
namespace {

using vec::Vec;

constexpr int kMaxWidth = 8;  // as the forward

// Channels [d0, d0 + lanes) of batch element b; `dpre` is scratch for
// seqlen vectors.
template <bool kFull>
void BackwardChannelBlock(const CausalConv1dParams& p,
                          const CausalConv1dGrads& g, int64_t b, int64_t d0,
                          int lanes, Vec* dpre) {
  auto load = [lanes](const float* ptr) {
    return kFull ? vec::Load(ptr) : vec::LoadPartial(ptr, lanes);
  };
  const int width = static_cast<int>(p.width);
  Vec w[kMaxWidth], dw[kMaxWidth];
  for (int k = 0; k < width; ++k) {
    float tmp[vec::kLanes] = {};
    for (int l = 0; l < lanes; ++l) tmp[l] = p.weight[(d0 + l) * width + k];
    w[k] = vec::Load(tmp);
    dw[k] = vec::Splat(0.f);
  }
  const Vec bias = p.bias ? load(p.bias + d0) : vec::Splat(0.f);
  Vec dbias = vec::Splat(0.f);
  const float* x_b = p.x + b * p.x_batch_stride + d0;
  const float* dout_b = g.dout + b * g.dout_batch_stride + d0;
  float* dx_b = g.dx + b * g.dx_batch_stride + d0;
  // Tap k of output t reads x[t + sign * (width - 1 - k)] (see the forward).
  const int64_t sign = p.reverse ? 1 : -1;
  const int64_t L = p.seqlen;
  for (int64_t t = 0; t < L; ++t) {
    Vec pre = bias;
    for (int k = 0; k < width; ++k) {
      const int64_t src = t + sign * (width - 1 - k);
      if (src < 0 || src >= L) continue;
      pre += w[k] * load(x_b + src * p.x_seq_stride);
    }
    Vec grad = load(dout_b + t * g.dout_seq_stride);
    if (p.silu) {
      const Vec sig = vec::Sigmoid(pre);
      grad *= sig * (1.0f + pre * (1.0f - sig));
    }
    dpre[t] = grad;
    dbias += grad;
    for (int k = 0; k < width; ++k) {
      const int64_t src = t + sign * (width - 1 - k);
      if (src < 0 || src >= L) continue;
      dw[k] += grad * load(x_b + src * p.x_seq_stride);
    }
  }
  // x[s] feeds output t = s - sign * (width - 1 - k) through tap k.
  for (int64_t s = 0; s < L; ++s) {
    Vec acc = vec::Splat(0.f);
    for (int k = 0; k < width; ++k) {
      const int64_t t = s - sign * (width - 1 - k);
      if (t < 0 || t >= L) continue;
      acc += w[k] * dpre[t];
    }
    if (kFull) {
      vec::Store(dx_b + s * g.dx_seq_stride, acc);
    } else {
      vec::StorePartial(dx_b + s * g.dx_seq_stride, acc, lanes);
    }
  }
  for (int l = 0; l < lanes; ++l) {
    for (int k = 0; k < width; ++k) g.dweight[(d0 + l) * width + k] += dw[k][l];
    if (g.dbias) g.dbias[d0 + l] += dbias[l];
  }
}

}  // namespace

absl::Status CheckCausalConv1dBackward(const CausalConv1dParams& p,
                                       const CausalConv1dGrads& g) {
  // The backward does not use p.out; give the forward check a stand-in.
  CausalConv1dParams with_out = p;
  if (with_out.out == nullptr) with_out.out = g.dx;
  if (absl::Status s = CheckCausalConv1dParams(with_out); !s.ok()) return s;
  if (!g.dout || !g.dx || !g.dweight) {
    return absl::InvalidArgumentError(
        "causal conv1d backward: dout, dx and dweight are required");
  }
  if (g.dx == p.x || g.dx == g.dout) {
    return absl::InvalidArgumentError(
        "causal conv1d backward: dx must not alias x or dout");
  }
  return absl::OkStatus();
}

void CausalConv1dBackward(const CausalConv1dParams& p,
                          const CausalConv1dGrads& g) {
  std::vector<Vec> dpre(p.seqlen);
  for (int64_t b = 0; b < p.batch; ++b) {
    int64_t d0 = 0;
    for (; d0 + vec::kLanes <= p.dim; d0 += vec::kLanes) {
      BackwardChannelBlock<true>(p, g, b, d0, vec::kLanes, dpre.data());
    }
    if (d0 < p.dim) {
      BackwardChannelBlock<false>(p, g, b, d0, static_cast<int>(p.dim - d0),
                                  dpre.data());
    }
  }
}

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
