// The fused CPU inference engine for HARMamba: no LibTorch, all 12 layers
// pushed through in small tiles of windows that stay in cache, one BLAS call
// per projection per pair, the scan and convolution from kernels/.
#ifndef HARMAMBA_MODEL_CPU_ENGINE_H_
#define HARMAMBA_MODEL_CPU_ENGINE_H_

#include <cstdint>
#include <memory>

#include "absl/status/statusor.h"
#include "model/backend.h"
#include "model/model_file.h"

namespace harmamba {

struct CpuEngineOptions {
  // Worker threads used by one Run() (including the calling thread).
  // 0 = all hardware threads.
  int num_threads = 0;
};

// Builds the engine from validated weights (folds LayerNorm affine terms into
// the input projections and precomputes A = -exp(A_log); the weights are
// copied, so `weights` may be discarded afterwards).
//
// The returned backend is thread-compatible (see ModelBackend): one Run() at
// a time; Run() itself uses `num_threads` threads.
absl::StatusOr<std::unique_ptr<ModelBackend>> CreateCpuEngine(
    const ModelWeights& weights, const CpuEngineOptions& options = {});

}  // namespace harmamba

#endif  // HARMAMBA_MODEL_CPU_ENGINE_H_
