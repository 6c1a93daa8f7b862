// A ModelBackend that runs HARMamba through LibTorch (the HarmambaModule of
// model/torch/harmamba_module.h). This header is torch-free so that server
// code can create the backend without compiling LibTorch headers.
#ifndef HARMAMBA_MODEL_TORCH_TORCH_BACKEND_H_
#define HARMAMBA_MODEL_TORCH_TORCH_BACKEND_H_

#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "model/backend.h"
#include "model/model_file.h"

namespace harmamba {

// How HarmambaModule computes its forward pass.
enum class ForwardPath {
  // Plain LibTorch ops (a sequential loop over time for the scan), any
  // floating dtype and device, differentiable by autograd. The oracle.
  kReference,
  // Our kernels behind custom autograd functions with hand-written backward
  // kernels: kernels/cpu on the CPU, kernels/cuda on a CUDA device (builds
  // with the CUDA kernels only, see FastPathRunsOnCuda). float32.
  kFast,
};

// True when this build has the CUDA kernels, so that the fast path also runs
// on CUDA devices.
bool FastPathRunsOnCuda();

// "reference" / "fast".
const char* ForwardPathName(ForwardPath path);
// Parses "reference" or "fast"; InvalidArgument otherwise.
absl::StatusOr<ForwardPath> ParseForwardPath(std::string_view name);

struct TorchBackendOptions {
  ForwardPath path = ForwardPath::kReference;
  // A LibTorch device string. "cpu" always works; "cuda" needs a LibTorch
  // built with CUDA and a visible GPU (and, for the fast path,
  // FastPathRunsOnCuda()).
  std::string device = "cpu";
  // > 0: sets LibTorch's intra-op thread count (a process-wide setting) when
  // the backend is created. 0 leaves it as it is.
  int num_threads = 0;
};

// Builds a HarmambaModule from `weights` (copied; `weights` may be discarded
// afterwards) in eval mode. Errors: InvalidArgument for inconsistent weights
// or options, Unavailable for a device this build or machine cannot use.
//
// The backend is thread-compatible (see ModelBackend): one Run() at a time.
// Run() uses LibTorch's intra-op threads and no autograd (InferenceMode).
absl::StatusOr<std::unique_ptr<ModelBackend>> CreateTorchBackend(
    const ModelWeights& weights, const TorchBackendOptions& options = {});

}  // namespace harmamba

#endif  // HARMAMBA_MODEL_TORCH_TORCH_BACKEND_H_
