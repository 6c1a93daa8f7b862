// harmamba predict: classify the windows of a file.
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "model/array_io.h"
#include "model/model_file.h"
#include "nlohmann/json.hpp"
#include "tools/commands.h"
#include "tools/inference.h"
#include "tools/progress.h"

namespace harmamba::cli {
namespace {

using json = nlohmann::ordered_json;

constexpr char kCommand[] = "predict";

}  // namespace

int RunPredict(const std::vector<std::string>& args, std::ostream& out,
               std::ostream& err) {
  std::string model_path;
  std::string input_path;
  std::string logits_path;
  bool as_json = false;
  InferenceOptions inference;
  FlagParser flags(
      kCommand, "--model FILE --input FILE [options]",
      "Classifies every window of an input file and prints one line per "
      "window: index, label and probability (tab-separated), or one JSON "
      "document with --json. Input formats by extension: .npy float or "
      "integer array (N, T, C) or (T, C); .f32 headerless little-endian "
      "float32 N x T x C; .csv one sample per row, C columns, optional header, "
      "cut into consecutive windows of T rows (trailing rows are reported on "
      "stderr). T and C come from the model.");
  flags.AddString("model", "FILE", "Model weights (.safetensors).", &model_path,
                  /*required=*/true);
  flags.AddString("input", "FILE", "Windows to classify (.npy, .f32, .csv).",
                  &input_path, /*required=*/true);
  flags.AddString("logits-out", "FILE.npy",
                  "Also write the raw logits (before softmax) as float32 .npy "
                  "of shape (N, K).",
                  &logits_path);
  flags.AddBool("json", "Print one JSON document instead of text lines.",
                &as_json);
  AddInferenceFlags(flags, &inference);
  if (std::optional<int> exit_code = flags.ParseOrReport(args, out, err)) {
    return *exit_code;
  }

  absl::StatusOr<ModelWeights> weights = LoadModelFile(model_path);
  if (!weights.ok()) return ReportRuntimeError(kCommand, weights.status(), err);
  const ModelConfig& config = weights->config;
  absl::StatusOr<WindowArray> windows =
      ReadWindows(input_path, config.window_length, config.num_channels());
  if (!windows.ok()) {
    absl::Status status = windows.status();
    if (absl::IsInvalidArgument(status)) {
      // Shape and format errors: say what the model needs.
      status = absl::InvalidArgumentError(absl::StrCat(
          status.message(), " [model '", config.name, "' expects windows of ",
          config.window_length, " samples x ", config.num_channels(),
          " channels: ", absl::StrJoin(config.channels, ", "), "]"));
    }
    return ReportRuntimeError(kCommand, status, err);
  }
  if (windows->leftover_samples > 0) {
    err << "harmamba predict: note: " << input_path << ": "
        << windows->leftover_samples
        << " samples after the last whole window of " << config.window_length
        << " were not classified\n";
  }

  const int64_t n = windows->n;
  const int k = config.num_classes();
  absl::StatusOr<InferenceResult> result =
      RunInference(*weights, windows->data.data(), n, inference, kCommand, err);
  if (!result.ok()) return ReportRuntimeError(kCommand, result.status(), err);
  const std::vector<float>& logits = result->logits;
  if (!logits_path.empty()) {
    if (absl::Status status = WriteNpyFloat32(logits_path, {n, k}, logits);
        !status.ok()) {
      return ReportRuntimeError(kCommand, status, err);
    }
  }

  if (as_json) {
    json predictions = json::array();
    for (int64_t i = 0; i < n; ++i) {
      const float* row = logits.data() + i * k;
      const std::vector<double> probabilities = Softmax(row, k);
      const int label = ArgMax(row, k);
      predictions.push_back({{"index", i},
                             {"label", config.classes[label]},
                             {"class_index", label},
                             {"probability", probabilities[label]},
                             {"probabilities", probabilities}});
    }
    json document = {
        {"model", {{"name", config.name}, {"version", config.version}}},
        {"backend", result->backend->description()},
        {"input", input_path},
        {"num_windows", n},
        {"leftover_samples", windows->leftover_samples},
        {"classes", config.classes},
        {"predictions", std::move(predictions)}};
    out << document.dump(2, ' ', false, json::error_handler_t::replace) << "\n";
  } else {
    for (int64_t i = 0; i < n; ++i) {
      const float* row = logits.data() + i * k;
      const int label = ArgMax(row, k);
      out << absl::StrFormat("%d\t%s\t%.6f\n", i, config.classes[label],
                             Softmax(row, k)[label]);
    }
  }
  return kExitOk;
}

}  // namespace harmamba::cli
