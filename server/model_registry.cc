#include "server/model_registry.h"

#include <algorithm>
#include <filesystem>
#include <system_error>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace harmamba {

namespace fs = std::filesystem;

absl::Status ModelRegistry::CheckServable(const ModelConfig& config) {
  if (config.name.empty()) {
    return absl::InvalidArgumentError("harmamba.name: expected a model name");
  }
  if (config.window_length < 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "harmamba.window_length: expected >= 1, got ", config.window_length));
  }
  if (config.num_channels() < 1) {
    return absl::InvalidArgumentError(
        "harmamba.channels: expected at least one channel");
  }
  if (config.num_classes() < 1) {
    return absl::InvalidArgumentError(
        "harmamba.classes: expected at least one class");
  }
  return absl::OkStatus();
}

void ModelRegistry::Add(std::unique_ptr<ServedModel> model) {
  for (const auto& served : models_) {
    if (served->name == model->name) {
      failures_.push_back(
          {model->path,
           absl::AlreadyExistsError(absl::StrCat(
               "harmamba.name: model '", model->name, "' is already served",
               served->path.empty() ? "" : " from ", served->path))});
      return;
    }
  }
  models_.push_back(std::move(model));
}

absl::StatusOr<std::unique_ptr<ModelRegistry>> ModelRegistry::LoadDirectory(
    const std::string& dir, const BackendFactory& factory,
    const std::string& default_model) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) {
    return absl::NotFoundError(
        absl::StrCat("model_dir: '", dir, "' is not a directory"));
  }
  std::vector<std::string> paths;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end;
       it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (absl::EndsWith(name, kModelFileSuffix) && it->is_regular_file(ec)) {
      paths.push_back(it->path().string());
    }
  }
  if (ec) {
    return absl::FailedPreconditionError(
        absl::StrCat("model_dir: cannot list '", dir, "': ", ec.message()));
  }
  std::sort(paths.begin(), paths.end());

  std::unique_ptr<ModelRegistry> registry(new ModelRegistry());
  for (const std::string& path : paths) {
    absl::StatusOr<std::unique_ptr<ModelBackend>> backend = factory(path);
    absl::Status status = backend.status();
    if (status.ok() && *backend == nullptr) {
      status = absl::InternalError("the backend factory returned nothing");
    }
    if (status.ok()) status = CheckServable((*backend)->config());
    if (!status.ok()) {
      registry->failures_.push_back({path, status});
      continue;
    }
    auto model = std::make_unique<ServedModel>();
    model->name = (*backend)->config().name;
    model->path = path;
    model->backend = std::move(*backend);
    registry->Add(std::move(model));
  }
  if (registry->models_.empty()) {
    std::vector<std::string> reasons;
    for (const auto& f : registry->failures_) {
      reasons.push_back(absl::StrCat(f.path, ": ", f.status.ToString()));
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "model_dir: no model could be served from '", dir, "' (", paths.size(),
        " *", kModelFileSuffix, " files", reasons.empty() ? "" : "; ",
        absl::StrJoin(reasons, "; "), ")"));
  }
  return Finish(std::move(registry), default_model);
}

absl::StatusOr<std::unique_ptr<ModelRegistry>> ModelRegistry::FromBackends(
    std::vector<std::unique_ptr<ModelBackend>> backends,
    const std::string& default_model) {
  std::unique_ptr<ModelRegistry> registry(new ModelRegistry());
  for (auto& backend : backends) {
    if (backend == nullptr) {
      return absl::InvalidArgumentError("backends: expected no null entries");
    }
    if (absl::Status s = CheckServable(backend->config()); !s.ok()) return s;
    auto model = std::make_unique<ServedModel>();
    model->name = backend->config().name;
    model->backend = std::move(backend);
    registry->Add(std::move(model));
  }
  if (!registry->failures_.empty()) return registry->failures_[0].status;
  if (registry->models_.empty()) {
    return absl::InvalidArgumentError("backends: expected at least one model");
  }
  return Finish(std::move(registry), default_model);
}

absl::StatusOr<std::unique_ptr<ModelRegistry>> ModelRegistry::Finish(
    std::unique_ptr<ModelRegistry> registry, const std::string& default_model) {
  std::sort(registry->models_.begin(), registry->models_.end(),
            [](const auto& a, const auto& b) { return a->name < b->name; });
  if (default_model.empty()) {
    registry->default_model_ = registry->models_.front().get();
    return registry;
  }
  absl::StatusOr<const ServedModel*> found = registry->Find(default_model);
  if (!found.ok()) {
    return absl::NotFoundError(
        absl::StrCat("default_model: ", found.status().message()));
  }
  registry->default_model_ = *found;
  return registry;
}

absl::StatusOr<const ServedModel*> ModelRegistry::Find(
    absl::string_view name) const {
  if (name.empty() && default_model_ != nullptr) return default_model_;
  for (const auto& model : models_) {
    if (model->name == name) return model.get();
  }
  std::vector<std::string> names;
  for (const auto& model : models_) names.push_back(model->name);
  return absl::NotFoundError(
      absl::StrCat("model: no model named '", name,
                   "' is served (serving: ", absl::StrJoin(names, ", "), ")"));
}

}  // namespace harmamba
