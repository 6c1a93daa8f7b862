// Row-wise LayerNorm with an optional fused residual add on NVIDIA GPUs.
//
// Semantics are exactly those of kernels/cpu/layer_norm.h, on the same
// LayerNormParams struct (s = x + residual, written to sum_out when given;
// out = (s - mean) / sqrt(var + eps) * gamma + beta; optional mean/rstd per
// row); every pointer must be device-accessible. A row's outputs may alias
// its inputs (out == x, sum_out == residual): each row is read completely
// before any of it is written. Plain host C++ header.
//
// Thread-safety: re-entrant; enqueued on `stream` without synchronising,
// capturable in a CUDA graph.
#ifndef HARMAMBA_KERNELS_CUDA_LAYER_NORM_CUH_
#define HARMAMBA_KERNELS_CUDA_LAYER_NORM_CUH_

#include <cuda_runtime_api.h>

#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cpu/layer_norm.h"

namespace harmamba::kernels::cuda {

inline constexpr int64_t kMaxLayerNormDim = 1024;

// rows >= 0, 1 <= dim <= 1024, x and out given, eps > 0, rows < 2^31 * 4.
absl::Status CanRunLayerNorm(const LayerNormParams& p);

// One warp per row, the row held in registers; two-pass (centred) variance
// as the CPU kernel.
absl::Status LayerNormForward(const LayerNormParams& p, cudaStream_t stream);

}  // namespace harmamba::kernels::cuda

#endif  // HARMAMBA_KERNELS_CUDA_LAYER_NORM_CUH_
