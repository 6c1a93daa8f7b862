// Selective scan (Mamba S6 recurrence) on NVIDIA GPUs: forward and backward.
//
// Semantics are exactly those of kernels/cpu/selective_scan.h (forward:
// softplus(delta + delta_bias) with a dense or low-rank delta, decay
// exp(delta * A), input delta * B * u, output C . h + D * u, gate SiLU(z),
// forward or reverse time), on the same SelectiveScanParams struct; every
// pointer in it must be device-accessible (cudaMalloc'd or managed).
//
// This header is plain host C++ (no device code): it may be included from
// .cc files compiled by the host compiler.
//
// Thread-safety: the functions are re-entrant; each enqueues work on
// `stream` and returns without synchronising, so inputs must stay alive and
// outputs unread until the stream has reached that point. All launches are
// capturable in a CUDA graph (no allocation, no synchronisation).
#ifndef HARMAMBA_KERNELS_CUDA_SELECTIVE_SCAN_CUH_
#define HARMAMBA_KERNELS_CUDA_SELECTIVE_SCAN_CUH_

#include <cuda_runtime_api.h>

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "kernels/cpu/selective_scan.h"

namespace harmamba::kernels::cuda {

// The largest state size and low rank the CUDA kernels take.
inline constexpr int64_t kMaxScanState = 64;
inline constexpr int64_t kMaxScanDtRank = 16;

// CheckSelectiveScanParams(p) plus the CUDA limits: dstate <= 64, dt_rank
// <= 16, batch < 2^31. InvalidArgument naming the field otherwise.
absl::Status CanRunSelectiveScanForward(const SelectiveScanParams& p);

// Forward scan. The 16 (or dstate) states of a channel live in registers,
// split over `threads_per_channel` lanes (1, 2, 4 or 8; they combine C . h
// with a shuffle reduction). 0 picks by occupancy: one thread per channel
// once batch * dim fills the GPU, up to 8 per channel for small batches.
// Returns CanRunSelectiveScanForward's error, InvalidArgument for a bad
// threads_per_channel, or Internal if the launch fails.
absl::Status SelectiveScanForward(const SelectiveScanParams& p,
                                  cudaStream_t stream,
                                  int threads_per_channel = 0);

// ---- Backward ---------------------------------------------------------
//
// Gradients of a scalar loss given dout = dLoss/dout, in the CPU
// SelectiveScanGrads (kernels/cpu/selective_scan.h), so that the torch
// adapter fills both the same way; its overwrite/accumulate contract holds:
//   OVERWRITTEN for the batch of `p`: du, ddelta (w.r.t. the pre-bias
//     delta), dB, dC, dz.
//   ACCUMULATED (+=) over batch and time: dA, dD, ddelta_bias. Here the sums
//     are deterministic (fixed order; no floating-point atomics).
// Unlike the CPU backward, the low-rank delta form is accepted too: delta
// is then recomputed from dt_low and dt_weight, and ddelta is still the
// dense gradient w.r.t. dt_low . dt_weight^T (the caller's GEMMs turn it
// into d dt_low = ddelta . dt_weight and d dt_weight = ddelta^T . dt_low).
// dz is required iff p.z is given; dD and ddelta_bias are optional.
using ::harmamba::kernels::SelectiveScanGrads;

// CanRunSelectiveScanForward(p) plus the gradient pointers.
absl::Status CanRunSelectiveScanBackward(const SelectiveScanParams& p,
                                         const SelectiveScanGrads& g);

// Bytes of device scratch SelectiveScanBackward needs: every forward state
// (batch * seqlen * dstate * dim floats: 38 MB at batch 64, 73 steps,
// dim 128, N 16) plus small partial sums. The kernel recomputes the states
// (nothing is stored by the forward) and keeps them here so the reverse
// pass reads them instead of recomputing.
size_t SelectiveScanBackwardWorkspaceBytes(const SelectiveScanParams& p);

// Backward scan: one thread per (batch element, channel), states and
// adjoints in registers, dB/dC reduced across channels with warp shuffles
// in a fixed order. `workspace` (device memory of at least
// SelectiveScanBackwardWorkspaceBytes(p) bytes, 256-byte aligned, contents
// irrelevant) must not be used by anything else until the stream passes
// this call. Up to three launches.
absl::Status SelectiveScanBackward(const SelectiveScanParams& p,
                                   const SelectiveScanGrads& g, void* workspace,
                                   size_t workspace_bytes, cudaStream_t stream);

}  // namespace harmamba::kernels::cuda

#endif  // HARMAMBA_KERNELS_CUDA_SELECTIVE_SCAN_CUH_
