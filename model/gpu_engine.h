// The CUDA inference engine for HARMamba: the fused kernels of
// kernels/cuda/harmamba_fused.cuh (one launch per bidirectional pair, one CTA
// per window), with the weights folded and transposed once at creation.
// No LibTorch. Built only when the CUDA kernels are (HARMAMBA_CUDA).
//
// Limits (CanRunFusedPair): d_state <= 16, d_inner <= 256, d_conv <= 8,
// dt_rank <= 16. A window's activations live in one CTA's shared memory
// when they fit (<= ~100 tokens at d_model 64: UCI-HAR, WISDM, UniMiB-SHAR);
// otherwise (PAMAP2's 289 tokens) in global scratch, 1024 windows per
// launch.
#ifndef HARMAMBA_MODEL_GPU_ENGINE_H_
#define HARMAMBA_MODEL_GPU_ENGINE_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "model/backend.h"
#include "model/model_file.h"

namespace harmamba {

struct GpuEngineOptions {
  // CUDA device ordinal.
  int device = 0;
  // Windows per launch; larger Run() calls are split. Device buffers for
  // this many windows are allocated at creation (~19 KB each at UCI sizes;
  // at most 1024 windows, ~650 KB each, when global scratch is needed).
  int64_t max_batch = 4096;
  // Record each distinct launch size's copies and kernel launches as a CUDA
  // graph on its first Run() and replay the graph afterwards (one launch
  // instead of 2 + depth/2 kernels and 2 copies). With the server's batch
  // buckets that is one graph per bucket. At most kMaxCudaGraphs sizes are
  // kept; other sizes run uncaptured. Same results either way (bitwise).
  bool cuda_graphs = true;
  // Threads per window (kernels::cuda::FusedPairParams::threads): 256 or
  // 512; 0 = the kernel's default (512).
  int pair_threads = 0;
  static constexpr int kMaxCudaGraphs = 64;
};

// Validates the weights, checks the kernels' limits, uploads the weights
// and allocates the buffers. Errors: InvalidArgument for weights or shapes
// the kernels cannot run, Internal for CUDA failures (no device, out of
// memory), each naming the problem.
//
// The backend is thread-compatible (see ModelBackend): one Run() at a
// time. Run() copies the windows through pinned host memory to the device,
// runs the forward pass on its own stream (replaying a CUDA graph, see
// GpuEngineOptions::cuda_graphs) and waits for the logits.
absl::StatusOr<std::unique_ptr<ModelBackend>> CreateGpuEngine(
    const ModelWeights& weights, const GpuEngineOptions& options = {});

}  // namespace harmamba

#endif  // HARMAMBA_MODEL_GPU_ENGINE_H_
