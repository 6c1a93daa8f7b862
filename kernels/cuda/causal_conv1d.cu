// Depthwise causal conv1d kernels. Tap k of channel d reads
// x[t + sign (W - 1 - k)], sign = -1 forward (looks back), +1 reverse (looks
// ahead), zero outside [0, seqlen); the same convention as the CPU kernel.
#include <string>

#include "kernels/cuda/causal_conv1d.cuh"
#include "kernels/cuda/common.cuh"

namespace harmamba::kernels::cuda {
namespace {

constexpr int kThreads = 128;  // channels per CTA
constexpr int kTile = 32;      // time steps per thread
constexpr int kMaxWidth = 8;
constexpr int kSliceBatch = 4;  // batch elements per dweight partial

int64_t TimeTiles(const CausalConv1dParams& p) {
  return (p.seqlen + kTile - 1) / kTile;
}

int64_t BatchSlices(const CausalConv1dParams& p) {
  return (p.batch + kSliceBatch - 1) / kSliceBatch;
}

dim3 TileGrid(const CausalConv1dParams& p) {
  return dim3(static_cast<unsigned>(p.batch * TimeTiles(p)),
              static_cast<unsigned>((p.dim + kThreads - 1) / kThreads));
}

__device__ __forceinline__ float PreActivation(const CausalConv1dParams& p,
                                               const float (&w)[kMaxWidth],
                                               float bias, const float* x_bd,
                                               int64_t t) {
  const int width = static_cast<int>(p.width);
  const int64_t sign = p.reverse ? 1 : -1;
  float acc = bias;
#pragma unroll
  for (int k = 0; k < kMaxWidth; ++k) {
    if (k < width) {
      const int64_t src = t + sign * (width - 1 - k);
      if (src >= 0 && src < p.seqlen) {
        acc = fmaf(w[k], x_bd[src * p.x_seq_stride], acc);
      }
    }
  }
  return acc;
}

__device__ __forceinline__ void LoadTaps(const CausalConv1dParams& p, int64_t d,
                                         float (&w)[kMaxWidth]) {
#pragma unroll
  for (int k = 0; k < kMaxWidth; ++k) {
    w[k] = k < p.width ? p.weight[d * p.width + k] : 0.f;
  }
}

__global__ void __launch_bounds__(kThreads)
    CausalConv1dFwdKernel(const CausalConv1dParams p) {
  const int64_t tiles = (p.seqlen + kTile - 1) / kTile;
  const int64_t b = blockIdx.x / tiles;
  const int64_t t0 = (blockIdx.x % tiles) * kTile;
  const int64_t d = int64_t(blockIdx.y) * kThreads + threadIdx.x;
  if (d >= p.dim) return;
  float w[kMaxWidth];
  LoadTaps(p, d, w);
  const float bias = p.bias != nullptr ? p.bias[d] : 0.f;
  const float* x_bd = p.x + b * p.x_batch_stride + d;
  float* out_bd = p.out + b * p.out_batch_stride + d;
  const int64_t t_end = t0 + kTile < p.seqlen ? t0 + kTile : p.seqlen;
  for (int64_t t = t0; t < t_end; ++t) {
    float v = PreActivation(p, w, bias, x_bd, t);
    if (p.silu) v = internal::Silu(v);
    out_bd[t * p.out_seq_stride] = v;
  }
}

// dpre[b][t][d] = dout * act'(pre), into the contiguous workspace.
__global__ void __launch_bounds__(kThreads)
    CausalConv1dPreGradKernel(const CausalConv1dParams p,
                              const CausalConv1dGrads g,
                              float* __restrict__ dpre) {
  const int64_t tiles = (p.seqlen + kTile - 1) / kTile;
  const int64_t b = blockIdx.x / tiles;
  const int64_t t0 = (blockIdx.x % tiles) * kTile;
  const int64_t d = int64_t(blockIdx.y) * kThreads + threadIdx.x;
  if (d >= p.dim) return;
  float w[kMaxWidth];
  LoadTaps(p, d, w);
  const float bias = p.bias != nullptr ? p.bias[d] : 0.f;
  const float* x_bd = p.x + b * p.x_batch_stride + d;
  const int64_t t_end = t0 + kTile < p.seqlen ? t0 + kTile : p.seqlen;
  for (int64_t t = t0; t < t_end; ++t) {
    float grad = g.dout[b * g.dout_batch_stride + t * g.dout_seq_stride + d];
    if (p.silu) grad *= internal::SiluGrad(PreActivation(p, w, bias, x_bd, t));
    dpre[(b * p.seqlen + t) * p.dim + d] = grad;
  }
}

// dx[b][s][d] = sum_k w[d][k] dpre[b][s - sign (W - 1 - k)][d].
__global__ void __launch_bounds__(kThreads)
    CausalConv1dDxKernel(const CausalConv1dParams p, const CausalConv1dGrads g,
                         const float* __restrict__ dpre) {
  const int64_t tiles = (p.seqlen + kTile - 1) / kTile;
  const int64_t b = blockIdx.x / tiles;
  const int64_t s0 = (blockIdx.x % tiles) * kTile;
  const int64_t d = int64_t(blockIdx.y) * kThreads + threadIdx.x;
  if (d >= p.dim) return;
  float w[kMaxWidth];
  LoadTaps(p, d, w);
  const int width = static_cast<int>(p.width);
  const int64_t sign = p.reverse ? 1 : -1;
  const float* dpre_bd = dpre + b * p.seqlen * p.dim + d;
  const int64_t s_end = s0 + kTile < p.seqlen ? s0 + kTile : p.seqlen;
  for (int64_t s = s0; s < s_end; ++s) {
    float acc = 0.f;
#pragma unroll
    for (int k = 0; k < kMaxWidth; ++k) {
      if (k < width) {
        const int64_t t = s - sign * (width - 1 - k);
        if (t >= 0 && t < p.seqlen) acc = fmaf(w[k], dpre_bd[t * p.dim], acc);
      }
    }
    g.dx[b * g.dx_batch_stride + s * g.dx_seq_stride + d] = acc;
  }
}

// partial[slice][d][0..W) = sum over the slice's batch elements and all t
// of dpre * x at tap k; partial[slice][d][W] = sum of dpre (the bias).
__global__ void __launch_bounds__(kThreads)
    CausalConv1dParamPartialKernel(const CausalConv1dParams p,
                                   const float* __restrict__ dpre,
                                   float* __restrict__ partial) {
  const int64_t slice = blockIdx.x;
  const int64_t d = int64_t(blockIdx.y) * kThreads + threadIdx.x;
  if (d >= p.dim) return;
  const int width = static_cast<int>(p.width);
  const int64_t sign = p.reverse ? 1 : -1;
  float dw[kMaxWidth] = {};
  float db = 0.f;
  const int64_t b_end =
      (slice + 1) * kSliceBatch < p.batch ? (slice + 1) * kSliceBatch : p.batch;
  for (int64_t b = slice * kSliceBatch; b < b_end; ++b) {
    const float* x_bd = p.x + b * p.x_batch_stride + d;
    const float* dpre_bd = dpre + b * p.seqlen * p.dim + d;
    for (int64_t t = 0; t < p.seqlen; ++t) {
      const float grad = dpre_bd[t * p.dim];
      db += grad;
#pragma unroll
      for (int k = 0; k < kMaxWidth; ++k) {
        if (k < width) {
          const int64_t src = t + sign * (width - 1 - k);
          if (src >= 0 && src < p.seqlen) {
            dw[k] = fmaf(grad, x_bd[src * p.x_seq_stride], dw[k]);
          }
        }
      }
    }
  }
  float* dst = partial + (slice * p.dim + d) * (width + 1);
#pragma unroll
  for (int k = 0; k < kMaxWidth; ++k) {
    if (k < width) dst[k] = dw[k];
  }
  dst[width] = db;
}

__global__ void CausalConv1dParamReduceKernel(const CausalConv1dParams p,
                                              const CausalConv1dGrads g,
                                              const float* __restrict__ partial,
                                              int64_t slices) {
  const int64_t cols = p.width + 1;
  const int64_t total = p.dim * cols;
  for (int64_t idx = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
       idx < total; idx += int64_t(gridDim.x) * blockDim.x) {
    const int64_t j = idx % cols, d = idx / cols;
    float* dst = j < p.width ? g.dweight + d * p.width + j
                             : (g.dbias != nullptr ? g.dbias + d : nullptr);
    if (dst == nullptr) continue;
    float sum = 0.f;
    for (int64_t s = 0; s < slices; ++s)
      sum += partial[(s * p.dim + d) * cols + j];
    *dst += sum;
  }
}

struct Layout {
  size_t dpre_bytes = 0, partial_bytes = 0;
  size_t total() const { return dpre_bytes + partial_bytes; }
};

Layout BackwardLayout(const CausalConv1dParams& p) {
  using internal::AlignUp;
  Layout l;
  l.dpre_bytes =
      AlignUp(sizeof(float) * static_cast<size_t>(p.batch) * p.seqlen * p.dim);
  l.partial_bytes =
      AlignUp(sizeof(float) * static_cast<size_t>(BatchSlices(p)) * p.dim *
              (p.width + 1));
  return l;
}

}  // namespace

absl::Status CanRunCausalConv1dForward(const CausalConv1dParams& p) {
  if (absl::Status s = CheckCausalConv1dParams(p); !s.ok()) return s;
  if (p.batch * TimeTiles(p) > 0x7fffffff) {
    return absl::InvalidArgumentError(
        "causal conv1d (cuda): batch * ceil(seqlen / 32) must be < 2^31, got " +
        std::to_string(p.batch * TimeTiles(p)));
  }
  if ((p.dim + kThreads - 1) / kThreads > 65535) {
    return absl::InvalidArgumentError("causal conv1d (cuda): dim must be <= " +
                                      std::to_string(65535 * kThreads) +
                                      ", got " + std::to_string(p.dim));
  }
  return absl::OkStatus();
}

absl::Status CausalConv1dForward(const CausalConv1dParams& p,
                                 cudaStream_t stream) {
  if (absl::Status s = CanRunCausalConv1dForward(p); !s.ok()) return s;
  if (p.batch == 0 || p.seqlen == 0 || p.dim == 0) return absl::OkStatus();
  CausalConv1dFwdKernel<<<TileGrid(p), kThreads, 0, stream>>>(p);
  return internal::CheckLaunch("causal conv1d forward");
}

absl::Status CanRunCausalConv1dBackward(const CausalConv1dParams& p,
                                        const CausalConv1dGrads& g) {
  // The backward does not use p.out (as on the CPU); give the forward check a
  // stand-in.
  CausalConv1dParams with_out = p;
  if (with_out.out == nullptr) with_out.out = g.dx;
  if (absl::Status s = CanRunCausalConv1dForward(with_out); !s.ok()) return s;
  if (!g.dout || !g.dx || !g.dweight) {
    return absl::InvalidArgumentError(
        "causal conv1d backward (cuda): dout, dx and dweight are required");
  }
  if (g.dx == p.x || g.dx == g.dout) {
    return absl::InvalidArgumentError(
        "causal conv1d backward (cuda): dx must not alias x or dout");
  }
  return absl::OkStatus();
}

size_t CausalConv1dBackwardWorkspaceBytes(const CausalConv1dParams& p) {
  return BackwardLayout(p).total();
}

absl::Status CausalConv1dBackward(const CausalConv1dParams& p,
                                  const CausalConv1dGrads& g, void* workspace,
                                  size_t workspace_bytes, cudaStream_t stream) {
  if (absl::Status s = CanRunCausalConv1dBackward(p, g); !s.ok()) return s;
  const Layout layout = BackwardLayout(p);
  if (workspace_bytes < layout.total() ||
      (layout.total() > 0 && workspace == nullptr)) {
    return absl::InvalidArgumentError(
        "causal conv1d backward (cuda): workspace must hold " +
        std::to_string(layout.total()) + " bytes, got " +
        std::to_string(workspace_bytes));
  }
  if (reinterpret_cast<uintptr_t>(workspace) % 256 != 0) {
    return absl::InvalidArgumentError(
        "causal conv1d backward (cuda): workspace must be 256-byte aligned");
  }
  if (p.batch == 0 || p.seqlen == 0 || p.dim == 0) return absl::OkStatus();
  float* dpre = static_cast<float*>(workspace);
  float* partial = reinterpret_cast<float*>(static_cast<char*>(workspace) +
                                            layout.dpre_bytes);
  CausalConv1dPreGradKernel<<<TileGrid(p), kThreads, 0, stream>>>(p, g, dpre);
  if (absl::Status s = internal::CheckLaunch("causal conv1d backward (dpre)");
      !s.ok()) {
    return s;
  }
  CausalConv1dDxKernel<<<TileGrid(p), kThreads, 0, stream>>>(p, g, dpre);
  if (absl::Status s = internal::CheckLaunch("causal conv1d backward (dx)");
      !s.ok()) {
    return s;
  }
  const int64_t slices = BatchSlices(p);
  const dim3 partial_grid(
      static_cast<unsigned>(slices),
      static_cast<unsigned>((p.dim + kThreads - 1) / kThreads));
  CausalConv1dParamPartialKernel<<<partial_grid, kThreads, 0, stream>>>(
      p, dpre, partial);
  if (absl::Status s =
          internal::CheckLaunch("causal conv1d backward (dweight partials)");
      !s.ok()) {
    return s;
  }
  const int64_t total = p.dim * (p.width + 1);
  const unsigned blocks =
      static_cast<unsigned>(total / 256 + 1 < 4096 ? total / 256 + 1 : 4096);
  CausalConv1dParamReduceKernel<<<blocks, 256, 0, stream>>>(p, g, partial,
                                                            slices);
  return internal::CheckLaunch("causal conv1d backward (dweight sum)");
}

}  // namespace harmamba::kernels::cuda
