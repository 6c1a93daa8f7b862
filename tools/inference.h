// Shared pieces of `harmamba predict` and `harmamba eval`: their inference
// flags, choosing a model backend by name, running it over many windows in
// batches, and softmax.
//
// All functions are thread-compatible: a backend is used by one thread.
#ifndef HARMAMBA_TOOLS_INFERENCE_H_
#define HARMAMBA_TOOLS_INFERENCE_H_

#include <cstdint>
#include <memory>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "model/backend.h"
#include "model/model_file.h"
#include "tools/flag_parser.h"
#include "tools/progress.h"

namespace harmamba::cli {

// Backend names accepted by --backend:
//   "fast"      the fused CPU engine (model/cpu_engine.h);
//   "reference" the LibTorch reference path (model/torch/torch_backend.h).
inline constexpr char kFastBackend[] = "fast";
inline constexpr char kReferenceBackend[] = "reference";
inline constexpr char kCudaBackend[] = "cuda";  // only with the CUDA engine
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

// What predict and eval take from their shared flags; the defaults are the
// flags' defaults.
struct InferenceOptions {
  std::string backend_name = kFastBackend;
  int64_t threads = 0;  // 0 = all cores
  int64_t batch_size = 256;
  bool progress_requested = false;
};

// Registers --threads, --batch, --backend and --progress, in that order, on
// `flags`, writing into `*target` (which must outlive the parse).
void AddInferenceFlags(FlagParser& flags, InferenceOptions* target);

// The logits of a whole input and the backend that produced them.
struct InferenceResult {
  std::unique_ptr<ModelBackend> backend;
  std::vector<float> logits;  // n * K
  double seconds = 0;         // the batched runs alone, wall time
};

// Creates the backend `options.backend_name` for `weights` and runs it over
// `n` windows (n * T * C floats) in batches of `options.batch_size`, with
// progress labelled `command` on `err` (shown as ShouldShowProgress says).
// Returns CreateBackend's or the backend's error.
absl::StatusOr<InferenceResult> RunInference(const ModelWeights& weights,
                                             const float* windows, int64_t n,
                                             const InferenceOptions& options,
                                             const std::string& command,
                                             std::ostream& err);

// Softmax of `k` logits, computed in double after subtracting the maximum
// (stable for any finite logits).
std::vector<double> Softmax(const float* logits, int k);

// The index of the largest value (the first on ties).
int ArgMax(const float* values, int k);

}  // namespace harmamba::cli

#endif  // HARMAMBA_TOOLS_INFERENCE_H_
