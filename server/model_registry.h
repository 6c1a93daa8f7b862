// The models a server serves, by name.
#ifndef HARMAMBA_SERVER_MODEL_REGISTRY_H_
#define HARMAMBA_SERVER_MODEL_REGISTRY_H_

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "model/backend.h"

namespace harmamba {

// Builds a ready-to-run backend from a model file (the server's main wires
// LoadModelFile + CreateCpuEngine; tests inject fakes). Called once per file,
// from the thread that builds the registry.
using BackendFactory =
    std::function<absl::StatusOr<std::unique_ptr<ModelBackend>>(
        const std::string& path)>;

struct ServedModel {
  std::string name;  // backend->config().name
  std::string path;  // the file it came from; empty if built in memory
  std::unique_ptr<ModelBackend> backend;

  const ModelConfig& config() const { return backend->config(); }
};

// A file that was not served, and why.
struct ModelLoadFailure {
  std::string path;
  absl::Status status;
};

// Immutable after construction, hence thread-safe.
class ModelRegistry {
 public:
  // The file name suffix of model files.
  static constexpr absl::string_view kModelFileSuffix = ".safetensors";

  // Loads every regular file `*.safetensors` in `dir` (not recursive; in name
  // order) through `factory`, serving each under its config's name. A file
  // that fails to load, whose model is unusable for serving, or whose name is
  // already served is recorded in failures() and not served. Fails if `dir`
  // cannot be listed (NOT_FOUND / FAILED_PRECONDITION), if no model loads
  // (FAILED_PRECONDITION, listing the failures), or if `default_model` is
  // non-empty and not served (NOT_FOUND). An empty `default_model` selects
  // the first served model by name.
  static absl::StatusOr<std::unique_ptr<ModelRegistry>> LoadDirectory(
      const std::string& dir, const BackendFactory& factory,
      const std::string& default_model);

  // Serves backends built by the caller, with the same rules.
  static absl::StatusOr<std::unique_ptr<ModelRegistry>> FromBackends(
      std::vector<std::unique_ptr<ModelBackend>> backends,
      const std::string& default_model);

  // The model called `name`; "" is the default model. NOT_FOUND naming the
  // served models otherwise.
  absl::StatusOr<const ServedModel*> Find(absl::string_view name) const;

  // Sorted by name.
  const std::vector<std::unique_ptr<ServedModel>>& models() const {
    return models_;
  }
  const ServedModel& default_model() const { return *default_model_; }
  const std::vector<ModelLoadFailure>& failures() const { return failures_; }

 private:
  ModelRegistry() = default;
  // Checks what serving needs of a model (window, channels, classes).
  static absl::Status CheckServable(const ModelConfig& config);
  static absl::StatusOr<std::unique_ptr<ModelRegistry>> Finish(
      std::unique_ptr<ModelRegistry> registry,
      const std::string& default_model);
  // Adds the model unless its name is taken (then records a failure).
  void Add(std::unique_ptr<ServedModel> model);

  std::vector<std::unique_ptr<ServedModel>> models_;
  const ServedModel* default_model_ = nullptr;
  std::vector<ModelLoadFailure> failures_;
};

}  // namespace harmamba

#endif  // HARMAMBA_SERVER_MODEL_REGISTRY_H_
