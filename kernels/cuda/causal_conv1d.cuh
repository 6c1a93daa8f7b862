// Depthwise causal conv1d (+ bias, + SiLU) on NVIDIA GPUs: forward and
// backward, both directions.
//
// Semantics are exactly those of kernels/cpu/causal_conv1d.h, on the same
// CausalConv1dParams struct (`reverse` = the causal convolution of the
// time-reversed sequence, read back in original order; width <= 8); every
// pointer must be device-accessible. Plain host C++ header.
//
// Thread-safety: re-entrant; work is enqueued on `stream` without
// synchronising and is capturable in a CUDA graph.
#ifndef HARMAMBA_KERNELS_CUDA_CAUSAL_CONV1D_CUH_
#define HARMAMBA_KERNELS_CUDA_CAUSAL_CONV1D_CUH_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cpu/causal_conv1d.h"

namespace harmamba::kernels::cuda {

// CheckCausalConv1dParams(p) plus batch * time tiles < 2^31.
absl::Status CanRunCausalConv1dForward(const CausalConv1dParams& p);

// One thread per (batch element, channel, tile of 32 time steps).
absl::Status CausalConv1dForward(const CausalConv1dParams& p,
                                 cudaStream_t stream);

// Gradients given dout, in the CPU CausalConv1dGrads
// (kernels/cpu/causal_conv1d.h); the pre-activation is recomputed. Its
// contract holds: dx is OVERWRITTEN; dweight and dbias are ACCUMULATED (+=)
// over batch and time, here in a fixed order (no floating-point atomics;
// reproducible).
using ::harmamba::kernels::CausalConv1dGrads;

absl::Status CanRunCausalConv1dBackward(const CausalConv1dParams& p,
                                        const CausalConv1dGrads& g);

// Device scratch for CausalConv1dBackward: the gradient w.r.t. the
// pre-activation (batch * seqlen * dim floats) plus per-batch-slice partial
// sums of dweight/dbias.
size_t CausalConv1dBackwardWorkspaceBytes(const CausalConv1dParams& p);

// Four launches: pre-activation gradient, dx, dweight/dbias partials, their
// sum. `workspace` as for SelectiveScanBackward (256-byte aligned, at least
// CausalConv1dBackwardWorkspaceBytes(p), private to this call until the
// stream passes it).
absl::Status CausalConv1dBackward(const CausalConv1dParams& p,
                                  const CausalConv1dGrads& g, void* workspace,
                                  size_t workspace_bytes, cudaStream_t stream);

}  // namespace harmamba::kernels::cuda

#endif  // HARMAMBA_KERNELS_CUDA_CAUSAL_CONV1D_CUH_
