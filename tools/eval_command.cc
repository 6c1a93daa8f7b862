// harmamba eval: accuracy and F1 of a model on a labelled dataset split.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "model/dataset.h"
#include "model/metrics.h"
#include "model/model_file.h"
#include "model/status_macros.h"
#include "nlohmann/json.hpp"
#include "tools/commands.h"
#include "tools/inference.h"
#include "tools/progress.h"

namespace harmamba::cli {
namespace {

using json = nlohmann::ordered_json;

constexpr char kCommand[] = "eval";

// Whether `names` are the placeholders a loader invents when the layout has no
// names: "<prefix>0", "<prefix>1", ...
bool ArePlaceholderNames(const std::vector<std::string>& names,
                         const std::string& prefix) {
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] != absl::StrCat(prefix, i)) return false;
  }
  return true;
}

// The dataset with the model's channels, in the model's order. Notes what it
// did on `err` when that is not the identity.
absl::StatusOr<Dataset> MatchChannels(Dataset dataset,
                                      const ModelConfig& config,
                                      const std::string& data_path,
                                      std::ostream& err) {
  if (dataset.channel_names == config.channels) return dataset;
  if (dataset.c == config.num_channels() &&
      ArePlaceholderNames(dataset.channel_names, "channel_")) {
    err << "harmamba eval: note: " << data_path
        << " has no channel names; using its " << dataset.c
        << " channels in order as the model's ("
        << absl::StrJoin(config.channels, ", ") << ")\n";
    return dataset;
  }
  absl::StatusOr<Dataset> selected = SelectChannels(dataset, config.channels);
  if (!selected.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(
        data_path, ": the dataset does not have the model's channels (",
        absl::StrJoin(config.channels, ", "),
        "): ", selected.status().message()));
  }
  err << "harmamba eval: note: selected the model's channels ("
      << absl::StrJoin(config.channels, ", ") << ") from the dataset's "
      << dataset.c << " (" << absl::StrJoin(dataset.channel_names, ", ")
      << ")\n";
  return selected;
}

// The true labels as model class indices: the dataset's class names are
// looked up among the model's classes (identity when they agree; positional
// when the dataset has only placeholder names).
absl::StatusOr<std::vector<int>> MatchLabels(const Dataset& dataset,
                                             const ModelConfig& config,
                                             const std::string& data_path,
                                             std::ostream& err) {
  std::vector<int> to_model(dataset.num_classes(), -1);
  if (dataset.class_names == config.classes) {
    for (int k = 0; k < dataset.num_classes(); ++k) to_model[k] = k;
  } else if (ArePlaceholderNames(dataset.class_names, "class_") &&
             dataset.num_classes() <= config.num_classes()) {
    err << "harmamba eval: note: " << data_path
        << " has no class names; label k is taken as the model's class k\n";
    for (int k = 0; k < dataset.num_classes(); ++k) to_model[k] = k;
  } else {
    std::map<std::string, int> model_index;
    for (int k = 0; k < config.num_classes(); ++k) {
      model_index[config.classes[k]] = k;
    }
    for (int k = 0; k < dataset.num_classes(); ++k) {
      auto it = model_index.find(dataset.class_names[k]);
      if (it != model_index.end()) to_model[k] = it->second;
    }
    err << "harmamba eval: note: dataset classes are matched to the model's "
           "by name\n";
  }
  std::vector<int> labels(dataset.n);
  for (int64_t i = 0; i < dataset.n; ++i) {
    const int label = dataset.y[i];
    if (to_model[label] < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat(data_path, ": dataset class '",
                       dataset.class_names[label], "' (label ", label,
                       ", window ", i, ") is not one of the model's classes (",
                       absl::StrJoin(config.classes, ", "), ")"));
    }
    labels[i] = to_model[label];
  }
  return labels;
}

}  // namespace

int RunEval(const std::vector<std::string>& args, std::ostream& out,
            std::ostream& err) {
  std::string model_path;
  std::string data_path;
  std::string split = "test";
  bool as_json = false;
  InferenceOptions inference;
  FlagParser flags(
      kCommand, "--model FILE --data PATH [options]",
      "Evaluates a model on every window of a labelled dataset split and "
      "prints accuracy, macro/weighted F1, per-class precision/recall/F1 and "
      "the confusion matrix (over the whole split, not averaged over "
      "batches). PATH is a folder in the binary layout of shared/datasets, "
      "the official 'UCI HAR Dataset' folder (or its parent), or a folder "
      "of x_SPLIT.npy / y_SPLIT.npy. The model's channels and classes are "
      "matched to the dataset's by name (by position when the dataset has no "
      "names). Throughput goes to stderr.");
  flags.AddString("model", "FILE", "Model weights (.safetensors).", &model_path,
                  /*required=*/true);
  flags.AddString("data", "PATH", "Dataset folder.", &data_path,
                  /*required=*/true);
  flags.AddString("split", "NAME", "Dataset split (train, test, ...).", &split);
  flags.AddBool("json", "Print the report as one JSON object.", &as_json);
  AddInferenceFlags(flags, &inference);
  if (std::optional<int> exit_code = flags.ParseOrReport(args, out, err)) {
    return *exit_code;
  }

  absl::StatusOr<ModelWeights> weights = LoadModelFile(model_path);
  if (!weights.ok()) return ReportRuntimeError(kCommand, weights.status(), err);
  const ModelConfig& config = weights->config;
  absl::StatusOr<Dataset> loaded = LoadDataset(data_path, split);
  if (!loaded.ok()) return ReportRuntimeError(kCommand, loaded.status(), err);
  absl::StatusOr<Dataset> dataset =
      MatchChannels(*std::move(loaded), config, data_path, err);
  if (!dataset.ok()) return ReportRuntimeError(kCommand, dataset.status(), err);
  if (dataset->t != config.window_length) {
    return ReportRuntimeError(
        kCommand,
        absl::InvalidArgumentError(
            absl::StrCat(data_path, " (split ", split, "): windows have ",
                         dataset->t, " samples, the model '", config.name,
                         "' expects ", config.window_length)),
        err);
  }
  absl::StatusOr<std::vector<int>> y_true =
      MatchLabels(*dataset, config, data_path, err);
  if (!y_true.ok()) return ReportRuntimeError(kCommand, y_true.status(), err);

  const int64_t n = dataset->n;
  const int k = config.num_classes();
  absl::StatusOr<InferenceResult> result =
      RunInference(*weights, dataset->x.data(), n, inference, kCommand, err);
  if (!result.ok()) return ReportRuntimeError(kCommand, result.status(), err);
  const std::vector<float>& logits = result->logits;
  const double seconds = result->seconds;
  std::vector<int> y_pred(n);
  for (int64_t i = 0; i < n; ++i) y_pred[i] = ArgMax(logits.data() + i * k, k);
  absl::StatusOr<ClassificationReport> report = Evaluate(*y_true, y_pred, k);
  if (!report.ok()) return ReportRuntimeError(kCommand, report.status(), err);

  err << absl::StrFormat(
      "harmamba eval: %d windows in %.3f s (%.1f windows/s, %s)\n", n, seconds,
      seconds > 0 ? n / seconds : 0.0, result->backend->description());
  if (as_json) {
    json document = json::parse(ReportToJson(*report, config.classes, -1));
    document["model"] = {{"name", config.name}, {"version", config.version}};
    document["data"] = data_path;
    document["split"] = split;
    document["num_windows"] = n;
    out << document.dump(2, ' ', false, json::error_handler_t::replace) << "\n";
  } else {
    out << "model: " << config.name << " version " << config.version << " ("
        << model_path << ")\n"
        << "data:  " << data_path << ", split " << split << ", " << n
        << " windows\n\n"
        << FormatReport(*report, config.classes);
  }
  return kExitOk;
}

}  // namespace harmamba::cli
