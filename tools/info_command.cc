// harmamba info: what a model file contains.
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "model/model_file.h"
#include "nlohmann/json.hpp"
#include "tools/commands.h"

namespace harmamba::cli {
namespace {

using json = nlohmann::ordered_json;

// A metadata value as JSON: the parsed JSON text when it is valid JSON (every
// value but name/version is written that way), else the plain string.
json MetadataValue(const std::string& text) {
  json value = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) return json(text);
  return value;
}

json InfoJson(const std::string& path, uintmax_t file_size,
              const ModelWeights& weights) {
  const ModelConfig& c = weights.config;
  json info;
  info["file"] = path;
  info["file_size_bytes"] = file_size;
  info["name"] = c.name;
  info["version"] = c.version;
  info["window_length"] = c.window_length;
  info["sample_rate_hz"] = c.sample_rate_hz;
  info["window_seconds"] = c.window_length / c.sample_rate_hz;
  info["channels"] = c.channels;
  info["classes"] = c.classes;
  info["architecture"] = {
      {"patch", c.patch},
      {"stride", c.stride},
      {"d_model", c.d_model},
      {"depth", c.depth},
      {"d_state", c.d_state},
      {"d_conv", c.d_conv},
      {"expand", c.expand},
      {"d_inner", c.d_inner()},
      {"dt_rank", c.dt_rank()},
      {"patches_per_channel", c.num_patches()},
      {"tokens_per_window", c.num_tokens()},
  };
  info["parameters"] = weights.num_parameters();
  info["mean"] = c.mean;
  info["std"] = c.std;
  json metadata = json::object();
  for (const auto& [key, text] : c.extra) metadata[key] = MetadataValue(text);
  info["metadata"] = metadata;
  return info;
}

std::string InfoText(const std::string& path, uintmax_t file_size,
                     const ModelWeights& weights) {
  const ModelConfig& c = weights.config;
  std::string text;
  auto line = [&text](const std::string& key, const std::string& value) {
    absl::StrAppend(&text, absl::StrFormat("%-13s %s\n", key + ":", value));
  };
  line("file", absl::StrCat(path, " (", file_size, " bytes)"));
  line("name", c.name);
  line("version", c.version);
  line("window",
       absl::StrFormat("%d samples at %g Hz = %g s", c.window_length,
                       c.sample_rate_hz, c.window_length / c.sample_rate_hz));
  line("channels",
       absl::StrCat(c.num_channels(), ": ", absl::StrJoin(c.channels, ", ")));
  line("classes",
       absl::StrCat(c.num_classes(), ": ", absl::StrJoin(c.classes, ", ")));
  line("architecture",
       absl::StrFormat("patch %d, stride %d, d_model %d, depth %d (%d "
                       "bidirectional pair%s), d_state %d, d_conv %d, expand "
                       "%d (d_inner %d, dt_rank %d)",
                       c.patch, c.stride, c.d_model, c.depth, c.num_pairs(),
                       c.num_pairs() == 1 ? "" : "s", c.d_state, c.d_conv,
                       c.expand, c.d_inner(), c.dt_rank()));
  line("tokens",
       absl::StrFormat("%d per window (%d patches x %d channels + "
                       "cls)",
                       c.num_tokens(), c.num_patches(), c.num_channels()));
  line("parameters", absl::StrCat(weights.num_parameters()));
  text += "input standardisation, (x - mean) / std:\n";
  size_t width = 7;
  for (const std::string& name : c.channels)
    width = std::max(width, name.size());
  absl::StrAppend(&text, absl::StrFormat("  %-*s %14s %14s\n", width, "channel",
                                         "mean", "std"));
  for (int i = 0; i < c.num_channels(); ++i) {
    absl::StrAppend(&text, absl::StrFormat("  %-*s %14.7g %14.7g\n", width,
                                           c.channels[i], c.mean[i], c.std[i]));
  }
  if (c.extra.empty()) {
    text += "metadata:     (no other keys)\n";
  } else {
    text += "metadata:\n";
    for (const auto& [key, value] : c.extra) {
      absl::StrAppend(&text, "  ", key, " = ", value, "\n");
    }
  }
  return text;
}

}  // namespace

int RunInfo(const std::vector<std::string>& args, std::ostream& out,
            std::ostream& err) {
  std::string model_path;
  bool as_json = false;
  FlagParser flags("info", "--model FILE [--json]",
                   "Shows what a model file holds: name, version, window, "
                   "channels, classes, architecture, parameter count, file "
                   "size, input standardisation and every other metadata key "
                   "(e.g. training figures).");
  flags.AddString("model", "FILE", "Model weights (.safetensors).", &model_path,
                  /*required=*/true);
  flags.AddBool("json", "Print one JSON object instead of text.", &as_json);
  if (std::optional<int> exit_code = flags.ParseOrReport(args, out, err)) {
    return *exit_code;
  }

  absl::StatusOr<ModelWeights> weights = LoadModelFile(model_path);
  if (!weights.ok()) return ReportRuntimeError("info", weights.status(), err);
  std::error_code error;
  const uintmax_t file_size = std::filesystem::file_size(model_path, error);
  if (error) {
    return ReportRuntimeError(
        "info",
        absl::InternalError(absl::StrCat(model_path, ": ", error.message())),
        err);
  }
  if (as_json) {
    out << InfoJson(model_path, file_size, *weights)
               .dump(2, ' ', false, json::error_handler_t::replace)
        << "\n";
  } else {
    out << InfoText(model_path, file_size, *weights);
  }
  return kExitOk;
}

}  // namespace harmamba::cli
