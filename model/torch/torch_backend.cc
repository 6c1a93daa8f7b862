#include "model/torch/torch_backend.h"

#include <torch/torch.h>

#include <cstring>
#include <optional>
#include <utility>

#include "absl/strings/str_cat.h"
#include "model/status_macros.h"
#include "model/torch/harmamba_module.h"
#include "model/torch/kernel_ops_cuda.h"

namespace harmamba {
namespace {

class TorchBackend : public ModelBackend {
 public:
  TorchBackend(std::shared_ptr<HarmambaModule> module, ForwardPath path,
               torch::Device device)
      : module_(std::move(module)), path_(path), device_(device) {}

  const ModelConfig& config() const override { return module_->config(); }

  std::string description() const override {
    return absl::StrCat("torch-", ForwardPathName(path_), " (", device_.str(),
                        ", ", at::get_num_threads(), " threads)");
  }

  absl::Status Run(const float* windows, int64_t n, float* logits) override {
    if (windows == nullptr || logits == nullptr) {
      return absl::InvalidArgumentError("windows and logits must not be null");
    }
    if (n < 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("n must be >= 1, got ", n));
    }
    const ModelConfig& c = module_->config();
    try {
      torch::InferenceMode inference;
      const torch::Tensor x = torch::from_blob(
          const_cast<float*>(windows), {n, c.window_length, c.num_channels()},
          torch::kFloat32);
      const torch::Tensor out = module_->forward(x.to(device_), path_)
                                    .to(torch::kCPU, torch::kFloat32)
                                    .contiguous();
      std::memcpy(logits, out.data_ptr<float>(),
                  sizeof(float) * n * c.num_classes());
    } catch (const c10::Error& e) {
      return absl::InternalError(
          absl::StrCat("torch forward failed: ", e.what_without_backtrace()));
    } catch (const std::exception& e) {
      return absl::InternalError(
          absl::StrCat("torch forward failed: ", e.what()));
    }
    return absl::OkStatus();
  }

 private:
  const std::shared_ptr<HarmambaModule> module_;
  const ForwardPath path_;
  const torch::Device device_;
};

}  // namespace

bool FastPathRunsOnCuda() { return internal::CudaKernelsBuilt(); }

const char* ForwardPathName(ForwardPath path) {
  switch (path) {
    case ForwardPath::kReference:
      return "reference";
    case ForwardPath::kFast:
      return "fast";
  }
  return "unknown";
}

absl::StatusOr<ForwardPath> ParseForwardPath(std::string_view name) {
  if (name == "reference") return ForwardPath::kReference;
  if (name == "fast") return ForwardPath::kFast;
  return absl::InvalidArgumentError(
      absl::StrCat("forward path must be \"reference\" or \"fast\", got \"",
                   std::string(name), "\""));
}

absl::StatusOr<std::unique_ptr<ModelBackend>> CreateTorchBackend(
    const ModelWeights& weights, const TorchBackendOptions& options) {
  if (options.num_threads < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("num_threads must be >= 0, got ", options.num_threads));
  }
  std::optional<torch::Device> device;
  try {
    device.emplace(options.device);
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(absl::StrCat(
        "device \"", options.device, "\" is not a LibTorch device string"));
  }
  if (device->is_cuda() && !torch::cuda::is_available()) {
    return absl::UnavailableError(absl::StrCat(
        "device \"", options.device,
        "\": this LibTorch has no CUDA support or no GPU is visible"));
  }
  if (!device->is_cpu() && !device->is_cuda()) {
    return absl::InvalidArgumentError(
        absl::StrCat("device must be \"cpu\" or \"cuda[:i]\", got \"",
                     options.device, "\""));
  }
  if (options.path == ForwardPath::kFast && !device->is_cpu() &&
      !FastPathRunsOnCuda()) {
    return absl::InvalidArgumentError(
        "this build has no CUDA kernels: the fast path runs on the CPU only; "
        "use device \"cpu\" or the reference path");
  }
  if (options.num_threads > 0) at::set_num_threads(options.num_threads);

  std::shared_ptr<HarmambaModule> module;
  try {
    module = std::make_shared<HarmambaModule>(weights.config);
  } catch (const c10::Error& e) {
    return absl::InvalidArgumentError(e.what_without_backtrace());
  }
  RETURN_IF_ERROR(module->LoadWeights(weights));
  module->eval();
  try {
    module->to(*device);
  } catch (const c10::Error& e) {
    return absl::UnavailableError(
        absl::StrCat("moving the model to ", options.device,
                     " failed: ", e.what_without_backtrace()));
  }
  return std::unique_ptr<ModelBackend>(
      new TorchBackend(std::move(module), options.path, *device));
}

}  // namespace harmamba
