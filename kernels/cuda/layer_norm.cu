#include <string>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/layer_norm.cuh"

namespace harmamba::kernels::cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kRowsPerBlock = kThreads / 32;

__device__ __forceinline__ float WarpSum(float v) {
  return internal::GroupSum<32>(v);
}

// Lane l holds elements l, l + 32, ... (coalesced); kPerLane * 32 >= dim.
template <int kPerLane>
__global__ void __launch_bounds__(kThreads)
    LayerNormKernel(const LayerNormParams p) {
  const int lane = threadIdx.x % 32;
  const int64_t row = int64_t(blockIdx.x) * kRowsPerBlock + threadIdx.x / 32;
  if (row >= p.rows) return;  // whole warps leave together
  const int dim = static_cast<int>(p.dim);
  const float* x = p.x + row * p.x_row_stride;
  const float* res = p.residual != nullptr
                         ? p.residual + row * p.residual_row_stride
                         : nullptr;
  float v[kPerLane];
  float sum = 0.f;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int j = i * 32 + lane;
    v[i] = 0.f;
    if (j < dim) {
      v[i] = res != nullptr ? x[j] + res[j] : x[j];
      sum += v[i];
    }
  }
  const float mean = WarpSum(sum) / static_cast<float>(dim);
  float sq = 0.f;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    if (i * 32 + lane < dim) {
      const float c = v[i] - mean;
      sq = fmaf(c, c, sq);
    }
  }
  const float var = WarpSum(sq) / static_cast<float>(dim);
  const float rstd = 1.0f / sqrtf(var + p.eps);
  // Every lane has read its whole share of the row before the warp-wide
  // sums, so in-place outputs are safe from here on.
  float* out = p.out + row * p.out_row_stride;
  float* sum_out =
      p.sum_out != nullptr ? p.sum_out + row * p.sum_out_row_stride : nullptr;
#pragma unroll
  for (int i = 0; i < kPerLane; ++i) {
    const int j = i * 32 + lane;
    if (j < dim) {
      float o = (v[i] - mean) * rstd;
      if (p.gamma != nullptr) o *= p.gamma[j];
      if (p.beta != nullptr) o += p.beta[j];
      out[j] = o;
      if (sum_out != nullptr) sum_out[j] = v[i];
    }
  }
  if (lane == 0) {
    if (p.mean_out != nullptr) p.mean_out[row] = mean;
    if (p.rstd_out != nullptr) p.rstd_out[row] = rstd;
  }
}

}  // namespace

absl::Status CanRunLayerNorm(const LayerNormParams& p) {
  auto invalid = [](const std::string& what) {
    return absl::InvalidArgumentError("layer norm (cuda): " + what);
  };
  if (p.rows < 0) return invalid("rows must be >= 0");
  if (p.dim < 1 || p.dim > kMaxLayerNormDim) {
    return invalid("dim must be in [1, " + std::to_string(kMaxLayerNormDim) +
                   "], got " + std::to_string(p.dim));
  }
  if (!(p.eps > 0.f)) return invalid("eps must be > 0");
  if (p.x == nullptr || p.out == nullptr)
    return invalid("x and out are required");
  if ((p.rows + kRowsPerBlock - 1) / kRowsPerBlock > 0x7fffffff) {
    return invalid("rows must be < 2^33, got " + std::to_string(p.rows));
  }
  return absl::OkStatus();
}

absl::Status LayerNormForward(const LayerNormParams& p, cudaStream_t stream) {
  if (absl::Status s = CanRunLayerNorm(p); !s.ok()) return s;
  if (p.rows == 0) return absl::OkStatus();
  const unsigned blocks =
      static_cast<unsigned>((p.rows + kRowsPerBlock - 1) / kRowsPerBlock);
  if (p.dim <= 64) {
    LayerNormKernel<2><<<blocks, kThreads, 0, stream>>>(p);
  } else if (p.dim <= 128) {
    LayerNormKernel<4><<<blocks, kThreads, 0, stream>>>(p);
  } else if (p.dim <= 256) {
    LayerNormKernel<8><<<blocks, kThreads, 0, stream>>>(p);
  } else {
    LayerNormKernel<32><<<blocks, kThreads, 0, stream>>>(p);
  }
  return internal::CheckLaunch("layer norm forward");
}

}  // namespace harmamba::kernels::cuda
