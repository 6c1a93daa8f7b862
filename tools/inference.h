// Shared pieces of `harmamba predict` and `harmamba eval`: choosing a model
// backend by name, running it over many windows in batches, and softmax.
//
// All functions are thread-compatible: a backend is used by one thread.
#ifndef HARMAMBA_TOOLS_INFERENCE_H_
#define HARMAMBA_TOOLS_INFERENCE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/backend.h"
#include "model/model_file.h"
#include "tools/progress.h"

namespace harmamba::cli {

// Backend names accepted by --backend:
//   "fast"      the fused CPU engine (model/cpu_engine.h);
//   "reference" the LibTorch reference path (model/torch/torch_backend.h).
inline constexpr char kFastBackend[] = "fast";
inline constexpr char kReferenceBackend[] = "reference";
const std::vector<std::string>& BackendNames();

// Creates the backend called `name` for `weights` (copied by the backend).
// `num_threads` 0 = the backend's default (all hardware threads for "fast").
// InvalidArgument for an unknown name; Unavailable for a backend this build
// does not contain.
absl::StatusOr<std::unique_ptr<ModelBackend>> CreateBackend(
    const std::string& name, const ModelWeights& weights, int num_threads);

// Runs `backend` over `n` windows (n * T * C floats) in batches of at most
// `batch_size`, writing n * K logits, and reports progress after each batch.
absl::Status RunInBatches(ModelBackend& backend, const float* windows,
                          int64_t n, int64_t batch_size, float* logits,
                          ProgressReporter& progress);

// Softmax of `k` logits, computed in double after subtracting the maximum
// (stable for any finite logits).
std::vector<double> Softmax(const float* logits, int k);

// The index of the largest value (the first on ties).
int ArgMax(const float* values, int k);

}  // namespace harmamba::cli

#endif  // HARMAMBA_TOOLS_INFERENCE_H_
