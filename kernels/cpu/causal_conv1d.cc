#include "kernels/cpu/causal_conv1d.h"

#include <cmath>
#include <string>

#include "kernels/cpu/vec.h"

namespace harmamba::kernels {
namespace {

using vec::Vec;

constexpr int64_t kMaxWidth = 8;

template <bool kFull>
void ConvChannelBlock(const CausalConv1dParams& p, int64_t b, int64_t d0,
                      int lanes) {
  auto load = [lanes](const float* ptr) {
    return kFull ? vec::Load(ptr) : vec::LoadPartial(ptr, lanes);
  };
  const int width = static_cast<int>(p.width);
  Vec w[kMaxWidth];
  for (int k = 0; k < width; ++k) {
    float tmp[vec::kLanes] = {};
    for (int l = 0; l < lanes; ++l) tmp[l] = p.weight[(d0 + l) * width + k];
    w[k] = vec::Load(tmp);
  }
  const Vec bias = p.bias ? load(p.bias + d0) : vec::Splat(0.f);
  const float* x_b = p.x + b * p.x_batch_stride + d0;
  float* out_b = p.out + b * p.out_batch_stride + d0;
  // Tap k reads x[t + sign * (width - 1 - k)]: sign -1 looks back (causal),
  // +1 looks ahead (the causal conv of the reversed sequence).
  const int64_t sign = p.reverse ? 1 : -1;
  for (int64_t t = 0; t < p.seqlen; ++t) {
    Vec acc = bias;
    for (int k = 0; k < width; ++k) {
      const int64_t src = t + sign * (width - 1 - k);
      if (src < 0 || src >= p.seqlen) continue;
      acc += w[k] * load(x_b + src * p.x_seq_stride);
    }
    if (p.silu) acc = vec::Silu(acc);
    if (kFull) {
      vec::Store(out_b + t * p.out_seq_stride, acc);
    } else {
      vec::StorePartial(out_b + t * p.out_seq_stride, acc, lanes);
    }
  }
}

}  // namespace

absl::Status CheckCausalConv1dParams(const CausalConv1dParams& p) {
  if (p.batch < 0 || p.seqlen < 0 || p.dim < 0) {
    return absl::InvalidArgumentError(
        "causal conv1d: batch, seqlen and dim must be >= 0");
  }
  if (p.width < 1 || p.width > kMaxWidth) {
    return absl::InvalidArgumentError(
        "causal conv1d: width must be in [1, 8], got " +
        std::to_string(p.width));
  }
  if (!p.x || !p.weight || !p.out) {
    return absl::InvalidArgumentError(
        "causal conv1d: x, weight and out are required");
  }
  if (p.x == p.out) {
    return absl::InvalidArgumentError("causal conv1d: out must not alias x");
  }
  return absl::OkStatus();
}

void CausalConv1dForward(const CausalConv1dParams& p) {
  for (int64_t b = 0; b < p.batch; ++b) {
    int64_t d0 = 0;
    for (; d0 + vec::kLanes <= p.dim; d0 += vec::kLanes) {
      ConvChannelBlock<true>(p, b, d0, vec::kLanes);
    }
    if (d0 < p.dim) {
      ConvChannelBlock<false>(p, b, d0, static_cast<int>(p.dim - d0));
    }
  }
}

void CausalConv1dReference(int64_t batch, int64_t seqlen, int64_t dim,
                           int64_t width, bool reverse, bool silu,
                           const double* x, const double* weight,
                           const double* bias, double* out) {
  const int64_t sign = reverse ? 1 : -1;
  for (int64_t b = 0; b < batch; ++b) {
    for (int64_t t = 0; t < seqlen; ++t) {
      for (int64_t d = 0; d < dim; ++d) {
        double acc = bias ? bias[d] : 0.0;
        for (int64_t k = 0; k < width; ++k) {
          const int64_t src = t + sign * (width - 1 - k);
          if (src < 0 || src >= seqlen) continue;
          acc += weight[d * width + k] * x[(b * seqlen + src) * dim + d];
        }
        if (silu) acc = acc / (1.0 + std::exp(-acc));
        out[(b * seqlen + t) * dim + d] = acc;
      }
    }
  }
}

}  // namespace harmamba::kernels
