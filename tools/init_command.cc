// harmamba init: a freshly initialised model from a JSON config.
#include <cstdint>
#include <filesystem>
#include <limits>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "model/array_io.h"
#include "model/config.h"
#include "model/model_file.h"
#include "tools/commands.h"

namespace harmamba::cli {

int RunInit(const std::vector<std::string>& args, std::ostream& out,
            std::ostream& err) {
  std::string config_path;
  std::string out_path;
  int64_t seed = 0;
  bool force = false;
  FlagParser flags(
      "init", "--config FILE.json --out FILE [--seed N] [--force]",
      "Writes a model with freshly initialised weights (the training init of "
      "design.md) for the architecture and metadata in a JSON config, e.g. "
      "{\"name\": \"uci-har\", \"window_length\": 128, \"channels\": [...], "
      "\"classes\": [...], \"depth\": 12}. Keys are the metadata names with "
      "or without the \"harmamba.\" prefix; channels and classes are "
      "required, the rest default to the UCI-HAR architecture, mean/std to "
      "0/1.");
  flags.AddString("config", "FILE.json", "Model config (JSON object).",
                  &config_path, /*required=*/true);
  flags.AddString("out", "FILE", "Where to write the model (.safetensors).",
                  &out_path, /*required=*/true);
  flags.AddInt("seed", "N", "Random seed (same seed, same file).", &seed, 0,
               std::numeric_limits<int64_t>::max());
  flags.AddBool("force", "Overwrite FILE if it exists.", &force);
  if (std::optional<int> exit_code = flags.ParseOrReport(args, out, err)) {
    return *exit_code;
  }

  absl::StatusOr<std::string> json_text = ReadWholeFile(config_path);
  if (!json_text.ok())
    return ReportRuntimeError("init", json_text.status(), err);
  absl::StatusOr<ModelConfig> config = ConfigFromJson(*json_text);
  if (!config.ok()) {
    return ReportRuntimeError(
        "init",
        absl::InvalidArgumentError(
            absl::StrCat(config_path, ": ", config.status().message())),
        err);
  }
  std::error_code error;
  if (!force && std::filesystem::exists(out_path, error)) {
    return ReportRuntimeError(
        "init",
        absl::AlreadyExistsError(absl::StrCat(
            out_path, ": file exists; pass --force to overwrite it")),
        err);
  }
  const ModelWeights weights = InitModel(*config, static_cast<uint64_t>(seed));
  if (absl::Status status = SaveModelFile(weights, out_path); !status.ok()) {
    return ReportRuntimeError("init", status, err);
  }
  const uintmax_t file_size = std::filesystem::file_size(out_path, error);
  out << absl::StrFormat(
      "wrote %s: model '%s' version '%s', %d parameters, %d bytes\n"
      "  window %d x %d channels, %d classes, d_model %d, depth %d, "
      "%d tokens per window, seed %d\n",
      out_path, config->name, config->version, weights.num_parameters(),
      error ? 0 : file_size, config->window_length, config->num_channels(),
      config->num_classes(), config->d_model, config->depth,
      config->num_tokens(), seed);
  return kExitOk;
}

}  // namespace harmamba::cli
