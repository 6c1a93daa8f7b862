#include "tools/inference.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "model/cpu_engine.h"
#include "model/status_macros.h"
#include "model/torch/torch_backend.h"
#ifdef HARMAMBA_CLI_HAS_CUDA_ENGINE
#include "model/gpu_engine.h"
#endif

namespace harmamba::cli {
namespace {

absl::StatusOr<std::unique_ptr<ModelBackend>> CreateReferenceBackend(
    const ModelWeights& weights, int num_threads) {
  TorchBackendOptions options;
  options.path = ForwardPath::kReference;
  options.num_threads = num_threads;
  return CreateTorchBackend(weights, options);
}

}  // namespace

const std::vector<std::string>& BackendNames() {
  static const auto* const kNames =
      new std::vector<std::string>{kFastBackend, kReferenceBackend,
#ifdef HARMAMBA_CLI_HAS_CUDA_ENGINE
                                   kCudaBackend
#endif
      };
  return *kNames;
}

absl::StatusOr<std::unique_ptr<ModelBackend>> CreateBackend(
    const std::string& name, const ModelWeights& weights, int num_threads) {
  if (name == kFastBackend) {
    CpuEngineOptions options;
    options.num_threads = num_threads;
    return CreateCpuEngine(weights, options);
  }
  if (name == kReferenceBackend) {
    return CreateReferenceBackend(weights, num_threads);
  }
#ifdef HARMAMBA_CLI_HAS_CUDA_ENGINE
  if (name == kCudaBackend) return CreateGpuEngine(weights);
#endif
  return absl::InvalidArgumentError(
      absl::StrCat("unknown backend '", name, "', expected one of ",
                   absl::StrJoin(BackendNames(), ", ")));
}

absl::Status RunInBatches(ModelBackend& backend, const float* windows,
                          int64_t n, int64_t batch_size, float* logits,
                          ProgressReporter& progress) {
  const ModelConfig& config = backend.config();
  const int64_t window_floats = config.window_floats();
  const int64_t k = config.num_classes();
  for (int64_t begin = 0; begin < n; begin += batch_size) {
    const int64_t count = std::min(batch_size, n - begin);
    RETURN_IF_ERROR(backend.Run(windows + begin * window_floats, count,
                                logits + begin * k));
    progress.Update(begin + count);
  }
  return absl::OkStatus();
}

void AddInferenceFlags(FlagParser& flags, InferenceOptions* target) {
  flags.AddInt("threads", "N", "Worker threads, 0 = all cores.",
               &target->threads, 0, 4096);
  flags.AddInt("batch", "N", "Windows per backend call.", &target->batch_size,
               1, 1 << 20);
  flags.AddChoice("backend", BackendNames(),
                  "fast = fused CPU engine; reference = LibTorch reference "
                  "path; cuda = fused CUDA engine (builds with nvcc only; "
                  "needs a GPU).",
                  &target->backend_name);
  flags.AddBool("progress",
                "Print progress on stderr (default: only when stderr is a "
                "terminal).",
                &target->progress_requested);
}

absl::StatusOr<InferenceResult> RunInference(const ModelWeights& weights,
                                             const float* windows, int64_t n,
                                             const InferenceOptions& options,
                                             const std::string& command,
                                             std::ostream& err) {
  InferenceResult result;
  ASSIGN_OR_RETURN(result.backend,
                   CreateBackend(options.backend_name, weights,
                                 static_cast<int>(options.threads)));
  result.logits.resize(n * weights.config.num_classes());
  ProgressReporter progress(err, command, n,
                            ShouldShowProgress(options.progress_requested, err),
                            /*redraw=*/IsTerminal(err));
  const auto start = std::chrono::steady_clock::now();
  RETURN_IF_ERROR(RunInBatches(*result.backend, windows, n, options.batch_size,
                               result.logits.data(), progress));
  result.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  return result;
}

std::vector<double> Softmax(const float* logits, int k) {
  std::vector<double> probabilities(k);
  if (k == 0) return probabilities;
  const double max_logit = *std::max_element(logits, logits + k);
  double sum = 0.0;
  for (int j = 0; j < k; ++j) {
    probabilities[j] = std::exp(static_cast<double>(logits[j]) - max_logit);
    sum += probabilities[j];
  }
  for (double& p : probabilities) p /= sum;
  return probabilities;
}

int ArgMax(const float* values, int k) {
  return static_cast<int>(std::max_element(values, values + k) - values);
}

}  // namespace harmamba::cli
